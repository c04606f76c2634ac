package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/distren/distren/internal/api"
)

// Listings are read a page at a time (docs/api.md, "Listings and paging"):
// each request asks for a page of elements after the cursor the last page
// ended at, and the next follows until the server names no next page. The
// Each functions hand the elements over as they are decoded, so that a
// caller going through a million frames holds one page; the plain ones
// collect them all.

// WithPageSize sets how many elements a listing asks for per request
// (default api.MaxPage, the most a server gives: a listing of a million
// frames takes 100 requests).
func WithPageSize(n int) Option {
	return func(c *Client, _ *http.Transport) { c.pageSize = n }
}

// each follows the pages of the listing at path (with query q), calling f
// with each element in order; an error from f stops the listing.
func each[T any](ctx context.Context, c *Client, path string, q url.Values, f func(T) error) error {
	size := c.pageSize
	if size <= 0 {
		size = api.MaxPage
	}
	q.Set("limit", strconv.Itoa(size))
	after := ""
	for {
		if after != "" {
			q.Set("after", after)
		}
		p := path + "?" + q.Encode()
		resp, err := c.req(ctx, "GET", p, nil, 0, "")
		if err != nil {
			return err
		}
		next := resp.Header.Get(api.NextHeader)
		n, err := decodeArray(resp.Body, f)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("GET %s: %w", p, err)
		}
		switch {
		case next == "":
			return nil
		case next == after || n == 0:
			// A server that sends the same page again would loop forever.
			return fmt.Errorf("GET %s: the server named %q as the next page again", p, next)
		}
		after = next
	}
}

// errStop marks an error of the caller's function, returned as it is.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// decodeArray decodes a JSON array element by element, calling f with each,
// and returns how many it held.
func decodeArray[T any](r io.Reader, f func(T) error) (int, error) {
	d := json.NewDecoder(r)
	if t, err := d.Token(); err != nil || t != json.Delim('[') {
		if err == nil {
			err = fmt.Errorf("decoding response: expected a JSON array, got %v", t)
		}
		return 0, fmt.Errorf("decoding response: %w", err)
	}
	n := 0
	for d.More() {
		var v T
		if err := d.Decode(&v); err != nil {
			return n, fmt.Errorf("decoding response: element %d: %w", n, err)
		}
		n++
		if err := f(v); err != nil {
			return n, errStop{err}
		}
	}
	if _, err := d.Token(); err != nil {
		return n, fmt.Errorf("decoding response: %w", err)
	}
	return n, nil
}

// unwrapStop returns the caller's own error as it is.
func unwrapStop(err error) error {
	var s errStop
	if errors.As(err, &s) {
		return s.err
	}
	return err
}

func collect[T any](ctx context.Context, c *Client, path string, q url.Values) ([]T, error) {
	out := []T{}
	err := each(ctx, c, path, q, func(v T) error {
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachJob calls f with each of the server's jobs, newest first, page by page.
func (c *Client) EachJob(ctx context.Context, f func(api.Job) error) error {
	return unwrapStop(each(ctx, c, "/v1/jobs", url.Values{}, f))
}

// Jobs lists the server's jobs, newest first.
func (c *Client) Jobs(ctx context.Context) ([]api.Job, error) {
	return collect[api.Job](ctx, c, "/v1/jobs", url.Values{})
}

// EachWorker calls f with each worker the server has heard from, by name.
func (c *Client) EachWorker(ctx context.Context, f func(api.Worker) error) error {
	return unwrapStop(each(ctx, c, "/v1/workers", url.Values{}, f))
}

// Workers lists the workers the server has heard from, with their backends.
func (c *Client) Workers(ctx context.Context) ([]api.Worker, error) {
	return collect[api.Worker](ctx, c, "/v1/workers", url.Values{})
}

func framesQuery(set string) url.Values {
	q := url.Values{}
	if set != "" {
		q.Set("frames", set)
	}
	return q
}

// EachFrame calls f with each frame of a job in id order, those in the frame
// set only if set is not "", page by page.
func (c *Client) EachFrame(ctx context.Context, id int64, set string, f func(api.Frame) error) error {
	return unwrapStop(each(ctx, c, fmt.Sprintf("/v1/jobs/%d/frames", id), framesQuery(set), f))
}

// Frames returns a job's frames, those in the frame set only if set is not "".
func (c *Client) Frames(ctx context.Context, id int64, set string) ([]api.Frame, error) {
	return collect[api.Frame](ctx, c, fmt.Sprintf("/v1/jobs/%d/frames", id), framesQuery(set))
}

// EachFile calls f with each numbered file of a job, in number order.
func (c *Client) EachFile(ctx context.Context, id int64, f func(api.File) error) error {
	return unwrapStop(each(ctx, c, fmt.Sprintf("/v1/jobs/%d/files", id), url.Values{}, f))
}

// Files lists a job's numbered files.
func (c *Client) Files(ctx context.Context, id int64) ([]api.File, error) {
	return collect[api.File](ctx, c, fmt.Sprintf("/v1/jobs/%d/files", id), url.Values{})
}
