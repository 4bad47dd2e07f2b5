"""What defines attention: torch's parity, boolean masks that combine, empty rows, the KV cache."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fieldguide.layers import attention as attention_module
from fieldguide.layers.attention import (
    KVCache,
    MultiHeadAttention,
    SwiGLU,
    TransformerBlock,
    rotate,
)

DIM, HEADS = 16, 4


def _attention(seed: int = 0, **kwargs) -> MultiHeadAttention:
    torch.manual_seed(seed)
    attn = MultiHeadAttention(DIM, HEADS, **kwargs).eval()
    with torch.no_grad():  # biases start at zero in nn.Linear's init only by chance of scale
        for p in attn.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.1)
    return attn


def _padding(lengths: list[int], t: int) -> torch.Tensor:
    """(B, T) bool, True at real tokens: the first lengths[b] steps of each row."""
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


def _torch_mha(attn: MultiHeadAttention) -> nn.MultiheadAttention:
    """torch's module holding the same weights (in_proj rows: q, k, v)."""
    reference = nn.MultiheadAttention(DIM, HEADS, batch_first=True).eval()
    with torch.no_grad():
        if attn.cross:
            weight = torch.cat([attn.query.weight, attn.key_value.weight])
            bias = torch.cat([attn.query.bias, attn.key_value.bias])
        else:
            weight, bias = attn.qkv.weight, attn.qkv.bias
        reference.in_proj_weight.copy_(weight)
        reference.in_proj_bias.copy_(bias)
        reference.out_proj.weight.copy_(attn.output.weight)
        reference.out_proj.bias.copy_(attn.output.bias)
    return reference


def _by_hand(attn, x, padding_mask=None, causal=False, context=None):
    """Textbook attention in float64 with -inf masking; rows that see no key give zero."""
    attn = attn.double()
    x = x.double()
    b, t, _ = x.shape
    if attn.cross:
        q = attn.query(x)
        k, v = attn.key_value(context.double()).chunk(2, -1)
    else:
        q, k, v = attn.qkv(x).chunk(3, -1)
    s = k.shape[1]

    def heads(z):
        return z.view(b, z.shape[1], HEADS, DIM // HEADS).transpose(1, 2)  # (B, h, T, D/h)

    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(DIM // HEADS)  # (B, h, T, S)
    allowed = torch.ones(b, t, s, dtype=torch.bool)
    if causal:
        allowed &= torch.ones(t, s, dtype=torch.bool).tril(s - t)
    if padding_mask is not None:
        allowed &= padding_mask[:, None, :]
    weights = scores.masked_fill(~allowed[:, None], -math.inf).softmax(-1).nan_to_num(0.0)
    out = attn.output((weights @ v).transpose(1, 2).reshape(b, t, DIM))
    return out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)


# ---------------------------------------------------------------------------------------------
# Parity with nn.MultiheadAttention and with textbook attention.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_equals_torch_multihead_attention(padded, causal):
    attn = _attention()
    reference = _torch_mha(attn)
    x = torch.randn(3, 7, DIM)
    mask = _padding([7, 4, 2], 7) if padded else None
    with torch.no_grad():
        out, _ = attn(x, padding_mask=mask, causal=causal)
        expected, _ = reference(
            x,
            x,
            x,
            key_padding_mask=None if mask is None else ~mask,  # torch: True = ignore
            attn_mask=torch.ones(7, 7, dtype=torch.bool).triu(1) if causal else None,
            need_weights=False,
        )
    if mask is not None:  # torch's rows beyond a sequence's end are not compared
        out, expected = out * mask[..., None], expected * mask[..., None]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
def test_cross_attention_equals_torch_multihead_attention(padded):
    attn = _attention(cross=True)
    reference = _torch_mha(attn)
    x, context = torch.randn(2, 5, DIM), torch.randn(2, 9, DIM)
    mask = _padding([9, 3], 9) if padded else None
    with torch.no_grad():
        out, _ = attn(x, context, padding_mask=mask)
        expected, _ = reference(
            x,
            context,
            context,
            key_padding_mask=None if mask is None else ~mask,
            need_weights=False,
        )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cross", [False, True])
def test_padding_and_causal_combine_like_a_float64_softmax_by_hand(cross):
    attn = _attention(cross=cross).double()
    torch.manual_seed(1)
    x = torch.randn(4, 6, DIM, dtype=torch.float64)
    context = torch.randn(4, 6, DIM, dtype=torch.float64) if cross else None
    # Left padding as well as right: with causality, a row's first queries may see no key.
    mask = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 0, 0, 0],
            [0, 0, 1, 1, 1, 1],
            [0, 1, 0, 1, 0, 1],
        ],
        dtype=torch.bool,
    )
    with torch.no_grad():
        out, _ = attn(x, context, padding_mask=mask, causal=not cross)
        expected = _by_hand(attn, x, mask, causal=not cross, context=context)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
    if not cross:
        # Rows 2 (queries 0, 1) and 3 (query 0) had no key before or at them: exactly zero.
        assert torch.equal(out[2, :2], torch.zeros(2, DIM))
        assert torch.equal(out[3, 0], torch.zeros(DIM))


