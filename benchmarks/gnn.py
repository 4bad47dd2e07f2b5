"""fieldguide's GCN and GAT layers against PyG's, a naive scatter GCN and the guide's dense form.

Forward + backward of a 2-layer network, features 64 -> hidden 64 -> 16 outputs, fp32, CPU, on a
seeded random directed graph of 100,000 nodes and 1,000,000 edges (sources and targets drawn
uniformly, so a few duplicate edges and self loops occur, as in real edge lists).

GCN, two layers with ReLU between, every model holding the weights of ours:

- ours: two `fieldguide.models.gnn.GCNConv`, sharing one `EdgeStructure` fetched from a
  `StructureCache` in every step (the cache hit is part of the timed step); the one-off build of
  the structure (coalesce, self loops, normalised values, transposed order) is timed apart.
- pyg: two `torch_geometric.nn.GCNConv(cached=True)`; each layer caches its own normalised edges
  in its first call.
- naive: the plain edge-wise scatter, normalisation precomputed once: message = norm * h[src],
  `index_add_` into dst.
- dense: the guide's `A_hat @ (X W)` with a dense normalised N x N adjacency, at the largest N
  (doubling from 1,000, E/N = 10 kept) whose adjacency fits --dense-budget-gib, timed beside ours
  on that same graph; the N where it stops fitting and the memory it would need at the full size
  are printed without allocating them.

GAT: ours (`GATConv(64, 64)` with 8 heads of 8 concatenated, ELU, `GATConv(64, 16)` with 1 head,
attention dropout 0) against PyG's `GATConv(64, 8, heads=8)` then `GATConv(64, 16, heads=1)`;
both add self loops and use no dropout.

Before timing, ours is checked against every other model on a small graph (1,000 nodes), with
weights copied, to 1e-5: GCN on a graph with duplicate edges and self loops (PyG's gcn_norm
scatter-adds duplicates where ours coalesces them by summing weights: the same A), GAT on a
graph without duplicates (PyG's softmax counts a duplicate edge twice, ours once).

Per model: median seconds over repeats (one warm-up call per model excluded, and reported as
"1st s": it holds each model's one-off graph preparation), the models of a family interleaved
in a rotating order each repeat so that a busy neighbour hits all alike; the ratio time/ours
(above 1: ours is faster); graph MiB, what a model keeps about the graph between steps; saved
MiB, the bytes autograd keeps for backward (each storage once; deterministic); and peak MiB, the
peak extra resident memory of one step. Peak memory is measured in a forked child, run
single-threaded (libgomp's pool does not survive fork), as /proc/self/status VmHWM minus VmRSS
after `malloc_trim(0)` and a VmHWM reset (writing 5 to /proc/self/clear_refs), with glibc's mmap
threshold fixed at 128 KiB in the child so that freed tensors leave the resident set. Not
ru_maxrss: a forked child inherits its parent's peak. Linux only; "n/a" elsewhere.

Goals: ours >= 2x PyG's GCNConv speed for GCN; ours >= 1x PyG's GATConv speed for GAT.
Measured for reference at 1M edges, fwd+bwd: a cached CSR sparse matmul 451 ms, PyG GCNConv
(cached) 1.58 s, a plain index_add_ scatter 2.32 s; the dense form needs 37 GiB. Run:

    /tmp/pygenv/bin/python benchmarks/gnn.py  (PyG installed there only)
    .venv/bin/python benchmarks/gnn.py        (without PyG: its rows are skipped)

with [--threads 2] [--repeats 5] [--nodes 100000] [--edges 1000000] [--dense-budget-gib 4]
[--profile]. PyG is never a fieldguide dependency; install it in a separate environment along
with fieldguide (`pip install -e . --no-deps`). On a machine shared with other processes,
OMP_WAIT_POLICY=PASSIVE in front keeps libgomp's spin-wait from multiplying times
(perf-notes.md); the policy in force is printed.
"""

