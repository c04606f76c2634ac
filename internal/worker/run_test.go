package worker

import (
	"context"
	"errors"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
)

const builtinJob = `<backend name="builtin"><width>8</width><height>6</height></backend>`

// TestRunRendersBuiltinFrame: a worker claims a frame, renders it with the
// built-in renderer and uploads its PNG; the claim carries its name and
// its fingerprint, and the scratch directory is gone afterwards.
func TestRunRendersBuiltinFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(builtinJob, 3, "*.png"), 1<<20)
		r := startWorker(t, s)
		defer r.stop()
		l := lease(1, 2, 7)
		s.offer(l)
		synctest.Wait()

		done := s.completed(ref(l))
		if len(done) != 1 {
			t.Fatalf("completions %+v, fails %+v, logs:\n%s", s.attempts(ref(l)), s.failed(ref(l)), r.logs)
		}
		c := done[0]
		if c.worker != "w1" {
			t.Errorf("completed by %q, want w1", c.worker)
		}
		if len(c.files) != 1 {
			t.Fatalf("output files %v, want frame-0002.png alone", keys(c.files))
		}
		img, err := png.Decode(strings.NewReader(c.files["frame-0002.png"]))
		if err != nil {
			t.Fatalf("frame-0002.png: %v", err)
		}
		if b := img.Bounds(); b.Dx() != 8 || b.Dy() != 6 {
			t.Errorf("the frame is %v, want 8×6", b)
		}
		if len(s.fails) != 0 {
			t.Errorf("failures reported: %+v", s.fails)
		}
		req := s.claims[0].req
		if req.Worker != "w1" || req.Max != 1 || req.Backends["builtin"] == "" {
			t.Errorf("claim %+v: want worker w1, max 1, the builtin backend's version", req)
		}
		if ents, err := os.ReadDir(r.w.scr); err != nil || len(ents) != 0 {
			t.Errorf("scratch directory after the frame: %v %v", ents, err)
		}
	})
}

// TestStaleResultIsDropped: a result the server refuses as stale (the lease
// has moved on) is sent once, neither retried nor reported as a failure,
// and the worker goes on with the next frame.
func TestStaleResultIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(builtinJob, 2, "*.png"), 1<<20)
		stale, next := lease(1, 1, 3), lease(1, 2, 4)
		s.results[ref(stale)] = []error{refused(ErrStale, "frame 1 of job 1 is leased to another worker")}
		r := startWorker(t, s)
		defer r.stop()
		s.offer(stale)
		synctest.Wait()
		time.Sleep(time.Minute) // any retry would have happened by now
		synctest.Wait()

		if a := s.attempts(ref(stale)); len(a) != 1 || !errors.Is(a[0].err, ErrStale) {
			t.Errorf("the stale result was sent %d times, want once", len(a))
		}
		if f := s.failed(ref(stale)); len(f) != 0 {
			t.Errorf("a stale result was reported as a failure: %+v", f)
		}
		if !strings.Contains(r.logs.String(), "result refused: lease no longer held") {
			t.Errorf("the log does not say why the result was dropped:\n%s", r.logs)
		}
		if ok, err := r.exited(); ok {
			t.Fatalf("the worker stopped on a stale result: %v", err)
		}
		s.offer(next)
		synctest.Wait()
		if len(s.completed(ref(next))) != 1 {
			t.Errorf("the next frame was not completed after a stale result; logs:\n%s", r.logs)
		}
	})
}

// TestResultAnswers: what the worker does with each answer to an upload —
// a transient error is retried with a growing delay until it goes through;
// an output the server rejects is reported as this attempt's failure.
func TestResultAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(builtinJob, 2, "*.png"), 1<<20)
		retried, rejected := lease(1, 1, 1), lease(1, 2, 1)
		s.results[ref(retried)] = []error{errTransient, errTransient}
		s.results[ref(rejected)] = []error{refused(ErrRejected, "output of 9 GB exceeds the limit of 1 GB")}
		r := startWorker(t, s)
		defer r.stop()
		s.offer(retried, rejected)
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()

		a := s.attempts(ref(retried))
		if len(a) != 3 || a[2].err != nil {
			t.Fatalf("uploads of a frame whose first two failed: %+v, want 3, the last taken", a)
		}
		if d1, d2 := a[1].at.Sub(a[0].at), a[2].at.Sub(a[1].at); d1 != 100*time.Millisecond || d2 != 200*time.Millisecond {
			t.Errorf("retried after %s and %s, want 100ms and 200ms", d1, d2)
		}
		if f := s.failed(ref(retried)); len(f) != 0 {
			t.Errorf("a delivered frame was also reported failed: %+v", f)
		}

		if a := s.attempts(ref(rejected)); len(a) != 1 {
			t.Errorf("a rejected output was sent %d times, want once", len(a))
		}
		f := s.failed(ref(rejected))
		if len(f) != 1 || !strings.Contains(f[0].Error, "the server refused the output") || !strings.Contains(f[0].Error, "exceeds the limit") ||
			f[0].Worker != "w1" || f[0].Epoch != 1 {
			t.Errorf("failure reported for a rejected output: %+v", f)
		}
	})
}

