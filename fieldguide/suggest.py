"""Close-match hints for unknown names, shared by every registry (models, starters, families)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown(kind: str, given: str, known: Iterable[str], fallback: str | None = None) -> str:
    """One sentence: "unknown KIND 'x'; did you mean 'y'?", or the choices when nothing is close."""
    known = sorted(known)
    close = difflib.get_close_matches(given, known, n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
    else:
        hint = fallback or f"choose from {', '.join(known)}."
    return f"unknown {kind} '{given}'; {hint}"
