"""The optimizer a run trains with: AdamW or SGD, plus SparseAdam for sparse embedding tables.

A recommender's embedding tables can hold millions of rows, of which a batch touches a few
thousand. With `sparse=True` such a table's gradient is a sparse tensor of the rows looked up,
and `torch.optim.SparseAdam` updates those rows alone (its moments are kept per row, lazily),
while AdamW's dense update would read and write every row on every step. A model names its
sparse parameters in `sparse_parameters()`; `build_optimizer` then gives them to SparseAdam and
the rest to the recipe's optimizer, behind one object the loop treats as a single optimizer
(`MixedOptimizer`: step, zero_grad, param_groups for the schedule, one state_dict).

`clip_grad_norm` clips the global norm over dense and sparse gradients alike; torch's own
`clip_grad_norm_` cannot take a sparse gradient, so the loop uses it only when there is none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

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
    groups = param_groups(model, cfg.weight_decay)
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
    return MixedOptimizer(dense, torch.optim.SparseAdam([tables], lr=cfg.lr, betas=(0.9, 0.999)))


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
