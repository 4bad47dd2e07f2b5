"""MetricLearningTask: held-out classes, class-balanced P x K batches, pairs, every loss's
gradients, two towers, that training learns, metrics of a perfect space, bitwise resume and
the retrieval index a finished run writes."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from fieldguide.api.config import DataConfig
from fieldguide.api.predict import load_run
from fieldguide.api.run import train
from fieldguide.data import load_data
from fieldguide.data.base import ClassificationData, Split
from fieldguide.tasks.metric_learning import (
    LOSSES,
    METRICS,
    MetricLearningTask,
    same_class_pairs,
    space_metrics,
)
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer, seed_everything

TINY = {"feature_dim": 16, "embed_dim": 8}  # siamese-mlp small enough for a 2-core CPU


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")  # sklearn's 8x8 digits, 10 classes, split 70/15/15 by seed 0


def tiny_model(task, seed=0, **overrides):
    torch.manual_seed(seed)
    return task.build_model("siamese-mlp", **{**TINY, **overrides})


def balanced_rows(task, classes=4, per_class=4):
    """Train-split positions of `per_class` examples of each of the first `classes` classes."""
    y = task.labels("train")
    return torch.cat([(y == c).nonzero().flatten()[:per_class] for c in range(classes)])


def balanced_batch(task, classes=4, per_class=4):
    """A real P x K batch of the train split: inputs, then labels."""
    return task.batch("train", balanced_rows(task, classes, per_class))


# ---------------------------------------------------------------------------------------------
# Held-out classes
# ---------------------------------------------------------------------------------------------


def test_default_holds_out_the_last_half_of_the_classes_for_test_only(digits):
    task = MetricLearningTask(digits)  # held_out_classes=-1: 5 of 10 when there are >= 4
    assert task.train_classes == list("01234") and task.held_out == list("56789")
    for split in ("train", "val"):
        y = task.labels(split)
        assert set(y.tolist()) == {0, 1, 2, 3, 4}
        # every example of the seen classes is kept, none dropped
        assert len(y) == int((getattr(digits, split).y < 5).sum()) == task.split_size(split)
    y = task.labels("test")
    assert set(y.tolist()) == {5, 6, 7, 8, 9}
    assert len(y) == int((digits.test.y >= 5).sum())
    # a batch of the test split is those examples' own inputs and labels
    x, labels = task.batch("test", torch.arange(len(y)))
    rows = (digits.test.y >= 5).nonzero().flatten()
    assert torch.equal(labels, y) and torch.equal(x, digits.test.x[rows])
    state = task.state()  # what preprocessing.json records of the split
    assert state["train_classes"] == list("01234") and state["held_out_classes"] == list("56789")


def test_no_held_out_classes_keeps_every_class_in_test(digits):
    task = MetricLearningTask(digits, held_out_classes=0)
    assert task.held_out == [] and len(task.train_classes) == 10
    assert torch.equal(task.labels("test"), digits.test.y)
    assert torch.equal(task.labels("train"), digits.train.y)
    assert task.spec().num_outputs == 10  # one ArcFace centre per training class


def test_held_out_classes_leave_as_many_arcface_centres_as_training_classes(digits):
    task = MetricLearningTask(digits, held_out_classes=3)
    assert set(task.labels("test").tolist()) == {7, 8, 9}
    assert tiny_model(task).class_centres.shape == (7, TINY["embed_dim"])


@pytest.mark.parametrize("held", [9, 10, 11])
def test_holding_out_all_but_one_class_is_refused(digits, held):
    with pytest.raises(ValueError, match="held_out_classes must leave at least 2 of the 10"):
        MetricLearningTask(digits, held_out_classes=held)


def test_train_refuses_too_many_held_out_classes_before_any_run_folder(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match="held_out_classes"):
        train(
            "siamese-mlp",
            "digits",
            model_config=TINY,
            data_config=DataConfig(held_out_classes=9),
            runs_dir=runs,
            progress="quiet",
            max_steps=1,
        )
    assert not runs.exists()


def small_split(n_per_class, classes, dim, g):
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return Split(F.one_hot(y, dim).float() + 0.1 * torch.randn(len(y), dim, generator=g), y)


def test_a_split_the_task_accepts_can_be_evaluated():
    # Synthetic: 4 classes, 2 examples each in val and test (8 < 11): a small image folder's
    # validation split with half its classes held out looks like this.
    g = torch.Generator().manual_seed(0)
    data = ClassificationData(
        name="synthetic-small",
        modality="tabular",
        train=small_split(10, 4, 4, g),
        val=small_split(2, 4, 4, g),
        test=small_split(2, 4, 4, g),
        classes=list("abcd"),
        input_shape=(4,),
        description="synthetic: one-hot class plus noise",
        synthetic=True,
    )
    try:
        task = MetricLearningTask(data, held_out_classes=0)
    except ValueError as error:  # refusing the split up front, naming it, is a fix too
        assert "val" in str(error) and "recall" not in str(error)
        return
    metrics = task.evaluate(tiny_model(task), "val")  # accepted, so evaluating must not fail
    assert 0 <= metrics["val/recall@1"] <= 1


# ---------------------------------------------------------------------------------------------
# Class-balanced batches: P classes x K examples
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("held", "batch_size"), [(-1, 16), (-1, 32), (0, 16), (0, 32)])
def test_epoch_batches_are_p_classes_of_k_examples(digits, held, batch_size):
    task = MetricLearningTask(digits, held_out_classes=held)
    y, n = task.labels("train"), task.split_size("train")
    classes = len(task.train_classes)
    p = min(classes, batch_size // 4)
    k = batch_size // p
    batches = task.epoch_batches(torch.Generator().manual_seed(0), batch_size)
    assert len(batches) == math.ceil(n / batch_size)
    for batch in batches:
        assert len(batch) == p * k <= batch_size
        _, counts = y[batch].unique(return_counts=True)
        assert len(counts) == p and counts.tolist() == [k] * p


@pytest.mark.parametrize(("held", "batch_size"), [(-1, 16), (0, 32)])
def test_epoch_batches_are_valid_seeded_and_cover_the_epoch(digits, held, batch_size):
    task = MetricLearningTask(digits, held_out_classes=held)
    n = task.split_size("train")
    first = task.epoch_batches(torch.Generator().manual_seed(7), batch_size)
    again = task.epoch_batches(torch.Generator().manual_seed(7), batch_size)
    other = task.epoch_batches(torch.Generator().manual_seed(8), batch_size)
    assert len(first) == len(again) and all(
        torch.equal(a, b) for a, b in zip(first, again, strict=True)
    )
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))
    every = torch.cat(first)
    assert every.dtype == torch.int64 and int(every.min()) >= 0 and int(every.max()) < n
    assert len(every.unique()) >= 0.9 * n  # nearly every example once per epoch


# ---------------------------------------------------------------------------------------------
# same_class_pairs
# ---------------------------------------------------------------------------------------------


def test_same_class_pairs_pair_each_class_two_by_two_in_batch_order():
    y = torch.tensor([2, 0, 2, 1, 0, 2, 2, 1, 3, 2, 0])  # class 2 x5, 0 x3, 1 x2, 3 x1
    a, b = same_class_pairs(y)
    assert torch.equal(y[a], y[b])
    assert len(torch.cat([a, b]).unique()) == 2 * len(a)  # no example in two pairs
    assert bool((a < b).all())  # the earlier example of a pair comes first
    pairs = {c: int((y[a] == c).sum()) for c in range(4)}
    assert pairs == {0: 1, 1: 1, 2: 2, 3: 0}  # floor(count / 2) each
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 2), (1, 4), (3, 7), (5, 6)]


def test_same_class_pairs_refuse_a_batch_without_a_repeated_class():
    with pytest.raises(ValueError, match="needs two examples of some class"):
        same_class_pairs(torch.tensor([3, 1, 0, 2]))


# ---------------------------------------------------------------------------------------------
# Losses: finite, and their gradients reach what they train
# ---------------------------------------------------------------------------------------------


def nonzero_grads(model):
    """Names of the parameters with a nonzero gradient."""
    return {
        name
        for name, p in model.named_parameters()
        if p.grad is not None and float(p.grad.abs().sum()) > 0
    }


def tower_parameters(model, x, tower):
    """Names of the parameters that tower `tower`'s embeddings of x depend on (by autograd)."""
    model.zero_grad()
    z = model(x, tower=tower)
    (z * torch.randn(z.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    reached = nonzero_grads(model)
    model.zero_grad()
    return reached


def direct_embeddings(task, model, split, tower):
    """Embeddings of every example of `split` straight from the model, tower given by name."""
    x = task.batch(split, torch.arange(task.split_size(split)))[0].flatten(1)
    model.eval()
    with torch.no_grad():
        return model(x, tower=tower)


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_is_finite_and_trains_the_tower_and_only_its_own_extras(digits, loss):
    task = MetricLearningTask(digits, loss=loss)
    model = tiny_model(task)
    batch = balanced_batch(task)
    tower = tower_parameters(model, batch[0].flatten(1), tower=0)
    everything = {name for name, _ in model.named_parameters()}
    head = {name for name in everything if name.startswith("projection.")}
    assert tower == everything - model.loss_parameters()  # what embeds: the backbone
    assert head and not head & tower  # the projection head serves the loss only
    value = task.loss(model, batch)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    reached = nonzero_grads(model)
    assert tower | head <= reached  # backbone and projection, every tensor
    # The temperature is InfoNCE's alone, the class centres ArcFace's alone.
    extras = {n for n in ("infonce", "arcface") if n == loss}
    names = {"infonce": "temperature_logit", "arcface": "class_centres"}
    assert reached - tower - head == {names[n] for n in extras}


def test_losses_refuse_a_batch_whose_classes_never_repeat(digits):
    task = MetricLearningTask(digits, loss="infonce")
    batch = balanced_batch(task, classes=5, per_class=1)
    with pytest.raises(ValueError, match="two examples of some class"):
        task.loss(tiny_model(task), batch)


def test_unknown_loss_is_refused_naming_the_choices(digits):
    with pytest.raises(ValueError, match="infonce, triplet, triplet-semihard, arcface"):
        MetricLearningTask(digits, loss="hinge")


# ---------------------------------------------------------------------------------------------
# Two towers (shared=False)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["infonce", "contrastive"])
def test_two_towers_embed_differently_and_a_pair_loss_trains_both(digits, loss):
    task = MetricLearningTask(digits, loss=loss)
    model = tiny_model(task, shared=False)
    batch = balanced_batch(task)
    x = batch[0].flatten(1)
    model.eval()
    with torch.no_grad():
        z0, z1 = model(x, tower=0), model(x, tower=1)
    assert torch.allclose(z0.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    assert torch.allclose(z1.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    assert not torch.allclose(z0, z1, atol=1e-3)  # the gallery tower is its own draw
    queries, gallery = tower_parameters(model, x, 0), tower_parameters(model, x, 1)
    assert queries and gallery and not queries & gallery  # two separate towers
    model.train()
    task.loss(model, batch).backward()
    assert queries | gallery <= nonzero_grads(model)


def test_two_towers_evaluate_queries_against_the_gallery_tower(digits):
    task = MetricLearningTask(digits, loss="contrastive")
    model = tiny_model(task, shared=False)
    y = task.labels("val")
    queries = direct_embeddings(task, model, "val", tower=0)
    gallery = direct_embeddings(task, model, "val", tower=1)
    assert torch.allclose(task.embeddings(model, "val", tower=0), queries, atol=1e-6)
    assert torch.allclose(task.embeddings(model, "val", tower=1), gallery, atol=1e-6)
    expected = space_metrics(queries, y, gallery)
    assert expected != space_metrics(queries, y, queries)  # the towers do differ
    assert task.evaluate(model, "val") == pytest.approx(
        {f"val/{k}": v for k, v in expected.items()}
    )


@pytest.mark.parametrize("loss", ["triplet", "triplet-semihard", "arcface"])
def test_two_towers_with_a_one_tower_loss_are_refused(digits, loss):
    task = MetricLearningTask(digits, loss=loss)
    with pytest.raises(ValueError, match="with shared=False has a query and a gallery tower"):
        tiny_model(task, shared=False)


def test_train_refuses_two_towers_with_triplet_before_any_run_folder(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match="shared=False"):
        train(
            "siamese-mlp",
            "digits",
            model_config={**TINY, "shared": False},
            runs_dir=runs,
            progress="quiet",
            max_steps=1,
            loss="triplet",
        )
    assert not runs.exists()


# ---------------------------------------------------------------------------------------------
# Training learns; metrics of a perfect space
# ---------------------------------------------------------------------------------------------


def test_training_lifts_validation_retrieval_far_above_the_untrained_model(digits):
    task = MetricLearningTask(digits, held_out_classes=0)
    seed_everything(0)
    model = tiny_model(task)
    before = task.evaluate(model, "val")
    cfg = TrainConfig(epochs=50, max_steps=150, batch_size=16, seed=0)
    result = Trainer(model, task, cfg, progress="quiet").fit()
    assert result.status == "finished" and result.step == 150
    after = task.evaluate(model, "val")
    assert after["val/recall@1"] >= before["val/recall@1"] + 0.1
    assert after["val/recall@1"] >= 0.85
    assert after["val/map@r"] >= 2 * before["val/map@r"]
    assert after["val/roc_auc"] > before["val/roc_auc"] and after["val/eer"] < before["val/eer"]


def test_space_metrics_of_a_perfect_embedding_are_perfect():
    y = torch.arange(4).repeat(6)  # 4 classes x 6 examples, interleaved
    z = F.one_hot(y, 4).float()
    perfect = {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "map@r": 1.0}
    perfect |= {"roc_auc": 1.0, "eer": 0.0}
    assert space_metrics(z, y, z) == pytest.approx(perfect)
    assert space_metrics(z, y, z.clone()) == pytest.approx(perfect)


def test_a_gallery_equal_to_the_queries_gives_the_same_metrics_as_none():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (60,), generator=g)
    z = F.normalize(torch.randn(60, 8, generator=g) + F.one_hot(y, 8), dim=1)
    same = space_metrics(z, y, z)
    assert 0.2 < same["recall@1"] < 1 and 0 < same["eer"] < 0.5  # neither chance nor perfect
    assert space_metrics(z, y, z.clone()) == pytest.approx(same, abs=1e-9)


class Oracle(nn.Module):
    """Embeds by the input's own direction: a perfect space for one-hot class inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"shared": True})()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return F.normalize(x * self.scale, dim=-1)


def test_evaluate_on_a_perfect_space_is_perfect_and_so_is_its_input_baseline():
    def split(n):
        y = torch.arange(4).repeat(n)
        return Split(F.one_hot(y, 6).float() * 3, y)

    data = ClassificationData(
        name="synthetic-onehot",
        modality="tabular",
        train=split(8),
        val=split(4),
        test=split(4),
        classes=list("abcd"),
        input_shape=(6,),
        description="synthetic: each example is its class, one-hot",
        synthetic=True,
    )
    task = MetricLearningTask(data, held_out_classes=0)
    metrics = task.evaluate(Oracle(), "val")
    assert metrics == pytest.approx(
        {"val/recall@1": 1, "val/recall@5": 1, "val/recall@10": 1, "val/map@r": 1}
        | {"val/roc_auc": 1, "val/eer": 0}
    )
    baseline = task.baselines("val")["input space (cosine)"]
    assert baseline["recall@1"] == 1 and baseline["map@r"] == pytest.approx(1)


# ---------------------------------------------------------------------------------------------
# Resume: the class-balanced sampler is a pure function of (seed, epoch)
# ---------------------------------------------------------------------------------------------


def fit(data, cfg, ckpt, metrics, callbacks=(), resume=False, init_seed=0):
    task = MetricLearningTask(data)
    model = tiny_model(task, seed=init_seed)  # dropout 0.1: torch's RNG must resume too
    trainer = Trainer(
        model,
        task,
        cfg,
        checkpoint_dir=ckpt,
        metrics_path=metrics,
        callbacks=callbacks,
        progress="quiet",
    )
    return trainer, trainer.fit(resume=resume)


def stop_at(step):
    def callback(trainer):
        if trainer.state.step == step:
            trainer.request_stop()

    return callback


@pytest.mark.parametrize("stop_step", [7, 25])
def test_stop_and_resume_is_bitwise_equal_to_uninterrupted(digits, tmp_path, stop_step):
    cfg = TrainConfig(epochs=2, max_steps=30, batch_size=16, seed=3)
    a, ref = fit(digits, cfg, tmp_path / "a", tmp_path / "a.jsonl")
    _, stopped = fit(
        digits, cfg, tmp_path / "b", tmp_path / "b.jsonl", callbacks=[stop_at(stop_step)]
    )
    assert stopped.status == "interrupted" and stopped.step == stop_step
    # Other initial weights: the checkpoint must replace them all.
    b, final = fit(digits, cfg, tmp_path / "b", tmp_path / "b.jsonl", resume=True, init_seed=9)
    assert final.status == "finished" and final.step == ref.step == 30
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()


# ---------------------------------------------------------------------------------------------
# The retrieval index a finished run writes
# ---------------------------------------------------------------------------------------------


def test_a_finished_run_indexes_its_training_examples(digits, tmp_path):
    result = train(
        "siamese-mlp",
        "digits",
        model_config=TINY,
        runs_dir=tmp_path,
        progress="quiet",
        max_steps=20,
        batch_size=16,
    )
    assert set(result.test_metrics) == {f"test/{m}" for m in METRICS}
    path = result.run_dir / "index.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        z, labels = f.get_tensor("embeddings"), f.get_tensor("labels")
    task = MetricLearningTask(digits)  # the run's split and held-out classes
    model = load_run(result.run_dir).model
    expected = task.embeddings(model, "train")
    # Retrieval reads the backbone's features (feature_dim), not the head (embed_dim).
    assert z.shape == expected.shape == (task.split_size("train"), TINY["feature_dim"])
    assert torch.allclose(z, expected, atol=1e-6)
    assert torch.allclose(z.norm(dim=1), torch.ones(len(z)), atol=1e-5)
    assert torch.equal(labels, task.labels("train"))
    assert json.loads(meta["classes"]) == digits.classes
    sources = json.loads(meta["sources"])
    assert len(sources) == len(z)
    rows = (digits.train.y < 5).nonzero().flatten().tolist()  # the train rows of classes 0-4
    assert sources == [f"train #{r}" for r in rows]


def test_a_two_tower_index_holds_the_gallery_towers_embeddings(digits, tmp_path):
    task = MetricLearningTask(digits, loss="infonce")
    model = tiny_model(task, shared=False)
    task.write_artifacts(model, tmp_path)
    with safe_open(str(tmp_path / "index.safetensors"), framework="pt") as f:
        z = f.get_tensor("embeddings")
    assert torch.allclose(z, direct_embeddings(task, model, "train", tower=1), atol=1e-6)
