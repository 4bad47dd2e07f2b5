"""Metric-learning losses against hand computations: InfoNCE, triplet mining, ArcFace, pairs."""

import math

import pytest
import torch
import torch.nn.functional as F

from fieldguide.layers.metric import (
    arcface_logits,
    arcface_loss,
    bounded_temperature,
    contrastive_loss,
    hardest_pairs,
    info_nce,
    pairs_from_batch,
    pairwise_distance,
    semi_hard_negatives,
    temperature_parameter,
    triplet_loss,
)

# ---------------------------------------------------------------------------------------------
# InfoNCE
# ---------------------------------------------------------------------------------------------

# Three unit vectors per view, chosen so the dot products are short decimals.
Z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
Z2 = torch.tensor([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
# S[i][j] = <Z1_i, Z2_j>, by hand:
S = [
    [0.8, 0.0, -1.0],
    [0.6, 1.0, 0.0],
    [0.96, 0.8, -0.6],
]
TAU = 0.5


def _ce(own: float, others: list[float]) -> float:
    """-log(exp(own) / (exp(own) + sum exp(others))), the logits already divided by TAU."""
    return -math.log(math.exp(own) / (math.exp(own) + sum(math.exp(o) for o in others)))


def test_info_nce_equals_hand_computation():
    s = [[v / TAU for v in row] for row in S]
    rows = [
        _ce(s[0][0], [s[0][1], s[0][2]]),
        _ce(s[1][1], [s[1][0], s[1][2]]),
        _ce(s[2][2], [s[2][0], s[2][1]]),
    ]
    cols = [
        _ce(s[0][0], [s[1][0], s[2][0]]),
        _ce(s[1][1], [s[0][1], s[2][1]]),
        _ce(s[2][2], [s[0][2], s[1][2]]),
    ]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert info_nce(Z1, Z2, TAU).item() == pytest.approx(expected, rel=1e-12)


def test_info_nce_masks_false_negatives_in_both_directions():
    # Examples 0 and 1 share a class: s[0][1] leaves row 0 and column 1, s[1][0] leaves row 1
    # and column 0; example 2 keeps every candidate.
    s = [[v / TAU for v in row] for row in S]
    rows = [
        _ce(s[0][0], [s[0][2]]),
        _ce(s[1][1], [s[1][2]]),
        _ce(s[2][2], [s[2][0], s[2][1]]),
    ]
    cols = [
        _ce(s[0][0], [s[2][0]]),
        _ce(s[1][1], [s[2][1]]),
        _ce(s[2][2], [s[0][2], s[1][2]]),
    ]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    labels = torch.tensor([4, 4, 7])
    assert info_nce(Z1, Z2, TAU, labels=labels).item() == pytest.approx(expected, rel=1e-12)
    # All-distinct labels mask nothing.
    distinct = info_nce(Z1, Z2, TAU, labels=torch.tensor([0, 1, 2]))
    assert distinct.item() == pytest.approx(info_nce(Z1, Z2, TAU).item(), rel=1e-12)


def test_info_nce_is_symmetric_and_not_the_guides_one_directional_loss():
    assert info_nce(Z1, Z2, TAU).item() == pytest.approx(info_nce(Z2, Z1, TAU).item(), rel=1e-12)
    one_way = F.cross_entropy(Z1 @ Z2.T / TAU, torch.arange(3))  # the guide's §8 sketch
    assert abs(one_way.item() - info_nce(Z1, Z2, TAU).item()) > 1e-2


def test_info_nce_computes_in_float32_for_half_inputs():
    loss = info_nce(Z1.half(), Z2.half(), TAU)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(info_nce(Z1, Z2, TAU).item(), abs=1e-3)


def test_learnable_temperature_gets_a_gradient():
    log_t = torch.nn.Parameter(torch.tensor(temperature_parameter(0.1)))
    z1 = F.normalize(torch.randn(8, 4), dim=1)
    z2 = F.normalize(z1 + 0.3 * torch.randn(8, 4), dim=1)
    info_nce(z1, z2, bounded_temperature(log_t)).backward()
    assert log_t.grad is not None and torch.isfinite(log_t.grad) and log_t.grad.abs() > 0


def test_bounded_temperature_stays_in_bounds_and_inverts():
    extremes = torch.tensor([-1e30, -100.0, -5.0, 0.0, 5.0, 100.0, 1e30, float("inf")])
    t = bounded_temperature(extremes, low=0.01, high=1.0)
    assert bool((t >= 0.01).all()) and bool((t <= 1.0).all())
    assert t[0].item() == pytest.approx(0.01) and t[-1].item() == pytest.approx(1.0)
    for start in (0.02, 0.07, 0.5, 0.93):
        raw = torch.tensor(temperature_parameter(start, 0.01, 1.0), dtype=torch.float64)
        assert bounded_temperature(raw, 0.01, 1.0).item() == pytest.approx(start, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Triplet loss
# ---------------------------------------------------------------------------------------------


def _line(xs: list[float]) -> torch.Tensor:
    """Points on the x axis, as 2-D embeddings, in float64 so distances are exact."""
    return torch.tensor([[x, 0.0] for x in xs], dtype=torch.float64)


# Classes 0 and 1 interleaved on a line, and one example of class 2 far off (no positive).
LINE = [0.0, 1.0, 2.5, 4.5, 6.0, 20.0]
LINE_LABELS = torch.tensor([0, 1, 0, 1, 0, 2])


def test_batch_hard_mining_picks_farthest_positive_and_nearest_negative():
    dist = pairwise_distance(_line(LINE))
    pos, neg = hardest_pairs(dist, LINE_LABELS)
    # anchor 0 (x=0): positives 2.5, 6 -> 4; negatives 1, 4.5, 20 -> 1
    # anchor 1 (x=1): positive 4.5 -> 3; negatives 0, 2.5, 6, 20 -> 0
    # anchor 2 (x=2.5): positives 0, 6 -> 4 (3.5 away); negatives 1, 4.5 -> 1 (1.5 away)
    # anchor 3 (x=4.5): positive 1 -> 1; negatives 0, 2.5, 6, 20 -> 4 (1.5 away)
    # anchor 4 (x=6): positives 0, 2.5 -> 0; negatives 1, 4.5, 20 -> 3
    # anchor 5 (x=20): no positive; nearest negative x=6 -> 4
    assert pos.tolist() == [4, 3, 4, 1, 0, -1]
    assert neg.tolist() == [1, 0, 1, 4, 3, 4]


def test_batch_hard_triplet_loss_equals_hand_value():
    # relu(d_ap - d_an + 0.2) per anchor with a positive and a negative (anchor 5 has none):
    # 0: 6 - 1 + .2 = 5.2; 1: 3.5 - 1 + .2 = 2.7; 2: 3.5 - 1.5 + .2 = 2.2;
    # 3: 3.5 - 1.5 + .2 = 2.2; 4: 6 - 1.5 + .2 = 4.7
    expected = (5.2 + 2.7 + 2.2 + 2.2 + 4.7) / 5
    loss = triplet_loss(_line(LINE), LINE_LABELS, margin=0.2, mining="batch-hard")
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    # A margin the hardest triplets already satisfy by far costs nothing.
    spread = _line([0.0, 0.1, 5.0, 5.1])
    assert triplet_loss(spread, torch.tensor([0, 0, 1, 1]), margin=1.0).item() == 0.0


# Two tight classes and one far example of class 0 (x=8), whose pairs have every negative
# nearer than the positive: semi-hard mining must fall back to the nearest negative there.
SEMI = [0.0, 1.0, 1.8, 3.5, 8.0]
SEMI_LABELS = torch.tensor([0, 0, 1, 1, 0])


def test_semi_hard_mining_picks_nearest_negative_beyond_the_positive():
    chosen = semi_hard_negatives(pairwise_distance(_line(SEMI)), SEMI_LABELS)
    expected = [
        # (0,1): d_ap 1, negatives 1.8, 3.5 -> 2; (0,4): d_ap 8, none beyond -> nearest, 2
        [-1, 2, -1, -1, 2],
        # (1,0): d_ap 1, negatives 0.8, 2.5 -> 3 (batch-hard would take 2); (1,4): d_ap 7 -> 2
        [3, -1, -1, -1, 2],
        # (2,3): d_ap 1.7, negatives 1.8 (x=0), 0.8, 6.2 -> 0
        [-1, -1, -1, 0, -1],
        # (3,2): d_ap 1.7, negatives 3.5, 2.5, 4.5 -> 1
        [-1, -1, 1, -1, -1],
        # (4,0): d_ap 8 and (4,1): d_ap 7, negatives 6.2, 4.5: none beyond -> nearest, 3
        [3, 3, -1, -1, -1],
    ]
    assert chosen.tolist() == expected


def test_semi_hard_triplet_loss_equals_hand_value():
    # relu(d_ap - d_an + 1) over the 8 anchor-positive pairs above:
    terms = [
        1 - 1.8 + 1,  # (0,1)
        8 - 1.8 + 1,  # (0,4), fallback
        0.0,  # (1,0): 1 - 2.5 + 1 < 0
        7 - 0.8 + 1,  # (1,4), fallback
        1.7 - 1.8 + 1,  # (2,3)
        1.7 - 2.5 + 1,  # (3,2)
        8 - 4.5 + 1,  # (4,0), fallback
        7 - 4.5 + 1,  # (4,1), fallback
    ]
    loss = triplet_loss(_line(SEMI), SEMI_LABELS, margin=1.0, mining="semi-hard")
    assert loss.item() == pytest.approx(sum(terms) / 8, rel=1e-9)


@pytest.mark.parametrize("mining", ["batch-hard", "semi-hard"])
def test_triplet_gradients_are_finite_for_identical_embeddings(mining):
    base = F.normalize(torch.randn(6, 4), dim=1)
    z = torch.cat([base, base[:2]]).requires_grad_()  # rows 6, 7 repeat rows 0, 1
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 2])  # row 6 is a positive at distance 0
    loss = triplet_loss(z, labels, margin=0.5, mining=mining)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(z.grad).all())
    assert z.grad.abs().sum() > 0


