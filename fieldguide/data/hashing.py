"""The hashing trick: categories to bucket ids that are the same on every machine and run.

A recommender meets category values it never saw in training (a new city, a new advertiser)
and columns with too many values to give each its own embedding row. Both go to one of
`buckets` shared rows, chosen by a hash of the value's text. Python's `hash()` will not do:
it is salted per process (PYTHONHASHSEED), so a model trained in one process would look up
other rows in the next. BLAKE2b (`hashlib`, the standard library) is fixed by RFC 7693, so a
value lands in the same bucket across processes, machines and Python versions.

    bucket(value) = int.from_bytes(blake2b_key(salt)(utf8(value))[:8], "little") mod buckets

The salt (a field's name) keys the hash, so two fields that share a value ("unknown") spread
their values over their buckets independently rather than colliding in lockstep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

# BLAKE2b's personalisation (at most 16 bytes) ties these digests to this use of the hash.
_PERSON = b"fieldguide-hash"


def _key(salt: str) -> bytes:
    """The 32-byte BLAKE2b key of `salt`: hashed first, since a key holds at most 64 bytes."""
    return hashlib.blake2b(salt.encode("utf-8"), digest_size=32, person=_PERSON).digest()


def stable_hash(values: Sequence[str], buckets: int, salt: str = "") -> np.ndarray:
    """Bucket ids in [0, buckets) for text `values`, identical in every process and machine.

    Args:
        values: The category values, each a str (hash numbers as their text, e.g. str(7)).
        buckets: Number of buckets, at least 1.
        salt: Keys the hash (the field's name), so different salts give different buckets.

    Returns:
        int64 array of shape (len(values),).

    Example:
        >>> stable_hash(["Paris", "Lyon"], 1000, salt="city").tolist() == (
        ...     stable_hash(["Paris", "Lyon"], 1000, salt="city").tolist())
        True
    """
    if isinstance(buckets, bool) or not isinstance(buckets, int | np.integer):
        raise TypeError(f"stable_hash expects buckets as an int; got {type(buckets).__name__}.")
    if buckets < 1:
        raise ValueError(f"stable_hash expects buckets of at least 1, such as 1000; got {buckets}.")
    if not isinstance(salt, str):
        raise TypeError(f"stable_hash expects salt as a str; got {type(salt).__name__}.")
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(
            f"stable_hash expects values as a sequence of str, such as ['a', 'b']; "
            f"got {type(values).__name__}."
        )
    key = _key(salt)
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(
                f"stable_hash expects every value as a str; values[{i}] is "
                f"{type(value).__name__} {value!r}; pass str(value)."
            )
        digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8, key=key, person=_PERSON)
        # 2**64 mod buckets is at most buckets - 1: the bias is below buckets / 2**64.
        out[i] = int.from_bytes(digest.digest(), "little") % int(buckets)
    return out
