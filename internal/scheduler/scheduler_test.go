package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/manifest"
)

const ttl = 10 * time.Second

// t0 is when every fixture's state is built; a row's action runs at t0+at.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

var builtin = map[string]string{"builtin": "1"}

// manifestXML is a manifest of the builtin backend with extra elements and
// the given <frames> content.
func manifestXML(extra, frames string) string {
	return fmt.Sprintf(`<distrenjob version="1"><name>t</name>%s<backend name="builtin"/>
<frames>%s</frames><outputs><output>*.png</output></outputs></distrenjob>`, extra, frames)
}

func parse(t testing.TB, raw string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse(strings.NewReader(raw), "test.xml", manifest.Options{})
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

// fixture is a scheduler's state: jobs (ids 1, 2, ... in this order, each a
// whole manifest), workers heard from at t0 with their backends, and steps
// that change the state further before the action.
type fixture struct {
	jobs    []string
	chunks  bool // povray renders ranges
	workers map[string]map[string]string
	prep    func(t *testing.T, s *Scheduler)
}

func (f fixture) build(t *testing.T) *Scheduler {
	t.Helper()
	opt := Options{Name: "farm", LeaseTTL: ttl, BlocklistAfter: 3}
	if f.chunks {
		opt.Chunks = func(b string) bool { return b == "povray" }
	}
	s := New(opt)
	s.SetBoot(7)
	for k, raw := range f.jobs {
		j := NewJob(int64(k+1), parse(t, raw))
		if err := s.Check(j); err != nil {
			t.Fatal(err)
		}
		if err := s.Submit(j); err != nil {
			t.Fatal(err)
		}
	}
	for w, b := range f.workers {
		s.Seen(t0, w).Backends = b
	}
	if f.prep != nil {
		f.prep(t, s)
	}
	return s
}

// row is one case: a state, a time, an action at that time, and the
// decision expected, as the action describes it.
type row struct {
	name string
	fix  fixture
	at   time.Duration // after t0
	act  func(t *testing.T, s *Scheduler, now time.Time) string
	want string
}

func run(t *testing.T, rows []row) {
	t.Helper()
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			s := r.fix.build(t)
			if got := r.act(t, s, t0.Add(r.at)); got != r.want {
				t.Errorf("got  %q\nwant %q", got, r.want)
			}
		})
	}
}

