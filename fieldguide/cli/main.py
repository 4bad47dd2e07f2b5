"""`fieldguide` command: list, show, recommend, diagram, train, compare, tour, gotchas, ...

Errors are one line on stderr and exit code 2; `--debug` (before or after the command) shows
the traceback instead. A run stopped by Ctrl-C exits with 130, like any interrupted command.
`list`, `show` and `data list` answer without importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from typing import Any

from fieldguide import __version__
from fieldguide.api.config import DataConfig
from fieldguide.suggest import unknown
from fieldguide.train.config import OptionError, TrainConfig
from fieldguide.train.config import flag as _flag

# Data fields that have flags of their own or are given positionally.
_DATA_FLAGS = {"name"}


# Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


# The layouts of the user's own data, for `fieldguide data --help`.
DATA_FORMATS = """your own data (`fieldguide data inspect PATH` says how a path will be read):
  table.csv          a header row, one row per example; the target is the column named
                     target/label/class or --target; labels give classification, a numeric
                     target with fractions, over 20 values or mostly distinct ones (or --task
                     regression) regression;
                     numeric cells are z-scored, others one-hot; empty cells are filled and
                     counted
  series.csv         a time column (date, time, timestamp, ds, year, ... or ISO dates first)
                     and numeric columns: forecasting; rows in increasing time, empty cells
                     interpolated, gaps counted; --target picks one column, --season, --horizon
                     and --context size the windows
  texts.csv          one free-text column and a label column: text classification (bytes)
  pairs.csv          source/target (or input/output, question/answer, prompt/response) text
                     columns: seq2seq
  images/CLASS/*.png one sub-folder of images per class: image classification
  texts/CLASS/*.txt  one sub-folder of .txt files per class: text classification
  book.txt           a .txt file, or a folder of .txt files: a byte-level language model
  seqs/CLASS/*.csv   one sub-folder of CSV sequences per class (rows = steps, columns =
                     channels), or one .npz with x (N, T, C) or flat x with lengths, and y:
                     sequence classification
  graph/             edges.csv (source, target[, weight]) and nodes.csv (id, features, label):
                     node classification
  seg/images/NAME.png  with seg/masks/NAME.png (same size; PNG or TIFF; class ids, or 0/255
                     for binary) and optionally seg/classes.txt (one name per line):
                     segmentation, trained on random --crop crops, scored on whole images
  clicks.csv         with wide-deep/dlrm, or --categorical a,b / --dense x,y: fields rows for
                     click prediction (a binary target); text columns are categorical fields
                     (a cell "a|b" is a bag of ids), numbers dense; rare and unseen values
                     hash into buckets
  any labelled data  with a siamese-* model: metric learning (embeddings; the last half of the
                     classes held out for retrieval tests, --held-out-classes)
Every bad row, file or cell is one sentence naming it; nothing is written on failure."""


def _field_comments(cls: type) -> dict[str, str]:
    """The trailing comment of each field in the dataclass source: its one documentation."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=[^#]*#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def _add_dataclass_flags(
    parser: argparse.ArgumentParser, cls: type, skip: set[str], title: str
) -> None:
    """One flag per dataclass field, typed from its annotation; default None means "not given"."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        text = f"{comments[f.name]} " if f.name in comments else ""
        kwargs: dict[str, Any] = {"default": None, "help": f"{text}(default: {f.default})"}
        if typing.get_origin(hint) is typing.Literal:
            kwargs["choices"] = typing.get_args(hint)
        elif hint in (int, float, str):
            kwargs["type"] = hint
            kwargs["metavar"] = hint.__name__.upper()
        group.add_argument(_flag(f.name), dest=f"{cls.__name__}.{f.name}", **kwargs)


def _given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    prefix = f"{cls.__name__}."
    return {
        k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None
    }


def _parse_value(text: str) -> Any:
    """A TOML literal (3, 0.1, true, [64, 128], "x"), or the bare text as a string."""
    from fieldguide.api.config import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _model_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE such as dropout=0.2; got '{pair}'.")
        options[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return options


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="fieldguide", description="The neural-network field guide, runnable."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    parser.add_argument("--version", action="version", version=f"fieldguide {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered models: name, family, parameters")
    p.add_argument("--family", help="only this family (mlp, resnet, ...)")

    p = sub.add_parser(
        "show", help="a model's or a family's card: when to use it, parameters, input, diagram"
    )
    p.add_argument("name", help="a model (`fieldguide list`) or a family (mlp, resnet, ...)")

    from fieldguide.guide import recommend as recommend_command  # torch-free

    p = sub.add_parser(
        "recommend", help="which model for your data or problem, ranked, with the reasons"
    )
    recommend_command.add_arguments(p)

    from fieldguide.api import compare as compare_command
    from fieldguide.api import tour as tour_command

    p = sub.add_parser(
        "compare", help="train several models under one budget on one split: a leaderboard"
    )
    compare_command.add_compare_arguments(p)
    p = sub.add_parser(
        "tour", help="every family on its starter data under a small budget: docs/tour.md"
    )
    tour_command.add_tour_arguments(p)

    from fieldguide.api import gotchas as gotchas_command

    p = sub.add_parser(
        "gotchas", help="the guide's common pitfalls, each run as a small measured experiment"
    )
    gotchas_command.add_arguments(p)

    p = sub.add_parser("diagram", help="a model or a run's model as Mermaid, DOT or JSON")
    p.add_argument("target", metavar="NAME|RUN", help="a registered model name or a run folder")
    p.add_argument("--format", choices=("mermaid", "dot", "json"), default="mermaid")
    p.add_argument(
        "--depth",
        type=int,
        default=1,
        help="1: the model's top-level parts; 2: each block's parts and residual adds; ...",
    )
    p.add_argument("--shapes", action="store_true", help="add each node's output shape")
    p.add_argument("--direction", choices=("LR", "TD"), default="LR", help="flowchart direction")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of printing")

    p = sub.add_parser("train", help="train a model and write a run folder")
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="model name (same as --model)")
    p.add_argument(
        "--model", help="a registered name or 'auto' (default: auto, the guide's pick for the data)"
    )
    p.add_argument(
        "--data", help=f"starter dataset, image folder or CSV file (default: {DataConfig.name})"
    )
    p.add_argument(
        "--config", help="a config.toml, e.g. from an earlier run; flags given here override it"
    )
    p.add_argument(
        "--resume", metavar="RUN", help="continue a run folder from its latest checkpoint"
    )
    p.add_argument(
        "--set",
        dest="model_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model config field, e.g. --set dropout=0.2 (repeatable)",
    )
    p.add_argument(
        "--runs-dir", default="runs", help="where run folders are created (default: runs)"
    )
    p.add_argument("--quiet", action="store_true", help="print only the final result")
    p.add_argument("--progress", choices=("auto", "rich", "plain"), default="auto")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="processes to train in, data-parallel (gloo on CPU, NCCL on CUDA); --batch-size "
        "stays the global batch; a resume must give the run's own N (default: 1)",
    )
    _add_dataclass_flags(p, TrainConfig, set(), "training recipe")
    _add_dataclass_flags(p, DataConfig, _DATA_FLAGS, "data options")

    p = sub.add_parser("generate", help="continue a prompt with a trained language model")
    p.add_argument("run", metavar="RUN", help="a run folder of a language model")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200, help="bytes to add (default: 200)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="below 1 sharper, above 1 flatter (default: 1.0)",
    )
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=0, help="of the sampling (default: 0)")

    p = sub.add_parser(
        "sample",
        help="draw samples from a trained generative run (diffusion, flow, VAE)",
        description=(
            "Draw samples from a finished generative run and write them as a PNG grid (a "
            "scatter plot for 2-D data). Seeded: the same options give the same samples."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run folder of a generative model")
    p.add_argument("--n", type=int, default=64, help="how many samples (default: 64)")
    p.add_argument(
        "--class",
        dest="label",
        default=None,
        help="a class name or index (class-conditional runs); default: every class in turn",
    )
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (diffusion)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (diffusion)")
    p.add_argument("--seed", type=int, default=0, help="of the draw (default: 0)")
    p.add_argument("-o", "--output", default="samples.png", help="the PNG (default: samples.png)")
    p.add_argument("--tensors", default=None, help="also save the samples as .safetensors here")

    p = sub.add_parser(
        "predict",
        help="apply a finished run to new inputs of the kind it trained on",
        description=(
            "Apply a finished run to new inputs, prepared with the run's own preprocessing.json. "
            "--data takes what the run trained on: a .csv with its columns (table), a .csv "
            "series (forecasts the next horizon steps), images (a file or folder), texts (a "
            ".csv with its text column, or .txt files), sequences (.csv files or a .npz), "
            "sources of a pairs run (a .csv with its source column; decoded greedily) or a "
            "graph folder (one class per node). Writes one CSV row per input beside its id."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run folder that `fieldguide train` finished")
    p.add_argument(
        "--data", required=True, help="new inputs of the kind the run trained on (see above)"
    )
    p.add_argument(
        "-o", "--output", default=None, help="write the predictions CSV here (default: stdout)"
    )

    p = sub.add_parser(
        "embed",
        help="a metric-learning run's embeddings of new inputs, to .safetensors",
        description=(
            "Embed new inputs (read like the run's training data: images, a table, texts, "
            "sequences) with a metric-learning run; writes 'embeddings' (N, E), unit norm, and "
            "the inputs' ids in the file's metadata."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a metric-learning run folder (siamese-*)")
    p.add_argument("--data", required=True, help="new inputs of the kind the run trained on")
    p.add_argument(
        "-o", "--output", required=True, help="the .safetensors file to write (emb.safetensors)"
    )

    p = sub.add_parser(
        "search",
        help="the training examples nearest a query, by a metric-learning run's embeddings",
    )
    p.add_argument("run", metavar="RUN", help="a metric-learning run folder (siamese-*)")
    p.add_argument(
        "--query", required=True, help="a file or folder of inputs like the training data"
    )
    p.add_argument("--k", type=int, default=5, help="neighbours per query (default: 5)")

    p = sub.add_parser(
        "export",
        help="a finished run's model as ONNX, TorchScript or a torch.export program",
        description=(
            "Write a finished run's model as RUN/model.onnx, RUN/model.ts or RUN/model.pt2 (or "
            "-o FILE), with a dynamic batch (and sequence length for sequence and token models). "
            "The file is read back and compared with eager PyTorch before it appears; a model "
            "that cannot be exported is refused before anything is written (docs/export.md)."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run folder that `fieldguide train` finished")
    p.add_argument(
        "--format", default="onnx", help="onnx, torchscript or torch.export (default: onnx)"
    )
    p.add_argument("-o", "--output", default=None, help="the file to write (default: in RUN)")

    p = sub.add_parser(
        "data",
        help="starter datasets, and what your own files hold",
        description="Starter datasets, and the layouts `fieldguide train --data PATH` reads.",
        epilog=DATA_FORMATS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    data_sub.add_parser("list", help="starter datasets: present or how to get them")
    q = data_sub.add_parser(
        "inspect", help="what a file or folder holds and what training would do with it"
    )
    q.add_argument("path", metavar="PATH", help="a .csv/.txt/.npz file, a folder or a starter")
    q.add_argument("--target", default=None, help="the CSV column to predict")
    for command in (*sub.choices.values(), *data_sub.choices.values()):
        # After the command too; the default leaves the value given before it alone.
        command.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks instead of one-line errors",
        )
    return parser


def _console() -> Any:
    """A rich console; when output goes to a file or pipe, wide enough not to wrap rows."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def cmd_list(args: argparse.Namespace) -> None:
    """Print the model table."""
    from rich.table import Table

    from fieldguide.api.catalog import load_catalog

    catalog = load_catalog()
    families = sorted({c["family"] for c in catalog.values()})
    if args.family is not None and args.family not in families:
        raise ValueError(f"unknown family '{args.family}'; choose from {', '.join(families)}.")
    table = Table("name", "family", "parameters", "input", box=None)
    for name, card in catalog.items():
        if args.family in (None, card["family"]):
            table.add_row(name, card["family"], f"{card['parameters']:,}", card["input"])
    _console().print(table)


def cmd_diagram(args: argparse.Namespace) -> None:
    """Print or write a traced diagram of a registered model or a run folder's model."""
    from pathlib import Path

    from fieldguide.api.catalog import load_catalog
    from fieldguide.api.diagram import registered_diagram, run_diagram

    options = {
        "depth": args.depth,
        "shapes": args.shapes,
        "format": args.format,
        "direction": args.direction,
    }
    if args.output and not Path(args.output).resolve().parent.is_dir():
        raise ValueError(
            f"diagram expects -o FILE in an existing folder; {Path(args.output).parent} does not "
            "exist."
        )
    target = Path(args.target)
    if target.is_dir():
        text = run_diagram(target, **options)
    else:
        catalog = load_catalog()
        if args.target not in catalog:
            raise ValueError(
                unknown("model", args.target, catalog, "give a model name or a run folder.")
            )
        text = registered_diagram(args.target, **options)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)


def cmd_show(args: argparse.Namespace) -> None:
    """Print a model's or a family's card (fieldguide/guide/cards.py)."""
    from fieldguide.guide.cards import render_card

    sys.stdout.write(render_card(args.name))


def cmd_train(args: argparse.Namespace) -> int:
    """Train and print where the run went; 130 when Ctrl-C stopped it (with a checkpoint)."""
    from fieldguide.api import train
    from fieldguide.api.config import RunConfig

    if args.model_pos and args.model and args.model_pos != args.model:
        raise ValueError(
            f"model given twice: '{args.model_pos}' and --model '{args.model}'; pass one."
        )
    model = args.model or args.model_pos
    train_given, data_given = _given(args, TrainConfig), _given(args, DataConfig)
    options = _model_options(args.model_options)
    progress = "quiet" if args.quiet else args.progress
    if args.resume:
        if model or args.data or args.config or train_given or data_given or options:
            raise ValueError(
                "--resume continues a run exactly as configured; "
                "pass no other model, data or recipe options."
            )
        result = train(resume=args.resume, progress=progress, nproc=args.nproc)
    else:
        base = RunConfig.from_toml(args.config) if args.config else RunConfig()
        model = model or base.model
        options = {**(base.model_config if model == base.model else {}), **options}
        from fieldguide.api.config import build

        data_cfg = build(
            DataConfig, {**dataclasses.asdict(base.data), **data_given}, "data options"
        )
        # A pretrained preset brings its fine-tuning recipe; the flags given win, and a
        # --config keeps its own recipe.
        from fieldguide.train.finetune import recipe_for

        preset = {} if args.config else recipe_for(model, train_given)
        train_cfg = build(
            TrainConfig,
            {**dataclasses.asdict(base.train), **preset, **train_given},
            "training recipe",
        )
        result = train(
            model,
            args.data or data_cfg.name,
            model_config=options,
            data_config=data_cfg,
            train_config=train_cfg,
            runs_dir=args.runs_dir,
            progress=progress,
            nproc=args.nproc,
        )
    if result.status == "interrupted":
        nproc = f" --nproc {args.nproc}" if args.nproc > 1 else ""
        print(f"interrupted; resume with: fieldguide train --resume {result.run_dir}{nproc}")
        return EXIT_INTERRUPTED
    if args.quiet:
        metrics = "  ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in result.test_metrics.items())
        print(f"test  {metrics}\nrun folder: {result.run_dir}")
    return 0


def cmd_generate(args: argparse.Namespace) -> None:
    """Print the prompt and its continuation."""
    from fieldguide.api.generate import generate

    text = generate(
        args.run,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )
    print(args.prompt + text)


def cmd_sample(args: argparse.Namespace) -> None:
    """Draw samples and write the grid (and the tensors)."""
    from fieldguide.api.sample import check_outputs, sample, save_samples

    check_outputs(args.output, args.tensors)
    samples = sample(
        args.run,
        n=args.n,
        label=args.label,
        guidance=args.guidance,
        steps=args.steps,
        seed=args.seed,
        progress=_step_bar("sampling"),
    )
    save_samples(samples, args.output, args.tensors)
    print(f"{len(samples.x)} sample(s) written to {args.output}", file=sys.stderr)


def _step_bar(what: str) -> Any:
    """A callable(done, total) drawing a progress line on stderr, for slow loops."""

    def update(done: int, total: int) -> None:
        if sys.stderr.isatty():
            end = "\n" if done >= total else "\r"
            print(f"{what} {done}/{total}", end=end, file=sys.stderr, flush=True)

    return update


def cmd_predict(args: argparse.Namespace) -> None:
    """Write (or print) one prediction per input, beside its row number."""
    from fieldguide.api.predict import predict

    predictions = predict(args.run, args.data, args.output)
    for note in predictions.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(predictions.to_csv())
    else:
        print(f"{len(predictions.rows)} prediction(s) written to {args.output}", file=sys.stderr)


def cmd_embed(args: argparse.Namespace) -> None:
    """Write the embeddings of new inputs to a .safetensors file."""
    from fieldguide.api.embed import embed

    result = embed(args.run, args.data, args.output)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    n, e = result.embeddings.shape
    print(f"{n} embedding(s) of width {e} written to {args.output}", file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> None:
    """Print the nearest training examples of each query as CSV."""
    from fieldguide.api.embed import search

    if args.k < 1:
        raise ValueError(f"--k must be a positive integer; got {args.k}.")
    found = search(args.run, args.query, args.k)
    for note in found.notes:
        print(f"note: {note}", file=sys.stderr)
    sys.stdout.write(found.to_csv())


def cmd_export(args: argparse.Namespace) -> None:
    """Export the run's model and say where the file is."""
    from fieldguide.api.export import export

    path = export(args.run, format=args.format, output=args.output)
    print(f"{args.format} model written to {path}", file=sys.stderr)


def cmd_data(args: argparse.Namespace) -> None:
    """Print the starter datasets and how to get missing ones, or inspect one path."""
    if args.data_command == "inspect":
        from fieldguide.data.inspect import inspect_data

        print("\n".join(inspect_data(args.path, args.target).lines()))
        return
    from rich.table import Table

    from fieldguide.data.starters import list_starters

    table = Table("name", "modality", "task", "present", "to get it", box=None)
    for s in list_starters():
        table.add_row(
            s.name, s.modality, s.task, "yes" if s.present else "no", "" if s.present else s.install
        )
    _console().print(table)


def _delegate(module: str, function: str, args: argparse.Namespace) -> int:
    """Run a command that lives beside its own code (recommend, compare, tour, gotchas)."""
    import importlib

    return getattr(importlib.import_module(module), function)(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fieldguide` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {
        "list": cmd_list,
        "show": cmd_show,
        "diagram": cmd_diagram,
        "train": cmd_train,
        "generate": cmd_generate,
        "predict": cmd_predict,
        "embed": cmd_embed,
        "search": cmd_search,
        "export": cmd_export,
        "sample": cmd_sample,
        "data": cmd_data,
        "recommend": lambda a: _delegate("fieldguide.guide.recommend", "main", a),
        "compare": lambda a: _delegate("fieldguide.api.compare", "main_compare", a),
        "tour": lambda a: _delegate("fieldguide.api.tour", "main_tour", a),
        "gotchas": lambda a: _delegate("fieldguide.api.gotchas", "main", a),
    }
    try:
        code = commands[args.command](args)
    except OptionError as e:  # a recipe or data option: named by its flag
        if args.debug:
            raise
        print(f"error: {e.render(_flag)}", file=sys.stderr)
        return 2
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        ModuleNotFoundError,
        RuntimeError,
        OSError,
    ) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
