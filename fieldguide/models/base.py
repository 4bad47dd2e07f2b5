"""What every fieldguide model shares: a config, a name, declared invariants, an example input.

Invariants a model may declare (one generic checker in tests/test_model_contract.py verifies
every declared property of every registered model):

- ``batch_independent``: in eval mode, a sample's output does not depend on the other samples
  of its batch (no batch statistics leak across samples).
- ``causal``: for sequences (B, T, C), the output at step t depends on inputs at steps <= t only.
- ``streamable``: `initial_state(batch_size)` and `step(x_t, state)` reproduce the full forward
  pass one step at a time, batched.

The task contract (tasks/base.py): a model class declares what it `reads` (one of `READS`), a
task declares which of those it accepts, and the task sizes the model for its data through
`config_for_data(config, spec)`, where `spec` (a `DataSpec`) says what one example looks like
and what the task needs out. Fields the data decides (input width, outputs, vocabulary, the
pool or readout a task needs) are set there; every other field stays the user's.

Generative models (diffusion, flows, VAEs) set `outputs = ("generative",)` and
`trains_for = "generation"`, so the generation task (tasks/generation.py) trains them on any
image or vector data. They work in "model space": images scaled to [-1, 1] (pixels in [0, 1]
times 2 minus 1), vectors standardised. They implement:

- `loss(x, y) -> Tensor`: the scalar training loss of a batch (mean over examples); y (B,)
  int64 labels, ignored unless the model is class-conditional.
- `sample(n, y=None, *, generator=None, **options) -> Tensor`: n samples (n, *shape) in model
  space; y (n,) the classes to condition on.
- Flows also `log_prob(x, y=None) -> Tensor` (B,) in nats, exact; VAEs `elbo(x, y=None)` (B,),
  a lower bound of it. The task turns these into bits per dimension of the discrete data.
- `forward(...)`: one deterministic per-example map the generic contract can call on
  `example_input()` (diffusion: the noise prediction for (x_t, t, y); flows: z = f(x); VAEs:
  the reconstruction from the posterior mean).
- Config fields: `in_channels`, `image_size` (H = W; 0 for vectors of width in_channels),
  `conditional` (the preset's choice) and `num_classes` (set from the data when conditional,
  else 0); `config_for_data` sets in_channels, image_size and num_classes from the spec, whose
  shape is (C, H, W) or (D,) and whose num_outputs is the data's class count.

One name per concept across every config dataclass:

| concept                                   | field         |
| ----------------------------------------- | ------------- |
| input width (features, channels, node dims)| `in_channels` |
| outputs of the head (classes, targets)    | `out_dim`     |
| width of the hidden layers / residual stream | `hidden_dim` |
| stacked blocks or layers                  | `num_layers`  |
| attention heads                           | `num_heads`   |
| token vocabulary                          | `vocab_size`  |
| longest sequence a model can embed        | `max_len`     |
| dropout probability                       | `dropout`     |
| one output per sequence: "none", "last", "mean" | `pool`  |
| one output per graph: "none", "mean", "sum", "max" | `readout` |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from fieldguide.layers.shapes import check_shape

# What a model class can read; tasks accept some of these.
# "fields": a recommender's row, dense features (D,) plus F categorical fields, each a bag of
# ids (F, L) padded with id 0 (tasks/ctr.py); "interactions": (user, item) pairs (tasks/ranking.py).
READS = (
    "vectors",
    "images",
    "sequences",
    "tokens",
    "token-pairs",
    "graph",
    "fields",
    "interactions",
)
# What a task needs out of a model: one output per example (a row, an image, a whole sequence
# or text), per step of a sequence, per node of a graph, per graph, or per pixel of an image;
# "generative": the model learns the data's distribution (see GENERATIVE below); "embedding":
# one unit-norm vector per example, compared by cosine (tasks/metric_learning.py); "score":
# one relevance score per (user, item) pair (tasks/ranking.py).
Output = Literal[
    "per-example",
    "per-step",
    "per-node",
    "per-graph",
    "per-pixel",
    "generative",
    "embedding",
    "score",
]
OUTPUTS: tuple[str, ...] = get_args(Output)


@dataclass(frozen=True)
class DataSpec:
    """What a task's data asks of a model: the input it will get and the outputs it needs.

    Attributes:
        shape: One example's shape: (D,) vectors or node features, (C, H, W) images, (T, C)
            sequences, (T,) token ids (T the longest sequence the task feeds).
        num_outputs: Outputs per example, step, node, graph or pixel (classes, H * C, vocabulary).
        output: One of `OUTPUTS`.
        vocab_size: Token ids the model must embed (token models), else 0.
        description: Words for errors, such as "10 classes" or "horizon 12 x 1 column".
        fields: Rows of each categorical field's embedding table (id 0, the padding, included)
            for models that read "fields" (shape is then (D,), the dense features); for
            "interactions", (users, items); else ().
    """

    shape: tuple[int, ...]
    num_outputs: int
    output: Output = "per-example"
    vocab_size: int = 0
    description: str = ""
    fields: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"DataSpec.output must be one of {OUTPUTS}; got {self.output!r}.")
        if self.num_outputs < 1:
            raise ValueError(f"DataSpec.num_outputs must be at least 1; got {self.num_outputs}.")


class Model(nn.Module):
    """Base class of registered models; subclasses set `config` and the class variables."""

    invariants: ClassVar[frozenset[str]] = frozenset()
    reads: ClassVar[str] = ""  # one of READS; tasks check it before building
    outputs: ClassVar[tuple[str, ...]] = ("per-example",)  # the OUTPUTS it can give
    # The task a model trains for whatever the data ("generation" for generative models, which
    # learn the data's distribution with their own `loss`); "" lets the data choose the task.
    trains_for: ClassVar[str] = ""
    # The top-level module that maps features to outputs: what a linear probe trains and what
    # a new task replaces (STYLE.md calls it `head`; MobileNetV2 keeps torchvision's name).
    head_prefix: ClassVar[str] = "head"
    name: str = ""  # the registry name, set by create_model

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.name = type(self).__name__.lower()

    @property
    def input_description(self) -> str:
        """What forward expects, in words and shape letters, e.g. "images (B, 3, H, W)"."""
        raise NotImplementedError

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A small random input that forward accepts; used by tests, diagrams and benchmarks."""
        raise NotImplementedError

    @classmethod
    def config_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """Return `config` with the fields the data decides set from `spec`; others untouched."""
        raise NotImplementedError(f"{cls.__name__} does not say how to size itself for data.")

    @classmethod
    def refuse_output(cls, spec: DataSpec) -> None:
        """Raise one sentence when the task needs an output kind this class cannot give."""
        if spec.output not in cls.outputs:
            kinds = " or ".join(kind.removeprefix("per-") for kind in cls.outputs)
            raise ValueError(
                f"{cls.__name__} gives one output per {kinds}; this task needs one "
                f"{spec.output.replace('-', ' ')}."
            )

    @classmethod
    def square_image_fields(cls, config: Any, spec: DataSpec) -> Any:
        """A generative image model's data fields: in_channels, image_size, num_classes.

        Examples must be square (C, H, H) images; num_classes is the data's class count when
        the preset is conditional, else 0.
        """
        cls.refuse_shape(spec, "C H W")
        cls.refuse_output(spec)
        channels, height, width = spec.shape
        if height != width:
            raise ValueError(
                f"{cls.__name__} reads square images (H = W = image_size); the data gives "
                f"{height}x{width} images, so crop or resize them to a square."
            )
        classes = spec.num_outputs if config.conditional else 0
        return replace(config, in_channels=channels, image_size=height, num_classes=classes)

    @classmethod
    def refuse_shape(cls, spec: DataSpec, letters: str) -> None:
        """Raise one sentence when one example of the data is not of rank len(letters)."""
        names = letters.split()
        if len(spec.shape) != len(names):
            shown = f"({', '.join(names)}{',' if len(names) == 1 else ''})"  # (C, H, W), (T,)
            raise ValueError(
                f"{cls.__name__} reads {cls.reads} whose examples have shape {shown}; "
                f"the data gives examples of shape {tuple(spec.shape)}."
            )

    def no_weight_decay(self) -> set[str]:
        """Names of parameters the trainer must not weight-decay (beyond norms and biases)."""
        return set()

    def optimizer_hints(self) -> dict[str, dict[str, float]]:
        """Per-parameter optimizer settings: name -> {"lr": ..., "weight_decay": ...}."""
        return {}

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class SequenceModel(Model):
    """Base of sequence models: config has in_channels, out_dim and pool (layers/sequence.py)."""

    reads = "sequences"
    outputs = ("per-example", "per-step")
    example_length = 16  # T of the example input

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"sequences (B, T, {self.config.in_channels}), optional lengths (B,)"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random sequences of shape (batch_size, example_length, in_channels)."""
        return torch.randn(batch_size, self.example_length, self.config.in_channels)

    @classmethod
    def config_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """Examples (T, C) set in_channels = C and out_dim; pool follows the output needed.

        Per step: pool "none". Per example: the user's "last" or "mean" stays; "none" becomes
        "last" for a model that declares itself causal (its last real step has read the whole
        sequence and nothing else) and "mean" over real steps otherwise. Invariants may depend
        on the config (an RNN is causal only with pool="none"), so a probe with pool="none" is
        built, under a forked RNG so that it does not shift the seed of the real weights.
        """
        cls.refuse_shape(spec, "T C")
        cls.refuse_output(spec)
        pool = config.pool
        if spec.output == "per-step":
            pool = "none"
        elif pool == "none":
            with torch.random.fork_rng(devices=[]):
                probe = cls(replace(config, pool="none", in_channels=spec.shape[1]))
            pool = "last" if "causal" in probe.invariants else "mean"
        return replace(config, in_channels=spec.shape[1], out_dim=spec.num_outputs, pool=pool)

    def initial_state(self, batch_size: int) -> Any:
        """The streaming state before the first step."""
        raise NotImplementedError(f"{type(self).__name__} does not stream.")

    def step(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step: x_t (B, in_channels) -> (y_t (B, out_dim), next state)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream.")

    def _check_step(self, x_t: object) -> None:
        if getattr(self.config, "pool", "none") == "mean":
            raise ValueError(
                f"{self.name} streams only with pool 'none' or 'last'; it has pool='mean'."
            )
        check_shape(
            x_t,
            "B C",
            C=self.config.in_channels,
            owner=self.name,
            name="x_t",
            what="one step",
            like=next(self.parameters(), None),
        )
