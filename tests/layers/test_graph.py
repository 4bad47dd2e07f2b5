"""Edge structures and message passing (fieldguide/layers/graph.py) against dense formulas."""

import pytest
import torch

from fieldguide.layers.graph import (
    EdgeStructure,
    Graph,
    StructureCache,
    as_graph,
    batch_graphs,
    check_graph,
    edge_softmax,
    gcn_values,
    max_aggregate,
    mean_values,
    readout,
    spmm,
)


def random_graph(n=9, e=30, seed=0, loops=True):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    if not loops:
        edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    weight = torch.rand(edge_index.shape[1], generator=g, dtype=torch.float64) + 0.1
    return edge_index, weight


def dense_adjacency(edge_index, weight, n, undirected=False):
    """M[target, source] = summed weight; undirected: elementwise max with the transpose."""
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((edge_index[1], edge_index[0]), weight.double(), accumulate=True)
    return torch.maximum(m, m.T) if undirected else m


def dense_gcn(m):
    """D^-1/2 (A + I) D^-1/2, where a node's own loop keeps its weight (else weight 1)."""
    a = m.clone()
    diag = a.diagonal()
    diag[diag == 0] = 1.0
    inv_sqrt = a.sum(1).pow(-0.5)
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


@pytest.mark.parametrize("undirected", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gcn_operator_equals_the_dense_normalised_adjacency(undirected, seed):
    edge_index, weight = random_graph(seed=seed)
    n = 9
    edges = EdgeStructure.build(edge_index, weight, n, undirected=undirected, dtype=torch.float64)
    x = torch.randn(n, 4, dtype=torch.float64)
    expected = dense_gcn(dense_adjacency(edge_index, weight, n, undirected)) @ x
    torch.testing.assert_close(spmm(edges.with_self_loops(), gcn_values(edges), x), expected)


def test_duplicate_edges_add_their_weights():
    edge_index = torch.tensor([[0, 0, 1], [1, 1, 2]])
    weight = torch.tensor([0.5, 2.0, 1.0])
    edges = EdgeStructure.build(edge_index, weight, 3)
    assert edges.num_edges == 2
    assert edges.src.tolist() == [0, 1] and edges.dst.tolist() == [1, 2]
    torch.testing.assert_close(edges.weight, torch.tensor([2.5, 1.0]))


def test_undirected_takes_the_larger_weight_and_never_doubles_a_pair():
    # 0->1 listed both ways with different weights, 1->2 one way only.
    edge_index = torch.tensor([[0, 1, 1], [1, 0, 2]])
    weight = torch.tensor([1.0, 3.0, 2.0])
    edges = EdgeStructure.build(edge_index, weight, 3, undirected=True)
    pairs = {
        (s, d): w
        for s, d, w in zip(
            edges.src.tolist(), edges.dst.tolist(), edges.weight.tolist(), strict=True
        )
    }
    assert pairs == {(0, 1): 3.0, (1, 0): 3.0, (1, 2): 2.0, (2, 1): 2.0}


def test_directed_edges_carry_messages_one_way_only():
    edge_index = torch.tensor([[0], [1]])  # 0 -> 1
    x = torch.tensor([[1.0], [10.0]])
    edges = EdgeStructure.build(edge_index, None, 2)
    out = spmm(edges, torch.ones(1), x)
    assert out.tolist() == [[0.0], [1.0]]  # node 1 hears node 0; node 0 hears nobody
    both = EdgeStructure.build(edge_index, None, 2, undirected=True)
    assert spmm(both, torch.ones(2), x).tolist() == [[10.0], [1.0]]


def test_self_loops_are_kept_with_their_weight_and_added_where_missing():
    edge_index = torch.tensor([[0, 1], [0, 2]])  # a loop of weight 5 at node 0; node 1 -> 2
    edges = EdgeStructure.build(edge_index, torch.tensor([5.0, 1.0]), 3).with_self_loops()
    loops = {
        s: w
        for s, d, w in zip(
            edges.src.tolist(), edges.dst.tolist(), edges.weight.tolist(), strict=True
        )
        if s == d
    }
    assert loops == {0: 5.0, 1: 1.0, 2: 1.0}
    # sorted by target, so the CSR rows are right
    assert torch.equal(edges.dst, torch.sort(edges.dst).values)


def test_isolated_nodes_keep_their_features_under_gcn_and_aggregate_to_zero_under_mean():
    edge_index = torch.tensor([[0], [1]])  # node 2 is isolated
    x = torch.randn(3, 4)
    edges = EdgeStructure.build(edge_index, None, 3)
    gcn = spmm(edges.with_self_loops(), gcn_values(edges), x)
    torch.testing.assert_close(gcn[2], x[2])  # its only edge is its own loop, degree 1
    mean = spmm(edges, mean_values(edges), x)
    assert torch.equal(mean[2], torch.zeros(4)) and torch.equal(mean[0], torch.zeros(4))
    assert torch.equal(max_aggregate(edges, x)[2], torch.zeros(4))


def test_mean_and_max_aggregation_match_a_loop_over_nodes():
    edge_index, weight = random_graph(seed=3, loops=False)
    edges = EdgeStructure.build(edge_index, weight, 9, dtype=torch.float64)
    x = torch.randn(9, 5, dtype=torch.float64)
    m = dense_adjacency(edge_index, weight, 9)
    expected_mean = (m / m.sum(1, keepdim=True).clamp_min(1e-300)) @ x
    torch.testing.assert_close(spmm(edges, mean_values(edges), x), expected_mean)
    got = max_aggregate(edges, x)
    for i in range(9):
        sources = (m[i] > 0).nonzero().squeeze(1)
        want = x[sources].max(0).values if len(sources) else torch.zeros(5, dtype=torch.float64)
        torch.testing.assert_close(got[i], want)


def test_spmm_gradients_match_finite_differences_for_values_and_features():
    edge_index, weight = random_graph(n=6, e=14, seed=4)
    edges = EdgeStructure.build(edge_index, weight, 6, dtype=torch.float64)
    values = torch.rand(3, edges.num_edges, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, 3, 2, dtype=torch.float64, requires_grad=True)  # (N, h, D)
    assert torch.autograd.gradcheck(lambda v, f: spmm(edges, v, f), (values, x))


def test_learnable_edge_weights_get_the_dense_formulas_gradient():
    edge_index, weight = random_graph(n=7, e=16, seed=5)
    x = torch.randn(7, 3, dtype=torch.float64)
    w1 = weight.clone().requires_grad_(True)
    cache = StructureCache()
    edges = cache.get(edge_index, w1, 7, undirected=False, dtype=torch.float64)
    spmm(edges.with_self_loops(), gcn_values(edges), x).square().sum().backward()
    w2 = weight.clone().requires_grad_(True)
    (dense_gcn(dense_adjacency(edge_index, w2, 7)) @ x).square().sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad)


