"""RealNVP flows: exact inverse, exact log-determinant, ActNorm init, bounded scales, density."""

import math

import pytest
import torch
from sklearn.datasets import make_moons
from torch import nn

from fieldguide import create_model
from fieldguide.models import flows
from fieldguide.models.base import DataSpec
from fieldguide.models.flows import (
    LOG_SCALE_BOUND,
    ActNorm,
    CouplingNet,
    FlowConfig,
    RealNVP,
    VectorRealNVP,
    squeeze,
    unsqueeze,
)


def vector_flow(width: int, seed: int = 0, **overrides) -> VectorRealNVP:
    torch.manual_seed(seed)
    config = {"in_channels": width, "hidden_dim": 16, "num_layers": 1, "num_couplings": 4}
    return create_model("realnvp-2d", **(config | overrides))


def image_flow(size: int = 4, seed: int = 0, **overrides) -> RealNVP:
    torch.manual_seed(seed)
    config = {"image_size": size, "hidden_dim": 8, "num_layers": 1, "num_couplings": 2}
    return create_model("realnvp", **(config | overrides))


def nontrivial(model: nn.Module, data: torch.Tensor) -> nn.Module:
    """The model far from the identity: coupling heads at full init, ActNorms set from data."""
    torch.manual_seed(1)
    for net in model.modules():
        if isinstance(net, CouplingNet):
            net.head.reset_parameters()
    with torch.no_grad():
        model.train()(data)
    return model.eval()


def jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d z / d x (D, D) of one example x (1, *shape), z and x flattened."""
    shape = x.shape
    return torch.autograd.functional.jacobian(lambda v: model(v.view(shape)).flatten(), x.flatten())


def untouched_outputs(jac: torch.Tensor) -> list[int]:
    """Entries i of z that are a function of x_i alone (row i zero off the diagonal)."""
    off_diagonal = jac - torch.diag(torch.diag(jac))
    return [i for i in range(jac.shape[0]) if not off_diagonal[i].any()]


CASES = {
    "vectors D=2": lambda: nontrivial(vector_flow(2).double(), torch.randn(64, 2).double() * 3),
    "vectors D=4": lambda: nontrivial(vector_flow(4).double(), torch.randn(64, 4).double()),
    "vectors D=5 conditional": lambda: nontrivial(
        vector_flow(5, conditional=True, num_classes=3).double(), torch.randn(64, 5).double()
    ),
    "images 1x4x4, two squeezes": lambda: nontrivial(
        image_flow(4).double(), torch.rand(16, 1, 4, 4).double() * 2 - 1
    ),
    "images 2x4x4, one squeeze": lambda: nontrivial(
        image_flow(4, in_channels=2, num_scales=1).double(),
        torch.rand(16, 2, 4, 4).double() * 2 - 1,
    ),
}


# ---------------------------------------------------------------------------------------------
# Exact inverse and exact log-determinant.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("realnvp-2d", {}), ("realnvp", {"image_size": 8}), ("realnvp", {"image_size": 28})],
)
def test_x_to_z_to_x_within_1e_5_in_float32(name, overrides):
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    x = model.example_input(8)
    if name == "realnvp":
        x = x.clamp(-1, 1)  # model space of images
    nontrivial(model, x)
    with torch.no_grad():
        z = model(x)
        back = model.inverse(z)
    assert z.shape == x.shape and not torch.allclose(z, x, atol=0.1)  # far from the identity
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_det_equals_autograds_full_jacobian(case):
    model = CASES[case]()
    torch.manual_seed(2)
    shape = model.example_input(1).shape
    y = torch.tensor([1]) if model.config.conditional else None
    logdets = []
    for _ in range(3):
        x = torch.randn(shape, dtype=torch.float64)
        jac = jacobian(lambda v, y=y: model(v, y), x)
        _, expected = torch.linalg.slogdet(jac)
        _, logdet = model.forward_and_logdet(x, y)
        torch.testing.assert_close(logdet, expected.view(1), atol=1e-8, rtol=1e-8)
        logdets.append(logdet.item())
    # the couplings' share depends on x: a flow of constant volume change would prove little
    assert max(logdets) - min(logdets) > 0.05, logdets


def test_inverse_undoes_forward_with_and_without_labels():
    model = CASES["vectors D=5 conditional"]()
    x = torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        for labels in (y, None):
            torch.testing.assert_close(model.inverse(model(x, labels), labels), x)
        # the label reaches the couplings, and "no label" is a label of its own
        assert not torch.allclose(model(x, y), model(x, (y + 1) % 3))
        assert not torch.allclose(model(x, y), model(x))


def test_squeeze_is_pixel_unshuffle_and_unsqueeze_undoes_it():
    x = torch.randn(3, 2, 6, 4)
    torch.testing.assert_close(squeeze(x), nn.functional.pixel_unshuffle(x, 2), atol=0, rtol=0)
    assert torch.equal(unsqueeze(squeeze(x)), x)
    assert squeeze(x[:0]).shape == (0, 8, 3, 2)  # torch's own gives an empty batch back as is


# ---------------------------------------------------------------------------------------------
# Every entry is transformed (the guide's missing permutation).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_entry_of_z_depends_on_other_entries_of_x(case):
    model = CASES[case]()
    x = model.example_input(1).double()
    kwargs = {"y": torch.tensor([2])} if model.config.conditional else {}
    jac = jacobian(lambda v: model(v, **kwargs), x)
    assert untouched_outputs(jac) == []


def test_the_dependence_check_catches_a_flow_without_alternation(monkeypatch):
    # The guide's sketch: every coupling keeps the same half, which passes through untouched.
    monkeypatch.setattr(
        flows, "vector_masks", lambda width, count: [torch.tensor([[1.0, 1.0, 0.0, 0.0]])] * count
    )
    model = nontrivial(vector_flow(4).double(), torch.randn(64, 4).double())
    jac = jacobian(model, torch.randn(1, 4, dtype=torch.float64))
    assert untouched_outputs(jac) == [0, 1]


# ---------------------------------------------------------------------------------------------
# ActNorm: data-dependent init, once.
# ---------------------------------------------------------------------------------------------


def actnorms(model: nn.Module) -> list[ActNorm]:
    return [m for m in model.modules() if isinstance(m, ActNorm)]


def first_actnorm_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = actnorms(model)[0].register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("kind", ["vectors", "images"])
def test_actnorm_init_gives_zero_mean_unit_variance_once(kind):
    torch.manual_seed(3)
    if kind == "vectors":
        model = vector_flow(3)
        first = torch.randn(200, 3) * torch.tensor([5.0, 0.1, 2.0]) + torch.tensor([3.0, -1, 0])
        axes = (0,)
    else:
        model = image_flow(8, in_channels=2)
        first = torch.randn(32, 2, 8, 8) * torch.tensor([3.0, 0.2]).view(1, 2, 1, 1) + 1
        axes = (0, 2, 3)
    norms = actnorms(model)
    assert len(norms) == (2 * (2 + 2) + 2 if kind == "images" else 4)  # one per coupling

    # eval mode does not initialise
    first_actnorm_output(model.eval(), first)
    assert not any(bool(n.initialized) for n in norms)

    out = first_actnorm_output(model.train(), first)
    torch.testing.assert_close(out.mean(axes), torch.zeros(out.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out.var(axes, correction=0), torch.ones(out.shape[1]), atol=1e-4, rtol=0
    )
    assert all(bool(n.initialized) for n in norms), "every ActNorm initialises on its input"

    # a second batch, far from the first, does not initialise again
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first_actnorm_output(model, first * 10 + 7)
    for key, value in model.state_dict().items():
        if key.endswith(("bias", "log_scale")) and ".norm." in key:
            torch.testing.assert_close(value, state[key], atol=0, rtol=0)

    # nor does a fresh model that loads the state dict (resume, or a run folder)
    fresh = vector_flow(3, seed=9) if kind == "vectors" else image_flow(8, 9, in_channels=2)
    fresh.load_state_dict(state)
    fresh.train()
    first_actnorm_output(fresh, first * 10 + 7)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, state[key], atol=0, rtol=0)


def test_actnorm_leaves_a_batch_of_one_value_per_channel_alone():
    norm = ActNorm(2).train()
    y = norm(torch.tensor([[3.0, 4.0]]), [])
    assert not bool(norm.initialized)
    torch.testing.assert_close(y, torch.tensor([[3.0, 4.0]]))


# ---------------------------------------------------------------------------------------------
# Bounded scales (the guide's exp(s) overflows).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vectors", "images"])
def test_huge_coupling_outputs_give_finite_outputs_and_bounded_log_det(kind):
    model = vector_flow(4) if kind == "vectors" else image_flow(8)
    raw = []
    for net in model.modules():
        if isinstance(net, CouplingNet):
            half = net.head.out_channels // 2 if kind == "images" else net.head.out_features // 2
            with torch.no_grad():  # the first half of the outputs are the raw log-scales
                net.head.weight[:half] = 1e4
                net.head.bias[:half] = 1e4
            net.register_forward_hook(
                lambda m, i, out, half=half: raw.append(out[:, :half].abs().max().item())
            )
    model.eval()
    x = model.example_input(4)
    with torch.no_grad():
        z, logdet = model.forward_and_logdet(x)
        back = model.inverse(z)
    assert max(raw) > 1e4, "the nets' raw outputs are huge: exp of them would overflow"
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all() and torch.isfinite(back).all()
    couplings = len(actnorms(model))  # one per coupling; the ActNorms are still the identity
    assert logdet.abs().max() <= LOG_SCALE_BOUND * model.dims * couplings


# ---------------------------------------------------------------------------------------------
# A density: integrates to one, and learns two moons.
# ---------------------------------------------------------------------------------------------


def test_log_prob_integrates_to_one_over_the_plane():
    model = nontrivial(vector_flow(2, seed=4).double(), torch.randn(64, 2).double())
    step = 0.025
    axis = torch.arange(-10, 10, step, dtype=torch.float64) + step / 2  # midpoints
    grid = torch.cartesian_prod(axis, axis)  # (640000, 2)
    with torch.no_grad():
        log_p = torch.cat([model.log_prob(chunk) for chunk in grid.split(100_000)])
    mass = log_p.exp().sum().item() * step**2
    assert mass == pytest.approx(1.0, abs=5e-3)
    gaussian = -0.5 * (grid.square().sum(1) + 2 * math.log(2 * math.pi))
    assert (log_p - gaussian).abs().max() > 1.0, "a flow that is nearly N(0, I) proves little"


def test_loss_is_mean_negative_log_prob_per_dimension():
    model = image_flow(8).eval()
    x = model.example_input(3).clamp(-1, 1)
    with torch.no_grad():
        expected = -model.log_prob(x).mean() / 64
        torch.testing.assert_close(model.loss(x, torch.zeros(3, dtype=torch.long)), expected)


def test_realnvp_2d_learns_two_moons_better_than_a_gaussian():
    # SYNTHETIC two moons, standardised with the training set's statistics.
    data, _ = make_moons(n_samples=3000, noise=0.05, random_state=0)
    data = torch.tensor(data, dtype=torch.float32)
    train, test = data[:2000], data[2000:]
    mean, std = train.mean(0), train.std(0)
    train, test = (train - mean) / std, (test - mean) / std

    # the baseline: a Gaussian with the training set's mean and full covariance
    gaussian = torch.distributions.MultivariateNormal(
        train.mean(0), torch.cov(train.T, correction=0)
    )
    gaussian_nll = -gaussian.log_prob(test).mean().item()

    torch.manual_seed(0)
    model = create_model("realnvp-2d", hidden_dim=32, num_layers=1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = train[torch.randint(0, len(train), (256,), generator=generator)]
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        flow_nll = -model.log_prob(test).mean().item()
    assert gaussian_nll == pytest.approx(2.6, abs=0.2)  # 2 dims, near-unit variance each
    assert flow_nll < gaussian_nll - 0.5, (flow_nll, gaussian_nll)


# ---------------------------------------------------------------------------------------------
# Sampling.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vectors", "images"])
def test_sample_shapes_seeds_and_temperature(kind):
    model = vector_flow(3) if kind == "vectors" else image_flow(8)
    model = nontrivial(model, model.example_input(16).clamp(-1, 1))
    shape = model.example_input(1).shape[1:]
    assert model.sample(5).shape == (5, *shape)
    assert model.sample(0).shape == (0, *shape)
    one = model.sample(4, generator=torch.Generator().manual_seed(5))
    again = model.sample(4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(one, again)

    # samples at temperature T are the inverse images of T times the generator's normals
    for temperature in (0.5, 1.0):
        x = model.sample(64, generator=torch.Generator().manual_seed(6), temperature=temperature)
        z = torch.randn((64, *shape), generator=torch.Generator().manual_seed(6)) * temperature
        with torch.no_grad():
            torch.testing.assert_close(model(x), z, atol=1e-4, rtol=1e-4)

    # temperature 0 maps the base density's mode: one point, the inverse image of z = 0
    modes = model.sample(3, temperature=0.0)
    with torch.no_grad():
        expected = model.inverse(torch.zeros(1, *shape))
    torch.testing.assert_close(modes, expected.expand(3, *shape))
    assert not any(t.requires_grad for t in (one, modes))


def test_conditional_samples_follow_their_labels():
    model = nontrivial(vector_flow(2, conditional=True, num_classes=2), torch.randn(32, 2))
    labels = torch.tensor([0, 0, 1, 1])
    x = model.sample(4, labels, generator=torch.Generator().manual_seed(0))
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x, labels), z, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model.inverse(z, labels), model.inverse(z, 1 - labels))
    with pytest.raises(ValueError, match=r"class labels y of shape \(3,\)"):
        model.sample(3, labels)


# ---------------------------------------------------------------------------------------------
# Sizes, conditioning and refusals.
# ---------------------------------------------------------------------------------------------


def test_config_for_data_sizes_flows_for_images_and_vectors():
    spec = DataSpec((1, 28, 28), 10, output="generative")
    config = RealNVP.config_for_data(FlowConfig(), spec)
    assert (config.in_channels, config.image_size, config.num_classes) == (1, 28, 0)
    conditional = RealNVP.config_for_data(FlowConfig(conditional=True), spec)
    assert conditional.num_classes == 10
    model = RealNVP(conditional)
    assert model.example_input(2).shape == (2, 1, 28, 28)
    vectors = VectorRealNVP.config_for_data(
        FlowConfig(image_size=0), DataSpec((7,), 3, output="generative")
    )
    assert (vectors.in_channels, vectors.image_size) == (7, 0)


def test_sizes_that_do_not_halve_are_refused_naming_image_size():
    with pytest.raises(ValueError, match=r"image_size must be a multiple of 2\*\*num_scales = 4"):
        FlowConfig(image_size=30, num_scales=2)
    with pytest.raises(ValueError, match="image_size.*use num_scales=2"):
        RealNVP.config_for_data(
            FlowConfig(num_scales=3), DataSpec((1, 28, 28), 10, output="generative")
        )
    with pytest.raises(ValueError, match="square images"):
        RealNVP.config_for_data(FlowConfig(), DataSpec((1, 28, 32), 10, output="generative"))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_couplings": 1}, "num_couplings must be at least 2"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"label_dropout": 1.0}, "label_dropout"),
    ],
)
def test_bad_configs_are_refused_in_one_sentence(overrides, match):
    with pytest.raises(ValueError, match=match):
        FlowConfig(**overrides)


def test_each_class_refuses_the_other_modality_and_a_conditional_flow_without_classes():
    with pytest.raises(ValueError, match="image_size must be 0"):
        create_model("realnvp-2d", image_size=8)
    with pytest.raises(ValueError, match="image_size .* must be at least 1"):
        create_model("realnvp", image_size=0)
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        create_model("realnvp", conditional=True)


def test_bad_labels_are_refused_naming_y():
    model = vector_flow(2, conditional=True, num_classes=3)
    x = model.example_input(2)
    with pytest.raises(ValueError, match=r"y in \[0, 3\)"):
        model.log_prob(x, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="labels y as an int64"):
        model.log_prob(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y of shape \(2,\)"):
        model(x, torch.tensor([0]))
    with pytest.raises(ValueError, match="expects latents z of shape"):
        model.inverse(torch.randn(2, 3))


def test_an_unconditional_flow_ignores_labels():
    model = vector_flow(2).eval()
    x = model.example_input(2)
    with torch.no_grad():
        assert torch.equal(model.log_prob(x, torch.tensor([5, 7])), model.log_prob(x))


def test_label_dropout_hides_labels_in_training_only():
    model = vector_flow(2, conditional=True, num_classes=2, label_dropout=0.5)
    model = nontrivial(model, torch.randn(32, 2))
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    with torch.no_grad():
        conditional = -model.log_prob(x, y).mean() / 2
        assert torch.equal(model.eval().loss(x, y), conditional)
        torch.manual_seed(0)
        assert not torch.equal(model.train().loss(x, y), conditional)
