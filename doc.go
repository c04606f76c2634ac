// Package distren is a distributed render farm.
//
// The binary is cmd/distren. Everything else lives under internal/, in the
// layers of docs/architecture.md:
//
//   - Stage (interaction): cmd/distren (CLI), internal/server (HTTP API),
//     internal/client (typed API client used by the CLI, workers and tests),
//     internal/auth (API tokens, roles, the check on every request),
//     internal/termsafe (escaping what the CLI prints of jobs and servers).
//   - Steam (processing): internal/ops (the farm's operations below any
//     transport: packages, outputs, bundles, garbage collection),
//     internal/session (commands, dispatcher, durable state, its own types),
//     internal/scheduler (scheduling decisions over an explicit clock),
//     internal/store (durable state in SQLite), internal/manifest
//     (distrenjob.xml).
//   - Vault (data and execution): internal/vault (content-addressed blobs),
//     internal/cdc (content-defined chunks and trees), internal/storage
//     (storage modules, object format, filters), internal/jobpkg (tar
//     safety), internal/worker (slots, scratch directories; its server
//     behind worker.Server), internal/backend (renderers), internal/sandbox
//     (confining renderer processes), internal/raster (the built-in
//     renderer).
//
// internal/farm assembles a server from them (its local slots call
// internal/ops in process); internal/lifecycle starts and stops the
// subsystems in order; internal/imgcmp compares images for the renderer
// tests.
package distren
