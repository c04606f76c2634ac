package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

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
// an index names is stored and whole, and that every pack record is whole;
// it calls damaged for each problem and goes on. Objects are read, never
// changed. It may run beside a server using the vault.
func (v *Vault) Check(ctx context.Context, damaged func(Damage)) (CheckSummary, error) {
	var sum CheckSummary
	report := func(d Damage) { sum.Damaged++; damaged(d) }
	where := func(name string) string { return v.raw.String() + " " + name }
	err := v.raw.List(ctx, "", func(i storage.Info) error {
		hash, isIndex := objectOf(i.Name)
		switch {
		case hash == "":
			report(Damage{Where: where(i.Name), Msg: "not an object name where objects are kept"})
		case isIndex:
			parts, err := v.index(hash)
			if err != nil {
				report(Damage{Object: hash, Where: where(i.Name), Msg: err.Error()})
				return nil
			}
			for n, p := range parts {
				if c := hex.EncodeToString(p.Hash[:]); !v.Has(c) {
					report(Damage{Object: hash, Where: where(i.Name), Msg: fmt.Sprintf("chunk %d of %d (%s) is missing", n+1, len(parts), c)})
				}
			}
		default:
			data, err := v.load(hash)
			if err != nil {
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
	var nums []int
	for n := range v.packs.files {
		nums = append(nums, n)
	}
	v.packs.mu.RUnlock()
	sort.Ints(nums)
	for _, n := range nums {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if err := v.checkPack(n, &sum, report); err != nil {
			return sum, fmt.Errorf("vault check: %w", err)
		}
	}
	return sum, nil
}

// checkPack verifies every record of a pack file: framing, CRC, the sealed
// object and its content's SHA-256. The first broken record makes the rest
// of the pack unreadable; it is reported with the bytes it hides. Only the
// records written when the check started are read.
func (v *Vault) checkPack(n int, sum *CheckSummary, report func(Damage)) error {
	p := filepath.Join(v.packs.dir, packName(n))
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil // compacted meanwhile
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
	eachRecord(io.NewSectionReader(f, 0, size), func(h [32]byte, off int64, sealed []byte, ok bool) bool {
		at := fmt.Sprintf("%s at offset %d", filepath.Base(p), off)
		if !ok {
			report(Damage{Where: at, Msg: fmt.Sprintf("record not whole (bad framing or checksum); the %d bytes from here to the end of the pack cannot be read", size-off)})
			return false
		}
		name := hex.EncodeToString(h[:])
		data, err := v.unseal(name, sealed)
		if err != nil {
			report(Damage{Object: name, Where: at, Msg: err.Error()})
			return true
		}
		sum.Objects++
		sum.Bytes += int64(len(data))
		return true
	})
	return nil
}
