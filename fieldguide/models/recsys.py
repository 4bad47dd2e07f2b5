"""Recommender models: Wide & Deep, DLRM and a two-tower retriever (docs/guide/recsys.md).

Letters: B batch, D dense features, F categorical fields, L ids per bag, E embedding width,
P crossed pairs, N items.

A row ("fields") is dense features (B, D), standardised, plus F categorical fields, each a bag
of up to L ids, right-padded with id 0: ids (B, F, L), int64. Id 0 is always padding; the real
ids of field f are 1 .. fields[f] - 1, so `fields[f]` counts the ids with the padding id, as
`DataSpec.fields` does (the table itself stores only the fields[f] - 1 real rows).
Most fields hold one id (L = 1); a multi-hot field (genres) holds several, optionally weighted
by `weights` (B, F, L).

The guide's sketch pools a padded id matrix with `emb(ids).mean(1)`: the padding ids are
averaged in, so a bag's vector shrinks toward the padding row as L grows, and the gradient of
every step is a dense (rows, E) tensor. Here every field lives in ONE `nn.EmbeddingBag` (the
fields' rows stacked) that is given only the real ids, one offset per bag, so padding is in
neither the pooled vector nor the gradient. Pooling of a bag with real ids k and weights
w_k (1 when `weights` is None; padded positions are ignored whatever their weight):

    sum:   v = sum_k w_k e_k
    mean:  v = sum_k w_k e_k / n      (n the number of real ids; unweighted, the plain mean)

and a bag with no real id pools to zeros. With `sparse=True` the table's gradient is a sparse
tensor holding only the rows looked up; `sparse_parameters()` names those tables so a trainer
can step them with `torch.optim.SparseAdam` or row-wise Adagrad and the rest with AdamW
(benchmarks/recsys.py, 1M rows on 2 CPU cores: forward + backward about 19x faster than the
guide's path, the whole step 8x with SparseAdam and 31x with row-wise Adagrad; DLRM trains
1.6-2x as many examples per second).

- Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", 2016): a linear
  model over the raw ids and hashed crosses of every pair of fields, plus an MLP over the
  field embeddings and the dense features; logits = wide + deep.
- DLRM (Naumov et al., "Deep Learning Recommendation Model for Personalization and
  Recommendation Systems", 2019): a bottom MLP maps the dense features to one more E-vector,
  the dot products of every pair of vectors feed a top MLP.
- Two towers (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
  Recommendations", 2019): user and item fields each pooled and mapped to an E-vector, the
  score their dot product, so scores against all items are one matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.shapes import autocast_dtype, check_device
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
EXAMPLE_BAG = 3  # L of example inputs: room for multi-hot bags and padding

# Hashing of crossed ids: every value stays below 2**31 and every constant is below 2**31, so
# a product stays below 2**62 and int64 never overflows; identical on every platform.
_MASK31 = (1 << 31) - 1
_MIX = 0x45D9F3B  # a 32-bit avalanche multiplier (< 2**31)
_SECOND = 0x2C1B3C6D  # multiplies the second id, so (a, b) and (b, a) hash apart
_PAIR = 0x297A2D39  # multiplies the pair number, so pairs of fields hash apart


# ---------------------------------------------------------------------------------------------
# Configs.
# ---------------------------------------------------------------------------------------------


def _check_sizes(owner: str, config: object, names: tuple[str, ...], least: int = 1) -> None:
    for name in names:
        value = getattr(config, name)
        if value < least:
            raise ValueError(f"{owner}.{name} must be at least {least}, got {value}.")


def _check_fields(owner: str, name: str, fields: tuple[int, ...]) -> None:
    if not fields or any(rows < 2 for rows in fields):
        raise ValueError(
            f"{owner}.{name} must list at least one field, each with at least 2 ids (the "
            f"padding id 0 and one real id); got {fields}."
        )


def _check_common(owner: str, config: object) -> None:
    """Checks every recommender config shares: embed_dim, MLP sizes, dropout, pooling."""
    _check_sizes(owner, config, ("embed_dim", "hidden_dim"))
    _check_sizes(owner, config, ("num_layers",), least=0)
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"{owner}.dropout must be in [0, 1), got {config.dropout}.")
    if config.pooling not in ("mean", "sum"):
        raise ValueError(f"{owner}.pooling must be 'mean' or 'sum', got {config.pooling!r}.")
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"{owner}.activation must be 'relu' or 'gelu', got {config.activation!r}.")


@dataclass(frozen=True)
class WideDeepConfig:
    """Sizes of a Wide & Deep model; `create_model` takes any field as an override."""

    in_channels: int = 4  # D dense features, set from the data; 0 for none
    fields: tuple[int, ...] = (10, 20, 5)  # ids per field, padding id 0 included
    out_dim: int = 1  # logits: 1 for click / no click
    embed_dim: int = 16  # E, the width of every field's embedding in the deep part
    hidden_dim: int = 256
    num_layers: int = 2  # hidden layers of the deep MLP
    activation: Literal["relu", "gelu"] = "relu"
    dropout: float = 0.1
    pooling: Literal["mean", "sum"] = "mean"  # how a bag of ids becomes one vector
    crosses: Literal["pairs", "none"] = "pairs"  # wide crosses: every pair of fields, or none
    wide_buckets: int = 10_000  # hashed rows of the crossed features
    sparse: bool = False  # sparse table gradients, for torch.optim.SparseAdam

    def __post_init__(self) -> None:
        _check_common("WideDeepConfig", self)
        _check_sizes("WideDeepConfig", self, ("out_dim", "wide_buckets"))
        _check_sizes("WideDeepConfig", self, ("in_channels",), least=0)
        _check_fields("WideDeepConfig", "fields", self.fields)
        if self.crosses not in ("pairs", "none"):
            raise ValueError(
                f"WideDeepConfig.crosses must be 'pairs' or 'none', got {self.crosses!r}."
            )


@dataclass(frozen=True)
class DLRMConfig:
    """Sizes of a DLRM; `create_model` takes any field as an override."""

    in_channels: int = 4  # D dense features, set from the data; 0 skips the bottom MLP
    fields: tuple[int, ...] = (10, 20, 5)  # ids per field, padding id 0 included
    out_dim: int = 1
    embed_dim: int = 16  # E of every table and of the bottom MLP's output
    bottom_dim: int = 64  # width of the bottom MLP's hidden layers
    bottom_layers: int = 2  # its hidden layers, before the layer to embed_dim
    hidden_dim: int = 256  # width of the top MLP
    num_layers: int = 2  # hidden layers of the top MLP
    activation: Literal["relu", "gelu"] = "relu"
    dropout: float = 0.0  # in the top MLP
    pooling: Literal["mean", "sum"] = "mean"
    sparse: bool = False

    def __post_init__(self) -> None:
        _check_common("DLRMConfig", self)
        _check_sizes("DLRMConfig", self, ("out_dim", "bottom_dim"))
        _check_sizes("DLRMConfig", self, ("in_channels", "bottom_layers"), least=0)
        _check_fields("DLRMConfig", "fields", self.fields)
        if len(self.fields) + (self.in_channels > 0) < 2:
            raise ValueError(
                f"DLRMConfig needs at least two vectors to interact (fields, plus one for the "
                f"dense features when in_channels > 0); got {len(self.fields)} field and "
                f"in_channels={self.in_channels}."
            )


@dataclass(frozen=True)
class TwoTowerConfig:
    """Sizes of a two-tower retriever; `create_model` takes any field as an override."""

    user_fields: tuple[int, ...] = (100, 8)  # ids per user field, padding included (user id first)
    item_fields: tuple[int, ...] = (200, 19)  # ids per item field, padding included (item id first)
    embed_dim: int = 32  # E of the field embeddings and of the user and item vectors
    hidden_dim: int = 128
    num_layers: int = 1  # hidden layers of each tower's MLP
    activation: Literal["relu", "gelu"] = "relu"
    dropout: float = 0.0
    pooling: Literal["mean", "sum"] = "mean"
    normalize: bool = True  # unit-length vectors: scores are scaled cosines
    scale: float = 10.0  # multiplies every score (an inverse temperature)
    learn_scale: bool = True  # learn log(scale) from the initial value above
    sparse: bool = False

    def __post_init__(self) -> None:
        _check_common("TwoTowerConfig", self)
        _check_fields("TwoTowerConfig", "user_fields", self.user_fields)
        _check_fields("TwoTowerConfig", "item_fields", self.item_fields)
        if not self.scale > 0:
            raise ValueError(f"TwoTowerConfig.scale must be positive, got {self.scale}.")


# ---------------------------------------------------------------------------------------------
# Blocks.
# ---------------------------------------------------------------------------------------------


def mlp(
    in_dim: int,
    hidden_dim: int,
    num_layers: int,
    out_dim: int,
    activation: str,
    dropout: float = 0.0,
    last_activation: bool = False,
) -> nn.Sequential:
    """Linear -> activation -> dropout, `num_layers` times, then Linear to out_dim."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_dim), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    if last_activation:  # DLRM's bottom MLP ends in ReLU too: its output is one more vector
        layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class FieldBags(nn.Module):
    """F fields of bags of ids pooled to (B, F, dim) by ONE `nn.EmbeddingBag`.

    The fields' tables are stacked, padding rows left out: real id k >= 1 of field f is row
    base[f] + k, base[f] = sum over g < f of (fields[g] - 1), minus 1. Only the real ids enter
    the bag, as one flat list with an offset per bag (B * F bags), so padding is in neither the
    pooled vectors nor the gradient, and an empty bag pools to zeros. Offsets rather than a
    `padding_idx` on an (B * F, L) input: on CPU, `padding_idx` leaves the fast kernel (forward
    about 10x, forward + backward 2.7x slower; F separate bags 3-4x, benchmarks/recsys.py).
    Mean pooling is a sum with per-id weights divided by the count of real ids (see the module
    docstring).
    """

    def __init__(
        self, fields: tuple[int, ...], dim: int, pooling: str, sparse: bool, std: float
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.bag = nn.EmbeddingBag(sum(r - 1 for r in fields), dim, mode="sum", sparse=sparse)
        # std = 1/sqrt(E) gives pooled vectors of about unit length (dot products of O(1));
        # a linear (wide) table starts at 0 as a linear model does.
        nn.init.normal_(self.bag.weight, std=std)
        base = torch.tensor([0] + [r - 1 for r in fields[:-1]]).cumsum(0) - 1  # (F,)
        self.register_buffer("base", base.view(1, -1, 1), persistent=False)  # (1, F, 1)

    def forward(self, ids: Tensor, weights: Tensor | None = None) -> Tensor:
        """Pool ids (B, F, L) (0 = padding), weights (B, F, L) or None, to (B, F, dim)."""
        b, f, _ = ids.shape
        real = ids > 0  # (B, F, L)
        flat = (ids + self.base)[real]  # (n,) table rows of the real ids, bag after bag
        count = real.sum(-1).view(b * f)  # (B*F,) real ids per bag
        offsets = count.cumsum(0) - count  # (B*F,) where each bag starts in flat
        w = None if weights is None else weights[real]  # (n,)
        pooled = self.bag(flat, offsets, per_sample_weights=w)  # (B*F, dim); empty bag -> 0
        if self.pooling == "mean":
            pooled = pooled / count.clamp_min(1).unsqueeze(1).to(pooled.dtype)
        return pooled.view(b, f, self.bag.embedding_dim)  # (B, F, dim)


def cross_buckets(first_ids: Tensor, buckets: int) -> Tensor:
    """Hashed buckets of the crosses of every pair of fields (i < j), in [0, buckets).

    A deterministic integer mix in int64 (no Python `hash`, so identical across processes and
    platforms): h = mix(mix(mix(a) ^ mix(b * K2)) ^ (p + 1) * K3) for the pair number p and
    the ids a, b of fields i and j, with mix(x) = xorshift-multiply-xorshift over 31 bits.
    Ids are folded to 31 bits first, so ids of 2**31 and more may share buckets. A missing id
    (0) crosses as the value 0: "no value" is a value of the cross.

    Args:
        first_ids: (B, F) int64, each field's first id.
        buckets: number of buckets.

    Returns:
        (B, P) int64 buckets, P = F (F - 1) / 2, pairs in `torch.triu_indices` order.
    """
    if not isinstance(first_ids, Tensor) or first_ids.dtype != torch.int64 or first_ids.ndim != 2:
        given = (
            f"{first_ids.dtype} of shape {tuple(first_ids.shape)}"
            if isinstance(first_ids, Tensor)
            else type(first_ids).__name__
        )
        raise TypeError(f"cross_buckets expects first_ids as an int64 tensor (B, F); got {given}.")
    if buckets < 1:
        raise ValueError(f"cross_buckets expects buckets >= 1; got {buckets}.")
    f = first_ids.shape[1]
    i, j = torch.triu_indices(f, f, offset=1, device=first_ids.device)  # (P,), (P,)
    ids = (first_ids ^ (first_ids >> 31)) & _MASK31  # fold to 31 bits, (B, F)
    a, b = ids[:, i], ids[:, j]  # (B, P) each
    pair = (torch.arange(i.numel(), device=ids.device) + 1) * _PAIR & _MASK31  # (P,)
    h = _mix(_mix(a) ^ _mix(b * _SECOND & _MASK31))
    return _mix(h ^ pair) % buckets


def _mix(x: Tensor) -> Tensor:
    """Avalanche 31-bit values: xorshift, multiply (product < 2**62), mask, twice."""
    x = (x ^ (x >> 16)) * _MIX & _MASK31
    x = (x ^ (x >> 16)) * _MIX & _MASK31
    return x ^ (x >> 16)


class DotInteraction(nn.Module):
    """DLRM's interaction: the dot product of every pair i < j of F' vectors, no self terms."""

    def __init__(self, num_vectors: int) -> None:
        super().__init__()
        pairs = torch.triu_indices(num_vectors, num_vectors, offset=1)  # (2, F'(F'-1)/2)
        self.register_buffer("pairs", pairs, persistent=False)

    @property
    def num_terms(self) -> int:
        """F'(F'-1)/2 dot products."""
        return self.pairs.shape[1]

    def forward(self, vectors: Tensor) -> Tensor:
        """Map vectors (B, F', E) to their pairwise dot products (B, F'(F'-1)/2)."""
        gram = vectors @ vectors.transpose(1, 2)  # (B, F', F')
        return gram[:, self.pairs[0], self.pairs[1]]  # (B, F'(F'-1)/2), upper triangle


# ---------------------------------------------------------------------------------------------
# Input checks and example inputs.
# ---------------------------------------------------------------------------------------------


def _check_dense(owner: str, dense: object, width: int, like: Tensor) -> None:
    """Dense features (B, width) in the model's dtype and device.

    The first argument of a model is called x in the generic contract's messages, hence
    "dense features x (argument dense)".
    """
    noun = "dense features x (argument dense)"
    if not isinstance(dense, Tensor):
        raise TypeError(
            f"{owner} expects {noun} as a torch.Tensor of shape (B, {width}); "
            f"got {type(dense).__name__}."
        )
    if dense.ndim != 2 or dense.shape[1] != width:
        raise ValueError(f"{owner} expects {noun} of shape (B, {width}); got {tuple(dense.shape)}.")
    check_device(dense, like.device, owner=owner, name=noun)
    if dense.dtype != like.dtype and dense.dtype != autocast_dtype(dense.device.type):
        raise TypeError(
            f"{owner} expects {noun} in the model's dtype {like.dtype}; got {dense.dtype}; "
            f"convert it with dense.to({like.dtype})."
        )


def _check_ids(
    owner: str,
    ids: object,
    weights: object,
    rows: tuple[int, ...],
    *,
    name: str,
    noun: str,
    like: Tensor,
    batch: int | None = None,
    weights_name: str = "weights",
) -> None:
    """Raise one sentence unless ids (B, F, L) hold ids in [0, rows[f]) and weights fit them."""
    shape = f"(B, {len(rows)}, L)" if batch is None else f"({batch}, {len(rows)}, L)"
    if not isinstance(ids, Tensor):
        raise TypeError(
            f"{owner} expects {noun} as a torch.Tensor of shape {shape}; got {type(ids).__name__}."
        )
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{owner} expects {noun} as an int64 tensor; got dtype {ids.dtype}; ids index "
            f"embedding tables, so pass {name}.long()."
        )
    wrong_batch = batch is not None and ids.ndim == 3 and ids.shape[0] != batch
    if ids.ndim != 3 or ids.shape[1] != len(rows) or ids.shape[2] < 1 or wrong_batch:
        raise ValueError(f"{owner} expects {noun} of shape {shape}; got {tuple(ids.shape)}.")
    check_device(ids, like.device, owner=owner, name=noun)
    if ids.numel() > 0 and not torch.compiler.is_exporting():  # export cannot trace a scan
        low = ids.amin(dim=(0, 2))  # (F,)
        high = ids.amax(dim=(0, 2))  # (F,)
        limit = torch.tensor(rows, device=ids.device)
        bad = ((low < 0) | (high >= limit)).nonzero()
        if bad.numel():  # one scan of the ids: a wrong id would gather out of bounds
            f = int(bad[0, 0])
            raise ValueError(
                f"{owner} expects {noun} of field {f} in [0, {rows[f]}) (0 is padding); got "
                f"ids from {int(low[f])} to {int(high[f])}."
            )
    if weights is None:
        return
    if not isinstance(weights, Tensor) or not weights.is_floating_point():
        given = weights.dtype if isinstance(weights, Tensor) else type(weights).__name__
        raise TypeError(
            f"{owner} expects {weights_name} as a floating-point tensor of the shape of {name}, "
            f"{tuple(ids.shape)}, or None; got {given}."
        )
    if weights.shape != ids.shape:
        raise ValueError(
            f"{owner} expects {weights_name} of the shape of {name}, {tuple(ids.shape)}; "
            f"got {tuple(weights.shape)}."
        )
    check_device(weights, like.device, owner=owner, name=weights_name)
    if weights.dtype != like.dtype:
        raise TypeError(
            f"{owner} expects {weights_name} in the model's dtype {like.dtype}; got "
            f"{weights.dtype}; convert it with {weights_name}.to({like.dtype})."
        )


