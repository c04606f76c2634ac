// Package jobpkg owns job packages and tarballs: it reads a job package (a
// directory or a .tar, .tar.gz, .tgz or .tar.zst file), extracts tarballs
// safely, scans and re-emits their entries, and writes deterministic tarballs
// of files.
//
// Every tarball read by this package, compressed with gzip or zstd or not,
// is held to the same rules: only regular files and directories are allowed,
// entry names must be clean relative paths that stay inside the package, a
// regular-file path may appear only once (and, when extracting, never as
// both a file and a directory), a zstd stream may not ask for a window over
// MaxZstdWindow, and the optional Limits are counted on the bytes actually
// read, never on what the headers claim.
package jobpkg

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// Limits bounds what a tarball may hold. A zero field means no limit.
type Limits struct {
	MaxBytes   int64 // total bytes of regular-file content; 0 = no limit
	MaxEntries int   // number of entries; 0 = no limit
}

// File describes one regular file of a package.
type File struct {
	Path string      // slash-separated, clean, relative path inside the package
	Mode fs.FileMode // permission bits only (0o644 / 0o755)
	Size int64
}

var (
	// ErrUnsafe is wrapped by errors about entries that are refused: an
	// absolute path, a path with "..", a link, a device, a fifo, any other
	// entry that is neither a regular file nor a directory, or a duplicate
	// regular-file path.
	ErrUnsafe = errors.New("unsafe tar entry")
	// ErrTooLarge is wrapped when the content exceeds Limits.MaxBytes.
	ErrTooLarge = errors.New("over the size limit")
	// ErrTooMany is wrapped when the entries exceed Limits.MaxEntries.
	ErrTooMany = errors.New("too many entries")
)

// reasonError is an error with its own message that still matches one of the
// sentinel errors with errors.Is.
type reasonError struct {
	kind error
	msg  string
}

func (e *reasonError) Error() string { return e.msg }
func (e *reasonError) Unwrap() error { return e.kind }

func unsafePath(reason string) error {
	return &reasonError{ErrUnsafe, "unsafe path: " + reason}
}

func unsafeEntry(reason string) error {
	return &reasonError{ErrUnsafe, ErrUnsafe.Error() + ": " + reason}
}

// CleanPath checks a tar entry name or manifest path and returns it cleaned
// ("./a/b" and "a//b/" give "a/b"). "." alone, the root directory entry,
// returns "." with no error. Empty names, absolute paths, paths with a ".."
// element, backslashes and NUL bytes are refused with an error wrapping
// ErrUnsafe.
func CleanPath(name string) (string, error) {
	p, err := cleanPath(name)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", Shorten(name), err)
	}
	return p, nil
}

// MaxPathLen is the longest path a package or output may hold, in bytes (a
// package tree allows the same, cdc.MaxPathLen); MaxNameLen the longest
// element of a path (NAME_MAX: file systems refuse longer names). Longer
// paths could not be opened by their full name on the server or a worker
// (PATH_MAX is 4096 bytes with the directory they sit in), so they are
// refused as the client's mistake, naming the entry.
const (
	MaxPathLen = 4096
	MaxNameLen = 255
)

// cleanPath is CleanPath with an error that does not repeat the name, for
// callers that name the entry themselves.
func cleanPath(name string) (string, error) {
	switch {
	case name == "":
		return "", unsafePath("empty name")
	case len(name) > MaxPathLen:
		return "", unsafePath(fmt.Sprintf("%d bytes, longer than the limit of %d", len(name), MaxPathLen))
	case strings.IndexByte(name, 0) >= 0:
		return "", unsafePath("contains a NUL byte")
	case strings.IndexByte(name, '\\') >= 0:
		return "", unsafePath(`contains a backslash`)
	case strings.HasPrefix(name, "/"):
		return "", unsafePath("absolute path")
	}
	for _, elem := range strings.Split(name, "/") {
		if len(elem) > MaxNameLen {
			return "", unsafePath(fmt.Sprintf("an element of %d bytes, longer than the limit of %d", len(elem), MaxNameLen))
		}
		if elem == ".." {
			p := path.Clean(name)
			if p == ".." || strings.HasPrefix(p, "../") {
				return "", unsafePath("escapes the package root")
			}
			return "", unsafePath(`contains a ".." element`)
		}
	}
	return path.Clean(name), nil
}

