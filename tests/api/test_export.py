"""`fieldguide export`: files that equal eager PyTorch at new shapes, refusals that write nothing.

Each exported file is read back with its own runtime (onnxruntime, torch.jit.load,
torch.export.load) and run at a batch size and sequence length other than the export's, so a
shape baked into the file fails the comparison.
"""

from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_iris

from fieldguide.api.export import (
    FORMATS,
    SUFFIXES,
    export,
    export_model,
    load_exported,
    refused_formats,
    support_markdown,
    supported_formats,
)
from fieldguide.cli.main import main
from fieldguide.models.registry import create_model, get_entry, list_models
from tests.data.helpers import write_rows

ROOT = Path(__file__).resolve().parents[2]
# Within 1e-5 of eager, absolute (scaled by the output's size, as the export's own check is)
# and relative; measured: 0 for torch's runtimes, up to 3e-6 for ONNX Runtime.
TOL = 1e-5
FAMILIES = ["mlp", "resnet-tiny", "vit-tiny", "bert-tiny", "gpt-tiny", "gru", "tcn-small"]
CASES = [(name, format) for name in FAMILIES for format in FORMATS]


def _model(name):
    torch.manual_seed(0)
    return create_model(name).eval()


def _new_shape(model, batch=5, steps=9):
    """Inputs at a batch (and, for sequence and token models, a length) the export never saw."""
    torch.manual_seed(3)
    x = model.example_input(batch)
    x = x if isinstance(x, tuple) else (x,)
    if model.reads in ("sequences", "tokens"):
        assert x[0].shape[1] > steps  # the export saw the example's length, 16
        x = (x[0][:, :steps], *x[1:])
    return x


def _assert_equal_to_eager(model, path, format):
    run = load_exported(path, format)
    x = _new_shape(model)
    with torch.no_grad():
        want, got = model(*x), run(*x)
    assert got.shape == want.shape
    scale = max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, atol=TOL * scale, rtol=TOL)


@pytest.mark.parametrize(("name", "format"), CASES)
def test_exported_file_equals_eager_at_a_new_batch_size_and_length(tmp_path, name, format):
    model = _model(name)
    path = tmp_path / f"model{SUFFIXES[format]}"
    if format not in supported_formats(model):
        with pytest.raises(ValueError, match=f"{name} cannot be exported to {format}: .+; it"):
            export_model(model, path, format)
        assert list(tmp_path.iterdir()) == []
        return
    assert export_model(model, path, format) == path
    _assert_equal_to_eager(model, path, format)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_onnx_file_names_its_inputs_and_dynamic_axes(tmp_path):
    import onnx

    model = _model("gpt-tiny")
    path = export_model(model, tmp_path / "gpt.onnx")
    graph = onnx.load(str(path)).graph
    (x,) = graph.input
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    assert x.name == "x" and dims == ["batch", "steps"]
    assert [o.name for o in graph.output] == ["output"]


def test_a_given_example_and_the_model_mode_are_kept(tmp_path):
    model = _model("mlp").train()
    model.head.eval()  # a mixed mode, as when part of a model is frozen
    example = torch.randn(4, 64)
    export_model(model, tmp_path / "m.ts", "torchscript", example=example)
    assert model.training and not model.head.training  # eval only while export ran
    model.eval()
    run = load_exported(tmp_path / "m.ts")
    x = torch.randn(7, 64)
    torch.testing.assert_close(run(x), model(x), atol=TOL, rtol=TOL)


# ---------------------------------------------------------------------------------------------
# Refusals: one sentence, nothing written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
def test_graph_models_are_refused_in_every_format(tmp_path, format):
    model = _model("gcn")
    with pytest.raises(ValueError, match=r"gcn cannot be exported to .*sparse.*no format exports"):
        export_model(model, tmp_path / "g.bin", format)
    assert list(tmp_path.iterdir()) == []


