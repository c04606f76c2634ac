package session

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/store"
)

// TestInputsStoredAsTree: a job's inputs are stored in the vault's tree
// encoding, read back the same after a restart, and numbered as before.
func TestInputsStoredAsTree(t *testing.T) {
	st := store.NewMem()
	s := open(t, st)
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	sub := mkjob(t, "", `<frame id="1"/>`)
	sub.Inputs = []cdc.File{
		{Path: "scene/a.pov", Mode: 0o644, Size: 3, Chunks: []cdc.ChunkRef{{Hash: a, Size: 1}, {Hash: b, Size: 2}}},
		{Path: "tex/b.png", Mode: 0o600, Size: 0},
	}
	id := submit(t, s, sub)
	s.Close()

	snap, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := cdc.DecodeTree(snap.Jobs[0].Inputs)
	if err != nil {
		t.Fatalf("the stored inputs are not a tree: %v (%q)", err, snap.Jobs[0].Inputs)
	}
	if !reflect.DeepEqual(tree.Files, sub.Inputs) {
		t.Errorf("stored tree %+v, want %+v", tree.Files, sub.Inputs)
	}
	s = open(t, st)
	js, err := s.Spec(id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(js.Inputs, sub.Inputs) || string(js.Manifest) != string(sub.Raw) {
		t.Errorf("spec after a restart: %+v", js)
	}
	loc, err := s.File(id, 1)
	if err != nil || loc.Path != "scene/a.pov" || loc.InTar || !reflect.DeepEqual(loc.Parts, sub.Inputs[0].Chunks) {
		t.Errorf("file 1: %+v, %v", loc, err)
	}
	if live := s.LiveObjects(); !live[hex.EncodeToString(a[:])] || !live[hex.EncodeToString(b[:])] {
		t.Errorf("the inputs' chunks are not live: %v", live)
	}
}

// TestInputsStoredAsJSON: a job stored before the tree encoding, its inputs
// a JSON array of files with chunks or with one whole-file object, reads
// as it did.
func TestInputsStoredAsJSON(t *testing.T) {
	st := store.NewMem()
	sub := mkjob(t, "", `<frame id="1"/>`)
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("whole"))
	legacy := `[{"path":"a.txt","mode":420,"size":1,"chunks":[{"hash":"` + hex.EncodeToString(a[:]) + `","size":1}]},` +
		`{"path":"old.bin","mode":384,"size":5,"hash":"` + hex.EncodeToString(b[:]) + `"}]`
	tx, _ := st.Begin(ctx)
	if err := tx.AddJob(&store.Job{ID: 1, Name: "t", Manifest: sub.Raw, Inputs: []byte(legacy), NextFile: 3}); err != nil {
		t.Fatal(err)
	}
	tx.SetCounter("next_job", 2)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s := open(t, st)
	js, err := s.Spec(1)
	if err != nil {
		t.Fatal(err)
	}
	want := []cdc.File{
		{Path: "a.txt", Mode: 0o644, Size: 1, Chunks: []cdc.ChunkRef{{Hash: a, Size: 1}}},
		{Path: "old.bin", Mode: 0o600, Size: 5, Chunks: []cdc.ChunkRef{{Hash: b, Size: 5}}},
	}
	if !reflect.DeepEqual(js.Inputs, want) {
		t.Errorf("legacy inputs read as %+v, want %+v", js.Inputs, want)
	}
}

// TestFileNumbersAfterRestart: a completion records its files, not the
// job's next file number; after a restart the numbers go on from the files
// stored, never reusing one.
func TestFileNumbersAfterRestart(t *testing.T) {
	st := store.NewMem()
	s := open(t, st)
	sub := mkjob(t, "", `<range first="1" last="3"/>`)
	sub.Inputs = []cdc.File{{Path: "a"}, {Path: "b"}} // files 1 and 2
	id := submit(t, s, sub)
	ls := claim(t, s, "w", 3)
	done := func(s *Session, l Lease, paths ...string) []int64 {
		t.Helper()
		var outs []OutFile
		for _, p := range paths {
			outs = append(outs, OutFile{Path: p, Size: 1})
		}
		if err := s.Complete(ctx, Completion{Worker: "w", Job: l.Job, Frame: l.Frame, Epoch: l.Epoch, Output: fmt.Sprintf("%064d", l.Frame), Size: 1, Files: outs}); err != nil {
			t.Fatal(err)
		}
		f, err := s.Frame(id, l.Frame)
		if err != nil {
			t.Fatal(err)
		}
		return f.Files
	}
	if got := done(s, ls[0], "x.png", "y.png"); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("frame 1's files: %v", got)
	}
	s.Close()
	s = open(t, st)
	ls = claim(t, s, "w", 2) // the leases died with the first session
	if got := done(s, ls[0], "z.png"); !slices.Equal(got, []int64{5}) {
		t.Errorf("after a restart, the next frame's file: %v, want [5]", got)
	}
	s.Close()
	s = open(t, st)
	if loc, err := s.File(id, 5); err != nil || loc.Path != "z.png" {
		t.Errorf("file 5 after a second restart: %+v %v", loc, err)
	}
	ls = claim(t, s, "w", 1)
	if got := done(s, ls[0], "w.png"); !slices.Equal(got, []int64{6}) {
		t.Errorf("after a second restart: %v, want [6]", got)
	}
}
