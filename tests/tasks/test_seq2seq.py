import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from fieldguide.api.config import DataConfig, RunConfig
from fieldguide.api.run import _make_task
from fieldguide.data.base import Seq2SeqData, Seq2SeqSplit
from fieldguide.data.text import load_dates
from fieldguide.data.tokenizer import BOS, EOS, PAD, ByteTokenizer, pad_batch
from fieldguide.tasks.seq2seq import Seq2SeqTask, chrf, strip_output
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.tasks.text_stand_ins import Scripted, TinySeq2Seq, TokenConfig, use_stand_in

TOK = ByteTokenizer()
PAIRS = [("ab", "x"), ("abcd", "yz"), ("b", ""), ("ba", "xyz"), ("cd", "zz"), ("dcba", "y")]


def split_of(pairs) -> Seq2SeqSplit:
    src, _ = pad_batch([TOK.encode(s) for s, _ in pairs])
    tgt, _ = pad_batch([TOK.encode(t) for _, t in pairs])
    return Seq2SeqSplit(src, tgt)


def pairs_data(pairs=PAIRS) -> Seq2SeqData:
    part = split_of(pairs)
    return Seq2SeqData("pairs", part, part, part, 259, "synthetic test pairs", synthetic=True)


def test_batches_add_bos_and_eos_and_trim_padding():
    task = Seq2SeqTask(pairs_data())
    src, tgt_in, tgt_out = task.batch("train", torch.tensor([0, 2]))  # ("ab","x"), ("b","")
    assert src.tolist() == [[97, 98], [98, PAD]]  # trimmed to the longest source, 2
    assert tgt_in.tolist() == [[BOS, 120], [BOS, PAD]]
    assert tgt_out.tolist() == [[120, EOS], [EOS, PAD]]
    src, tgt_in, tgt_out = task.batch("val", torch.tensor([3]))
    assert TOK.decode(src[0]) == "ba" and tgt_in.tolist() == [[BOS, 120, 121, 122]]
    assert tgt_out.tolist() == [[120, 121, 122, EOS]]
    # Padding sits at the same places in tgt_in and tgt_out, so one mask serves both.
    _, tgt_in, tgt_out = task.batch("train", torch.arange(6))
    assert torch.equal(tgt_in == PAD, tgt_out == PAD)
    assert task.max_decode_len == 4 and task.split_sizes() == {"train": 6, "val": 6, "test": 6}


def test_loss_ignores_padding_positions():
    torch.manual_seed(0)
    task = Seq2SeqTask(pairs_data())
    model = TinySeq2Seq(TokenConfig(vocab_size=259))
    batch = task.batch("train", torch.arange(6))
    src, tgt_in, tgt_out = batch
    loss = task.loss(model, batch)
    real = tgt_out != PAD
    logits = model(src, tgt_in, src_padding_mask=src != PAD, tgt_padding_mask=tgt_in != PAD)
    assert torch.allclose(loss, F.cross_entropy(logits[real], tgt_out[real]))

    def noisy(*args, **kwargs):  # huge changes, but only where the target is PAD
        out = model(*args, **kwargs)
        return out + 100 * torch.randn(out.shape) * (~real)[..., None]

    assert torch.allclose(task.loss(noisy, batch), loss)
    # Sanity: the same noise on real positions does change it.
    assert not torch.allclose(task.loss(lambda *a, **k: model(*a, **k) * 5, batch), loss)


def test_masks_are_true_at_real_tokens():
    seen = {}

    def spy(src, tgt_in, src_padding_mask=None, tgt_padding_mask=None):
        seen.update(src=src_padding_mask, tgt=tgt_padding_mask)
        return torch.zeros(*tgt_in.shape, 259, requires_grad=True)

    task = Seq2SeqTask(pairs_data())
    task.loss(spy, task.batch("train", torch.tensor([0, 2])))
    assert seen["src"].tolist() == [[True, True], [True, False]]
    assert seen["tgt"].tolist() == [[True, True], [True, False]]


