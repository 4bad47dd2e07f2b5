"""Graph starters and readers: node classification on one graph, graph classification on many.

Letters: N nodes, E edge entries (an undirected tie is listed twice, once each way), C features
per node, K classes.

| starter      | graphs | nodes  | edge entries | classes | features | data                        |
| ------------ | ------ | ------ | ------------ | ------- | -------- | --------------------------- |
| karate       | 1      | 34     | 156          | 2       | made     | real (networkx)             |
| drosophila   | 1      | 209    | 7,425 (dir.) | 4       | made     | real (graspologic's files)  |
| sbm          | 1      | 2,000  | ~20,000      | 4       | 8 given  | synthetic, drawn by seed    |
| digit-graphs | 1,797  | 64     | 420 each     | 10      | 3 given  | real (scikit-learn digits)  |

Node classification (`GraphData`) keeps the whole graph and splits its labelled nodes into
train, validation and test index sets (`node_split`): stratified by class, or with
`labels_per_class=k` the semi-supervised protocol of Kipf & Welling (2017), k training labels
per class. Graph classification (`GraphSetData`) splits whole graphs, stratified by label.

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

drosophila's four cell types are named by their one-letter codes, as in graspologic's file:
"K" Kenyon cell, "P" projection neuron (olfactory input to the Kenyon cells), "O" mushroom
body output neuron and "I" mushroom body input neuron (mostly modulatory, dopaminergic).

The carriers are never imported for their data: networkx builds karate (it ships with torch),
graspologic's two text files are found with `find_spec` and read with numpy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fieldguide.data.base import GraphData, GraphSetData, safe_name, stratified_split
from fieldguide.data.digits import DIGIT_CLASSES
from fieldguide.data.series import starter_file
from fieldguide.data.tabular import read_csv_rows
from fieldguide.layers.graph import Graph

FEATURE_KINDS = ("auto", "spectral", "degree", "identity")
# One-hot ids cost N^2 floats: 5,000 nodes is 100 MB, 100k nodes would be 40 GB.
MAX_IDENTITY_NODES = 5000
# Eigenvectors kept by the spectral features (fewer when the graph has under 18 nodes).
SPECTRAL_DIM = 16
# Relative tolerance within which two entries count as equally large when fixing signs.
SIGN_TIE = 1e-4
KARATE_CLASSES = ["Mr. Hi", "Officer"]
DROSOPHILA_CLASSES = ["K", "P", "O", "I"]
DROSOPHILA_NAMES = {
    "K": "Kenyon cell",
    "P": "projection neuron",
    "O": "mushroom body output neuron",
    "I": "mushroom body input neuron",
}
# Synthetic SBM features: FEATURE_DIM Gaussian dims, class means at distance SBM_SIGNAL from
# the origin and unit noise, so features alone separate the blocks only weakly.
SBM_FEATURE_DIM = 8
SBM_SIGNAL = 1.0


# -------------------------------------------------------------------------------------------
# Node features from structure
# -------------------------------------------------------------------------------------------


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


# -------------------------------------------------------------------------------------------
# The node split
# -------------------------------------------------------------------------------------------


def node_split(
    y: Tensor | np.ndarray,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    labels_per_class: int | None = None,
    *,
    class_names: list[str] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Split the labelled nodes (y >= 0) into train, validation and test; same seed, same split.

    Without `labels_per_class` the split is stratified by class (`stratified_split`): val and
    test take round(fraction * labelled nodes) each, train the rest. With `labels_per_class=k`
    train takes exactly k random nodes of each class, validation round(val_fraction * labelled
    nodes) of the others (stratified when every class can be), and test all that remain, so
    `test_fraction` is not used.

    Args:
        y: (N,) integer labels, -1 for a node without one.
        seed: Seed of the split.
        val_fraction: Share of the labelled nodes for validation, in (0, 1).
        test_fraction: Share for test, in [0, 1), without `labels_per_class`.
        labels_per_class: Training labels per class, or None for a stratified split.
        class_names: Names of the classes, shown in errors.

    Returns:
        Sorted int64 index tensors (train, val, test), disjoint, over the labelled nodes.
    """
    labels = np.asarray(y.cpu() if isinstance(y, Tensor) else y).astype(np.int64)
    labelled = np.flatnonzero(labels >= 0)
    if labelled.size == 0:
        raise ValueError("node_split expects at least one labelled node (y >= 0); got none.")
    known = labels[labelled]
    if labels_per_class is None:
        parts = stratified_split(known, seed, val_fraction, test_fraction, class_names=class_names)
        return tuple(torch.from_numpy(labelled[p].astype(np.int64)) for p in parts)  # type: ignore[return-value]

    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int):
        raise TypeError(
            f"node_split expects labels_per_class as an int or None; "
            f"got {type(labels_per_class).__name__}."
        )
    if labels_per_class < 1 or not 0 < val_fraction < 1:
        raise ValueError(
            f"node_split expects labels_per_class >= 1 and val_fraction in (0, 1); got "
            f"labels_per_class={labels_per_class} and val_fraction={val_fraction}."
        )
    rng = np.random.default_rng(seed)
    train = []
    for value in np.unique(known):
        members = labelled[known == value]
        if members.size <= labels_per_class:
            shown = class_names[value] if class_names is not None else value
            raise ValueError(
                f"class '{shown}' has {members.size} labelled nodes but labels_per_class="
                f"{labels_per_class} needs more than {labels_per_class} (the rest go to "
                f"validation and test); lower labels_per_class."
            )
        train.append(rng.choice(members, labels_per_class, replace=False))
    train = np.sort(np.concatenate(train))
    rest = np.setdiff1d(labelled, train)
    n_val = round(val_fraction * labelled.size)
    if n_val < 1 or rest.size - n_val < 1:
        raise ValueError(
            f"node_split with labels_per_class={labels_per_class} leaves {rest.size} labelled "
            f"nodes, too few for {n_val} validation nodes (val_fraction={val_fraction}) and at "
            f"least one test node; lower labels_per_class or change val_fraction."
        )
    val = rng.choice(rest, n_val, replace=False)
    rest_counts = np.unique(labels[rest], return_counts=True)[1]
    if rest_counts.min() >= 2 and min(n_val, rest.size - n_val) >= rest_counts.size:
        from sklearn.model_selection import train_test_split

        _, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=labels[rest])
    test = np.setdiff1d(rest, val)
    return tuple(torch.from_numpy(np.sort(p).astype(np.int64)) for p in (train, val, test))  # type: ignore[return-value]


