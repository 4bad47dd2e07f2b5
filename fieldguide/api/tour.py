"""`tour`: every family trained on its starter data under one small budget, in one table.

Each stop of the tour is one row of the guide's "when to use what" table (§0), a family, one
of its small presets and a starter dataset that suits it. Each trains under the same budget
(`compare.train_under_budget`), is measured like a compare row (`compare.make_row`: test
metric, parameters, latency at batch 1) and is set beside the best of its task's baselines
on the same test split. The table goes to docs/tour.md; `update_readme` copies it into
README.md between the markers `<!-- tour:start -->` and `<!-- tour:end -->`.

A stop whose pretrained weights or data ship in a package that is not installed gets a row
that says which package, not a failed tour. Finished stops are recorded in
`state_dir/tour.json`, so running the tour again trains only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fieldguide.api.config import write_atomic
from fieldguide.train.config import OptionError

STATE_FORMAT = "fieldguide-tour-1"
DEFAULT_BUDGET = "45s"  # per stop, plus its evaluation: the 18 stops stay under 30 minutes
README_START = "<!-- tour:start -->"
README_END = "<!-- tour:end -->"
COLUMNS = (
    "guide row",
    "family",
    "data",
    "model",
    "metric",
    "best baseline",
    "parameters",
    "train time",
    "latency p50, batch 1",
)


@dataclass(frozen=True)
class Stop:
    """One row of the tour: a family's preset on a starter dataset, under a §0 row."""

    row: str  # the guide's §0 row (modality / task)
    family: str
    model: str
    data: str
    carrier: str = ""  # "minilm" or "mobilenet": pretrained weights from a package
    # TrainConfig fields besides the budget: one epoch on the larger starters, so a run that
    # finishes its epoch inside the budget has had its whole warmup and decay.
    recipe: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """The stop's name in the state file."""
        return f"{self.family}/{self.model}/{self.data}"

    @property
    def shown_model(self) -> str:
        """The model cell: its name, and any recipe fields the stop sets."""
        fields = ", ".join(f"{k}={v}" for k, v in self.recipe)
        return f"`{self.model}`" + (f" ({fields})" if fields else "")


# Small presets that learn something within a minute on 2 CPU cores, grouped by the §0 row.
STOPS = (
    Stop("Tabular (CTR/ranking)", "recsys", "wide-deep-tiny", "adult"),
    Stop("Tabular (CTR/ranking)", "mlp", "mlp-small", "two-moons"),
    Stop("Tabular (CTR/ranking)", "classical", "gbdt", "two-moons"),
    Stop("Images (classification)", "resnet", "resnet-tiny", "digits"),
    Stop(
        "Images (classification)",
        "mobilenet",
        "mobilenetv2",
        "fashion-mnist",  # ImageNet features need more than digits' 8x8 pixels
        "mobilenet",
        (("epochs", 1),),
    ),
    Stop("Images (classification)", "vit", "vit-tiny", "digits"),
    Stop("Images (segmentation)", "unet", "unet-tiny", "nuclei"),
    Stop("Text understanding", "transformer", "minilm", "rotten-tomatoes", "minilm"),
    Stop("Text/code generation", "transformer", "gpt-tiny", "kjv", recipe=(("epochs", 1),)),
    Stop("Seq2Seq (translation)", "transformer", "t5-tiny", "dates", recipe=(("epochs", 1),)),
    Stop("Time series", "rnn", "gru", "sunspots"),
    Stop("Time series", "ssm", "s4d", "co2"),
    Stop("Speech", "tcn", "tcn-small", "spoken-digits"),
    Stop("Graphs", "gnn", "gcn", "drosophila"),
    Stop("Retrieval/verification", "contrastive", "siamese-mlp", "digits"),
    Stop("Generative (images)", "diffusion", "ddpm-tiny", "digits"),
    Stop("Generative (images)", "flows", "realnvp", "digits"),
    Stop("Generative (images)", "vae", "vae", "digits"),
)


def tour_families() -> tuple[str, ...]:
    """Every family the tour visits: the registry's FAMILIES and "classical"."""
    from fieldguide.models import registry

    return (*registry.FAMILIES, *getattr(registry, "CLASSICAL", ("classical",)))


def stops_for(families: str | Sequence[str] | None = None) -> list[Stop]:
    """The stops of `families` ("mlp,gnn" or a list; None: all), in tour order."""
    known = tour_families()
    if families is None:
        chosen = set(known)
    else:
        names = families.split(",") if isinstance(families, str) else list(families)
        chosen = {str(n).strip() for n in names if str(n).strip()}
        for name in sorted(chosen):
            if name not in known:
                from fieldguide.suggest import unknown

                raise OptionError("{families}: " + unknown("family", name, known), "families")
        if not chosen:
            raise OptionError(
                f"{{families}} expects family names separated by commas, such as 'mlp,gnn'; "
                f"got {families!r}.",
                "families",
            )
    return [s for s in STOPS if s.family in chosen]