def test_causal_without_padding_uses_sdpa_is_causal_and_builds_no_mask(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        calls.append((q.ndim, attn_mask is None, is_causal))
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    attn = _attention()
    x = torch.randn(2, 5, DIM)
    with torch.no_grad():
        _, cache = attn(x, causal=True)
        attn(x[:, :1], causal=True, cache=cache)  # one new query sees every cached key
        attn(x[:, :2], causal=True, cache=cache)  # two need the bottom-right mask
    assert calls == [(4, True, True), (4, True, False), (4, False, False)]


# ---------------------------------------------------------------------------------------------
# Rows with no key to see, and low precision.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_fully_padded_rows_give_zeros_not_nan(dtype, causal):
    attn = _attention().to(dtype)
    x = torch.randn(3, 5, DIM).to(dtype)
    mask = _padding([5, 0, 2], 5)  # row 1 has no real key at all
    with torch.no_grad():
        out, _ = attn(x, padding_mask=mask, causal=causal)
    assert out.dtype == dtype
    assert not torch.isnan(out).any()
    assert torch.equal(out[1], torch.zeros(5, DIM, dtype=dtype))
    assert out[0].abs().sum() > 0


def test_sdpa_never_gets_a_row_without_an_allowed_key(monkeypatch):
    # Some SDPA kernels return NaN for such rows; they are opened before the call.
    masks = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        masks.append(attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    attn = _attention()
    mask = _padding([5, 0, 2], 5)
    mask[2, 0] = False  # left padding: causally, query 0 of row 2 sees nothing
    with torch.no_grad():
        attn(torch.randn(3, 5, DIM), padding_mask=mask, causal=True)
        attn(torch.randn(3, 5, DIM), padding_mask=mask)
    assert len(masks) == 2
    assert all(m.any(-1).all() for m in masks)


def test_fully_padded_rows_give_finite_gradients():
    attn = _attention().train()
    x = torch.randn(2, 4, DIM, requires_grad=True)
    out, _ = attn(x, padding_mask=_padding([4, 0], 4), causal=True)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters())
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_masks_in_half_precision_stay_finite_and_close_to_float32(dtype, tol):
    attn = _attention(rotary=True)
    x = torch.randn(3, 9, DIM)
    mask = _padding([9, 5, 1], 9)
    with torch.no_grad():
        expected, _ = attn(x, padding_mask=mask, causal=True)
        out, _ = attn.to(dtype)(x.to(dtype), padding_mask=mask, causal=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)


# ---------------------------------------------------------------------------------------------
# KV cache: bottom-right causal alignment, any chunking.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("chunks", [[8], [3, 5], [5, 1, 2], [1] * 8])
def test_cached_chunks_equal_the_full_causal_pass(rotary, chunks):
    attn = _attention(rotary=rotary)
    x = torch.randn(2, 8, DIM)
    with torch.no_grad():
        full, full_cache = attn(x, causal=True)
        outs, cache, start = [], None, 0
        for size in chunks:
            out, cache = attn(x[:, start : start + size], causal=True, cache=cache)
            outs.append(out)
            start += size
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-6, rtol=1e-5)
    assert cache.length == 8
    torch.testing.assert_close(cache.k, full_cache.k, atol=1e-6, rtol=1e-5)


def test_cached_chunks_with_padding_equal_the_full_pass():
    attn = _attention()
    x = torch.randn(3, 7, DIM)
    mask = _padding([7, 4, 6], 7) | (torch.arange(7) == 6)  # a real token after padding too
    mask[2, 0] = False  # and a left-padded row
    with torch.no_grad():
        full, _ = attn(x, padding_mask=mask, causal=True)
        first, cache = attn(x[:, :3], padding_mask=mask[:, :3], causal=True)
        # The mask covers every key attended: the 3 cached steps and the 4 new ones.
        rest, _ = attn(x[:, 3:], padding_mask=mask, causal=True, cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-6, rtol=1e-5)


def test_cross_attention_cache_is_the_projected_context_reused():
    attn = _attention(cross=True)
    x, context = torch.randn(2, 4, DIM), torch.randn(2, 6, DIM)
    with torch.no_grad():
        expected, cache = attn(x, context)
        again, same = attn(x, cache=attn.context_cache(context))
    torch.testing.assert_close(again, expected, atol=0, rtol=0)
    assert cache.length == same.length == 6


def test_cache_select_reorders_batch_rows():
    k, v = torch.randn(3, 2, 4, 5), torch.randn(3, 2, 4, 5)
    picked = KVCache(k, v).select(torch.tensor([2, 2, 0]))
    assert torch.equal(picked.k, k[[2, 2, 0]]) and torch.equal(picked.v, v[[2, 2, 0]])


