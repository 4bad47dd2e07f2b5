"""`export`: a model, or a finished run's model, as an ONNX, TorchScript or torch.export file.

Three formats, each captured the one way that exports these models and keeps exact parity:

- `onnx` (.onnx): `torch.jit.trace`, then torch's TorchScript-based `torch.onnx.export`; read
  back with `onnxruntime`.
- `torchscript` (.ts): `torch.jit.trace`; read back with `torch.jit.load`.
- `torch.export` (.pt2): `torch.export.export`, non-strict; read back with
  `torch.export.load(path).module()`.

Why the TorchScript-based ONNX exporter and not `torch.onnx.export(dynamo=True)`: on torch 2.13
both give the same numbers where both work (within 2e-6 of eager), but the dynamo exporter first
runs `torch.export`, so it inherits every torch.export refusal in `REFUSALS` (recurrent layers
unrolled to one length, sparse graphs), and it takes 8-18 s per tiny model against 1-3 s. Input
checks that scan values (id ranges) step aside while `torch.compiler.is_exporting()`.
`torch.jit.script` compiles none of the families (keyword-only arguments and `str` annotations),
so TorchScript means tracing. Tracing records one path through the code, so every export is
checked before its file appears: the file is written under a temporary name, read back with its
own runtime, and run on the export's input and on a second input with another batch size (and
another sequence length for models that read sequences or tokens); the file is renamed into
place only when both equal eager PyTorch within `TOLERANCE`. A failure leaves no file.

Dynamic axes: the batch (axis 0 of every input) always; for models that read "sequences",
"tokens" or "token-pairs", also axis 1 of the sequence inputs (time, or source and target
lengths). Other axes (image sizes, feature widths, bag lengths) keep the example's size. The
file's inputs are the positional inputs of `model.example_input()`; optional ones (padding
masks, lengths) are not inputs of the file, so an exported sequence model reads unpadded
batches.

Models that cannot be exported are refused before anything is written, in one sentence that
says why and which formats work: `REFUSALS` declares them per model class, or per config where
presets of a class differ (S4D and Hyena, conditional flows, GraphSAGE's aggregators), and
`python -m fieldguide.api.export docs/export.md` first exports one preset per class and
declared outcome in every format (`--all`: every preset; all 53 agreed on torch 2.13) to confirm
each entry, then writes the table in docs/export.md.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fieldguide.train.config import OptionError

FORMATS = ("onnx", "torchscript", "torch.export")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "torch.export": ".pt2"}
# Exported output vs eager, elementwise: |got - want| <= TOLERANCE * (max(1, max |want|) +
# |want|); the absolute part grows with the output's scale (logits near 50 round off more).
TOLERANCE = 1e-5
INSTALL = "pip install 'fieldguide[export]'"

# Why a model class cannot be exported to a format: class name -> {format: reason}, or a
# function of the model's config giving that dict where presets of one class differ. A reason
# finishes the sentence "<model> cannot be exported to <format>: ...". Every registered class
# has an entry (possibly empty; a subclass may use its base's); the docs generator confirms
# each one by trying it.
_SPARSE = (
    "its message passing multiplies sparse CSR adjacency matrices that it caches per graph in "
    "Python, which tracing cannot capture"
)
_EDGE_CHECK = (
    "its input check reads the smallest and largest node in edge_index (a data-dependent "
    "value), which torch.export cannot trace"
)
_RNN_UNROLL = (
    "torch.export unrolls nn.GRU/nn.LSTM/nn.RNN over time, fixing the sequence length to the "
    "export's"
)


def _ssm(config: Any) -> dict[str, str]:
    """Both mixers convolve through one autograd Function; S4D also sizes its kernel in Python."""
    refused = {
        "onnx": "its FFT convolution (a custom autograd Function over complex spectra) has no "
        "translation in torch's ONNX exporter",
        "torchscript": "its FFT convolution is a custom autograd Function, a Python call that "
        "a TorchScript file cannot hold",
    }
    if config.mixer == "s4d":
        refused["torch.export"] = (
            "S4D builds its kernel with Python integer arithmetic on the sequence length "
            "(ceil(sqrt T) blocks of powers), which fixes the length to the export's"
        )
    return refused


def _graph(config: Any) -> dict[str, str]:
    """Sparse aggregation (GCN, GAT, GraphSAGE-mean) traces nowhere; max aggregation does."""
    if getattr(config, "aggregator", "") == "max":
        return {
            "onnx": "its max aggregation is scatter_reduce without the initial values "
            "(include_self=False), which ONNX has no operator for",
            "torch.export": _EDGE_CHECK,
        }
    return {
        "onnx": _SPARSE,
        "torchscript": _SPARSE,
        "torch.export": "torch.export can trace neither its input check, which reads the "
        "smallest and largest node in edge_index (a data-dependent value), nor its message "
        "passing over sparse CSR matrices cached in Python",
    }


REFUSALS: dict[str, dict[str, str] | Callable[[Any], dict[str, str]]] = {
    "MLP": {},
    "ResNet": {},
    "MobileNetV2": {},
    "UNet": {},
    "ViT": {},
    "TCN": {},
    "VAE": {},
    "RealNVP": {},
    "VectorRealNVP": {},
    "RNN": {"torch.export": _RNN_UNROLL},
    "SSM": _ssm,
    "TransformerEncoder": {},
    "TransformerDecoder": {},
    "EncoderDecoder": {},
    "Diffusion": {},
    "DLRM": {},
    "WideDeep": {
        "onnx": "its cross features use aten::triu_indices, which has no ONNX operator",
    },
    "TwoTower": {},
    "GNN": _graph,
    "GAT": _graph,
    "GraphSAGE": _graph,
    "ImageEmbedder": {},
    "VectorEmbedder": {},
    "SequenceEmbedder": {"torch.export": _RNN_UNROLL},
    "TokenEmbedder": {},
}


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def _check_format(format: object) -> str:
    """The format, or one sentence naming the argument and the formats there are."""
    if format not in FORMATS:
        choices = ", ".join(repr(f) for f in FORMATS)
        raise OptionError(
            f"export expects {{format}} as one of {choices}; got {format!r}.", "format"
        )
    return str(format)


def _check_output(output: object, format: str) -> Path:
    """The output path, once its folder exists and its suffix does not name another format."""
    if not isinstance(output, str | os.PathLike):
        raise OptionError(
            f"export expects {{output}} as a file path (str or Path); got {type(output).__name__}.",
            "output",
        )
    path = Path(output)
    if not path.absolute().parent.is_dir():
        raise OptionError(
            f"export expects {{output}} in an existing folder; {path.absolute().parent} does not "
            f"exist.",
            "output",
        )
    if path.is_dir():
        raise OptionError(
            f"export expects {{output}} as a file name; {path} is a folder, so give a name such "
            f"as {path / ('model' + SUFFIXES[format])}.",
            "output",
        )
    other = [f for f, s in SUFFIXES.items() if s == path.suffix.lower() and f != format]
    if other:
        raise OptionError(
            f"export writes {format} models as {SUFFIXES[format]} files, but {{output}} "
            f"{path.name} ends in {path.suffix}, the suffix of {other[0]} files; name it "
            f"{path.stem}{SUFFIXES[format]}, or give {{format}} {other[0]}.",
            "output",
            "format",
        )
    return path


def _inputs(model: nn.Module, example: object) -> tuple[Tensor, ...]:
    """The export's positional inputs: `example` or the model's own `example_input(2)`."""
    if example is None:
        if not callable(getattr(model, "example_input", None)):
            raise TypeError(
                f"export_model needs an example input for {type(model).__name__}, which has no "
                f"example_input(); pass example=a tensor or a tuple of tensors forward accepts."
            )
        example = model.example_input(2)
    inputs = example if isinstance(example, tuple) else (example,)
    if not inputs or not all(isinstance(t, Tensor) for t in inputs):
        kinds = ", ".join(type(t).__name__ for t in inputs) or "an empty tuple"
        raise TypeError(
            f"export_model expects example as a tensor or a tuple of tensors (forward's "
            f"positional inputs); got {kinds}."
        )
    device = next((p.device for p in model.parameters()), inputs[0].device)
    return tuple(t.to(device) for t in inputs)


def _label(model: nn.Module) -> str:
    """The model's registry name, else its class name, for sentences."""
    return getattr(model, "name", "") or type(model).__name__


