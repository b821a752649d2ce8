"""The SQLite store (the embedded default): the connection owner, numbered
migrations, the job and quota stores, and the SQLite-only operations (health,
retention, the one-process file lock, online backup)."""
