// Package lifecycle owns the order in which distren's subsystems start and
// stop, and the application's lifecycle events. A Runner starts subsystems
// in the order given (vault → engine → session → net → UI), runs them, and
// stops them in reverse; if one fails, all are told to stop, the emergency
// exit event is issued instead of global shutdown, and Run returns the
// failure so the process exits non-zero.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Event is a point in the application's life that components can hook.
type Event int

// The lifecycle events, in the order they occur.
const (
	GlobalInit     Event = iota // before any subsystem starts
	SessionStart                // before the session subsystem starts
	SessionInit                 // the session has loaded its state
	SessionReady                // every subsystem has started; the server serves
	SessionClose                // stopping begins
	SessionEnd                  // the session subsystem has stopped
	GlobalShutdown              // everything stopped after an orderly stop
	EmergencyExit               // everything stopped after a subsystem failed (instead of GlobalShutdown)
)

var eventNames = []string{"global init", "session start", "session init", "session ready", "session close",
	"session end", "global shutdown", "emergency exit"}

func (e Event) String() string { return eventNames[e] }

// Subsystem is one part of the application.
type Subsystem struct {
	Name string
	// Start does local work only and opens the subsystem's interface when
	// it is ready. Nothing may call another subsystem before the runner has
	// started it.
	Start func(ctx context.Context) error
	// Run, if set, runs until ctx ends. Returning an error fails the
	// application; returning nil before ctx ends asks for an orderly stop.
	Run func(ctx context.Context) error
	// Stop releases resources. It never finishes work: everything
	// acknowledged is already durable.
	Stop func(ctx context.Context) error
}

// Runner runs subsystems.
type Runner struct {
	// Session names the subsystem whose start and stop the session events
	// surround.
	Session string
	Log     *slog.Logger
	subs    []Subsystem
	hooks   map[Event][]func()
	fired   []Event
	mu      sync.Mutex
}

// Add appends a subsystem; subsystems start in the order added.
func (r *Runner) Add(s Subsystem) { r.subs = append(r.subs, s) }

// On registers a hook for an event.
func (r *Runner) On(e Event, f func()) {
	if r.hooks == nil {
		r.hooks = map[Event][]func(){}
	}
	r.hooks[e] = append(r.hooks[e], f)
}

// Fired returns the events issued so far, in order.
func (r *Runner) Fired() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.fired...)
}

func (r *Runner) fire(e Event) {
	r.mu.Lock()
	r.fired = append(r.fired, e)
	r.mu.Unlock()
	if r.Log != nil {
		r.Log.Debug("lifecycle", "event", e.String())
	}
	for _, f := range r.hooks[e] {
		f()
	}
}

// Run starts every subsystem, runs them until ctx ends or one of them ends,
// and stops them in reverse order. It returns the first failure.
func (r *Runner) Run(ctx context.Context) error {
	r.fire(GlobalInit)
	var failure error
	started := 0
	for _, s := range r.subs {
		if s.Name == r.Session {
			r.fire(SessionStart)
		}
		if s.Start != nil {
			if err := s.Start(ctx); err != nil {
				failure = fmt.Errorf("starting %s: %w", s.Name, err)
				break
			}
		}
		started++
		if s.Name == r.Session {
			r.fire(SessionInit)
		}
	}
	if failure == nil {
		failure = r.run(ctx)
	}
	r.fire(SessionClose)
	stopCtx := context.WithoutCancel(ctx)
	for i := started - 1; i >= 0; i-- {
		s := r.subs[i]
		if s.Stop != nil {
			if err := s.Stop(stopCtx); err != nil && failure == nil {
				failure = fmt.Errorf("stopping %s: %w", s.Name, err)
			}
		}
		if s.Name == r.Session {
			r.fire(SessionEnd)
		}
	}
	if failure != nil {
		r.fire(EmergencyExit)
		return failure
	}
	r.fire(GlobalShutdown)
	return nil
}

func (r *Runner) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(r.subs))
	n := 0
	for _, s := range r.subs {
		if s.Run == nil {
			continue
		}
		n++
		go func() { results <- result{s.Name, s.Run(ctx)} }()
	}
	r.fire(SessionReady)
	var failure error
	if n == 0 {
		<-ctx.Done()
	}
	for i := 0; i < n; i++ {
		var res result
		select {
		case res = <-results:
		case <-ctx.Done():
			res = <-results
		}
		if res.err != nil && !errors.Is(res.err, context.Canceled) && failure == nil {
			failure = fmt.Errorf("%s failed: %w", res.name, res.err)
		}
		cancel() // one ended: stop the others
	}
	return failure
}
