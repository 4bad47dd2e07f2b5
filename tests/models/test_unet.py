"""What defines a U-Net: any input size, skips that matter, a measured receptive field, norms."""

import re
from itertools import pairwise

import pytest
import torch
from torch import nn

from fieldguide import create_model
from fieldguide.api.trace import trace
from fieldguide.models.base import DataSpec
from fieldguide.models.unet import (
    MAX_DEPTH,
    ConvBlock,
    UNet,
    UNetConfig,
    make_norm,
    mirror_pad,
)


def tiny(**overrides) -> UNet:
    """A U-Net of width 4 (depth 2 unless overridden), seeded."""
    torch.manual_seed(0)
    return UNet(UNetConfig(**({"hidden_dim": 4, "depth": 2} | overrides)))


# ---------------------------------------------------------------------------------------------
# Sizes: parameter counts by hand.
# ---------------------------------------------------------------------------------------------


def count_by_hand(in_ch: int, k: int, widths: list[int], upsample: str) -> int:
    """Parameters of the non-residual U-Net with a norm (2 affine parameters per channel).

    A block (c_in -> c) is two bias-free 3x3 convolutions and two norms: 9 c_in c + 9 c² + 4c.
    An up step (w' -> w) is a 2x2 transposed convolution with bias, 4 w' w + w, or a 1x1
    convolution after bilinear upsampling, w' w + w; its block reads the skip too (2w -> w).
    The head is a 1x1 convolution with bias: w_0 k + k.
    """

    def block(c_in, c):
        return 9 * c_in * c + 9 * c * c + 4 * c

    taps = 4 if upsample == "transpose" else 1
    total = block(in_ch, widths[0]) + sum(block(a, b) for a, b in pairwise(widths))
    total += sum(taps * b * a + a + block(2 * a, a) for a, b in pairwise(widths))
    return total + widths[0] * k + k


PAPER = [64, 128, 256, 512, 1024]


@pytest.mark.parametrize(
    ("name", "overrides", "count"),
    [
        # The paper's widths, grey input, 2 classes: 31.0 M (18.8 M encoder, 12.2 M decoder).
        ("unet", {}, 31_036_546),
        # RGB in, one logit out: the 31,037,633 often quoted for same-padded U-Nets with norms.
        ("unet", {"in_channels": 3, "out_dim": 1}, 31_037_633),
        ("unet", {"norm": "batch"}, 31_036_546),  # BatchNorm has GroupNorm's 2 per channel
        ("unet", {"upsample": "bilinear"}, 28_947_586),  # 1x1 instead of 2x2 up-convolutions
        ("unet-small", {}, 482_449),
        ("unet-tiny", {}, 29_481),
    ],
)
def test_parameter_counts_match_the_hand_formula(name, overrides, count):
    model = create_model(name, **overrides)
    c = model.config
    assert model.num_parameters() == count
    assert count == count_by_hand(c.in_channels, c.out_dim, list(c.widths), c.upsample)


def test_the_classic_preset_has_the_papers_widths():
    model = create_model("unet")
    assert model.config.widths == tuple(PAPER) and model.config.depth == 4
    assert [d.block.conv2.out_channels for d in model.downs] == PAPER[1:]
    assert [u.block.conv2.out_channels for u in model.ups] == PAPER[-2::-1]  # 512 ... 64
    assert model.head.in_channels == 64 and model.head.kernel_size == (1, 1)


def test_without_a_norm_each_conv_has_a_bias_instead_of_two_affine_parameters():
    with_norm = tiny(norm="group").num_parameters()
    convs = [m for m in tiny().modules() if isinstance(m, nn.Conv2d) and m.bias is None]
    # A 3x3 conv of c outputs gains c biases and loses its norm's 2c parameters.
    assert tiny(norm="none").num_parameters() == with_norm - sum(c.out_channels for c in convs)


def test_channel_mults_set_each_levels_width():
    model = tiny(hidden_dim=3, channel_mults=(1, 1, 2))
    assert model.config.widths == (3, 3, 6)
    assert model.downs[-1].block.conv1.out_channels == 6


