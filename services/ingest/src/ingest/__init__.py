"""Pulse ingest: the HTTP front door writing products, reviews and market ticks to PostgreSQL."""