// Shorten returns a name for messages: the name itself, or for a name
// longer than 100 bytes its start and end around "…", so that an error
// about a path of kilobytes stays readable.
func Shorten(name string) string {
	if len(name) <= 100 {
		return name
	}
	head, tail := name[:60], name[len(name)-30:]
	for !utf8.ValidString(head) && len(head) > 0 { // cut on a character boundary
		head = head[:len(head)-1]
	}
	for !utf8.ValidString(tail) && len(tail) > 0 {
		tail = tail[1:]
	}
	return head + "…" + tail
}

// permOf normalises tar or file-system permission bits to 0o755 when any
// execute bit is set and 0o644 otherwise.
func permOf(mode int64) fs.FileMode {
	if mode&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// MaxZstdWindow is the largest zstd window a compressed tarball may ask for:
// the decoder allocates the whole window up front, so a 50-byte stream
// declaring a 512 MiB window would cost 512 MiB. zstd's levels up to 19
// use 8 MiB; --ultra -21 uses 64 MiB. (--ultra -22 and --long use 128 MiB:
// such tarballs are refused.)
const MaxZstdWindow = 64 << 20

// maxTrailer is how much is read, and thrown away, after the end-of-archive
// marker: the zero padding tar writers add to their last record, and the end
// of a gzip or zstd stream so that its checksum is verified.
const maxTrailer = 1 << 20

// openTar detects the compression of r by its magic bytes and returns the
// decompressed stream and a function releasing the decoder.
func openTar(r io.Reader) (io.Reader, func(), error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 16 {
		br = bufio.NewReader(r)
	}
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("reading tar: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("reading gzip-compressed tar: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxZstdWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("reading zstd-compressed tar: %w", err)
		}
		return zstdReader{zr}, zr.Close, nil
	}
	return br, func() {}, nil
}

// zstdReader explains the decoder's refusal of a window over MaxZstdWindow.
type zstdReader struct{ *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.Decoder.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) {
		err = &reasonError{ErrTooLarge, fmt.Sprintf("zstd-compressed tar: its window is larger than the limit of %d MiB (compressed with --long or --ultra -22?): %v",
			MaxZstdWindow>>20, err)}
	}
	return n, err
}

// entry is one regular file or directory of a tarball that passed the
// safety checks.
type entry struct {
	name string // clean path
	dir  bool
	perm fs.FileMode
	size int64     // from the header; the content reader enforces it
	r    io.Reader // content, counted against the byte limit; nil for dirs
}

// walk reads the tar stream r and calls fn for every regular file and
// directory (the root "." directory excepted), enforcing the safety rules and
// limits. Content fn leaves unread is drained and counted. Errors from fn are
// wrapped with the entry name.
func walk(r io.Reader, lim Limits, fn func(*entry) error) error {
	src, done, err := openTar(r)
	if err != nil {
		return err
	}
	defer done()
	tr := tar.NewReader(src)
	var (
		entries int
		total   int64
		last    string
		seen    = make(map[string]bool)
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("%w (truncated, or not a tar)", err)
			}
			if last == "" {
				return fmt.Errorf("reading tar: %w", err)
			}
			return fmt.Errorf("reading tar after entry %q: %w", Shorten(last), err)
		}
		last = hdr.Name
		entries++
		if lim.MaxEntries > 0 && entries > lim.MaxEntries {
			return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name),
				&reasonError{ErrTooMany, fmt.Sprintf("%s (the limit is %d)", ErrTooMany, lim.MaxEntries)})
		}
		if err := checkType(hdr); err != nil {
			return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name), err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // archive-wide metadata (git archive writes one), not a file
		}
		name, err := cleanPath(hdr.Name)
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name), err)
		}
		e := &entry{name: name, perm: permOf(hdr.Mode), size: hdr.Size}
		if hdr.Typeflag == tar.TypeDir {
			if name == "." {
				continue
			}
			e.dir, e.perm = true, 0o755
			if err := fn(e); err != nil {
				return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name), err)
			}
			continue
		}
		if name == "." {
			return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name), unsafePath("a file cannot be the package root"))
		}
		if seen[name] {
			return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name), unsafeEntry("duplicate path"))
		}
		seen[name] = true
		cr := &countReader{r: tr, total: &total, max: lim.MaxBytes}
		if cr.over(hdr.Size) {
			return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name), cr.tooLarge())
		}
		e.r = cr
		err = fn(e)
		if err == nil {
			_, err = io.Copy(io.Discard, cr)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("tar entry %q: %w: the tarball ends inside it (truncated?)", Shorten(hdr.Name), err)
		}
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", Shorten(hdr.Name), err)
		}
	}
	// Read past the end-of-archive marker so that the padding is consumed
	// and a compressed stream's checksum is checked.
	if _, err := io.CopyN(io.Discard, src, maxTrailer); err != nil && err != io.EOF {
		return fmt.Errorf("reading tar after its end: %w", err)
	}
	return nil
}

