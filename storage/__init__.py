"""Storage: one adapter per backend (storage/sqlite/, storage/postgres/); the
backend-neutral rules and errors live here, and storage/factory.py picks one."""
