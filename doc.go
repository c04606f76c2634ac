// Package distren is a distributed render farm.
//
// The binary is cmd/distren. Everything else lives under internal/, in the
// layers of docs/architecture.md:
//
//   - Stage (interaction): cmd/distren (CLI), internal/server (HTTP API),
//     internal/client (typed API client used by the CLI, workers and tests),
//     internal/auth (API tokens, roles, the check on every request),
//     internal/termsafe (escaping what the CLI prints of jobs and servers).
//   - Steam (processing): internal/session (commands, dispatcher, scheduler),
//     internal/store (durable state in SQLite), internal/manifest (distrenjob.xml).
//   - Vault (data and execution): internal/vault (content-addressed blobs),
//     internal/cdc (content-defined chunks and trees), internal/storage
//     (storage modules, object format, filters), internal/jobpkg (tar safety), internal/worker (slots, scratch directories),
//     internal/backend (renderers), internal/sandbox (confining renderer
//     processes), internal/raster (the built-in renderer).
//
// internal/lifecycle starts and stops the subsystems in order; internal/imgcmp
// compares images for the renderer tests.
package distren
