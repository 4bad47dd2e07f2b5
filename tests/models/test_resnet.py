"""What defines a ResNet: torchvision's sizes, projection shortcuts, stems, zero-init, norms."""

import re

import pytest
import torch
from torch import nn

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNetConfig,
    Shortcut,
    make_norm,
)


def _blocks(model: ResNet) -> list[nn.Module]:
    return [block for stage in model.stages for block in stage]


# ---------------------------------------------------------------------------------------------
# Sizes.
# ---------------------------------------------------------------------------------------------


# torchvision's published parameter counts for its ImageNet models (1000 classes).
@pytest.mark.parametrize(
    ("name", "count"),
    [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)],
)
def test_parameter_counts_match_torchvision(name, count):
    model = create_model(name)
    assert model.config.out_dim == 1000
    assert model.num_parameters() == count


@pytest.mark.parametrize(
    ("name", "block", "depths", "feature_dim"),
    [
        ("resnet18", BasicBlock, [2, 2, 2, 2], 512),
        ("resnet34", BasicBlock, [3, 4, 6, 3], 512),
        ("resnet50", Bottleneck, [3, 4, 6, 3], 2048),
    ],
)
def test_presets_have_their_blocks_and_depths(name, block, depths, feature_dim):
    model = create_model(name)
    assert [len(stage) for stage in model.stages] == depths
    assert all(type(b) is block for b in _blocks(model))
    assert model.feature_dim == feature_dim == model.head.in_features


# ---------------------------------------------------------------------------------------------
# The guide's defect: a block that changes stride or width needs a projection shortcut.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_ch", "width", "stride", "size", "out_size"),
    [
        (16, 32, 2, 8, 4),  # stride and width
        (16, 16, 2, 8, 4),  # stride only
        (16, 32, 1, 8, 8),  # width only
        (16, 32, 2, 7, 4),  # odd size: both paths round the same way
    ],
)
def test_basic_block_projects_its_shortcut_when_the_shape_changes(
    in_ch, width, stride, size, out_size
):
    block = BasicBlock(in_ch, width, stride, "batch").eval()
    assert isinstance(block.shortcut, Shortcut)
    conv, norm = block.shortcut.conv, block.shortcut.norm
    assert conv.kernel_size == (1, 1) and conv.stride == (stride, stride) and conv.bias is None
    assert (conv.in_channels, conv.out_channels) == (in_ch, width)
    assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == width

    x = torch.randn(2, in_ch, size, size)
    with torch.no_grad():
        y = block(x)
        # y = relu(F(x) + shortcut(x)), spelled out.
        residual = block.norm2(block.conv2(torch.relu(block.norm1(block.conv1(x)))))
        expected = torch.relu(residual + norm(conv(x)))
    assert y.shape == (2, width, out_size, out_size)
    torch.testing.assert_close(y, expected)


def test_basic_block_keeps_the_identity_when_the_shape_is_unchanged():
    block = BasicBlock(16, 16, 1, "batch").eval()
    assert isinstance(block.shortcut, nn.Identity)
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        residual = block.norm2(block.conv2(torch.relu(block.norm1(block.conv1(x)))))
        torch.testing.assert_close(block(x), torch.relu(residual + x))


def test_bottleneck_expands_by_four_with_the_stride_on_the_3x3():
    assert Bottleneck.expansion == 4 and BasicBlock.expansion == 1
    block = Bottleneck(64, 16, 2, "batch").eval()
    assert block.conv1.kernel_size == (1, 1) and block.conv1.stride == (1, 1)
    assert block.conv2.kernel_size == (3, 3) and block.conv2.stride == (2, 2)  # ResNet v1.5
    assert block.conv3.out_channels == 64 and isinstance(block.shortcut, Shortcut)
    with torch.no_grad():
        assert block(torch.randn(2, 64, 8, 8)).shape == (2, 64, 4, 4)
    # Input width equal to 4 x width at stride 1: the identity suffices.
    assert isinstance(Bottleneck(64, 16, 1, "batch").shortcut, nn.Identity)
    assert isinstance(Bottleneck(16, 16, 1, "batch").shortcut, Shortcut)


def test_resnet50_stage_widths_are_four_times_the_inner_width():
    model = create_model("resnet50")
    last = [stage[-1].conv3.out_channels for stage in model.stages]
    assert last == [256, 512, 1024, 2048]
    firsts = [stage[0] for stage in model.stages]
    assert all(isinstance(b.shortcut, Shortcut) for b in firsts)  # 64 -> 256 needs one too
    assert all(isinstance(b.shortcut, nn.Identity) for s in model.stages for b in list(s)[1:])