// grants shows what a claim leased: job/frame for each task, the further
// frames of a chunk as +frame.
func grants(gs []Grant) string {
	var b strings.Builder
	for _, g := range gs {
		f := g.Job.Frames[g.Idx].ID
		if g.Chunk != 0 && g.Chunk != g.Epoch {
			fmt.Fprintf(&b, "+%d", f)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", g.Job.ID, f)
	}
	return b.String()
}

// claim is the action of worker w claiming up to max tasks.
func claim(w string, backends map[string]string, max int) func(*testing.T, *Scheduler, time.Time) string {
	return func(_ *testing.T, s *Scheduler, now time.Time) string {
		return grants(s.Claim(now, w, backends, max))
	}
}

// lease claims frame id of job for worker w at now, failing the test if
// it is not what the claim gives.
func lease(t *testing.T, s *Scheduler, now time.Time, w string, job, id int64) (*Job, int32) {
	t.Helper()
	gs := s.Claim(now, w, builtin, 1)
	if len(gs) != 1 || gs[0].Job.ID != job || gs[0].Job.Frames[gs[0].Idx].ID != id {
		t.Fatalf("%s claimed %q, want %d/%d", w, grants(gs), job, id)
	}
	return gs[0].Job, gs[0].Idx
}

// fail fails the attempt of w at frame id of job, claimed at now.
func fail(t *testing.T, s *Scheduler, now time.Time, w string, job, id int64) {
	t.Helper()
	j, i := lease(t, s, now, w, job, id)
	j.Failures[w]++
	s.Fail(j, i, s.Attempt(j, i, "boom", false, false))
}

func state(s *Scheduler, job, id int64) State {
	j := s.Job(job)
	i, _ := j.FrameIndex(id)
	return j.Frames[i].State
}

var stateNames = [NStates]string{"waiting", "ready", "running", "done", "failed", "blocked", "canceled"}

func (st State) String() string { return stateNames[st] }

func TestPlacement(t *testing.T) {
	mixed := `<distrenjob version="1"><name>mixed</name>
<backend name="povray" version="3.7"><scene>a.pov</scene></backend>
<frames><range first="1" last="2"/><frame id="3"><backend name="builtin"/></frame>
<frame id="4"><backend name="ffmpeg"/></frame></frames><outputs><output>*.png</output></outputs></distrenjob>`
	rows := []row{
		{name: "a worker with the backend gets the frames",
			fix: fixture{jobs: []string{manifestXML("", `<range first="1" last="3"/>`)}},
			act: claim("w", builtin, 2), want: "1/1 1/2"},
		{name: "a worker without it gets none",
			fix: fixture{jobs: []string{manifestXML("", `<range first="1" last="3"/>`)}},
			act: claim("w", map[string]string{"povray": "3.7"}, 2), want: ""},
		{name: "the lowest frame among the backends it has",
			fix: fixture{jobs: []string{mixed}},
			act: claim("w", map[string]string{"builtin": "1", "ffmpeg": "6"}, 5), want: "1/3 1/4"},
		{name: "the version the manifest asks for",
			fix: fixture{jobs: []string{mixed}},
			act: claim("w", map[string]string{"povray": "3.7.0.10"}, 5), want: "1/1 1/2"},
		{name: "another version does not do",
			fix: fixture{jobs: []string{mixed}},
			act: claim("w", map[string]string{"povray": "3.8"}, 5), want: ""},
		{name: "backends kept from the last claim",
			fix: fixture{jobs: []string{mixed}, workers: map[string]map[string]string{"w": {"ffmpeg": "6"}}},
			act: claim("w", nil, 5), want: "1/4"},
		{name: "no live worker can: the frames it needs say so",
			fix: fixture{jobs: []string{mixed}, workers: map[string]map[string]string{"w": builtin}},
			act: func(_ *testing.T, s *Scheduler, now time.Time) string {
				missing, n := s.Unplaceable(now, s.Job(1))
				return fmt.Sprintf("%d live, %d frames need %v", s.LiveWorkers(now), n, missing)
			},
			want: "1 live, 3 frames need [povray 3.7 ffmpeg]"},
		{name: "a worker not heard from for a lease is not live",
			fix: fixture{jobs: []string{mixed}, workers: map[string]map[string]string{"w": builtin}},
			at:  ttl,
			act: func(_ *testing.T, s *Scheduler, now time.Time) string {
				return fmt.Sprintf("%d live", s.LiveWorkers(now))
			},
			want: "0 live"},
	}
	run(t, rows)
}

func TestOrder(t *testing.T) {
	rows := []row{
		{name: "priority, then deadline (none last), then submission",
			fix: fixture{jobs: []string{
				manifestXML("<priority>10</priority>", `<frame id="1"/>`),
				manifestXML("<priority>50</priority>", `<frame id="1"/>`),
				manifestXML("<deadline>2026-12-02T00:00:00Z</deadline>", `<frame id="1"/>`),
				manifestXML("<deadline>2026-12-01T18:00:00Z</deadline>", `<frame id="1"/>`),
				manifestXML("<priority>90</priority>", `<frame id="1"/>`),
				manifestXML("<priority>50</priority>", `<frame id="1"/>`),
			}},
			act: claim("w", builtin, 10), want: "5/1 4/1 3/1 2/1 6/1 1/1"},
		{name: "lowest frame id first within a job, whatever the manifest order",
			fix:  fixture{jobs: []string{manifestXML("", `<frame id="9"/><range first="3" last="4"/><frame id="1"/>`)}},
			act:  claim("w", builtin, 10),
			want: "1/1 1/3 1/4 1/9"},
		{name: "a claim takes at most its max, in order",
			fix: fixture{jobs: []string{
				manifestXML("", `<range first="1" last="3"/>`),
				manifestXML("<priority>60</priority>", `<range first="1" last="2"/>`),
			}},
			act: claim("w", builtin, 3), want: "2/1 2/2 1/1"},
		{name: "a frame is ready when the frames it depends on are done",
			fix: fixture{jobs: []string{manifestXML("", `<frame id="1"/><frame id="2"><depends on="1"/></frame><frame id="3"/>`)},
				prep: func(t *testing.T, s *Scheduler) {
					j, i := lease(t, s, t0, "w", 1, 1)
					s.Complete(j, i)
				}},
			act: claim("w", builtin, 10), want: "1/2 1/3"},
		{name: "across jobs",
			fix: fixture{jobs: []string{
				manifestXML("", `<frame id="1"/>`),
				manifestXML("<priority>90</priority>", `<frame id="1"><depends on="distren://farm/1/frame/1"/></frame>`),
			}},
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				before := grants(s.Claim(now, "w", builtin, 10))
				j, i := s.Job(1), int32(0)
				s.Complete(j, i)
				return before + " | " + grants(s.Claim(now, "w", builtin, 10))
			},
			want: "1/1 | 2/1"},
		{name: "a frame waiting for a failed frame is blocked, and waits again when it is retried",
			fix: fixture{jobs: []string{manifestXML("<retries>0</retries>", `<frame id="1"/><frame id="2"><depends on="1"/></frame>`)},
				prep: func(t *testing.T, s *Scheduler) { fail(t, s, t0, "w", 1, 1) }},
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				before := fmt.Sprintf("%v %v", state(s, 1, 1), state(s, 1, 2))
				s.Retry(s.Job(1), []int32{0})
				return before + " | " + fmt.Sprintf("%v %v", state(s, 1, 1), state(s, 1, 2))
			},
			want: "failed blocked | ready waiting"},
	}
	run(t, rows)
}

