package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

// pageAll follows FramesPage's pages of limit frames and returns the ids and
// the cursors the pages ended at.
func pageAll(t *testing.T, s *Session, id int64, rs []manifest.Range, limit int) (ids []int64, pages int) {
	t.Helper()
	after := int64(-1)
	for {
		fs, more, err := s.FramesPage(nil, FrameQuery{Job: id, Ranges: rs, After: after, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) > limit {
			t.Fatalf("a page of %d frames, over the limit of %d", len(fs), limit)
		}
		pages++
		for _, f := range fs {
			ids = append(ids, f.ID)
		}
		if !more {
			return ids, pages
		}
		if len(fs) == 0 {
			t.Fatalf("an empty page after %d says more follow", after)
		}
		after = fs[len(fs)-1].ID
	}
}

func TestFramesPage(t *testing.T) {
	s := open(t, store.NewMem())
	// Ids with gaps: 0, 2, 4, ..., 98 and 1000..1009.
	var sb strings.Builder
	for i := 0; i < 100; i += 2 {
		fmt.Fprintf(&sb, `<frame id="%d"/>`, i)
	}
	sb.WriteString(`<range first="1000" last="1009"/>`)
	id := submit(t, s, mkjob(t, "", sb.String()))
	all, err := s.Frames(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, f := range all {
		want = append(want, f.ID)
	}
	for _, limit := range []int{1, 3, 7, 60, 61, 1000} {
		got, pages := pageAll(t, s, id, nil, limit)
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: pages hold %v, want %v", limit, got, want)
		}
		if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	// A frame set, with ranges out of order, overlapping, and between ids.
	rs, err := manifest.ParseFrameSet("1005-2000,3-9,7-11,51,500-999,0")
	if err != nil {
		t.Fatal(err)
	}
	var inSet []int64
	for _, f := range want {
		if manifest.Contains(rs, f) {
			inSet = append(inSet, f)
		}
	}
	if w := []int64{0, 4, 6, 8, 10, 1005, 1006, 1007, 1008, 1009}; !slices.Equal(inSet, w) {
		t.Fatalf("test set-up: %v", inSet)
	}
	for _, limit := range []int{1, 2, 5, 100} {
		if got, _ := pageAll(t, s, id, rs, limit); !slices.Equal(got, inSet) {
			t.Errorf("frames %s, limit %d: pages hold %v, want %v", manifest.FormatFrameSet(rs), limit, got, inSet)
		}
	}
	// The cursor need not be a frame of the job.
	fs, more, err := s.FramesPage(nil, FrameQuery{Job: id, After: 99, Limit: 2})
	if err != nil || more != true || len(fs) != 2 || fs[0].ID != 1000 || fs[1].ID != 1001 {
		t.Errorf("after 99: %v, more %v, %v", fs, more, err)
	}
	if fs, more, err := s.FramesPage(nil, FrameQuery{Job: id, After: 1009, Limit: 5}); err != nil || more || len(fs) != 0 {
		t.Errorf("after the last frame: %v, more %v, %v", fs, more, err)
	}
	// A page is appended to dst.
	dst := []Frame{{ID: -7}}
	if fs, _, _ := s.FramesPage(dst, FrameQuery{Job: id, After: -1, Limit: 2}); len(fs) != 3 || fs[0].ID != -7 || fs[1].ID != 0 || fs[2].ID != 2 {
		t.Errorf("appended page: %v", fs)
	}
	// Without URLs, the frames are otherwise the same.
	bare, _, _ := s.FramesPage(nil, FrameQuery{Job: id, After: -1, Limit: 1000, NoURL: true})
	for k := range bare {
		if bare[k].URL != "" {
			t.Fatalf("frame %d has a URL: %s", bare[k].ID, bare[k].URL)
		}
		bare[k].URL = all[k].URL
	}
	if asJSON(t, bare) != asJSON(t, all) {
		t.Errorf("frames without URLs differ:\n%s\n%s", asJSON(t, bare), asJSON(t, all))
	}
	if _, _, err := s.FramesPage(nil, FrameQuery{Job: id + 1, After: -1, Limit: 5}); !errors.Is(err, ErrNotFound) {
		t.Errorf("frames of a job that does not exist: %v", err)
	}
}

func TestJobsPage(t *testing.T) {
	s := open(t, store.NewMem())
	for range 7 {
		submit(t, s, mkjob(t, "", `<frame id="1"/>`))
	}
	if err := s.Delete(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 3, 6, 10} {
		var got []int64
		before := int64(0)
		for {
			js, more := s.JobsPage(nil, before, limit)
			if len(js) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(js))
			}
			for _, j := range js {
				got = append(got, j.ID)
			}
			if !more {
				break
			}
			before = js[len(js)-1].ID
		}
		if want := []int64{7, 6, 5, 3, 2, 1}; !slices.Equal(got, want) {
			t.Errorf("limit %d: %v, want %v", limit, got, want)
		}
	}
}

