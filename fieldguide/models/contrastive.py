"""Siamese / two-tower embedding networks (docs/guide/contrastive.md).

Letters: B batch, E embedding width.

An `Embedder` wraps any registered backbone that reads images, vectors, sequences or tokens.
The backbone's per-example output (width `feature_dim`) feeds a projection head (a linear
layer, or Linear -> ReLU -> Linear, width `embed_dim`) on which the losses are computed. What
the embedder returns, and what retrieval compares by cosine similarity, is set by `retrieval`:

- "backbone" (default): the backbone's features, scaled to unit length. The projection head
  serves the loss only, as in SimCLR (Chen et al., 2020): the loss makes the head's output
  ignore whatever does not separate the training classes, which classes never trained on may
  need. On digits with classes 5-9 held out, recall@1 on them was 0.71-0.82 from the backbone
  against 0.46-0.66 from the head, for each of InfoNCE, triplet and ArcFace (300 steps).
- "projection": the head's output, scaled to unit length (the same space the loss sees).

With `shared=True` (the usual Siamese network) both views of a pair pass through one tower;
with `shared=False` there is a second tower of the same shape (`gallery`, its own weights),
for the gallery side of query-gallery pairs.

The embedder also holds what its losses learn besides the towers (tasks/metric_learning.py):
an InfoNCE temperature, learnable within [0.01, 1], and, for ArcFace, one centre per training
class; `loss_parameters()` names them with the projection heads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.metric import bounded_temperature, temperature_parameter
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import get_entry, register

# What a backbone may read; each gets an Embedder subclass, since `reads` is a class property.
BACKBONE_READS = ("images", "vectors", "sequences", "tokens")
# The range a learnable InfoNCE temperature moves in (see `temperature`).
TEMPERATURE_RANGE = (0.01, 1.0)


@dataclass(frozen=True)
class EmbedderConfig:
    """A backbone, its projection head and the embedding's size; the data sets the input."""

    backbone: str = (
        "resnet-tiny"  # a registered model that reads images, vectors, sequences or tokens
    )
    in_shape: tuple[int, ...] = (1, 8, 8)  # one example's shape; set from the data
    vocab_size: int = 0  # token backbones: ids to embed; set from the data
    feature_dim: int = 128  # the backbone's output width, the projection's input
    embed_dim: int = 64  # width of the unit-norm embedding
    projection: Literal["mlp", "linear"] = "mlp"  # mlp: Linear -> ReLU -> Linear
    shared: bool = True  # one tower for both views; False: a query tower and a gallery tower
    temperature: float = 0.1  # InfoNCE's starting temperature
    learn_temperature: bool = True  # learn it, within [0.01, 1]
    num_classes: int = 0  # ArcFace: one centre per training class; set from the data
    retrieval: Literal["backbone", "projection"] = "backbone"  # what embeds: see the module

    def __post_init__(self) -> None:
        for field in ("feature_dim", "embed_dim"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"EmbedderConfig.{field} must be at least 1; got {getattr(self, field)}."
                )
        low, high = TEMPERATURE_RANGE
        if not low <= self.temperature <= high:
            raise ValueError(
                f"EmbedderConfig.temperature must be in [{low}, {high}]; got {self.temperature}."
            )
        if self.num_classes < 0:
            raise ValueError(f"EmbedderConfig.num_classes must be >= 0; got {self.num_classes}.")


def projection_head(config: EmbedderConfig) -> nn.Module:
    """feature_dim -> embed_dim: one Linear, or Linear -> ReLU -> Linear."""
    f, e = config.feature_dim, config.embed_dim
    if config.projection == "linear":
        return nn.Linear(f, e)
    return nn.Sequential(nn.Linear(f, f), nn.ReLU(), nn.Linear(f, e))