def refused_formats(cls: type, config: Any = None) -> dict[str, str] | None:
    """The {format: reason} `REFUSALS` declares for class `cls` with `config`, or None.

    A class not listed uses its nearest listed base class; None when there is none.
    """
    for klass in cls.__mro__:
        entry = REFUSALS.get(klass.__name__)
        if entry is not None:
            return entry(config) if callable(entry) else entry
    return None


def supported_formats(model: nn.Module) -> tuple[str, ...]:
    """The formats that export `model`, as `REFUSALS` declares for its class and config."""
    refused = refused_formats(type(model), getattr(model, "config", None)) or {}
    return tuple(f for f in FORMATS if f not in refused)


def refusal(model: nn.Module, format: str) -> str | None:
    """The sentence that refuses to export `model` to `format`, or None when it exports."""
    refused = refused_formats(type(model), getattr(model, "config", None)) or {}
    if format not in refused:
        return None
    works = supported_formats(model)
    other = f"it exports to {' and '.join(works)}" if works else "no format exports it"
    return f"{_label(model)} cannot be exported to {format}: {refused[format]}; {other}."


def _require_onnx() -> None:
    """Raise one sentence with the pip command unless onnx and onnxruntime import."""
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise ModuleNotFoundError(
                f"export to onnx needs the {module} package, which is not installed; install "
                f"it with `{INSTALL}`."
            ) from None


