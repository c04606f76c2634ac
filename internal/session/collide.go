package session

import "fmt"

// Names in the result bundle. Frames of a job may write files of the same
// path (an <output> without the frame number in it): the bundle, one tar of
// every done frame's files, must still hold each once. The rule (docs/api.md,
// "The result bundle"): files are taken in the order they were recorded —
// file numbers, issued as frames complete — and a file keeps its path unless
// a file of another frame took that path first; then it is named
// frame-<id>/<path> (frame-<id>-2/<path>, -3, ... should even that be
// taken). A frame rendered again keeps the names its files had. A name,
// once given, never changes as more frames complete, so a bundle fetched
// part by part (fetch into a directory again) agrees with a whole one. The
// first collision sets the job's warning.

// outNames holds the bundle names of a job's files, assigned in file order.
type outNames struct {
	owner   map[string]nameOwner // bundle name → the frame whose file has it
	renamed map[framePath]string // the files whose bundle name is not their path
	n       int                  // the files of job.files assigned
	count   int                  // files renamed
	warning string
}

type nameOwner struct {
	frame int64
	alias bool // a renamed file's name, not a path a frame wrote
}

type framePath struct {
	frame int64
	path  string
}

// nameOutputs assigns bundle names to the job's files not named yet. Called
// with s.mu held for writing, whenever j.files grows.
func (j *job) nameOutputs() {
	o := j.names
	if o == nil {
		o = &outNames{owner: map[string]nameOwner{}}
		j.names = o
	}
	for ; o.n < len(j.files); o.n++ {
		f := &j.files[o.n]
		o.assign(f.Frame, f.Path)
	}
}

func (o *outNames) assign(frame int64, p string) {
	key := framePath{frame, p}
	if _, ok := o.renamed[key]; ok {
		return // the frame rendered again: the name its file had
	}
	own, taken := o.owner[p]
	if !taken {
		o.owner[p] = nameOwner{frame: frame}
		return
	}
	if own.frame == frame && !own.alias {
		return
	}
	name := fmt.Sprintf("frame-%d/%s", frame, p)
	for k := 2; ; k++ {
		if _, taken := o.owner[name]; !taken {
			break
		}
		name = fmt.Sprintf("frame-%d-%d/%s", frame, k, p)
	}
	o.owner[name] = nameOwner{frame: frame, alias: true}
	if o.renamed == nil {
		o.renamed = map[framePath]string{}
	}
	o.renamed[key] = name
	o.count++
	if o.warning == "" {
		o.warning = fmt.Sprintf("frames %d and %d both wrote %q: the result bundle keeps frame %d's as %q and holds frame %d's as %q",
			own.frame, frame, p, own.frame, p, frame, name)
		if own.alias {
			o.warning = fmt.Sprintf("frame %d wrote %q, the name the result bundle gave a file of frame %d: it holds frame %d's as %q",
				frame, p, own.frame, frame, name)
		}
	}
}

// warningOf is the job's warning about colliding outputs, "" if none.
func (j *job) warningOf() string {
	if j.names == nil || j.names.warning == "" {
		return ""
	}
	more := ""
	if n := j.names.count; n > 1 {
		more = fmt.Sprintf(" (%d files renamed so far)", n)
	}
	return j.names.warning + more + ". Give each frame outputs of its own: put the frame number in their names " +
		"({frame} or {frame:04} in <output> or <arg>; docs/backends.md, \"Substitutions\")"
}

// BundleName returns the name of a file of a done frame of job id in the
// result bundle: its path, unless it is renamed (see above).
func (s *Session) BundleName(id, frame int64, path string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if j := s.jobs[id]; j != nil && j.names != nil {
		if n, ok := j.names.renamed[framePath{frame, path}]; ok {
			return n
		}
	}
	return path
}