// checkType refuses every entry type but regular files and directories
// (and global pax headers, which hold no file).
func checkType(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeXGlobalHeader:
		return nil
	case tar.TypeSymlink:
		return unsafeEntry(fmt.Sprintf("symbolic link to %q", hdr.Linkname))
	case tar.TypeLink:
		return unsafeEntry(fmt.Sprintf("hard link to %q", hdr.Linkname))
	case tar.TypeChar:
		return unsafeEntry("character device")
	case tar.TypeBlock:
		return unsafeEntry("block device")
	case tar.TypeFifo:
		return unsafeEntry("named pipe (fifo)")
	case tar.TypeGNUSparse:
		return unsafeEntry("sparse file")
	}
	return unsafeEntry(fmt.Sprintf("type %q is neither a regular file nor a directory", hdr.Typeflag))
}

// countReader counts the content bytes of every entry against a shared total
// and fails with ErrTooLarge as soon as it would exceed max.
type countReader struct {
	r     io.Reader
	total *int64
	max   int64
}

func (c *countReader) over(n int64) bool {
	return c.max > 0 && n > c.max-*c.total
}

func (c *countReader) tooLarge() error {
	return &reasonError{ErrTooLarge, fmt.Sprintf("%s of %d bytes in all", ErrTooLarge, c.max)}
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.over(int64(n)) {
		return 0, c.tooLarge()
	}
	*c.total += int64(n)
	return n, err
}

// Scan reads a tar stream, compressed with gzip or zstd or not, and calls fn
// for every regular file with a reader of its content, which fn may read or
// not. Directories are skipped; unsafe entries fail with ErrUnsafe; lim is
// enforced. An error from fn is returned wrapped with the entry name.
func Scan(r io.Reader, lim Limits, fn func(File, io.Reader) error) error {
	return walk(r, lim, func(e *entry) error {
		if e.dir {
			return nil
		}
		return fn(File{Path: e.name, Mode: e.perm, Size: e.size}, e.r)
	})
}

// CopyEntries reads the tar stream r (compressed or not, as for Scan) and
// writes every regular file into tw under the name rename returns (nil
// keeps names; an empty result skips the entry). Headers are rewritten the
// way WriteFiles writes them. The caller owns and closes tw. The same
// safety rules and limits as Scan apply.
func CopyEntries(tw *tar.Writer, r io.Reader, lim Limits, rename func(string) string) error {
	return walk(r, lim, func(e *entry) error {
		if e.dir {
			return nil
		}
		name := e.name
		if rename != nil {
			if name = rename(name); name == "" {
				return nil
			}
			clean, err := cleanPath(name)
			if err != nil {
				return fmt.Errorf("renamed to %q: %w", name, err)
			}
			if clean == "." {
				return fmt.Errorf("renamed to %q: %w", name, unsafePath("a file cannot be the package root"))
			}
			name = clean
		}
		if err := tw.WriteHeader(fileHeader(name, e.perm, e.size)); err != nil {
			return err
		}
		_, err := io.Copy(tw, e.r)
		return err
	})
}