func TestLeases(t *testing.T) {
	one := fixture{jobs: []string{manifestXML("<retries>0</retries>", `<frame id="1"/>`)}}
	rows := []row{
		{name: "a grant has an epoch of this incarnation and expires a lease later",
			fix: one, at: time.Second,
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "w", 1, 1)
				f := &j.Frames[i]
				return fmt.Sprintf("boot %d, seq %d, %v, expires after %v, held %v", f.Epoch>>32, f.Epoch&0xffffffff,
					f.State, f.Expires.Sub(now), s.Held(j, i, "w", f.Epoch))
			},
			want: "boot 7, seq 1, running, expires after 10s, held true"},
		{name: "a heartbeat extends the lease",
			fix: one, at: 0,
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "w", 1, 1)
				s.Extend(now.Add(8*time.Second), j, i, 1.5)
				return fmt.Sprintf("expired at +15s: %d, progress %v", len(s.Expired(now.Add(15*time.Second))), j.Frames[i].Progress)
			},
			want: "expired at +15s: 0, progress 1"},
		{name: "an expired lease requeues the frame and counts a lost attempt, not a retry",
			fix: one, at: 0,
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				lease(t, s, now, "w", 1, 1)
				early := len(s.Expired(now.Add(ttl - time.Nanosecond)))
				exp := s.Expired(now.Add(ttl))
				if len(exp) != 1 {
					return fmt.Sprintf("expired %d", len(exp))
				}
				j, i := exp[0].Job, exp[0].Idx
				o := s.Attempt(j, i, "lease expired", false, true)
				s.Fail(j, i, o)
				f := &j.Frames[i]
				return fmt.Sprintf("before: %d; %+v; %v, %d attempts, %d lost, %d running", early, o, f.State, f.Attempts, f.Lost, len(s.Running()))
			},
			want: "before: 0; {Attempts:1 Lost:1 Err:lease expired Failed:false}; ready, 1 attempts, 1 lost, 0 running"},
		{name: "more than MaxLostLeases lost leases fail the frame",
			fix: fixture{jobs: one.jobs, prep: func(t *testing.T, s *Scheduler) {
				for n := range MaxLostLeases {
					j, i := lease(t, s, t0, fmt.Sprintf("w%d", n), 1, 1)
					s.Fail(j, i, s.Attempt(j, i, "lease expired", false, true))
				}
			}},
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "last", 1, 1)
				o := s.Attempt(j, i, "lease expired", false, true)
				s.Fail(j, i, o)
				return fmt.Sprintf("%+v; %v", o, j.Frames[i].State)
			},
			want: "{Attempts:11 Lost:11 Err:lease expired; the frame lost its lease 11 times (it may be what stops its workers) Failed:true}; failed"},
		{name: "a new epoch fences the stale lease",
			fix: one, at: 0,
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "w1", 1, 1)
				old := j.Frames[i].Epoch
				s.Fail(j, i, s.Attempt(j, i, "lease expired", false, true))
				lease(t, s, now.Add(ttl), "w2", 1, 1)
				cur := j.Frames[i].Epoch
				return fmt.Sprintf("newer %v, old held by w1 %v, new held by w1 %v, by w2 %v",
					cur > old, s.Held(j, i, "w1", old), s.Held(j, i, "w1", cur), s.Held(j, i, "w2", cur))
			},
			want: "newer true, old held by w1 false, new held by w1 false, by w2 true"},
		{name: "a released frame is ready again, no attempt counted",
			fix: one, at: 0,
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "w", 1, 1)
				s.Release(j, i)
				return fmt.Sprintf("%v, %d attempts, %d running", j.Frames[i].State, j.Frames[i].Attempts, len(s.Running()))
			},
			want: "ready, 0 attempts, 0 running"},
		{name: "workers not heard from for ten leases are forgotten",
			fix: fixture{jobs: one.jobs, workers: map[string]map[string]string{"old": builtin}, prep: func(t *testing.T, s *Scheduler) {
				s.Seen(t0.Add(5*ttl), "recent")
			}},
			at: 10*ttl + time.Nanosecond,
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				s.Forget(now)
				return fmt.Sprint(len(s.Workers()), s.Workers()["recent"] != nil)
			},
			want: "1 true"},
	}
	run(t, rows)
}

