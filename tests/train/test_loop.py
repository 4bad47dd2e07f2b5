import io
import json
import math
import time

import pytest
import torch

from fieldguide.train.checkpoint import latest_checkpoint, load_checkpoint
from fieldguide.train.config import OptionError, TrainConfig
from fieldguide.train.loop import NonFiniteLossError, Trainer
from fieldguide.train.progress import Progress

from .helpers import synthetic_data, task_and_model

BASE = TrainConfig(epochs=3, batch_size=16, lr=1e-2, seed=3, warmup_fraction=0.2)


def fit(cfg, ckpt=None, callbacks=(), resume=False, init_seed=0, progress="quiet", **kw):
    task, model = task_and_model(seed=init_seed)
    trainer = Trainer(
        model, task, cfg, checkpoint_dir=ckpt, callbacks=callbacks, progress=progress, **kw
    )
    return trainer, trainer.fit(resume=resume)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


def stop_at(step):
    def callback(trainer):
        if trainer.state.step == step:
            trainer.request_stop()

    return callback


def crash_at(step):
    def callback(trainer):
        if trainer.state.step == step:
            raise RuntimeError("simulated crash")

    return callback


# 7 micro-batches per epoch (100 examples, batch 16); with accumulate=2, 4 steps per epoch.
@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("stop_step", [1, 3, 4, 7, 9, 11])
def test_stop_and_resume_is_bitwise_equal_to_uninterrupted(tmp_path, accumulate, stop_step):
    cfg = TrainConfig(**{**BASE.__dict__, "accumulate": accumulate})
    reference, ref_result = fit(cfg, tmp_path / "a")
    stopped, result = fit(cfg, tmp_path / "b", callbacks=[stop_at(stop_step)])
    assert result.status == "interrupted" and result.step == stop_step
    # A fresh process would build the model with other weights; the checkpoint must replace them.
    resumed, final = fit(cfg, tmp_path / "b", resume=True, init_seed=123)
    assert final.status == "finished" and final.step == ref_result.step
    assert_same_weights(reference.model, resumed.model)
    assert [r["val/accuracy"] for r in final.history] == [
        r["val/accuracy"] for r in ref_result.history
    ]


@pytest.mark.parametrize("crash_step", [2, 5, 8])
def test_crash_then_resume_from_periodic_checkpoint_is_bitwise_equal(tmp_path, crash_step):
    cfg = TrainConfig(**{**BASE.__dict__, "checkpoint_every": 1})
    reference, _ = fit(cfg, tmp_path / "a")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(cfg, tmp_path / "b", callbacks=[crash_at(crash_step)])
    _, state = load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert state["trainer"]["step"] == crash_step - 1  # the crash came before step's checkpoint
    resumed, _ = fit(cfg, tmp_path / "b", resume=True, init_seed=7)
    assert_same_weights(reference.model, resumed.model)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a, _ = fit(BASE)
    b, _ = fit(BASE)
    c, _ = fit(TrainConfig(**{**BASE.__dict__, "seed": 4}))
    assert_same_weights(a.model, b.model)
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


def test_resume_with_a_changed_recipe_is_refused(tmp_path):
    fit(BASE, tmp_path / "r", callbacks=[stop_at(2)])
    task, model = task_and_model()
    trainer = Trainer(
        model,
        task,
        TrainConfig(**{**BASE.__dict__, "lr": 0.5}),
        checkpoint_dir=tmp_path / "r",
        progress="quiet",
    )
    with pytest.raises(ValueError, match="differs in lr"):
        trainer.fit(resume=True)


def test_resume_without_checkpoint_and_fresh_run_over_old_checkpoints_are_refused(tmp_path):
    with pytest.raises(ValueError, match="resume needs a checkpoint"):
        fit(BASE, tmp_path / "empty", resume=True)
    fit(BASE, tmp_path / "used", callbacks=[stop_at(1)])
    with pytest.raises(ValueError, match="already holds checkpoints"):
        fit(BASE, tmp_path / "used")


