"""What defines diffusion: the schedule, the forward process and its posterior, the samplers,
a denoiser that reads t and the class in every block, guidance and the EMA of the weights."""

import math
import re

import pytest
import torch

from fieldguide import create_model
from fieldguide.api.trace import trace
from fieldguide.models.base import DataSpec
from fieldguide.models.diffusion import (
    Diffusion,
    DiffusionConfig,
    Schedule,
    TimeBlock,
    ddim_mean,
    ddim_sigma,
    sampling_steps,
)


def tiny(**overrides) -> Diffusion:
    """A diffusion model on 8x8 grey images, width 8, T = 20, seeded."""
    torch.manual_seed(0)
    config = {"hidden_dim": 8, "depth": 2, "num_steps": 20, "image_size": 8} | overrides
    return Diffusion(DiffusionConfig(**config))


def conditional(**overrides) -> Diffusion:
    return tiny(conditional=True, num_classes=3, **overrides)


# ---------------------------------------------------------------------------------------------
# The schedule.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [1, 2, 10, 200, 1000, 10_000])
def test_alpha_bar_is_strictly_decreasing_and_strictly_inside_0_1(kind, steps):
    s = Schedule.make(kind, steps)
    assert s.alpha_bar.dtype == torch.float64 and s.alpha_bar.shape == (steps,)
    assert (s.alpha_bar > 0).all() and (s.alpha_bar < 1).all()
    assert (s.alpha_bar.diff() < 0).all()
    assert ((s.betas > 0) & (s.betas < 1)).all()
    torch.testing.assert_close(s.alpha_bar, torch.cumprod(1 - s.betas, 0), atol=0, rtol=0)


def test_cosine_schedule_follows_its_formula_and_clips_the_last_beta():
    steps, offset = 100, 0.008
    s = Schedule.cosine(steps)

    def f(t):
        return math.cos((t / steps + offset) / (1 + offset) * math.pi / 2) ** 2

    for t in (0, 1, 50, 98):  # unclipped betas: 1 - alpha_bar(t+1) / alpha_bar(t)
        assert s.betas[t].item() == pytest.approx(1 - f(t + 1) / f(t), rel=1e-12)
        assert s.alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    # f(T) = 0 would make the last beta 1 and alpha_bar 0 (unclipped, 1 - f(T) / f(T - 1) is
    # above 0.9999): the code clips it at 0.999 instead.
    assert s.betas[-1].item() == 0.999 and s.betas.max().item() == 0.999
    assert s.alpha_bar[-1].item() == pytest.approx(s.alpha_bar[-2].item() * 0.001, rel=1e-12)


