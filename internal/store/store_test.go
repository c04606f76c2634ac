package store

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
)

// conformance runs the contract every Store must keep against one opened by open.
// reopen returns the same store after a close (for durable stores) or the same value.
func conformance(t *testing.T, s Store, reopen func() Store) {
	ctx := context.Background()
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0).UTC()
	steps := []error{
		tx.SetCounter("next_job", 3),
		tx.AddJob(&Job{ID: 1, Name: "a", Submitted: now, Manifest: []byte("<m/>"), Inputs: []byte("[]"), NextFile: 1}),
		tx.AddJob(&Job{ID: 2, Name: "b", Submitted: now, Manifest: []byte("<m/>"), Inputs: []byte("[]"), NextFile: 4}),
		tx.PutFrame(&Frame{Job: 1, ID: 5, State: FrameDone, Attempts: 1, Worker: "w", Output: "h", Size: 9, Render: time.Second, Finished: now}),
		tx.PutFiles([]File{{Job: 1, N: 1, Frame: 5, Path: "f.png", Size: 3, Tar: "h"}}),
		tx.AddFailure(1, "w"),
		tx.AddFailure(1, "w"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// A rolled-back transaction changes nothing.
	tx, _ = s.Begin(ctx)
	tx.SetCounter("next_job", 99)
	tx.PutFrame(&Frame{Job: 1, ID: 6, State: FrameFailed})
	tx.Rollback()
	// Updates replace.
	tx, _ = s.Begin(ctx)
	tx.UpdateJob(&Job{ID: 1, NextFile: 2, Canceled: true, Stop: "frame 3 failed", Back: "1-2,5"})
	tx.PutFrame(&Frame{Job: 1, ID: 5, State: FrameFailed, Attempts: 3, Lost: 2, Error: "boom", Finished: now})
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counters["next_job"] != 3 {
		t.Errorf("next_job = %d", snap.Counters["next_job"])
	}
	if len(snap.Jobs) != 2 || snap.Jobs[0].ID != 1 || !snap.Jobs[0].Canceled || snap.Jobs[0].NextFile != 2 || snap.Jobs[1].Name != "b" ||
		snap.Jobs[0].Stop != "frame 3 failed" || snap.Jobs[0].Back != "1-2,5" || snap.Jobs[1].Stop != "" || snap.Jobs[1].Back != "" {
		t.Errorf("jobs = %+v", snap.Jobs)
	}
	if string(snap.Jobs[0].Manifest) != "<m/>" || snap.Jobs[0].Name != "a" {
		t.Errorf("UpdateJob lost the job's manifest or name: %+v", snap.Jobs[0])
	}
	if !snap.Jobs[1].Submitted.Equal(now) || string(snap.Jobs[1].Manifest) != "<m/>" {
		t.Errorf("job 2 = %+v", snap.Jobs[1])
	}
	if len(snap.Frames) != 1 || snap.Frames[0].State != FrameFailed || snap.Frames[0].Attempts != 3 || snap.Frames[0].Lost != 2 || snap.Frames[0].Error != "boom" {
		t.Errorf("frames = %+v", snap.Frames)
	}
	if len(snap.Files) != 1 || snap.Files[0].Path != "f.png" {
		t.Errorf("files = %+v", snap.Files)
	}
	if snap.Failures[[2]string{"1", "w"}] != 2 {
		t.Errorf("failures = %v", snap.Failures)
	}
	tx, _ = s.Begin(ctx)
	tx.ClearFailures(1)
	tx.Commit()
	snap, _ = s.Load(ctx)
	if len(snap.Failures) != 0 {
		t.Errorf("failures after clear = %v", snap.Failures)
	}
}

func TestMem(t *testing.T) {
	m := NewMem()
	conformance(t, m, func() Store { return m })
}

func TestSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, s, func() Store {
		s.Close()
		s2, err := OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		s = s2
		return s2
	})
	s.Close()
}

// TestSQLiteMigratesVersion2: a data directory written before jobs had a
// stop reason and a retried-frame set opens with its jobs as they were: a
// canceled job stays canceled, with every unfinished frame (no Back).
func TestSQLiteMigratesVersion2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := fs.Sub(migrations, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO jobs(id, name, submitted, canceled, next_file, deleted) VALUES(7, 'old', 0, 1, 1, 0)`,
		`INSERT INTO job_specs(id, manifest, inputs) VALUES(7, '<m/>', '[]')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Jobs) != 1 || !snap.Jobs[0].Canceled || snap.Jobs[0].Stop != "" || snap.Jobs[0].Back != "" || snap.Jobs[0].Name != "old" {
		t.Fatalf("jobs after migrating from version 2: %+v", snap.Jobs)
	}
	tx, _ := s.Begin(context.Background())
	if err := tx.UpdateJob(&Job{ID: 7, Canceled: true, Back: "3", NextFile: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if snap, _ = s.Load(context.Background()); snap.Jobs[0].Back != "3" {
		t.Fatalf("back after an update: %+v", snap.Jobs[0])
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO goose_db_version(version_id, is_applied) VALUES(999, 1)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := OpenSQLite(path); err == nil || !strings.Contains(err.Error(), "schema version 999 is newer than this distren knows") {
		t.Fatalf("opening a newer database: %v", err)
	}
}

// TestSQLiteStatementsOutliveTransactions: the statements prepared once on
// the database serve every transaction, whichever way the ones before it
// ended: committed, rolled back, or failed part-way.
func TestSQLiteStatementsOutliveTransactions(t *testing.T) {
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	tx, _ := s.Begin(ctx)
	if err := tx.AddJob(&Job{ID: 1, Name: "a", Manifest: []byte("<m/>"), Inputs: []byte("[]"), NextFile: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 30; i++ {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		steps := []error{
			tx.SetCounter("c", i),
			tx.PutFrame(&Frame{Job: 1, ID: i, State: FrameDone, Attempts: 1}),
			tx.PutFiles([]File{{Job: 1, N: i, Frame: i, Path: "f", Tar: "h"}}),
			tx.UpdateJob(&Job{ID: 1, NextFile: i + 1}),
			tx.AddFailure(1, "w"),
		}
		for k, err := range steps {
			if err != nil {
				t.Fatalf("transaction %d, step %d: %v", i, k, err)
			}
		}
		switch i % 3 {
		case 0:
			err = tx.Rollback()
		case 1:
			// A statement that fails leaves the transaction to be rolled back.
			if err := tx.UpdateJob(&Job{ID: 99}); err == nil {
				t.Fatal("updating a job that does not exist succeeded")
			}
			if err := tx.PutFiles([]File{{Job: 1, N: i, Frame: i, Path: "again", Tar: "h"}}); err == nil {
				t.Fatal("a file number stored twice did not fail")
			}
			err = tx.Rollback()
		default:
			err = tx.Commit()
		}
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Only the transactions with i%3 == 2 committed: 2, 5, ..., 29.
	if len(snap.Frames) != 10 || snap.Frames[0].ID != 2 || snap.Frames[9].ID != 29 || len(snap.Files) != 10 {
		t.Fatalf("frames %+v, files %+v", snap.Frames, snap.Files)
	}
	if snap.Counters["c"] != 29 || snap.Jobs[0].NextFile != 30 || snap.Failures[[2]string{"1", "w"}] != 10 {
		t.Fatalf("counter %d, next file %d, failures %v", snap.Counters["c"], snap.Jobs[0].NextFile, snap.Failures)
	}
}