# ---------------------------------------------------------------------------------------------
# Capture, write, read back
# ---------------------------------------------------------------------------------------------


def _names(model: nn.Module, count: int) -> list[str]:
    """Names for the file's inputs: forward's positional parameters (x; src, tgt_in; ...)."""
    names: list[str] = []
    for p in inspect.signature(model.forward).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            names += [f"{p.name}{i}" for i in range(count - len(names))]
    names = names[:count]
    return names + [f"input{i}" for i in range(len(names), count)]


def _dynamic_axes(model: nn.Module, inputs: tuple[Tensor, ...]) -> list[dict[int, str]]:
    """Per input, its dynamic axes and their names: batch, and the steps of sequence inputs."""
    reads = getattr(model, "reads", "")
    steps = {"sequences": 1, "tokens": 1, "token-pairs": 2}.get(reads, 0)  # inputs with steps
    names = _names(model, len(inputs))
    axes = []
    for i, t in enumerate(inputs):
        axis = {0: "batch"} if t.ndim >= 1 else {}
        if i < steps and t.ndim >= 2:
            axis[1] = "steps" if steps == 1 else f"{names[i]}_steps"
        axes.append(axis)
    return axes


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the tracer's doubts and torch's deprecation notes; the parity check answers them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # The ONNX exporter's notes (a traced module has no signature; GRU batch sizes; Slice
        # folding): the parity check at another batch size and length answers them.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        yield


def _capture(model: nn.Module, inputs: tuple[Tensor, ...], path: Path, format: str) -> None:
    """Write `model` traced or exported on `inputs` to `path`, unchecked."""
    axes = _dynamic_axes(model, inputs)
    if format == "torch.export":
        dynamic = tuple(dict.fromkeys(a, torch.export.Dim.DYNAMIC) for a in axes)
        program = torch.export.export(model, inputs, dynamic_shapes=dynamic, strict=False)
        torch.export.save(program, path)
        return
    traced = torch.jit.trace(model, inputs, check_trace=False)  # parity is checked below
    if format == "torchscript":
        traced.save(str(path))
        return
    names = _names(model, len(inputs))
    torch.onnx.export(
        traced,
        inputs,
        str(path),
        dynamo=False,  # see the module docstring
        input_names=names,
        output_names=["output"],
        dynamic_axes={n: a for n, a in zip(names, axes, strict=True) if a},
    )
    import onnx

    onnx.checker.check_model(str(path))


