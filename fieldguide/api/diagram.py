"""`diagram`: a model drawn from its code, as Mermaid, Graphviz DOT or JSON.

    >>> from fieldguide import create_model, diagram
    >>> print(diagram(create_model("resnet-tiny")))          # Mermaid flowchart, depth 1
    >>> print(diagram("gpt-tiny", depth=2, shapes=True))     # each block's parts and shapes

The graph comes from one traced forward pass (`fieldguide.api.trace`): input and output nodes,
one box per module at the chosen depth, `+` nodes for residual adds, concat, × and attention
nodes where data paths join, and frames (subgraphs) for the stages and blocks that hold them.

Depth, as documented for `fieldguide diagram --depth`: at depth 1 each box is a top-level part
of the model (a ResNet's stem layers, its residual blocks, pool and head; a Transformer's
embeddings, blocks and final norm), and runs of identical blocks collapse ("BasicBlock ×2"); at
depth 2 each block opens into its own parts, with its residual adds and the skip edges around
them; depth 3 goes one level further (attention's projections, a GCN layer's sparse
aggregation). Containers (`nn.Sequential`, `nn.ModuleList`) are frames, never counted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fieldguide.api.trace import Graph, Node, trace

FORMATS = ("mermaid", "dot", "json")
DIRECTIONS = ("LR", "TD")
# Mermaid node shapes by kind: stadium for inputs and outputs, circles for joins.
_MERMAID_SHAPES = {
    "input": ('(["', '"])'),
    "output": ('(["', '"])'),
    "box": ('["', '"]'),
    "add": ('(("', '"))'),
    "mul": ('(("', '"))'),
    "concat": ('{{"', '"}}'),
    "attention": ('[/"', '"/]'),
    "matmul": ('[/"', '"/]'),
    "aggregate": ('[/"', '"/]'),
}
_DOT_SHAPES = {
    "input": "oval",
    "output": "oval",
    "box": "box",
    "add": "circle",
    "mul": "circle",
    "concat": "hexagon",
}


def diagram(
    model: Any,
    example_input: Any = None,
    *,
    depth: int = 1,
    shapes: bool = False,
    format: str = "mermaid",
    direction: str = "LR",
) -> str:
    """The diagram of `model` (an nn.Module or a registered name) as text.

    Args:
        model: a module, or a registered model name such as "resnet18".
        example_input: what `model(...)` accepts (a tensor or a tuple); by default the model's
            own `example_input(1)`.
        depth: which modules are boxes: those this many levels below the model (see above).
        shapes: add each node's output shape to its label.
        format: "mermaid", "dot" or "json".
        direction: "LR" (left to right) or "TD" (top down).
    """
    from torch import nn

    if format not in FORMATS:
        raise ValueError(f"diagram expects format one of {', '.join(FORMATS)}; got {format!r}.")
    if direction not in DIRECTIONS:
        raise ValueError(f"diagram expects direction 'LR' or 'TD'; got {direction!r}.")
    if isinstance(model, str):
        from fieldguide.models.registry import create_model

        model = create_model(model)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"diagram expects model as an nn.Module or a registered name; got "
            f"{type(model).__name__}."
        )
    if example_input is None:
        if not hasattr(model, "example_input"):
            raise ValueError(
                f"diagram needs example_input for a {type(model).__name__}, which has no "
                "example_input() of its own."
            )
        example_input = model.example_input(1)
    graph = trace(model, example_input, depth=depth)
    if format == "json":
        return to_json(graph)
    if format == "dot":
        return to_dot(graph, shapes=shapes, direction=direction)
    return to_mermaid(graph, shapes=shapes, direction=direction)


def _label(node: Node, shapes: bool) -> str:
    if shapes and node.shape is not None:
        return f"{node.label}\n{tuple(node.shape)}"
    return node.label


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _children(graph: Graph) -> tuple[dict[str | None, list[str]], dict[str | None, list[Node]]]:
    groups: dict[str | None, list[str]] = {}
    for g in graph.groups:
        groups.setdefault(g.parent, []).append(g.id)
    nodes: dict[str | None, list[Node]] = {}
    for n in graph.nodes:
        nodes.setdefault(n.group, []).append(n)
    return groups, nodes


def _occupied(graph: Graph) -> set[str]:
    """Groups that hold a node, directly or in a subgroup: the others are not drawn."""
    parent = {g.id: g.parent for g in graph.groups}
    occupied = set()
    for n in graph.nodes:
        g = n.group
        while g is not None and g not in occupied:
            occupied.add(g)
            g = parent.get(g)
    return occupied


# -------------------------------------------------------------------------------------------
# Mermaid
# -------------------------------------------------------------------------------------------


def mermaid_text(text: str) -> str:
    """`text` made safe inside a quoted Mermaid label, found with Mermaid 11's own parser.

    Mermaid rewrites every `#word;` as an entity, reads `&` and `<letter` as HTML and a quote
    as the label's end, so `#` goes first (the codes contain it), then & " < > and backtick.
    """
    replaced = text.replace("#", "#35;").replace("&", "#amp;").replace('"', "#quot;")
    replaced = replaced.replace("<", "#lt;").replace(">", "#gt;").replace("`", "#96;")
    return replaced.replace("\n", "<br/>") or " "


def to_mermaid(graph: Graph, *, shapes: bool = False, direction: str = "LR") -> str:
    """A Mermaid flowchart: nodes, `-->` edges, `subgraph` frames."""
    lines = [f"flowchart {direction}"]
    groups, nodes = _children(graph)
    occupied = _occupied(graph)
    labels = {g.id: g.label for g in graph.groups}

    def emit(group: str | None, indent: str) -> None:
        for n in nodes.get(group, []):
            left, right = _MERMAID_SHAPES.get(n.kind, ('["', '"]'))
            lines.append(f"{indent}{_safe_id(n.id)}{left}{mermaid_text(_label(n, shapes))}{right}")
        for child in groups.get(group, []):
            if child not in occupied:
                continue
            lines.append(f'{indent}subgraph {_safe_id(child)} ["{mermaid_text(labels[child])}"]')
            emit(child, indent + "  ")
            lines.append(f"{indent}end")

    emit(None, "  ")
    lines.extend(f"  {_safe_id(s)} --> {_safe_id(t)}" for s, t in graph.edges)
    lines.append("  classDef join fill:#fff3cd,stroke:#b58900")
    joins = [_safe_id(n.id) for n in graph.nodes if n.kind not in ("box", "input", "output")]
    if joins:
        lines.append(f"  class {','.join(joins)} join")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------
# Graphviz DOT and JSON
# -------------------------------------------------------------------------------------------


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(graph: Graph, *, shapes: bool = False, direction: str = "LR") -> str:
    """A Graphviz digraph: frames are clusters."""
    lines = [
        "digraph model {",
        f"  rankdir={'LR' if direction == 'LR' else 'TB'};",
        '  node [fontname="Helvetica", fontsize=11];',
    ]
    groups, nodes = _children(graph)
    occupied = _occupied(graph)
    labels = {g.id: g.label for g in graph.groups}

    def emit(group: str | None, indent: str) -> None:
        for n in nodes.get(group, []):
            shape = _DOT_SHAPES.get(n.kind, "parallelogram")
            label = _dot_text(_label(n, shapes))
            lines.append(f'{indent}{_safe_id(n.id)} [label="{label}", shape={shape}];')
        for child in groups.get(group, []):
            if child not in occupied:
                continue
            lines.append(f"{indent}subgraph cluster_{_safe_id(child)} {{")
            lines.append(f'{indent}  label="{_dot_text(labels[child])}";')
            emit(child, indent + "  ")
            lines.append(f"{indent}}}")

    emit(None, "  ")
    lines.extend(f"  {_safe_id(s)} -> {_safe_id(t)};" for s, t in graph.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(graph: Graph) -> str:
    """Nodes, edges and groups as JSON, for other tools."""
    doc = {
        "depth": graph.depth,
        "nodes": [
            {
                "id": n.id,
                "kind": n.kind,
                "label": n.label,
                "shape": list(n.shape) if n.shape is not None else None,
                "group": n.group,
                "module": n.module,
                "count": n.count,
            }
            for n in graph.nodes
        ],
        "edges": [{"source": s, "target": t} for s, t in graph.edges],
        "groups": [{"id": g.id, "label": g.label, "parent": g.parent} for g in graph.groups],
    }
    return json.dumps(doc, indent=2) + "\n"


# -------------------------------------------------------------------------------------------
# Registered models, run folders and the gallery
# -------------------------------------------------------------------------------------------


def registered_diagram(name: str, **options: Any) -> str:
    """The diagram of registered model `name` on its seeded example input (reproducible)."""
    import torch

    from fieldguide.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(name)
    return diagram(model, model.example_input(1), **options)


def run_diagram(run_dir: Any, **options: Any) -> str:
    """The diagram of the model a run folder trained, built from its config.toml."""
    from pathlib import Path

    import torch

    from fieldguide.api.config import RunConfig
    from fieldguide.models.registry import create_model

    config_path = Path(run_dir) / "config.toml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"diagram expects a run folder with a config.toml; {run_dir} has none."
        )
    run = RunConfig.from_toml(config_path)
    torch.manual_seed(0)
    model = create_model(run.model, **run.model_config)
    return diagram(model, model.example_input(1), **options)


GALLERY_HEADER = """# Diagrams of every registered model

Generated from the code by `python -m fieldguide.api.diagram docs/diagrams.md`; a test fails when
this file is stale, so it always shows what the code does. Each diagram is traced from one
forward pass on the model's example input (batch 1) at depth 1: top-level parts as boxes, runs of
identical blocks collapsed with their count, `+` for residual adds and frames for the containers
that hold them. `fieldguide diagram NAME --depth 2 --shapes` opens each block (its residual adds
and skip edges) and adds output shapes; `--format dot` or `json` gives Graphviz or data.
"""


def gallery() -> str:
    """docs/diagrams.md: every registered model's depth-1 diagram, by family."""
    from fieldguide.models.registry import FAMILIES, get_entry, list_models

    parts = [GALLERY_HEADER]
    for family in FAMILIES:
        names = list_models(family)
        if not names:
            continue
        parts.append(f"\n## {family}\n")
        for name in names:
            parts.append(f"\n### {name}\n\n{get_entry(name).summary}\n")
            parts.append(f"\n```mermaid\n{registered_diagram(name, shapes=True)}```\n")
    return "".join(parts)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/diagrams.md")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(gallery())
    print(f"wrote {target}")
