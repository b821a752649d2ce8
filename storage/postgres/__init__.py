"""The PostgreSQL store: the same ports as the SQLite one (storage/jobs.py,
storage/quotas.py), selected with DATABASE_URL=postgresql://... (storage/factory.py)."""
