"""`fieldguide sample`: seeded draws from generative runs, PNG grids, tensors, refusals."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fieldguide.api import train
from fieldguide.api.sample import grid_png, sample, save_samples
from fieldguide.cli.main import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    made = {}
    for model, data in (
        ("ddpm-tiny", "digits"),
        ("vae-cond", "digits"),
        ("realnvp-2d", "two-moons"),
    ):
        result = train(model, data, runs_dir=root / "runs", progress="quiet", max_steps=2)
        made[model] = result.run_dir
    return made


def test_samples_repeat_with_the_seed_and_differ_without_it(runs):
    a = sample(runs["ddpm-tiny"], n=4, steps=3, seed=7)
    b = sample(runs["ddpm-tiny"], n=4, steps=3, seed=7)
    c = sample(runs["ddpm-tiny"], n=4, steps=3, seed=8)
    assert a.x.shape == (4, 1, 8, 8) and torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert torch.equal(a.pixels, ((a.x + 1) / 2).clamp(0, 1)) and a.labels is None


def test_a_conditional_run_draws_every_class_in_turn_or_the_one_asked(runs):
    every = sample(runs["vae-cond"], n=12)
    assert every.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    by_name = sample(runs["vae-cond"], n=3, label="7")
    by_index = sample(runs["vae-cond"], n=3, label=7)
    assert by_name.labels.tolist() == [7, 7, 7] and torch.equal(by_name.x, by_index.x)
    with pytest.raises(ValueError, match=r"--class as one of .* or an index 0-9; got '12'"):
        sample(runs["vae-cond"], n=3, label="12")


def test_options_a_sampler_lacks_are_refused(runs):
    with pytest.raises(ValueError, match="--guidance 2.0 but vae-cond samples without it"):
        sample(runs["vae-cond"], guidance=2.0)
    with pytest.raises(ValueError, match="was trained without classes"):
        sample(runs["ddpm-tiny"], label=3)
    with pytest.raises(ValueError, match="--n between 1 and 4096; got 0"):
        sample(runs["ddpm-tiny"], n=0)


def test_grids_scatters_and_tensors_are_written(runs, tmp_path):
    drawn = sample(runs["vae-cond"], n=5, seed=1)
    save_samples(drawn, tmp_path / "grid.png", str(tmp_path / "s.safetensors"))
    saved = load_file(str(tmp_path / "s.safetensors"))
    assert torch.equal(saved["samples"], drawn.x) and torch.equal(saved["labels"], drawn.labels)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * (64 + 4) + 4, 3 * (64 + 4) + 4, 3)  # 8x8 cells scaled to 64
    moons = sample(runs["realnvp-2d"], n=50)
    assert moons.pixels is None and moons.x.shape == (50, 2)
    save_samples(moons, tmp_path / "moons.png", None)
    assert Image.open(tmp_path / "moons.png").size[0] > 100


def test_a_grid_cell_is_the_sample_scaled_up():
    pixels = torch.rand(1, 1, 8, 8)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g.png"
        grid_png(pixels, path)
        image = np.asarray(Image.open(path))[..., 0].astype(np.float64) / 255
    cell = image[4 : 4 + 64, 4 : 4 + 64]  # gap 4, scale 8
    expected = pixels[0, 0].numpy().repeat(8, 0).repeat(8, 1)
    assert np.abs(cell - expected).max() <= 0.5 / 255 + 1e-9


def test_the_cli_refuses_bad_outputs_and_other_runs_before_sampling(runs, tmp_path, capsys):
    out = tmp_path / "nowhere" / "g.png"
    assert main(["sample", str(runs["ddpm-tiny"]), "-o", str(out)]) == 2
    assert "folder" in capsys.readouterr().err and not out.parent.exists()
    classifier = train(
        "mlp-small", "digits", runs_dir=tmp_path / "r", progress="quiet", max_steps=1
    )
    assert main(["sample", str(classifier.run_dir), "-o", str(tmp_path / "g.png")]) == 2
    assert "classification run" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
    assert main(
        [
            "sample",
            str(runs["ddpm-tiny"]),
            "--n",
            "4",
            "--steps",
            "2",
            "-o",
            str(tmp_path / "ok.png"),
        ]
    ) in (0, None)
    assert (tmp_path / "ok.png").is_file()


def test_a_dequantised_run_gives_pixels_on_the_levels_of_its_bins(runs):
    drawn = sample(runs["vae-cond"], n=8, seed=3)  # digits: 17 levels, trained on (k + u) / 17
    levels = ((drawn.x + 1) / 2 * 17).floor().clamp(0, 16)
    assert torch.equal(drawn.pixels, levels / 16)
    plain = sample(runs["ddpm-tiny"], n=2, steps=2)  # diffusion: k / 16 directly
    assert torch.equal(plain.pixels, ((plain.x + 1) / 2).clamp(0, 1))
