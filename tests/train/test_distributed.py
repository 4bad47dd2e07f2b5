"""Multi-process training: 2 gloo ranks on the CPU against one process.

Every launch starts two fresh interpreters, so the ranks here train a task of plain torch (a
ClassificationTask imports torchmetrics, about 7 s per process on 2 cores), the module
launches five times in all, and runs are shared between tests through a module fixture.

Tolerance: the ranks sum their gradients in another order than one process adds the same
examples, so weights after 30 SGD steps agree to ~1e-6, not bitwise; the two ranks of one run
hold the same sums, so they agree bitwise, and so does a resumed run with the one it repeats.
The comparisons with one process use SGD: AdamW divides each gradient by its running RMS, so a
weight whose gradients are all near zero moves by about lr whatever their rounding, and such a
weight can differ by ~1e-6 relative to lr (3e-6 seen on digits), which says nothing of the sums.
"""

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from fieldguide.models.mlp import MLP, MLPConfig
from fieldguide.train import distributed
from fieldguide.train.checkpoint import latest_checkpoint, load_checkpoint
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer

# 100 examples in global micro-batches of 7: parts of 4 and 3 examples, and a last micro-batch
# of 2, whose parts of one example each are sent twice. 15 steps per epoch, 30 in all.
CFG = TrainConfig(epochs=2, batch_size=7, lr=1e-2, seed=3, warmup_fraction=0.2, checkpoint_every=4)
SGD = replace(CFG, optimizer="sgd", lr=0.1)
TARGET = "tests.train.test_distributed:rank_fit"


