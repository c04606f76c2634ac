package cdc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func ref(s string, size int64) ChunkRef { return ChunkRef{Hash: sha256.Sum256([]byte(s)), Size: size} }

func sampleTree() Tree {
	return Tree{Files: []File{
		{Path: "a", Mode: 0o644, Size: 3, Chunks: []ChunkRef{ref("x", 1), ref("y", 2)}},
		{Path: "a-b", Mode: 0o600, Size: 0},
		{Path: "b/c/d.pov", Mode: 0o755, Size: 5, Chunks: []ChunkRef{ref("x", 1), ref("z", 4)}},
		{Path: "é/ü.txt", Mode: 0, Size: 1, Chunks: []ChunkRef{ref("y", 1)}},
	}}
}

func TestTreeRoundTrip(t *testing.T) {
	for _, tr := range []Tree{{}, sampleTree()} {
		b, err := tr.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeTree(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Files) == 0 {
			tr.Files = []File{}
		}
		if !reflect.DeepEqual(got, tr) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, tr)
		}
		b2, _ := got.Encode()
		if !bytes.Equal(b, b2) {
			t.Error("re-encoding differs")
		}
	}
}

// TestTreeEncodingGolden pins the format: a tree's hash is its name, so the
// encoding of version 1 may never change.
func TestTreeEncodingGolden(t *testing.T) {
	tr := Tree{Files: []File{{Path: "s/x", Mode: 0o644, Size: 3, Chunks: []ChunkRef{{Hash: [32]byte{1, 2}, Size: 3}}}}}
	b, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "44545245" + "0001" + "00000001" + // magic, version, 1 file
		"0003" + hex.EncodeToString([]byte("s/x")) + "000001a4" + "0000000000000003" + "00000001" +
		"0102" + strings.Repeat("00", 30) + "00000003"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("encoding\n got %s\nwant %s", got, want)
	}
	h, _ := tr.Hash()
	if h != sha256.Sum256(b) {
		t.Error("Hash is not the SHA-256 of the encoding")
	}
	if tr.Size() != 3 || sampleTree().Size() != 9 {
		t.Error("Size")
	}
}

// TestTreeRejections: every rule, through Encode (which validates first) and
// through DecodeTree of an encoding made without validation.
func TestTreeRejections(t *testing.T) {
	one := func(path string) File { return File{Path: path, Mode: 0o644, Size: 1, Chunks: []ChunkRef{ref("1", 1)}} }
	files := func(fs ...File) Tree { return Tree{Files: fs} }
	long := strings.Repeat("d/", MaxPathLen/2) + "x"
	for _, tc := range []struct {
		name string
		tree Tree
		want string // in the message, with the file's name
	}{
		{"empty path", files(one("")), "empty path"},
		{"absolute", files(one("/etc/passwd")), `"/etc/passwd": path is absolute`},
		{"dot", files(one(".")), `".": path is not relative and clean`},
		{"dotdot", files(one("../x")), `"../x": path is not relative and clean`},
		{"inner dotdot", files(one("a/../b")), `"a/../b": path is not relative`},
		{"dot element", files(one("./a")), `"./a": path is not relative`},
		{"double slash", files(one("a//b")), `"a//b": path is not relative`},
		{"trailing slash", files(one("a/")), `"a/": path is not relative`},
		{"backslash", files(one(`a\b`)), `"a\\b": path holds a NUL or a backslash`},
		{"NUL", files(one("a\x00b")), `path holds a NUL`},
		{"not UTF-8", files(one("a\xffb")), `path is not valid UTF-8`},
		{"too long", files(one(long)), "longer than 4096"},
		{"duplicate", files(one("a"), one("a")), `"a": listed twice`},
		{"unsorted", files(one("b"), one("a")), `"a": out of order: comes after "b"`},
		{"walk order is not sorted", files(one("a/b"), one("a-b")), `"a-b": out of order`},
		{"file is a directory", files(one("a"), one("a-x"), one("a/b/c")), `"a/b/c": its directory "a" is also a file`},
		{"setuid", files(File{Path: "x", Mode: 0o4755}), `"x": mode 04755 has bits other than permissions`},
		{"dir bit", files(File{Path: "x", Mode: 1 << 31}), `"x": mode`},
		{"negative size", files(File{Path: "x", Size: -1}), `"x": size `},
		{"huge size", files(File{Path: "x", Size: MaxFileSize + 1}), `"x": size 1099511627777 is`},
		{"size above chunks", files(File{Path: "x", Size: 2, Chunks: []ChunkRef{ref("1", 1)}}), `"x": size 2 but its chunks hold 1 bytes`},
		{"size below chunks", files(File{Path: "x", Size: 0, Chunks: []ChunkRef{ref("1", 1)}}), `"x": size 0 but its chunks hold 1 bytes`},
		{"empty chunk", files(File{Path: "x", Chunks: []ChunkRef{ref("1", 0)}}), `"x": chunk 0 has size 0`},
		{"chunk too large", files(File{Path: "x", Size: MaxChunkSize + 1, Chunks: []ChunkRef{ref("1", MaxChunkSize+1)}}), `"x": chunk 0 has size 67108865`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(how string, err error) {
				t.Helper()
				if !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: got %v, want ErrInvalidTree with %q", how, err, tc.want)
				}
			}
			_, err := tc.tree.Encode()
			check("Encode", err)
			_, err = tc.tree.Hash()
			check("Hash", err)
			_, err = DecodeTree(appendTree(nil, tc.tree))
			check("DecodeTree", err)
		})
	}
}

