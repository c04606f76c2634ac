package session

import (
	"errors"
	"fmt"
)

// ErrTooManyFrames refuses a job whose frames would make the session hold
// more than its limit: every frame held costs memory for as long as its job
// is kept (docs/limits.md).
var ErrTooManyFrames = errors.New("too many frames to hold")

// FramesHeld returns how many frames the session holds, and in how many jobs.
func (s *Session) FramesHeld() (frames, jobs int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.framesHeld(), len(s.jobs)
}

func (s *Session) framesHeld() int {
	n := 0
	for _, j := range s.jobs {
		n += len(j.Frames)
	}
	return n
}

// checkHeld refuses a job of n frames named name if the session would then
// hold more than limit frames (limit 0: no limit). The dispatcher calls it,
// so concurrent submissions cannot pass the limit together.
func (s *Session) checkHeld(name string, n int, limit int64) error {
	if limit <= 0 {
		return nil
	}
	held := s.framesHeld()
	if int64(held)+int64(n) <= limit {
		return nil
	}
	if held == 0 {
		return fmt.Errorf("job %q: %d frames, %w: over the server's limit of %d frames held (serve --max-frames-held)",
			name, n, ErrTooManyFrames, limit)
	}
	return fmt.Errorf("job %q: %d frames, %w: the server holds %d frames of %d jobs already, and %d in all would pass its limit of %d (serve --max-frames-held); delete jobs no longer needed (distren delete JOB) or raise the limit",
		name, n, ErrTooManyFrames, held, len(s.jobs), int64(held)+int64(n), limit)
}
