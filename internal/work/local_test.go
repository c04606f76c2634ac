package work

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
	"github.com/distren/distren/internal/worker"
)

// TestSlotsInProcess: worker slots render a job through the farm's
// operations called in process — no HTTP server, no token anywhere — and
// the frames end done under the slots' name, their outputs in the bundle.
func TestSlotsInProcess(t *testing.T) {
	p := opstest.NewParts(t, "inproc", vault.Options{SmallObjects: 64 << 10})
	f := p.Ops(ops.Config{})
	const manifest = `<distrenjob version="1"><name>inproc</name>
<backend name="builtin"><width>8</width><height>8</height><samples>1</samples><output>f-{frame}.png</output></backend>
<frames><range first="1" last="6"/></frames><outputs><output>*.png</output></outputs></distrenjob>`
	pkg := opstest.TarOf(t, map[string]string{"distrenjob.xml": manifest})
	sub, err := f.SubmitTar(context.Background(), bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Server: New(f, 50*time.Millisecond), Name: "inproc-local", Slots: 2,
		Dir: filepath.Join(t.TempDir(), "worker"), Backends: backend.Default(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for {
		j, err := p.Session.Job(sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == session.JobDone {
			break
		}
		if j.State == session.JobFailed || time.Now().After(deadline) {
			t.Fatalf("job %s after %v: %+v", j.State, time.Minute, j)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("slots: %v", err)
	}
	frames, err := p.Session.Frames(sub.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		if fr.State != session.StateDone || fr.Worker != "inproc-local" || fr.Output == "" {
			t.Errorf("frame %d: %+v", fr.ID, fr)
		}
	}
}

// TestOutcome: the operations' errors reach the slots as the API's
// statuses reach a remote worker.
func TestOutcome(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error // nil: transient
	}{
		{fmt.Errorf("frame 3: %w", session.ErrStaleLease), worker.ErrStale},
		{fmt.Errorf("job 9: %w", session.ErrNotFound), worker.ErrRejected},
		{&ops.Error{Kind: ops.TooLarge, Err: errors.New("frame 3 output: larger than the server's limit")}, worker.ErrRejected},
		{&ops.Error{Kind: ops.Invalid, Err: errors.New("frame 3 output: the tarball holds no file")}, worker.ErrRejected},
		{&ops.Error{Kind: ops.NotFound, Err: errors.New("no such object")}, worker.ErrRejected},
		{fmt.Errorf("commit: %w", session.ErrNotSaved), nil},
		{errors.New("disk on fire"), nil},
	} {
		got := outcome(c.err)
		for _, s := range []error{worker.ErrStale, worker.ErrRejected, worker.ErrDenied} {
			if errors.Is(got, s) != (s == c.want) {
				t.Errorf("%v: errors.Is(%v) = %v", c.err, s, errors.Is(got, s))
			}
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%v: the operation's error is lost: %v", c.err, got)
		}
	}
	if outcome(nil) != nil {
		t.Error("no error became one")
	}
}
