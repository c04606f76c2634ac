package e2e

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/distren/distren/internal/api"
)

// TestMetrics: GET /metrics parses as Prometheus's text format, and its
// counters agree with a job's known counts.
func TestMetrics(t *testing.T) {
	const frames = 12
	_, url := serve(t, "--data", t.TempDir(), "--name", "metered", "--workers", "2")
	jobURL := strings.TrimSpace(run(t, 0, "submit", writeJob(t, numbersJob(frames, "0"), nil), "--server", url))
	c := apiClient(t, url)
	waitJobDone(t, c, jobID(t, jobURL))

	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	// value returns the value of the metric of family name whose labels
	// include those given.
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no metric %s", name)
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("no metric %s with %v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"distren_frames", []string{"state", api.StateDone}, frames},
		{"distren_jobs", []string{"state", api.JobDone}, 1},
		{"distren_claimed_frames_total", nil, frames},
		{"distren_render_seconds", []string{"backend", "command"}, frames},
		{"distren_http_requests_total", []string{"route", "POST /v1/jobs", "code", "200"}, 1},
		{"distren_workers", []string{"state", "live"}, 1}, // the local slots are one worker
		{"distren_lease_expiries_total", nil, 0},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"distren_vault_bytes_total", []string{"direction", "in"}},
		{"distren_vault_bytes_total", []string{"direction", "out"}},
		{"distren_session_commit_seconds", nil},
		{"distren_session_batch_commands", nil},
		{"distren_claim_wait_seconds", nil},
		{"distren_http_request_seconds", []string{"route", "POST /v1/jobs"}},
		{"go_goroutines", nil},
	} {
		if got := value(c.name, c.labels...); got <= 0 {
			t.Errorf("%s%v = %v, want more than 0", c.name, c.labels, got)
		}
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
