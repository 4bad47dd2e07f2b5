"""What defines a TCN: causality, a measured receptive field, length T, streaming, padding."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from fieldguide import create_model
from fieldguide.models.tcn import TCNConfig
from tests.test_model_contract import check_causal


def _tcn(name: str = "tcn", seed: int = 0, **overrides) -> nn.Module:
    """A small TCN in eval mode with dropout off, unless overridden."""
    torch.manual_seed(seed)
    overrides = {"in_channels": 2, "hidden_dim": 16, "num_layers": 3, "dropout": 0.0} | overrides
    return create_model(name, **overrides).eval()


def _support(model: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    """(T,) bool: which input steps the output at step t has a nonzero gradient for."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, t].sum(), x)
    # The union over samples and channels: one ReLU that happens to be off cannot hide a step.
    return (grad != 0).any(dim=(0, 2))


def _steps(support: torch.Tensor) -> list[int]:
    return torch.nonzero(support).flatten().tolist()


# ---------------------------------------------------------------------------------------------
# Presets and configuration.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hidden_dim", "num_layers", "causal", "receptive_field"),
    [("tcn", 64, 4, True, 61), ("tcn-small", 32, 3, True, 29), ("tcn-noncausal", 64, 4, False, 61)],
)
def test_presets_have_their_sizes_and_invariants(
    name, hidden_dim, num_layers, causal, receptive_field
):
    model = create_model(name)
    config = model.config
    assert (config.hidden_dim, config.num_layers, config.kernel_size) == (hidden_dim, num_layers, 3)
    assert config.causal is causal
    assert [block.dilation for block in model.blocks] == [2**i for i in range(num_layers)]
    assert model.receptive_field == receptive_field
    expected = {"batch_independent", "causal", "streamable"} if causal else {"batch_independent"}
    assert model.invariants == expected


def test_pooled_causal_models_do_not_declare_per_step_invariants():
    # The checkers compare per-step outputs, which a pooled model does not give.
    for pool in ("last", "mean"):
        assert create_model("tcn", pool=pool).invariants == {"batch_independent"}


def test_only_a_width_change_gets_a_projection_shortcut():
    model = _tcn(in_channels=3, hidden_dim=8)
    first, *rest = model.blocks
    assert isinstance(first.shortcut, nn.Conv1d) and first.shortcut.kernel_size == (1,)
    assert (first.shortcut.in_channels, first.shortcut.out_channels) == (3, 8)
    assert all(isinstance(block.shortcut, nn.Identity) for block in rest)
    assert isinstance(_tcn(in_channels=8, hidden_dim=8).blocks[0].shortcut, nn.Identity)


