"""The guide's knowledge as cards: one per family and one per registered model, as data.

A family card says what the family is, when to reach for it and when not, habits that make it
train well, what to try instead, the shapes it reads, the properties its models guarantee, a
cost class and which defects of a naive version (docs known-defects) the code here avoids. A
model card is a short note on one preset plus its family's card. `render_card(name)` is the
text `fieldguide show NAME` prints; `docs/guide/` is generated from the same cards
(`python -m fieldguide.api.guide_docs docs/guide`).

This module imports no torch (nor anything that does): `fieldguide show` answers at once. The
numbers a card shows (parameters, input, config, diagram) come from `api/catalog.json`, which
is generated from the registry, so a card never restates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fieldguide.models.registry import FAMILIES
from fieldguide.suggest import unknown

# What a cost class means, from the cheapest up. A model's class follows from its parameter
# count (`cost_class`); a family card names the class of the size it is usually used at.
COST_CLASSES: dict[str, str] = {
    "tiny": "under 100k parameters: trains in seconds to a minute on one CPU core",
    "small": "100k to 1M parameters: trains in minutes on a laptop CPU",
    "medium": "1M to 30M parameters: a CPU can fine-tune it; full training wants a GPU",
    "large": "over 30M parameters: use it pretrained, or train it on a GPU",
}
_COST_BOUNDS = ((100_000, "tiny"), (1_000_000, "small"), (30_000_000, "medium"))

# The non-neural baselines of the family "classical" (fieldguide/models/classical.py).
CLASSICAL_MODELS = ("gbdt", "linear", "tfidf-logreg", "knn", "seasonal-naive", "spectral-logreg")
ALL_FAMILIES = tuple(FAMILIES) + (() if "classical" in FAMILIES else ("classical",))
# Families whose sizes come from fitting to the data: the catalogue's parameter count and input
# width describe the empty model (0 features), so cards leave them out.
FITTED_FAMILIES = ("classical",)


@dataclass(frozen=True)
class Alternative:
    """Something to try instead: a model, family or baseline name, and when it is the better bet."""

    name: str
    why: str


@dataclass(frozen=True)
class FamilyCard:
    """What one family is for, in the project's words; see the module docstring for the fields."""

    family: str
    title: str
    what: str
    use_when: tuple[str, ...]
    avoid_when: tuple[str, ...]
    tips: tuple[str, ...]
    alternatives: tuple[Alternative, ...]
    input_shapes: tuple[str, ...]
    invariants: tuple[str, ...]  # "name: meaning", name as models declare it (catalog.json)
    cost_class: str  # a key of COST_CLASSES
    avoids: tuple[str, ...]  # defects of the naive or sketched version that the code avoids


@dataclass(frozen=True)
class ModelCard:
    """One registered preset: what it is for, on top of its family's card."""

    name: str
    family: str
    note: str


def cost_class(parameters: int) -> str:
    """The cost class ("tiny" .. "large") of a model with `parameters` parameters."""
    if isinstance(parameters, bool) or not isinstance(parameters, int) or parameters < 0:
        raise ValueError(f"parameters must be a count >= 0; got {parameters!r}.")
    for bound, name in _COST_BOUNDS:
        if parameters < bound:
            return name
    return "large"


A = Alternative

