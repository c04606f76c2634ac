package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/session"
)

// The listings: jobs, a job's frames and files, workers. Each answers a JSON
// array; without paging parameters, the whole listing, streamed page by
// page (streamPage elements are read from the session at a time, encoded,
// and written), so that a listing costs the server memory for one page
// whatever its length, and no lock is held while the client reads. With
// ?after= or ?limit=, one page of at most limit elements (api.DefaultPage,
// at most api.MaxPage), and api.NextHeader naming the cursor of the next
// page if more follow. docs/api.md, "Listings and paging".

// streamPage is how many elements a streamed listing reads from the session
// at a time.
const streamPage = 256

// paging is what a listing request asks for.
type paging struct {
	paged bool   // ?after= or ?limit= given: answer one page
	limit int    // elements of that page
	after string // the cursor, "" if none
}

func pagingOf(r *http.Request) (paging, error) {
	q := r.URL.Query()
	p := paging{limit: api.DefaultPage, after: q.Get("after")}
	p.paged = q.Has("after") || q.Has("limit")
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxPage {
			return p, badRequest("limit %q: expected a whole number 1..%d", v, api.MaxPage)
		}
		p.limit = n
	}
	return p, nil
}

// afterInt reads a numeric cursor: def if none was given.
func (p paging) afterInt(what string, min, def int64) (int64, error) {
	if p.after == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(p.after, 10, 64)
	if err != nil || n < min {
		return 0, badRequest("after %q: expected %s (a whole number %d..%d)", p.after, what, min, int64(math.MaxInt64))
	}
	return n, nil
}

// lister is how list reads and writes one kind of listing: elements of
// the session's type T, written as the API's W.
type lister[T, W, C any] struct {
	// read appends to dst the page of at most limit elements after the
	// cursor, and says whether more follow.
	read   func(dst []T, after C, limit int) ([]T, bool, error)
	key    func(*T) C     // the cursor a page ending at the element ends at
	format func(C) string // the cursor as ?after= takes it
	pages  *pagePool[T]   // page buffers, reused across requests
	wire   func(*T) W     // the element as the API has it
	// fix, if set, returns what to write of an element: its encoding
	// (json.Marshal's bytes) completed, appended to dst.
	fix func(dst []byte, v *W, enc []byte) []byte
}

// list answers a listing. The first page is read before anything is
// written, so that its error (no such job) is an ordinary error answer. A
// page's memory is reused for the next page and the next request: a
// listing of a million frames makes no garbage per frame.
func list[T, W, C any](s *Server, w http.ResponseWriter, r *http.Request, p paging, after C, l lister[T, W, C]) error {
	limit := streamPage
	if p.paged {
		limit = p.limit
	}
	items, more, err := l.read(l.pages.get(limit), after, limit)
	defer func() { l.pages.put(items) }()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	if p.paged && more && len(items) > 0 {
		w.Header().Set(api.NextHeader, l.format(l.key(&items[len(items)-1])))
	}
	lw := writers.Get().(*listWriter)
	defer writers.Put(lw)
	lw.w.Reset(w)
	defer lw.w.Reset(nil)
	lw.w.WriteByte('[')
	n := 0
	var v W // each element in turn, as the API has it: one variable, no garbage per element
	for {
		for i := range items {
			lw.buf.Reset()
			v = l.wire(&items[i])
			if err := lw.enc.Encode(&v); err != nil {
				s.cut(r, fmt.Errorf("encoding a listing: %w", err))
			}
			if n > 0 {
				lw.w.WriteByte(',')
			}
			b := bytes.TrimSuffix(lw.buf.Bytes(), []byte("\n"))
			if l.fix != nil {
				lw.fixed = l.fix(lw.fixed[:0], &v, b)
				b = lw.fixed
			}
			lw.w.Write(b)
			n++
		}
		if p.paged || !more || len(items) == 0 {
			break
		}
		if lw.w.Flush() != nil || r.Context().Err() != nil {
			return nil // the client went away
		}
		after = l.key(&items[len(items)-1])
		clear(items) // what the page pointed to may be collected
		if items, more, err = l.read(items[:0], after, streamPage); err != nil {
			// Deleted while listed: cut the stream, so that the client sees a
			// broken listing, never a complete-looking one.
			s.cut(r, err)
		}
	}
	lw.w.WriteString("]\n")
	lw.w.Flush()
	return nil
}

// listWriter buffers a listing's answer and encodes its elements.
type listWriter struct {
	w     *bufio.Writer
	buf   bytes.Buffer
	enc   *json.Encoder // into buf, escaping HTML as json.Marshal does
	fixed []byte        // an element's encoding completed by lister.fix
}

var writers = sync.Pool{New: func() any {
	lw := &listWriter{w: bufio.NewWriterSize(nil, 32<<10)}
	lw.enc = json.NewEncoder(&lw.buf)
	return lw
}}

// pagePool keeps page buffers for reuse.
type pagePool[T any] struct{ p sync.Pool }

