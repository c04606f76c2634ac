package server

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/federation"
	"github.com/distren/distren/internal/ops"
)

// What the farm made: frames, the result bundle, files, vault objects.

func (s *Server) getFrame(r *http.Request) (any, error) {
	id, fr, err := jobFrame(r)
	if err != nil {
		return nil, err
	}
	f, err := s.sess.Frame(id, fr)
	if err != nil {
		return nil, err
	}
	return wireFrame(&f), nil
}

// getResult streams the result bundle, built as it is sent.
func (s *Server) getResult(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return err
	}
	rs, err := frameSet(r)
	if err != nil {
		return err
	}
	sw := &sentWriter{w: w}
	err = s.farm.WriteResult(r.Context(), id, rs, func(frames int) io.Writer {
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("X-Distren-Frames", strconv.Itoa(frames))
		return sw
	})
	if err != nil {
		w.Header().Del("X-Distren-Frames")
		return s.abort(w, r, sw.sent, err)
	}
	return nil
}

func (s *Server) getFrameOutput(w http.ResponseWriter, r *http.Request) error {
	id, fr, err := jobFrame(r)
	if err != nil {
		return err
	}
	o, err := s.farm.FrameOutput(r.Context(), id, fr)
	if err != nil {
		return err
	}
	return s.serveObject(w, r, o, "application/x-tar")
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return err
	}
	n, err := pathInt(r, "n", 1)
	if err != nil {
		return err
	}
	sw := &sentWriter{w: w}
	err = s.farm.WriteFile(r.Context(), id, n, func(name string, size int64) io.Writer {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		return sw
	})
	if err != nil {
		// Before a byte is sent, an error answer (without the file's
		// headers); after, a cut connection.
		w.Header().Del("Content-Length")
		w.Header().Del("Content-Disposition")
		return s.abort(w, r, sw.sent, err)
	}
	return nil
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if r.Header.Get(api.PeerHeader) != "" { // a peer's request: served from this vault alone
		ctx = federation.FromPeer(ctx)
	}
	o, err := s.work.Blob(ctx, r.PathValue("hash"))
	if err != nil {
		return err
	}
	obj, ok := o.(ops.Object)
	if !ok { // the farm's operations answer ops.Objects: anything else is a defect
		o.Close()
		return fmt.Errorf("object %s: opened as %T, not an ops.Object", r.PathValue("hash"), o)
	}
	return s.serveObject(w, r, obj, "application/octet-stream")
}

// serveObject answers an object of the vault, with ranges.
func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, o ops.Object, ctype string) error {
	defer o.Close()
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, "", time.Time{}, o)
	return nil
}
