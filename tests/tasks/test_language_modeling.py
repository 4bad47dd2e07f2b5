import math
from collections import Counter

import pytest
import torch

from fieldguide.api.config import DataConfig, RunConfig
from fieldguide.api.run import _make_task
from fieldguide.data.base import ClassificationData, Split, TextData
from fieldguide.tasks.language_modeling import LanguageModelingTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.data.helpers import load_starter
from tests.tasks.text_stand_ins import Bigram, Unigram, use_stand_in


def text_data(train, val, test, vocab_size=259, name="tiny") -> TextData:
    as_ids = lambda ids: torch.as_tensor(ids, dtype=torch.int64)  # noqa: E731
    return TextData(name, as_ids(train), as_ids(val), as_ids(test), vocab_size, "test text")


def cyclic(n: int, period: int = 5) -> list[int]:
    """0, 1, 2, 3, 4, 0, 1, ...: each token fixes the next one."""
    return [i % period for i in range(n)]


def test_windows_are_shifted_and_tile_the_split():
    data = text_data(list(range(100, 123)), cyclic(12), cyclic(12))  # 23 train tokens
    task = LanguageModelingTask(data, context=5)
    assert task.train_size == 4 and task.split_sizes() == {"train": 4, "val": 2, "test": 2}
    x, y = task.batch("train", torch.tensor([2, 0, 3, 1]))
    assert x.shape == y.shape == (4, 5) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])  # next token
    assert x[1].tolist() == [100, 101, 102, 103, 104] and y[1].tolist() == [101, 102, 103, 104, 105]
    # In window order, the targets are tokens 1..20 exactly once: no overlap, no gap.
    _, y_all = task.batch("train", torch.arange(4))
    assert y_all.flatten().tolist() == list(range(101, 121))


def test_loss_is_next_token_cross_entropy(monkeypatch):
    use_stand_in(monkeypatch, Bigram, vocab_size=5)
    data = text_data(cyclic(41), cyclic(21), cyclic(21), vocab_size=5)
    task = LanguageModelingTask(data, context=4)
    model = task.build_model("stand-in")
    x, y = task.batch("train", torch.arange(3))
    logits = model(x)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), y.reshape(-1))
    assert torch.allclose(task.loss(model, (x, y)), expected)


def test_unigram_perplexity_equals_the_hand_computed_one():
    val = [0, 1, 2, 1, 0, 3, 1, 4, 2, 2, 1, 0, 3, 3, 1, 4, 0, 2, 1, 1, 0, 4]  # 22 tokens
    data = text_data(cyclic(30), val, cyclic(30), vocab_size=5)
    task = LanguageModelingTask(data, context=4, max_eval_tokens=None)
    probs = [0.1, 0.2, 0.3, 0.25, 0.15]
    model = Unigram.__new__(Unigram)
    torch.nn.Module.__init__(model)
    model.logit = torch.nn.Parameter(torch.tensor(probs).log())
    # (22 - 1) // 4 = 5 windows predict tokens 1..20 of val.
    counts = Counter(val[1:21])
    nll = -sum(n * math.log(probs[token]) for token, n in counts.items()) / 20
    metrics = task.evaluate(model, "val", device="cpu", batch_size=2)
    assert metrics["val/loss"] == pytest.approx(nll, rel=1e-6)
    assert metrics["val/perplexity"] == pytest.approx(math.exp(nll), rel=1e-6)
    assert set(metrics) == {"val/loss", "val/perplexity", "val/bpb"}
    # max_eval_tokens keeps the first whole windows only: 9 tokens -> 2 windows, tokens 1..8.
    capped = LanguageModelingTask(data, context=4, max_eval_tokens=9)
    assert capped.eval_size("val") == 2
    counts = Counter(val[1:9])
    nll = -sum(n * math.log(probs[token]) for token, n in counts.items()) / 8
    assert capped.evaluate(model, "val", device="cpu", batch_size=8)["val/loss"] == pytest.approx(
        nll, rel=1e-6
    )


def test_bits_per_byte_is_loss_over_ln2():
    # Uniform logits over V = 259 ids: a loss of ln 259 nats, log2 259 bits, per byte.
    data = text_data(cyclic(30), list(range(200, 241)), cyclic(30))
    task = LanguageModelingTask(data, context=8)
    model = Unigram.__new__(Unigram)
    torch.nn.Module.__init__(model)
    model.logit = torch.nn.Parameter(torch.zeros(259))
    metrics = task.evaluate(model, "val", device="cpu", batch_size=3)
    assert metrics["val/loss"] == pytest.approx(math.log(259), rel=1e-6)
    assert metrics["val/bpb"] == pytest.approx(metrics["val/loss"] / math.log(2), rel=1e-12)
    assert metrics["val/bpb"] == pytest.approx(math.log2(259), rel=1e-6)
    assert metrics["val/perplexity"] == pytest.approx(259, rel=1e-5)