def load_exported(
    path: str | os.PathLike[str], format: str | None = None, threads: int | None = None
) -> Callable[..., Any]:
    """A function that runs an exported file: tensors in, the model's output tensor(s) out.

    Args:
        path: A file `export` wrote.
        format: One of `FORMATS`; None reads it from the suffix (.onnx, .ts, .pt2).
        threads: ONNX Runtime's intra-op threads (None: its default); torch's own runtimes
            follow `torch.set_num_threads`.
    """
    path = Path(path)
    if format is None:
        found = [f for f, s in SUFFIXES.items() if s == path.suffix.lower()]
        if not found:
            raise ValueError(
                f"load_exported reads the format from the suffix (.onnx, .ts, .pt2); {path.name} "
                f"has none of them, so pass format= one of {FORMATS}."
            )
        format = found[0]
    format = _check_format(format)
    if not path.is_file():
        raise FileNotFoundError(f"load_exported expects path as an exported file; {path} is none.")
    if format == "torchscript":
        with _quiet():  # torch.jit.load's deprecation note
            return torch.jit.load(str(path), map_location="cpu")
    if format == "torch.export":
        return torch.export.load(path).module()
    _require_onnx()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes on graph rewrites it chose not to do
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs, strict=True)}
        out = [torch.from_numpy(o) for o in session.run(None, feed)]
        return out[0] if len(out) == 1 else tuple(out)

    return run


def _flat(out: Any) -> list[Tensor]:
    """A model's output as a list of tensors (a tensor, or a tuple or list of them)."""
    if isinstance(out, Tensor):
        return [out]
    return [t for item in out for t in _flat(item)]


