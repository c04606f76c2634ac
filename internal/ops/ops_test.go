package ops_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

var ctx = context.Background()

const job = `<distrenjob version="1"><name>ops</name><backend name="builtin"/>
<frames><range first="1" last="2"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`

// TestOneJobWithoutHTTP takes a job through the operations alone: accept
// its package, render its frames (claimed from the session, their outputs
// accepted), and read its bundle and files.
func TestOneJobWithoutHTTP(t *testing.T) {
	p := opstest.NewParts(t, "ops", vault.Options{SmallObjects: 64 << 10})
	f := p.Ops(ops.Config{})
	pkg := opstest.TarOf(t, map[string]string{"distrenjob.xml": job, "in/a.txt": "input a\n"})
	sub, err := f.SubmitTar(ctx, bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	if sub.Frames != 2 || sub.URL != "distren://ops/1" {
		t.Fatalf("submitted %+v", sub)
	}
	leases, err := p.Session.Claim(ctx, session.ClaimRequest{Worker: "w", Max: 2, Backends: map[string]string{"builtin": "1"}})
	if err != nil || len(leases) != 2 {
		t.Fatalf("claim: %v %v", leases, err)
	}
	for _, l := range leases {
		out := opstest.TarOf(t, map[string]string{"out/" + string(rune('0'+l.Frame)) + ".txt": "frame\n"})
		rep := ops.Report{Worker: "w", Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}
		if err := f.AcceptOutput(ctx, rep, time.Millisecond, bytes.NewReader(out)); err != nil {
			t.Fatalf("frame %d: %v", l.Frame, err)
		}
		// The lease is spent: the same report again is stale.
		if err := f.AcceptOutput(ctx, rep, 0, bytes.NewReader(out)); !errors.Is(err, session.ErrStaleLease) {
			t.Errorf("frame %d reported twice: %v", l.Frame, err)
		}
	}
	var bundle bytes.Buffer
	frames := -1
	if err := f.WriteResult(ctx, sub.ID, nil, func(n int) io.Writer { frames = n; return &bundle }); err != nil {
		t.Fatal(err)
	}
	if frames != 2 || strings.Join(names(t, bundle.Bytes()), " ") != "out/1.txt out/2.txt" {
		t.Errorf("bundle of %d frames: %v", frames, names(t, bundle.Bytes()))
	}
	var file bytes.Buffer
	err = f.WriteFile(ctx, sub.ID, 1, func(name string, size int64) io.Writer {
		if name != "a.txt" || size != 8 {
			t.Errorf("file 1: %s of %d bytes", name, size)
		}
		return &file
	})
	if err != nil || file.String() != "input a\n" {
		t.Errorf("file 1: %q, %v", file.String(), err)
	}
}

func names(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name)
	}
}

