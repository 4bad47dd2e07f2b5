"""Sequence family 'rnn' (being written)."""
