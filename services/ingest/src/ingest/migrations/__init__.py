"""Alembic migrations of ingest's tables; applied by `python -m ingest migrate`."""
