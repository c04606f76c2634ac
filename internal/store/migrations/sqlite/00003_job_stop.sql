-- Per-frame cancellation and jobs the farm stops for a fault of their own.
-- A job whose canceled flag is set, or whose stop reason is not empty, has
-- every unfinished frame canceled except those in back, the frame set
-- (e.g. "1-2,5") retried since. Existing rows get the old meaning: a
-- canceled job has all its unfinished frames canceled.
-- +goose Up
ALTER TABLE jobs ADD COLUMN stop TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN back TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE jobs DROP COLUMN back;
ALTER TABLE jobs DROP COLUMN stop;
