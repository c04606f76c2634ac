package session

import (
	"context"

	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/scheduler"
	"github.com/distren/distren/internal/store"
)

// Frames of peers. A frame of a job here may depend on a frame of a peer's
// job (<depends on="distren://b/7/frame/3"/>, b one of Options.Peers): it
// waits until the session is told that frame is done there, with its
// output already in this server's vault (RemoteDone), or that it failed or
// was canceled (RemoteFailed), and then proceeds, or is blocked, as for a
// frame of this server. internal/federation watches the peers' event
// streams and tells it. What is known of the peers' frames is not stored:
// at start they are asked again (RemoteWaits).

// RemoteFrame names a frame of a peer's job.
type RemoteFrame = scheduler.RemoteFrame

// RemoteWaits lists the frames of peers that frames here wait for.
func (s *Session) RemoteWaits() []RemoteFrame {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sched.RemoteWaits()
}

// RemoteSignal returns a channel closed when frames here may next have
// come to wait for frames of peers (a job submitted or retried, the state
// loaded): take it before RemoteWaits, then wait on it.
func (s *Session) RemoteSignal() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.remoteCh
}

// RemoteDone records that a peer's frame is done, its output tarball
// (output, size bytes) stored in this server's vault: the frames here that
// depend on it proceed, with that output placed in their scratch
// directories like a local dependency's.
func (s *Session) RemoteDone(ctx context.Context, r RemoteFrame, output string, size int64) error {
	_, err := s.do(ctx, func(store.Tx) (any, error) {
		if s.sched.RemoteDone(r) {
			s.remote[r] = frameOut{output: output, size: size}
		}
		return nil, nil
	})
	return err
}

// RemoteFailed records that a peer's frame failed there (or, canceled, was
// canceled), with its message: the frames here that depend on it fail as
// for a frame of this server ("depends on distren://b/7/frame/3, which
// failed: ...").
func (s *Session) RemoteFailed(ctx context.Context, r RemoteFrame, canceled bool, msg string) error {
	_, err := s.do(ctx, func(store.Tx) (any, error) {
		s.sched.RemoteFailed(r, canceled, msg)
		return nil, nil
	})
	return err
}

// remoteOut returns what is known of a peer's frame that t, a stand-in of
// a peer's job, holds at ti.
func (s *Session) remoteOut(t *scheduler.Job, ti int32) (RemoteFrame, frameOut) {
	r := RemoteFrame{Server: t.Remote, Job: t.RemoteID, Frame: t.Frames[ti].ID}
	return r, s.remote[r]
}

// remoteURL is the URL of frame i of the stand-in of a peer's job.
func remoteURL(t *scheduler.Job, i int32) string {
	return durl.Frame(t.Remote, t.RemoteID, t.Frames[i].ID)
}
