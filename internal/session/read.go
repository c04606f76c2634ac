package session

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/scheduler"
	"github.com/distren/distren/internal/store"
)

// Jobs lists every job, newest first.
func (s *Session) Jobs() []Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, s.jobInfo(j))
	}
	slicesSortJobs(out)
	return out
}

// Job returns one job's summary.
func (s *Session) Job(id int64) (Job, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return Job{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	return s.jobInfo(j), nil
}

// Frames returns the frames of a job in id order, those in ranges only when
// ranges is not nil.
func (s *Session) Frames(id int64, ranges []manifest.Range) ([]Frame, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	out := make([]Frame, 0, len(j.Frames))
	for i := range j.Frames {
		if ranges == nil || manifest.Contains(ranges, j.Frames[i].ID) {
			out = append(out, s.frameInfo(j, int32(i)))
		}
	}
	return out, nil
}

// Frame returns one frame.
func (s *Session) Frame(id, frame int64) (Frame, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return Frame{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	i, ok := j.FrameIndex(frame)
	if !ok {
		return Frame{}, fmt.Errorf("job %d has no frame %d: %w", id, frame, ErrNotFound)
	}
	return s.frameInfo(j, i), nil
}

// Spec returns what a worker needs to render a job's frames.
func (s *Session) Spec(id int64) (JobSpec, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return JobSpec{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	return JobSpec{ID: id, Manifest: j.rec.Manifest, Inputs: j.inputs}, nil
}

// JobSpec is what a worker needs to render a job's frames: the manifest as
// submitted and the package's other files. Both are shared with the
// session: read them, never change them.
type JobSpec struct {
	ID       int64
	Manifest []byte
	Inputs   []cdc.File
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
	for i := range j.Frames {
		f := &j.Frames[i]
		if f.State == fsDone && (ranges == nil || manifest.Contains(ranges, f.ID)) {
			out = append(out, Output{Frame: f.ID, Hash: j.outs[i].output, Size: j.outs[i].size})
		}
	}
	return out, nil
}

// Files lists a job's numbered files: inputs first, then frame outputs.
func (s *Session) Files(id int64) ([]File, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	out := make([]File, 0, len(j.inputs)+len(j.files))
	for k, in := range j.inputs {
		n := int64(k + 1)
		out = append(out, File{N: n, URL: fileURL(s.name, id, n), Path: in.Path, Size: in.Size})
	}
	for _, f := range j.files {
		fr := f.Frame
		out = append(out, File{N: f.N, URL: fileURL(s.name, id, f.N), Path: f.Path, Size: f.Size, Frame: &fr})
	}
	return out, nil
}

// FileLoc says where a numbered file's bytes are: an input object, or a
// member of a frame output tarball.
type FileLoc struct {
	Path  string
	Size  int64
	Parts []cdc.ChunkRef // an input's chunks
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
		return FileLoc{Path: in.Path, Size: in.Size, Parts: in.Chunks}, nil
	}
	for _, f := range j.files {
		if f.N == n {
			return FileLoc{Path: f.Path, Size: f.Size, Hash: f.Tar, InTar: true}, nil
		}
	}
	return FileLoc{}, fmt.Errorf("job %d has no file %d: %w", id, n, ErrNotFound)
}

// ReadyFor reports whether frames are ready that the worker has the
// backends for (scheduler.ReadyFor).
func (s *Session) ReadyFor(worker string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sched.ReadyFor(worker)
}

// Workers counts the workers heard from within a lease period.
func (s *Session) Workers() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	now := s.clock.Now()
	for _, wk := range s.sched.Workers() {
		if s.sched.Live(wk, now) {
			n++
		}
	}
	return n
}

// WorkerList lists the workers heard from recently, by name, with their
// fingerprints and the frames leased to them.
func (s *Session) WorkerList() []Worker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.clock.Now()
	running := map[string]int{}
	for k := range s.sched.Running() {
		if j := s.jobs[k.Job]; j != nil {
			if i, ok := j.FrameIndex(k.Frame); ok {
				running[j.Frames[i].Worker]++
			}
		}
	}
	out := make([]Worker, 0, len(s.sched.Workers()))
	for name, wk := range s.sched.Workers() {
		out = append(out, Worker{Name: name, LastSeen: wk.Seen.UTC(), Live: s.sched.Live(wk, now),
			Backends: maps.Clone(wk.Backends), Running: running[name]})
	}
	slices.SortFunc(out, func(a, b Worker) int { return strings.Compare(a.Name, b.Name) })
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

// Pages of listings. A listing of many elements — a job's million frames —
// is read a page at a time: each page is copied under the read lock and
// handed out after it is released, so a slow reader holds no lock and a
// listing costs memory for one page, not for the whole. A listing made of
// several pages is not a snapshot: each element is as it was when its page
// was read. The cursor is the last element a page held: a frame's or file's
// number, a job's id, a worker's name.

// FrameQuery asks FramesPage for a page of a job's frames.
type FrameQuery struct {
	Job    int64
	Ranges []manifest.Range // only the frames in these; nil: every frame
	After  int64            // only the frames whose ids are above; -1: from the first
	Limit  int              // at most this many
	// NoURL leaves the frames' URL empty: a listing of many frames writes
	// each one itself (durl.AppendFrame with Name), rather than have a
	// string allocated per frame.
	NoURL bool
}

// FramesPage appends to dst the page of frames q asks for, in id order,
// and says whether more follow.
func (s *Session) FramesPage(dst []Frame, q FrameQuery) ([]Frame, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[q.Job]
	if j == nil {
		return dst, false, fmt.Errorf("job %d: %w", q.Job, ErrNotFound)
	}
	i := j.frameAfter(q.After)
	for n := 0; i < len(j.Frames); i++ {
		if i = j.nextIn(q.Ranges, i); i >= len(j.Frames) || n == q.Limit {
			break
		}
		if q.NoURL {
			dst = append(dst, s.frameBare(j, int32(i)))
		} else {
			dst = append(dst, s.frameInfo(j, int32(i)))
		}
		n++
	}
	return dst, i < len(j.Frames), nil
}

// frameAfter returns the index of the first frame whose id is above after.
func (j *job) frameAfter(after int64) int {
	i, _ := slices.BinarySearchFunc(j.Frames, after, func(f scheduler.Frame, id int64) int { return cmp.Compare(f.ID, id) })
	if i < len(j.Frames) && j.Frames[i].ID == after {
		i++
	}
	return i
}

// nextIn returns the index of the first frame from index i on whose id is
// in ranges (any frame when ranges is nil), or len(j.Frames). Frames outside
// the ranges are skipped by search, not one by one.
func (j *job) nextIn(ranges []manifest.Range, i int) int {
	for ranges != nil && i < len(j.Frames) {
		id := j.Frames[i].ID
		if manifest.Contains(ranges, id) {
			break
		}
		next, ok := int64(0), false // the lowest range start above id
		for _, r := range ranges {
			if r.First > id && (!ok || r.First < next) {
				next, ok = r.First, true
			}
		}
		if !ok {
			return len(j.Frames)
		}
		i = j.frameAfter(next - 1)
	}
	return i
}

// JobsPage appends to dst up to limit jobs, newest first, whose ids are
// below before (0: from the newest), and says whether more follow. It looks
// at every job once per page.
func (s *Session) JobsPage(dst []Job, before int64, limit int) ([]Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]int64, 0, min(limit+1, len(s.jobs)))
	for id := range s.jobs {
		if before > 0 && id >= before {
			continue
		}
		// Keep the limit+1 highest ids: the page and whether more follow.
		k, _ := slices.BinarySearchFunc(ids, id, func(a, b int64) int { return cmp.Compare(b, a) })
		if k <= limit {
			if len(ids) == limit+1 {
				ids = ids[:limit]
			}
			ids = slices.Insert(ids, k, id)
		}
	}
	more := len(ids) > limit
	ids = ids[:min(len(ids), limit)]
	for _, id := range ids {
		dst = append(dst, s.jobInfo(s.jobs[id]))
	}
	return dst, more
}