# -------------------------------------------------------------------------------------------
# Packing and self-checks
# -------------------------------------------------------------------------------------------


def _featurise(
    given: np.ndarray | None, edge_index: Tensor, n: int, kind: str, edge_weight: Tensor | None
) -> tuple[Tensor, str]:
    """Node features and how they were made: the given ones for "auto", else `kind`'s."""
    if given is not None and kind == "auto":
        return torch.from_numpy(np.ascontiguousarray(given, dtype=np.float32)), "given"
    made = "spectral" if kind == "auto" else kind
    return node_features(edge_index, n, made, edge_weight), made


def _node_data(
    *,
    name: str,
    edge_index: np.ndarray,
    edge_weight: np.ndarray | None,
    y: np.ndarray,
    given: np.ndarray | None,
    classes: list[str],
    description: str,
    directed: bool,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    labels_per_class: int | None,
    node_features: str,
    synthetic: bool = False,
    preprocessing: dict[str, Any] | None = None,
) -> GraphData:
    """Make features and the split, pack a `GraphData` and check it."""
    kind = _check_kind(node_features, f"graph loader '{name}'")
    index = torch.from_numpy(np.ascontiguousarray(edge_index, dtype=np.int64))
    weight = (
        None
        if edge_weight is None
        else torch.from_numpy(np.ascontiguousarray(edge_weight, dtype=np.float32))
    )
    n = int(y.shape[0])
    x, made = _featurise(given, index, n, kind, weight)
    train, val, test = node_split(
        y, seed, val_fraction, test_fraction, labels_per_class, class_names=classes
    )
    data = GraphData(
        name=name,
        graph=Graph(x=x, edge_index=index, edge_weight=weight, y=torch.from_numpy(y)),
        train=train,
        val=val,
        test=test,
        classes=classes,
        description=description,
        directed=directed,
        features=made,
        synthetic=synthetic,
        preprocessing={
            **(preprocessing or {}),
            "node_features": made,
            "split": "stratified by class"
            if labels_per_class is None
            else f"{labels_per_class} training labels per class",
        },
    )
    _check_graph_data(data)
    return data


