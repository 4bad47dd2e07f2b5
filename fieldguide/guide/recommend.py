"""`fieldguide recommend`: ranked model picks for a problem, each with its reasons and command.

Give the data (`--data PATH`, read by `fieldguide data inspect`'s detection) or describe it
(`--modality images --task segmentation --rows 500 --latency-ms 10 ...`); flags given beside
`--data` override what the data says. Every pick comes with the rule that chose it, the
constraints it meets and breaks, the alternatives, the guide's tips that apply, and the exact
`fieldguide train` line. Imports no torch.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fieldguide.guide.rules import (
    CLASSICAL,
    HIGH_CARDINALITY,
    IMBALANCED,
    LARGE_TABLE_ROWS,
    LONG_SEQUENCE,
    PRETRAINED,
    STRUCTURES,
    TINY_BATCH,
    Needs,
    Ranked,
    Row,
    catalog,
    find_row,
    rank,
)


@dataclass
class Recommendation:
    """One ranked pick.

    Attributes:
        model: A fieldguide model name (`fieldguide train MODEL`).
        rule: The rule that put it here: a table row, or the constraint that moved it up.
        why: What the model is good for here, in one clause.
        meets: Sentences of the constraints it meets.
        breaks: Sentences of the constraints it breaks (a pick that breaks one ranks last).
        alternatives: The other candidates, best first.
        tips: The guide's tips that apply, each starting with its topic ("imbalance: ...").
        command: The exact `fieldguide train ...` line.
    """

    model: str
    rule: str
    why: str
    meets: list[str] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    tips: list[str] = field(default_factory=list)
    command: str = ""


# Python argument -> CLI flag, for error sentences that name what the user typed.
FLAG = {
    "data": "--data",
    "modality": "--modality",
    "task": "--task",
    "rows": "--rows",
    "classes": "--classes",
    "imbalance": "--imbalance",
    "latency_ms": "--latency-ms",
    "max_size_mb": "--max-size-mb",
    "seq_len": "--seq-len",
    "budget_minutes": "--budget-minutes",
    "structure": "--structure",
    "batch_size": "--batch-size",
    "id_cardinality": "--id-cardinality",
    "fields": "--fields",
    "channels": "--channels",
    "image_size": "--image-size",
}


def _check_number(name: str, value: Any, *, integer: bool, least: float) -> None:
    """Refuse a value that is not a finite number (an integer if asked) of at least `least`."""
    flag = FLAG[name]
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer and float(value) != int(value):
        ok = False
    if not ok:
        raise ValueError(f"{flag} expects {kind}; got {value!r}.")
    if value < least:
        positive = least < 1e-9  # "positive" reads better than "at least 1e-12"
        bound = "a positive number" if positive else f"{kind} of at least {least:g}"
        raise ValueError(f"{flag} expects {bound}; got {value:g}.")


def _validate(given: dict[str, Any]) -> None:
    """One sentence naming the flag for the first bad value."""
    integers = {"rows": 1, "classes": 2, "seq_len": 1, "batch_size": 1, "id_cardinality": 1}
    integers |= {"fields": 0, "channels": 1, "image_size": 1}
    positives = ("latency_ms", "max_size_mb", "budget_minutes")
    for name, value in given.items():
        if value is None:
            continue
        if name in integers:
            _check_number(name, value, integer=True, least=integers[name])
        elif name in positives:
            _check_number(name, value, integer=False, least=1e-12)
        elif name == "imbalance":
            _check_number(name, value, integer=False, least=1.0)
    structure = given.get("structure")
    if structure is not None and structure not in STRUCTURES:
        raise ValueError(f"--structure expects one of {', '.join(STRUCTURES)}; got {structure!r}.")


# What `fieldguide data inspect` reports, as (modality, task) of the rules.
_KINDS = {
    "CSV table": "tables",
    "CSV time series": "time-series",
    "CSV of texts and labels": "text",
    "CSV of text pairs": "text",
    "graph folder": "graphs",
    "image folder": "images",
    "mask folder": "images",
    "folder of text": "text",
    "text file": "text",
    "folder of texts per class": "text",
    "folder of sequences per class": "sequences",
    "array file": "sequences",
}


def _class_counts(text: str) -> tuple[int | None, list[int]]:
    """(number of classes, counts listed) from inspect's "a 50, b 48 (2 classes)"."""
    match = re.search(r"\((\d+) classes\)", text)
    if match is None:
        return None, []
    listed = text[: match.start()].split(" and ")[0].strip()
    listed = listed.split("classes ", 1)[-1]  # the target line starts "'label', classes "
    counts = []
    for item in listed.split(", "):
        number = item.rsplit(" ", 1)[-1]
        if number.isdigit():
            counts.append(int(number))
    return int(match.group(1)), counts