def missing_package(stop: Stop) -> str:
    """Why `stop` cannot run here (a model, weights or data package not installed), or ""."""
    from fieldguide.data.starters import list_starters
    from fieldguide.models.registry import get_entry

    try:
        get_entry(stop.model)
    except ValueError:
        return f"model '{stop.model}' is not in this fieldguide"
    if stop.carrier == "mobilenet":
        from fieldguide.models.mobilenet import WEIGHTS as carrier
    elif stop.carrier == "minilm":
        from fieldguide.models.pretrained import MINILM as carrier
    else:
        carrier = None
    if carrier is not None and not carrier.installed():
        return f"needs {carrier.what}: {carrier.install}"
    starter = next((s for s in list_starters() if s.name == stop.data), None)
    if starter is not None and not starter.present:
        return f"needs the {stop.data} data: {starter.install}"
    return ""


def machine_line(budget: str) -> str:
    """Where and how the table was measured: CPUs, threads, torch, budget."""
    import torch

    return (
        f"{os.cpu_count()} CPU(s), {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}; budget {budget} of training per model"
    )


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _arrow(metric: str) -> str:
    from fieldguide.api.compare import lower_is_better

    return "↓" if lower_is_better(metric) else "↑"


def table_row(stop: Stop, record: dict[str, Any]) -> str:
    """The markdown row of `stop` from its record in the state file."""
    from fieldguide.api.compare import best_baseline

    head = f"| {stop.row} | {stop.family} | {stop.data} | {stop.shown_model} |"
    if record.get("skipped") or record.get("failed"):
        why = (
            f"not run: {record['skipped']}"
            if record.get("skipped")
            else f"failed: {record['failed']}"
        )
        return f"{head} {_cell(why)} | - | - | - | - |"
    metric, value = record["metric"], record["value"]
    shown = f"{metric}={value:.4f} {_arrow(metric)}" if value is not None else f"{metric}=-"
    base = best_baseline(record.get("baselines", {}), metric)
    baseline = f"{_cell(base[0])}: {metric}={base[1]:.4f}" if base else "-"
    ratio = record.get("test_metrics", {}).get("test/snaive_ratio")
    if base is None and ratio is not None:  # forecasting measures itself against it
        baseline = f"seasonal naive: snaive_ratio=1 (this model {ratio:.4f})"
    latency = record.get("latency_ms")
    parameters = f"{record['parameters']:,}" if record["parameters"] else "-"
    return (
        f"{head} {shown} | {baseline} | {parameters} | "
        f"{record['train_seconds']:.1f} s | "
        f"{'-' if latency is None else f'{latency:.3f} ms'} |"
    )


