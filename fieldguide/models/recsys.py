"""Placeholder: filled in by issue 14."""
