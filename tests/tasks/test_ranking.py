"""Ranking: HR@10 and NDCG@10 by hand, the in-batch loss by hand, scores, MovieLens baselines."""

import math

import pytest
import torch

from fieldguide.data.movielens import MOVIELENS_FILES, InteractionData, load_movielens
from fieldguide.tasks.ranking import RankingTask, hit_metrics
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.widedeep import require_widedeep

# --- hit metrics ----------------------------------------------------------------------------


def ranked(position, negatives=100):
    """Scores (1, 1 + negatives) with the positive (column 0) at `position` (1 = first)."""
    scores = torch.arange(negatives, 0, -1, dtype=torch.float64)  # distinct, descending
    positive = scores[position - 1] + 0.5 if position > 1 else scores[0] + 1
    return torch.cat([torch.tensor([positive]), scores])[None]


def test_hit_metrics_by_hand():
    assert hit_metrics(ranked(1)) == {"hr@10": 1.0, "ndcg@10": 1.0}
    third = hit_metrics(ranked(3))  # two negatives above it
    assert third["hr@10"] == 1.0 and third["ndcg@10"] == pytest.approx(1 / math.log2(4))
    tenth = hit_metrics(ranked(10))
    assert tenth["hr@10"] == 1.0 and tenth["ndcg@10"] == pytest.approx(1 / math.log2(11))
    assert hit_metrics(ranked(11)) == {"hr@10": 0.0, "ndcg@10": 0.0}
    # Rows average: ranks 1, 3, 11 and 50.
    both = hit_metrics(torch.cat([ranked(1), ranked(3), ranked(11), ranked(50)]))
    assert both["hr@10"] == pytest.approx(0.5)
    assert both["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)


def test_ties_count_against_the_positive():
    # Constant scores: every negative ties with the positive, so 10 or more ties miss.
    assert hit_metrics(torch.zeros(3, 11)) == {"hr@10": 0.0, "ndcg@10": 0.0}
    assert hit_metrics(torch.ones(2, 101))["hr@10"] == 0.0
    nine = hit_metrics(torch.zeros(1, 10))  # 9 tied negatives: rank 10, still a hit
    assert nine["hr@10"] == 1.0 and nine["ndcg@10"] == pytest.approx(1 / math.log2(11))
    # One negative tied with a positive that is otherwise first: it ranks second.
    scores = torch.tensor([[5.0, 5.0, 1.0, 0.0]])
    assert hit_metrics(scores)["ndcg@10"] == pytest.approx(1 / math.log2(3))


# --- a tiny interaction set -----------------------------------------------------------------


def tiny_interactions():
    """6 users (one field), 8 items (id and a bag of genres); item 7 is never a positive."""
    counts = [5, 3, 3, 2, 1, 1, 1, 0]  # training positives per item
    items = [i for i, c in enumerate(counts) for _ in range(c)]
    pairs = torch.tensor([[k % 6, item] for k, item in enumerate(items)])
    genres = torch.tensor([[1, 2], [2, 0], [3, 0], [1, 3], [2, 0], [1, 0], [3, 2], [1, 0]])
    item_ids = torch.stack(
        [torch.stack([torch.arange(1, 9), torch.zeros(8, dtype=torch.long)], 1), genres], 1
    )  # (8, 2, 2)
    candidates = torch.tensor([[u % 8, (u + 1) % 8, (u + 3) % 8, (u + 5) % 8] for u in range(6)])
    seen = [sorted({int(i) for uu, i in pairs.tolist() if uu == u}) for u in range(6)]
    indptr = torch.tensor([0, *torch.tensor([len(s) for s in seen]).cumsum(0).tolist()])
    return InteractionData(
        name="tiny",
        num_users=6,
        num_items=8,
        train_pairs=pairs,
        val_users=torch.arange(6),
        val_candidates=candidates,
        test_users=torch.arange(6),
        test_candidates=candidates.roll(1, dims=1),
        user_ids=torch.arange(1, 7).view(6, 1, 1),
        item_ids=item_ids,
        user_fields=(7,),
        item_fields=(9, 4),
        user_field_names=["user"],
        item_field_names=["item", "genres"],
        seen_indptr=indptr,
        seen_items=torch.tensor([i for s in seen for i in s]),
        item_names=[f"item {i}" for i in range(8)],
        description="tiny synthetic interactions",
        synthetic=True,
    )


@pytest.fixture
def tiny():
    task = RankingTask(tiny_interactions())
    torch.manual_seed(0)
    return task, task.build_model("two-tower-tiny").eval()


def hand_loss(u, v, item, log_q):
    """Mean over rows i of -log softmax_j(u_i . v_j - log q_j)[i], j over the row's negatives.

    Row i's negatives are the batch's other columns whose item differs from row i's item.
    """
    losses = []
    for i in range(len(item)):
        keep = [j for j in range(len(item)) if j == i or item[j] != item[i]]
        logits = torch.stack([u[i] @ v[j] - log_q[item[j]] for j in keep])
        losses.append(torch.logsumexp(logits, 0) - logits[keep.index(i)])
    return torch.stack(losses).mean()


def test_the_log_frequency_correction_is_the_log_of_each_items_training_share(tiny):
    task, _ = tiny
    counts = torch.tensor([5, 3, 3, 2, 1, 1, 1, 0], dtype=torch.float64)
    expected = (counts.clamp(min=1) / counts.sum()).log()  # an unseen item counts as one
    assert torch.allclose(task.log_q.double(), expected, atol=1e-6)
    assert torch.equal(task.item_counts, counts)


def test_the_loss_masks_repeated_items_and_corrects_by_log_frequency(tiny):
    task, model = tiny
    item = torch.tensor([0, 1, 0, 3, 6])  # item 0 twice: never each other's negative
    users = task.data.user_ids[torch.tensor([0, 1, 2, 3, 4])]
    batch = (users, task.data.item_ids[item], item)
    with torch.no_grad():
        loss = task.loss(model, batch)
        u, v = model.user_vectors(users), model.item_vectors(task.data.item_ids[item])
        expected = hand_loss(u, v, item.tolist(), task.log_q)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        # Counting the repeat as a negative, or dropping the correction, gives another loss.
        unmasked = hand_loss(u, v, [0, 1, 2, 3, 6], task.log_q[[0, 1, 0, 3, 4, 5, 6, 7]])
        uncorrected = hand_loss(u, v, item.tolist(), torch.zeros(8))
    assert abs(loss.item() - unmasked.item()) > 1e-4
    assert abs(loss.item() - uncorrected.item()) > 1e-4
    # The loss of a batch through `batch` is the same as the one assembled by hand.
    index = torch.tensor([0, 5, 8])
    pairs = task.data.train_pairs[index]
    got = task.batch("train", index)
    assert torch.equal(got[2], pairs[:, 1]) and torch.equal(got[0], task.data.user_ids[pairs[:, 0]])


def test_scores_are_the_models_forward_on_each_user_and_candidate(tiny):
    task, model = tiny
    model.train()  # evaluation must switch to eval mode and back
    for split in ("val", "test"):
        scores = task.scores(model, split, batch_size=4)  # two batches of users
        users = getattr(task.data, f"{split}_users")
        candidates = getattr(task.data, f"{split}_candidates")
        assert scores.shape == candidates.shape
        model.eval()
        with torch.no_grad():
            for row, user in enumerate(users.tolist()):
                c = candidates[row]
                user_bags = task.data.user_ids[user].expand(len(c), -1, -1)
                pair_scores = model(user_bags, task.data.item_ids[c])
                assert torch.allclose(scores[row], pair_scores, atol=1e-5)
        model.train()
        assert model.training
        metrics = task.evaluate(model, split, batch_size=4)
        assert metrics == {f"{split}/{k}": v for k, v in hit_metrics(scores).items()}
        # `predict` (per batch, items looked up per candidate) agrees with `scores`.
        assert torch.allclose(task.predict(model, split, batch_size=5), scores, atol=1e-5)


# --- MovieLens ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movielens():
    require_widedeep(*MOVIELENS_FILES)
    return RankingTask(load_movielens())


def test_movielens_baselines_and_an_untrained_model_at_chance(movielens):
    task = movielens
    baselines = task.baselines("val")
    popularity = baselines["popularity"]
    (svd_name,) = [k for k in baselines if k.startswith("matrix factorisation (PureSVD")]
    assert 0.3 < popularity["hr@10"] < 0.6
    assert baselines[svd_name]["hr@10"] > popularity["hr@10"] + 0.05
    assert baselines[svd_name]["ndcg@10"] > popularity["ndcg@10"]
    torch.manual_seed(0)
    model = task.build_model("two-tower-tiny")
    chance = task.evaluate(model, "val")
    assert chance["val/hr@10"] == pytest.approx(10 / 101, abs=0.05)


@pytest.mark.slow
def test_a_two_tower_beats_popularity_on_movielens_in_a_few_hundred_steps(movielens):
    task = movielens
    torch.manual_seed(0)
    model = task.build_model("two-tower-tiny")
    cfg = TrainConfig(epochs=10, max_steps=400, batch_size=256, lr=1e-2, seed=0)
    result = Trainer(model, task, cfg, progress="quiet").fit()
    popularity = hit_metrics(task.item_counts[task.data.val_candidates])
    assert result.best_metrics["val/hr@10"] > popularity["hr@10"] + 0.05
    assert result.best_metrics["val/ndcg@10"] > popularity["ndcg@10"]
