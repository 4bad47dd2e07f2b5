import pytest
import torch
import torch.nn.functional as F

from fieldguide.data.base import ClassificationData, Split
from fieldguide.models.base import DataSpec
from fieldguide.tasks import base as task_base
from fieldguide.tasks.sequence_classification import SequenceClassificationTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.data.helpers import load_starter
from tests.tasks.helpers import StandIn, StandInConfig, stand_in_entry

METRICS = {"val/loss", "val/accuracy", "val/macro_f1", "val/ece", "val/auroc"}


def synthetic_sequences(lengths: bool = True, seed: int = 0) -> ClassificationData:
    """Synthetic right-padded sequences: channel 0 is +1 or -1 (the class) plus noise."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        y = torch.randint(0, 2, (n,), generator=g)
        real = torch.randint(3, 13, (n,), generator=g) if lengths else torch.full((n,), 12)
        x = torch.randn(n, 12, 2, generator=g) * 0.5
        x[:, :, 0] += (2 * y - 1)[:, None].float()
        x[torch.arange(12)[None, :] >= real[:, None]] = 0.0  # right padding
        return Split(x, y, real if lengths else None)

    return ClassificationData(
        name="synthetic-signs",
        modality="sequences",
        train=split(96),
        val=split(40),
        test=split(40),
        classes=["minus", "plus"],
        input_shape=(12, 2),
        description="synthetic padded sequences",
        synthetic=True,
    )


@pytest.fixture
def stand_in(monkeypatch):
    """Make build_model find the stand-in model under any name; returns a causal switch."""

    def use(causal: bool = True) -> None:
        monkeypatch.setattr(task_base, "get_entry", lambda name: stand_in_entry(causal))

    use()
    return use


def test_batches_carry_lengths():
    data = synthetic_sequences()
    task = SequenceClassificationTask(data)
    x, lengths, y = task.batch("val", torch.tensor([3, 0, 7]))
    assert x.shape == (3, 12, 2) and y.tolist() == data.val.y[[3, 0, 7]].tolist()
    assert lengths.dtype == torch.int64 and lengths.tolist() == data.val.lengths[[3, 0, 7]].tolist()
    # Without Split.lengths, every sequence is T steps long.
    full = SequenceClassificationTask(synthetic_sequences(lengths=False))
    assert full.batch("train", torch.arange(5))[1].tolist() == [12] * 5
    assert task.split_sizes() == {"train": 96, "val": 40, "test": 40} and task.train_size == 96


def test_loss_and_predict_pass_the_lengths(stand_in):
    stand_in(causal=True)
    task = SequenceClassificationTask(synthetic_sequences(), label_smoothing=0.1)
    model = task.build_model("stand-in")
    assert model.config.pool == "last"
    x, lengths, y = task.batch("train", torch.arange(16))
    expected = F.cross_entropy(model(x, lengths=lengths), y, label_smoothing=0.1)
    assert torch.allclose(task.loss(model, (x, lengths, y)), expected)
    # Pooling "last" without lengths would read padding: the loss must differ from that.
    assert not torch.allclose(
        F.cross_entropy(model(x), y, label_smoothing=0.1), expected, atol=1e-4
    )
    probs, labels = task.predict(model, "val", device="cpu", batch_size=7), task.labels("val")
    xv, lv, _ = task.batch("val", torch.arange(len(labels)))
    assert torch.allclose(probs, model(xv, lengths=lv).softmax(-1), atol=1e-6)


def test_pool_is_chosen_by_causality(stand_in):
    task = SequenceClassificationTask(synthetic_sequences())
    stand_in(causal=True)
    causal = task.build_model("gru")
    assert causal.config.pool == "last" and causal.config.out_dim == 2
    assert causal.config.in_channels == 2 and causal.name == "gru"
    stand_in(causal=False)
    assert task.build_model("gru-bi").config.pool == "mean"
    stand_in(causal=True)
    assert task.build_model("gru", pool="mean").config.pool == "mean"  # the override wins
    spec = DataSpec((5, 2), 3)
    assert StandIn.config_for_data(StandInConfig(causal=True), spec).pool == "last"
    assert StandIn.config_for_data(StandInConfig(causal=True, pool="mean"), spec).pool == "mean"
    per_step = DataSpec((5, 2), 3, output="per-step")
    assert StandIn.config_for_data(StandInConfig(pool="mean"), per_step).pool == "none"


def test_probing_the_pool_does_not_move_the_seed(stand_in):
    task = SequenceClassificationTask(synthetic_sequences())
    torch.manual_seed(3)
    built = task.build_model("stand-in")
    torch.manual_seed(3)
    direct = StandIn(StandInConfig(in_channels=2, out_dim=2, pool="last"))
    assert torch.equal(built.head.weight, direct.head.weight)


def test_stand_in_trains_with_the_real_trainer(stand_in):
    stand_in(causal=False)
    task = SequenceClassificationTask(synthetic_sequences())
    torch.manual_seed(0)
    model = task.build_model("stand-in")
    assert model.config.pool == "mean"
    config = TrainConfig(epochs=2, batch_size=16, lr=0.2, seed=0, device="cpu")
    result = Trainer(model, task, config, progress="quiet").fit()
    assert result.monitor == "val/accuracy" and result.status == "finished"
    assert METRICS <= set(result.best_metrics)
    assert result.best_metrics["val/accuracy"] > 0.9
    test = task.evaluate(model, "test", device="cpu", batch_size=64)
    assert set(test) == {m.replace("val/", "test/") for m in METRICS}


def test_stand_in_trains_on_gunpoint(stand_in):
    data = load_starter("gunpoint")
    task = SequenceClassificationTask(data)
    torch.manual_seed(0)
    model = task.build_model("stand-in")
    config = TrainConfig(epochs=2, batch_size=16, lr=0.01, seed=0, device="cpu")
    result = Trainer(model, task, config, progress="quiet").fit()
    assert METRICS <= set(result.best_metrics)
    assert 0.0 <= result.best_metrics["val/accuracy"] <= 1.0
    assert len(result.history) == 2


def test_rejects_data_that_is_not_sequences():
    data = synthetic_sequences()
    data.modality = "images"
    with pytest.raises(ValueError, match="modality 'sequences'"):
        SequenceClassificationTask(data)


def test_rejects_bad_lengths():
    data = synthetic_sequences()
    data.val.lengths = data.val.lengths.clone()
    data.val.lengths[0] = 13
    with pytest.raises(ValueError, match=r"Split.lengths must hold one length in \[1, 12\]"):
        SequenceClassificationTask(data)


def test_rejects_a_model_that_reads_no_sequences():
    task = SequenceClassificationTask(synthetic_sequences())
    with pytest.raises(ValueError, match="trains models that read sequences; 'mlp' reads vectors"):
        task.build_model("mlp")
