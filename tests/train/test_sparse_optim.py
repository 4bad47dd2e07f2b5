"""SparseAdam beside AdamW: who steps what, clipping sparse gradients, sparse runs that resume."""

import copy
import io

import pytest
import torch
from torch import nn

from fieldguide.api import train
from fieldguide.data.fields import FieldData, FieldSplit
from fieldguide.models.registry import create_model
from fieldguide.tasks.ctr import CTRTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from fieldguide.train.optim import MixedOptimizer, build_optimizer, clip_grad_norm
from tests.data.helpers import write_rows

CFG = TrainConfig(lr=1e-2, weight_decay=0.05)


def roundtrip(state):
    """`state` through torch.save and torch.load, as a checkpoint stores it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def step(model, optimizer, seed):
    """One optimizer step on a random batch of the model's example inputs."""
    torch.manual_seed(seed)
    dense, ids, weights = model.example_input(8)
    optimizer.zero_grad()
    model(dense, ids, weights).pow(2).mean().backward()
    optimizer.step()


# --- build_optimizer ------------------------------------------------------------------------


def test_the_sparse_table_goes_to_sparse_adam_and_every_other_parameter_to_adamw_once():
    torch.manual_seed(0)
    model = create_model("dlrm-tiny", sparse=True)
    optimizer = build_optimizer(model, CFG)
    assert isinstance(optimizer, MixedOptimizer)
    assert isinstance(optimizer.sparse, torch.optim.SparseAdam)
    assert isinstance(optimizer.dense, torch.optim.AdamW)
    table = model.tables.bag.weight
    in_sparse = [p for g in optimizer.sparse.param_groups for p in g["params"]]
    in_dense = [p for g in optimizer.dense.param_groups for p in g["params"]]
    assert len(in_sparse) == 1 and in_sparse[0] is table
    assert len({id(p) for p in in_dense}) == len(in_dense)  # each once
    others = {id(p) for name, p in model.named_parameters() if name != "tables.bag.weight"}
    assert {id(p) for p in in_dense} == others
    # One list of groups, dense then sparse: the schedule scales both optimizers.
    expected = [*optimizer.dense.param_groups, *optimizer.sparse.param_groups]
    assert [id(g) for g in optimizer.param_groups] == [id(g) for g in expected]
    for group in optimizer.param_groups:
        group["lr"] = 0.5
    assert optimizer.sparse.param_groups[0]["lr"] == 0.5 == optimizer.dense.param_groups[0]["lr"]
    # Weight decay only on the dense weights; a model without sparse tables gets AdamW alone.
    assert {g["weight_decay"] for g in optimizer.dense.param_groups} == {0.0, 0.05}
    plain = build_optimizer(create_model("dlrm-tiny"), CFG)
    assert isinstance(plain, torch.optim.AdamW)


def test_a_step_updates_only_the_rows_looked_up_and_zero_grad_clears_both():
    torch.manual_seed(0)
    model = create_model("dlrm-tiny", sparse=True)
    optimizer = build_optimizer(model, CFG)
    before = model.tables.bag.weight.detach().clone()
    dense = torch.randn(4, 4)
    ids = torch.tensor([[[1], [3], [2]], [[1], [5], [0]], [[2], [3], [4]], [[1], [3], [2]]])
    model(dense, ids).sum().backward()
    assert model.tables.bag.weight.grad.is_sparse
    optimizer.step()
    base = [0, 9, 28]  # table row of id k in field f: base[f] + k - 1
    looked_up = {base[f] + int(k) - 1 for f in range(3) for k in ids[:, f, 0].tolist() if k}
    changed = (model.tables.bag.weight.detach() != before).any(1).nonzero().flatten().tolist()
    assert set(changed) == looked_up
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    # A second step looks up other rows: those of the first step keep their values (SparseAdam
    # is lazy, where a dense Adam would move them again with their momentum).
    middle = model.tables.bag.weight.detach().clone()
    model(dense, torch.tensor([[[4], [7], [1]]] * 4)).sum().backward()
    optimizer.step()
    changed = (model.tables.bag.weight.detach() != middle).any(1).nonzero().flatten().tolist()
    assert set(changed) == {3, 9 + 6, 28}


