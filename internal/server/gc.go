package server

import (
	"context"
	"net/http"
	"time"

	"github.com/distren/distren/internal/api"
)

// GC configures garbage collection of the vault.
type GC struct {
	// Grace keeps unreferenced objects written or touched this recently: a
	// client may be uploading the chunks of a job it has not submitted yet
	// (default 1h).
	Grace time.Duration
	// Retention deletes finished jobs submitted longer ago than this; 0
	// keeps them until deleted by hand.
	Retention time.Duration
}

func (s *Server) deleteJob(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	if err := s.sess.Delete(r.Context(), id); err != nil {
		return nil, err
	}
	s.log.Info("job deleted", "job", id)
	return struct{}{}, nil
}

func (s *Server) postGC(r *http.Request) (any, error) {
	return s.Collect(r.Context())
}

// Collect deletes the jobs past retention, then removes the vault objects no
// job refers to (beyond the grace period). Job submissions wait while the
// live set is computed and swept, so none can refer to an object being
// removed.
func (s *Server) Collect(ctx context.Context) (api.GCResult, error) {
	var res api.GCResult
	if s.gc.Retention > 0 {
		for _, id := range s.sess.Expired(time.Now().Add(-s.gc.Retention)) {
			if err := s.sess.Delete(ctx, id); err != nil {
				s.log.Warn("retention: job not deleted", "job", id, "err", err)
				continue
			}
			res.JobsDeleted++
		}
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	live := s.sess.LiveObjects()
	sw, err := s.vault.Sweep(ctx, func(h string) bool { return live[h] }, time.Now().Add(-s.gc.Grace))
	res.Objects, res.Bytes, res.Kept = sw.Objects, sw.Bytes, sw.Kept
	if err != nil {
		return res, err
	}
	if res.Objects > 0 || res.JobsDeleted > 0 {
		s.log.Info("garbage collected", "jobs_deleted", res.JobsDeleted, "objects", res.Objects, "bytes", res.Bytes, "kept_recent", res.Kept)
	}
	return res, nil
}

// CollectEvery runs Collect every interval until ctx ends.
func (s *Server) CollectEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := s.Collect(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("garbage collection failed", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}
