"""Row-wise Adagrad for sparse embedding tables, and the options that choose it."""

import copy as copy_module

import pytest
import torch
from torch import nn

from fieldguide import create_model
from fieldguide.train.config import OptionError, TrainConfig
from fieldguide.train.optim import MixedOptimizer, RowWiseAdagrad, build_optimizer


def sparse_grad(rows, values, shape):
    """An uncoalesced sparse gradient: `rows` may repeat."""
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape, check_invariants=True)


def test_a_step_matches_the_hand_update_and_sums_repeated_rows():
    w = nn.Parameter(torch.arange(12.0).view(4, 3))
    start = w.detach().clone()
    opt = RowWiseAdagrad([w], lr=0.5, eps=1e-10)
    g = torch.tensor([[1.0, 2.0, 2.0], [3.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    w.grad = sparse_grad([1, 3, 1], g, (4, 3))  # row 1 looked up twice
    opt.step()
    summed = {1: g[0] + g[2], 3: g[1]}
    expected = start.clone()
    for row, grad in summed.items():
        total = grad.pow(2).mean()
        expected[row] -= 0.5 * grad / total.sqrt()
    torch.testing.assert_close(w.detach(), expected)
    state = opt.state[w]["sum"]
    torch.testing.assert_close(state, torch.tensor([0.0, (summed[1] ** 2).mean(), 0.0, 3.0]))
    # A second step on row 3 divides by the accumulated sum: smaller steps over time.
    before = w.detach().clone()
    w.grad = sparse_grad([3], g[1:2], (4, 3))
    opt.step()
    step = (before[3] - w.detach()[3])[0]
    assert step == pytest.approx(0.5 * 3.0 / (6.0**0.5), rel=1e-5)
    torch.testing.assert_close(w.detach()[[0, 1, 2]], before[[0, 1, 2]], rtol=0, atol=0)


def test_a_dense_gradient_updates_every_row_as_the_sparse_one_would():
    torch.manual_seed(0)
    g = torch.randn(5, 4)
    a, b = nn.Parameter(torch.randn(5, 4)), None
    b = nn.Parameter(a.detach().clone())
    RowWiseAdagrad([a], lr=0.1).zero_grad()
    opt_a, opt_b = RowWiseAdagrad([a], lr=0.1), RowWiseAdagrad([b], lr=0.1)
    a.grad = g.clone()
    b.grad = sparse_grad(list(range(5)), g.clone(), (5, 4))
    opt_a.step()
    opt_b.step()
    torch.testing.assert_close(a.detach(), b.detach())


def test_its_state_round_trips_and_the_next_step_is_identical():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(6, 2))
    opt = RowWiseAdagrad([w], lr=0.2)
    w.grad = sparse_grad([0, 4], torch.randn(2, 2), (6, 2))
    opt.step()
    copy = nn.Parameter(w.detach().clone())
    restored = RowWiseAdagrad([copy], lr=0.2)
    restored.load_state_dict(copy_module.deepcopy(opt.state_dict()))  # as a checkpoint would
    g = sparse_grad([4, 5], torch.randn(2, 2), (6, 2))
    w.grad, copy.grad = g, g.clone()
    opt.step()
    restored.step()
    assert torch.equal(w.detach(), copy.detach())


def test_build_optimizer_gives_the_sparse_tables_to_rowwise_adagrad():
    model = create_model("dlrm-tiny", sparse=True)
    cfg = TrainConfig(sparse_optimizer="rowwise-adagrad", sparse_lr=0.05)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, MixedOptimizer) and isinstance(opt.sparse, RowWiseAdagrad)
    (group,) = opt.sparse.param_groups
    assert group["names"] == sorted(model.sparse_parameters())
    assert group["lr"] == group["base_lr"] == 0.05  # the schedule scales it from here
    dense = {n for g in opt.dense.param_groups for n in g["names"]}
    assert not dense & set(group["names"])


def test_the_sparse_options_are_refused_for_a_model_without_sparse_tables():
    for options in ({"sparse_optimizer": "rowwise-adagrad"}, {"sparse_lr": 0.1}):
        with pytest.raises(OptionError) as error:
            build_optimizer(create_model("mlp-small"), TrainConfig(**options))
        message = error.value.render(lambda n: "--" + n.replace("_", "-"))
        assert "--sparse-optimizer and --sparse-lr apply to embedding tables" in message
        assert "\n" not in message
