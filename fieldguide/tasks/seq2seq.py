"""Sequence to sequence: read a source sequence, write its target, token by token.

Letters: B batch, S source length, T target length (+1 for BOS or EOS), V vocabulary size.

Batch: (src (B, S), tgt_in (B, T), tgt_out (B, T)), int64 ids right-padded with PAD, each
trimmed to the longest row of the batch. tgt_in is BOS + target and tgt_out is target + EOS, so
position t of tgt_in predicts position t of tgt_out (teacher forcing). Padding masks are
`ids != PAD`: True at real tokens, the convention of layers/attention.py.
Model: `model(src, tgt_in, src_padding_mask=..., tgt_padding_mask=...)` -> logits (B, T, V),
causal over the target; `model.greedy(src, max_len, bos, eos)` -> ids (B, L), L <= max_len.
Loss: cross-entropy over the real positions of tgt_out (PAD ignored).

Metrics on a split, from greedy decoding: loss (teacher forced, nats per target token);
exact_match, the share of outputs equal to their target; chrf, the character n-gram F-score
(Popović, 2015) with n = 1..6 and beta = 2, corpus level, on a 0..1 scale (x 100 for the
sacreBLEU convention). Greedy decoding gets sources of a single length per call, so no padding
ever reaches the encoder and `greedy` needs no mask.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.data.base import Seq2SeqData
from fieldguide.data.tokenizer import BOS, EOS, PAD, ByteTokenizer
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import SPLITS, Task, evaluating, named
from fieldguide.tasks.language_modeling import check_logits


def chrf(
    hypotheses: Sequence[str], references: Sequence[str], *, order: int = 6, beta: float = 2.0
) -> float:
    """Corpus-level chrF of `hypotheses` against one reference each, in [0, 1].

    Whitespace is removed, then for each n = 1..order the matching character n-grams
    (clipped counts) are summed over the corpus: P_n = matches / hypothesis n-grams and
    R_n = matches / reference n-grams. P and R are the means of P_n and R_n over the orders
    where both sides have n-grams, and chrF = (1 + beta^2) P R / (beta^2 P + R), so beta = 2
    weighs recall twice as much as precision. This is sacreBLEU's chrF with word order 0.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"chrf expects one reference per hypothesis; got {len(hypotheses)} hypotheses and "
            f"{len(references)} references."
        )
    stats = [[0, 0, 0] for _ in range(order)]  # per n: hypothesis n-grams, reference, matches
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp, ref = "".join(hyp.split()), "".join(ref.split())
        for n in range(1, order + 1):
            h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
            r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
            stats[n - 1][0] += sum(h.values())
            stats[n - 1][1] += sum(r.values())
            stats[n - 1][2] += sum((h & r).values())
    orders = [(m / h, m / r) for h, r, m in stats if h > 0 and r > 0]
    if not orders:
        return 0.0
    precision = sum(p for p, _ in orders) / len(orders)
    recall = sum(r for _, r in orders) / len(orders)
    if precision + recall == 0:
        return 0.0
    b2 = beta**2
    return (1 + b2) * precision * recall / (b2 * precision + recall)


def strip_output(ids: Sequence[int]) -> list[int]:
    """The tokens of one decoded row: a leading BOS dropped, cut at the first EOS, no PAD."""
    ids = list(ids)
    if ids and ids[0] == BOS:
        ids = ids[1:]
    if EOS in ids:
        ids = ids[: ids.index(EOS)]
    return [i for i in ids if i not in (PAD, BOS)]