def test_the_state_dict_round_trips_to_an_identical_next_step():
    torch.manual_seed(0)
    model = create_model("dlrm-tiny", sparse=True)
    optimizer = build_optimizer(model, CFG)
    for seed in range(3):
        step(model, optimizer, seed)
    state = roundtrip(optimizer.state_dict())
    assert set(state) == {"dense", "sparse"} and state["sparse"]["state"]
    resumed = copy.deepcopy(model)
    fresh = copy.deepcopy(model)
    resumed_optimizer = build_optimizer(resumed, CFG)
    resumed_optimizer.load_state_dict(state)
    fresh_optimizer = build_optimizer(fresh, CFG)  # the control: no moments carried over
    for net, opt in ((model, optimizer), (resumed, resumed_optimizer), (fresh, fresh_optimizer)):
        step(net, opt, seed=3)
    for (name, a), b in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(model.tables.bag.weight, fresh.tables.bag.weight)


def test_sgd_with_sparse_tables_is_refused_naming_the_optimizer(tmp_path):
    model = create_model("dlrm-tiny", sparse=True)
    with pytest.raises(ValueError, match="optimizer must be adamw .*tables.bag.weight.*'sgd'"):
        build_optimizer(model, TrainConfig(optimizer="sgd"))
    # Through `train`: refused before the first step, so no run folder is left behind.
    rows = [[["a", "b", "c"][i % 3], i % 5, i % 2] for i in range(40)]
    path = write_rows(tmp_path / "clicks.csv", ["c", "n", "click"], rows)
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match="optimizer must be adamw") as refused:
        train(
            "dlrm-tiny",
            str(path),
            model_config={"sparse": True},
            optimizer="sgd",
            runs_dir=runs,
            progress="quiet",
            epochs=1,
        )
    assert str(refused.value).count(". ") == 0  # one sentence
    assert not runs.exists() or not any(runs.iterdir())


# --- clip_grad_norm -------------------------------------------------------------------------


class SparseNet(nn.Module):
    """A sparse bag of ids, then a linear map: one sparse and two dense gradients."""

    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(20, 4, mode="sum", sparse=True)
        self.head = nn.Linear(4, 1)

    def forward(self, ids, offsets):
        return self.head(self.bag(ids, offsets))


def dense_norm(model):
    """The global L2 norm of the gradients, sparse ones densified first."""
    grads = [p.grad.to_dense() if p.grad.is_sparse else p.grad for p in model.parameters()]
    return torch.stack([g.double().pow(2).sum() for g in grads]).sum().sqrt().item()


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clipping_a_sparse_gradient_uses_the_densified_norm(max_norm):
    torch.manual_seed(0)
    model = SparseNet()
    # Row 3 is looked up three times: its sparse gradient holds it thrice until coalesced.
    ids, offsets = torch.tensor([3, 3, 5, 7, 3, 11]), torch.tensor([0, 2, 4])
    model(ids, offsets).pow(2).sum().backward()
    assert model.bag.weight.grad.is_sparse and not model.bag.weight.grad.is_coalesced()
    norm = dense_norm(model)
    before = [p.grad.to_dense().clone() for p in model.parameters()]
    total = clip_grad_norm(model.parameters(), max_norm)
    assert total.item() == pytest.approx(norm, rel=1e-6)
    assert dense_norm(model) <= max_norm + 1e-6 or max_norm > norm
    scale = min(1.0, max_norm / (norm + 1e-6))
    for p, g in zip(model.parameters(), before, strict=True):  # every gradient scaled alike
        assert torch.allclose(p.grad.to_dense(), g * scale, rtol=1e-5, atol=1e-12)


