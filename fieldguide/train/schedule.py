"""Learning-rate schedule: linear warmup, then cosine decay to a floor.

    factor(s) = s / W                                        for s < W
    factor(s) = m + (1 - m) · ½ (1 + cos(π (s - W) / (S - W)))  for W <= s <= S

with W warmup steps, S total steps and m the floor as a fraction of the peak. The guide's sketch
calls `torch.cos` on a Python float, which raises a TypeError; this is plain `math.cos`.
The schedule is a pure function of the step, so resuming needs nothing but the step.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}."
        )
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}.")
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
