"""A small synthetic classification problem (named as such) for trainer tests."""

import torch

from fieldguide.data.base import ClassificationData, Split
from fieldguide.tasks.classification import ClassificationTask


def synthetic_data(
    n: int = 100, dim: int = 8, classes: int = 3, seed: int = 0
) -> ClassificationData:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 2

    def split(m: int) -> Split:
        y = torch.randint(0, classes, (m,), generator=g)
        return Split(centers[y] + torch.randn(m, dim, generator=g), y)

    return ClassificationData(
        name="synthetic-blobs",
        modality="tabular",
        train=split(n),
        val=split(40),
        test=split(40),
        classes=[f"c{i}" for i in range(classes)],
        input_shape=(dim,),
        description="synthetic Gaussian blobs",
        synthetic=True,
    )


def task_and_model(seed: int = 0, **overrides):
    task = ClassificationTask(synthetic_data())
    torch.manual_seed(seed)
    # Dropout draws from torch's RNG and batch norm keeps buffers: both must survive a resume.
    model = task.build_model("mlp", hidden_dim=16, norm="batch", dropout=0.2, **overrides)
    return task, model
