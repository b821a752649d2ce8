-- Bookkeeping for the schema itself; the stores' tables come in later migrations.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('created_by', 'wanbot');