def test_linear_schedule_is_ho_et_al_at_1000_steps_and_scales_with_t():
    s = Schedule.linear(1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    # 1000 / T scaling keeps the last alpha_bar about as small for fewer steps.
    assert Schedule.linear(200).alpha_bar[-1].item() < 1e-4 and s.alpha_bar[-1].item() < 1e-4
    assert Schedule.linear(5).betas.max().item() == 0.999  # the scaled end is capped below 1


@pytest.mark.parametrize("betas", [[0.1, 1.0], [0.0, 0.5], [-0.1], []])
def test_schedule_refuses_betas_outside_0_1(betas):
    with pytest.raises(ValueError, match="Schedule expects"):
        Schedule(torch.tensor(betas))


# ---------------------------------------------------------------------------------------------
# The forward process and its posterior.
# ---------------------------------------------------------------------------------------------


def test_closed_form_q_sample_equals_iterating_the_forward_process():
    torch.manual_seed(0)
    s = Schedule.linear(50)
    n = 200_000
    x0 = torch.tensor([-0.8, 0.1, 0.9], dtype=torch.float64).repeat(n, 1)  # (N, 3)
    x = x0.clone()
    for t in range(50):  # x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z
        beta = s.betas[t].item()
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn_like(x)
        if t in (0, 9, 30, 49):
            closed = s.q_sample(x0, torch.full((n,), t), torch.randn_like(x0))
            ab = s.alpha_bar[t].item()
            mean, var = math.sqrt(ab) * x0[0], torch.full((3,), 1 - ab, dtype=torch.float64)
            for draw in (x, closed):  # both agree with N(sqrt(ab) x0, 1 - ab): 6 std errors
                torch.testing.assert_close(
                    draw.mean(0), mean, atol=6 * math.sqrt(var[0] / n), rtol=0
                )
                torch.testing.assert_close(
                    draw.var(0), var, atol=6 * var[0] * math.sqrt(2 / n), rtol=0
                )


def test_posterior_mean_and_variance_equal_bayes_rule_by_hand():
    s = Schedule.linear(10)
    torch.manual_seed(1)
    x0, x_t = torch.randn(1, 2, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)
    for t in (1, 2, 5, 9):
        beta = s.betas[t].item()
        ab_prev = math.prod(1 - s.betas[u].item() for u in range(t))
        # q(x_{t-1} | x_0) = N(sqrt(ab_prev) x0, 1 - ab_prev) times q(x_t | x_{t-1}) =
        # N(sqrt(1 - beta) x_{t-1}, beta): a Gaussian in x_{t-1}, precisions add.
        var = 1 / (1 / (1 - ab_prev) + (1 - beta) / beta)
        mean = var * (math.sqrt(ab_prev) * x0 / (1 - ab_prev) + math.sqrt(1 - beta) * x_t / beta)
        got_mean, got_var = s.posterior(x0, x_t, torch.tensor([t]))
        torch.testing.assert_close(got_mean, mean, atol=1e-12, rtol=1e-10)
        assert got_var.item() == pytest.approx(var, rel=1e-10)
    # At t = 0 there is nothing left to infer: the posterior is x_0 itself.
    mean, var = s.posterior(x0, x_t, torch.tensor([0]))
    torch.testing.assert_close(mean, x0, atol=1e-12, rtol=0)
    assert var.item() == 0.0


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_eps_x0_and_v_conversions_round_trip(kind):
    s = Schedule.make(kind, 100)
    torch.manual_seed(2)
    x0, eps = torch.randn(5, 1, 3, 3, dtype=torch.float64), torch.randn(5, 1, 3, 3).double()
    t = torch.tensor([0, 1, 50, 98, 99])
    x_t = s.q_sample(x0, t, eps)
    v = s.v_from(x0, eps, t)
    close = dict(atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(s.x0_from_eps(x_t, t, eps), x0, **close)
    torch.testing.assert_close(s.eps_from_x0(x_t, t, x0), eps, **close)
    torch.testing.assert_close(s.x0_from_v(x_t, t, v), x0, **close)
    torch.testing.assert_close(s.eps_from_v(x_t, t, v), eps, **close)
    for prediction, out in (("eps", eps), ("v", v)):
        got_x0, got_eps = s.x0_and_eps(x_t, t, out, prediction)
        torch.testing.assert_close(got_x0, x0, **close)
        torch.testing.assert_close(got_eps, eps, **close)


# ---------------------------------------------------------------------------------------------
# Samplers.
# ---------------------------------------------------------------------------------------------


def test_sampling_steps_are_evenly_spaced_from_the_last_step_to_the_first():
    grid = sampling_steps(1000, 50)
    assert grid[0] == 999 and grid[-1] == 0 and len(set(grid)) == 50
    gaps = [a - b for a, b in zip(grid, grid[1:], strict=False)]
    assert min(gaps) >= 20 and max(gaps) <= 21
    assert sampling_steps(20, 20) == list(range(19, -1, -1))
    assert sampling_steps(20, 1) == [19]
    for steps in range(1, 21):  # any number of steps up to T, none repeated
        assert len(set(sampling_steps(20, steps))) == steps


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddim_with_eta_1_has_the_ddpm_posterior_mean_and_variance(kind):
    s = Schedule.make(kind, 50)
    torch.manual_seed(3)
    x_t, eps = torch.randn(1, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    pairs = [(t, t - 1) for t in (1, 10, 30, 49)] + [(49, 30), (20, 3)]  # respaced: s < t-1
    for t, prev in pairs:
        tt = torch.tensor([t])
        x0 = s.x0_from_eps(x_t, tt, eps)
        ab_t, ab_s = s.alpha_bar[t].item(), s.alpha_bar[prev].item()
        sigma = ddim_sigma(ab_t, ab_s, eta=1.0)
        mean, var = s.posterior(x0, x_t, tt, torch.tensor([prev]))
        torch.testing.assert_close(ddim_mean(x0, eps, ab_s, sigma), mean, atol=1e-10, rtol=1e-8)
        assert sigma**2 == pytest.approx(var.item(), rel=1e-9)
        assert ddim_sigma(ab_t, ab_s, eta=0.0) == 0.0


def test_ddim_with_eta_0_is_deterministic_and_draws_only_the_starting_noise():
    model = tiny().eval()
    rng_before = torch.get_rng_state()
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = model.sample(3, generator=g1, steps=10, eta=0.0)
    b = model.sample(3, generator=g2, steps=10, eta=0.0)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), rng_before), "the global generator was used"
    reference = torch.Generator().manual_seed(7)
    torch.randn(3, 1, 8, 8, generator=reference)  # x_{T-1}, and nothing after it
    assert torch.equal(g1.get_state(), reference.get_state())
    # eta > 0 draws fresh noise at every step but the last, and so gives other samples.
    g3 = torch.Generator().manual_seed(7)
    c = model.sample(3, generator=g3, steps=10, eta=1.0)
    assert not torch.equal(g3.get_state(), reference.get_state())
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_over_all_steps_with_eta_1_is_the_ddpm_sampler(prediction):
    model = tiny(prediction=prediction).eval()
    ddpm = model.sample(2, generator=torch.Generator().manual_seed(4), sampler="ddpm")
    ddim = model.sample(
        2, generator=torch.Generator().manual_seed(4), sampler="ddim", steps=20, eta=1.0
    )
    torch.testing.assert_close(ddim, ddpm, atol=1e-5, rtol=1e-5)
    assert ddpm.shape == (2, 1, 8, 8) and ddpm.abs().max() <= 1.0  # x_0 clipped to [-1, 1]


def test_sampling_reports_progress_and_refuses_bad_options():
    model = tiny().eval()
    seen = []
    model.sample(1, steps=4, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for options, match in (
        ({"steps": 21}, "steps between 1 and num_steps=20"),
        ({"steps": 0}, "steps between 1 and num_steps=20"),
        ({"sampler": "euler"}, "sampler in"),
        ({"eta": -1.0}, "eta >= 0"),
        ({"guidance": 3.0}, "guidance needs y"),
        ({"y": torch.tensor([0])}, "unconditional"),
    ):
        with pytest.raises(ValueError, match=match):
            model.sample(1, **options)
    with pytest.raises(ValueError, match=re.escape("y in [0, 2]")):
        conditional().sample(2, torch.tensor([0, 3]))


# ---------------------------------------------------------------------------------------------
# The denoiser reads t and the class in every block (the guide's sketch ignores t).
# ---------------------------------------------------------------------------------------------


def test_the_prediction_changes_with_t():
    model = tiny().eval()
    x = torch.randn(1, 1, 8, 8).repeat(4, 1, 1, 1)  # one image at four steps
    with torch.no_grad():
        out = model(x, torch.tensor([0, 1, 10, 19]))
    for i in range(1, 4):
        assert (out[i] - out[0]).abs().max() > 1e-3, f"step {i} gives the prediction of step 0"
    # Through the blocks: with their embedding projections zeroed, t no longer matters.
    for block in model.modules():
        if isinstance(block, TimeBlock):
            torch.nn.init.zeros_(block.condition.weight)
            torch.nn.init.zeros_(block.condition.bias)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 1, 10, 19]))
    torch.testing.assert_close(out, out[:1].expand_as(out), atol=1e-6, rtol=0)


