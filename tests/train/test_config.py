import math

import pytest

from fieldguide.api.config import DataConfig
from fieldguide.train.config import OptionError, TrainConfig


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("lr", math.nan, r"TrainConfig\.lr must be a finite number > 0; got nan"),
        ("lr", math.inf, r"TrainConfig\.lr must be a finite number > 0; got inf"),
        ("lr", 0.0, r"TrainConfig\.lr must be a finite number > 0; got 0\.0"),
        ("weight_decay", -0.1, r"weight_decay must be a finite number >= 0; got -0\.1"),
        ("grad_clip", math.nan, r"grad_clip must be a finite number >= 0; got nan"),
        ("label_smoothing", 1.0, r"label_smoothing must be a finite number in \[0, 1\); got 1"),
        ("warmup_fraction", 1.5, r"warmup_fraction must be a finite number in \[0, 1\]"),
        ("min_lr_ratio", -0.5, r"min_lr_ratio must be a finite number in \[0, 1\]"),
        ("epochs", 0, r"epochs must be an integer >= 1; got 0"),
        ("batch_size", -3, r"batch_size must be an integer >= 1"),
        ("accumulate", 0, r"accumulate must be an integer >= 1"),
        ("max_steps", -1, r"max_steps must be an integer >= 0"),
        ("patience", -1, r"patience must be an integer >= 0"),
        ("checkpoint_every", -1, r"checkpoint_every must be an integer >= 0"),
        ("seed", -1, r"seed must be an integer in \[0, 4294967296\)"),
        ("epochs", 2.5, r"epochs must be an integer; got 2\.5 \(float\)"),
        ("epochs", True, r"epochs must be an integer; got True \(bool\)"),
        ("optimizer", "adam", r"optimizer must be one of adamw, sgd; got 'adam'"),
        ("monitor", "accuracy", r"monitor must be auto, train/loss or a validation metric"),
        ("device", "tpu", r"device must be auto, cpu, cuda, cuda:N or mps; got 'tpu'"),
        ("device", "cuda:x", r"device must be auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_train_config_refuses_each_bad_value_naming_the_field(field, value, match):
    with pytest.raises(OptionError, match=match):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("val_fraction", 0.0, r"DataConfig\.val_fraction must be a finite number in \(0, 1\)"),
        ("test_fraction", math.nan, r"test_fraction must be a finite number in \(0, 1\)"),
        ("val_fraction", 0.9, r"val_fraction \+ DataConfig\.test_fraction must be below 1"),
        ("image_size", -1, r"image_size must be an integer >= 0; got -1"),
        ("context", -2, r"context must be an integer >= 0"),
        ("horizon", -2, r"horizon must be an integer >= 0"),
        ("labels_per_class", -1, r"labels_per_class must be an integer >= 0"),
        ("split_seed", 2**32, r"split_seed must be an integer in \[0, 4294967296\)"),
        ("node_features", "random", r"node_features must be one of auto, spectral"),
        ("fanouts", "10,0", r"fanouts expects positive integers separated by commas"),
        ("fanouts", "ten", r"fanouts expects positive integers"),
        ("name", " ", r"name must name a starter or a path"),
    ],
)
def test_data_config_refuses_each_bad_value_naming_the_field(field, value, match):
    with pytest.raises(OptionError, match=match):
        DataConfig(**{field: value})


def test_good_values_pass_and_the_error_renders_with_any_spelling():
    TrainConfig(lr=1, device="cuda:1", monitor="val/accuracy", label_smoothing=0.1)
    DataConfig(fanouts="10, -1", val_fraction=0.2, test_fraction=0.3, image_size=0)
    with pytest.raises(OptionError) as info:
        TrainConfig(label_smoothing=math.inf)
    flag = info.value.render(lambda name: "--" + name.replace("_", "-"))
    assert flag == "--label-smoothing must be a finite number in [0, 1); got inf."


def test_a_data_path_is_stored_absolute_and_a_starter_stays_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text("a,label\n1,x\n")
    (tmp_path / "digits").mkdir()  # a starter wins over a folder of the same name
    assert DataConfig(name="table.csv").with_absolute_path().name == str(tmp_path / "table.csv")
    assert DataConfig(name="digits").with_absolute_path().name == "digits"
    assert DataConfig(name="./digits").with_absolute_path().name == str(tmp_path / "digits")
    assert DataConfig(name="missing.csv").with_absolute_path().name == "missing.csv"
