"""A torch-free catalogue of the registered models, so `fieldguide list` and `show` start fast.

`catalog.json` is generated from the registry (`python -m fieldguide.api.catalog`) and a
test fails when it is stale, so it can never drift from the code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).with_name("catalog.json")


def build_catalog() -> dict[str, dict[str, Any]]:
    """Name -> family, summary, parameters, input, reads, tasks, invariants, config and diagram."""
    from fieldguide.api.diagram import registered_diagram
    from fieldguide.models.registry import create_model, get_entry, list_models
    from fieldguide.tasks import TASKS, task_class

    catalog = {}
    for name in list_models(classical=True):
        entry = get_entry(name)
        classical = entry.family == "classical"  # fitted on data: no weights before a run
        model = create_model(name)
        config = json.loads(json.dumps(dataclasses.asdict(entry.config)))  # tuples -> lists
        catalog[name] = {
            "family": entry.family,
            "class": entry.cls.__name__,
            "summary": entry.summary,
            "parameters": 0 if classical else model.num_parameters(),
            "input": model.input_description,
            "reads": entry.cls.reads,
            "tasks": [t for t in TASKS if not task_class(t).refusal(entry.cls)],
            "invariants": sorted(model.invariants),
            "receptive_field": getattr(model, "receptive_field", None),
            "config": config,
            # Mermaid, depth 1, for `fieldguide show`; a classical model has no layers to draw.
            "diagram": "" if classical else registered_diagram(name),
        }
    return catalog


def load_catalog() -> dict[str, dict[str, Any]]:
    """The generated catalogue, without importing torch."""
    return json.loads(CATALOG.read_text())


def write_catalog() -> None:
    """Regenerate catalog.json from the registry."""
    CATALOG.write_text(json.dumps(build_catalog(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_catalog()
    print(f"wrote {CATALOG}")
