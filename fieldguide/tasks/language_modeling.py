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

import dataclasses
import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.data.base import TextData
from fieldguide.models.registry import get_entry, replace_config
from fieldguide.tasks.base import evaluating

SPLITS = ("train", "val", "test")


def text_model_config(
    name: str,
    overrides: dict[str, Any],
    *,
    vocab_size: int,
    max_len: int,
    needs: str,
    **fields: Any,
) -> tuple[Any, type]:
    """The config of model `name` with `overrides`, sized for token ids; and the model class.

    The config must have `vocab_size`: it is set to the data's. A `max_len` field (positions
    the model can embed) is raised to `max_len` when smaller; a user override below it is an
    error. Each of `fields` (such as num_classes=2 or head="sequence") is set when the config
    has that field and `overrides` does not name it.

    Args:
        name: A registered model name.
        overrides: The user's overrides of the preset's fields.
        vocab_size: Token ids the model must embed.
        max_len: Longest sequence the task feeds it.
        needs: The task, for errors ("language modelling").
        **fields: Further fields to fill when present.
    """
    entry = get_entry(name)
    config = replace_config(entry.config, name, **overrides)
    if not hasattr(config, "vocab_size"):
        raise ValueError(
            f"{needs} needs a token model whose config has vocab_size; model '{name}' has none; "
            f"choose a Transformer (`fieldguide list --family transformer`)."
        )
    if "vocab_size" in overrides and overrides["vocab_size"] != vocab_size:
        raise ValueError(
            f"model '{name}' got vocab_size={overrides['vocab_size']} but the data has "
            f"{vocab_size} token ids; leave vocab_size out, the task sets it."
        )
    changes: dict[str, Any] = {"vocab_size": vocab_size}
    if hasattr(config, "max_len") and config.max_len < max_len:
        if "max_len" in overrides:
            raise ValueError(
                f"model '{name}' got max_len={config.max_len} but {needs} feeds sequences of "
                f"{max_len} tokens; raise max_len or leave it out."
            )
        changes["max_len"] = max_len
    for key, value in fields.items():
        if hasattr(config, key) and key not in overrides:
            changes[key] = value
    return dataclasses.replace(config, **changes), entry.cls


def check_logits(logits: Tensor, shape: tuple[int, ...], owner: str) -> None:
    """Raise one sentence when the model's logits are not of `shape` (B, T, V)."""
    if not isinstance(logits, Tensor) or tuple(logits.shape) != shape:
        shown = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"{owner} expected the model to return logits of shape (B, T, V) = {shape}; got "
            f"{shown}; a token model returns one score per vocabulary id at every position."
        )


class LanguageModelingTask:
    """Next-token prediction on a `TextData` stream, in windows of `context` tokens."""

    name = "language-modelling"
    monitor = "val/loss"
    monitor_mode = "min"

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
        self.data, self.context, self.max_eval_tokens = data, context, max_eval_tokens
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

    def build_model(self, name: str, **overrides: Any) -> nn.Module:
        """Create token model `name` with the data's vocab_size and max_len >= context."""
        config, cls = text_model_config(
            name,
            overrides,
            vocab_size=self.vocab_size,
            max_len=self.context,
            needs="language modelling",
        )
        model = cls(config)
        model.name = name
        return model

    @property
    def train_size(self) -> int:
        """Number of training windows."""
        return self._windows["train"]

    def split_sizes(self) -> dict[str, int]:
        """Windows per split (all of them; evaluation may read fewer, see `eval_windows`)."""
        return dict(self._windows)

    def eval_windows(self, split: str) -> int:
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

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Mean cross-entropy of the next token over every position of the batch."""
        x, y = batch
        logits = model(x)
        check_logits(logits, (*x.shape, self.vocab_size), "LanguageModelingTask")
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())  # over B * T

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        split: str,
        *,
        device: str,
        batch_size: int,
        autocast: AbstractContextManager | None = None,
    ) -> dict[str, float]:
        """Loss (nats per token), perplexity and bits per byte of `split`, in eval mode."""
        with evaluating(model):
            total, count = 0.0, 0
            windows = self.eval_windows(split)
            for start in range(0, windows, batch_size):
                index = torch.arange(start, min(start + batch_size, windows))
                x, y = (t.to(device) for t in self.batch(split, index))
                with autocast or nullcontext():
                    logits = model(x)
                check_logits(logits, (*x.shape, self.vocab_size), "LanguageModelingTask")
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
        return {f"{split}/{name}": value for name, value in metrics.items()}
