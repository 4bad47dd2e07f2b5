"""compare (a leaderboard under one budget) and tour (every family, one table)."""

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from fieldguide.api import compare as compare_mod
from fieldguide.api import tour as tour_mod
from fieldguide.api.compare import (
    Row,
    compare,
    lower_is_better,
    pareto_front,
    parse_budget,
    rank,
)
from fieldguide.api.config import RunConfig
from fieldguide.api.tour import (
    COLUMNS,
    README_END,
    README_START,
    Stop,
    readme_table,
    stops_for,
    tour,
    tour_families,
    update_readme,
)
from fieldguide.train.config import OptionError

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def train_calls(monkeypatch):
    """Every call of api.run.train, as its keyword arguments (the run goes ahead)."""
    from fieldguide.api import run

    calls = []
    real = run.train

    def counted(*args, **kwargs):
        calls.append({"args": args, **kwargs})
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "train", counted)
    return calls


def _row(model, value, latency=1.0):
    return Row(model, "mlp", "accuracy", value, None, 10, 1.0, latency, 100.0, f"/runs/{model}")


# -- budgets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, seconds, steps",
    [("90s", 90, 0), ("2m", 120, 0), ("1.5h", 5400, 0), ("500steps", 0, 500), ("1 step", 0, 1)],
)
def test_parse_budget_reads_times_and_steps(text, seconds, steps):
    budget = parse_budget(text)
    assert (budget.seconds, budget.steps) == (seconds, steps)
    assert budget.recipe() == ({"time_limit": seconds} if seconds else {"max_steps": steps})


@pytest.mark.parametrize("text", ["abc", "5", "0s", "-1m", "2.5steps", "0steps", "3 parsecs", ""])
def test_parse_budget_refuses_in_one_sentence_naming_the_flag(text):
    with pytest.raises(ValueError, match="budget expects a positive time") as info:
        parse_budget(text)
    assert isinstance(info.value, OptionError)
    assert "--budget expects" in info.value.render(lambda name: "--" + name)
    assert str(info.value).count(". ") == 0  # one sentence


# -- ranking and the Pareto front ----------------------------------------------------------------
def test_rank_orders_by_the_metric_direction_unfinished_last():
    rows = [_row("a", 0.5), _row("b", None), _row("c", 0.9), _row("d", 0.7)]
    assert [r.model for r in rank(rows, lower=False)] == ["c", "d", "a", "b"]
    assert [r.model for r in rank(rows, lower=True)] == ["a", "d", "c", "b"]


def test_pareto_front_keeps_only_points_nothing_beats_on_both():
    points = [(1.0, 0.80), (2.0, 0.90), (3.0, 0.85), (0.5, 0.70), (2.0, 0.80)]
    assert sorted(pareto_front(points, lower=False)) == [0, 1, 3]
    # lower is better: the fastest point with the smallest error wins everything
    assert pareto_front([(1.0, 0.1), (2.0, 0.2), (0.5, 0.3)], lower=True) == [0, 2]


def test_metric_directions_cover_density_metrics():
    assert lower_is_better("test/mase") and lower_is_better("bits_per_dim")
    assert lower_is_better("nll") and not lower_is_better("accuracy")


# -- compare end to end --------------------------------------------------------------------------
MODELS = ["mlp-small", "linear"]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare") / "board"
    lines = []
    result = compare(
        "two-moons", ",".join(MODELS), budget="20steps", out=folder, progress="quiet",
        log=lines.append,
    )  # fmt: skip
    return result, folder, lines


def test_compare_ranks_models_by_the_task_metric(board):
    result, folder, _ = board
    assert result.metric == "accuracy" and not result.lower_is_better
    assert sorted(r.model for r in result.rows) == sorted(MODELS)
    values = [r.value for r in result.rows]
    assert values == sorted(values, reverse=True)
    saved = json.loads((folder / "leaderboard.json").read_text())
    assert [r["model"] for r in saved["rows"]] == [r.model for r in result.rows]
    assert saved["best_run"] == result.rows[0].run_dir


