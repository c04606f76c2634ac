package session

import (
	"context"
	"testing"

	"github.com/distren/distren/internal/store"
)

// heldStore is a store whose commits wait, once armed, until released.
type heldStore struct {
	store.Store
	entered, release chan struct{} // nil: commits go through
}

func (h *heldStore) Begin(ctx context.Context) (store.Tx, error) {
	tx, err := h.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return heldTx{Tx: tx, h: h}, nil
}

type heldTx struct {
	store.Tx
	h *heldStore
}

func (t heldTx) Commit() error {
	if t.h.entered != nil {
		close(t.h.entered)
		<-t.h.release
	}
	return t.Tx.Commit()
}

// TestNoChangeSeenBeforeItIsDurable: while a frame's completion is being
// committed, a reader does not see the frame done — a crash then would
// take back what it saw.
func TestNoChangeSeenBeforeItIsDurable(t *testing.T) {
	h := &heldStore{Store: store.NewMem()}
	s := open(t, h)
	id := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
	ls := claim(t, s, "w", 1)
	h.entered, h.release = make(chan struct{}), make(chan struct{})
	var released bool
	release := func() {
		if !released {
			released = true
			close(h.release)
		}
	}
	t.Cleanup(release) // before the session closes (cleanups run last first)
	completed := make(chan struct{})
	go func() { complete(t, s, "w", ls[0]); close(completed) }()
	<-h.entered // the completion is applied in memory, its commit under way

	// No reader may get in while the commit is under way: one that did
	// would read the frame done.
	if s.mu.TryRLock() {
		s.mu.RUnlock()
		f, _ := s.Frame(id, 1)
		t.Fatalf("frame 1 read as %s while its completion was not yet durable", f.State)
	}
	release()
	<-completed
	if f, err := s.Frame(id, 1); err != nil || f.State != StateDone {
		t.Errorf("frame 1 after its commit: %s %v", f.State, err)
	}
}
