// Package termsafe makes text that came from elsewhere — a job's manifest,
// a renderer's output, a worker's name, a server's answer — safe to print
// on a terminal. A terminal obeys the control characters in what it is
// given: ESC sequences retitle or clear it, move the cursor or repaint
// lines, a carriage return overwrites the line it ends, and bidirectional
// format characters reorder what is shown. Every such character is printed
// as a visible escape instead (\x1b, \r, \u202e, ...), so what a user reads
// is what the text holds.
//
// Line is for one-line fields (names, states, table cells) and escapes
// newlines and tabs too; Text is for messages of several lines and keeps
// them. JSON escapes what encoding/json leaves raw in its output.
package termsafe

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Line returns s with every character a terminal would act on escaped:
// C0 controls (newline and tab included), DEL, C1 controls, format
// characters (bidirectional overrides and isolates, zero-width ones), line
// and paragraph separators, and bytes that are not UTF-8.
func Line(s string) string { return escape(s, false) }

// Text is Line for text of several lines: newlines and tabs stay, and a
// carriage return before a newline is dropped (so CRLF output reads as
// lines); every other character Line escapes is escaped.
func Text(s string) string { return escape(s, true) }

// Unsafe reports whether r is a character Line escapes.
func Unsafe(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

func escape(s string, text bool) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (Unsafe(r) && !(text && (r == '\n' || r == '\t'))) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case text && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case text && r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
			// CRLF: the newline follows
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && Unsafe(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r > 0xffff && Unsafe(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		case Unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// JSON returns encoded JSON with the characters Line escapes, which
// encoding/json writes raw (DEL, C1 controls, format characters), written as
// \u escapes instead. The JSON means the same: outside strings JSON holds
// only ASCII punctuation, literals and whitespace, which are kept.
func JSON(b []byte) []byte {
	clean := true
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if Unsafe(r) && !isJSONSpace(r) || (r == utf8.RuneError && n == 1) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = append(out, `\ufffd`...) // encoding/json never writes one; keep it valid
		case Unsafe(r) && !isJSONSpace(r):
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
		default:
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

func isJSONSpace(r rune) bool { return r == ' ' || r == '\n' || r == '\t' || r == '\r' }
