"""`--model auto` resolves before everything that depends on the model: the data's encoding,
the pretrained preset's recipe, and (on small tables) the check of trees against a linear model.
"""

import os

import pytest

from fieldguide.api.config import DataConfig, RunConfig
from fieldguide.api.run import _load
from fieldguide.train.config import TrainConfig


def _texts_csv(tmp_path):
    rows = ["text,label"]
    for i in range(40):
        good = i % 2 == 0
        text = "a warm and funny film" if good else "a dull and tired plot"
        rows.append(f"{text} {i},{'ab'[good]}")
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _minilm_installed():
    from fieldguide.models.pretrained import MINILM

    return MINILM.installed()


@pytest.mark.skipif(
    os.environ.get("CI") != "true" and not _minilm_installed(),
    reason="minilm's weights are not installed",
)
def test_auto_on_texts_picks_minilm_with_its_tokenizer_and_recipe_under_the_given_flags(tmp_path):
    path = str(_texts_csv(tmp_path))
    run = RunConfig(model="auto", data=DataConfig(name=path), train=TrainConfig(seed=3))
    data, task, model, run, reason, _ = _load(run)
    assert run.model == "minilm" and "minilm" in reason
    assert data.preprocessing["tokenizer"] == "minilm"  # WordPiece, not bytes
    from fieldguide.train.finetune import recipe_for

    recipe = recipe_for("minilm", {})
    assert recipe and all(getattr(run.train, k) == v for k, v in recipe.items())
    assert run.train.seed == 3
    given = RunConfig(model="auto", data=DataConfig(name=path), train=TrainConfig(lr=5e-4))
    run = _load(given)[3]
    assert run.train.lr == 5e-4  # a flag the user gave wins over the preset's recipe
    assert run.train.epochs == recipe["epochs"]
