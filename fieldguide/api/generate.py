"""`generate`: continue a prompt with a trained language model from its run folder.

The model is rebuilt from the run's config.toml (its registry name and every config field the
run recorded) and its weights are read from model.safetensors, never from a pickle, after
checking the sha256 written with them. The prompt is encoded with the byte tokenizer, as the
text starters are, and the model's own `generate` samples the continuation:

    model.generate(prompt_ids (1, T), max_new_tokens=N, temperature=t, top_k=k, top_p=p,
                   stop_token=EOS, generator=g) -> ids (1, T + n), n <= N, the prompt first
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fieldguide.api.config import RunConfig
from fieldguide.data.tokenizer import EOS, ByteTokenizer
from fieldguide.models.registry import create_model


def _check_options(
    prompt: str, max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    """Raise one sentence for the first sampling option of the wrong type or range."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(
            "generate expects a non-empty prompt (str) to continue, such as 'In the beginning'."
        )
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(
            f"generate expects max_new_tokens as an int; got {type(max_new_tokens).__name__}."
        )
    if max_new_tokens < 1:
        raise ValueError(f"generate expects max_new_tokens of at least 1; got {max_new_tokens!r}.")
    if not temperature > 0:
        raise ValueError(
            f"generate expects temperature > 0 (1.0 samples as trained, lower is greedier); "
            f"got {temperature}."
        )
    if top_k is not None and top_k < 1:
        raise ValueError(f"generate expects top_k of at least 1, or none; got {top_k}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"generate expects top_p in (0, 1], or none; got {top_p}.")


def load_run_model(run_dir: str | Path, device: str = "cpu") -> torch.nn.Module:
    """The trained model of run folder `run_dir`, in eval mode on `device`.

    Raises:
        FileNotFoundError: If `run_dir` has no config.toml or no model.safetensors.
        ValueError: If model.safetensors is damaged (its sha256 does not match the hash
            written with it, or it is not safetensors) or does not fit the model.
    """
    from fieldguide.train.weights import load_weights

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a run folder: it has no config.toml; pass a folder that "
            f"`fieldguide train` wrote, such as runs/<date>-<model>-<data>."
        )
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"run folder {run_dir} has no model.safetensors: the run has not finished; "
            f"finish it with `fieldguide train --resume {run_dir}`."
        )
    run = RunConfig.from_toml(run_dir / "config.toml")
    model = create_model(run.model, **saved_config(run.model, run.model_config))
    load_weights(weights, model)
    return model.to(device).eval()


def saved_config(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded model config, with fields added to the model since then filled in.

    A run records every field of its model's config. One it lacks did not exist when it was
    trained, so the model ran with that field's default (say LayerNorm eps 1e-5 before
    `norm_eps` existed), which may differ from today's preset (vit-b16's 1e-6).
    """
    import dataclasses

    from fieldguide.models.registry import get_entry

    if not fields:
        return {}
    try:
        preset = get_entry(name).config
    except ValueError:  # an unknown name: create_model says so in its own words
        return dict(fields)
    filled = dict(fields)
    for field in dataclasses.fields(preset):
        if field.name not in filled and field.default is not dataclasses.MISSING:
            filled[field.name] = field.default
    return filled


@torch.no_grad()
def _generate_windowed(
    model: Any, prompt_ids: torch.Tensor, max_new_tokens: int, generator: Any, options: dict
) -> torch.Tensor:
    """model.generate, sliding over learned positions: longer texts than max_len, like nanoGPT.

    A model with learned positions sees at most max_len tokens. When prompt plus new tokens
    exceed that, generation goes in chunks: each reads the last half of max_len tokens so far
    and adds up to the other half, so every token still has half a window of context.
    """
    config = getattr(model, "config", None)
    max_len = getattr(config, "max_len", None)
    if max_len is None or getattr(config, "positions", "learned") != "learned":
        return model.generate(
            prompt_ids, max_new_tokens=max_new_tokens, generator=generator, **options
        )
    ids, remaining = prompt_ids, max_new_tokens
    while remaining > 0:
        window = ids[:, -max(1, max_len // 2) :] if ids.shape[1] + remaining > max_len else ids
        new = min(remaining, max_len - window.shape[1])
        out = model.generate(window, max_new_tokens=new, generator=generator, **options)
        added = out[:, window.shape[1] :]
        ids, remaining = torch.cat([ids, added], dim=1), remaining - new
        if added.shape[1] < new or bool((added == EOS).any()):
            break  # the model stopped
    return ids


def generate(
    run_dir: str | Path,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> str:
    """Continue `prompt` with the language model trained in `run_dir`; return the continuation.

    Args:
        run_dir: A run folder written by `fieldguide train` (config.toml, model.safetensors).
        prompt: Text to continue; encoded as UTF-8 bytes, without BOS (the text starters are
            plain byte streams).
        max_new_tokens: Most tokens (bytes) to add; fewer if the model emits EOS.
        temperature: Divides the logits before sampling: below 1 sharper, above 1 flatter.
        top_k: Sample only among the k most likely tokens; None for all.
        top_p: Sample only among the most likely tokens whose probabilities sum to p
            (nucleus sampling); None for all.
        seed: Seed of the sampling generator: the same seed gives the same text.
        device: Where the model runs.

    Returns:
        The generated text after the prompt (invalid UTF-8 shown as U+FFFD, EOS dropped).

    Example:
        >>> print("In the beginning" + generate("runs/...-gpt-mini-kjv", "In the beginning"))
    """
    _check_options(prompt, max_new_tokens, temperature, top_k, top_p)
    model = load_run_model(run_dir, device)
    if not callable(getattr(model, "generate", None)):
        raise TypeError(
            f"model '{getattr(model, 'name', type(model).__name__)}' of run {run_dir} has no "
            f"generate method; only language models (decoder Transformers) write text."
        )
    tokenizer = ByteTokenizer()
    prompt_ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.int64, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "stop_token": EOS}
    out = _generate_windowed(model, prompt_ids, max_new_tokens, generator, options)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < prompt_ids.shape[1]:
        shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"generate expected the model to return ids (1, T + n) that start with the "
            f"{prompt_ids.shape[1]} prompt ids; got {shown}."
        )
    return tokenizer.decode(out[0, prompt_ids.shape[1] :].cpu())
