"""A model's data-flow graph, traced from one real forward pass on its example input.

The diagram of a model is read from the code, never drawn by hand: forward hooks on every
submodule say which module is running, and a `TorchFunctionMode` records every torch call made
on the way, with the tensors it reads and writes. From that record comes a graph whose nodes are

- the model's inputs and its output;
- boxes, labelled "attribute: Class" ("qkv: Linear"): the modules `depth` levels below the
  model (containers such as `nn.Sequential` and `nn.ModuleList` are not counted: they become
  groups), and modules without children above that depth; what happens inside a box is hidden;
- the operations that join data paths between boxes: residual adds (`+`), concatenations,
  elementwise products (`×`), attention (`scaled_dot_product_attention`), matrix products, and a
  sparse matrix product, drawn as aggregation over neighbours (message passing);

and whose edges follow the tensors: an edge u -> v means v reads a tensor that u wrote, through
any number of reshapes, activations or other one-input operations, which stay out of the
picture. Modules shallower than `depth` that are not boxes become groups (subgraphs), so a
ResNet stage or a Transformer block frames its parts. Runs of identical boxes chained one into
the next (same class, same parameter shapes, the same side inputs) collapse into one box with a
count, "BasicBlock ×4".

torch.fx would give the same graph where it can trace, but it cannot run data-dependent Python
(input checks, caches, optional arguments), which every model here has; a real forward pass
runs for every model, so every registered model gets its diagram.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Modules that change nothing in eval mode: drawn as wires, not boxes.
PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

# Operations between boxes that are drawn as nodes: torch function name -> (kind, label).
JOINS = {
    "add": ("add", "+"),
    "__add__": ("add", "+"),
    "__radd__": ("add", "+"),
    "__iadd__": ("add", "+"),
    "add_": ("add", "+"),
    "sub": ("add", "−"),
    "__sub__": ("add", "−"),
    "cat": ("concat", "concat"),
    "concat": ("concat", "concat"),
    "concatenate": ("concat", "concat"),
    "stack": ("concat", "stack"),
    "mul": ("mul", "×"),
    "__mul__": ("mul", "×"),
    "__rmul__": ("mul", "×"),
    "mul_": ("mul", "×"),
    "scaled_dot_product_attention": ("attention", "attention"),
    "matmul": ("matmul", "matmul"),
    "__matmul__": ("matmul", "matmul"),
    "mm": ("matmul", "matmul"),
    "bmm": ("matmul", "matmul"),
    "einsum": ("matmul", "einsum"),
}


@dataclass
class Node:
    """One node of the diagram."""

    id: str
    kind: str  # "input", "output", "box", "add", "concat", "mul", "attention", "matmul", ...
    label: str
    shape: tuple[int, ...] | None = None
    group: str | None = None  # id of the innermost group (subgraph) holding it
    module: str = ""  # the box's module path, e.g. "stages.0.0"
    signature: tuple[Any, ...] = ()  # equal signatures may collapse into one box
    count: int = 1  # boxes collapsed into this one


@dataclass
class Group:
    """A module drawn as a frame around its parts: a stage, a block, a container."""

    id: str
    label: str
    parent: str | None


@dataclass
class Graph:
    """Nodes, edges (source id, target id) and groups of a traced model."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    depth: int = 1

    def node(self, node_id: str) -> Node:
        """The node called `node_id`."""
        return next(n for n in self.nodes if n.id == node_id)