def test_chrf_on_hand_computed_pairs():
    assert chrf(["1998-03-05"], ["1998-03-05"]) == 1.0
    assert chrf(["a b c"], ["abc"]) == 1.0  # whitespace is ignored
    assert chrf(["xyz"], ["abc"]) == 0.0
    # "abc" vs "abd": P_n = R_n = 2/3, 1/2, 0 for n = 1..3 (no 4-grams): P = R = 7/18 = chrF.
    assert chrf(["abc"], ["abd"]) == pytest.approx(7 / 18)
    # "ab" vs "abc": P = (1 + 1) / 2 = 1, R = (2/3 + 1/2) / 2 = 7/12;
    # F2 = 5 P R / (4 P + R) = (35/12) / (55/12) = 7/11.
    assert chrf(["ab"], ["abc"]) == pytest.approx(7 / 11)
    # Corpus level: the n-gram counts of both pairs are summed before dividing.
    p = (Fraction(4, 5) + Fraction(2, 3) + 0) / 3
    r = (Fraction(4, 6) + Fraction(2, 4) + 0) / 3
    assert chrf(["abc", "ab"], ["abd", "abc"]) == pytest.approx(float(5 * p * r / (4 * p + r)))
    with pytest.raises(ValueError, match="one reference per hypothesis; got 2 hypotheses and 1"):
        chrf(["a", "b"], ["a"])


def test_strip_output_accepts_either_bos_convention():
    assert strip_output([BOS, 120, 121, EOS, EOS, EOS]) == [120, 121]
    assert strip_output([120, EOS, 121]) == [120]
    assert strip_output([BOS, 120, PAD]) == [120]


def test_exact_match_and_chrf_from_greedy_outputs():
    task = Seq2SeqTask(pairs_data())
    answers = {s: t for s, t in PAIRS}
    perfect = Scripted(answers)
    metrics = task.evaluate(perfect, "val", device="cpu", batch_size=2)
    assert metrics["val/exact_match"] == 1.0 and metrics["val/chrf"] == 1.0
    assert metrics["val/loss"] == pytest.approx(math.log(259), rel=1e-6)  # uniform logits
    # Each greedy call gets sources of one length, so no padding reaches the encoder.
    # Lengths 1 (one source), 2 (three, so two calls of batch_size 2) and 4 (two).
    assert sorted(perfect.greedy_shapes) == [(1, 1), (1, 2), (2, 2), (2, 4)]
    # Two of six wrong: "yz" -> "yy" and "xyz" -> "xy".
    wrong = Scripted(answers | {"abcd": "yy", "ba": "xy"})
    metrics = task.evaluate(wrong, "test", device="cpu", batch_size=4)
    assert metrics["test/exact_match"] == pytest.approx(4 / 6)
    hyps = ["x", "yy", "", "xy", "zz", "y"]
    refs = ["x", "yz", "", "xyz", "zz", "y"]
    assert metrics["test/chrf"] == pytest.approx(chrf(hyps, refs))
    assert metrics["test/chrf"] < 1.0


def test_trains_with_the_real_trainer(monkeypatch):
    use_stand_in(monkeypatch, TinySeq2Seq, hidden_dim=16)
    data = load_dates(seed=0, num_examples=600)
    task = Seq2SeqTask(data)
    model = task.build_model("stand-in")
    longest = max(part.src.shape[1] for part in (data.train, data.val, data.test))
    assert model.config.vocab_size == 259 and model.config.max_len == longest > 11
    config = TrainConfig(epochs=2, batch_size=32, lr=0.02, device="cpu")
    result = Trainer(model, task, config, progress="quiet").fit()
    assert result.monitor == "val/exact_match" and len(result.history) == 2
    first, last = result.history[0], result.history[-1]
    assert set(last) >= {"val/loss", "val/exact_match", "val/chrf"}
    assert last["val/loss"] < first["val/loss"] < math.log(259)
    assert 0.0 <= last["val/chrf"] <= 1.0


def test_make_task_dispatches_seq2seq():
    data = pairs_data()
    assert isinstance(_make_task(data, RunConfig(data=DataConfig(name="pairs"))), Seq2SeqTask)
    with pytest.raises(ValueError, match="'pairs' is seq2seq data"):
        _make_task(data, RunConfig(data=DataConfig(name="pairs", context=8)))


def test_bad_input_is_one_sentence():
    with pytest.raises(TypeError, match="expects data as Seq2SeqData"):
        Seq2SeqTask(object())
    task = Seq2SeqTask(pairs_data())
    with pytest.raises(TypeError, match="needs a model with greedy\\(src, max_len, bos, eos\\)"):
        task.evaluate(torch.nn.Identity(), "val", device="cpu", batch_size=4)

    class Flat(Scripted):
        def greedy(self, src, max_len, bos, eos):
            return torch.zeros(len(src), dtype=torch.int64)

    with pytest.raises(ValueError, match="expected greedy to return ids of shape \\(B, L\\)"):
        task.evaluate(Flat({}), "val", device="cpu", batch_size=4)
    with pytest.raises(ValueError, match="logits of shape \\(B, T, V\\) = \\(1, 2, 259\\)"):
        task.loss(lambda *a, **k: torch.zeros(1, 2, 5), task.batch("train", torch.tensor([0])))