def _id_columns(path: Path, header_types: str, target: str) -> tuple[int, int]:
    """(distinct values of the largest categorical column, number of categorical columns)."""
    from fieldguide.data.csv_read import read_csv_rows

    categorical = set(re.findall(r"(?:^|, )(.+?) \(categorical\)", header_types)) - {target}
    if not categorical:
        return 0, 0
    header, rows, _ = read_csv_rows(path)
    sizes = [len({row[j] for row in rows}) for j, name in enumerate(header) if name in categorical]
    return max(sizes, default=0), len(sizes)


def facts_of_data(data: str, target: str | None = None) -> dict[str, Any]:
    """What `fieldguide data inspect` finds in `data`, as modality, task and `Needs` fields."""
    from fieldguide.data.inspect import inspect_data

    found = inspect_data(data, target)
    facts = dict(found.facts)
    out: dict[str, Any] = {"task": found.task}
    if found.kind.startswith("starter dataset"):
        out["modality"] = found.kind[len("starter dataset (") : -1]
        # A starter is not read here; its description gives image sizes and classes.
        text = facts.get("starter", "")
        if out["modality"] == "images" and (match := re.search(r"(\d+)x(\d+)", text)):
            out["image_size"] = min(int(match.group(1)), int(match.group(2)))
        if match := re.search(r"(\d+) classes", text):
            out["classes"] = int(match.group(1))
        return out
    out["modality"] = _KINDS.get(found.kind, "")
    size = facts.get("size", "")
    if match := re.match(r"([\d,]+) (?:rows|image and mask pairs)", size):
        out["rows"] = int(match.group(1).replace(",", ""))
    classes, counts = _class_counts(facts.get("classes", "") or facts.get("target", ""))
    if classes is not None:
        out["classes"] = classes
        if counts and len(counts) == classes:  # every class listed: sizes and balance
            out.setdefault("rows", sum(counts))
        if counts and len(counts) == classes and min(counts) > 0:
            out["imbalance"] = round(max(counts) / min(counts), 2)
    if match := re.search(r": (\d+)x(\d+), (\d+) channel", facts.get("images", "")):
        out["image_size"] = min(int(match.group(1)), int(match.group(2)))
        out["channels"] = int(match.group(3))
    if found.kind == "CSV table":
        name = re.match(r"'(.*?)'", facts.get("target", ""))
        ids, n = _id_columns(Path(data), facts.get("columns", ""), name.group(1) if name else "")
        out["id_cardinality"], out["fields"] = ids, n
    return out


def _command(model: str, row: Row, needs: Needs, data: str | None) -> str:
    """The exact `fieldguide train` line for `model` under `needs`."""
    parts = ["fieldguide", "train", model, "--data", data or "PATH"]
    if row.task == "regression" and (data is None or data.lower().endswith(".csv")):
        parts += ["--task", "regression"]
    neural = model not in CLASSICAL
    if needs.imbalance is not None and needs.imbalance >= IMBALANCED and neural:
        if row.task == "segmentation":
            parts += ["--loss", "focal"]
        elif row.task == "classification":
            parts += ["--class-weights", "balanced"]
    if needs.batch_size is not None and neural:
        parts += ["--batch-size", str(needs.batch_size)]
        if needs.batch_size <= TINY_BATCH and catalog()[model]["config"].get("norm") == "batch":
            parts += ["--set", "norm=group"]
    if needs.budget_minutes is not None and neural:
        parts += ["--time-limit", f"{needs.budget_minutes * 60:g}"]
    return " ".join(parts)


