package worker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
)

// localServer is a fakeServer that also holds the objects in the worker's
// process (LocalObjects): it counts the objects opened, and fails the reads
// of those in broken as a damaged store does.
type localServer struct {
	*fakeServer
	opens  map[string]int
	broken map[string]bool
}

var _ LocalObjects = (*localServer)(nil)

func newLocalServer() *localServer {
	return &localServer{fakeServer: newFakeServer(), opens: map[string]int{}, broken: map[string]bool{}}
}

func (s *localServer) OpenObject(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens[hash]++
	b, ok := s.blobs[hash]
	if !ok {
		return nil, 0, refused(ErrRejected, "no object "+hash)
	}
	var r io.Reader = bytes.NewReader(b)
	if s.broken[hash] { // the first bytes, then the error a verified read gives
		r = io.MultiReader(io.LimitReader(r, 2), errReader{errors.New("vault: object " + hash + ": corrupt")})
	}
	return io.NopCloser(r), int64(len(b)), nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// cachedFiles returns the files under the worker's cache directory.
func cachedFiles(t *testing.T, w *Worker) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(w.Dir(), "cache"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// TestLocalObjectsSkipCache: with a server that holds the objects itself,
// a frame's scratch directory holds the job's inputs (assembled from their
// objects, with their modes) and its dependencies' files, read from the
// server's store: Blob is never called and the cache holds no object,
// for this frame or the next.
func TestLocalObjectsSkipCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newLocalServer()
		s.addJob(1, job(`<backend name="inspect"/>`, 3, "out-*.txt"), 6,
			inputFile{"scene/main.txt", "a scene of several chunks", 0o644},
			inputFile{"run.sh", "#!/bin/sh\n", 0o755})
		dep := s.addOutput(1, 3, map[string]string{"dep/frame-3.txt": "from frame 3", "dep/more.txt": "more"})
		inspect, saw := inspectBackend()
		r := startWorker(t, s, inspect)
		defer r.stop()
		first, second := lease(1, 1, 1, dep), lease(1, 2, 1, dep)
		s.offer(first)
		synctest.Wait()
		s.offer(second)
		synctest.Wait()

		want := map[string]string{"scene/main.txt": "a scene of several chunks", "run.sh": "#!/bin/sh\n",
			"dep/frame-3.txt": "from frame 3", "dep/more.txt": "more"}
		for i, l := range []api.Lease{first, second} {
			var v scratchSeen
			select {
			case v = <-saw:
			default:
				t.Fatalf("frame %d was not rendered; fails %+v, logs:\n%s", l.Frame, s.failed(ref(l)), r.logs)
			}
			if !reflect.DeepEqual(v.files, want) {
				t.Errorf("frame %d's scratch directory held %v, want %v", l.Frame, v.files, want)
			}
			if !v.exec {
				t.Errorf("frame %d: run.sh lost its mode 0755", l.Frame)
			}
			if !reflect.DeepEqual(v.depFiles, []string{"dep/frame-3.txt", "dep/more.txt"}) {
				t.Errorf("frame %d: DepFiles %v", l.Frame, v.depFiles)
			}
			c := s.completed(ref(l))
			name := "out-" + string(rune('1'+i)) + ".txt"
			if len(c) != 1 || !reflect.DeepEqual(c[0].files, map[string]string{name: "done"}) {
				t.Errorf("frame %d uploaded %+v, want %s alone", l.Frame, c, name)
			}
		}
		if len(s.blobGets) != 0 {
			t.Errorf("Blob called for objects the server holds in process: %v", s.blobGets)
		}
		if len(s.opens) != len(s.blobs) || len(s.blobs) != 8 { // 5 chunks of main.txt, 2 of run.sh, the dependency's output
			t.Errorf("%d of %d objects opened, want all 8: %v", len(s.opens), len(s.blobs), s.opens)
		}
		for h, n := range s.opens {
			if n != 2 {
				t.Errorf("object %s opened %d times, want once per frame", h, n)
			}
		}
		if f := cachedFiles(t, r.w); len(f) != 0 {
			t.Errorf("the cache holds %v, want nothing", f)
		}
	})
}

// TestLocalObjectReadFails: an object the server's store cannot read (a
// verified read failing midway, an object it lacks) fails the frame's
// attempt with the store's words, as a failed download does, and leaves
// neither a cache copy nor a scratch directory behind.
func TestLocalObjectReadFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newLocalServer()
		s.addJob(1, job(builtinJob, 3, "*.png"), 1<<20, inputFile{"scene.txt", "a scene", 0o644})
		s.broken[s.specs[1].Inputs[0].Chunks[0].Hash] = true
		s.addJob(2, job(builtinJob, 3, "*.png"), 1<<20)
		missing := api.DepOutput{Job: 2, Frame: 1, Output: strings.Repeat("ab", 32), Size: 10}
		r := startWorker(t, s)
		defer r.stop()
		corrupt, absent := lease(1, 1, 1), lease(2, 2, 1, missing)
		s.offer(corrupt, absent)
		synctest.Wait()

		for _, c := range []struct {
			l    api.Lease
			want string
		}{
			{corrupt, "input scene.txt: copying object " + s.specs[1].Inputs[0].Chunks[0].Hash + ": vault: object"},
			{absent, "output of frame 1 of job 2: reading object " + missing.Output + ": request rejected by the server: no object"},
		} {
			f := s.failed(ref(c.l))
			if len(f) != 1 || !strings.Contains(f[0].Error, c.want) || f[0].NotRun {
				t.Errorf("job %d: failures %+v, want one attempt failed with %q", c.l.Job, f, c.want)
			}
			if done := s.completed(ref(c.l)); len(done) != 0 {
				t.Errorf("job %d: completed despite an unreadable object: %+v", c.l.Job, done)
			}
		}
		if len(s.blobGets) != 0 {
			t.Errorf("Blob called: %v", s.blobGets)
		}
		if f := cachedFiles(t, r.w); len(f) != 0 {
			t.Errorf("the cache holds %v, want nothing", f)
		}
		if ents, err := os.ReadDir(r.w.scr); err != nil || len(ents) != 0 {
			t.Errorf("scratch directory after the failures: %v %v", ents, err)
		}
	})
}

// TestLocalObjectsDropOldCache: a worker whose server holds the objects
// removes the objects an earlier run cached, which it will never read.
func TestLocalObjectsDropOldCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		old, err := openStore(filepath.Join(dir, "cache"))
		if err != nil {
			t.Fatal(err)
		}
		obj := newFakeServer().putBlob([]byte("cached by an earlier run"))
		if _, err := old.Put(strings.NewReader("cached by an earlier run"), obj.Hash); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			s    Server
			kept bool
		}{{newFakeServer(), true}, {newLocalServer(), false}} {
			w, err := New(Config{Server: c.s, Name: "w1", Dir: dir, Backends: backend.Registry{"builtin": backend.Builtin{}},
				Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			synctest.Wait()
			cancel()
			<-done
			w.Close()
			if kept := old.Has(obj.Hash); kept != c.kept {
				t.Errorf("server %T: cached object kept %v, want %v", c.s, kept, c.kept)
			}
		}
	})
}