FAMILY_CARDS: dict[str, FamilyCard] = {
    card.family: card
    for card in (
        FamilyCard(
            family="mlp",
            title="Multi-layer perceptron",
            what=(
                "Fully connected layers stacked one after another: every hidden block is a "
                "linear map, an optional norm, a nonlinearity and dropout, and a last linear "
                "layer gives the outputs. It reads a flat vector and assumes nothing about the "
                "order of its entries."
            ),
            use_when=(
                "each example is a fixed-length vector of numbers (engineered features, or the "
                "output of another encoder)",
                "you need a head on top of embeddings or pretrained features",
                "a table has many rows and you want a neural baseline beside the trees",
            ),
            avoid_when=(
                "the table is small (thousands of rows): boosted trees usually do better, so "
                "start with gbdt",
                "the input has spatial, temporal or graph structure that a CNN, sequence model "
                "or GNN can use",
                "columns are ids with many distinct values: give them embeddings (wide-deep, dlrm)",
            ),
            tips=(
                "standardise numeric columns; the table task fits the scaling on training rows "
                "only and saves it for predict",
                "weight decay plus early stopping; the preset `mlp` keeps dropout at 0.3, "
                "which held up best on small tables",
                "to go deeper, switch on residual blocks and layer norm (as mlp-deep does) "
                "rather than stacking plain layers",
            ),
            alternatives=(
                A("gbdt", "small or medium tables: trees are the stronger default"),
                A("linear", "a floor every model must beat, and often enough"),
                A("wide-deep", "many categorical ids beside the numbers"),
            ),
            input_shapes=("features (B, D): float, one row per example, D numeric inputs",),
            invariants=(
                "batch_independent: in eval mode a row's output depends on that row alone",
            ),
            cost_class="small",
            avoids=(
                "a deep plain stack that stops learning: deep presets add each block's input "
                "back and normalise per block",
                "one initialisation for every activation: weights start with Kaiming for the "
                "ReLU family and Xavier for tanh",
            ),
        ),
        FamilyCard(
            family="resnet",
            title="Residual convolutional network (ResNet)",
            what=(
                "A convolutional image classifier made of residual blocks: each block computes "
                "a correction that is added to a shortcut of its input, which keeps very deep "
                "stacks trainable. A stem lowers the resolution, stages of blocks halve H×W "
                "while widening the channels, and a pooled linear head gives the logits."
            ),
            use_when=(
                "image classification trained from scratch, especially on small images",
                "2-D signals that behave like images (spectrograms, heat maps)",
                "an image backbone for embeddings (siamese-resnet-tiny)",
            ),
            avoid_when=(
                "few labelled photos: start from ImageNet weights (mobilenetv2) instead of "
                "from scratch",
                "an answer per pixel is needed: use a U-Net",
                "batches of only a few images with batch norm: set norm=group",
            ),
            tips=(
                "images of 64 px or less want the small stem of resnet-tiny; the ImageNet stem "
                "shrinks a 28 px digit to 7 px before the first block",
                "augment (flips, crops; mixup or CutMix on larger data) and use warm-up then "
                "cosine decay, the trainer's default schedule",
                "weight decay on convolution and linear weights only, never on norms and "
                "biases (the trainer's parameter groups do this)",
            ),
            alternatives=(
                A("mobilenetv2", "natural photos and few labels: pretrained features"),
                A("vit", "lots of data or pretrained weights, global context"),
                A("knn", "a no-training baseline on small images"),
            ),
            input_shapes=(
                "images (B, C, H, W), float; H and W must survive the stem's downsampling",
            ),
            invariants=(
                "batch_independent: in eval mode batch norm uses running statistics, so an "
                "image's logits do not depend on its batch",
            ),
            cost_class="medium",
            avoids=(
                "an identity shortcut that breaks when a block changes stride or width: the "
                "shortcut becomes a 1x1 convolution plus norm whenever the shape changes",
                "deep variants that differ from the reference: resnet50 uses bottlenecks with "
                "the stride on the 3x3 convolution, so parameter counts equal torchvision's",
            ),
        ),
        FamilyCard(
            family="mobilenet",
            title="MobileNetV2 (pretrained, offline)",
            what=(
                "A light image classifier of inverted residual blocks: a 1x1 convolution "
                "widens the channels, a 3x3 depthwise convolution filters each channel on its "
                "own, and a 1x1 convolution narrows them again with no activation after it. "
                "It ships with torchvision's ImageNet weights inside an installed package."
            ),
            use_when=(
                "photo classification with few labels: fine-tune the ImageNet weights",
                "inference on a CPU or a device where a ResNet costs too many FLOPs",
                "a quick strong baseline: train the head alone (--freeze body)",
            ),
            avoid_when=(
                "tiny grey images (8 or 28 px): the weights saw 224 px photos and inputs must "
                "be at least 32 px; resnet-tiny suits them better",
                "no installed weights package: mobilenetv2-scratch trains from random "
                "weights and loses the head start",
            ),
            tips=(
                "scale pixels to [0, 1] and normalise with ImageNet's mean and std; a "
                "pretrained run does this by itself",
                "begin with a linear probe (--freeze body) or LoRA; unfreeze everything with a "
                "lower learning rate only if it underfits",
                "grey images work: the first convolution's filters are summed over RGB",
            ),
            alternatives=(
                A("resnet18", "train from scratch when the images are unlike photos"),
                A("resnet-tiny", "small grey images"),
                A("vit-b16", "bigger budget and published ViT weights"),
            ),
            input_shapes=(
                "images (B, 3, H, W), H, W >= 32, in [0, 1] then normalised with ImageNet "
                "statistics; 224x224 for the published accuracy",
            ),
            invariants=(
                "batch_independent: in eval mode an image's logits do not depend on its batch",
            ),
            cost_class="medium",
            avoids=(
                "weights fetched at run time or read from an unchecked pickle: the file comes "
                "from a pinned package and loads (weights only) after its sha256 matches",
                "a first convolution that refuses grey input, or a head stuck at 1000 classes: "
                "filters are summed over colour channels and a new class count gets a fresh "
                "head over the pretrained body",
            ),
        ),
        FamilyCard(
            family="unet",
            title="U-Net (a pyramid down and up, joined by skips)",
            what=(
                "An encoder that halves the resolution level by level while widening the "
                "features, and a decoder that doubles it back, concatenating at each level the "
                "encoder's features of the same size, so fine detail skips past the "
                "bottleneck. A 1x1 convolution gives class logits for every pixel."
            ),
            use_when=(
                "semantic segmentation: one class per pixel (cells, roads, lesions)",
                "image-to-image tasks such as denoising or restoration",
                "small datasets of microscopy or medical images",
            ),
            avoid_when=(
                "the label belongs to the whole image: a classifier (resnet) is cheaper",
                "touching objects must be told apart (instance segmentation): per-pixel "
                "classes alone cannot separate them",
            ),
            tips=(
                "Dice or focal loss when the foreground is a small share of the pixels",
                "a first run on unet-tiny checks the images and masks in seconds",
                "group norm (the default) keeps batches of a few images stable",
                "apply the same flip or crop to an image and its mask",
            ),
            alternatives=(A("resnet", "only an image-level label is needed"),),
            input_shapes=(
                "images (B, C, H, W), any H, W >= 1; logits (B, K, H, W) of the same size",
                "masks for training: (B, H, W) int64 class ids",
            ),
            invariants=(
                "size_preserving: the output has the input's height and width, whatever they are",
                "uses_skips: decoder levels read the encoder's features of the same size",
                "batch_independent: in eval mode an image's output does not depend on its batch",
            ),
            cost_class="small",
            avoids=(
                "a crash on torch.cat when H or W is not a multiple of 2^depth: the input is "
                "padded (reflect or zeros) and the logits cropped back, odd sizes included",
                "batch norm on batches of one or two images: group norm by default, and a "
                "one-sentence refusal where batch norm cannot normalise",
            ),
        ),
        FamilyCard(
            family="rnn",
            title="Recurrent networks (RNN, GRU, LSTM)",
            what=(
                "A cell that reads one step at a time and carries a hidden state forward; "
                "stacked layers of GRU, LSTM or plain Elman cells run on torch's fused "
                "kernels, and a linear head reads each step's state or one state per sequence."
            ),
            use_when=(
                "online or streaming prediction: one step in, one output out, constant memory",
                "short to medium sequences with a few channels each (sensor readings, MFCCs)",
                "low-latency models on small devices",
            ),
            avoid_when=(
                "sequences of thousands of steps: training is sequential in time and the "
                "signal from far back fades; try tcn or s4d",
                "the whole sequence is at hand and parallel training speed matters: a TCN "
                "trains all steps at once",
            ),
            tips=(
                "prefer GRU or LSTM to the plain cell; its gradients vanish quickly",
                "clip gradients (the trainer does by default) and keep recurrent weights "
                "orthogonal at the start (done here)",
                "bidirectional (gru-bi) only when the whole sequence is known before the "
                "answer is needed; it is neither causal nor streamable",
            ),
            alternatives=(
                A("tcn", "parallel training with a known context length"),
                A("s4d", "very long sequences"),
                A("seasonal-naive", "the forecasting floor to beat"),
            ),
            input_shapes=(
                "sequences (B, T, C), float; optional lengths (B,) for right-padded batches",
            ),
            invariants=(
                "causal: the output at step t depends only on steps up to t (one direction)",
                "streamable: initial_state / step give the full forward's outputs step by step",
            ),
            cost_class="tiny",
            avoids=(
                "padding that leaks into real steps: batches are packed by length, and the "
                "backward direction starts at each sequence's own last real step",
                "a hand-written Python loop over time: the recurrence runs in torch's fused "
                "RNN, GRU and LSTM kernels",
            ),
        ),
        FamilyCard(
            family="tcn",
            title="Temporal convolutional network (TCN)",
            what=(
                "Residual blocks of dilated 1-D convolutions whose dilation doubles from block "
                "to block, so the window of past steps it sees grows exponentially with depth. "
                "Padding on the left only makes it causal: it can forecast without seeing the "
                "future and stream one step at a time."
            ),
            use_when=(
                "forecasting and sequence classification when the useful history fits in a "
                "window you can name",
                "training on all time steps in parallel",
                "streaming inference with a fixed amount of work per step",
            ),
            avoid_when=(
                "dependencies longer than the receptive field (read model.receptive_field)",
                "a short, strongly seasonal series: seasonal-naive may already be hard to beat",
            ),
            tips=(
                "pick num_layers so the receptive field, 1 + 2(k-1)(2^L - 1), covers the "
                "longest season you care about",
                "z-score each channel on the training part of the series",
                "read MASE in the report: below 1 means better than the seasonal-naive forecast",
            ),
            alternatives=(
                A("gru", "streaming with a state of fixed size and no window limit"),
                A("s4d", "context longer than a practical receptive field"),
                A("seasonal-naive", "the forecasting floor"),
            ),
            input_shapes=(
                "sequences (B, T, C), float; optional lengths (B,) for right-padded batches",
            ),
            invariants=(
                "causal: the output at step t depends only on steps up to t (tcn, tcn-small)",
                "streamable: step-by-step outputs equal the full forward pass",
                "batch_independent: no statistic is shared across a batch",
            ),
            cost_class="tiny",
            avoids=(
                "symmetric padding that lets the output at t see the future (leaky forecasts) "
                "and changes the length for even kernels: causal left padding by default, and "
                "the non-causal option keeps length T for every kernel",
                "a context length nobody checks: receptive_field is reported and a test "
                "measures it through gradients",
            ),
        ),
        FamilyCard(
            family="ssm",
            title="State-space models (S4D, Hyena)",
            what=(
                "Each channel runs a linear state-space system that is both a recurrence (run "
                "it step by step) and a long convolution (train on the whole sequence by FFT "
                "in O(T log T)). S4D uses a diagonal complex state; Hyena makes long filters "
                "with a small network and mixes them with gates."
            ),
            use_when=(
                "very long sequences (thousands to tens of thousands of steps) where "
                "attention's T x T cost is too much and an RNN trains too slowly",
                "long-range sequence classification, such as digits read pixel by pixel",
                "streaming with a state of fixed size (S4D)",
            ),
            avoid_when=(
                "short sequences (under a hundred steps): a GRU or TCN is simpler and as good",
                "tasks that look things up by content across the sequence (copying, "
                "retrieval), where attention is stronger",
            ),
            tips=(
                "try both initialisations, s4d (S4D-Lin) and s4d-inv (S4D-Inv), on your data",
                "Hyena streams by keeping the history (work grows with t); S4D's step keeps a "
                "fixed-size state",
                "for token data an attention model (gpt-mini) is the usual comparison",
            ),
            alternatives=(
                A("tcn", "a context of known, moderate length"),
                A("gru", "short streams and the smallest models"),
                A("transformer", "tokens and content-based lookups"),
            ),
            input_shapes=(
                "sequences (B, T, C), float; optional lengths (B,) for right-padded batches",
            ),
            invariants=(
                "causal: the output at step t depends only on steps up to t",
                "streamable: the recurrent mode equals the convolutional forward pass",
            ),
            cost_class="small",
            avoids=(
                "a long convolution padded k-1 on both sides, returning T+k-1 steps so the "
                "residual add fails, at O(T k) cost: an FFT convolution returns T steps in "
                "O(T log T)",
                "an unstable recurrence: A is parameterised with a negative real part, so the "
                "system stays stable whatever the optimiser does",
            ),
        ),
        FamilyCard(
            family="transformer",
            title="Transformers on tokens (encoder, decoder, encoder-decoder)",
            what=(
                "Token embeddings plus positions pass through pre-norm blocks of multi-head "
                "self-attention and an MLP. The encoder (bert-tiny, minilm) lets every token "
                "see every real token; the decoder (gpt-*) is causal and decodes with a KV "
                "cache; the encoder-decoder (t5-tiny) reads the source through cross-attention."
            ),
            use_when=(
                "text classification and understanding: an encoder, pretrained if possible "
                "(minilm)",
                "text or code generation: a decoder",
                "translation, summarisation or any text-to-text mapping: the encoder-decoder",
            ),
            avoid_when=(
                "little labelled text and no pretrained weights: tfidf-logreg often matches a "
                "small Transformer trained from scratch",
                "numeric sequences of many thousands of steps on a small memory budget: ssm",
                "strict per-sample latency on a small device with a numeric stream: rnn",
            ),
            tips=(
                "start from pretrained weights (minilm, gpt2-small) whenever they fit the task",
                "warm-up then cosine decay; no weight decay on norms, biases and embedding "
                "tables (the trainer's groups handle it); clip gradients",
                "mark padding with padding_mask so it is never attended to nor scored",
            ),
            alternatives=(
                A("tfidf-logreg", "the text classification baseline"),
                A("gru", "small on-device language models"),
                A("s4d", "very long sequences"),
            ),
            input_shapes=(
                "token ids (B, T) int64; optional padding_mask (B, T) bool, True at real tokens",
                "encoder-decoder: source ids (B, S) and target ids (B, T)",
            ),
            invariants=(
                "batch_independent: a sequence's output does not depend on its batch mates, "
                "nor on how much padding they bring",
                "streamable: decoders step with a KV cache and match the full forward pass",
            ),
            cost_class="medium",
            avoids=(
                "additive -1e9 masks that overflow in fp16 and give NaN on fully masked rows: "
                "boolean masks through scaled_dot_product_attention, padding and causal "
                "masks combined",
                "an explicit T x T softmax that keeps O(T^2) memory for backward: the fused "
                "attention kernel",
            ),
        ),
        FamilyCard(
            family="vit",
            title="Vision Transformer (ViT)",
            what=(
                "The image is cut into P×P patches, each flattened and projected to a token; "
                "learned positions and a class token are added, Transformer blocks mix the "
                "tokens, and the class token (or the mean of the patches) feeds a linear head."
            ),
            use_when=(
                "image classification with a lot of data or with published ViT weights "
                "(vit-b16 loads timm's and torchvision's exactly)",
                "tasks where relations across the whole image matter",
            ),
            avoid_when=(
                "small datasets trained from scratch: without a CNN's locality prior it "
                "overfits; resnet-tiny is the safer pick",
                "images of varying size: the position table fixes the input size",
            ),
            tips=(
                "from scratch, use heavy augmentation and longer schedules",
                "resize inputs to image_size; image_size must be a multiple of patch_size",
                "positions and the class token are kept out of weight decay",
            ),
            alternatives=(
                A("resnet18", "from scratch on modest data"),
                A("mobilenetv2", "pretrained and cheap at inference"),
                A("knn", "a baseline with no training"),
            ),
            input_shapes=("images (B, C, S, S) with S = image_size, a multiple of patch_size",),
            invariants=("batch_independent: an image's logits do not depend on its batch",),
            cost_class="large",
            avoids=(
                "an explicit softmax attention with additive masks: it reuses the shared "
                "fused-attention block of layers/attention.py",
                "weights that load but disagree with the source: LayerNorm eps and the exact "
                "GELU match timm and torchvision, so their weights give their outputs",
            ),
        ),
        FamilyCard(
            family="gnn",
            title="Message passing on graphs (GCN, GAT, GraphSAGE)",
            what=(
                "Message passing over a graph's edges: each layer updates a node from its "
                "neighbours' features, by a normalised average (GCN), learned attention "
                "weights (GAT) or its own features plus a pooled neighbourhood (GraphSAGE). "
                "Stacking L layers lets a node see L hops; a readout pools nodes for "
                "graph-level labels."
            ),
            use_when=(
                "labelling nodes of one graph (papers, users, proteins) from few labels",
                "labelling whole graphs (molecules, meshes, digit-graphs)",
                "edges carry information the node features alone do not",
            ),
            avoid_when=(
                "edges are noise: check an mlp on the node features first",
                "many layers without residuals: node states blur into one another "
                "(over-smoothing); keep two or three, or use gcn-deep",
            ),
            tips=(
                "with two labels per class, keep two layers and dropout",
                "large graphs: GraphSAGE with sampled neighbourhoods (--fanouts 10,5)",
                "weight the loss when classes are imbalanced",
            ),
            alternatives=(
                A("mlp", "node features alone"),
                A("spectral-logreg", "structure alone, no training loop"),
            ),
            input_shapes=(
                "node features x (N, C), edge_index (2, E) int64, optional edge_weight (E,); "
                "or a fieldguide Graph / torch_geometric Data",
                "graph classification: several graphs batched into one, with a batch vector",
            ),
            invariants=(
                "permutation_equivariant: renumbering the nodes renumbers the outputs the "
                "same way; graph readouts do not change",
            ),
            cost_class="tiny",
            avoids=(
                "a dense N x N normalised adjacency, O(N^2) memory: sparse message passing "
                "over edge_index in O(E)",
            ),
        ),
        FamilyCard(
            family="diffusion",
            title="Denoising diffusion (DDPM, DDIM)",
            what=(
                "A network learns to undo a gradual Gaussian noising of the data: at a random "
                "step t it sees a noisy image and predicts the noise (or v). Sampling starts "
                "from pure noise and removes it step by step (DDPM), or on fewer steps (DDIM); "
                "classifier-free guidance steers it toward a class."
            ),
            use_when=(
                "image generation where sample quality matters most",
                "class-conditional generation with a guidance knob",
            ),
            avoid_when=(
                "an exact likelihood is required: flows",
                "sampling must be one network pass, or a compact latent code is wanted: vae",
                "a few CPU minutes in all: vae-cond learns useful samples sooner",
            ),
            tips=(
                "sample from the EMA of the weights",
                "DDIM with about 50 steps is close to the full chain at a fraction of the cost",
                "a guidance scale between 1 and 5 trades variety for class fidelity",
            ),
            alternatives=(
                A("vae", "fast sampling and latent codes"),
                A("realnvp", "exact likelihood"),
            ),
            input_shapes=(
                "noisy images x (B, C, H, W) in [-1, 1], steps t (B,) int64, optional labels "
                "y (B,)",
            ),
            invariants=(
                "uses_skips: the denoiser is a U-Net with skip concatenations",
                "batch_independent: an image's prediction does not depend on its batch",
            ),
            cost_class="medium",
            avoids=(
                "a denoiser that never sees t and so cannot know how much noise to remove: a "
                "sinusoidal time embedding enters every block, and a test fails if the output "
                "ignores t",
                "schedule, sampler and network tangled together: the schedule is "
                "parameter-free and separate, so any of the three can be swapped",
            ),
        ),
        FamilyCard(
            family="flows",
            title="Normalizing flows (RealNVP)",
            what=(
                "An invertible stack of affine couplings and ActNorm that maps data to a "
                "standard-normal latent of the same size. Change of variables gives the exact "
                "log-likelihood; running the stack backwards turns noise into samples."
            ),
            use_when=(
                "an exact density is needed: anomaly scores, bits-per-dimension comparisons",
                "low-dimensional data (realnvp-2d)",
                "both exact inversion and sampling from one model",
            ),
            avoid_when=(
                "the best-looking image samples: diffusion",
                "a compressed latent: a flow's latent is as large as the data (vae)",
            ),
            tips=(
                "dequantise discrete pixels before scoring, and report bits per dimension",
                "alternate the coupling masks so every entry gets transformed",
                "watch the summed log-determinant early in training",
            ),
            alternatives=(
                A("vae", "compact latents and a likelihood bound"),
                A("diffusion", "sample quality"),
            ),
            input_shapes=(
                "vectors (B, D), standardised",
                "images (B, C, S, S) in [-1, 1], S halving once per scale",
            ),
            invariants=(
                "invertible: inverse(forward(x)) gives x back, and the log-det matches "
                "autograd's Jacobian",
                "batch_independent: once ActNorm is initialised, an example's density does not "
                "depend on its batch",
            ),
            cost_class="small",
            avoids=(
                "an unbounded exp(s) that overflows early in training: s is soft-clamped with tanh",
                "couplings that never touch half the dimensions: masks alternate between "
                "couplings (checkerboard, channels, halves, parity)",
            ),
        ),
        FamilyCard(
            family="vae",
            title="Variational autoencoder (VAE)",
            what=(
                "An encoder maps an image to a Gaussian over a small latent, a decoder maps a "
                "latent back to a density over images; training maximises the evidence lower "
                "bound, with one reparameterised draw so gradients reach the encoder."
            ),
            use_when=(
                "compact latent codes: interpolation, anomaly scores, a base for latent diffusion",
                "fast sampling in a single decoder pass",
                "a likelihood bound to compare models on the same data",
            ),
            avoid_when=(
                "sharp, detailed samples: diffusion",
                "an exact likelihood rather than a bound: flows",
            ),
            tips=(
                "beta > 1 buys smoother, more separated latents at the cost of blurrier "
                "reconstructions",
                "conditional models: label dropout teaches an 'unknown class' so y=None works",
                "compare bits per dimension with flows only on the same dequantised data",
            ),
            alternatives=(
                A("diffusion", "sample quality"),
                A("flows", "exact likelihood"),
            ),
            input_shapes=(
                "images (B, C, S, S) in [-1, 1]; conditional presets also take labels y (B,)",
            ),
            invariants=(
                "batch_independent: an image's reconstruction does not depend on its batch",
            ),
            cost_class="small",
            avoids=(
                "a Bernoulli 'likelihood' on grey pixels, which is no density at all: a "
                "Gaussian or a continuous Bernoulli decoder",
                "a variance that collapses onto a pixel value: the decoder's log-variance has "
                "a floor near the dequantisation noise",
            ),
        ),
        FamilyCard(
            family="contrastive",
            title="Siamese and contrastive embedders",
            what=(
                "Any registered backbone wrapped into an embedder with a projection head and "
                "trained so that examples of one class lie close together: InfoNCE, triplet "
                "or ArcFace losses. Retrieval compares unit vectors by cosine similarity."
            ),
            use_when=(
                "retrieval, verification and de-duplication",
                "open sets: classes at test time that training never saw",
                "few-shot labelling by nearest neighbour in the embedding space",
            ),
            avoid_when=(
                "a fixed set of classes with plenty of labels each: a plain classifier is "
                "simpler and usually as good",
                "users and items identified by ids: two-tower",
            ),
            tips=(
                "batch composition matters: several examples per class, hard negatives",
                "evaluate recall@k on held-out classes (--held-out-classes), not on the "
                "training classes",
                "retrieve from the backbone's features (the default), which generalise to "
                "unseen classes better than the projection",
            ),
            alternatives=(
                A("two-tower", "user-item retrieval"),
                A("knn", "nearest neighbours on raw inputs, no training"),
                A("resnet", "closed-set classification"),
            ),
            input_shapes=(
                "whatever the backbone reads: images (B, C, H, W), features (B, D), "
                "sequences (B, T, C) or token ids (B, T)",
            ),
            invariants=(
                "batch_independent: an example's embedding does not depend on its batch "
                "(the image, vector and token embedders)",
            ),
            cost_class="small",
            avoids=(
                "InfoNCE in one direction only, a weaker and lopsided signal: the loss is "
                "symmetric",
                "a temperature fixed by hand: it is a learnable parameter, held within [0.01, 1]",
            ),
        ),
        FamilyCard(
            family="recsys",
            title="Recommenders (Wide & Deep, DLRM, two towers)",
            what=(
                "Models for rows of categorical id fields (each a bag of ids) plus dense "
                "numbers. Wide & Deep adds a linear model over ids and hashed crosses to an MLP "
                "over embeddings; DLRM feeds the pairwise dot products of the field vectors to "
                "an MLP; two towers score a user vector against an item vector."
            ),
            use_when=(
                "click or conversion prediction with many ids of high cardinality",
                "ranking a large catalogue for every user at once (two-tower)",
                "multi-valued fields such as tags or genres",
            ),
            avoid_when=(
                "few rows or a handful of low-cardinality categories: gbdt is simpler",
                "no ids at all: mlp",
            ),
            tips=(
                "embedding tables dominate memory; sparse gradients with SparseAdam or "
                "row-wise Adagrad keep steps fast",
                "calibrate predicted probabilities before using them as rates",
                "judge ranking with HR@10 and NDCG@10 against a popularity or PureSVD baseline",
            ),
            alternatives=(
                A("gbdt", "small tables"),
                A("mlp", "dense features only"),
                A("linear", "the floor to beat"),
            ),
            input_shapes=(
                "dense features (B, D) and ids (B, F, L) int64 right-padded with 0, optional "
                "weights (B, F, L)",
                "two-tower: user ids (B, Fu, L) and item ids (B, Fi, L)",
            ),
            invariants=("batch_independent: a row's score does not depend on its batch",),
            cost_class="small",
            avoids=(
                "averaging padded id matrices, which pulls every bag toward the padding row: "
                "one EmbeddingBag over the real ids only, with offsets",
                "a dense gradient over a whole table every step: sparse gradients on request",
            ),
        ),
        FamilyCard(
            family="classical",
            title="Classical baselines",
            what=(
                "Non-neural models that every neural result should be measured against: "
                "gradient-boosted trees and linear models for tables, TF-IDF with logistic "
                "regression for text, nearest neighbours for small images, the seasonal naive "
                "forecast for series, and a spectral embedding with logistic regression for "
                "graphs."
            ),
            use_when=(
                "small or medium tables: trees are the first pick there",
                "a floor to beat before trusting any neural score",
                "training time, simplicity or explanation matter more than the last point",
            ),
            avoid_when=(
                "raw pixels, audio or long text, where learned features are needed",
                "very large tables with high-cardinality ids: wide-deep or dlrm",
                "generation or density estimation",
            ),
            tips=(
                "read them beside the neural run in report.md, on the same test rows",
                "gbdt needs no feature scaling; the validation split picks its number of rounds",
                "seasonal-naive sets MASE = 1 for forecasts; anything above 1 is worse than it",
            ),
            alternatives=(
                A("mlp", "large tables of dense numbers"),
                A("bert-tiny", "text with more data"),
                A("tcn", "forecasting with covariates and long history"),
                A("gcn", "graphs whose node features matter"),
            ),
            input_shapes=(
                "tables (rows x columns), texts, small images (flattened), one series, or a "
                "graph (edges and node labels)",
            ),
            invariants=(
                "batch_independent: a row's prediction does not depend on its batch",
                "same_split: fitted on the training rows only and scored on the test rows the "
                "neural models see, so the numbers compare directly",
            ),
            cost_class="tiny",
            avoids=(
                "a network reported without a baseline, although trees often win on small "
                "tables: these give the floor, in the same run folder and report",
                "settings tuned on the test rows: rounds, C and k are picked on the validation "
                "split",
                "a pickled estimator: the fitted numbers are buffers saved as safetensors and "
                "replayed in torch, matching scikit-learn's own predictions",
            ),
        ),
    )
}


