"""Multi-head attention and the pre-norm Transformer block (see docs/guide/transformer.md).

Letters: B batch, T query steps, S key steps, D width, h heads, D/h the width of one head.

- Vaswani et al., "Attention Is All You Need" (2017): per head, softmax(q k^T / sqrt(D/h)) v.
- Xiong et al., "On Layer Normalization in the Transformer Architecture" (2020): the norm
  sits inside the residual branch (pre-LN), x + f(norm(x)), which trains without warm-up tricks.
- Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding" (2021).
- Shazeer, "GLU Variants Improve Transformer" (2020): the SwiGLU MLP.
- Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)" (2016): GELU, exact (erf) as in
  BERT and ViT, or its tanh approximation as in GPT-2 (`mlp="gelu-tanh"`); the two differ by
  at most 4.7e-4 (near x = -2.7), enough that GPT-2's weights need the approximation back.

Attention runs on `F.scaled_dot_product_attention` (SDPA) with 4-D (B, h, T, D/h) inputs: 3-D
inputs fall back to a kernel 3-4x slower, and the guide's explicit T x T softmax keeps 7x
more memory for backward (perf-notes.md).

Masks are boolean, never additive. `padding_mask` is a bool tensor (B, S), True where the
key is a real token and False where it is padding: the sense of SDPA's boolean `attn_mask`
(True = may attend) and of the `lengths` masks of layers/sequence.py, and the opposite of
`nn.MultiheadAttention`'s `key_padding_mask` (True = ignore). The guide's `-1e9` fill
overflows to -inf in fp16; SDPA applies a boolean mask in its own precision. Padding and
causality combine into one mask (B, 1, T, S); a causal mask with nothing else to combine
is never built, since `is_causal=True` costs 1.6x less (perf-notes.md).

A query row that may attend to no key (every key padded) is a softmax over nothing: NaN
under -inf masking in any dtype. Such rows are opened to every key for SDPA, so it computes
finite numbers, and the layer's output there is then set to exactly zero: a query that sees
nothing adds nothing to its residual stream.

KV cache: self-attention returns the keys and values it attended over, (B, h, S, D/h) each,
and takes them back as `cache`, so a decoder feeds only its new tokens. With S_past cached
steps, new query i sits at position S_past + i and sees keys 0 .. S_past + i: causality is
aligned bottom-right, so a chunk of T new tokens may follow any number of cached ones. (SDPA's
`is_causal` aligns top-left, so it is used only when T == S.) Cross-attention caches its
projected context once and reuses it at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.shapes import check_device


@dataclass(frozen=True)
class KVCache:
    """Keys and values of the steps attended so far, each (B, h, S, D/h); keys already rotated."""

    k: Tensor
    v: Tensor

    @property
    def length(self) -> int:
        """S, the number of cached steps."""
        return self.k.shape[2]

    def select(self, index: Tensor) -> KVCache:
        """The cache of batch rows `index` (B',): beam search reorders its hypotheses so."""
        return KVCache(self.k[index], self.v[index])


# One block's caches: its self-attention's and, in a decoder with cross-attention, the
# projected context's (None without cross-attention).
BlockCache = tuple[KVCache, KVCache | None]


def rotate(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding of x (B, h, T, D/h) at integer positions (T,) (Su et al., 2021).

    Channel j and channel j + D/2h of a head form a pair that turns by the angle
    position * base^(-2j / (D/h)), so <rotate(q, i), rotate(k, j)> depends on i - j only.
    """
    half = x.shape[-1] // 2
    # At least float32, so that fp16 and bf16 inputs keep their angles at large positions.
    work = torch.promote_types(x.dtype, torch.float32)
    # theta_j = base^(-2j/(D/h))
    freq = base ** (-torch.arange(half, device=x.device, dtype=work) / half)
    angle = positions.to(work)[:, None] * freq  # (T, D/2h)
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x.to(work)[..., :half], x.to(work)[..., half:]  # (B, h, T, D/2h) each
    turned = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return turned.to(x.dtype)


def check_padding_mask(
    mask: object,
    batch: int,
    keys: int,
    *,
    owner: str,
    name: str,
    device: torch.device | None = None,
) -> None:
    """Raise one sentence unless `mask` is a bool tensor (batch, keys); True marks real tokens.

    With `device` (the ids' device, where attention runs), the mask must be there too.
    """
    expected = f"a bool tensor of shape ({batch}, {keys}), True at real tokens"
    if not isinstance(mask, Tensor):
        raise TypeError(f"{owner} expects {name} as {expected}; got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        # SDPA would add a float mask to the scores rather than select with it: refuse it.
        raise TypeError(
            f"{owner} expects {name} as {expected}; got dtype {mask.dtype}; "
            "convert 0/1 masks with mask.bool()."
        )
    if tuple(mask.shape) != (batch, keys):
        raise ValueError(f"{owner} expects {name} as {expected}; got {tuple(mask.shape)}.")
    if device is not None:
        check_device(mask, device, owner=owner, name=name)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017) on SDPA.

    Self-attention projects q, k, v from x with one fused matrix (`qkv`); cross-attention
    (`cross=True`) projects q from x (`query`) and k, v from a context (`key_value`), as in an
    encoder-decoder. `rotary=True` rotates q and k by their absolute positions (self-attention
    only: query and context positions are not on one axis).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        rotary: bool = False,
        cross: bool = False,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(
                f"MultiHeadAttention needs dim divisible by num_heads; got dim={dim}, "
                f"num_heads={num_heads}."
            )
        if rotary and (dim // num_heads) % 2 != 0:
            raise ValueError(
                f"MultiHeadAttention with rotary=True turns channel pairs, so it needs an even "
                f"head width dim/num_heads; got {dim}/{num_heads} = {dim // num_heads}."
            )
        if rotary and cross:
            raise ValueError(
                "MultiHeadAttention takes rotary=True for self-attention only; got cross=True, "
                "whose query and context positions are not on one axis."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention expects dropout in [0, 1); got {dropout}.")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.dropout, self.rotary, self.cross = dropout, rotary, cross
        if cross:
            self.query = nn.Linear(dim, dim, bias=bias)
            self.key_value = nn.Linear(dim, 2 * dim, bias=bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.output = nn.Linear(dim, dim, bias=bias)

    def _heads(self, x: Tensor) -> tuple[Tensor, ...]:
        """Split (B, T, n·D) projections into n tensors (B, h, T, D/h)."""
        b, t, width = x.shape
        n = width // (self.num_heads * self.head_dim)  # spelled out: -1 fails on 0 elements
        # Unbind before transposing: backward then stacks the gradients straight into the
        # (B, T, n, h, D/h) layout of x, with no extra copy of the whole (B, T, n·D) gradient.
        parts = x.view(b, t, n, self.num_heads, self.head_dim).unbind(2)  # (B, T, h, D/h) each
        return tuple(part.transpose(1, 2) for part in parts)  # (B, h, T, D/h) each

    def context_cache(self, context: Tensor) -> KVCache:
        """Keys and values of a cross-attention context (B, S, D), to reuse at every step."""
        k, v = self._heads(self.key_value(context))  # (B, h, S, D/h) each
        return KVCache(k, v)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, KVCache]:
        """Attend from queries x (B, T, D) to keys (B, S, D); return (out (B, T, D), cache).

        Args:
            x: the queries' inputs, (B, T, D).
            context: cross-attention only, the keys' inputs (B, S, D); unused with a cache.
            padding_mask: bool (B, S), True at real keys; with a self-attention cache the S
                keys are the cached steps followed by the T new ones.
            causal: self-attention only; query i sees keys up to S_past + i.
            cache: self-attention: the steps before x, extended and returned; cross-attention:
                the context's projections from `context_cache`, returned unchanged.
        """
        b, t, _ = x.shape
        if self.cross:
            if causal:
                raise ValueError("MultiHeadAttention with cross=True takes no causal mask.")
            if cache is None and context is None:
                raise ValueError("MultiHeadAttention with cross=True needs a context or cache.")
            (q,) = self._heads(self.query(x))  # (B, h, T, D/h)
            cache = cache if cache is not None else self.context_cache(context)
            k, v = cache.k, cache.v  # (B, h, S, D/h)
        else:
            q, k, v = self._heads(self.qkv(x))  # (B, h, T, D/h) each
            past = 0 if cache is None else cache.length
            if self.rotary:
                positions = torch.arange(past, past + t, device=x.device)
                q, k = rotate(q, positions), rotate(k, positions)
            if cache is not None:
                k, v = torch.cat([cache.k, k], 2), torch.cat([cache.v, v], 2)  # (B, h, S, D/h)
            cache = KVCache(k, v)
        s = k.shape[2]
        if padding_mask is not None:
            check_padding_mask(padding_mask, b, s, owner="MultiHeadAttention", name="padding_mask")
        mask, is_causal, empty = attention_mask(t, s, padding_mask, causal, x.device)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )  # (B, h, T, D/h)
        dim = self.num_heads * self.head_dim
        out = self.output(out.transpose(1, 2).reshape(b, t, dim))  # (B, T, D)
        if empty is not None:
            out = out.masked_fill(empty, 0.0)  # queries that could see no key add nothing
        return out, cache


def attention_mask(
    t: int, s: int, padding_mask: Tensor | None, causal: bool, device: torch.device
) -> tuple[Tensor | None, bool, Tensor | None]:
    """SDPA's (attn_mask (B, 1, T, S) or None, is_causal) and the (B, T, 1) rows seeing no key.

    Queries are the last T of S steps (bottom-right alignment). Only padding can leave a row
    without keys: causally, query i always sees key 0.
    """
    if padding_mask is None:
        if not causal or t == 1:
            return None, False, None  # one new query may see every cached key
        if t == s:
            return None, True, None  # SDPA's own causal kernel, no mask built
    allowed = None
    if causal:
        key = torch.arange(s, device=device)
        query = torch.arange(s - t, s, device=device)
        allowed = (key[None, :] <= query[:, None])[None, None]  # (1, 1, T, S)
    if padding_mask is None:
        return allowed, False, None
    real = padding_mask[:, None, None, :]  # (B, 1, 1, S)
    if allowed is None:
        allowed = real
        empty = ~real.any(-1, keepdim=True)  # (B, 1, 1, 1)
    else:
        allowed = allowed & real  # (B, 1, T, S)
        # Query i sees a real key iff one lies at or before its step S - T + i: a running
        # count over (B, S) finds its rows without scanning the whole (B, 1, T, S) mask.
        seen = padding_mask.cumsum(-1)[:, s - t :] > 0  # (B, T)
        empty = ~seen[:, None, :, None]  # (B, 1, T, 1)
    # Open empty rows to every key so SDPA's softmax stays finite; the caller zeroes them.
    allowed = allowed | empty
    return allowed, False, empty[:, 0]  # empty: (B, T or 1, 1)


class MLP(nn.Module):
    """Position-wise MLP: D -> hidden -> D with GELU between (Hendrycks & Gimpel, 2016).

    `approximate` is "none" for the exact GELU, x·Phi(x), or "tanh" for GPT-2's
    0.5·x·(1 + tanh(sqrt(2/pi)·(x + 0.044715·x^3))).
    """

    def __init__(
        self, dim: int, hidden_dim: int, bias: bool = True, approximate: str = "none"
    ) -> None:
        super().__init__()
        self.up = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU(approximate=approximate)
        self.down = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, T, D) to (B, T, D)."""
        return self.down(self.act(self.up(x)))


class SwiGLU(nn.Module):
    """Gated MLP: down(silu(x W_gate) * (x W_value)) (Shazeer, 2020)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 2 * hidden_dim, bias=bias)  # value and gate in one matmul
        self.down = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, T, D) to (B, T, D)."""
        value, gate = self.up(x).chunk(2, dim=-1)  # (B, T, hidden) each
        return self.down(F.silu(gate) * value)


# The MLPs a TransformerBlock builds: exact GELU, GELU's tanh approximation, SwiGLU.
MLP_KINDS = ("gelu", "gelu-tanh", "swiglu")


def mlp_hidden_dim(dim: int, mlp: str, mlp_ratio: float) -> int:
    """Hidden width: mlp_ratio·D for GELU, 2/3 of it for SwiGLU so both hold as many weights."""
    # SwiGLU has three matrices to GELU's two (Shazeer, 2020; LLaMA uses the same 2/3).
    return int(2 * mlp_ratio * dim / 3) if mlp == "swiglu" else int(mlp_ratio * dim)


class TransformerBlock(nn.Module):
    """Pre-LN Transformer block (Xiong et al., 2020), with cross-attention for a decoder.

    x = x + attn(attn_norm(x));  [x = x + cross_attn(cross_norm(x), context)];
    x = x + mlp(mlp_norm(x)). Dropout acts on each branch before its residual add.
    `post_norm=True` is the original Transformer's and BERT's order (post-LN): each norm acts
    after its residual add, x = attn_norm(x + attn(x)), ..., x = mlp_norm(x + mlp(x)). Kept
    for pretrained BERT-style weights, which were trained so; new models train better pre-LN.

    `mlp` is "gelu" (exact GELU), "gelu-tanh" (its tanh approximation, GPT-2's) or "swiglu";
    `norm_eps` is every LayerNorm's epsilon (1e-5 as torch and GPT-2; ViT uses 1e-6).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp: Literal["gelu", "gelu-tanh", "swiglu"] = "gelu",
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        cross: bool = False,
        rotary: bool = False,
        bias: bool = True,
        norm_eps: float = 1e-5,
        post_norm: bool = False,
    ) -> None:
        super().__init__()
        self.post_norm = post_norm
        if mlp not in MLP_KINDS:
            raise ValueError(
                f"TransformerBlock expects mlp 'gelu' or 'swiglu' (or 'gelu-tanh', GELU's tanh "
                f"approximation); got {mlp!r}."
            )
        self.attn_norm = nn.LayerNorm(dim, eps=norm_eps, bias=bias)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout, bias=bias, rotary=rotary)
        self.cross_norm = nn.LayerNorm(dim, eps=norm_eps, bias=bias) if cross else None
        self.cross_attn = (
            MultiHeadAttention(dim, num_heads, dropout=dropout, bias=bias, cross=True)
            if cross
            else None
        )
        self.mlp_norm = nn.LayerNorm(dim, eps=norm_eps, bias=bias)
        hidden = mlp_hidden_dim(dim, mlp, mlp_ratio)
        if mlp == "swiglu":
            self.mlp = SwiGLU(dim, hidden, bias)
        else:
            self.mlp = MLP(dim, hidden, bias, approximate="tanh" if mlp == "gelu-tanh" else "none")
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        padding_mask: Tensor | None = None,
        context_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: BlockCache | None = None,
    ) -> tuple[Tensor, BlockCache]:
        """Map x (B, T, D) to (B, T, D) and this block's caches (self, cross).

        `padding_mask` (B, S) marks real keys of the self-attention, `context_padding_mask`
        (B, S_context) those of the context; see MultiHeadAttention.forward for `cache`.
        """
        self_cache, cross_cache = (None, None) if cache is None else cache
        if self.post_norm:
            h, self_cache = self.attn(x, padding_mask=padding_mask, causal=causal, cache=self_cache)
            x = self.attn_norm(x + self.drop(h))
            if self.cross_attn is not None:
                h, cross_cache = self.cross_attn(
                    x, context, padding_mask=context_padding_mask, cache=cross_cache
                )
                x = self.cross_norm(x + self.drop(h))
            return self.mlp_norm(x + self.drop(self.mlp(x))), (self_cache, cross_cache)
        h, self_cache = self.attn(
            self.attn_norm(x), padding_mask=padding_mask, causal=causal, cache=self_cache
        )
        x = x + self.drop(h)
        if self.cross_attn is not None:
            h, cross_cache = self.cross_attn(
                self.cross_norm(x), context, padding_mask=context_padding_mask, cache=cross_cache
            )
            x = x + self.drop(h)
        x = x + self.drop(self.mlp(self.mlp_norm(x)))
        return x, (self_cache, cross_cache)
