"""Small synthetic graphs for the graph task tests (named synthetic; no starter needed)."""

import torch

from fieldguide.data.base import GraphData, GraphSetData
from fieldguide.layers.graph import Graph


def two_communities(n: int = 120, seed: int = 0, weighted: bool = False) -> GraphData:
    """Synthetic: two dense communities joined by a few edges; features are pure noise.

    Only the edges tell the classes apart, so a GNN must beat a features-only MLP here.
    """
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) >= n // 2).long()
    src = torch.randint(0, n, (n * 8,), generator=g)
    same = torch.rand(n * 8, generator=g) < 0.95  # 95 % of edges stay inside a community
    half = n // 2
    partner = torch.randint(0, half, (n * 8,), generator=g) + half * (y[src] ^ (~same).long())
    edge_index = torch.cat([torch.stack([src, partner]), torch.stack([partner, src])], 1)
    weight = torch.rand(edge_index.shape[1], generator=g) + 0.5 if weighted else None
    x = torch.randn(n, 4, generator=g)
    perm = torch.randperm(n, generator=g)
    train, val, test = perm[:10], perm[10:40], perm[40:]
    return GraphData(
        name="two-communities",
        graph=Graph(x=x, edge_index=edge_index, edge_weight=weight, y=y),
        train=train,
        val=val,
        test=test,
        classes=["a", "b"],
        description="synthetic two-community graph",
        synthetic=True,
    )


def paths_and_cliques(count: int = 60, seed: int = 0) -> GraphSetData:
    """Synthetic: class 0 graphs are paths, class 1 cliques, 4-7 nodes; features 1 and degree."""
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for i in range(count):
        n = int(torch.randint(4, 8, (), generator=g))
        label = i % 2
        if label == 0:
            a = torch.arange(n - 1)
            edge_index = torch.cat([torch.stack([a, a + 1]), torch.stack([a + 1, a])], 1)
        else:
            a, b = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            keep = a != b
            edge_index = torch.stack([a[keep], b[keep]])
        degree = torch.bincount(edge_index[1], minlength=n).float()
        x = torch.stack([torch.ones(n), degree / 4], 1)  # the degree tells them apart
        graphs.append(Graph(x=x, edge_index=edge_index, y=torch.tensor(label)))
    return GraphSetData(
        name="paths-and-cliques",
        train=graphs[:40],
        val=graphs[40:50],
        test=graphs[50:],
        classes=["path", "clique"],
        description="synthetic paths and cliques",
        synthetic=True,
    )
