import torch
from torch import nn

import fieldguide
from fieldguide.train.params import describe_param_groups, param_groups, split_decay


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.conv = nn.Conv1d(4, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.linear = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(2, 2))  # a matrix the model exempts by name
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self):
        return {"scale"}


def test_decay_only_on_weights_of_rank_two_or_more():
    decay, no_decay = split_decay(Tiny())
    assert decay == ["conv.weight", "linear.weight"]
    assert sorted(no_decay) == sorted(
        ["embed.weight", "conv.bias", "norm.weight", "norm.bias", "linear.bias", "scale"]
    )


def test_groups_carry_the_decay_and_skip_frozen_parameters():
    model = Tiny()
    groups = param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    grouped = {id(p) for g in groups for p in g["params"]}
    assert id(model.frozen.weight) not in grouped
    assert len(grouped) == sum(1 for p in model.parameters() if p.requires_grad)
    torch.optim.AdamW(groups)  # the optimizer accepts the groups as they are


def test_resnet_norms_are_never_decayed():
    model = fieldguide.create_model("resnet-tiny")
    decay, no_decay = split_decay(model)
    modules = dict(model.named_modules())
    for name in no_decay:
        owner = modules[name.rsplit(".", 1)[0]]
        assert isinstance(owner, nn.BatchNorm2d) or name.endswith("bias")
    assert all(dict(model.named_parameters())[n].ndim >= 2 for n in decay)


def test_describe_lists_every_parameter_once():
    text = describe_param_groups(Tiny(), 0.1)
    assert "weight_decay=0.1: 2 tensors" in text and "weight_decay=0: 6 tensors" in text
    assert text.count("  linear.weight") == 1 and "frozen" not in text
