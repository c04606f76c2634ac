package server

import (
	"net/http"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/session"
)

// Jobs: submit, read, cancel, retry (deleting and collecting: gc.go).

// postJob receives a package: a tar stream, or the tree of a package whose
// chunks were uploaded first (api.TreeContentType).
func (s *Server) postJob(r *http.Request) (any, error) {
	var sub session.Submitted
	var err error
	if r.Header.Get("Content-Type") == api.TreeContentType {
		sub, err = s.farm.SubmitTree(r.Context(), r.Body)
	} else {
		sub, err = s.farm.SubmitTar(r.Context(), r.Body, r.ContentLength)
	}
	if err != nil {
		return nil, err
	}
	return wireSubmitted(sub), nil
}

func (s *Server) getJob(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	j, err := s.sess.Job(id)
	if err != nil {
		return nil, err
	}
	return wireJob(&j), nil
}

func (s *Server) getSpec(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	return s.work.Spec(r.Context(), r.URL.Query().Get("server"), id)
}

func (s *Server) postCancel(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	n, err := s.sess.Cancel(r.Context(), id)
	return api.Changed{Frames: n}, err
}

func (s *Server) postRetry(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	var req api.Retry
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	var rs []manifest.Range
	if req.Frames != "" {
		if rs, err = manifest.ParseFrameSet(req.Frames); err != nil {
			return nil, badRequest("frames %q: %w", req.Frames, err)
		}
	}
	n, err := s.sess.Retry(r.Context(), id, rs)
	return api.Changed{Frames: n}, err
}

func (s *Server) postPause(r *http.Request) (any, error) { return s.pause(r, true) }

func (s *Server) postResume(r *http.Request) (any, error) { return s.pause(r, false) }

func (s *Server) pause(r *http.Request, paused bool) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	j, err := s.sess.Pause(r.Context(), id, paused)
	if err != nil {
		return nil, err
	}
	return wireJob(&j), nil
}

func (s *Server) postPriority(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	var p api.Priority
	if err := decode(r, &p); err != nil {
		return nil, err
	}
	if p.Priority == nil {
		return nil, badRequest("job %d priority: the body must give \"priority\" (0 to %d)", id, manifest.MaxPriority)
	}
	j, err := s.sess.SetPriority(r.Context(), id, *p.Priority)
	if err != nil {
		return nil, err
	}
	return wireJob(&j), nil
}
