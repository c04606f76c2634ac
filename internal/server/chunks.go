package server

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/vault"
)

// Chunked uploads: a client sends the package's tree after the chunks the
// server lacks, so a package re-submitted with small changes moves only the
// changed chunks, and an interrupted upload resumes where it stopped.

func (s *Server) postMissing(r *http.Request) (any, error) {
	var req api.MissingRequest
	// Room for a full batch: 64 hex digits, quotes and a comma per chunk.
	if err := decodeLimit(r, &req, api.MaxMissingBatch*(64+3)+1024); err != nil {
		return nil, err
	}
	if len(req.Chunks) > api.MaxMissingBatch {
		return nil, badRequest("chunks/missing: %d chunks named, at most %d per request", len(req.Chunks), api.MaxMissingBatch)
	}
	for _, h := range req.Chunks {
		if !cdc.ValidHash(h) {
			return nil, badRequest("chunks/missing: %q is not a SHA-256 in hex", h)
		}
	}
	out := api.MissingResponse{Missing: []string{}}
	// Not while a sweep runs, which could remove a chunk found here: the
	// chunks found are touched, so the collections after keep them
	// through the grace period.
	s.record(0, nil, func() error {
		for _, h := range req.Chunks {
			if !s.vault.Has(h) {
				out.Missing = append(out.Missing, h)
			} else {
				s.vault.Touch(h) // the client counts on it: keep it through the grace period
			}
		}
		return nil
	})
	return out, nil
}

func (s *Server) putChunk(r *http.Request) (any, error) {
	h := r.PathValue("hash")
	if !cdc.ValidHash(h) {
		return nil, badRequest("chunk %q: not a SHA-256 in hex", h)
	}
	if r.ContentLength > cdc.MaxChunkSize {
		return nil, &httpError{http.StatusRequestEntityTooLarge,
			fmt.Errorf("chunk %s: %d bytes, over the limit of %d for a chunk", h, r.ContentLength, cdc.MaxChunkSize)}
	}
	body := http.MaxBytesReader(nil, r.Body, cdc.MaxChunkSize)
	// Stored as it arrives, with no lock (gc.go); stored again from its
	// copy if a collection ran meanwhile.
	since := s.collections()
	sp := &spool{dir: s.tmp}
	defer sp.remove()
	put := func(r io.Reader) error {
		if _, err := s.vault.Put(r, h); err != nil {
			if errors.Is(err, vault.ErrMismatch) {
				return badRequest("chunk %s: %v", h, err)
			}
			return fmt.Errorf("chunk %s: %w", h, err) // too large (413) or the server's disk (507, 500)
		}
		return nil
	}
	if err := put(io.TeeReader(body, sp)); err != nil {
		return nil, err
	}
	err := s.record(since, func() error {
		r, err := sp.reader()
		if err != nil {
			return err
		}
		return put(r)
	}, nil)
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// treeInputs turns a decoded tree into the job's input files, checking that
// the vault holds every chunk, and returns the manifest's bytes.
func (s *Server) treeInputs(t cdc.Tree) ([]api.InputFile, []byte, error) {
	if n := len(t.Files); n > s.lim.MaxPackageFiles {
		return nil, nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("package: %d files, over the limit of %d", n, s.lim.MaxPackageFiles)}
	}
	if size := t.Size(); size > s.lim.MaxPackageBytes {
		return nil, nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("package: %d bytes, over the limit of %d", size, s.lim.MaxPackageBytes)}
	}
	if missing := cdc.Missing(t, func(h [32]byte) bool { return s.vault.Has(hex.EncodeToString(h[:])) }); len(missing) > 0 {
		return nil, nil, &httpError{http.StatusConflict, fmt.Errorf("package: %d of its chunks are not on the server (first %x); upload them first (POST /v1/chunks/missing, PUT /v1/chunks/{hash})", len(missing), missing[0].Hash)}
	}
	var raw []byte
	inputs := make([]api.InputFile, 0, len(t.Files))
	for _, f := range t.Files {
		in := api.InputFile{Path: f.Path, Mode: f.Mode, Size: f.Size, Chunks: make([]api.ChunkRef, len(f.Chunks))}
		for i, c := range f.Chunks {
			in.Chunks[i] = api.ChunkRef{Hash: hex.EncodeToString(c.Hash[:]), Size: c.Size}
		}
		if f.Path == manifest.FileName {
			if f.Size > s.lim.MaxManifestBytes {
				return nil, nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("%s: larger than the limit of %d bytes", manifest.FileName, s.lim.MaxManifestBytes)}
			}
			var err error
			if raw, err = s.readManifest(in.Chunks); err != nil {
				return nil, nil, err
			}
			continue
		}
		inputs = append(inputs, in)
	}
	if raw == nil {
		return nil, nil, badRequest("package: no %s at the package's root", manifest.FileName)
	}
	return inputs, raw, nil
}

