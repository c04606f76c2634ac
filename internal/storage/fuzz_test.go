package storage

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadObject: whatever a module hands back, reading it as a stored
// object either fails with an error or returns exactly the payload its
// header describes, with its checksum; never a panic, never other bytes.
func FuzzReadObject(f *testing.F) {
	f.Add(Encode(nil, 5, []byte("hello")))
	f.Add(Encode([]Filter{FilterZstd, FilterAESGCM}, 100, bytes.Repeat([]byte{7}, 40)))
	f.Add(Encode(nil, 0, nil))
	f.Add([]byte("DRVO"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if h.Stored > int64(len(b)) {
			h.Stored = int64(len(b)) + 1 // what follows must fail as truncated
		}
		r := bytes.NewReader(b[HeaderSize(len(h.Filters)):])
		got, err := io.ReadAll(PayloadReader(r, h))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a bad payload failed with %v, not ErrCorrupt", err)
			}
			return
		}
		if int64(len(got)) != h.Stored || !bytes.Equal(Encode(h.Filters, h.Plain, got), b) {
			t.Fatalf("accepted %d payload bytes of an object that is not what they encode to", len(got))
		}
	})
}
