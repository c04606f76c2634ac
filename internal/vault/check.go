package vault

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distren/distren/internal/storage"
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

// Check reads every stored object and verifies it — header, checksum, the
// filters undone, its content hashing to its name — and that every chunk
// an index names is stored and whole, and that every pack record is whole,
// in the local packs and in those sealed on the module; it calls damaged
// for each problem and goes on. Objects are read, never changed. It may run
// beside a server using the vault. An error means the check could not go
// on (the module failed, ctx ended): what it found so far is reported.
func (v *Vault) Check(ctx context.Context, damaged func(Damage)) (CheckSummary, error) {
	var sum CheckSummary
	report := func(d Damage) { sum.Damaged++; damaged(d) }
	where := func(name string) string { return v.raw.String() + " " + name }
	err := v.raw.List(ctx, "", func(i storage.Info) error {
		hash, isIndex := objectOf(i.Name)
		switch {
		case strings.HasPrefix(i.Name, packPrefix):
			// Sealed packs are checked below.
		case hash == "":
			report(Damage{Where: where(i.Name), Msg: "not an object name where objects are kept"})
		case isIndex:
			parts, err := v.index(ctx, hash)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				report(Damage{Object: hash, Where: where(i.Name), Msg: err.Error()})
				return nil
			}
			for n, p := range parts {
				c := hex.EncodeToString(p.Hash[:])
				ok, err := v.Has(ctx, c)
				if err != nil {
					return err
				}
				if !ok {
					report(Damage{Object: hash, Where: where(i.Name), Msg: fmt.Sprintf("chunk %d of %d (%s) is missing", n+1, len(parts), c)})
				}
			}
		default:
			data, err := v.load(ctx, hash)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				report(Damage{Object: hash, Where: where(i.Name), Msg: err.Error()})
				return nil
			}
			sum.Objects++
			sum.Bytes += int64(len(data))
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("vault check: %w", err)
	}
	if v.packs == nil {
		return sum, nil
	}
	v.packs.mu.RLock()
	var local, sealed []int
	for n := range v.packs.local {
		local = append(local, n)
	}
	for n := range v.packs.remote {
		sealed = append(sealed, n)
	}
	v.packs.mu.RUnlock()
	sort.Ints(local)
	sort.Ints(sealed)
	for _, n := range local {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if err := v.checkLocalPack(ctx, n, &sum, report); err != nil {
			return sum, fmt.Errorf("vault check: %w", err)
		}
	}
	for _, n := range sealed {
		if err := v.checkSealedPack(ctx, n, &sum, report); err != nil {
			return sum, fmt.Errorf("vault check: %w", err)
		}
	}
	return sum, nil
}

// checkLocalPack verifies the records of a pack on the local disk written
// when the check started.
func (v *Vault) checkLocalPack(ctx context.Context, n int, sum *CheckSummary, report func(Damage)) error {
	p := filepath.Join(v.packs.dir, packName(n))
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil // sealed meanwhile, and checked on the module
	} else if err != nil {
		return err
	}
	defer f.Close()
	v.packs.mu.RLock()
	size := v.packs.size
	if n != v.packs.last {
		fi, err := f.Stat()
		if err != nil {
			v.packs.mu.RUnlock()
			return err
		}
		size = fi.Size()
	}
	v.packs.mu.RUnlock()
	return v.checkRecords(ctx, io.NewSectionReader(f, 0, size), size, p, sum, report)
}

// checkSealedPack verifies the records of a pack on the module.
func (v *Vault) checkSealedPack(ctx context.Context, n int, sum *CheckSummary, report func(Damage)) error {
	info, err := v.raw.Stat(ctx, packObject(n))
	if errors.Is(err, storage.ErrNotFound) {
		v.packs.mu.RLock()
		_, still := v.packs.remote[n]
		v.packs.mu.RUnlock()
		if still {
			report(Damage{Where: v.raw.String() + " " + packObject(n), Msg: "the pack is indexed but missing"})
		}
		return nil // or compacted meanwhile
	} else if err != nil {
		return err
	}
	rc, err := v.raw.Get(ctx, packObject(n))
	if errors.Is(err, storage.ErrNotFound) {
		return nil // compacted meanwhile
	} else if err != nil {
		return err
	}
	defer rc.Close()
	return v.checkRecords(ctx, rc, info.Size, v.raw.String()+" "+packObject(n), sum, report)
}

// checkRecords verifies every record of a pack of size bytes: framing,
// CRC, the sealed object and its content's SHA-256. The first broken
// record makes the rest of the pack unreadable; it is reported with the
// bytes it hides.
func (v *Vault) checkRecords(ctx context.Context, r io.Reader, size int64, pack string, sum *CheckSummary, report func(Damage)) error {
	var ctxErr error
	err := eachRecord(r, func(h [32]byte, off int64, sealed []byte, ok bool) bool {
		at := fmt.Sprintf("%s at offset %d", filepath.Base(pack), off)
		if !ok {
			report(Damage{Where: at, Msg: fmt.Sprintf("record not whole (bad framing or checksum); the %d bytes from here to the end of the pack cannot be read", size-off)})
			return false
		}
		name := hex.EncodeToString(h[:])
		data, err := v.unseal(ctx, name, sealed)
		if err != nil {
			if ctxErr = ctx.Err(); ctxErr != nil {
				return false
			}
			report(Damage{Object: name, Where: at, Msg: err.Error()})
			return true
		}
		sum.Objects++
		sum.Bytes += int64(len(data))
		return true
	})
	return cmp.Or(ctxErr, err)
}
