package cdc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"unicode/utf8"
)

// TreeVersion is the version of the tree encoding that Encode writes and
// DecodeTree reads.
const TreeVersion = 1

// Limits on trees. A tree outside them is refused by Encode and DecodeTree,
// so a hostile encoding cannot make a reader allocate without bound.
const (
	MaxTreeFiles   = 1 << 20   // files in one tree
	MaxTreeChunks  = 1 << 22   // chunk references in one tree, over all files (~4 TiB at 1 MiB)
	MaxPathLen     = 4096      // bytes in one path
	MaxFileSize    = 1 << 40   // bytes in one file
	MaxTreeEncoded = 256 << 20 // bytes of one encoded tree
)

// The limits in force; tests lower them.
var (
	maxTreeFiles   = MaxTreeFiles
	maxTreeChunks  = MaxTreeChunks
	maxTreeEncoded = MaxTreeEncoded
)

// ErrInvalidTree reports a tree, or a tree encoding, that breaks the rules
// of the format. The message names the file at fault when there is one.
var ErrInvalidTree = errors.New("cdc: invalid tree")

// Tree lists the files of a package, sorted by path. Directories are
// implied by the paths; empty directories are not kept.
type Tree struct {
	Files []File
}

// File is one regular file of a tree.
type File struct {
	// Path is relative to the package root, slash-separated and clean: no
	// ".", ".." or empty element, no leading or trailing slash, no
	// backslash or NUL, valid UTF-8.
	Path   string
	Mode   uint32     // permission bits only (0o777)
	Size   int64      // the sum of the chunks' sizes
	Chunks []ChunkRef // the file's content, in order
}

// ChunkRef names one chunk of a file.
type ChunkRef struct {
	Hash [32]byte // SHA-256 of the chunk's bytes
	Size int64    // 1..MaxChunkSize
}

// Size returns the total size of the tree's files.
func (t Tree) Size() int64 {
	var n int64
	for _, f := range t.Files {
		n += f.Size
	}
	return n
}

// Missing returns the chunks of t for which have returns false, each once,
// in the order they first appear. have is called once per distinct chunk.
func Missing(t Tree, have func([32]byte) bool) []ChunkRef {
	seen := make(map[[32]byte]struct{})
	var out []ChunkRef
	for _, f := range t.Files {
		for _, c := range f.Chunks {
			if _, ok := seen[c.Hash]; ok {
				continue
			}
			seen[c.Hash] = struct{}{}
			if !have(c.Hash) {
				out = append(out, c)
			}
		}
	}
	return out
}

func invalid(path, format string, args ...any) error {
	if path == "" {
		return fmt.Errorf("%w: %s", ErrInvalidTree, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%w: %q: %s", ErrInvalidTree, path, fmt.Sprintf(format, args...))
}

// checkPath reports why p cannot name a file of a tree.
func checkPath(p string) error {
	switch {
	case p == "":
		return invalid("", "empty path")
	case len(p) > MaxPathLen:
		return invalid(p[:64]+"...", "path of %d bytes is longer than %d", len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return invalid(p, "path is not valid UTF-8")
	case strings.ContainsAny(p, "\x00\\"):
		return invalid(p, "path holds a NUL or a backslash")
	case strings.HasPrefix(p, "/"):
		return invalid(p, "path is absolute")
	case p == "." || !fs.ValidPath(p):
		return invalid(p, "path is not relative and clean (no \".\", \"..\" or empty element, no trailing slash)")
	}
	return nil
}

// Validate checks t against the rules of the format: valid paths, sorted
// and unique, no file that is also the directory of another, permission bits
// only, chunk sizes in 1..MaxChunkSize summing to the file's size, and the
// limits on counts and sizes.
func (t Tree) Validate() error {
	if len(t.Files) > maxTreeFiles {
		return invalid("", "%d files, more than the limit of %d", len(t.Files), maxTreeFiles)
	}
	chunks := 0
	for i, f := range t.Files {
		if err := checkPath(f.Path); err != nil {
			return err
		}
		if i > 0 {
			prev := t.Files[i-1].Path
			if f.Path == prev {
				return invalid(f.Path, "listed twice")
			}
			if f.Path < prev {
				return invalid(f.Path, "out of order: comes after %q (paths must be sorted bytewise)", prev)
			}
		}
		if f.Mode&^0o777 != 0 {
			return invalid(f.Path, "mode %#o has bits other than permissions", f.Mode)
		}
		if f.Size < 0 || f.Size > MaxFileSize {
			return invalid(f.Path, "size %d is outside 0..%d", f.Size, int64(MaxFileSize))
		}
		chunks += len(f.Chunks)
		if chunks > maxTreeChunks {
			return invalid(f.Path, "the tree lists more than %d chunks", maxTreeChunks)
		}
		var sum int64
		for j, c := range f.Chunks {
			if c.Size <= 0 || c.Size > MaxChunkSize {
				return invalid(f.Path, "chunk %d has size %d, outside 1..%d", j, c.Size, MaxChunkSize)
			}
			sum += c.Size // cannot overflow: at most MaxTreeChunks × MaxChunkSize
		}
		if sum != f.Size {
			return invalid(f.Path, "size %d but its chunks hold %d bytes", f.Size, sum)
		}
	}
	// A path may not be both a file and the directory of another file.
	// Sorted order does not make them adjacent ("a" < "a-b" < "a/c").
	files := make(map[string]struct{}, len(t.Files))
	for _, f := range t.Files {
		files[f.Path] = struct{}{}
	}
	for _, f := range t.Files {
		for i := strings.LastIndexByte(f.Path, '/'); i > 0; i = strings.LastIndexByte(f.Path[:i], '/') {
			if _, ok := files[f.Path[:i]]; ok {
				return invalid(f.Path, "its directory %q is also a file", f.Path[:i])
			}
		}
	}
	return nil
}

// The encoding, all integers big-endian:
//
//	magic "DTRE" | version uint16 | file count uint32
//	per file:  path length uint16 | path | mode uint32 | size uint64 | chunk count uint32
//	           per chunk: SHA-256 (32 bytes) | size uint32
//
// Fixed-width integers, sorted unique paths and the absence of trailing
// bytes make it canonical: a tree has exactly one encoding, so its hash
// names it.
const (
	treeMagic     = "DTRE"
	treeHeaderLen = 4 + 2 + 4
	fileFixedLen  = 2 + 4 + 8 + 4 // besides the path
	chunkLen      = 32 + 4
)

// Encode returns the canonical encoding of t, after validating it.
func (t Tree) Encode() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	n := treeHeaderLen
	for _, f := range t.Files {
		n += fileFixedLen + len(f.Path) + chunkLen*len(f.Chunks)
	}
	if n > maxTreeEncoded {
		return nil, invalid("", "encoding of %d bytes is larger than the limit of %d", n, maxTreeEncoded)
	}
	return appendTree(make([]byte, 0, n), t), nil
}

// appendTree appends the encoding of t to b, without validating t.
func appendTree(b []byte, t Tree) []byte {
	b = append(b, treeMagic...)
	b = binary.BigEndian.AppendUint16(b, TreeVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.Files)))
	for _, f := range t.Files {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Path)))
		b = append(b, f.Path...)
		b = binary.BigEndian.AppendUint32(b, f.Mode)
		b = binary.BigEndian.AppendUint64(b, uint64(f.Size))
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.Chunks)))
		for _, c := range f.Chunks {
			b = append(b, c.Hash[:]...)
			b = binary.BigEndian.AppendUint32(b, uint32(c.Size))
		}
	}
	return b
}

