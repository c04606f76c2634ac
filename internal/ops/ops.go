// Package ops owns the farm's operations below any transport: accepting a
// job's package (a tarball or a tree of chunks), accepting a frame's output,
// streaming a job's result bundle and its files, and collecting garbage —
// and the consistency between the vault and the session while they run
// (gc.go). The HTTP API (internal/server) decodes a request, calls one of
// these, and encodes the answer; the local worker slots of `serve` and
// `render` call the same operations in process.
//
// Errors carry a Kind (invalid input, over a limit, to be done again, not
// found) that a transport maps to its own codes; messages name the file,
// frame or chunk at fault and never the server's own directories (Redact).
package ops

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// Limits bound what one operation may make the farm do.
type Limits struct {
	MaxPackageBytes  int64 // uploaded package, uncompressed (default 8 GiB)
	MaxPackageFiles  int   // files in a package (default 100,000)
	MaxManifestBytes int64 // distrenjob.xml (default 16 MiB)
	MaxFrames        int64 // frames per job (default 1,000,000)
	MaxFramesHeld    int64 // frames of all the jobs held (default DefaultMaxFramesHeld)
	MaxOutputBytes   int64 // one frame's output tarball (default 4 GiB)
}

// DefaultMaxFramesHeld is how many frames, in all its jobs, a server holds
// by default (serve --max-frames-held; Limits.MaxFramesHeld). A frame costs
// the server about 300 bytes of memory while it waits and 650 once done
// (docs/PERFORMANCE.md, "Memory"): 1.4 to 3.2 GiB of live heap for five
// jobs of the largest size.
const DefaultMaxFramesHeld = 5_000_000

func (l *Limits) defaults() {
	if l.MaxPackageBytes <= 0 {
		l.MaxPackageBytes = 8 << 30
	}
	if l.MaxPackageFiles <= 0 {
		l.MaxPackageFiles = 100_000
	}
	if l.MaxManifestBytes <= 0 {
		l.MaxManifestBytes = manifest.DefaultMaxBytes
	}
	if l.MaxFrames <= 0 {
		l.MaxFrames = manifest.DefaultMaxFrames
	}
	if l.MaxFramesHeld <= 0 {
		l.MaxFramesHeld = DefaultMaxFramesHeld
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = 4 << 30
	}
}

// GC configures garbage collection of the vault.
type GC struct {
	// Grace keeps unreferenced objects written or touched this recently: a
	// client may be uploading the chunks of a job it has not submitted yet
	// (default 1h).
	Grace time.Duration
	// Retention deletes finished jobs submitted longer ago than this; 0
	// keeps them until deleted by hand.
	Retention time.Duration
}

// Config assembles the operations from the session and the vault.
type Config struct {
	Session  *session.Session
	Vault    *vault.Vault
	Backends backend.Registry // what jobs may use
	TmpDir   string           // copies of uploads are kept here; must exist
	// DataDir is the server's data directory, which messages name DATA
	// (Redact); default: the directory of TmpDir, if the vault's directory
	// is in it too.
	DataDir string
	Limits  Limits
	GC      GC
	Log     *slog.Logger
}

// Farm runs the farm's operations on one session and one vault.
type Farm struct {
	sess     *session.Session
	vault    *vault.Vault
	backends backend.Registry
	tmp      string
	lim      Limits
	gc       GC
	log      *slog.Logger
	chunker  *cdc.Chunker
	gcMu     sync.RWMutex   // collection (write) against recording what uploads stored (read): gc.go
	gcRuns   atomic.Uint64  // collections started and ended: odd while one runs (gc.go)
	uploads  *regexp.Regexp // matches an unpacked upload's directory in messages (Redact)
	private  [][2]string    // the server's directories in messages, and what Redact writes instead
}

// New returns the operations of cfg's session and vault.
func New(cfg Config) *Farm {
	cfg.Limits.defaults()
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.GC.Grace <= 0 {
		cfg.GC.Grace = time.Hour
	}
	f := &Farm{sess: cfg.Session, vault: cfg.Vault, backends: cfg.Backends, tmp: cfg.TmpDir, lim: cfg.Limits,
		gc: cfg.GC, log: cfg.Log}
	f.chunker, _ = cdc.New(cdc.Options{}) // the defaults are valid
	f.privateDirs(cfg.DataDir)
	return f
}

// Session returns the session the operations change.
func (f *Farm) Session() *session.Session { return f.sess }

// Limits returns the limits in force (defaults filled in).
func (f *Farm) Limits() Limits { return f.lim }

// Kind classifies an operation's error for a transport.
type Kind uint8

const (
	Failed   Kind = iota // the farm failed (its disk, its store): not the caller's fault
	Invalid              // the request or what it carries is at fault
	TooLarge             // over a limit
	Conflict             // refused as things stand; doing it again may succeed
	NotFound             // no such job, frame, file or object
)

// Error is an operation's error of a Kind other than Failed.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err: that of the first *Error in its chain,
// else Failed.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Failed
}

func errorf(k Kind, format string, args ...any) error {
	return &Error{k, fmt.Errorf(format, args...)}
}

// Redact removes the server's directories from a message for a client: a
// path in an unpacked upload becomes the path in the package, the data
// directory becomes DATA, and the upload and vault directories, if outside
// it, TMP and VAULT. Messages are built from package paths, but an error of
// the server's file system (or of a storage module describing itself) may
// name where it keeps them, which is none of a client's business.
func (f *Farm) Redact(msg string) string {
	if f.uploads != nil {
		msg = f.uploads.ReplaceAllString(msg, "")
	}
	for _, p := range f.private {
		msg = strings.ReplaceAll(msg, p[0], p[1])
	}
	return msg
}

// privateDirs sets what Redact replaces: the data directory (data, or the
// one of the upload and vault directories), and the upload and vault
// directories.
func (f *Farm) privateDirs(data string) {
	tmp := filepath.Clean(f.tmp)
	vdir := ""
	if f.vault != nil {
		vdir = filepath.Clean(f.vault.Dir())
	}
	if len(tmp) > 1 {
		f.uploads = regexp.MustCompile(regexp.QuoteMeta(tmp) + `/upload-[^/\s"':]*/`)
	}
	if data == "" && vdir != "" && filepath.Dir(vdir) == filepath.Dir(tmp) {
		data = filepath.Dir(tmp)
	}
	if data = filepath.Clean(data); len(data) > 1 {
		f.private = append(f.private, [2]string{data, "DATA"})
	}
	for _, p := range [][2]string{{tmp, "TMP"}, {vdir, "VAULT"}} {
		if len(p[0]) > 1 && !strings.HasPrefix(p[0], data+"/") {
			f.private = append(f.private, p)
		}
	}
}