def _m(name: str, family: str, note: str) -> ModelCard:
    return ModelCard(name=name, family=family, note=note)


MODEL_CARDS: dict[str, ModelCard] = {
    card.name: card
    for card in (
        # mlp
        _m("mlp", "mlp", "the default tabular MLP: 2 hidden layers of 256, dropout 0.3"),
        _m("mlp-small", "mlp", "a narrow 2x128 MLP for quick runs and embedder backbones"),
        _m("mlp-deep", "mlp", "6 residual layers with layer norm, for large tables"),
        # resnet
        _m("resnet-tiny", "resnet", "small stem and three stages for images of 64 px or less"),
        _m("resnet18", "resnet", "the standard 18-layer ResNet (basic blocks), ImageNet stem"),
        _m("resnet34", "resnet", "34 layers of basic blocks, when resnet18 underfits"),
        _m("resnet50", "resnet", "50 layers of bottleneck blocks, torchvision's sizes"),
        # mobilenet
        _m("mobilenetv2", "mobilenet", "ImageNet-pretrained MobileNetV2, loaded offline"),
        _m("mobilenetv2-scratch", "mobilenet", "the same network from random weights"),
        # unet
        _m("unet-tiny", "unet", "width 8, two levels: checks data and masks in seconds"),
        _m("unet-small", "unet", "width 16, three levels: the default for small datasets"),
        _m("unet", "unet", "the paper's widths 64 to 1024 over four levels"),
        # rnn
        _m("rnn", "rnn", "plain Elman cells, 2x64: a reference point, rarely the best"),
        _m("gru", "rnn", "2-layer GRU of 64: the default recurrent model"),
        _m("lstm", "rnn", "2-layer LSTM of 64, when long memory gates help"),
        _m("gru-bi", "rnn", "bidirectional GRU: whole sequences known in advance only"),
        # tcn
        _m("tcn", "tcn", "causal, 4 blocks of 64, kernel 3: the default forecaster"),
        _m("tcn-small", "tcn", "causal, 3 blocks of 32: quick runs and short contexts"),
        _m("tcn-noncausal", "tcn", "sees both sides: classification of complete sequences"),
        # ssm
        _m("s4d", "ssm", "4 S4D layers with the S4D-Lin initialisation"),
        _m("s4d-inv", "ssm", "the same with the S4D-Inv initialisation"),
        _m("hyena", "ssm", "3 Hyena layers, implicit filters up to 4096 steps"),
        # transformer
        _m("bert-tiny", "transformer", "a 2-layer byte-level encoder for text classification"),
        _m("minilm", "transformer", "pretrained all-MiniLM-L6-v2 with its own WordPiece vocab"),
        _m("gpt-tiny", "transformer", "a 2-layer byte-level decoder for tests and demos"),
        _m("gpt-mini", "transformer", "6 layers of 384: a byte-level LM that trains on a CPU"),
        _m("gpt2-small", "transformer", "GPT-2 small's shape, ready for its published weights"),
        _m("t5-tiny", "transformer", "a small byte-level encoder-decoder for seq2seq"),
        # vit
        _m("vit-tiny", "vit", "8x8 grey images in 2x2 patches: a ViT that runs on a CPU"),
        _m("vit-b16", "vit", "ViT-B/16 at 224 px, sized to load timm/torchvision weights"),
        # gnn
        _m("gcn", "gnn", "two GCN layers: the default for node and graph labels"),
        _m("gcn-deep", "gnn", "4 GCN layers with residuals and layer norm"),
        _m("gat", "gnn", "graph attention: neighbours weighted by learned attention"),
        _m("graphsage", "gnn", "GraphSAGE with mean pooling: large graphs, sampled"),
        _m("graphsage-max", "gnn", "GraphSAGE with max pooling of the neighbours"),
        # diffusion
        _m("ddpm-tiny", "diffusion", "width 16, 200 steps: a diffusion run in minutes"),
        _m("ddpm-cond", "diffusion", "class-conditional 28 px, v-prediction, guidance"),
        _m("ddpm", "diffusion", "Ho et al.'s recipe at 32 px, 1000 linear steps, EMA"),
        # flows
        _m("realnvp-2d", "flows", "8 MLP couplings for 2-D points (two-moons)"),
        _m("realnvp", "flows", "multi-scale RealNVP for small grey images"),
        _m("realnvp-cond", "flows", "the same, conditioned on the class"),
        # vae
        _m("vae", "vae", "convolutional VAE for 28 px grey images"),
        _m("vae-cond", "vae", "class-conditional, with label dropout for 'no label'"),
        # contrastive
        _m("siamese-resnet-tiny", "contrastive", "image embeddings on a resnet-tiny backbone"),
        _m("siamese-mlp", "contrastive", "vector embeddings on an mlp-small backbone"),
        _m("siamese-gru", "contrastive", "sequence embeddings on a GRU backbone"),
        _m("siamese-bert-tiny", "contrastive", "text embeddings on a bert-tiny backbone"),
        # recsys
        _m("wide-deep", "recsys", "Wide & Deep for click prediction on id fields"),
        _m("wide-deep-tiny", "recsys", "a tiny Wide & Deep for tests and quick checks"),
        _m("dlrm", "recsys", "DLRM: dot-product interactions for many id fields"),
        _m("dlrm-tiny", "recsys", "a tiny DLRM for tests and quick checks"),
        _m("two-tower", "recsys", "user and item towers: rank the whole catalogue at once"),
        _m("two-tower-tiny", "recsys", "a tiny two-tower model for tests and quick checks"),
        # classical
        _m("gbdt", "classical", "histogram gradient-boosted trees: the first pick on tables"),
        _m("linear", "classical", "logistic or ridge regression: the floor on tables"),
        _m(
            "tfidf-logreg", "classical", "TF-IDF of token n-grams + logistic regression: text floor"
        ),
        _m("knn", "classical", "k nearest neighbours on pixels: small image floor"),
        _m("seasonal-naive", "classical", "repeat the last season: the forecasting floor"),
        _m("spectral-logreg", "classical", "spectral node embedding + logistic regression"),
    )
}