// TestDeniedCredentialStopsWorker: a claim refused for the worker's
// credential ends Run with an error that says so, even after a transient
// failure; nothing else is retried.
func TestDeniedCredentialStopsWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.claimErrs = []error{errTransient, refused(ErrDenied, "token w1-token revoked")}
		r := startWorker(t, s)
		defer r.stop()
		var err error
		select {
		case err = <-r.done:
			r.done <- err // for stop
		case <-time.After(time.Hour):
			t.Fatal("the worker went on after its credential was refused")
		}
		if !errors.Is(err, ErrDenied) {
			t.Fatalf("Run returned %v, want ErrDenied", err)
		}
		for _, want := range []string{"worker w1", "refused its token", "token w1-token revoked"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Run's error %q does not say %q", err, want)
			}
		}
		if len(s.claims) != 2 {
			t.Errorf("%d claims, want 2 (the transient failure retried, the refusal not)", len(s.claims))
		}
	})
}

// TestLeaseLostKillsRender: when a heartbeat's answer says the server no
// longer holds a lease, the frame rendering under it is stopped, nothing is
// reported for it, and the slot takes the next frame.
func TestLeaseLostKillsRender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(`<backend name="block"/>`, 1, "*.png"), 1<<20)
		s.addJob(2, job(builtinJob, 1, "*.png"), 1<<20)
		started, ended := make(chan struct{}), make(chan error, 1)
		block := funcBackend{name: "block", render: func(ctx context.Context, _ *backend.Task) error {
			close(started)
			<-ctx.Done()
			ended <- ctx.Err()
			return ctx.Err()
		}}
		r := startWorker(t, s, block)
		defer r.stop()
		lost := api.Lease{Job: 1, Frame: 1, Epoch: 5, TTLMS: 3000}
		s.offer(lost)
		synctest.Wait()
		select {
		case <-started:
		default:
			t.Fatalf("the frame is not rendering; logs:\n%s", r.logs)
		}

		time.Sleep(2 * time.Second) // heartbeats every ttl/3
		synctest.Wait()
		select {
		case err := <-ended:
			t.Fatalf("the render ended (%v) while the server held its lease", err)
		default:
		}
		if !heartbeatCarries(s, ref(lost)) {
			t.Fatalf("no heartbeat renewed the lease: %+v", s.heartbeats)
		}

		s.expire(ref(lost))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the render ended with %v, want context.Canceled", err)
			}
		default:
			t.Fatal("the render went on after its lease was lost")
		}
		if len(s.attempts(ref(lost))) != 0 || len(s.failed(ref(lost))) != 0 {
			t.Errorf("an abandoned frame was reported: completes %+v, fails %+v", s.attempts(ref(lost)), s.failed(ref(lost)))
		}
		if !strings.Contains(r.logs.String(), "abandoning frame") {
			t.Errorf("the log does not say the frame was abandoned:\n%s", r.logs)
		}

		next := lease(2, 1, 1)
		s.offer(next)
		synctest.Wait()
		if len(s.completed(ref(next))) != 1 {
			t.Errorf("the slot did not take the next frame; logs:\n%s", r.logs)
		}
	})
}

func heartbeatCarries(s *fakeServer, r api.LeaseRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, hb := range s.heartbeats {
		for _, l := range hb.Leases {
			if l.LeaseRef == r && hb.Worker == "w1" {
				return true
			}
		}
	}
	return false
}

