// Package store owns distren's durable state: the jobs, the frames whose state
// must survive a restart, the numbered files, the failure counts and the
// counters (job ids, server incarnations). The Store interface is what the
// session writes through; SQLite (modernc.org/sqlite, WAL) implements it, and
// Mem implements it in memory for unit tests of the session.
//
// Frames are stored lazily: a frame with no row is pending. Only frames that
// finished (done, failed) or were reset carry a row, so submitting a job of a
// million frames writes one job row, not a million frame rows.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrFull marks a write that failed because the state store's disk is full.
var ErrFull = errors.New("the state store's disk is full")

// Job is a submitted job as stored.
type Job struct {
	ID        int64
	Name      string
	Submitted time.Time
	Manifest  []byte // distrenjob.xml as submitted
	Inputs    []byte // the input files, encoded by the session (a cdc tree; a JSON array before)
	// Canceled is set by a user's cancel: the job's unfinished frames are
	// canceled, except those in Back.
	Canceled bool
	// Stop, when not empty, says why the farm stopped the job (a fault of
	// the job's own): its unfinished frames are canceled, except those in
	// Back, and the job is failed.
	Stop string
	// Back is the frame set (as "1-2,5") retried since the job was canceled
	// or stopped: those frames are not canceled.
	Back     string
	NextFile int64 // next file number to issue, as of the job's last update: the files stored may be further (the session takes the greater)
	Deleted  bool
	// Paused: no frame of the job starts until it is resumed.
	Paused bool
	// Priority, if set, replaces the manifest's <priority> (changed after
	// submission).
	Priority *int
}

// Frame state values stored in Frame.State.
const (
	FrameDone   = "done"
	FrameFailed = "failed"
	// FramePending records a frame reset by retry (its attempts start again).
	FramePending = "pending"
)

// Frame is the durable part of a frame's state.
type Frame struct {
	Job      int64
	ID       int64
	State    string
	Attempts int
	Lost     int    // attempts that ended with their lease expiring
	Worker   string // the worker that finished it
	Output   string // hash of the output tarball (done)
	Size     int64  // size of the output tarball
	Error    string // last failure message
	Render   time.Duration
	Finished time.Time
}

// File is one numbered output file of a frame (inputs are numbered by their
// place in the job's input tree and are not stored here).
type File struct {
	Job   int64
	N     int64
	Frame int64
	Path  string
	Size  int64
	Tar   string // hash of the frame output tarball holding it
}

// Snapshot is everything Load returns at start.
type Snapshot struct {
	Counters map[string]int64
	Jobs     []Job             // by ID
	Frames   []Frame           // by Job, ID
	Failures map[[2]string]int // {job id as decimal, worker} → failed attempts
	Files    []File            // by Job, N
}

// Store is durable state. Only one process opens a store at a time.
type Store interface {
	// Load reads the whole state.
	Load(ctx context.Context) (*Snapshot, error)
	// Begin starts a write transaction. Only one is open at a time.
	Begin(ctx context.Context) (Tx, error)
	Close() error
}

// Tx is a write transaction: nothing it writes is visible or durable until
// Commit returns nil. After an error from any method, the caller rolls back.
type Tx interface {
	SetCounter(name string, v int64) error
	// AddJob records a new job, its manifest and inputs included.
	AddJob(j *Job) error
	// UpdateJob writes a job's mutable fields: Canceled, Stop, Back,
	// NextFile, Deleted.
	// The manifest and inputs are written once, so updating a job costs the
	// same whatever its size.
	UpdateJob(j *Job) error
	PutFrame(f *Frame) error
	PutFiles(files []File) error
	AddFailure(job int64, worker string) error
	ClearFailures(job int64) error
	Commit() error
	Rollback() error
}
