// Package metrics owns what a server tells its monitoring: the Prometheus
// registry of `GET /metrics` (docs/metrics.md). Counters and histograms are
// fed by the session (as its session.Observer) and by the API's handlers
// (Requests); gauges — frames, jobs and workers by state, the vault's
// bytes — are read from the farm when scraped, so a scrape costs what a
// listing of the jobs costs, and the farm pays nothing between scrapes.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Farm is what the gauges read when scraped.
type Farm interface {
	// FrameCounts and JobCounts are the frames and jobs by state.
	FrameCounts() map[string]int
	JobCounts() map[string]int
	// WorkerCounts are the workers heard from: live ones (within a lease)
	// and the others; a peer's workers too.
	WorkerCounts() (live, offline int)
	// VaultBytes are the bytes given to the vault to store, and read from
	// it, since the server started.
	VaultBytes() (in, out int64)
}

// Metrics is a server's registry and the collectors fed as things happen.
type Metrics struct {
	reg *prometheus.Registry

	mu   sync.Mutex
	farm Farm // read by the gauges; nil until SetFarm

	batches     prometheus.Histogram
	commits     prometheus.Histogram
	claims      prometheus.Counter
	claimed     prometheus.Counter
	claimWait   prometheus.Histogram
	expired     prometheus.Counter
	render      *prometheus.HistogramVec
	requests    *prometheus.CounterVec
	reqDuration *prometheus.HistogramVec
}

// New returns the metrics of a farm (SetFarm may give it later), with the
// Go runtime's and the process's own.
func New(farm Farm) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "distren_session_batch_commands",
			Help:    "Commands applied together in one batch of the session's dispatcher (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}}),
		commits: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "distren_session_commit_seconds",
			Help:    "Time of one commit of the state store (batches that changed something durable).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		claims: prometheus.NewCounter(prometheus.CounterOpts{Name: "distren_claims_total",
			Help: "Claims that got frames (a claim answered empty after its wait is not counted)."}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{Name: "distren_claimed_frames_total",
			Help: "Frames leased by claims."}),
		claimWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "distren_claim_wait_seconds",
			Help:    "How long a claim that got frames waited for them.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12)}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Name: "distren_lease_expiries_total",
			Help: "Leases that ran out without a word from their worker (their frames were queued again)."}),
		render: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "distren_render_seconds",
			Help:    "Render time of completed frames, as their workers measured it, by backend.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12)}, []string{"backend"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "distren_http_requests_total",
			Help: "API requests answered, by route (its pattern) and status code."}, []string{"route", "code"}),
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "distren_http_request_seconds",
			Help:    "Time to answer API requests, by route (long polls and streams included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 11)}, []string{"route"}),
	}
	reg.MustRegister(m.batches, m.commits, m.claims, m.claimed, m.claimWait, m.expired, m.render, m.requests, m.reqDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&farmCollector{m: m,
			frames: prometheus.NewDesc("distren_frames", "Frames of the jobs held, by state.", []string{"state"}, nil),
			jobs:   prometheus.NewDesc("distren_jobs", "Jobs held, by state.", []string{"state"}, nil),
			workers: prometheus.NewDesc("distren_workers", "Workers heard from since the server started, live (within a lease) or not.",
				[]string{"state"}, nil),
			vault: prometheus.NewDesc("distren_vault_bytes_total", "Bytes given to the vault to store (in) and read from it (out), before deduplication and compression.",
				[]string{"direction"}, nil)})
	m.farm = farm
	return m
}

// Registry is what GET /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Batch, Claimed, Expired and Rendered make Metrics a session.Observer.
func (m *Metrics) Batch(commands int, commit time.Duration) {
	m.batches.Observe(float64(commands))
	if commit > 0 {
		m.commits.Observe(commit.Seconds())
	}
}

func (m *Metrics) Claimed(frames int, waited time.Duration) {
	m.claims.Inc()
	m.claimed.Add(float64(frames))
	m.claimWait.Observe(waited.Seconds())
}

func (m *Metrics) Expired(leases int) { m.expired.Add(float64(leases)) }

func (m *Metrics) Rendered(backend string, render time.Duration) {
	m.render.WithLabelValues(backend).Observe(render.Seconds())
}

// Request counts an API request answered.
func (m *Metrics) Request(route string, code int, took time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.reqDuration.WithLabelValues(route).Observe(took.Seconds())
}

// SetFarm sets what the gauges read: the session exists only once the
// metrics, its observer, are made.
func (m *Metrics) SetFarm(f Farm) {
	m.mu.Lock()
	m.farm = f
	m.mu.Unlock()
}

// farmCollector reads the gauges from the farm at each scrape.
type farmCollector struct {
	m                            *Metrics
	frames, jobs, workers, vault *prometheus.Desc
}

func (c *farmCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.frames
	ch <- c.jobs
	ch <- c.workers
	ch <- c.vault
}

func (c *farmCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	farm := c.m.farm
	c.m.mu.Unlock()
	if farm == nil {
		return
	}
	for state, n := range farm.FrameCounts() {
		ch <- prometheus.MustNewConstMetric(c.frames, prometheus.GaugeValue, float64(n), state)
	}
	for state, n := range farm.JobCounts() {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(n), state)
	}
	live, off := farm.WorkerCounts()
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(live), "live")
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(off), "offline")
	in, out := farm.VaultBytes()
	ch <- prometheus.MustNewConstMetric(c.vault, prometheus.CounterValue, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(c.vault, prometheus.CounterValue, float64(out), "out")
}