func TestTreeLimits(t *testing.T) {
	defer func(f, c, e int) { maxTreeFiles, maxTreeChunks, maxTreeEncoded = f, c, e }(maxTreeFiles, maxTreeChunks, maxTreeEncoded)
	maxTreeFiles, maxTreeChunks = 3, 4
	tr := files3()
	if _, err := tr.Encode(); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	tr.Files = append(tr.Files, File{Path: "z"})
	for _, tc := range []struct {
		name string
		tree Tree
		want string
	}{
		{"files", tr, "4 files, more than the limit of 3"},
		{"chunks", Tree{Files: []File{tr.Files[0], tr.Files[1], {Path: "c", Size: 2, Chunks: []ChunkRef{ref("1", 1), ref("2", 1)}}}},
			`"c": the tree lists more than 4 chunks`},
	} {
		_, err := tc.tree.Encode()
		if !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Encode: %v, want %q", tc.name, err, tc.want)
		}
		_, err = DecodeTree(appendTree(nil, tc.tree))
		if !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeTree: %v, want %q", tc.name, err, tc.want)
		}
	}
	maxTreeFiles, maxTreeChunks = MaxTreeFiles, MaxTreeChunks
	b, _ := files3().Encode()
	maxTreeEncoded = len(b) - 1
	if _, err := files3().Encode(); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Errorf("Encode over the size limit: %v", err)
	}
	if _, err := DecodeTree(b); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
		t.Errorf("DecodeTree over the size limit: %v", err)
	}
}

func files3() Tree {
	return Tree{Files: []File{
		{Path: "a", Size: 2, Chunks: []ChunkRef{ref("1", 1), ref("2", 1)}},
		{Path: "b", Size: 1, Chunks: []ChunkRef{ref("3", 1)}},
		{Path: "c", Size: 1, Chunks: []ChunkRef{ref("1", 1)}},
	}}
}

// TestDecodeMalformed: encodings that are not trees at all.
func TestDecodeMalformed(t *testing.T) {
	good, err := sampleTree().Encode()
	if err != nil {
		t.Fatal(err)
	}
	set := func(b []byte, off int, v []byte) []byte {
		b = bytes.Clone(b)
		copy(b[off:], v)
		return b
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	// Offsets in the encoding of the first file, "a".
	const (
		file0      = treeHeaderLen
		mode0      = file0 + 2 + 1
		size0      = mode0 + 4
		nchunks0   = size0 + 8
		firstChunk = nchunks0 + 4
	)
	// A single file with a long path, to truncate inside it.
	lone := Tree{Files: []File{{Path: strings.Repeat("p", 100), Mode: 0o644, Size: 3, Chunks: []ChunkRef{ref("x", 1), ref("y", 2)}}}}
	lb, err := lone.Encode()
	if err != nil {
		t.Fatal(err)
	}
	const (
		lmode  = treeHeaderLen + 2 + 100
		lchunk = lmode + 4 + 8 + 4
	)
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "not a tree encoding"},
		{"wrong magic", set(good, 0, []byte("DTRF")), "not a tree encoding"},
		{"header only", good[:4], "not a tree encoding"},
		{"version 0", set(good, 4, []byte{0, 0}), "encoding version 0; this build reads version 1"},
		{"version 2", set(good, 4, []byte{0, 2}), "encoding version 2"},
		{"absurd file count", set(good, 6, u32(1<<31)), "2147483648 files, more than the limit"},
		{"file count beyond the bytes", set(good, 6, u32(1000)), "declares 1000 files but only"},
		{"truncated before the files", good[:file0+30], "declares 4 files but only 30 bytes follow"},
		{"truncated in a path", lb[:treeHeaderLen+2+50], "encoding ends inside the path of file 0"},
		{"truncated in a file", lb[:lmode+2], `pp": encoding ends inside the mode`},
		{"truncated in a chunk", lb[:lchunk+40], `pp": declares 2 chunks but only 40 bytes follow`},
		{"truncated at the end", good[:len(good)-1], `"é/ü.txt": declares 1 chunks`},
		{"trailing bytes", append(bytes.Clone(good), 0), "1 bytes after the last file"},
		{"absurd chunk count", set(good, nchunks0, u32(1<<30)), `"a": the tree lists more than`},
		{"chunk count beyond the bytes", set(good, nchunks0, u32(1000)), `"a": declares 1000 chunks`},
		{"absurd file size", set(good, size0, u64(1<<62)), `"a": size 4611686018427387904 is larger than the limit`},
		{"wrong file size", set(good, size0, u64(4)), `"a": size 4 but its chunks hold 3 bytes`},
		{"absurd chunk size", set(good, firstChunk+32, u32(1<<31)), `"a": chunk 0 has size 2147483648`},
		{"mode", set(good, mode0, u32(0o1777)), `"a": mode 01777`},
		{"path", set(good, file0+2, []byte("/")), `"/": path is absolute`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTree(tc.b)
			if !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalidTree with %q", err, tc.want)
			}
		})
	}
}

func TestMissing(t *testing.T) {
	tr := sampleTree() // chunks x y x z y: three distinct
	held := map[[32]byte]bool{ref("y", 0).Hash: true}
	calls := map[[32]byte]int{}
	got := Missing(tr, func(h [32]byte) bool { calls[h]++; return held[h] })
	want := []ChunkRef{ref("x", 1), ref("z", 4)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Missing = %v, want %v", got, want)
	}
	for h, n := range calls {
		if n != 1 {
			t.Errorf("have(%x) called %d times", h[:4], n)
		}
	}
	if len(calls) != 3 {
		t.Errorf("have called for %d chunks, want 3", len(calls))
	}
	if got := Missing(tr, func([32]byte) bool { return true }); len(got) != 0 {
		t.Errorf("all held: Missing = %v", got)
	}
	if got := Missing(Tree{}, func([32]byte) bool { return false }); len(got) != 0 {
		t.Errorf("empty tree: Missing = %v", got)
	}
}