def test_pairwise_distance_matches_cdist():
    z = torch.randn(7, 5, dtype=torch.float64)
    d = pairwise_distance(z)
    reference = torch.cdist(z, z)
    off = ~torch.eye(7, dtype=torch.bool)
    torch.testing.assert_close(d[off], reference[off])


# ---------------------------------------------------------------------------------------------
# ArcFace
# ---------------------------------------------------------------------------------------------


def _unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def test_arcface_logits_equal_hand_values():
    centres = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)  # normalised inside
    z = torch.tensor([_unit(0.3), _unit(2.9), _unit(1.0)], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    m, s = 0.5, 30.0
    logits = arcface_logits(z, centres, labels, margin=m, scale=s)
    expected = torch.tensor(
        [
            # theta = 0.3 to its centre: cos(0.3 + m); the other centre is at angle pi/2
            [s * math.cos(0.3 + m), s * math.cos(math.pi / 2 - 0.3)],
            # theta = 2.9 > pi - m: the monotone branch cos(theta) - m sin(m)
            [s * (math.cos(2.9) - m * math.sin(m)), s * math.cos(math.pi / 2 - 2.9)],
            # target is centre 1 at pi/2, theta = pi/2 - 1
            [s * math.cos(1.0), s * math.cos(math.pi / 2 - 1.0 + m)],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(logits, expected)


def test_arcface_target_logit_decreases_with_the_angle():
    thetas = torch.linspace(0, math.pi, 200, dtype=torch.float64)
    z = torch.stack([thetas.cos(), thetas.sin()], dim=1)
    centre = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    target = arcface_logits(z, centre, torch.zeros(200, dtype=torch.long))[:, 0]
    assert bool((target[1:] < target[:-1]).all())


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_arcface_is_finite_at_cosine_exactly_plus_and_minus_one(sign):
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], requires_grad=True)
    z = (sign * centres.detach()[[0, 1]]).clone().requires_grad_()  # cos exactly sign to target
    labels = torch.tensor([0, 1])
    loss = arcface_loss(z, centres, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert bool(torch.isfinite(z.grad).all()) and bool(torch.isfinite(centres.grad).all())


def test_arcface_gradient_is_finite_just_inside_plus_one_in_float32():
    # cos = 1 - 1e-7 in float32 sits between 1 - eps and 1 for eps = 1e-6: clamped, finite.
    angle = math.acos(1 - 1e-7)
    z = torch.tensor([_unit(angle)], requires_grad=True)
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    arcface_loss(z, centres, torch.tensor([0])).backward()
    assert bool(torch.isfinite(z.grad).all()) and bool(torch.isfinite(centres.grad).all())


# ---------------------------------------------------------------------------------------------
# Contrastive loss and pairs
# ---------------------------------------------------------------------------------------------


def test_contrastive_loss_equals_hand_value():
    z1 = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)
    z2 = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.2]], dtype=torch.float64)
    same = torch.tensor([True, False, False])
    # d = 1, 5, 0.2; same: 1^2; different beyond the margin: 0; different inside: (2 - 0.2)^2
    expected = (1.0 + 0.0 + 1.8**2) / 3
    assert contrastive_loss(z1, z2, same, margin=2.0).item() == pytest.approx(expected)
    as_ints = contrastive_loss(z1, z2, same.long(), margin=2.0)
    assert as_ints.item() == pytest.approx(expected)


