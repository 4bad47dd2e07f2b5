"""`compare`: several models trained under one budget on one split, then a leaderboard.

Every model trains on the same data with the same split (one `DataConfig`), each under the
same budget: a time (`time_limit`, seconds of training) or a step count (`max_steps`). The
leaderboard ranks them by the task's own metric (the one the trainer monitors; for a loss-
monitored task the more readable perplexity or bits/dim) and puts beside it what each costs:
parameters, training time, latency at batch 1 and throughput, measured by `api.costs`.

The compare folder is its own state: `state.json` records what was asked and each model as it
finishes, and run folders live inside it under `runs/`, so `compare(resume=FOLDER)` skips the
finished models, resumes an interrupted run from its checkpoint and trains the rest. Beside
them: leaderboard.md, leaderboard.json, pareto.png and `best`, a link to the best run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fieldguide.api.config import DataConfig, RunConfig, write_atomic
from fieldguide.train.config import OptionError, TrainConfig

STATE_FORMAT = "fieldguide-compare-1"
DEFAULT_BUDGET = "5m"
# Lower is better for these besides the trainer's own list (fieldguide.train.loop), which
# lacks the density metrics of generation.
LOWER_EXTRA = frozenset({"bits_per_dim", "nll"})
# A loss-monitored task reports the first of these that it has, as people quote it.
READABLE_FOR_LOSS = ("perplexity", "bits_per_dim", "bpb", "nll")

_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1}
_UNITS.update({"m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60})
_UNITS.update({"h": 3600, "hour": 3600, "hours": 3600})
_BUDGET = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)")


@dataclass(frozen=True)
class Budget:
    """How long each model may train: `seconds` of training or `steps` optimizer steps."""

    text: str
    seconds: float = 0.0
    steps: int = 0

    def recipe(self) -> dict[str, Any]:
        """The TrainConfig fields that impose this budget."""
        return {"time_limit": self.seconds} if self.seconds else {"max_steps": self.steps}


def parse_budget(text: str, name: str = "budget") -> Budget:
    """A budget from text such as "90s", "2m", "1.5h" or "500steps".

    Raises:
        ValueError: one sentence naming `name` if the text is neither, or if the installed
            TrainConfig has no `time_limit` for a time budget.
    """
    given = str(text).strip().lower()
    match = _BUDGET.fullmatch(given)
    unit = match.group(2) if match else ""
    amount = float(match.group(1)) if match else 0.0
    if match and unit in ("step", "steps") and amount.is_integer() and amount >= 1:
        return Budget(text=given.replace(" ", ""), steps=int(amount))
    if not (match and unit in _UNITS and amount > 0):
        raise OptionError(
            f"{{{name}}} expects a positive time such as '90s', '2m' or '1h', or a step count "
            f"such as '500steps'; got {text!r}.",
            name,
        )
    if "time_limit" not in {f.name for f in dataclasses.fields(TrainConfig)}:
        raise OptionError(
            f"{{{name}}} {text!r} is a time, but this fieldguide's TrainConfig has no "
            f"time_limit; give a step count such as '500steps'.",
            name,
        )
    return Budget(text=given.replace(" ", ""), seconds=amount * _UNITS[unit])


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` ("accuracy", "test/mase", ...) is the better one."""
    from fieldguide.train.loop import monitor_mode

    name = metric.rsplit("/", 1)[-1]
    return name in LOWER_EXTRA or monitor_mode(name) == "min"


def main_metric(task: Any, metrics: dict[str, float]) -> str:
    """The name (without "test/") of the metric a task is judged by, among `metrics`.

    The trainer's monitor for the task (accuracy, MASE, mIoU, ...); where that is the loss,
    the first readable metric the task has (perplexity, bits/dim, nll).
    """
    name = getattr(task, "monitor", "val/loss").split("/", 1)[-1]
    if name == "loss":
        name = next((m for m in READABLE_FOR_LOSS if f"test/{m}" in metrics), "loss")
    if f"test/{name}" not in metrics and metrics:
        name = next(iter(metrics)).split("/", 1)[-1]
    return name


