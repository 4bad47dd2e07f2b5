"""Sequence family 'ssm' (being written)."""
