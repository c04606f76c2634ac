-- The first schema of distren's state database.
-- +goose Up
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE jobs (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	submitted INTEGER NOT NULL,
	canceled INTEGER NOT NULL DEFAULT 0,
	next_file INTEGER NOT NULL,
	deleted INTEGER NOT NULL DEFAULT 0
);
-- Written once per job and kept apart, so that updating a job's small
-- fields never rewrites a manifest of megabytes.
CREATE TABLE job_specs (
	id INTEGER PRIMARY KEY,
	manifest BLOB NOT NULL,
	inputs BLOB NOT NULL
);
CREATE TABLE frames (
	job INTEGER NOT NULL,
	id INTEGER NOT NULL,
	state TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	worker TEXT NOT NULL,
	output TEXT NOT NULL,
	size INTEGER NOT NULL,
	error TEXT NOT NULL,
	render_ns INTEGER NOT NULL,
	finished INTEGER NOT NULL,
	PRIMARY KEY (job, id)
) WITHOUT ROWID;
CREATE TABLE files (
	job INTEGER NOT NULL,
	n INTEGER NOT NULL,
	frame INTEGER NOT NULL,
	path TEXT NOT NULL,
	size INTEGER NOT NULL,
	tar TEXT NOT NULL,
	PRIMARY KEY (job, n)
) WITHOUT ROWID;
CREATE TABLE failures (
	job INTEGER NOT NULL,
	worker TEXT NOT NULL,
	count INTEGER NOT NULL,
	PRIMARY KEY (job, worker)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE failures;
DROP TABLE files;
DROP TABLE frames;
DROP TABLE job_specs;
DROP TABLE jobs;
DROP TABLE counters;
