-- Bookkeeping for the schema itself; the stores' tables come in later migrations.
-- Mirrors storage/sqlite/migrations/0001_initial.sql (the SQLite schema), table by table.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('created_by', 'wanbot');
