package scheduler

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestReadyHeap: indexes come out lowest first, however they went in.
func TestReadyHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		in := make([]int32, n)
		for k := range in {
			in[k] = int32(r.IntN(1000))
		}
		var h readyHeap
		for _, x := range in {
			h.push(x)
		}
		var out []int32
		for h.Len() > 0 {
			out = append(out, h.pop())
		}
		want := slices.Clone(in)
		slices.Sort(want)
		if !slices.Equal(out, want) {
			t.Fatalf("%d indexes: out %v, want %v", n, out, want)
		}
	}
}
