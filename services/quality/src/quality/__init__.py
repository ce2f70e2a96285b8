"""Pulse data quality: declared checks over the archive, their results as data, digests."""