func TestRetries(t *testing.T) {
	two := map[string]map[string]string{"w1": builtin, "w2": builtin}
	rows := []row{
		{name: "retried up to <retries>, then failed",
			fix: fixture{jobs: []string{manifestXML("<retries>2</retries>", `<frame id="1"/>`)}, workers: map[string]map[string]string{"w": builtin}},
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				var out []string
				for range 3 {
					j, i := lease(t, s, now, "w", 1, 1)
					o := s.Attempt(j, i, "boom", false, false)
					s.Fail(j, i, o)
					out = append(out, fmt.Sprintf("%d:%v", o.Attempts, j.Frames[i].State))
				}
				return strings.Join(out, " ")
			},
			want: "1:ready 2:ready 3:failed"},
		{name: "lost leases do not count against <retries>",
			fix: fixture{jobs: []string{manifestXML("<retries>1</retries>", `<frame id="1"/>`)}, prep: func(t *testing.T, s *Scheduler) {
				for range 3 {
					j, i := lease(t, s, t0, "w", 1, 1)
					s.Fail(j, i, s.Attempt(j, i, "lease expired", false, true))
				}
			}},
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "w", 1, 1)
				first := s.Attempt(j, i, "boom", false, false)
				s.Fail(j, i, first)
				j, i = lease(t, s, now, "w", 1, 1)
				return fmt.Sprintf("%v %v", first.Failed, s.Attempt(j, i, "boom", false, false).Failed)
			},
			want: "false true"},
		{name: "a final failure fails at once",
			fix: fixture{jobs: []string{manifestXML("<retries>5</retries>", `<frame id="1"/>`)}},
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "w", 1, 1)
				return fmt.Sprint(s.Attempt(j, i, "scene does not parse", true, false).Failed)
			},
			want: "true"},
		{name: "the worker that failed a frame does not get it while another live worker could",
			fix: fixture{jobs: []string{manifestXML("", `<range first="1" last="2"/>`)}, workers: two,
				prep: func(t *testing.T, s *Scheduler) { fail(t, s, t0, "w1", 1, 1) }},
			act: func(_ *testing.T, s *Scheduler, now time.Time) string {
				return grants(s.Claim(now, "w1", nil, 5)) + " | " + grants(s.Claim(now, "w2", nil, 5))
			},
			want: "1/2 | 1/1"},
		{name: "it gets it when no other live worker could",
			fix: fixture{jobs: []string{manifestXML("", `<range first="1" last="2"/>`)}, workers: two,
				prep: func(t *testing.T, s *Scheduler) {
					fail(t, s, t0, "w1", 1, 1)
					s.Seen(t0.Add(ttl), "w1")
				}},
			at:  ttl, // w2 is not live any more
			act: claim("w1", nil, 5), want: "1/1 1/2"},
		{name: "nor when the other worker failed it too",
			fix: fixture{jobs: []string{manifestXML("<retries>5</retries>", `<frame id="1"/>`)}, workers: two,
				prep: func(t *testing.T, s *Scheduler) {
					fail(t, s, t0, "w1", 1, 1)
					fail(t, s, t0, "w2", 1, 1)
				}},
			act: claim("w1", nil, 5), want: "1/1"},
		{name: "retry starts a failed frame's attempts again",
			fix: fixture{jobs: []string{manifestXML("<retries>0</retries>", `<frame id="1"/>`)},
				prep: func(t *testing.T, s *Scheduler) { fail(t, s, t0, "w", 1, 1) }},
			act: func(_ *testing.T, s *Scheduler, now time.Time) string {
				j := s.Job(1)
				s.Retry(j, []int32{0})
				f := &j.Frames[0]
				return fmt.Sprintf("%v, %d attempts, failed on %v, failures %v, error %q", f.State, f.Attempts, f.FailedOn, j.Failures, f.Err)
			},
			want: "ready, 0 attempts, failed on [], failures map[], error \"\""},
	}
	run(t, rows)
}

