package dirlock

import (
	"errors"
	"strings"
	"testing"
)

func TestLockIsExclusiveUntilReleased(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir, "data directory")
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second open in the
	// same process conflicts just as another process would.
	if _, err := Lock(dir, "data directory"); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "data directory "+dir) {
		t.Fatalf("second lock: %v, want ErrBusy naming the directory", err)
	}
	unlock()
	again, err := Lock(dir, "data directory")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
}
