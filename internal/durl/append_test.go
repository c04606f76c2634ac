package durl

import (
	"math"
	"testing"
)

func TestAppendFrame(t *testing.T) {
	for _, c := range []struct {
		server     string
		job, frame int64
	}{{"a", 1, 0}, {"farm-b", 7, 3}, {"x0", math.MaxInt64, math.MaxInt64}} {
		want := Frame(c.server, c.job, c.frame)
		if got := string(AppendFrame([]byte("pre:"), c.server, c.job, c.frame)); got != "pre:"+want {
			t.Errorf("AppendFrame(%q, %d, %d) = %q, want %q", c.server, c.job, c.frame, got, "pre:"+want)
		}
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = AppendFrame(buf[:0], "farm", 12, 345678) }); n != 0 {
		t.Errorf("AppendFrame allocates %v times", n)
	}
}
