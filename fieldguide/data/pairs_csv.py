"""A CSV of (source, target) text pairs as sequence-to-sequence data on byte tokens.

```
question,answer
What is the capital of France?,Paris
...
```
The pair is found by its column names, compared case-insensitively: source/target,
input/output, src/tgt, question/answer or prompt/response; or `target` names the target column
and the one other non-empty column is the source. Each cell is its UTF-8 bytes (the byte
tokenizer of `fieldguide.data.tokenizer`), cut to its first `MAX_BYTES` bytes (the cuts are
counted in `preprocessing["truncated"]`), right-padded with PAD, with no BOS or EOS, as in the
`dates` starter. Pairs with the same source go to the same split, so no source is both trained
on and tested. Row numbers in errors count lines of the file as a spreadsheet shows them: the
header is row 1. Finding the pair (`find_pair`, `is_pairs_csv`) imports no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fieldguide.data.csv_read import TARGET_NAMES, parse_number, read_csv_rows

if TYPE_CHECKING:
    from fieldguide.data.base import Seq2SeqData

# (source, target) column names that make a CSV a pairs CSV, compared case-insensitively.
PAIR_NAMES = (
    ("source", "target"),
    ("input", "output"),
    ("src", "tgt"),
    ("question", "answer"),
    ("prompt", "response"),
)
# Bytes kept of each source and target cell; longer cells are cut and counted.
MAX_BYTES = 256


def _named_pair(header: list[str]) -> tuple[int, int] | None:
    """Indices (source, target) of the one known pair of column names in `header`, else None."""
    lower = [name.lower() for name in header]
    found = [
        (lower.index(source), lower.index(target))
        for source, target in PAIR_NAMES
        if source in lower and target in lower
    ]
    return found[0] if len(found) == 1 else None


def find_pair(
    header: list[str], rows: list[list[str]], target: str | None
) -> tuple[int, int] | None:
    """Indices (source, target) of the pair of text columns the CSV holds, or None for a table.

    Without `target`: the one known pair of names (`PAIR_NAMES`), unless another column is
    named target, label or class (then the file is a table, or texts and their labels). With
    `target`: the known pair that holds it, else that column and the one other non-empty
    column. A target column named "target", or given by `target` beside an unnamed source,
    could equally be a table's target, so that pair also needs a source and a target not all
    numbers, and a target whose values are mostly distinct: labels repeat, targets rarely do.
    """
    named = _named_pair(header)
    if target is None or (named is not None and target in (header[named[0]], header[named[1]])):
        if named is None:
            return None
        if target is not None and target == header[named[0]]:
            named = (named[1], named[0])  # the target named by `target` wins over the names
        others = [j for j in range(len(header)) if j not in named]
        if target is None and any(header[j].lower() in TARGET_NAMES for j in others):
            return None
        pair, ambiguous = named, header[named[1]].lower() in TARGET_NAMES
    else:
        if target not in header:
            return None
        t = header.index(target)
        sources = [j for j in range(len(header)) if j != t and any(row[j] for row in rows)]
        if len(sources) != 1:
            return None
        pair, ambiguous = (sources[0], t), True
    if ambiguous:
        sources = [row[pair[0]] for row in rows if row[pair[0]]]
        targets = [row[pair[1]] for row in rows if row[pair[1]]]
        numeric = [all(parse_number(v) is not None for v in cells) for cells in (sources, targets)]
        if any(numeric) or len(set(targets)) <= len(rows) / 2:
            return None
    return pair


def is_pairs_csv(path: str | os.PathLike[str], target: str | None = None) -> bool:
    """Whether the CSV at `path` holds (source, target) text pairs (see `find_pair`)."""
    header, rows, _ = read_csv_rows(Path(path))
    return find_pair(header, rows, target) is not None


def load_pairs_csv(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_bytes: int = MAX_BYTES,
) -> Seq2SeqData:
    """Read a CSV of (source, target) text pairs into `Seq2SeqData` of byte ids.

    The distinct sources are shuffled by seed and cut like `stratified_split` cuts samples:
    round(n * val_fraction) of them for validation, round(n * test_fraction) for test and the
    rest for training, each taking every pair of its sources.

    Args:
        path: The .csv file, comma-separated, with a header row.
        target: Name of the target column; by default found by the pair's names.
        seed: Seed of the split.
        val_fraction: Share of the distinct sources held out for validation.
        test_fraction: Share held out for test.
        max_bytes: Bytes kept of each cell.

    Returns:
        Sources and targets as byte ids right-padded with PAD, without BOS or EOS;
        `preprocessing` names the columns and counts the cells cut to `max_bytes`.
    """
    import numpy as np
    import torch

    from fieldguide.data.base import Seq2SeqData, Seq2SeqSplit, safe_name, stratified_split
    from fieldguide.data.tokenizer import PAD, VOCAB_SIZE, ByteTokenizer

    path = Path(path)
    header, rows, lines = read_csv_rows(path)
    pair = find_pair(header, rows, target)
    if pair is None:
        names = " or ".join(f"{s}/{t}" for s, t in PAIR_NAMES)
        raise ValueError(
            f"CSV file {path} has no pair of text columns named {names}; name the target "
            f"column with target, beside exactly one other text column as the source."
        )
    s, t = pair
    for j in range(len(header)):
        if j not in pair and any(row[j] for row in rows):
            raise ValueError(
                f"CSV file {path} has a third column '{header[j]}' beside the pair "
                f"'{header[s]}' -> '{header[t]}'; a pairs CSV holds a source and a target "
                f"only, so remove that column."
            )
    for row, line in zip(rows, lines, strict=True):
        for j in pair:
            if not row[j]:
                raise ValueError(
                    f"CSV file {path} row {line} has an empty cell in column '{header[j]}'; "
                    f"every pair needs a source and a target, so fill it in or remove the row."
                )

    # 1. The split: by distinct source, so a repeated source never spans two splits.
    sources = [row[s] for row in rows]
    distinct = list(dict.fromkeys(sources))
    n_val, n_test = round(len(distinct) * val_fraction), round(len(distinct) * test_fraction)
    if min(n_val, n_test, len(distinct) - n_val - n_test) < 1:
        raise ValueError(
            f"CSV file {path} has {len(distinct)} distinct source{'s' * (len(distinct) != 1)} "
            f"in '{header[s]}', too few to split with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: every split needs at least one; add pairs."
        )
    group = {source: i for i, source in enumerate(distinct)}
    owner = np.array([group[source] for source in sources], dtype=np.int64)  # (N,)
    parts_of_groups = stratified_split(len(distinct), seed, val_fraction, test_fraction)

    # 2. Byte ids, each cell cut to max_bytes, right-padded with PAD.
    tokenizer = ByteTokenizer()
    src, _ = tokenizer.batch_encode(sources, max_bytes)  # (N, S)
    tgt, _ = tokenizer.batch_encode([row[t] for row in rows], max_bytes)  # (N, T)
    cut = {header[j]: sum(len(row[j].encode("utf-8")) > max_bytes for row in rows) for j in pair}
    parts = {}
    for key, groups in zip(("train", "val", "test"), parts_of_groups, strict=True):
        index = torch.from_numpy(np.flatnonzero(np.isin(owner, groups)))
        parts[key] = Seq2SeqSplit(src[index].clone(), tgt[index].clone())
    return Seq2SeqData(
        name=safe_name(path.stem),
        **parts,
        vocab_size=VOCAB_SIZE,
        description=(
            f"CSV '{path.name}': {len(rows):,} pairs '{header[s]}' -> '{header[t]}' as byte "
            f"tokens, at most {max_bytes} bytes each"
        ),
        preprocessing={
            "reader": "csv-pairs",  # predict reads new sources from the same column
            "source_column": header[s],
            "target_column": header[t],
            "tokenizer": "UTF-8 bytes (ids 0..255), PAD=256, BOS=257, EOS=258",
            "max_bytes": max_bytes,
            "truncated": cut,
            "padding": f"PAD={PAD} after each source and target; no BOS or EOS stored",
            "split": "by distinct source, shuffled by seed: pairs of one source share a split",
        },
    )
