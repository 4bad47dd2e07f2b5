"""Create by name: presets, overrides checked against the config's types, close-match errors."""

import dataclasses
import re
import subprocess
import sys

import pytest
import torch

import fieldguide
from fieldguide import create_model, get_entry, list_models
from fieldguide.models import register
from fieldguide.models.mlp import MLP, MLPConfig
from fieldguide.models.resnet import ResNet, ResNetConfig

# ---------------------------------------------------------------------------------------------
# Names.
# ---------------------------------------------------------------------------------------------


def test_unknown_model_lists_close_matches():
    with pytest.raises(
        ValueError, match=re.escape("unknown model 'resnet19'; did you mean 'resnet18'")
    ):
        create_model("resnet19")


def test_unknown_model_without_close_matches_lists_the_choices():
    with pytest.raises(ValueError, match="unknown model 'zzzz'; choose from .*resnet18") as excinfo:
        get_entry("zzzz")
    for name in list_models():
        assert name in str(excinfo.value)


def test_model_name_must_be_a_string():
    with pytest.raises(TypeError, match="model name must be a str"):
        create_model(18)


@pytest.mark.parametrize("name", ["mlp", "mlp-small", "resnet-tiny"])
def test_created_model_carries_its_registry_name(name):
    model = create_model(name)
    assert model.name == name
    assert isinstance(model, get_entry(name).cls)


def test_entry_knows_family_class_and_summary():
    entry = get_entry("resnet18")
    assert entry.name == "resnet18"
    assert entry.family == "resnet" and entry.cls is ResNet
    assert entry.summary == ResNet.__doc__.strip().splitlines()[0]
    assert get_entry("mlp").family == "mlp" and get_entry("mlp").cls is MLP


# ---------------------------------------------------------------------------------------------
# Families.
# ---------------------------------------------------------------------------------------------


def test_list_models_by_family():
    resnets = list_models(family="resnet")
    assert {"resnet18", "resnet34", "resnet50", "resnet-tiny"} <= set(resnets)
    assert all(get_entry(n).family == "resnet" for n in resnets)
    mlps = list_models(family="mlp")
    assert {"mlp", "mlp-small", "mlp-deep"} <= set(mlps)
    assert all(get_entry(n).family == "mlp" for n in mlps)
    assert not set(resnets) & set(mlps)
    everything = list_models()
    assert everything == sorted(everything) and resnets == sorted(resnets)
    by_family = [n for family in fieldguide.models.registry.FAMILIES for n in list_models(family)]
    assert sorted(by_family) == everything


def test_unknown_family_lists_close_matches():
    with pytest.raises(
        ValueError, match=re.escape("unknown family 'resnets'; did you mean 'resnet'")
    ):
        list_models(family="resnets")


# ---------------------------------------------------------------------------------------------
# Overrides.
# ---------------------------------------------------------------------------------------------


def test_unknown_override_names_the_field_and_a_close_match():
    with pytest.raises(ValueError, match=r"'hiden_dim'.*did you mean 'hidden_dim'"):
        create_model("mlp", hiden_dim=32)


def test_unknown_override_without_a_close_match_lists_the_fields():
    with pytest.raises(ValueError, match=r"'zzz'; choose from .*out_dim"):
        create_model("resnet-tiny", zzz=1)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("mlp", "num_layers", "3"),
        ("mlp", "num_layers", 3.0),
        ("mlp", "hidden_dim", True),  # bool is not an int here
        ("mlp", "dropout", True),
        ("mlp", "dropout", "0.1"),
        ("mlp", "residual", 1),
        ("mlp", "activation", "swish"),
        ("resnet-tiny", "layers", (1, "a", 1)),
        ("resnet-tiny", "layers", [1, 2.0, 1]),
        ("resnet-tiny", "widths", 32),
        ("resnet-tiny", "stem", "cifar"),
    ],
)
def test_ill_typed_override_is_a_type_error_naming_the_field(name, field, value):
    with pytest.raises(TypeError, match=rf"^{re.escape(name)} override '{field}' expects"):
        create_model(name, **{field: value})


