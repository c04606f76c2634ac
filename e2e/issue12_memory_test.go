package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// rangeManifest is a job of n built-in frames of 1×1 pixel.
func rangeManifest(n int) string {
	return fmt.Sprintf(`<distrenjob version="1"><name>held</name>
<backend name="builtin"><width>1</width><height>1</height><output>f-{frame}.png</output></backend>
<frames><range first="1" last="%d"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, n)
}

// TestFramesHeld (issue 12, item 9): serve --max-frames-held refuses a job
// that would make the server hold more frames, naming the numbers, and
// deleting a job makes room; status --json of a job of 25,000 frames reads
// them all, page by page, in order.
func TestFramesHeld(t *testing.T) {
	run(t, 2, "serve", "--max-frames-held", "0", "--data", t.TempDir())
	_, url := serve(t, "--data", t.TempDir(), "--workers", "0", "--name", "held", "--max-frames-held", "30000")
	run(t, 0, "submit", writeJob(t, rangeManifest(25000), nil), "--server", url, "-q")

	j, frames := status(t, url, "1")
	if j.Frames != 25000 || len(frames) != 25000 {
		t.Fatalf("status --json: job of %d frames, %d listed; want 25000", j.Frames, len(frames))
	}
	for i, f := range frames {
		if f.ID != int64(i+1) || f.URL != fmt.Sprintf("distren://held/1/frame/%d", i+1) {
			t.Fatalf("status --json: frame %d in place %d (%s)", f.ID, i, f.URL)
		}
	}

	errOut := runStderr(t, 5, "submit", writeJob(t, rangeManifest(6000), nil), "--server", url, "-q")
	want := `job "held": 6000 frames, too many frames to hold: the server holds 25000 frames of 1 jobs already, and 31000 in all would pass its limit of 30000 (serve --max-frames-held)`
	if !strings.Contains(errOut, want) {
		t.Errorf("submission over --max-frames-held:\n got %s\nwant %s", errOut, want)
	}
	run(t, 0, "delete", "1", "--server", url)
	run(t, 0, "submit", writeJob(t, rangeManifest(6000), nil), "--server", url, "-q")
}
