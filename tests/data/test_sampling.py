import pytest
import torch

from fieldguide import create_model
from fieldguide.data.sampling import NeighborSampler
from fieldguide.layers.graph import Graph
from tests.tasks.graph_stand_ins import two_communities


def in_edges(edge_index, node):
    return set(edge_index[0, edge_index[1] == node].tolist())


def test_each_node_gets_at_most_fanout_of_its_own_in_neighbours():
    graph = two_communities(seed=1).graph
    torch.manual_seed(0)
    sampler = NeighborSampler(graph.edge_index, graph.num_nodes, (3, 2))
    seeds = torch.tensor([5, 70, 11])
    sub = sampler.sample(seeds)
    assert sub.nodes[:3].tolist() == seeds.tolist() and sub.num_seeds == 3
    assert len(set(sub.nodes.tolist())) == len(sub.nodes)  # no node twice
    src, dst = sub.nodes[sub.edge_index]  # back to global ids
    for node in dst.unique().tolist():
        drawn = src[dst == node].tolist()
        assert len(drawn) <= 3 and len(set(drawn)) == len(drawn)  # without replacement
        assert set(drawn) <= in_edges(graph.edge_index, node)
    for seed in seeds.tolist():  # every seed drew its full fan-out (all have >= 3 in-edges)
        assert (dst == seed).sum() == 3


def test_sampling_is_uniform_over_in_edges():
    # node 0 has ten in-neighbours; a fan-out of 3 should pick each about 30 % of the time
    edge_index = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])
    sampler = NeighborSampler(edge_index, 11, (3,))
    torch.manual_seed(1)
    counts = torch.zeros(11)
    for _ in range(2000):
        sub = sampler.sample(torch.tensor([0]))
        counts[sub.nodes[sub.edge_index[0]]] += 1
    share = counts[1:] / 2000
    assert torch.all((share > 0.25) & (share < 0.35)), share


@pytest.mark.parametrize("name", ["graphsage", "gat"])
def test_taking_all_neighbours_gives_the_full_graph_outputs_at_the_seeds(name):
    # Mean and attention normalise over the target's in-edges only, which sampling keeps whole.
    g = torch.Generator().manual_seed(2)
    edge_index = torch.randint(0, 300, (2, 600), generator=g)  # sparse: 2 hops stay local
    graph = Graph(torch.randn(300, 4, generator=g), edge_index, torch.rand(600, generator=g) + 0.5)
    torch.manual_seed(3)
    model = create_model(name, in_channels=4).eval()
    seeds = torch.tensor([3, 64, 17, 90])
    sub = NeighborSampler(graph.edge_index, graph.num_nodes, (-1, -1), graph.edge_weight).sample(
        seeds
    )
    assert sub.nodes.numel() < graph.num_nodes  # a real subgraph, not the whole graph
    with torch.no_grad():
        full = model(graph.x, graph.edge_index, graph.edge_weight)[seeds]
        sampled = model(graph.x[sub.nodes], sub.edge_index, sub.edge_weight)[: sub.num_seeds]
    torch.testing.assert_close(sampled, full, atol=1e-5, rtol=1e-5)


def test_same_generator_state_same_subgraph():
    graph = two_communities(seed=3).graph
    sampler = NeighborSampler(graph.edge_index, graph.num_nodes, (4, 4))
    torch.manual_seed(5)
    first = sampler.sample(torch.tensor([1, 2]))
    torch.manual_seed(5)
    second = sampler.sample(torch.tensor([1, 2]))
    assert torch.equal(first.nodes, second.nodes) and torch.equal(
        first.edge_index, second.edge_index
    )


def test_bad_fanouts_get_one_sentence():
    with pytest.raises(ValueError, match=r"fanouts as positive ints.*got \(0, 2\)"):
        NeighborSampler(torch.tensor([[0], [1]]), 2, (0, 2))
