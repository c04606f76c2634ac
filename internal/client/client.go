// Package client is the typed client of distren's HTTP API. The CLI, the
// workers and the tests all talk to servers through it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
)

// Error is an error response from the server.
type Error struct {
	Status int    // HTTP status
	Msg    string // the server's message
	Op     string // what was asked
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Op, e.Msg) }

// IsStatus reports whether err is a server response with that HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Client talks to one server.
type Client struct {
	base     string
	hc       *http.Client
	token    string
	header   http.Header // sent with every request
	pageSize int         // elements per page of a listing (list.go); 0: api.MaxPage
}

// Option configures a Client.
type Option func(*Client, *http.Transport)

// WithToken sends the API token with every request (Authorization: Bearer).
func WithToken(token string) Option {
	return func(c *Client, _ *http.Transport) { c.token = token }
}

// WithHeader sends a header with every request.
func WithHeader(key, value string) Option {
	return func(c *Client, _ *http.Transport) {
		if c.header == nil {
			c.header = http.Header{}
		}
		c.header.Set(key, value)
	}
}

type plainKey struct{}

// headerKey carries one header of one request in its context.
type headerKey struct{}

// Plain marks ctx so that requests made with it carry the client's token
// but none of its WithHeader headers: a server asking a peer who it is, to
// check a request that names it, does not ask to be checked in turn.
func Plain(ctx context.Context) context.Context { return context.WithValue(ctx, plainKey{}, true) }

// WithTLS sets how https:// servers are verified, e.g. a private CA's pool
// as RootCAs; by default, against the system's roots.
func WithTLS(cfg *tls.Config) Option {
	return func(_ *Client, tr *http.Transport) { tr.TLSClientConfig = cfg }
}

// New returns a client for the server at base (http://host:port or
// https://host:port).
func New(base string, opts ...Option) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: expected http://host:port or https://host:port", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	c := &Client{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr}}
	for _, o := range opts {
		o(c, tr)
	}
	return c, nil
}

// Base returns the server URL.
func (c *Client) Base() string { return c.base }

func (c *Client) req(ctx context.Context, method, path string, body io.Reader, length int64, ctype string) (*http.Response, error) {
	r, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		r.ContentLength = length
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
	}
	if c.token != "" {
		r.Header.Set("Authorization", "Bearer "+c.token)
	}
	if ctx.Value(plainKey{}) == nil {
		for k, v := range c.header {
			r.Header[k] = v
		}
	}
	if h, ok := ctx.Value(headerKey{}).([2]string); ok {
		r.Header.Set(h[0], h[1])
	}
	resp, err := c.hc.Do(r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
			if e.Error == "" {
				e.Error = resp.Status
			}
		}
		return nil, &Error{Status: resp.StatusCode, Msg: e.Error, Op: method + " " + path}
	}
	return resp, nil
}

