import pytest
import torch

from fieldguide.train.device import autocast, pick_device, resolve_precision


def test_auto_picks_a_device_that_exists():
    # The guide's loop defaults to device="cuda" and fails without a GPU (known-defects §15).
    device = pick_device("auto")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert device == expected
    else:
        assert device in ("mps", "cpu")
        torch.zeros(1, device=device)  # usable


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_asking_for_cuda_without_cuda_is_one_clear_sentence():
    with pytest.raises(ValueError, match="CUDA is not available here; use --device cpu"):
        pick_device("cuda")


def test_unknown_device_and_precision_are_rejected():
    with pytest.raises(ValueError, match="device must be"):
        pick_device("tpu")
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp8", "cpu")


def test_cpu_stays_fp32_unless_bf16_is_asked_for():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    x = torch.randn(4, 4)
    with autocast("cpu", "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert (x @ x).dtype == torch.float32