class Blobs:
    """Three synthetic Gaussian blobs in 8 dimensions, classified; plain torch, fast to import."""

    monitor = "val/accuracy"
    metric_names = ("loss", "accuracy")

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        centers = torch.randn(3, 8, generator=g) * 2
        self.splits = {}
        for split, m in (("train", 100), ("val", 40)):
            y = torch.randint(0, 3, (m,), generator=g)
            self.splits[split] = (centers[y] + torch.randn(m, 8, generator=g), y)

    @property
    def train_size(self) -> int:
        return len(self.splits["train"][1])

    def batch(self, split, index):
        x, y = self.splits[split]
        return x[index], y[index]

    def loss(self, model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    def evaluate(self, model, split, **options):
        x, y = self.splits[split]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(x)
        model.train(was_training)
        return {
            f"{split}/loss": F.cross_entropy(logits, y).item(),
            f"{split}/accuracy": (logits.argmax(-1) == y).float().mean().item(),
        }


def build(dropout: float):
    torch.manual_seed(0)
    # Layer norm, not batch norm: batch statistics of a rank's part differ from the batch's.
    config = MLPConfig(in_channels=8, out_dim=3, hidden_dim=16, norm="layer", dropout=dropout)
    return Blobs(), MLP(config)


def rank_fit(jobs: list[dict]) -> list[dict]:
    """One rank's trainings, in order (runs in the processes `distributed.launch` starts).

    Each job: out (its folder), dropout, sgd, resume, kill_at (rank 1 kills itself after that
    step).
    """
    torch.set_num_threads(1)
    world = distributed.join(2, "cpu")
    done = []
    for job in jobs:
        task, model = build(job.get("dropout", 0.0))
        out, kill_at = Path(job["out"]), job.get("kill_at", 0)

        def die(trainer, kill_at=kill_at):  # rank 1 vanishes mid-epoch, like a killed process
            if trainer.state.step == kill_at and world.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        trainer = Trainer(
            model,
            task,
            SGD if job.get("sgd") else CFG,
            checkpoint_dir=out / "checkpoint",
            metrics_path=out / "metrics.jsonl",
            callbacks=[die] if kill_at else [],
            progress="quiet",
        )
        result = trainer.fit(resume=job.get("resume", False))
        save_file(model.state_dict(), str(out / f"rank{world.rank}.safetensors"))
        (out / f"rank{world.rank}.json").write_text(json.dumps(result.history))
        done.append({"status": result.status, "step": result.step})
    return done


def fit_one(out: Path) -> None:
    task, model = build(0.0)
    Trainer(
        model,
        task,
        SGD,
        checkpoint_dir=out / "checkpoint",
        metrics_path=out / "metrics.jsonl",
        progress="quiet",
    ).fit()


def last_weights(out: Path) -> dict:
    weights, _ = load_checkpoint(latest_checkpoint(out / "checkpoint"))
    return weights


def assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def rank_weights(out: Path, rank: int) -> dict:
    return load_file(str(out / f"rank{rank}.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process and two ranks on the same recipe; and two ranks with dropout on."""
    root = tmp_path_factory.mktemp("ddp")
    fit_one(root / "one")
    for name in ("two", "dropout"):
        (root / name).mkdir()
    jobs = [{"out": str(root / "two"), "sgd": True}, {"out": str(root / "dropout"), "dropout": 0.1}]
    finished = {"status": "finished", "step": 30}
    assert distributed.launch(2, TARGET, {"jobs": jobs}) == [finished, finished]
    return root


# (1) -----------------------------------------------------------------------------------------
def test_two_ranks_equal_one_process_at_the_same_global_batch(runs):
    one, two = last_weights(runs / "one"), last_weights(runs / "two")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    # Both ranks hold the same weights, bit for bit (and kept the same best ones), with or
    # without dropout, whose masks differ between ranks.
    for name in ("two", "dropout"):
        assert_bitwise(rank_weights(runs / name, 0), rank_weights(runs / name, 1))


# (4) -----------------------------------------------------------------------------------------
def test_metrics_of_two_ranks_count_each_example_once(runs):
    two = json.loads((runs / "two" / "rank0.json").read_text())
    one = [json.loads(line) for line in (runs / "one" / "metrics.jsonl").read_text().splitlines()]
    # Rank 0 alone writes metrics.jsonl; rank 1 got the same records from it.
    written = (runs / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in written] == two
    assert json.loads((runs / "two" / "rank1.json").read_text()) == two
    assert len(two) == len(one) == 2
    for a, b in zip(one, two, strict=True):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for k in a:  # train/loss sums uneven parts and padded ones: each example counted once
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k
    # The last evaluation, of the 2-rank weights it saw, equals one process evaluating them.
    task, model = build(0.0)
    model.load_state_dict(last_weights(runs / "two"))
    again = task.evaluate(model, "val")
    assert {k: two[-1][k] for k in again} == again


# (2) -----------------------------------------------------------------------------------------
def test_resume_with_another_number_of_processes_is_refused(runs):
    task, model = build(0.0)
    trainer = Trainer(model, task, SGD, checkpoint_dir=runs / "two" / "checkpoint")
    with pytest.raises(ValueError, match=r"--nproc 1: it was written by a run with --nproc 2"):
        trainer.fit(resume=True)
    # Two ranks on one process's checkpoint: the ranks' error comes back as it was raised.
    job = {"out": str(runs / "one"), "sgd": True, "resume": True}
    with pytest.raises(ValueError, match=r"--nproc 2: it was written by a run with --nproc 1"):
        distributed.launch(2, TARGET, {"jobs": [job]})


# (3) -----------------------------------------------------------------------------------------
def test_a_killed_rank_stops_the_run_and_resuming_finishes_it(runs, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    job = {"out": str(broken), "dropout": 0.1}
    with pytest.raises(distributed.RankFailedError) as failed:
        distributed.launch(2, TARGET, {"jobs": [{**job, "kill_at": 10}]})
    assert str(failed.value) == "rank 1 of 2 was killed by SIGKILL, so all ranks stopped."
    last = latest_checkpoint(broken / "checkpoint")
    assert last.name == "step-00000008"
    _, state = load_checkpoint(last)
    assert state["world_size"] == 2 and len(state["rank_rng"]) == 2

    # Resumed with the same number of ranks, each rank continues its own dropout masks.
    done = distributed.launch(2, TARGET, {"jobs": [{**job, "resume": True}]})
    assert done == [{"status": "finished", "step": 30}]
    for rank in (0, 1):
        assert_bitwise(rank_weights(broken, rank), rank_weights(runs / "dropout", rank))
    reference = (runs / "dropout" / "metrics.jsonl").read_text()
    assert (broken / "metrics.jsonl").read_text() == reference


# The command line ----------------------------------------------------------------------------
def test_fieldguide_train_nproc_2_writes_one_run_like_one_process(tmp_path, capsys):
    from fieldguide.cli.main import main

    flags = ["train", "mlp", "--data", "digits", "--quiet", "--set", "dropout=0.0"]
    flags += ["--epochs", "1", "--max-steps", "6", "--batch-size", "32", "--optimizer", "sgd"]
    folders = {}
    for nproc in (1, 2):
        assert main([*flags, "--runs-dir", str(tmp_path / str(nproc)), "--nproc", str(nproc)]) == 0
        out = capsys.readouterr().out
        folders[nproc] = Path(out.split("run folder: ")[1].strip())
    one, two = (load_file(str(folders[n] / "model.safetensors")) for n in (1, 2))
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    assert len((folders[2] / "metrics.jsonl").read_text().splitlines()) == 1  # rank 0 alone
    _, state = load_checkpoint(latest_checkpoint(folders[2] / "checkpoint"))
    assert state["world_size"] == 2

    # A resume with another --nproc: one sentence naming both numbers, exit code 2.
    assert main(["train", "--resume", str(folders[2])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot resume") and "\n" not in err
    assert "with --nproc 1: it was written by a run with --nproc 2" in err
    assert main([*flags, "--nproc", "0"]) == 2
    assert "--nproc must be a positive integer" in capsys.readouterr().err
