"""Metadata changes and where they are kept: the Change record and store seam, the applied state, the SQLite store."""