def test_contrastive_gradient_is_finite_at_zero_distance():
    z1 = torch.tensor([[0.6, 0.8], [1.0, 0.0]], requires_grad=True)
    z2 = z1.detach().clone()
    contrastive_loss(z1, z2, torch.tensor([True, False])).backward()
    assert bool(torch.isfinite(z1.grad).all())


def test_pairs_from_batch_lists_every_pair_once():
    z = torch.arange(8.0).view(4, 2)
    z1, z2, same = pairs_from_batch(z, torch.tensor([0, 1, 0, 1]))
    pairs = [(int(a[0]) // 2, int(b[0]) // 2) for a, b in zip(z1, z2, strict=True)]
    assert pairs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert same.tolist() == [False, True, False, False, True, False]


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def test_refusals_name_the_argument():
    z = F.normalize(torch.randn(4, 3), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="z2"):
        info_nce(z, z[:3], 0.1)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, torch.tensor(-0.5))
    with pytest.raises(ValueError, match="labels"):
        info_nce(z, z, 0.1, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="mining"):
        triplet_loss(z, labels, mining="hardest")
    with pytest.raises(ValueError, match="two classes and two examples"):
        triplet_loss(z, torch.tensor([0, 0, 0, 0]))
    with pytest.raises(ValueError, match="two classes and two examples"):
        triplet_loss(z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="labels"):
        triplet_loss(z, labels.float())
    with pytest.raises(ValueError, match="labels"):
        arcface_logits(z, torch.randn(2, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="centres"):
        arcface_logits(z, torch.randn(2, 5), labels)
    with pytest.raises(ValueError, match="same"):
        contrastive_loss(z, z, torch.tensor([True]))
    with pytest.raises(ValueError, match="low"):
        bounded_temperature(torch.tensor(0.0), low=1.0, high=0.5)
    with pytest.raises(ValueError, match="t strictly between"):
        temperature_parameter(2.0)
