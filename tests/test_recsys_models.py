"""What defines the recommender family: padding never pools, crosses hash stably, parts learn.

Wide & Deep, DLRM and the two-tower retriever (fieldguide/models/recsys.py).
"""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.recsys import (
    DLRM,
    DLRMConfig,
    FieldBags,
    TwoTower,
    TwoTowerConfig,
    WideDeep,
    WideDeepConfig,
    cross_buckets,
)

FIELDS_MODELS = ["wide-deep-tiny", "dlrm-tiny"]


def _bags(batch: int, rows: tuple[int, ...], length: int, seed: int = 0):
    """ids (B, F, length), 0..length real ids per bag (field 0 exactly one), and weights."""
    g = torch.Generator().manual_seed(seed)
    f = len(rows)
    high = torch.tensor(rows).view(1, f, 1)
    ids = 1 + (torch.rand(batch, f, length, generator=g) * (high - 1)).long()
    count = torch.randint(0, length + 1, (batch, f, 1), generator=g)
    count[:, 0] = 1
    ids = torch.where(torch.arange(length) < count, ids, 0)
    weights = torch.rand(batch, f, length, generator=g) + 0.5
    return ids, weights


def _pad(ids: torch.Tensor, weights: torch.Tensor, extra: int, seed: int = 0):
    """Append `extra` padding positions to every bag, with arbitrary (large) weights."""
    g = torch.Generator().manual_seed(seed)
    b, f, _ = ids.shape
    zeros = torch.zeros(b, f, extra, dtype=ids.dtype)
    junk = 100 * torch.rand(b, f, extra, generator=g) - 50
    return torch.cat([ids, zeros], 2), torch.cat([weights, junk], 2)


