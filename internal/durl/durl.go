// Package durl owns distren's addresses: the distren:// URLs of servers, jobs,
// frames and files, and the job references users type (a URL or a number).
package durl

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Scheme is the URL scheme of every distren address.
const Scheme = "distren://"

var serverName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ValidServer reports whether name is a valid server name: [a-z0-9][a-z0-9-]*.
func ValidServer(name string) bool { return len(name) <= 63 && serverName.MatchString(name) }

// Kind says what an address points at.
type Kind int

const (
	KindServer Kind = iota
	KindJob
	KindFrame
	KindFile
)

// Addr is a parsed distren address.
type Addr struct {
	Server string
	Kind   Kind
	Job    int64 // > 0 unless Kind is KindServer
	N      int64 // frame or file number, >= 0
}

// Job returns the URL of a job.
func Job(server string, job int64) string { return fmt.Sprintf("%s%s/%d", Scheme, server, job) }

// Frame returns the URL of a frame.
func Frame(server string, job, frame int64) string {
	return fmt.Sprintf("%s%s/%d/frame/%d", Scheme, server, job, frame)
}

// File returns the URL of a file.
func File(server string, job, file int64) string {
	return fmt.Sprintf("%s%s/%d/file/%d", Scheme, server, job, file)
}

// String formats the address as a URL.
func (a Addr) String() string {
	switch a.Kind {
	case KindJob:
		return Job(a.Server, a.Job)
	case KindFrame:
		return Frame(a.Server, a.Job, a.N)
	case KindFile:
		return File(a.Server, a.Job, a.N)
	}
	return Scheme + a.Server + "/"
}

// Parse parses a distren:// URL strictly: no query, no fragment, no port, no
// empty or extra path segments, numbers in plain decimal.
func Parse(s string) (Addr, error) {
	var a Addr
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return a, fmt.Errorf("malformed distren URL %q: must start with %s", s, Scheme)
	}
	parts := strings.Split(rest, "/")
	if !ValidServer(parts[0]) {
		return a, fmt.Errorf("malformed distren URL %q: server name %q must match [a-z0-9][a-z0-9-]* (at most 63 characters)", s, parts[0])
	}
	a.Server = parts[0]
	parts = parts[1:]
	if len(parts) == 0 || (len(parts) == 1 && parts[0] == "") {
		return a, nil
	}
	var err error
	if a.Job, err = number(parts[0]); err != nil {
		return a, fmt.Errorf("malformed distren URL %q: job %q must be a positive number: %w", s, parts[0], err)
	}
	if a.Job == 0 {
		return a, fmt.Errorf("malformed distren URL %q: job %q must be a positive number: jobs are numbered from 1", s, parts[0])
	}
	a.Kind = KindJob
	switch {
	case len(parts) == 1:
		return a, nil
	case len(parts) == 3 && (parts[1] == "frame" || parts[1] == "file"):
		if a.N, err = number(parts[2]); err != nil {
			return a, fmt.Errorf("malformed distren URL %q: %s %q must be a non-negative number: %w", s, parts[1], parts[2], err)
		}
		a.Kind = KindFrame
		if parts[1] == "file" {
			a.Kind = KindFile
		}
		return a, nil
	}
	return a, fmt.Errorf("malformed distren URL %q: expected distren://<server>/<job>[/frame/<n>|/file/<n>]", s)
}

// number parses a plain non-negative decimal that fits in int64.
func number(s string) (int64, error) {
	switch {
	case s == "":
		return 0, errors.New("empty")
	case strings.TrimLeft(s, "0123456789") != "":
		return 0, errors.New("only the digits 0-9 are allowed")
	case len(s) > 1 && s[0] == '0':
		return 0, errors.New("no leading zeros")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("larger than %d", int64(math.MaxInt64))
	}
	return n, nil
}

// ParseJobRef parses what a user typed to name a job: a job number ("42") or a
// job URL ("distren://farm/42"). server is "" for a bare number.
func ParseJobRef(s string) (server string, job int64, err error) {
	if strings.HasPrefix(s, Scheme) {
		a, err := Parse(s)
		if err != nil {
			return "", 0, err
		}
		if a.Kind != KindJob {
			return "", 0, fmt.Errorf("%q is not a job URL (distren://<server>/<job>)", s)
		}
		return a.Server, a.Job, nil
	}
	job, err = number(s)
	if err == nil && job == 0 {
		err = errors.New("jobs are numbered from 1")
	}
	if err != nil {
		return "", 0, fmt.Errorf("job %q: expected a job number or a distren://<server>/<job> URL (%v)", s, err)
	}
	return "", job, nil
}
