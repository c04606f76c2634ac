package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

// authJob is a built-in job of four tiny frames.
const authJob = `<distrenjob version="1"><name>auth</name>
  <backend name="builtin"><width>16</width><height>16</height><samples>1</samples><output>f-{frame}.png</output></backend>
  <frames><range first="1" last="4"/></frames><outputs><output>*.png</output></outputs></distrenjob>`

// newToken creates a token with distren token create and returns it.
func newToken(t *testing.T, data, name, role string) string {
	t.Helper()
	out, errOut := run2(t, 0, "token", "create", "--data", data, "--name", name, "--role", role)
	tok := strings.TrimSpace(out)
	if !regexp.MustCompile(`^dtk_[0-9a-f]{12}_[0-9a-f]{64}$`).MatchString(tok) {
		t.Fatalf("token create printed %q", out)
	}
	if !strings.Contains(errOut, "shown only now") {
		t.Errorf("token create's note: %q", errOut)
	}
	return tok
}

// tokenFile writes a token to a file for --token-file.
func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCode runs distren with extra environment and returns its exit code,
// stdout and stderr, whatever they are.
func runCode(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	} else if err != nil {
		t.Fatalf("distren %v: %v", args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// expect runs distren expecting exit code code and stderr holding every one
// of msgs; it returns stdout.
func expect(t *testing.T, env []string, code int, msgs []string, args ...string) string {
	t.Helper()
	got, out, errOut := runCode(t, env, args...)
	if got != code {
		t.Fatalf("distren %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errOut)
	}
	for _, m := range msgs {
		if !strings.Contains(errOut, m) {
			t.Errorf("distren %s: stderr %q does not say %q", strings.Join(args, " "), errOut, m)
		}
	}
	return out
}

var servingAny = regexp.MustCompile(`msg=serving .*url=(https?://\S+)`)

// serveURL starts distren serve with args (its own --listen) and waits for
// the URL it logs, http or https.
func serveURL(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, append([]string{"serve"}, args...)...)
	waitFor(t, "the server to serve", func() bool {
		select {
		case <-p.done:
			t.Fatalf("server exited: %s", p.log)
		default:
		}
		return servingAny.MatchString(p.log.String())
	})
	return p, servingAny.FindStringSubmatch(p.log.String())[1]
}

// call sends one API request with a token and returns the status and body.
func call(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var r *bytes.Reader
	switch b := body.(type) {
	case nil:
		r = bytes.NewReader(nil)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// TestTokenCommands: create prints a token once, list shows no secret,
// revoke by name or id; the data directory never holds a secret.
func TestTokenCommands(t *testing.T) {
	data := t.TempDir()
	ci := newToken(t, data, "ci", "client")
	w := newToken(t, data, "render-1", "worker")
	out := run(t, 0, "token", "list", "--data", data)
	for _, s := range []string{"ci", "render-1", "client", "worker", ci[4:16]} {
		if !strings.Contains(out, s) {
			t.Errorf("token list does not show %q:\n%s", s, out)
		}
	}
	for _, tok := range []string{ci, w} {
		secret := tok[17:]
		if strings.Contains(out, secret) {
			t.Errorf("token list shows a secret:\n%s", out)
		}
		files, _ := filepath.Glob(filepath.Join(data, "*"))
		for _, f := range files {
			if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds a token's secret", f)
			}
		}
	}
	expect(t, nil, 2, []string{"--role", "client, worker, read, peer, admin"}, "token", "create", "--data", data, "--name", "x", "--role", "root")
	expect(t, nil, 1, []string{"already has this name"}, "token", "create", "--data", data, "--name", "ci", "--role", "read")

	expect(t, nil, 0, []string{`revoked token "ci"`}, "token", "revoke", "ci", "--data", data)
	expect(t, nil, 0, []string{`revoked token "render-1"`}, "token", "revoke", w[4:16], "--data", data) // by id
	expect(t, nil, 1, []string{"already revoked"}, "token", "revoke", "ci", "--data", data)
	expect(t, nil, 1, []string{"no such token"}, "token", "revoke", "nobody", "--data", data)
	expect(t, nil, 1, []string{"does not exist"}, "token", "list", "--data", filepath.Join(data, "elsewhere"))

	var ts []struct {
		Name    string    `json:"name"`
		Revoked time.Time `json:"revoked"`
	}
	if err := json.Unmarshal([]byte(run(t, 0, "token", "list", "--json", "--data", data)), &ts); err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Revoked.IsZero() || ts[1].Revoked.IsZero() {
		t.Errorf("token list --json after revoking both: %+v", ts)
	}
	newToken(t, data, "ci", "client") // a revoked token's name is free again
}

// TestAuthRoles: a server whose data directory holds tokens refuses
// requests without one, and requests a token's role does not allow; a
// remote worker with a worker token renders; a revoked token is refused by
// the running server.
func TestAuthRoles(t *testing.T) {
	data := t.TempDir()
	client := newToken(t, data, "ci", "client")
	worker := newToken(t, data, "render-1", "worker")
	reader := newToken(t, data, "dashboard", "read")
	_, url := serve(t, "--data", data, "--name", "authy", "--workers", "0")
	pkg := writeJob(t, authJob, nil)

	expect(t, nil, 5, []string{"server refused the token", "no token given", "--token"}, "submit", pkg, "--server", url)
	expect(t, nil, 5, []string{"server refused the token", "invalid token"}, "submit", pkg, "--server", url, "--token", "dtk_nonsense")
	expect(t, nil, 5, []string{`token "render-1" has role worker`, "needs role client or admin"}, "submit", pkg, "--server", url, "--token", worker)
	expect(t, nil, 5, []string{`token "ci" has role client`, "a worker needs a token of role worker"},
		"worker", "--server", url, "--token", client, "--dir", t.TempDir())
	if code, body := call(t, "POST", url+"/v1/claim", client, api.ClaimRequest{Worker: "x", Max: 1}); code != 403 || !strings.Contains(string(body), "needs role worker") {
		t.Errorf("client token claims: %d %s", code, body)
	}
	if code, _ := call(t, "GET", url+"/v1/server", "", nil); code != 200 {
		t.Errorf("GET /v1/server without a token: %d; it is the public health check", code)
	}

	remote := start(t, "worker", "--server", url, "--token-file", tokenFile(t, worker), "--slots", "2", "--dir", t.TempDir(), "--name", "remote")
	job := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url, "--token-file", tokenFile(t, client), "--wait", "-q"))
	j, frames := statusWith(t, url, job, reader)
	if j.State != api.JobDone || len(frames) != 4 {
		t.Fatalf("job %+v", j)
	}
	for _, f := range frames {
		if f.Worker != "remote" {
			t.Errorf("frame %d rendered by %q, want the remote worker", f.ID, f.Worker)
		}
	}
	env := []string{"DISTREN_TOKEN=" + reader}
	expect(t, env, 0, nil, "status", job, "--server", url)
	expect(t, env, 5, []string{`token "dashboard" has role read`}, "cancel", job, "--server", url)
	expect(t, env, 5, []string{"needs role admin"}, "gc", "--server", url)

	run(t, 0, "token", "revoke", "dashboard", "--data", data) // beside the running server
	waitFor(t, "the server to refuse the revoked token", func() bool {
		code, _, errOut := runCode(t, env, "status", job, "--server", url)
		return code == 5 && strings.Contains(errOut, "revoked")
	})
	// A worker whose token is revoked stops, saying why, rather than
	// asking again and again.
	run(t, 0, "token", "revoke", "render-1", "--data", data)
	select {
	case <-remote.done:
	case <-time.After(time.Minute):
		t.Fatalf("the worker whose token was revoked still runs: %s", remote.log)
	}
	if code := remote.cmd.ProcessState.ExitCode(); code != 5 || !strings.Contains(remote.log.String(), "the server refused its token") {
		t.Errorf("worker with a revoked token: exit %d, log %s", code, remote.log)
	}
}

func statusWith(t *testing.T, url, job, token string) (api.Job, []api.Frame) {
	t.Helper()
	var s struct {
		Job    api.Job     `json:"job"`
		Frames []api.Frame `json:"frames"`
	}
	if err := json.Unmarshal([]byte(run(t, 0, "status", job, "--json", "--server", url, "--token", token)), &s); err != nil {
		t.Fatal(err)
	}
	return s.Job, s.Frames
}

// TestAuthWorkerLeases: a worker token cannot report on a frame leased to a
// worker of another token, though it knows the worker's name and the
// lease's epoch.
func TestAuthWorkerLeases(t *testing.T) {
	data := t.TempDir()
	client := newToken(t, data, "ci", "client")
	mine := newToken(t, data, "w-mine", "worker")
	other := newToken(t, data, "w-other", "worker")
	_, url := serve(t, "--data", data, "--name", "leases", "--workers", "0")
	run(t, 0, "submit", writeJob(t, authJob, nil), "--server", url, "--token", client, "-q")

	code, body := call(t, "POST", url+"/v1/claim", mine, api.ClaimRequest{Worker: "a", Max: 1, Backends: map[string]string{"builtin": "1"}})
	var cr api.ClaimResponse
	if json.Unmarshal(body, &cr); code != 200 || len(cr.Leases) != 1 {
		t.Fatalf("claim: %d %s", code, body)
	}
	l := cr.Leases[0]
	frame := fmt.Sprintf("%s/v1/jobs/%d/frames/%d", url, l.Job, l.Frame)
	output := fmt.Sprintf("%s/output?worker=a&epoch=%d", frame, l.Epoch)
	for _, tc := range []struct {
		what, path string
		body       any
	}{
		{"heartbeat", url + "/v1/heartbeat", api.Heartbeat{Worker: "a", Leases: []api.LeaseProgress{{LeaseRef: api.LeaseRef{Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}}}}},
		{"fail", frame + "/fail", api.Failure{Worker: "a", Epoch: l.Epoch, Error: "not mine", JobError: true}},
		{"complete", output, []byte("not a tarball")},
	} {
		if code, body := call(t, "POST", tc.path, other, tc.body); code != 403 || !strings.Contains(string(body), `worker \"a\"`) {
			t.Errorf("%s by another worker token: %d %s, want 403", tc.what, code, body)
		}
	}
	var f api.Frame
	if code, body := call(t, "GET", frame, client, nil); code != 200 || json.Unmarshal(body, &f) != nil || f.State != api.StateRunning || f.Worker != "a" {
		t.Fatalf("the frame after the other token's reports: %d %s; want running on a", code, body)
	}
	if code, body := call(t, "POST", frame+"/fail", mine, api.Failure{Worker: "a", Epoch: l.Epoch, Error: "mine", NotRun: true}); code != 200 {
		t.Errorf("the owner gives its frame back: %d %s", code, body)
	}
}

// TestInsecureListen: without authentication, serve listens on loopback
// only, unless --insecure; a token or --auth lets it listen anywhere.
func TestInsecureListen(t *testing.T) {
	data := t.TempDir()
	expect(t, nil, 2, []string{"--insecure", "distren token create", "0.0.0.0:0"},
		"serve", "--listen", "0.0.0.0:0", "--data", data, "--workers", "0")

	p, url := serveURL(t, "--listen", "0.0.0.0:0", "--data", data, "--workers", "0", "--insecure")
	if !strings.Contains(p.log.String(), "WITHOUT authentication") {
		t.Errorf("--insecure serves without a warning:\n%s", p.log)
	}
	local := strings.Replace(url, "0.0.0.0", "127.0.0.1", 1)
	run(t, 0, "status", "--server", local) // no token needed
	p.kill()

	p, url = serveURL(t, "--listen", "0.0.0.0:0", "--data", data, "--workers", "1", "--auth")
	local = strings.Replace(url, "0.0.0.0", "127.0.0.1", 1)
	expect(t, nil, 5, []string{"no token given"}, "status", "--server", local)
	// A token created beside the running server works at once.
	client := newToken(t, data, "ci", "client")
	job := strings.TrimSpace(run(t, 0, "submit", writeJob(t, authJob, nil), "--server", local, "--token", client, "--wait", "-q"))
	if j, _ := statusWith(t, local, job, client); j.State != api.JobDone {
		t.Errorf("job rendered by --auth's local slots: %+v", j)
	}
	p.kill()

	serveURL(t, "--listen", "0.0.0.0:0", "--data", data, "--workers", "0") // a token: no flag needed
}

// TestAuthTurnsOn: a loopback server started without tokens requires them
// as soon as the first is created.
func TestAuthTurnsOn(t *testing.T) {
	data := t.TempDir()
	_, url := serve(t, "--data", data, "--name", "later", "--workers", "0")
	run(t, 0, "status", "--server", url)
	client := newToken(t, data, "ci", "client")
	waitFor(t, "authentication to turn on", func() bool {
		code, _, _ := runCode(t, nil, "status", "--server", url)
		return code == 5
	})
	run(t, 0, "status", "--server", url, "--token", client)
}

// TestTLS: serve HTTPS with a certificate signed by a private CA; clients
// trust it with --ca-cert (or $DISTREN_CA_CERT) and refuse it without; the
// local slots reach their own server over TLS.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
	data := t.TempDir()
	client := newToken(t, data, "ci", "client")
	_, url := serveURL(t, "--listen", "127.0.0.1:0", "--data", data, "--workers", "1", "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("serving at %s, want https://127.0.0.1:PORT", url)
	}
	pkg := writeJob(t, authJob, nil)
	expect(t, nil, 4, []string{"certificate", "--ca-cert"}, "submit", pkg, "--server", url, "--token", client)
	job := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url, "--token", client, "--ca-cert", ca, "--wait", "-q"))
	out := expect(t, []string{"DISTREN_CA_CERT=" + ca, "DISTREN_TOKEN=" + client}, 0, nil, "status", job, "--server", url, "--json")
	var s struct{ Job api.Job }
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Job.State != api.JobDone {
		t.Errorf("status over TLS: %s, %v", out, err)
	}
	// The certificate names 127.0.0.1, not localhost.
	expect(t, nil, 4, []string{"certificate", "does not name the host"},
		"status", "--server", strings.Replace(url, "127.0.0.1", "localhost", 1), "--ca-cert", ca, "--token", client)
}

// writeCerts writes a private CA and a server certificate it signs for
// 127.0.0.1, and returns the files: CA, certificate, key.
func writeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "distren test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "distren test server"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "PRIVATE KEY", keyDER)
}
