package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/worker"
)

// TestForWorkerMapsStatuses: each status the worker acts on reaches it as
// its sentinel, with the server's message and the *Error kept; a server
// error stays transient (no sentinel).
func TestForWorkerMapsStatuses(t *testing.T) {
	for _, c := range []struct {
		status int
		want   error // nil: no sentinel
	}{
		{401, worker.ErrDenied},
		{403, worker.ErrDenied},
		{409, worker.ErrStale},
		{413, worker.ErrRejected},
		{400, worker.ErrRejected},
		{500, nil},
		{503, nil},
	} {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(c.status)
				fmt.Fprintf(w, `{"error":"the server's reason %d"}`, c.status)
			}))
			defer srv.Close()
			cl, err := New(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			s := cl.ForWorker()
			if s.String() != srv.URL {
				t.Errorf("String() = %q, want %q", s.String(), srv.URL)
			}
			ctx := context.Background()
			l := api.LeaseRef{Job: 1, Frame: 2, Epoch: 3}
			_, claimErr := s.Claim(ctx, api.ClaimRequest{Worker: "w", Max: 1})
			_, hbErr := s.Heartbeat(ctx, api.Heartbeat{Worker: "w"})
			_, specErr := s.Spec(ctx, "", 1)
			_, blobErr := s.Blob(ctx, strings.Repeat("a", 64))
			for name, err := range map[string]error{
				"claim":     claimErr,
				"heartbeat": hbErr,
				"spec":      specErr,
				"blob":      blobErr,
				"complete":  s.Complete(ctx, "w", l, 0, strings.NewReader("tar"), 3),
				"fail":      s.Fail(ctx, l, api.Failure{Error: "boom"}),
			} {
				if err == nil {
					t.Fatalf("%s: no error", name)
				}
				for _, sentinel := range []error{worker.ErrDenied, worker.ErrStale, worker.ErrRejected} {
					if got := errors.Is(err, sentinel); got != (sentinel == c.want) {
						t.Errorf("%s: errors.Is(%v, %v) = %v", name, err, sentinel, got)
					}
				}
				if !IsStatus(err, c.status) {
					t.Errorf("%s: %v is no longer a *client.Error of status %d", name, err, c.status)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("the server's reason %d", c.status)) {
					t.Errorf("%s: %q lost the server's message", name, err)
				}
			}
		})
	}
	unreachable, _ := New("http://127.0.0.1:1")
	_, err := unreachable.ForWorker().Claim(context.Background(), api.ClaimRequest{})
	if err == nil || errors.Is(err, worker.ErrDenied) || errors.Is(err, worker.ErrStale) || errors.Is(err, worker.ErrRejected) {
		t.Errorf("an unreachable server: %v, want a transient error", err)
	}
}
