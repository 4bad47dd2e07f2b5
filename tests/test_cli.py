import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fieldguide.cli.main import main

FAST = ["--epochs", "2", "--progress", "plain"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def only_run(runs: Path) -> Path:
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def test_list_and_show_answer_without_importing_torch():
    code = (
        "import sys, io, contextlib\n"
        "from fieldguide.cli.main import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    for argv in (['list'], ['show', 'resnet18'], ['data', 'list']):\n"
        "        assert main(argv) == 0\n"
        "print('torch' in sys.modules)\n"
        "print(buf.getvalue())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[0] == "False"
    assert "11,689,512" in out and "resnet-tiny" in out and "digits" in out
    assert "images (B, 3, H, W)" in out and "stem = imagenet" in out


def test_unknown_model_is_one_line_and_exit_code_2(capsys):
    code, out, err = run_cli(["show", "resnet19"], capsys)
    assert code == 2 and err.strip().count("\n") == 0
    assert "unknown model 'resnet19'; did you mean 'resnet18'" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        main(["--debug", "train", "--model", "resnet19", "--runs-dir", str(tmp_path)])


def test_train_writes_a_complete_run_folder_and_config_repeats_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, out, _ = run_cli(["train", "mlp-small", "--runs-dir", str(runs), *FAST], capsys)
    assert code == 0
    run = only_run(runs)
    assert {p.name for p in run.iterdir()} >= {
        "config.toml",
        "model.safetensors",
        "checkpoint",
        "metrics.jsonl",
        "curves.png",
        "report.md",
        "diagram.mmd",
    }
    # The diagram is of the model as trained: sized for the data (64 pixels in, 10 classes out).
    diagram = (run / "diagram.mmd").read_text()
    assert diagram.startswith("flowchart LR") and "HiddenBlock" in diagram
    assert f"run folder: {run}" in out and "test  loss" in out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    report = (run / "report.md").read_text()
    for needle in ("accuracy", "macro_f1", "ece", "parameters", "training time"):
        assert needle in report
    # The config file repeats the run: same seed, same data split, bitwise the same weights.
    runs2 = tmp_path / "again"
    assert (
        main(["train", "--config", str(run / "config.toml"), "--runs-dir", str(runs2), "--quiet"])
        == 0
    )
    first, second = (
        load_file(run / "model.safetensors"),
        load_file(only_run(runs2) / "model.safetensors"),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_flags_override_the_config_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    run_cli(["train", "mlp-small", "--runs-dir", str(runs), *FAST, "--set", "dropout=0.3"], capsys)
    run = only_run(runs)
    runs2 = tmp_path / "b"
    main(
        [
            "train",
            "--config",
            str(run / "config.toml"),
            "--epochs",
            "1",
            "--runs-dir",
            str(runs2),
            "--quiet",
        ]
    )
    text = (only_run(runs2) / "config.toml").read_text()
    assert "epochs = 1" in text and "dropout = 0.3" in text


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--lr", "-1"], "--lr must be a finite number > 0; got -1.0."),
        (["--lr", "nan"], "--lr must be a finite number > 0; got nan."),
        (["--weight-decay", "inf"], "--weight-decay must be a finite number >= 0; got inf."),
        (["--grad-clip", "-1"], "--grad-clip must be a finite number >= 0"),
        (["--label-smoothing", "1"], "--label-smoothing must be a finite number in [0, 1)"),
        (["--warmup-fraction", "nan"], "--warmup-fraction must be a finite number in [0, 1]"),
        (["--epochs", "0"], "--epochs must be an integer >= 1; got 0."),
        (["--batch-size", "-8"], "--batch-size must be an integer >= 1"),
        (["--image-size", "-1"], "--image-size must be an integer >= 0; got -1."),
        (["--val-fraction", "nan"], "--val-fraction must be a finite number in (0, 1)"),
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], "--val-fraction + --test-fraction"),
        (["--monitor", "accuracy"], "--monitor must be auto, train/loss or a validation metric"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps; got 'tpu'."),
        (["--target", "label"], "--target names a column of a CSV file"),
        (["--task", "regression"], "--task chooses forecasting, classification or regression"),
        (["--image-size", "16"], "--image-size resizes the images of an image folder"),
        (["--fanouts", "0"], "--fanouts expects positive integers"),
        (["--set", "dropout"], "--set expects KEY=VALUE"),
        (["--set", "hidden_dims=3"], "did you mean 'hidden_dim'"),
        (["--set", "num_layers=2.5"], "num_layers' expects int"),
        (["--data", "digitz"], "did you mean 'digits'"),
        (["--data", "digit-graphs"], "trains models that read graph; 'mlp-small' reads vectors"),
    ],
)
def test_bad_options_fail_before_any_run_folder_exists(tmp_path, capsys, args, match):
    runs = tmp_path / "runs"
    code, _, err = run_cli(["train", "mlp-small", "--runs-dir", str(runs), *FAST, *args], capsys)
    assert code == 2 and match in err
    assert not runs.exists() or not any(runs.iterdir())