def example_bags(batch_size: int, rows: tuple[int, ...], length: int = EXAMPLE_BAG) -> Tensor:
    """Random ids (batch_size, F, length): field 0 one id, the others 0..length ids, padded."""
    f = len(rows)
    high = torch.tensor(rows).view(1, f, 1)  # (1, F, 1)
    ids = 1 + (torch.rand(batch_size, f, length) * (high - 1)).long()  # real ids in [1, rows)
    count = torch.randint(0, length + 1, (batch_size, f, 1))  # real ids per bag, 0 = empty
    count[:, 0] = 1  # the first field (a user or item id, a category) holds exactly one
    real = torch.arange(length).view(1, 1, length) < count  # right-padded
    return torch.where(real, ids, 0)


# ---------------------------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------------------------


class FieldsModel(Model):
    """Base of models that read "fields": forward(dense (B, D), ids (B, F, L), weights)."""

    invariants = frozenset({"batch_independent"})
    reads = "fields"
    outputs = ("per-example",)

    @property
    def input_description(self) -> str:
        """What forward expects."""
        d, f = self.config.in_channels, len(self.config.fields)
        return (
            f"dense features (B, {d}), ids (B, {f}, L) int64 right-padded with 0, optional "
            f"per-id weights (B, {f}, L)"
        )

    def example_input(self, batch_size: int = 2) -> tuple[Tensor, Tensor, Tensor]:
        """(dense, ids, weights): multi-hot and empty bags, random weights at padding too."""
        dense = torch.randn(batch_size, self.config.in_channels)
        ids = example_bags(batch_size, self.config.fields)
        weights = torch.rand(ids.shape) + 0.5  # padded positions get weights too: ignored
        return dense, ids, weights

    @classmethod
    def config_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """Dense width D from spec.shape (D,), the fields' rows and out_dim from the data."""
        cls.refuse_shape(spec, "D")
        cls.refuse_output(spec)
        if not spec.fields:
            raise ValueError(
                f"{cls.__name__} reads categorical fields; the data gives none (spec.fields is "
                f"empty), so use a model that reads vectors, such as mlp."
            )
        return replace(
            config, in_channels=spec.shape[0], fields=tuple(spec.fields), out_dim=spec.num_outputs
        )

    def sparse_parameters(self) -> set[str]:
        """Names of parameters whose gradients are sparse (for torch.optim.SparseAdam)."""
        return _sparse_parameters(self)

    def _check(self, dense: object, ids: object, weights: object) -> None:
        like = self.tables.bag.weight
        _check_dense(self.name, dense, self.config.in_channels, like)
        _check_ids(
            self.name,
            ids,
            weights,
            self.config.fields,
            name="ids",
            noun="ids",
            like=like,
            batch=dense.shape[0],
        )


