package termsafe

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLineAndText(t *testing.T) {
	for _, c := range []struct{ in, line, text string }{
		{"plain name", "plain name", "plain name"},
		{"héllo wörld ✓ 🎬", "héllo wörld ✓ 🎬", "héllo wörld ✓ 🎬"},
		{"\x1b]0;pwned\x07title", `\x1b]0;pwned\x07title`, `\x1b]0;pwned\x07title`},
		{"\x1b[2J\x1b[H", `\x1b[2J\x1b[H`, `\x1b[2J\x1b[H`},
		{"50%\rall frames done", `50%\rall frames done`, `50%\rall frames done`},
		{"a\nb\tc", `a\nb\tc`, "a\nb\tc"},
		{"line 1\r\nline 2", `line 1\r\nline 2`, "line 1\nline 2"},
		{"del\x7f", `del\x7f`, `del\x7f`},
		{"c1 \u009b2J", `c1 \u009b2J`, `c1 \u009b2J`},
		{"abc\u202edcba.exe", `abc\u202edcba.exe`, `abc\u202edcba.exe`},
		{"iso\u2066x\u2069 zw\u200b bom\ufeff ls\u2028", `iso\u2066x\u2069 zw\u200b bom\ufeff ls\u2028`, `iso\u2066x\u2069 zw\u200b bom\ufeff ls\u2028`},
		{"bad \x9b utf-8 \xff", `bad \x9b utf-8 \xff`, `bad \x9b utf-8 \xff`},
		{"tag \U000E0041", `tag \U000e0041`, `tag \U000e0041`},
	} {
		if got := Line(c.in); got != c.line {
			t.Errorf("Line(%q) = %q, want %q", c.in, got, c.line)
		}
		if got := Text(c.in); got != c.text {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.text)
		}
	}
}

// TestNothingUnsafeSurvives runs every rune (and stray bytes) through Line
// and Text: what comes out holds no control or format character, and no
// byte that is not UTF-8; every other character is kept as it is.
func TestNothingUnsafeSurvives(t *testing.T) {
	var b strings.Builder
	for r := rune(0); r <= 0x10ffff; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue // surrogates: not runes of UTF-8
		}
		b.WriteRune(r)
		if s := string(r); !Unsafe(r) && Line(s) != s {
			t.Errorf("Line changed the printable %U to %q", r, Line(s))
		}
	}
	b.WriteString("\x80\x9b\xc2\xff")
	in := b.String()
	for name, out := range map[string]string{"Line": Line(in), "Text": Text(in)} {
		if !utf8.ValidString(out) {
			t.Errorf("%s: output is not UTF-8", name)
		}
		for _, r := range out {
			if Unsafe(r) && !(name == "Text" && (r == '\n' || r == '\t')) {
				t.Errorf("%s let %U through", name, r)
			}
		}
	}
}

func TestJSON(t *testing.T) {
	v := map[string]string{"name": "x\x1b[2J\x7f\u009b\u202e\U000E0041\r\ny", "plain": "ok ✓"}
	enc, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	safe := JSON(append(enc, '\n'))
	for _, r := range string(safe) {
		if Unsafe(r) && r != '\n' && r != '\t' {
			t.Errorf("JSON let %U through: %s", r, safe)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(safe, &back); err != nil {
		t.Fatalf("escaped JSON does not decode: %v\n%s", err, safe)
	}
	if back["name"] != v["name"] || back["plain"] != v["plain"] {
		t.Errorf("escaped JSON decodes to %q, want %q", back, v)
	}
	if clean := []byte(`{"a":"b ✓"}`); string(JSON(clean)) != string(clean) {
		t.Errorf("JSON changed clean input: %s", JSON(clean))
	}
}