func TestFilesPage(t *testing.T) {
	s := open(t, store.NewMem())
	sub := mkjob(t, "", `<range first="1" last="4"/>`)
	sub.Inputs = []cdc.File{{Path: "a"}, {Path: "b"}, {Path: "c"}} // files 1..3
	id := submit(t, s, sub)
	for _, l := range claim(t, s, "w", 4) {
		complete(t, s, "w", l) // one output file each: 4..7
	}
	all, err := s.Files(id)
	if err != nil || len(all) != 7 {
		t.Fatalf("files: %v, %v", all, err)
	}
	for _, limit := range []int{1, 2, 3, 4, 7, 8} {
		var got []File
		after := int64(0)
		for {
			fs, more, err := s.FilesPage(nil, id, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(fs))
			}
			got = append(got, fs...)
			if !more {
				break
			}
			after = fs[len(fs)-1].N
		}
		if g, w := asJSON(t, got), asJSON(t, all); g != w {
			t.Errorf("limit %d: %s, want %s", limit, g, w)
		}
	}
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWorkersPage(t *testing.T) {
	s := open(t, store.NewMem())
	submit(t, s, mkjob(t, "", `<range first="1" last="10"/>`))
	for _, w := range []string{"w3", "w1", "w5", "w2", "w4"} {
		claim(t, s, w, 1)
	}
	all := s.WorkerList()
	for _, limit := range []int{1, 2, 5, 6} {
		var got []Worker
		after := ""
		for {
			ws, more := s.WorkersPage(nil, after, limit)
			got = append(got, ws...)
			if !more {
				break
			}
			after = ws[len(ws)-1].Name
		}
		if fmt.Sprint(got) != fmt.Sprint(all) {
			t.Errorf("limit %d: %v, want %v", limit, got, all)
		}
		for _, w := range got {
			if w.Running != 1 {
				t.Errorf("limit %d: worker %s runs %d frames, want 1", limit, w.Name, w.Running)
			}
		}
	}
}

func TestMaxFramesHeld(t *testing.T) {
	s := open(t, store.NewMem())
	sub := func(n int) Submission {
		j := mkjob(t, "", fmt.Sprintf(`<range first="1" last="%d"/>`, n))
		j.MaxFramesHeld = 100
		return j
	}
	if _, err := s.Submit(ctx, sub(101)); !errors.Is(err, ErrTooManyFrames) ||
		!strings.Contains(err.Error(), "101 frames") || !strings.Contains(err.Error(), "limit of 100 frames held") {
		t.Errorf("a job over the limit alone: %v", err)
	}
	id := submit(t, s, sub(60))
	_, err := s.Submit(ctx, sub(41))
	want := `job "t": 41 frames, too many frames to hold: the server holds 60 frames of 1 jobs already, and 101 in all would pass its limit of 100`
	if !errors.Is(err, ErrTooManyFrames) || !strings.Contains(err.Error(), want) {
		t.Errorf("a job over what is left:\n got %v\nwant %s", err, want)
	}
	submit(t, s, sub(40)) // exactly the limit
	if n, jobs := s.FramesHeld(); n != 100 || jobs != 2 {
		t.Errorf("held: %d frames of %d jobs, want 100 of 2", n, jobs)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	submit(t, s, sub(60)) // room again

	// Concurrent submissions cannot pass the limit together.
	s2 := open(t, store.NewMem())
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s2.Submit(ctx, sub(30)) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrTooManyFrames):
			t.Errorf("concurrent submission: %v", err)
		}
	}
	if n, _ := s2.FramesHeld(); ok != 3 || n != 90 {
		t.Errorf("concurrent submissions of 30 frames under a limit of 100: %d accepted, %d frames held; want 3, 90", ok, n)
	}
}
