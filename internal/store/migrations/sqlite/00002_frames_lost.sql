-- Attempts whose lease expired (the worker vanished), counted apart from
-- failures: they do not use up a frame's retries.
-- +goose Up
ALTER TABLE frames ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE frames DROP COLUMN lost;