# Habits that hold across families, cited by the code ("see docs/guide/README.md#training-habits").
HABITS: tuple[tuple[str, str], ...] = (
    (
        "weight decay",
        "decay matrices only: biases, norm scales and embedding tables stay out of it, since "
        "pulling them toward zero changes what the model can express (rare ids suffer most); "
        "a model lists more through `no_weight_decay()`",
    ),
    (
        "schedule",
        "a short linear warm-up, then cosine decay toward a floor; the cosine is computed on a "
        "plain float (`math.cos`)",
    ),
    (
        "initialisation",
        "Kaiming (He) for ReLU-like activations, Xavier for tanh, orthogonal recurrent "
        "matrices, so signals keep their scale through depth and time",
    ),
    (
        "stability",
        "clip the gradient norm (RNNs and Transformers need it most), use bf16 or AMP where "
        "the hardware gains, accumulate gradients when a batch does not fit",
    ),
    (
        "small batches",
        "batch norm estimates its statistics from the batch; with a few examples per batch "
        "switch to group or layer norm",
    ),
    (
        "tables",
        "boosted trees are the first thing to try on small tables; networks catch up with "
        "many rows or with ids that deserve embeddings",
    ),
    (
        "class imbalance",
        "weight the loss, use a focal loss or resample; report per-class scores, not accuracy "
        "alone",
    ),
    (
        "padding",
        "pass masks or lengths so padding is never attended to, pooled or scored",
    ),
    (
        "compute budget",
        "a pretrained encoder with a new head, a frozen body (linear probe) or low-rank "
        "adapters (LoRA) gets most of the accuracy for a fraction of the training",
    ),
)


