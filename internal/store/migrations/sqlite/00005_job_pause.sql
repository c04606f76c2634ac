-- Jobs paused (no new frame of theirs starts; those running finish) and
-- priorities changed after submission (NULL: the manifest's <priority>).
-- +goose Up
ALTER TABLE jobs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN priority INTEGER;

-- +goose Down
ALTER TABLE jobs DROP COLUMN priority;
ALTER TABLE jobs DROP COLUMN paused;