// readManifest returns the manifest of a tree. Each chunk is checked against
// the size the tree gives it before it is read, so that what is read is the
// size checked against the limit: a tree may name a large chunk with a
// small size, or the same chunk millions of times.
func (s *Server) readManifest(parts []api.ChunkRef) ([]byte, error) {
	var b bytes.Buffer
	for _, p := range parts {
		o, err := s.vault.Open(p.Hash)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", manifest.FileName, err)
		}
		if o.Size() != p.Size {
			o.Close()
			return nil, badRequest("package: %s: chunk %s holds %d bytes, not %d as the tree says", manifest.FileName, p.Hash, o.Size(), p.Size)
		}
		_, err = io.Copy(&b, o.Verified())
		o.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", manifest.FileName, err)
		}
	}
	return b.Bytes(), nil
}

// copyParts writes the concatenation of objects to w.
func (s *Server) copyParts(w io.Writer, parts []api.ChunkRef) error {
	for _, p := range parts {
		o, err := s.vault.Open(p.Hash)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, o.Verified())
		o.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// ingest stores the files of an unpacked package in the vault as chunks,
// in the order of files (by path, as Extract returns them). The files are
// opened through an os.Root, by their paths in the package: a path as long
// as a package may hold works under any upload directory, and no error
// names the server's directories. (Walking the directory instead would
// cost, through an os.Root, the square of a path's depth.)
func (s *Server) ingest(dir string, files []jobpkg.File) ([]api.InputFile, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	defer root.Close()
	inputs := make([]api.InputFile, 0, len(files))
	for _, file := range files {
		if file.Path == manifest.FileName {
			continue
		}
		in, err := s.ingestFile(root, file)
		if err != nil {
			return nil, fmt.Errorf("storing %q: %w", jobpkg.Shorten(file.Path), err)
		}
		inputs = append(inputs, in)
	}
	return inputs, nil
}

func (s *Server) ingestFile(root *os.Root, file jobpkg.File) (api.InputFile, error) {
	in := api.InputFile{Path: file.Path, Mode: uint32(file.Mode), Size: file.Size, Chunks: []api.ChunkRef{}}
	f, err := root.Open(file.Path)
	if err != nil {
		return in, err
	}
	defer f.Close()
	err = s.chunker.Split(f, func(c cdc.Chunk) error {
		h := hex.EncodeToString(c.Hash[:])
		if !s.vault.Has(h) {
			if _, err := s.vault.Put(bytes.NewReader(c.Data), h); err != nil {
				return err
			}
		}
		in.Chunks = append(in.Chunks, api.ChunkRef{Hash: h, Size: int64(c.Size)})
		return nil
	})
	return in, err
}

// allStored reports whether the vault holds every chunk of inputs.
func (s *Server) allStored(inputs []api.InputFile) bool {
	for _, in := range inputs {
		for _, c := range in.Chunks {
			if !s.vault.Has(c.Hash) {
				return false
			}
		}
	}
	return true
}