def test_build_model_sizes_the_config(monkeypatch):
    use_stand_in(monkeypatch, Bigram)  # preset: vocab_size 10, max_len 8
    data = text_data(cyclic(100), cyclic(40), cyclic(40))
    task = LanguageModelingTask(data, context=16)
    model = task.build_model("stand-in", hidden_dim=4)
    assert model.config.vocab_size == 259 and model.config.max_len == 16
    assert model.config.hidden_dim == 4 and model.name == "stand-in"
    assert task.build_model("stand-in", max_len=32).config.max_len == 32  # larger is kept
    with pytest.raises(
        ValueError, match="got max_len=8 but language-modelling on 'tiny' needs max_len=16"
    ):
        task.build_model("stand-in", max_len=8)
    with pytest.raises(
        ValueError, match="got vocab_size=300 but language-modelling on 'tiny' needs vocab_size=259"
    ):
        task.build_model("stand-in", vocab_size=300)


def test_trains_with_the_real_trainer(monkeypatch):
    use_stand_in(monkeypatch, Bigram)
    data = text_data(cyclic(2001, 7), cyclic(401, 7), cyclic(401, 7))
    task = LanguageModelingTask(data, context=20)
    model = task.build_model("stand-in")
    before = task.evaluate(model, "val", device="cpu", batch_size=64)["val/loss"]
    config = TrainConfig(epochs=2, batch_size=8, lr=0.5, device="cpu")
    result = Trainer(model, task, config, progress="quiet").fit()
    assert result.monitor == "val/loss" and len(result.history) == 2
    assert result.best_metrics["val/loss"] < 0.5 * before
    assert task.evaluate(model, "test", device="cpu", batch_size=64)["test/bpb"] < 1.0


def test_make_task_dispatches_text_streams():
    data = text_data(cyclic(600), cyclic(300), cyclic(300))
    task = _make_task(data, RunConfig(data=DataConfig(name="tiny")))
    assert isinstance(task, LanguageModelingTask) and task.context == 256
    task = _make_task(data, RunConfig(data=DataConfig(name="tiny", context=32)))
    assert task.context == 32
    with pytest.raises(
        ValueError, match="horizon applies to forecasting; 'tiny' is language-modelling data"
    ):
        _make_task(data, RunConfig(data=DataConfig(name="tiny", horizon=4)))


def test_kjv_windows():
    data = load_starter("kjv")
    task = LanguageModelingTask(data)
    assert task.context == 256 and task.train_size == (3_653_503 - 1) // 256
    assert task.eval_size("val") == 200_000 // 256
    x, y = task.batch("val", torch.tensor([0]))
    assert torch.equal(x[0], data.val[:256]) and torch.equal(y[0], data.val[1:257])


def test_bad_input_is_one_sentence(monkeypatch):
    data = text_data(cyclic(100), cyclic(20), cyclic(20))
    split = Split(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64))
    labelled = ClassificationData("c", "text", split, split, split, ["a"], (3,), "")
    with pytest.raises(TypeError, match="expects data as TextData \\(one token stream\\)"):
        LanguageModelingTask(labelled)
    with pytest.raises(ValueError, match="context as an int of at least 1 token; got 0"):
        LanguageModelingTask(data, context=0)
    with pytest.raises(ValueError, match="the val part of 'tiny' has 20 tokens but a window needs"):
        LanguageModelingTask(data, context=32)
    with pytest.raises(ValueError, match="max_eval_tokens of at least context=8"):
        LanguageModelingTask(data, context=8, max_eval_tokens=4)
    task = LanguageModelingTask(data, context=8)
    wrong = torch.nn.Linear(8, 259)  # gives (B, 259), not (B, T, V)
    with pytest.raises(ValueError, match="logits of shape \\(B, T, V\\) = \\(2, 8, 259\\); got"):
        task.loss(lambda x: wrong(x.float()), task.batch("train", torch.arange(2)))
    use_stand_in(monkeypatch, Bigram)
    from fieldguide.tasks import base
    from tests.tasks.helpers import stand_in_entry

    monkeypatch.setattr(base, "get_entry", lambda name: stand_in_entry())
    with pytest.raises(ValueError, match="trains models that read tokens; 'gru' reads sequences"):
        task.build_model("gru")
