"""Measurement: runners that time built models, and the SQLite store of every result."""
