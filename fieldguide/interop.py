"""Exact weight interop with torchvision, timm and Hugging Face: one explicit key map per pair.

`load_weights(model, state_or_path, source)` copies a peer's state dict into one of our models
and `export_weights(model, target)` gives our weights back in the peer's layout, so a model
trained here loads into torchvision, timm or transformers with `load_state_dict(strict=True)`.
A round trip is exact: every tensor comes back bit for bit.

Each (source, model class) pair has a `KeyMap`: for a built model it names every tensor twice,
ours and the peer's, plus whether the peer stores it transposed (`Key`) or in pieces (`Concat`).
Nothing is matched by order or by shape; a key the map does not name is "unexpected", a key it
names that is absent "missing".

    source       our class            the peer's models and keys
    torchvision  ResNet               resnet18/34/50/101/152: conv1, bn1, layerS.B.{convK, bnK,
                                      downsample.0, downsample.1}, fc
    torchvision  MobileNetV2          mobilenet_v2: the same names (models/mobilenet.py builds
                                      torchvision's module layout, so the map is the identity)
    timm         ViT                  vit_*_patch*_* with a class token: cls_token, pos_embed,
                                      patch_embed.proj, blocks.N.{norm1, attn.qkv, attn.proj,
                                      norm2, mlp.fc1, mlp.fc2}, norm, head
    hf           TransformerDecoder   GPT2Model / GPT2LMHeadModel ("transformer." prefix or not):
                                      wte, wpe, h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2,
                                      mlp.c_fc, mlp.c_proj}, ln_f, lm_head
    hf           TransformerEncoder   BertModel, post-LN ("bert." prefix or not, as BertFor...
                                      models have it): embeddings.{word_embeddings,
                                      position_embeddings, token_type_embeddings, LayerNorm},
                                      encoder.layer.N.{attention.self.{query, key, value},
                                      attention.output.{dense, LayerNorm}, intermediate.dense,
                                      output.{dense, LayerNorm}}; pooler ignored, no head

What the layouts share, so that equal tensors compute equal outputs: a fused q, k, v projection
is (3D, D) with rows [q; k; v] and the heads contiguous inside each (timm's `qkv`, HF's `c_attn`
transposed, our `attn.qkv`), and attention scales by 1/sqrt(D/h) in all of them. HF's GPT-2 keeps
its Conv1D weights as (in, out), nn.Linear's transpose; the map transposes them both ways. HF's
BERT keeps query, key and value as three (D, D) Linears, whose concatenation along dim 0 is that
fused matrix: the map joins them on load and splits ours on export, both exactly.

BERT's pooler (dense + tanh on [CLS]) feeds BertFor... heads that read [CLS]; our encoder pools
the mean of the token states instead (sentence-transformers' pooling), so the pooler is left out:
listed in the report's `ignored` on load, absent on export (BertModel builds a fresh one, and
`load_state_dict(strict=False)` names it missing). Our task head is ours alone: the model keeps
it on load (the report's `kept`) and export leaves it out.

What a state dict cannot say is refused before anything is copied, in one sentence each:
numerics our config sets but the peer's tensors do not show (GPT-2's tanh GELU and LayerNorm
eps 1e-5; timm's exact GELU and eps 1e-6; batch norm and the 7x7 stem in torchvision's ResNet;
BERT's post-LN order, segment table and exact GELU), and sizes read off the peer's tensors that
differ from the model's config (a ResNet-50 state dict into a resnet18). No tensor shows the
number of heads: the model's num_heads must equal the peer's (12 for ViT-B, GPT-2 small,
BERT-base and all-MiniLM-L6-v2), or the weights load and compute something else; nor
GPT-2's rarely set attention flags (scale_attn_by_inverse_layer_idx), which must stay off; nor
BERT's LayerNorm eps, which differs between checkpoints, so it is not refused either: set
norm_eps to the `layer_norm_eps` of the peer's config.json (1e-12 for BERT and MiniLM). A BERT
must have hidden_act "gelu" and position_embedding_type "absolute", as its default config does.

Files are read with safetensors only. A .pth or .bin file is a pickle, and unpickling a file
can run code, so `load_weights` refuses one and says how to convert it once.

A new pair is one `register_map(KeyMap(...))` call: a function listing the model's keys, and
optionally the config it refuses and the config fields it reads off the peer's tensors.

Shapes: a `Concat` of n pieces holds our (n·R, ...) tensor as n peer tensors (R, ...) each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fieldguide.models.mobilenet import MobileNetV2
from fieldguide.models.resnet import ResNet, ResNetConfig, Shortcut
from fieldguide.models.transformer import TransformerConfig, TransformerDecoder, TransformerEncoder
from fieldguide.models.vit import ViT, ViTConfig
from fieldguide.suggest import unknown

__all__ = [
    "SOURCES",
    "Concat",
    "Key",
    "KeyMap",
    "LoadReport",
    "export_weights",
    "load_weights",
    "register_map",
]

SOURCES = ("torchvision", "timm", "hf")
_SHOWN = 4  # key names listed in an error message before "and N more"
_PICKLES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class Key:
    """One tensor under two names: ours and the peer's (after the map's prefix is removed)."""

    ours: str
    peer: str
    transposed: bool = False  # the peer stores the 2-D weight as (in, out), e.g. HF's Conv1D
    optional: bool = False  # the peer may omit it; the model keeps its own value then
    tied: bool = False  # a second peer copy of a tensor another key also maps; must equal it
    beside: bool = False  # outside the peer's backbone prefix (HF's lm_head next to transformer.)

    @property
    def peers(self) -> tuple[str, ...]:
        """The peer's names for the tensor: one (a `Concat` has several)."""
        return (self.peer,)