import argparse
import ctypes
import gc
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.graph import EdgeStructure, StructureCache, gcn_values
from fieldguide.models.gnn import GATConfig, GATConv, GCNConv

try:
    import torch_geometric
    from torch_geometric.nn import GATConv as PyGGATConv
    from torch_geometric.nn import GCNConv as PyGGCNConv
except ImportError:  # the project venv: PyG rows are skipped
    torch_geometric = None

IN_DIM, HIDDEN, OUT_DIM, HEADS = 64, 64, 16, 8
CHECK_NODES, CHECK_EDGES, TOLERANCE = 1_000, 10_000, 1e-5
DENSE_START, DENSE_DEGREE = 1_000, 10  # the dense search doubles N from here, E = 10 N
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


# -------------------------------------------------------------------------------------------
# Graphs and models
# -------------------------------------------------------------------------------------------


def random_graph(n: int, e: int, seed: int) -> tuple[Tensor, Tensor]:
    """Node features (N, IN_DIM) and edge_index (2, E) of uniformly random directed edges."""
    generator = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, e), generator=generator)
    return torch.randn(n, IN_DIM, generator=generator), edge_index


class OursGCN(nn.Module):
    """Two fieldguide GCNConv layers with ReLU between, edges from a StructureCache each call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = GCNConv(IN_DIM, HIDDEN), GCNConv(HIDDEN, OUT_DIM)
        self.cache = StructureCache()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        edges = self.cache.get(edge_index, None, x.shape[0], undirected=False, dtype=x.dtype)
        return self.conv2(F.relu(self.conv1(x, edges)), edges)


class PyGGCN(nn.Module):
    """Two PyG GCNConv(cached=True) layers with ReLU between."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = PyGGCNConv(IN_DIM, HIDDEN, cached=True)
        self.conv2 = PyGGCNConv(HIDDEN, OUT_DIM, cached=True)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x, edge_index)), edge_index)


