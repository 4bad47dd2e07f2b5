"""The contract every registered model keeps (DESIGN.md, "Contracts every family shares").

Parametrized over `list_models()`, so a new family is covered the moment it registers a name.
"""

import copy
import re

import pytest
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from fieldguide import create_model, list_models

NAMES = list_models()


def _build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name)


def _example(model: nn.Module, batch_size: int, seed: int = 1):
    """The model's example input: a tensor, or a tuple of tensors (encoder-decoder: src, tgt)."""
    torch.manual_seed(seed)
    return model.example_input(batch_size)


def _call(model: nn.Module, x):
    return model(*x) if isinstance(x, tuple) else model(x)


def _rows(x, i: int, j: int):
    """Examples i..j-1 of a tensor or a tuple of tensors."""
    return tuple(t[i:j] for t in x) if isinstance(x, tuple) else x[i:j]


def _first(x) -> torch.Tensor:
    return x[0] if isinstance(x, tuple) else x


# ---------------------------------------------------------------------------------------------
# Declared invariants: one checker per property a model may declare (see models/base.py).
# ---------------------------------------------------------------------------------------------


def check_batch_independent(name: str, model: nn.Module) -> None:
    """In eval mode, each sample's output alone equals its row in a batch of 4."""
    model.eval()
    x = _example(model, 4, seed=2)
    with torch.no_grad():
        batched = _call(model, x)
        # atol 1e-5 relative to the output's scale: untrained deep ResNets give logits near 50,
        # where float32 round-off between batch sizes alone reaches ~3e-5. A leak across
        # samples (batch statistics) moves outputs by their own order of magnitude.
        atol = 1e-5 * max(1.0, batched.abs().max().item())
        for i in range(_first(x).shape[0]):
            alone = _call(model, _rows(x, i, i + 1))
            torch.testing.assert_close(
                alone[0],
                batched[i],
                atol=atol,
                rtol=0,
                msg=lambda m, i=i: (
                    f"{name}: sample {i} alone differs from its row in the batch. {m}"
                ),
            )


def check_causal(name: str, model: nn.Module) -> None:
    """For sequences (B, T, C): d y[:, t] / d x[:, s] is exactly zero for every s > t."""
    model.eval()  # dropout off; causality must hold in train mode too, but without noise
    x = _example(model, 2, seed=3).requires_grad_(True)
    y = model(x)  # (B, T, out_dim)
    assert y.shape[:2] == x.shape[:2], f"{name}: causal models give one output per step"
    t_steps = x.shape[1]
    for t in range(t_steps):
        (grad,) = torch.autograd.grad(y[:, t].sum(), x, retain_graph=True)
        future = grad[:, t + 1 :]
        assert torch.count_nonzero(future) == 0, f"{name}: output at step {t} sees the future"
        # and it does see the present, or the test would pass for a model that ignores x
        assert torch.count_nonzero(grad[:, t]) > 0, f"{name}: output at step {t} ignores x[t]"


def check_streamable(name: str, model: nn.Module) -> None:
    """Step-by-step outputs equal the full forward pass at batch size 3 (atol 1e-5)."""
    model.eval()
    x = _example(model, 3, seed=4)
    with torch.no_grad():
        full = model(x)  # (B, T, out_dim)
        state = model.initial_state(3)
        steps = []
        for x_t in x.unbind(1):
            y_t, state = model.step(x_t, state)
            steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def check_permutation_equivariant(name: str, model: nn.Module) -> None:
    """Graphs: renumbering the nodes renumbers node outputs and leaves graph readouts alone.

    The input is (x, edge_index, *rest) with rest per edge (weights) or per node (a sorted
    batch vector). Nodes are shuffled within their graph, so a batch vector stays sorted.
    """
    model.eval()
    x, edge_index, *rest = _example(model, 6, seed=5)
    n = x.shape[0]
    batch = rest[1] if len(rest) > 1 else torch.zeros(n, dtype=torch.long)
    g = torch.Generator().manual_seed(6)
    perm = torch.argsort(batch * n + torch.randperm(n, generator=g))  # new node p = old perm[p]
    assert not torch.equal(perm, torch.arange(n)), "the permutation must move nodes"
    new_number = torch.empty_like(perm)
    new_number[perm] = torch.arange(n)
    with torch.no_grad():
        out = model(x, edge_index, *rest)
        moved = model(x[perm], new_number[edge_index], *rest)
    if out.shape[0] == n:  # one output per node: equivariant
        expected, what = out[perm], "node outputs do not follow the nodes"
    else:  # one per graph: invariant
        expected, what = out, "graph outputs change when nodes are renumbered"
    atol = 1e-5 * max(1.0, out.abs().max().item())
    torch.testing.assert_close(
        moved, expected, atol=atol, rtol=0, msg=lambda m: f"{name}: {what}. {m}"
    )


# Tiny, odd and prime sizes, none a multiple of 4: a U-Net must pad every one of them.
ODD_SIZES = [(1, 1), (2, 3), (7, 1), (61, 67)]


