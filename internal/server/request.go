package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/manifest"
)

// Decoding requests: path values, queries and JSON bodies.

func pathInt(r *http.Request, name string, min int64) (int64, error) {
	v := r.PathValue(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min {
		return 0, badRequest("%s %q: expected a whole number %d..%d", name, v, min, int64(math.MaxInt64))
	}
	return n, nil
}

// jobFrame reads the {job} and {frame} of a request's path.
func jobFrame(r *http.Request) (job, frame int64, err error) {
	if job, err = pathInt(r, "job", 1); err != nil {
		return 0, 0, err
	}
	frame, err = pathInt(r, "frame", 0)
	return job, frame, err
}

func frameSet(r *http.Request) ([]manifest.Range, error) {
	v := r.URL.Query().Get("frames")
	if v == "" {
		return nil, nil
	}
	rs, err := manifest.ParseFrameSet(v)
	if err != nil {
		return nil, badRequest("frames %q: %w", v, err)
	}
	return rs, nil
}

// maxJSONBody bounds a JSON request body.
const maxJSONBody = 1 << 20

// decode reads a JSON request body of at most maxJSONBody bytes into v.
func decode(r *http.Request, v any) error {
	return decodeLimit(r, v, maxJSONBody)
}

// decodeLimit reads a JSON request body of at most limit bytes into v: one
// JSON value, only the fields v has, nothing after it. A body over the
// limit is a 413; any other problem a 400.
func decodeLimit(r *http.Request, v any, limit int64) error {
	d := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	d.DisallowUnknownFields()
	err := d.Decode(v)
	if err == nil {
		// A second value, or anything but white space, after the first.
		if _, next := d.Token(); next != io.EOF {
			err = errors.New("unexpected data after the JSON value")
			if next != nil && !errors.As(next, new(*json.SyntaxError)) {
				err = next
			}
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mbe):
		return &httpError{http.StatusRequestEntityTooLarge,
			fmt.Errorf("%s %s: request body larger than the limit of %d bytes", r.Method, r.URL.Path, limit)}
	case errors.Is(err, io.EOF):
		return badRequest("%s %s: request body: empty (expected a JSON object)", r.Method, r.URL.Path)
	}
	return badRequest("%s %s: request body: %w", r.Method, r.URL.Path, err)
}

// checkWorker checks a worker's name as claims, heartbeats and reports give it.
func checkWorker(name string) error {
	switch {
	case name == "":
		return errors.New("worker is missing")
	case len(name) > maxWorkerName:
		return fmt.Errorf("worker name of %d bytes is longer than %d", len(name), maxWorkerName)
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f || r == utf8.RuneError }):
		return fmt.Errorf("worker %q: control characters or invalid UTF-8 in the name", name)
	}
	return nil
}

// maxWorkerName bounds a worker's name.
const maxWorkerName = 256

func leaseOf(r *http.Request) (worker string, l api.LeaseRef, err error) {
	if l.Job, l.Frame, err = jobFrame(r); err != nil {
		return
	}
	q := r.URL.Query()
	if l.Epoch, err = strconv.ParseUint(q.Get("epoch"), 10, 64); err != nil {
		return "", l, badRequest("epoch %q: expected a number", q.Get("epoch"))
	}
	l.Server = q.Get("server")
	worker = q.Get("worker")
	if werr := checkWorker(worker); werr != nil {
		return "", l, badRequest("%w", werr)
	}
	return worker, l, nil
}
