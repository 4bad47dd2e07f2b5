"""`embed` and `search`: a metric-learning run's embeddings of new inputs, and their neighbours.

`embed(RUN, data, output)` reads inputs as the run's training data was read (the same
preprocessing as `predict`) and writes their unit-norm embeddings to a .safetensors file:
"embeddings" (N, E) float32, with the inputs' ids in its metadata. `search(RUN, query, k)`
ranks the run's training examples (its index.safetensors, written when training finished) by
cosine similarity to each query and returns the k nearest with their class and source (an
image folder's file, or "train #i").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Embeddings:
    """Embeddings of new inputs: one unit-norm row per input, beside its id."""

    ids: list[Any]
    id_name: str
    embeddings: torch.Tensor  # (N, E) float32
    notes: list[str]


def embed(
    run_dir: str | os.PathLike[str], data: Any, output: str | os.PathLike[str] | None = None
) -> Embeddings:
    """Embed `data` (a path, or inputs held in Python) with metric-learning run `run_dir`.

    Writes `output` (.safetensors) when given; nothing is written unless every input was read.
    """
    from safetensors.torch import save_file

    from fieldguide.api.predict import _notes, load_run

    target = None if output is None else Path(output)
    if target is not None:
        if target.suffix != ".safetensors":
            raise ValueError(f"embed -o expects a .safetensors file; got '{output}'.")
        if not target.absolute().parent.is_dir():
            raise ValueError(f"embed -o {output}: folder {target.parent} does not exist.")
    run = load_run(run_dir)
    if run.task != "metric-learning":
        raise ValueError(
            f"embed applies metric-learning runs (siamese-*); {run.run_dir.name} is a "
            f"{run.task} run, so use `fieldguide predict` for it."
        )
    prepared = run.prepare(data)
    run.model.eval()
    with torch.no_grad():
        z = run.outputs(prepared).float().contiguous()
    result = Embeddings(list(prepared.ids), prepared.id_name, z, _notes(prepared.notes))
    if target is not None:
        meta = {
            "format": "fieldguide-embeddings-1",
            "run": str(run.run_dir),
            "ids": json.dumps([str(i) for i in result.ids]),
            "id_name": result.id_name,
        }
        tmp = target.with_name(f".{target.name}.tmp")
        save_file({"embeddings": z}, str(tmp), metadata=meta)
        os.replace(tmp, target)
    return result


def search(run_dir: str | os.PathLike[str], query: Any, k: int = 5) -> Any:
    """The `k` training examples of run `run_dir` nearest each input of `query`.

    Returns `Predictions` with one row per (query, rank): rank, similarity, class, source.
    """
    from fieldguide.api.predict import load_run

    return load_run(run_dir).search(query, k=k)