def test_residual_blocks_add_a_projection_only_where_the_width_changes():
    model = tiny(residual=True)
    assert isinstance(model.stem.shortcut, nn.Sequential)  # in_channels 1 -> 4
    assert all(isinstance(u.block.shortcut, nn.Sequential) for u in model.ups)  # 2w -> w
    block = ConvBlock(4, 4, norm="none", dropout=0.0, residual=True).eval()
    assert isinstance(block.shortcut, nn.Identity)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        body = block.conv2(torch.relu(block.conv1(x)))
        torch.testing.assert_close(block(x), torch.relu(body + x))


# ---------------------------------------------------------------------------------------------
# Any input size: the guide's defect (§3) fails on torch.cat when H or W is not a multiple of 8.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [(1, 1), (1, 2), (2, 1), (3, 5), (4, 4), (7, 8), (16, 15), (61, 67), (1, 37)]
)
@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_output_has_the_input_size(size, pad_mode):
    model = tiny(depth=3, pad_mode=pad_mode).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, *size))
    assert y.shape == (2, 1, *size) and torch.isfinite(y).all()


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_one_pixel_at_the_depth_limit_trains(pad_mode):
    # 1x1 is padded to 256x256 and pooled back to 1x1 at the bottleneck; GroupNorm still has
    # two channels per group there, so even a batch of one trains.
    model = UNet(
        UNetConfig(hidden_dim=2, depth=MAX_DEPTH, channel_mults=(1,) * 9, pad_mode=pad_mode)
    )
    y = model(torch.randn(1, 1, 1, 1))
    assert y.shape == (1, 1, 1, 1)
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("out_dim", [1, 5])
def test_binary_and_multiclass_logits(out_dim):
    model = tiny(out_dim=out_dim, in_channels=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 13, 11)).shape == (2, out_dim, 13, 11)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 61, 67])
@pytest.mark.parametrize("depth", [1, 3])
def test_pad_reaches_a_multiple_and_crops_back_exactly(size, depth):
    multiple = 2**depth
    x = torch.arange(float(size * (size + 2))).view(1, 1, size, size + 2)
    for pad_mode in ("reflect", "zeros"):
        padded, (rows, cols) = tiny(depth=depth, pad_mode=pad_mode).pad(x)
        assert padded.shape[2] % multiple == 0 and padded.shape[3] % multiple == 0
        assert padded.shape[2] - size < multiple and padded.shape[3] - size - 2 < multiple
        assert torch.equal(padded[:, :, rows, cols], x)
        outside = padded.clone()
        outside[:, :, rows, cols] = 0
        if pad_mode == "zeros":
            assert not outside.any()
        else:  # mirrored: every padded pixel is a copy of one of the image's own values
            assert torch.isin(padded, x).all()


def test_mirror_pad_equals_torch_reflect_where_that_works_and_continues_beyond():
    x = torch.arange(4.0).view(1, 1, 1, 4)  # columns 0 1 2 3
    reflect = nn.functional.pad(x, (3, 2, 0, 0), mode="reflect")
    assert torch.equal(mirror_pad(x, 3, 2, axis=-1), reflect)
    # Wider than the row (torch refuses): the mirror image continues, period 6.
    assert mirror_pad(x, 7, 0, axis=-1).flatten().tolist() == [1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    wide = mirror_pad(x, 9, 11, axis=-1).flatten().tolist()
    assert wide == [[0, 1, 2, 3, 2, 1][i % 6] for i in range(-9, 4 + 11)]
    assert mirror_pad(x.mT, 2, 1, axis=-2).flatten().tolist() == [2, 1, 0, 1, 2, 3, 2]
    one = torch.tensor([[[[5.0]]]])
    assert mirror_pad(one, 2, 3, axis=-1).flatten().tolist() == [5.0] * 6


def test_reflect_and_zeros_agree_where_nothing_is_padded_and_differ_where_it_is():
    reflect, zeros = tiny(pad_mode="reflect").eval(), tiny(pad_mode="zeros").eval()
    x = torch.randn(1, 1, 12, 8)  # multiples of 4: no padding at depth 2
    with torch.no_grad():
        torch.testing.assert_close(reflect(x), zeros(x), atol=0, rtol=0)
        odd = x[:, :, :11, :7]
        assert not torch.allclose(reflect(odd), zeros(odd))


# ---------------------------------------------------------------------------------------------
# Every configuration trains: upsampling, norms, residual blocks.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", ["group", "batch", "none"])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_gradient_reaches_every_parameter(upsample, norm, residual):
    model = tiny(upsample=upsample, norm=norm, residual=residual, dropout=0.1).train()
    x = torch.randn(2, 1, 9, 10)
    y = model(x)
    assert y.shape == (2, 1, 9, 10)
    (y * torch.randn_like(y)).sum().backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not silent, f"parameters without a gradient: {silent}"
    kinds = {type(m) for m in model.modules()}
    expected = {"group": nn.GroupNorm, "batch": nn.BatchNorm2d, "none": None}[norm]
    assert (nn.GroupNorm in kinds) == (expected is nn.GroupNorm)
    assert (nn.BatchNorm2d in kinds) == (expected is nn.BatchNorm2d)
    assert (nn.ConvTranspose2d in kinds) == (upsample == "transpose")


@pytest.mark.parametrize(
    ("channels", "groups"),
    [(1024, 32), (64, 32), (32, 16), (16, 8), (12, 4), (8, 4), (6, 2), (2, 1)],
)
def test_group_norm_takes_the_most_groups_of_at_least_two_channels(channels, groups):
    norm = make_norm("group", channels)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == groups


def test_dropout_is_random_in_training_and_off_in_eval():
    model = tiny(dropout=0.5)
    x = torch.randn(1, 1, 8, 8)
    assert not torch.equal(model.train()(x), model(x))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(x))


