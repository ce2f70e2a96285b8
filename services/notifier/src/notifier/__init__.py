"""Pulse notifier."""