def _sparse_parameters(model: nn.Module) -> set[str]:
    return {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, nn.EmbeddingBag | nn.Embedding) and module.sparse
    }


class WideDeep(FieldsModel):
    """Wide & Deep (Cheng et al., 2016): a linear model with crosses plus an MLP on embeddings.

    wide = b + sum_f pool_f(w_id) + sum_{i<j} w_cross[hash(id_i, id_j)] + W_d dense
    deep = MLP([pool_1(e), ..., pool_F(e), dense])
    logits = wide + deep

    The wide weights are (rows, out_dim) tables pooled like the embeddings, the crosses read
    each field's first id (`cross_buckets`), and both start at zero, as a linear model does.
    """

    def __init__(self, config: WideDeepConfig) -> None:
        super().__init__(config)
        c = config
        self.tables = FieldBags(c.fields, c.embed_dim, c.pooling, c.sparse, c.embed_dim**-0.5)
        self.wide_ids = FieldBags(c.fields, c.out_dim, c.pooling, c.sparse, 0.0)
        self.wide_crosses = None
        if c.crosses == "pairs" and len(c.fields) > 1:
            self.wide_crosses = nn.EmbeddingBag(
                c.wide_buckets, c.out_dim, mode="sum", sparse=c.sparse
            )
            nn.init.zeros_(self.wide_crosses.weight)
        # No Linear(0, out) when there are no dense features: its empty weight gets no gradient.
        self.wide_dense = nn.Linear(c.in_channels, c.out_dim) if c.in_channels else None
        self.wide_bias = nn.Parameter(torch.zeros(c.out_dim))
        deep_in = len(c.fields) * c.embed_dim + c.in_channels
        self.deep = mlp(deep_in, c.hidden_dim, c.num_layers, c.out_dim, c.activation, c.dropout)

    def wide(self, dense: Tensor, ids: Tensor, weights: Tensor | None = None) -> Tensor:
        """The wide part alone: logits (B, out_dim) of the linear model; inputs as in forward."""
        self._check(dense, ids, weights)
        return self._wide(dense, ids, weights)

    def _wide(self, dense: Tensor, ids: Tensor, weights: Tensor | None) -> Tensor:
        out = self.wide_bias + self.wide_ids(ids, weights).sum(1)  # (B, out_dim)
        if self.wide_crosses is not None:
            buckets = cross_buckets(ids[:, :, 0].long(), self.config.wide_buckets)  # (B, P)
            out = out + self.wide_crosses(buckets)  # one bag of P crosses per row
        if self.wide_dense is not None:
            out = out + self.wide_dense(dense)
        return out

    def forward(self, dense: Tensor, ids: Tensor, weights: Tensor | None = None) -> Tensor:
        """Map dense (B, D), ids (B, F, L) and optional weights (B, F, L) to logits (B, out_dim)."""
        self._check(dense, ids, weights)
        pooled = self.tables(ids, weights).flatten(1)  # (B, F*E)
        deep = self.deep(torch.cat([pooled, dense], dim=1))  # (B, out_dim)
        return self._wide(dense, ids, weights) + deep


