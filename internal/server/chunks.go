package server

import (
	"net/http"

	"github.com/distren/distren/internal/api"
)

// Chunked uploads (ops/chunks.go): the chunks a client must send, and the
// chunks it sends.

func (s *Server) postMissing(r *http.Request) (any, error) {
	var req api.MissingRequest
	// Room for a full batch: 64 hex digits, quotes and a comma per chunk.
	if err := decodeLimit(r, &req, api.MaxMissingBatch*(64+3)+1024); err != nil {
		return nil, err
	}
	if len(req.Chunks) > api.MaxMissingBatch {
		return nil, badRequest("chunks/missing: %d chunks named, at most %d per request", len(req.Chunks), api.MaxMissingBatch)
	}
	missing, err := s.farm.MissingChunks(r.Context(), req.Chunks)
	if err != nil {
		return nil, err
	}
	return api.MissingResponse{Missing: missing}, nil
}

func (s *Server) putChunk(r *http.Request) (any, error) {
	if err := s.farm.PutChunk(r.Context(), r.PathValue("hash"), r.Body, r.ContentLength); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
