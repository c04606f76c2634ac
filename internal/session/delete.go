package session

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distren/distren/internal/store"
)

// Delete removes a job: it is gone from listings and the API, its running
// frames are abandoned (their workers learn it at their next heartbeat), and
// the objects only it referred to become collectable (LiveObjects). Its id
// is never issued again. A job whose frames other jobs depend on cannot be
// deleted before them.
func (s *Session) Delete(ctx context.Context, jobID int64) error {
	_, err := s.do(ctx, func(tx store.Tx) (any, error) {
		j := s.jobs[jobID]
		if j == nil {
			return nil, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
		}
		var users []string
		for i := range j.Frames {
			for _, d := range j.Frames[i].Dependents {
				if d.Job != j.Job && !slices.Contains(users, jobURL(s.name, d.Job.ID)) {
					users = append(users, jobURL(s.name, d.Job.ID))
				}
			}
		}
		if len(users) > 0 {
			return nil, fmt.Errorf("%w: job %s cannot be deleted: %s depend on its frames (delete them first)",
				ErrInvalid, jobURL(s.name, jobID), strings.Join(users, ", "))
		}
		upd := j.rec
		upd.Deleted = true
		if err := tx.UpdateJob(&upd); err != nil {
			return nil, err
		}
		s.sched.Remove(j.Job)
		delete(s.jobs, jobID)
		s.touched = append(s.touched, jobID)
		for r := range s.remote { // peers' outputs no job here uses any more
			if !s.sched.RemoteDepended(r) {
				delete(s.remote, r)
			}
		}
		return nil, nil
	})
	return err
}

// LiveObjects returns the vault objects that jobs refer to: their input
// chunks, their frames' outputs, and the output tarballs their numbered files
// are in. Anything else may be collected.
func (s *Session) LiveObjects() map[string]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	live := map[string]bool{}
	for _, j := range s.jobs {
		for _, in := range j.inputs {
			for _, c := range in.Chunks {
				live[hex.EncodeToString(c.Hash[:])] = true
			}
		}
		for i := range j.outs {
			if o := j.outs[i].output; o != "" {
				live[o] = true
			}
		}
		for _, f := range j.files {
			live[f.Tar] = true
		}
	}
	for _, o := range s.remote { // peers' outputs that frames here use
		live[o.output] = true
	}
	return live
}

// Expired returns the finished jobs (done, failed or canceled) submitted
// before the time given, oldest first: those a retention setting deletes.
func (s *Session) Expired(before time.Time) []int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []int64
	for id, j := range s.jobs {
		if j.finished() && j.rec.Submitted.Before(before) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