def _catalog() -> dict[str, dict[str, Any]]:
    from fieldguide.api.catalog import load_catalog  # reads JSON only, no torch

    return load_catalog()


def family_card(family: str) -> FamilyCard:
    """The card of `family` ("resnet", "classical", ...); unknown names list close matches."""
    if not isinstance(family, str):
        raise TypeError(f"family must be a str such as 'resnet'; got {type(family).__name__}.")
    if family not in FAMILY_CARDS:
        raise ValueError(unknown("family", family, FAMILY_CARDS))
    return FAMILY_CARDS[family]


def model_card(name: str) -> ModelCard:
    """The card of the registered model `name`; unknown names list close matches."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str such as 'resnet18'; got {type(name).__name__}.")
    if name not in MODEL_CARDS:
        raise ValueError(unknown("model", name, MODEL_CARDS, "see `fieldguide list`."))
    return MODEL_CARDS[name]


def models_of(family: str, catalog: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Names of the models of `family`, in the order of their cards."""
    catalog = _catalog() if catalog is None else catalog
    names = [n for n, c in MODEL_CARDS.items() if c.family == family]
    extra = sorted(n for n, e in catalog.items() if e["family"] == family and n not in names)
    return names + extra


def family_text(card: FamilyCard) -> list[str]:
    """The family card as plain text lines (what `fieldguide show FAMILY` prints first)."""

    def bullets(title: str, items: tuple[str, ...]) -> list[str]:
        return [title] + [f"  - {item}" for item in items]

    return [
        f"what        {card.what}",
        *bullets("use when", card.use_when),
        *bullets("avoid when", card.avoid_when),
        *bullets("tips", card.tips),
        *bullets("alternatives", tuple(f"{a.name}: {a.why}" for a in card.alternatives)),
        *bullets("input", card.input_shapes),
        *bullets("guarantees", card.invariants),
        f"cost class  {card.cost_class} ({COST_CLASSES[card.cost_class]})",
        *bullets("avoids", card.avoids),
        f"guide page  docs/guide/{card.family}.md",
    ]


