package durl

import "testing"

// FuzzParse: a URL that parses formats back to itself (a server's address
// gains its final slash), and parsing that gives the same address;
// anything else is refused with a message.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"distren://farm/12", "distren://farm/12/frame/3", "distren://farm/12/file/1", "distren://farm/",
		"distren://Farm/1", "distren://farm/01", "distren://farm/1?x", "distren://farm:80/1", "distren://farm/9223372036854775808",
		"distren://farm/1/frame/-1", "distren://farm//1", "http://farm/1", "distren://farm/1/frames/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if !ValidServer(a.Server) || a.Job < 0 || a.N < 0 {
			t.Fatalf("%q parsed to %+v", s, a)
		}
		// A server's address is written with or without the final slash.
		if a.String() != s && !(a.Kind == KindServer && a.String() == s+"/") {
			t.Fatalf("%q parsed to %+v, which formats as %q", s, a, a.String())
		}
		if b, err := Parse(a.String()); err != nil || b != a {
			t.Fatalf("%q: %+v, then %+v, %v", s, a, b, err)
		}
	})
}
