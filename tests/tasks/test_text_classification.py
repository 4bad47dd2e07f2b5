import pytest
import torch
import torch.nn.functional as F

from fieldguide.api.config import DataConfig, RunConfig
from fieldguide.api.run import _make_task
from fieldguide.data.base import ClassificationData, Split
from fieldguide.data.tokenizer import PAD, ByteTokenizer
from fieldguide.tasks.text_classification import TextClassificationTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.data.helpers import load_starter
from tests.tasks.text_stand_ins import MeanPoolClassifier, TokenConfig, use_stand_in

METRICS = {"val/loss", "val/accuracy", "val/macro_f1", "val/ece", "val/auroc"}
TOK = ByteTokenizer()


def reviews(n: int, seed: int, width: int = 24) -> Split:
    """Synthetic texts: 'good' or 'bad' among filler bytes; the word is the class."""
    g = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(torch.randint(0, 2, (), generator=g))
        filler = "".join(chr(97 + int(c)) for c in torch.randint(0, 6, (8,), generator=g))
        cut = int(torch.randint(0, 9, (), generator=g))
        texts.append(filler[:cut] + (" bad " if label else " good ") + filler[cut:])
        labels.append(label)
    x, lengths = TOK.batch_encode(texts)
    x = F.pad(x, (0, width - x.shape[1]), value=PAD)  # (N, width)
    return Split(x, torch.tensor(labels), lengths)


def text_classes(lengths: bool = True) -> ClassificationData:
    parts = {
        s: reviews(n, i) for i, (s, n) in enumerate((("train", 160), ("val", 48), ("test", 48)))
    }
    if not lengths:
        parts = {s: Split(p.x, p.y) for s, p in parts.items()}
    return ClassificationData(
        name="reviews",
        modality="text",
        **parts,
        classes=["good", "bad"],
        input_shape=(24,),
        description="synthetic reviews",
        synthetic=True,
    )


def test_batches_carry_a_padding_mask():
    data = text_classes()
    task = TextClassificationTask(data)
    index = torch.tensor([5, 0, 7])
    x, mask, y = task.batch("val", index)
    lengths = data.val.lengths[index]
    assert x.shape == mask.shape == (3, int(lengths.max()))  # trimmed to the longest text
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == lengths.tolist()
    assert bool((x[mask] < 256).all()) and bool((x[~mask] == PAD).all())  # True at real ids
    assert y.tolist() == data.val.y[index].tolist()
    # Without Split.lengths, the mask comes from PAD.
    plain = TextClassificationTask(text_classes(lengths=False))
    _, plain_mask, _ = plain.batch("val", index)
    assert torch.equal(plain_mask, mask)


def test_loss_and_predict_pass_the_mask(monkeypatch):
    use_stand_in(monkeypatch, MeanPoolClassifier)
    task = TextClassificationTask(text_classes(), label_smoothing=0.1)
    model = task.build_model("stand-in")
    assert model.config.vocab_size == 259 and model.config.max_len == 24
    assert model.config.out_dim == 2 and model.config.head == "sequence"
    x, mask, y = task.batch("train", torch.arange(16))
    expected = F.cross_entropy(model(x, padding_mask=mask), y, label_smoothing=0.1)
    assert torch.allclose(task.loss(model, (x, mask, y)), expected)
    # Mean pooling over padding as well would give another loss.
    assert not torch.allclose(F.cross_entropy(model(x), y, label_smoothing=0.1), expected)
    probs, labels = task.predict(model, "val", device="cpu", batch_size=7), task.labels("val")
    xv, mv, _ = task.batch("val", torch.arange(len(labels)))
    assert torch.allclose(probs, model(xv, padding_mask=mv).softmax(-1), atol=1e-6)
    assert set(task.evaluate(model, "val", device="cpu", batch_size=16)) == METRICS


def test_trains_two_epochs_with_the_real_trainer(monkeypatch):
    use_stand_in(monkeypatch, MeanPoolClassifier, hidden_dim=16)
    task = TextClassificationTask(text_classes())
    model = task.build_model("stand-in")
    config = TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cpu")
    result = Trainer(model, task, config, progress="quiet").fit()
    assert result.monitor == "val/accuracy" and len(result.history) == 2
    assert set(result.history[-1]) >= METRICS
    assert result.best_metrics["val/accuracy"] > 0.8


def test_rotten_tomatoes_batches():
    data = load_starter("rotten-tomatoes")
    task = TextClassificationTask(data)
    assert task.split_sizes() == {"train": 8_966, "val": 1_921, "test": 1_921}
    x, mask, y = task.batch("train", torch.arange(64))
    assert mask.sum(1).tolist() == data.train.lengths[:64].tolist()
    assert x.shape[1] == int(data.train.lengths[:64].max()) <= 256
    assert TOK.decode(x[0]) == TOK.decode(data.train.x[0])


def test_make_task_dispatches_text_classification():
    task = _make_task(text_classes(), RunConfig(data=DataConfig(name="reviews")))
    assert isinstance(task, TextClassificationTask)
    with pytest.raises(
        ValueError,
        match="context applies to forecasting and language-modelling; 'reviews' is text-class",
    ):
        _make_task(text_classes(), RunConfig(data=DataConfig(name="reviews", context=8)))


def test_bad_input_is_one_sentence(monkeypatch):
    data = text_classes()
    images = ClassificationData(
        "img", "images", data.train, data.val, data.test, ["a", "b"], (1, 4, 6), ""
    )
    with pytest.raises(ValueError, match="expects data with modality 'text' and samples \\(T,\\)"):
        TextClassificationTask(images)
    floats = Split(data.train.x.float(), data.train.y, data.train.lengths)
    with pytest.raises(ValueError, match="expects x as int64 token ids; got torch.float32"):
        TextClassificationTask(
            ClassificationData("r", "text", floats, data.val, data.test, ["a", "b"], (24,), "")
        )
    use_stand_in(monkeypatch, MeanPoolClassifier, max_len=8)
    with pytest.raises(
        ValueError, match="got max_len=8 but text-classification on 'reviews' needs max_len=24"
    ):
        TextClassificationTask(data).build_model("stand-in", max_len=8)
    # One output per text: a per-token head contradicts the task, and saying so beats a crash.
    assert TokenConfig().head == "token"
    assert TextClassificationTask(data).build_model("stand-in").config.head == "sequence"
    with pytest.raises(ValueError, match="got head='token' but .* needs head='sequence'"):
        TextClassificationTask(data).build_model("stand-in", head="token")
