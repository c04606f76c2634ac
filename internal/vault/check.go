package vault

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Damage is a damaged object or pack region found by Check.
type Damage struct {
	Object string // the object's name, if known
	Where  string // its file, and offset in a pack
	Msg    string
}

func (d Damage) String() string {
	if d.Object != "" {
		return fmt.Sprintf("object %s (%s): %s", d.Object, d.Where, d.Msg)
	}
	return fmt.Sprintf("%s: %s", d.Where, d.Msg)
}

// CheckSummary counts what Check verified.
type CheckSummary struct {
	Objects int   // objects whose content was verified
	Bytes   int64 // their bytes
	Damaged int
}

// Check reads every stored object and verifies that its content hashes to
// its name, and that every pack record is whole; it calls damaged for each
// problem and goes on. Objects are read, never changed.
func (v *Vault) Check(ctx context.Context, damaged func(Damage)) (CheckSummary, error) {
	var sum CheckSummary
	report := func(d Damage) { sum.Damaged++; damaged(d) }
	buf := make([]byte, 1<<20)
	err := v.objectFiles(ctx, func(p, name string, compressed bool, _ fs.DirEntry) error {
		if !ValidHash(name) || filepath.Base(filepath.Dir(p)) != name[:2] {
			report(Damage{Where: p, Msg: "not an object name where objects are kept"})
			return nil
		}
		if compressed {
			b, err := os.ReadFile(p)
			if err == nil {
				b, err = decodeStored(name, b)
			}
			if err == nil {
				if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != name {
					err = fmt.Errorf("content (%d bytes) hashes to %x", len(b), got)
				}
			}
			if err != nil {
				report(Damage{Object: name, Where: p, Msg: err.Error()})
			} else {
				sum.Objects++
				sum.Bytes += int64(len(b))
			}
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			report(Damage{Object: name, Where: p, Msg: err.Error()})
			return nil
		}
		h := sha256.New()
		n, err := io.CopyBuffer(h, f, buf)
		f.Close()
		switch got := hex.EncodeToString(h.Sum(nil)); {
		case err != nil:
			report(Damage{Object: name, Where: p, Msg: fmt.Sprintf("unreadable: %v", err)})
		case got != name:
			report(Damage{Object: name, Where: p, Msg: fmt.Sprintf("content (%d bytes) hashes to %s", n, got)})
		default:
			sum.Objects++
			sum.Bytes += n
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("vault check: %w", err)
	}
	if v.packs == nil {
		return sum, nil
	}
	names, err := filepath.Glob(filepath.Join(v.packs.dir, "pack-*"))
	if err != nil {
		return sum, err
	}
	sort.Strings(names)
	for _, p := range names {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if err := checkPack(p, &sum, report); err != nil {
			return sum, fmt.Errorf("vault check: %w", err)
		}
	}
	return sum, nil
}

// checkPack verifies every record of a pack file: framing, CRC and the
// content's SHA-256. The first broken record makes the rest of the pack
// unreadable; it is reported with the bytes it hides.
func checkPack(p string, sum *CheckSummary, report func(Damage)) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	hdr := make([]byte, packHeader)
	var off int64
	var content []byte
	for off < fi.Size() {
		bad := func(msg string) {
			report(Damage{Where: fmt.Sprintf("%s at offset %d", filepath.Base(p), off),
				Msg: fmt.Sprintf("%s; the %d bytes from here to the end of the pack cannot be read", msg, fi.Size()-off)})
		}
		if _, err := io.ReadFull(r, hdr); err != nil {
			bad("truncated record header")
			return nil
		}
		if string(hdr[:4]) != packMagic {
			bad("not a record (bad magic)")
			return nil
		}
		size := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		if off+packHeader+size+packTrailer > fi.Size() {
			bad("record runs past the end of the pack")
			return nil
		}
		if int64(cap(content)) < size+packTrailer {
			content = make([]byte, size+packTrailer)
		}
		content = content[:size+packTrailer]
		if _, err := io.ReadFull(r, content); err != nil {
			bad(fmt.Sprintf("unreadable record: %v", err))
			return nil
		}
		name := hex.EncodeToString(hdr[8:40])
		crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, content[:size])
		if crc != binary.LittleEndian.Uint32(content[size:]) {
			report(Damage{Object: name, Where: fmt.Sprintf("%s at offset %d", filepath.Base(p), off),
				Msg: fmt.Sprintf("record checksum mismatch; the %d bytes from here to the end of the pack cannot be read", fi.Size()-off)})
			return nil
		}
		if got := sha256.Sum256(content[:size]); hex.EncodeToString(got[:]) != name {
			report(Damage{Object: name, Where: fmt.Sprintf("%s at offset %d", filepath.Base(p), off),
				Msg: "content does not hash to its name"})
		} else {
			sum.Objects++
			sum.Bytes += size
		}
		off += packHeader + size + packTrailer
	}
	return nil
}
