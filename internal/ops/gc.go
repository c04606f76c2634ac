package ops

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// Collected is what a collection removed.
type Collected struct {
	JobsDeleted int   // finished jobs past retention
	Objects     int   // vault objects removed
	Bytes       int64 // stored bytes freed
	Kept        int   // unreferenced but recent objects kept
}

// Collection and uploads. A collection holds gcMu for writing while it
// computes the live set and sweeps the vault. An operation that accepts
// bytes (a package, a chunk, a frame's output) never holds gcMu while it
// reads them from its caller. What fits in memory — a chunk of at most
// vault.MaxWhole bytes (every chunk distren's client cuts), an output of at
// most spoolMemory — is received whole first, with no lock, then stored and
// recorded in one step with gcMu held for reading: no sweep can overlap, so
// nothing else is kept. What does not fit is stored in the vault as it
// arrives, with no lock, keeping a copy (a spool, or the unpacked package);
// only then does the operation take gcMu for reading, for the short step
// that records what it stored (the job, the frame done). If a collection
// ran or started meanwhile — gcRuns tells — that sweep may have removed
// what the operation stored or found stored, so within that step it first
// stores it again from its copy (the vault writes only what is missing). Recorded,
// the objects are live for every later collection; a chunk, recorded by
// nothing, was touched as it was stored, so the next collections keep it
// through the grace period. A waiting collection thus waits only for such
// short steps, never for a slow sender, and an operation waits only while a
// sweep runs (Go's RWMutex queues new readers behind a waiting writer).

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
func (f *Farm) collections() uint64 { return f.gcRuns.Load() }

// record runs step with gcMu held for reading, so that no collection runs
// while it does; if a collection ran or started since since (collections'
// value when the operation began storing), it first runs again to store
// what that collection may have removed. step must not read from the
// caller.
func (f *Farm) record(since uint64, again func() error, step func() error) error {
	f.gcMu.RLock()
	defer f.gcMu.RUnlock()
	if f.gcRuns.Load() != since && again != nil {
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
func (f *Farm) Collect(ctx context.Context) (Collected, error) {
	var res Collected
	if f.gc.Retention > 0 {
		for _, id := range f.sess.Expired(time.Now().Add(-f.gc.Retention)) {
			if err := f.sess.Delete(ctx, id); err != nil {
				f.log.Warn("retention: job not deleted", "job", id, "err", err)
				continue
			}
			res.JobsDeleted++
		}
	}
	f.gcMu.Lock()
	f.gcRuns.Add(1) // odd: a sweep runs
	defer func() {
		f.gcRuns.Add(1)
		f.gcMu.Unlock()
	}()
	live := f.sess.LiveObjects()
	sw, err := f.vault.Sweep(ctx, func(h string) bool { return live[h] }, time.Now().Add(-f.gc.Grace))
	res.Objects, res.Bytes, res.Kept = sw.Objects, sw.Bytes, sw.Kept
	if err != nil {
		return res, err
	}
	if res.Objects > 0 || res.JobsDeleted > 0 {
		f.log.Info("garbage collected", "jobs_deleted", res.JobsDeleted, "objects", res.Objects, "bytes", res.Bytes, "kept_recent", res.Kept)
	}
	return res, nil
}

// CollectEvery runs Collect every interval until ctx ends.
func (f *Farm) CollectEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := f.Collect(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("garbage collection failed", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}
