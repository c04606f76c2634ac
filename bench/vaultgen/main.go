// Command vaultgen writes the job package the vault benchmarks measure
// (docs/PERFORMANCE.md): a directory whose content is a pure function of the
// seed and the size, so every run and every machine measures the same bytes.
//
// Half of the size is random "textures" (incompressible, files of 4-64 MiB),
// half is compressible "scene text" (POV-Ray- and OBJ-like text with
// repetition, files of 1-16 MiB), plus a few hundred small files of 1-64 KiB;
// a distrenjob.xml (manifest v1, one built-in frame) sits at the root.
//
// With -edit PCT it instead modifies about PCT% of the files of a generated
// directory in place, with small localized edits chosen by the seed — text
// gets a short block inserted at a line boundary, binary files a 4 KiB
// region (-edit-bytes) overwritten — to measure re-submission. Use another
// -seed for another edit.
//
// Usage:
//
//	go run ./bench/vaultgen -o DIR [-size 2GiB] [-seed 1] [-j N]
//	go run ./bench/vaultgen -o DIR -edit PCT [-edit-bytes 4096] [-seed 1]
package main

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	out := flag.String("o", "", "output directory (created; must be empty or absent unless -edit)")
	sizeFlag := flag.String("size", "2GiB", "total size of the package's files (bytes, or with a unit: KiB, MiB, GiB, KB, MB, GB)")
	seed := flag.Uint64("seed", 1, "seed: the same seed and size give the same bytes")
	edit := flag.Float64("edit", 0, "instead of generating, edit about this percentage of the files of the generated package in -o")
	editBytes := flag.Int64("edit-bytes", 4096, "with -edit: bytes overwritten in each binary file edited")
	jobs := flag.Int("j", runtime.GOMAXPROCS(0), "files written in parallel")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if *edit != 0 {
		err = runEdit(*out, *edit, *editBytes, *seed, os.Stdout)
	} else {
		var size int64
		size, err = parseSize(*sizeFlag)
		if err == nil {
			err = runGenerate(*out, size, *seed, *jobs, os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vaultgen:", err)
		os.Exit(1)
	}
}

// parseSize reads "2GiB", "512MiB", "100MB", "1G" (binary) or a byte count.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
		{"b", 1},
	}
	num, mult := strings.ToLower(strings.TrimSpace(s)), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (2GiB, 500MB)", s)
	}
	return int64(v * float64(mult)), nil
}

type kind int

const (
	random kind = iota // incompressible
	text               // compressible scene text
)

// spec is one file to write. Its content is a function of the spec alone.
type spec struct {
	path string
	size int64
	kind kind
	seed [32]byte
}

// fileSeed derives a file's seed from the run's seed and a purpose.
func fileSeed(seed uint64, parts ...string) [32]byte {
	return sha256.Sum256([]byte(fmt.Sprintf("vaultgen\x00%d\x00%s", seed, strings.Join(parts, "\x00"))))
}

func pcg(s [32]byte) *rand.Rand {
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(s[:8]), binary.LittleEndian.Uint64(s[8:16])))
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

var (
	textureDirs = []string{"env", "props", "characters", "terrain"}
	textureExts = []string{"png", "exr", "tga", "jpg"}
	textKinds   = []struct{ dir, name, ext string }{{"scenes", "part", "pov"}, {"meshes", "mesh", "obj"}, {"include", "lib", "inc"}}
	smallExts   = []struct {
		ext  string
		kind kind
	}{{"inc", text}, {"mtl", text}, {"ini", text}, {"txt", text}, {"png", random}, {"bin", random}}
	// textExts are the extensions -edit treats as text.
	textExts = []string{"pov", "obj", "inc", "mtl", "ini", "txt", "xml"}
)

