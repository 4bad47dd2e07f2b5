"""The command line: argument parsing and printing over fieldguide.api."""
