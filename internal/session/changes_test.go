package session

import (
	"fmt"
	"slices"
	"testing"

	"github.com/distren/distren/internal/store"
)

// feed follows a session's change feed.
type feed struct {
	t *testing.T
	c *Change
}

// next returns the jobs of the next change, which the batch just
// acknowledged must have published: it is published before the commands
// of its batch return.
func (f *feed) next(what string) []int64 {
	f.t.Helper()
	if !closed(f.c.Ready) {
		f.t.Fatalf("%s: no change published", what)
	}
	c := f.c
	if c.Next == nil || c.Next.Seq != c.Seq+1 {
		f.t.Fatalf("%s: change %d is followed by %+v", what, c.Seq, c.Next)
	}
	f.c = c.Next
	return c.Jobs
}

// none checks that nothing was published since.
func (f *feed) none(what string) {
	f.t.Helper()
	if closed(f.c.Ready) {
		f.t.Fatalf("%s published change %d listing %v", what, f.c.Seq, f.c.Jobs)
	}
}

// TestChanges: a change is published after each batch that changes a job
// — a submission, a claim, a completion, a cancel, a deletion — listing
// each job once, numbered one after another; a batch that changes
// nothing publishes nothing.
func TestChanges(t *testing.T) {
	s := open(t, store.NewMem())
	f := &feed{t: t, c: s.Changes()}
	if f.c.Seq != 1 {
		t.Fatalf("the first change is %d, want 1", f.c.Seq)
	}
	f.none("opening")

	a := submit(t, s, mkjob(t, "", `<range first="1" last="3"/>`))
	if got := f.next("submit"); !slices.Equal(got, []int64{a}) {
		t.Errorf("submit: %v, want [%d]", got, a)
	}
	// A job whose frames all wait changes no frame's state: it is listed.
	b := submit(t, s, mkjob(t, "", `<frame id="1"><depends on="distren://farm/1/frame/1"/></frame>`))
	if got := f.next("submit of a waiting job"); !slices.Equal(got, []int64{b}) {
		t.Errorf("submit of a waiting job: %v, want [%d]", got, b)
	}
	if f.c != s.Changes() {
		t.Fatalf("Changes() is change %d, not the next one (%d)", s.Changes().Seq, f.c.Seq)
	}

	ls := claim(t, s, "w", 2) // frames 1 and 2 of a
	if got := f.next("claim"); !slices.Equal(got, []int64{a}) {
		t.Errorf("claim of two frames: %v, want [%d] once", got, a)
	}
	complete(t, s, "w", ls[0]) // readies b's frame
	if got := f.next("complete"); !slices.Equal(got, []int64{a, b}) {
		t.Errorf("complete: %v, want [%d %d]", got, a, b)
	}

	// Batches that change nothing.
	if _, err := s.Heartbeat(ctx, Heartbeat{Worker: "w", Leases: []LeaseProgress{{LeaseRef: ref(ls[1]), Progress: 0.5}}}); err != nil {
		t.Fatal(err)
	}
	f.none("a heartbeat")
	if got := claim(t, s, "other", 10); len(got) != 2 {
		t.Fatalf("claimed %v, want a/3 and b/1", frames(got))
	}
	f.next("claim")
	if got := claim(t, s, "other", 10); len(got) != 0 {
		t.Fatalf("claimed %v with nothing ready", frames(got))
	}
	f.none("a claim that found nothing")
	if _, err := s.Cancel(ctx, 99); err == nil {
		t.Fatal("cancel of no job succeeded")
	}
	f.none("a refused cancel")
	if _, err := s.Submit(ctx, mkjob(t, "", `<frame id="1"><depends on="distren://farm/99/frame/1"/></frame>`)); err == nil {
		t.Fatal("a job depending on no job was accepted")
	}
	f.none("a refused submission")

	if _, err := s.Cancel(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := f.next("cancel"); !slices.Equal(got, []int64{b}) {
		t.Errorf("cancel: %v, want [%d]", got, b)
	}
	if err := s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := f.next("delete"); !slices.Equal(got, []int64{b}) {
		t.Errorf("delete: %v, want [%d]", got, b)
	}
	f.none("nothing more")
}

// TestChangesAfterRestart: the state loaded at start is not a change of
// the first batch after it.
func TestChangesAfterRestart(t *testing.T) {
	st := store.NewMem()
	s := open(t, st)
	submit(t, s, mkjob(t, "", `<range first="1" last="2"/>`))
	s.Close()

	s = open(t, st)
	f := &feed{t: t, c: s.Changes()}
	if _, err := s.Heartbeat(ctx, Heartbeat{Worker: "w"}); err != nil {
		t.Fatal(err)
	}
	f.none("a heartbeat after a restart")
}

// TestChangesAfter: the changes kept are found by number; one evicted (more
// than KeepChanges ago) or not yet published is not.
func TestChangesAfter(t *testing.T) {
	s := open(t, store.NewMem())
	submit(t, s, mkjob(t, "", fmt.Sprintf(`<range first="1" last="%d"/>`, KeepChanges+10)))
	start := s.Changes().Seq // the next to be published
	for range KeepChanges + 5 {
		claim(t, s, "w", 1) // a change each
	}
	next := s.Changes().Seq
	if next != start+KeepChanges+5 {
		t.Fatalf("%d changes published, want %d", next-start, KeepChanges+5)
	}
	if c, ok := s.ChangesAfter(next - 1); !ok || c.Seq != next {
		t.Errorf("after the last: %d %v, want the next to come (%d)", c.Seq, ok, next)
	}
	if c, ok := s.ChangesAfter(next - 3); !ok || c.Seq != next-2 || len(c.Jobs) != 1 {
		t.Errorf("after next-3: %d %v %v, want change %d", c.Seq, ok, c.Jobs, next-2)
	}
	oldest := next - KeepChanges
	if c, ok := s.ChangesAfter(oldest - 1); !ok || c.Seq != oldest {
		t.Errorf("after the one before the oldest kept: %d %v, want %d", c.Seq, ok, oldest)
	}
	if _, ok := s.ChangesAfter(oldest - 2); ok {
		t.Error("a change evicted was found")
	}
	if _, ok := s.ChangesAfter(next + 5); ok {
		t.Error("a change not yet published was found")
	}
}
