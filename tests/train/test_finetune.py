"""Fine-tuning: --from an earlier run, a linear probe (--freeze body), --body-lr and --lora."""

import pytest
import torch

from fieldguide.models.registry import create_model
from fieldguide.train.config import OptionError, TrainConfig
from fieldguide.train.finetune import prepare, recipe_for
from fieldguide.train.optim import build_optimizer


def _step(model, cfg, x, y):
    opt = build_optimizer(model, cfg)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return opt


def test_linear_probe_trains_the_head_alone_and_keeps_batch_norm_statistics():
    model = create_model("resnet-tiny", in_channels=1, out_dim=3)
    prepare(model, TrainConfig(freeze="body"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model, TrainConfig(lr=0.1), torch.randn(8, 1, 16, 16), torch.randint(0, 3, (8,)))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}  # running means and variances too stay
    assert not model.stem.training and model.head.training  # train() leaves the body in eval
    assert model.training


def test_mobilenet_probe_trains_its_classifier():
    model = create_model("mobilenetv2-scratch", out_dim=3)
    prepare(model, TrainConfig(freeze="body"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.1.weight", "classifier.1.bias"}


def test_body_lr_scales_every_group_outside_the_head():
    model = create_model("mlp", in_channels=4, out_dim=3)
    opt = build_optimizer(model, TrainConfig(lr=1e-2, body_lr=0.1))
    seen = {}
    for group in opt.param_groups:
        for name in group["names"]:
            seen[name] = group.get("base_lr", 1e-2)
    assert seen["head.weight"] == seen["head.bias"] == 1e-2
    body = [lr for name, lr in seen.items() if not name.startswith("head.")]
    assert body and all(lr == pytest.approx(1e-3) for lr in body)
    # decay groups stay apart: no group mixes decayed weights with biases
    assert {g["weight_decay"] for g in opt.param_groups} == {0.05, 0.0}


def test_lora_trains_adapters_and_the_head_and_starts_from_the_same_outputs():
    torch.manual_seed(0)
    model = create_model("bert-tiny", out_dim=2)
    x = torch.randint(0, 259, (2, 9))
    model.eval()
    reference = model(x).detach()
    notes = prepare(model, TrainConfig(lora=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    assert all(n.startswith("head.") or "lora_" in n for n in trainable)
    assert any("lora_A" in n for n in trainable) and "LoRA rank 4" in notes[0]
    torch.testing.assert_close(model(x), reference, rtol=0, atol=0)  # B starts at zero


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"freeze": "body", "lora": 4}, "TrainConfig.freeze body trains the head alone"),
        ({"freeze": "body", "body_lr": 0.1}, "TrainConfig.body_lr scales the body"),
    ],
)
def test_meaningless_combinations_are_refused(options, named):
    with pytest.raises(OptionError, match=named):
        prepare(create_model("mlp", in_channels=4, out_dim=3), TrainConfig(**options))


def test_recipe_of_a_pretrained_preset_yields_to_what_the_user_set():
    recipe = recipe_for("minilm", {})
    assert recipe["lr"] == 1e-3 and recipe["body_lr"] == 0.05 and recipe["epochs"] == 1
    assert "lr" not in recipe_for("minilm", {"lr": 2e-5})
    assert "body_lr" not in recipe_for("minilm", {"freeze": "body"})
    assert "body_lr" not in recipe_for("minilm", {"lora": 8})
    assert recipe_for("mlp", {}) == {} and recipe_for("no-such-model", {}) == {}


# -- end to end, through train() and the CLI ---------------------------------------------------
def _train(tmp_path, model="mlp", **recipe):
    from fieldguide.api import train

    return train(
        model,
        "digits",
        runs_dir=tmp_path,
        progress="quiet",
        model_config={"hidden_dim": 16} if model == "mlp" else {},
        **{"epochs": 1, "max_steps": 2, "batch_size": 32, **recipe},
    )