def test_edge_softmax_sums_to_one_over_each_nodes_in_edges():
    edge_index, _ = random_graph(seed=6)
    edges = EdgeStructure.build(edge_index, None, 9).with_self_loops()
    scores = torch.randn(edges.num_edges, 3) * 50  # large scores: the max is subtracted
    alpha = edge_softmax(edges, scores)
    assert torch.isfinite(alpha).all()
    sums = torch.zeros(9, 3).index_add_(0, edges.dst, alpha)
    torch.testing.assert_close(sums, torch.ones(9, 3))


def test_readouts_pool_each_graph():
    x = torch.tensor([[1.0], [3.0], [-2.0], [4.0], [0.0]])
    batch = torch.tensor([0, 0, 1, 1, 1])
    assert readout(x, batch, "sum").tolist() == [[4.0], [2.0]]
    torch.testing.assert_close(readout(x, batch, "mean"), torch.tensor([[2.0], [2.0 / 3.0]]))
    assert readout(x, batch, "max").tolist() == [[3.0], [4.0]]
    assert readout(x, None, "sum").tolist() == [[6.0]]


def test_batch_graphs_shifts_node_numbers_and_builds_the_batch_vector():
    a = Graph(torch.randn(2, 3), torch.tensor([[0], [1]]), y=torch.tensor(1))
    b = Graph(
        torch.randn(3, 3), torch.tensor([[2, 0], [1, 2]]), torch.tensor([2.0, 3.0]), torch.tensor(0)
    )
    g = batch_graphs([a, b])
    assert g.edge_index.tolist() == [[0, 4, 2], [1, 3, 4]]
    assert g.batch.tolist() == [0, 0, 1, 1, 1]
    assert g.edge_weight.tolist() == [1.0, 2.0, 3.0]  # the unweighted graph gets weight 1
    assert g.y.tolist() == [1, 0] and g.num_graphs == 2