// plan lays out the package: which files, how large, of which kind.
func plan(size int64, seed uint64) []spec {
	r := pcg(fileSeed(seed, "plan", strconv.FormatInt(size, 10)))
	var specs []spec
	add := func(p string, n int64, k kind) {
		specs = append(specs, spec{path: p, size: n, kind: k, seed: fileSeed(seed, "file", p)})
	}
	// A few hundred small files, at most an eighth of the size.
	nsmall := int64(300)
	if size < 1<<30 {
		nsmall = max(8, 300*size/(1<<30))
	}
	var used int64
	for i := range nsmall {
		n := 1*kib + r.Int64N(63*kib+1)
		if used+n > size/8 {
			break
		}
		e := smallExts[r.IntN(len(smallExts))]
		add(fmt.Sprintf("assets/set%02d/item_%03d.%s", i%12, i, e.ext), n, e.kind)
		used += n
	}
	rest := size - used
	// Then fill each half with files of its range; the last takes what is left.
	fill := func(budget, lo, hi int64, name func(i int) string, k kind) {
		for i := 0; budget > 0; i++ {
			n := min(budget, lo+r.Int64N(hi-lo+1))
			add(name(i), n, k)
			budget -= n
		}
	}
	fill(rest/2, 4*mib, 64*mib, func(i int) string {
		return fmt.Sprintf("textures/%s/tex_%03d.%s", textureDirs[i%len(textureDirs)], i, textureExts[(i/len(textureDirs))%len(textureExts)])
	}, random)
	fill(rest-rest/2, 1*mib, 16*mib, func(i int) string {
		k := textKinds[i%len(textKinds)]
		return fmt.Sprintf("%s/%s_%03d.%s", k.dir, k.name, i, k.ext)
	}, text)
	return specs
}

func manifestXML(size int64, seed uint64) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by bench/vaultgen -seed %d -size %d -->
<distrenjob version="1">
  <name>vaultgen seed %d</name>
  <backend name="builtin">
    <scene>clock</scene>
    <width>64</width>
    <height>36</height>
  </backend>
  <frames>
    <frame id="1"/>
  </frames>
  <outputs>
    <output>*.png</output>
  </outputs>
