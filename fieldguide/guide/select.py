"""The default model for a dataset (`--model auto`): the top pick of the selection rules.

`auto_model` asks `fieldguide.guide.rules` what `fieldguide recommend` would put first for the
data's modality and shape, so the two never disagree. Imports no torch.
"""

from __future__ import annotations

from typing import Any

from fieldguide.guide.rules import Needs, Row, find_row, rank

# The loaders' `modality` (fieldguide.data) to a row of the rules: (modality, task).
_DATA_ROWS = {
    "images": ("images", "classification"),
    "segmentation": ("images", "segmentation"),
    "tabular": ("tables", "classification"),
    "fields": ("tables", "ctr"),
    "time-series": ("time-series", "forecasting"),
    "sequences": ("sequences", "classification"),
    "speech": ("speech", "classification"),
    "seq2seq": ("text", "seq2seq"),
    "graphs": ("graphs", "classification"),
    "interactions": ("interactions", "ranking"),
}


def data_row(modality: str, input_shape: tuple[int, ...], task: str | None = None) -> Row:
    """The rules' row for data of the loaders' `modality` with samples of `input_shape`."""
    if modality == "text":  # one token stream (no sample shape) is language modelling
        return find_row("text", task or ("classification" if input_shape else "generation"))
    if modality not in _DATA_ROWS:
        raise ValueError(
            f"no default model for modality '{modality}'; pass --model NAME (see `fieldguide "
            f"list`)."
        )
    m, t = _DATA_ROWS[modality]
    if modality == "tabular" and task == "regression":
        t = "regression"
    return find_row(m, t)


def auto_model(modality: str, input_shape: tuple[int, ...], **facts: Any) -> tuple[str, str]:
    """Return (model name, one-line reason) for data of `modality` with samples of `input_shape`.

    Args:
        modality: The data's modality as the loaders name it: images, segmentation, tabular,
            fields, time-series, sequences, speech, text, seq2seq, graphs, interactions.
        input_shape: One sample's shape: (C, H, W) for images, (D,) for tables, (T,) for
            texts; () where it does not apply (a token stream is language modelling).
        **facts: Optional `Needs` fields the caller knows, such as rows=, classes=,
            id_cardinality=, fields=, and task= ("regression" for a table). Also
            pretrained_available=False to rule pretrained weights out.

    Raises:
        ValueError: For a modality without a rule, or an unknown fact.
    """
    facts = dict(facts)
    task = facts.pop("task", None)
    if "pretrained_available" in facts:
        facts["pretrained"] = bool(facts.pop("pretrained_available"))
    if modality in ("images", "segmentation") and len(input_shape) == 3:
        facts.setdefault("channels", int(input_shape[0]))
        facts.setdefault("image_size", int(min(input_shape[1:])))
    unknown = sorted(set(facts) - set(Needs.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"auto_model got unknown fact(s) {', '.join(unknown)}; expected fields of "
            f"fieldguide.guide.rules.Needs."
        )
    row = data_row(modality, input_shape, task)
    ranked = rank(row, Needs(**facts))
    top = ranked[0]
    why = row.why if top.model == row.pick else _not_first(row, ranked)
    lead = next((e.sentence for e in top.effects if e.met and e.move < 0), "")
    where = row.guide or f"{row.modality}/{row.task}"
    reason = f"{where}: {top.model}, {why}" + (f" ({lead})" if lead and lead not in why else "")
    return top.model, reason


def _not_first(row: Row, ranked: list[Any]) -> str:
    """Why the row's own pick is not the one chosen: its first broken constraint."""
    mine = next(r for r in ranked if r.model == row.pick)
    if mine.broken:
        return f"because {row.pick} (the first pick) is out: {mine.breaks[0]}"
    down = [e for e in mine.effects if e.move > 0]
    if down:
        return f"ahead of {row.pick}: {max(down, key=lambda e: e.move).sentence}"
    return f"ahead of {row.pick} under the rules"