def _tips(model: str, row: Row, needs: Needs) -> list[str]:
    """The guide's tips (training habits, gotchas) that apply to `model` here, in our words."""
    tips = []
    small = needs.rows is None or needs.rows < LARGE_TABLE_ROWS
    if row.modality == "tables" and row.task in ("classification", "regression") and small:
        tips.append(
            "small table: trees first; a network here wants standardised inputs, weight decay "
            "and early stopping"
        )
    if row.modality == "tables" and (needs.id_cardinality or 0) >= HIGH_CARDINALITY:
        tips.append(
            "ID columns: give each value a learned embedding (Wide & Deep, DLRM) instead of "
            "one-hot columns"
        )
    if needs.imbalance is not None and needs.imbalance >= IMBALANCED:
        tips.append(
            "imbalance: weighted or focal loss (--class-weights balanced; for segmentation also "
            "--loss focal), and judge by F1 or AUROC, not accuracy"
        )
    if needs.batch_size is not None and needs.batch_size <= TINY_BATCH:
        tips.append(
            "tiny batches: GroupNorm or LayerNorm instead of BatchNorm (ResNets: --set "
            "norm=group; U-Nets use GroupNorm already)"
        )
    if row.modality in ("text", "sequences", "speech", "time-series") and row.task != "forecasting":
        tips.append(
            "padding: masks, so padded steps never count (text models take a padding_mask, "
            "sequence models take lengths)"
        )
    if row.task == "retrieval":
        tips.append(
            "retrieval: the alternatives are losses, not networks: --loss triplet (or "
            "triplet-semihard) and --loss arcface beside the default infonce"
        )
    if model in PRETRAINED:
        tips.append(
            "pretrained: fine-tune the body slower than the head (--body-lr 0.1), or train the "
            "head alone (--freeze body)"
        )
    if needs.streaming and row.modality in ("sequences", "speech", "time-series", "text"):
        tips.append(
            "streaming: state = model.initial_state(batch); y_t, state = model.step(x_t, state) "
            "gives the full forward pass's outputs one step at a time"
        )
    if needs.seq_len is not None and needs.seq_len >= LONG_SEQUENCE:
        tips.append(
            "long sequences: state-space layers (s4d, hyena) or a TCN scale with T; full "
            "attention scales with T^2"
        )
    if needs.budget_minutes is not None:
        tips.append(
            "compute budget: pretrained encoders and LoRA adapters (--lora 8) reach a good model "
            "in fewer steps"
        )
    if row.note:
        tips.append(f"fieldguide: {row.note}")
    return tips


def _why(model: str, row: Row) -> str:
    if model == row.pick:
        return row.why
    if model in CLASSICAL:
        return f"{CLASSICAL[model].what}: a classical baseline"
    return str(catalog()[model]["summary"]).rstrip(".")


def recommend(
    *,
    data: str | None = None,
    target: str | None = None,
    modality: str | None = None,
    task: str | None = None,
    rows: int | None = None,
    classes: int | None = None,
    imbalance: float | None = None,
    streaming: bool = False,
    latency_ms: float | None = None,
    max_size_mb: float | None = None,
    seq_len: int | None = None,
    pretrained: bool = True,
    budget_minutes: float | None = None,
    structure: str | None = None,
    batch_size: int | None = None,
    id_cardinality: int | None = None,
    fields: int | None = None,
    channels: int | None = None,
    image_size: int | None = None,
) -> list[Recommendation]:
    """Ranked model picks for the data at `data` or the problem the arguments describe.

    Arguments given here override what `data` says about itself. See `Needs` for the
    meaning of each constraint.

    Raises:
        ValueError: For a bad value, in one sentence naming the flag.
    """
    given = dict(locals())
    _validate(given)
    if data is not None:
        found = facts_of_data(data, target)
        for name, value in found.items():
            if given.get(name) is None:
                given[name] = value
        if modality is None and task is None:
            task = found["task"]
        modality = given["modality"]
    if modality is None:
        modality = {"graph": "graphs", "spatial": "images", "temporal": "time-series"}.get(
            structure or ""
        )
    if modality is None:
        raise ValueError(
            "recommend needs --data PATH or --modality (tables, images, text, sequences, "
            "time-series, speech, graphs, interactions); got neither."
        )
    row = find_row(modality, task)
    keys = set(Needs.__dataclass_fields__)
    needs = Needs(**{k: v for k, v in given.items() if k in keys and v is not None})
    needs = replace(needs, streaming=bool(streaming), pretrained=bool(pretrained))
    ranked = rank(row, needs)
    return [_recommendation(r, ranked, row, needs, data) for r in ranked]


