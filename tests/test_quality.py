"""Fréchet distance and penultimate features for judging generated images."""

import pytest
import torch
from torch import nn

from fieldguide.api.quality import frechet_distance, penultimate


def test_frechet_distance_equals_the_closed_form_for_diagonal_gaussians():
    torch.manual_seed(0)
    a = torch.randn(200_000, 3) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([1.0, 0, 0])
    b = torch.randn(200_000, 3) * torch.tensor([2.0, 2.0, 1.0])
    # Diagonal: |mu1 - mu2|^2 + sum (s1 - s2)^2 = 1 + (1 - 2)^2 + 0 + (0.5 - 1)^2 = 2.25
    assert frechet_distance(a, b) == pytest.approx(2.25, abs=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_is_symmetric_with_full_covariances():
    torch.manual_seed(1)
    a = torch.randn(500, 4) @ torch.randn(4, 4)
    b = torch.randn(600, 4) @ torch.randn(4, 4) + 1
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    with pytest.raises(ValueError, match="same F and N >= 2"):
        frechet_distance(a, b[:, :3])


def test_penultimate_features_are_the_last_linear_layers_input():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    x = torch.randn(10, 5)
    feats, logits = penultimate(model, x, batch_size=4)
    assert torch.allclose(feats, model[1](model[0](x)))
    assert torch.allclose(logits, model(x))