def _tensors(value: Any) -> list[Tensor]:
    """Every tensor in a nest of tuples, lists and dicts."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _level(model: nn.Module) -> dict[str, int]:
    """Each module path -> how many non-container modules lie on the way down to it."""
    levels = {"": 0}
    for path, module in model.named_modules():
        if not path:
            continue
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        levels[path] = levels[parent] + (0 if isinstance(module, CONTAINERS) else 1)
    return levels


class _Recorder(TorchFunctionMode):
    """Watches torch calls and module calls and builds the graph as the forward pass runs."""

    def __init__(self, model: nn.Module, depth: int) -> None:
        super().__init__()
        self.model, self.depth = model, depth
        self.paths = {m: p for p, m in model.named_modules()}
        self.levels = _level(model)
        self.graph = Graph(depth=depth)
        self.stack: list[str] = []  # module paths being called, outermost first
        self.box: tuple[str, str] | None = None  # (module path, node id) of the running box
        self.sources: dict[int, frozenset[str]] = {}  # id(tensor) -> the nodes it comes from
        self.inside: set[int] = set()  # tensors written inside the running box
        self.box_inputs: set[str] = set()
        self.keep: list[Tensor] = []  # keeps traced tensors alive so their ids stay unique
        self.count = 0
        self.groups: dict[str, Group] = {}
        self.input_ids: frozenset[str] = frozenset()  # the model's input nodes

    # -- bookkeeping ------------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def _set(self, tensors: list[Tensor], sources: frozenset[str]) -> None:
        for t in tensors:
            self.keep.append(t)
            self.sources[id(t)] = sources

    def _from(self, tensors: list[Tensor]) -> frozenset[str]:
        return frozenset().union(*(self.sources.get(id(t), frozenset()) for t in tensors))

    def _is_box(self, path: str, module: nn.Module) -> bool:
        if isinstance(module, CONTAINERS):
            return False
        level = self.levels[path]
        return level == self.depth or (level < self.depth and not any(module.children()))

    def _group(self) -> str | None:
        """The group for a node created now: the innermost non-box module being called."""
        parent = None
        for path in self.stack:  # outermost first, so each group's parent exists before it
            if path not in self.groups:
                module = self.model.get_submodule(path)
                self.groups[path] = Group(f"g_{path}", f"{path}: {type(module).__name__}", parent)
            parent = f"g_{path}"
        return parent

    def add_node(self, node: Node, inputs: frozenset[str]) -> None:
        self.graph.nodes.append(node)
        self.graph.edges.extend((source, node.id) for source in sorted(inputs))

    # -- module hooks -----------------------------------------------------------------------
    def pre_hook(self, module: nn.Module, args: Any) -> None:
        path = self.paths.get(module)
        if path is None or path == "" or self.box is not None:
            return
        if self._is_box(path, module):
            self.box = (path, self._new_id("n"))
            self.inside, self.box_inputs = set(), set()
        else:
            self.stack.append(path)

    def post_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        path = self.paths.get(module)
        if path is None or path == "":
            return
        if self.box is not None:
            if self.box[0] != path:
                return  # a module inside the box finished
            box_path, node_id = self.box
            self.box = None
            outputs = _tensors(output)
            if isinstance(module, PASS_THROUGH):  # nothing to draw in eval mode: a wire
                self._set(outputs, frozenset(self.box_inputs) or self._from(_tensors(args)))
                return
            # "qkv: Linear": the attribute says what the module is for, the class what it is.
            attribute = box_path.rsplit(".", 1)[-1]
            named = "" if attribute.isdigit() else f"{attribute}: "
            label = str(getattr(module, "diagram_label", None) or named + type(module).__name__)
            params = tuple((n, tuple(p.shape)) for n, p in module.named_parameters())
            node = Node(
                node_id,
                "box",
                label,
                tuple(outputs[0].shape) if outputs else None,
                self._group(),
                box_path,
                (type(module).__name__, label, params),
            )
            self.add_node(node, frozenset(self.box_inputs))
            self._set(outputs, frozenset({node_id}))
        elif self.stack and self.stack[-1] == path:
            self.stack.pop()

    # -- torch calls ------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = _tensors(args) + _tensors(kwargs)
        outputs = _tensors(result)
        if not outputs:
            return result
        if self.box is not None:  # inside a box: only note what enters it from outside
            for t in inputs:
                if id(t) not in self.inside:
                    self.box_inputs |= self.sources.get(id(t), frozenset())
            # Tensors made here keep their inputs' origins: a later box that reads one (a cached
            # normalised adjacency, say) is then linked to where its data came from.
            origin = self._from(inputs)
            for t in outputs:
                self.keep.append(t)
                self.inside.add(id(t))
                self.sources.setdefault(id(t), origin)
            return result
        sources = [self.sources.get(id(t), frozenset()) for t in inputs]
        joined = frozenset().union(*sources)
        kind_label = JOINS.get(getattr(func, "__name__", ""))
        if (
            kind_label
            and kind_label[0] == "matmul"
            and any(t.layout != torch.strided for t in inputs)
        ):
            kind_label = ("aggregate", "Σ over neighbours (sparse A · X)")
        # Attention and aggregation are always drawn; other joins only where two data paths meet.
        # Arithmetic on node numbers or on the raw inputs alone (building a graph's normalised
        # edges, say) is bookkeeping, not a join.
        always = kind_label is not None and kind_label[0] in ("attention", "aggregate")
        meets = (
            kind_label is not None
            and sum(1 for s in sources if s) >= 2
            and outputs[0].is_floating_point()
            and not joined <= self.input_ids
        )
        if always or meets:
            kind, label = kind_label
            node = Node(self._new_id(kind[0]), kind, label, tuple(outputs[0].shape), self._group())
            self.add_node(node, joined)
            self._set(outputs, frozenset({node.id}))
        else:
            self._set(outputs, joined)  # one data path through: stays out of the picture
        return result


def trace(model: nn.Module, example: Any, depth: int = 1) -> Graph:
    """The data-flow graph of `model` on `example` (a tensor or a tuple of positional inputs).

    Args:
        model: any nn.Module.
        example: what `model(*example)` (or `model(example)`) accepts.
        depth: boxes are the modules this many non-container levels below the model.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"diagram expects depth as an int of at least 1; got {depth!r}.")
    args = example if isinstance(example, tuple) else (example,)
    recorder = _Recorder(model, depth)
    names = list(inspect.signature(model.forward).parameters)
    for i, value in enumerate(args):
        if isinstance(value, Tensor):
            name = names[i] if i < len(names) else f"input{i}"
            node = Node(f"in_{name}", "input", name, tuple(value.shape))
            recorder.graph.nodes.append(node)
            recorder._set([value], frozenset({node.id}))
            recorder.input_ids |= {node.id}
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(recorder.pre_hook))
        handles.append(module.register_forward_hook(recorder.post_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recorder:
            output = model(*args)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    outputs = _tensors(output)
    for i, t in enumerate(outputs[:1] if isinstance(output, Tensor) else outputs):
        node = Node(f"out{i}", "output", "output", tuple(t.shape))
        recorder.add_node(node, recorder.sources.get(id(t), frozenset()))
    graph = recorder.graph
    graph.groups = list(recorder.groups.values())
    _drop_unused_inputs(graph)
    return collapse(graph)


def _drop_unused_inputs(graph: Graph) -> None:
    used = {s for s, _ in graph.edges}
    graph.nodes = [n for n in graph.nodes if n.kind != "input" or n.id in used]


def collapse(graph: Graph) -> Graph:
    """Merge runs of identical boxes chained one into the next into one box with a count."""
    inputs: dict[str, set[str]] = {n.id: set() for n in graph.nodes}
    consumers: dict[str, set[str]] = {n.id: set() for n in graph.nodes}
    for s, t in graph.edges:
        inputs[t].add(s)
        consumers[s].add(t)
    merged: dict[str, str] = {}  # removed node -> the node it was merged into
    boxes = [n for n in graph.nodes if n.kind == "box"]
    for prev, nxt in zip(boxes, boxes[1:], strict=False):
        head = graph.node(merged.get(prev.id, prev.id))
        chained = (
            nxt.signature == prev.signature
            and nxt.group == prev.group
            and consumers[prev.id] == {nxt.id}
            and prev.id in inputs[nxt.id]
            and inputs[nxt.id] - {prev.id} <= inputs[prev.id]  # side inputs (edges, masks) shared
        )
        if chained:
            merged[nxt.id] = head.id
            head.count += 1
            head.shape = nxt.shape
    if not merged:
        return graph
    keep = [n for n in graph.nodes if n.id not in merged]
    edges = []
    for s, t in graph.edges:
        s, t = merged.get(s, s), merged.get(t, t)
        if s != t and (s, t) not in edges:
            edges.append((s, t))
    for n in keep:
        if n.count > 1:
            n.label = f"{n.label} ×{n.count}"
    return Graph(keep, edges, graph.groups, graph.depth)