// Hash returns the tree's name: the SHA-256 of its encoding.
func (t Tree) Hash() ([32]byte, error) {
	b, err := t.Encode()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// decoder reads the encoding, remembering the first error.
type decoder struct {
	b    []byte
	path string // the file being read, for errors
	err  error
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = invalid(d.path, "encoding ends inside %s", what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u16(what string) uint16 {
	if v := d.take(2, what); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if v := d.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if v := d.take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// DecodeTree parses and validates an encoding made by Encode. Any departure
// from the format — wrong magic or version, truncation, trailing bytes,
// counts larger than the bytes that follow could hold, or a tree that
// Validate refuses — is an error wrapping ErrInvalidTree.
func DecodeTree(b []byte) (Tree, error) {
	if len(b) > maxTreeEncoded {
		return Tree{}, invalid("", "encoding of %d bytes is larger than the limit of %d", len(b), maxTreeEncoded)
	}
	if len(b) < treeHeaderLen || !bytes.HasPrefix(b, []byte(treeMagic)) {
		return Tree{}, invalid("", "not a tree encoding (no %q header)", treeMagic)
	}
	d := &decoder{b: b[len(treeMagic):]}
	if v := d.u16("the version"); v != TreeVersion {
		return Tree{}, invalid("", "encoding version %d; this build reads version %d", v, TreeVersion)
	}
	nfiles := d.u32("the file count")
	if int64(nfiles) > int64(maxTreeFiles) {
		return Tree{}, invalid("", "%d files, more than the limit of %d", nfiles, maxTreeFiles)
	}
	if int64(nfiles)*fileFixedLen > int64(len(d.b)) {
		return Tree{}, invalid("", "declares %d files but only %d bytes follow", nfiles, len(d.b))
	}
	t := Tree{Files: make([]File, 0, nfiles)}
	var total int64
	for i := range nfiles {
		d.path = ""
		plen := d.u16(fmt.Sprintf("the path length of file %d", i))
		p := d.take(int(plen), fmt.Sprintf("the path of file %d", i))
		if d.err != nil {
			return Tree{}, d.err
		}
		f := File{Path: string(p)}
		if err := checkPath(f.Path); err != nil {
			return Tree{}, err
		}
		d.path = f.Path
		f.Mode = d.u32("the mode")
		size := d.u64("the size")
		if size > MaxFileSize {
			return Tree{}, invalid(f.Path, "size %d is larger than the limit of %d", size, int64(MaxFileSize))
		}
		f.Size = int64(size)
		nchunks := d.u32("the chunk count")
		if d.err != nil {
			return Tree{}, d.err
		}
		total += int64(nchunks)
		if total > int64(maxTreeChunks) {
			return Tree{}, invalid(f.Path, "the tree lists more than %d chunks", maxTreeChunks)
		}
		if int64(nchunks)*chunkLen > int64(len(d.b)) {
			return Tree{}, invalid(f.Path, "declares %d chunks but only %d bytes follow", nchunks, len(d.b))
		}
		if nchunks > 0 {
			f.Chunks = make([]ChunkRef, nchunks)
		}
		for j := range f.Chunks {
			c := d.take(chunkLen, "a chunk")
			copy(f.Chunks[j].Hash[:], c[:32])
			f.Chunks[j].Size = int64(binary.BigEndian.Uint32(c[32:]))
		}
		t.Files = append(t.Files, f)
	}
	if len(d.b) != 0 {
		return Tree{}, invalid("", "%d bytes after the last file", len(d.b))
	}
	if err := t.Validate(); err != nil {
		return Tree{}, err
	}
	return t, nil
}

// ValidHash reports whether h names a chunk or object: a SHA-256 in
// lower-case hex, the only names paths and requests are built from.
func ValidHash(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
