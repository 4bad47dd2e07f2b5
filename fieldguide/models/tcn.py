"""Sequence family 'tcn' (being written)."""