class DLRM(FieldsModel):
    """DLRM (Naumov et al., 2019): pairwise dot products of field embeddings, then an MLP.

    z = bottom(dense) (B, E); vectors = [z, pool_1(e), ..., pool_F(e)] (B, F', E), F' = F + 1
    (F without dense features); logits = top([z, <v_i, v_j> for i < j]).
    """

    def __init__(self, config: DLRMConfig) -> None:
        super().__init__(config)
        c = config
        self.tables = FieldBags(c.fields, c.embed_dim, c.pooling, c.sparse, c.embed_dim**-0.5)
        self.bottom = None
        if c.in_channels:
            self.bottom = mlp(
                c.in_channels,
                c.bottom_dim,
                c.bottom_layers,
                c.embed_dim,
                c.activation,
                last_activation=True,
            )
        num_vectors = len(c.fields) + (self.bottom is not None)
        self.interaction = DotInteraction(num_vectors)
        top_in = self.interaction.num_terms + (c.embed_dim if self.bottom is not None else 0)
        self.top = mlp(top_in, c.hidden_dim, c.num_layers, c.out_dim, c.activation, c.dropout)

    def forward(self, dense: Tensor, ids: Tensor, weights: Tensor | None = None) -> Tensor:
        """Map dense (B, D), ids (B, F, L) and optional weights (B, F, L) to logits (B, out_dim)."""
        self._check(dense, ids, weights)
        vectors = self.tables(ids, weights)  # (B, F, E)
        parts = []
        if self.bottom is not None:
            z = self.bottom(dense)  # (B, E)
            vectors = torch.cat([z.unsqueeze(1), vectors], dim=1)  # (B, F+1, E)
            parts.append(z)
        parts.append(self.interaction(vectors))  # (B, F'(F'-1)/2)
        return self.top(torch.cat(parts, dim=1))