def _recommendation(
    r: Ranked, ranked: list[Ranked], row: Row, needs: Needs, data: str | None
) -> Recommendation:
    others = [o.model for o in ranked if o.model != r.model]
    if r.model in PRETRAINED:  # the from-scratch twin goes beside the pretrained pick
        scratch = PRETRAINED[r.model].scratch
        others = [scratch, *[o for o in others if o != scratch]]
    return Recommendation(
        model=r.model,
        rule=r.rule,
        why=_why(r.model, row),
        meets=r.meets,
        breaks=r.breaks,
        alternatives=others,
        tips=_tips(r.model, row, needs),
        command=_command(r.model, row, needs, data),
    )


def format_recommendations(recs: list[Recommendation], top: int = 3) -> str:
    """The first `top` picks as terminal text: the best in full, the next ones in brief."""
    if not recs:
        return "no recommendation"
    lines = []
    for i, rec in enumerate(recs[:top], 1):
        lines.append(f"{i}. {rec.model}  ({rec.rule})")
        lines.append(f"   why      {rec.why}")
        lines += [f"   meets    {s}" for s in rec.meets]
        lines += [f"   breaks   {s}" for s in rec.breaks]
        lines.append(f"   train    {rec.command}")
        if i == 1:
            lines.append(f"   also     {', '.join(rec.alternatives) or 'none in fieldguide'}")
    first = recs[0]
    if first.tips:
        lines.append("tips")
        lines += [f"   {tip}" for tip in first.tips]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `fieldguide recommend`."""
    parser.add_argument("--data", help="a data path or starter name to read the facts from")
    parser.add_argument("--target", help="the target column of a CSV (default: detected)")
    parser.add_argument("--modality", help="tables, images, text, sequences, time-series, ...")
    parser.add_argument("--task", help="classification, regression, ctr, segmentation, ...")
    parser.add_argument("--rows", type=_number(int), help="labelled examples")
    parser.add_argument("--classes", type=_number(int), help="number of classes")
    parser.add_argument(
        "--imbalance", type=_number(float), help="largest over smallest class count, e.g. 10"
    )
    parser.add_argument("--streaming", action="store_true", help="outputs needed step by step")
    parser.add_argument("--latency-ms", type=_number(float), help="inference budget per input")
    parser.add_argument(
        "--max-size-mb", type=_number(float), help="largest weights allowed on the device"
    )
    parser.add_argument("--seq-len", type=_number(int), help="steps or tokens per example")
    parser.add_argument(
        "--no-pretrained", dest="pretrained", action="store_false", help="rule out pretrained"
    )
    parser.add_argument(
        "--budget-minutes", type=_number(float), help="training compute budget in minutes"
    )
    parser.add_argument("--structure", help="spatial, temporal, graph or none")
    parser.add_argument("--batch-size", type=_number(int), help="training batch size")
    parser.add_argument(
        "--id-cardinality", type=_number(int), help="distinct values of the largest ID column"
    )
    parser.add_argument("--fields", type=_number(int), help="number of categorical columns")
    parser.add_argument("--channels", type=_number(int), help="channels per image")
    parser.add_argument("--image-size", type=_number(int), help="the smaller image side")
    parser.add_argument("--top", type=_number(int), default=3, help="picks shown (default 3)")


def _number(kind: type) -> Any:
    """An argparse type that keeps bad text for `recommend` to refuse in one sentence."""

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            try:
                return float(text)  # "2.5" for an integer flag: refused by name later
            except ValueError:
                return text

    return parse


def main(args: argparse.Namespace) -> int:
    """Run `fieldguide recommend` for parsed `args`; raises ValueError with one sentence."""
    keys = {"data", "target", "modality", "task", "streaming", "pretrained"} | set(FLAG)
    kwargs = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    top = getattr(args, "top", 3)
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"--top expects a positive integer; got {top!r}.")
    print(format_recommendations(recommend(**kwargs), top=top))
    return 0
