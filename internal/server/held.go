package server

// DefaultMaxFramesHeld is how many frames, in all its jobs, a server holds
// by default (serve --max-frames-held; Limits.MaxFramesHeld). A frame costs
// the server about 300 bytes of memory while it waits and 650 once done
// (docs/PERFORMANCE.md, "Memory"): 1.4 to 3.2 GiB of live heap for five
// jobs of the largest size.
const DefaultMaxFramesHeld = 5_000_000