func TestBlocklist(t *testing.T) {
	jobs := []string{manifestXML("<retries>9</retries>", `<range first="1" last="6"/>`), manifestXML("<priority>10</priority>", `<frame id="1"/>`)}
	failThrice := func(t *testing.T, s *Scheduler) {
		for id := range int64(3) {
			fail(t, s, t0, "flaky", 1, id+1)
		}
	}
	rows := []row{
		{name: "two failures: still given the job's frames",
			fix: fixture{jobs: jobs, workers: map[string]map[string]string{"flaky": builtin, "good": builtin},
				prep: func(t *testing.T, s *Scheduler) {
					fail(t, s, t0, "flaky", 1, 1)
					fail(t, s, t0, "flaky", 1, 2)
				}},
			act: claim("flaky", nil, 2), want: "1/3 1/4"},
		{name: "three failures in a job: none of its frames while another live worker exists",
			fix: fixture{jobs: jobs, workers: map[string]map[string]string{"flaky": builtin, "good": builtin}, prep: failThrice},
			act: claim("flaky", nil, 2), want: "2/1"},
		{name: "the other worker gets them",
			fix: fixture{jobs: jobs, workers: map[string]map[string]string{"flaky": builtin, "good": builtin}, prep: failThrice},
			act: claim("good", nil, 2), want: "1/1 1/2"},
		{name: "the only live worker gets them rather than none",
			fix: fixture{jobs: jobs, workers: map[string]map[string]string{"flaky": builtin, "good": builtin}, prep: failThrice},
			at:  ttl,
			act: claim("flaky", nil, 1), want: "1/1"},
		{name: "another blocklisted worker does not count",
			fix: fixture{jobs: jobs, workers: map[string]map[string]string{"flaky": builtin, "also": builtin},
				prep: func(t *testing.T, s *Scheduler) {
					failThrice(t, s)
					s.Job(1).Failures["also"] = 3
				}},
			act: claim("flaky", nil, 1), want: "1/1"},
	}
	run(t, rows)
}

