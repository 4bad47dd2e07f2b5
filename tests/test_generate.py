import pytest
import torch
from safetensors.torch import save_file

from fieldguide.api import generate as generate_module
from fieldguide.api.config import DataConfig, RunConfig
from fieldguide.api.generate import generate, load_run_model
from fieldguide.cli.main import main
from fieldguide.data.tokenizer import EOS
from tests.tasks.text_stand_ins import Bigram, MeanPoolClassifier, Shifter, TokenConfig

STAND_INS = {"shifter": Shifter, "bigram": Bigram, "classifier": MeanPoolClassifier}


@pytest.fixture
def built(monkeypatch):
    """Make `create_model` build stand-ins by name; returns the models it built."""
    models = []

    def create_model(name, **config):
        model = STAND_INS[name](TokenConfig(**config))
        model.name = name
        models.append(model)
        return model

    monkeypatch.setattr(generate_module, "create_model", create_model)
    return models


def write_run(path, name, model, **config):
    """A run folder as `fieldguide train` writes it: config.toml and model.safetensors."""
    path.mkdir()
    run = RunConfig(model=name, model_config=config, data=DataConfig(name="kjv"))
    (path / "config.toml").write_text(run.to_toml())
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(path / "model.safetensors"))
    return path


def test_generate_loads_the_weights_and_passes_the_sampling_options(tmp_path, built):
    saved = Shifter(TokenConfig(vocab_size=259))
    with torch.no_grad():
        saved.shift.fill_(2.0)  # a fresh Shifter has shift 1
    run = write_run(tmp_path / "run", "shifter", saved, vocab_size=259, max_len=64)
    text = generate(run, "ab", max_new_tokens=4, temperature=0.7, top_k=5, top_p=0.9, seed=3)
    assert text == "dfhj"  # b + 2, + 2, ...: the saved shift, not the fresh one; EOS dropped
    model = built[-1]
    assert not model.training and model.config.max_len == 64
    received = model.received
    assert received["temperature"] == 0.7 and received["top_k"] == 5 and received["top_p"] == 0.9
    assert received["stop_token"] == EOS and isinstance(received["generator"], torch.Generator)


def test_same_seed_same_text(tmp_path, built):
    torch.manual_seed(0)
    run = write_run(tmp_path / "run", "bigram", Bigram(TokenConfig(vocab_size=259)), vocab_size=259)
    a = generate(run, "In the", max_new_tokens=30, seed=1)
    assert a == generate(run, "In the", max_new_tokens=30, seed=1)
    assert a != generate(run, "In the", max_new_tokens=30, seed=2)
    assert built[-1].calls[-1] == dict(temperature=1.0, top_k=None, top_p=None, stop_token=EOS)


def test_cli_prints_prompt_and_continuation(tmp_path, built, capsys):
    saved = Shifter(TokenConfig(vocab_size=259))
    run = write_run(tmp_path / "run", "shifter", saved, vocab_size=259)
    code = main(["generate", str(run), "--prompt", "Amen", "--max-new-tokens", "3", "--seed", "7"])
    assert code == 0 and capsys.readouterr().out == "Amenopq\n"
    assert built[-1].received["generator"].initial_seed() == 7


def test_errors_are_one_sentence(tmp_path, built, capsys):
    with pytest.raises(FileNotFoundError, match="is not a run folder: it has no config.toml"):
        generate(tmp_path, "abc")
    code = main(["generate", str(tmp_path), "--prompt", "abc"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a run folder" in err
    run = write_run(tmp_path / "run", "shifter", Shifter(TokenConfig()), vocab_size=10)
    (run / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no model.safetensors: the run has not"):
        load_run_model(run)
    classifier = MeanPoolClassifier(TokenConfig(vocab_size=259))
    run = write_run(tmp_path / "cls", "classifier", classifier, vocab_size=259)
    with pytest.raises(TypeError, match="model 'classifier' of run .* has no generate method"):
        generate(run, "abc")
    with pytest.raises(ValueError, match="non-empty prompt"):
        generate(run, "")
    with pytest.raises(ValueError, match="temperature > 0"):
        generate(run, "abc", temperature=0)
    with pytest.raises(ValueError, match="top_k of at least 1"):
        generate(run, "abc", top_k=0)
    with pytest.raises(ValueError, match="top_p in \\(0, 1\\]"):
        generate(run, "abc", top_p=1.5)
    with pytest.raises(ValueError, match="max_new_tokens of at least 1; got 0"):
        generate(run, "abc", max_new_tokens=0)


def test_generation_slides_over_learned_positions_past_max_len():
    from fieldguide import create_model
    from fieldguide.api.generate import _generate_windowed

    torch.manual_seed(0)
    model = create_model("gpt-tiny").eval()  # learned positions, max_len 64
    prompt = torch.randint(0, 256, (1, 10))
    options = {"temperature": 0.0, "top_k": None, "top_p": None, "stop_token": None}
    out = _generate_windowed(model, prompt, 150, torch.Generator().manual_seed(0), options)
    assert out.shape == (1, 160) and torch.equal(out[:, :10], prompt)
    # Within one window, the windowed run is the plain one.
    plain = model.generate(prompt, max_new_tokens=40, temperature=0.0)
    assert torch.equal(out[:, :50], plain)