def naive_pool(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """The guide's pooling: `emb(ids).mean(1)` over the padded (B, L) id matrix."""
    return table(ids).mean(1)


# ---------------------------------------------------------------------------------------------
# Pooling: padding never enters a pooled vector.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIELDS_MODELS)
@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_logits_do_not_change_when_bags_are_padded_further(name, pooling):
    torch.manual_seed(0)
    model = create_model(name, pooling=pooling).eval()
    dense, _, _ = model.example_input(6)
    single, single_w = _bags(6, model.config.fields, 1, seed=1)  # one id or none per bag
    multi, multi_w = _bags(6, model.config.fields, 3, seed=2)  # up to three ids per bag
    with torch.no_grad():
        for ids, weights in [(single, single_w), (multi, multi_w)]:
            for use_weights in (False, True):
                w = weights if use_weights else None
                reference = model(dense, ids, w)
                for extra in range(1, 6):  # L = 1..6 for single-id bags, 3..8 for multi-hot
                    padded, padded_w = _pad(ids, weights, extra, seed=extra)
                    out = model(dense, padded, padded_w if use_weights else None)
                    torch.testing.assert_close(out, reference, atol=0, rtol=0)


def test_two_tower_scores_do_not_change_when_bags_are_padded_further():
    torch.manual_seed(0)
    model = create_model("two-tower-tiny").eval()
    users, users_w = _bags(5, model.config.user_fields, 2, seed=1)
    items, items_w = _bags(5, model.config.item_fields, 3, seed=2)
    with torch.no_grad():
        reference = model(users, items, users_w, items_w)
        for extra in range(1, 5):
            u, uw = _pad(users, users_w, extra, seed=extra)
            i, iw = _pad(items, items_w, extra + 1, seed=extra + 10)
            torch.testing.assert_close(model(u, i, uw, iw), reference, atol=0, rtol=0)


def _one_field_bags(rows: int = 9, dim: int = 4, pooling: str = "mean"):
    """FieldBags over one field and an nn.Embedding holding the same vectors, padding row 0."""
    torch.manual_seed(0)
    bags = FieldBags((rows,), dim, pooling, sparse=False, std=1.0)
    table = nn.Embedding(rows, dim, padding_idx=0)
    with torch.no_grad():
        table.weight[1:] = bags.bag.weight  # real id k is row k - 1 of the stacked table
    return bags, table


def test_a_pooled_bag_is_the_mean_of_its_real_ids_rows_where_the_guides_mean_is_not():
    bags, table = _one_field_bags()
    bag = torch.tensor([3, 7, 7, 2])  # a repeated id counts twice
    rows = bags.bag.weight.detach()
    expected = (rows[2] + rows[6] + rows[6] + rows[1]) / 4  # real id k -> row k - 1
    ours, guide = [], []
    with torch.no_grad():
        for length in range(4, 10):
            padded = F.pad(bag, (0, length - 4)).view(1, 1, length)  # (B=1, F=1, L)
            ours.append(bags(padded)[0, 0])
            guide.append(naive_pool(table, padded[:, 0])[0])
    for vector in ours:
        torch.testing.assert_close(vector, expected, atol=1e-6, rtol=0)
    # The guide's sketch divides by L, padding included: its vector shrinks as L grows, which
    # is the regression these tests catch.
    torch.testing.assert_close(guide[0], expected, atol=1e-6, rtol=0)  # no padding: agree
    for length, vector in zip(range(5, 10), guide[1:], strict=True):
        torch.testing.assert_close(vector, expected * 4 / length, atol=1e-6, rtol=0)
        assert not torch.allclose(vector, expected, atol=1e-3)


def test_an_empty_bag_pools_to_zeros():
    bags, _ = _one_field_bags()
    ids = torch.tensor([[[0, 0, 0]], [[5, 0, 0]]])
    with torch.no_grad():
        pooled = bags(ids, 1000 * torch.ones(2, 1, 3))
    assert torch.equal(pooled[0, 0], torch.zeros(4))
    assert pooled[1, 0].abs().sum() > 0


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_a_weighted_bag_is_the_hand_weighted_sum_over_its_real_ids(pooling):
    bags, _ = _one_field_bags(pooling=pooling)
    ids = torch.tensor([[[4, 1, 8, 0, 0]]])
    weights = torch.tensor([[[0.5, 2.0, -1.5, 7.0, 9.0]]])  # the last two are padding
    rows = bags.bag.weight.detach()
    weighted = 0.5 * rows[3] + 2.0 * rows[0] - 1.5 * rows[7]
    expected = weighted / 3 if pooling == "mean" else weighted  # mean: / real ids, not / L
    with torch.no_grad():
        torch.testing.assert_close(bags(ids, weights)[0, 0], expected, atol=1e-6, rtol=0)


def test_int32_ids_pool_as_int64_ids_do():
    model = create_model("dlrm-tiny").eval()
    dense, ids, weights = model.example_input(4)
    with torch.no_grad():
        torch.testing.assert_close(model(dense, ids.int(), weights), model(dense, ids, weights))


# ---------------------------------------------------------------------------------------------
# Hashed crosses.
# ---------------------------------------------------------------------------------------------

_FIRST_IDS = "torch.arange(60).view(12, 5) * 7919 % 1000 + torch.arange(5)"  # fixed, no RNG


def test_cross_buckets_are_identical_in_another_process():
    code = (
        "import torch; from fieldguide.models.recsys import cross_buckets; "
        f"print(cross_buckets({_FIRST_IDS}, 997).flatten().tolist())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    theirs = [int(v) for v in done.stdout.strip().strip("[]").split(",")]
    ours = cross_buckets(eval(_FIRST_IDS), 997)
    assert ours.shape == (12, 10)  # 5 fields: 10 pairs
    assert ours.flatten().tolist() == theirs


def test_cross_buckets_are_pinned_and_in_range():
    # Pinned: a change of the hash silently re-maps every trained crossed weight.
    ids = torch.tensor([[1, 2, 3], [0, 0, 0], [2**40 + 5, 17, 3]])
    buckets = cross_buckets(ids, 1000)
    assert buckets.dtype == torch.int64
    assert buckets.tolist() == PINNED_BUCKETS
    many = cross_buckets(torch.randint(0, 10**9, (500, 6)), 37)
    assert many.min() >= 0 and many.max() < 37
    assert len(many.unique()) == 37  # and every bucket is used


PINNED_BUCKETS = [[996, 908, 584], [172, 931, 136], [544, 350, 159]]


def test_swapped_ids_and_other_field_pairs_do_not_collide_systematically():
    torch.manual_seed(0)
    n, buckets = 4000, 1000
    a, b = torch.randint(1, 10**6, (2, n))
    # Fields 0..3 hold (a, b, b, a): pair (0, 1) crosses (a, b), pair (2, 3) crosses (b, a).
    h = cross_buckets(torch.stack([a, b, b, a], 1), buckets)  # pairs 01 02 03 12 13 23
    swapped_in_same_pair = cross_buckets(torch.stack([b, a, b, a], 1), buckets)[:, 0]
    # Fields (a, b, a, b): pair (2, 3) crosses the same (a, b) as pair (0, 1).
    same_ids = cross_buckets(torch.stack([a, b, a, b], 1), buckets)
    rates = {
        "(a, b) vs (b, a), other pair": (h[:, 0] == h[:, 5]).float().mean(),
        "(a, b) vs (b, a), same pair": (h[:, 0] == swapped_in_same_pair).float().mean(),
        "(a, b) in pairs 01 and 23": (same_ids[:, 0] == same_ids[:, 5]).float().mean(),
    }
    for what, rate in rates.items():  # chance is 1/1000; a symmetric hash would give 1
        assert rate < 0.01, f"{what} collide at rate {rate:.3f}"


def test_crossed_weights_get_gradients_exactly_on_the_hashed_buckets():
    model = create_model("wide-deep-tiny")
    dense, ids, weights = model.example_input(3)
    model(dense, ids, weights).sum().backward()
    touched = set(cross_buckets(ids[:, :, 0], model.config.wide_buckets).flatten().tolist())
    grad = model.wide_crosses.weight.grad
    assert set(grad.abs().sum(1).nonzero().flatten().tolist()) == touched


# ---------------------------------------------------------------------------------------------
# Every part learns.
# ---------------------------------------------------------------------------------------------


def _grad_norm(module: nn.Module) -> float:
    return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)


def test_wide_and_deep_parts_both_receive_gradients_and_sum_to_the_logits():
    torch.manual_seed(0)
    model = create_model("wide-deep-tiny").eval()
    dense, ids, weights = model.example_input(4)
    logits = model(dense, ids, weights)
    with torch.no_grad():
        deep = model.deep(torch.cat([model.tables(ids, weights).flatten(1), dense], 1))
        torch.testing.assert_close(logits, model.wide(dense, ids, weights) + deep)
    logits.sum().backward()
    parts = {
        "wide ids": model.wide_ids,
        "wide crosses": model.wide_crosses,
        "wide dense": model.wide_dense,
        "deep tables": model.tables,
        "deep MLP": model.deep,
    }
    for what, module in parts.items():
        assert _grad_norm(module) > 0, f"{what} got no gradient"
    assert model.wide_bias.grad.abs().sum() > 0


def test_wide_deep_without_crosses_has_no_crossed_table():
    model = create_model("wide-deep-tiny", crosses="none")
    assert model.wide_crosses is None
    assert model.num_parameters() < create_model("wide-deep-tiny").num_parameters()


@pytest.mark.parametrize("in_channels", [4, 0])
def test_dlrm_interaction_is_every_pairwise_dot_product_and_every_part_learns(in_channels):
    torch.manual_seed(0)
    model = create_model("dlrm-tiny", in_channels=in_channels, fields=(10, 20, 5, 7)).eval()
    dense, ids, weights = model.example_input(3)
    seen = {}
    model.interaction.register_forward_hook(
        lambda module, args, out: seen.update(vectors=args[0], terms=out)
    )
    model(dense, ids, weights).sum().backward()
    vectors = seen["vectors"]  # (B, F', E)
    n = 4 + (in_channels > 0)
    assert vectors.shape[1] == n
    assert seen["terms"].shape == (3, n * (n - 1) // 2)
    expected = [(vectors[:, i] * vectors[:, j]).sum(-1) for i in range(n) for j in range(i + 1, n)]
    torch.testing.assert_close(seen["terms"], torch.stack(expected, 1))
    parts = {"tables": model.tables, "top MLP": model.top}
    if in_channels:
        parts["bottom MLP"] = model.bottom
    else:
        assert model.bottom is None
    for what, module in parts.items():
        assert _grad_norm(module) > 0, f"{what} got no gradient"


def test_dlrm_tiny_learns_a_rule_that_needs_an_id_and_a_dense_feature():
    torch.manual_seed(0)
    model = create_model("dlrm-tiny", in_channels=2, fields=(10, 6, 4), dropout=0.0)
    n = 512
    ids, _ = _bags(n, model.config.fields, 2, seed=3)
    dense = torch.randn(n, 2)
    in_set = torch.isin(ids[:, 0, 0], torch.tensor([1, 3, 5, 7]))
    label = (in_set ^ (dense[:, 0] > 0)).float()  # XOR: neither input alone predicts it
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):  # 60 reach 100 % (seeds 0-3); one input alone: <= ~56 %
        loss = F.binary_cross_entropy_with_logits(model(dense, ids)[:, 0], label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = ((model(dense, ids)[:, 0] > 0).float() == label).float().mean().item()
    assert accuracy > 0.95, f"train accuracy {accuracy:.3f}"


# ---------------------------------------------------------------------------------------------
# Sparse gradients.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wide-deep-tiny", "dlrm-tiny", "two-tower-tiny"])
def test_sparse_tables_step_only_the_rows_looked_up(name):
    torch.manual_seed(0)
    model = create_model(name, sparse=True)  # example bags touch a few rows of each table
    assert create_model(name).sparse_parameters() == set()
    names = model.sparse_parameters()
    tables = {n for n, m in model.named_modules() if isinstance(m, nn.EmbeddingBag)}
    assert names == {f"{t}.weight" for t in tables} and names
    params = dict(model.named_parameters())
    before = {n: params[n].detach().clone() for n in names}
    x = model.example_input(2)
    out = model(*x)
    (out * torch.randn_like(out)).sum().backward()
    for n in names:
        assert params[n].grad.is_sparse, f"{n} has a dense gradient"
    sparse = torch.optim.SparseAdam([params[n] for n in sorted(names)], lr=0.1)
    dense = torch.optim.AdamW([p for n, p in params.items() if n not in names], lr=0.1)
    looked_up = {n: params[n].grad.coalesce().indices()[0] for n in names}
    sparse.step()
    dense.step()
    for n in names:
        moved = (params[n].detach() != before[n]).any(1)
        rows = torch.zeros_like(moved)
        rows[looked_up[n]] = True
        assert moved.any(), f"{n}: no row moved"
        assert torch.equal(moved, rows), f"{n}: rows moved that were not looked up, or not moved"


# ---------------------------------------------------------------------------------------------
# Two towers.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_two_tower_forward_is_the_dot_product_of_its_vectors(normalize):
    torch.manual_seed(0)
    model = create_model("two-tower-tiny", normalize=normalize, scale=3.0).eval()
    users, items, users_w, items_w = model.example_input(5)
    with torch.no_grad():
        u = model.user_vectors(users, users_w)
        v = model.item_vectors(items, items_w)
        torch.testing.assert_close(model(users, items, users_w, items_w), (u * v).sum(-1))
    if normalize:
        torch.testing.assert_close(u.norm(dim=-1), torch.full((5,), 3.0))
        torch.testing.assert_close(v.norm(dim=-1), torch.ones(5))


def test_two_tower_scores_against_all_items_by_matmul_match_forward_per_pair():
    torch.manual_seed(0)
    model = create_model("two-tower-tiny").eval()
    users, users_w = _bags(4, model.config.user_fields, 2, seed=1)
    items, items_w = _bags(7, model.config.item_fields, 3, seed=2)
    with torch.no_grad():
        scores = model.user_vectors(users, users_w) @ model.item_vectors(items, items_w).T
        assert scores.shape == (4, 7)
        for b in range(4):
            pair = model(
                users[b].expand(7, -1, -1), items, users_w[b].expand(7, -1, -1), items_w
            )  # user b against every item
            torch.testing.assert_close(scores[b], pair, atol=1e-5, rtol=1e-5)


def test_two_tower_sized_from_data_splits_user_and_item_fields():
    spec = DataSpec(shape=(2, 1), num_outputs=1, output="score", fields=(944, 22, 1683))
    config = TwoTower.config_for_data(TwoTowerConfig(), spec)
    assert (config.user_fields, config.item_fields) == ((944, 22), (1683,))
    bad = DataSpec(shape=(2, 2), num_outputs=1, output="score", fields=(944, 22, 1683))
    with pytest.raises(ValueError, match="spec.fields"):
        TwoTower.config_for_data(TwoTowerConfig(), bad)
    with pytest.raises(ValueError, match="score"):
        TwoTower.config_for_data(TwoTowerConfig(), DataSpec(shape=(1, 1), num_outputs=2))


@pytest.mark.parametrize("cls,config", [(WideDeep, WideDeepConfig()), (DLRM, DLRMConfig())])
def test_fields_models_sized_from_data(cls, config):
    spec = DataSpec(shape=(6,), num_outputs=2, fields=(9, 17, 3, 42))
    sized = cls.config_for_data(config, spec)
    assert (sized.in_channels, sized.fields, sized.out_dim) == (6, (9, 17, 3, 42), 2)
    model = cls(sized).eval()
    with torch.no_grad():
        assert model(*model.example_input(3)).shape == (3, 2)
    with pytest.raises(ValueError, match="spec.fields"):
        cls.config_for_data(config, DataSpec(shape=(6,), num_outputs=2))
    with pytest.raises(ValueError, match="score"):
        cls.config_for_data(
            config, DataSpec(shape=(6,), num_outputs=1, output="score", fields=(3,))
        )


# ---------------------------------------------------------------------------------------------
# Refusals: one sentence naming the argument, what was expected and what was given.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIELDS_MODELS)
def test_fields_models_refuse_bad_input_naming_the_argument(name):
    model = create_model(name).eval()
    dense, ids, weights = model.example_input(3)
    with pytest.raises(TypeError, match=r"expects ids as an int64 tensor; got dtype torch.float32"):
        model(dense, ids.float(), weights)
    too_big = ids.clone()
    too_big[1, 1, 0] = 20  # field 1 has ids 0..19
    with pytest.raises(ValueError, match=r"ids of field 1 in \[0, 20\).*got ids from 0 to 20"):
        model(dense, too_big, weights)
    with pytest.raises(ValueError, match=r"ids of field 0 in \[0, 10\).*got ids from -1"):
        model(dense, torch.where(ids == ids[0, 0, 0], -1, ids), weights)
    with pytest.raises(ValueError, match=r"dense features x \(argument dense\) of shape \(B, 4\)"):
        model(dense[:, :3], ids, weights)
    with pytest.raises(ValueError, match=r"ids of shape \(3, 3, L\); got \(2, 3, 3\)"):
        model(dense, ids[:2], weights[:2])
    with pytest.raises(ValueError, match=r"weights of the shape of ids"):
        model(dense, ids, weights[..., :1])
    with pytest.raises(TypeError, match=r"weights in the model's dtype"):
        model(dense, ids, weights.double())


def test_two_tower_refuses_bad_input_naming_the_argument():
    model = create_model("two-tower-tiny").eval()
    users, items, users_w, items_w = model.example_input(3)
    with pytest.raises(ValueError, match=r"item_ids of shape \(3, 2, L\); got \(2, 2, 3\)"):
        model(users, items[:2], users_w, items_w[:2])
    with pytest.raises(ValueError, match=r"item_ids of field 0 in \[0, 200\)"):
        model(users, items + 200, users_w, items_w)
    with pytest.raises(TypeError, match=r"user_ids.long\(\)"):
        model(users.float(), items, users_w, items_w)
    with pytest.raises(ValueError, match="user_weights of the shape of user_ids"):
        model.user_vectors(users, users_w[:, :1])


@pytest.mark.parametrize(
    "cls,overrides,field",
    [
        (WideDeepConfig, {"fields": ()}, "fields"),
        (WideDeepConfig, {"fields": (5, 1)}, "fields"),
        (WideDeepConfig, {"wide_buckets": 0}, "wide_buckets"),
        (WideDeepConfig, {"pooling": "max"}, "pooling"),
        (DLRMConfig, {"in_channels": 0, "fields": (5,)}, "at least two vectors"),
        (DLRMConfig, {"embed_dim": 0}, "embed_dim"),
        (TwoTowerConfig, {"scale": 0.0}, "scale"),
        (TwoTowerConfig, {"item_fields": ()}, "item_fields"),
    ],
)
def test_configs_refuse_bad_sizes_naming_the_field(cls, overrides, field):
    with pytest.raises(ValueError, match=field):
        cls(**overrides)


def test_cross_buckets_refuse_ids_that_are_not_int64_rows():
    with pytest.raises(TypeError, match=r"first_ids as an int64 tensor \(B, F\); got torch.int32"):
        cross_buckets(torch.ones(2, 3, dtype=torch.int32), 10)
    with pytest.raises(TypeError, match=r"got torch.int64 of shape \(2, 3, 1\)"):
        cross_buckets(torch.ones(2, 3, 1, dtype=torch.int64), 10)
    with pytest.raises(ValueError, match="buckets >= 1; got 0"):
        cross_buckets(torch.ones(2, 3, dtype=torch.int64), 0)