class Tower(nn.Module):
    """A backbone and its projection head: the gallery tower of a two-tower embedder."""

    def __init__(self, backbone: nn.Module, config: EmbedderConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection_head(config)


def backbone_config(config: EmbedderConfig) -> Any:
    """The backbone preset's config sized for `config.in_shape`, with `feature_dim` outputs."""
    entry = get_entry(config.backbone)
    spec = DataSpec(
        tuple(config.in_shape),
        config.feature_dim,
        vocab_size=config.vocab_size,
        description=f"{config.feature_dim} features",
    )
    return entry.cls.config_for_data(entry.config, spec)


class Embedder(Model):
    """Siamese or two-tower embedding network (Bromley et al., 1993) over any backbone."""

    outputs = ("embedding",)
    trains_for = "metric-learning"

    def __init__(self, config: EmbedderConfig) -> None:
        super().__init__(config)
        entry = get_entry(config.backbone)
        if entry.cls.reads != self.reads:
            raise ValueError(
                f"{type(self).__name__} wraps a backbone that reads {self.reads}; "
                f"backbone={config.backbone!r} reads {entry.cls.reads or 'nothing declared'}."
            )
        sized = backbone_config(config)
        self.backbone = entry.cls(sized)  # the query tower (the only one when shared)
        self.projection = projection_head(config)
        # shared=False: a gallery tower of the same shape, from its own draw of weights.
        self.gallery = None if config.shared else Tower(entry.cls(sized), config)
        low, high = TEMPERATURE_RANGE
        start = min(max(config.temperature, low + 1e-4), high - 1e-4)  # strictly inside
        self.temperature_logit = nn.Parameter(
            torch.tensor(temperature_parameter(start, low, high)),
            requires_grad=config.learn_temperature,
        )
        centres = torch.randn(config.num_classes, config.embed_dim) / config.embed_dim**0.5
        self.class_centres = nn.Parameter(centres)
        self.name = self.name  # the backbones now exist: they take the name too
        self.default_tower = 0  # what forward embeds with when no tower is given
        self.default_head = config.retrieval == "projection"  # and through the head or not

    @property
    def invariants(self) -> frozenset[str]:  # type: ignore[override]
        """`batch_independent` when the backbone is (its batch norms use running statistics)."""
        return frozenset(self.backbone.invariants) & {"batch_independent"}

    @property
    def input_description(self) -> str:
        """What forward expects: the backbone's input."""
        return self.backbone.input_description

    def example_input(self, batch_size: int = 2) -> Any:
        """The backbone's example input."""
        return self.backbone.example_input(batch_size)

    def temperature(self) -> Tensor:
        """InfoNCE's temperature, low + (high - low) * sigmoid(parameter): never outside range."""
        return bounded_temperature(self.temperature_logit, *TEMPERATURE_RANGE)

    def loss_parameters(self) -> set[str]:
        """Parameters only the task's losses read.

        The temperature, the class centres and, when retrieval reads the backbone, the
        projection heads.
        """
        names = {"temperature_logit", "class_centres"}
        if not self.default_head:
            names |= {n for n, _ in self.named_parameters() if ".projection." in f".{n}"}
        return names

    def no_weight_decay(self) -> set[str]:
        """The temperature and the class centres are not decayed."""
        return {"temperature_logit", "class_centres"}

    @property
    def name(self) -> str:
        """The registry name; the backbone reports errors under it too."""
        return self.__dict__.get("_name", "")

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["_name"] = value
        modules = self.__dict__.get("_modules", {})
        gallery = modules.get("gallery")
        for backbone in (modules.get("backbone"), getattr(gallery, "backbone", None)):
            if backbone is not None:
                backbone.name = value

    @classmethod
    def config_for_data(cls, config: EmbedderConfig, spec: DataSpec) -> EmbedderConfig:
        """The example's shape, the vocabulary and the training classes come from the data."""
        cls.refuse_output(spec)
        sized = replace(
            config,
            in_shape=tuple(int(s) for s in spec.shape),
            vocab_size=spec.vocab_size,
            num_classes=spec.num_outputs,
        )
        backbone_config(sized)  # refuses a backbone that cannot read these examples, now
        return sized

    @property
    def embedding_dim(self) -> int:
        """Width of what forward returns: feature_dim from the backbone, else embed_dim."""
        return self.config.embed_dim if self.default_head else self.config.feature_dim

    def forward(
        self,
        x: Tensor,
        *args: Any,
        tower: int | None = None,
        head: bool | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Unit-norm embeddings (B, E) of the backbone's inputs.

        Args:
            x: The backbone's input.
            *args: More inputs for the backbone.
            tower: 0 queries, 1 the gallery tower (shared=False); None: `default_tower`.
            head: Through the projection head (what the losses see, E = embed_dim) or not
                (the backbone's features, E = feature_dim); None: as `retrieval` says.
            **kwargs: Inputs the backbone takes by name (the lengths of sequences, the padding
                mask of token ids).
        """
        tower = self.default_tower if tower is None else tower
        head = self.default_head if head is None else head
        if tower not in (0, 1):
            raise ValueError(f"{self.name}: tower must be 0 (queries) or 1 (gallery); got {tower}.")
        owner = self.gallery if tower == 1 and self.gallery is not None else self
        features = owner.backbone(x, *args, **kwargs)
        if head:
            features = owner.projection(features)
        return F.normalize(features.float(), dim=-1)


class ImageEmbedder(Embedder):
    """Siamese embedding network over an image backbone."""

    reads = "images"


class VectorEmbedder(Embedder):
    """Siamese embedding network over a vector backbone (an MLP)."""

    reads = "vectors"


class SequenceEmbedder(Embedder):
    """Siamese embedding network over a sequence backbone (RNN, TCN, state-space)."""

    reads = "sequences"


class TokenEmbedder(Embedder):
    """Siamese embedding network over a token backbone (a Transformer encoder)."""

    reads = "tokens"


register(
    "siamese-resnet-tiny",
    EmbedderConfig(backbone="resnet-tiny", in_shape=(1, 28, 28)),
    ImageEmbedder,
)
register(
    "siamese-mlp",
    EmbedderConfig(backbone="mlp-small", in_shape=(64,), feature_dim=128),
    VectorEmbedder,
)
register(
    "siamese-gru",
    EmbedderConfig(backbone="gru", in_shape=(32, 13), feature_dim=64, embed_dim=32),
    SequenceEmbedder,
)
register(
    "siamese-bert-tiny",
    EmbedderConfig(backbone="bert-tiny", in_shape=(64,), vocab_size=259, feature_dim=64),
    TokenEmbedder,
)