class Tower(nn.Module):
    """One side of a two-tower model: pooled field embeddings -> MLP -> one E-vector."""

    def __init__(self, fields: tuple[int, ...], config: TwoTowerConfig) -> None:
        super().__init__()
        c = config
        self.tables = FieldBags(fields, c.embed_dim, c.pooling, c.sparse, c.embed_dim**-0.5)
        width = len(fields) * c.embed_dim
        self.mlp = mlp(width, c.hidden_dim, c.num_layers, c.embed_dim, c.activation, c.dropout)

    def forward(self, ids: Tensor, weights: Tensor | None = None) -> Tensor:
        """Map ids (B, F, L) and optional weights to vectors (B, E)."""
        return self.mlp(self.tables(ids, weights).flatten(1))  # (B, F*E) -> (B, E)


class TwoTower(Model):
    """Two-tower retrieval model (Yi et al., 2019): score = <user vector, item vector>.

    u = s * n(user_tower(user fields)), v = n(item_tower(item fields)), score = u . v, with n
    the L2 normalisation when `normalize` (else the identity) and s = `scale` (learnt as
    log s when `learn_scale`). The scale sits in the user vectors, so the scores of a batch
    of users against all N items are `user_vectors(...) @ item_vectors(...).T` (B, N).
    """

    invariants = frozenset({"batch_independent"})
    reads = "interactions"
    outputs = ("score",)

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__(config)
        self.user_tower = Tower(config.user_fields, config)
        self.item_tower = Tower(config.item_fields, config)
        log_scale = torch.tensor(math.log(config.scale))
        if config.learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def input_description(self) -> str:
        """What forward expects."""
        fu, fi = len(self.config.user_fields), len(self.config.item_fields)
        return (
            f"user ids (B, {fu}, L) and item ids (B, {fi}, L), int64 right-padded with 0, "
            f"optional per-id weights of the same shapes"
        )

    def example_input(self, batch_size: int = 2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(user_ids, item_ids, user_weights, item_weights) with multi-hot and empty bags."""
        user_ids = example_bags(batch_size, self.config.user_fields)
        item_ids = example_bags(batch_size, self.config.item_fields)
        return user_ids, item_ids, torch.rand(user_ids.shape), torch.rand(item_ids.shape)

    @classmethod
    def config_for_data(cls, config: TwoTowerConfig, spec: DataSpec) -> TwoTowerConfig:
        """spec.shape (Fu, Fi) splits spec.fields into the user fields' and items fields' rows."""
        cls.refuse_output(spec)
        if len(spec.shape) != 2 or len(spec.fields) != sum(spec.shape):
            raise ValueError(
                f"{cls.__name__} reads interactions whose spec.shape is (user fields, item "
                f"fields) and whose spec.fields lists the rows of each; got shape "
                f"{tuple(spec.shape)} and {len(spec.fields)} fields."
            )
        users = spec.shape[0]
        return replace(
            config, user_fields=tuple(spec.fields[:users]), item_fields=tuple(spec.fields[users:])
        )

    def sparse_parameters(self) -> set[str]:
        """Names of parameters whose gradients are sparse (for torch.optim.SparseAdam)."""
        return _sparse_parameters(self)

    def user_vectors(self, user_ids: Tensor, user_weights: Tensor | None = None) -> Tensor:
        """Map user_ids (B, Fu, Lu) and optional weights to scaled user vectors (B, E)."""
        self._check_users(user_ids, user_weights)
        return self._users(user_ids, user_weights)

    def item_vectors(self, item_ids: Tensor, item_weights: Tensor | None = None) -> Tensor:
        """Map item_ids (N, Fi, Li) and optional weights to item vectors (N, E)."""
        self._check_items(item_ids, item_weights)
        return self._items(item_ids, item_weights)

    def forward(
        self,
        user_ids: Tensor,
        item_ids: Tensor,
        user_weights: Tensor | None = None,
        item_weights: Tensor | None = None,
    ) -> Tensor:
        """Score each (user, item) pair: user_ids (B, Fu, Lu), item_ids (B, Fi, Li) -> (B,)."""
        self._check_users(user_ids, user_weights)
        self._check_items(item_ids, item_weights, batch=user_ids.shape[0])
        u = self._users(user_ids, user_weights)  # (B, E)
        v = self._items(item_ids, item_weights)  # (B, E)
        return (u * v).sum(-1)  # (B,)

    def _users(self, user_ids: Tensor, user_weights: Tensor | None) -> Tensor:
        u = self.user_tower(user_ids, user_weights)  # (B, E)
        if self.config.normalize:
            u = F.normalize(u, dim=-1)
        return u * self.log_scale.exp()

    def _items(self, item_ids: Tensor, item_weights: Tensor | None) -> Tensor:
        v = self.item_tower(item_ids, item_weights)  # (N, E)
        return F.normalize(v, dim=-1) if self.config.normalize else v

    def _check_users(self, user_ids: object, user_weights: object) -> None:
        _check_ids(
            self.name,
            user_ids,
            user_weights,
            self.config.user_fields,
            name="user_ids",
            noun="user ids x (argument user_ids)",  # the contract calls a first argument x
            like=self.user_tower.tables.bag.weight,
            weights_name="user_weights",
        )

    def _check_items(
        self, item_ids: object, item_weights: object, batch: int | None = None
    ) -> None:
        _check_ids(
            self.name,
            item_ids,
            item_weights,
            self.config.item_fields,
            name="item_ids",
            noun="item_ids",
            like=self.item_tower.tables.bag.weight,
            batch=batch,
            weights_name="item_weights",
        )


register("wide-deep", WideDeepConfig(), WideDeep)
register(
    "wide-deep-tiny",
    WideDeepConfig(embed_dim=8, hidden_dim=32, num_layers=2, dropout=0.0, wide_buckets=64),
    WideDeep,
)
register("dlrm", DLRMConfig(), DLRM)
register(
    "dlrm-tiny",
    DLRMConfig(embed_dim=8, bottom_dim=16, bottom_layers=1, hidden_dim=32, num_layers=2),
    DLRM,
)
register("two-tower", TwoTowerConfig(), TwoTower)
register("two-tower-tiny", TwoTowerConfig(embed_dim=8, hidden_dim=32), TwoTower)
