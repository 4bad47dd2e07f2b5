"""Language modelling: predict every next token of a stream of token ids.

Letters: B batch (windows), T context (tokens per window), V vocabulary size.

Windows: example i reads x = ids[iT : iT + T] and predicts y = ids[iT + 1 : iT + T + 1], the same
tokens shifted by one. Windows start every T tokens, so their targets tile the split without
overlap: each token after the first is predicted exactly once per epoch, always with the same
amount of left context at the same place in its window. (The trainer draws only window indices,
so there is no random offset per epoch; the shuffled order of windows varies instead.)
Batch: (x (B, T), y (B, T)), int64. Head: model(x) -> logits (B, T, V), causal (the model must
not let position t see tokens after t). Loss: cross-entropy over all B * T positions.

Metrics on val/test, over the first windows of the split up to `max_eval_tokens` targets
(200,000 by default: the whole 5 % validation part of kjv but the first 47 % of its test part;
None evaluates everything):
- loss: mean cross-entropy in nats per token, -1/N sum log p(y_n | y_<n);
- perplexity = exp(loss);
- bpb, bits per byte = loss / ln 2 for the byte tokenizer, whose tokens are bytes (in general
  bits per byte = loss * tokens / (bytes * ln 2)).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.data.base import TextData
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import SPLITS, Task, named


def check_logits(logits: Tensor, shape: tuple[int, ...], owner: str) -> None:
    """Raise one sentence when the model's logits are not of `shape` (B, T, V)."""
    if not isinstance(logits, Tensor) or tuple(logits.shape) != shape:
        shown = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"{owner} expected the model to return logits of shape (B, T, V) = {shape}; got "
            f"{shown}; a token model returns one score per vocabulary id at every position."
        )


class LanguageModelingTask(Task):
    """Next-token prediction on a `TextData` stream, in windows of `context` tokens."""

    name = "language-modelling"
    accepts: ClassVar[frozenset[str]] = frozenset({"tokens"})
    monitor = "val/loss"
    metric_names = ("loss", "perplexity", "bpb")
    options = ("context",)
    output = "per-step"
    # A language model must not see the token it predicts: causal (streaming implies it).
    needs_any = frozenset({"causal", "streamable"})

    @classmethod
    def fits(cls, data: Any) -> bool:
        """One token stream (`TextData`)."""
        return isinstance(data, TextData)

    def __init__(
        self, data: TextData, context: int = 256, *, max_eval_tokens: int | None = 200_000
    ) -> None:
        if not isinstance(data, TextData):
            raise TypeError(
                f"LanguageModelingTask expects data as TextData (one token stream); got "
                f"{type(data).__name__}; text classification uses TextClassificationTask."
            )
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise ValueError(
                f"LanguageModelingTask expects context as an int of at least 1 token; got "
                f"{context!r}."
            )
        if max_eval_tokens is not None and max_eval_tokens < context:
            raise ValueError(
                f"LanguageModelingTask expects max_eval_tokens of at least context={context} "
                f"(one window), or None for all; got {max_eval_tokens}."
            )
        super().__init__(data)
        self.context, self.max_eval_tokens = context, max_eval_tokens
        self.vocab_size = data.vocab_size
        self._ids = {s: getattr(data, s) for s in SPLITS}
        self._windows = {s: self._count_windows(s) for s in SPLITS}

    def _count_windows(self, split: str) -> int:
        """Windows of `split`: every full window of context + 1 tokens, one every context."""
        n = (len(self._ids[split]) - 1) // self.context
        if n < 1:
            raise ValueError(
                f"the {split} part of '{self.data.name}' has {len(self._ids[split])} tokens but "
                f"a window needs context + 1 = {self.context + 1}; lower context."
            )
        return n

    def spec(self) -> DataSpec:
        """Windows of `context` ids in, next-token logits over the vocabulary at every step."""
        v = self.vocab_size
        return DataSpec(
            (self.context,), v, output="per-step", vocab_size=v, description=f"{v} token ids"
        )

    def split_size(self, split: str) -> int:
        """Windows of `split` (all of them; evaluation may read fewer, see `eval_size`)."""
        return self._windows[split]

    def eval_size(self, split: str) -> int:
        """Windows `evaluate` reads: all, or the first max_eval_tokens // context."""
        if self.max_eval_tokens is None:
            return self._windows[split]
        return min(self._windows[split], self.max_eval_tokens // self.context)

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor]:
        """(x, y) of windows `index` of `split`: y is x shifted one token ahead."""
        ids = self._ids[split]
        offsets = torch.arange(self.context + 1)  # (T + 1,)
        chunks = ids[index[:, None] * self.context + offsets]  # (B, T + 1)
        return chunks[:, :-1], chunks[:, 1:]

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Next-token logits (B, T, V) of one batch, checked."""
        x = batch[0]
        logits = model(x)
        check_logits(logits, (*x.shape, self.vocab_size), "LanguageModelingTask")
        return logits

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Mean cross-entropy of the next token over every position of the batch."""
        logits = self.outputs(model, batch)
        return F.cross_entropy(logits.float().flatten(0, 1), batch[1].flatten())  # over B * T

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Loss (nats per token), perplexity and bits per byte of `split`, in eval mode."""
        total, count = 0.0, 0
        for _, batch in self.eval_batches(model, split, **eval_options):
            logits = self.outputs(model, batch)
            y = batch[1]
            total += F.cross_entropy(
                logits.float().flatten(0, 1), y.flatten(), reduction="sum"
            ).item()
            count += y.numel()
        loss = total / count
        metrics = {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),  # exp overflows a float past ~709
            "bpb": loss / math.log(2),  # nats to bits; one token is one byte
        }
        return named(split, metrics)
