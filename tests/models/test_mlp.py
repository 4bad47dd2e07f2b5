"""What defines an MLP: Linear -> norm -> activation -> dropout blocks, residual adds, a head."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.mlp import MLP, HiddenBlock, MLPConfig


def _mlp(**overrides) -> MLP:
    config = {"in_channels": 16, "hidden_dim": 16, "out_dim": 3, "num_layers": 2, "dropout": 0.0}
    return create_model("mlp", **(config | overrides))


# ---------------------------------------------------------------------------------------------
# Structure.
# ---------------------------------------------------------------------------------------------


def test_forward_is_blocks_then_head_computed_by_hand():
    model = _mlp(in_channels=5, hidden_dim=7, num_layers=2, activation="relu").eval()
    x = torch.randn(4, 5)
    h = x
    for block in model.blocks:
        h = torch.relu(F.linear(h, block.linear.weight, block.linear.bias))
    expected = F.linear(h, model.head.weight, model.head.bias)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
    assert model(x).shape == (4, 3)


def test_zero_hidden_layers_is_a_linear_model():
    model = _mlp(in_channels=6, num_layers=0).eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [model.head] and len(model.blocks) == 0
    assert (model.head.in_features, model.head.out_features) == (6, 3)
    assert model.num_parameters() == 6 * 3 + 3
    x, z = torch.randn(4, 6), torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ model.head.weight.T + model.head.bias)
        # Affine: f(x) + f(z) - f(0) == f(x + z).
        zero = model(torch.zeros(4, 6))
        torch.testing.assert_close(model(x) + model(z) - zero, model(x + z), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_number_of_hidden_blocks_and_linears(num_layers):
    model = _mlp(in_channels=5, hidden_dim=8, num_layers=num_layers)
    assert len(model.blocks) == num_layers
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == num_layers + 1
    assert model.blocks[0].linear.in_features == 5
    assert all(b.linear.out_features == 8 for b in model.blocks)


# ---------------------------------------------------------------------------------------------
# Residual blocks.
# ---------------------------------------------------------------------------------------------


def test_residual_block_with_zero_weights_is_the_identity():
    model = _mlp(residual=True, num_layers=3).eval()
    for block in model.blocks:
        assert block.residual
        nn.init.zeros_(block.linear.weight)
        nn.init.zeros_(block.linear.bias)
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.blocks(x), x, atol=0, rtol=0)
        torch.testing.assert_close(model(x), model.head(x))


def test_residual_block_adds_its_input():
    model = _mlp(residual=True, norm="layer", activation="gelu").eval()
    block = model.blocks[0]
    x = torch.randn(4, 16)
    with torch.no_grad():
        expected = x + F.gelu(block.norm(block.linear(x)))
        torch.testing.assert_close(block(x), expected)


def test_without_residual_zero_weights_give_zero():
    model = _mlp(residual=False).eval()
    block = model.blocks[0]
    assert not block.residual
    nn.init.zeros_(block.linear.weight)
    nn.init.zeros_(block.linear.bias)
    with torch.no_grad():
        assert torch.equal(block(torch.randn(4, 16)), torch.zeros(4, 16))


def test_residual_skips_only_the_block_that_changes_width():
    model = _mlp(in_channels=10, hidden_dim=16, residual=True, num_layers=3)
    assert [b.residual for b in model.blocks] == [False, True, True]
    with torch.no_grad():
        assert model(torch.randn(2, 10)).shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# Norms and activations.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("norm", "kind"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm), ("none", nn.Identity)]
)
def test_norm_variants(norm, kind):
    model = _mlp(norm=norm, hidden_dim=12, num_layers=3)
    assert all(type(b.norm) is kind for b in model.blocks)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.LayerNorm)]
    assert len(norms) == (0 if norm == "none" else 3)
    if norm == "batch":
        assert all(m.num_features == 12 for m in norms)
    if norm == "layer":
        assert all(m.normalized_shape == (12,) for m in norms)
    model.train()
    y = model(torch.randn(4, 16))
    assert y.shape == (4, 3) and torch.isfinite(y).all()


def test_layer_norm_output_is_normalised_per_sample():
    model = _mlp(norm="layer", activation="tanh").eval()
    block = model.blocks[0]
    with torch.no_grad():
        h = block.norm(block.linear(torch.randn(5, 16) * 100))
    torch.testing.assert_close(h.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    ("activation", "module", "fn"),
    [
        ("relu", nn.ReLU, torch.relu),
        ("gelu", nn.GELU, F.gelu),
        ("silu", nn.SiLU, F.silu),
        ("tanh", nn.Tanh, torch.tanh),
    ],
)
def test_activation_variants(activation, module, fn):
    model = _mlp(activation=activation).eval()
    assert all(type(b.act) is module for b in model.blocks)
    block = model.blocks[0]
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), fn(block.linear(x)))


def test_tanh_blocks_use_xavier_and_relu_blocks_kaiming_init():
    torch.manual_seed(0)
    tanh = HiddenBlock(64, MLPConfig(in_channels=64, hidden_dim=256, activation="tanh"))
    torch.manual_seed(0)
    relu = HiddenBlock(64, MLPConfig(in_channels=64, hidden_dim=256, activation="relu"))
    xavier_bound = math.sqrt(6 / (64 + 256))  # 0.137
    kaiming_bound = 1 / math.sqrt(64)  # 0.125, kaiming_uniform_ with a=sqrt(5)
    assert kaiming_bound < tanh.linear.weight.abs().max() <= xavier_bound
    assert relu.linear.weight.abs().max() <= kaiming_bound


# ---------------------------------------------------------------------------------------------
# Dropout.
# ---------------------------------------------------------------------------------------------


def test_dropout_acts_in_train_mode_only():
    model = _mlp(dropout=0.5, hidden_dim=64, num_layers=2)
    plain = _mlp(dropout=0.0, hidden_dim=64, num_layers=2)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 16)
    with torch.no_grad():
        model.train()
        first, second = model(x), model(x)
        assert not torch.allclose(first, second)
        block_out = model.blocks[0](x)
        zeros = (block_out == 0).float().mean().item()
        # relu zeroes about half, dropout half of the rest: about 3/4 are zero.
        assert 0.6 < zeros < 0.9
        model.eval()
        plain.eval()
        torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)
        torch.testing.assert_close(model(x), plain(x), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# Data and input checks.
# ---------------------------------------------------------------------------------------------


def test_config_for_data_flattens_images():
    config = MLP.config_for_data(MLPConfig(in_channels=3, out_dim=2), DataSpec((1, 8, 8), 10))
    assert (config.in_channels, config.out_dim) == (64, 10)
    config = MLP.config_for_data(MLPConfig(), DataSpec((3, 4, 5), 2))
    assert (config.in_channels, config.out_dim) == (60, 2)
    config = MLP.config_for_data(MLPConfig(hidden_dim=32), DataSpec((13,), 1))
    assert (config.in_channels, config.out_dim, config.hidden_dim) == (13, 1, 32)


def test_wrong_feature_count_names_the_expected_64():
    model = create_model("mlp").eval()
    message = "mlp expects features x of shape (B, 64); got (2, 63)."
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(2, 63))


def test_unflattened_images_are_rejected():
    model = create_model("mlp-small").eval()
    with pytest.raises(ValueError, match=re.escape("(B, 64); got (2, 1, 8, 8)")):
        model(torch.randn(2, 1, 8, 8))
