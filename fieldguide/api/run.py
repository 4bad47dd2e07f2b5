"""`train`: data and model in, a run folder out (weights, metrics, curves, report).

Everything that can fail on bad input — the data, the model name, its overrides, the recipe —
is checked before the run folder is created, so bad input never leaves a half-written run.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from fieldguide.api.config import DataConfig, RunConfig, write_atomic
from fieldguide.train.config import TrainConfig


@dataclass
class RunResult:
    """Where a run lives and how it did."""

    run_dir: Path
    model: str
    test_metrics: dict[str, float]
    status: str
    train_seconds: float
    parameters: int


def _make_task(data: Any, run: RunConfig) -> Any:
    """The task the data calls for (`fieldguide.tasks.TASKS`), with the options the user set.

    Options left at their "unset" value (0, "", "none") are not passed, so a task that does not
    take one only refuses it when the user actually set it.
    """
    from fieldguide.tasks import make_task

    given = {
        "context": run.data.context,
        "horizon": run.data.horizon,
        "fanouts": parse_fanouts(run.data.fanouts),
        "label_smoothing": run.train.label_smoothing,
        "class_weights": "" if run.train.class_weights == "none" else run.train.class_weights,
        "loss": "" if run.train.loss == "auto" else run.train.loss,
        "crop": run.data.crop,
        "held_out_classes": run.data.held_out_classes if run.data.held_out_classes >= 0 else 0,
    }
    from fieldguide.models.registry import get_entry

    # "auto" picks a model for the data's own task; a named model may ask for its own task.
    trains_for = "" if run.model == "auto" else getattr(get_entry(run.model).cls, "trains_for", "")
    given = {k: v for k, v in given.items() if v}
    if run.data.held_out_classes == 0:  # 0 is a choice (hold none out), not "unset"
        given["held_out_classes"] = 0
    return make_task(data, trains_for, **given)


def columns(text: str) -> list[str] | None:
    """Column names from "a,b,c" (spaces around names dropped); None for ""."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names or None


def parse_fanouts(text: str) -> tuple[int, ...]:
    """Fan-outs from text: "10,5" gives (10, 5), "" gives () (full-batch); -1 takes all."""
    if not text.strip():
        return ()
    try:
        fanouts = tuple(int(part) for part in text.split(","))
    except ValueError:
        fanouts = ()
    if not fanouts or any(f < 1 and f != -1 for f in fanouts):
        raise ValueError(
            f"fanouts expects positive integers separated by commas, one per layer, such as "
            f"'10,5' (-1 takes all neighbours); got '{text}'."
        )
    return fanouts


def _load(run: RunConfig) -> tuple[Any, Any, Any, RunConfig, str, list[str]]:
    """Data, task, model and run for `run`, with why "auto" chose and fine-tuning's notes.

    The reason is "" unless "auto" was asked. Creates no files.
    """
    from fieldguide.data import load_data
    from fieldguide.guide.select import auto_model
    from fieldguide.models.registry import get_entry
    from fieldguide.train.loop import seed_everything

    d = run.data

    def read(model: str) -> Any:
        # A model that reads fields rows (Wide & Deep, DLRM) reads a CSV as them.
        fields_model = model != "auto" and getattr(get_entry(model).cls, "reads", "") == "fields"
        return load_data(
            d.name,
            seed=d.split_seed,
            val_fraction=d.val_fraction,
            test_fraction=d.test_fraction,
            target=d.target or None,
            image_size=d.image_size or None,
            labels_per_class=d.labels_per_class or None,
            node_features=d.node_features or None,
            task=d.task,
            season=d.season or None,
            categorical=columns(d.categorical),
            dense=columns(d.dense),
            fields=fields_model and d.name.lower().endswith(".csv"),
        )

    data = read(run.model)
    reason = ""
    if run.model == "auto":  # the guide's rules pick, from what the data says about itself
        name, reason = auto_model(
            data.modality, tuple(getattr(data, "input_shape", ())), **_auto_facts(data, d)
        )
        run = replace(run, model=name)
        if getattr(get_entry(name).cls, "reads", "") == "fields" and data.modality != "fields":
            data = read(name)  # the CSV again, as categorical fields rows
        run = _with_recipe(run)
    # A pretrained text model reads its own vocabulary: the texts are encoded again with it.
    text_tokenizer = getattr(get_entry(run.model).cls, "text_tokenizer", "")
    if text_tokenizer and getattr(data, "modality", "") == "text":
        from fieldguide.data.wordpiece import retokenize

        data = retokenize(data, text_tokenizer)
    pretrained = run.model_config.get(
        "pretrained", getattr(get_entry(run.model).config, "pretrained", False)
    )
    if pretrained:
        from fieldguide.data.imagenet import imagenet_standardized

        data = imagenet_standardized(data)  # the pretrained network's own input statistics
    task = _make_task(data, run)
    if reason and run.model == "gbdt" and task.train_size <= SMALL_TABLE_ROWS:
        from fieldguide.models.classical import cross_validated_pick

        pick, scores = cross_validated_pick(task, seed=run.train.seed)
        metric = "accuracy" if hasattr(task, "num_classes") else "negative MSE (z-scored)"
        shown = ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
        reason += (
            f"; on a table this small one validation split cannot tell trees from a linear "
            f"model, so 5-fold cross-validation on train + validation decided ({metric}: "
            f"{shown}): {pick}"
        )
        run = replace(run, model=pick)
    seed_everything(run.train.seed)  # the initial weights depend on the seed alone
    model = task.build_model(run.model, **run.model_config)
    # Record every config field, so the run repeats even if the preset changes later.
    run = replace(run, model_config=dict(dataclasses.asdict(model.config)))
    from fieldguide.train.finetune import prepare

    notes = prepare(model, run.train)  # --from, --freeze, --lora: before the first step
    return data, task, model, run, reason, notes


