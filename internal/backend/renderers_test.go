package backend

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// needRenderer fails the test when a real renderer is missing: the tests that
// use one are not skipped silently. DISTREN_SKIP_RENDERERS=1 opts out
// explicitly, and the skip says so.
func needRenderer(t *testing.T, b Backend) Fingerprint {
	t.Helper()
	fp, err := b.Fingerprint(context.Background())
	if err != nil {
		if os.Getenv("DISTREN_SKIP_RENDERERS") == "1" {
			t.Skipf("DISTREN_SKIP_RENDERERS=1: skipping, %s is not usable here: %v", b.Name(), err)
		}
		t.Fatalf("this test needs %s: %v (install it — .ci/run shows how — or set DISTREN_SKIP_RENDERERS=1 to skip renderer tests)", b.Name(), err)
	}
	return fp
}

// recorder collects a backend's events.
type recorder struct {
	progress map[int64][]float64
	done     map[int64][]string
	order    []int64
}

func newRecorder() *recorder {
	return &recorder{progress: map[int64][]float64{}, done: map[int64][]string{}}
}

func (r *recorder) Progress(f int64, p float64) { r.progress[f] = append(r.progress[f], p) }
func (r *recorder) FrameDone(f int64, files []string) {
	r.done[f] = append(r.done[f], files...)
	r.order = append(r.order, f)
}

// newTask returns a task for frames in fresh scratch and home directories.
func newTask(t *testing.T, backendXML string, frames ...int64) *Task {
	t.Helper()
	out := &bytes.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("renderer output:\n%s", out)
		}
	})
	return &Task{Job: 1, Frames: frames, Dir: t.TempDir(), Home: t.TempDir(), Spec: spec(t, backendXML), Stderr: out, Events: newRecorder()}
}
