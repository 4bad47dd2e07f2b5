"""What defines a ViT: patch tokens, ViT-B/16's size, pooling, positions, input size, decay."""

import math

import pytest
import torch

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.vit import ViT, ViTConfig
from fieldguide.train.params import param_groups


@pytest.fixture(scope="module")
def vit_b16() -> ViT:
    torch.manual_seed(0)
    return create_model("vit-b16").eval()  # 86M weights: built once for the module


def _tiny(**overrides) -> ViT:
    torch.manual_seed(0)
    return create_model("vit-tiny", **overrides).eval()


def _patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C·P·P), the paper's flattened patches in row-major order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def _shuffle_patches(x: torch.Tensor, p: int, order: torch.Tensor) -> torch.Tensor:
    """Move whole P×P patches of x (B, C, H, W) to the positions given by `order` (N,)."""
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(b, -1, c, p, p)[:, order]  # (B, N, C, P, P)
    blocks = blocks.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return blocks.reshape(b, c, h, w)


# ---------------------------------------------------------------------------------------------
# Sizes: patch tokens and ViT-B/16.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_size", "patch_size", "tokens"), [(8, 2, 16), (224, 16, 196), (32, 4, 64), (8, 8, 1)]
)
def test_number_of_patches_is_image_over_patch_squared(image_size, patch_size, tokens):
    config = ViTConfig(image_size=image_size, patch_size=patch_size, hidden_dim=8, num_heads=2)
    assert config.num_patches == tokens == (image_size // patch_size) ** 2


def test_vit_tiny_turns_8x8_digits_into_16_tokens_plus_the_class_token():
    model = _tiny()
    x = model.example_input(3)
    assert x.shape == (3, 1, 8, 8)
    assert model.patch_embedding(x).flatten(2).shape == (3, 64, 16)  # (B, D, N)
    assert model.position_embedding.shape == (1, 17, 64)
    with torch.no_grad():
        assert model.encode(x).shape == (3, 17, 64)
        assert model.features(x).shape == (3, model.feature_dim) == (3, 64)
        assert model(x).shape == (3, 10)


def test_vit_b16_turns_224_images_into_196_tokens(vit_b16):
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tokens = vit_b16.patch_embedding(x).flatten(2).transpose(1, 2)  # (B, N, D)
    assert tokens.shape == (1, 196, 768)
    assert vit_b16.position_embedding.shape == (1, 197, 768)


def test_vit_b16_has_the_parameter_count_of_timm_and_torchvision(vit_b16):
    # vit_b_16 in torchvision and vit_base_patch16_224 in timm: 86,567,656 parameters.
    assert vit_b16.num_parameters() == 86_567_656
    c = vit_b16.config
    assert (c.image_size, c.patch_size, c.hidden_dim, c.num_layers, c.num_heads) == (
        224,
        16,
        768,
        12,
        12,
    )
    assert (c.mlp_ratio, c.pool, c.out_dim) == (4.0, "cls", 1000)


def test_patch_embedding_is_one_linear_map_of_each_flattened_patch():
    # The paper's E x_p, with x_p the flattened P×P patch: a convolution with kernel = stride = P.
    model = _tiny(in_channels=3)
    x = torch.randn(2, 3, 8, 8)
    weight = model.patch_embedding.weight.reshape(64, -1)  # (D, C·P·P)
    expected = _patches(x, 2) @ weight.T + model.patch_embedding.bias  # (B, N, D)
    with torch.no_grad():
        tokens = model.patch_embedding(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Pooling.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_cls_and_mean_pooling_both_work_and_pool_what_they_say(mlp):
    x = torch.randn(4, 1, 8, 8)
    cls, mean = _tiny(pool="cls", mlp=mlp), _tiny(pool="mean", mlp=mlp)
    assert cls.cls_token is not None and cls.position_embedding.shape[1] == 17
    assert mean.cls_token is None and mean.position_embedding.shape[1] == 16
    with torch.no_grad():
        torch.testing.assert_close(cls.features(x), cls.encode(x)[:, 0])
        torch.testing.assert_close(mean.features(x), mean.encode(x).mean(1))
        assert cls(x).shape == mean(x).shape == (4, 10)
        assert torch.isfinite(cls(x)).all() and torch.isfinite(mean(x)).all()
        assert not torch.allclose(cls.features(x), mean.features(x), atol=1e-3)


def test_the_class_token_sees_every_pixel():
    # Only attention carries patch content to the class token: each pixel must reach it.
    model = _tiny(pool="cls")
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[0, 3], x)
    assert torch.count_nonzero(grad) == grad.numel()


# ---------------------------------------------------------------------------------------------
# Positions: without them a ViT is blind to where a patch sits.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_position_embeddings_are_the_only_source_of_patch_order(pool):
    model = _tiny(pool=pool)
    x = torch.randn(3, 1, 8, 8)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    shuffled = _shuffle_patches(x, 2, order)
    assert not torch.equal(shuffled, x)
    torch.testing.assert_close(_patches(shuffled, 2), _patches(x, 2)[:, order])
    with torch.no_grad():
        assert not torch.allclose(model(shuffled), model(x), atol=1e-3)
        model.position_embedding.zero_()  # attention alone is permutation-equivariant
        torch.testing.assert_close(model(shuffled), model(x), atol=1e-5, rtol=1e-5)


def test_position_table_and_class_token_start_as_the_references_do():
    model = _tiny()
    pos = model.position_embedding
    assert pos.abs().max() <= 0.04  # truncated at 2 std
    assert 0.015 < pos.std() < 0.02  # 0.88 · 0.02 for a normal truncated at ±2 std
    assert torch.count_nonzero(model.cls_token) == 0


# ---------------------------------------------------------------------------------------------
# Input and config errors.
# ---------------------------------------------------------------------------------------------


def test_rejects_another_image_size_naming_the_position_embeddings():
    model = _tiny()
    pattern = r"^vit-tiny expects images x of size 8x8, .*position embeddings.*got 16x16"
    with pytest.raises(ValueError, match=pattern):
        model(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"got 8x6"):
        model(torch.randn(2, 1, 8, 6))


def test_rejects_the_wrong_channel_count_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"^vit-tiny expects images x of shape \(B, 1, H, W\)"):
        _tiny()(torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"image_size": 30, "patch_size": 16}, r"image_size must be divisible by patch_size.*30"),
        (
            {"hidden_dim": 100, "num_heads": 12},
            r"hidden_dim must be divisible by num_heads.*hidden_dim=100",
        ),
        ({"patch_size": 0}, r"patch_size must be at least 1, got 0"),
        ({"num_layers": 0}, r"num_layers must be at least 1"),
        ({"pool": "max"}, r"pool must be 'cls' or 'mean', got 'max'"),
        ({"mlp": "relu"}, r"mlp must be 'gelu' or 'swiglu', got 'relu'"),
        ({"mlp_ratio": 0.0}, r"mlp_ratio must be positive"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_config_errors_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=rf"^ViTConfig\.{match}"):
        ViTConfig(**overrides)