def _check_graph_data(data: GraphData) -> None:
    """Raise one sentence if a loader built an inconsistent `GraphData` (a bug, not bad input)."""
    g, n, where = data.graph, data.graph.x.shape[0], f"graph loader '{data.name}'"
    problems = []
    if g.x.dtype != torch.float32 or g.x.ndim != 2 or not bool(torch.isfinite(g.x).all()):
        problems.append(f"x should be finite float32 (N, C), is {g.x.dtype} {tuple(g.x.shape)}")
    e = g.edge_index
    if e.dtype != torch.int64 or e.ndim != 2 or e.shape[0] != 2:
        problems.append(f"edge_index should be int64 (2, E), is {e.dtype} {tuple(e.shape)}")
    elif e.numel() and (int(e.min()) < 0 or int(e.max()) >= n):
        problems.append(f"edge_index should hold nodes in [0, {n})")
    w = g.edge_weight
    if w is not None and (w.dtype != torch.float32 or w.shape != (e.shape[1],) or (w < 0).any()):
        problems.append("edge_weight should be non-negative float32 (E,)")
    if g.y.dtype != torch.int64 or g.y.shape != (n,) or int(g.y.max()) >= len(data.classes):
        problems.append(f"y should be int64 ({n},) with labels below {len(data.classes)}")
    seen = torch.zeros(n, dtype=torch.int64)
    for part in (data.train, data.val, data.test):
        seen.index_add_(0, part, torch.ones_like(part))
    labelled = g.y >= 0
    if bool((seen > 1).any()) or bool((seen.bool() & ~labelled).any()):
        problems.append("splits should be disjoint and hold labelled nodes only")
    if problems:
        raise ValueError(f"{where} built an inconsistent graph: {'; '.join(problems)}.")