def _weights(run_dir):
    from fieldguide.train.weights import load_weights

    return load_weights(run_dir / "model.safetensors")


def test_from_a_run_then_a_probe_keeps_its_body_and_retrains_the_head(tmp_path):
    first = _train(tmp_path / "a")
    second = _train(tmp_path / "b", init_from=str(first.run_dir), freeze="body", lr=0.05)
    a, b = _weights(first.run_dir), _weights(second.run_dir)
    for name in a:
        same = torch.equal(a[name], b[name])
        assert same != name.startswith("head."), name
    from fieldguide.api.config import RunConfig

    recorded = RunConfig.from_toml(second.run_dir / "config.toml").train
    assert recorded.init_from == str(first.run_dir) and recorded.freeze == "body"


def test_a_lora_run_saves_its_adapters_and_a_merged_model_that_scores_the_same(tmp_path):
    from fieldguide.api.predict import load_run
    from fieldguide.data import load_data
    from fieldguide.lora import load_lora
    from fieldguide.tasks import make_task

    first = _train(tmp_path / "a")
    result = _train(tmp_path / "b", init_from=str(first.run_dir), lora=2, lr=0.05)
    tensors, start = _weights(result.run_dir), _weights(first.run_dir)
    assert set(tensors) == set(start)  # merged: the plain model's names, no lora_A/lora_B
    body = [k for k in tensors if not k.startswith("head.")]
    assert any(not torch.equal(tensors[k], start[k]) for k in body)  # the update was folded in
    base = create_model("mlp", in_channels=64, out_dim=10, hidden_dim=16)
    adapted = load_lora(base, result.run_dir / "lora.safetensors")
    assert any("lora_A" in n for n, _ in adapted.named_parameters())
    # The merged file scores the test split as the adapted model did during the run.
    model = load_run(result.run_dir).model
    task = make_task(load_data("digits"))
    metrics = task.evaluate(model, "test", device="cpu", batch_size=256)
    assert metrics["test/accuracy"] == pytest.approx(result.test_metrics["test/accuracy"])
    assert metrics["test/loss"] == pytest.approx(result.test_metrics["test/loss"], abs=1e-5)


def test_from_another_architecture_is_refused_with_the_flag(tmp_path, capsys):
    from fieldguide.cli.main import main

    first = _train(tmp_path / "a")
    code = main(
        [
            "train",
            "mlp",
            "--data",
            "digits",
            "--set",
            "hidden_dim=24",
            "--from",
            str(first.run_dir),
            "--max-steps",
            "1",
            "--runs-dir",
            str(tmp_path / "b"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--from" in err and "another architecture" in err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_from_a_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(OptionError, match="has no model.safetensors"):
        _train(tmp_path / "b", init_from=str(tmp_path))


# -- resume: the adapted or probed model is rebuilt by `prepare`, then the checkpoint fills it --
@pytest.mark.parametrize("options", [{"lora": 2}, {"freeze": "body"}, {"body_lr": 0.1}])
def test_a_stopped_fine_tune_resumes_bitwise_equal_to_an_uninterrupted_one(tmp_path, options):
    from fieldguide.train.loop import Trainer

    from .helpers import task_and_model
    from .test_loop import assert_same_weights, stop_at

    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=3, **options)

    def fit(folder, callbacks=(), resume=False, init_seed=0):
        task, model = task_and_model(seed=init_seed)
        prepare(model, cfg)
        trainer = Trainer(
            model, task, cfg, checkpoint_dir=folder, callbacks=callbacks, progress="quiet"
        )
        return trainer, trainer.fit(resume=resume)

    reference, _ = fit(tmp_path / "a")
    _, stopped = fit(tmp_path / "b", callbacks=[stop_at(5)])
    assert stopped.status == "interrupted"
    # A new process builds other weights; prepare + the checkpoint must give the same run.
    resumed, final = fit(tmp_path / "b", resume=True, init_seed=123)
    assert final.status == "finished"
    assert_same_weights(reference.model, resumed.model)