# ---------------------------------------------------------------------------------------------
# Norms and the batch (guide §16: BatchNorm with tiny batches; switch to GroupNorm).
# ---------------------------------------------------------------------------------------------


def _alone_equals_batched(model: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        batched = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(x.shape[0])])
    return torch.allclose(alone, batched, atol=1e-5, rtol=1e-5)


def test_group_norm_is_batch_independent_in_training_and_batch_norm_is_not():
    x = torch.randn(2, 1, 12, 12)  # batch 2, the small batches segmentation trains on
    assert _alone_equals_batched(tiny(norm="group").train(), x)
    assert _alone_equals_batched(tiny(norm="none").train(), x)
    assert not _alone_equals_batched(tiny(norm="batch").train(), x)


def test_batch_norm_is_batch_independent_in_eval():
    model = tiny(norm="batch")
    model.train()(torch.randn(4, 1, 12, 12))  # move the running statistics
    assert _alone_equals_batched(model.eval(), torch.randn(3, 1, 12, 12))


def test_batch_norm_refuses_one_image_that_shrinks_to_one_pixel_in_training():
    model = tiny(norm="batch").train()  # depth 2: a 3x4 image pools to 1x1
    message = (
        "unet expects images x to leave BatchNorm more than one value per channel in "
        "training, but one 3x4 image shrinks to 1x1 at depth 2; train on batches of 2 or "
        "more, or use norm='group'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(1, 1, 3, 4))
    assert model(torch.randn(2, 1, 3, 4)).shape == (2, 1, 3, 4)  # two values: fine
    assert model(torch.randn(1, 1, 5, 4)).shape == (1, 1, 5, 4)  # 2x1 at the bottom: fine
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 3, 4)).shape == (1, 1, 3, 4)  # running stats


# ---------------------------------------------------------------------------------------------
# Skips are really used, and the diagram shows them.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_zeroing_any_one_skip_changes_the_output(upsample):
    model = tiny(depth=3, upsample=upsample).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        full = model(x)
    for level, up in enumerate(model.skip_modules()):  # deepest first
        handle = up.register_forward_pre_hook(
            lambda _m, args: (args[0], torch.zeros_like(args[1]), *args[2:])
        )
        with torch.no_grad():
            cut = model(x)
        handle.remove()
        changed = (cut - full).abs() > 1e-6
        assert changed.any(), f"skip {level} is not used"
        # The shallowest skip feeds the last block directly: most pixels change.
        if up is model.ups[-1]:
            assert changed.float().mean() > 0.5


def test_skip_features_are_the_encoders_own():
    model = tiny(depth=2).eval()
    x = torch.randn(1, 1, 8, 8)
    seen = []
    for up in model.ups:
        up.register_forward_pre_hook(lambda _m, args: seen.append(args[1]))
    with torch.no_grad():
        stem = model.stem(x)
        level1 = model.downs[0](stem)
        model(x)
    torch.testing.assert_close(seen[0], level1)
    torch.testing.assert_close(seen[1], stem)