@dataclass(frozen=True)
class Concat:
    """One tensor of ours that the peer keeps as equal pieces, concatenated along dim 0 in order.

    HF's BERT keeps query, key and value as three (D, D) weights and (D,) biases; our fused
    `attn.qkv` holds cat([query, key, value], dim 0), (3D, D) and (3D,). Loading concatenates
    the pieces, exporting splits ours into them; neither changes a bit. All pieces are needed:
    one that is absent is "missing" (a partial tensor is never loaded).
    """

    ours: str
    pieces: tuple[str, ...]  # the peer's names, in the order of ours along dim 0
    optional: bool = False  # the peer may omit all pieces; the model keeps its own value then

    @property
    def peers(self) -> tuple[str, ...]:
        """The peer's names for the tensor's pieces, in order."""
        return self.pieces

    def split(self, tensor: Tensor) -> tuple[Tensor, ...]:
        """Our tensor (n·R, ...) as its n pieces (R, ...), views in order."""
        return tensor.split(tensor.shape[0] // len(self.pieces))


def _no_refusal(config: Any) -> str | None:
    return None


def _reads_nothing(state: Mapping[str, Tensor]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class KeyMap:
    """How one peer's state dict maps onto one of our model classes, in both directions.

    Attributes:
        source: "torchvision", "timm" or "hf".
        model: our model class; subclasses use its map too.
        peer: the peer's architecture in words, for messages ("timm VisionTransformer").
        keys: every tensor of a built model, as `Key`s and `Concat`s; each of the model's
            state-dict keys must be the `ours` of at least one, or match `kept`.
        refuse: for a model config, a reason when it has something the peer cannot express
            or computes differently (None to accept); checked both ways.
        reads: config fields of ours read off the peer's tensors (e.g. {"layers": (3, 4, 6, 3)}),
            compared with the model's before any key is matched.
        prefix: the prefix of the peer's full model before the backbone keys ("transformer."):
            removed when present on load, written on export (except `Key.beside` keys) if
            `write_prefix`.
        ignore: patterns of peer keys dropped on load and listed in the report's `ignored`:
            constant buffers, or a part of the peer our model does not compute (BERT's pooler).
        kept: patterns of our keys the peer has no tensor for (a task head on the peer's
            backbone): the model keeps them on load (the report's `kept`), export leaves them out.
        write_prefix: export the full model's layout (prefix written: GPT2LMHeadModel) or the
            backbone's (BertModel, whose BertFor... wrappers each add their own head).
    """

    source: str
    model: type
    peer: str
    keys: Callable[[Any], list[Key | Concat]]
    refuse: Callable[[Any], str | None] = _no_refusal
    reads: Callable[[Mapping[str, Tensor]], dict[str, Any]] = _reads_nothing
    prefix: str = ""
    ignore: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    write_prefix: bool = True


@dataclass(frozen=True)
class LoadReport:
    """What `load_weights` copied; `missing` and `unexpected` are non-empty only with strict=False.

    Key names are the peer's, less the map's prefix (`ignored`: as in its state dict), except
    `kept`, which are ours.
    """

    source: str
    peer: str
    loaded: int  # tensors copied into the model (three BERT pieces into one qkv count once)
    missing: tuple[str, ...] = ()  # tensors the peer lacks: the model keeps its own values
    unexpected: tuple[str, ...] = ()  # peer tensors the model has no place for, left unused
    ignored: tuple[str, ...] = ()  # peer buffers that hold no weights, parts we do not compute
    kept: tuple[str, ...] = ()  # our tensors the peer has no counterpart of (a task head)

    def __str__(self) -> str:
        kept = f", {len(self.kept)} of the model's own kept" if self.kept else ""
        return (
            f"loaded {self.loaded} tensors from the {self.peer} state dict; "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.ignored)} ignored{kept}"
        )


