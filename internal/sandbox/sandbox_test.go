package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var system = []string{"/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache"}

func sh(t *testing.T, p Policy, dir, script string) (string, error) {
	t.Helper()
	cmd, err := Command(context.Background(), p, []string{"PATH=/usr/bin:/bin"}, "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func TestConfinesFiles(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatalf("this machine cannot sandbox renderers: %v", err)
	}
	work, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(work, "in.txt"), []byte("scene data\n"), 0o644)
	os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("s3cr3t-content\n"), 0o644)
	p := Policy{Read: system, ReadWrite: []string{work}}

	if out, err := sh(t, p, work, "cat in.txt && echo made > out.txt && mkdir d && echo x > d/y && rm d/y"); err != nil {
		t.Fatalf("work inside the sandbox: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "out.txt")); string(b) != "made\n" {
		t.Errorf("out.txt = %q", b)
	}
	for _, script := range []string{
		"cat /etc/passwd",
		"cat " + filepath.Join(outside, "secret.txt"),
		"cat ../" + filepath.Base(outside) + "/secret.txt",
		"echo x > " + filepath.Join(outside, "escaped.txt"),
		"ln -s /etc/passwd link && cat link",
	} {
		out, err := sh(t, p, work, script)
		if err == nil || strings.Contains(out, "root:") || strings.Contains(out, "s3cr3t-content") {
			t.Errorf("%q was allowed: err=%v, output %q", script, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "escaped.txt")); err == nil {
		t.Error("a file was written outside the sandbox")
	}
}

func TestMissingProgram(t *testing.T) {
	if _, err := Command(context.Background(), Policy{}, nil, "no-such-renderer-xyz"); err == nil {
		t.Fatal("no error for a program that does not exist")
	}
}
