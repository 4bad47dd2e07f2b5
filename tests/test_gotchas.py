"""The §16 gotchas as experiments: well-formed results, verdicts that follow from the numbers,
and the directions that hold by construction (masks, GroupNorm, decayed gains)."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from fieldguide.api import gotchas
from fieldguide.api.gotchas import GOTCHAS, Measurement, compare, format_results, run_gotchas

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def results() -> dict[str, gotchas.Result]:
    return {r.name: r for r in run_gotchas(quick=True)}


# -- the verdict rule -------------------------------------------------------------------------


def test_compare_calls_a_winner_only_when_every_seed_agrees_and_the_gap_is_clear():
    a = Measurement("acc", "a", (0.90, 0.91, 0.92))
    assert compare(a, Measurement("acc", "b", (0.80, 0.82, 0.81))) == "a"
    assert compare(Measurement("acc", "b", (0.80, 0.82, 0.81)), a) == "a"
    assert compare(a, Measurement("acc", "b", (0.95, 0.85, 0.90))) is None  # signs disagree
    assert compare(a, Measurement("acc", "b", (0.899, 0.909, 0.919))) is None  # under MIN_EFFECT
    one = Measurement("acc", "a", (0.9,))
    assert compare(one, Measurement("acc", "b", (0.1,))) is None  # one seed calls nothing


def test_measurement_spread_is_the_sample_standard_deviation():
    m = Measurement("acc", "a", (1.0, 2.0, 3.0))
    assert m.mean == 2.0 and m.spread == 1.0
    assert m.text() == "2.000 ± 1.000"


# -- every gotcha, quick ------------------------------------------------------------------------


def test_every_gotcha_runs_and_is_well_formed(results):
    assert list(results) == list(GOTCHAS)
    for r in results.values():
        assert r.question.endswith("?") and r.data.startswith(("real:", "synthetic:"))
        assert r.seeds
        for m in r.measurements:
            assert len(m.values) == len(r.seeds) or r.name == "trees-vs-mlp", (r.name, m)
            assert all(math.isfinite(v) and 0.0 <= v <= 5.0 for v in m.values), (r.name, m)
        for advised, contrast in r.comparisons:
            assert r.get(r.metric, advised) and r.get(r.metric, contrast)


def test_verdicts_follow_from_the_numbers(results):
    for r in results.values():
        assert len(r.winners) == len(r.comparisons)
        for (advised, contrast), winner in zip(r.comparisons, r.winners, strict=True):
            a, c = r.get(r.metric, advised), r.get(r.metric, contrast)
            assert winner == compare(a, c)
            if winner is None:
                assert f"{advised} vs {contrast}" in r.verdict or "one seed" in r.verdict
            else:
                assert f"{winner} beats" in r.verdict
                assert (a.mean > c.mean) == (winner == advised)


def test_groupnorm_has_no_train_eval_gap_and_batchnorm_at_batch_two_does(results):
    r = results["tiny-batch-norm"]
    metric = "predictions changed, train vs eval mode"
    assert r.get(metric, "GroupNorm").values == (0.0,) * len(r.seeds)
    assert all(v > 0.05 for v in r.get(metric, "BatchNorm").values)


def test_decaying_norm_gains_shrinks_them_in_every_seed(results):
    r = results["norm-decay"]
    kept = r.get("mean |norm gain|", "weights only").values
    decayed = r.get("mean |norm gain|", "everything").values
    assert all(d < k for d, k in zip(decayed, kept, strict=True))


def test_padding_changes_predictions_only_without_masks(results):
    r = results["padding-masks"]
    metric = "predictions changed by padding"
    assert r.get(metric, "masks").values == (0.0,) * len(r.seeds)
    assert all(v > 0.05 for v in r.get(metric, "no masks").values)
    assert r.winners == ("masks",)  # masked accuracy padded to the longest: ~0.95 vs ~0.6


def test_format_results_prints_every_gotcha_with_its_verdict(results):
    text = format_results(list(results.values()))
    for r in results.values():
        assert r.name in text and r.verdict in text


# -- the pieces, deterministic ------------------------------------------------------------------


def test_padding_moves_an_unmasked_transformer_but_not_a_masked_one():
    from fieldguide.models import create_model

    torch.manual_seed(0)
    model = create_model("bert-tiny", max_len=48, out_dim=2).eval()
    lengths = torch.tensor([5, 12, 30, 48])
    x = torch.randint(3, 200, (4, 48))
    x[torch.arange(48)[None, :] >= lengths[:, None]] = 256  # right-padded with PAD
    changed, moved = gotchas.padding_shift(model, x, lengths, masked=True)
    assert changed == 0.0 and moved < 1e-5
    _, moved = gotchas.padding_shift(model, x, lengths, masked=False)
    assert moved > 1e-3


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    from fieldguide.data.base import ClassificationData, Split
    from fieldguide.tasks import task_for

    torch.manual_seed(0)
    split = Split(torch.randn(12, 5), torch.arange(12) % 3)
    data = ClassificationData(
        "toy", "tabular", split, split, split, ["a", "b", "c"], (5,), "toy", synthetic=True
    )
    model = torch.nn.Linear(5, 3)
    batch = (split.x, split.y)
    focal0 = gotchas._focal_task(task_for(data), 0.0)(data)
    expected = torch.nn.functional.cross_entropy(model(split.x), split.y)
    assert torch.allclose(focal0.loss(model, batch), expected, atol=1e-6)
    focal2 = gotchas._focal_task(task_for(data), 2.0)(data)
    assert focal2.loss(model, batch) < expected  # (1 - p)^2 < 1 down-weights every term


def test_the_contrast_optimizer_decays_norms_and_the_project_one_does_not():
    from fieldguide.data import load_data
    from fieldguide.tasks import make_task
    from fieldguide.train.config import TrainConfig
    from fieldguide.train.loop import Trainer

    task = make_task(load_data("digits", seed=0))
    model = task.build_model("mlp", norm="layer")
    config = TrainConfig(weight_decay=0.1, device="cpu")
    ours = Trainer(model, task, config, progress="quiet")._build_optimizer()
    naive = gotchas._decay_everything_trainer()(model, task, config, progress="quiet")
    naive_groups = naive._build_optimizer().param_groups
    norm_gain = next(p for n, p in model.named_parameters() if "norm" in n)

    def decay_of(groups):
        return next(g["weight_decay"] for g in groups if any(p is norm_gain for p in g["params"]))

    assert decay_of(ours.param_groups) == 0.0
    assert decay_of(naive_groups) == 0.1
    assert sum(len(g["params"]) for g in naive_groups) == len(list(model.parameters()))


# -- names and the command ------------------------------------------------------------------------


def test_unknown_gotcha_names_the_close_match():
    with pytest.raises(
        ValueError, match="unknown gotcha 'padding-mask'; did you mean 'padding-masks'"
    ):
        run_gotchas(["padding-mask"])
    with pytest.raises(TypeError, match="names"):
        run_gotchas("padding-masks")
    with pytest.raises(ValueError, match="at least one"):
        run_gotchas([])


def test_cli_refuses_a_bad_only_in_one_line_with_exit_2(capsys):
    parser = argparse.ArgumentParser()
    gotchas.add_arguments(parser)
    assert gotchas.main(parser.parse_args(["--only", "trees-vs-mpl", "--quick"])) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--only" in err and "'trees-vs-mlp'" in err


def test_cli_prints_each_block_and_exits_0(results, monkeypatch, capsys):
    monkeypatch.setitem(GOTCHAS, "norm-decay", lambda quick: results["norm-decay"])
    parser = argparse.ArgumentParser()
    gotchas.add_arguments(parser)
    assert gotchas.main(parser.parse_args(["--only", "norm-decay", "--quick"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("norm-decay: ") and results["norm-decay"].verdict in out


def test_quick_must_be_a_bool():
    with pytest.raises(TypeError, match="quick"):
        run_gotchas(["norm-decay"], quick="yes")


@pytest.mark.parametrize("seeds", [[], [-1], [0.5], "01"])
def test_bad_seeds_are_refused_in_one_sentence(seeds):
    with pytest.raises(ValueError, match="seeds must"):
        gotchas.norm_decay(quick=True, seeds=seeds)
