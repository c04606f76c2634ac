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
	close(c.ready)
}
