package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
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

// Collection and uploads. A collection holds gcMu for writing while it
// computes the live set and sweeps the vault. A request never holds gcMu
// while it reads from the network: it receives its body and stores what it
// holds in the vault first, with no lock, keeping a copy (a spool, or the
// unpacked package). Only then does it take gcMu for reading, for the short
// step that records what it stored (the job, the frame done). If a
// collection ran or started meanwhile — gcRuns tells — that sweep may have
// removed what the request stored or found stored, so within that step the
// request first stores it again from its copy (the vault writes only what
// is missing). Recorded, the objects are live for every later collection;
// a chunk, recorded by nothing, was touched as it was stored, so the next
// collections keep it through the grace period. A waiting collection thus
// waits only for such short steps, never for a slow body, and a request
// waits only while a sweep runs (Go's RWMutex queues new readers behind a
// waiting writer).

// spoolMemory is how much of an upload's copy is kept in memory; beyond, the
// copy is a temporary file.
const spoolMemory = 64 << 10

// spool keeps the copy of an upload: written to as the body is read, read
// back to store the upload again.
type spool struct {
	dir string
	mem bytes.Buffer
	f   *os.File
}

// spoolError says what failed, and that the disk is full if it is: the
// copy is kept on the server's own disk, beside the state store.
func spoolError(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("the server's disk is full: keeping a copy of the upload: %w", err)
	}
	return fmt.Errorf("keeping a copy of the upload: %w", err)
}

func (sp *spool) Write(p []byte) (int, error) {
	if sp.f == nil && sp.mem.Len()+len(p) <= spoolMemory {
		return sp.mem.Write(p)
	}
	if sp.f == nil {
		f, err := os.CreateTemp(sp.dir, "upload-*.spool")
		if err != nil {
			return 0, spoolError(err)
		}
		sp.f = f
		if _, err := f.Write(sp.mem.Bytes()); err != nil {
			return 0, spoolError(err)
		}
		sp.mem = bytes.Buffer{}
	}
	n, err := sp.f.Write(p)
	if err != nil {
		err = spoolError(err)
	}
	return n, err
}

// reader returns the copy from its start.
func (sp *spool) reader() (io.Reader, error) {
	if sp.f == nil {
		return bytes.NewReader(sp.mem.Bytes()), nil
	}
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading the copy of the upload: %w", err)
	}
	return bufio.NewReaderSize(sp.f, 256<<10), nil
}

// remove deletes the copy.
func (sp *spool) remove() {
	if sp.f != nil {
		sp.f.Close()
		os.Remove(sp.f.Name())
	}
}

// collections returns the collection count that record compares: odd while
// a sweep runs. Read it before storing anything.
func (s *Server) collections() uint64 { return s.gcRuns.Load() }

// record runs step with gcMu held for reading, so that no collection runs
// while it does; if a collection ran or started since since (collections'
// value when the request began storing), it first runs again to store what
// that collection may have removed. step must not read from the network.
func (s *Server) record(since uint64, again func() error, step func() error) error {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.gcRuns.Load() != since && again != nil {
		if err := again(); err != nil {
			return err
		}
	}
	if step == nil {
		return nil
	}
	return step()
}

// Collect deletes the jobs past retention, then removes the vault objects no
// job refers to (beyond the grace period). Recording a job or a frame's
// output waits while the live set is computed and swept, so none can refer
// to an object being removed; uploads go on meanwhile (see above).
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
	s.gcRuns.Add(1) // odd: a sweep runs
	defer func() {
		s.gcRuns.Add(1)
		s.gcMu.Unlock()
	}()
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