def render_card(name: str) -> str:
    """The text `fieldguide show NAME` prints for a model name or a family name.

    A model: its preset note, the numbers from catalog.json (parameters, input, config), its
    family's card and the Mermaid diagram traced from the code. A family: its card and its
    models. Classical baselines have no parameters nor diagram in the catalogue (yet) and are
    shown without them.

    Raises:
        TypeError: `name` is not a str.
        ValueError: `name` is neither a model nor a family; the message lists close matches.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'resnet18'; got {type(name).__name__}.")
    catalog = _catalog()
    if name in catalog or name in MODEL_CARDS:
        return _render_model(name, catalog)
    if name in FAMILY_CARDS:
        return _render_family(name, catalog)
    known = set(catalog) | set(MODEL_CARDS) | set(FAMILY_CARDS)
    raise ValueError(unknown("model", name, known, "see `fieldguide list`."))


def _render_family(family: str, catalog: dict[str, dict[str, Any]]) -> str:
    card = FAMILY_CARDS[family]
    lines = [f"{family} — {card.title} (family)", *family_text(card), "models"]
    for model in models_of(family, catalog):
        note = MODEL_CARDS[model].note if model in MODEL_CARDS else catalog[model].get("summary")
        params = catalog.get(model, {}).get("parameters")
        size = f"{params:,} parameters" if params is not None else "no parameters listed"
        lines.append(f"  {model:<22}{note} ({size})")
    lines.append("show one    fieldguide show NAME")
    return "\n".join(lines) + "\n"


def _render_model(name: str, catalog: dict[str, dict[str, Any]]) -> str:
    entry = catalog.get(name)
    if name in MODEL_CARDS:
        note, family = MODEL_CARDS[name].note, MODEL_CARDS[name].family
    else:  # registered since the cards were written: the catalogue still says what it is
        note, family = "no preset note yet", entry["family"]
    summary = (entry or {}).get("summary") or FAMILY_CARDS[family].title
    lines = [f"{name} — {summary}", f"preset      {note}"]
    if entry is None:
        lines.append(f"family      {family}")
    else:
        lines.append(f"family      {family} ({entry.get('class', '-')})")
        params = entry.get("parameters")
        if family in FITTED_FAMILIES:  # the catalogue describes the empty, unfitted model
            lines.append(
                "parameters  set by the fit: how many numbers it keeps depends on the data"
            )
        elif params is not None:
            klass = cost_class(params)
            lines.append(f"parameters  {params:,} (cost class {klass}: {COST_CLASSES[klass]})")
        if entry.get("input") and family not in FITTED_FAMILIES:
            lines.append(f"input       {entry['input']}")
        if entry.get("reads"):
            tasks = ", ".join(entry.get("tasks", ())) or "-"
            lines.append(f"reads       {entry['reads']}: trains for {tasks}")
        lines.append(f"invariants  {', '.join(entry.get('invariants', ())) or '-'}")
        if entry.get("receptive_field") is not None:
            lines.append(f"receptive field  {entry['receptive_field']} steps")
        if entry.get("config"):
            fitted = " (sizes of 0 are set by the fit)" if family in FITTED_FAMILIES else ""
            lines.append("config" + fitted)
            lines += [f"  {key} = {value}" for key, value in entry["config"].items()]
    if family in FAMILY_CARDS:
        lines.append(f"-- the {family} family --")
        lines += family_text(FAMILY_CARDS[family])
    if entry is not None and entry.get("diagram"):
        lines.append(f"diagram     (Mermaid, traced from the code; `fieldguide diagram {name}`)")
        lines.append(entry["diagram"].rstrip("\n"))
        lines.append(
            f"create      fieldguide.create_model({name!r}, ...)  or  "
            f"fieldguide train --model {name}"
        )
    else:
        lines.append(f"train       fieldguide train --model {name} --data PATH")
    return "\n".join(lines) + "\n"
