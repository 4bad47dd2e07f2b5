import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from fieldguide import create_model
from fieldguide.lora import (
    LoRAConv1x1,
    LoRALinear,
    load_lora,
    lora,
    lora_state_dict,
    merge,
    merged,
    save_lora,
    trainable_share,
)

FAMILIES = ["mlp-small", "bert-tiny", "gpt-tiny", "vit-tiny", "resnet-tiny"]


def _model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name).eval()


def _input(model: nn.Module, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.example_input(3)


def _randomize(model: nn.Module, seed: int = 2, std: float = 0.05) -> None:
    """Non-zero A and B, as after some training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (LoRALinear, LoRAConv1x1)):
                module.lora_A.copy_(torch.randn(module.lora_A.shape, generator=gen) * std)
                module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=gen) * std)


def _lora_count(model: nn.Module) -> int:
    return sum(isinstance(m, (LoRALinear, LoRAConv1x1)) for m in model.modules())


@pytest.mark.parametrize("name", FAMILIES)
def test_output_unchanged_at_init(name):
    model = _model(name)
    x = _input(model)
    before = model(x)
    lora(model, rank=4)
    assert _lora_count(model) > 0
    assert torch.equal(model(x), before)


def test_default_targets_skip_head_and_wrap_1x1_convs():
    bert = lora(_model("bert-tiny"))
    wrapped = {n for n, m in bert.named_modules() if isinstance(m, LoRALinear)}
    assert wrapped == {
        f"blocks.{i}.{s}" for i in (0, 1) for s in ("attn.qkv", "attn.output", "mlp.up", "mlp.down")
    }
    assert isinstance(bert.head, nn.Linear)
    resnet = lora(_model("resnet-tiny"))
    convs = [n for n, m in resnet.named_modules() if isinstance(m, LoRAConv1x1)]
    assert convs == ["stages.1.0.shortcut.conv", "stages.2.0.shortcut.conv"]
    explicit = lora(_model("bert-tiny"), targets=("qkv", "head"))
    assert {n for n, m in explicit.named_modules() if isinstance(m, LoRALinear)} == {
        "blocks.0.attn.qkv",
        "blocks.1.attn.qkv",
        "head",
    }
    mlp_only = lora(_model("vit-tiny"), targets=("mlp.*",))
    assert _lora_count(mlp_only) == 8


@pytest.mark.parametrize("name", ["bert-tiny", "resnet-tiny"])
def test_only_adapters_train(name):
    model = lora(_model(name), rank=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert 0 < trainable_share(model) < 0.5
    x = _input(model)
    model(x).float().square().mean().backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (n in trainable), n
    # B = 0 at init, so A's grad is zero but B's is not; one step moves the output.
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("lora_B"))
    before = model(x).detach()
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    assert not torch.allclose(model(x), before)


# float64 shows the fold is exact algebra; float32 holds to the 1e-6 the library promises.
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("name", FAMILIES)
def test_merge_keeps_outputs_and_names(name, dtype, tol):
    model = _model(name).to(dtype)
    names = [n for n, _ in model.named_parameters()]
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = _input(model)
    x = x.to(dtype) if x.is_floating_point() else x
    base_out = model(x)
    lora(model, rank=4, alpha=8)
    _randomize(model)
    adapted = model(x)
    assert not torch.allclose(adapted, base_out, atol=1e-3)
    with merged(model):
        torch.testing.assert_close(model(x), adapted, atol=tol, rtol=tol)
    # Leaving the block subtracts the update again: base weights as they were.
    for n, p in model.named_parameters():
        if ".base." in n:
            torch.testing.assert_close(p, original[n.replace(".base.", ".")], atol=tol, rtol=0)
    merge(model)
    assert _lora_count(model) == 0
    assert [n for n, _ in model.named_parameters()] == names
    torch.testing.assert_close(model(x), adapted, atol=tol, rtol=tol)


def test_save_load_round_trip(tmp_path):
    model = lora(_model("bert-tiny"), rank=4, alpha=8, targets=("qkv", "output"))
    x = _input(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    path = save_lora(model, tmp_path / "adapter.safetensors", base_sha256="ab" * 32)
    with safe_open(str(path), framework="pt") as file:
        meta = file.metadata()
        keys = set(file.keys())
    assert keys == set(lora_state_dict(model))
    assert meta["rank"] == "4" and float(meta["alpha"]) == 8.0 and meta["base_model"] == "bert-tiny"
    assert len(json.loads(meta["targets"])) == 4
    # Only adapters: 4 layers x (4*32 + 32*4 or 96*4) floats, far below the model's size.
    adapter_floats = sum(t.numel() for t in lora_state_dict(model).values())
    assert path.stat().st_size < 4 * adapter_floats + 4096
    assert path.stat().st_size < 4 * sum(p.numel() for p in model.parameters()) / 10

    fresh = load_lora(_model("bert-tiny"), path)
    assert torch.equal(fresh(x), model(x))
    assert trainable_share(fresh) == trainable_share(model)

    other = _model("gpt-tiny")
    with pytest.raises(ValueError, match="base model 'bert-tiny'"):
        load_lora(other, path)
    assert _lora_count(other) == 0
    with pytest.raises(ValueError, match="sha256"):
        load_lora(_model("bert-tiny"), path, base_sha256="cd" * 32)
    with pytest.raises(ValueError, match="without LoRA layers"):
        load_lora(fresh, path)


def test_load_refuses_misfit_and_damaged_files(tmp_path):
    model = lora(_model("bert-tiny"), rank=4)
    path = save_lora(model, tmp_path / "a.safetensors")
    # Same registry name but a wider config: shapes do not fit, and the model is left plain.
    wide = create_model("bert-tiny", hidden_dim=64)
    with pytest.raises(ValueError, match="shape"):
        load_lora(wide, path)
    assert _lora_count(wide) == 0
    # A shallower model lacks layers the file names.
    shallow = create_model("bert-tiny", num_layers=1)
    with pytest.raises(ValueError, match="layers not in model"):
        load_lora(shallow, path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged"):
        load_lora(_model("bert-tiny"), damaged)


def test_refusals():
    with pytest.raises(ValueError, match="rank"):
        lora(_model("mlp-small"), rank=0)
    with pytest.raises(ValueError, match="alpha"):
        lora(_model("mlp-small"), alpha=0)
    with pytest.raises(ValueError, match="dropout"):
        lora(_model("mlp-small"), dropout=1.0)
    with pytest.raises(TypeError, match="targets"):
        lora(_model("mlp-small"), targets="qkv")
    with pytest.raises(ValueError, match=r"targets=\('qkv',\).*blocks\.0\.linear"):
        lora(_model("mlp-small"), targets=("qkv",))
    model = lora(_model("mlp-small"))
    with pytest.raises(ValueError, match="already has 2"):
        lora(model)
    with pytest.raises(ValueError, match="none"):
        merge(_model("mlp-small"))
    with pytest.raises(ValueError, match="base_name"):
        save_lora(lora(nn.Sequential(nn.Linear(3, 3))), "unused.safetensors")


def test_lora_learns_on_frozen_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )
    x = torch.randn(256, 8)
    y = torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3]
    lora(model, rank=4, alpha=8, targets=("0", "2"))  # the hidden layers, not the output
    assert not any(p.requires_grad for p in model[4].parameters())
    start = nn.functional.mse_loss(model(x), y).item()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * start


def test_merge_inside_merged_block_is_permanent():
    model = lora(_model("mlp-small"), rank=4)
    _randomize(model)
    x = _input(model)
    adapted = model(x)
    with merged(model):
        merge(model)
    assert _lora_count(model) == 0
    torch.testing.assert_close(model(x), adapted, atol=1e-6, rtol=1e-5)