_MAPS: dict[tuple[str, type], KeyMap] = {}


def register_map(key_map: KeyMap) -> None:
    """Make `key_map` the map for its (source, model class) pair."""
    if key_map.source not in SOURCES:
        raise ValueError(unknown("interop source", key_map.source, SOURCES))
    _MAPS[key_map.source, key_map.model] = key_map


# ---------------------------------------------------------------------------------------------
# Loading and exporting.
# ---------------------------------------------------------------------------------------------


def load_weights(
    model: nn.Module,
    path_or_state_dict: str | Path | Mapping[str, Tensor],
    source: str,
    strict: bool = True,
) -> LoadReport:
    """Copy a torchvision, timm or Hugging Face state dict into `model`, through its key map.

    Every check runs before the first tensor is copied, so a refusal leaves the model as it was.
    Tensors are copied into the model's own dtype and device.

    Args:
        model: one of our models with a map for `source` (see the module docstring).
        path_or_state_dict: a dict of tensors in the peer's layout, or a .safetensors file.
        source: "torchvision", "timm" or "hf".
        strict: refuse missing and unexpected keys; with False, load the tensors that match
            and list the others in the report. Shapes must match either way.

    Returns:
        A `LoadReport` of what was copied and, with strict=False, what was not.

    Raises:
        ValueError: unknown source, no map for this model, a pickle file, a config the peer
            cannot express, sizes that differ, missing or unexpected keys, mismatched shapes.
        TypeError: if `model` is not an nn.Module or the state dict holds a non-tensor.
    """
    key_map = _map_for(model, source, "load_weights", "source")
    state = _read_state(path_or_state_dict)
    _refuse_config(model, key_map)
    state, ignored = _strip(state, key_map)
    _check_sizes(model, key_map, state)
    keys, kept = _keys(model, key_map)
    ours = model.state_dict()
    # 1. Match names: the first key of each of our tensors is its primary; later ones are tied.
    #    A Concat is found when all its pieces are; any absent piece is missing.
    primary: dict[str, Key | Concat] = {}
    found: list[Key | Concat] = []
    missing: list[str] = []
    for key in keys:
        absent = [name for name in key.peers if name not in state]
        if not absent:
            found.append(key)
            primary.setdefault(key.ours, key)
        elif not (key.optional and len(absent) == len(key.peers)):
            missing += absent
    named = {name for key in keys for name in key.peers}
    unexpected = [name for name in state if name not in named]
    if strict and (missing or unexpected):
        raise ValueError(_unmatched(model, key_map, missing, unexpected))
    # 2. Shapes and tied copies in our layout, then convert everything before the first copy.
    gathered: dict[str, Tensor] = {}
    for key in found:
        value = _gather(model, key_map, key, state, ours[key.ours])
        first = primary[key.ours]
        if first is not key:
            if not torch.equal(value, gathered[key.ours]):
                raise ValueError(
                    f"load_weights found {_peer_names(key)} unequal to {_peer_names(first)} in "
                    f"the {key_map.peer} state dict, but {_name(model)} holds both in one tensor "
                    f"({key.ours!r}); build it with tie_weights=False to load them apart."
                )
            continue
        gathered[key.ours] = value
    converted = {
        name: value.to(dtype=ours[name].dtype, device=ours[name].device)
        for name, value in gathered.items()
    }
    # 3. Copy.
    with torch.no_grad():
        for name, value in converted.items():
            ours[name].copy_(value)
    return LoadReport(
        source=source,
        peer=key_map.peer,
        loaded=len(converted),
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        ignored=tuple(ignored),
        kept=tuple(kept),
    )


def export_weights(model: nn.Module, target: str) -> dict[str, Tensor]:
    """`model`'s weights as a state dict in the peer's layout, for its `load_state_dict`.

    The tensors are fresh contiguous copies (tied ones too), so the dict can be saved with
    `safetensors.torch.save_file`. For Hugging Face GPT-2 the layout is the full model's
    (GPT2LMHeadModel: "transformer." keys and lm_head.weight); for BERT it is BertModel's,
    without the pooler (the model has none) and without our task head (BERT has none).

    Args:
        model: one of our models with a map for `target`.
        target: "torchvision", "timm" or "hf".

    Raises:
        ValueError: unknown target, no map for this model, or a config the peer cannot express.
    """
    key_map = _map_for(model, target, "export_weights", "target")
    _refuse_config(model, key_map)
    ours = model.state_dict()
    prefix = key_map.prefix if key_map.write_prefix else ""
    out: dict[str, Tensor] = {}
    for key in _keys(model, key_map)[0]:
        tensor = ours[key.ours].detach()
        if isinstance(key, Concat):
            pieces = list(zip(key.pieces, key.split(tensor), strict=True))  # [q; k; v] -> q, k, v
        else:
            pieces = [(key.peer, tensor.t() if key.transposed else tensor)]
        for peer, piece in pieces:
            name = peer if isinstance(key, Key) and key.beside else prefix + peer
            out[name] = piece.clone(memory_format=torch.contiguous_format)
    return out