def test_diagram_shows_a_concatenation_fed_from_both_levels():
    model = create_model("unet-tiny")
    graph = trace(model, model.example_input(1), depth=2)
    concats = [n for n in graph.nodes if n.kind == "concat"]
    assert len(concats) == model.config.depth
    groups = {n.id: n.group for n in graph.nodes}
    for concat in concats:
        sources = {groups[s] for s, t in graph.edges if t == concat.id}
        # One input is the upsampled path inside the Up block, the other an encoder level.
        assert concat.group in sources
        assert sources - {concat.group} <= {"g_stem", "g_downs.0", "g_downs.1"}
        assert len(sources) == 2


# ---------------------------------------------------------------------------------------------
# Receptive field: traced from the layers, measured by gradients.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides", "field"),
    [
        ("unet-tiny", {}, 44),
        ("unet-small", {}, 100),
        ("unet", {}, 204),
        ("unet-tiny", {"upsample": "bilinear"}, 52),
        ("unet-tiny", {"depth": 1}, 18),
    ],
)
def test_receptive_field_of_presets(name, overrides, field):
    assert create_model(name, **overrides).receptive_field == field


def _measured_spans(model: UNet, size: int, batch: int) -> list[int]:
    """Rows of the input whose gradient reaches output pixel (p, p), for p over one 2^d cell."""
    torch.manual_seed(1)
    x = torch.rand(batch, 1, size, size, requires_grad=True)
    y = model(x)
    cell = 2**model.config.depth
    start = size // 2 - size // 2 % cell  # aligned to the grid, far from the borders
    spans = []
    for p in range(start, start + cell):
        (grad,) = torch.autograd.grad(y[:, 0, p, p].sum(), x, retain_graph=True)
        rows = grad.abs().sum((0, 1, 3)).nonzero().flatten()
        spans.append(int(rows.max() - rows.min() + 1))
    return spans


def _all_positive(model: UNet) -> UNet:
    # Positive weights on positive inputs keep every ReLU open, so no gradient dies on the way.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_receptive_field_equals_the_gradient_measurement(upsample):
    # norm "none": GroupNorm's statistics would make every pixel see every other pixel. Max
    # pooling sends a gradient to one pixel of each window, so a batch of random images is
    # needed for every pixel of the field to be some image's maximum.
    model = _all_positive(tiny(depth=2, norm="none", pad_mode="zeros", upsample=upsample))
    spans = _measured_spans(model, size=112, batch=24)  # 112 > 2 x 52, a multiple of 4
    traced = [hi - lo + 1 for lo, hi in map(model._input_span, range(4))]
    assert spans == traced
    assert max(spans) == model.receptive_field


def test_receptive_field_at_depth_three_with_average_pooling_for_the_gradient():
    # At depth 3 a batch would need hundreds of images to hit every maximum; average pooling
    # reads the same 2x2 windows and passes a gradient to all four pixels.
    model = _all_positive(tiny(depth=3, norm="none", pad_mode="zeros"))
    field = model.receptive_field
    traced = [hi - lo + 1 for lo, hi in map(model._input_span, range(8))]
    for down in model.downs:
        down.pool = nn.AvgPool2d(2)
    spans = _measured_spans(model, size=216, batch=1)  # 216 > 2 x 100, a multiple of 8
    assert spans == traced and max(spans) == field == 100


# ---------------------------------------------------------------------------------------------
# Composable blocks: a subclass feeds an extra input (a time embedding, later) to every block.
# ---------------------------------------------------------------------------------------------


class ShiftBlock(nn.Module):
    """A ConvBlock whose output is shifted per channel by an embedding (B, D)."""

    def __init__(self, in_ch: int, out_ch: int, dim: int) -> None:
        super().__init__()
        self.inner = ConvBlock(in_ch, out_ch, norm="group", dropout=0.0, residual=False)
        self.shift = nn.Linear(dim, out_ch)

    def path(self):
        return self.inner.path()

    def forward(self, x, emb):
        return self.inner(x) + self.shift(emb)[:, :, None, None]


class ShiftedUNet(UNet):
    def make_block(self, in_ch, out_ch):
        return ShiftBlock(in_ch, out_ch, dim=3)

    def forward(self, x, emb):
        padded, (rows, cols) = self.pad(x)
        return self.head(self.features(padded, emb))[:, :, rows, cols]