def test_the_prediction_changes_with_the_class_and_no_label_is_the_null_class():
    model = conditional().eval()
    x, t = torch.randn(1, 1, 8, 8).repeat(3, 1, 1, 1), torch.full((3,), 5)
    with torch.no_grad():
        out = model(x, t, torch.tensor([0, 1, 2]))
        unconditional = model(x, t)
        null = model(x, t, torch.full((3,), 3))
    assert (out[1] - out[0]).abs().max() > 1e-3 and (out[2] - out[1]).abs().max() > 1e-3
    torch.testing.assert_close(unconditional, null, atol=0, rtol=0)


def test_guidance_1_is_the_conditional_prediction_and_other_scales_extrapolate():
    model = conditional().eval()
    torch.manual_seed(5)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 17]), torch.tensor([2, 0])
    with torch.no_grad():
        cond, uncond = model(x, t, y), model(x, t)
        torch.testing.assert_close(model.guided(x, t, y, 1.0), cond, atol=0, rtol=0)
        torch.testing.assert_close(model.guided(x, t, y, 0.0), uncond, atol=1e-5, rtol=0)
        three = model.guided(x, t, y, 3.0)
    torch.testing.assert_close(three, uncond + 3 * (cond - uncond), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["ddpm-tiny", "ddpm-cond"])
