"""Pulse's shared contracts: topic specs, event schemas and the Debezium envelope.

Every service imports names from here instead of spelling topic strings or field names.
"""
