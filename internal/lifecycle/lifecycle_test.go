package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestOrderAndEvents(t *testing.T) {
	var log []string
	r := &Runner{Session: "session"}
	for _, name := range []string{"vault", "engine", "session", "net"} {
		r.Add(Subsystem{
			Name:  name,
			Start: func(context.Context) error { log = append(log, "start "+name); return nil },
			Stop:  func(context.Context) error { log = append(log, "stop "+name); return nil },
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.On(SessionReady, cancel) // an orderly stop as soon as everything runs
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"start vault", "start engine", "start session", "start net", "stop net", "stop session", "stop engine", "stop vault"}
	if !slices.Equal(log, want) {
		t.Errorf("order = %v, want %v", log, want)
	}
	wantEv := []Event{GlobalInit, SessionStart, SessionInit, SessionReady, SessionClose, SessionEnd, GlobalShutdown}
	if got := r.Fired(); !slices.Equal(got, wantEv) {
		t.Errorf("events = %v, want %v", got, wantEv)
	}
}

func TestFailureStopsAllAndExitsInEmergency(t *testing.T) {
	var stopped []string
	boom := errors.New("disk gone")
	r := &Runner{Session: "session"}
	r.Add(Subsystem{Name: "session", Stop: func(context.Context) error { stopped = append(stopped, "session"); return nil },
		Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	r.Add(Subsystem{Name: "net", Stop: func(context.Context) error { stopped = append(stopped, "net"); return nil },
		Run: func(ctx context.Context) error { return boom }})
	err := r.Run(context.Background())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "net failed") {
		t.Fatalf("Run = %v, want the net failure", err)
	}
	if !slices.Equal(stopped, []string{"net", "session"}) {
		t.Errorf("stopped = %v", stopped)
	}
	ev := r.Fired()
	if ev[len(ev)-1] != EmergencyExit || slices.Contains(ev, GlobalShutdown) {
		t.Errorf("events = %v, want emergency exit instead of global shutdown", ev)
	}
}

func TestStartFailureStopsStarted(t *testing.T) {
	var stopped []string
	r := &Runner{}
	r.Add(Subsystem{Name: "vault", Stop: func(context.Context) error { stopped = append(stopped, "vault"); return nil }})
	r.Add(Subsystem{Name: "engine", Start: func(context.Context) error { return errors.New("no scratch dir") },
		Stop: func(context.Context) error { stopped = append(stopped, "engine"); return nil }})
	err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "starting engine: no scratch dir") {
		t.Fatalf("Run = %v", err)
	}
	if !slices.Equal(stopped, []string{"vault"}) {
		t.Errorf("stopped = %v, want only the started vault", stopped)
	}
}
