package filter

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/distren/distren/internal/storage"
)

// Command is a filter that runs external programs: one encodes, another
// (or the same with other arguments) decodes. Each is started once, when
// first needed, and kept running for every object that passes — never one
// process per object — and is given argv directly, never through a shell.
//
// # Protocol
//
// The filter writes requests to the program's standard input and reads
// responses from its standard output, each a frame:
//
//	length   8 bytes   big-endian unsigned, the number of bytes that follow
//	bytes    length bytes
//
// For every request the program writes exactly one response: the request's
// bytes encoded (or decoded), in the order of the requests. Empty frames are
// valid (an empty object). Requests may be pipelined — the next one written
// before the previous response is read — so the program must only read a
// frame, write its answer and flush it, in a loop. When its standard input
// ends (between frames), it exits. A program that cannot process a frame
// writes why to standard error and exits with a non-zero status: the
// requests outstanding fail with the end of what it wrote to standard error,
// and the next request starts it again, at most once per RestartDelay.
type Command struct {
	enc, dec *stream
}

// CommandOptions configure a Command. Zero values select the defaults.
type CommandOptions struct {
	// Timeout: a request not answered within it kills the program, failing
	// the requests outstanding (default 5 minutes).
	Timeout time.Duration
	// RestartDelay is the least time between a program's death and its
	// next start (default 1 s).
	RestartDelay time.Duration
	// MaxFrame is the largest response accepted (default 1 GiB).
	MaxFrame int64
}

// NewCommand returns a filter encoding with the program encode[0] given
// arguments encode[1:], and decoding with decode. It checks that the
// programs exist; they start when first used. Close stops them.
func NewCommand(encode, decode []string, opt CommandOptions) (*Command, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Minute
	}
	if opt.RestartDelay <= 0 {
		opt.RestartDelay = time.Second
	}
	if opt.MaxFrame <= 0 {
		opt.MaxFrame = 1 << 30
	}
	c := &Command{}
	for _, s := range []struct {
		argv []string
		dir  string
		to   **stream
	}{{encode, "encode", &c.enc}, {decode, "decode", &c.dec}} {
		if len(s.argv) == 0 {
			return nil, fmt.Errorf("command filter: no program to %s with", s.dir)
		}
		path, err := exec.LookPath(s.argv[0])
		if err != nil {
			return nil, fmt.Errorf("command filter (%s): %w", s.dir, err)
		}
		*s.to = &stream{path: path, argv: s.argv, dir: s.dir, opt: opt}
	}
	return c, nil
}

// ID implements Filter.
func (c *Command) ID() storage.Filter { return storage.FilterCommand }

// Encode implements Filter: the encoding program transforms in.
func (c *Command) Encode(ctx context.Context, _ string, in []byte) ([]byte, bool, error) {
	out, err := c.enc.do(ctx, in)
	return out, err == nil, err
}

// Decode implements Filter: the decoding program transforms in.
func (c *Command) Decode(ctx context.Context, _ string, in []byte) ([]byte, error) {
	return c.dec.do(ctx, in)
}

// Close ends the programs: their standard input is closed, and a program
// still running after 5 s is killed. Requests outstanding fail.
func (c *Command) Close() error {
	return errors.Join(c.enc.close(), c.dec.close())
}

// stream is one direction of a Command: the program, restarted when it
// dies.
type stream struct {
	path string
	argv []string
	dir  string
	opt  CommandOptions

	mu     sync.Mutex
	p      *proc
	closed bool
	died   time.Time
}

func (s *stream) String() string {
	return fmt.Sprintf("command filter %s (%s)", strings.Join(s.argv, " "), s.dir)
}

// proc is a running program.
type proc struct {
	s      *stream
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *tail
	exited chan struct{} // closed once the program is reaped and err set

	wmu sync.Mutex // a request's frame and its place among the waiters

	mu      sync.Mutex
	waiters []*call // answered in order
	reason  error   // why the program was killed
	err     error   // set once it is gone
}

type call struct {
	out  []byte
	err  error
	done chan struct{}
}

