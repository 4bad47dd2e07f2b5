"""The presets named after published models use the published models' numerics.

gpt2-small: GELU's tanh approximation and LayerNorm eps 1e-5 (OpenAI's GPT-2, Hugging Face
"gpt2"); vit-b16: exact GELU and LayerNorm eps 1e-6 (timm vit_base_patch16_224, torchvision
vit_b_16). Models are built at tiny widths with the presets' other options.
"""

import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fieldguide import create_model
from fieldguide.layers.attention import TransformerBlock
from fieldguide.models.registry import get_entry
from fieldguide.models.transformer import EncoderConfig, TransformerConfig
from fieldguide.models.vit import ViTConfig

TINY_GPT2 = {"vocab_size": 64, "hidden_dim": 32, "num_layers": 2, "num_heads": 4, "max_len": 16}
TINY_VIT = {"image_size": 32, "hidden_dim": 32, "num_layers": 2, "num_heads": 4, "out_dim": 10}
TINY_TOKENS = {"hidden_dim": 32, "num_layers": 2, "num_heads": 4, "max_len": 16}


def _build(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **overrides).eval()


def _layer_norms(model: nn.Module) -> dict[str, nn.LayerNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}


# ---------------------------------------------------------------------------------------------
# The published configurations.
# ---------------------------------------------------------------------------------------------


def test_gpt2_small_is_configured_as_published():
    c = get_entry("gpt2-small").config
    published = {
        "mlp": "gelu-tanh",
        "norm_eps": 1e-5,
        "tie_weights": True,
        "positions": "learned",
        "bias": True,
        "vocab_size": 50257,
        "hidden_dim": 768,
        "num_layers": 12,
        "num_heads": 12,
        "max_len": 1024,
        "mlp_ratio": 4.0,
    }
    assert {key: getattr(c, key) for key in published} == published


def test_vit_b16_is_configured_as_published():
    c = get_entry("vit-b16").config
    published = {
        "mlp": "gelu",
        "norm_eps": 1e-6,
        "pool": "cls",
        "image_size": 224,
        "patch_size": 16,
        "hidden_dim": 768,
        "num_layers": 12,
        "num_heads": 12,
        "mlp_ratio": 4.0,
    }
    assert {key: getattr(c, key) for key in published} == published


# ---------------------------------------------------------------------------------------------
# GPT-2's GELU: the tanh approximation, in every block.
# ---------------------------------------------------------------------------------------------


def test_gpt2_small_mlp_applies_the_tanh_gelu():
    model = _build("gpt2-small", **TINY_GPT2)
    x = 3.0 * torch.randn(2, 5, 32)
    for block in model.blocks:
        mlp = block.mlp
        with torch.no_grad():
            # Weights large enough that pre-activations reach where the two GELUs part.
            nn.init.normal_(mlp.up.weight, std=1 / math.sqrt(32))
            nn.init.normal_(mlp.down.weight, std=1 / math.sqrt(128))
            up = F.linear(x, mlp.up.weight, mlp.up.bias)
            tanh = F.linear(F.gelu(up, approximate="tanh"), mlp.down.weight, mlp.down.bias)
            erf = F.linear(F.gelu(up), mlp.down.weight, mlp.down.bias)
            out = mlp(x)
        torch.testing.assert_close(out, tanh, atol=1e-6, rtol=0)
        assert (out - erf).abs().max() > 1e-5


def test_gpt2_small_output_depends_on_the_gelu_it_was_given():
    # The whole model, not only one MLP: the erf GELU moves its logits.
    tanh = _build("gpt2-small", **TINY_GPT2)
    erf = _build("gpt2-small", **TINY_GPT2, mlp="gelu")
    with torch.no_grad():
        for block in tanh.blocks:
            nn.init.normal_(block.mlp.up.weight, std=1.0)  # pre-activations where GELUs part
        erf.load_state_dict(tanh.state_dict())
        ids = torch.randint(0, 64, (2, 8))
        assert (tanh(ids) - erf(ids)).abs().max() > 1e-5


@pytest.mark.parametrize("name", ["gpt-tiny", "bert-tiny", "vit-tiny"])
def test_other_presets_keep_the_exact_gelu(name):
    model = _build(name)
    acts = [m for m in model.modules() if isinstance(m, nn.GELU)]
    assert acts and all(act.approximate == "none" for act in acts)


def test_gelu_tanh_mlp_is_as_wide_as_the_gelu_mlp():
    gelu, tanh = TransformerBlock(48, 4, mlp="gelu"), TransformerBlock(48, 4, mlp="gelu-tanh")
    assert tanh.mlp.up.weight.shape == gelu.mlp.up.weight.shape == (192, 48)
    assert tanh.mlp.act.approximate == "tanh" and gelu.mlp.act.approximate == "none"


# ---------------------------------------------------------------------------------------------
# LayerNorm eps: one config field reaches every LayerNorm.
# ---------------------------------------------------------------------------------------------


