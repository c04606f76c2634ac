package farm

import (
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// gauges is the farm as its metrics' gauges read it (metrics.Farm).
type gauges struct {
	sess *session.Session
	v    *vault.Vault
}

func (g gauges) FrameCounts() map[string]int {
	out := map[string]int{}
	for _, j := range g.sess.Jobs() {
		for state, n := range j.Counts {
			out[state] += n
		}
	}
	return out
}

func (g gauges) JobCounts() map[string]int {
	out := map[string]int{}
	for _, j := range g.sess.Jobs() {
		out[j.State]++
	}
	return out
}

func (g gauges) WorkerCounts() (live, offline int) {
	for _, w := range g.sess.WorkerList() {
		if w.Live {
			live++
		} else {
			offline++
		}
	}
	return live, offline
}

func (g gauges) VaultBytes() (in, out int64) {
	st := g.v.Stats()
	return st.BytesIn, st.BytesOut
}