def _varied(model: nn.Module, inputs: tuple[Tensor, ...], given: bool) -> tuple[Tensor, ...]:
    """A second input: one more example per batch and, for sequence inputs, fewer steps.

    The model's own example_input(batch + 1) gives fresh values; a caller's example is grown by
    its first row instead. Sequence inputs keep their first T - max(1, T // 4) steps.
    """
    batch = inputs[0].shape[0] if inputs[0].ndim else 1
    if not given:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(batch + 1)
            fresh = model.example_input(batch + 1)
        fresh = fresh if isinstance(fresh, tuple) else (fresh,)
        device = inputs[0].device
        varied = tuple(t.to(device) for t in fresh)
    else:
        varied = tuple(torch.cat([t, t[:1]]) if t.ndim else t for t in inputs)
    out = []
    for t, axes in zip(varied, _dynamic_axes(model, varied), strict=True):
        if 1 in axes and t.shape[1] >= 2:
            t = t[:, : t.shape[1] - max(1, t.shape[1] // 4)]
        out.append(t)
    return tuple(out)


def _check_parity(
    model: nn.Module, path: Path, format: str, inputs: tuple[Tensor, ...], given: bool
) -> None:
    """Raise one sentence unless the file at `path` gives eager's output on two inputs."""
    run = None
    for what, x in (("the export's input", inputs), ("a new shape", _varied(model, inputs, given))):
        want = _flat(model(*x))
        shapes = tuple(tuple(t.shape) for t in x)
        try:  # the runtime's own words, first line, inside our sentence
            run = run or load_exported(path, format, threads=1)
            got = _flat(run(*x))
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RuntimeError(
                f"{_label(model)} exported to {format} could not be run by its runtime on "
                f"{what} {shapes}, so no file was written: {first[:300]}"
            ) from error
        if len(got) != len(want):
            raise ValueError(
                f"{_label(model)} exported to {format} gives {len(got)} outputs on {what} "
                f"{shapes}; eager PyTorch gives {len(want)}."
            )
        for w, g in zip(want, got, strict=True):
            w, g = w.detach().cpu(), g.detach().cpu()
            scale = TOLERANCE * max(1.0, float(w.abs().max())) if w.numel() else TOLERANCE
            same = w.shape == g.shape and torch.allclose(
                g.to(w.dtype), w, atol=scale, rtol=TOLERANCE
            )
            if not same:
                error = (g.to(w.dtype) - w).abs().max().item() if w.shape == g.shape else None
                differs = (
                    f"output shape {tuple(g.shape)} instead of {tuple(w.shape)}"
                    if error is None
                    else f"outputs up to {error:.2e} away from eager PyTorch's"
                )
                raise ValueError(
                    f"{_label(model)} exported to {format} gives {differs} on {what} {shapes} "
                    f"(tolerance {TOLERANCE:g}), so no file was written; the capture fixed a "
                    f"path through its code (a size or value read in Python) that this input "
                    f"does not take."
                )


def _write(
    model: nn.Module, path: Path, format: str, inputs: tuple[Tensor, ...], given: bool
) -> Path:
    """Capture, check and rename into place; on any failure remove the temporary file."""
    # A hidden name beside the target (so the rename stays on one file system) that ends in
    # the format's suffix, which torch.export's archive reader expects.
    folder, suffix = path.absolute().parent, f".tmp{SUFFIXES[format]}"
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    modes = {module: module.training for module in model.modules()}  # restored, each its own
    model.eval()  # dropout off: the file serves inference
    try:
        with torch.no_grad(), _quiet():
            try:
                _capture(model, inputs, tmp, format)
            except Exception as error:  # torch's own words, first line, inside our sentence
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise RuntimeError(
                    f"{_label(model)} could not be exported to {format}: {first[:300]}"
                ) from error
            _check_parity(model, tmp, format, inputs, given)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for module, training in modes.items():
            module.training = training
    return path


# ---------------------------------------------------------------------------------------------
# The verbs
# ---------------------------------------------------------------------------------------------


def export_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    format: str = "onnx",
    example: Tensor | tuple[Tensor, ...] | None = None,
) -> Path:
    """Write `model` to `path` in `format`, checked against eager PyTorch; return the path.

    Args:
        model: Any `nn.Module`; registered fieldguide models bring their own example input.
        path: The file to write (made atomically: a failure leaves nothing there).
        format: "onnx", "torchscript" or "torch.export".
        example: forward's positional inputs, a tensor or a tuple of tensors; None takes
            `model.example_input(2)`.

    Raises:
        ValueError: If `format` is unknown, the model cannot be exported to it (`REFUSALS`), or
            the file's outputs differ from eager PyTorch's.
        ModuleNotFoundError: For "onnx" without onnx and onnxruntime installed.
        RuntimeError: If torch cannot capture a model `REFUSALS` does not refuse, or the
            format's runtime cannot run the file.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"export_model expects model as a torch nn.Module; got {type(model).__name__}."
        )
    format = _check_format(format)
    target = _check_output(path, format)
    refused = refusal(model, format)
    if refused:
        raise ValueError(refused)
    if format == "onnx":
        _require_onnx()
    inputs = _inputs(model, example)
    return _write(model, target, format, inputs, given=example is not None)


def export(
    run_dir: str | os.PathLike[str],
    format: str = "onnx",
    output: str | os.PathLike[str] | None = None,
) -> Path:
    """Export the trained model of a finished run; return the file's path.

    Args:
        run_dir: A run folder `fieldguide train` finished (config.toml, model.safetensors).
        format: "onnx", "torchscript" or "torch.export".
        output: The file to write; None writes RUN/model.onnx, RUN/model.ts or RUN/model.pt2.

    The model is rebuilt as `fieldguide.api.generate.load_run_model` does (weights checked by
    sha256) and exported with its own example input; see `export_model`.
    """
    from fieldguide.api.generate import load_run_model

    format = _check_format(format)
    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"export expects a run folder that `fieldguide train` finished; {run_dir} does not "
            f"exist."
        )
    target = _check_output(
        folder / f"model{SUFFIXES[format]}" if output is None else output, format
    )
    model = load_run_model(folder)
    return export_model(model, target, format)


# ---------------------------------------------------------------------------------------------
# The support table of docs/export.md
# ---------------------------------------------------------------------------------------------


def _presets_to_try(every: bool = False) -> list[str]:
    """Presets that cover `REFUSALS`, or every preset when `every`.

    Per class and declared outcome (the set of refused formats), the preset with the fewest
    parameters.
    """
    from fieldguide.api.catalog import load_catalog
    from fieldguide.models.registry import create_model, get_entry, list_models

    if every:
        return list_models()
    sizes = {name: row["parameters"] for name, row in load_catalog().items()}
    best: dict[tuple, tuple[int, str]] = {}
    for name in list_models():
        entry = get_entry(name)
        refused = refused_formats(entry.cls, entry.config)
        group = (entry.cls.__name__, None if refused is None else tuple(sorted(refused)))
        size = sizes[name] if name in sizes else create_model(name).num_parameters()
        if group not in best or size < best[group][0]:
            best[group] = (size, name)
    return sorted(name for _, name in best.values())


def confirm_refusals(log: Callable[[str], None] = print, every: bool = False) -> list[str]:
    """Export presets in every format and list where `REFUSALS` is wrong about them.

    A format the table allows must export with parity; a refused one must fail (capture or
    parity). By default one preset per class and declared outcome (a few minutes); `every`
    tries all of them. The docs generator runs it, the tests do not.
    """
    from fieldguide.models.registry import create_model

    wrong = []
    with tempfile.TemporaryDirectory() as folder:
        for name in _presets_to_try(every):
            for format in FORMATS:
                torch.manual_seed(0)
                model = create_model(name)
                if refused_formats(type(model), model.config) is None:
                    wrong.append(f"{type(model).__name__} ({name}) has no entry in REFUSALS")
                    break
                path = Path(folder) / f"{name}{SUFFIXES[format]}"
                try:
                    _write(model, path, format, _inputs(model, None), given=False)
                    works, why = True, ""
                except Exception as error:  # noqa: BLE001 - any failure means "does not export"
                    works, why = False, str(error).splitlines()[0][:200]
                path.unlink(missing_ok=True)
                claimed = format in supported_formats(model)
                log(f"{name:22} {format:13} {'exports' if works else 'fails: ' + why}")
                if works != claimed:
                    said = "exports" if claimed else "is refused"
                    wrong.append(f"{name} {said} in REFUSALS for {format}, but {why or 'exports'}")
    return wrong


def support_markdown() -> str:
    """docs/export.md: every registered preset x format, exported or not and why not."""
    from fieldguide.models.registry import get_entry, list_models

    reasons: list[str] = []
    rows = []
    counts = dict.fromkeys(FORMATS, 0)
    names = list_models()
    for name in names:
        entry = get_entry(name)
        refused = refused_formats(entry.cls, entry.config)
        cells = []
        for format in FORMATS:
            if refused is None:
                cells.append("not declared")
            elif format not in refused:
                cells.append("yes")
                counts[format] += 1
            else:
                if refused[format] not in reasons:
                    reasons.append(refused[format])
                cells.append(f"no ({reasons.index(refused[format]) + 1})")
        cls = entry.cls.__name__
        rows.append(f"| {name} | {entry.family} | {cls} | " + " | ".join(cells) + " |")
    exported = ", ".join(f"{format} {counts[format]}" for format in FORMATS)
    return "\n".join(
        [
            "# Export: which models export to which format",
            "",
            "Generated from the code by `python -m fieldguide.api.export docs/export.md`, which",
            "first exports the smallest preset of each class and declared outcome in every format",
            "(`--all`: every preset) and stops if `REFUSALS` in fieldguide/api/export.py is wrong",
            "about any of them; a test fails when this file is stale.",
            "",
            "`fieldguide export RUN --format onnx|torchscript|torch.export [-o FILE]` writes",
            "RUN/model.onnx, RUN/model.ts or RUN/model.pt2; `fieldguide.api.export.export_model`",
            "exports a model in memory. Every file is read back with its runtime and compared with",
            f"eager PyTorch (tolerance {TOLERANCE:g}) on the export's input and on another batch",
            "size and sequence length before it appears. Dynamic axes: the batch, and the steps",
            "of sequence and token inputs. A refused model is refused before anything is written,",
            "in one sentence that names the formats that work. ONNX needs",
            f"`{INSTALL}`.",
            "",
            f"Presets that export, of {len(names)}: {exported}.",
            "",
            "| preset | family | class | onnx | torchscript | torch.export |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Why not:",
            "",
            *(f"{i}. {reason}." for i, reason in enumerate(reasons, 1)),
            "",
        ]
    )


if __name__ == "__main__":
    # python -m fieldguide.api.export [docs/export.md] [--all]: --all tries every preset.
    paths = [a for a in sys.argv[1:] if a != "--all"]
    target = Path(paths[0] if paths else "docs/export.md")
    problems = confirm_refusals(every="--all" in sys.argv[1:])
    if problems:
        sys.exit("REFUSALS is wrong, so docs/export.md was not written:\n" + "\n".join(problems))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(support_markdown())
    print(f"wrote {target}")
