package session

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/manifest"
)

// Jobs lists every job, newest first.
func (s *Session) Jobs() []api.Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]api.Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, s.jobInfo(j))
	}
	slicesSortJobs(out)
	return out
}

// Job returns one job's summary.
func (s *Session) Job(id int64) (api.Job, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return api.Job{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	return s.jobInfo(j), nil
}

// Frames returns the frames of a job in id order, those in ranges only when
// ranges is not nil.
func (s *Session) Frames(id int64, ranges []manifest.Range) ([]api.Frame, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	out := make([]api.Frame, 0, len(j.frames))
	for i := range j.frames {
		if ranges == nil || manifest.Contains(ranges, j.frames[i].id) {
			out = append(out, s.frameInfo(j, int32(i)))
		}
	}
	return out, nil
}

// Frame returns one frame.
func (s *Session) Frame(id, frame int64) (api.Frame, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return api.Frame{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	i, ok := j.frameIndex(frame)
	if !ok {
		return api.Frame{}, fmt.Errorf("job %d has no frame %d: %w", id, frame, ErrNotFound)
	}
	return s.frameInfo(j, i), nil
}

// Spec returns what a worker needs to render a job's frames.
func (s *Session) Spec(id int64) (api.JobSpec, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return api.JobSpec{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	return api.JobSpec{ID: id, Manifest: string(j.rec.Manifest), Inputs: j.inputs}, nil
}

// Output is a done frame's output tarball.
type Output struct {
	Frame int64
	Hash  string
	Size  int64
}

// Outputs returns the outputs of a job's done frames in id order, those in
// ranges only when ranges is not nil.
func (s *Session) Outputs(id int64, ranges []manifest.Range) ([]Output, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	var out []Output
	for i := range j.frames {
		f := &j.frames[i]
		if f.state == fsDone && (ranges == nil || manifest.Contains(ranges, f.id)) {
			out = append(out, Output{Frame: f.id, Hash: f.output, Size: f.size})
		}
	}
	return out, nil
}

// Files lists a job's numbered files: inputs first, then frame outputs.
func (s *Session) Files(id int64) ([]api.File, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	out := make([]api.File, 0, len(j.inputs)+len(j.files))
	for k, in := range j.inputs {
		n := int64(k + 1)
		out = append(out, api.File{N: n, URL: fileURL(s.name, id, n), Path: in.Path, Size: in.Size})
	}
	for _, f := range j.files {
		fr := f.Frame
		out = append(out, api.File{N: f.N, URL: fileURL(s.name, id, f.N), Path: f.Path, Size: f.Size, Frame: &fr})
	}
	return out, nil
}

// FileLoc says where a numbered file's bytes are: an input object, or a
// member of a frame output tarball.
type FileLoc struct {
	Path  string
	Size  int64
	Parts []api.ChunkRef // an input's chunks
	Hash  string         // the output tarball holding it
	InTar bool
}

// File locates file n of a job.
func (s *Session) File(id, n int64) (FileLoc, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return FileLoc{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	if n >= 1 && n <= int64(len(j.inputs)) {
		in := j.inputs[n-1]
		return FileLoc{Path: in.Path, Size: in.Size, Parts: in.Parts()}, nil
	}
	for _, f := range j.files {
		if f.N == n {
			return FileLoc{Path: f.Path, Size: f.Size, Hash: f.Tar, InTar: true}, nil
		}
	}
	return FileLoc{}, fmt.Errorf("job %d has no file %d: %w", id, n, ErrNotFound)
}

// Workers counts the workers heard from within a lease period.
func (s *Session) Workers() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	now := time.Now()
	for _, wk := range s.workers {
		if s.live(wk, now) {
			n++
		}
	}
	return n
}

// WorkerList lists the workers heard from recently, by name, with their
// fingerprints and the frames leased to them.
func (s *Session) WorkerList() []api.Worker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := time.Now()
	running := map[string]int{}
	for k := range s.running {
		if j := s.jobs[k.job]; j != nil {
			if i, ok := j.frameIndex(k.frame); ok {
				running[j.frames[i].worker]++
			}
		}
	}
	out := make([]api.Worker, 0, len(s.workers))
	for name, wk := range s.workers {
		out = append(out, api.Worker{Name: name, LastSeen: wk.seen.UTC(), Live: s.live(wk, now),
			Backends: maps.Clone(wk.backends), Running: running[name]})
	}
	slices.SortFunc(out, func(a, b api.Worker) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Idle reports whether no job has work that can still run by itself.
func (s *Session) Idle() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, j := range s.jobs {
		if !j.finished() {
			return false
		}
	}
	return true
}
