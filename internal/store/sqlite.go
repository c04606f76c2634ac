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
	st statements
}

// statements are the writes of a transaction, prepared once on the
// database's one connection and bound into each transaction with Tx.Stmt:
// SQLite parses and plans each of them once per process, not once per
// transaction.
type statements struct {
	counter, addJob, addSpec, updateJob, frame, file, addFailure, clearFailures *sql.Stmt
}

// prepare prepares every statement of statements.
func (s *SQLite) prepare(ctx context.Context) error {
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&s.st.counter, `INSERT INTO counters(name, value) VALUES(?, ?)
			ON CONFLICT(name) DO UPDATE SET value = excluded.value`},
		{&s.st.addJob, `INSERT INTO jobs(id, name, submitted, canceled, stop, back, next_file, deleted, paused, priority)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.st.addSpec, `INSERT INTO job_specs(id, manifest, inputs) VALUES(?, ?, ?)`},
		{&s.st.updateJob, `UPDATE jobs SET canceled = ?, stop = ?, back = ?, next_file = ?, deleted = ?, paused = ?, priority = ? WHERE id = ?`},
		{&s.st.frame, `INSERT INTO frames(job, id, state, attempts, lost, worker, output, size, error, render_ns, finished)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(job, id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, lost = excluded.lost,
			worker = excluded.worker, output = excluded.output, size = excluded.size, error = excluded.error,
			render_ns = excluded.render_ns, finished = excluded.finished`},
		{&s.st.file, `INSERT INTO files(job, n, frame, path, size, tar) VALUES(?, ?, ?, ?, ?, ?)`},
		{&s.st.addFailure, `INSERT INTO failures(job, worker, count) VALUES(?, ?, 1)
			ON CONFLICT(job, worker) DO UPDATE SET count = count + 1`},
		{&s.st.clearFailures, `DELETE FROM failures WHERE job = ?`},
	} {
		st, err := s.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("preparing the state database's statements: %w", err)
		}
		*p.st = st
	}
	return nil
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
	if err := s.prepare(context.Background()); err != nil {
		s.Close()
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
func (s *SQLite) Close() error {
	for _, st := range []*sql.Stmt{s.st.counter, s.st.addJob, s.st.addSpec, s.st.updateJob, s.st.frame, s.st.file, s.st.addFailure, s.st.clearFailures} {
		if st != nil {
			st.Close()
		}
	}
	return s.db.Close()
}

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
	rows, err = s.db.QueryContext(ctx, `SELECT j.id, j.name, j.submitted, s.manifest, s.inputs, j.canceled, j.stop, j.back, j.next_file, j.deleted,
		j.paused, j.priority
		FROM jobs j JOIN job_specs s ON s.id = j.id ORDER BY j.id`)
	if err != nil {
		return nil, fmt.Errorf("loading jobs: %w", err)
	}
	for rows.Next() {
		var j Job
		var sub int64
		var prio sql.NullInt64
		if err := rows.Scan(&j.ID, &j.Name, &sub, &j.Manifest, &j.Inputs, &j.Canceled, &j.Stop, &j.Back, &j.NextFile, &j.Deleted,
			&j.Paused, &prio); err != nil {
			rows.Close()
			return nil, fmt.Errorf("loading jobs: %w", err)
		}
		j.Submitted = time.Unix(0, sub).UTC()
		if prio.Valid {
			p := int(prio.Int64)
			j.Priority = &p
		}
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
	ctx context.Context
	tx  *sql.Tx
	s   *SQLite
	// The statements of s.st bound to tx, each at its first use.
	counter, addJob, addSpec, updateJob, frame, file, addFailure, clearFailures *sql.Stmt
}

// Begin starts a write transaction.
func (s *SQLite) Begin(ctx context.Context) (Tx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, full(fmt.Errorf("state database: %w", err))
	}
	return &sqliteTx{ctx: ctx, tx: tx, s: s}, nil
}

// stmt returns the prepared statement st bound to the transaction, binding
// it into *bound at its first use. Binding reuses the statement prepared on
// the connection; it is parsed again only if the connection was replaced.
func (t *sqliteTx) stmt(bound **sql.Stmt, st *sql.Stmt) *sql.Stmt {
	if *bound == nil {
		*bound = t.tx.StmtContext(t.ctx, st)
	}
	return *bound
}

func (t *sqliteTx) SetCounter(name string, v int64) error {
	_, err := t.stmt(&t.counter, t.s.st.counter).ExecContext(t.ctx, name, v)
	return full(err)
}

func (t *sqliteTx) AddJob(j *Job) error {
	if _, err := t.stmt(&t.addJob, t.s.st.addJob).ExecContext(t.ctx,
		j.ID, j.Name, j.Submitted.UnixNano(), j.Canceled, j.Stop, j.Back, j.NextFile, j.Deleted, j.Paused, j.Priority); err != nil {
		return full(fmt.Errorf("adding job %d: %w", j.ID, err))
	}
	if _, err := t.stmt(&t.addSpec, t.s.st.addSpec).ExecContext(t.ctx, j.ID, j.Manifest, j.Inputs); err != nil {
		return full(fmt.Errorf("adding job %d: %w", j.ID, err))
	}
	return nil
}

func (t *sqliteTx) UpdateJob(j *Job) error {
	r, err := t.stmt(&t.updateJob, t.s.st.updateJob).ExecContext(t.ctx, j.Canceled, j.Stop, j.Back, j.NextFile, j.Deleted, j.Paused, j.Priority, j.ID)
	if err != nil {
		return full(fmt.Errorf("updating job %d: %w", j.ID, err))
	}
	if n, err := r.RowsAffected(); err == nil && n != 1 {
		return fmt.Errorf("updating job %d: no such job", j.ID)
	}
	return nil
}

func (t *sqliteTx) PutFrame(f *Frame) error {
	_, err := t.stmt(&t.frame, t.s.st.frame).ExecContext(t.ctx, f.Job, f.ID, f.State, f.Attempts, f.Lost, f.Worker, f.Output, f.Size, f.Error,
		int64(f.Render), f.Finished.UnixNano())
	return full(err)
}

func (t *sqliteTx) PutFiles(files []File) error {
	st := t.stmt(&t.file, t.s.st.file)
	for _, f := range files {
		if _, err := st.ExecContext(t.ctx, f.Job, f.N, f.Frame, f.Path, f.Size, f.Tar); err != nil {
			return full(err)
		}
	}
	return nil
}

func (t *sqliteTx) AddFailure(job int64, worker string) error {
	_, err := t.stmt(&t.addFailure, t.s.st.addFailure).ExecContext(t.ctx, job, worker)
	return full(err)
}

func (t *sqliteTx) ClearFailures(job int64) error {
	_, err := t.stmt(&t.clearFailures, t.s.st.clearFailures).ExecContext(t.ctx, job)
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