def _both_ways(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 2E) edge_index listing each undirected tie (src[i], dst[i]) in both directions."""
    return np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])


# -------------------------------------------------------------------------------------------
# Starters
# -------------------------------------------------------------------------------------------


def load_karate(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    labels_per_class: int | None = None,
    node_features: str = "auto",
) -> GraphData:
    """Zachary's karate club (1977): 34 members, 78 weighted ties, the club each one joined.

    The classes are the real split after the club broke up: members who followed the
    instructor ("Mr. Hi") and those who stayed with the administrator ("Officer"), 17 each.
    Each tie is listed in both directions (156 entries) with networkx's 'weight' attribute
    (the number of contexts in which the two met) as its weight. The nodes carry no
    features, so they are made by `node_features` (spectral by default).

    Args:
        seed: Seed of the split.
        val_fraction: Share of the 34 members held out for validation.
        test_fraction: Share held out for test (not used with `labels_per_class`).
        labels_per_class: Training labels per club, or None for a stratified split.
        node_features: "auto" (spectral), "spectral", "degree" or "identity".
    """
    import networkx as nx

    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    ties = np.array([(u, v, d.get("weight", 1)) for u, v, d in g.edges(data=True)])  # (78, 3)
    club = nx.get_node_attributes(g, "club")
    y = np.array([KARATE_CLASSES.index(club[i]) for i in range(n)], dtype=np.int64)
    return _node_data(
        name="karate",
        edge_index=_both_ways(ties[:, 0], ties[:, 1]),
        edge_weight=np.concatenate([ties[:, 2], ties[:, 2]]),
        y=y,
        given=None,
        classes=list(KARATE_CLASSES),
        description=f"Zachary karate club: {n} members, {len(ties)} weighted ties listed both "
        "ways, the real two-club split (Mr. Hi vs Officer)",
        directed=False,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        labels_per_class=labels_per_class,
        node_features=node_features,
        preprocessing={"source": "networkx.karate_club_graph()", "edge_weight": "'weight'"},
    )


def load_drosophila(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    labels_per_class: int | None = None,
    node_features: str = "auto",
) -> GraphData:
    """Drosophila larva mushroom-body connectome, left side (Eichler et al., 2017): 4 cell types.

    209 neurons reconstructed from electron microscopy; an edge i -> j weighted by the number
    of synapses from neuron i onto neuron j (7,425 edges, directed, as given). Classes are
    graspologic's one-letter cell types (see the module docstring); the nodes carry no
    features, so they are made by `node_features` (spectral by default).

    Args:
        seed: Seed of the split.
        val_fraction: Share of the 209 neurons held out for validation.
        test_fraction: Share held out for test (not used with `labels_per_class`).
        labels_per_class: Training labels per cell type, or None for a stratified split.
        node_features: "auto" (spectral), "spectral", "degree" or "identity".
    """
    adjacency = np.loadtxt(starter_file("drosophila", 0), dtype=np.int64)  # (209, 209)
    with open(starter_file("drosophila", 1)) as f:
        cell_types = [line.strip() for line in f if line.strip()]
    n = len(cell_types)
    if adjacency.shape != (n, n) or (adjacency < 0).any():
        raise ValueError(
            f"drosophila expects a square non-negative adjacency with one row per cell label "
            f"({n}); got shape {adjacency.shape}; is graspologic==3.4.4 installed?"
        )
    unknown = sorted(set(cell_types) - set(DROSOPHILA_CLASSES))
    if unknown:
        raise ValueError(f"drosophila expects cell types K, P, O or I; got {unknown}.")
    # Orientation: graspologic's own loader (datasets/base.py, load_drosophila_left) is a bare
    # np.loadtxt with no transpose, and its other code reads `source, target = np.nonzero(A)`
    # (inference/group_connection_test.py), so row = presynaptic source, column = target. The
    # data agree: projection neurons' row sends 2,404 synapses, all to Kenyon cells, and their
    # column receives none (PNs feed the calyx); Kenyon cells send 9,147 onto output neurons
    # and receive none back.
    src, dst = np.nonzero(adjacency)
    y = np.array([DROSOPHILA_CLASSES.index(t) for t in cell_types], dtype=np.int64)
    names = ", ".join(f"{DROSOPHILA_NAMES[c]} ({c})" for c in DROSOPHILA_CLASSES)
    return _node_data(
        name="drosophila",
        edge_index=np.stack([src, dst]),
        edge_weight=adjacency[src, dst],
        y=y,
        given=None,
        classes=list(DROSOPHILA_CLASSES),
        description=f"Drosophila larva mushroom-body connectome, left: {n} neurons, "
        f"{src.size:,} directed edges weighted by synapse count, 4 cell types: {names}",
        directed=True,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        labels_per_class=labels_per_class,
        node_features=node_features,
        preprocessing={
            "source": "graspologic datasets/drosophila/left_adjacency.csv, left_cell_labels.csv",
            "edge_weight": "synapse count, row = source neuron",
        },
    )


def load_sbm(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    labels_per_class: int | None = None,
    node_features: str = "auto",
    num_nodes: int = 2000,
    num_blocks: int = 4,
    avg_degree: float = 10.0,
    p_in_ratio: float = 5.0,
) -> GraphData:
    """A SYNTHETIC stochastic block model: communities to find from edges and noisy features.

    Nodes fall into `num_blocks` equal blocks (the classes, in random order). A pair in the
    same block is linked with probability p_in, a pair across blocks with p_out = p_in /
    p_in_ratio, both set so that the mean degree is `avg_degree`. With the defaults 5/8 of a
    node's neighbours share its block. Each node also has 8 Gaussian features whose mean
    depends on its block, at a distance of 1 noise standard deviation from the origin: on
    their own they classify poorly, averaged over neighbours far better, so a model that
    passes messages beats one that reads features alone.

    Sampling is O(N + E): per block pair the edge count is drawn from Poisson(expected count)
    and the endpoints uniformly within the blocks, then self-loops and repeats are dropped
    (a few per million at this density). Each tie is listed in both directions.

    Args:
        seed: Seed of the graph, the features and the split.
        val_fraction: Share of the nodes held out for validation.
        test_fraction: Share held out for test (not used with `labels_per_class`).
        labels_per_class: Training labels per block, or None for a stratified split.
        node_features: "auto" keeps the Gaussian features; a kind replaces them.
        num_nodes: N, at least 2 per block.
        num_blocks: Blocks (classes), at least 2.
        avg_degree: Expected mean degree, > 0; 2 * ties / N.
        p_in_ratio: p_in / p_out, > 0; above 1 links mostly within blocks, below 1 across.
    """
    _check_kind(node_features, "load_sbm")  # before drawing a graph that may be large
    for arg, value, low in (("num_nodes", num_nodes, 2), ("num_blocks", num_blocks, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"load_sbm expects {arg} as an int >= {low}; got {value!r}.")
    if num_nodes < 2 * num_blocks:
        raise ValueError(
            f"load_sbm expects at least 2 nodes per block; got num_nodes={num_nodes} for "
            f"num_blocks={num_blocks}."
        )
    for arg, value in (("avg_degree", avg_degree), ("p_in_ratio", p_in_ratio)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"load_sbm expects {arg} as a number > 0; got {value!r}.")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(num_nodes) % num_blocks).astype(np.int64)
    members = [np.flatnonzero(y == b) for b in range(num_blocks)]
    sizes = np.array([m.size for m in members], dtype=np.float64)
    # Mean degree = (p_in * sum n_b (n_b - 1) + p_out * sum_{a != b} n_a n_b) / N.
    within = float((sizes * (sizes - 1)).sum())
    across = float(num_nodes**2 - (sizes**2).sum())
    p_out = avg_degree * num_nodes / (p_in_ratio * within + across)
    p_in = p_in_ratio * p_out
    if max(p_in, p_out) > 1:
        raise ValueError(
            f"load_sbm cannot reach avg_degree={avg_degree} with num_nodes={num_nodes} and "
            f"p_in_ratio={p_in_ratio}: an edge probability would be {max(p_in, p_out):.2f} > 1; "
            f"lower avg_degree or add nodes."
        )
    src, dst = [], []
    for a in range(num_blocks):
        for b in range(a, num_blocks):
            pairs = sizes[a] * (sizes[a] - 1) / 2 if a == b else sizes[a] * sizes[b]
            m = rng.poisson((p_in if a == b else p_out) * pairs)
            src.append(members[a][rng.integers(0, members[a].size, m)])
            dst.append(members[b][rng.integers(0, members[b].size, m)])
    u, v = np.concatenate(src), np.concatenate(dst)
    # Undirected: key each tie by (low, high) so that repeats and u-v / v-u duplicates meet.
    keys = np.unique(np.minimum(u, v) * num_nodes + np.maximum(u, v))
    u, v = keys // num_nodes, keys % num_nodes
    keep = u != v
    u, v = u[keep], v[keep]
    means = rng.standard_normal((num_blocks, SBM_FEATURE_DIM))
    means *= SBM_SIGNAL / np.linalg.norm(means, axis=1, keepdims=True)
    features = means[y] + rng.standard_normal((num_nodes, SBM_FEATURE_DIM))  # (N, 8)
    return _node_data(
        name="sbm",
        edge_index=_both_ways(u, v),
        edge_weight=None,
        y=y,
        given=features,
        classes=[f"block-{b}" for b in range(num_blocks)],
        description=f"synthetic stochastic block model: {num_nodes:,} nodes in {num_blocks} "
        f"blocks, {u.size:,} ties (mean degree {2 * u.size / num_nodes:.1f}), p_in/p_out = "
        f"{p_in_ratio:g}, {SBM_FEATURE_DIM} noisy Gaussian features",
        directed=False,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        labels_per_class=labels_per_class,
        node_features=node_features,
        synthetic=True,
        preprocessing={
            "generator": "stochastic block model, Poisson edge counts per block pair",
            "p_in": p_in,
            "p_out": p_out,
            "feature_signal": SBM_SIGNAL,
        },
    )


def load_digit_graphs(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> GraphSetData:
    """scikit-learn digits as graphs: each 8x8 scan is 64 pixel nodes on an 8-neighbour grid.

    Node p = 8 * row + col has features (intensity / 16, row / 7, col / 7) and an edge to each
    of its up to 8 neighbours, listed both ways (420 entries per graph, the same tensor shared
    by all graphs). The label is the digit; the split is the `digits` starter's for the same
    seed and fractions.

    Args:
        seed: Seed of the split.
        val_fraction: Share of the 1,797 scans held out for validation.
        test_fraction: Share held out for test.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images.astype(np.float32) / 16.0  # (G, 8, 8)
    labels = bunch.target.astype(np.int64)
    edge_index = torch.from_numpy(grid_edges(8, 8))  # (2, 420)
    rows, cols = np.divmod(np.arange(64), 8)
    position = np.stack([rows / 7, cols / 7], axis=1).astype(np.float32)  # (64, 2)
    graphs = [
        Graph(
            x=torch.from_numpy(np.concatenate([image.reshape(64, 1), position], axis=1)),
            edge_index=edge_index,
            y=torch.tensor(label),
        )
        for image, label in zip(images, labels.tolist(), strict=True)
    ]
    splits = stratified_split(labels, seed, val_fraction, test_fraction, class_names=DIGIT_CLASSES)
    train, val, test = ([graphs[i] for i in part] for part in splits)
    data = GraphSetData(
        name="digit-graphs",
        train=train,
        val=val,
        test=test,
        classes=list(DIGIT_CLASSES),
        description=f"scikit-learn digits as graphs: {len(graphs):,} real 8x8 scans, each 64 "
        "pixel nodes with 8-neighbour edges, 10 classes",
        preprocessing={
            "node_features": ["intensity / 16", "row / 7", "col / 7"],
            "edges": "8-neighbour pixel grid, both directions",
        },
    )
    if sum(map(len, (train, val, test))) != len(graphs) or any(
        g.x.shape != (64, 3) or g.y.shape != () for g in graphs
    ):
        raise ValueError("load_digit_graphs built an inconsistent graph set; this is a bug.")
    return data