def check_size_preserving(name: str, model: nn.Module) -> None:
    """Images (B, C, H, W) give per-pixel outputs (B, K, H, W) of the same H×W, any H×W."""
    model.eval()
    example = _example(model, 1, seed=7)
    torch.manual_seed(7)
    for height, width in ODD_SIZES:
        x = torch.randn(*example.shape[:2], height, width)
        with torch.no_grad():
            y = model(x)
        assert y.ndim == 4 and y.shape[0] == 1 and y.shape[2:] == (height, width), (
            f"{name}: images of size {height}x{width} gave outputs of shape {tuple(y.shape)}"
        )
        assert torch.isfinite(y).all(), f"{name}: non-finite outputs at {height}x{width}"


def check_uses_skips(name: str, model: nn.Module) -> None:
    """Zeroing any one skip changes the output.

    A model that declares it names, in `skip_modules()`, the modules whose second input is a
    skip (`forward(x, skip, ...)`); each is run once with that input zeroed.
    """
    model.eval()
    x = _example(model, 2, seed=8)
    with torch.no_grad():
        full = _call(model, x)
    modules = model.skip_modules()
    assert modules, f"{name} declares uses_skips but names no skip modules"
    scale = max(1.0, full.abs().max().item())
    for i, module in enumerate(modules):
        calls = []

        def zero_skip(_module, args, calls=calls):
            calls.append(1)
            return (args[0], torch.zeros_like(args[1]), *args[2:])

        handle = module.register_forward_pre_hook(zero_skip)
        try:
            with torch.no_grad():
                cut = _call(model, x)
        finally:
            handle.remove()
        assert calls, f"{name}: skip module {i} never ran"
        change = (cut - full).abs().max().item()
        assert change > 1e-4 * scale, (
            f"{name}: zeroing skip {i} leaves the output unchanged (max change {change:.2e})"
        )


def check_invertible(name: str, model: nn.Module) -> None:
    """x -> z -> x: `inverse(model(x))` gives x back within 1e-5, in float64 and eval mode.

    float64 so that round-off through a deep stack cannot hide a real defect, nor fake one.
    The model is copied, so the caller's keeps its dtype.
    """
    model = copy.deepcopy(model).double().eval()
    x = _example(model, 3, seed=9).double()
    with torch.no_grad():
        z = model(x)
        back = model.inverse(z)
    assert z.shape == x.shape, f"{name}: latents of shape {tuple(z.shape)} for x {tuple(x.shape)}"
    assert torch.isfinite(z).all(), f"{name}: non-finite latents"
    torch.testing.assert_close(
        back,
        x,
        atol=1e-5,
        rtol=0,
        msg=lambda m: f"{name}: inverse(forward(x)) does not give x back. {m}",
    )


CHECKERS = {
    "batch_independent": check_batch_independent,
    "causal": check_causal,
    "invertible": check_invertible,
    "permutation_equivariant": check_permutation_equivariant,
    "size_preserving": check_size_preserving,
    "streamable": check_streamable,
    "uses_skips": check_uses_skips,
}


def test_the_list_of_models_is_not_empty():
    assert len(NAMES) >= 1
    assert NAMES == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_declared_invariants_hold(name):
    model = _build(name)
    assert isinstance(model.invariants, frozenset)
    missing = sorted(set(model.invariants) - set(CHECKERS))
    assert not missing, (
        f"{name} declares invariants {missing} that no checker verifies; add one to CHECKERS "
        f"in tests/test_model_contract.py."
    )
    for prop in sorted(model.invariants):
        CHECKERS[prop](name, model)


def test_batch_independence_checker_catches_batch_statistics():
    # A checker that cannot fail proves nothing: batch norm in train mode mixes samples.
    class LeaksBatchStats(nn.Module):
        def example_input(self, batch_size):
            return torch.randn(batch_size, 3)

        def forward(self, x):
            return x - x.mean(dim=0)  # what batch norm in train mode does to each feature

    with pytest.raises(AssertionError, match="alone differs"):
        check_batch_independent("leaky", LeaksBatchStats())


def test_permutation_checker_catches_a_model_that_reads_node_numbers():
    class ReadsNodeNumbers(nn.Module):
        def example_input(self, batch_size):
            return torch.randn(batch_size, 3), torch.randint(0, batch_size, (2, 8))

        def forward(self, x, edge_index):
            # Adds each node's position: renumbering the nodes changes what a node sees.
            return x + torch.arange(x.shape[0]).unsqueeze(1)

    with pytest.raises(AssertionError, match="do not follow the nodes"):
        check_permutation_equivariant("positional", ReadsNodeNumbers())


def test_invertibility_checker_catches_a_map_that_is_not_one_to_one():
    class Clips(nn.Module):
        def example_input(self, batch_size):
            return 3 * torch.randn(batch_size, 4)

        def forward(self, x):
            return x.clamp(-1, 1)  # every x beyond ±1 lands on the same z

        def inverse(self, z):
            return z

    with pytest.raises(AssertionError, match="does not give x back"):
        check_invertible("clips", Clips())


