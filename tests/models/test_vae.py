"""The VAE: its bound, its likelihood estimate, its KL and gradients, sizes and conditioning."""

import math

import pytest
import torch

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.vae import (
    MAX_LOGVAR,
    MIN_LOGVAR,
    VAE,
    VAEConfig,
    gaussian_kl,
    reparameterise,
    soft_clamp,
)


def tiny(**overrides) -> VAE:
    torch.manual_seed(0)
    return create_model("vae", **({"image_size": 8, "hidden_dim": 4, "latent_dim": 4} | overrides))


def images(n: int = 4, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def mismatched() -> VAE:
    """A tiny VAE whose q(z|x) is N(0.5, e I) for every x: wider than p(z|x), so the ELBO has a
    gap of a few nats that importance sampling closes quickly (a wide proposal keeps the
    weights' variance finite)."""
    model = tiny().eval()
    with torch.no_grad():
        model.encoder.to_posterior.weight.zero_()
        model.encoder.to_posterior.bias.copy_(torch.tensor([0.5] * 4 + [1.0] * 4))
    return model


def bars(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """n 8x8 images of 4 patterns (two bars, a diagonal, a frame) in [-1, 1], with labels."""
    protos = -torch.ones(4, 1, 8, 8)
    protos[0, :, 3:5, :] = 1
    protos[1, :, :, 3:5] = 1
    protos[2, 0] = torch.eye(8) * 2 - 1
    protos[3, :, 1:7, 1:7] = 1
    protos[3, :, 2:6, 2:6] = -1
    y = torch.arange(n) % 4
    noise = 0.05 * torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return (protos[y] + noise).clamp(-1, 1), y


def mean_elbo(model: VAE, x: torch.Tensor, y=None) -> float:
    with torch.no_grad():
        return model.elbo(x, y, generator=torch.Generator().manual_seed(0)).mean().item()


@pytest.fixture(scope="module")
def trained():
    """A tiny VAE before and after 200 Adam steps on `bars` (about 1.5 s on one thread)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("vae", image_size=8, hidden_dim=8, latent_dim=2)
    x, y = bars()
    before = mean_elbo(model, x)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        index = torch.randint(0, len(x), (32,))
        loss = model.loss(x[index], y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), before


# ---------------------------------------------------------------------------------------------
# The bound and the importance-sampled likelihood
# ---------------------------------------------------------------------------------------------


def draws(fn, count: int) -> torch.Tensor:
    """`count` calls of fn(generator) stacked: (count, B)."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        return torch.stack([fn(generator) for _ in range(count)])


def test_elbo_is_below_the_importance_sampled_log_likelihood():
    model, x = mismatched(), images()
    elbo = draws(lambda g: model.elbo(x, generator=g), 256)  # (256, B)
    estimate = draws(lambda g: model.log_prob_is(x, k=1024, generator=g), 4)
    noise = 3 * (elbo.std(0) / 16 + estimate.std(0) / 2)  # three standard errors, per image
    assert (elbo.mean(0) <= estimate.mean(0) + noise).all()
    # ... and the gap is real, not noise: this q is far from the posterior
    assert (estimate.mean(0) - elbo.mean(0) > 1.0).all(), (elbo.mean(0), estimate.mean(0))


def test_one_importance_sample_is_an_unbiased_estimate_of_the_elbo():
    # E[log p(x|z) + log p(z) - log q(z|x)] = ELBO: checks log q and log p(z) in log_prob_is
    model, x = mismatched(), images()
    elbo = draws(lambda g: model.elbo(x, generator=g), 64)
    one = draws(lambda g: model.log_prob_is(x, k=1, generator=g), 512)
    noise = 4 * (elbo.std(0) / 8 + one.std(0) / math.sqrt(512))
    assert ((elbo.mean(0) - one.mean(0)).abs() <= noise).all()


def test_the_importance_sampled_estimate_rises_with_k():
    model, x = mismatched(), images()
    means, errors = [], []
    for k, repeats in ((1, 512), (8, 64), (64, 16), (512, 4)):
        values = draws(lambda g, k=k: model.log_prob_is(x, k=k, generator=g), repeats).mean(1)
        means.append(values.mean().item())
        errors.append(values.std().item() / math.sqrt(repeats))
    for i in range(3):
        assert means[i + 1] >= means[i] - 3 * (errors[i] + errors[i + 1]), means
    assert means[-1] - means[0] > 1.0 + 3 * (errors[0] + errors[-1]), means


def test_a_trained_vae_keeps_its_elbo_below_the_importance_sampled_estimate(trained):
    model, _ = trained
    x, y = bars(8)
    elbo = draws(lambda g: model.elbo(x, y, generator=g), 64)
    estimate = draws(lambda g: model.log_prob_is(x, y, k=256, generator=g), 2)
    noise = 3 * (elbo.std(0) / 8 + estimate.std(0))
    assert (elbo.mean(0) <= estimate.mean(0) + noise).all()


def test_with_the_exact_posterior_every_estimate_is_log_p_x():
    # A decoder that ignores z makes p(z|x) = p(z); an encoder that outputs N(0, I) then has
    # q = p(z|x), every importance weight equals p(x), and ELBO = IS_k = log p(x|z) for any k
    # (so a missing "- log k" or a wrong log q would show).
    model, x = tiny().eval(), images()
    with torch.no_grad():
        model.decoder.from_latent.weight.zero_()
        model.encoder.to_posterior.weight.zero_()
        model.encoder.to_posterior.bias.zero_()
        log_px = model.decoder_log_prob(x, torch.zeros(4, 4))
        for k in (1, 7, 100):
            torch.testing.assert_close(model.log_prob_is(x, k=k), log_px)
        torch.testing.assert_close(model.elbo(x), log_px)


def test_log_prob_is_repeats_with_a_seeded_generator_and_refuses_k_0():
    model, x = mismatched(), images()
    first = model.log_prob_is(x, k=10, generator=torch.Generator().manual_seed(5))
    again = model.log_prob_is(x, k=10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="k, the importance samples"):
        model.log_prob_is(x, k=0)


# ---------------------------------------------------------------------------------------------
# KL, reparameterisation, beta
# ---------------------------------------------------------------------------------------------


def test_kl_equals_the_closed_form_of_torch_distributions():
    mu, logvar = torch.randn(5, 3) * 2, torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0  # q = p


def test_the_elbo_terms_use_that_kl():
    model, x = tiny(), images()
    mu, logvar = model.encode(x)
    _, kl = model.elbo_terms(x)
    torch.testing.assert_close(kl, gaussian_kl(mu, logvar))


def test_reparameterisation_gives_gradients_to_mu_and_logvar():
    mu = torch.randn(4, 3, requires_grad=True)
    logvar = torch.randn(4, 3, requires_grad=True)
    z = reparameterise(mu, logvar, torch.Generator().manual_seed(0))
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, mu + (0.5 * logvar).exp() * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(4, 3))  # dz/dmu = 1
    torch.testing.assert_close(logvar.grad, 0.5 * (0.5 * logvar).exp() * eps)  # sigma * eps / 2
    assert logvar.grad.abs().min() > 0


def test_the_loss_reaches_the_encoder_through_the_sample():
    model, x = tiny(), images()
    model.loss(x).backward()
    assert model.encoder.to_posterior.weight.grad[4:].abs().sum() > 0  # the logvar rows
    assert model.encoder.stem.weight.grad.abs().sum() > 0


def test_beta_scales_only_the_kl_term():
    x, dims = images(), 64
    losses, terms = {}, {}
    for beta in (0.0, 1.0, 4.0):
        model = tiny(beta=beta)  # same seed: the same weights
        torch.manual_seed(3)  # the same draw of z
        losses[beta] = model.loss(x).item()
        terms[beta] = model.elbo_terms(x, generator=torch.Generator().manual_seed(9))
        torch.manual_seed(3)
        log_px, kl = model.elbo_terms(x)
        assert losses[beta] == pytest.approx(((beta * kl - log_px).mean() / dims).item())
    for t in terms.values():  # the terms themselves do not depend on beta
        torch.testing.assert_close(t, terms[1.0])
    kl_per_dim = terms[1.0][1].mean().item() / dims
    # the losses are ~1 nat/dim in float32: their differences carry ~1e-7 of round-off
    assert losses[4.0] - losses[1.0] == pytest.approx(3 * kl_per_dim, abs=1e-6)
    assert losses[1.0] - losses[0.0] == pytest.approx(kl_per_dim, abs=1e-6)
    # elbo is the beta = 1 bound whatever beta trains
    for beta in (0.0, 4.0):
        torch.testing.assert_close(mean_elbo(tiny(beta=beta), x), mean_elbo(tiny(), x))


# ---------------------------------------------------------------------------------------------
# Decoders: proper densities
# ---------------------------------------------------------------------------------------------


def test_gaussian_decoder_log_prob_is_a_normal_density_with_bounded_variance():
    model, x = tiny(), images()
    z = torch.randn(4, 4)
    mean, raw = model._params(z, None).chunk(2, dim=1)
    logvar = soft_clamp(raw, MIN_LOGVAR, MAX_LOGVAR)
    normal = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expected = normal.log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(model.decoder_log_prob(x, z), expected)
    torch.testing.assert_close(model.decode(z), mean)


def test_soft_clamp_keeps_inside_its_bounds_and_is_near_identity_between_them():
    x = torch.linspace(-1000, 1000, 20001, requires_grad=True)
    y = soft_clamp(x, -12.0, 2.0)
    # float32: the far ends sit within log(1 + e^-14) ~ 1e-6 of the bounds
    assert y.min() >= -12.0 - 1e-5 and y.max() <= 2.0 + 1e-5
    assert (y.diff() >= 0).all()  # monotone
    middle = (x > -8) & (x < -2)
    torch.testing.assert_close(y[middle], x[middle], atol=0.02, rtol=0)
    y.sum().backward()
    assert (x.grad[middle] > 0.9).all()


def test_bernoulli_decoder_is_a_continuous_bernoulli_density_in_model_space():
    model = tiny(decoder="bernoulli")
    x, z = images(), torch.randn(4, 4)
    logits = model._params(z, None)
    pixels = torch.distributions.ContinuousBernoulli(logits=logits)
    expected = (pixels.log_prob((x + 1) / 2) - math.log(2)).flatten(1).sum(-1)
    torch.testing.assert_close(model.decoder_log_prob(x, z), expected)
    torch.testing.assert_close(model.decode(z), pixels.mean * 2 - 1)
    # a density over x in [-1, 1]: one pixel's density integrates to 1 (midpoint rule)
    grid = (torch.arange(4000) + 0.5) / 4000 * 2 - 1
    one = torch.distributions.ContinuousBernoulli(logits=torch.tensor(1.7))
    density = (one.log_prob((grid + 1) / 2) - math.log(2)).exp()
    assert (density.mean() * 2).item() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match=r"x in \[-1, 1\]"):
        model.elbo(x * 3)


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 28, 13])
def test_the_decoder_returns_exactly_h_by_w(size):
    model = tiny(image_size=size)
    x = images(2, size)
    assert model(x).shape == x.shape
    assert model.decode(torch.randn(3, 4)).shape == (3, 1, size, size)
    assert model.sample(5).shape == (5, 1, size, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 4)
    assert model.elbo(x).shape == model.log_prob_is(x, k=3).shape == (2,)