func (pp *pagePool[T]) get(n int) []T {
	if b, ok := pp.p.Get().(*[]T); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]T, 0, n)
}

func (pp *pagePool[T]) put(b []T) {
	if cap(b) > api.MaxPage {
		return
	}
	clear(b[:cap(b)])
	b = b[:0]
	pp.p.Put(&b)
}

var (
	jobPages    pagePool[session.Job]
	framePages  pagePool[session.Frame]
	filePages   pagePool[session.File]
	workerPages pagePool[session.Worker]
)

// cut ends a streamed answer that cannot be completed.
func (s *Server) cut(r *http.Request, err error) {
	s.log.Info("listing cut short", "path", r.URL.Path, "err", err)
	panic(http.ErrAbortHandler)
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

// getJobs lists the jobs, newest first; the cursor is a job id (the page
// after it holds older jobs).
func (s *Server) getJobs(w http.ResponseWriter, r *http.Request) error {
	p, err := pagingOf(r)
	if err != nil {
		return err
	}
	after, err := p.afterInt("a job id", 1, 0)
	if err != nil {
		return err
	}
	return list(s, w, r, p, after, lister[session.Job, api.Job, int64]{
		read: func(dst []session.Job, before int64, limit int) ([]session.Job, bool, error) {
			js, more := s.sess.JobsPage(dst, before, limit)
			return js, more, nil
		},
		key: func(j *session.Job) int64 { return j.ID }, format: formatInt, pages: &jobPages, wire: wireJob,
	})
}

// getFrames lists a job's frames in id order, those of ?frames=SET only if
// given; the cursor is a frame id. The session gives the frames without
// their URLs, which are written into the encoding here: a string per frame
// would be a million strings of garbage per listing of a large job.
func (s *Server) getFrames(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return err
	}
	rs, err := frameSet(r)
	if err != nil {
		return err
	}
	p, err := pagingOf(r)
	if err != nil {
		return err
	}
	after, err := p.afterInt("a frame id", 0, -1)
	if err != nil {
		return err
	}
	name := s.sess.Name()
	return list(s, w, r, p, after, lister[session.Frame, api.Frame, int64]{
		read: func(dst []session.Frame, after int64, limit int) ([]session.Frame, bool, error) {
			return s.sess.FramesPage(dst, session.FrameQuery{Job: id, Ranges: rs, After: after, Limit: limit, NoURL: true})
		},
		key: func(f *session.Frame) int64 { return f.ID }, format: formatInt, pages: &framePages, wire: wireFrame,
		fix: func(dst []byte, f *api.Frame, enc []byte) []byte { return frameWithURL(dst, enc, f, name, id) },
	})
}

// frameWithURL appends to dst the encoding enc of frame f of job, whose URL
// is empty, with its URL.
func frameWithURL(dst, enc []byte, f *api.Frame, server string, job int64) []byte {
	// json.Marshal writes the fields in order: {"id":N,"url":"",...
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, f.ID, 10)
	dst = append(dst, `,"url":"`...)
	if !bytes.HasPrefix(enc, dst) || len(enc) < len(dst)+1 || enc[len(dst)] != '"' {
		// Not the shape expected (api.Frame changed): encode it whole.
		g := *f
		g.URL = durl.Frame(server, job, f.ID)
		b, _ := json.Marshal(&g)
		return append(dst[:0], b...)
	}
	rest := enc[len(dst):] // `",...`
	dst = durl.AppendFrame(dst, server, job, f.ID)
	return append(dst, rest...)
}

// getFiles lists a job's numbered files; the cursor is a file number.
func (s *Server) getFiles(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return err
	}
	p, err := pagingOf(r)
	if err != nil {
		return err
	}
	after, err := p.afterInt("a file number", 0, 0)
	if err != nil {
		return err
	}
	return list(s, w, r, p, after, lister[session.File, api.File, int64]{
		read: func(dst []session.File, after int64, limit int) ([]session.File, bool, error) {
			return s.sess.FilesPage(dst, id, after, limit)
		},
		key: func(f *session.File) int64 { return f.N }, format: formatInt, pages: &filePages, wire: wireFile,
	})
}

// getWorkers lists the workers by name; the cursor is a worker's name.
func (s *Server) getWorkers(w http.ResponseWriter, r *http.Request) error {
	p, err := pagingOf(r)
	if err != nil {
		return err
	}
	if len(p.after) > maxWorkerName {
		return badRequest("after: a worker name of %d bytes, longer than %d", len(p.after), maxWorkerName)
	}
	return list(s, w, r, p, p.after, lister[session.Worker, api.Worker, string]{
		read: func(dst []session.Worker, after string, limit int) ([]session.Worker, bool, error) {
			ws, more := s.sess.WorkersPage(dst, after, limit)
			return ws, more, nil
		},
		key: func(w *session.Worker) string { return w.Name }, format: func(s string) string { return s }, pages: &workerPages,
		wire: wireWorker,
	})
}
