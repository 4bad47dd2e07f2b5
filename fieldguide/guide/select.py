"""The default model for a dataset: the guide's first pick for its modality (guide §0).

This is the seed of `fieldguide recommend`; it reads only what the data says about itself.
"""

from __future__ import annotations


def auto_model(modality: str, input_shape: tuple[int, ...]) -> tuple[str, str]:
    """Return (model name, one-line reason) for data of `modality` with samples of `input_shape`."""
    if modality == "images":
        if max(input_shape[1:]) <= 64:
            return (
                "resnet-tiny",
                "images: a ResNet is the guide's first pick; small images get the small stem",
            )
        return "resnet18", "images: a ResNet is the guide's first pick for image classification"
    if modality == "segmentation":
        return (
            "unet-small",
            "images with masks: a U-Net is the guide's first pick (multi-scale with skips)",
        )
    if modality == "tabular":
        return (
            "mlp",
            "tabular dense features: the guide's first pick is an MLP",
        )
    if modality == "time-series":
        return "tcn", "time series: a causal TCN is the guide's first pick (long receptive field)"
    if modality == "sequences":
        return "tcn", "sequences: a causal TCN classifies (B, T, C) well and streams step by step"
    if modality == "text" and not input_shape:  # one token stream
        return "gpt-mini", "text generation: a decoder Transformer (GPT) is the guide's first pick"
    if modality == "text":
        return "bert-tiny", "text understanding: an encoder Transformer (BERT) is the guide's pick"
    if modality == "seq2seq":
        return "t5-tiny", "seq2seq: an encoder-decoder Transformer (T5/BART) is the guide's pick"
    if modality == "graphs":
        return "gcn", "graphs: a GCN is the guide's first pick (GAT and GraphSAGE are alternatives)"
    if modality == "fields":
        return (
            "wide-deep",
            "categorical fields and dense features with a binary target: Wide & Deep is the "
            "guide's first pick (DLRM when fields are many and large)",
        )
    if modality == "interactions":
        return "two-tower", "user-item interactions: a two-tower model ranks every item at once"
    raise ValueError(
        f"no default model for modality '{modality}'; pass --model NAME (see `fieldguide list`)."
    )
