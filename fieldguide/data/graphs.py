"""Graph data shared by the graph loaders: the node split, packing and self-checks.

Letters: N nodes, E edge entries (an undirected tie is listed twice, once each way), C features
per node, K classes.

Node classification (`GraphData`) keeps the whole graph and splits its labelled nodes into
train, validation and test index sets (`node_split`): stratified by class, or with
`labels_per_class=k` the semi-supervised protocol of Kipf & Welling (2017), k training labels
per class. Graph classification (`GraphSetData`) splits whole graphs, stratified by label.

The rest lives in `graph_features` (structural node features for graphs without them),
`graph_starters` (karate, drosophila, sbm, digit-graphs) and `graph_folder` (the user's
graph folder).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fieldguide.data.base import GraphData, stratified_split
from fieldguide.data.graph_features import _check_kind, node_features
from fieldguide.layers.graph import Graph

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
