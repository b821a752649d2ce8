"""SQLite storage: the connection owner, numbered migrations and the stores."""
