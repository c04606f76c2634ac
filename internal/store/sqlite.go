package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite" // the pure-Go SQLite driver
	sqlite3 "modernc.org/sqlite/lib"
)

// migrations holds the schema's history, applied in order by goose. Add a
// file; never edit one that has been released.
//
//go:embed migrations/sqlite/*.sql
var migrations embed.FS

// SQLite is the embedded Store.
type SQLite struct {
	db *sql.DB
}

// OpenSQLite opens (creating and migrating) the database at path, in WAL mode
// with full synchronous commits: a commit is on disk when it returns.
func OpenSQLite(path string) (*SQLite, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(OFF)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer (the dispatcher); reads come from memory
	s := &SQLite{db: db}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLite) migrate() error {
	fsys, err := fs.Sub(migrations, "migrations/sqlite")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	ctx := context.Background()
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	sources := p.ListSources()
	if know := sources[len(sources)-1].Version; have > know {
		return fmt.Errorf("schema version %d is newer than this distren knows (%d): use a newer distren", have, know)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrating the schema: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// Load reads the whole state.
func (s *SQLite) Load(ctx context.Context) (*Snapshot, error) {
	snap := &Snapshot{Counters: map[string]int64{}, Failures: map[[2]string]int{}}
	rows, err := s.db.QueryContext(ctx, `SELECT name, value FROM counters`)
	if err != nil {
		return nil, fmt.Errorf("loading counters: %w", err)
	}
	for rows.Next() {
		var n string
		var v int64
		if err := rows.Scan(&n, &v); err != nil {
			rows.Close()
			return nil, err
		}
		snap.Counters[n] = v
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT j.id, j.name, j.submitted, s.manifest, s.inputs, j.canceled, j.stop, j.back, j.next_file, j.deleted
		FROM jobs j JOIN job_specs s ON s.id = j.id ORDER BY j.id`)
	if err != nil {
		return nil, fmt.Errorf("loading jobs: %w", err)
	}
	for rows.Next() {
		var j Job
		var sub int64
		if err := rows.Scan(&j.ID, &j.Name, &sub, &j.Manifest, &j.Inputs, &j.Canceled, &j.Stop, &j.Back, &j.NextFile, &j.Deleted); err != nil {
			rows.Close()
			return nil, fmt.Errorf("loading jobs: %w", err)
		}
		j.Submitted = time.Unix(0, sub).UTC()
		snap.Jobs = append(snap.Jobs, j)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT job, id, state, attempts, lost, worker, output, size, error, render_ns, finished FROM frames ORDER BY job, id`)
	if err != nil {
		return nil, fmt.Errorf("loading frames: %w", err)
	}
	for rows.Next() {
		var f Frame
		var rn, fin int64
		if err := rows.Scan(&f.Job, &f.ID, &f.State, &f.Attempts, &f.Lost, &f.Worker, &f.Output, &f.Size, &f.Error, &rn, &fin); err != nil {
			rows.Close()
			return nil, fmt.Errorf("loading frames: %w", err)
		}
		f.Render = time.Duration(rn)
		f.Finished = time.Unix(0, fin).UTC()
		snap.Frames = append(snap.Frames, f)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT job, n, frame, path, size, tar FROM files ORDER BY job, n`)
	if err != nil {
		return nil, fmt.Errorf("loading files: %w", err)
	}
	for rows.Next() {
		var f File
		if err := rows.Scan(&f.Job, &f.N, &f.Frame, &f.Path, &f.Size, &f.Tar); err != nil {
			rows.Close()
			return nil, fmt.Errorf("loading files: %w", err)
		}
		snap.Files = append(snap.Files, f)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT job, worker, count FROM failures`)
	if err != nil {
		return nil, fmt.Errorf("loading failures: %w", err)
	}
	for rows.Next() {
		var job int64
		var w string
		var c int
		if err := rows.Scan(&job, &w, &c); err != nil {
			rows.Close()
			return nil, err
		}
		snap.Failures[[2]string{strconv.FormatInt(job, 10), w}] = c
	}
	return snap, rows.Close()
}

type sqliteTx struct {
	ctx   context.Context
	tx    *sql.Tx
	job   *sql.Stmt
	frame *sql.Stmt
	file  *sql.Stmt
}

// Begin starts a write transaction.
func (s *SQLite) Begin(ctx context.Context) (Tx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, full(fmt.Errorf("state database: %w", err))
	}
	return &sqliteTx{ctx: ctx, tx: tx}, nil
}

func (t *sqliteTx) SetCounter(name string, v int64) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO counters(name, value) VALUES(?, ?)
		ON CONFLICT(name) DO UPDATE SET value = excluded.value`, name, v)
	return full(err)
}

func (t *sqliteTx) AddJob(j *Job) error {
	if _, err := t.tx.ExecContext(t.ctx, `INSERT INTO jobs(id, name, submitted, canceled, stop, back, next_file, deleted)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?)`, j.ID, j.Name, j.Submitted.UnixNano(), j.Canceled, j.Stop, j.Back, j.NextFile, j.Deleted); err != nil {
		return full(fmt.Errorf("adding job %d: %w", j.ID, err))
	}
	if _, err := t.tx.ExecContext(t.ctx, `INSERT INTO job_specs(id, manifest, inputs) VALUES(?, ?, ?)`,
		j.ID, j.Manifest, j.Inputs); err != nil {
		return full(fmt.Errorf("adding job %d: %w", j.ID, err))
	}
	return nil
}

func (t *sqliteTx) UpdateJob(j *Job) error {
	if t.job == nil {
		st, err := t.tx.PrepareContext(t.ctx, `UPDATE jobs SET canceled = ?, stop = ?, back = ?, next_file = ?, deleted = ? WHERE id = ?`)
		if err != nil {
			return full(err)
		}
		t.job = st
	}
	r, err := t.job.ExecContext(t.ctx, j.Canceled, j.Stop, j.Back, j.NextFile, j.Deleted, j.ID)
	if err != nil {
		return full(fmt.Errorf("updating job %d: %w", j.ID, err))
	}
	if n, err := r.RowsAffected(); err == nil && n != 1 {
		return fmt.Errorf("updating job %d: no such job", j.ID)
	}
	return nil
}

func (t *sqliteTx) PutFrame(f *Frame) error {
	if t.frame == nil {
		st, err := t.tx.PrepareContext(t.ctx, `INSERT INTO frames(job, id, state, attempts, lost, worker, output, size, error, render_ns, finished)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(job, id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, lost = excluded.lost,
			worker = excluded.worker, output = excluded.output, size = excluded.size, error = excluded.error,
			render_ns = excluded.render_ns, finished = excluded.finished`)
		if err != nil {
			return full(err)
		}
		t.frame = st
	}
	_, err := t.frame.ExecContext(t.ctx, f.Job, f.ID, f.State, f.Attempts, f.Lost, f.Worker, f.Output, f.Size, f.Error,
		int64(f.Render), f.Finished.UnixNano())
	return full(err)
}

func (t *sqliteTx) PutFiles(files []File) error {
	if t.file == nil {
		st, err := t.tx.PrepareContext(t.ctx, `INSERT INTO files(job, n, frame, path, size, tar) VALUES(?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return full(err)
		}
		t.file = st
	}
	for _, f := range files {
		if _, err := t.file.ExecContext(t.ctx, f.Job, f.N, f.Frame, f.Path, f.Size, f.Tar); err != nil {
			return full(err)
		}
	}
	return nil
}

func (t *sqliteTx) AddFailure(job int64, worker string) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO failures(job, worker, count) VALUES(?, ?, 1)
		ON CONFLICT(job, worker) DO UPDATE SET count = count + 1`, job, worker)
	return full(err)
}

func (t *sqliteTx) ClearFailures(job int64) error {
	_, err := t.tx.ExecContext(t.ctx, `DELETE FROM failures WHERE job = ?`, job)
	return full(err)
}

func (t *sqliteTx) Commit() error {
	if err := t.tx.Commit(); err != nil {
		return full(fmt.Errorf("state database commit: %w", err))
	}
	return nil
}

func (t *sqliteTx) Rollback() error { return t.tx.Rollback() }

// full marks an error of a full disk (SQLITE_FULL, ENOSPC) with ErrFull.
func full(err error) error {
	var se *sqlite.Error
	if err == nil || errors.Is(err, ErrFull) {
		return err
	}
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL || errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}
