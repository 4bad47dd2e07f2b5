"""What defines the SSM family: convolution equals recurrence, exact causality, S4D init."""

import cmath
import math

import pytest
import torch
import torch.nn.functional as F

from fieldguide import create_model
from fieldguide.data.base import ClassificationData, Split
from fieldguide.layers.fftconv import causal_fft_conv
from fieldguide.models.ssm import S4D, SSMConfig
from fieldguide.tasks.sequence_classification import SequenceClassificationTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from fieldguide.train.params import param_groups
from fieldguide.train.schedule import warmup_cosine

SMALL = {"hidden_dim": 16, "num_layers": 2, "state_dim": 8, "dropout": 0.0}


def _model(name: str = "s4d", **overrides):
    torch.manual_seed(0)
    return create_model(name, **(SMALL | overrides))


def _stream(model, x):
    state = model.initial_state(x.shape[0])
    steps = []
    for x_t in x.unbind(1):
        y_t, state = model.step(x_t, state)
        steps.append(y_t)
    return torch.stack(steps, 1)


def _direct_causal_conv(u, k):
    """y[t] = sum_{s<=t} k[s] u[t-s] by F.conv1d: left padding, flipped kernel, depthwise."""
    d, taps = k.shape
    return F.conv1d(F.pad(u, (taps - 1, 0)), k.flip(-1)[:, None], groups=d)


# ---------------------------------------------------------------------------------------------
# FFT convolution (the guide's long conv returns T+k-1 steps; this one T).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("taps", [37, 5])
def test_fft_conv_equals_a_direct_causal_conv_with_t_steps(taps):
    u = torch.randn(3, 4, 37, dtype=torch.float64)  # T = 37: not a power of two
    k = torch.randn(4, taps, dtype=torch.float64)
    y = causal_fft_conv(u, k)
    assert y.shape == u.shape  # T steps, not T + taps - 1
    torch.testing.assert_close(y, _direct_causal_conv(u, k), atol=1e-12, rtol=0)


def test_fft_conv_does_not_wrap_around():
    u = torch.randn(2, 4, 30)
    k = torch.randn(4, 30)
    moved = u.clone()
    moved[..., -1] += 100.0  # a circular FFT of length T would add k[1] * 100 to y[0]
    first, after = causal_fft_conv(u, k)[..., 0], causal_fft_conv(moved, k)[..., 0]
    torch.testing.assert_close(after, first, atol=1e-4, rtol=0)
    torch.testing.assert_close(first, k[:, 0] * u[..., 0], atol=1e-5, rtol=0)
    # and exactly so through gradients: y[0] does not see u[1:] at all
    u.requires_grad_(True)
    (grad,) = torch.autograd.grad(causal_fft_conv(u, k)[..., 0].sum(), u)
    assert torch.count_nonzero(grad[..., 1:]) == 0


def test_fft_conv_backward_is_the_exact_gradient():
    u = torch.randn(2, 3, 13, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 13, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(causal_fft_conv, (u, k))
    long_k = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)  # broadcast, shorter
    short_u = torch.randn(3, 13, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(causal_fft_conv, (short_u, long_k))


def test_fft_conv_gradient_of_the_future_is_exactly_zero_at_long_t():
    # Plain autograd through rfft/irfft leaves ~1e-7 here; the custom backward leaves 0.
    u = torch.randn(2, 4, 1000, requires_grad=True)
    k = torch.randn(4, 1000) * torch.exp(-torch.arange(1000.0) / 50)
    y = causal_fft_conv(u, k)
    for t in (0, 1, 499, 998):
        (grad,) = torch.autograd.grad(y[..., t].sum(), u, retain_graph=True)
        assert torch.count_nonzero(grad[..., t + 1 :]) == 0, f"step {t} sees the future"
        torch.testing.assert_close(grad[..., t], k[:, 0].expand(2, 4))  # dy[t]/du[t] = k[0]


def test_fft_conv_computes_half_precision_inputs_in_float32():
    # No FFT takes bf16; under CUDA autocast, Hyena's projections arrive in bf16.
    u, k = torch.randn(2, 3, 20).bfloat16(), torch.randn(3, 20).bfloat16()
    y = causal_fft_conv(u, k)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, causal_fft_conv(u.float(), k.float()))


