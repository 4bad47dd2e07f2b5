"""Retrieval and verification metrics: exact k-NN, Recall@K and MAP@R by hand, ROC AUC and EER."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fieldguide.tasks.retrieval_metrics import (
    _sample_pairs,
    equal_error_rate,
    knn,
    retrieval_metrics,
    verification_metrics,
)


def _brute_force(q: np.ndarray, g: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    sims = q @ g.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


# ---------------------------------------------------------------------------------------------
# knn
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [3, 1024])
def test_knn_equals_brute_force_leave_one_out(chunk):
    x = np.random.default_rng(0).normal(size=(37, 5))
    scores, index = knn(x, x, 7, exclude_self=True, chunk=chunk)
    expected = _brute_force(x, x, 7, exclude_self=True)
    assert index.tolist() == expected.tolist()
    assert not bool((index == torch.arange(37)[:, None]).any())
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(
        scores.numpy(), np.take_along_axis(unit @ unit.T, expected, 1), rtol=1e-5
    )


def test_knn_chunking_does_not_change_the_answer_and_queries_may_differ():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(11, 4)).astype(np.float32), rng.normal(size=(29, 4))
    small = knn(torch.from_numpy(q), torch.from_numpy(g).float(), 9, chunk=3)
    large = knn(q, g.astype(np.float32), 9, chunk=1024)
    assert torch.equal(small[1], large[1]) and torch.equal(small[0], large[0])
    assert small[1].tolist() == _brute_force(q, g, 9, exclude_self=False).tolist()


@pytest.mark.parametrize("chunk", [1, 1024])
def test_knn_breaks_ties_by_the_lower_index(chunk):
    a, b, c = [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]
    gallery = torch.tensor([b, a, c, a, b, a])  # a at 1, 3, 5; b at 0, 4
    _, index = knn(torch.tensor([a, b]), gallery, 5, chunk=chunk)
    # query a: the three a (1, 3, 5), then c, then the first b; query b: 0, 4, then c, then a's
    assert index.tolist() == [[1, 3, 5, 2, 0], [0, 4, 2, 1, 3]]


# ---------------------------------------------------------------------------------------------
# Recall@K and MAP@R
# ---------------------------------------------------------------------------------------------

# Six points on the unit circle at these angles (no two at equal angular distance from any
# point), classes A = 0 and B = 1.
DEGREES = [0, 20, 50, 110, 175, 265]
CIRCLE_LABELS = [0, 0, 1, 0, 1, 1]
# Neighbours by angular distance, worked out by hand (distances in degrees):
CIRCLE_ORDER = [
    [1, 2, 5, 3, 4],  # 0: 20, 50, 95, 110, 175   relevant: 1 . . 3 .
    [0, 2, 3, 5, 4],  # 1: 20, 30, 90, 115, 155   relevant: 0 . 3 . .
    [1, 0, 3, 4, 5],  # 2: 30, 50, 60, 125, 145   relevant: . . . 4 5
    [2, 4, 1, 0, 5],  # 3: 60, 65, 90, 110, 155   relevant: . . 1 0 .
    [3, 5, 2, 1, 0],  # 4: 65, 90, 125, 155, 175  relevant: . 5 2 . .
    [4, 0, 1, 2, 3],  # 5: 90, 95, 115, 145, 155  relevant: 4 . . 2 .
]


def _circle() -> np.ndarray:
    return np.array([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in DEGREES])


def test_circle_neighbour_order_is_the_hand_one():
    _, index = knn(_circle(), _circle(), 5, exclude_self=True)
    assert index.tolist() == CIRCLE_ORDER


def test_recall_at_k_and_map_at_r_on_the_circle():
    metrics = retrieval_metrics(_circle(), np.array(CIRCLE_LABELS), ks=(1, 2, 3, 4, 5))
    # first relevant rank per query: 1, 1, 4, 3, 2, 1
    assert metrics["recall@1"] == pytest.approx(3 / 6)
    assert metrics["recall@2"] == pytest.approx(4 / 6)
    assert metrics["recall@3"] == pytest.approx(5 / 6)
    assert metrics["recall@4"] == 1.0 and metrics["recall@5"] == 1.0
    # R = 2 for every query; AP@R = (sum of precision@i at relevant i <= 2) / 2:
    # 0: (1/1)/2; 1: (1/1)/2; 2: 0; 3: 0; 4: (1/2)/2; 5: (1/1)/2
    assert metrics["map@r"] == pytest.approx((0.5 + 0.5 + 0 + 0 + 0.25 + 0.5) / 6)
    assert all(isinstance(v, float) for v in metrics.values())


def test_map_at_r_rewards_all_relevant_first_not_just_one():
    # A at 0, 10, 100, 110 degrees and B at 50, 60: every nearest neighbour is of its class
    # (recall@1 = 1), but each A has the two B between it and its far A pair. A queries (R = 3)
    # find one of three in the first 3: AP@R = (1/1)/3; B queries (R = 1): AP@R = 1.
    degrees, labels = [0, 10, 100, 110, 50, 60], [0, 0, 0, 0, 1, 1]
    x = [[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees]
    metrics = retrieval_metrics(torch.tensor(x), torch.tensor(labels), ks=(1,))
    assert metrics["recall@1"] == 1.0
    assert metrics["map@r"] == pytest.approx((4 * (1 / 3) + 2 * 1.0) / 6)


def test_perfect_embedding_scores_one_and_singletons_are_skipped():
    classes = [0] * 4 + [1] * 4 + [2] * 4 + [3]  # class 3 has one example: no query
    x = torch.eye(4)[classes]
    metrics = retrieval_metrics(x, torch.tensor(classes), ks=(1, 5, 10))
    assert metrics == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "map@r": 1.0}


def _chance(others: int, r: int, k: int) -> tuple[float, float]:
    """Recall@k and MAP@R of a random order: `others` candidates, r of them relevant."""
    # recall: 1 - P(none of k draws without replacement is relevant)
    recall = 1 - math.prod((others - r - i) / (others - i) for i in range(k))
    # AP@R: E[rel_i * hits_i / i] summed over i <= R, with p = P(rel), q = P(rel | one rel)
    p, q = r / others, (r - 1) / (others - 1)
    return recall, sum((p + (i - 1) * p * q) / i for i in range(1, r + 1)) / r


def test_collapsed_embedding_scores_chance_not_its_sort_order():
    # Labels sorted by class and every score tied: ordered by index, every query would see
    # class 0 first (MAP@R 0.25, Recall@100 0.25); the shuffle makes the order random.
    labels = torch.arange(400) // 100
    metrics = retrieval_metrics(torch.ones(400, 3), labels, ks=(1, 100))
    for k in (1, 100):
        assert metrics[f"recall@{k}"] == pytest.approx(_chance(399, 99, k)[0], abs=0.06)
    assert metrics["map@r"] == pytest.approx(_chance(399, 99, 1)[1], abs=0.02)


def test_random_embeddings_score_chance_and_recall_grows_with_k():
    n, per_class = 600, 100
    x = torch.randn(n, 32)
    labels = torch.arange(n) // per_class
    ks = (1, 2, 5, 10, 20)
    metrics = retrieval_metrics(x, labels, ks=ks)
    recalls = [metrics[f"recall@{k}"] for k in ks]
    assert recalls == sorted(recalls)
    for k in (1, 10):
        assert metrics[f"recall@{k}"] == pytest.approx(
            _chance(n - 1, per_class - 1, k)[0], abs=0.06
        )
    assert metrics["map@r"] == pytest.approx(_chance(n - 1, per_class - 1, 1)[1], abs=0.015)


def test_more_than_one_query_chunk_matches_a_numpy_reference():
    rng = np.random.default_rng(2)
    labels = np.arange(1500) % 30  # 50 per class: R = 49
    x = rng.normal(size=(30, 16))[labels] + 1.5 * rng.normal(size=(1500, 16))
    metrics = retrieval_metrics(x, labels, ks=(1, 10))
    order = _brute_force(x, x, 1499, exclude_self=True)
    relevant = labels[order] == labels[:, None]  # (N, N - 1)
    for k in (1, 10):
        assert metrics[f"recall@{k}"] == pytest.approx(relevant[:, :k].any(1).mean())
    first_r = relevant[:, :49]
    precision = np.cumsum(first_r, 1) / np.arange(1, 50)
    assert metrics["map@r"] == pytest.approx(((precision * first_r).sum(1) / 49).mean())
    assert 0.05 < metrics["map@r"] < 0.9  # neither trivial nor perfect


# ---------------------------------------------------------------------------------------------
# Verification: ROC AUC and EER
# ---------------------------------------------------------------------------------------------


def test_equal_error_rate_on_hand_scores():
    # Threshold 0.7 accepts 2 of 3 positives and 1 of 3 negatives: FPR = FNR = 1/3.
    same = np.array([1, 1, 1, 0, 0, 0])
    assert equal_error_rate(same, np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])) == pytest.approx(1 / 3)
    # Curve (0, 0) -> (0, 1/2) -> (2/3, 1): the crossing is inside the tied segment, where
    # FPR = 2t/3 and FNR = (1 - t)/2 meet at t = 3/7, FPR = 2/7.
    same = np.array([1, 1, 0, 0, 0])
    assert equal_error_rate(same, np.array([0.9, 0.5, 0.5, 0.5, 0.1])) == pytest.approx(2 / 7)


def test_perfect_separation_gives_auc_one_and_eer_zero():
    classes = np.repeat(np.arange(3), 5)
    x = np.eye(3)[classes]  # one class one axis: same pairs 1, different pairs 0
    assert verification_metrics(x, classes) == {"roc_auc": 1.0, "eer": 0.0}


def test_identical_scores_give_half_and_half():
    metrics = verification_metrics(torch.ones(10, 4), torch.arange(10) % 2)
    assert metrics["roc_auc"] == pytest.approx(0.5) and metrics["eer"] == pytest.approx(0.5)


def _clusters(n: int = 300, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, 8, generator=gen)
    x = centres[labels] + 1.2 * torch.randn(n, 8, generator=gen)
    return F.normalize(x, dim=1), labels


def test_sampled_pairs_are_deterministic_and_close_to_all_pairs():
    x, labels = _clusters()  # 44,850 pairs, all scored by default
    exact = verification_metrics(x, labels)
    assert 0.6 < exact["roc_auc"] < 0.95  # a mid-size, imperfect example
    sampled = verification_metrics(x, labels, max_pairs=20_000, seed=3)
    assert sampled == verification_metrics(x, labels, max_pairs=20_000, seed=3)
    assert sampled != verification_metrics(x, labels, max_pairs=20_000, seed=4)
    assert sampled["roc_auc"] == pytest.approx(exact["roc_auc"], abs=0.02)
    assert sampled["eer"] == pytest.approx(exact["eer"], abs=0.02)


def test_sampled_pairs_are_half_same_half_different_and_never_self():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    _, counts = labels.unique(return_counts=True)
    i, j = _sample_pairs(labels, counts, 4000, seed=0)
    assert bool((i != j).all())
    assert bool((labels[i[:2000]] == labels[j[:2000]]).all())
    assert bool((labels[i[2000:]] != labels[j[2000:]]).all())
    # Uniform over same-class pairs: class 2 holds 6 of the 3 + 1 + 6 = 10 pairs.
    share = (labels[i[:2000]] == 2).double().mean().item()
    assert share == pytest.approx(0.6, abs=0.05)


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def test_refusals_name_the_argument():
    x = torch.randn(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="k between 1 and 6"):
        knn(x, x, 7)
    with pytest.raises(ValueError, match="k between 1 and 5"):
        knn(x, x, 6, exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self"):
        knn(x[:2], x, 1, exclude_self=True)
    with pytest.raises(ValueError, match="gallery"):
        knn(x, torch.randn(6, 4), 1)
    with pytest.raises(ValueError, match="chunk"):
        knn(x, x, 1, chunk=0)
    with pytest.raises(ValueError, match="queries"):
        knn(x[0], x, 1)
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(x, labels, ks=(1, 6))
    with pytest.raises(ValueError, match="labels"):
        retrieval_metrics(x, labels[:5])
    with pytest.raises(ValueError, match="labels"):
        retrieval_metrics(x, labels.float())
    with pytest.raises(ValueError, match="labels"):
        retrieval_metrics(x, torch.arange(6), ks=(1,))
    with pytest.raises(ValueError, match="labels"):
        verification_metrics(x, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="max_pairs"):
        verification_metrics(x, labels, max_pairs=1)
