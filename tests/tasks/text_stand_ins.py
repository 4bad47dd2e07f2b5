"""Tiny stand-in token models for the text tasks, so their tests need no real Transformer.

Each matches the interface the task calls (and the Transformer module implements):
- language model: model(x (B, T)) -> logits (B, T, V); generate(prompt_ids, max_new_tokens=,
  temperature=, top_k=, top_p=, stop_token=, generator=) -> (B, T0 + n);
- encoder classifier: model(x (B, T), padding_mask=(B, T) True at real ids) -> (B, K);
- encoder-decoder: model(src, tgt_in, src_padding_mask=, tgt_padding_mask=) -> (B, T, V) and
  greedy(src, max_len, bos, eos) -> (B, 1 + n).
"""

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from fieldguide.data.tokenizer import EOS, ByteTokenizer
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import Entry


@dataclass(frozen=True)
class TokenConfig:
    vocab_size: int = 10
    max_len: int = 8
    out_dim: int = 3
    head: str = "token"
    hidden_dim: int = 8


class TokenStandIn(Model):
    """Reads token ids; sized like the Transformers: the data's vocabulary and longest text."""

    reads = "tokens"
    outputs = ("per-example", "per-step")
    invariants = frozenset({"causal"})  # the language-model stand-ins look back only

    @classmethod
    def config_for_data(cls, config: TokenConfig, spec: DataSpec) -> TokenConfig:
        sized = replace(
            config, vocab_size=spec.vocab_size, max_len=max(config.max_len, spec.shape[0])
        )
        if spec.output == "per-example":
            return replace(sized, head="sequence", out_dim=spec.num_outputs)
        return sized


class Unigram(TokenStandIn):
    """The same next-token distribution at every position: softmax(self.logit)."""

    def __init__(self, config: TokenConfig) -> None:
        super().__init__(config)
        self.logit = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: Tensor) -> Tensor:
        return self.logit.expand(*x.shape, -1)  # (B, T, V)


class Bigram(TokenStandIn):
    """Next-token logits from the current token alone: a (V, V) table."""

    def __init__(self, config: TokenConfig) -> None:
        super().__init__(config)
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.table(x)  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        prompt_ids,
        max_new_tokens,
        temperature=1.0,
        top_k=None,
        top_p=None,
        stop_token=None,
        generator=None,
    ):
        self.calls = getattr(self, "calls", []) + [
            dict(temperature=temperature, top_k=top_k, top_p=top_p, stop_token=stop_token)
        ]
        ids = prompt_ids
        for _ in range(max_new_tokens):
            probs = (self(ids[:, -1:])[:, -1] / temperature).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            ids = torch.cat([ids, nxt], 1)
            if stop_token is not None and bool((nxt == stop_token).all()):
                break
        return ids


class Shifter(TokenStandIn):
    """A 'language model' that writes the byte after the last one, plus `shift - 1`, and so on.

    Its one parameter, shift, is 1 when built: a test that loads saved weights sees them.
    """

    def __init__(self, config: TokenConfig) -> None:
        super().__init__(config)
        self.shift = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros(*x.shape, self.config.vocab_size)

    def generate(self, prompt_ids, max_new_tokens, stop_token=None, generator=None, **sampling):
        self.received = dict(sampling, stop_token=stop_token, generator=generator)
        ids = prompt_ids
        for _ in range(max_new_tokens):
            nxt = (ids[:, -1:] + int(self.shift.item())) % 256
            ids = torch.cat([ids, nxt], 1)
        return torch.cat([ids, torch.full_like(nxt, EOS)], 1)


class MeanPoolClassifier(TokenStandIn):
    """Embedding, mean over the real tokens (padding_mask True), linear head."""

    def __init__(self, config: TokenConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_dim)
        self.head = nn.Linear(config.hidden_dim, config.out_dim)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if padding_mask is None:
            padding_mask = torch.ones_like(x, dtype=torch.bool)
        real = padding_mask[..., None].float()  # (B, T, 1)
        pooled = (self.embed(x) * real).sum(1) / real.sum(1).clamp(min=1)  # (B, dim)
        return self.head(pooled)  # (B, K)


class TinySeq2Seq(TokenStandIn):
    """Target position t sees the mean of tgt_in[:t+1] and the mean of the real source tokens."""

    reads = "token-pairs"

    def __init__(self, config: TokenConfig) -> None:
        super().__init__(config)
        self.src_embed = nn.Embedding(config.vocab_size, config.hidden_dim)
        self.tgt_embed = nn.Embedding(config.vocab_size, config.hidden_dim)
        self.head = nn.Linear(config.hidden_dim, config.vocab_size)

    def forward(self, src, tgt_in, src_padding_mask=None, tgt_padding_mask=None):
        real = (
            torch.ones_like(src, dtype=torch.bool) if src_padding_mask is None else src_padding_mask
        )[..., None].float()
        context = (self.src_embed(src) * real).sum(1) / real.sum(1).clamp(min=1)  # (B, D)
        steps = torch.arange(1, tgt_in.shape[1] + 1, device=tgt_in.device)[None, :, None]
        h = self.tgt_embed(tgt_in).cumsum(1) / steps  # (B, T, D), causal
        return self.head(h + context[:, None])  # (B, T, V)

    @torch.no_grad()
    def greedy(self, src, max_len, bos, eos):
        tokens = torch.full((src.shape[0], 1), bos, dtype=torch.int64)
        for _ in range(max_len):
            nxt = self(src, tokens)[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], 1)
        return tokens


class Scripted(nn.Module):
    """An encoder-decoder whose greedy output is looked up: answers maps source text -> output.

    Its forward gives uniform logits (a loss of ln V per token).
    """

    def __init__(self, answers: dict[str, str], vocab_size: int = 259) -> None:
        super().__init__()
        self.answers, self.vocab_size = answers, vocab_size
        self.greedy_shapes = []
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, src, tgt_in, src_padding_mask=None, tgt_padding_mask=None):
        return torch.zeros(*tgt_in.shape, self.vocab_size) + self.weight

    def greedy(self, src, max_len, bos, eos):
        self.greedy_shapes.append(tuple(src.shape))
        tok = ByteTokenizer()
        rows = [[bos] + tok.encode(self.answers[tok.decode(row)])[:max_len] + [eos] for row in src]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [eos] * (width - len(r)) for r in rows])


def entry(cls: type, **config) -> Entry:
    """A registry entry for a stand-in, for monkeypatching a task module's `get_entry`."""
    return Entry(name="stand-in", family="tests", config=TokenConfig(**config), cls=cls)


def use_stand_in(monkeypatch, cls: type, **config) -> None:
    """Make every text task's build_model find `cls` under any name."""
    from fieldguide.tasks import base

    monkeypatch.setattr(base, "get_entry", lambda name: entry(cls, **config))