// FilesPage appends to dst up to limit numbered files of job id whose
// numbers are above after (0: from the first), in number order — inputs
// first, then frame outputs — and says whether more follow.
func (s *Session) FilesPage(dst []File, id, after int64, limit int) ([]File, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return dst, false, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	if after == math.MaxInt64 {
		return dst, false, nil
	}
	n := 0
	k := int(min(max(after, 0), int64(len(j.inputs))))
	for ; k < len(j.inputs) && n < limit; k++ {
		in := j.inputs[k]
		fn := int64(k + 1)
		dst = append(dst, File{N: fn, URL: fileURL(s.name, id, fn), Path: in.Path, Size: in.Size})
		n++
	}
	if k < len(j.inputs) {
		return dst, true, nil
	}
	// Output files are numbered in the order frames complete, above the
	// inputs: j.files is sorted by N.
	o, _ := slices.BinarySearchFunc(j.files, after+1, func(f store.File, n int64) int { return cmp.Compare(f.N, n) })
	for ; o < len(j.files) && n < limit; o++ {
		f := j.files[o]
		fr := f.Frame
		dst = append(dst, File{N: f.N, URL: fileURL(s.name, id, f.N), Path: f.Path, Size: f.Size, Frame: &fr})
		n++
	}
	return dst, o < len(j.files), nil
}

// WorkersPage appends to dst up to limit of the workers heard from, by
// name, whose names sort after after ("": from the first), with their
// fingerprints and the frames leased to them, and says whether more follow.
func (s *Session) WorkersPage(dst []Worker, after string, limit int) ([]Worker, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, min(limit+1, len(s.sched.Workers())))
	for name := range s.sched.Workers() {
		if name <= after {
			continue
		}
		k, _ := slices.BinarySearch(names, name)
		if k <= limit {
			if len(names) == limit+1 {
				names = names[:limit]
			}
			names = slices.Insert(names, k, name)
		}
	}
	more := len(names) > limit
	names = names[:min(len(names), limit)]
	running := make(map[string]int, len(names))
	for _, n := range names {
		running[n] = 0
	}
	for k := range s.sched.Running() {
		if j := s.jobs[k.Job]; j != nil {
			if i, ok := j.FrameIndex(k.Frame); ok {
				if n, ok := running[j.Frames[i].Worker]; ok {
					running[j.Frames[i].Worker] = n + 1
				}
			}
		}
	}
	now := s.clock.Now()
	for _, name := range names {
		wk := s.sched.Workers()[name]
		dst = append(dst, Worker{Name: name, LastSeen: wk.Seen.UTC(), Live: s.sched.Live(wk, now),
			Backends: maps.Clone(wk.Backends), Running: running[name]})
	}
	return dst, more
}
