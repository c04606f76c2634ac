package cdc

import (
	"bytes"
	"testing"
)

// FuzzDecodeTree: the tree a client sends with a submission. Bytes that
// decode give a valid tree whose encoding decodes to the same; anything
// else is refused with a message; never a panic or an allocation the
// input's size does not justify (the decoder bounds counts by what is
// left).
func FuzzDecodeTree(f *testing.F) {
	one := Tree{Files: []File{{Path: "scene.pov", Mode: 0o644, Size: 5, Chunks: []ChunkRef{{Hash: [32]byte{1}, Size: 5}}}}}
	for _, t := range []Tree{{}, one, {Files: []File{{Path: "a/b", Mode: 0o755}, {Path: "c", Mode: 0o644}}}} {
		b, err := t.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("DTRE"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := DecodeTree(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if err := tr.Validate(); err != nil {
			t.Fatalf("decoded an invalid tree: %v", err)
		}
		again, err := tr.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("a tree decoded from %d bytes encodes to %d other bytes", len(b), len(again))
		}
	})
}