// TestKinds: what an operation refuses says why in its Kind, for a
// transport to map, and names what is at fault.
func TestKinds(t *testing.T) {
	p := opstest.NewParts(t, "kinds", vault.Options{})
	f := p.Ops(ops.Config{Limits: ops.Limits{MaxPackageBytes: 1 << 10, MaxPackageFiles: 4, MaxOutputBytes: 1 << 10}})
	big := opstest.TarOf(t, map[string]string{"distrenjob.xml": job, "big.bin": strings.Repeat("x", 4<<10)})
	tree := func(files ...cdc.File) io.Reader {
		b, err := cdc.Tree{Files: files}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return bytes.NewReader(b)
	}
	for _, c := range []struct {
		name string
		err  error
		kind ops.Kind
		says string
	}{
		{"a package over the limit, its size unknown", second(f.SubmitTar(ctx, bytes.NewReader(big), -1)), ops.TooLarge, "limit of 1024 bytes"},
		{"a package over the limit, its size given", second(f.SubmitTar(ctx, bytes.NewReader(big), 1<<30)), ops.TooLarge, "--max-package-bytes"},
		{"not a tarball", second(f.SubmitTar(ctx, strings.NewReader("hello"), 5)), ops.Invalid, "package"},
		{"no manifest", second(f.SubmitTar(ctx, bytes.NewReader(opstest.TarOf(t, map[string]string{"a": "b"})), -1)), ops.Invalid, "no distrenjob.xml"},
		{"a tree whose chunks are not there", second(f.SubmitTree(ctx, tree(cdc.File{Path: "distrenjob.xml", Size: 1,
			Chunks: []cdc.ChunkRef{{Size: 1}}}))), ops.Conflict, "upload them first"},
		{"a tree that is no tree", second(f.SubmitTree(ctx, strings.NewReader("nonsense"))), ops.Invalid, "package tree"},
		{"a chunk not named by its hash", f.PutChunk(ctx, strings.Repeat("0", 64), strings.NewReader("data"), 4), ops.Invalid, "chunk 0000"},
		{"a blob named by no hash", second(f.Blob(ctx, "x")), ops.Invalid, `blob "x"`},
		{"a blob not there", second(f.Blob(ctx, strings.Repeat("a", 64))), ops.NotFound, ""},
	} {
		if c.err == nil || ops.KindOf(c.err) != c.kind || !strings.Contains(c.err.Error(), c.says) {
			t.Errorf("%s: kind %d, %v; want kind %d saying %q", c.name, ops.KindOf(c.err), c.err, c.kind, c.says)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestFailRedacts: a failure's message is kept without the server's
// directories, and only its end when it is long.
func TestFailRedacts(t *testing.T) {
	p := opstest.NewParts(t, "fail", vault.Options{})
	f := p.Ops(ops.Config{DataDir: "/srv/distren-data"})
	pkg := opstest.TarOf(t, map[string]string{"distrenjob.xml": job})
	sub, err := f.SubmitTar(ctx, bytes.NewReader(pkg), -1)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := p.Session.Claim(ctx, session.ClaimRequest{Worker: "w", Max: 1, Backends: map[string]string{"builtin": "1"}})
	if err != nil || len(ls) != 1 {
		t.Fatal(ls, err)
	}
	msg := strings.Repeat("noise ", ops.MaxFailureMessage) + "cannot open /srv/distren-data/worker/scratch/x.pov"
	rep := ops.Report{Worker: "w", Job: sub.ID, Frame: ls[0].Frame, Epoch: ls[0].Epoch}
	if err := f.Fail(ctx, rep, msg, false); err != nil {
		t.Fatal(err)
	}
	fr, err := p.Session.Frame(sub.ID, ls[0].Frame)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fr.Error, "/srv/") || !strings.HasSuffix(fr.Error, "cannot open DATA/worker/scratch/x.pov") || len(fr.Error) > ops.MaxFailureMessage {
		t.Errorf("the failure kept: %d bytes ending %q", len(fr.Error), fr.Error[max(0, len(fr.Error)-80):])
	}
}

// TestOutputSizes: outputs read whole (up to 64 KiB) and streamed (larger)
// are both checked, stored and completed; a refused small one stores
// nothing.
func TestOutputSizes(t *testing.T) {
	p := opstest.NewParts(t, "sizes", vault.Options{SmallObjects: 64 << 10})
	f := p.Ops(ops.Config{})
	pkg := opstest.TarOf(t, map[string]string{"distrenjob.xml": job})
	sub, err := f.SubmitTar(ctx, bytes.NewReader(pkg), -1)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := p.Session.Claim(ctx, session.ClaimRequest{Worker: "w", Max: 2, Backends: map[string]string{"builtin": "1"}})
	if err != nil || len(ls) != 2 {
		t.Fatal(ls, err)
	}
	rep := func(i int) ops.Report {
		return ops.Report{Worker: "w", Job: sub.ID, Frame: ls[i].Frame, Epoch: ls[i].Epoch}
	}
	if err := f.AcceptOutput(ctx, rep(0), 0, strings.NewReader("not a tarball at all")); ops.KindOf(err) != ops.Invalid {
		t.Errorf("a small output that is no tarball: %v", err)
	}
	bad := sha256.Sum256([]byte("not a tarball at all"))
	if has, err := p.Vault.Has(ctx, hex.EncodeToString(bad[:])); has || err != nil {
		t.Errorf("the refused output was stored: %v %v", has, err)
	}
	if err := f.AcceptOutput(ctx, rep(0), 0, bytes.NewReader(opstest.TarOf(t, map[string]string{"small.txt": "s"}))); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = byte(i * 7919 >> 3)
	}
	if err := f.AcceptOutput(ctx, rep(1), 0, bytes.NewReader(opstest.TarOf(t, map[string]string{"big.bin": string(big)}))); err != nil {
		t.Fatal(err)
	}
	var bundle bytes.Buffer
	if err := f.WriteResult(ctx, sub.ID, nil, func(int) io.Writer { return &bundle }); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&bundle)
	sizes := map[string]int64{}
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		sizes[h.Name] = h.Size
	}
	if sizes["small.txt"] != 1 || sizes["big.bin"] != int64(len(big)) || len(sizes) != 2 {
		t.Errorf("bundle: %v", sizes)
	}
}

// TestChunkWrittenOnce: a chunk as distren's client cuts them (here 1 MiB)
// is stored without a copy in the upload directory — which does not even
// exist here.
func TestChunkWrittenOnce(t *testing.T) {
	p := opstest.NewParts(t, "once", vault.Options{})
	f := p.Ops(ops.Config{TmpDir: filepath.Join(t.TempDir(), "absent")})
	data := bytes.Repeat([]byte("chunk of a texture "), 1<<20/19)
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	if err := f.PutChunk(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("a 1 MiB chunk: %v", err)
	}
	if has, err := p.Vault.Has(ctx, h); !has || err != nil {
		t.Errorf("the chunk is not stored: %v %v", has, err)
	}
}