def test_the_diagram_shows_the_embedding_entering_every_block(name):
    torch.manual_seed(0)
    model = create_model(name)
    graph = trace(model, model.example_input(1), depth=1)
    (time,) = [n.id for n in graph.nodes if n.module == "time_embedding"]
    embedding = time
    if model.config.conditional:  # time and class embeddings add into one
        (embedding,) = [n.id for n in graph.nodes if n.kind == "add"]
        (label,) = [n.id for n in graph.nodes if n.module == "class_embedding"]
        assert {(time, embedding), (label, embedding)} <= set(graph.edges)
    depth = model.config.depth
    blocks = {"stem"} | {f"downs.{i}" for i in range(depth)} | {f"ups.{i}" for i in range(depth)}
    fed = {n.module for n in graph.nodes if (embedding, n.id) in graph.edges}
    assert fed == blocks
    # Opened one level (depth 2): the stem's embedding projection and each Down's and Up's block.
    graph = trace(model, model.example_input(1), depth=2)
    (embedding,) = [n.id for n in graph.nodes if n.module == "time_embedding.fc2"]
    if model.config.conditional:
        (label,) = [n.id for n in graph.nodes if n.module == "class_embedding"]
        (embedding,) = [t for s, t in graph.edges if s == label]  # the add of both
    fed = {n.module for n in graph.nodes if (embedding, n.id) in graph.edges}
    levels = [f"downs.{i}.block" for i in range(depth)] + [f"ups.{i}.block" for i in range(depth)]
    assert fed == {"stem.condition", *levels}


# ---------------------------------------------------------------------------------------------
# Training loss, label dropout, EMA.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_is_the_mse_of_the_prediction_with_draws_from_the_global_generator(prediction):
    model = conditional(prediction=prediction, label_dropout=0.5)
    x, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(11)
    loss = model.loss(x, y)
    torch.manual_seed(11)  # the same draws, in the same order, by hand
    t = torch.randint(0, 20, (6,))
    noise = torch.randn_like(x)
    drop = torch.rand(6) < 0.5
    assert drop.any() and not drop.all()
    labels = torch.where(drop, 3, y)
    x_t = model.schedule.q_sample(x, t, noise)
    target = noise if prediction == "eps" else model.schedule.v_from(x, noise, t)
    expected = ((model(x_t, t, labels) - target) ** 2).mean()
    torch.testing.assert_close(loss, expected, atol=0, rtol=0)


