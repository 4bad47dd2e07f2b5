"""GCN, GAT and GraphSAGE (fieldguide/models/gnn.py): dense references, batching, invariances."""

import pytest
import torch
import torch.nn.functional as F

from fieldguide import create_model
from fieldguide.layers.graph import EdgeStructure, Graph, batch_graphs
from fieldguide.models.base import DataSpec
from fieldguide.models.gnn import GATConfig, GATConv, GNNConfig, SAGEConfig
from tests.layers.test_graph import dense_adjacency, dense_gcn, random_graph
from tests.test_model_contract import check_permutation_equivariant

MODELS = ["gcn", "gcn-deep", "gat", "graphsage", "graphsage-max"]


@pytest.mark.parametrize(("in_dim", "hidden_dim"), [(3, 8), (8, 3)])  # aggregate before / after W
@pytest.mark.parametrize("undirected", [False, True])
def test_one_layer_gcn_equals_the_dense_formula(in_dim, hidden_dim, undirected):
    torch.manual_seed(0)
    model = (
        create_model(
            "gcn",
            in_channels=in_dim,
            hidden_dim=hidden_dim,
            num_layers=1,
            dropout=0.0,
            undirected=undirected,
        )
        .double()
        .eval()
    )
    edge_index, weight = random_graph(seed=1)
    x = torch.randn(9, in_dim, dtype=torch.float64)
    conv = model.blocks[0].conv
    a_hat = dense_gcn(dense_adjacency(edge_index, weight, 9, undirected))
    hidden = torch.relu(a_hat @ x @ conv.linear.weight.T + conv.bias)
    expected = model.head(hidden)
    torch.testing.assert_close(model(x, edge_index, weight), expected)


def dense_gat(conv, x, m):
    """GAT with explicit (N, N) scores, masked to the edges plus self loops."""
    n = x.shape[0]
    z = conv.linear(x).view(n, conv.heads, conv.head_dim)
    source = (z * conv.att_src).sum(-1)  # (N, h)
    target = (z * conv.att_dst).sum(-1)
    scores = F.leaky_relu(target.T[:, :, None] + source.T[:, None, :], conv.negative_slope)
    linked = (m > 0) | torch.eye(n, dtype=torch.bool)  # (target, source)
    alpha = scores.masked_fill(~linked, float("-inf")).softmax(-1)  # (h, N, N)
    out = torch.einsum("hij,jhd->ihd", alpha, z)
    out = out.flatten(1) if conv.concat else out.mean(1)
    return out + conv.bias


@pytest.mark.parametrize("concat", [True, False])
def test_gat_layer_equals_dense_masked_attention(concat):
    torch.manual_seed(2)
    config = GATConfig(num_heads=3, hidden_dim=6, attn_dropout=0.0)
    conv = GATConv(4, 6, config, concat=concat).double().eval()
    edge_index, _ = random_graph(seed=3)
    x = torch.randn(9, 4, dtype=torch.float64)
    edges = EdgeStructure.build(edge_index, None, 9, dtype=torch.float64)
    expected = dense_gat(conv, x, dense_adjacency(edge_index, torch.ones(edge_index.shape[1]), 9))
    torch.testing.assert_close(conv(x, edges), expected)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("how", ["mean", "sum", "max"])
def test_graph_readouts_are_invariant_to_renumbering_nodes(name, how):
    torch.manual_seed(3)
    model = create_model(name, readout=how)
    check_permutation_equivariant(name, model)  # the checker asserts invariance for readouts


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("readout", ["none", "mean"])
def test_a_batch_of_graphs_gives_each_graph_its_own_outputs(name, readout):
    torch.manual_seed(4)
    model = create_model(name, in_channels=3, readout=readout).eval()
    graphs = []
    for seed, n in enumerate([4, 7, 1, 5]):  # one graph is a single isolated node
        edge_index, weight = random_graph(n=n, e=2 * n, seed=seed)
        graphs.append(Graph(torch.randn(n, 3), edge_index, weight.float()))
    batched = batch_graphs(graphs)
    with torch.no_grad():
        together = model(batched)
        alone = [model(g) for g in graphs]
    expected = torch.cat(alone)
    torch.testing.assert_close(together, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_edge_order_does_not_matter(name):
    torch.manual_seed(5)
    model = create_model(name).eval()
    x, edge_index, weight = model.example_input(8)
    order = torch.randperm(edge_index.shape[1])
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, edge_index[:, order], weight[order]), model(x, edge_index, weight)
        )


@pytest.mark.parametrize("name", MODELS)
def test_graph_objects_and_tensors_give_the_same_output(name):
    torch.manual_seed(6)
    model = create_model(name).eval()
    x, edge_index, weight = model.example_input(6)

    class PygLikeData:  # torch_geometric.data.Data's attributes, without torch_geometric
        def __init__(self):
            self.x, self.edge_index, self.edge_weight, self.batch = x, edge_index, weight, None

    with torch.no_grad():
        expected = model(x, edge_index, weight)
        torch.testing.assert_close(model(Graph(x, edge_index, weight)), expected)
        torch.testing.assert_close(model(PygLikeData()), expected)


