package server

import (
	"net/http"

	"github.com/distren/distren/internal/api"
)

// Deleting jobs and collecting garbage (ops/gc.go).

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
	c, err := s.farm.Collect(r.Context())
	return api.GCResult{JobsDeleted: c.JobsDeleted, Objects: c.Objects, Bytes: c.Bytes, Kept: c.Kept}, err
}