// TestClaimBacksOff: transient claim failures are retried after 100ms,
// 200ms, 400ms…; a claim that goes through resets the delay, and the
// frame it brings is rendered.
func TestClaimBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(builtinJob, 1, "*.png"), 1<<20)
		l := lease(1, 1, 1)
		s.offer(l)
		s.claimErrs = []error{errTransient, errTransient, errTransient, nil, errTransient}
		start := time.Now()
		r := startWorker(t, s)
		defer r.stop()
		time.Sleep(time.Second) // within the wait of the sixth claim
		synctest.Wait()

		var at []time.Duration
		for _, c := range s.claims {
			at = append(at, c.at.Sub(start))
		}
		ms := time.Millisecond
		if want := []time.Duration{0, 100 * ms, 300 * ms, 700 * ms, 700 * ms, 800 * ms}; !reflect.DeepEqual(at, want) {
			t.Errorf("claims at %v, want %v", at, want)
		}
		if len(s.completed(ref(l))) != 1 {
			t.Errorf("the frame claimed after the failures was not completed; logs:\n%s", r.logs)
		}
		if n := strings.Count(r.logs.String(), "claim failed"); n != 4 {
			t.Errorf("%d claim failures logged, want 4:\n%s", n, r.logs)
		}
	})
}

// TestInputsAndDependenciesInScratch: a frame renders in a scratch
// directory holding the job's input files (assembled from their objects,
// with their modes) and the files of the outputs it depends on, named in
// DepFiles; a second frame of the job takes the spec and objects from the
// worker's cache; only what the render wrote is uploaded.
func TestInputsAndDependenciesInScratch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(`<backend name="inspect"/>`, 3, "out-*.txt"), 6,
			inputFile{"scene/main.txt", "a scene of several chunks", 0o644},
			inputFile{"run.sh", "#!/bin/sh\n", 0o755})
		dep := s.addOutput(1, 3, map[string]string{"dep/frame-3.txt": "from frame 3"})
		inspect, saw := inspectBackend()
		r := startWorker(t, s, inspect)
		defer r.stop()
		first, second := lease(1, 1, 1, dep), lease(1, 2, 1, dep)
		s.offer(first)
		synctest.Wait()
		s.offer(second)
		synctest.Wait()

		want := map[string]string{"scene/main.txt": "a scene of several chunks", "run.sh": "#!/bin/sh\n", "dep/frame-3.txt": "from frame 3"}
		for i, l := range []api.Lease{first, second} {
			var v scratchSeen
			select {
			case v = <-saw:
			default:
				t.Fatalf("frame %d was not rendered; logs:\n%s", l.Frame, r.logs)
			}
			if !reflect.DeepEqual(v.files, want) {
				t.Errorf("frame %d's scratch directory held %v, want %v", l.Frame, v.files, want)
			}
			if !v.exec {
				t.Errorf("frame %d: run.sh lost its mode 0755", l.Frame)
			}
			if !reflect.DeepEqual(v.depFiles, []string{"dep/frame-3.txt"}) {
				t.Errorf("frame %d: DepFiles %v", l.Frame, v.depFiles)
			}
			c := s.completed(ref(l))
			name := "out-" + string(rune('1'+i)) + ".txt"
			if len(c) != 1 || !reflect.DeepEqual(c[0].files, map[string]string{name: "done"}) {
				t.Errorf("frame %d uploaded %+v, want %s alone", l.Frame, c, name)
			}
		}
		if s.specGets[1] != 1 {
			t.Errorf("the job's spec was fetched %d times, want once", s.specGets[1])
		}
		if len(s.blobGets) != len(s.blobs) || len(s.blobs) != 8 { // 5 chunks of main.txt, 2 of run.sh, the dependency's output
			t.Errorf("%d of %d objects fetched, want all 8: %v", len(s.blobGets), len(s.blobs), s.blobGets)
		}
		for h, n := range s.blobGets {
			if n != 1 {
				t.Errorf("object %s fetched %d times, want once", h, n)
			}
		}
	})
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestChunkReportsFramesAsTheyFinish: in a chunk, each frame the backend
// reports done is uploaded with its own files; the frame it fails on is
// reported failed with the renderer's error, and the frames after it are
// given back unattempted.
func TestChunkReportsFramesAsTheyFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(`<backend name="chunky"/>`, 4, "out-*.txt"), 1<<20)
		chunky := funcBackend{name: "chunky", render: func(ctx context.Context, t *backend.Task) error {
			for _, f := range t.Frames {
				if f == 3 {
					return errors.New("the renderer crashed on frame 3")
				}
				name := fmt.Sprintf("out-%d.txt", f)
				if err := os.WriteFile(filepath.Join(t.Dir, name), []byte(fmt.Sprint("frame ", f)), 0o644); err != nil {
					return err
				}
				t.Events.FrameDone(f, []string{name})
			}
			return nil
		}}
		r := startWorker(t, s, chunky)
		defer r.stop()
		var ls []api.Lease
		for f := int64(1); f <= 4; f++ {
			l := lease(1, f, 1)
			l.Chunk = 9
			ls = append(ls, l)
		}
		s.offer(ls...)
		synctest.Wait()

		for _, l := range ls[:2] {
			name := fmt.Sprintf("out-%d.txt", l.Frame)
			c := s.completed(ref(l))
			if len(c) != 1 || !reflect.DeepEqual(c[0].files, map[string]string{name: fmt.Sprint("frame ", l.Frame)}) {
				t.Errorf("frame %d uploaded %+v, want %s alone", l.Frame, c, name)
			}
		}
		if f := s.failed(ref(ls[2])); len(f) != 1 || f[0].NotRun || !strings.Contains(f[0].Error, "the renderer crashed on frame 3") {
			t.Errorf("frame 3's failure: %+v", f)
		}
		if f := s.failed(ref(ls[3])); len(f) != 1 || !f[0].NotRun || !strings.Contains(f[0].Error, "frame 3 of its chunk failed first") {
			t.Errorf("frame 4, after the failure: %+v, want given back unattempted", f)
		}
		if c := s.attempts(ref(ls[3])); len(c) != 0 {
			t.Errorf("frame 4 was uploaded: %+v", c)
		}
	})
}