def test_list_override_becomes_a_tuple():
    model = create_model("resnet-tiny", layers=[1, 2, 1], widths=[8, 16, 32])
    assert model.config.layers == (1, 2, 1) and type(model.config.layers) is tuple
    assert model.config.widths == (8, 16, 32) and type(model.config.widths) is tuple
    assert [len(stage) for stage in model.stages] == [1, 2, 1]
    assert model.feature_dim == 32


def test_int_is_accepted_for_a_float_field_and_stored_as_float():
    model = create_model("mlp", dropout=0)
    assert model.config.dropout == 0.0 and type(model.config.dropout) is float


def test_overrides_do_not_change_the_registered_preset():
    default = get_entry("mlp").config
    model = create_model("mlp", hidden_dim=32, num_layers=1)
    assert (model.config.hidden_dim, model.config.num_layers) == (32, 1)
    assert get_entry("mlp").config is default
    assert (default.hidden_dim, default.num_layers) == (256, 2)
    assert create_model("mlp").config == default


def test_config_is_frozen():
    model = create_model("mlp-small")
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.hidden_dim = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_entry("resnet18").config.out_dim = 3


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("mlp", {"dropout": 1.5}, r"MLPConfig\.dropout must be in \[0, 1\), got 1\.5"),
        ("mlp", {"dropout": -0.1}, r"MLPConfig\.dropout"),
        ("mlp", {"hidden_dim": 0}, r"MLPConfig\.hidden_dim must be at least 1, got 0"),
        ("mlp", {"in_channels": 0}, r"MLPConfig\.in_channels"),
        ("mlp", {"num_layers": -1}, r"MLPConfig\.num_layers must be >= 0, got -1"),
        ("resnet18", {"layers": (2, 2)}, r"ResNetConfig\.layers and widths .* got 2 and 4"),
        ("resnet18", {"layers": (), "widths": ()}, r"ResNetConfig\.layers and widths"),
        ("resnet18", {"layers": (2, 0, 2, 2)}, r"ResNetConfig\.layers and widths must be positive"),
        ("resnet18", {"out_dim": 0}, r"ResNetConfig\.in_channels and out_dim"),
        ("resnet18", {"dropout": 1.0}, r"ResNetConfig\.dropout"),
    ],
)
def test_config_validation_names_the_field(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, **overrides)


def test_configs_validate_without_the_registry_too():
    with pytest.raises(ValueError, match=r"MLPConfig\.dropout"):
        MLPConfig(dropout=1.5)
    with pytest.raises(ValueError, match=r"ResNetConfig\.layers and widths"):
        ResNetConfig(layers=(1, 1), widths=(8,))


# ---------------------------------------------------------------------------------------------
# register().
# ---------------------------------------------------------------------------------------------


def test_register_rejects_a_config_class_or_non_dataclass():
    with pytest.raises(TypeError, match="dataclass instance; got type"):
        register("not-registered", MLPConfig, MLP)
    with pytest.raises(TypeError, match="dataclass instance; got dict"):
        register("not-registered", {"in_channels": 3}, MLP)
    assert "not-registered" not in list_models()


def test_register_rejects_a_name_taken_by_another_class():
    with pytest.raises(ValueError, match="model name 'mlp' is already registered to MLP"):
        register("mlp", ResNetConfig(), ResNet)
    assert get_entry("mlp").cls is MLP


def test_register_rejects_a_second_preset_under_the_same_name_but_allows_a_reimport():
    with pytest.raises(ValueError, match="model name 'mlp' is already registered"):
        register("mlp", MLPConfig(hidden_dim=7), MLP)
    register("mlp", get_entry("mlp").config, MLP)  # what re-importing the module does
    assert get_entry("mlp").config.hidden_dim == 256


def test_created_models_are_plain_modules():
    model = create_model("mlp-small")
    assert isinstance(model, torch.nn.Module)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Fast start.
# ---------------------------------------------------------------------------------------------


def test_importing_fieldguide_does_not_import_torch():
    code = "import fieldguide, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