# ---------------------------------------------------------------------------------------------
# The checks, in the order load_weights runs them.
# ---------------------------------------------------------------------------------------------


def _name(model: nn.Module) -> str:
    return getattr(model, "name", "") or type(model).__name__


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    more = len(names) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _map_for(model: object, source: object, caller: str, argument: str) -> KeyMap:
    """The map for `model`'s class (or the nearest base class that has one) from `source`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller} expects model as an nn.Module; got {type(model).__name__}.")
    if not isinstance(source, str) or source not in SOURCES:
        raise ValueError(f"{caller}: " + unknown(argument, str(source), SOURCES))
    for cls in type(model).__mro__:
        if (source, cls) in _MAPS:
            return _MAPS[source, cls]
    here = sorted(s for s, cls in _MAPS if isinstance(model, cls))
    if here:
        hint = f"{type(model).__name__} maps to {argument}={' or '.join(map(repr, here))}"
    else:
        hint = "maps exist for " + ", ".join(sorted(f"{c.__name__} ({s})" for s, c in _MAPS))
    raise ValueError(f"{caller} has no {source} key map for {type(model).__name__}; {hint}.")


def _read_state(given: object) -> dict[str, Tensor]:
    """A dict of tensors as given, or read from a .safetensors file (never a pickle)."""
    if isinstance(given, str | Path):
        path = Path(given)
        if path.suffix.lower() in _PICKLES:
            raise ValueError(
                f"load_weights reads .safetensors files only and never unpickles {path.name}, "
                f"since unpickling a file can run code; convert it once, in a session you trust, "
                f"with safetensors.torch.save_file({{k: v.clone() for k, v in "
                f"torch.load('{path.name}', weights_only=True).items()}}, 'model.safetensors') "
                f"and pass that file."
            )
        if path.suffix.lower() != ".safetensors":
            raise ValueError(
                f"load_weights expects a .safetensors file or a dict of tensors; got the path "
                f"{str(path)!r}; convert the weights with safetensors.torch.save_file."
            )
        if not path.is_file():
            raise ValueError(f"load_weights found no file at {str(path)!r}.")
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as error:  # safetensors raises its own error type for a damaged file
            raise ValueError(
                f"load_weights could not read {str(path)!r} as safetensors ({error}); is the "
                f"file complete?"
            ) from error
    if not isinstance(given, Mapping):
        raise TypeError(
            f"load_weights expects path_or_state_dict as a .safetensors path or a dict of "
            f"tensors; got {type(given).__name__}."
        )
    for name, value in given.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            raise TypeError(
                f"load_weights expects a dict of str to tensors; {name!r} holds "
                f"{type(value).__name__}."
            )
    return dict(given)


def _refuse_config(model: nn.Module, key_map: KeyMap) -> None:
    reason = key_map.refuse(getattr(model, "config", None))
    if reason:
        raise ValueError(f"{_name(model)} cannot hold {key_map.peer} weights exactly: {reason}.")


def _strip(state: dict[str, Tensor], key_map: KeyMap) -> tuple[dict[str, Tensor], list[str]]:
    """The state without the map's prefix and without the keys that hold no weights."""
    out: dict[str, Tensor] = {}
    ignored: list[str] = []
    for name, value in state.items():
        short = name.removeprefix(key_map.prefix) if key_map.prefix else name
        if any(re.fullmatch(pattern, short) for pattern in key_map.ignore):
            ignored.append(name)
            continue
        if short in out:
            raise ValueError(
                f"load_weights found {short!r} both with and without the prefix "
                f"{key_map.prefix!r} in the {key_map.peer} state dict; keep one of them."
            )
        out[short] = value
    return out, ignored


