package scheduler

import (
	"fmt"
	"slices"
	"strings"

	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/manifest"
)

// Frames of other servers. A frame here may depend on a frame of a peer
// (<depends on="distren://b/7/frame/3"/>): the peer's job is represented
// by a stand-in Job (Remote set, a negative id, never scheduled) holding
// the frames depended on, each waiting until the session learns — from
// the peer's event stream, internal/federation — that it is done there
// (RemoteDone) or will not be (RemoteFailed). Its dependents here count it
// among their unmet dependencies, are readied by it, and are blocked by
// it, as for a frame of a job of this server. Nothing of it is stored: at
// start the stand-ins are made again, waiting, and the session asks the
// peers once more.

type remoteKey struct {
	server string
	job    int64
}

// RemoteFrame names a frame of another server's job.
type RemoteFrame struct {
	Server     string
	Job, Frame int64
}

func (r RemoteFrame) String() string { return durl.Frame(r.Server, r.Job, r.Frame) }

// resolveRemote returns the stand-in of frame d of a peer's job, making it
// if it is the first frame here to depend on it.
func (s *Scheduler) resolveRemote(d manifest.Dep) (*Job, int32, error) {
	if !slices.Contains(s.opt.Peers, d.Server) {
		peers := "it has none: serve --peer NAME=URL names one"
		if len(s.opt.Peers) > 0 {
			peers = "its peers are " + strings.Join(s.opt.Peers, ", ")
		}
		return nil, 0, fmt.Errorf("depends on %s: server %q is neither this server (%s) nor one of its peers (%s)",
			durl.Frame(d.Server, d.Job, d.Frame), d.Server, s.opt.Name, peers)
	}
	k := remoteKey{d.Server, d.Job}
	t := s.remote[k]
	if t == nil {
		s.nextRemote--
		t = &Job{ID: s.nextRemote, Remote: d.Server, RemoteID: d.Job, index: map[int64]int32{}, Failures: map[string]int{}, ErrFrame: -1}
		s.remote[k] = t
	}
	i, ok := t.index[d.Frame]
	if !ok {
		i = int32(len(t.Frames))
		t.Frames = append(t.Frames, Frame{ID: d.Frame})
		t.Counts[Waiting]++
		t.index[d.Frame] = i
	}
	return t, i, nil
}

// undone reports whether one of the frames is not done.
func undone(refs []Ref) bool {
	for _, r := range refs {
		if r.Job.Frames[r.Idx].State != Done {
			return true
		}
	}
	return false
}

// RemoteDepended reports whether a frame here still depends on the peer's
// frame (its jobs not deleted).
func (s *Scheduler) RemoteDepended(r RemoteFrame) bool {
	t, i, ok := s.remoteFrame(r)
	return ok && len(t.Frames[i].Dependents) > 0
}

// remoteFrame finds the stand-in of a peer's frame.
func (s *Scheduler) remoteFrame(r RemoteFrame) (*Job, int32, bool) {
	t := s.remote[remoteKey{r.Server, r.Job}]
	if t == nil {
		return nil, 0, false
	}
	i, ok := t.index[r.Frame]
	return t, i, ok
}

// RemoteWaits lists the frames of peers that frames here wait for: those
// not known done, failed or canceled there, that a frame not done yet
// depends on.
func (s *Scheduler) RemoteWaits() []RemoteFrame {
	var out []RemoteFrame
	for k, t := range s.remote {
		for i := range t.Frames {
			if t.Frames[i].State == Waiting && undone(t.Frames[i].Dependents) {
				out = append(out, RemoteFrame{k.server, k.job, t.Frames[i].ID})
			}
		}
	}
	slices.SortFunc(out, func(a, b RemoteFrame) int {
		if c := strings.Compare(a.Server, b.Server); c != 0 {
			return c
		}
		if a.Job != b.Job {
			return int(a.Job - b.Job)
		}
		return int(a.Frame - b.Frame)
	})
	return out
}

// RemoteDone records that a peer's frame is done: the frames here that
// depend on it proceed. It reports whether anything changed.
func (s *Scheduler) RemoteDone(r RemoteFrame) bool {
	t, i, ok := s.remoteFrame(r)
	if !ok || t.Frames[i].State != Waiting {
		return false
	}
	s.done(t, i)
	return true
}

// RemoteFailed records that a peer's frame failed (or was canceled) there,
// with its message: the frames here that depend on it are blocked, as by
// a frame of this server. It reports whether anything changed.
func (s *Scheduler) RemoteFailed(r RemoteFrame, canceled bool, msg string) bool {
	t, i, ok := s.remoteFrame(r)
	if !ok || t.Frames[i].State != Waiting {
		return false
	}
	t.Frames[i].Err = msg
	st := Failed
	if canceled {
		st = Canceled
	}
	t.SetState(i, st)
	s.markBad(Ref{t, i})
	return true
}

// RemoteRetry makes a peer's frame that failed or was canceled there
// waited for again, to be asked of the peer anew (a retry of the frames
// here that it blocks: it may have been retried there); those frames wait
// again. It reports whether anything changed.
func (s *Scheduler) RemoteRetry(r Ref) bool {
	if r.Job.Remote == "" || !isRoot(r) {
		return false
	}
	r.Job.Frames[r.Idx].Err = ""
	r.Job.SetState(r.Idx, Waiting)
	s.unblockDown([]Ref{r})
	return true
}

// TakeChanged returns the ids of the jobs whose frames changed state since
// it was last called (stand-ins of peers' jobs aside), appended to dst.
func (s *Scheduler) TakeChanged(dst []int64) []int64 {
	for _, j := range s.changed {
		j.changed = false
		if j.Remote == "" {
			dst = append(dst, j.ID)
		}
	}
	clear(s.changed)
	s.changed = s.changed[:0]
	return dst
}