def test_fft_conv_rejects_a_kernel_longer_than_the_signal():
    with pytest.raises(ValueError, match=r"kernel k no longer than the signal \(T=8\)"):
        causal_fft_conv(torch.randn(1, 2, 8), torch.randn(2, 9))


# ---------------------------------------------------------------------------------------------
# S4D: discretisation, initialisation, stability, convolution == recurrence.
# ---------------------------------------------------------------------------------------------


def _scalar_s4d(re: float, im: float, dt: float) -> S4D:
    layer = S4D(1, SSMConfig(state_dim=2)).double()
    with torch.no_grad():
        layer.log_neg_re.fill_(math.log(-re))
        layer.a_imag.fill_(im)
        layer.log_dt.fill_(math.log(dt))
    return layer


def test_zoh_on_a_real_scalar_matches_the_closed_form():
    a_bar, b_bar, _ = _scalar_s4d(-2.0, 0.0, 0.5).discrete()
    assert a_bar.item() == pytest.approx(math.exp(-1.0), abs=1e-12)
    assert b_bar.item() == pytest.approx((1 - math.exp(-1.0)) / 2, abs=1e-12)


def test_zoh_on_a_complex_scalar_integrates_the_ode_with_held_input():
    a, dt, x0, u = complex(-0.5, math.pi), 0.3, complex(0.7, -0.2), 1.3
    a_bar, b_bar, _ = _scalar_s4d(a.real, a.imag, dt).discrete()
    # RK4 on x' = a x + u (B = 1) with u held over [0, dt]: what zero-order hold means
    x, steps = x0, 2000
    h = dt / steps
    for _ in range(steps):
        k1 = a * x + u
        k2 = a * (x + h / 2 * k1) + u
        k3 = a * (x + h / 2 * k2) + u
        k4 = a * (x + h * k3) + u
        x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    zoh = complex(a_bar.item()) * x0 + complex(b_bar.item()) * u
    assert abs(zoh - x) < 1e-10
    assert abs(complex(a_bar.item()) - cmath.exp(dt * a)) < 1e-12


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_initial_a_follows_the_paper(init):
    torch.manual_seed(0)
    n_state = 16
    layer = S4D(5, SSMConfig(state_dim=n_state, init=init, dt_min=1e-3, dt_max=1e-1))
    _, a = layer.continuous()
    n = torch.arange(n_state // 2, dtype=torch.float32)
    expected = math.pi * n if init == "lin" else n_state / math.pi * (n_state / (2 * n + 1) - 1)
    assert a.shape == (5, n_state // 2)
    torch.testing.assert_close(a.imag, expected.expand(5, -1))
    torch.testing.assert_close(a.real, torch.full((5, n_state // 2), -0.5))
    if init == "inv":  # the first mode by hand: 16/pi * (16/1 - 1)
        assert a.imag[0, 0].item() == pytest.approx(16 / math.pi * 15)
    dt = layer.log_dt.exp()
    assert bool((dt >= 1e-3).all() and (dt <= 1e-1).all())


def test_real_part_of_a_stays_negative_under_a_large_learning_rate():
    torch.manual_seed(0)
    layer = S4D(4, SSMConfig(state_dim=8))
    optimizer = torch.optim.Adam(layer.parameters(), lr=1.0)
    for _ in range(10):  # reward a large kernel: pushes Re A up toward (and past) zero
        loss = -layer.kernel(64).square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _, a = layer.continuous()
    assert a.real.max().item() > -0.01, "the optimizer should have pushed Re A toward zero"
    assert bool((a.real < 0).all()), "Re A = -exp(log_neg_re) can never reach zero"
    assert torch.isfinite(layer.kernel(64)).all()


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_s4d_layer_convolution_equals_recurrence(init):
    torch.manual_seed(0)
    layer = S4D(6, SSMConfig(state_dim=8, init=init, dt_min=1e-2, dt_max=0.5))
    u = torch.randn(3, 50, 6)
    for dtype, atol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        layer, u = layer.to(dtype), u.to(dtype)
        state = layer.initial_state(3)
        steps = []
        with torch.no_grad():
            conv = layer(u)
            for u_t in u.unbind(1):
                y_t, state = layer.step(u_t, state)
                steps.append(y_t)
        torch.testing.assert_close(torch.stack(steps, 1), conv, atol=atol, rtol=0)


def test_s4d_kernel_is_the_impulse_response_of_the_recurrence():
    torch.manual_seed(0)
    layer = S4D(3, SSMConfig(state_dim=8)).double()
    a_bar, b_bar, c = layer.discrete()
    powers = a_bar[..., None] ** torch.arange(40, dtype=torch.float64)  # (D, N/2, T)
    expected = 2 * torch.einsum("dn,dnt->dt", c * b_bar, powers).real
    torch.testing.assert_close(layer.kernel(40), expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------
# Whole models: streaming, causality, padding.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s4d", "s4d-inv", "hyena"])
def test_step_equals_forward_for_the_whole_model(name):
    model = _model(name, in_channels=2, out_dim=3).eval()
    x = torch.randn(3, 21, 2)
    with torch.no_grad():
        torch.testing.assert_close(_stream(model, x), model(x), atol=1e-5, rtol=1e-5)
        if name == "s4d":  # the exact check, in float64
            model64, x64 = model.double(), x.double()
            torch.testing.assert_close(_stream(model64, x64), model64(x64), atol=1e-10, rtol=0)


def test_step_with_pool_last_gives_the_pooled_output_of_each_prefix():
    model = _model("hyena", in_channels=2, out_dim=3, pool="last").eval()
    x = torch.randn(3, 9, 2)
    with torch.no_grad():
        streamed = _stream(model, x)
        for t in (0, 4, 8):
            torch.testing.assert_close(streamed[:, t], model(x[:, : t + 1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["s4d", "hyena"])
@pytest.mark.parametrize("train", [False, True])
def test_causal_by_gradients_exactly(name, train):
    model = _model(name, in_channels=2, out_dim=2).train(train)
    x = torch.randn(2, 24, 2, requires_grad=True)  # T = 24: not a power of two
    y = model(x)
    leaks = []
    for t in range(24):
        (grad,) = torch.autograd.grad(y[:, t].sum(), x, retain_graph=True)
        leaks.append(grad[:, t + 1 :].abs().max().item() if t < 23 else 0.0)
        assert torch.count_nonzero(grad[:, t]) > 0, f"{name}: output at step {t} ignores x[t]"
    assert max(leaks) == 0.0, f"{name}: future gradient up to {max(leaks):.2e}"


def test_hyena_filters_do_not_depend_on_the_sequence_length():
    model = _model("hyena").eval()
    x = torch.randn(2, 30, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, :12]), model(x)[:, :12], atol=1e-5, rtol=0)


def test_hyena_rejects_sequences_longer_than_max_len():
    model = _model("hyena", max_len=8).eval()
    model(torch.randn(1, 8, 1))  # exactly max_len is fine
    with pytest.raises(ValueError, match=r"^hyena expects sequences x of at most max_len=8 .*T=9"):
        model(torch.randn(1, 9, 1))
    state = model.initial_state(1)
    for _ in range(8):
        _, state = model.step(torch.randn(1, 1), state)
    with pytest.raises(ValueError, match="at most max_len=8 steps; this is step 9"):
        model.step(torch.randn(1, 1), state)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_right_padding_does_not_change_the_pooled_output(pool):
    model = _model("s4d", in_channels=2, out_dim=3, pool=pool).eval()
    lengths = torch.tensor([5, 9, 3])
    x = torch.randn(3, 9, 2)
    with torch.no_grad():
        padded = model(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(padded[i], model(x[i : i + 1, :n])[0], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# Optimizer hints: A and dt (or Hyena's filter MLP) at ssm_lr, no weight decay.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s4d", "hyena"])
def test_param_groups_give_the_hinted_parameters_ssm_lr_and_no_decay(name):
    model = _model(name, ssm_lr=2e-4)
    hinted = set(model.optimizer_hints())
    if name == "s4d":
        expected = {f"blocks.{i}.mixer.{p}" for i in (0, 1) for p in ("log_dt", "log_neg_re")}
        expected |= {"blocks.0.mixer.a_imag", "blocks.1.mixer.a_imag"}
    else:
        expected = {n for n, _ in model.named_parameters() if ".mixer.filter.mlp." in n}
    assert hinted == expected
    groups = param_groups(model, 0.05)
    ssm_groups = [g for g in groups if "base_lr" in g]
    assert len(ssm_groups) == 1
    assert set(ssm_groups[0]["names"]) == hinted
    assert ssm_groups[0]["weight_decay"] == 0.0 and ssm_groups[0]["base_lr"] == 2e-4
    assert sum(len(g["names"]) for g in groups) == len(list(model.parameters()))
    assert any(g["weight_decay"] == 0.05 for g in groups)  # the rest still decays its weights


def _sequence_task(n: int = 16, steps: int = 12) -> SequenceClassificationTask:
    g = torch.Generator().manual_seed(0)

    def split(m):
        y = torch.randint(0, 2, (m,), generator=g)
        return Split(torch.randn(m, steps, 2, generator=g) + y[:, None, None], y)

    data = ClassificationData(
        name="synthetic-sequences",
        modality="sequences",
        train=split(n),
        val=split(8),
        test=split(8),
        classes=["low", "high"],
        input_shape=(steps, 2),
        description="synthetic sequences shifted by their class",
        synthetic=True,
    )
    return SequenceClassificationTask(data)


def test_trainer_schedules_the_ssm_group_from_ssm_lr():
    task = _sequence_task()
    torch.manual_seed(0)
    model = task.build_model("s4d", pool="last", **SMALL, ssm_lr=2e-4)
    config = TrainConfig(epochs=1, batch_size=8, lr=0.05, warmup_fraction=0.0, device="cpu")
    seen = []

    def record(trainer):
        groups = trainer.optimizer.param_groups
        ssm = next(g for g in groups if "base_lr" in g)
        other = next(g for g in groups if "base_lr" not in g)
        seen.append((trainer.state.step - 1, ssm["lr"], other["lr"], trainer.total_steps))

    Trainer(model, task, config, callbacks=[record], progress="quiet").fit()
    assert [s[0] for s in seen] == [0, 1]
    for step, ssm_lr, other_lr, total in seen:
        factor = warmup_cosine(step, 0, total, config.min_lr_ratio)
        assert ssm_lr == pytest.approx(2e-4 * factor)
        assert other_lr == pytest.approx(0.05 * factor)
    assert seen[1][1] < seen[0][1]  # the cosine moved the SSM group too


# ---------------------------------------------------------------------------------------------
# Bad input and bad configs: one clear sentence each.
# ---------------------------------------------------------------------------------------------


def test_rejects_the_wrong_number_of_features():
    model = _model(in_channels=2)
    with pytest.raises(ValueError, match=r"^s4d expects sequences x of shape \(B, T, 2\); got"):
        model(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"^s4d expects one step x_t of shape \(B, 2\)"):
        model.step(torch.randn(2, 3), model.initial_state(2))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [([5, 6], r"got a length of 6 but x has only T=5 steps"), ([0, 5], r"every length >= 1")],
)
def test_rejects_lengths_outside_one_to_t(lengths, message):
    model = _model(pool="last")
    with pytest.raises(ValueError, match=message):
        model(torch.randn(2, 5, 1), torch.tensor(lengths))


def test_streaming_refuses_mean_pooling():
    model = _model(pool="mean")
    with pytest.raises(ValueError, match="streams only with pool 'none' or 'last'"):
        model.step(torch.randn(2, 1), model.initial_state(2))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"num_layers": 0}, "num_layers"),
        ({"in_channels": 0}, "in_channels"),
        ({"out_dim": 0}, "out_dim"),
        ({"max_len": 0}, "max_len"),
        ({"state_dim": 7}, "state_dim must be an even number"),
        ({"state_dim": 0}, "state_dim"),
        ({"mixer": "mamba"}, "mixer must be one of s4d, hyena"),
        ({"init": "legs"}, "init must be one of lin, inv"),
        ({"pool": "max"}, "pool must be one of"),
        ({"dt_min": 0.0}, "dt_min and dt_max"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min and dt_max .* got dt_min=0.2, dt_max=0.1"),
        ({"ssm_lr": 0.0}, "ssm_lr must be positive"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_config_validation_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"^SSMConfig\.{field}"):
        SSMConfig(**overrides)
