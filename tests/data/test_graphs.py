import math

import numpy as np
import pytest
import torch

from fieldguide.data import GraphData, GraphSetData, load_data
from fieldguide.data.graph_features import node_features
from fieldguide.data.graph_folder import load_graph_folder
from fieldguide.data.graph_starters import load_digit_graphs, load_drosophila, load_karate, load_sbm
from fieldguide.data.graphs import node_split
from tests.data.helpers import require_starter


def _pairs(edge_index):
    return set(zip(edge_index[0].tolist(), edge_index[1].tolist(), strict=True))


def _check_split(data):
    parts = [data.train, data.val, data.test]
    for part in parts:
        assert part.dtype == torch.int64 and part.ndim == 1
    joined = torch.cat(parts)
    assert joined.unique().numel() == joined.numel()  # disjoint
    labelled = torch.nonzero(data.graph.y >= 0).squeeze(1)
    assert torch.equal(joined.sort().values, labelled)  # covers exactly the labelled nodes


# -- karate -------------------------------------------------------------------------------------
def test_karate_is_the_real_club_graph():
    require_starter("karate")
    data = load_karate()
    g = data.graph
    assert isinstance(data, GraphData) and data.name == "karate" and not data.synthetic
    assert g.num_nodes == 34 and g.num_edges == 156 and not data.directed
    assert data.classes == ["Mr. Hi", "Officer"]
    assert torch.bincount(g.y).tolist() == [17, 17]
    pairs = _pairs(g.edge_index)
    assert len(pairs) == 156 and pairs == {(t, s) for s, t in pairs}  # each tie both ways
    assert g.x.dtype == torch.float32 and g.edge_index.dtype == torch.int64
    assert g.edge_weight.dtype == torch.float32 and g.edge_weight.shape == (156,)
    assert g.edge_weight.min() >= 1 and g.edge_weight.sum() == 2 * 231  # networkx 'weight'
    assert data.features == "spectral" and data.input_shape == (16 + 2,)
    _check_split(data)


def test_karate_labels_per_class_takes_exactly_k_per_club():
    require_starter("karate")
    data = load_karate(labels_per_class=2, seed=3)
    assert torch.bincount(data.graph.y[data.train], minlength=2).tolist() == [2, 2]
    assert len(data.val) == round(0.15 * 34) and len(data.test) == 34 - 4 - len(data.val)
    _check_split(data)


def test_karate_split_follows_the_seed():
    require_starter("karate")
    for kwargs in ({}, {"labels_per_class": 2}):
        a, b, c = (load_karate(seed=s, **kwargs) for s in (0, 0, 1))
        for part in ("train", "val", "test"):
            assert torch.equal(getattr(a, part), getattr(b, part))
        assert not torch.equal(a.train, c.train)


def test_labels_per_class_needs_enough_nodes_in_every_class():
    require_starter("karate")
    with pytest.raises(ValueError, match="class 'Mr. Hi' has 17 labelled nodes but"):
        load_karate(labels_per_class=17)


def test_node_split_ignores_unlabelled_nodes():
    y = torch.tensor([0, 1, -1] * 20)
    train, val, test = node_split(y, 0, 0.2, 0.2)
    joined = torch.cat([train, val, test])
    assert joined.numel() == 40 and bool((y[joined] >= 0).all())
    train, val, test = node_split(y, 0, 0.2, 0.2, labels_per_class=3)
    assert torch.bincount(y[train]).tolist() == [3, 3] and len(val) == 8 and len(test) == 26
    assert bool((y[torch.cat([train, val, test])] >= 0).all())


# -- drosophila ---------------------------------------------------------------------------------
def test_drosophila_is_the_left_connectome():
    require_starter("drosophila")
    data = load_drosophila()
    g = data.graph
    assert g.num_nodes == 209 and g.num_edges == 7425 and data.directed
    assert data.classes == ["K", "P", "O", "I"]
    assert dict(zip(data.classes, torch.bincount(g.y).tolist(), strict=True)) == {
        "K": 101,
        "P": 58,
        "O": 29,
        "I": 21,
    }
    assert "Kenyon cell" in data.description and "output neuron" in data.description
    w = g.edge_weight
    assert bool((w >= 1).all()) and torch.equal(w, w.round())  # synapse counts
    # Row = source: projection neurons send only to Kenyon cells and receive nothing.
    src, dst = g.edge_index
    pn = g.y == data.classes.index("P")
    assert not bool(pn[dst].any())
    assert set(g.y[dst[pn[src]]].tolist()) == {data.classes.index("K")}
    _check_split(data)
    split = load_drosophila(labels_per_class=20, node_features="degree")
    assert torch.bincount(split.graph.y[split.train]).tolist() == [20] * 4
    assert split.features == "degree" and split.input_shape == (2,)


