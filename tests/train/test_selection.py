"""Which epoch's weights a run keeps: the monitored metric, with val/loss breaking its ties.

The validation metrics here are scripted per epoch (a stand-in task wraps the synthetic one and
reports what the test says), so each test pins down exactly which epoch must be restored.
"""

import math

import pytest
import torch

from fieldguide.train.checkpoint import latest_checkpoint, load_checkpoint
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer, is_improvement

from .helpers import task_and_model

# 100 examples in batches of 50: two optimizer steps per epoch.
CFG = TrainConfig(batch_size=50, lr=1e-2, seed=1, warmup_fraction=0.0)


class ScriptedTask:
    """The synthetic task, trained for real, whose val metrics at epoch e are scripted[e]."""

    def __init__(self, inner, accuracy, loss):
        self.inner, self.accuracy, self.loss_values = inner, accuracy, loss
        self.name, self.monitor = inner.name, inner.monitor
        self.trainer = None  # set once the trainer exists: the epoch is read from its state

    @property
    def train_size(self):
        return self.inner.train_size

    def batch(self, split, index):
        return self.inner.batch(split, index)

    def loss(self, model, batch):
        return self.inner.loss(model, batch)

    def evaluate(self, model, split, **kw):
        e = self.trainer.state.epoch
        return {"val/loss": self.loss_values[e], "val/accuracy": self.accuracy[e]}


def run(accuracy, loss, *, ckpt=None, resume=False, callbacks=(), init_seed=0, **recipe):
    """Fit on the scripted task; return the trainer, its result and each epoch's weights."""
    inner, model = task_and_model(seed=init_seed)
    task = ScriptedTask(inner, accuracy, loss)
    cfg = TrainConfig(**{**CFG.__dict__, "epochs": len(accuracy), **recipe})
    snapshots = {}

    def keep(trainer, record):
        snapshots[record["epoch"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    trainer = Trainer(
        model,
        task,
        cfg,
        checkpoint_dir=ckpt,
        callbacks=callbacks,
        epoch_callbacks=[keep],
        progress="quiet",
    )
    task.trainer = trainer
    return trainer, trainer.fit(resume=resume), snapshots


def assert_weights(model, expected):
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for k in state:
        assert torch.equal(state[k], expected[k]), f"{k} differs"


def test_tied_accuracy_keeps_the_epoch_with_the_lowest_val_loss():
    # Few validation rows: accuracy hits 1.0 at epoch 2, a barely trained model, and stays
    # there while the loss keeps falling. The first tied epoch used to be kept; now epoch 4.
    accuracy = [0.5, 1.0, 0.9, 1.0, 1.0]
    loss = [0.9, 0.6, 0.5, 0.3, 0.4]
    trainer, result, snapshots = run(accuracy, loss)
    assert result.monitor == "val/accuracy"
    assert result.best_metrics["epoch"] == 4
    assert result.best_metrics["val/loss"] == 0.3
    assert_weights(trainer.model, snapshots[4])


def test_strictly_better_accuracy_wins_over_a_lower_loss():
    # The monitor still decides: val/loss only splits exact ties of val/accuracy.
    trainer, result, snapshots = run([0.8, 0.9, 0.85], [0.3, 0.5, 0.2])
    assert result.best_metrics["epoch"] == 2
    assert_weights(trainer.model, snapshots[2])


def test_exact_ties_keep_the_first_epoch():
    trainer, result, snapshots = run([0.9, 0.9, 0.9], [0.4, 0.4, 0.5])
    assert result.best_metrics["epoch"] == 1
    assert_weights(trainer.model, snapshots[1])


def test_a_monitored_loss_picks_by_itself():
    # With --monitor val/loss there is nothing to break ties with; accuracy plays no part.
    trainer, result, snapshots = run([0.5, 0.9, 0.6], [0.4, 0.5, 0.3], monitor="val/loss")
    assert result.monitor == "val/loss" and result.best_metrics["epoch"] == 3
    assert_weights(trainer.model, snapshots[3])


def test_a_tie_with_lower_loss_counts_as_progress_for_patience():
    # Epochs 2-4 tie on accuracy with falling loss, so patience counts from epoch 4: the run
    # stops after epochs 5 and 6 bring nothing, not after epochs 3 and 4.
    accuracy = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    loss = [0.9, 0.6, 0.5, 0.4, 0.45, 0.5, 0.2, 0.2]
    trainer, result, snapshots = run(accuracy, loss, patience=2)
    assert result.status == "early_stopped" and len(result.history) == 6
    assert result.best_metrics["epoch"] == 4
    assert_weights(trainer.model, snapshots[4])


def test_resume_keeps_the_tie_break_state(tmp_path):
    # Stopped after epoch 2 (its best: accuracy 1.0, loss 0.6), resumed into epoch 3, which
    # ties on accuracy with a lower loss. Only a checkpointed best loss lets epoch 3 win.
    accuracy, loss = [0.5, 1.0, 1.0, 1.0], [0.9, 0.6, 0.5, 0.55]
    reference, ref_result, snapshots = run(accuracy, loss, ckpt=tmp_path / "a")
    assert ref_result.best_metrics["epoch"] == 3

    def stop_after_epoch_2(trainer):
        if trainer.state.step == 5:  # the first step of epoch 3, after epoch 2's checkpoint
            trainer.request_stop()

    _, stopped, _ = run(accuracy, loss, ckpt=tmp_path / "b", callbacks=[stop_after_epoch_2])
    assert stopped.status == "interrupted"
    _, saved = load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert saved["trainer"]["best_tie"] == 0.6
    resumed, result, _ = run(accuracy, loss, ckpt=tmp_path / "b", resume=True, init_seed=123)
    assert result.best_metrics["epoch"] == 3 and result.step == ref_result.step
    assert_weights(resumed.model, reference.model.state_dict())


@pytest.mark.parametrize(
    ("value", "tie", "best_value", "best_tie", "mode", "expected"),
    [
        (0.5, 0.9, None, None, "max", True),  # the first evaluation is always the best so far
        (0.9, 0.9, 0.8, 0.1, "max", True),
        (0.7, 0.0, 0.8, 0.1, "max", False),
        (0.8, 0.05, 0.8, 0.1, "max", True),
        (0.8, 0.1, 0.8, 0.1, "max", False),
        (0.8, None, 0.8, 0.1, "max", False),  # no tie-break value: ties keep the first
        (0.8, 0.05, 0.8, None, "max", False),  # e.g. a checkpoint written before tie-breaks
        (1.2, 0.05, 1.0, 0.1, "min", False),  # mase-like metrics: lower wins
        (0.9, 0.5, 1.0, 0.1, "min", True),
        (1.0, 0.05, 1.0, 0.1, "min", True),
        (math.nan, 0.05, 1.0, 0.1, "max", False),  # a NaN metric never becomes the best
    ],
)
def test_is_improvement(value, tie, best_value, best_tie, mode, expected):
    assert is_improvement(value, tie, best_value, best_tie, mode) is expected
