"""The graph starters: karate, drosophila, sbm (node classification) and digit-graphs.

Letters: N nodes, E edge entries (an undirected tie is listed twice, once each way), C features
per node, K classes.

| starter      | graphs | nodes  | edge entries | classes | features | data                        |
| ------------ | ------ | ------ | ------------ | ------- | -------- | --------------------------- |
| karate       | 1      | 34     | 156          | 2       | made     | real (networkx)             |
| drosophila   | 1      | 209    | 7,425 (dir.) | 4       | made     | real (graspologic's files)  |
| sbm          | 1      | 2,000  | ~20,000      | 4       | 8 given  | synthetic, drawn by seed    |
| digit-graphs | 1,797  | 64     | 420 each     | 10      | 3 given  | real (scikit-learn digits)  |

drosophila's four cell types are named by their one-letter codes, as in graspologic's file:
"K" Kenyon cell, "P" projection neuron (olfactory input to the Kenyon cells), "O" mushroom
body output neuron and "I" mushroom body input neuron (mostly modulatory, dopaminergic).

The carriers are never imported for their data: networkx builds karate (it ships with torch),
graspologic's two text files are found with `find_spec` and read with numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from fieldguide.data.base import GraphData, GraphSetData, stratified_split
from fieldguide.data.digits import DIGIT_CLASSES
from fieldguide.data.graph_features import _check_kind
from fieldguide.data.graphs import _both_ways, _node_data
from fieldguide.data.series import starter_file
from fieldguide.layers.graph import Graph

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