# -- sbm ----------------------------------------------------------------------------------------
def _nearest_mean_accuracy(data, x):
    y, train, test = data.graph.y, data.train, data.test
    means = torch.stack([x[train][y[train] == c].mean(0) for c in range(data.num_classes)])
    return (torch.cdist(x[test], means).argmin(1) == y[test]).float().mean().item()


def test_sbm_is_synthetic_and_undirected():
    data = load_sbm(seed=0)
    g = data.graph
    assert data.name == "sbm" and data.synthetic and data.description.startswith("synthetic")
    assert g.num_nodes == 2000 and torch.bincount(g.y).tolist() == [500] * 4
    assert g.x.shape == (2000, 8) and data.features == "given" and not data.directed
    pairs = _pairs(g.edge_index)
    assert len(pairs) == g.num_edges and pairs == {(t, s) for s, t in pairs}
    assert not bool((g.edge_index[0] == g.edge_index[1]).any())
    assert abs(g.num_edges / 2000 - 10) < 1  # mean degree about avg_degree
    _check_split(data)
    again = load_sbm(seed=0)
    assert torch.equal(again.graph.edge_index, g.edge_index) and torch.equal(again.graph.x, g.x)
    assert not torch.equal(load_sbm(seed=1).graph.y, g.y)


def test_sbm_structure_matters_more_than_features():
    data = load_sbm(seed=0)
    g = data.graph
    src, dst = g.edge_index
    degree = torch.bincount(dst, minlength=g.num_nodes).float().unsqueeze(1) + 1

    def smooth(x):  # mean over the node and its neighbours
        return (x + torch.zeros_like(x).index_add_(0, dst, x[src])) / degree

    alone = _nearest_mean_accuracy(data, g.x)
    smoothed = _nearest_mean_accuracy(data, smooth(smooth(g.x)))
    assert alone < 0.7 and smoothed > alone + 0.15


def test_sbm_scales_to_100k_nodes_and_a_million_edges():
    data = load_sbm(num_nodes=100_000, avg_degree=10)
    assert data.graph.num_nodes == 100_000
    assert abs(data.graph.num_edges - 1_000_000) < 20_000


def test_sbm_rejects_bad_sizes_and_can_use_structural_features():
    with pytest.raises(ValueError, match="num_blocks as an int >= 2"):
        load_sbm(num_blocks=1)
    with pytest.raises(ValueError, match="edge probability would be"):
        load_sbm(num_nodes=20, avg_degree=50)
    data = load_sbm(num_nodes=200, node_features="degree")
    assert data.features == "degree" and data.input_shape == (2,)


# -- node features ------------------------------------------------------------------------------
def _ring(n):
    src = torch.arange(n)
    return torch.stack([torch.cat([src, (src + 1) % n]), torch.cat([(src + 1) % n, src])])


def test_spectral_features_are_deterministic_sign_fixed_and_finite():
    edge_index = _ring(30)
    edge_index = torch.cat([edge_index, torch.tensor([[0, 15], [15, 0]])], 1)  # break symmetry
    a = node_features(edge_index, 30, "spectral")
    b = node_features(edge_index, 30, "auto")
    assert torch.equal(a, b) and a.dtype == torch.float32 and bool(torch.isfinite(a).all())
    assert a.shape == (30, 16 + 2)
    spectral = a[:, :16]
    magnitude = spectral.abs()
    first = (magnitude >= magnitude.amax(0) * (1 - 1e-4)).int().argmax(0, keepdim=True)
    peak = spectral.gather(0, first)
    assert bool((peak > 0).all())  # each column's largest-magnitude entry is positive
    assert torch.allclose(spectral.pow(2).mean(0), torch.ones(16), atol=1e-4)  # unit RMS
    # The leading eigenvector of D^-1/2 (A + A^T + I) D^-1/2 is proportional to sqrt(degree).
    degree = torch.bincount(edge_index[1], minlength=30).double() * 2 + 1
    assert torch.allclose(
        spectral[:, 0].double(), degree.sqrt() / degree.sqrt().pow(2).mean().sqrt(), atol=1e-4
    )
    assert node_features(_ring(5), 5, "spectral").shape == (5, 3 + 2)  # k = N - 2
    assert node_features(_ring(2)[:, :1], 2, "spectral").shape == (2, 2)