def grid_edges(height: int, width: int) -> np.ndarray:
    """(2, E) int64 edges of an 8-neighbour pixel grid, each ordered pair once (both ways)."""
    rows, cols = np.divmod(np.arange(height * width), width)
    src, dst = [], []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == dc == 0:
                continue
            r, c = rows + dr, cols + dc
            ok = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            src.append(np.flatnonzero(ok))
            dst.append(r[ok] * width + c[ok])
    return np.stack([np.concatenate(src), np.concatenate(dst)]).astype(np.int64)


# -------------------------------------------------------------------------------------------
# The user's own graph
# -------------------------------------------------------------------------------------------


def _number(value: str) -> float | None:
    """The finite float in `value`, or None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _class_order(values: set[str]) -> list[str]:
    """Class names sorted numerically when they are all numbers ("2" before "10"), else as text."""
    if all(_number(v) is not None for v in values):
        return sorted(values, key=lambda v: (float(v), v))
    return sorted(values)


def _column(header: list[str], name: str, path: Path, expected: str) -> int:
    """Index of column `name` in `header`, or one sentence naming the file and its columns."""
    if name not in header:
        raise ValueError(
            f"{path} line 1 (the header) has no '{name}' column; expected {expected}; got "
            f"{', '.join(repr(h) for h in header)}."
        )
    return header.index(name)


def load_graph_folder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    labels_per_class: int | None = None,
    node_features: str = "auto",
) -> GraphData:
    """The user's own graph for node classification: a folder with nodes.csv and edges.csv.

    nodes.csv has a header row and one row per node: an `id` column (any text or number; node i
    is the i-th row), an optional `label` column (an empty label leaves the node unlabelled:
    y = -1, in no split) and any other columns as numeric features, standardised to mean 0
    and std 1 over all nodes (every node's features are model input in node classification,
    so this uses no label). Without feature columns, features are made by `node_features`.

    edges.csv has a header row and columns `source` and `target` (ids from nodes.csv) and an
    optional non-negative `weight`. Edges are directed as given (`directed=True`): list an
    undirected tie in both directions. Only the csv module reads them; nothing is written.

    Args:
        path: The folder.
        seed: Seed of the split.
        val_fraction: Share of the labelled nodes held out for validation.
        test_fraction: Share held out for test (not used with `labels_per_class`).
        labels_per_class: Training labels per class, or None for a stratified split.
        node_features: "auto" (the feature columns if any, else spectral), or a kind that
            replaces them: "spectral", "degree" or "identity".
    """
    folder = Path(path)
    kind = _check_kind(node_features, "load_graph_folder")
    nodes_path, edges_path = folder / "nodes.csv", folder / "edges.csv"
    for file, what in (
        (nodes_path, "columns id, optionally label, and numeric features"),
        (edges_path, "columns source, target and optionally weight"),
    ):
        if not file.is_file():
            raise ValueError(f"graph folder {folder} has no {file.name}; expected one with {what}.")

    # 1. Nodes: ids in file order, labels ("" = none), numeric feature columns.
    header, rows, lines = read_csv_rows(nodes_path)
    id_col = _column(header, "id", nodes_path, "columns id, optionally label, and features")
    label_col = header.index("label") if "label" in header else None
    feature_cols = [i for i in range(len(header)) if i not in (id_col, label_col)]
    ids: dict[str, int] = {}
    for row, line in zip(rows, lines, strict=True):
        if row[id_col] in ids:
            raise ValueError(
                f"{nodes_path} line {line} repeats id '{row[id_col]}'; expected each node once."
            )
        ids[row[id_col]] = len(ids)
    given, standardised = None, {}
    if feature_cols:
        given = np.empty((len(rows), len(feature_cols)))
        for r, (row, line) in enumerate(zip(rows, lines, strict=True)):
            for c, col in enumerate(feature_cols):
                number = _number(row[col])
                if number is None:
                    raise ValueError(
                        f"{nodes_path} line {line} has {row[col]!r} in feature column "
                        f"'{header[col]}'; expected a number (every column but id and label is "
                        f"a feature)."
                    )
                given[r, c] = number
        mean, std = given.mean(axis=0), given.std(axis=0)
        std[std < 1e-12] = 1.0  # a constant column stays at 0 rather than dividing by 0
        given = (given - mean) / std
        standardised = {
            "feature_columns": [header[i] for i in feature_cols],
            "mean": mean.tolist(),
            "std": std.tolist(),
        }
    raw = [row[label_col] if label_col is not None else "" for row in rows]
    classes = _class_order(set(raw) - {""})
    if not classes:
        raise ValueError(
            f"{nodes_path} has no labelled node; expected a 'label' column with at least one "
            f"non-empty value."
        )
    code = {name: i for i, name in enumerate(classes)}
    y = np.array([code.get(label, -1) for label in raw], dtype=np.int64)

    # 2. Edges: ids looked up in nodes.csv, weights finite and non-negative.
    header, rows, lines = read_csv_rows(edges_path)
    expected = "columns source, target and optionally weight"
    ends = [_column(header, name, edges_path, expected) for name in ("source", "target")]
    weight_col = header.index("weight") if "weight" in header else None
    edge_index = np.empty((2, len(rows)), dtype=np.int64)
    weights = np.ones(len(rows)) if weight_col is not None else None
    for e, (row, line) in enumerate(zip(rows, lines, strict=True)):
        for side, (col, end) in enumerate(zip(ends, ("source", "target"), strict=True)):
            node = ids.get(row[col])
            if node is None:
                raise ValueError(
                    f"{edges_path} line {line} has {end} '{row[col]}', which is not an id in "
                    f"nodes.csv; add that node or remove the edge."
                )
            edge_index[side, e] = node
        if weights is not None:
            number = _number(row[weight_col])
            if number is None or number < 0:
                raise ValueError(
                    f"{edges_path} line {line} has weight {row[weight_col]!r}; expected a "
                    f"non-negative number."
                )
            weights[e] = number
    return _node_data(
        name=safe_name(folder.resolve().name),
        edge_index=edge_index,
        edge_weight=weights,
        y=y,
        given=given,
        classes=classes,
        description=f"graph folder {folder.name}: {len(ids):,} nodes ({int((y >= 0).sum()):,} "
        f"labelled), {edge_index.shape[1]:,} directed edges, {len(classes)} classes",
        directed=True,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        labels_per_class=labels_per_class,
        node_features=kind,
        preprocessing={
            "nodes": "rows of nodes.csv in order",
            **standardised,
        },
    )