def best_baseline(baselines: dict[str, dict[str, float]], metric: str) -> tuple[str, float] | None:
    """(name, value) of the baseline that scores best on `metric`, or None if none has it."""
    scored = [(n, m[metric]) for n, m in baselines.items() if _finite(m.get(metric))]
    if not scored:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(scored, key=lambda item: item[1])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def measure_run(run_dir: str | Path, test: dict[str, float]) -> dict[str, Any]:
    """The main metric, costs and baselines of a finished run, read from its folder.

    A run writes measures.json beside report.md (the numbers of its cost section and its
    baselines), which is read as it is. For an older run without it, the data and task are
    rebuilt from config.toml (the same split), the weights loaded from model.safetensors and
    the costs measured with `api.costs`. A measurement that fails is None (and a note),
    never an error: the run itself is done.

    Args:
        run_dir: the run folder.
        test: the run's test metrics ("test/accuracy": ...), which pick the main metric.

    Returns:
        A dict with task, metric (the main metric's name), parameters, latency_ms (p50 at
        batch 1), throughput (examples/s), baselines ({name: {metric: value}}) and notes.
    """
    from fieldguide.api import costs
    from fieldguide.api.generate import load_run_model
    from fieldguide.api.run import _load

    run_dir = Path(run_dir)
    written = run_dir / "measures.json"
    if written.is_file():  # what the run measured for its report: nothing to measure again
        measures = json.loads(written.read_text())
        monitor = SimpleNamespace(monitor=measures.get("monitor") or "val/loss")
        return {
            "task": measures["task"],
            "metric": main_metric(monitor, test),
            "parameters": measures.get("parameters", 0),
            "latency_ms": measures.get("latency_ms"),
            "throughput": measures.get("throughput"),
            "baselines": measures.get("baselines", {}),
            "notes": [],
        }
    run = RunConfig.from_toml(run_dir / "config.toml")  # a run from before measures.json
    _, task, net, run, _, _ = _load(run)  # the task on the run's own split
    out: dict[str, Any] = {
        "task": task.name,
        "metric": main_metric(task, test),
        "parameters": costs.parameter_counts(net)[0],
        "latency_ms": None,
        "throughput": None,
        "baselines": {},
        "notes": [],
    }
    try:
        net = load_run_model(run_dir)  # the trained weights, hash-checked
        out["latency_ms"] = costs.latency(task, net)["p50"] * 1e3
        out["throughput"] = costs.throughput(task, net, run.train.batch_size)[0]
    except Exception as error:  # noqa: BLE001 - a cell of the table, never a failed compare
        out["notes"].append(f"cost not measured ({costs.failure_reason(error)})")
    try:
        out["baselines"] = {
            name: {k: float(v) for k, v in m.items()} for name, m in task.baselines("test").items()
        }
    except Exception as error:  # noqa: BLE001
        out["notes"].append(f"baselines not computed ({costs.failure_reason(error)})")
    return out


