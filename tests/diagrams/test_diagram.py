"""Diagrams traced from the code (fieldguide/api/trace.py, diagram.py): structure and validity."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import fieldguide
from fieldguide import create_model, list_models
from fieldguide.api.diagram import diagram, gallery, registered_diagram
from fieldguide.api.trace import trace
from fieldguide.cli.main import main
from tests.diagrams.validators import dot_errors, mermaid_errors

ROOT = Path(__file__).resolve().parents[2]


def traced(name, depth=1):
    torch.manual_seed(0)
    model = create_model(name)
    return trace(model, model.example_input(1), depth=depth)


def inputs_of(graph, node_id):
    return {s for s, t in graph.edges if t == node_id}


def cls(graph, node_id):
    """The class a box draws: its label is "attribute: Class" (a count may follow)."""
    return graph.node(node_id).label.split(": ")[-1].split(" ×")[0]


def test_every_registered_model_gives_valid_mermaid_at_depths_1_to_3():
    texts = {
        f"{name} depth {depth}": registered_diagram(name, depth=depth, shapes=depth == 2)
        for name in list_models()
        for depth in (1, 2, 3)
    }
    assert mermaid_errors(texts) == {}


def test_every_registered_model_gives_valid_dot():
    texts = {name: registered_diagram(name, format="dot", shapes=True) for name in list_models()}
    assert dot_errors(texts) == {}


def test_resnet_has_a_skip_edge_around_each_block():
    graph = traced("resnet18", depth=2)
    blocks = [g for g in graph.groups if g.label.endswith(": BasicBlock")]
    assert len(blocks) == 8
    for block in blocks:
        members = {n.id for n in graph.nodes if n.group == block.id}
        (add,) = [n for n in graph.nodes if n.group == block.id and n.kind == "add"]
        # One input of the add comes from outside the block, straight or through the shortcut.
        skip = [
            s
            for s in inputs_of(graph, add.id)
            if s not in members or (cls(graph, s) == "Shortcut" and inputs_of(graph, s) - members)
        ]
        assert skip, f"{block.label}: no skip edge around the block"
        body = [s for s in inputs_of(graph, add.id) if cls(graph, s) == "BatchNorm2d"]
        assert body, f"{block.label}: the residual branch does not reach the add"


def test_transformer_block_shows_both_residual_adds():
    graph = traced("gpt-tiny", depth=2)
    blocks = [g for g in graph.groups if g.label.endswith(": TransformerBlock")]
    assert len(blocks) == 2
    for block in blocks:
        members = {n.id for n in graph.nodes if n.group == block.id}
        adds = [n for n in graph.nodes if n.group == block.id and n.kind == "add"]
        assert len(adds) == 2, f"{block.label}: expected the attention and MLP residual adds"
        first, second = adds
        assert inputs_of(graph, first.id) - members  # the block's input skips the attention
        assert first.id in inputs_of(graph, second.id)  # and the first sum skips the MLP
        labels = {cls(graph, s) for s in inputs_of(graph, first.id) | inputs_of(graph, second.id)}
        assert {"MultiHeadAttention", "MLP"} <= labels


def test_gcn_shows_aggregation_over_neighbours():
    graph = traced("gcn", depth=1)
    convs = [n for n in graph.nodes if n.kind == "box" and "Σ over neighbours" in n.label]
    assert len(convs) == 2
    for conv in convs:  # every layer reads the edges
        assert "in_edge_index" in inputs_of(graph, conv.id)
    deep = traced("gcn", depth=3)
    assert sum(n.kind == "aggregate" for n in deep.nodes) == 2  # the sparse A · X of each layer
    assert "in_edge_index" in {
        s for n in deep.nodes if n.kind == "aggregate" for s in inputs_of(deep, n.id)
    }


@pytest.mark.parametrize(
    ("name", "block", "count"),
    [
        ("resnet18", "BasicBlock", 8),
        ("resnet34", "BasicBlock", 16),
        ("resnet50", "Bottleneck", 16),
        ("gpt2-small", "TransformerBlock", 12),
        ("vit-b16", "TransformerBlock", 12),
        ("mlp-deep", "HiddenBlock", 6),
    ],
)
def test_collapsing_keeps_the_block_counts(name, block, count):
    graph = traced(name)
    boxes = [n for n in graph.nodes if n.kind == "box" and cls(graph, n.id) == block]
    assert sum(n.count for n in boxes) == count
    assert any(n.count > 1 for n in boxes)  # something did collapse
    for n in boxes:
        assert n.label.endswith(f"×{n.count}") == (n.count > 1)


def test_blocks_that_differ_do_not_collapse():
    graph = traced("resnet18")
    stage = [n for n in graph.nodes if n.group == "g_stages.1"]
    # The first block of a stage halves the size through a projection shortcut: not the same.
    assert [cls(graph, n.id) for n in stage] == ["BasicBlock", "BasicBlock"]
    assert [n.count for n in stage] == [1, 1]


def test_depth_one_shows_blocks_and_depth_two_opens_them():
    shallow, deep = traced("resnet-tiny", 1), traced("resnet-tiny", 2)
    assert {n.label for n in shallow.nodes if n.kind == "box"} >= {"BasicBlock", "head: Linear"}
    assert not any(n.kind == "add" for n in shallow.nodes)  # the adds are inside the blocks
    assert "BasicBlock" not in {cls(deep, n.id) for n in deep.nodes}
    assert "conv1: Conv2d" in {n.label for n in deep.nodes}
    assert sum(n.kind == "add" for n in deep.nodes) == 3  # one per block
    assert len(traced("resnet-tiny", 3).nodes) >= len(deep.nodes) > len(shallow.nodes)


def test_the_unet_concatenates_a_skip_from_each_encoder_level():
    torch.manual_seed(0)
    model = create_model("unet-tiny")  # depth 2: two decoder levels, two skips
    graph = trace(model, model.example_input(1), depth=2)
    fed = {
        n.group: sorted(graph.node(s).module for s in inputs_of(graph, n.id))
        for n in graph.nodes
        if n.kind == "concat"
    }
    # Each Up joins its up-convolution with the encoder's output of the same size: the deepest
    # (ups.0) with the first Down's block, the last (ups.1) with the stem's final ReLU.
    assert fed == {
        "g_ups.0": ["downs.0.block", "ups.0.up"],
        "g_ups.1": ["stem.act", "ups.1.up"],
    }


def test_python_api_takes_any_module_and_its_input():
    unet = create_model("unet-tiny")  # an nn.Module, drawn at the input given, not its own
    text = fieldguide.diagram(unet, torch.randn(1, 1, 8, 8), shapes=True, direction="TD")
    assert text.startswith("flowchart TD") and "(1, 8, 8, 8)" in text
    with pytest.raises(ValueError, match="needs example_input for a Conv2d"):
        diagram(nn.Conv2d(1, 4, 3))
    with pytest.raises(ValueError, match="format one of mermaid, dot, json; got 'svg'"):
        diagram("mlp", format="svg")
    with pytest.raises(ValueError, match="depth as an int of at least 1; got 0"):
        diagram("mlp", depth=0)
    with pytest.raises(TypeError, match="model as an nn.Module or a registered name"):
        diagram(3)


def test_json_lists_nodes_edges_and_groups():
    doc = json.loads(registered_diagram("resnet18", format="json"))
    ids = {n["id"] for n in doc["nodes"]}
    assert {e["source"] for e in doc["edges"]} | {e["target"] for e in doc["edges"]} <= ids
    assert {n["kind"] for n in doc["nodes"]} >= {"input", "box", "output"}
    assert {g["id"] for g in doc["groups"]} >= {n["group"] for n in doc["nodes"]} - {None}


def test_labels_are_escaped_for_mermaid():
    class Odd(nn.Module):
        diagram_label = 'say "hi" <b> & bye'

        def forward(self, x):
            return x * 2

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.odd = Odd()

        def forward(self, x):
            return self.odd(x)

    text = diagram(Wrap(), torch.randn(2))
    assert "#quot;hi#quot; #lt;b#gt; #amp; bye" in text
    assert mermaid_errors({"odd": text}) == {}


def test_the_gallery_is_current():
    path = ROOT / "docs" / "diagrams.md"
    assert path.read_text() == gallery(), (
        "docs/diagrams.md is stale; regenerate it with `python -m fieldguide.api.diagram "
        "docs/diagrams.md`"
    )


def test_cli_diagram_of_a_name_and_of_a_run_folder(tmp_path, capsys):
    out = tmp_path / "gcn.json"
    assert main(["diagram", "gcn", "--format", "json", "--depth", "2", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["depth"] == 2
    assert main(["diagram", "resnt18"]) == 2
    assert "did you mean 'resnet18'" in capsys.readouterr().err
    assert main(["diagram", "gcn", "-o", str(tmp_path / "missing" / "gcn.mmd")]) == 2
    assert "-o FILE in an existing folder" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('[model]\nname = "mlp"\n[model.config]\nhidden_dim = 8\n')
    assert main(["diagram", str(run), "--shapes"]) == 0
    assert "HiddenBlock<br/>(1, 8)" in capsys.readouterr().out


def test_show_prints_the_diagram(capsys):
    assert main(["show", "gpt-tiny"]) == 0
    assert "TransformerBlock ×2" in capsys.readouterr().out