// scratchSeen is what a render found in its scratch directory.
type scratchSeen struct {
	files    map[string]string // path → content
	exec     bool              // run.sh is executable
	depFiles []string
}

// inspectBackend is a backend whose render records what it finds in its
// scratch directory (sent on the channel, which holds two), then writes
// out-<frame>.txt.
func inspectBackend() (funcBackend, <-chan scratchSeen) {
	saw := make(chan scratchSeen, 2)
	return funcBackend{name: "inspect", render: func(ctx context.Context, t *backend.Task) error {
		v := scratchSeen{files: map[string]string{}, depFiles: t.DepFiles}
		err := filepath.WalkDir(t.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(t.Dir, p)
			v.files[filepath.ToSlash(rel)] = string(b)
			if rel == "run.sh" {
				fi, _ := d.Info()
				v.exec = fi.Mode()&0o100 != 0
			}
			return err
		})
		saw <- v
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(t.Dir, "out-"+string(rune('0'+t.Frame()))+".txt"), []byte("done"), 0o644)
	}}, saw
}

// TestDeniedHeartbeatStopsWorker: a credential revoked while the worker
// renders is refused at the next heartbeat, and the worker stops then —
// not at its next claim, which may be hours away — saying why.
func TestDeniedHeartbeatStopsWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(`<backend name="block"/>`, 1, "*.txt"), 1<<20)
		s.heartbeatErr = refused(ErrDenied, "token w1-token revoked")
		r := startWorker(t, s, funcBackend{name: "block", render: func(ctx context.Context, t *backend.Task) error {
			<-ctx.Done() // a long render
			return ctx.Err()
		}})
		defer r.stop()
		s.offer(lease(1, 1, 1))
		var err error
		select {
		case err = <-r.done:
			r.done <- err // for stop
		case <-time.After(time.Hour):
			t.Fatal("the worker went on rendering after a heartbeat refused its credential")
		}
		if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "refused its token") {
			t.Fatalf("Run returned %v, want ErrDenied saying the token was refused", err)
		}
		if len(s.claims) != 1 {
			t.Errorf("%d claims, want 1", len(s.claims))
		}
	})
}

// TestNameWithSlashRefused: a slash in a worker's name marks a peer
// server's worker (SERVER/WORKER); a worker of its own may not have one.
func TestNameWithSlashRefused(t *testing.T) {
	_, err := New(Config{Server: newFakeServer(), Name: "farm-b/node-1", Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "a slash marks a peer server's worker") {
		t.Fatalf("New with name farm-b/node-1: %v", err)
	}
}
