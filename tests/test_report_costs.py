"""The evaluation checklist of report.md: cost numbers and class numbers against recomputation."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from sklearn.datasets import load_diabetes
from torch import nn

from fieldguide.api import costs
from tests.data.helpers import write_rows


def _section(report: str, title: str) -> str:
    """The text of `## title` up to the next `## ` heading."""
    start = report.index(f"\n## {title}\n")
    end = report.find("\n## ", start + 1)
    return report[start : end if end >= 0 else None]


def _row(section: str, label: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"| {label}"))


def _ints(text: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", text)]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from fieldguide.api import train

    root = tmp_path_factory.mktemp("digits")
    result = train(
        "mlp",
        "digits",
        runs_dir=root,
        progress="quiet",
        model_config={"hidden_dim": 16},
        epochs=1,
        max_steps=2,
        batch_size=32,
    )
    return result, (result.run_dir / "report.md").read_text()


def test_cost_numbers_match_the_saved_weights(digits_run):
    from fieldguide.train.weights import load_weights

    result, report = digits_run
    cost = _section(report, "Cost")
    weights = load_weights(result.run_dir / "model.safetensors")
    total = sum(t.numel() for t in weights.values())
    assert _ints(_row(cost, "parameters"))[:2] == [total, total]
    size = (result.run_dir / "model.safetensors").stat().st_size
    assert _ints(_row(cost, "size on disk"))[0] == size
    # An MLP: every matrix is a Linear layer, 2 FLOPs per multiply-add on one example.
    matmul = sum(2 * t.numel() for name, t in weights.items() if t.ndim == 2)
    assert _ints(_row(cost, "FLOPs per example"))[0] == matmul
    latency = _row(cost, "inference latency")
    assert "CPU thread(s)" in latency
    p50, p95 = (float(x) for x in re.findall(r"p\d\d ([\d.]+) ms", latency))
    assert 0 < p50 <= p95
    assert re.search(r"[\d,]+ examples/s at batch 32", _row(cost, "inference throughput"))


def test_confusion_matrix_and_per_class_scores_agree_with_the_test_accuracy(digits_run):
    result, report = digits_run
    classes = _section(report, "Classes")
    lines = classes.splitlines()
    matrix = torch.tensor(
        [_ints(line.split("|", 2)[2]) for line in lines if line.startswith("| **")]
    )
    assert matrix.shape == (10, 10)
    assert matrix.sum() == 270  # the digits test split
    assert matrix.diag().sum().item() / 270 == pytest.approx(
        result.test_metrics["test/accuracy"], abs=1e-6
    )
    start = lines.index("| class | precision | recall | F1 | support |")
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[start + 2 : start + 12]]
    for c, (_, precision, recall, f1, support) in enumerate(table):
        tp, predicted, present = matrix[c, c].item(), matrix[:, c].sum().item(), matrix[c].sum()
        assert int(support) == present
        assert recall == f"{tp / present:.4f}"
        assert precision == ("-" if predicted == 0 else f"{tp / predicted:.4f}")
        assert f1 == f"{2 * tp / (predicted + present):.4f}"
    assert "Class imbalance" not in classes  # digits is balanced


def test_reliability_diagram_is_written_and_its_bins_count_the_test_split(digits_run):
    import matplotlib.image

    result, report = digits_run
    path = result.run_dir / "reliability.png"
    assert "](reliability.png)" in report
    assert matplotlib.image.imread(path).shape[2] in (3, 4)
    rows = [line for line in _section(report, "Classes").splitlines() if line.startswith("| (")]
    counts = [int(line.split("|")[2]) for line in rows]
    accuracy = [float(line.split("|")[4]) for line in rows]
    assert sum(counts) == 270
    correct = sum(n * a for n, a in zip(counts, accuracy, strict=True))
    assert correct / 270 == pytest.approx(result.test_metrics["test/accuracy"], abs=1e-3)


def test_flop_count_of_a_known_mlp_and_parameter_counts_with_a_frozen_layer():
    net = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    net[0].weight.requires_grad_(False)
    task = SimpleNamespace(
        eval_size=lambda split: 4,
        batch=lambda split, index: (torch.randn(4, 7)[index], torch.zeros(4)[index]),
        outputs=lambda model, batch: model(batch[0]),
    )
    flops, shapes = costs.flops_per_example(task, net)
    assert flops == 2 * (7 * 5 + 5 * 3)
    assert shapes == "(1, 7), (1,)"
    assert costs.parameter_counts(net) == (58, 58 - 35)
    assert costs.tensor_bytes(net) == 58 * 4


def test_a_model_the_counters_cannot_run_gets_reasons_not_a_failed_run(tmp_path):
    def broken(model, batch):
        raise RuntimeError("sparse op\nnot supported")

    task = SimpleNamespace(
        eval_size=lambda split: 4,
        batch=lambda split, index: (torch.randn(4, 7)[index],),
        outputs=broken,
        num_classes=3,
        labels=broken,
    )
    run = SimpleNamespace(train=SimpleNamespace(batch_size=8, class_weights="none"))
    result = SimpleNamespace(device="cpu", precision="fp32")
    text = costs.checklist(run, task, nn.Linear(7, 3), result, tmp_path)
    cost = _section(text, "Cost")
    assert _ints(_row(cost, "parameters"))[:2] == [24, 24]
    assert "tensor bytes; model.safetensors not written yet" in _row(cost, "size on disk")
    for label in ("FLOPs per example", "inference latency", "inference throughput"):
        assert "not measured (RuntimeError: sparse op not supported)" in _row(cost, label)
    assert "## Classes\n\nnot measured (" in text


def test_imbalanced_training_classes_earn_a_warning(tmp_path):
    from fieldguide.api import train

    g = torch.Generator().manual_seed(0)
    labels = ["common"] * 90 + ["rare"] * 10
    rows = [[*torch.randn(3, generator=g).tolist(), y] for y in labels]
    path = write_rows(tmp_path / "skewed.csv", ["a", "b", "c", "label"], rows)
    result = train("mlp", str(path), runs_dir=tmp_path / "runs", progress="quiet", max_steps=2)
    classes = _section((result.run_dir / "report.md").read_text(), "Classes")
    assert "Class imbalance" in classes and "consider `--class-weights balanced`" in classes
    ratio = float(re.search(r"ratio is ([\d.]+)", classes).group(1))
    assert ratio > 3


def test_a_regression_report_has_the_cost_section_and_no_class_section(tmp_path):
    from fieldguide.api import train

    d = load_diabetes()
    rows = [[*x, y] for x, y in zip(d.data[:120].tolist(), d.target[:120].tolist(), strict=True)]
    path = write_rows(tmp_path / "diabetes.csv", [*d.feature_names, "target"], rows)
    result = train("mlp", str(path), runs_dir=tmp_path / "runs", progress="quiet", max_steps=2)
    report = (result.run_dir / "report.md").read_text()
    cost = _section(report, "Cost")
    assert "not measured" not in cost
    assert _ints(_row(cost, "FLOPs per example"))[0] > 0
    assert "## Classes" not in report and not (result.run_dir / "reliability.png").exists()
