// Package storage owns the storage modules the vault keeps its objects on:
// the Module interface and its contract, the filesystem module (the
// default), the stored object format (a header with magic, version, filters,
// lengths and checksum), and Resilient, which adds an I/O watchdog and
// retries with backoff to any module. storagetest holds the conformance
// suite every module runs, and a fault-injecting module for tests.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// Errors a module returns, wrapped with the object's name. Test with
// errors.Is.
var (
	ErrNotFound    = errors.New("object not found")
	ErrInvalidName = errors.New("invalid object name")
	// ErrStalled: an operation made no progress for the watchdog's timeout.
	ErrStalled = errors.New("storage operation stalled")
	// ErrCorrupt: an object's bytes do not match its header.
	ErrCorrupt = errors.New("stored object is damaged")
)

// Info describes a stored object.
type Info struct {
	Name string
	Size int64 // the bytes Get returns
}

// Module stores named objects. The vault names objects by content (a hash),
// so an object's bytes never change once written; modules may rely on it.
//
// Contract, checked by storagetest.Run:
//
//   - Names match ValidName: lower-case letters, digits, '.', '_', '-' and
//     '/' between non-empty parts, at most 255 bytes. Other names fail with
//     ErrInvalidName.
//   - Put stores exactly size bytes read from r (size -1: until EOF). The
//     object becomes visible — to Get, Stat and List — only when written
//     whole and durable; a Put that fails, is canceled, or reads fewer or
//     more bytes than size leaves nothing visible and no partial object
//     that a later call could take for done. Putting a name that exists
//     replaces it atomically. Put is idempotent and may be retried.
//   - Get opens an object for reading; the caller closes it. Reads from it
//     fail once ctx ends. A missing object fails with ErrNotFound.
//   - GetRange opens the bytes [off, off+length) of an object for reading,
//     fewer if the object ends first (none if off is at or past its end):
//     a record inside a larger object, read without reading the rest.
//     Negative off or length fail; a missing object fails with
//     ErrNotFound. Reads from it fail once ctx ends.
//   - Stat returns an object's Info, or ErrNotFound.
//   - List calls fn once for every object whose name starts with prefix,
//     in no particular order; an error from fn stops it and is returned.
//     Objects put or deleted during a List may or may not be listed.
//   - Delete removes an object; deleting a missing object is not an error.
//     Delete is idempotent and may be retried.
//   - Every method stops when ctx ends and returns an error wrapping
//     ctx.Err(); an operation blocked in the operating system may finish
//     first. Errors name the object.
//   - Methods are safe for concurrent use.
type Module interface {
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	Stat(ctx context.Context, name string) (Info, error)
	List(ctx context.Context, prefix string, fn func(Info) error) error
	Delete(ctx context.Context, name string) error
	// String names the module and where it stores, for messages.
	String() string
}

var validName = regexp.MustCompile(`^[a-z0-9._-]+(/[a-z0-9._-]+)*$`)

// ValidName reports whether name may name an object.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 255 || !validName.MatchString(name) {
		return false
	}
	for _, part := range splitSlash(name) {
		if part == "." || part == ".." {
			return false
		}
	}
	return true
}

func splitSlash(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// checkRange refuses a negative range.
func checkRange(off, length int64) error {
	if off < 0 || length < 0 {
		return fmt.Errorf("invalid range: offset %d, length %d", off, length)
	}
	return nil
}

func checkName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: %q (want lower-case letters, digits, '.', '_', '-', parts separated by '/')", ErrInvalidName, name)
	}
	return nil
}

// objectError names the object an error is about.
type objectError struct {
	op, module, name string
	err              error
}

func (e *objectError) Error() string {
	return fmt.Sprintf("%s object %s on %s: %v", e.op, e.name, e.module, e.err)
}

func (e *objectError) Unwrap() error { return e.err }

func wrap(op string, m Module, name string, err error) error {
	if err == nil {
		return nil
	}
	var oe *objectError
	if errors.As(err, &oe) {
		return err
	}
	return &objectError{op: op, module: m.String(), name: name, err: err}
}