def test_ema_follows_its_formula_is_saved_and_is_what_sampling_uses():
    model = tiny(ema_decay=0.9)
    assert not any(n.startswith("ema") for n, _ in model.named_parameters())
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    shadow = dict(start)
    for n_update in (1, 2, 3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        model.after_optimizer_step()  # what the trainer calls
        d = min(0.9, (1 + n_update) / (10 + n_update))
        shadow = {n: d * shadow[n] + (1 - d) * p.detach() for n, p in model.named_parameters()}
    for name, value in model.ema.weights().items():
        torch.testing.assert_close(value, shadow[name], atol=1e-6, rtol=0)
    state = model.state_dict()
    assert state["ema.updates"].item() == 3 and "ema.stem-conv1-weight" in state
    # A fresh model loading the state dict has the same EMA, bitwise, and samples alike.
    fresh = tiny(ema_decay=0.9)
    fresh.load_state_dict(state)
    for a, b in zip(fresh.ema.weights().values(), model.ema.weights().values(), strict=True):
        assert torch.equal(a, b)
    # Sampling uses the EMA weights: equal to a copy whose live weights are the averages.
    averaged = tiny(ema_decay=0.9)
    averaged.load_state_dict(state)
    with torch.no_grad():
        for name, p in averaged.named_parameters():
            p.copy_(shadow[name])

    def draw(m, **options):
        return m.eval().sample(2, generator=torch.Generator().manual_seed(0), steps=3, **options)

    torch.testing.assert_close(draw(model), draw(averaged, ema=False), atol=1e-5, rtol=0)
    assert not torch.allclose(draw(model), draw(model, ema=False))


# ---------------------------------------------------------------------------------------------
# Sizing for data, and refusals.
# ---------------------------------------------------------------------------------------------


def test_config_for_data_takes_channels_size_and_classes_when_conditional():
    spec = DataSpec((3, 28, 28), 10, output="generative")
    cond = Diffusion.config_for_data(create_model("ddpm-cond").config, spec)
    assert (cond.in_channels, cond.image_size, cond.num_classes) == (3, 28, 10)
    free = Diffusion.config_for_data(create_model("ddpm-tiny").config, spec)
    assert (free.in_channels, free.image_size, free.num_classes) == (3, 28, 0)
    with pytest.raises(ValueError, match="square"):
        Diffusion.config_for_data(free, DataSpec((1, 8, 6), 10, output="generative"))
    with pytest.raises(ValueError, match="this task needs one per example"):
        Diffusion.config_for_data(free, DataSpec((1, 8, 8), 10))
    model = create_model("ddpm-cond")
    assert model.outputs == ("generative",) and model.trains_for == "generation"


def test_bad_steps_labels_and_configs_are_one_sentence():
    model, cond = tiny().eval(), conditional().eval()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=re.escape("steps t in [0, 19]; got values from 0 to 20")):
        model(x, torch.tensor([0, 20]))
    with pytest.raises(ValueError, match=re.escape("steps t of shape (2,), one per image of x")):
        model(x, torch.tensor([0]))
    with pytest.raises(TypeError, match="int64"):
        model(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unconditional and takes no class labels y"):
        model(x, torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=re.escape("class labels y in [0, 3]")):
        cond(x, torch.tensor([0, 1]), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="needs labels y"):
        cond.loss(x)
    with pytest.raises(ValueError, match="num_classes must be 0 for an unconditional model"):
        DiffusionConfig(num_classes=10)
    with pytest.raises(ValueError, match="needs num_classes of at least 1"):
        create_model("ddpm-tiny", conditional=True)
    with pytest.raises(ValueError, match="prediction must be one of"):
        DiffusionConfig(prediction="x0")