@dataclass
class Row:
    """One model's line of the leaderboard."""

    model: str
    family: str
    metric: str  # the main metric's name, e.g. "accuracy"
    value: float | None  # its test value; None when the run did not finish
    ece: float | None  # expected calibration error (classification), else None
    parameters: int
    train_seconds: float
    latency_ms: float | None  # p50 of a batch-1 forward pass
    throughput: float | None  # examples per second at the training batch size
    run_dir: str
    test_metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def train_under_budget(
    model: str,
    data: str,
    budget: Budget,
    *,
    runs_dir: Path,
    data_config: DataConfig | None = None,
    progress: str = "auto",
    recipe: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Train `model` on `data` under `budget` in `runs_dir`, resuming its unfinished run there.

    The newest run folder of `model` under `runs_dir` with the same budget is resumed from its
    checkpoint when it has one and no report.md; otherwise a new run starts. A classical model
    (`fits_directly`) is fitted in one pass, without the budget, and says so in a note.

    Returns:
        {"run_dir", "test", "train_seconds"} (and "note") of the finished run, or None when Ctrl-C
        stopped it (a checkpoint was saved; calling again resumes it).
    """
    from fieldguide.api.run import train
    from fieldguide.models.registry import get_entry
    from fieldguide.train.checkpoint import latest_checkpoint

    if getattr(get_entry(model).cls, "fits_directly", False):  # classical: one pass, no loop
        result = train(
            model,
            data,
            data_config=data_config or DataConfig(),
            runs_dir=runs_dir,
            progress=progress,
        )
        return {
            "run_dir": str(Path(result.run_dir).absolute()),
            "test": dict(result.test_metrics),
            "train_seconds": float(result.train_seconds),
            "note": f"fitted in one pass; the budget {budget.text} does not apply",
        }
    earlier = _runs_of(runs_dir, model, budget)
    last = earlier[-1] if earlier else None
    if (
        last is not None
        and not (last / "report.md").is_file()
        and latest_checkpoint(last / "checkpoint") is not None
    ):
        result = train(resume=last, progress=progress)
    else:
        result = train(
            model,
            data,
            data_config=data_config or DataConfig(),
            runs_dir=runs_dir,
            progress=progress,
            **budget.recipe(),
            **(recipe or {}),
        )
    if result.status == "interrupted":
        return None
    return {
        "run_dir": str(Path(result.run_dir).absolute()),
        "test": dict(result.test_metrics),
        "train_seconds": float(result.train_seconds),
    }


def make_row(model: str, trained: dict[str, Any]) -> Row:
    """The leaderboard row of a run `train_under_budget` finished, measured from its folder."""
    from fieldguide.models.registry import get_entry

    test = trained["test"]
    measured = measure_run(trained["run_dir"], test)
    metric = measured["metric"]
    return Row(
        model=model,
        family=get_entry(model).family,
        metric=metric,
        value=test.get(f"test/{metric}"),
        ece=test.get("test/ece"),
        parameters=measured["parameters"],
        train_seconds=trained["train_seconds"],
        latency_ms=measured["latency_ms"],
        throughput=measured["throughput"],
        run_dir=trained["run_dir"],
        test_metrics=test,
        baselines=measured["baselines"],
        notes=[*([trained["note"]] if trained.get("note") else []), *measured["notes"]],
    )


def _runs_of(runs_dir: Path, model: str, budget: Budget) -> list[Path]:
    """Run folders under `runs_dir` of `model` under `budget`, oldest first."""
    found = []
    for config in sorted(Path(runs_dir).glob("*/config.toml")):
        try:
            run = RunConfig.from_toml(config)
            same = all(getattr(run.train, k) == v for k, v in budget.recipe().items())
            if run.model == model and same:
                found.append(config.parent)
        except Exception:  # noqa: BLE001, S112 - a damaged folder is not one to resume
            continue
    return found


@dataclass
class Leaderboard:
    """Models ranked by one metric, under one budget, on one split."""

    data: str
    budget: str
    metric: str
    lower_is_better: bool
    rows: list[Row]
    folder: Path
    interrupted: bool = False

    @property
    def best(self) -> Row | None:
        """The top finished row."""
        return next((r for r in self.rows if r.value is not None), None)

    def markdown(self) -> str:
        """leaderboard.md: the ranked table, the best run linked, and the Pareto plot."""
        arrow = "lower is better" if self.lower_is_better else "higher is better"
        lines = [
            f"# Leaderboard: {self.data}, budget {self.budget} per model",
            "",
            f"Ranked by test {self.metric} ({arrow}); every model trained on the same split.",
            "",
            f"| rank | model | family | {self.metric} | ECE | parameters | train time (s) | "
            "latency p50, batch 1 (ms) | throughput (examples/s) | run |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for i, r in enumerate(self.rows, 1):
            link = _relative(r.run_dir, self.folder)
            size = f"{r.parameters:,}" if r.parameters else "-"  # a classical fit has none
            lines.append(
                f"| {i} | `{r.model}` | {r.family} | {_num(r.value)} | {_num(r.ece)} | "
                f"{size} | {r.train_seconds:.1f} | {_num(r.latency_ms, 3)} | "
                f"{_num(r.throughput, 0, ',')} | [{Path(r.run_dir).name}]({link}) |"
            )
        best = self.best
        if best is not None:
            link = _relative(best.run_dir, self.folder)
            lines += ["", f"Best: `{best.model}`, run folder [{best.run_dir}]({link})."]
        notes = [f"- `{r.model}`: {n}" for r in self.rows for n in r.notes]
        if notes:
            lines += ["", "Notes:", "", *notes]
        lines += ["", f"![{self.metric} against latency](pareto.png)", ""]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The leaderboard as plain JSON values."""
        return {
            "data": self.data,
            "budget": self.budget,
            "metric": self.metric,
            "lower_is_better": self.lower_is_better,
            "best_run": self.best.run_dir if self.best else None,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }


def _num(value: float | None, digits: int = 4, sep: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:{sep}.{digits}f}"


def _relative(path: str, start: Path) -> str:
    try:
        return Path(path).absolute().relative_to(start.absolute()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def rank(rows: list[Row], lower: bool) -> list[Row]:
    """Rows best first by their value; unfinished rows (no value) last, in their order."""
    scored = [r for r in rows if r.value is not None and math.isfinite(r.value)]
    rest = [r for r in rows if r not in scored]
    return sorted(scored, key=lambda r: r.value if lower else -r.value) + rest


def pareto_front(points: Sequence[tuple[float, float]], lower: bool) -> list[int]:
    """Indices of the (latency, metric) points no other point beats on both at once.

    A point is dominated when another is at least as fast and at least as good, and strictly
    better in one of the two.
    """
    sign = 1 if lower else -1  # compare "goodness" as a cost: smaller is better
    front = []
    for i, (lat_i, m_i) in enumerate(points):
        dominated = any(
            lat_j <= lat_i
            and sign * m_j <= sign * m_i
            and (lat_j < lat_i or sign * m_j < sign * m_i)
            for j, (lat_j, m_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def plot_pareto(board: Leaderboard, path: Path) -> None:
    """pareto.png: each model's metric against its latency, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    rows = [r for r in board.rows if r.value is not None and r.latency_ms is not None]
    points = [(r.latency_ms, r.value) for r in rows]
    front = sorted(pareto_front(points, board.lower_is_better), key=lambda i: points[i][0])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="gray", label="models")
    if front:
        ax.plot(
            [points[i][0] for i in front],
            [points[i][1] for i in front],
            "o-",
            color="tab:red",
            label="Pareto front",
        )
    for r in rows:
        ax.annotate(r.model, (r.latency_ms, r.value), textcoords="offset points", xytext=(4, 4))
    arrow = "lower is better" if board.lower_is_better else "higher is better"
    ax.set(xlabel="latency p50 at batch 1 (ms)", ylabel=f"test {board.metric} ({arrow})")
    latencies = [p[0] for p in points]
    if latencies and min(latencies) > 0 and max(latencies) > 10 * min(latencies):
        ax.set_xscale("log")  # latencies that span decades
    ax.set_title(f"{board.data}: {board.metric} against latency, budget {board.budget}")
    ax.legend(loc="best")
    from fieldguide.api.report import save_png

    save_png(fig, path)


def check_models(data: str, models: Sequence[str], data_config: DataConfig) -> None:
    """Refuse, in one sentence, a model that is unknown or cannot train on `data`.

    Each model's data, task and network are built as a run would build them; nothing is
    written.
    """
    from fieldguide.api.run import _load
    from fieldguide.models.registry import get_entry

    for name in models:
        get_entry(name)  # unknown names: one sentence with close matches
    tasks: dict[str, str] = {}
    for name in models:
        run = RunConfig(model=name, data=dataclasses.replace(data_config, name=data))
        run = dataclasses.replace(run, data=run.data.with_absolute_path())
        try:
            tasks[name] = _load(run)[1].name
        except (ValueError, TypeError, FileNotFoundError) as error:
            kind = FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError
            raise kind(
                f"compare cannot train model '{name}' on '{data}': {str(error).rstrip('.')}."
            ) from None
    if len(set(tasks.values())) > 1:
        said = ", ".join(f"{name} trains {task}" for name, task in tasks.items())
        raise OptionError(
            f"{{models}} must all train the same task on '{data}' to be ranked by one metric; "
            f"here {said}.",
            "models",
        )


def _split_models(models: str | Sequence[str] | None) -> list[str]:
    if models is None:
        return []
    if isinstance(models, str):
        models = models.split(",")
    names = [str(m).strip() for m in models if str(m).strip()]
    if len(set(names)) != len(names):
        raise OptionError(f"{{models}} names a model twice; got {', '.join(names)}.", "models")
    return names


def compare(
    data: str | None = None,
    models: str | Sequence[str] | None = None,
    *,
    budget: str | None = None,
    runs_dir: str | Path = "runs",
    out: str | Path | None = None,
    resume: str | Path | None = None,
    data_config: DataConfig | None = None,
    progress: str = "auto",
    log: Callable[[str], None] = print,
    **recipe: Any,
) -> Leaderboard:
    """Train each of `models` on `data` under one budget and rank them.

    Args:
        data: a starter dataset name or a path, as `train` takes it.
        models: registered names, as a list or "a,b,c"; two at least.
        budget: per model: a time of training ("90s", "5m", the default) or a step count
            ("500steps").
        runs_dir: where the compare folder goes when `out` is not given.
        out: the compare folder; default `runs_dir/compare-<stamp>-<data>`.
        resume: a compare folder to finish: its data, models and budget are used (any given
            must match), finished models are skipped and an interrupted run resumed.
        data_config: split and reading options, the same for every model.
        progress: each run's progress display: "auto", "rich", "plain" or "quiet".
        log: where the one-line-per-model progress goes.
        **recipe: TrainConfig fields for every model (e.g. `lr=1e-3`), besides the budget.

    Returns:
        The leaderboard; also written to the folder as leaderboard.md, leaderboard.json and
        pareto.png. `interrupted` is True when Ctrl-C stopped a run (resume the folder).
    """
    if resume is not None:
        folder = Path(resume)
        state = _read_state(folder)
        data, models, budget, data_config = _resumed(state, data, models, budget, data_config)
    else:
        state = None
    names = _split_models(models)
    if not isinstance(data, str) or not data:
        raise OptionError(
            f"{{data}} expects a starter dataset name or a path; got {data!r}.", "data"
        )
    if len(names) < 2:
        raise OptionError(
            f"{{models}} expects two or more registered names such as 'mlp,mlp-small'; "
            f"got {', '.join(names) or 'none'}.",
            "models",
        )
    plan = parse_budget(budget or DEFAULT_BUDGET)
    data_config = dataclasses.replace(data_config or DataConfig(), name=data)
    for key in recipe:
        if key in ("time_limit", "max_steps"):
            raise OptionError(
                f"compare sets {key} from {{budget}}; give a budget instead.", "budget"
            )
    check_models(data, names, data_config)
    if state is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data).stem if "/" in data else data)
        folder = Path(out) if out is not None else Path(runs_dir) / f"compare-{stamp}-{safe}"
        if folder.exists() and any(folder.iterdir()):
            raise OptionError(
                f"{{out}} expects a new or empty folder, but {folder} holds files; pass another "
                f"folder, or continue that compare with {{resume}}.",
                "out",
                "resume",
            )
        state = {
            "format": STATE_FORMAT,
            "data": data,
            "models": names,
            "budget": plan.text,
            "data_config": dataclasses.asdict(data_config),
            "recipe": recipe,
            "trained": {},
            "finished": {},
        }
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    _write_state(folder, state)
    recipe = state.get("recipe", recipe)

    rows: list[Row] = []
    interrupted = False
    for i, name in enumerate(names, 1):
        if name in state["finished"]:
            log(f"[{i}/{len(names)}] {name}: finished earlier, skipped")
            rows.append(Row(**state["finished"][name]))
            continue
        trained = state["trained"].get(name)
        if trained is None:
            log(f"[{i}/{len(names)}] {name} on {data}, budget {plan.text} ...")
            trained = train_under_budget(
                name,
                data,
                plan,
                runs_dir=folder / "runs",
                data_config=data_config,
                progress=progress,
                recipe=recipe,
            )
            if trained is None:
                interrupted = True
                log(f"interrupted; resume with: fieldguide compare --resume {folder}")
                break
            state["trained"][name] = trained  # measured next; a resume measures it again
            _write_state(folder, state)
        row = make_row(name, trained)
        state["finished"][name] = dataclasses.asdict(row)
        _write_state(folder, state)
        rows.append(row)
        log(
            f"[{i}/{len(names)}] {name}: {row.metric} {_num(row.value)}, "
            f"{row.train_seconds:.1f} s of training"
        )
    metric = rows[0].metric if rows else "loss"
    lower = lower_is_better(metric)
    board = Leaderboard(data, plan.text, metric, lower, rank(rows, lower), folder, interrupted)
    write_leaderboard(board)
    return board


def write_leaderboard(board: Leaderboard) -> None:
    """leaderboard.md, leaderboard.json, pareto.png and a `best` link in the board's folder."""
    write_atomic(board.folder / "leaderboard.md", board.markdown())
    write_atomic(board.folder / "leaderboard.json", json.dumps(board.to_json(), indent=1) + "\n")
    plot_pareto(board, board.folder / "pareto.png")
    best, link = board.best, board.folder / "best"
    if best is not None:
        try:
            if link.is_symlink():
                link.unlink()
            link.symlink_to(Path(best.run_dir), target_is_directory=True)
        except OSError:  # no symlinks here (some Windows setups): leaderboard.md links it
            pass


def _read_state(folder: Path) -> dict[str, Any]:
    path = folder / "state.json"
    if not path.is_file():
        raise OptionError(
            f"{{resume}} expects a compare folder with a state.json; {folder} has none.",
            "resume",
        )
    state = json.loads(path.read_text())
    if state.get("format") != STATE_FORMAT:
        raise OptionError(
            f"{{resume}} expects a compare folder; {path} is not a compare state file.", "resume"
        )
    return state


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    write_atomic(folder / "state.json", json.dumps(state, indent=1) + "\n")


def _resumed(
    state: dict[str, Any],
    data: str | None,
    models: str | Sequence[str] | None,
    budget: str | None,
    data_config: DataConfig | None,
) -> tuple[str, list[str], str, DataConfig]:
    """The stored data, models, budget and split; any given must be the same."""
    stored_config = DataConfig(**state["data_config"])
    given = {
        "data": (data, state["data"]),
        "models": (_split_models(models) or None, state["models"]),
        "data_config": (
            data_config and dataclasses.replace(data_config, name=stored_config.name),
            stored_config,
        ),
        "budget": (budget and parse_budget(budget).text, state["budget"]),
    }
    for key, (mine, theirs) in given.items():
        if mine is not None and mine != theirs:
            raise OptionError(
                f"{{resume}} continues the compare as it was started, with {key} {theirs!r}; "
                f"got {key} {mine!r}, so leave {{{key}}} out.",
                "resume",
                key,
            )
    return state["data"], state["models"], state["budget"], stored_config


# -- command line --------------------------------------------------------------------------------
def add_compare_arguments(parser: Any) -> None:
    """The flags of `fieldguide compare` on an argparse (sub)parser."""
    parser.add_argument("--data", help="a starter dataset (`fieldguide data list`) or a path")
    parser.add_argument("--models", help="registered names separated by commas, e.g. mlp,gbdt")
    parser.add_argument(
        "--budget",
        help="per model: training time such as 90s, 5m (default), 1h, or steps such as 500steps",
    )
    parser.add_argument("--runs-dir", default="runs", help="where the compare folder goes")
    parser.add_argument("--out", help="the compare folder (default runs/compare-<stamp>-<data>)")
    parser.add_argument(
        "--resume", metavar="FOLDER", help="finish a compare folder: skip its finished models"
    )
    parser.add_argument("--progress", choices=("auto", "rich", "plain", "quiet"), default="auto")


def main_compare(args: Any) -> int:
    """Run `fieldguide compare`; 130 when Ctrl-C stopped a run (resume the folder)."""
    if not args.resume and (not args.data or not args.models):
        raise ValueError("compare needs --data and --models, or --resume FOLDER; got neither.")
    board = compare(
        args.data,
        args.models,
        budget=args.budget,
        runs_dir=args.runs_dir,
        out=args.out,
        resume=args.resume,
        progress=args.progress,
    )
    print(board.markdown())
    print(f"compare folder: {board.folder}")
    return 130 if board.interrupted else 0  # like the CLI's other Ctrl-C exits
