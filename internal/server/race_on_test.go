//go:build race

package server

// raceEnabled: the race detector is on, and allocation counts are its own
// (sync.Pool drops items at random under it).
const raceEnabled = true
