"""The generation task: model space, dequantisation, bits per dimension, baselines, determinism."""

import math

import pytest
import torch
from torch import nn

from fieldguide.data import load_data
from fieldguide.tasks.generation import GenerationTask


class UniformDensity(nn.Module):
    """A stand-in density model: uniform on [-1, 1]^D (log p = -D log 2), loss 0."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.dims = dims
        self.scale = nn.Parameter(torch.zeros(()))

    def log_prob(self, x, y=None):
        inside = (x.flatten(1).abs() <= 1).all(1)
        return torch.where(inside, -self.dims * math.log(2), -math.inf).double()

    def loss(self, x, y):
        return self.scale * 0 + torch.rand(()) * 0  # draws from the global generator


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_model_space_is_pixels_mapped_onto_minus_one_to_one(digits):
    task = GenerationTask(digits)
    assert task.levels == 17 and task.images
    x = task.to_model_space(digits.train.x[:50])
    k = (x + 1) / 2 * 16  # back to the 0..16 counts
    assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6
    assert torch.allclose(k, k.round(), atol=1e-4)


def test_dequantised_pixels_stay_inside_their_own_bin(digits):
    task = GenerationTask(digits)
    x = digits.train.x[:50]
    k = ((x * task.std + task.mean) * 16).round()
    noise = torch.rand(x.shape)
    y = (task.to_model_space(x, noise) + 1) / 2 * 17  # (k + u) for L = 17
    assert torch.all(y >= k - 1e-4) and torch.all(y < k + 1 + 1e-4)
    assert torch.allclose(y - k, noise, atol=1e-4)


def test_a_uniform_density_scores_log2_levels_bits_per_dim(digits):
    task = GenerationTask(digits)
    task.dequantize = True
    metrics = task.evaluate(UniformDensity(64), "val", batch_size=100)
    assert metrics["val/bits_per_dim"] == pytest.approx(math.log2(17), abs=1e-6)
    # The independent-pixel baseline knows each pixel's histogram: far below log2(17).
    baseline = task.baselines("val")["independent pixels (histogram per pixel)"]["bits_per_dim"]
    assert 0.5 < baseline < math.log2(17) - 1


def test_evaluation_repeats_and_leaves_the_training_generator_alone(digits):
    task = GenerationTask(digits)
    task.dequantize = True
    model = UniformDensity(64)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = task.evaluate(model, "test")
    assert torch.equal(torch.get_rng_state(), before)
    assert task.evaluate(model, "test") == first


def test_vectors_get_nll_and_a_gaussian_baseline():
    data = load_data("two-moons")
    task = GenerationTask(data)
    assert not task.images and task.accepted() == frozenset({"vectors"})
    gauss = task.baselines("test")["one Gaussian of train"]["nll"]
    # Standardised 2-D data: a unit Gaussian's entropy is log(2 pi e) = 2.84 nats; correlation
    # between the coordinates can only lower it.
    assert 2.0 < gauss < 2.9
    assert task.to_model_space(data.train.x[:5]) is not None


def test_the_task_is_chosen_by_the_model_not_the_data(digits):
    from fieldguide.tasks import make_task
    from fieldguide.tasks.classification import ClassificationTask

    assert isinstance(make_task(digits), ClassificationTask)
    assert isinstance(make_task(digits, "generation"), GenerationTask)
    text = load_data("dates")
    with pytest.raises(ValueError, match="generation trains on images or table rows"):
        make_task(text, "generation")