def test_clipping_dense_gradients_is_torchs_clip_grad_norm():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    b = copy.deepcopy(a)
    x = torch.randn(16, 5)
    for net in (a, b):
        net(x).pow(2).sum().backward()
    ours = clip_grad_norm(a.parameters(), 0.1)
    theirs = nn.utils.clip_grad_norm_(b.parameters(), 0.1)
    assert torch.equal(ours, theirs) and ours > 0.1
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)


# --- a sparse run through the Trainer -------------------------------------------------------

FIELD0_ROWS, TRAIN_IDS = 30, 14  # field 0: train rows use ids 1..14 only, val/test any id


def sparse_fields(seed=0):
    """Synthetic fields rows where the training split never looks up ids 15..29 of field 0."""
    g = torch.Generator().manual_seed(seed)

    def split(n, top):
        first = torch.randint(1, top + 1, (n, 1, 2), generator=g)
        first[:, :, 1] = torch.where(torch.rand(n, 1, generator=g) < 0.5, first[:, :, 1], 0)
        second = torch.randint(1, 8, (n, 1, 2), generator=g)
        second[:, :, 1] = 0
        dense = torch.randn(n, 2, generator=g)
        y = ((first[:, 0, 0] % 2 == 0) ^ (dense[:, 0] > 0)).long()
        return FieldSplit(dense, torch.cat([first, second], 1), y)

    return FieldData(
        name="synthetic-sparse",
        train=split(160, TRAIN_IDS),
        val=split(40, FIELD0_ROWS - 1),
        test=split(40, FIELD0_ROWS - 1),
        classes=["no", "yes"],
        dense_names=["d0", "d1"],
        field_names=["f0", "f1"],
        cardinalities=(FIELD0_ROWS, 8),
        description="synthetic fields rows",
        synthetic=True,
    )


BASE = TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=3, grad_clip=0.5)


def fit(ckpt=None, metrics=None, callbacks=(), resume=False, init_seed=0, cfg=BASE):
    task = CTRTask(sparse_fields())
    torch.manual_seed(init_seed)
    model = task.build_model("dlrm-tiny", sparse=True)
    trainer = Trainer(
        model,
        task,
        cfg,
        checkpoint_dir=ckpt,
        metrics_path=metrics,
        callbacks=callbacks,
        progress="quiet",
    )
    return trainer, trainer.fit(resume=resume)


def stop_at(step):
    def callback(trainer):
        if trainer.state.step == step:
            trainer.request_stop()

    return callback


def test_rows_no_training_batch_looks_up_stay_unchanged():
    torch.manual_seed(0)
    initial = CTRTask(sparse_fields()).build_model("dlrm-tiny", sparse=True)
    trainer, result = fit()
    assert isinstance(trainer.optimizer, MixedOptimizer) and result.status == "finished"
    before, after = initial.tables.bag.weight, trainer.model.tables.bag.weight.detach()
    unused = list(range(TRAIN_IDS, FIELD0_ROWS - 1))  # ids 15..29 of field 0 (row = id - 1)
    used = list(range(TRAIN_IDS))
    assert torch.equal(after[unused], before[unused])
    assert (after[used] != before[used]).any(1).all()  # every id seen in training moved


@pytest.mark.parametrize("stop_step", [3, 7])
def test_a_stopped_sparse_run_resumes_bitwise_equal_to_an_uninterrupted_one(tmp_path, stop_step):
    # 5 steps per epoch: step 3 stops inside epoch 1, step 7 inside epoch 2.
    reference, done = fit(tmp_path / "a", tmp_path / "a.jsonl")
    _, stopped = fit(tmp_path / "b", tmp_path / "b.jsonl", callbacks=[stop_at(stop_step)])
    assert stopped.status == "interrupted" and stopped.step == stop_step
    resumed, final = fit(tmp_path / "b", tmp_path / "b.jsonl", resume=True, init_seed=99)
    assert final.step == done.step == 15
    a, b = reference.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
