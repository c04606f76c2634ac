package worker

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/distren/distren/internal/api"
)

// Server is everything a worker needs of the server it renders for. The
// HTTP client implements it for remote workers (client.Client.ForWorker);
// an implementation in the server's own process needs no transport.
//
// Errors: an outcome the worker acts on is reported by an error for which
// errors.Is matches one of ErrDenied, ErrStale or ErrRejected, and whose
// message is the server's. Any other error is taken as transient (the
// server unreachable, overloaded or restarting): the worker tries again
// later.
type Server interface {
	// Claim asks for up to req.Max tasks, waiting up to req.WaitMS for some
	// to be ready; it may return none. A claim refused as ErrDenied stops
	// the worker.
	Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error)
	// Heartbeat extends the leases listed, and answers those the worker
	// must abandon (canceled, expired or superseded).
	Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error)
	// Spec returns what the worker needs to render a job: its manifest and
	// its input files. server is the lease's Server: "" for a job of the
	// server's own, a peer's name for a frame that peer lent it.
	Spec(ctx context.Context, server string, job int64) (api.JobSpec, error)
	// Blob streams a stored object: a chunk of an input file, or the output
	// tarball of a frame another frame depends on.
	Blob(ctx context.Context, hash string) (io.ReadCloser, error)
	// Complete stores a frame's output tarball, read from tarball to its
	// end (size bytes, or -1 if unknown), and reports the frame done.
	// ErrStale: the lease has moved on and the result is not wanted;
	// ErrRejected: the server will not take this output.
	Complete(ctx context.Context, worker string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error
	// Fail reports a failed attempt (or, with f.NotRun, a frame given back
	// unattempted). ErrStale as for Complete.
	Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error
	// String names the server in the worker's logs (its URL, say).
	String() string
}

// LocalObjects is what a Server also implements when it holds the stored
// objects itself, in the worker's own process — the local slots of
// `distren serve` and `distren render`. A worker whose Server implements it
// keeps no copy of them: it copies each input file and extracts each
// dependency's output straight from the server's store into the scratch
// directory, never calls Blob, and writes nothing to its cache. A worker
// whose objects cross a network (a remote worker) keeps its cache.
type LocalObjects interface {
	// OpenObject opens a stored object for reading and returns its size.
	// Its reads are verified: a read fails rather than hand over bytes that
	// do not hash to the object's name. An object the server does not hold
	// is reported as by Blob.
	OpenObject(ctx context.Context, hash string) (io.ReadCloser, int64, error)
}

// The outcomes a Server reports that the worker acts on. Match them with
// errors.Is: implementations wrap them with the server's own message.
var (
	// ErrDenied: the server refuses the worker's credential (revoked, or a
	// role that may not claim). The worker stops.
	ErrDenied = errors.New("credential refused by the server")
	// ErrStale: the lease is no longer the worker's (expired, canceled,
	// leased again), so its result is refused. It is not retried and not
	// reported as a failure.
	ErrStale = errors.New("lease no longer held")
	// ErrRejected: the server refuses the request itself (an output too
	// large, a name it will not store). Sending it again would not help.
	ErrRejected = errors.New("request rejected by the server")
)
