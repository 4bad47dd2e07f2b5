"""The guide's knowledge as data: architecture cards and selection rules."""
