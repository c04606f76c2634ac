package backend

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestErrorLine picks the renderer's own error line out of real outputs
// (testdata/errline, captured from POV-Ray 3.7, Blender 3.4 and ffmpeg 5.1)
// and typical program outputs.
func TestErrorLine(t *testing.T) {
	for _, c := range []struct {
		name, out, want string
	}{
		{name: "povray-parse-error.txt", want: "File 'parse.pov' line 1: Parse Error: No matching } in 'pigment', undeclared identifier 'Red' found instead"},
		{name: "povray-error-directive.txt", want: "File 'broken.pov' line 1: Parse Error: Parse halted by #error directive: frame 3 is broken"},
		{name: "povray-missing-scene.txt", want: "Possible Parse Error: Cannot find file 'missing.pov', even after trying to append file type extension."},
		{name: "blender-missing-file.txt", want: "Error: Cannot read file '/var/distren/worker/scratch/4-1-1/missing.blend': No such file or directory"},
		{name: "blender-no-camera.txt", want: "Error: Cannot render, no camera"},
		{name: "ffmpeg-unknown-encoder.txt", want: "[fatal] Unknown encoder 'nosuchcodec'"},
		{name: "shell", out: "cat: greeting.txt: No such file or directory\n", want: "cat: greeting.txt: No such file or directory"},
		{name: "no error words: the last line", out: "starting\nstep 1\n\ngave up at step 2\n\n", want: "gave up at step 2"},
		{name: "python traceback", out: "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n    main()\nValueError: no frames\n", want: "ValueError: no frames"},
		{name: "progress after the error", out: "Error: out of licenses\nFra:1 Mem:9.87M | Sample 1/4\r45%\rframe=   10 fps=0.0 q=-0.0\nprogress=end\n", want: "Error: out of licenses"},
		{name: "Blender quit is not the cause", out: "Blender 3.4.1\nRead blend: /x/shot.blend\n\nBlender quit\n", want: "Read blend: /x/shot.blend"},
		{name: "only noise", out: "Fra:1 Mem:9.87M | Sample 1/4\n\n  \nBlender quit\n", want: ""},
		{name: "empty", out: "", want: ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := c.out
			if strings.HasSuffix(c.name, ".txt") {
				b, err := os.ReadFile(filepath.Join("testdata", "errline", c.name))
				if err != nil {
					t.Fatal(err)
				}
				out = string(b)
			}
			if got := ErrorLine(out); got != c.want {
				t.Errorf("ErrorLine = %q\nwant         %q", got, c.want)
			}
		})
	}
	long := "Error: " + strings.Repeat("é", 400)
	if got := ErrorLine(long); len(got) > maxErrorLine+len("…") || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "Error: éé") {
		t.Errorf("a long line is not clipped whole characters: %d bytes, %q...", len(got), got[:20])
	}
}