def test_the_normalised_graph_is_built_once_for_repeated_forwards(monkeypatch):
    model = create_model("gcn", num_layers=3)
    x, edge_index, weight = model.example_input(10)
    calls = []
    original = EdgeStructure.build.__func__
    monkeypatch.setattr(
        EdgeStructure,
        "build",
        classmethod(lambda cls, *a, **k: calls.append(1) or original(cls, *a, **k)),
    )
    for _ in range(3):
        model(x, edge_index, weight).sum().backward()
    assert len(calls) == 1  # three layers, three steps, one build
    model(x, edge_index.clone(), weight)
    assert len(calls) == 1  # equal edges in another tensor (a copy to the device) are found
    model(x, edge_index.flip(0), weight)
    assert len(calls) == 2  # a different graph is built anew


def test_gat_attention_dropout_is_active_only_in_training():
    torch.manual_seed(7)
    model = create_model("gat", dropout=0.0, attn_dropout=0.5)
    x, edge_index, weight = model.example_input(12)
    model.train()
    assert not torch.allclose(model(x, edge_index), model(x, edge_index))
    model.eval()
    assert torch.equal(model(x, edge_index), model(x, edge_index))


def test_gat_ignores_edge_weights_and_gcn_reads_them():
    torch.manual_seed(8)
    x, edge_index, weight = create_model("gcn").example_input(8)
    for name, reads in [("gat", False), ("gcn", True), ("graphsage", True)]:
        model = create_model(name).eval()
        with torch.no_grad():
            same = torch.allclose(
                model(x, edge_index, weight), model(x, edge_index, weight * 3 + 1)
            )
        assert same is not reads, name


def test_directed_and_undirected_options_differ_on_a_one_way_graph():
    torch.manual_seed(9)
    x = torch.randn(4, 16)
    chain = torch.tensor([[0, 1, 2], [1, 2, 3]])  # 0 -> 1 -> 2 -> 3
    directed = create_model("gcn", num_layers=1, dropout=0.0).eval()
    undirected = create_model("gcn", num_layers=1, dropout=0.0, undirected=True).eval()
    undirected.load_state_dict(directed.state_dict())
    with torch.no_grad():
        one_way = directed(x, chain)
        two_way = undirected(x, chain)
        both_listed = directed(x, torch.cat([chain, chain.flip(0)], 1))
    torch.testing.assert_close(two_way, both_listed)  # undirected = listing both directions
    assert not torch.allclose(one_way[0], two_way[0])  # node 0 hears node 1 only if undirected


def test_outputs_reach_exactly_num_layers_hops():
    chain = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])  # messages flow 0 -> 5
    for layers in (1, 2, 3):
        model = create_model("graphsage", in_channels=2, num_layers=layers).eval()
        x = torch.randn(6, 2, requires_grad=True)
        model(x, chain)[5].sum().backward()
        reached = (x.grad.abs().sum(1) > 0).nonzero().squeeze(1).tolist()
        assert reached == list(range(5 - layers, 6)) and model.hops == layers


def test_model_rejects_bad_graphs_naming_itself():
    model = create_model("gcn", in_channels=4)
    x = torch.randn(5, 4)
    with pytest.raises(
        ValueError, match=r"^gcn expects node features x of shape \(N, 4\); got \(5, 3\)"
    ):
        model(torch.randn(5, 3), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"^gcn expects edge_index values in \[0, 5\)"):
        model(x, torch.tensor([[0], [5]]))
    with pytest.raises(TypeError, match=r"^gcn expects edge_index as a torch.Tensor"):
        model(x)
    graph_model = create_model("gcn", in_channels=4, readout="mean")
    with pytest.raises(ValueError, match="batch sorted"):
        graph_model(x, torch.tensor([[0], [1]]), None, torch.tensor([1, 1, 0, 0, 0]))


def test_configs_reject_impossible_sizes():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        GATConfig(hidden_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="num_layers must be at least 1"):
        GNNConfig(num_layers=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        SAGEConfig(dropout=1.0)
    with pytest.raises(ValueError, match=r"reads graph whose examples have shape \(C,\)"):
        create_model("gcn").config_for_data(GNNConfig(), DataSpec((8, 8), 3, output="per-node"))


@pytest.mark.parametrize("name", ["gcn", "gat", "graphsage"])
def test_memory_grows_with_edges_not_nodes_squared(name):
    # Guide §7 (known defect): a dense N x N adjacency here would need 200k^2 * 4 B = 149 GiB.
    n, e = 200_000, 400_000
    g = torch.Generator().manual_seed(10)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    sizes = {"in_channels": 4, "hidden_dim": 8, **({"num_heads": 2} if name == "gat" else {})}
    model = create_model(name, **sizes)
    out = model(torch.randn(n, 4, generator=g), edge_index)
    out.sum().backward()
    assert out.shape == (n, 2) and torch.isfinite(out).all()