def _check_sizes(model: nn.Module, key_map: KeyMap, state: Mapping[str, Tensor]) -> None:
    """Refuse a peer whose sizes, read off its tensors, differ from the model's config."""
    config = getattr(model, "config", None)
    peer = key_map.reads(state)
    differ = {
        name: value
        for name, value in peer.items()
        if config is not None and _plain(getattr(config, name)) != value
    }
    if not differ:
        return
    theirs = ", ".join(f"{name}={value!r}" for name, value in differ.items())
    mine = ", ".join(f"{name}={_plain(getattr(config, name))!r}" for name in differ)
    raise ValueError(
        f"load_weights: the state dict holds a {key_map.peer} with {theirs}, but "
        f"{_name(model)} has {mine}; {_how_to_build(model, key_map, peer)}."
    )


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _how_to_build(model: nn.Module, key_map: KeyMap, peer: dict[str, Any]) -> str:
    """A create_model call that builds a model of the peer's sizes: a preset if one fits."""
    from fieldguide.models.registry import get_entry, list_models

    names = list_models()
    for name in names:
        entry = get_entry(name)
        if entry.cls is not type(model) or key_map.refuse(entry.config) is not None:
            continue
        if all(_plain(getattr(entry.config, k)) == v for k, v in peer.items()):
            return f"create_model('{name}') matches it"
    fields = ", ".join(f"{k}={v!r}" for k, v in peer.items())
    base = getattr(model, "name", "")
    if base in names:
        return f"build it with create_model('{base}', {fields})"
    return f"build it with {fields}"


def _keys(model: nn.Module, key_map: KeyMap) -> tuple[list[Key | Concat], list[str]]:
    """The map's keys for this model and the model's own tensors (`kept`), which the peer lacks.

    Checks first that the two name every tensor the model has.
    """
    keys = key_map.keys(model)
    named = {key.ours for key in keys}
    kept = [
        name
        for name in model.state_dict()
        if name not in named and any(re.fullmatch(pattern, name) for pattern in key_map.kept)
    ]
    unnamed = [name for name in model.state_dict() if name not in named and name not in kept]
    if unnamed:
        raise ValueError(
            f"{_name(model)} has tensors that the {key_map.peer} key map does not name "
            f"({_listed(unnamed)}); was the model changed after it was built (LoRA adapters: "
            f"merge them first with fieldguide.lora.merge)?"
        )
    return keys, kept


def _gather(
    model: nn.Module,
    key_map: KeyMap,
    key: Key | Concat,
    state: Mapping[str, Tensor],
    target: Tensor,
) -> Tensor:
    """The peer's tensor for `key` in our layout (transposed back, or its pieces concatenated).

    Each peer tensor's shape is checked against the one our `target` needs in the peer's layout.
    """
    if isinstance(key, Concat):
        shape = (target.shape[0] // len(key.pieces), *target.shape[1:])  # one piece: (R, ...)
        where = f" for each of its {len(key.pieces)} pieces"
    else:
        shape = tuple(target.shape[::-1]) if key.transposed else tuple(target.shape)
        where = ""
    for name in key.peers:
        tensor = state[name]
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"load_weights cannot copy the {key_map.peer} tensor {name!r} of shape "
                f"{tuple(tensor.shape)} into {_name(model)}'s {key.ours!r}, which needs "
                f"{shape}{where} in the peer's layout (its own shape is {tuple(target.shape)}); "
                f"build the model with the peer's sizes, or drop that key and pass strict=False."
            )
    if isinstance(key, Concat):
        return torch.cat([state[name] for name in key.pieces])  # (n·R, ...): [q; k; v]
    return state[key.peer].t() if key.transposed else state[key.peer]


def _peer_names(key: Key | Concat) -> str:
    return " + ".join(repr(name) for name in key.peers)


def _unmatched(model: nn.Module, key_map: KeyMap, missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"lacks {len(missing)} key(s) that {_name(model)} needs ({_listed(missing)})")
    if unexpected:
        parts.append(
            f"has {len(unexpected)} key(s) that {_name(model)} has no place for "
            f"({_listed(unexpected)})"
        )
    return (
        f"load_weights: the {key_map.peer} state dict {' and '.join(parts)}; check that it is "
        f"the model's own architecture, or pass strict=False to load the keys that match."
    )


# ---------------------------------------------------------------------------------------------
# The maps. Helpers give the tensors of one layer under both names.
# ---------------------------------------------------------------------------------------------


def _affine(ours: str, peer: str, transposed: bool = False) -> list[Key]:
    """A layer's weight and bias (Linear, LayerNorm, Conv); only the weight is ever transposed."""
    return [
        Key(f"{ours}.weight", f"{peer}.weight", transposed),
        Key(f"{ours}.bias", f"{peer}.bias"),
    ]


