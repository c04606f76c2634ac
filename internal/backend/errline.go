package backend

import (
	"regexp"
	"strings"
)

// maxErrorLine bounds the line ErrorLine returns.
const maxErrorLine = 400

var (
	// noiseLine matches what renderers print that never says why they
	// failed: progress counters, status and section lines, banners,
	// settings dumps.
	noiseLine = regexp.MustCompile(`^(?:` +
		`Fra:\d+ ` + // Blender's status line
		`|Blender quit$|Blender \d+\.\d+` + // Blender's banner and farewell
		`|Rendered \d+ of \d+ pixels|Rendering frame \d+ of \d+|Parsing \d|Photon|Radiosity` + // POV-Ray's progress
		`|==== \[|-{10,}|={10,}` + // POV-Ray's section rules
		`|Persistence of Vision|POV-Ray is based on|Copyright|This is an unofficial version|The POV-Ray Team` +
		`|(?:\[info\] )?frame=\s*\d+ +fps=` + // ffmpeg -stats
		`|\d+(?:\.\d+)?%$` + // a bare percentage
		`)|\.{4,}`) // a settings dump: "Fatal Stream to console.........On"
	// keyValue matches ffmpeg's -progress lines (frame=12, progress=end):
	// noise unless they look like an error.
	keyValue = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]*=\S*$`)
	// errorLooking matches a line that reports a problem.
	errorLooking = regexp.MustCompile(`(?i)error|fatal|cannot|can't|could not|couldn't|failed|failure|no such file|not found|denied|not permitted|exception|panic|abort|segmentation fault|illegal|invalid|unknown|refused|not allowed`)
)

// ErrorLine returns the line of a renderer's output that says why it
// failed: among the lines that are not blank, progress, banners or settings
// (noiseLine), the first of the last run of lines that look like an error —
// POV-Ray's "Parse Error: ..." before its "Fatal error in parser" and
// "Render failed", Blender's "Error: ..." before "Blender quit", ffmpeg's
// "[fatal] ..." — and if none looks like one, the last line. A line that
// POV-Ray wrapped (its continuation starts with one space) is joined. It
// returns "" when the output holds nothing but noise.
func ErrorLine(output string) string {
	var lines []string
	errs := map[int]bool{}
	joinable := false // the line before was kept and looks like an error
	for _, raw := range strings.FieldsFunc(output, func(r rune) bool { return r == '\n' || r == '\r' }) {
		line := strings.TrimSpace(raw)
		if line == "" {
			joinable = false
			continue
		}
		if joinable && strings.HasPrefix(raw, " ") && !strings.HasPrefix(raw, "  ") {
			lines[len(lines)-1] += " " + line // POV-Ray wraps its messages at 80 columns
			continue
		}
		isErr := errorLooking.MatchString(line)
		if noiseLine.MatchString(line) || (!isErr && keyValue.MatchString(line)) {
			joinable = false
			continue
		}
		errs[len(lines)] = isErr
		joinable = isErr
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return ""
	}
	pick := len(lines) - 1
	for i := len(lines) - 1; i >= 0; i-- {
		if errs[i] {
			pick = i
			for pick > 0 && errs[pick-1] {
				pick--
			}
			break
		}
	}
	line := lines[pick]
	if len(line) > maxErrorLine {
		cut := maxErrorLine
		for cut > 0 && line[cut]&0xc0 == 0x80 { // not inside a UTF-8 sequence
			cut--
		}
		line = line[:cut] + "…"
	}
	return line
}
