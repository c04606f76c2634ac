package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Every stored object starts with a header:
//
//	magic     4 bytes  "DRVO"
//	version   1 byte   FormatVersion
//	nfilters  1 byte   filters applied to the payload, in order (at most 8)
//	filters   n bytes  their ids (Filter)
//	plain     8 bytes  length of the content before the filters (big endian)
//	stored    8 bytes  length of the payload that follows the header
//	checksum 32 bytes  SHA-256 of the payload
//	crc       4 bytes  CRC-32C of the header bytes before it
//
// so that a reader knows how to undo the filters, and a damaged object is
// detected — by its header CRC, its length or its checksum — instead of
// returning wrong bytes.

// FormatVersion is the object format this distren writes and reads.
const FormatVersion = 1

var magic = [4]byte{'D', 'R', 'V', 'O'}

// Filter identifies a transformation applied to an object's payload.
type Filter uint8

// Filters. Values are stored in objects: never renumber.
const (
	FilterZstd    Filter = 1 // zstd compression
	FilterAESGCM  Filter = 2 // AES-256-GCM encryption
	FilterCommand Filter = 3 // an external command
)

func (f Filter) String() string {
	switch f {
	case FilterZstd:
		return "zstd"
	case FilterAESGCM:
		return "aes-256-gcm"
	case FilterCommand:
		return "command"
	}
	return fmt.Sprintf("filter-%d", uint8(f))
}

// Header is an object's header.
type Header struct {
	Version  uint8
	Filters  []Filter
	Plain    int64 // content length before the filters
	Stored   int64 // payload length
	Checksum [32]byte
}

// MaxFilters is how many filters a header can list.
const MaxFilters = 8

// HeaderSize returns the encoded size of a header with n filters.
func HeaderSize(n int) int { return 4 + 1 + 1 + n + 8 + 8 + 32 + 4 }

// Encode returns the header's bytes.
func (h *Header) Encode() []byte {
	b := make([]byte, 0, HeaderSize(len(h.Filters)))
	b = append(b, magic[:]...)
	b = append(b, FormatVersion, byte(len(h.Filters)))
	for _, f := range h.Filters {
		b = append(b, byte(f))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(h.Plain))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Stored))
	b = append(b, h.Checksum[:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ReadHeader reads and checks an object's header.
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	fixed := make([]byte, 6)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return h, fmt.Errorf("%w: header: %w", ErrCorrupt, eofIsCorrupt(err))
	}
	if !bytes.Equal(fixed[:4], magic[:]) {
		return h, fmt.Errorf("%w: not a distren object (magic %q)", ErrCorrupt, fixed[:4])
	}
	if fixed[4] != FormatVersion {
		return h, fmt.Errorf("object format version %d is not supported (this distren reads version %d)", fixed[4], FormatVersion)
	}
	n := int(fixed[5])
	if n > MaxFilters {
		return h, fmt.Errorf("%w: header lists %d filters", ErrCorrupt, n)
	}
	rest := make([]byte, n+8+8+32+4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return h, fmt.Errorf("%w: header: %w", ErrCorrupt, eofIsCorrupt(err))
	}
	all := append(fixed, rest...)
	body, sum := all[:len(all)-4], binary.BigEndian.Uint32(all[len(all)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	h.Version = fixed[4]
	for _, f := range rest[:n] {
		h.Filters = append(h.Filters, Filter(f))
	}
	p := rest[n:]
	h.Plain = int64(binary.BigEndian.Uint64(p[0:8]))
	h.Stored = int64(binary.BigEndian.Uint64(p[8:16]))
	copy(h.Checksum[:], p[16:48])
	if h.Plain < 0 || h.Stored < 0 {
		return h, fmt.Errorf("%w: header lengths %d/%d", ErrCorrupt, h.Plain, h.Stored)
	}
	return h, nil
}

func eofIsCorrupt(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("object is truncated")
	}
	return err
}

// Encode returns a stored object: the header for payload, then payload.
func Encode(filters []Filter, plain int64, payload []byte) []byte {
	h := Header{Filters: filters, Plain: plain, Stored: int64(len(payload)), Checksum: sha256.Sum256(payload)}
	return append(h.Encode(), payload...)
}

// PayloadReader reads an object's payload after its header and fails with
// ErrCorrupt if the payload does not match the checksum (checked with its
// last byte), is shorter, or is longer (noticed at the read that would
// return EOF): a damaged object never reads as complete. ReadHeader does not
// bound the lengths it returns: cap what you allocate from them.
func PayloadReader(r io.Reader, h Header) io.Reader {
	return &payloadReader{r: r, h: h, left: h.Stored, sum: sha256.New()}
}

type payloadReader struct {
	r    io.Reader
	h    Header
	left int64
	sum  hash.Hash
	err  error
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if p.left == 0 {
		p.err = p.finish()
		return 0, p.err
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, err := p.r.Read(b)
	p.sum.Write(b[:n])
	p.left -= int64(n)
	if p.left == 0 && !bytes.Equal(p.sum.Sum(nil), p.h.Checksum[:]) {
		// Checked before the last bytes are handed over, so that a caller
		// reading exactly Stored bytes (io.ReadFull drops an error that
		// comes with the bytes it wanted) never takes a damaged payload
		// for whole.
		p.err = fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
		return 0, p.err
	}
	if err == io.EOF {
		if p.left > 0 {
			p.err = fmt.Errorf("%w: payload is %d bytes short", ErrCorrupt, p.left)
			return n, p.err
		}
		err = nil
	}
	if err != nil {
		p.err = err
	}
	return n, err
}

func (p *payloadReader) finish() error {
	var one [1]byte
	if n, _ := io.ReadFull(p.r, one[:]); n > 0 {
		return fmt.Errorf("%w: payload is longer than its header says", ErrCorrupt)
	}
	return io.EOF // the checksum was checked with the last byte
}
