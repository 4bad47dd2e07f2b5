"""Structural node features for graphs without them: made from the edges alone.

Nodes without features (karate, drosophila, a user folder without feature columns) get them
from the graph's structure, by `node_features(kind=...)`:

- "spectral", the default ("auto"): the leading k = min(16, N - 2) eigenvectors of the
  symmetric normalised adjacency D^-1/2 (A + A^T + I) D^-1/2, each scaled by sqrt(N) to unit
  root-mean-square and its sign fixed so that its largest-magnitude entry is positive (the
  first of them, within a relative 1e-4, where several tie), then the two log-degree columns
  below: k + 2 columns. A node's position in the graph's coarse
  structure (its community) becomes a feature, as in Laplacian eigenmaps.
- "degree": log(1 + in-degree) and log(1 + out-degree), weighted when the edges are: 2 columns.
- "identity": one-hot node ids, N columns (the GCN paper's featureless setting); at most
  5,000 nodes, since the matrix grows as N^2.

For a graph that carries features (sbm, digit-graphs, a user folder with feature columns),
"auto" keeps them (`GraphData.features` is then "given"); naming a kind replaces them with
that kind, to see what the structure alone is worth.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

FEATURE_KINDS = ("auto", "spectral", "degree", "identity")
# One-hot ids cost N^2 floats: 5,000 nodes is 100 MB, 100k nodes would be 40 GB.
MAX_IDENTITY_NODES = 5000
# Eigenvectors kept by the spectral features (fewer when the graph has under 18 nodes).
SPECTRAL_DIM = 16
# Relative tolerance within which two entries count as equally large when fixing signs.
SIGN_TIE = 1e-4


def _check_kind(kind: Any, owner: str) -> str:
    """`kind` itself, or one sentence naming the accepted feature kinds."""
    if kind not in FEATURE_KINDS:
        raise ValueError(
            f"{owner} expects node_features as one of {', '.join(map(repr, FEATURE_KINDS))}; "
            f"got {kind!r}."
        )
    return kind


def node_features(
    edge_index: Tensor, num_nodes: int, kind: str = "auto", edge_weight: Tensor | None = None
) -> Tensor:
    """Features for featureless nodes, computed from the edges alone (see the module docstring).

    Args:
        edge_index: (2, E) int64, sources then targets; duplicate entries add up.
        num_nodes: N.
        kind: "auto" (= "spectral"), "spectral", "degree" or "identity".
        edge_weight: (E,) non-negative weights, or None for weight 1.

    Returns:
        float32 (N, C): C = min(16, N - 2) + 2 for "spectral", 2 for "degree", N for "identity".
    """
    kind = _check_kind(kind, "node_features")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"node_features expects num_nodes as an int >= 1; got {num_nodes!r}.")
    src, dst, weight = _edge_arrays(edge_index, num_nodes, edge_weight)
    if kind == "identity":
        if num_nodes > MAX_IDENTITY_NODES:
            raise ValueError(
                f"node_features='identity' makes one column per node, so it allows at most "
                f"{MAX_IDENTITY_NODES:,} nodes; got {num_nodes:,}; use 'spectral' or 'degree'."
            )
        return torch.eye(num_nodes, dtype=torch.float32)
    # Weighted in- and out-degree; log1p tames the heavy tail of hubs.
    degree = np.stack(
        [
            np.bincount(dst, weights=weight, minlength=num_nodes),
            np.bincount(src, weights=weight, minlength=num_nodes),
        ],
        axis=1,
    )
    columns = [np.log1p(degree)]
    if kind in ("auto", "spectral"):
        columns.insert(0, _spectral(src, dst, weight, num_nodes))
    return torch.from_numpy(np.concatenate(columns, axis=1).astype(np.float32))


def _edge_arrays(
    edge_index: Any, num_nodes: int, edge_weight: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources, targets and float64 weights as numpy arrays, or one sentence on what is wrong."""
    index = np.asarray(edge_index.cpu() if isinstance(edge_index, Tensor) else edge_index)
    if index.ndim != 2 or index.shape[0] != 2 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(
            f"node_features expects edge_index as integers of shape (2, E); got "
            f"{index.dtype} of shape {index.shape}."
        )
    if index.size and (index.min() < 0 or index.max() >= num_nodes):
        raise ValueError(
            f"node_features expects node numbers in [0, {num_nodes}); got "
            f"{index.min()}..{index.max()}."
        )
    if edge_weight is None:
        weight = np.ones(index.shape[1])
    else:
        weight = np.asarray(
            edge_weight.cpu() if isinstance(edge_weight, Tensor) else edge_weight, np.float64
        )
        if weight.shape != (index.shape[1],) or not np.isfinite(weight).all() or (weight < 0).any():
            raise ValueError(
                f"node_features expects edge_weight as {index.shape[1]} finite non-negative "
                f"numbers, one per edge; got shape {weight.shape} with min "
                f"{weight.min() if weight.size else None}."
            )
    return index[0].astype(np.int64), index[1].astype(np.int64), weight


def _spectral(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Leading eigenvectors of S = D^-1/2 (A + A^T + I) D^-1/2, sign-fixed, (N, min(16, N-2))."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    k = min(SPECTRAL_DIM, n - 2)
    if k < 1:  # eigsh needs k < N - 1; a graph of 1 or 2 nodes has no structure to embed
        return np.zeros((n, 0))
    a = sp.coo_matrix((weight, (src, dst)), shape=(n, n)).tocsr()  # duplicates add up
    m = a + a.T + sp.identity(n, format="csr")  # symmetric; the loop keeps every degree >= 1
    inv_sqrt = sp.diags(1.0 / np.sqrt(np.asarray(m.sum(axis=1)).ravel()))
    s = (inv_sqrt @ m @ inv_sqrt).tocsr()
    # A fixed start vector makes ARPACK deterministic (its default start is random).
    v0 = np.random.default_rng(0).uniform(0.5, 1.5, n)
    values, vectors = eigsh(s, k=k, which="LA", v0=v0)
    vectors = vectors[:, np.argsort(-values, kind="stable")]  # largest eigenvalue first
    # An eigenvector is defined up to sign: make each one's largest-magnitude entry positive.
    # Symmetric graphs have exact ties (+a and -a); the first entry within SIGN_TIE of the
    # largest magnitude decides, so rounding noise cannot pick a different one.
    magnitude = np.abs(vectors)
    first = (magnitude >= magnitude.max(axis=0) * (1 - SIGN_TIE)).argmax(axis=0)
    peak = vectors[first, np.arange(k)]
    vectors = vectors * np.where(peak < 0, -1.0, 1.0)
    return vectors * math.sqrt(n)  # unit root-mean-square instead of 1/sqrt(N) entries
