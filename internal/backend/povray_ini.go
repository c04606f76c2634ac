package backend

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// POVRayAnimation is what an animation .ini says about frames and clock.
type POVRayAnimation struct {
	Scene                       string // Input_File_Name, "" if not set
	InitialFrame, FinalFrame    int64
	InitialClock, FinalClock    float64
	Width, Height               int // 0 if not set
	HasFrames, HasClock, Cyclic bool
}

// ParsePOVRayIni reads the animation settings of a POV-Ray .ini file:
// key=value options (Initial_Frame, Final_Frame, Initial_Clock, Final_Clock,
// Input_File_Name, Width, Height, Cyclic_Animation) and +KFI/+KFF/+KI/+KF/+I/+W/+H
// switches. name is used in errors, which give the line.
func ParsePOVRayIni(r io.Reader, name string) (POVRayAnimation, error) {
	a := POVRayAnimation{InitialFrame: 1, FinalFrame: 1, FinalClock: 1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		fields := strings.Fields(line)
		if strings.Contains(line, "=") && !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "-") {
			fields = []string{line} // Key = Value, spaces allowed
		}
		for _, f := range fields {
			if err := a.option(f); err != nil {
				return a, fmt.Errorf("%s:%d: %w", name, n, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return a, fmt.Errorf("%s: %w", name, err)
	}
	if a.FinalFrame < a.InitialFrame {
		return a, fmt.Errorf("%s: Final_Frame %d is before Initial_Frame %d", name, a.FinalFrame, a.InitialFrame)
	}
	if a.InitialFrame < 0 {
		return a, fmt.Errorf("%s: Initial_Frame %d: distren's frame ids are not negative", name, a.InitialFrame)
	}
	return a, nil
}

func (a *POVRayAnimation) option(f string) error {
	key, val, isKV := strings.Cut(f, "=")
	if !isKV {
		if len(f) < 2 || (f[0] != '+' && f[0] != '-') {
			return nil // an .ini may name other .ini files; not ours to follow
		}
		sw := strings.ToUpper(f[1:])
		for _, p := range []struct{ prefix, key string }{
			{"KFI", "initial_frame"}, {"KFF", "final_frame"}, {"KI", "initial_clock"}, {"KF", "final_clock"},
			{"W", "width"}, {"H", "height"}, {"I", "input_file_name"},
		} {
			if strings.HasPrefix(sw, p.prefix) && len(sw) > len(p.prefix) {
				key, val = p.key, f[1+len(p.prefix):]
				break
			}
		}
		if key == f {
			if sw == "KC" {
				a.Cyclic = true
			}
			return nil
		}
	}
	key = strings.TrimSpace(key)
	val = strings.Trim(strings.TrimSpace(val), `"`)
	bad := func(err error) error { return fmt.Errorf("%s: %q: %w", key, val, err) }
	switch strings.ToLower(key) {
	case "input_file_name":
		a.Scene = val
	case "initial_frame":
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return bad(err)
		}
		a.InitialFrame, a.HasFrames = n, true
	case "final_frame":
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return bad(err)
		}
		a.FinalFrame, a.HasFrames = n, true
	case "initial_clock":
		x, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return bad(err)
		}
		a.InitialClock, a.HasClock = x, true
	case "final_clock":
		x, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return bad(err)
		}
		a.FinalClock, a.HasClock = x, true
	case "width", "height":
		n, err := strconv.Atoi(val)
		if err != nil {
			return bad(err)
		}
		if strings.EqualFold(key, "width") {
			a.Width = n
		} else {
			a.Height = n
		}
	case "cyclic_animation":
		a.Cyclic = strings.EqualFold(val, "on") || strings.EqualFold(val, "true") || val == "1"
	}
	return nil
}