def write_images(root: Path, corrupt: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 200)):
        (root / label).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / label / f"{i}.png")
    if corrupt:
        (root / "light" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_train_on_an_image_folder(tmp_path, capsys):
    data = write_images(tmp_path / "imgs")
    runs = tmp_path / "runs"
    code, out, err = run_cli(["train", "--data", str(data), "--runs-dir", str(runs), *FAST], capsys)
    assert code == 0, err
    run = only_run(runs)
    assert "resnet-tiny" in run.name and "imgs" in run.name  # auto picks the small-image ResNet
    assert 'name = "resnet-tiny"' in (run / "config.toml").read_text()


def test_corrupt_image_names_the_file_and_leaves_no_run_folder(tmp_path, capsys):
    data = write_images(tmp_path / "imgs", corrupt=True)
    runs = tmp_path / "runs"
    code, _, err = run_cli(["train", "--data", str(data), "--runs-dir", str(runs), *FAST], capsys)
    assert code == 2 and "broken.png" in err
    assert not runs.exists()


def test_train_on_a_csv_and_missing_target_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = ["size,colour,label"]
    for _ in range(60):
        big = rng.random() < 0.5
        rows.append(
            f"{rng.normal(5 if big else 1, 1):.3f},{rng.choice(['red', 'blue'])},"
            f"{'big' if big else 'small'}"
        )
    csv = tmp_path / "table.csv"
    csv.write_text("\n".join(rows) + "\n")
    runs = tmp_path / "runs"
    code, _, err = run_cli(
        ["train", "--data", str(csv), "--target", "label", "--runs-dir", str(runs)], capsys
    )
    assert code == 0, err
    name = only_run(runs).name  # auto on a small table: trees, checked against a linear model
    assert "gbdt" in name or "linear" in name, name
    code, _, err = run_cli(
        ["train", "--data", str(csv), "--target", "kind", "--runs-dir", str(tmp_path / "r2")],
        capsys,
    )
    assert code == 2 and "kind" in err and "label" in err
    assert not (tmp_path / "r2").exists()


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resume_finishes_the_run(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "fieldguide.cli.main", "train", "mlp-small", "--epochs", "6"]
    cmd += ["--batch-size", "8", "--progress", "plain", "--runs-dir", str(runs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # 157 steps per epoch: the signal lands early in epoch 2
        if line.startswith("epoch 1/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    run = only_run(runs)
    assert f"interrupted; resume with: fieldguide train --resume {run}" in out
    assert "checkpoint saved at" in out and any((run / "checkpoint").iterdir())
    assert not (run / "model.safetensors").exists()
    done = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["epoch"]
    # The signal lands while epoch 2 trains: epoch 1 is evaluated, and at most epoch 2 too.
    assert done in (1, 2), done
    assert (
        main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    )  # resume takes no other options
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    epochs = [
        json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == list(range(1, 7))
    assert (run / "model.safetensors").exists() and (run / "report.md").exists()


@pytest.mark.slow
def test_default_job_reaches_97_percent_on_digits(tmp_path, capsys):
    # What `make demo` runs: no arguments, the default model on the starter digits.
    code, out, err = run_cli(["train", "--runs-dir", str(tmp_path), "--progress", "plain"], capsys)
    assert code == 0, err
    run = only_run(tmp_path)
    line = next(line for line in out.splitlines() if line.startswith("test "))
    accuracy = float(line.split("accuracy ")[1].split()[0])
    assert accuracy >= 0.97, line
    assert "resnet-tiny" in run.name


def test_python_api_takes_recipe_fields_as_keywords(tmp_path):
    from fieldguide.api import train

    result = train("mlp-small", "digits", epochs=1, lr=1e-2, runs_dir=tmp_path, progress="quiet")
    assert "lr = 0.01" in (result.run_dir / "config.toml").read_text()
    assert 0 <= result.test_metrics["test/accuracy"] <= 1
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        train("mlp-small", "digits", epoch=1, runs_dir=tmp_path)


def test_help_documents_each_recipe_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "peak learning rate" in out and "micro-batches per optimizer step" in out


def test_forecasting_end_to_end_reports_mase(tmp_path, capsys):
    from tests.data.helpers import require_starter

    require_starter("sunspots")
    runs = tmp_path / "runs"
    args = ["train", "tcn-small", "--data", "sunspots", "--horizon", "4", "--runs-dir", str(runs)]
    code, out, err = run_cli([*args, *FAST], capsys)
    assert code == 0, err
    run = only_run(runs)
    report = (run / "report.md").read_text()
    assert "| task | forecasting |" in report and "| mase |" in report and "snaive_ratio" in report
    assert "horizon = 4" in (run / "config.toml").read_text()
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val/mase", "val/mae", "val/rmse", "val/smape", "val/snaive_ratio"} <= record.keys()


def test_sequence_classification_end_to_end(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", "gru", "--data", "pixel-digits", "--runs-dir", str(runs), "--epochs", "1"]
    code, out, err = run_cli([*args, "--quiet"], capsys)
    assert code == 0, err
    assert "| task | sequence-classification |" in (only_run(runs) / "report.md").read_text()
    assert "accuracy" in out


def test_forecasting_options_on_classification_data_are_refused(tmp_path, capsys):
    args = ["train", "gru", "--data", "pixel-digits", "--horizon", "3", "--runs-dir", str(tmp_path)]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "horizon applies to forecasting; 'pixel-digits' is sequence-class" in err
    assert not any(tmp_path.iterdir())


def test_node_classification_end_to_end_with_two_labels_per_class(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", "--data", "karate", "--labels-per-class", "2", "--runs-dir", str(runs)]
    code, out, err = run_cli([*args, *FAST], capsys)
    assert code == 0, err
    run = only_run(runs)
    report = (run / "report.md").read_text()
    assert "| task | node-classification |" in report and "`gcn`" in report  # auto picks gcn
    assert "4 train /" in report  # 2 labelled nodes for each of the 2 clubs
    assert "labels_per_class = 2" in (run / "config.toml").read_text()


def test_graph_folder_with_sampled_training_and_graph_classification(tmp_path, capsys):
    folder = tmp_path / "graph"
    folder.mkdir()
    rng = np.random.default_rng(0)
    nodes = ["id,f1,label"] + [f"n{i},{rng.normal():.3f},{i % 2}" for i in range(40)]
    (folder / "nodes.csv").write_text("\n".join(nodes) + "\n")
    edges = ["source,target"] + [f"n{i},n{(i + 2) % 40}" for i in range(40)]
    (folder / "edges.csv").write_text("\n".join(edges) + "\n")
    runs = tmp_path / "runs"
    args = [
        "train",
        "graphsage",
        "--data",
        str(folder),
        "--fanouts",
        "3,3",
        "--runs-dir",
        str(runs),
    ]
    code, _, err = run_cli([*args, *FAST], capsys)
    assert code == 0, err
    assert 'fanouts = "3,3"' in (only_run(runs) / "config.toml").read_text()

    more = tmp_path / "more"
    args = ["train", "gcn", "--data", "digit-graphs", "--max-steps", "5", "--runs-dir", str(more)]
    code, _, err = run_cli([*args, *FAST], capsys)
    assert code == 0, err
    report = (only_run(more) / "report.md").read_text()
    assert "| task | graph-classification |" in report and "| auroc |" in report
    assert 'readout = "mean"' in (only_run(more) / "config.toml").read_text()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["gcn", "--data", "karate", "--fanouts", "10"], "fanouts gives 1 hop(s) but gcn has 2"),
        (["gcn", "--data", "karate", "--fanouts", "ten,5"], "fanouts expects positive integers"),
        (["mlp", "--data", "digits", "--fanouts", "5,5"], "fanouts applies to node-classif"),
        (
            ["gcn", "--data", "digit-graphs", "--fanouts", "5,5"],
            "'digit-graphs' is graph-classification data, so leave fanouts out",
        ),
        (["gcn", "--data", "karate", "--horizon", "3"], "horizon applies to forecasting; 'karate'"),
        (["gcn", "--data", "digits", "--labels-per-class", "2"], "labels_per_class"),
    ],
)
def test_graph_options_that_cannot_apply_fail_before_any_run_folder(tmp_path, capsys, args, match):
    runs = tmp_path / "runs"
    code, _, err = run_cli(["train", *args, "--runs-dir", str(runs), *FAST], capsys)
    assert code == 2 and match in err, err
    assert not runs.exists() or not any(runs.iterdir())


def test_version_and_debug_after_the_command(tmp_path, capsys):
    from fieldguide import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"fieldguide {__version__}\n"
    with pytest.raises(ValueError, match="unknown model"):
        main(["train", "--model", "resnet19", "--debug", "--runs-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown model"):
        main(["show", "resnet19", "--debug"])
    assert main(["--debug", "list", "--family", "mlp"]) == 0  # before the command still works


def test_a_relative_csv_runs_again_from_any_folder_and_filled_cells_are_reported(
    tmp_path, monkeypatch, capsys
):
    rng = np.random.default_rng(0)
    rows = ["size,colour,label"]
    for i in range(60):
        big = i % 2 == 0
        size = "" if i in (3, 10, 41) else f"{rng.normal(5 if big else 1, 1):.3f}"
        colour = "" if i == 7 else ["red", "blue"][i % 3 == 0]
        rows.append(f"{size},{colour},{'big' if big else 'small'}")
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    (here / "table.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(here)
    code, out, err = run_cli(
        ["train", "mlp", "--data", "table.csv", "--runs-dir", "runs", *FAST], capsys
    )
    assert code == 0, err
    run = only_run(here / "runs")
    assert f'name = "{here / "table.csv"}"' in (run / "config.toml").read_text()
    assert f"run folder: {run}" in out  # absolute, so it can be pasted anywhere
    filled = "filled 3 missing cell(s) of numeric columns with the column's train median: size 3"
    blank = "1 missing cell(s) of categorical columns encode as all zeros (no category): colour 1"
    for note in (filled, blank):
        assert f"note: {note}" in out
    report = (run / "report.md").read_text()
    assert "## Notes" in report and all(f"- {n}" in report for n in (filled, blank))

    monkeypatch.chdir(elsewhere)
    args = ["train", "--config", str(run / "config.toml"), "--runs-dir", "again", "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--resume", str(run), "--quiet"], capsys)
    assert code == 0, err


def test_a_device_that_does_not_exist_is_refused_before_any_run_folder(tmp_path, capsys):
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    runs = tmp_path / "runs"
    code, _, err = run_cli(
        ["train", "mlp-small", "--device", missing, "--runs-dir", str(runs)], capsys
    )
    assert code == 2 and err.startswith(f"error: --device asks for '{missing}' but"), err
    assert err.count("\n") == 1 and not runs.exists()


def test_a_failure_before_the_first_step_removes_the_run_folder(tmp_path, capsys, monkeypatch):
    from fieldguide.train.loop import Trainer

    def fail(self):
        raise RuntimeError("the training split is broken")

    monkeypatch.setattr(Trainer, "_plan", fail)
    runs = tmp_path / "runs"
    code, _, err = run_cli(["train", "mlp-small", "--runs-dir", str(runs), *FAST], capsys)
    assert code == 2 and "the training split is broken" in err
    assert runs.is_dir() and not any(runs.iterdir())


def test_python_dash_m_fieldguide_is_the_cli():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "fieldguide", "show", "mlp"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "mlp" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fieldguide", "show", "no-such-model"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "no-such-model" in bad.stderr


def test_auto_fits_trees_first_on_a_small_table_and_refuses_loop_options_it_would_drop(
    tmp_path, capsys
):
    rng = np.random.default_rng(1)
    rows = ["width,height,label"]
    for i in range(80):
        big = i % 2 == 0
        rows.append(f"{rng.normal(3 if big else 1, 1):.3f},{rng.normal(0, 1):.3f},{'ab'[big]}")
    path = tmp_path / "table.csv"
    path.write_text("\n".join(rows) + "\n")
    runs = tmp_path / "runs"
    code, out, err = run_cli(["train", "--data", str(path), "--runs-dir", str(runs)], capsys)
    assert code == 0, err
    assert "trees first" in out and "5-fold cross-validation on train + validation" in out
    chosen = "gbdt" if "note: model auto chose gbdt:" in out else "linear"
    assert f"note: model auto chose {chosen}:" in out
    run = only_run(runs)
    assert f'name = "{chosen}"' in (run / "config.toml").read_text()
    assert "logistic regression" in (run / "report.md").read_text()  # the baselines beside it
    code, _, err = run_cli(
        ["train", "--data", str(path), "--epochs", "3", "--runs-dir", str(tmp_path / "r2")], capsys
    )
    assert code == 2 and f"--model auto chose {chosen}" in err and "--epochs" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "r2").exists()
