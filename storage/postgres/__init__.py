"""The PostgreSQL store: the same ports as the SQLite one (storage/sqlite/jobs.py,
storage/sqlite/quotas.py), selected with DATABASE_URL=postgresql://... (storage/factory.py)."""