def test_compare_rows_carry_costs_and_calibration(board):
    result, _, _ = board
    for row in result.rows:
        assert 0 <= row.value <= 1
        assert row.ece is not None and 0 <= row.ece <= 1  # a classifier: calibration
        assert row.latency_ms is not None and row.latency_ms > 0
        assert row.throughput is not None and row.throughput > 0
        assert Path(row.run_dir, "report.md").is_file()
        assert row.baselines  # the task's baselines on the same test rows
    net = next(r for r in result.rows if r.model == "mlp-small")
    assert net.parameters > 0
    linear = next(r for r in result.rows if r.model == "linear")
    assert any("does not apply" in note for note in linear.notes)  # one pass, no budget


def test_compare_trains_every_model_on_one_split_under_the_budget(board):
    result, _, _ = board
    configs = {r.model: RunConfig.from_toml(Path(r.run_dir, "config.toml")) for r in result.rows}
    assert len({c.data for c in configs.values()}) == 1  # name, split seed, fractions
    assert configs["mlp-small"].train.max_steps == 20
    last = Path(result.rows[0].run_dir).parent.glob("*mlp-small*/metrics.jsonl")
    steps = [json.loads(line)["step"] for line in next(last).read_text().splitlines()]
    assert max(steps) <= 20


def test_compare_writes_markdown_plot_and_best_link(board):
    result, folder, _ = board
    text = (folder / "leaderboard.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    for column in ("accuracy", "ECE", "parameters", "train time", "latency p50", "throughput"):
        assert column in header
    best = result.rows[0]
    assert f"Best: `{best.model}`" in text
    assert (folder / "pareto.png").read_bytes()[:8] == PNG_MAGIC
    link = folder / "best"
    if link.is_symlink():
        assert link.resolve() == Path(best.run_dir).resolve()


def test_compare_resume_skips_finished_models(board, train_calls):
    _, folder, _ = board
    before = sorted(p.name for p in (folder / "runs").iterdir())
    lines = []
    again = compare(resume=folder, progress="quiet", log=lines.append)
    assert train_calls == []
    assert sum("finished earlier, skipped" in line for line in lines) == len(MODELS)
    assert sorted(p.name for p in (folder / "runs").iterdir()) == before
    assert [r.model for r in again.rows] == [r.model for r in board[0].rows]


def test_compare_resume_continues_an_interrupted_run_from_its_checkpoint(
    board, train_calls, tmp_path
):
    _, original, _ = board
    folder = tmp_path / "copy"
    shutil.copytree(original, folder, symlinks=True)
    state = json.loads((folder / "state.json").read_text())
    run_dir = Path(state["trained"]["mlp-small"]["run_dir"])
    moved = folder / "runs" / run_dir.name
    for key in ("trained", "finished"):
        del state[key]["mlp-small"]  # as if Ctrl-C had stopped it
    (folder / "state.json").write_text(json.dumps(state))
    (moved / "report.md").unlink()
    (moved / "model.safetensors").unlink()
    before = sorted(p.name for p in (folder / "runs").iterdir())
    board2 = compare(resume=folder, progress="quiet", log=lambda _: None)
    assert len(train_calls) == 1 and Path(train_calls[0]["resume"]) == moved
    assert sorted(p.name for p in (folder / "runs").iterdir()) == before  # no new run
    assert (moved / "report.md").is_file()
    assert {r.model for r in board2.rows} == set(MODELS)


def test_compare_resume_refuses_other_models_and_non_compare_folders(board, tmp_path):
    _, folder, _ = board
    with pytest.raises(ValueError, match="resume continues the compare"):
        compare("two-moons", "mlp,mlp-small", resume=folder)
    with pytest.raises(ValueError, match="resume expects a compare folder with a state.json"):
        compare(resume=tmp_path)


@pytest.mark.parametrize(
    "models, budget, match",
    [
        ("mlp-small,mlp-smal", "20steps", "did you mean"),
        ("mlp-small,gcn", "20steps", "cannot train model 'gcn' on 'two-moons'"),
        ("mlp-small,siamese-mlp", "20steps", "must all train the same task"),
        ("mlp-small", "20steps", "two or more"),
        ("mlp-small,mlp-small", "20steps", "names a model twice"),
        ("mlp-small,mlp", "twenty", "budget expects"),
    ],
)
def test_compare_refuses_bad_input_before_training(models, budget, match, tmp_path, train_calls):
    with pytest.raises(ValueError, match=match):
        compare("two-moons", models, budget=budget, out=tmp_path / "board")
    assert train_calls == [] and not (tmp_path / "board").exists()


def test_main_compare_prints_the_board_of_a_resumed_folder(board, capsys):
    parser = argparse.ArgumentParser()
    compare_mod.add_compare_arguments(parser)
    args = parser.parse_args(["--resume", str(board[1]), "--progress", "quiet"])
    assert compare_mod.main_compare(args) == 0
    out = capsys.readouterr().out
    assert all(f"`{m}`" in out for m in MODELS) and str(board[1]) in out
    with pytest.raises(ValueError, match="--data and --models"):
        compare_mod.main_compare(parser.parse_args(["--data", "two-moons"]))


# -- tour ----------------------------------------------------------------------------------------
def _table(text):
    """(header cells, rows of cells) of the tour table in `text`."""
    lines = [line for line in readme_table(text).splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return cells[0], cells[2:]


def test_every_family_has_a_tour_stop():
    assert {s.family for s in stops_for()} == set(tour_families())
    assert "classical" in tour_families()
    assert len({s.key for s in stops_for()}) == len(stops_for())


def test_stops_for_refuses_unknown_families():
    with pytest.raises(ValueError, match="unknown family 'gnnn'; did you mean 'gnn'"):
        stops_for("mlp,gnnn")
    assert [s.family for s in stops_for(["gnn", "mlp"])] == ["mlp", "gnn"]  # tour order


@pytest.fixture(scope="module")
def small_tour(tmp_path_factory):
    root = tmp_path_factory.mktemp("tour")
    lines = []
    result = tour(
        "20steps", "mlp,gnn", out=root / "tour.md", state_dir=root / "state", log=lines.append
    )
    return result, root, lines


def test_tour_writes_one_table_with_a_row_per_family(small_tour):
    result, root, lines = small_tour
    text = (root / "tour.md").read_text()
    header, rows = _table(text)
    assert tuple(header) == COLUMNS
    assert [r[1] for r in rows] == ["mlp", "gnn"]
    assert all(len(r) == len(COLUMNS) for r in rows)
    for row in rows:
        assert re.fullmatch(r"[\w@]+=-?\d+\.\d+ [↑↓]", row[4]), row[4]
        assert re.fullmatch(r".+: [\w@]+=-?\d+\.\d+", row[5]), row[5]  # best baseline
        assert re.fullmatch(r"[\d,]+", row[6]) and row[7].endswith(" s")
        assert row[8].endswith(" ms")
    assert "fieldguide tour --budget 20steps --families mlp,gnn" in text
    assert "CPU(s)" in text and "torch" in text
    assert [line.split(":")[0] for line in lines if line.endswith("...")] == [
        "[1/2] mlp",
        "[2/2] gnn",
    ]
    assert result["failed"] == [] and not result["interrupted"]


def test_tour_resume_skips_finished_families(small_tour, train_calls):
    _, root, _ = small_tour
    lines = []
    tour("20steps", "mlp,gnn", out=root / "again.md", state_dir=root / "state", log=lines.append)
    assert train_calls == []
    assert all(line.endswith("finished earlier, skipped") for line in lines)
    assert _table((root / "again.md").read_text())[1] == _table((root / "tour.md").read_text())[1]


def test_tour_row_says_which_package_is_missing(monkeypatch, tmp_path, train_calls):
    from fieldguide.models.pretrained import Carrier

    monkeypatch.setattr(Carrier, "installed", lambda self: False)
    result = tour("20steps", "mobilenet", out=tmp_path / "t.md", state_dir=tmp_path, log=print)
    assert train_calls == [] and result["failed"] == []
    _, rows = _table((tmp_path / "t.md").read_text())
    assert rows[0][1] == "mobilenet" and rows[0][4].startswith("not run: needs ")
    assert "pip install" in rows[0][4]


def test_update_readme_copies_the_table_between_the_markers(small_tour, tmp_path):
    _, root, _ = small_tour
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{README_START}\nold table\n{README_END}\nafter\n")
    update_readme(readme, root / "tour.md")
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n\nbefore\n")
    assert text.endswith(f"{README_END}\nafter\n")
    assert readme_table(text) == readme_table((root / "tour.md").read_text())
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="tour:start"):
        update_readme(readme, root / "tour.md")


def test_main_tour_parses_its_flags(small_tour, tmp_path, capsys):
    _, root, _ = small_tour
    parser = argparse.ArgumentParser()
    tour_mod.add_tour_arguments(parser)
    args = parser.parse_args(
        ["--budget", "20steps", "--families", "mlp", "--state-dir", str(root / "state"),
         "--out", str(tmp_path / "t.md")]
    )  # fmt: skip
    assert tour_mod.main_tour(args) == 0
    assert _table((tmp_path / "t.md").read_text())[1][0][1] == "mlp"
    args = parser.parse_args(["--budget", "soon"])
    with pytest.raises(ValueError, match="budget expects"):
        tour_mod.main_tour(args)


def test_committed_tour_has_the_table_and_every_family():
    path = REPO / "docs" / "tour.md"
    if not path.is_file():
        pytest.skip("docs/tour.md is produced by `fieldguide tour`; not generated yet")
    text = path.read_text()
    assert text.startswith("# ") and "Regenerated with `fieldguide tour" in text
    header, rows = _table(text)
    assert tuple(header) == COLUMNS
    assert all(len(r) == len(COLUMNS) for r in rows)
    assert set(tour_families()) <= {r[1] for r in rows}
    for row in rows:
        # a number, or the package a stop needs; never a failed stop
        assert re.fullmatch(r"[\w@]+=-?\d+\.\d+ [↑↓]", row[4]) or row[4].startswith("not run")


def test_tour_row_falls_back_to_seasonal_naive_and_hides_zero_parameters():
    stop = Stop("Time series", "rnn", "gru", "sunspots")
    record = {
        "metric": "mase", "value": 1.2, "baselines": {}, "parameters": 0,
        "train_seconds": 3.0, "latency_ms": 0.5, "test_metrics": {"test/snaive_ratio": 0.97},
    }  # fmt: skip
    cells = [c.strip() for c in tour_mod.table_row(stop, record).strip("|").split(" | ")]
    assert cells[4] == "mase=1.2000 ↓" and cells[6] == "-"
    assert cells[5] == "seasonal naive: snaive_ratio=1 (this model 0.9700)"
    record["baselines"] = {"a": {"mase": 1.5}, "b": {"mase": 1.1}, "c": {"mae": 0.1}}
    assert tour_mod.table_row(stop, record).split(" | ")[5] == "b: mase=1.1000"  # the best


def test_tour_row_of_a_failed_stop_says_why():
    stop = Stop("Graphs", "gnn", "gcn", "karate")
    row = tour_mod.table_row(stop, {"failed": "ValueError: x | y"})
    assert row.split(" | ")[4] == "failed: ValueError: x \\| y"  # pipes escaped
    assert row.count(" | ") == len(COLUMNS) - 1


def test_tour_stop_key_names_family_model_and_data():
    assert Stop("Graphs", "gnn", "gcn", "karate").key == "gnn/gcn/karate"


def test_trainer_monitor_mode_minimises_density_metrics():
    from fieldguide.train.loop import monitor_mode

    assert monitor_mode("val/bits_per_dim") == "min" and monitor_mode("val/nll") == "min"


def test_a_run_writes_its_measures_and_compare_reads_them_without_rebuilding(tmp_path, monkeypatch):
    import json

    import fieldguide.api.run as run_module
    from fieldguide.api.compare import measure_run
    from fieldguide.api.run import train

    result = train(
        "mlp-small", "two-moons", runs_dir=tmp_path / "runs", progress="quiet", max_steps=5
    )
    measures = json.loads((result.run_dir / "measures.json").read_text())
    assert measures["task"] == "classification" and measures["parameters"] > 0
    assert measures["latency_ms"] > 0 and measures["throughput"] > 0
    assert "gradient-boosted trees (gbdt)" in measures["baselines"]

    def no_rebuild(*args, **kwargs):
        raise AssertionError("measure_run rebuilt the data and model")

    monkeypatch.setattr(run_module, "_load", no_rebuild)
    out = measure_run(result.run_dir, result.test_metrics)
    assert out["metric"] == "accuracy"
    assert (out["latency_ms"], out["baselines"]) == (
        measures["latency_ms"],
        measures["baselines"],
    )
