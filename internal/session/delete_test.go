package session

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/store"
)

func TestDelete(t *testing.T) {
	st := store.NewMem()
	s := open(t, st)
	a := submit(t, s, mkjob(t, "", `<range first="1" last="8"/>`))
	b := submit(t, s, mkjob(t, "", fmt.Sprintf(`<frame id="1"><depends on="distren://farm/%d/frame/7"/></frame>`, a)))
	ls := claim(t, s, "w", 8)
	complete(t, s, "w", ls[0])

	err := s.Delete(ctx, a)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("distren://farm/%d", b)) {
		t.Fatalf("deleting a job another depends on: %v", err)
	}
	if err := s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Job(b); !errors.Is(err, ErrNotFound) {
		t.Errorf("the deleted job: %v", err)
	}
	live := s.LiveObjects()
	if !live[fmt.Sprintf("%064d", ls[0].Frame)] {
		t.Error("the output of a frame of a live job is not live")
	}
	if err := s.Delete(ctx, a); err != nil {
		t.Fatalf("once nothing depends on it: %v", err)
	}
	if len(s.LiveObjects()) != 0 {
		t.Errorf("objects live after every job was deleted: %v", s.LiveObjects())
	}
	// Its frames' leases are gone: heartbeats say stop, results are refused.
	hb, _ := s.Heartbeat(ctx, Heartbeat{Worker: "w", Leases: []LeaseProgress{{LeaseRef: LeaseRef{Job: a, Frame: ls[1].Frame, Epoch: ls[1].Epoch}}}})
	if len(hb.Stop) != 1 {
		t.Errorf("heartbeat for a deleted job's frame: %+v", hb)
	}
	if err := s.Complete(ctx, Completion{Worker: "w", Job: a, Frame: ls[1].Frame, Epoch: ls[1].Epoch, Output: "x"}); err == nil {
		t.Error("a result for a deleted job was accepted")
	}
	// After a restart the deletions hold and ids are not reused.
	s.Close()
	s2 := open(t, st)
	if len(s2.Jobs()) != 0 {
		t.Errorf("jobs after restart: %v", s2.Jobs())
	}
	if c := submit(t, s2, mkjob(t, "", `<frame id="1"/>`)); c != b+1 {
		t.Errorf("next job id %d, want %d", c, b+1)
	}
}

func TestExpired(t *testing.T) {
	s := open(t, store.NewMem())
	done := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
	running := submit(t, s, mkjob(t, "", `<frame id="1"/><frame id="2"/>`))
	ls := claim(t, s, "w", 2)
	for _, l := range ls {
		if l.Job == done {
			complete(t, s, "w", l)
		}
	}
	if got := s.Expired(time.Now().Add(time.Minute)); fmt.Sprint(got) != fmt.Sprint([]int64{done}) {
		t.Errorf("expired %v, want only the finished job %d (not %d)", got, done, running)
	}
	if got := s.Expired(time.Now().Add(-time.Minute)); len(got) != 0 {
		t.Errorf("expired before it was submitted: %v", got)
	}
}