class Seq2SeqTask(Task):
    """Teacher-forced training and greedy-decoded evaluation of (source, target) pairs."""

    name = "seq2seq"
    accepts: ClassVar[frozenset[str]] = frozenset({"token-pairs"})
    monitor = "val/exact_match"
    metric_names = ("loss", "exact_match", "chrf")
    output = "per-step"

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Source and target pairs (`Seq2SeqData`)."""
        return isinstance(data, Seq2SeqData)

    def __init__(self, data: Seq2SeqData) -> None:
        if not isinstance(data, Seq2SeqData):
            raise TypeError(
                f"Seq2SeqTask expects data as Seq2SeqData (source, target pairs); got "
                f"{type(data).__name__}."
            )
        super().__init__(data)
        self.vocab_size = data.vocab_size
        self._src, self._tgt_in, self._tgt_out = {}, {}, {}
        for split in SPLITS:
            part = getattr(data, split)
            tgt = part.tgt  # (N, T), PAD after each end
            lengths = (tgt != PAD).sum(1)  # (N,)
            pad = torch.full((len(part), 1), PAD, dtype=torch.int64)
            self._src[split] = part.src
            self._tgt_in[split] = torch.cat([torch.full_like(pad, BOS), tgt], 1)  # (N, T + 1)
            tgt_out = torch.cat([tgt, pad], 1)  # (N, T + 1)
            tgt_out[torch.arange(len(part)), lengths] = EOS  # just after each target
            self._tgt_out[split] = tgt_out
        # Greedy decoding may write the longest target and its EOS, and no more.
        self.max_decode_len = max(int((self._tgt_out[s] != PAD).sum(1).max()) for s in SPLITS)
        self.tokenizer = ByteTokenizer()

    def spec(self) -> DataSpec:
        """Sources and targets of up to T ids, next-token logits over the vocabulary per step."""
        longest = max(self.max_decode_len, *(self._src[s].shape[1] for s in SPLITS))
        v = self.vocab_size
        return DataSpec((longest,), v, output="per-step", vocab_size=v, description=f"{v} ids")

    def state(self) -> dict[str, Any]:
        """The longest target with its EOS, in ids: where decoding new sources stops, as here."""
        return {"max_decode_len": self.max_decode_len}

    def split_size(self, split: str) -> int:
        """Pairs of `split`."""
        return len(self._src[split])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(src, tgt_in, tgt_out) of pairs `index`, trimmed to the batch's longest rows."""
        src = self._src[split][index]
        tgt_in, tgt_out = self._tgt_in[split][index], self._tgt_out[split][index]
        s = int((src != PAD).sum(1).max())
        t = int((tgt_out != PAD).sum(1).max())
        return src[:, :s], tgt_in[:, :t], tgt_out[:, :t]

    def _logits(self, model: nn.Module, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V), with padding masks True at real tokens."""
        logits = model(src, tgt_in, src_padding_mask=src != PAD, tgt_padding_mask=tgt_in != PAD)
        check_logits(logits, (*tgt_in.shape, self.vocab_size), "Seq2SeqTask")
        return logits

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Cross-entropy over real target positions; PAD positions count for nothing."""
        src, tgt_in, tgt_out = batch
        logits = self._logits(model, src, tgt_in)
        return F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)

    @staticmethod
    def _greedy(model: nn.Module) -> Any:
        """The model's greedy decoder, or one sentence on why it has none."""
        greedy = getattr(model, "greedy", None)
        if not callable(greedy):
            raise TypeError(
                f"Seq2SeqTask needs a model with greedy(src, max_len, bos, eos) to score exact "
                f"match and chrF; {type(model).__name__} has none."
            )
        return greedy

    @torch.no_grad()
    def decode(
        self,
        model: nn.Module,
        split: str,
        *,
        device: str = "cpu",
        batch_size: int = 256,
        autocast: AbstractContextManager | None = None,
    ) -> list[list[int]]:
        """Greedy outputs for every source of `split`, in order, stripped by `strip_output`.

        Sources are grouped by length, so each `greedy` call sees no padding.
        """
        greedy = self._greedy(model)
        src = self._src[split]
        lengths = (src != PAD).sum(1)  # (N,)
        outputs: list[list[int]] = [[] for _ in range(len(src))]
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero().flatten()
            for chunk in rows.split(batch_size):
                with autocast or nullcontext():
                    out = greedy(src[chunk, :length].to(device), self.max_decode_len, BOS, EOS)
                if not isinstance(out, Tensor) or out.ndim != 2 or len(out) != len(chunk):
                    shown = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    raise ValueError(
                        f"Seq2SeqTask expected greedy to return ids of shape (B, L) with "
                        f"B={len(chunk)}; got {shown}."
                    )
                for row, ids in zip(chunk.tolist(), out.cpu().tolist(), strict=True):
                    outputs[row] = strip_output(ids)
        return outputs

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Teacher-forced loss, exact match and chrF of greedy outputs on `split`."""
        self._greedy(model)  # fail before the loss pass, not after it
        options = {"device": "cpu", "batch_size": 256, **eval_options}
        # 1. teacher-forced loss, weighted by real target tokens
        total, count = 0.0, 0
        for _, (src, tgt_in, tgt_out) in self.eval_batches(model, split, **options):
            logits = self._logits(model, src, tgt_in)
            total += F.cross_entropy(
                logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD, reduction="sum"
            ).item()
            count += int((tgt_out != PAD).sum())
        # 2. greedy outputs against the targets
        with evaluating(model):
            outputs = self.decode(model, split, **options)
        targets = [strip_output(row) for row in self._tgt_out[split].tolist()]
        decode = self.tokenizer.decode
        metrics = {
            "loss": total / count,
            "exact_match": sum(o == t for o, t in zip(outputs, targets, strict=True))
            / len(targets),
            "chrf": chrf([decode(o) for o in outputs], [decode(t) for t in targets]),
        }
        return named(split, metrics)