// do sends one request and waits for its response.
func (s *stream) do(ctx context.Context, in []byte) ([]byte, error) {
	p, err := s.proc(ctx)
	if err != nil {
		return nil, err
	}
	c := &call{done: make(chan struct{})}
	// Also covers a program that stops reading: the kill fails the write.
	timer := time.AfterFunc(s.opt.Timeout, func() { p.kill(fmt.Errorf("no response within %s", s.opt.Timeout)) })
	defer timer.Stop()
	p.wmu.Lock()
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		p.wmu.Unlock()
		return nil, p.err
	}
	p.waiters = append(p.waiters, c)
	p.mu.Unlock()
	err = writeFrame(p.stdin, in)
	p.wmu.Unlock()
	if err != nil {
		p.kill(fmt.Errorf("writing a request: %w", err))
	}
	select {
	case <-c.done:
		return c.out, c.err
	case <-ctx.Done():
		return nil, ctx.Err() // the response is read and dropped
	}
}

// proc returns the running program, starting it if needed.
func (s *stream) proc(ctx context.Context) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%s: %w", s, ErrClosed)
	}
	if s.p != nil {
		return s.p, nil
	}
	if wait := time.Until(s.died.Add(s.opt.RestartDelay)); wait > 0 {
		// Not a busy loop of starts when the program dies at once.
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	cmd := exec.Command(s.path, s.argv[1:]...)
	cmd.Args[0] = s.argv[0]
	p := &proc{s: s, cmd: cmd, stderr: &tail{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.WaitDelay = time.Second
	var err error
	if p.stdin, err = cmd.StdinPipe(); err == nil {
		p.stdout, err = cmd.StdoutPipe()
	}
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		s.died = time.Now()
		return nil, fmt.Errorf("%s: starting: %w", s, err)
	}
	s.p = p
	go p.read()
	return p, nil
}

// read delivers responses to the waiters in order until the program ends.
func (p *proc) read() {
	r := bufio.NewReaderSize(p.stdout, 64<<10)
	var err error
	for {
		var out []byte
		if out, err = readFrame(r, p.s.opt.MaxFrame); err != nil {
			break
		}
		p.mu.Lock()
		if len(p.waiters) == 0 {
			p.mu.Unlock()
			err = errors.New("it wrote a response to no request")
			break
		}
		c := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		c.out = out
		close(c.done)
	}
	if !errors.Is(err, io.EOF) { // the program broke the protocol
		p.kill(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- p.cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(5 * time.Second):
		p.kill(errors.New("it closed its standard output but did not exit"))
		werr = <-waited
	}

	p.mu.Lock()
	why := p.reason
	if why == nil {
		why = werr
	}
	if why == nil {
		why = errors.New("it exited")
	} else if werr != nil && why != werr {
		why = fmt.Errorf("%w (%v)", why, werr)
	}
	msg := fmt.Sprintf("%s, pid %d: %v", p.s, p.cmd.Process.Pid, why)
	if t := p.stderr.String(); t != "" {
		msg += "; its standard error ends: " + t
	}
	p.err = errors.New(msg)
	waiters := p.waiters
	p.waiters = nil
	p.mu.Unlock()

	// The stream forgets the program before its outstanding requests
	// fail, so that a request made after one of them failed starts it again
	// rather than getting the same error.
	p.s.mu.Lock()
	if p.s.p == p {
		p.s.p = nil
		p.s.died = time.Now()
	}
	p.s.mu.Unlock()
	for _, c := range waiters {
		c.err = p.err
		close(c.done)
	}
	close(p.exited)
}

// kill ends the program for a reason given in the errors of the requests
// outstanding.
func (p *proc) kill(reason error) {
	p.mu.Lock()
	if p.reason == nil {
		p.reason = reason
	}
	p.mu.Unlock()
	p.cmd.Process.Kill()
}

func (s *stream) close() error {
	s.mu.Lock()
	s.closed = true
	p := s.p
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	p.wmu.Lock()
	p.stdin.Close()
	p.wmu.Unlock()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.kill(errors.New("still running 5 s after its input ended"))
		<-p.exited
		return p.err
	}
	return nil
}

func writeFrame(w io.Writer, b []byte) error {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader, max int64) ([]byte, error) {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("it ended in the middle of a response's length")
		}
		return nil, err
	}
	size := binary.BigEndian.Uint64(n[:])
	if size > uint64(max) {
		return nil, fmt.Errorf("it announced a response of %d bytes, over the limit of %d", size, max)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("it ended in the middle of a response of %d bytes", size)
		}
		return nil, err
	}
	return b, nil
}

// tail keeps the end of what a program writes to its standard error.
type tail struct {
	mu sync.Mutex
	b  []byte
}

const tailSize = 2048

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailSize {
		t.b = append(t.b[:0], t.b[len(t.b)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
