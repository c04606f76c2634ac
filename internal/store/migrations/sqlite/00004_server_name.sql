-- Facts about the server that the state belongs to, by name: "server_name",
-- the name recorded at the server's first start (its job URLs name it).
-- +goose Up
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

-- +goose Down
DROP TABLE meta;
