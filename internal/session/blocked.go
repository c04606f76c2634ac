package session

import (
	"fmt"
	"strings"
)

// Frames that cannot run. A frame that depends on a frame — of its own job
// or of another — that failed or was canceled can never be rendered as
// things stand: it is blocked (fsBlocked), reported as failed with a message
// naming the URL of the frame at fault, and its job ends like any job whose
// frames failed. Blocking is never stored: it follows from the states of the
// frames depended on, which are, so it is derived again at start (rebuild),
// and it ends by itself when those frames are retried. The scheduler keeps
// it (internal/scheduler, blocked.go); the session words it.

// blockedMessage says why blocked frame i of j cannot run, naming the URL
// of the frame at fault.
func (s *Session) blockedMessage(j *job, i int32) string {
	via, ok := s.sched.BadDep(j.Job, i)
	if !ok {
		return "cannot run: a frame it depends on failed or was canceled"
	}
	root := s.sched.RootOf(via)
	if via == root {
		return fmt.Sprintf("depends on %s, which %s", s.refURL(via), s.fault(root))
	}
	return fmt.Sprintf("depends on %s, which waits for %s, which %s", s.refURL(via), s.refURL(root), s.fault(root))
}

func (s *Session) refURL(r frameRef) string {
	if r.Job.Remote != "" {
		return remoteURL(r.Job, r.Idx)
	}
	return frameURL(s.name, r.Job.ID, r.Job.Frames[r.Idx].ID)
}

// fault says what happened to root, a failed or canceled frame.
func (s *Session) fault(root frameRef) string {
	switch {
	case root.Job.Frames[root.Idx].State == fsFailed:
		return "failed: " + summary(root.Job.Frames[root.Idx].Err)
	case root.Job.Remote != "":
		return "was canceled on " + root.Job.Remote
	case s.jobs[root.Job.ID].rec.Stop != "":
		return fmt.Sprintf("was canceled when the farm stopped its job %s for a fault of its own", jobURL(s.name, root.Job.ID))
	}
	return "was canceled"
}

// summary shortens a failure message to one line: its first, and, if that
// only announces what follows (it ends with a colon), its last.
func summary(msg string) string {
	msg = strings.TrimSpace(msg)
	first, rest, more := strings.Cut(msg, "\n")
	first = strings.TrimSpace(first)
	if more && strings.HasSuffix(first, ":") {
		rest = strings.TrimSpace(rest)
		first += " " + strings.TrimSpace(rest[strings.LastIndexByte(rest, '\n')+1:])
	}
	return first
}