def test_unsupported_sizes_are_refused_naming_image_size():
    with pytest.raises(ValueError, match="image_size must be from 4 to 64"):
        VAEConfig(image_size=100)
    with pytest.raises(ValueError, match="image_size"):
        VAEConfig(image_size=2)
    with pytest.raises(ValueError, match="image_size"):
        VAE.config_for_data(VAEConfig(), DataSpec((1, 8, 10), 10, output="generative"))
    with pytest.raises(ValueError, match="image_size"):  # too small for three halvings
        VAE.config_for_data(VAEConfig(num_layers=3), DataSpec((1, 4, 4), 10, output="generative"))


def test_config_for_data_sets_channels_size_and_classes():
    spec = DataSpec((3, 8, 8), 10, output="generative")
    plain = VAE.config_for_data(VAEConfig(), spec)
    assert (plain.in_channels, plain.image_size, plain.num_classes) == (3, 8, 0)
    cond = VAE.config_for_data(VAEConfig(conditional=True), spec)
    assert cond.num_classes == 10
    with pytest.raises(ValueError, match="generative"):
        VAE.config_for_data(VAEConfig(), DataSpec((1, 8, 8), 10))


def test_forward_is_the_decoded_posterior_mean():
    model, x = tiny().eval(), images()
    mu, _ = model.encode(x)
    torch.testing.assert_close(model(x), model.decode(mu))


