package main

import (
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/manifest"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses; the fields are
	// counted after its closing one.
	stat := "4242 (dis) tren) S 1 4242 4242 0 -1 4194560 2539 0 0 0 250 37 12 3 20 0 9 0 5071 1464418304 6020 18446744073709551615"
	got, err := parseStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpu{self: 2870 * time.Millisecond, children: 150 * time.Millisecond}); got != want {
		t.Fatalf("parseStat = %+v, want %+v", got, want)
	}
	if _, err := parseStat("4242 (distren) S 1 2"); err == nil {
		t.Fatal("parseStat accepted a line with too few fields")
	}
}

func TestParseCases(t *testing.T) {
	got, err := parseCases("spawn, throughput")
	if err != nil || len(got) != 2 || !got["spawn"] || !got["throughput"] {
		t.Fatalf("parseCases = %v, %v", got, err)
	}
	if got, _ := parseCases("all"); len(got) != 4 {
		t.Fatalf("all = %v", got)
	}
	if _, err := parseCases("throughput,speed"); err == nil || !strings.Contains(err.Error(), `"speed"`) {
		t.Fatalf("an unknown case: %v", err)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {nil, 0}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Error("median reordered its argument")
	}
}

// TestManifests: the jobs the benchmark submits are valid for the server's
// backends, with the frames asked for.
func TestManifests(t *testing.T) {
	for _, c := range []struct {
		backend, name string
		explicit      bool
	}{{builtinFrame, "builtin", false}, {builtinFrame, "builtin", true}, {touchFrame, "command", false}} {
		m, err := manifest.Parse(strings.NewReader(jobXML(c.backend, 30, c.explicit)), "distrenjob.xml", manifest.Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := backend.Default().CheckManifest(m); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(m.Frames) != 30 || m.Frames[29].ID != 30 {
			t.Fatalf("%s: %d frames", c.name, len(m.Frames))
		}
	}
}
