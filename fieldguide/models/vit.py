"""Vision Transformer (docs/guide/vit.md): images as sequences of patch tokens.

Letters: B batch, C channels, H×W spatial, P patch side, N = (H/P)·(W/P) patches, D width,
h heads.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale" (2021). The image is cut into non-overlapping P×P patches; each patch is flattened and
projected linearly to D, which is exactly a convolution with kernel = stride = P. The N patch
tokens, with a learned class token in front (pool "cls"), get learned absolute position
embeddings added and pass through pre-LN Transformer blocks (layers/attention.py) and a final
LayerNorm; the class token's state (or the mean of the patch tokens, pool "mean") feeds a
linear head.

A ViT has none of a CNN's locality or translation equivariance: only the position embeddings
tell it where a patch sits, which is why it needs much data or heavy augmentation (the selection
table of docs/guide/README.md lists it as a pick when pretrained). Since the position table has
one row per patch of an image_size × image_size input, the model takes exactly that input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from fieldguide.layers.attention import MLP_KINDS, TransformerBlock
from fieldguide.layers.shapes import check_shape
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of a Vision Transformer; `create_model` takes any field as an override."""

    image_size: int = 224  # H = W of the input; the position table is sized for it
    patch_size: int = 16  # P; must divide image_size
    in_channels: int = 3
    out_dim: int = 1000
    hidden_dim: int = 768  # D, the width of the residual stream
    num_layers: int = 12
    num_heads: int = 12  # h; D/h is each head's width
    # "gelu" exact (the paper's), "gelu-tanh" its tanh approximation, "swiglu" gated
    mlp: Literal["gelu", "gelu-tanh", "swiglu"] = "gelu"
    mlp_ratio: float = 4.0  # MLP hidden width / D (SwiGLU uses 2/3 of it, as many weights)
    pool: Literal["cls", "mean"] = "cls"  # class token's final state, or mean of patch tokens
    dropout: float = 0.0  # on embeddings, attention weights and each residual branch
    norm_eps: float = 1e-5  # epsilon of every LayerNorm (the paper's ViT: 1e-6)

    def __post_init__(self) -> None:
        for field in (
            "image_size",
            "patch_size",
            "in_channels",
            "out_dim",
            "hidden_dim",
            "num_layers",
            "num_heads",
        ):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"ViTConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"ViTConfig.image_size must be divisible by patch_size; got image_size="
                f"{self.image_size}, patch_size={self.patch_size}."
            )
        if self.hidden_dim % self.num_heads != 0:
            raise ValueError(
                f"ViTConfig.hidden_dim must be divisible by num_heads; got "
                f"hidden_dim={self.hidden_dim}, "
                f"num_heads={self.num_heads}."
            )
        if self.mlp not in MLP_KINDS:
            raise ValueError(
                f"ViTConfig.mlp must be 'gelu' or 'swiglu', got {self.mlp!r}; 'gelu-tanh' "
                "(GELU's tanh approximation) is the third choice."
            )
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"ViTConfig.pool must be 'cls' or 'mean', got {self.pool!r}.")
        if self.mlp_ratio <= 0:
            raise ValueError(f"ViTConfig.mlp_ratio must be positive, got {self.mlp_ratio}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ViTConfig.dropout must be in [0, 1), got {self.dropout}.")
        if not (math.isfinite(self.norm_eps) and self.norm_eps > 0):
            raise ValueError(
                f"ViTConfig.norm_eps must be a positive finite number such as 1e-6, "
                f"got {self.norm_eps}."
            )

    @property
    def num_patches(self) -> int:
        """N = (image_size / patch_size)^2, the number of patch tokens."""
        return (self.image_size // self.patch_size) ** 2


class ViT(Model):
    """Vision Transformer (Dosovitskiy et al., 2021): patch tokens, Transformer blocks, head."""

    invariants = frozenset({"batch_independent"})
    reads = "images"

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        c = config
        # Flatten each P×P patch and project it to D: one convolution with kernel = stride = P.
        self.patch_embedding = nn.Conv2d(
            c.in_channels, c.hidden_dim, c.patch_size, stride=c.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_dim)) if c.pool == "cls" else None
        num_tokens = c.num_patches + (1 if c.pool == "cls" else 0)
        self.position_embedding = nn.Parameter(torch.zeros(1, num_tokens, c.hidden_dim))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.hidden_dim,
                c.num_heads,
                mlp=c.mlp,
                mlp_ratio=c.mlp_ratio,
                dropout=c.dropout,
                norm_eps=c.norm_eps,
            )
            for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.hidden_dim, eps=c.norm_eps)
        self.head = nn.Linear(c.hidden_dim, c.out_dim)
        self.feature_dim = c.hidden_dim  # width of `features`, as ResNet's
        self._init_weights()

    def _init_weights(self) -> None:
        # As the paper's JAX code and torchvision: Xavier-uniform matrices and zero biases in
        # the blocks, each of the fused projections (q, k, v; SwiGLU's value and gate) on its
        # own, as if it were a separate layer. timm's N(0, 0.02) instead shrinks every branch at
        # small widths: after 60 AdamW steps on digits, vit-tiny (D = 64) reaches 0.19 test
        # accuracy with it and 0.63 with Xavier. The reference zeroes the head; here it is
        # Xavier too, since a zero head would stop every other gradient at the first step.
        swiglu = self.config.mlp == "swiglu"
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                parts = 3 if name.endswith("qkv") else 2 if swiglu and name.endswith("up") else 1
                with torch.no_grad():
                    for weight in module.weight.chunk(parts):  # (out/parts, in) views
                        nn.init.xavier_uniform_(weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # LeCun normal on the patch projection (torchvision's conv_proj): a patch's C·P·P
        # pixels of unit variance give tokens of about unit variance. Both it and the position
        # table are truncated at ±2 std (timm's absolute bounds ±2 at std 0.02 cut nothing).
        std = math.sqrt(1.0 / (self.config.in_channels * self.config.patch_size**2))
        nn.init.trunc_normal_(self.patch_embedding.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.patch_embedding.bias)
        # The class token starts at zero, as in torchvision: its position row tells it apart.
        nn.init.trunc_normal_(self.position_embedding, std=0.02, a=-0.04, b=0.04)

    @property
    def input_description(self) -> str:
        """What forward expects."""
        s = self.config.image_size
        return f"images (B, {self.config.in_channels}, {s}, {s})"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random images of shape (batch_size, in_channels, image_size, image_size)."""
        s = self.config.image_size
        return torch.randn(batch_size, self.config.in_channels, s, s)

    @classmethod
    def config_for_data(cls, config: ViTConfig, spec: DataSpec) -> ViTConfig:
        """Square (C, H, W) examples set in_channels and image_size = H; patch_size stays."""
        cls.refuse_shape(spec, "C H W")
        cls.refuse_output(spec)
        channels, height, width = spec.shape
        num_outputs = spec.num_outputs
        if height != width:
            raise ValueError(
                f"ViT needs square images, since one image_size sizes its position table; the "
                f"data gives {height}x{width}; resize them to a square with the data's "
                f"image_size option."
            )
        if height % config.patch_size != 0:
            raise ValueError(
                f"ViT needs patch_size to divide the image size; the data gives {height}x{width} "
                f"images and patch_size is {config.patch_size}; override patch_size with a "
                f"divisor of {height} or resize the images."
            )
        return replace(config, in_channels=channels, image_size=height, out_dim=num_outputs)

    def no_weight_decay(self) -> set[str]:
        """The position table and class token: decay would pull them toward zero (as timm)."""
        return {"position_embedding"} | ({"cls_token"} if self.cls_token is not None else set())

    def encode(self, x: Tensor) -> Tensor:
        """Final normed tokens (B, N + 1, D) with the class token first, or (B, N, D) for mean.

        Patches are in row-major order: token i (after the class token) is patch
        (i // (W/P), i % (W/P)).
        """
        c = self.config
        check_shape(
            x,
            "B C H W",
            C=c.in_channels,
            owner=self.name,
            name="x",
            what="images",
            like=self.head.weight,
        )
        if x.shape[-2:] != (c.image_size, c.image_size):
            raise ValueError(
                f"{self.name} expects images x of size {c.image_size}x{c.image_size}, the "
                f"image_size its position embeddings are sized for; got "
                f"{x.shape[-2]}x{x.shape[-1]}; resize the images or create the model with "
                f"image_size matching the data."
            )
        h = self.patch_embedding(x)  # (B, D, H/P, W/P)
        h = h.flatten(2).transpose(1, 2)  # (B, N, D)
        if self.cls_token is not None:
            cls = self.cls_token.expand(h.shape[0], -1, -1)  # (B, 1, D)
            h = torch.cat([cls, h], dim=1)  # (B, N + 1, D)
        h = self.drop(h + self.position_embedding)
        for block in self.blocks:
            h, _ = block(h)  # every token attends to every token; no mask, no cache
        return self.norm(h)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features (B, D) of images x (B, C, H, W): class token, or mean of patches."""
        h = self.encode(x)
        return h[:, 0] if self.config.pool == "cls" else h.mean(1)  # (B, D)

    def forward(self, x: Tensor) -> Tensor:
        """Map images x of shape (B, in_channels, H, W) to logits of shape (B, out_dim)."""
        return self.head(self.features(x))


# 8x8 digits in 2x2 patches: 16 tokens, as many as a 64x64 image gives in 16x16 patches.
register(
    "vit-tiny",
    ViTConfig(
        image_size=8,
        patch_size=2,
        in_channels=1,
        out_dim=10,
        hidden_dim=64,
        num_layers=4,
        num_heads=4,
    ),
    ViT,
)
# ViT-B/16 of the paper: 86,567,656 parameters, as timm's vit_base_patch16_224 and torchvision's
# vit_b_16, with their LayerNorm eps 1e-6 and exact GELU, so their weights give their outputs.
register(
    "vit-b16",
    ViTConfig(
        image_size=224,
        patch_size=16,
        in_channels=3,
        out_dim=1000,
        hidden_dim=768,
        num_layers=12,
        num_heads=12,
        mlp_ratio=4.0,
        pool="cls",
        norm_eps=1e-6,
    ),
    ViT,
)