def _batch_norm(ours: str, peer: str) -> list[Key]:
    """BatchNorm's affine and running statistics; the step counter is missing from old files."""
    return [
        *_affine(ours, peer),
        Key(f"{ours}.running_mean", f"{peer}.running_mean"),
        Key(f"{ours}.running_var", f"{peer}.running_var"),
        # torchvision's first ImageNet files predate the counter; eval outputs never read it.
        Key(f"{ours}.num_batches_tracked", f"{peer}.num_batches_tracked", optional=True),
    ]


def _indices(state: Mapping[str, Tensor], pattern: str) -> list[int]:
    """The distinct integers that `pattern`'s one group matches at the start of the keys."""
    found = {int(m.group(1)) for name in state if (m := re.match(pattern, name))}
    return sorted(found)


# torchvision ResNet (torchvision/models/resnet.py): conv1 -> bn1 -> relu -> maxpool, then
# layer1..layer4 of BasicBlock (conv1/bn1, conv2/bn2) or Bottleneck (+ conv3/bn3, stride on
# conv2 as "v1.5"), a downsample Sequential(conv1x1, bn) where shape changes, avgpool, fc.


def _resnet_keys(model: ResNet) -> list[Key]:
    keys = [Key("stem.0.weight", "conv1.weight"), *_batch_norm("stem.1", "bn1")]
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            ours, peer = f"stages.{s}.{b}", f"layer{s + 1}.{b}"
            for k in (1, 2, 3) if hasattr(block, "conv3") else (1, 2):
                keys.append(Key(f"{ours}.conv{k}.weight", f"{peer}.conv{k}.weight"))
                keys += _batch_norm(f"{ours}.norm{k}", f"{peer}.bn{k}")
            if isinstance(block.shortcut, Shortcut):
                keys.append(Key(f"{ours}.shortcut.conv.weight", f"{peer}.downsample.0.weight"))
                keys += _batch_norm(f"{ours}.shortcut.norm", f"{peer}.downsample.1")
    return keys + _affine("head", "fc")


def _resnet_refuses(c: ResNetConfig) -> str | None:
    if c.norm != "batch":
        return f"torchvision's ResNets use batch norm and the model has norm={c.norm!r}"
    if c.stem != "imagenet":
        return (
            f"torchvision's stem is a 7x7 stride-2 convolution and a max-pool (stem='imagenet') "
            f"and the model has stem={c.stem!r}"
        )
    if len(c.layers) != 4:
        return f"torchvision's ResNets have 4 stages and the model has {len(c.layers)}"
    return None


def _resnet_reads(state: Mapping[str, Tensor]) -> dict[str, Any]:
    stages = _indices(state, r"layer(\d+)\.")
    if not stages:
        return {}
    bottleneck = any(re.fullmatch(r"layer\d+\.\d+\.conv3\.weight", name) for name in state)
    return {
        "block": "bottleneck" if bottleneck else "basic",
        "layers": tuple(len(_indices(state, rf"layer{s}\.(\d+)\.")) for s in stages),
    }


register_map(
    KeyMap(
        "torchvision",
        ResNet,
        "torchvision ResNet",
        _resnet_keys,
        refuse=_resnet_refuses,
        reads=_resnet_reads,
    )
)


# torchvision MobileNetV2: models/mobilenet.py names its modules as torchvision does
# (features.N.conv.M..., classifier.1), so each key maps to itself; there is no table to keep.


def _mobilenet_keys(model: MobileNetV2) -> list[Key]:
    return [
        Key(name, name, optional=name.endswith(".num_batches_tracked"))
        for name in model.state_dict()
    ]


def _mobilenet_reads(state: Mapping[str, Tensor]) -> dict[str, Any]:
    first = state.get("features.0.0.weight")  # (32, C, 3, 3)
    return {} if first is None or first.ndim != 4 else {"in_channels": first.shape[1]}


register_map(
    KeyMap(
        "torchvision",
        MobileNetV2,
        "torchvision MobileNetV2",
        _mobilenet_keys,
        reads=_mobilenet_reads,
    )
)


# timm VisionTransformer (timm/models/vision_transformer.py), class token and learned positions
# that include it: patch_embed.proj (Conv2d, kernel = stride = P), cat cls_token, + pos_embed,
# pre-LN Blocks (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, GELU, mlp.fc2), norm, head on the
# class token. timm's LayerNorm has eps 1e-6 and its Mlp the exact GELU.