def test_create_model_checks_overrides_through_the_config():
    with pytest.raises(ValueError, match="image_size must be divisible by patch_size"):
        create_model("vit-tiny", patch_size=3)


def test_config_for_data_takes_channels_size_and_classes_and_keeps_the_patch():
    config = ViT.config_for_data(ViTConfig(patch_size=4), DataSpec((3, 32, 32), 5))
    assert (config.in_channels, config.image_size, config.out_dim) == (3, 32, 5)
    assert config.patch_size == 4 and config.num_patches == 64


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((3, 32, 24), r"square images.*32x24"),
        ((3, 30, 30), r"patch_size to divide the image size.*patch_size is 16"),
        ((64,), r"reads images whose examples have shape \(C, H, W\); the data gives .*\(64,\)"),
    ],
)
def test_config_for_data_rejects_what_a_vit_cannot_take(shape, match):
    with pytest.raises(ValueError, match=rf"^ViT (needs )?{match}"):
        ViT.config_for_data(ViTConfig(), DataSpec(shape, 10))


# ---------------------------------------------------------------------------------------------
# Training: weight decay and an end-to-end run.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_position_table_and_class_token_are_not_weight_decayed(pool):
    model = _tiny(pool=pool)
    expected = {"position_embedding"} | ({"cls_token"} if pool == "cls" else set())
    assert model.no_weight_decay() == expected
    groups = {g["weight_decay"]: set(g["names"]) for g in param_groups(model, 0.05)}
    assert expected <= groups[0.0]
    assert {"norm.weight", "head.bias", "blocks.0.attn_norm.weight"} <= groups[0.0]
    assert {"patch_embedding.weight", "blocks.0.attn.qkv.weight", "head.weight"} <= groups[0.05]
    assert groups[0.05].isdisjoint(groups[0.0])


def test_vit_tiny_learns_digits_in_three_epochs(tmp_path):
    from fieldguide.api import train

    result = train("vit-tiny", "digits", epochs=3, runs_dir=tmp_path, progress="quiet")
    assert result.status == "finished"
    assert result.test_metrics["test/accuracy"] > 0.5  # chance is 0.1
    assert math.isfinite(result.test_metrics["test/loss"])
