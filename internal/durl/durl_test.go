package durl

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := []struct {
		in   string
		want Addr
	}{
		{"distren://farm/", Addr{Server: "farm"}},
		{"distren://farm", Addr{Server: "farm"}},
		{"distren://farm-b/7", Addr{Server: "farm-b", Kind: KindJob, Job: 7}},
		{"distren://f0/7/frame/0", Addr{Server: "f0", Kind: KindFrame, Job: 7, N: 0}},
		{"distren://f0/12/file/3", Addr{Server: "f0", Kind: KindFile, Job: 12, N: 3}},
	}
	for _, c := range good {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if c.want.Kind != KindServer && got.String() != c.in {
			t.Errorf("String() = %q, want %q", got.String(), c.in)
		}
	}
	bad := []struct{ in, msg string }{
		{"http://farm/1", "must start with"},
		{"distren://Farm/1", "server name"},
		{"distren://-farm/1", "server name"},
		{"distren://farm:80/1", "server name"},
		{"distren://farm/0", "positive"},
		{"distren://farm/-1", "positive"},
		{"distren://farm/01", "positive"},
		{"distren://farm/1/frame/", "non-negative"},
		{"distren://farm/1/frame/9223372036854775808", "non-negative"},
		{"distren://farm/1/frame/1/x", "expected"},
		{"distren://farm/1/frames/1", "expected"},
		{"distren://farm/1?x=1", "positive"},
		{"distren://", `server name ""`},
		{"distren://UPPER/1", `server name "UPPER"`},
		{"distren://" + strings.Repeat("a", 64) + "/1", "at most 63"},
		{"distren://s/job/frame/x", `job "job" must be a positive number: only the digits`},
		{"distren://s/1/frame/x", `frame "x" must be a non-negative number: only the digits`},
		{"distren://s/9223372036854775808", "larger than 9223372036854775807"},
		{"distren://s/1/file/9223372036854775808", `file "9223372036854775808" must be a non-negative number: larger than`},
		{"distren://s/1/frame/007", "no leading zeros"},
		{"distren://s/0", "numbered from 1"},
		{"distren://s/1/frame/-1", "only the digits"},
	}
	for _, c := range bad {
		_, err := Parse(c.in)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Parse(%q) error = %v, want it to mention %q", c.in, err, c.msg)
		}
	}
}

func TestParseJobRef(t *testing.T) {
	if s, j, err := ParseJobRef("42"); err != nil || s != "" || j != 42 {
		t.Errorf("ParseJobRef(42) = %q %d %v", s, j, err)
	}
	if s, j, err := ParseJobRef("distren://farm/42"); err != nil || s != "farm" || j != 42 {
		t.Errorf("ParseJobRef(url) = %q %d %v", s, j, err)
	}
	for _, in := range []string{"", "0", "x", "-3", "distren://farm/4/frame/1", "distren://farm/"} {
		if _, _, err := ParseJobRef(in); err == nil {
			t.Errorf("ParseJobRef(%q) accepted", in)
		}
	}
	for in, msg := range map[string]string{
		"9223372036854775808":                 "larger than 9223372036854775807",
		"0":                                   "numbered from 1",
		"4x":                                  "only the digits",
		"distren://farm/4/frame/1":            "is not a job URL",
		"distren://farm/99999999999999999999": "larger than",
	} {
		if _, _, err := ParseJobRef(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseJobRef(%q) error = %v, want it to mention %q", in, err, msg)
		}
	}
}