def scatter_norm(edge_index: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sources, targets and D^-1/2 (A + I) D^-1/2 weights, one per listed edge plus loops.

    As PyG's gcn_norm: a weight-1 loop for every node without one, duplicates counted apart.
    """
    src, dst = edge_index
    lonely = torch.ones(n, dtype=torch.bool)
    lonely[src[src == dst]] = False
    loops = lonely.nonzero().squeeze(1)
    src, dst = torch.cat([src, loops]), torch.cat([dst, loops])  # (E',) each
    inv_sqrt = torch.bincount(dst, minlength=n).float().pow(-0.5)
    return src, dst, inv_sqrt[src] * inv_sqrt[dst]


class NaiveGCN(nn.Module):
    """Edge-wise GCN: message = norm * h[src], summed into dst with index_add_."""

    def __init__(self, edge_index: Tensor, n: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(IN_DIM, HIDDEN, bias=False)
        self.linear2 = nn.Linear(HIDDEN, OUT_DIM, bias=False)
        self.bias1, self.bias2 = (
            nn.Parameter(torch.zeros(HIDDEN)),
            nn.Parameter(torch.zeros(OUT_DIM)),
        )
        self.src, self.dst, self.norm = scatter_norm(edge_index, n)  # precomputed once

    def layer(self, x: Tensor, linear: nn.Linear, bias: Tensor) -> Tensor:
        h = linear(x)  # (N, D): project first, as every model here does for D <= C
        messages = self.norm.unsqueeze(1) * h[self.src]  # (E', D)
        return torch.zeros_like(h).index_add_(0, self.dst, messages) + bias

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = F.relu(self.layer(x, self.linear1, self.bias1))
        return self.layer(h, self.linear2, self.bias2)


def dense_adjacency(edge_index: Tensor, n: int) -> Tensor:
    """The guide's dense A_hat = D^-1/2 (A + I) D^-1/2 (N, N), built in place (one N^2 buffer)."""
    src, dst = edge_index
    a = torch.zeros(n, n)
    a.index_put_((dst, src), torch.ones(src.numel()), accumulate=True)  # A[target, source]
    diagonal = a.diagonal()
    diagonal.masked_fill_(diagonal == 0, 1.0)  # remaining self loops, as ours and PyG
    inv_sqrt = a.sum(1).pow(-0.5)  # in-degree, loops included
    return a.mul_(inv_sqrt.unsqueeze(1)).mul_(inv_sqrt.unsqueeze(0))


class DenseGCN(nn.Module):
    """The guide's dense GCN: A_hat @ (X W) + b per layer."""

    def __init__(self, a_hat: Tensor) -> None:
        super().__init__()
        self.linear1 = nn.Linear(IN_DIM, HIDDEN, bias=False)
        self.linear2 = nn.Linear(HIDDEN, OUT_DIM, bias=False)
        self.bias1, self.bias2 = (
            nn.Parameter(torch.zeros(HIDDEN)),
            nn.Parameter(torch.zeros(OUT_DIM)),
        )
        self.a_hat = a_hat  # a constant: no N x N gradient

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = F.relu(self.a_hat @ self.linear1(x) + self.bias1)  # (N, HIDDEN)
        return self.a_hat @ self.linear2(h) + self.bias2  # (N, OUT_DIM)


class OursGAT(nn.Module):
    """fieldguide GATConv 64 -> 8 heads x 8 (concatenated), ELU, GATConv 64 -> 16 (1 head)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = GATConv(
            IN_DIM, HIDDEN, GATConfig(num_heads=HEADS, attn_dropout=0.0), concat=True
        )
        self.conv2 = GATConv(
            HIDDEN, OUT_DIM, GATConfig(num_heads=1, attn_dropout=0.0), concat=False
        )
        self.cache = StructureCache()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        edges = self.cache.get(edge_index, None, x.shape[0], undirected=False, dtype=x.dtype)
        return self.conv2(F.elu(self.conv1(x, edges)), edges)


class PyGGAT(nn.Module):
    """PyG GATConv(64, 8, heads=8), ELU, GATConv(64, 16, heads=1); dropout 0 (its default)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = PyGGATConv(IN_DIM, HIDDEN // HEADS, heads=HEADS)
        self.conv2 = PyGGATConv(HIDDEN, OUT_DIM, heads=1)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


def gcn_models(edge_index: Tensor, n: int, dense: bool = False) -> dict[str, nn.Module]:
    """Ours and the other GCNs (pyg, naive; or dense alone) in training mode, with our weights."""
    torch.manual_seed(0)
    ours = OursGCN()
    if dense:
        others = {"dense": DenseGCN(dense_adjacency(edge_index, n))}
    else:
        others = {"naive": NaiveGCN(edge_index, n)}
        if torch_geometric is not None:
            others = {"pyg": PyGGCN(), **others}
    with torch.no_grad():
        for model in others.values():
            if isinstance(model, PyGGCN):
                layers = ((model.conv1.lin, model.conv1.bias), (model.conv2.lin, model.conv2.bias))
            else:
                layers = ((model.linear1, model.bias1), (model.linear2, model.bias2))
            for (linear, bias), conv in zip(layers, (ours.conv1, ours.conv2), strict=True):
                linear.weight.copy_(conv.linear.weight)  # (out, in) in all of them
                bias.copy_(conv.bias)
    return {"ours": ours.train(), **{name: m.train() for name, m in others.items()}}


def gat_models() -> dict[str, nn.Module]:
    """Ours and, when installed, PyG's GAT in training mode, PyG's holding our weights."""
    torch.manual_seed(0)
    ours = OursGAT()
    if torch_geometric is None:
        return {"ours": ours.train()}
    theirs = PyGGAT()
    with torch.no_grad():
        for mine, their in ((ours.conv1, theirs.conv1), (ours.conv2, theirs.conv2)):
            their.lin.weight.copy_(mine.linear.weight)  # (h D/h, in): head-major in both
            their.att_src.copy_(mine.att_src.unsqueeze(0))  # (1, h, D/h) from (h, D/h)
            their.att_dst.copy_(mine.att_dst.unsqueeze(0))
            their.bias.copy_(mine.bias)
    return {"ours": ours.train(), "pyg": theirs.train()}


def check_agreement() -> float:
    """Largest gap between ours and every other model on small graphs; raises above TOLERANCE."""
    x, edge_index = random_graph(CHECK_NODES, CHECK_EDGES, seed=1)
    key = torch.unique(edge_index[0] * CHECK_NODES + edge_index[1])
    distinct = torch.stack([key // CHECK_NODES, key % CHECK_NODES])  # duplicates removed
    families = {
        "GCN": (gcn_models(edge_index, CHECK_NODES), edge_index),
        "dense GCN": (gcn_models(edge_index, CHECK_NODES, dense=True), edge_index),
        "GAT": (gat_models(), distinct),
    }
    worst = 0.0
    for family, (models, edges) in families.items():
        with torch.no_grad():
            outs = {name: model(x, edges) for name, model in models.items()}
        for name, out in outs.items():
            gap = (out - outs["ours"]).abs().max().item()
            if gap > TOLERANCE:
                raise RuntimeError(
                    f"{family}: {name} differs from ours by {gap:.2e} (more than {TOLERANCE:g}) on "
                    f"a {CHECK_NODES}-node graph; fix the weight copy or the layer before timing."
                )
            worst = max(worst, gap)
    return worst


# -------------------------------------------------------------------------------------------
# Measurements
# -------------------------------------------------------------------------------------------


def fwd_bwd(model: nn.Module, step: Callable[[], Tensor]) -> float:
    """Seconds of one forward + backward; gradients are cleared before the clock starts."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    step().sum().backward()
    return time.perf_counter() - start


def saved_bytes(step: Callable[[], Tensor]) -> int:
    """Bytes autograd keeps for backward in one forward pass, each storage counted once."""
    seen, total = set(), 0

    def pack(tensor):
        nonlocal total
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return total


def held_bytes(obj: object, exclude: tuple[Tensor, ...]) -> int:
    """Bytes of the distinct tensor storages reachable from obj, minus the inputs in exclude."""
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    total, stack = 0, [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            storage = item.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        elif isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, EdgeStructure | StructureCache):
            stack.extend(vars(item).values())
    return total


def graph_bytes(model: nn.Module, inputs: tuple[Tensor, ...]) -> int:
    """What a model keeps about the graph between steps (its caches), inputs excluded."""
    if isinstance(model, OursGCN | OursGAT):
        return held_bytes(model.cache, inputs)
    if isinstance(model, NaiveGCN):
        return held_bytes((model.src, model.dst, model.norm), inputs)
    if isinstance(model, DenseGCN):
        return held_bytes(model.a_hat, inputs)
    if isinstance(model, PyGGCN):
        return held_bytes([model.conv1._cached_edge_index, model.conv2._cached_edge_index], inputs)
    return 0  # PyG's GATConv keeps nothing


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line.")


def peak_bytes(model: nn.Module, step: Callable[[], Tensor]) -> int | None:
    """Peak extra resident bytes of one forward + backward, run in a forked child; None off Linux.

    The child runs single-threaded: libgomp's thread pool does not survive fork (a parallel
    region in the child hangs). Its allocator is set to map every block of 128 KiB or more
    afresh and unmap it when freed (glibc otherwise raises that threshold as it goes and keeps
    freed blocks resident), and `malloc_trim` hands back the heap pages the parent's earlier
    steps left resident: the step cannot hide its allocations in memory already counted.
    """
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, exit without running the parent's cleanup
        try:
            torch.set_num_threads(1)
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)  # fixed: no dynamic raise
            model.zero_grad(set_to_none=True)
            gc.collect()
            libc.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # VmHWM := VmRSS
            before = _vm_kib("VmRSS")
            step().sum().backward()
            os.write(write, str((_vm_kib("VmHWM") - before) * 1024).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return int(answer) if answer else None


def measure(
    models: dict[str, nn.Module], x: Tensor, edge_index: Tensor, repeats: int
) -> dict[str, dict[str, float]]:
    """Median and first-call seconds, peak, saved and graph bytes of each model's fwd+bwd."""
    names = list(models)
    steps = {name: (lambda m=models[name]: m(x, edge_index)) for name in names}
    first = {name: fwd_bwd(models[name], steps[name]) for name in names}  # warm-up
    saved = {name: saved_bytes(steps[name]) for name in names}
    peak = {name: peak_bytes(models[name], steps[name]) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotate who goes first
            times[name].append(fwd_bwd(models[name], steps[name]))
    return {
        name: {
            "median": statistics.median(times[name]),
            "first": first[name],
            "peak": peak[name],
            "saved": saved[name],
            "graph": graph_bytes(models[name], (x, edge_index)),
        }
        for name in names
    }


def max_gap(models: dict[str, nn.Module], x: Tensor, edge_index: Tensor) -> float:
    """Largest output difference between ours and the others on this graph."""
    with torch.no_grad():
        outs = {name: model(x, edge_index) for name, model in models.items()}
    return max((out - outs["ours"]).abs().max().item() for out in outs.values())


def dense_bytes(n: int) -> int:
    """Bytes of the dense form's forward + backward at N nodes: A_hat plus (N, D) activations."""
    return 4 * n * n + 4 * n * (IN_DIM + 4 * HIDDEN + 4 * OUT_DIM)


def print_table(title: str, results: dict[str, dict[str, float]]) -> None:
    """One row per model, ratios against ours (time/ours above 1: ours is faster)."""
    mib = 2**20

    def memory(value: float | None) -> str:
        return f"{'n/a':>10}" if value is None else f"{value / mib:>10.1f}"

    ours = results["ours"]
    print(f"\n{title}")
    print(
        f"{'model':<7}{'median s':>10}{'1st s':>9}{'peak MiB':>10}{'saved MiB':>10}"
        f"{'graph MiB':>10}{'time/ours':>11}{'peak/ours':>11}"
    )
    for name, r in results.items():
        peak_ratio = (
            f"{r['peak'] / ours['peak']:>10.2f}x" if r["peak"] and ours["peak"] else f"{'n/a':>11}"
        )
        print(
            f"{name:<7}{r['median']:>10.3f}{r['first']:>9.3f}{memory(r['peak'])}"
            f"{memory(r['saved'])}{memory(r['graph'])}{r['median'] / ours['median']:>10.2f}x"
            f"{peak_ratio}"
        )


def profile_step(name: str, model: nn.Module, x: Tensor, edge_index: Tensor) -> None:
    """Print the ops that take the most self CPU time in one forward + backward."""
    from torch.profiler import ProfilerActivity, profile

    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x, edge_index).sum().backward()
    print(f"\nprofile of one {name} step, top ops by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--dense-budget-gib", type=float, default=4.0)
    parser.add_argument("--profile", action="store_true", help="profile ours (GCN, GAT) too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy = os.environ.get("OMP_WAIT_POLICY", "default (libgomp spin-wait)")
    pyg = torch_geometric.__version__ if torch_geometric is not None else "not installed"
    print(
        f"fwd+bwd of 2-layer GCN and GAT, {IN_DIM} -> {HIDDEN} -> {OUT_DIM}, fp32, CPU, "
        f"torch {torch.__version__}, torch_geometric {pyg}, {torch.get_num_threads()} thread(s), "
        f"OMP_WAIT_POLICY={policy}, median of {args.repeats} interleaved repeats after 1 warm-up"
    )
    if torch_geometric is None:
        print("  torch_geometric is not importable here: PyG rows and the goals are skipped.")
    worst = check_agreement()
    print(f"  small-graph check ({CHECK_NODES} nodes): all models agree with ours to {worst:.1e}")

    # 1. GCN and GAT at full size
    n, e = args.nodes, args.edges
    x, edge_index = random_graph(n, e, seed=0)
    start = time.perf_counter()
    structure = EdgeStructure.build(edge_index, None, n)
    looped = structure.with_self_loops()
    gcn_values(structure)
    looped.transposed()  # the order backward uses
    build = time.perf_counter() - start
    print(
        f"  graph: N={n:,}, E={e:,} listed, {structure.num_edges:,} distinct, "
        f"{looped.num_edges:,} with self loops; one-off structure build (coalesce, self loops, "
        f"GCN values, transposed order) {build:.3f} s"
    )
    del structure, looped
    gcn = gcn_models(edge_index, n)
    gcn_results = measure(gcn, x, edge_index, args.repeats)
    gcn_gap = max_gap(gcn, x, edge_index)
    print_table(f"GCN, N={n:,}, E={e:,} (outputs agree to {gcn_gap:.1e} at this size)", gcn_results)
    if args.profile:
        profile_step("ours GCN", gcn["ours"], x, edge_index)
    del gcn
    gat = gat_models()
    gat_results = measure(gat, x, edge_index, args.repeats)
    print_table(f"GAT, N={n:,}, E={e:,} (8 heads x 8, then 1 head x 16)", gat_results)
    if args.profile:
        profile_step("ours GAT", gat["ours"], x, edge_index)
        if "pyg" in gat:
            profile_step("PyG GAT", gat["pyg"], x, edge_index)
    del gat

    # 2. The dense form, at the largest doubling of N that fits the budget
    budget = args.dense_budget_gib * 2**30
    fit = DENSE_START
    while dense_bytes(2 * fit) <= budget:
        fit *= 2
    gib = 2**30
    print(
        f"\ndense form: budget {args.dense_budget_gib:g} GiB; largest N fitting (doubling from "
        f"{DENSE_START:,}, E = {DENSE_DEGREE} N): {fit:,} ({dense_bytes(fit) / gib:.2f} GiB); it "
        f"stops fitting at N={2 * fit:,} ({dense_bytes(2 * fit) / gib:.2f} GiB), past about "
        f"N={int((budget / 4) ** 0.5):,}; at N={n:,} the adjacency alone would need "
        f"{4 * n * n / gib:.1f} GiB (not allocated)"
    )
    if dense_bytes(fit) > budget:
        print(f"  even N={fit:,} does not fit the budget: dense form skipped")
        dense_results = None
    else:
        x_fit, edge_fit = random_graph(fit, DENSE_DEGREE * fit, seed=2)
        dense = gcn_models(edge_fit, fit, dense=True)
        dense_results = measure(dense, x_fit, edge_fit, args.repeats)
        dense_gap = max_gap(dense, x_fit, edge_fit)
        print_table(
            f"GCN, dense vs ours, N={fit:,}, E={DENSE_DEGREE * fit:,} "
            f"(outputs agree to {dense_gap:.1e})",
            dense_results,
        )
        del dense

    # 3. Goals
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print("\ngoals:")
    if torch_geometric is None:
        print("  [SKIP] ours >= 2x PyG GCNConv (GCN), ours >= 1x PyG GATConv (GAT): no PyG here")
    else:
        gcn_speed = gcn_results["pyg"]["median"] / gcn_results["ours"]["median"]
        gat_speed = gat_results["pyg"]["median"] / gat_results["ours"]["median"]
        print(f"  [{verdict(gcn_speed >= 2.0)}] GCN: ours >= 2x PyG GCNConv ({gcn_speed:.2f}x)")
        print(f"  [{verdict(gat_speed >= 1.0)}] GAT: ours >= 1x PyG GATConv ({gat_speed:.2f}x)")
    naive = gcn_results["naive"]["median"] / gcn_results["ours"]["median"]
    print(f"  (info) GCN: naive index_add_ / ours = {naive:.2f}x")
    if dense_results is not None:
        ratio = dense_results["dense"]["median"] / dense_results["ours"]["median"]
        print(f"  (info) GCN at N={fit:,}: dense / ours = {ratio:.2f}x")


if __name__ == "__main__":
    main()
