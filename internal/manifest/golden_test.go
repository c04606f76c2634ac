package manifest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the parser's output")

// TestGolden parses every testdata/*.xml and compares the normalized job (or
// the errors) with the .golden file beside it. Run with -update after an
// intended change and review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := Parse(f, FileName, Options{})
			var got string
			if err != nil {
				got = "error:\n" + err.Error() + "\n"
			} else {
				got = normalize(m)
			}
			golden := strings.TrimSuffix(in, ".xml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", in, golden, got, want)
			}
		})
	}
}

// normalize prints a manifest in a stable, readable form.
func normalize(m *Manifest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name %q version %d priority %d retries %d\n", m.Name, m.Version, m.Priority, m.Retries)
	if !m.Deadline.IsZero() {
		fmt.Fprintf(&b, "deadline %s\n", m.Deadline.Format(time.RFC3339))
	}
	if m.Timeout > 0 {
		fmt.Fprintf(&b, "timeout %s\n", m.Timeout)
	}
	if m.Chunk != 1 {
		fmt.Fprintf(&b, "chunk %d\n", m.Chunk)
	}
	backend := func(be *Backend) string {
		var parts []string
		for _, e := range be.Elements {
			parts = append(parts, fmt.Sprintf("%s=%q", e.Name, e.Text))
		}
		name := be.Name
		if be.Version != "" {
			name += " " + be.Version
		}
		return fmt.Sprintf("%s (line %d) {%s}", name, be.Line, strings.Join(parts, " "))
	}
	fmt.Fprintf(&b, "backend %s\n", backend(&m.Backend))
	for _, in := range m.Inputs {
		fmt.Fprintf(&b, "input %s (line %d)\n", in.Path, in.Line)
	}
	fmt.Fprintf(&b, "outputs %q\n", m.Outputs)
	for _, f := range m.Frames {
		fmt.Fprintf(&b, "frame %d (line %d)", f.ID, f.Line)
		if len(f.Deps) > 0 {
			var ds []string
			for _, d := range f.Deps {
				if d.Local() {
					ds = append(ds, fmt.Sprint(d.Frame))
				} else {
					ds = append(ds, d.String())
				}
			}
			fmt.Fprintf(&b, " after %s", strings.Join(ds, ","))
		}
		if f.Backend != nil {
			fmt.Fprintf(&b, " backend %s", backend(f.Backend))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