def test_degree_and_identity_features():
    edge_index = torch.tensor([[0, 0, 1], [1, 2, 2]])
    weight = torch.tensor([2.0, 1.0, 3.0])
    degree = node_features(edge_index, 3, "degree", weight)
    expected = torch.tensor([[0.0, 3.0], [2.0, 3.0], [4.0, 0.0]]).log1p()  # (in, out)
    assert torch.allclose(degree, expected)
    assert torch.equal(node_features(edge_index, 3, "identity"), torch.eye(3))
    with pytest.raises(ValueError, match="allows at most 5,000 nodes; got 5,001"):
        node_features(edge_index, 5001, "identity")
    with pytest.raises(ValueError, match="node_features as one of"):
        node_features(edge_index, 3, "random")
    with pytest.raises(ValueError, match="finite non-negative"):
        node_features(edge_index, 3, "degree", -weight)


# -- digit graphs -------------------------------------------------------------------------------
def test_digit_graphs_are_the_sklearn_scans_on_a_pixel_grid():
    from sklearn.datasets import load_digits

    from fieldguide.data.base import stratified_split

    data = load_digit_graphs(seed=0)
    assert isinstance(data, GraphSetData) and data.name == "digit-graphs"
    assert not data.synthetic and data.classes == [str(d) for d in range(10)]
    bunch = load_digits()
    parts = stratified_split(bunch.target, 0, 0.15, 0.15)
    assert sum(len(p) for p in parts) == 1797
    for graphs, index in zip((data.train, data.val, data.test), parts, strict=True):
        assert len(graphs) == len(index)
        labels = torch.stack([g.y for g in graphs])
        assert labels.dtype == torch.int64 and labels.tolist() == bunch.target[index].tolist()
        first = graphs[0]
        assert first.x.shape == (64, 3) and first.y.shape == ()
        assert torch.allclose(
            first.x[:, 0] * 16, torch.tensor(bunch.images[index[0]]).reshape(64).float()
        )
    src, dst = data.train[0].edge_index
    assert src.numel() == 420
    (rs, cs), (rd, cd) = (src // 8, src % 8), (dst // 8, dst % 8)
    assert bool(
        ((rs - rd).abs() <= 1).all() and ((cs - cd).abs() <= 1).all() and (src != dst).all()
    )
    assert _pairs(data.train[0].edge_index) == {(t, s) for s, t in _pairs(data.train[0].edge_index)}


# -- the user's own graph folder ----------------------------------------------------------------
NODES = "id,label,age\n" + "".join(
    f"n{i},{'' if i % 10 == 9 else ('red' if i % 2 else 'blue')},{i}\n" for i in range(40)
)
EDGES = "source,target,weight\n" + "".join(f"n{i},n{(i + 1) % 40},{i % 3}\n" for i in range(40))


def _folder(tmp_path, nodes=NODES, edges=EDGES):
    folder = tmp_path / "my graph"
    folder.mkdir()
    if nodes is not None:
        (folder / "nodes.csv").write_text(nodes)
    if edges is not None:
        (folder / "edges.csv").write_text(edges)
    return folder


def test_graph_folder_round_trip(tmp_path):
    folder = _folder(tmp_path)
    data = load_graph_folder(folder, seed=0)
    g = data.graph
    assert data.name == "my-graph" and data.directed and data.features == "given"
    assert data.classes == ["blue", "red"] and g.num_nodes == 40 and g.num_edges == 40
    assert g.y[9].item() == -1 and g.y[0].item() == 0 and g.y[1].item() == 1
    assert torch.equal(g.edge_index[:, 5], torch.tensor([5, 6]))
    assert g.edge_weight.tolist() == [float(i % 3) for i in range(40)]
    assert g.x.shape == (40, 1) and abs(g.x.mean().item()) < 1e-6  # standardised age
    _check_split(data)
    assert len(torch.cat([data.train, data.val, data.test])) == 36
    via_load_data = load_data(str(folder), labels_per_class=3, node_features="degree")
    assert via_load_data.features == "degree"
    assert torch.bincount(via_load_data.graph.y[via_load_data.train]).tolist() == [3, 3]


def test_graph_folder_without_features_gets_spectral_ones(tmp_path):
    nodes = "id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40))
    edges = "source,target\n" + "".join(f"{i},{(i * 7) % 40}\n" for i in range(40))
    data = load_graph_folder(_folder(tmp_path, nodes=nodes, edges=edges))
    assert data.features == "spectral" and data.input_shape == (18,)
    assert data.classes == ["0", "1"]


@pytest.mark.parametrize(
    ("nodes", "edges", "match"),
    [
        (None, EDGES, "has no nodes.csv"),
        (NODES, None, "has no edges.csv"),
        ("name,label\na,x\n", EDGES, r"nodes.csv line 1 \(the header\) has no 'id' column"),
        (NODES, "source,dst\nn0,n1\n", r"edges.csv line 1 \(the header\) has no 'target'"),
        (NODES, "source,target\nn0,n1\nn0,zz\n", "edges.csv line 3 has target 'zz', which is not"),
        (NODES.replace("n3,red,3", "n3,red,old"), EDGES, "nodes.csv line 5 has 'old' in feature"),
        (NODES, EDGES.replace("n4,n5,1", "n4,n5,heavy"), "edges.csv line 6 has weight 'heavy'"),
        (NODES, EDGES.replace("n4,n5,1", "n4,n5,-1"), "edges.csv line 6 has weight '-1'"),
        ("id,label\na,\nb,\n", "source,target\na,b\n", "nodes.csv has no labelled node"),
        ("id\na\nb\n", "source,target\na,b\n", "nodes.csv has no labelled node"),
    ],
)
def test_graph_folder_names_each_problem(tmp_path, nodes, edges, match):
    folder = _folder(tmp_path, nodes=nodes, edges=edges)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=match):
        load_graph_folder(folder)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # a failing load writes nothing


