package manifest

import "testing"

// FuzzFrameSet: a frame set that parses formats back to the same ranges.
func FuzzFrameSet(f *testing.F) {
	for _, s := range []string{"1", "1-10,20", " 3 - 5 ,7", "0-9223372036854775807", "5-1", "-1", "1,,2", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseFrameSet(s)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.First < 0 || r.Last < r.First {
				t.Fatalf("%q parsed to the range %d-%d", s, r.First, r.Last)
			}
		}
		again, err := ParseFrameSet(FormatFrameSet(rs))
		if err != nil || len(again) != len(rs) {
			t.Fatalf("%q formats as %q, which parses to %v, %v", s, FormatFrameSet(rs), again, err)
		}
		for i := range rs {
			if again[i] != rs[i] {
				t.Fatalf("%q: %v, then %v", s, rs, again)
			}
		}
	})
}