def test_a_subclass_can_feed_an_embedding_to_every_block():
    torch.manual_seed(0)
    model = ShiftedUNet(UNetConfig(hidden_dim=4, depth=2)).eval()
    x, emb = torch.randn(2, 1, 7, 9), torch.randn(2, 3)
    blocks = [m for m in model.modules() if isinstance(m, ShiftBlock)]
    assert len(blocks) == 1 + 2 * model.config.depth  # stem, each Down and each Up
    calls = []
    for block in blocks:
        block.register_forward_hook(lambda m, args, out: calls.append(args[1]))
    with torch.no_grad():
        y = model(x, emb)
        assert y.shape == (2, 1, 7, 9)
        assert all(c is emb for c in calls) and len(calls) == len(blocks)
        assert not torch.allclose(model(x, torch.zeros_like(emb)), y)
    assert model.receptive_field == tiny().receptive_field


# ---------------------------------------------------------------------------------------------
# Data and bad input: one sentence naming the argument, what was expected and what was given.
# ---------------------------------------------------------------------------------------------


def test_config_for_data_takes_channels_and_classes_per_pixel():
    base = UNetConfig(hidden_dim=8, depth=3, norm="batch")
    config = UNet.config_for_data(base, DataSpec((3, 61, 67), 4, output="per-pixel"))
    assert (config.in_channels, config.out_dim) == (3, 4)
    assert (config.hidden_dim, config.depth, config.norm) == (8, 3, "batch")


def test_config_for_data_refuses_one_output_per_image():
    message = "UNet gives one output per pixel; this task needs one per example."
    with pytest.raises(ValueError, match=re.escape(message)):
        UNet.config_for_data(UNetConfig(), DataSpec((3, 32, 32), 10))


def test_config_for_data_refuses_vectors():
    with pytest.raises(ValueError, match=re.escape("(C, H, W); the data gives examples of shape")):
        UNet.config_for_data(UNetConfig(), DataSpec((64,), 2, output="per-pixel"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"depth": 0}, "UNetConfig.depth must be between 1 and 8 downsamplings, got 0"),
        ({"depth": 9}, "UNetConfig.depth must be between 1 and 8 downsamplings, got 9"),
        ({"hidden_dim": 0}, "UNetConfig.hidden_dim must be at least 1, got 0."),
        ({"out_dim": 0}, "UNetConfig.out_dim must be at least 1, got 0."),
        ({"in_channels": -1}, "UNetConfig.in_channels must be at least 1, got -1."),
        (
            {"channel_mults": (1, 2)},
            "UNetConfig.channel_mults must hold depth + 1 = 3 positive multipliers, one per "
            "level, or be empty to double per level; got (1, 2).",
        ),
        ({"channel_mults": (1, 0, 2)}, "UNetConfig.channel_mults must hold depth + 1 = 3"),
        ({"norm": "layer"}, "UNetConfig.norm must be one of ('group', 'batch', 'none'), got"),
        ({"upsample": "nearest"}, "UNetConfig.upsample must be one of ('transpose', 'bilinear')"),
        ({"pad_mode": "circular"}, "UNetConfig.pad_mode must be one of ('reflect', 'zeros')"),
        ({"dropout": 1.0}, r"UNetConfig.dropout must be in [0, 1), got 1.0."),
    ],
)
def test_bad_config_is_one_sentence_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)) as excinfo:
        UNetConfig(**({"depth": 2} | overrides))
    text = str(excinfo.value)
    assert "\n" not in text and text.endswith(".")


def test_create_model_checks_the_choice_fields_by_type():
    with pytest.raises(TypeError, match=r"^unet-tiny override 'upsample' expects"):
        create_model("unet-tiny", upsample="nearest")


def test_wrong_channel_count_is_rejected():
    model = create_model("unet-tiny").eval()
    message = "unet-tiny expects images x of shape (B, 1, H, W); got (2, 3, 8, 8)."
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_an_empty_image_is_rejected(size):
    model = create_model("unet-tiny").eval()
    with pytest.raises(ValueError, match=r"^unet-tiny expects images x of at least 1x1 pixels"):
        model(torch.randn(1, 1, *size))


def test_an_empty_batch_gives_an_empty_output():
    model = create_model("unet-tiny").eval()
    with torch.no_grad():
        assert model(torch.randn(0, 1, 5, 7)).shape == (0, 1, 5, 7)
