"""Task contracts: what a batch is, which model a task can train, the loss and the metrics.

`TASKS` is the one registry of tasks: a name and where its class lives, tried in order by
`task_for` (the first whose `fits(data)` is true takes the data; the general ones come last).
Adding a task is a module with a `fieldguide.tasks.base.Task` subclass and one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

TASKS = {
    "forecasting": "fieldguide.tasks.forecasting:ForecastingTask",
    "language-modelling": "fieldguide.tasks.language_modeling:LanguageModelingTask",
    "seq2seq": "fieldguide.tasks.seq2seq:Seq2SeqTask",
    "node-classification": "fieldguide.tasks.node_classification:NodeClassificationTask",
    "graph-classification": "fieldguide.tasks.graph_classification:GraphClassificationTask",
    "sequence-classification": (
        "fieldguide.tasks.sequence_classification:SequenceClassificationTask"
    ),
    "text-classification": "fieldguide.tasks.text_classification:TextClassificationTask",
    "segmentation": "fieldguide.tasks.segmentation:SegmentationTask",
    "generation": "fieldguide.tasks.generation:GenerationTask",
    "metric-learning": "fieldguide.tasks.metric_learning:MetricLearningTask",
    "ctr": "fieldguide.tasks.ctr:CTRTask",
    "ranking": "fieldguide.tasks.ranking:RankingTask",
    "regression": "fieldguide.tasks.regression:RegressionTask",
    "classification": "fieldguide.tasks.classification:ClassificationTask",
}


def task_class(name: str) -> type:
    """The task class registered as `name`."""
    module, _, attr = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def task_for(data: Any) -> type:
    """The class of the first task in `TASKS` that takes `data`."""
    for name in TASKS:
        cls = task_class(name)
        if cls.fits(data):
            return cls
    raise ValueError(
        f"no task takes data '{getattr(data, 'name', data)}' of modality "
        f"'{getattr(data, 'modality', '?')}'; tasks: {', '.join(TASKS)}."
    )


def make_task(data: Any, trains_for: str = "", **options: Any) -> Any:
    """The task for `data`, given the options the user set (unset ones left out).

    `trains_for` is the task a model asks for whatever the data (a generative model's
    "generation"); "" lets the data choose. An option the chosen task does not take is an error
    of one sentence naming the tasks that do, so nothing the user passes is silently ignored.
    """
    cls = task_class(trains_for) if trains_for else task_for(data)
    for option in options:
        if option not in cls.options:
            users = [n for n in TASKS if option in task_class(n).options]
            raise ValueError(
                f"{option} applies to {' and '.join(users) or 'no task'}; "
                f"'{data.name}' is {cls.name} data, so leave {option} out."
            )
    return cls(data, **options)