def test_a_format_refusal_names_the_formats_that_work(tmp_path):
    with pytest.raises(ValueError, match="unrolls nn.GRU.*; it exports to onnx and torchscript."):
        export_model(_model("gru"), tmp_path / "m.pt2", "torch.export")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"format": "tflite"}, ValueError, r"export expects format as one of .*; got 'tflite'"),
        ({"format": None}, ValueError, r"format as one of .*got None"),
        ({"path": 3}, ValueError, r"output as a file path .*got int"),
        ({"path": "nowhere/m.onnx"}, ValueError, r"output in an existing folder"),
        ({"path": "m.onnx", "format": "torchscript"}, ValueError, r"name it m\.ts, or give"),
        ({"example": [1, 2]}, TypeError, r"example as a tensor or a tuple of tensors"),
        ({"model": "mlp"}, TypeError, r"model as a torch nn.Module; got str"),
    ],
)
def test_bad_arguments_are_one_sentence_and_write_nothing(
    tmp_path, monkeypatch, kwargs, error, match
):
    monkeypatch.chdir(tmp_path)
    args = {"model": _model("mlp"), "path": "m.onnx", "format": "onnx"} | kwargs
    with pytest.raises(error, match=match):
        export_model(**args)
    assert list(tmp_path.iterdir()) == []


class _BatchTwoOnly(torch.nn.Module):
    """Reads its batch size in Python: a trace or an export fixes what it saw."""

    def forward(self, x):
        return x * 2 if x.shape[0] == 2 else x


@pytest.mark.parametrize("format", FORMATS)
def test_a_capture_that_differs_from_eager_leaves_no_file(tmp_path, format):
    path = tmp_path / f"m{SUFFIXES[format]}"
    with pytest.raises((ValueError, RuntimeError), match=f"_BatchTwoOnly .*{format}"):
        export_model(_BatchTwoOnly(), path, format, example=torch.randn(2, 3))
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fieldguide\[export\]'"):
        export_model(_model("mlp"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(tmp_path / "no-such-run")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# A trained run, through the CLI
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    from fieldguide.api import train

    root = tmp_path_factory.mktemp("iris")
    d = load_iris()
    rows = [
        [*x, d.target_names[y]] for x, y in zip(d.data.tolist(), d.target.tolist(), strict=True)
    ]
    path = write_rows(root / "iris.csv", ["a", "b", "c", "d", "label"], rows)
    return train("mlp-small", str(path), runs_dir=root / "runs", progress="quiet", epochs=1).run_dir


def test_cli_exports_a_trained_run_next_to_it(iris_run, capsys):
    from fieldguide.api.generate import load_run_model

    assert main(["export", str(iris_run), "--format", "onnx"]) == 0
    path = Path(iris_run) / "model.onnx"
    assert f"written to {path}" in capsys.readouterr().err
    model = load_run_model(iris_run)
    x = torch.randn(6, model.config.in_channels)
    with torch.no_grad():
        torch.testing.assert_close(load_exported(path)(x), model(x), atol=TOL, rtol=TOL)


def test_cli_errors_name_the_flags(iris_run, tmp_path, capsys):
    assert main(["export", str(iris_run), "--format", "tflite"]) == 2
    assert "--format as one of 'onnx', 'torchscript', 'torch.export'; got 'tflite'" in (
        capsys.readouterr().err
    )
    out = tmp_path / "m.onnx"
    assert main(["export", str(iris_run), "--format", "torchscript", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--output m.onnx ends in .onnx" in err and "or give --format onnx" in err
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# The declared table and docs/export.md
# ---------------------------------------------------------------------------------------------


def test_every_registered_model_class_declares_its_formats():
    entries = [get_entry(name) for name in list_models()]
    missing = sorted({e.cls.__name__ for e in entries if refused_formats(e.cls, e.config) is None})
    assert not missing, f"add {missing} to REFUSALS in fieldguide/api/export.py"


def test_docs_export_md_is_current():
    assert (ROOT / "docs" / "export.md").read_text() == support_markdown(), (
        "docs/export.md is stale; regenerate it with `python -m fieldguide.api.export "
        "docs/export.md` (it first tries every model class in every format)"
    )


def test_presets_of_one_class_can_differ_by_config():
    # Hyena's filters export to torch.export, S4D's kernel does not (docs/export.md).
    assert "torch.export" in supported_formats(create_model("hyena"))
    assert "torch.export" not in supported_formats(create_model("s4d"))
    assert supported_formats(create_model("realnvp")) == FORMATS
    assert supported_formats(create_model("realnvp-cond")) == FORMATS  # labels made int64
    assert supported_formats(create_model("graphsage-max")) == ("torchscript",)