def test_size_checker_catches_a_model_that_loses_a_pixel():
    class Pools(nn.Module):
        def example_input(self, batch_size):
            return torch.randn(batch_size, 1, 8, 8)

        def forward(self, x):
            return nn.functional.avg_pool2d(x, 2, ceil_mode=True)  # 61 -> 31

    with pytest.raises(AssertionError, match="gave outputs of shape"):
        check_size_preserving("pools", Pools())


def test_skip_checker_catches_a_model_that_ignores_its_skip():
    class IgnoresSkip(nn.Module):
        def __init__(self):
            super().__init__()
            self.down, self.up = nn.Conv2d(1, 1, 1), Merge()

        def example_input(self, batch_size):
            return torch.randn(batch_size, 1, 4, 4)

        def skip_modules(self):
            return [self.up]

        def forward(self, x):
            return self.up(self.down(x), x)

    class Merge(nn.Module):
        def forward(self, x, skip):
            return x + 0 * skip  # the skip arrives but changes nothing

    with pytest.raises(AssertionError, match="zeroing skip 0 leaves the output unchanged"):
        check_uses_skips("ignores-skip", IgnoresSkip())


# ---------------------------------------------------------------------------------------------
# Build, forward, backward.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_builds_with_its_registry_name_and_a_description(name):
    model = _build(name)
    assert isinstance(model, nn.Module)
    assert model.name == name
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0
    assert isinstance(model.input_description, str) and model.input_description


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_forward_on_example_input_is_finite_with_the_batch_size(name, batch_size):
    model = _build(name).eval()
    x = _example(model, batch_size)
    assert _first(x).shape[0] == batch_size
    with torch.no_grad():
        y = _call(model, x)
    assert isinstance(y, torch.Tensor)
    assert y.shape[0] == batch_size
    if _first(x).is_floating_point():
        assert y.dtype == _first(x).dtype
    else:  # token ids in, scores out
        assert y.is_floating_point()
    assert torch.isfinite(y).all(), f"{name} produced non-finite outputs"


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_every_parameter_a_finite_gradient(name):
    model = _build(name).train()
    x = _example(model, 2)  # batch >= 2 so batch norm has statistics to use
    y = _call(model, x)
    torch.manual_seed(3)
    # A random projection of the output: a plain sum can cancel through a norm layer.
    loss = (y * torch.randn_like(y)).sum()
    loss.backward()
    # Parameters only a loss reads (an InfoNCE temperature, ArcFace centres) are named by the
    # model's `loss_parameters()`; the task tests check that its losses reach them.
    loss_only = model.loss_parameters() if hasattr(model, "loss_parameters") else set()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None and n not in loss_only]
    assert not no_grad, f"{name}: parameters without a gradient: {no_grad}"
    graded = [(n, p) for n, p in model.named_parameters() if n not in loss_only]
    not_finite = [n for n, p in graded if not torch.isfinite(p.grad).all()]
    assert not not_finite, f"{name}: parameters with non-finite gradients: {not_finite}"
    all_zero = [n for n, p in graded if not p.grad.any()]
    assert not all_zero, f"{name}: parameters whose gradient is exactly zero: {all_zero}"


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_deterministic(name):
    model = _build(name).eval()
    x = _example(model, 2)
    with torch.no_grad():
        first, second = _call(model, x), _call(model, x)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_round_trip_gives_the_same_output(name, tmp_path):
    model = _build(name, seed=0)
    x = _example(model, 2)
    with torch.no_grad():
        _call(model.train(), x)  # move any running statistics off their initial values
    model.eval()
    with torch.no_grad():
        expected = _call(model, x)
    path = tmp_path / "model.safetensors"
    # save_model/load_model store tied weights (a language model's embedding and head) once.
    save_model(model, str(path))

    fresh = _build(name, seed=1234).eval()
    with torch.no_grad():
        before = _call(fresh, x)
    assert not torch.allclose(before, expected), "a fresh model should differ before loading"
    missing, unexpected = load_model(fresh, str(path), strict=True)
    assert not missing and not unexpected
    with torch.no_grad():
        after = _call(fresh, x)
    torch.testing.assert_close(after, expected, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# Input validation at the public boundary.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("change", ["drop_batch_axis", "extra_axis"])
def test_rejects_wrong_rank_naming_the_model_and_argument(name, change):
    model = _build(name).eval()
    x = _example(model, 2)
    first = _first(x)
    bad = first[0] if change == "drop_batch_axis" else first.unsqueeze(0)
    assert bad.ndim != first.ndim
    rest = x[1:] if isinstance(x, tuple) else ()
    with pytest.raises(ValueError, match=rf"^{re.escape(name)} expects .*\b(x|src)\b") as excinfo:
        model(bad, *rest)
    assert str(tuple(bad.shape)) in str(excinfo.value), "the message should show the given shape"


@pytest.mark.parametrize("name", NAMES)
def test_rejects_a_non_tensor(name):
    model = _build(name).eval()
    x = _example(model, 2)
    rest = x[1:] if isinstance(x, tuple) else ()
    pattern = rf"^{re.escape(name)} expects .*\b(x|src)\b.*torch\.Tensor"
    with pytest.raises(TypeError, match=pattern):
        model(_first(x).tolist(), *rest)
