package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/client"
)

// TestConnFlags: where the token comes from (--token, --token-file,
// $DISTREN_TOKEN, in that order) and what --ca-cert accepts.
func TestConnFlags(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	t.Setenv("DISTREN_TOKEN", "from-env")
	for _, tc := range []struct {
		name string
		f    connFlags
		want string // Authorization header, or the error
	}{
		{"env", connFlags{}, "Bearer from-env"},
		{"flag", connFlags{token: "from-flag"}, "Bearer from-flag"},
		{"file", connFlags{tokenFile: file("tok", "from-file\n")}, "Bearer from-file"},
		{"both", connFlags{token: "a", tokenFile: file("tok2", "b")}, "give one of them"},
		{"empty file", connFlags{tokenFile: file("empty", "\n")}, "is empty"},
		{"missing file", connFlags{tokenFile: filepath.Join(dir, "nope")}, "no such file"},
		{"not PEM", connFlags{caCert: file("ca.pem", "hello")}, "no PEM certificate"},
	} {
		got = ""
		opts, err := tc.f.options()
		if err != nil {
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			}
			continue
		}
		c, err := client.New(srv.URL, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Server(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: sent Authorization %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestExplainToken: refused tokens exit 5 with a message that says so and,
// for 401, where a token comes from.
func TestExplainToken(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   []string
	}{
		{401, []string{"server refused the token", "distren token create", "--token-file"}},
		{403, []string{"server refused the token", "needs role"}},
	} {
		err := error(&client.Error{Status: tc.status, Msg: "needs role worker", Op: "POST /v1/claim"})
		msg := explain(err).Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%d: %q does not say %q", tc.status, msg, w)
			}
		}
		if code := exitCode(err); code != exitRejected {
			t.Errorf("%d: exit %d, want %d", tc.status, code, exitRejected)
		}
	}
	if err := errors.New("other"); explain(err) != err {
		t.Error("explain changed an unrelated error")
	}
	if code := exitCode(rejectedError{errors.New("role")}); code != exitRejected {
		t.Errorf("rejectedError: exit %d", code)
	}
}
