package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
)

// Mem is a Store in memory, for unit tests of the session against the Store
// interface. FailCommit, when set, makes the next commits fail; FailLoad,
// the next loads.
type Mem struct {
	mu         sync.Mutex
	snap       Snapshot
	FailCommit error
	FailLoad   error
}

// NewMem returns an empty in-memory store.
func NewMem() *Mem {
	return &Mem{snap: Snapshot{Counters: map[string]int64{}, Failures: map[[2]string]int{}}}
}

// Load returns a copy of the state.
func (m *Mem) Load(ctx context.Context) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.FailLoad != nil {
		return nil, m.FailLoad
	}
	s := &Snapshot{Counters: map[string]int64{}, Failures: map[[2]string]int{}}
	for k, v := range m.snap.Counters {
		s.Counters[k] = v
	}
	for k, v := range m.snap.Failures {
		s.Failures[k] = v
	}
	s.Jobs = slices.Clone(m.snap.Jobs)
	s.Frames = slices.Clone(m.snap.Frames)
	s.Files = slices.Clone(m.snap.Files)
	return s, nil
}

// Close does nothing.
func (m *Mem) Close() error { return nil }

type memTx struct {
	m   *Mem
	ops []func(*Snapshot)
}

// Begin starts a transaction whose writes apply at Commit.
func (m *Mem) Begin(ctx context.Context) (Tx, error) { return &memTx{m: m}, nil }

func (t *memTx) SetCounter(name string, v int64) error {
	t.ops = append(t.ops, func(s *Snapshot) { s.Counters[name] = v })
	return nil
}

func (t *memTx) AddJob(j *Job) error {
	c := *j
	t.ops = append(t.ops, func(s *Snapshot) {
		if i, found := slices.BinarySearchFunc(s.Jobs, c.ID, func(a Job, id int64) int { return cmp.Compare(a.ID, id) }); !found {
			s.Jobs = slices.Insert(s.Jobs, i, c)
		}
	})
	return nil
}

func (t *memTx) UpdateJob(j *Job) error {
	c := *j
	t.ops = append(t.ops, func(s *Snapshot) {
		if i, found := slices.BinarySearchFunc(s.Jobs, c.ID, func(a Job, id int64) int { return cmp.Compare(a.ID, id) }); found {
			s.Jobs[i].Canceled, s.Jobs[i].NextFile, s.Jobs[i].Deleted = c.Canceled, c.NextFile, c.Deleted
			s.Jobs[i].Stop, s.Jobs[i].Back = c.Stop, c.Back
			s.Jobs[i].Paused, s.Jobs[i].Priority = c.Paused, c.Priority
		}
	})
	return nil
}

func (t *memTx) PutFrame(f *Frame) error {
	c := *f
	t.ops = append(t.ops, func(s *Snapshot) {
		i, found := slices.BinarySearchFunc(s.Frames, c, func(a, b Frame) int {
			if a.Job != b.Job {
				return cmp.Compare(a.Job, b.Job)
			}
			return cmp.Compare(a.ID, b.ID)
		})
		if found {
			s.Frames[i] = c
		} else {
			s.Frames = slices.Insert(s.Frames, i, c)
		}
	})
	return nil
}

func (t *memTx) PutFiles(files []File) error {
	c := slices.Clone(files)
	t.ops = append(t.ops, func(s *Snapshot) { s.Files = append(s.Files, c...) })
	return nil
}

func (t *memTx) AddFailure(job int64, worker string) error {
	t.ops = append(t.ops, func(s *Snapshot) { s.Failures[[2]string{strconv.FormatInt(job, 10), worker}]++ })
	return nil
}

func (t *memTx) ClearFailures(job int64) error {
	k := strconv.FormatInt(job, 10)
	t.ops = append(t.ops, func(s *Snapshot) {
		for key := range s.Failures {
			if key[0] == k {
				delete(s.Failures, key)
			}
		}
	})
	return nil
}

func (t *memTx) Commit() error {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if t.m.FailCommit != nil {
		return t.m.FailCommit
	}
	for _, op := range t.ops {
		op(&t.m.snap)
	}
	return nil
}

func (t *memTx) Rollback() error {
	t.ops = nil
	return errors.New("rolled back")
}