</distrenjob>
`, seed, size, seed)
}

func runGenerate(dir string, size int64, seed uint64, jobs int, w io.Writer) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s is not empty: generate into a new directory", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	start := time.Now()
	specs := plan(size, seed)
	dirs := map[string]bool{}
	for _, s := range specs {
		dirs[path.Dir(s.path)] = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(d)), 0o755); err != nil {
			return err
		}
	}
	m := manifestXML(size, seed)
	if err := os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(m), 0o644); err != nil {
		return err
	}

	// Largest files first, so the workers finish together.
	order := slices.Clone(specs)
	slices.SortStableFunc(order, func(a, b spec) int { return cmp.Compare(b.size, a.size) })
	work := make(chan spec)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range max(1, jobs) {
		wg.Go(func() {
			var buf []byte
			for s := range work {
				var err error
				buf, err = writeFile(filepath.Join(dir, filepath.FromSlash(s.path)), s, buf)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, s := range order {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		work <- s
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}

	var counts [2]int
	var bytes [2]int64
	small := 0
	for _, s := range specs {
		if strings.HasPrefix(s.path, "assets/") {
			small++
			continue
		}
		counts[s.kind]++
		bytes[s.kind] += s.size
	}
	d := time.Since(start)
	fmt.Fprintf(w, "vaultgen: wrote %s in %.1fs (%.0f MB/s): %d files, %d bytes: %d textures (%d bytes), %d scene text files (%d bytes), %d small files, distrenjob.xml\n",
		dir, d.Seconds(), float64(size)/1e6/d.Seconds(), len(specs)+1, size+int64(len(m)),
		counts[random], bytes[random], counts[text], bytes[text], small)
	return nil
}

// writeFile writes s at name. buf is scratch space, returned for reuse.
func writeFile(name string, s spec, buf []byte) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return buf, err
	}
	switch s.kind {
	case random:
		if cap(buf) < mib {
			buf = make([]byte, mib)
		}
		buf = buf[:mib]
		g := rand.NewChaCha8(s.seed)
		for left := s.size; left > 0 && err == nil; {
			n := min(left, mib)
			g.Read(buf[:n])
			_, err = f.Write(buf[:n])
			left -= n
		}
	case text:
		buf = genText(buf[:0], s.size, pcg(s.seed), path.Ext(s.path))
		_, err = f.Write(buf)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return buf, fmt.Errorf("writing %s: %w", name, err)
	}
	return buf, nil
}

// genText appends exactly size bytes of scene-like text to b: OBJ geometry
// for ".obj", POV-Ray declarations otherwise; one block in eight repeats an
// earlier block of the file, as real scenes repeat objects and materials.
func genText(b []byte, size int64, r *rand.Rand, ext string) []byte {
	start := len(b)
	var blocks []int // offsets where blocks start, for repeats
	for int64(len(b)-start) < size {
		at := len(b)
		if len(blocks) > 4 && r.IntN(8) == 0 {
			i := r.IntN(len(blocks) - 1)
			b = append(b, b[blocks[i]:blocks[i+1]]...)
		} else if ext == ".obj" {
			b = objBlock(b, r)
		} else {
			b = povBlock(b, r)
		}
		blocks = append(blocks, at)
		if len(blocks) > 4096 {
			blocks = blocks[2048:] // repeat from the recent past only
		}
	}
	return b[:start+int(size)]
}

// fixed appends v/1000 with three decimals.
func fixed(b []byte, v int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	b = strconv.AppendInt(b, int64(v/1000), 10)
	f := v % 1000
	return append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

func vec(b []byte, r *rand.Rand, scale int) []byte {
	b = append(b, '<')
	for i := range 3 {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fixed(b, r.IntN(2*scale+1)-scale)
	}
	return append(b, '>')
}

var (
	materials = []string{"T_Wood", "T_Stone", "T_Brass", "T_Glass", "T_Chrome", "T_Cloth", "T_Gold", "T_Marble"}
	shapes    = []string{"sphere", "box", "cylinder", "cone", "torus"}
)

func povBlock(b []byte, r *rand.Rand) []byte {
	id := r.IntN(100000)
	b = append(b, "#declare Obj_"...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, " = union {\n"...)
	for range 2 + r.IntN(8) {
		b = append(b, "  "...)
		b = append(b, shapes[r.IntN(len(shapes))]...)
		b = append(b, " { "...)
		b = vec(b, r, 20000)
		b = append(b, ", "...)
		b = fixed(b, r.IntN(5000))
		b = append(b, " texture { "...)
		b = append(b, materials[r.IntN(len(materials))]...)
		b = append(b, '_')
		b = strconv.AppendInt(b, int64(r.IntN(20)), 10)
		b = append(b, " } }\n"...)
	}
	b = append(b, "  pigment { color rgb <"...)
	for i := range 3 {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fixed(b, r.IntN(1001))
	}
	b = append(b, "> }\n}\nobject { Obj_"...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, " translate "...)
	b = vec(b, r, 100000)
	b = append(b, " rotate <0, "...)
	b = strconv.AppendInt(b, int64(r.IntN(360)), 10)
	return append(b, ", 0> }\n\n"...)
}

func objBlock(b []byte, r *rand.Rand) []byte {
	b = append(b, "g part_"...)
	b = strconv.AppendInt(b, int64(r.IntN(10000)), 10)
	b = append(b, "\nusemtl M_"...)
	b = strconv.AppendInt(b, int64(r.IntN(64)), 10)
	b = append(b, '\n')
	nv := 8 + r.IntN(32)
	for range nv {
		b = append(b, "v "...)
		for i := range 3 {
			if i > 0 {
				b = append(b, ' ')
			}
			b = fixed(b, r.IntN(20001)-10000)
		}
		b = append(b, "\nvn "...)
		for i := range 3 {
			if i > 0 {
				b = append(b, ' ')
			}
			b = fixed(b, r.IntN(2001)-1000)
		}
		b = append(b, '\n')
	}
	for range nv / 2 {
		b = append(b, 'f')
		for range 3 {
			v := int64(1 + r.IntN(nv))
			b = append(b, ' ')
			b = strconv.AppendInt(b, v, 10)
			b = append(b, "//"...)
			b = strconv.AppendInt(b, v, 10)
		}
		b = append(b, '\n')
	}
	return b
}

// runEdit modifies about pct% of the files of the package in dir.
func runEdit(dir string, pct float64, binBytes int64, seed uint64, w io.Writer) error {
	if pct < 0 || pct > 100 || math.IsNaN(pct) {
		return fmt.Errorf("-edit %v: want a percentage in 0..100", pct)
	}
	if binBytes < 1 {
		return fmt.Errorf("-edit-bytes %d: want at least 1", binBytes)
	}
	if _, err := os.Stat(filepath.Join(dir, "distrenjob.xml")); err != nil {
		return fmt.Errorf("%s does not look like a generated package: %w", dir, err)
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			if rel = filepath.ToSlash(rel); rel != "distrenjob.xml" {
				files = append(files, rel)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(files)
	n := int(math.Round(float64(len(files)) * pct / 100))
	if n == 0 && len(files) > 0 {
		n = 1
	}
	r := pcg(fileSeed(seed, "edit"))
	r.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	chosen := files[:n]
	slices.Sort(chosen)
	var inserted, overwritten int64
	for _, rel := range chosen {
		msg, ins, ow, err := editFile(filepath.Join(dir, filepath.FromSlash(rel)), pcg(fileSeed(seed, "edit", rel)), binBytes,
			slices.Contains(textExts, strings.TrimPrefix(path.Ext(rel), ".")))
		if err != nil {
			return fmt.Errorf("editing %s: %w", rel, err)
		}
		fmt.Fprintf(w, "  %s: %s\n", rel, msg)
		inserted += ins
		overwritten += ow
	}
	fmt.Fprintf(w, "vaultgen: edited %d of %d files (%.3g%%): %d bytes inserted, %d bytes overwritten\n",
		n, len(files), pct, inserted, overwritten)
	return nil
}

// editFile makes one localized edit: in text, a block of 64-1024 bytes
// inserted at a line boundary; in binary data, binBytes overwritten in place.
func editFile(name string, r *rand.Rand, binBytes int64, isText bool) (msg string, inserted, overwritten int64, err error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return "", 0, 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	info, err := f.Stat()
	if err != nil {
		return "", 0, 0, err
	}
	size := info.Size()
	at := int64(0)
	if size > 0 {
		at = r.Int64N(size)
	}
	if !isText {
		n := min(binBytes, size)
		at = min(at, size-n)
		b := make([]byte, n)
		var s [32]byte
		binary.LittleEndian.PutUint64(s[:], r.Uint64())
		rand.NewChaCha8(s).Read(b)
		if _, err := f.WriteAt(b, at); err != nil {
			return "", 0, 0, err
		}
		return fmt.Sprintf("overwrote %d bytes at %d", n, at), 0, n, nil
	}
	// Insert after the next newline, rewriting the rest of the file.
	tail := make([]byte, size-at)
	if _, err := f.ReadAt(tail, at); err != nil && err != io.EOF {
		return "", 0, 0, err
	}
	if i := slices.Index(tail, '\n'); i >= 0 {
		at += int64(i + 1)
		tail = tail[i+1:]
	} else {
		at, tail = size, nil
	}
	want := 64 + r.IntN(961)
	block := []byte("// edited by vaultgen\n")
	for len(block) < want {
		block = povBlock(block, r)
	}
	block = block[:want]
	block[want-1] = '\n'
	if _, err := f.WriteAt(append(block, tail...), at); err != nil {
		return "", 0, 0, err
	}
	return fmt.Sprintf("inserted %d bytes at %d", len(block), at), int64(len(block)), 0, nil
}
