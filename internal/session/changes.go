package session

import "slices"

// The change feed: the notification façade's source. After each batch of
// commands is durable, the dispatcher publishes one Change listing the
// jobs it changed — a frame's state, a submission, a cancel, a deletion —
// each job once however many of its frames changed. Readers follow the
// feed without polling the state and without holding anything up: a
// Change is a link of a list whose next link is published by closing
// Ready, and links nobody holds any more are garbage. internal/server
// serves it as GET /v1/events; internal/federation's peers wait on it
// for the frames their own frames depend on.

// Change is one published batch of changes.
type Change struct {
	// Seq numbers the changes of this process, from 1.
	Seq uint64
	// Jobs changed, each once (valid once Ready is closed).
	Jobs []int64
	// Ready is closed when Jobs and Next are set.
	Ready <-chan struct{}
	ready chan struct{}
	// Next is the change after this one (valid once Ready is closed).
	Next *Change
}

func newChange(seq uint64) *Change {
	ch := make(chan struct{})
	return &Change{Seq: seq, Ready: ch, ready: ch}
}

// KeepChanges is how many published changes the session keeps, so that a
// reader that lost the feed for a while resumes where it was
// (ChangesAfter).
const KeepChanges = 4096

// ChangesAfter returns the change after the one numbered seq, if it is
// still kept, and true; or, if it is not (too old, or numbered by another
// process: Boot tells them apart), the next change to be published and
// false — the reader has missed changes.
func (s *Session) ChangesAfter(seq uint64) (*Change, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case seq+1 == s.feed.Seq:
		return s.feed, true
	case len(s.recent) > 0 && seq+1 >= s.recent[0].Seq && seq+1 < s.feed.Seq:
		return s.recent[seq+1-s.recent[0].Seq], true
	}
	return s.feed, false
}

// Boot returns the server's incarnation: change numbers are this
// process's.
func (s *Session) Boot() int64 { return s.boot }

// Changes returns the next change to be published: wait on its Ready,
// read it, go on to its Next. Take it before reading the state it is
// about, so that no change after the reading is missed.
func (s *Session) Changes() *Change {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.feed
}

// publish ends the current change with the jobs the batch changed, if
// any; called by the dispatcher with the lock held, after the commit.
func (s *Session) publish() {
	jobs := s.sched.TakeChanged(s.touched)
	s.touched = s.touched[:0]
	if len(jobs) == 0 {
		return
	}
	out := slices.Compact(slices.Sorted(slices.Values(jobs)))
	c := s.feed
	c.Jobs = out
	c.Next = newChange(c.Seq + 1)
	s.feed = c.Next
	if len(s.recent) == KeepChanges {
		s.recent[0] = nil
		s.recent = s.recent[1:]
	}
	s.recent = append(s.recent, c)
	close(c.ready)
}
