"""The optimizer a run trains with: AdamW or SGD, plus SparseAdam for sparse embedding tables.

A recommender's embedding tables can hold millions of rows, of which a batch touches a few
thousand. With `sparse=True` such a table's gradient is a sparse tensor of the rows looked up,
and `torch.optim.SparseAdam` updates those rows alone (its moments are kept per row, lazily),
while AdamW's dense update would read and write every row on every step. A model names its
sparse parameters in `sparse_parameters()`; `build_optimizer` then gives them to SparseAdam and
the rest to the recipe's optimizer, behind one object the loop treats as a single optimizer
(`MixedOptimizer`: step, zero_grad, param_groups for the schedule, one state_dict).

`TrainConfig.sparse_optimizer` picks SparseAdam ("adam", the default) or `RowWiseAdagrad`
("rowwise-adagrad": one accumulator per row, what DLRM trains its tables with, several times
faster per step on large tables: benchmarks/recsys.py), and `sparse_lr` their learning rate
(0: the recipe's `lr`; Adagrad usually wants a larger one).

`clip_grad_norm` clips the global norm over dense and sparse gradients alike; torch's own
`clip_grad_norm_` cannot take a sparse gradient, so the loop uses it only when there is none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fieldguide.train.config import OptionError
from fieldguide.train.params import param_groups


class MixedOptimizer:
    """A dense optimizer and SparseAdam stepping together, seen by the loop as one optimizer.

    `param_groups` lists the dense groups, then the sparse one, so the learning-rate schedule
    scales all of them; the state dict holds both optimizers' states under "dense" and "sparse".
    """

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.Optimizer) -> None:
        self.dense, self.sparse = dense, sparse

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The dense optimizer's groups followed by the sparse one's."""
        return [*self.dense.param_groups, *self.sparse.param_groups]

    def step(self) -> None:
        """One step of both optimizers."""
        self.dense.step()
        self.sparse.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter of both."""
        self.dense.zero_grad(set_to_none=set_to_none)
        self.sparse.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Both optimizers' states, for checkpoints."""
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` gave."""
        self.dense.load_state_dict(state["dense"])
        self.sparse.load_state_dict(state["sparse"])


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per table row, for sparse embedding tables (DLRM's choice).

    For each row r a step touches, with gradient g_r (E values): s_r += mean(g_r ** 2), then
    w_r -= lr * g_r / (sqrt(s_r) + eps). Rows a step does not touch are not read or written,
    and the state is one float per row rather than Adam's two per value, so a step over a few
    thousand rows of a million-row table moves about a hundredth of SparseAdam's bytes.
    Dense gradients are taken as every row touched. No weight decay (embeddings are never
    decayed).
    """

    def __init__(self, params: Any, lr: float = 1e-2, eps: float = 1e-10) -> None:
        if not lr > 0 or not eps > 0:
            raise ValueError(f"RowWiseAdagrad expects lr > 0 and eps > 0; got {lr} and {eps}.")
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.ndim != 2:
                    raise ValueError(
                        f"RowWiseAdagrad updates tables (rows, E); got a parameter of shape "
                        f"{tuple(p.shape)}."
                    )
                state = self.state[p]
                if not state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
                rows, grad = _rows_and_values(p.grad)
                total = state["sum"].index_select(0, rows)
                total.add_(grad.float().pow(2).mean(1))
                state["sum"].index_copy_(0, rows, total)
                scale = -group["lr"] / (total.sqrt() + group["eps"])  # (R,)
                p.index_add_(0, rows, (grad.float() * scale[:, None]).to(p.dtype))


def _rows_and_values(grad: Tensor) -> tuple[Tensor, Tensor]:
    """The rows a gradient touches, each once, and their summed gradient rows (R, E)."""
    if not grad.is_sparse:
        return torch.arange(grad.shape[0], device=grad.device), grad
    index, values = grad._indices()[0], grad._values()
    rows, inverse = torch.unique(index, return_inverse=True)  # a row looked up twice adds up
    summed = torch.zeros(len(rows), values.shape[1], dtype=values.dtype, device=values.device)
    return rows, summed.index_add_(0, inverse, values)


def sparse_names(model: nn.Module) -> set[str]:
    """Parameters of `model` whose gradients are sparse (its `sparse_parameters()`, if any)."""
    names = model.sparse_parameters() if hasattr(model, "sparse_parameters") else set()
    unknown = sorted(set(names) - {n for n, _ in model.named_parameters()})
    if unknown:
        raise ValueError(f"{type(model).__name__}.sparse_parameters names unknown {unknown}.")
    return set(names)


def build_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer | MixedOptimizer:
    """The recipe's optimizer over `model`, with SparseAdam for its sparse parameters.

    Args:
        model: The model; `sparse_parameters()` (optional) names sparsely updated tables.
        cfg: The TrainConfig: `optimizer` ("adamw" or "sgd"), `lr`, `weight_decay`.
    """
    sparse = sparse_names(model)
    if not sparse and (cfg.sparse_optimizer != "adam" or cfg.sparse_lr):
        raise OptionError(
            "{sparse_optimizer} and {sparse_lr} apply to embedding tables with sparse gradients "
            f"(a recommender with sparse=True); {type(model).__name__} has none, so leave them "
            "out.",
            "sparse_optimizer",
            "sparse_lr",
            owner="TrainConfig",
        )
    groups = param_groups(model, cfg.weight_decay)
    if getattr(cfg, "body_lr", 1.0) != 1.0:
        groups = scale_body(model, groups, cfg.lr, cfg.body_lr)
    if sparse:
        if cfg.optimizer != "adamw":
            raise ValueError(
                f"optimizer must be adamw for a model with sparse embedding tables "
                f"({', '.join(sorted(sparse))}), whose rows SparseAdam updates; got "
                f"{cfg.optimizer!r}."
            )
        for group in groups:  # the sparse tables leave the dense groups
            keep = [i for i, n in enumerate(group["names"]) if n not in sparse]
            group["names"] = [group["names"][i] for i in keep]
            group["params"] = [group["params"][i] for i in keep]
        groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adamw":
        dense = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    else:
        dense = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if not sparse:
        return dense
    params = dict(model.named_parameters())
    tables = {"names": sorted(sparse), "params": [params[n] for n in sorted(sparse)]}
    lr = cfg.sparse_lr or cfg.lr
    if cfg.sparse_optimizer == "rowwise-adagrad":
        return MixedOptimizer(dense, RowWiseAdagrad([tables | {"base_lr": lr}], lr=lr))
    sparse_adam = torch.optim.SparseAdam([tables | {"base_lr": lr}], lr=lr, betas=(0.9, 0.999))
    return MixedOptimizer(dense, sparse_adam)


def scale_body(
    model: nn.Module, groups: list[dict[str, Any]], lr: float, factor: float
) -> list[dict[str, Any]]:
    """`groups` with every parameter outside the head moved to a group at `factor` x its lr.

    The head (the model's `head_prefix` module) keeps its group's learning rate; a group's
    body part gets `base_lr` = factor x (its own base_lr, or lr), which the schedule scales.
    """
    from fieldguide.train.finetune import head_prefix, is_head

    prefix = head_prefix(model)
    out = []
    for group in groups:
        parts: dict[bool, dict[str, Any]] = {}
        for name, p in zip(group["names"], group["params"], strict=True):
            body = not is_head(name, prefix)
            part = parts.setdefault(body, {**group, "names": [], "params": []})
            part["names"].append(name)
            part["params"].append(p)
        if True in parts:
            parts[True]["base_lr"] = factor * group.get("base_lr", lr)
        out.extend(parts[k] for k in sorted(parts))
    return out


def clip_grad_norm(parameters: Any, max_norm: float) -> Tensor:
    """Scale gradients so that their global L2 norm is at most `max_norm`; the norm before.

    Dense gradients only: torch's `clip_grad_norm_`, unchanged. With sparse gradients, their
    values (coalesced, so a row looked up twice counts once, summed) join the norm and are
    scaled in place like the dense ones.
    """
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return nn.utils.clip_grad_norm_(params, max_norm)
    squares = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            squares.append(p.grad._values().float().pow(2).sum())
        else:
            squares.append(p.grad.float().pow(2).sum())
    total = torch.stack(squares).sum().sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad.is_sparse:
            p.grad._values().mul_(scale.to(p.grad.dtype))
        else:
            p.grad.mul_(scale.to(p.grad.dtype))
    return total