def test_vit_b16_eps_reaches_every_layer_norm():
    norms = _layer_norms(_build("vit-b16", **TINY_VIT))
    assert len(norms) == 2 * 2 + 1  # two per block and the final one
    assert {n: m.eps for n, m in norms.items()} == dict.fromkeys(norms, 1e-6)


@pytest.mark.parametrize(
    ("name", "overrides", "count"),
    [
        ("gpt-tiny", TINY_TOKENS, 2 * 2 + 1),
        ("bert-tiny", TINY_TOKENS, 2 * 2 + 1),
        ("t5-tiny", TINY_TOKENS, 2 * 2 + 2 * 3 + 2),  # decoder blocks have a cross norm
        ("vit-tiny", {}, 4 * 2 + 1),
    ],
)
def test_norm_eps_defaults_to_1e5_and_an_override_reaches_every_layer_norm(name, overrides, count):
    default = _layer_norms(_build(name, **overrides))
    assert len(default) == count
    assert {n: m.eps for n, m in default.items()} == dict.fromkeys(default, 1e-5)
    changed = _layer_norms(_build(name, **overrides, norm_eps=1e-6))
    assert {n: m.eps for n, m in changed.items()} == dict.fromkeys(default, 1e-6)


def test_vit_output_depends_on_norm_eps():
    # eps must act in forward, not only sit on the modules: a small-variance input shows it.
    near = _build("vit-b16", **TINY_VIT)
    far = _build("vit-b16", **TINY_VIT, norm_eps=1e-2)
    far.load_state_dict(near.state_dict())
    x = 1e-2 * torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (near(x) - far(x)).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------
# Refusals name the field.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [TransformerConfig, EncoderConfig, ViTConfig])
@pytest.mark.parametrize("eps", [0.0, -1e-6, math.nan, math.inf])
def test_norm_eps_must_be_positive_and_finite(config, eps):
    with pytest.raises(ValueError, match=rf"^{config.__name__}\.norm_eps must be a positive"):
        config(norm_eps=eps)


@pytest.mark.parametrize("config", [TransformerConfig, EncoderConfig, ViTConfig])
def test_an_unknown_mlp_is_refused_naming_the_field_and_the_choices(config):
    with pytest.raises(ValueError, match=rf"^{config.__name__}\.mlp must be .*'gelu-tanh'"):
        config(mlp="gelu_tanh")
    assert config(mlp="gelu-tanh").mlp == "gelu-tanh"


def test_an_unknown_mlp_is_refused_by_the_block_and_by_create_model():
    with pytest.raises(ValueError, match=r"mlp .*'gelu-tanh'.*got 'tanh'"):
        TransformerBlock(16, 4, mlp="tanh")
    with pytest.raises(TypeError, match=r"override 'mlp' expects .*got 'tanh'"):
        create_model("gpt2-small", mlp="tanh")
    with pytest.raises(ValueError, match="norm_eps must be a positive"):
        create_model("vit-b16", norm_eps=0.0)


# ---------------------------------------------------------------------------------------------
# The config round trip: a model's config rebuilds it.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("gpt2-small", TINY_GPT2),
        ("vit-b16", TINY_VIT),
        ("t5-tiny", {"norm_eps": 1e-6, "mlp": "gelu-tanh"}),
        ("bert-tiny", {"norm_eps": 1e-6}),
    ],
)
def test_a_models_config_rebuilds_the_same_model(name, overrides):
    model = _build(name, **overrides)
    again = _build(name, **asdict(model.config))
    assert again.config == model.config
    state, state_again = model.state_dict(), again.state_dict()
    assert list(state_again) == list(state)
    for key, value in state.items():
        torch.testing.assert_close(state_again[key], value, atol=0, rtol=0)
    x = model.example_input(2)
    x = x if isinstance(x, tuple) else (x,)
    with torch.no_grad():
        torch.testing.assert_close(again(*x), model(*x), atol=0, rtol=0)
    # And the published numerics survive the trip.
    layer_norm = next(m for m in again.modules() if isinstance(m, nn.LayerNorm))
    assert layer_norm.eps == model.config.norm_eps


def test_a_run_recorded_before_norm_eps_existed_rebuilds_with_the_eps_it_trained_with():
    from dataclasses import asdict

    from fieldguide.api.generate import saved_config
    from fieldguide.models.registry import get_entry

    recorded = asdict(get_entry("vit-b16").config)
    assert recorded["norm_eps"] == 1e-6  # today's preset
    old = {k: v for k, v in recorded.items() if k != "norm_eps"}  # a run from before the field
    assert saved_config("vit-b16", old)["norm_eps"] == 1e-5  # what that run trained with
    assert saved_config("vit-b16", recorded) == recorded  # a complete record is kept as is
    assert saved_config("vit-b16", {}) == {}  # nothing recorded: the preset decides