def test_structure_cache_finds_equal_edges_and_notices_in_place_changes():
    edge_index, weight = random_graph(seed=7)
    cache = StructureCache()

    def get(ei, w=None, undirected=False):
        return cache.get(ei, w, 9, undirected=undirected, dtype=torch.float32)

    first = get(edge_index)
    assert get(edge_index) is first
    assert get(edge_index.clone()) is first  # same edges, another tensor (a device copy)
    assert get(edge_index, undirected=True) is not first
    assert get(edge_index, weight) is not first
    edge_index[0, 0] = (edge_index[0, 0] + 1) % 9  # the caller edits its tensor in place
    changed = get(edge_index)
    assert changed is not first
    fresh = EdgeStructure.build(edge_index, None, 9)
    assert torch.equal(changed.src, fresh.src) and torch.equal(changed.dst, fresh.dst)


def test_as_graph_reads_anything_shaped_like_torch_geometric_data():
    class Data:  # what torch_geometric.data.Data offers as attributes
        def __init__(self):
            self.x = torch.randn(3, 2)
            self.edge_index = torch.tensor([[0, 1], [1, 2]])
            self.edge_attr = torch.tensor([0.5, 2.0])
            self.batch = None

    g = as_graph(Data())
    assert isinstance(g, Graph) and torch.equal(g.edge_weight, torch.tensor([0.5, 2.0]))
    assert as_graph(torch.randn(3, 2)) is None and as_graph([1, 2]) is None


@pytest.mark.parametrize(
    ("args", "error", "pattern"),
    [
        (
            (torch.randn(4, 3), torch.tensor([[0, 1], [2, 4]])),
            ValueError,
            r"values in \[0, 4\).*got 4",
        ),
        (
            (torch.randn(4, 3), torch.tensor([[0, -1], [2, 3]])),
            ValueError,
            r"values in \[0, 4\).*got -1",
        ),
        (
            (torch.randn(4, 3), torch.tensor([[0.0, 1.0], [2.0, 3.0]])),
            TypeError,
            r"edge_index of dtype torch.int64.*float32",
        ),
        (
            (torch.randn(4, 3), torch.tensor([[0, 1], [2, 3], [1, 1]])),
            ValueError,
            r"edge_index of shape \(2, E\).*\(3, 2\); transpose",
        ),
        (
            (torch.randn(4, 3), torch.tensor([0, 1])),
            ValueError,
            r"edge_index of shape \(2, E\).*\(2,\)",
        ),
        (
            (torch.randn(4, 5), torch.tensor([[0], [1]])),
            ValueError,
            r"node features x of shape \(N, 3\); got \(4, 5\)",
        ),
        ((torch.randn(4, 3), [[0], [1]]), TypeError, r"edge_index as a torch.Tensor"),
    ],
)
def test_bad_graph_input_gets_one_sentence(args, error, pattern):
    with pytest.raises(error, match=pattern):
        check_graph(*args, in_dim=3, owner="gcn")


def test_bad_weights_and_batch_vectors_get_one_sentence():
    x, edge_index = torch.randn(4, 3), torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"edge_weight of shape \(2,\)"):
        check_graph(x, edge_index, torch.ones(3), in_dim=3, owner="gcn")
    with pytest.raises(ValueError, match="finite and non-negative"):
        check_graph(x, edge_index, torch.tensor([1.0, -1.0]), in_dim=3, owner="gcn")
    with pytest.raises(ValueError, match="batch sorted"):
        check_graph(x, edge_index, None, torch.tensor([0, 1, 0, 1]), in_dim=3, owner="gcn")
    with pytest.raises(ValueError, match=r"batch of shape \(4,\)"):
        check_graph(x, edge_index, None, torch.tensor([0, 0, 1]), in_dim=3, owner="gcn")
    with pytest.raises(TypeError, match="batch as an int64 tensor"):
        check_graph(x, edge_index, None, torch.zeros(4), in_dim=3, owner="gcn")


def test_constant_values_are_permuted_once_and_other_values_are_not_mixed_up():
    edge_index, weight = random_graph(n=8, e=20, seed=8)
    edges = EdgeStructure.build(edge_index, weight, 8, dtype=torch.float64)
    m = dense_adjacency(edge_index, weight, 8)
    for scale in (1.0, 1.0, 3.0):  # the same constant values twice, then other ones
        # No gradient on the values: the backward may keep their M^T order between steps.
        values = edges.weight if scale == 1.0 else edges.weight * scale
        x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
        spmm(edges, values, x).square().sum().backward()
        expected = torch.autograd.grad(((m * scale) @ x).square().sum(), x)[0]
        torch.testing.assert_close(x.grad, expected)
    kept = edges._derived["permuted"]
    assert kept[1] is not edges.weight  # replaced by the last values, not accumulated
