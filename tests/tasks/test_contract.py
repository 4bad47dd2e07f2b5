"""The task contract: `reads` against `accepts`, one build template, the override rule."""

import subprocess
import sys

import pytest
import torch

from fieldguide.data import load_data
from fieldguide.models.base import READS
from fieldguide.models.registry import get_entry, list_models
from fieldguide.tasks import TASKS, make_task, task_class
from fieldguide.tasks.base import Task
from fieldguide.tasks.classification import ClassificationTask
from fieldguide.tasks.language_modeling import LanguageModelingTask
from fieldguide.tasks.text_classification import TextClassificationTask
from tests.tasks.test_language_modeling import cyclic, text_data
from tests.tasks.test_text_classification import text_classes
from tests.train.helpers import synthetic_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.rstrip().endswith((".", "?"))


def test_every_registered_model_declares_what_it_reads():
    for name in list_models():
        assert get_entry(name).cls.reads in READS, name


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_builds_through_the_one_template(name):
    cls = task_class(name)
    assert issubclass(cls, Task) and cls.name == name
    # The template is Task.build_model; a task says what it needs (spec), never how to build.
    assert all("build_model" not in vars(k) for k in cls.__mro__ if k is not Task)
    assert cls.accepts and set(cls.accepts) <= set(READS)
    assert cls.monitor.removeprefix("val/") in cls.metric_names
    for method in ("spec", "split_size", "batch", "loss", "evaluate", "fits"):
        assert getattr(cls, method) is not getattr(Task, method), (name, method)


def test_an_override_the_data_contradicts_names_both_values(digits):
    task = ClassificationTask(digits)
    with pytest.raises(ValueError) as error:
        task.build_model("resnet-tiny", out_dim=5)
    message = str(error.value)
    assert "got out_dim=5 but classification on 'digits' needs out_dim=10" in message
    assert one_sentence(message)
    with pytest.raises(ValueError, match="got in_channels=10 but .* needs in_channels=64"):
        task.build_model("mlp", in_channels=10)
    with pytest.raises(ValueError, match="got out_dim=3 but .* needs out_dim=10"):
        task.build_model("mlp", out_dim=3)


def test_an_override_the_data_agrees_with_and_free_fields_are_the_users(digits):
    task = ClassificationTask(digits)
    model = task.build_model("resnet-tiny", out_dim=10, dropout=0.3)
    assert (model.config.out_dim, model.config.dropout) == (10, 0.3)
    mlp = task.build_model("mlp", hidden_dim=32, num_layers=1)
    assert (mlp.config.in_channels, mlp.config.hidden_dim, mlp.config.num_layers) == (64, 32, 1)


def test_a_text_model_cannot_keep_more_classes_than_the_data_has():
    task = TextClassificationTask(text_classes())  # 2 classes
    assert task.build_model("bert-tiny").config.out_dim == 2
    with pytest.raises(ValueError, match="got out_dim=5 but text-classification .* out_dim=2"):
        task.build_model("bert-tiny", out_dim=5)


def test_reads_that_the_task_does_not_accept_are_one_sentence(digits):
    table = ClassificationTask(synthetic_data())
    with pytest.raises(ValueError) as error:
        table.build_model("resnet-tiny")
    assert "trains models that read vectors; 'resnet-tiny' reads images" in str(error.value)
    assert one_sentence(str(error.value))
    with pytest.raises(ValueError, match="read images or vectors; 'gcn' reads graph"):
        ClassificationTask(digits).build_model("gcn")
    with pytest.raises(ValueError, match="read tokens; 'gru' reads sequences"):
        TextClassificationTask(text_classes()).build_model("gru")


def test_an_image_task_feeds_an_mlp_flattened_pixels_and_predict_is_the_model(digits):
    task = ClassificationTask(digits)
    torch.manual_seed(0)
    mlp = task.build_model("mlp-small")
    assert mlp.config.in_channels == 64
    probs = task.predict(mlp, "val", batch_size=100)
    x = digits.val.x.flatten(1)  # what the model reads, preprocessed
    mlp.eval()
    with torch.no_grad():
        assert torch.allclose(probs, mlp(x).softmax(-1), atol=1e-6)
    assert mlp.training is False  # predict leaves the mode as it found it


def test_language_modelling_refuses_a_model_that_sees_the_next_token():
    task = LanguageModelingTask(text_data(cyclic(100), cyclic(40), cyclic(40)), context=16)
    assert task.build_model("gpt-tiny").config.vocab_size == 259
    with pytest.raises(ValueError, match="needs a model that is causal or streamable; 'bert-tiny'"):
        task.build_model("bert-tiny")


def test_a_task_refuses_a_model_that_cannot_give_the_output_it_needs():
    task = TextClassificationTask(text_classes())
    with pytest.raises(ValueError, match="needs one output per example; 'gpt-tiny' gives one per"):
        task.build_model("gpt-tiny")
    # The catalogue lists, for each model, exactly the tasks whose refusal is empty.
    from fieldguide.api.catalog import load_catalog

    catalog = load_catalog()
    assert catalog["gpt-tiny"]["tasks"] == ["language-modelling"]
    assert catalog["bert-tiny"]["tasks"] == ["text-classification"]
    assert "forecasting" in catalog["mlp"]["tasks"] and "seq2seq" in catalog["t5-tiny"]["tasks"]


def test_options_a_task_does_not_take_are_refused(digits):
    assert isinstance(make_task(digits, label_smoothing=0.1), ClassificationTask)
    with pytest.raises(ValueError, match="horizon applies to forecasting; 'digits' is class"):
        make_task(digits, horizon=4)
    with pytest.raises(ValueError, match="fanouts applies to node-classification"):
        make_task(digits, fanouts=(5, 5))


def test_the_cli_names_the_contradiction_and_writes_nothing(tmp_path):
    cmd = [sys.executable, "-m", "fieldguide.cli.main", "train", "--model", "mlp"]
    cmd += ["--data", "digits", "--set", "out_dim=3", "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "got out_dim=3 but classification on 'digits' needs out_dim=10" in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
