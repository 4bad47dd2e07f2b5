import math

import pytest

from fieldguide.train.schedule import warmup_cosine


def test_values_at_start_warmup_end_midpoint_and_end():
    w, total = 10, 110
    assert warmup_cosine(0, w, total) == 0.0
    assert warmup_cosine(5, w, total) == pytest.approx(0.5)
    assert warmup_cosine(w, w, total) == pytest.approx(1.0)  # end of warmup: the peak
    assert warmup_cosine(60, w, total) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine(total, w, total) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(total, w, total, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(60, w, total, min_ratio=0.1) == pytest.approx(0.55)


def test_is_a_plain_float_and_monotone_after_warmup():
    # The guide's sketch calls torch.cos on a Python float and raises TypeError (known-defects §13).
    values = [warmup_cosine(s, 5, 50) for s in range(51)]
    assert all(type(v) is float for v in values)
    assert all(a <= b for a, b in zip(values[:5], values[1:6], strict=True))
    assert all(a >= b for a, b in zip(values[5:-1], values[6:], strict=True))
    assert values[20] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 45)))


def test_no_warmup_starts_at_the_peak():
    assert warmup_cosine(0, 0, 100) == 1.0


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 0, 0), "total_steps"), ((0, 11, 10), "warmup_steps"), ((0, 1, 10, 1.5), "min_ratio")],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        warmup_cosine(*args)