# -- load_data ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels_per_class": 1.5}, TypeError, "labels_per_class as an int"),
        ({"labels_per_class": True}, TypeError, "labels_per_class as an int"),
        ({"labels_per_class": 0}, ValueError, "labels_per_class of at least 1"),
        ({"node_features": "random"}, ValueError, "node_features as one of 'auto'"),
        (
            {"node_features": "spectral"},
            ValueError,
            "node_features='spectral' for starter 'digits'",
        ),
        ({"labels_per_class": 2}, ValueError, "labels_per_class applies only to node"),
        (
            {"spec": "digit-graphs", "labels_per_class": 2},
            ValueError,
            "labels_per_class=2 for starter 'digit-graphs'",
        ),
        ({"spec": "digit-graphs", "node_features": "degree"}, ValueError, "applies only to node"),
        ({"spec": "sbm", "target": "x"}, ValueError, "target applies only to .csv files"),
    ],
)
def test_load_data_validates_graph_options(kwargs, error, match):
    kwargs = {"spec": "digits", **kwargs}
    with pytest.raises(error, match=match):
        load_data(**kwargs)


def test_load_data_refuses_graph_options_for_other_paths(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n" + "\n".join(f"{i},{i % 2}" for i in range(20)))
    with pytest.raises(ValueError, match="not a graph folder holding edges.csv"):
        load_data(path, labels_per_class=2)
    folder = _folder(tmp_path)
    with pytest.raises(ValueError, match="image_size applies only to image folders"):
        load_data(folder, image_size=8)


def test_load_data_builds_graph_starters():
    sbm = load_data("sbm", seed=2, labels_per_class=5, node_features="degree")
    assert isinstance(sbm, GraphData) and sbm.synthetic and sbm.features == "degree"
    assert torch.bincount(sbm.graph.y[sbm.train]).tolist() == [5] * 4
    digits = load_data("digit-graphs")
    assert isinstance(digits, GraphSetData) and digits.input_shape == (3,)
    require_starter("karate")
    karate = load_data("karate", node_features="identity")
    assert karate.input_shape == (34,) and karate.features == "identity"
    assert math.isclose(float(karate.graph.x.sum()), 34.0)
    assert np.array_equal(load_data("karate").train.numpy(), load_karate().train.numpy())