func TestChunks(t *testing.T) {
	job := `<distrenjob version="1"><name>pov</name><chunk>4</chunk>
<backend name="povray"><scene>a.pov</scene></backend>
<frames><range first="1" last="10"/><range first="12" last="13"/>
<frame id="14"><backend name="povray"><scene>b.pov</scene></backend></frame>
<frame id="15"><backend name="builtin"/></frame></frames><outputs><output>*.png</output></outputs></distrenjob>`
	pov := map[string]string{"povray": "3.7", "builtin": "1"}
	rows := []row{
		{name: "consecutive frames with the same backend element go together; max counts tasks",
			fix: fixture{jobs: []string{job}, chunks: true},
			act: claim("w", pov, 10), want: "1/1+2+3+4 1/5+6+7+8 1/9+10 1/12+13 1/14 1/15"},
		{name: "max one task",
			fix: fixture{jobs: []string{job}, chunks: true},
			act: claim("w", pov, 1), want: "1/1+2+3+4"},
		{name: "each frame of a chunk has its own lease, the chunk named by the first epoch",
			fix: fixture{jobs: []string{job}, chunks: true},
			act: func(_ *testing.T, s *Scheduler, now time.Time) string {
				gs := s.Claim(now, "w", pov, 1)
				var out []string
				for _, g := range gs {
					out = append(out, fmt.Sprintf("%d:%d", g.Epoch&0xffff, g.Chunk&0xffff))
				}
				return strings.Join(out, " ")
			},
			want: "1:1 2:1 3:1 4:1"},
		{name: "a backend that does not render ranges gets single frames",
			fix: fixture{jobs: []string{job}},
			act: claim("w", pov, 2), want: "1/1 1/2"},
		{name: "a chunk is formed from ready frames only",
			fix: fixture{jobs: []string{job}, chunks: true,
				prep: func(t *testing.T, s *Scheduler) {
					gs := s.Claim(t0, "other", pov, 1) // 1-4
					s.Release(gs[2].Job, gs[2].Idx)    // 3 ready again
				}},
			act: claim("w", pov, 2), want: "1/3 1/5+6+7+8"},
		{name: "a frame that failed on the worker ends its chunk",
			fix: fixture{jobs: []string{job}, chunks: true,
				prep: func(t *testing.T, s *Scheduler) {
					gs := s.Claim(t0, "w", pov, 1) // 1-4
					for _, g := range gs {
						if g.Job.Frames[g.Idx].ID == 3 {
							s.Fail(g.Job, g.Idx, s.Attempt(g.Job, g.Idx, "boom", false, false))
						} else {
							s.Release(g.Job, g.Idx)
						}
					}
				}},
			act: claim("w", pov, 1), want: "1/1+2"},
	}
	run(t, rows)
}

func TestCancel(t *testing.T) {
	rows := []row{
		{name: "cancel withdraws ready and running frames, ends their leases, blocks dependents in other jobs",
			fix: fixture{jobs: []string{
				manifestXML("", `<range first="1" last="3"/>`),
				manifestXML("", `<frame id="1"><depends on="distren://farm/1/frame/3"/></frame>`),
			}, prep: func(t *testing.T, s *Scheduler) { lease(t, s, t0, "w", 1, 1) }},
			act: func(_ *testing.T, s *Scheduler, now time.Time) string {
				j := s.Job(1)
				j.Canceled = true
				s.Cancel(j, s.Cancelable(j, 0, ""))
				return fmt.Sprintf("%v %v %v %v, %d running, claim %q", state(s, 1, 1), state(s, 1, 2), state(s, 1, 3),
					state(s, 2, 1), len(s.Running()), grants(s.Claim(now, "w", builtin, 5)))
			},
			want: "canceled canceled canceled blocked, 0 running, claim \"\""},
		{name: "a frame given back in a canceled job is canceled",
			fix: fixture{jobs: []string{manifestXML("", `<range first="1" last="2"/>`)}},
			act: func(t *testing.T, s *Scheduler, now time.Time) string {
				j, i := lease(t, s, now, "w", 1, 1)
				j.Canceled = true
				s.Release(j, i)
				return fmt.Sprint(state(s, 1, 1), " ", state(s, 1, 2))
			},
			want: "canceled ready"},
	}
	run(t, rows)
}