def render(
    stops: Sequence[Stop],
    records: dict[str, dict[str, Any]],
    budget: str,
    command: str,
    state_dir: str | Path = "runs/tour",
) -> str:
    """docs/tour.md: a header line, the one table, and how to read it."""
    lines = [
        "# The tour: every family on its starter data",
        "",
        f"Regenerated with `{command}` on {datetime.now():%Y-%m-%d}: {machine_line(budget)}.",
        "",
        README_START,
        "| " + " | ".join(COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    lines += [table_row(s, records[s.key]) for s in stops if s.key in records]
    lines += [
        README_END,
        "",
        "Each model trained for the budget above on its starter's train split (fewer steps "
        "where its epochs ran out first; classical models are fitted in one pass), with the "
        "recipe `fieldguide train` gives it (a pretrained preset's own) and any field shown "
        "beside the model. The metric is the test split's: ↑ where higher is better, ↓ where "
        "lower is. The baseline is the best of the task's simple baselines on the same test "
        "rows. Latency is the median of batch-1 forward passes in eval mode on this machine. "
        f"The run folders, each with its report.md, are under {Path(state_dir, 'runs')}.",
        "",
    ]
    return "\n".join(lines)


def tour(
    budget: str = DEFAULT_BUDGET,
    families: str | Sequence[str] | None = None,
    *,
    out: str | Path = "docs/tour.md",
    state_dir: str | Path = "runs/tour",
    resume: bool = True,
    progress: str = "quiet",
    log: Callable[[str], None] = print,
    command: str = "",
) -> dict[str, Any]:
    """Train every family's tour stop under `budget` and write the table to `out`.

    Args:
        budget: training per model: a time such as "1m" or a step count such as "200steps".
        families: only these families ("mlp,gnn" or a list); None: all, with "classical".
        out: the markdown file to write.
        state_dir: where run folders and tour.json (the finished stops) go.
        resume: skip stops tour.json records as finished under the same budget; False trains
            every stop again.
        progress: each run's own progress display ("quiet", "plain", "rich", "auto").
        log: where the one line per stop goes.
        command: the command line written in the header (default: this call's equivalent).

    Returns:
        {"out": the file, "records": {stop key: record}, "interrupted": bool, "failed":
        [stop keys that raised]}.
    """
    from fieldguide.api.compare import make_row, parse_budget, train_under_budget

    plan = parse_budget(budget)
    stops = stops_for(families)
    state_dir = Path(state_dir)
    state_path = state_dir / "tour.json"
    state = _read_state(state_path) if resume else {}
    state.setdefault("format", STATE_FORMAT)
    records: dict[str, dict[str, Any]] = state.setdefault("stops", {})
    if not command:
        chosen = (
            f" --families {','.join(dict.fromkeys(s.family for s in stops))}" if families else ""
        )
        command = f"fieldguide tour --budget {plan.text}{chosen}"
    interrupted, failed = False, []
    for i, stop in enumerate(stops, 1):
        where = f"[{i}/{len(stops)}] {stop.family}: {stop.model} on {stop.data}"
        old = records.get(stop.key, {})
        if resume and old.get("budget") == plan.text and "value" in old:
            log(f"{where}: finished earlier, skipped")
            continue
        why = missing_package(stop)
        if why:
            log(f"{where}: not run, {why}")
            records[stop.key] = {"budget": plan.text, "skipped": why}
            _write_state(state_path, state)
            continue
        log(f"{where} ...")
        try:
            trained = train_under_budget(
                stop.model,
                stop.data,
                plan,
                runs_dir=state_dir / "runs",
                progress=progress,
                recipe=dict(stop.recipe),
            )
            if trained is None:
                interrupted = True
                log("interrupted; run the same tour command again to resume")
                break
            row = make_row(stop.model, trained)
        except KeyboardInterrupt:
            interrupted = True
            log("interrupted; run the same tour command again to resume")
            break
        except Exception as error:  # noqa: BLE001 - one failed stop still leaves the table
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            log(f"{where}: failed, {reason}")
            records[stop.key] = {"budget": plan.text, "failed": reason}
            failed.append(stop.key)
            _write_state(state_path, state)
            continue
        records[stop.key] = {"budget": plan.text, **dataclasses.asdict(row)}
        _write_state(state_path, state)
        log(f"{where}: {table_row(stop, records[stop.key]).split(' | ')[4]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, render(stops, records, plan.text, command, state_dir))
    return {"out": out, "records": records, "interrupted": interrupted, "failed": failed}


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(
            f"{path} is damaged (not JSON); delete it to start the tour afresh."
        ) from None
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a tour state file; delete it or pick another state_dir.")
    return state


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(state, indent=1) + "\n")


def readme_table(tour_md_text: str) -> str:
    """The table of docs/tour.md's text: the lines between the tour markers, markers left out."""
    if README_START not in tour_md_text or README_END not in tour_md_text:
        raise ValueError(
            f"tour text expects the markers {README_START} and {README_END} around the table, "
            "as `fieldguide tour` writes them; run the tour again to regenerate it."
        )
    inside = tour_md_text.split(README_START, 1)[1].split(README_END, 1)[0]
    return inside.strip("\n") + "\n"


def update_readme(readme: str | Path = "README.md", tour_md: str | Path = "docs/tour.md") -> Path:
    """Copy the tour's table into `readme` between its tour markers; returns the readme path."""
    readme, tour_md = Path(readme), Path(tour_md)
    if not tour_md.is_file():
        raise FileNotFoundError(f"{tour_md} does not exist; run `fieldguide tour` first.")
    text = readme.read_text()
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise ValueError(
            f"{readme} expects one {README_START} line and one {README_END} line after it, "
            f"where the tour's table goes; add them."
        )
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    table = readme_table(tour_md.read_text())
    write_atomic(readme, f"{before}{README_START}\n{table}{README_END}{after}")
    return readme


# -- command line --------------------------------------------------------------------------------
def add_tour_arguments(parser: Any) -> None:
    """The flags of `fieldguide tour` on an argparse (sub)parser."""
    parser.add_argument(
        "--budget",
        default=DEFAULT_BUDGET,
        help=f"training per model: a time such as 90s or 1m, or steps such as 200steps "
        f"(default {DEFAULT_BUDGET})",
    )
    parser.add_argument(
        "--families", help="only these families, separated by commas (default: every family)"
    )
    parser.add_argument("--out", default="docs/tour.md", help="the markdown file to write")
    parser.add_argument(
        "--state-dir", default="runs/tour", help="run folders and tour.json (finished stops)"
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="train every stop again, ignoring tour.json"
    )
    parser.add_argument(
        "--readme",
        nargs="?",
        const="README.md",
        metavar="FILE",
        help="then copy the table into FILE (default README.md) between its tour markers",
    )
    parser.add_argument("--progress", choices=("auto", "rich", "plain", "quiet"), default="quiet")


def main_tour(args: Any) -> int:
    """Run `fieldguide tour`: 0 when every stop ran (or lacks a package), 1 if one failed."""
    command = "fieldguide " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["tour"] else ""
    result = tour(
        args.budget,
        args.families,
        out=args.out,
        state_dir=args.state_dir,
        resume=not args.no_resume,
        progress=args.progress,
        command=command,
    )
    print(f"wrote {result['out']}")
    if result["interrupted"]:
        return 130  # like the CLI's other Ctrl-C exits; the same command resumes
    if args.readme:
        print(f"updated {update_readme(args.readme, result['out'])}")
    if result["failed"]:
        print(f"failed: {', '.join(result['failed'])} (see the table)", file=sys.stderr)
        return 1
    return 0
