"""Judging generated images with a classifier trained on the real ones.

Two numbers, both computed with a fieldguide classifier run (not Inception, so they are not
FID and are not comparable to published FIDs):

- class accuracy: the share of class-conditioned samples the classifier assigns to the class
  they were drawn for (real held-out images give the ceiling);
- Fréchet distance in the classifier's features: the Fréchet distance between Gaussians fitted
  to the classifier's penultimate features of samples and of real test images,
  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature rows `a` (N, F) and `b` (M, F)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"frechet_distance expects two (N, F) feature matrices with the same F and N >= 2; "
            f"got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    a, b = a.double(), b.double()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    vals, vecs = torch.linalg.eigh(s1)
    root1 = (vecs * vals.clamp_min(0).sqrt()) @ vecs.T  # S1^1/2
    middle = root1 @ s2 @ root1  # symmetric PSD
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * cross)


def penultimate(model: nn.Module, x: Tensor, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """(features before the last Linear, logits) of `model` on x, in eval mode, batched."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ValueError(f"penultimate expects a classifier ending in nn.Linear; got {model}.")
    head, grabbed = heads[-1], []
    hook = head.register_forward_hook(lambda _m, inputs, _out: grabbed.append(inputs[0]))
    feats, logits = [], []
    model.eval()
    try:
        with torch.no_grad():
            for chunk in x.split(batch_size):
                logits.append(model(chunk).float())
                feats.append(grabbed.pop().float().flatten(1))
    finally:
        hook.remove()
    return torch.cat(feats), torch.cat(logits)