def test_sampling_temperature_zero_decodes_the_prior_mean_and_a_seed_repeats():
    model = tiny()
    torch.testing.assert_close(model.sample(3, temperature=0.0), model.decode(torch.zeros(3, 4)))
    first = model.sample(3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, model.sample(3, generator=torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(3, temperature=-1.0)


# ---------------------------------------------------------------------------------------------
# Training and conditioning
# ---------------------------------------------------------------------------------------------


def test_training_raises_the_elbo(trained):
    model, before = trained
    x, _ = bars()
    after = mean_elbo(model, x)
    assert after > before + 64, (before, after)  # more than a nat per pixel


def test_conditional_samples_change_with_the_label():
    model = tiny(conditional=True, num_classes=3).eval()
    samples = [
        model.sample(2, torch.full((2,), k), generator=torch.Generator().manual_seed(0))
        for k in range(3)
    ]
    for i in range(3):
        for j in range(i):
            assert (samples[i] - samples[j]).abs().max() > 1e-3
    x = images(2)
    mu0, _ = model.encode(x, torch.tensor([0, 0]))
    mu1, _ = model.encode(x, torch.tensor([1, 1]))
    assert (mu0 - mu1).abs().max() > 1e-4  # the encoder reads the label too


def test_conditional_labels_are_checked_in_one_sentence():
    model, x = tiny(conditional=True, num_classes=3), images(2)
    with pytest.raises(ValueError, match="expects labels y of shape \\(2,\\); got None"):
        model.elbo(x)
    with pytest.raises(ValueError, match=r"labels y in \[0, 3\)"):
        model.loss(x, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="labels y as an int64"):
        model(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels y of shape"):
        model.decode(torch.randn(2, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        tiny(conditional=True)
    with pytest.raises(ValueError, match="num_classes must be 0 unless conditional"):
        tiny(num_classes=3)


def test_label_dropout_gives_an_unconditioned_mode_and_unconditional_models_ignore_y():
    model = tiny(conditional=True, num_classes=3, label_dropout=0.2).eval()
    unknown = model.sample(2, generator=torch.Generator().manual_seed(0))
    zero_class = model._mean(model._params(torch.zeros(2, 4), torch.zeros(2, 3)))
    assert unknown.shape == (2, 1, 8, 8)
    torch.testing.assert_close(model.sample(2, temperature=0.0), zero_class)
    plain, x = tiny().eval(), images(2)
    torch.testing.assert_close(plain(x, torch.tensor([5, 7])), plain(x))


def test_presets_build_and_condition():
    for name, conditional in (("vae", False), ("vae-cond", True)):
        model = create_model(name)
        assert model.config.conditional is conditional
        assert model.trains_for == "generation" and model.outputs == ("generative",)