def test_weight_norm_parametrizes_every_dilated_conv():
    model = _tcn(weight_norm=True)
    convs = [conv for block in model.blocks for conv in (block.conv1, block.conv2)]
    assert all(parametrize.is_parametrized(conv, "weight") for conv in convs)
    assert not parametrize.is_parametrized(_tcn().blocks[0].conv1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kernel_size", 1),
        ("num_layers", 0),
        ("hidden_dim", 0),
        ("in_channels", 0),
        ("out_dim", 0),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("pool", "max"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^TCNConfig\.{field} must .*got {value!r}"):
        TCNConfig(**{field: value})


# ---------------------------------------------------------------------------------------------
# Causality, receptive field, length: the guide's defect (§5) pads both sides.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("weight_norm", [False, True])
def test_causal_tcn_output_at_t_sees_x_t_and_nothing_after(kernel_size, weight_norm):
    model = _tcn(kernel_size=kernel_size, weight_norm=weight_norm)
    torch.manual_seed(1)
    x = torch.randn(3, 12, 2)
    for t in range(x.shape[1]):
        support = _support(model, x, t)
        assert not support[t + 1 :].any(), f"output at step {t} sees the future"
        assert support[t], f"output at step {t} ignores x[t]"


def test_causal_tcn_is_causal_in_train_mode_too():
    # Dropout changes which paths are open, never which steps they come from.
    model = _tcn(dropout=0.5).train()
    torch.manual_seed(1)
    x = torch.randn(3, 12, 2)
    for t in range(x.shape[1]):
        assert not _support(model, x, t)[t + 1 :].any()


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_measured_receptive_field_equals_the_formula(kernel_size, num_layers):
    model = _tcn(kernel_size=kernel_size, num_layers=num_layers)
    rf = model.receptive_field
    assert rf == 1 + 2 * (kernel_size - 1) * (2**num_layers - 1)
    t_steps = rf + 6
    torch.manual_seed(2)
    support = _support(model, torch.randn(4, t_steps, 2), t_steps - 1)
    assert _steps(support) == list(range(t_steps - rf, t_steps))


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_noncausal_context_is_measured_and_sums_to_the_receptive_field(kernel_size, num_layers):
    model = _tcn(kernel_size=kernel_size, num_layers=num_layers, causal=False)
    before, after = model.context
    assert before + after + 1 == model.receptive_field
    t_steps = 2 * model.receptive_field
    t = model.receptive_field  # far from both ends
    torch.manual_seed(2)
    support = _support(model, torch.randn(4, t_steps, 2), t)
    assert _steps(support) == list(range(t - before, t + after + 1))


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_noncausal_tcn_sees_past_and_future_symmetrically(kernel_size):
    model = _tcn(kernel_size=kernel_size, causal=False)
    t_steps = 2 * model.receptive_field + 1
    t = t_steps // 2
    torch.manual_seed(3)
    offsets = [s - t for s in _steps(_support(model, torch.randn(4, t_steps, 2), t))]
    assert offsets == [-o for o in reversed(offsets)]
    assert max(offsets) == (model.receptive_field - 1) // 2 > 0
    assert model.context == (max(offsets), max(offsets))


def test_causal_context_lies_wholly_in_the_past():
    model = _tcn(kernel_size=4)
    assert model.context == (model.receptive_field - 1, 0)


def test_the_causal_checker_fails_on_the_noncausal_tcn():
    # A checker that cannot fail proves nothing: the symmetric TCN must trip it.
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="sees the future"):
        check_causal("tcn-noncausal", create_model("tcn-noncausal"))


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t_steps", [1, 6, 17])
def test_output_has_one_step_per_input_step(kernel_size, num_layers, causal, t_steps):
    model = _tcn(kernel_size=kernel_size, num_layers=num_layers, causal=causal, out_dim=5)
    h = torch.randn(2, 2, t_steps)
    for block in model.blocks:  # every dilation 1, 2, 4 keeps the length
        h = block(h)
        assert h.shape == (2, 16, t_steps)
    assert model(torch.randn(2, t_steps, 2)).shape == (2, t_steps, 5)


def test_the_guides_symmetric_padding_loses_a_step_for_even_kernels():
    # The guide's padding=dilation*(k-1)//2: k=2 pads 0, so T steps become T-1.
    guide_conv = nn.Conv1d(4, 4, 2, padding=1 * (2 - 1) // 2, dilation=1)
    assert guide_conv(torch.randn(1, 4, 10)).shape[-1] == 9
    assert _tcn(kernel_size=2, causal=False)(torch.randn(1, 10, 2)).shape[1] == 10


# ---------------------------------------------------------------------------------------------
# Streaming: step() reproduces the causal forward.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("weight_norm", [False, True])
def test_step_by_step_equals_the_full_forward(kernel_size, batch_size, weight_norm):
    # in_channels 3 != hidden_dim 16, so the first block's 1x1 projection streams too.
    model = _tcn(in_channels=3, kernel_size=kernel_size, weight_norm=weight_norm, out_dim=2)
    torch.manual_seed(4)
    x = torch.randn(batch_size, 2 * model.receptive_field, 3)  # long enough to roll buffers
    with torch.no_grad():
        full = model(x)
        state = model.initial_state(batch_size)
        steps = []
        for x_t in x.unbind(1):
            y_t, state = model.step(x_t, state)
            steps.append(y_t)
    assert steps[0].shape == (batch_size, 2)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_step_is_exact_in_float64_and_follows_the_model_dtype():
    model = _tcn(kernel_size=3).double()
    state = model.initial_state(2)
    assert all(buf.dtype == torch.float64 for block_state in state for buf in block_state)
    torch.manual_seed(5)
    x = torch.randn(2, 40, 2, dtype=torch.float64)
    with torch.no_grad():
        steps = []
        for x_t in x.unbind(1):
            y_t, state = model.step(x_t, state)
            steps.append(y_t)
        torch.testing.assert_close(torch.stack(steps, 1), model(x), atol=1e-12, rtol=0)


def test_step_keeps_only_the_history_each_conv_needs():
    model = _tcn(in_channels=3, kernel_size=3)
    state = model.initial_state(2)
    for i, (buf1, buf2) in enumerate(state):
        assert buf1.shape == (2, 3 if i == 0 else 16, 2 * 2**i)  # (B, C, (k-1)·d)
        assert buf2.shape == (2, 16, 2 * 2**i)
        assert not buf1.any() and not buf2.any()  # zeros: the causal left padding
    _, after = model.step(torch.randn(2, 3), state)
    assert [b.shape for s in after for b in s] == [b.shape for s in state for b in s]


def test_step_with_pool_last_gives_the_pooled_output_of_each_prefix():
    model = _tcn(pool="last")
    torch.manual_seed(6)
    x = torch.randn(2, 9, 2)
    state = model.initial_state(2)
    with torch.no_grad():
        for t, x_t in enumerate(x.unbind(1)):
            y_t, state = model.step(x_t, state)
            torch.testing.assert_close(y_t, model(x[:, : t + 1]), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Padding: lengths make a batch equal to its sequences alone.
# ---------------------------------------------------------------------------------------------

LENGTHS = [20, 13, 5]


def _padded_batch(garbage: float | None, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(len(LENGTHS), max(LENGTHS), 2)
    for i, length in enumerate(LENGTHS):
        if garbage is None:
            x[i, length:] = 100 * torch.randn_like(x[i, length:])
        else:
            x[i, length:] = garbage
    return x, torch.tensor(LENGTHS)


@pytest.mark.parametrize("causal", [True, False])
def test_real_steps_equal_each_sequence_alone(causal):
    model = _tcn(causal=causal)
    x, lengths = _padded_batch(garbage=None)
    with torch.no_grad():
        batched = model(x, lengths)
        for i, length in enumerate(LENGTHS):
            alone = model(x[i : i + 1, :length])
            torch.testing.assert_close(batched[i, :length], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_garbage_in_padded_steps_changes_nothing(causal):
    model = _tcn(causal=causal)
    with torch.no_grad():
        outputs = [model(*_padded_batch(garbage)) for garbage in (None, 0.0, 1e6, float("nan"))]
    assert all(torch.isfinite(out).all() for out in outputs)
    assert all(torch.equal(out, outputs[0]) for out in outputs[1:])


def test_without_lengths_the_noncausal_tcn_does_see_the_padding():
    # The mask is what protects real steps: garbage leaks in when lengths are not given.
    model = _tcn(causal=False)
    x, lengths = _padded_batch(garbage=None)
    with torch.no_grad():
        masked, unmasked = model(x, lengths), model(x)
    assert not torch.allclose(masked[2, :5], unmasked[2, :5])


@pytest.mark.parametrize("causal", [True, False])
def test_pooling_uses_each_sequences_real_steps(causal):
    x, lengths = _padded_batch(garbage=None)
    per_step = _tcn(causal=causal, out_dim=3)
    last = _tcn(causal=causal, out_dim=3, pool="last")
    mean = _tcn(causal=causal, out_dim=3, pool="mean")
    with torch.no_grad():
        for i, length in enumerate(LENGTHS):
            alone = per_step(x[i : i + 1, :length])[0]  # (T_i, 3)
            torch.testing.assert_close(last(x, lengths)[i], alone[-1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(mean(x, lengths)[i], alone.mean(0), atol=1e-5, rtol=1e-5)
    assert last(x).shape == mean(x).shape == (3, 3)


# ---------------------------------------------------------------------------------------------
# Bad input: one clear sentence each.
# ---------------------------------------------------------------------------------------------


def test_rejects_the_wrong_feature_count():
    with pytest.raises(ValueError, match=r"^tcn expects sequences x of shape \(B, T, 2\); got"):
        _tcn()(torch.randn(2, 10, 3))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [([10, 11], r"length of 11 but x has only T=10 steps"), ([10, 0], r"every length >= 1")],
)
def test_rejects_lengths_outside_one_to_t(lengths, message):
    with pytest.raises(ValueError, match=message):
        _tcn()(torch.randn(2, 10, 2), torch.tensor(lengths))


def test_noncausal_tcn_refuses_to_stream():
    model = _tcn(name="tcn-noncausal", causal=False)
    with pytest.raises(ValueError, match=r"^tcn-noncausal cannot stream because it is not causal"):
        model.initial_state(2)
    state = _tcn().initial_state(2)  # even with a causal model's state in hand
    with pytest.raises(ValueError, match=r"not causal \(causal=False\)"):
        model.step(torch.randn(2, 2), state)


def test_step_rejects_bad_steps_and_states():
    model = _tcn()
    state = model.initial_state(2)
    with pytest.raises(ValueError, match=r"x_t of shape \(B, 2\); got \(2, 5, 2\)"):
        model.step(torch.randn(2, 5, 2), state)
    with pytest.raises(ValueError, match=r"initial_state\(3\)"):
        model.step(torch.randn(3, 2), state)
    with pytest.raises(ValueError, match="pool='mean'"):
        _tcn(pool="mean").step(torch.randn(2, 2), state)