class ExplodingTask:
    """Wraps a task so that the loss becomes NaN from a given step on."""

    def __init__(self, task, bad_step):
        self.inner, self.bad_step, self.calls = task, bad_step, 0
        self.name, self.monitor = task.name, task.monitor

    @property
    def train_size(self):
        return self.inner.train_size

    def batch(self, split, index):
        return self.inner.batch(split, index)

    def loss(self, model, batch):
        self.calls += 1
        loss = self.inner.loss(model, batch)
        return loss * float("nan") if self.calls >= self.bad_step else loss

    def evaluate(self, model, split, **kw):
        return self.inner.evaluate(model, split, **kw)


def test_non_finite_loss_stops_naming_the_step_and_last_good_checkpoint(tmp_path):
    task, model = task_and_model()
    # 7 steps per epoch: the epoch-1 checkpoint (step 7) is good; the loss turns NaN at step 10.
    trainer = Trainer(
        model, ExplodingTask(task, bad_step=10), BASE, checkpoint_dir=tmp_path, progress="quiet"
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 10 .*step-00000007"):
        trainer.fit()
    weights, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["trainer"]["step"] == 7
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    # The last good checkpoint resumes into a working run.
    task2, model2 = task_and_model()
    result = Trainer(model2, task2, BASE, checkpoint_dir=tmp_path, progress="quiet").fit(
        resume=True
    )
    assert result.status == "finished" and math.isfinite(result.history[-1]["train/loss"])


def test_early_stopping_on_a_named_metric_restores_the_best_weights(tmp_path):
    cfg = TrainConfig(
        **{**BASE.__dict__, "epochs": 40, "monitor": "val/loss", "patience": 2, "lr": 0.05}
    )
    trainer, result = fit(cfg, tmp_path)
    losses = [r["val/loss"] for r in result.history]
    assert result.status == "early_stopped" and len(losses) < 40
    best = min(range(len(losses)), key=losses.__getitem__)
    assert (
        len(losses) - 1 - best == 2
    )  # stopped after exactly `patience` evaluations without progress
    # The model left in memory is the best one: its val loss is the best recorded one.
    val = trainer.task.evaluate(trainer.model, "val", device="cpu", batch_size=256)
    assert val["val/loss"] == pytest.approx(losses[best], rel=1e-5)


def test_unknown_monitor_is_a_clear_error():
    with pytest.raises(
        ValueError, match="monitor must be one of the metrics this task evaluates.*got 'val/acc'"
    ):
        fit(TrainConfig(**{**BASE.__dict__, "monitor": "val/acc"}))


def test_gradient_accumulation_equals_one_big_batch():
    # Without dropout or batch norm, 4 micro-batches of 8 with accumulate=4 are one batch of 32.
    def run(batch_size, accumulate):
        task = task_and_model()[0]
        torch.manual_seed(0)
        model = task.build_model("mlp", hidden_dim=16, dropout=0.0)
        cfg = TrainConfig(epochs=2, batch_size=batch_size, accumulate=accumulate, lr=1e-2, seed=1)
        Trainer(model, task, cfg, progress="quiet").fit()
        return model

    big, accumulated = run(32, 1), run(8, 4)
    # Both split 100 examples into steps of 32, 32, 32 and 4 examples.
    for a, b in zip(big.parameters(), accumulated.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_label_smoothing_and_class_weights_change_the_loss():
    data = synthetic_data()
    from fieldguide.tasks.classification import ClassificationTask

    plain, smooth = ClassificationTask(data), ClassificationTask(data, label_smoothing=0.2)
    weighted = ClassificationTask(data, class_weights="balanced")
    torch.manual_seed(0)
    model = plain.build_model("mlp", hidden_dim=16, dropout=0.0).eval()
    batch = plain.batch("train", torch.arange(32))
    losses = [t.loss(model, batch).item() for t in (plain, smooth, weighted)]
    assert losses[0] != losses[1] and losses[0] != losses[2]
    counts = torch.bincount(data.train.y, minlength=3).float()
    assert torch.allclose(weighted.class_weights * counts, torch.full((3,), 100 / 3))


def test_metrics_file_has_one_line_per_evaluation(tmp_path):
    _, result = fit(BASE, tmp_path / "c", metrics_path=tmp_path / "m.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert {"train/loss", "val/accuracy", "val/macro_f1", "val/auroc", "val/ece", "lr"} <= lines[
        0
    ].keys()


def test_plain_progress_prints_one_line_per_epoch(capsys):
    task, model = task_and_model()
    Trainer(model, task, BASE, progress="plain").fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3 and "samples/s" in lines[0] and "val/accuracy" in lines[0]


def test_trainer_rejects_a_non_config():
    task, model = task_and_model()
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer(model, task, {"epochs": 3})


def test_max_steps_caps_training_inside_an_epoch_and_resumes_exactly(tmp_path):
    cfg = TrainConfig(**{**BASE.__dict__, "max_steps": 10})  # 7 steps per epoch: stop in epoch 2
    reference, result = fit(cfg, tmp_path / "a")
    assert result.status == "finished" and result.step == 10
    assert [r["step"] for r in result.history] == [7, 10]  # the cut epoch is evaluated too
    assert reference.total_steps == 10  # the schedule decays over the capped run
    # the last step's learning rate is the capped schedule's, near the floor
    from fieldguide.train.schedule import warmup_cosine

    expected = warmup_cosine(9, reference.warmup_steps, 10, BASE.min_lr_ratio) * BASE.lr
    assert reference.lr == pytest.approx(expected)
    fit(cfg, tmp_path / "b", callbacks=[stop_at(8)])
    resumed, final = fit(cfg, tmp_path / "b", resume=True, init_seed=5)
    assert final.step == 10
    assert_same_weights(reference.model, resumed.model)


@pytest.mark.parametrize("stop_step", [5, 31])
def test_resumed_run_writes_the_same_metrics_file_byte_for_byte(tmp_path, stop_step):
    # 25 steps per epoch: losses are checked every 16 steps and at each checkpoint (every 3),
    # so where the stop falls changes how steps group between checks; train/loss must not.
    cfg = TrainConfig(**{**BASE.__dict__, "batch_size": 4, "epochs": 2, "checkpoint_every": 3})
    fit(cfg, tmp_path / "a", metrics_path=tmp_path / "a.jsonl")
    fit(cfg, tmp_path / "b", callbacks=[stop_at(stop_step)], metrics_path=tmp_path / "b.jsonl")
    fit(cfg, tmp_path / "b", resume=True, init_seed=9, metrics_path=tmp_path / "b.jsonl")
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()


class NamedMetricsTask(ExplodingTask):
    """A task that names the metrics it evaluates, and takes its time to evaluate."""

    metric_names = ("loss", "accuracy", "macro_f1", "auroc", "ece")

    def __init__(self, task, seconds=0.0):
        super().__init__(task, bad_step=10**9)
        self.seconds = seconds

    def evaluate(self, model, split, **kw):
        time.sleep(self.seconds)
        return self.inner.evaluate(model, split, **kw)


def test_a_monitor_the_task_does_not_evaluate_is_refused_before_training():
    task, model = task_and_model()
    cfg = TrainConfig(**{**BASE.__dict__, "monitor": "val/acc"})
    with pytest.raises(OptionError, match=r"monitor must be one of the metrics .*val/accuracy"):
        Trainer(model, NamedMetricsTask(task), cfg, progress="quiet")
    Trainer(model, NamedMetricsTask(task), BASE, progress="quiet")  # auto: the task's own


def test_a_device_that_does_not_exist_is_one_sentence_naming_device():
    task, model = task_and_model()
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    with pytest.raises(OptionError, match=rf"TrainConfig\.device asks for '{missing}' but"):
        Trainer(model, task, TrainConfig(device=missing), progress="quiet")


def test_the_few_steps_note_is_left_out_when_max_steps_was_given(capsys):
    fit(BASE, progress="plain")  # 21 steps in all: worth a note
    assert "note: only 21 optimizer steps" in capsys.readouterr().out
    _, result = fit(TrainConfig(**{**BASE.__dict__, "max_steps": 5}), progress="plain")
    assert "note:" not in capsys.readouterr().out and result.notes == []


def test_plain_progress_speaks_at_least_every_heartbeat_during_training_and_validation():
    stream = io.StringIO()
    progress = Progress("plain", stream=stream, heartbeat=0.05)
    task, model = task_and_model()
    cfg = TrainConfig(**{**BASE.__dict__, "epochs": 1})
    Trainer(model, NamedMetricsTask(task, seconds=0.3), cfg, progress=progress).fit()
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("  validating: ") for line in lines), lines
    progress.start(10, 0)
    time.sleep(0.06)
    progress.step(3, 0, 0.5, 1e-3, 100.0)
    assert stream.getvalue().splitlines()[-1].startswith("  epoch 1  step 3/10  train/loss 0.5000")


def test_rich_progress_names_the_pass_it_is_in():
    progress = Progress("rich", stream=io.StringIO())
    progress.start(10, 0)
    with progress.phase("validating"):
        assert progress._bar.tasks[0].fields["phase"] == "validating"
    assert progress._bar.tasks[0].fields["phase"] == ""
    progress.stop()


def test_a_checkpoint_from_before_a_recipe_field_existed_resumes(tmp_path, monkeypatch):
    import fieldguide.train.loop as loop

    fit(BASE, tmp_path / "r", callbacks=[stop_at(2)])
    real = loop.load_checkpoint

    def older(path):  # as written before TrainConfig had sparse_lr and sparse_optimizer
        weights, saved = real(path)
        for key in ("sparse_lr", "sparse_optimizer"):
            del saved["config"][key]
        return weights, saved

    monkeypatch.setattr(loop, "load_checkpoint", older)
    task, model = task_and_model()
    trainer = Trainer(model, task, BASE, checkpoint_dir=tmp_path / "r", progress="quiet")
    assert trainer.fit(resume=True).status == "finished"
    task, model = task_and_model()  # a field it did have, changed, is still refused
    changed = TrainConfig(**{**BASE.__dict__, "lr": 0.5})
    trainer = Trainer(model, task, changed, checkpoint_dir=tmp_path / "r", progress="quiet")
    with pytest.raises(ValueError, match="differs in lr"):
        trainer.fit(resume=True)


def test_time_limit_ends_training_inside_an_epoch_evaluates_and_says_so():
    slow = []

    def sleep_each_step(trainer):  # each step takes at least 20 ms of training time
        time.sleep(0.02)
        slow.append(trainer.state.step)

    cfg = TrainConfig(epochs=50, batch_size=8, lr=1e-2, seed=1, time_limit=0.1)
    trainer, result = fit(cfg, callbacks=[sleep_each_step])
    planned = 50 * math.ceil(100 / 8)
    assert result.status == "finished"
    assert 1 <= result.step < planned  # stopped well before the plan
    assert result.history and result.history[-1]["step"] == result.step  # evaluated at the stop
    assert any("time limit" in note for note in result.notes)
    assert trainer.lr < cfg.lr * 0.05  # the schedule ran on the clock: decayed by the end
    _, unlimited = fit(TrainConfig(epochs=1, batch_size=8, lr=1e-2, seed=1))
    assert not any("time limit" in note for note in unlimited.notes)


def test_a_negative_time_limit_is_refused_naming_it():
    with pytest.raises(OptionError, match="time_limit"):
        TrainConfig(time_limit=-1)