def _vit_keys(model: ViT) -> list[Key]:
    keys = [
        Key("cls_token", "cls_token"),
        Key("position_embedding", "pos_embed"),
        *_affine("patch_embedding", "patch_embed.proj"),
    ]
    for i in range(len(model.blocks)):
        ours, peer = f"blocks.{i}", f"blocks.{i}"
        keys += _affine(f"{ours}.attn_norm", f"{peer}.norm1")
        keys += _affine(f"{ours}.attn.qkv", f"{peer}.attn.qkv")
        keys += _affine(f"{ours}.attn.output", f"{peer}.attn.proj")
        keys += _affine(f"{ours}.mlp_norm", f"{peer}.norm2")
        keys += _affine(f"{ours}.mlp.up", f"{peer}.mlp.fc1")
        keys += _affine(f"{ours}.mlp.down", f"{peer}.mlp.fc2")
    return keys + _affine("norm", "norm") + _affine("head", "head")


def _vit_refuses(c: ViTConfig) -> str | None:
    if c.pool != "cls":
        return (
            "timm's mean-pooled ViTs apply their last LayerNorm after pooling (fc_norm), the "
            "model before it, so only pool='cls' maps"
        )
    if c.mlp != "gelu":
        return f"timm's ViT MLP uses the exact GELU (mlp='gelu') and the model has mlp={c.mlp!r}"
    if c.norm_eps != 1e-6:
        return f"timm's LayerNorms use eps 1e-6 and the model has norm_eps={c.norm_eps!r}"
    return None