// call sends in (JSON, if not nil) and decodes the response into out (if not nil).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	var n int64
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, n = bytes.NewReader(b), int64(len(b))
	}
	resp, err := c.req(ctx, method, path, body, n, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// Server describes the server.
func (c *Client) Server(ctx context.Context) (api.Server, error) {
	var s api.Server
	return s, c.call(ctx, "GET", "/v1/server", nil, &s)
}

// Whoami says whether the server requires a token, and whose the client's is.
func (c *Client) Whoami(ctx context.Context) (api.Identity, error) {
	var id api.Identity
	return id, c.call(ctx, "GET", "/v1/whoami", nil, &id)
}

// Submit uploads a job package (a tar stream, optionally gzip or zstd
// compressed); size is its length, or -1 if unknown (chunked upload).
func (c *Client) Submit(ctx context.Context, pkg io.Reader, size int64) (api.Submitted, error) {
	var s api.Submitted
	resp, err := c.req(ctx, "POST", "/v1/jobs", pkg, size, "application/x-tar")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// SubmitTree creates a job from a tree whose chunks the server holds.
func (c *Client) SubmitTree(ctx context.Context, tree []byte) (api.Submitted, error) {
	var s api.Submitted
	resp, err := c.req(ctx, "POST", "/v1/jobs", bytes.NewReader(tree), int64(len(tree)), api.TreeContentType)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// MissingChunks returns which of the chunks (hex SHA-256) the server lacks,
// asking in batches.
func (c *Client) MissingChunks(ctx context.Context, hashes []string) ([]string, error) {
	var missing []string
	for len(hashes) > 0 {
		n := min(len(hashes), api.MaxMissingBatch)
		var r api.MissingResponse
		if err := c.call(ctx, "POST", "/v1/chunks/missing", api.MissingRequest{Chunks: hashes[:n]}, &r); err != nil {
			return nil, err
		}
		missing = append(missing, r.Missing...)
		hashes = hashes[n:]
	}
	return missing, nil
}

// PutChunk uploads a chunk; the server checks it has the hash it is named by.
func (c *Client) PutChunk(ctx context.Context, hash string, data io.Reader, size int64) error {
	resp, err := c.req(ctx, "PUT", "/v1/chunks/"+url.PathEscape(hash), data, size, "application/octet-stream")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// Delete deletes a job.
func (c *Client) Delete(ctx context.Context, id int64) error {
	return c.call(ctx, "DELETE", fmt.Sprintf("/v1/jobs/%d", id), nil, nil)
}

// GC runs a garbage collection on the server now.
func (c *Client) GC(ctx context.Context) (api.GCResult, error) {
	var r api.GCResult
	return r, c.call(ctx, "POST", "/v1/gc", struct{}{}, &r)
}

// Job returns a job's summary.
func (c *Client) Job(ctx context.Context, id int64) (api.Job, error) {
	var j api.Job
	return j, c.call(ctx, "GET", fmt.Sprintf("/v1/jobs/%d", id), nil, &j)
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, id int64) (api.Changed, error) {
	var ch api.Changed
	return ch, c.call(ctx, "POST", fmt.Sprintf("/v1/jobs/%d/cancel", id), struct{}{}, &ch)
}

// Pause stops giving out a job's frames (paused), or resumes it; it
// returns the job.
func (c *Client) Pause(ctx context.Context, id int64, paused bool) (api.Job, error) {
	verb := "pause"
	if !paused {
		verb = "resume"
	}
	var j api.Job
	return j, c.call(ctx, "POST", fmt.Sprintf("/v1/jobs/%d/%s", id, verb), struct{}{}, &j)
}

// SetPriority changes a job's priority; it returns the job.
func (c *Client) SetPriority(ctx context.Context, id int64, priority int) (api.Job, error) {
	var j api.Job
	return j, c.call(ctx, "POST", fmt.Sprintf("/v1/jobs/%d/priority", id), api.Priority{Priority: &priority}, &j)
}

// Retry renders frames of a job again (set "" = the failed ones).
func (c *Client) Retry(ctx context.Context, id int64, set string) (api.Changed, error) {
	var ch api.Changed
	return ch, c.call(ctx, "POST", fmt.Sprintf("/v1/jobs/%d/retry", id), api.Retry{Frames: set}, &ch)
}

// Result streams the job's result bundle (a tar of the done frames' outputs),
// those in the frame set only if set is not "".
func (c *Client) Result(ctx context.Context, id int64, set string) (io.ReadCloser, error) {
	return c.stream(ctx, fmt.Sprintf("/v1/jobs/%d/result%s", id, query("frames", set)))
}

// FrameOutput streams a frame's output tarball.
func (c *Client) FrameOutput(ctx context.Context, id, frame int64) (io.ReadCloser, error) {
	return c.stream(ctx, fmt.Sprintf("/v1/jobs/%d/frames/%d/output", id, frame))
}

// File streams one numbered file of a job.
func (c *Client) File(ctx context.Context, id, n int64) (io.ReadCloser, error) {
	return c.stream(ctx, fmt.Sprintf("/v1/jobs/%d/files/%d", id, n))
}

// Spec returns what a worker needs to render a job.
// server is "" for a job of the server's own, or the peer that lent the
// worker frames of its job.
func (c *Client) Spec(ctx context.Context, server string, id int64) (api.JobSpec, error) {
	var s api.JobSpec
	return s, c.call(ctx, "GET", fmt.Sprintf("/v1/jobs/%d/spec%s", id, query("server", server)), nil, &s)
}

// Blob streams a stored object.
func (c *Client) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	return c.stream(ctx, "/v1/blobs/"+url.PathEscape(hash))
}

// Claim asks for frames, waiting on the server up to req.WaitMS.
func (c *Client) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	var r api.ClaimResponse
	return r, c.call(ctx, "POST", "/v1/claim", req, &r)
}

// Heartbeat extends leases.
func (c *Client) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	var r api.HeartbeatResponse
	return r, c.call(ctx, "POST", "/v1/heartbeat", hb, &r)
}

// Complete uploads a frame's output tarball and reports the frame done.
func (c *Client) Complete(ctx context.Context, worker string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	q := url.Values{"worker": {worker}, "epoch": {strconv.FormatUint(l.Epoch, 10)}, "render_ms": {strconv.FormatInt(render.Milliseconds(), 10)}}
	if l.Server != "" {
		q.Set("server", l.Server)
	}
	resp, err := c.req(ctx, "POST", fmt.Sprintf("/v1/jobs/%d/frames/%d/output?%s", l.Job, l.Frame, q.Encode()), tarball, size, "application/x-tar")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// Fail reports a failed attempt.
func (c *Client) Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error {
	return c.call(ctx, "POST", fmt.Sprintf("/v1/jobs/%d/frames/%d/fail%s", l.Job, l.Frame, query("server", l.Server)), f, nil)
}

// Hello asks the server what it says of itself to its peers.
func (c *Client) Hello(ctx context.Context) (api.PeerHello, error) {
	var h api.PeerHello
	return h, c.call(ctx, "GET", "/v1/peer", nil, &h)
}

// Peers lists the server's peers.
func (c *Client) Peers(ctx context.Context) ([]api.Peer, error) {
	var ps []api.Peer
	return ps, c.call(ctx, "GET", "/v1/peers", nil, &ps)
}

// Lent tells a lender that a frame it lent is rendered.
func (c *Client) Lent(ctx context.Context, job, frame int64, out api.PeerOutput) error {
	return c.call(ctx, "POST", fmt.Sprintf("/v1/jobs/%d/frames/%d/lent", job, frame), out, nil)
}

func (c *Client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.req(ctx, "GET", path, nil, 0, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func query(k, v string) string {
	if v == "" {
		return ""
	}
	return "?" + url.Values{k: {v}}.Encode()
}