# ---------------------------------------------------------------------------------------------
# Rotary positions.
# ---------------------------------------------------------------------------------------------


def test_rotary_scores_depend_on_the_offset_between_positions_only():
    torch.manual_seed(0)
    q, k = (
        torch.randn(1, 1, 1, 8, dtype=torch.float64),
        torch.randn(1, 1, 1, 8, dtype=torch.float64),
    )

    def score(i: int, j: int) -> float:
        return float((rotate(q, torch.tensor([i])) * rotate(k, torch.tensor([j]))).sum())

    for i, j in [(0, 0), (5, 2), (2, 5), (7, 7)]:
        for shift in (1, 13, 1000):
            assert score(i + shift, j + shift) == pytest.approx(score(i, j), abs=1e-9)
    assert score(5, 2) != pytest.approx(score(2, 5), abs=1e-3), "the direction matters"
    # A rotation keeps each vector's norm, and position 0 is the identity.
    torch.testing.assert_close(rotate(q, torch.tensor([0])), q)
    torch.testing.assert_close(rotate(q, torch.tensor([9])).norm(), q.norm())


def test_rotary_attention_gives_the_same_output_at_any_absolute_offset():
    # Shifting every position by the same amount changes no score: prefill 5 junk steps and
    # then attend only among the new ones (the junk padded out) to see the same output.
    attn = _attention(rotary=True)
    x, junk = torch.randn(2, 4, DIM), torch.randn(2, 5, DIM)
    with torch.no_grad():
        expected, _ = attn(x, causal=True)
        _, cache = attn(junk, causal=True)
        mask = torch.arange(9)[None, :].expand(2, 9) >= 5
        shifted, _ = attn(x, padding_mask=mask, causal=True, cache=cache)
    torch.testing.assert_close(shifted, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The block, and arguments refused.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_block_is_two_residual_branches_around_pre_norms(mlp):
    block = TransformerBlock(DIM, HEADS, mlp=mlp, mlp_ratio=3.0).eval()
    assert isinstance(block.attn_norm, nn.LayerNorm) and isinstance(block.mlp_norm, nn.LayerNorm)
    assert block.cross_attn is None
    x = torch.randn(2, 5, DIM)
    with torch.no_grad():
        attn_out, _ = block.attn(block.attn_norm(x), causal=True)
        h = x + attn_out
        expected = h + block.mlp(block.mlp_norm(h))
        out, _ = block(x, causal=True)
    torch.testing.assert_close(out, expected)
    # With both branches' last projections zeroed, the block is the identity.
    with torch.no_grad():
        for linear in (block.attn.output, block.mlp.down):
            linear.weight.zero_()
            linear.bias.zero_()
        torch.testing.assert_close(block(x)[0], x, atol=0, rtol=0)


def test_swiglu_holds_about_as_many_weights_as_the_gelu_mlp():
    gelu = TransformerBlock(48, 4, mlp="gelu").mlp
    swiglu = TransformerBlock(48, 4, mlp="swiglu").mlp
    assert isinstance(swiglu, SwiGLU)
    count = [sum(p.numel() for p in m.parameters() if p.ndim == 2) for m in (gelu, swiglu)]
    assert count[0] == count[1] == 2 * 48 * 192


def test_cross_block_reads_the_context_and_masks_its_padding():
    torch.manual_seed(0)
    block = TransformerBlock(DIM, HEADS, cross=True).eval()
    x, context = torch.randn(2, 3, DIM), torch.randn(2, 6, DIM)
    mask = _padding([6, 4], 6)
    other = context.clone()
    other[1, 4:] = 1e3  # new garbage in the padded context steps
    with torch.no_grad():
        out, _ = block(x, context, context_padding_mask=mask, causal=True)
        again, _ = block(x, other, context_padding_mask=mask, causal=True)
        changed, _ = block(x, context * 2, context_padding_mask=mask, causal=True)
    torch.testing.assert_close(again, out, atol=0, rtol=0)
    assert (changed - out).abs().max() > 1e-3


def test_a_float_padding_mask_is_refused_since_sdpa_would_add_it():
    attn = _attention()
    with pytest.raises(TypeError, match="padding_mask .*bool.*got dtype torch.float32"):
        attn(torch.randn(2, 3, DIM), padding_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"padding_mask .*\(2, 3\).*got \(2, 4\)"):
        attn(torch.randn(2, 3, DIM), padding_mask=torch.ones(2, 4, dtype=torch.bool))


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="even head width"):
        MultiHeadAttention(12, 4, rotary=True)
    with pytest.raises(ValueError, match="self-attention only"):
        MultiHeadAttention(16, 4, rotary=True, cross=True)
    with pytest.raises(ValueError, match="mlp 'gelu' or 'swiglu'"):
        TransformerBlock(16, 4, mlp="relu")
    with pytest.raises(ValueError, match="no causal mask"):
        _attention(cross=True)(torch.randn(1, 2, DIM), torch.randn(1, 3, DIM), causal=True)
