import numpy as np
import pytest
import torch

from fieldguide.data.movielens import GENRES, MOVIELENS_FILES, load_movielens, train_matrix
from fieldguide.data.starters import resolve_file
from tests.widedeep import require_widedeep


@pytest.fixture(scope="module")
def ml():
    require_widedeep(*MOVIELENS_FILES)
    return load_movielens()


@pytest.fixture(scope="module")
def ratings(ml):
    """The raw ratings as dense (user, item, rating, timestamp) arrays."""
    import pyarrow.parquet as pq

    table = pq.read_table(resolve_file(MOVIELENS_FILES[0]))
    users = np.searchsorted(ml.preprocessing["user_file_ids"], table.column("user_id").to_numpy())
    items = np.searchsorted(ml.preprocessing["item_file_ids"], table.column("movie_id").to_numpy())
    return users, items, table.column("rating").to_numpy(), table.column("timestamp").to_numpy()


def test_sizes_and_counts(ml):
    assert (ml.num_users, ml.num_items) == (943, 1682)
    assert ml.modality == "interactions" and not ml.synthetic
    notes = ml.preprocessing["notes"]
    assert notes["positives"] == 55375 and notes["evaluated_users"] == 942
    assert notes["users_not_evaluated"] == 1
    assert ml.train_pairs.shape == (55375 - 2 * 942, 2) and ml.train_pairs.dtype == torch.int64
    assert ml.val_candidates.shape == ml.test_candidates.shape == (942, 101)
    assert torch.equal(ml.val_users, ml.test_users) and ml.num_negatives == 100
    assert len(ml.seen_items) == 100_000 and ml.seen_indptr[-1] == 100_000
    assert ml.user_ids.shape == (943, 4, 1) and ml.item_ids.shape == (1682, 3, 6)
    assert ml.user_fields == (944, 8, 3, 22) and ml.item_fields == (1683, 20, 18)
    assert "942 users" in ml.description and len(ml.item_names) == 1682


def test_held_out_items_come_last_in_time(ml, ratings):
    users, items, rating, time = ratings
    when = {
        (u, i): t for u, i, t in zip(users.tolist(), items.tolist(), time.tolist(), strict=True)
    }
    positives = np.bincount(users[rating >= 4], minlength=ml.num_users)
    train = {}
    for u, i in ml.train_pairs.tolist():
        train.setdefault(u, []).append(i)
    for u, val_row, test_row in zip(
        ml.val_users.tolist(), ml.val_candidates.tolist(), ml.test_candidates.tolist(), strict=True
    ):
        val_item, test_item = val_row[0], test_row[0]
        order = [(when[u, i], i) for i in train.get(u, [])]
        assert (when[u, val_item], val_item) < (when[u, test_item], test_item)
        assert all(key < (when[u, val_item], val_item) for key in order)
        assert val_item not in train.get(u, []) and test_item not in train.get(u, [])
        assert len(train[u]) + 2 == positives[u]
    # Training pairs are sorted by user, then time.
    pairs = ml.train_pairs.numpy()
    keys = [(u, when[u, i], i) for u, i in pairs.tolist()]
    assert keys == sorted(keys)


def test_negatives_are_unrated_and_distinct(ml):
    for candidates in (ml.val_candidates, ml.test_candidates):
        for u, row in zip(ml.val_users.tolist(), candidates.tolist(), strict=True):
            seen = set(ml.seen(u).tolist())
            positive, negatives = row[0], row[1:]
            assert positive in seen
            assert len(set(negatives)) == len(negatives) and positive not in negatives
            assert not seen & set(negatives)
            assert all(0 <= i < ml.num_items for i in negatives)


def test_the_seed_fixes_the_candidates(ml):
    again, other = load_movielens(seed=0), load_movielens(seed=1)
    assert torch.equal(again.val_candidates, ml.val_candidates)
    assert torch.equal(again.test_candidates, ml.test_candidates)
    assert torch.equal(other.test_candidates[:, 0], ml.test_candidates[:, 0])  # same positives
    assert (other.test_candidates[:, 1:] != ml.test_candidates[:, 1:]).float().mean() > 0.9
    assert torch.equal(again.train_pairs, ml.train_pairs)


def test_feature_bags(ml):
    for bags, sizes in ((ml.user_ids, ml.user_fields), (ml.item_ids, ml.item_fields)):
        real = bags != 0
        assert bool(real[..., 0].all())  # every bag holds a real id first
        assert bool((real[..., 1:] <= real[..., :-1]).all())  # padding only after real ids
        for f, rows in enumerate(sizes):
            assert int(bags[:, f].max()) < rows
    toy_story = ml.item_names.index("Toy Story (1995)")
    assert toy_story == 0 and ml.item_ids[0, 0, 0] == 1  # field 0: the item itself, + 1
    genres = [GENRES[i - 1] for i in ml.item_ids[0, 1].tolist() if i]
    assert genres == ["Animation", "Children's", "Comedy"]
    assert ml.item_ids[0, 2, 0] == 2 + (1995 - 1920) // 5
    assert ml.user_ids[:, 0, 0].tolist() == list(range(1, 944))
    # User 1 of the file: 24 years old (18-24, id 2), male, technician.
    prep = ml.preprocessing["user_fields"]
    assert ml.user_ids[0, 1:, 0].tolist() == [
        2,
        prep["gender"]["M"],
        prep["occupation"]["technician"],
    ]


def test_train_matrix(ml):
    matrix = train_matrix(ml)
    assert matrix.shape == (943, 1682) and matrix.nnz == len(ml.train_pairs)
    u, i = ml.train_pairs[0].tolist()
    assert matrix[u, i] == 1.0
    assert np.array_equal(
        np.asarray(matrix.sum(1)).ravel(), np.bincount(ml.train_pairs[:, 0], minlength=943)
    )


def test_refusals():
    with pytest.raises(ValueError, match=r"negatives in \[1, 1000\]; got 0"):
        load_movielens(negatives=0)
    with pytest.raises(ValueError, match=r"min_rating in \[1, 5\]; got 6"):
        load_movielens(min_rating=6)
    with pytest.raises(ValueError, match="labels_per_class=20"):
        load_movielens(labels_per_class=20)
    with pytest.raises(TypeError, match="seed as an int"):
        load_movielens(seed=1.5)
    require_widedeep(*MOVIELENS_FILES)
    with pytest.raises(ValueError, match="cannot sample negatives=1000 for user"):
        load_movielens(negatives=1000)