# ---------------------------------------------------------------------------------------------
# Stems.
# ---------------------------------------------------------------------------------------------


def test_imagenet_stem_reduces_224_to_7x7_before_pooling():
    model = create_model("resnet18").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        stem = model.stem(x)
        assert stem.shape == (1, 64, 56, 56)
        assert model.stages(stem).shape == (1, 512, 7, 7)


def test_small_stem_keeps_8x8():
    model = create_model("resnet-tiny").eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        stem = model.stem(x)
        assert stem.shape == (2, 32, 8, 8)
        assert model.stages(stem).shape == (2, 128, 2, 2)  # two stride-2 stages after the first
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.stem)


@pytest.mark.parametrize("size", [(5, 7), (9, 9), (1, 1)])
def test_any_image_size_gives_logits(size):
    model = create_model("resnet-tiny").eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, *size))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


# ---------------------------------------------------------------------------------------------
# zero_init_residual.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_zero_init_residual_makes_each_block_relu_of_its_shortcut(block):
    model = create_model("resnet-tiny", block=block, zero_init_residual=True).eval()
    blocks = _blocks(model)
    assert blocks and all(b.last_norm().weight.eq(0).all() for b in blocks)
    # Only the last norm of each block is zeroed.
    assert all(b.norm1.weight.eq(1).all() for b in blocks)
    h = model.stem(torch.randn(2, 1, 8, 8))
    with torch.no_grad():
        for b in blocks:
            out = b(h)
            torch.testing.assert_close(out, torch.relu(b.shortcut(h)), atol=0, rtol=0)
            h = out


def test_without_zero_init_the_last_norms_start_at_one():
    model = create_model("resnet-tiny")
    assert all(b.last_norm().weight.eq(1).all() for b in _blocks(model))


# ---------------------------------------------------------------------------------------------
# Norms.
# ---------------------------------------------------------------------------------------------


def test_group_norm_replaces_every_batch_norm_and_trains_on_batch_one():
    model = create_model("resnet-tiny", norm="group").train()
    kinds = {type(m) for m in model.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
    x = torch.randn(1, 1, 8, 8)
    y = model(x)
    assert y.shape == (1, 10)
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_group_norm_is_batch_independent_even_in_train_mode():
    model = create_model("resnet-tiny", norm="group").train()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        batched = model(x)
        for i in range(3):
            torch.testing.assert_close(model(x[i : i + 1])[0], batched[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("channels", "groups"), [(64, 32), (48, 16), (24, 8), (12, 4), (6, 2), (3, 1)]
)
def test_group_norm_uses_the_largest_group_count_that_divides(channels, groups):
    norm = make_norm("group", channels)
    assert isinstance(norm, nn.GroupNorm)
    assert norm.num_groups == groups and norm.num_channels == channels


# ---------------------------------------------------------------------------------------------
# Data and input checks.
# ---------------------------------------------------------------------------------------------


def test_config_for_data_takes_channels_and_classes():
    base = ResNetConfig(stem="small", widths=(8, 16, 32, 64))
    config = ResNet.config_for_data(base, DataSpec((3, 32, 32), 7))
    assert (config.in_channels, config.out_dim) == (3, 7)
    assert config.widths == base.widths and config.stem == "small"
    model = ResNet(config).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_config_for_data_rejects_non_image_samples():
    with pytest.raises(
        ValueError, match=re.escape("(C, H, W); the data gives examples of shape (64,)")
    ):
        ResNet.config_for_data(ResNetConfig(), DataSpec((64,), 10))


def test_missing_batch_axis_message_is_exact():
    model = create_model("resnet18").eval()
    message = "resnet18 expects images x of shape (B, 3, H, W); got (3, 32, 32)."
    with pytest.raises(ValueError, match=re.escape(message)) as excinfo:
        model(torch.randn(3, 32, 32))
    assert str(excinfo.value) == message


def test_wrong_channel_count_is_rejected():
    model = create_model("resnet-tiny").eval()
    message = "resnet-tiny expects images x of shape (B, 1, H, W); got (2, 3, 8, 8)."
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(2, 3, 8, 8))


def test_integer_images_are_rejected():
    model = create_model("resnet-tiny").eval()
    with pytest.raises(TypeError, match="resnet-tiny expects images x as a floating-point tensor"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
