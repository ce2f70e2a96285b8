"""Pulse query layer: read-only SQL over the S3 archive."""