def _with_recipe(run: RunConfig) -> RunConfig:
    """`run` with the recipe of the preset auto chose (a pretrained model's), under the flags.

    A field still at TrainConfig's default was not given, so the preset's value fills it, as
    when the model is named on the command line.
    """
    from fieldguide.train.finetune import recipe_for

    defaults = TrainConfig()
    given = {
        f.name: getattr(run.train, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(run.train, f.name) != getattr(defaults, f.name)
    }
    preset = recipe_for(run.model, given)
    return replace(run, train=replace(run.train, **preset)) if preset else run


# Training rows up to which auto checks its trees against a linear model by cross-validation.
SMALL_TABLE_ROWS = 20000


def _auto_facts(data: Any, d: DataConfig) -> dict[str, Any]:
    """What `auto_model`'s rules need to know of loaded data: rows, and a table's ID columns."""
    facts: dict[str, Any] = {}
    splits = [getattr(data, s, None) for s in ("train", "val", "test")]
    sizes = [len(s.y) for s in splits if s is not None and hasattr(s, "y")]
    if sizes:
        facts["rows"] = sum(sizes)
    if data.modality == "tabular":
        from fieldguide.data.base import RegressionData

        if isinstance(data, RegressionData):
            facts["task"] = "regression"
        if d.name.lower().endswith(".csv"):  # categorical columns with many values are IDs
            from fieldguide.guide.recommend import facts_of_data

            found = facts_of_data(d.name, d.target or None)
            for key in ("id_cardinality", "fields"):
                if found.get(key):
                    facts[key] = found[key]
    return facts


def _run_dir(runs_dir: Path, model: str, data_name: str) -> Path:
    """A free, absolute folder path under `runs_dir` for a new run; creates nothing."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{stamp}-{model}-{data_name}")
    runs_dir = runs_dir.absolute()  # printed and written in report.md: right from any folder
    path = runs_dir / safe
    n = 2
    while path.exists():
        path = runs_dir / f"{safe}-{n}"
        n += 1
    return path


def train(
    model: str = "auto",
    data: str = "digits",
    *,
    model_config: dict[str, Any] | None = None,
    data_config: DataConfig | None = None,
    train_config: TrainConfig | None = None,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    runs_dir: str | Path = "runs",
    progress: str = "auto",
    nproc: int = 1,
    **recipe: Any,
) -> RunResult:
    """Train `model` on `data` and write a run folder.

    The folder is created only once everything has been checked, and removed again if the run
    fails before its first optimizer step. A data path is recorded absolute in config.toml,
    so `--config RUN/config.toml` and `resume` work from any folder.

    Args:
        model: a registered name (`fieldguide list`) or "auto" for the guide's pick.
        data: a starter dataset name, an image folder, a graph folder or a CSV file.
        model_config: overrides of the model preset's fields.
        data_config: split and reading options (its `name` is replaced by `data`).
        train_config: the recipe; defaults to TrainConfig().
        config: a config.toml (from an earlier run) that replaces all of the above.
        resume: a run folder to continue from its latest checkpoint.
        runs_dir: where new run folders are created.
        progress: "auto", "rich", "plain" or "quiet".
        nproc: processes to train in, data-parallel (gloo on CPU, NCCL on CUDA); the batch
            size stays global (fieldguide.train.distributed). A resume must give the run's own
            number. Under torchrun each rank calls train with 1 (or torchrun's number).
        **recipe: any TrainConfig field, e.g. `epochs=10, lr=1e-3`; applied over `train_config`.

    Returns:
        The run's folder, model, test metrics and status: "finished", "early_stopped", or
        "interrupted" (Ctrl-C; a checkpoint was saved and `resume` continues it).

    Example:
        >>> result = train("mlp", "digits", epochs=10)
        >>> result.test_metrics["test/accuracy"], result.run_dir
    """
    import shutil

    from fieldguide.api.report import data_notes
    from fieldguide.train import distributed
    from fieldguide.train.loop import Trainer
    from fieldguide.train.progress import Progress
    from fieldguide.typed import replace_config

    if recipe and (resume is not None or config is not None):
        raise ValueError(
            f"train got recipe options {sorted(recipe)} with resume/config, which fix the recipe; "
            "pass one or the other."
        )
    if train_config is None and resume is None and config is None:
        from fieldguide.train.finetune import recipe_for  # a pretrained preset's own recipe

        train_config = replace_config(TrainConfig(), "train", **recipe_for(model, recipe))
    if recipe:
        train_config = replace_config(train_config or TrainConfig(), "train", **recipe)
    if resume is not None:
        run_dir = Path(resume).absolute()
        if not (run_dir / "config.toml").is_file():
            raise FileNotFoundError(
                f"resume expects a run folder with a config.toml; {run_dir} has none."
            )
        run = RunConfig.from_toml(run_dir / "config.toml")
    elif config is not None:
        run = RunConfig.from_toml(config)
    else:
        if not isinstance(model, str) or not isinstance(data, str):
            raise TypeError(
                "train expects model and data as strings (a registered name, a starter or a path)."
            )
        run = RunConfig(
            model=model,
            model_config=dict(model_config or {}),
            data=replace(data_config or DataConfig(), name=data),
            train=train_config or TrainConfig(),
        )
    if resume is None:
        run = replace(run, data=run.data.with_absolute_path())
    run.data.check_applies()
    if resume is None and run.train.init_from:  # recorded absolute, like the data path
        init = str(Path(run.train.init_from).expanduser().absolute())
        run = replace(run, train=replace(run.train, init_from=init))
    direct = _fits_directly(run.model)
    if direct:
        _check_direct_fit(run, resume, nproc)
    if distributed.launching(nproc):  # start nproc ranks; each runs this function as a rank
        return _launch(run, resume, runs_dir, progress, nproc)
    world = distributed.join(nproc, run.train.device)  # a rank: its process group; else rank 0
    data_obj, task, net, run, reason, tuned = _load(run)

    notes = [f"{task.name} on {data_obj.description}."]  # what the data was read as
    notes += [f"model auto chose {run.model}: {reason}."] if reason else []
    notes += [f"{note}." for note in tuned]
    notes += data_notes(data_obj)
    shown = Progress(progress)
    if getattr(net, "fits_directly", False):  # a classical baseline: one fit, no loop
        if reason:  # auto chose it: the loop options given must not be dropped silently
            try:
                _check_direct_fit(run, resume, nproc)
            except ValueError as error:
                raise ValueError(
                    f"--model auto chose {run.model} ({reason}); {error} Or pass --model mlp "
                    "to train a network with them."
                ) from None
        return _fit_directly(run, data_obj, task, net, notes, shown, Path(runs_dir))
    if resume is None:
        run_dir = distributed.broadcast_object(_run_dir(Path(runs_dir), run.model, data_obj.name))
    # The trainer checks the device and the monitored metric; it creates no files.
    trainer = Trainer(
        net,
        task,
        run.train,
        checkpoint_dir=run_dir / "checkpoint",
        metrics_path=run_dir / "metrics.jsonl",
        progress=shown,
    )
    if resume is None:
        for note in notes:
            shown.message(f"note: {note}")
        if world.rank == 0:  # rank 0 alone writes the run folder
            run_dir.mkdir(parents=True)
    try:
        if resume is None and world.rank == 0:
            write_atomic(run_dir / "config.toml", run.to_toml())
        distributed.report(run_dir=run_dir)  # where a launcher says to resume a failed run
        result = trainer.fit(resume=resume is not None)
    except BaseException:
        if resume is None and trainer.state.step == 0:  # failed at start-up: leave nothing
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    result.notes[:0] = notes
    if result.status == "interrupted" or world.rank > 0:
        return RunResult(
            run_dir, run.model, {}, result.status, result.train_seconds, net.num_parameters()
        )

    with shown.phase("testing"):
        test = task.evaluate(
            net, "test", device=trainer.device, batch_size=256, autocast=trainer.autocast
        )
    _write_outputs(run_dir, run, data_obj, task, net, result, test)
    lines = ["test  " + "  ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in test.items())]
    for name, metrics in task.baselines("test").items():  # beside the network, same rows
        lines.append(f"      {name}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    shown.message("\n".join([*lines, f"run folder: {run_dir}"]))
    return RunResult(
        run_dir, run.model, test, result.status, result.train_seconds, net.num_parameters()
    )


def _fits_directly(model: str) -> bool:
    """Whether `model` is a classical baseline, fitted in one pass (models/classical.py)."""
    from fieldguide.models.registry import get_entry

    return model != "auto" and getattr(get_entry(model).cls, "fits_directly", False)


# Recipe fields a classical fit uses: the seed (its random state) and the device (CPU only).
_DIRECT_FIELDS = {"seed", "device"}


def _check_direct_fit(run: RunConfig, resume: Any, nproc: int) -> None:
    """Refuse what a one-pass fit cannot honour: resuming, several processes, loop options."""
    name = run.model
    if resume is not None:
        raise ValueError(
            f"{name} is fitted in one pass and writes its run folder only when done; there is "
            "nothing to resume, so train it again."
        )
    if nproc > 1:
        raise ValueError(f"{name} is fitted by scikit-learn in one process; drop --nproc {nproc}.")
    defaults = TrainConfig()
    given = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in _DIRECT_FIELDS and getattr(run.train, f.name) != getattr(defaults, f.name)
    ]
    if given:
        from fieldguide.train.config import flag

        flags = ", ".join(flag(field) for field in given)
        raise ValueError(
            f"{name} is fitted in one pass by scikit-learn, so the training-loop options "
            f"{flags} do not apply; tune it with --set (see `fieldguide show {name}`)."
        )
    if run.data.fanouts.strip():
        raise ValueError(
            f"{name} is fitted on the whole graph at once; --fanouts samples neighbourhoods for "
            "training steps, so leave it out."
        )
    if run.train.device not in ("auto", "cpu"):
        raise ValueError(f"{name} is fitted on the CPU; got --device {run.train.device}.")


def _fit_directly(
    run: RunConfig, data: Any, task: Any, net: Any, notes: list[str], shown: Any, runs_dir: Path
) -> RunResult:
    """Fit a classical baseline, then write the same run folder a trained network gets."""
    import time

    from fieldguide.train.loop import TrainResult

    for note in notes:
        shown.message(f"note: {note}")
    tick = time.perf_counter()
    with shown.phase(f"fitting {run.model}"):
        fitted = net.fit(task, seed=run.train.seed)
    seconds = time.perf_counter() - tick
    for note in fitted:
        shown.message(f"note: {note}.")
    run = replace(run, model_config=dict(dataclasses.asdict(net.config)))  # the fitted sizes
    net.eval()
    with shown.phase("validating"):
        val = task.evaluate(net, "val", device="cpu", batch_size=256)
    record = {"epoch": 1, "step": 1, "lr": 0.0, **val}
    result = TrainResult(
        status="finished",
        step=1,
        epoch=1,
        monitor=getattr(task, "monitor", "val/loss"),
        best_metrics=record,
        history=[record],
        train_seconds=seconds,
        samples_per_second=task.train_size / max(seconds, 1e-9),
        device="cpu",
        precision="fp64",
        notes=[*notes, *(f"{note}." for note in fitted)],
    )
    with shown.phase("testing"):
        test = task.evaluate(net, "test", device="cpu", batch_size=256)
    run_dir = _run_dir(runs_dir, run.model, data.name)
    run_dir.mkdir(parents=True)
    try:
        write_atomic(run_dir / "config.toml", run.to_toml())
        write_atomic(run_dir / "metrics.jsonl", json.dumps(record) + "\n")
        _write_outputs(run_dir, run, data, task, net, result, test)
    except BaseException:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)  # a half-written folder would lie
        raise
    lines = ["test  " + "  ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in test.items())]
    for name, metrics in task.baselines("test").items():
        lines.append(f"      {name}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    shown.message("\n".join([*lines, f"run folder: {run_dir}"]))
    return RunResult(run_dir, run.model, test, "finished", seconds, net.num_parameters())


def _launch(
    run: RunConfig, resume: str | Path | None, runs_dir: str | Path, progress: str, nproc: int
) -> RunResult:
    """Train `run` in `nproc` new processes, one rank each; rank 0's result.

    Each rank reads the recipe from a config.toml (or the run folder it resumes) and checks the
    input itself, so bad input fails every rank alike and comes back as its own error.
    """
    import tempfile

    from fieldguide.train import distributed

    with tempfile.TemporaryDirectory(prefix="fieldguide-launch-") as tmp:
        if resume is not None:
            kwargs = {"resume": str(Path(resume).absolute())}
        else:
            write_atomic(Path(tmp) / "config.toml", run.to_toml())
            kwargs = {"config": f"{tmp}/config.toml", "runs_dir": str(Path(runs_dir).absolute())}
        kwargs.update(progress=progress, nproc=nproc)
        try:
            out = distributed.launch(nproc, "fieldguide.api.run:train", kwargs)
        except distributed.RankFailedError as error:  # say where the last checkpoint is
            hint = distributed.resume_hint(error.report.get("run_dir"), nproc)
            raise distributed.RankFailedError(f"{error}{hint}", error.report) from None
    return RunResult(**{**out, "run_dir": Path(out["run_dir"])})


def preprocessing_json(data: Any, task: Any) -> str:
    """preprocessing.json: what `predict` needs to treat new inputs as the training data was.

    The reader's fitted transforms (`data.preprocessing`: statistics, categories, tokenizer),
    the classes and input shape, and what the task fitted (`task.state()`, such as the target
    scaling of a regression). Plain JSON, never a pickle.
    """
    doc = {
        "format": "fieldguide-preprocessing-1",
        "task": task.name,
        "data": getattr(data, "preprocessing", {}),
        "classes": getattr(data, "classes", None),
        "input_shape": list(getattr(data, "input_shape", ()) or ()),
        "task_state": task.state(),
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def _write_outputs(
    run_dir: Path, run: RunConfig, data: Any, task: Any, net: Any, result: Any, test: dict
) -> None:
    """model.safetensors, curves.png, diagram.mmd and report.md of a finished run."""
    from fieldguide.api.diagram import run_diagram
    from fieldguide.api.report import plot_curves, render_report
    from fieldguide.train.weights import save_weights

    meta = {
        "model": run.model,
        "config": json.dumps(dataclasses.asdict(net.config)),
        "format": "fieldguide-1",
    }
    from fieldguide.lora import lora_state_dict, merge, save_lora

    if lora_state_dict(net):  # a LoRA run: its adapters alone, then the merged, plain model
        save_lora(net, run_dir / "lora.safetensors", base_name=run.model)
        merge(net)
    # Tied weights (LM embedding = head) stored once, with a sha256 that every load checks.
    save_weights(net, run_dir / "model.safetensors", meta)
    plot_curves(result.history, run_dir / "curves.png")
    write_atomic(run_dir / "preprocessing.json", preprocessing_json(data, task))
    write_atomic(run_dir / "diagram.mmd", run_diagram(run_dir, shapes=True))  # sized for the data
    artifacts = getattr(task, "write_artifacts", None)
    if callable(artifacts):  # what a task keeps beside the weights (a retrieval index)
        artifacts(net, run_dir, device=next(net.parameters()).device.type)
    write_atomic(run_dir / "report.md", render_report(run, data, task, net, result, test, run_dir))
