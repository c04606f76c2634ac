package filter

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/distren/distren/internal/storage"
)

// ErrWrongKey: an object was encrypted with another key than the one
// configured.
var ErrWrongKey = errors.New("object was encrypted with another key")

// AESGCM is the AES-256-GCM encryption filter. An encrypted payload is
//
//	key id      4 bytes   first bytes of SHA-256("distren aes-256-gcm key id\x00" + key)
//	nonce      12 bytes   random, fresh for every object
//	ciphertext  n bytes   the input encrypted, then the 16-byte GCM tag
//
// with the object's name as additional authenticated data, so that an
// object's ciphertext does not decrypt under another name. The key id tells
// a wrong key (ErrWrongKey, naming the key file) from an altered or moved
// object (storage.ErrCorrupt). Random nonces keep the key safe for 2^32
// objects — petabytes of chunks.
type AESGCM struct {
	aead cipher.AEAD
	id   [4]byte
	file string
}

const (
	keyIDSize = 4
	nonceSize = 12
)

// NewAESGCM returns the filter for the key in keyFile: 32 raw bytes, or 64
// hexadecimal digits (surrounding white space ignored). A key file that
// group or others may access is refused.
func NewAESGCM(keyFile string) (*AESGCM, error) {
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	a := &AESGCM{aead: aead, file: keyFile}
	sum := sha256.Sum256(append([]byte("distren aes-256-gcm key id\x00"), key...))
	copy(a.id[:], sum[:])
	return a, nil
}

func readKey(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", file)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s may be read or changed by group or others (mode %04o): make it private with chmod 600 %s", file, perm, file)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", file, err)
	}
	defer clear(b)
	if len(b) == 32 {
		return bytes.Clone(b), nil
	}
	if t := bytes.TrimSpace(b); len(t) == 64 {
		key := make([]byte, 32)
		if _, err := hex.Decode(key, t); err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("key file %s holds %d bytes: want an AES-256 key as 32 raw bytes or 64 hexadecimal digits", file, len(b))
}

// ID implements Filter.
func (a *AESGCM) ID() storage.Filter { return storage.FilterAESGCM }

// Encode implements Filter: it encrypts in for the object called name.
func (a *AESGCM) Encode(_ context.Context, name string, in []byte) ([]byte, bool, error) {
	out := make([]byte, keyIDSize+nonceSize, keyIDSize+nonceSize+len(in)+a.aead.Overhead())
	copy(out, a.id[:])
	if _, err := rand.Read(out[keyIDSize:]); err != nil {
		return nil, false, fmt.Errorf("nonce: %w", err)
	}
	return a.aead.Seal(out, out[keyIDSize:], in, []byte(name)), true, nil
}

// Decode implements Filter: it decrypts and authenticates in as the object
// called name.
func (a *AESGCM) Decode(_ context.Context, name string, in []byte) ([]byte, error) {
	if len(in) < keyIDSize+nonceSize+a.aead.Overhead() {
		return nil, fmt.Errorf("%w: encrypted payload of %d bytes is too short", storage.ErrCorrupt, len(in))
	}
	if !bytes.Equal(in[:keyIDSize], a.id[:]) {
		return nil, fmt.Errorf("%w: key id %x, but key file %s holds key id %x", ErrWrongKey, in[:keyIDSize], a.file, a.id)
	}
	nonce, ct := in[keyIDSize:keyIDSize+nonceSize], in[keyIDSize+nonceSize:]
	out, err := a.aead.Open(nil, nonce, ct, []byte(name))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed: the ciphertext was altered, or written under another name", storage.ErrCorrupt)
	}
	return out, nil
}
