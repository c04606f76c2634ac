// Package sandbox owns confining renderer processes: a program started
// through Command can read only the paths its Policy lists, write only
// beneath the paths it lists as writable, and open no TCP connection.
//
// It uses Landlock (Linux 5.13 and later; no privileges needed). Landlock
// restricts the thread that asks and everything it executes, so Command runs
// the current executable again with the policy in its environment; this
// package's init function, seeing it, confines itself and executes the
// renderer in its place. Any binary that imports the package — distren and
// the tests that render — can therefore start sandboxed programs.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Policy says what a sandboxed program may touch. Paths are absolute; a
// directory grants access beneath it. Paths that do not exist are ignored.
type Policy struct {
	Read      []string `json:"read,omitempty"`       // read and execute
	ReadWrite []string `json:"read_write,omitempty"` // also create, write and remove
}

// envKey carries the request to the re-executed binary.
const envKey = "DISTREN_SANDBOX_EXEC"

type request struct {
	Policy Policy   `json:"policy"`
	Path   string   `json:"path"`
	Args   []string `json:"args"`
}

// ErrUnavailable means the kernel cannot confine processes.
var ErrUnavailable = errors.New("sandbox unavailable")

var abiOnce = sync.OnceValues(func() (int, error) {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0, fmt.Errorf("%w: Landlock is not enabled in this kernel (%v); it needs Linux 5.13 or later with landlock in the lsm= list", ErrUnavailable, e)
	}
	return int(v), nil
})

// Available reports whether programs can be sandboxed here.
func Available() error {
	_, err := abiOnce()
	return err
}

// Command returns a command that runs path with args and environment env,
// confined by p. Set its Dir, Stdout and Stderr as for any command, not its
// Env.
func Command(ctx context.Context, p Policy, env []string, path string, args ...string) (*exec.Cmd, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: finding this executable: %w", err)
	}
	if path, err = exec.LookPath(path); err != nil {
		return nil, err
	}
	req, err := json.Marshal(request{Policy: p, Path: path, Args: append([]string{path}, args...)})
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Args = []string{path} // what ps shows until the exec
	cmd.Env = append(env[:len(env):len(env)], envKey+"="+string(req))
	return cmd, nil
}

func init() {
	v, ok := os.LookupEnv(envKey)
	if !ok {
		return
	}
	// The program does not see the request.
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if len(kv) < len(envKey)+1 || kv[:len(envKey)+1] != envKey+"=" {
			env = append(env, kv)
		}
	}
	var req request
	err := json.Unmarshal([]byte(v), &req)
	if err == nil {
		runtime.LockOSThread() // Landlock confines this thread, which then executes the program
		err = confine(req.Policy)
	}
	if err == nil {
		err = syscall.Exec(req.Path, req.Args, env)
	}
	fmt.Fprintf(os.Stderr, "distren sandbox: %s: %v\n", req.Path, err)
	os.Exit(127)
}

const (
	fileRead  = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE
	dirRead   = fileRead | unix.LANDLOCK_ACCESS_FS_READ_DIR
	fileWrite = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// handledFS is every file system access the kernel's Landlock ABI knows.
func handledFS(abi int) uint64 {
	h := uint64(unix.LANDLOCK_ACCESS_FS_REFER - 1) // ABI 1: execute .. make_sym
	if abi >= 2 {
		h |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		h |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		h |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return h
}

// confine restricts the calling thread and what it executes to p.
func confine(p Policy) error {
	abi, err := abiOnce()
	if err != nil {
		return err
	}
	handled := handledFS(abi)
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	size := unsafe.Sizeof(attr)
	if abi >= 4 { // no TCP: a scene has no business on the network
		attr.Handled_access_net = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
	}
	if abi < 6 {
		size = unsafe.Offsetof(attr.Scoped) // older kernels know only the first fields
		if abi < 4 {
			size = unsafe.Offsetof(attr.Handled_access_net)
		}
	}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if e != 0 {
		return fmt.Errorf("creating Landlock ruleset: %w", e)
	}
	defer unix.Close(int(fd))
	add := func(path string, write bool) error {
		pfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer unix.Close(pfd)
		var st unix.Stat_t
		if err := unix.Fstat(pfd, &st); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		access := uint64(dirRead)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			access = fileRead
			if write {
				access |= fileWrite
			}
		} else if write {
			access = handled
		}
		rule := unix.LandlockPathBeneathAttr{Allowed_access: access & handled, Parent_fd: int32(pfd)}
		if _, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, fd, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); e != 0 {
			return fmt.Errorf("Landlock rule for %s: %w", path, e)
		}
		return nil
	}
	for _, path := range p.Read {
		if err := add(path, false); err != nil {
			return err
		}
	}
	for _, path := range p.ReadWrite {
		if err := add(path, true); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); e != 0 {
		return fmt.Errorf("entering the Landlock domain: %w", e)
	}
	return nil
}