def _vit_reads(state: Mapping[str, Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    proj = state.get("patch_embed.proj.weight")  # (D, C, P, P)
    if proj is not None and proj.ndim == 4:
        out.update(hidden_dim=proj.shape[0], in_channels=proj.shape[1], patch_size=proj.shape[-1])
        pos = state.get("pos_embed")  # (1, N + 1, D) with the class token's row first
        side = math.isqrt(pos.shape[1] - 1) if pos is not None and pos.ndim == 3 else 0
        if side and side * side == pos.shape[1] - 1:
            out["image_size"] = side * proj.shape[-1]
    blocks = _indices(state, r"blocks\.(\d+)\.")
    if blocks:
        out["num_layers"] = len(blocks)
    return out


register_map(
    KeyMap("timm", ViT, "timm VisionTransformer", _vit_keys, refuse=_vit_refuses, reads=_vit_reads)
)


# Hugging Face GPT-2 (transformers/models/gpt2/modeling_gpt2.py): wte + wpe, pre-LN blocks
# (ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, "gelu_new" = the tanh GELU, mlp.c_proj), ln_f;
# GPT2LMHeadModel puts "transformer." before all of these and adds lm_head, tied to wte. Conv1D
# stores (in, out). Older files carry each block's causal mask as attn.bias / attn.masked_bias.


def _gpt2_keys(model: TransformerDecoder) -> list[Key]:
    keys = [
        Key("token_embedding.weight", "wte.weight"),
        Key("position_embedding.weight", "wpe.weight"),
    ]
    for i in range(len(model.blocks)):
        ours, peer = f"blocks.{i}", f"h.{i}"
        keys += _affine(f"{ours}.attn_norm", f"{peer}.ln_1")
        keys += _affine(f"{ours}.attn.qkv", f"{peer}.attn.c_attn", transposed=True)
        keys += _affine(f"{ours}.attn.output", f"{peer}.attn.c_proj", transposed=True)
        keys += _affine(f"{ours}.mlp_norm", f"{peer}.ln_2")
        keys += _affine(f"{ours}.mlp.up", f"{peer}.mlp.c_fc", transposed=True)
        keys += _affine(f"{ours}.mlp.down", f"{peer}.mlp.c_proj", transposed=True)
    keys += _affine("norm", "ln_f")
    if model.config.tie_weights:  # save_pretrained drops the tied copy; state_dict() keeps it
        keys.append(Key("token_embedding.weight", "lm_head.weight", optional=True, tied=True,
                        beside=True))  # fmt: skip
    else:
        keys.append(Key("head.weight", "lm_head.weight", beside=True))
    return keys


def _gpt2_refuses(c: TransformerConfig) -> str | None:
    if c.positions != "learned":
        return f"GPT-2 has a learned position table (wpe) and the model has {c.positions!r} ones"
    if not c.bias:
        return "GPT-2 has biases in every layer and the model has bias=False"
    if c.mlp != "gelu-tanh":
        return (
            f"GPT-2's MLP uses the tanh GELU (activation_function 'gelu_new', our "
            f"mlp='gelu-tanh') and the model has mlp={c.mlp!r}"
        )
    if c.norm_eps != 1e-5:
        return f"GPT-2's LayerNorms use eps 1e-5 and the model has norm_eps={c.norm_eps!r}"
    return None


def _gpt2_reads(state: Mapping[str, Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wte, wpe = state.get("wte.weight"), state.get("wpe.weight")
    if wte is not None and wte.ndim == 2:
        out.update(vocab_size=wte.shape[0], hidden_dim=wte.shape[1])
    if wpe is not None and wpe.ndim == 2:
        out["max_len"] = wpe.shape[0]
    blocks = _indices(state, r"h\.(\d+)\.")
    if blocks:
        out["num_layers"] = len(blocks)
    return out


register_map(
    KeyMap(
        "hf",
        TransformerDecoder,
        "Hugging Face GPT-2",
        _gpt2_keys,
        refuse=_gpt2_refuses,
        reads=_gpt2_reads,
        prefix="transformer.",
        ignore=(r"h\.\d+\.attn\.(bias|masked_bias)",),
    )
)


# Hugging Face BERT (transformers/models/bert/modeling_bert.py), post-LN: word + position +
# token-type embeddings, then embeddings.LayerNorm; each encoder.layer.N adds attention
# (self.query, self.key, self.value, output.dense) and normalises (attention.output.LayerNorm),
# then adds the MLP (intermediate.dense, exact GELU, output.dense) and normalises
# (output.LayerNorm); no norm at the end. BertModel's pooler reads [CLS] for BertFor... heads;
# BertFor... models put "bert." before all of these and add their head beside it. Files from
# transformers before 4.31 carry the embeddings.position_ids buffer (0, 1, ..., max_len - 1).


def _bert_keys(model: TransformerEncoder) -> list[Key | Concat]:
    keys: list[Key | Concat] = [
        Key("token_embedding.weight", "embeddings.word_embeddings.weight"),
        Key("position_embedding.weight", "embeddings.position_embeddings.weight"),
        Key("token_type_embedding.weight", "embeddings.token_type_embeddings.weight"),
        *_affine("embed_norm", "embeddings.LayerNorm"),
    ]
    for i in range(len(model.blocks)):
        ours, peer = f"blocks.{i}", f"encoder.layer.{i}"
        for part in ("weight", "bias"):  # our fused qkv is cat([query, key, value], dim 0)
            qkv = (f"{peer}.attention.self.{m}.{part}" for m in ("query", "key", "value"))
            keys.append(Concat(f"{ours}.attn.qkv.{part}", tuple(qkv)))
        keys += _affine(f"{ours}.attn.output", f"{peer}.attention.output.dense")
        keys += _affine(f"{ours}.attn_norm", f"{peer}.attention.output.LayerNorm")
        keys += _affine(f"{ours}.mlp.up", f"{peer}.intermediate.dense")
        keys += _affine(f"{ours}.mlp.down", f"{peer}.output.dense")
        keys += _affine(f"{ours}.mlp_norm", f"{peer}.output.LayerNorm")
    return keys


def _bert_refuses(c: TransformerConfig) -> str | None:
    if c.norm_position != "post":
        return (
            f"BERT normalises after each residual add and after the embeddings "
            f"(norm_position='post') and the model has norm_position={c.norm_position!r}"
        )
    if c.token_types < 1:
        return (
            "BERT adds a segment table (token_type_embeddings; token_types=2) and the model has "
            "token_types=0"
        )
    if c.positions != "learned":
        return (
            f"BERT has a learned position table (position_embeddings) and the model has "
            f"{c.positions!r} ones"
        )
    if not c.bias:
        return "BERT has biases in every layer and the model has bias=False"
    if c.mlp != "gelu":
        return (
            f"BERT's MLP uses the exact GELU (hidden_act 'gelu', our mlp='gelu') and the model "
            f"has mlp={c.mlp!r}"
        )
    return None


def _bert_reads(state: Mapping[str, Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    words = state.get("embeddings.word_embeddings.weight")  # (V, D)
    if words is not None and words.ndim == 2:
        out.update(vocab_size=words.shape[0], hidden_dim=words.shape[1])
    for field, name in (("max_len", "position"), ("token_types", "token_type")):
        table = state.get(f"embeddings.{name}_embeddings.weight")  # (rows, D)
        if table is not None and table.ndim == 2:
            out[field] = table.shape[0]
    layers = _indices(state, r"encoder\.layer\.(\d+)\.")
    if layers:
        out["num_layers"] = len(layers)
    up = state.get("encoder.layer.0.intermediate.dense.weight")  # (mlp width, D)
    if up is not None and up.ndim == 2:
        out["mlp_ratio"] = up.shape[0] / up.shape[1]
    return out


register_map(
    KeyMap(
        "hf",
        TransformerEncoder,
        "Hugging Face BERT",
        _bert_keys,
        refuse=_bert_refuses,
        reads=_bert_reads,
        prefix="bert.",
        ignore=(r"embeddings\.(position_ids|token_type_ids)", r"pooler\.dense\.(weight|bias)"),
        kept=(r"head\..+",),
        write_prefix=False,
    )
)
