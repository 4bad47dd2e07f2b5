"""Data-parallel training over N processes ("ranks"): launch them, join them, shard, reduce.

`fieldguide train ... --nproc N` starts N ranks on this machine (`launch`); so does
`torchrun --nproc-per-node N -m fieldguide train ...`, whose environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) each rank reads in `join`. Ranks talk through gloo on the
CPU and NCCL on CUDA (rank r on cuda:r). One process (`--nproc 1`, the default) starts no
process group and runs exactly the single-process loop.

Global batch. `--batch-size` is the global micro-batch, whatever N: the trainer draws the same
seeded order and the same micro-batches as one process, and rank r of N takes the r-th of N
contiguous, near-equal parts of each (`shard`). Each rank weights its part's mean loss by the
part's share of the optimizer step's examples, and the ranks sum their gradients (one
all-reduce per optimizer step, `reduce_gradients`):

    g = sum_r (n_r / n) * grad(mean_{i in part r} l_i) = (1 / n) * sum_i grad(l_i)

which is the one-process gradient of the same n examples, added in another order (so equal to
about 1e-6, not bitwise). It holds for losses that are means over examples; batch statistics
(batch norm) and in-batch losses (contrastive, triplet) see each rank's part, as in any data
parallelism. A part of one example is sent twice and a rank with no example sends its first
neighbour's, both at the weight of what they stand for (zero for the stand-in), so a padding
duplicate is never counted twice. The same all-reduce carries rank 0's buffers (batch-norm
running statistics) to every rank and any rank's stop request, so after every step all ranks
hold bitwise equal weights, buffers and optimizer state, and agree on whether to stop.

Evaluation. Rank 0 evaluates the whole validation split alone, exactly as one process would,
and sends the metrics to the others (which wait): metrics such as AUROC, ECE or recall@k are
not sums over examples, so they cannot be reduced from shards. Rank 0 alone writes the run
folder, metrics.jsonl, checkpoints and progress; the others write nothing to stdout.

Resume. Weights, optimizer state and the epoch order are the same on every rank; only the random
generators differ (each rank seeds its own, so dropout masks differ between ranks). A checkpoint
holds every rank's generators and the world size, and a resume with another number of ranks is
refused, so a resumed run continues each rank bitwise where it stopped.

Failure. The launcher watches its ranks: when one dies (killed, or an error), it stops the
others and raises one error naming the rank; the last checkpoint stays, and resuming with the
same --nproc continues it. Ctrl-C reaches the launcher only, which passes it to every rank: the
ranks stop after the same step and save a checkpoint, as one process does; a second Ctrl-C
aborts. The process-group timeout (TIMEOUT) only ends a rank stuck on a peer that is alive but
hung, so it must exceed rank 0's longest evaluation.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from fieldguide.train.config import OptionError

__all__ = [
    "RankFailedError",
    "World",
    "current",
    "join",
    "launch",
    "launching",
    "reduce_gradients",
    "shard",
]

# How long a rank waits on a peer in one collective before it gives up; rank 0 evaluates while
# the others wait, so this bounds the evaluation time too. A dead peer is caught at once by the
# launcher (or torchrun), never by this timeout.
TIMEOUT = datetime.timedelta(minutes=30)
# Environment variable naming the JSON file a rank started by `launch` reports to.
REPORT_ENV = "FIELDGUIDE_RANK_REPORT"
# Seconds the launcher sleeps between looks at its ranks, and grants a rank to end on SIGTERM.
POLL_SECONDS = 0.05
GRACE_SECONDS = 5.0
SETTLE_SECONDS = 2.0  # left to the other ranks to end by themselves after one fails


class RankFailedError(RuntimeError):
    """A rank of a multi-process run failed or died; the others were stopped.

    Args:
        message: one sentence naming the rank and what happened to it.
        report: what rank 0 had reported before the end (such as its run folder).
    """

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run: rank `rank` of `size`."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # rank among the processes of this machine: its CUDA device


def current() -> World:
    """The world of the initialised default process group; one rank when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local)


def _env_world() -> World | None:
    """The world torchrun (or `launch`) describes in the environment; None outside a rank."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return World(rank, size, int(os.environ.get("LOCAL_RANK", rank)))


def check_nproc(nproc: Any) -> None:
    """Refuse an `nproc` that is not a positive integer, naming the option."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise OptionError(
            f"{{nproc}} must be a positive integer, the number of processes to train with; "
            f"got {nproc!r}.",
            "nproc",
        )


def launching(nproc: int) -> bool:
    """Whether this process should start `nproc` ranks: more than one, and not a rank itself."""
    check_nproc(nproc)
    return nproc > 1 and _env_world() is None


def join(nproc: int = 1, device: str = "auto") -> World:
    """Join the process group described by the environment, if this process is a rank.

    Under torchrun or `launch` (RANK and WORLD_SIZE set, more than one rank) this initialises
    the default process group (once): NCCL when `device` resolves to CUDA, else gloo, with
    TIMEOUT. Ranks other than 0 then write nothing to stdout. Outside a rank it does nothing.

    Args:
        nproc: the number of ranks the caller asked for; outside a rank it must be 1, and
            under torchrun 1 (take torchrun's) or torchrun's own number.
        device: the recipe's device ("auto", "cpu", "cuda", ...).

    Returns:
        This process's World; World() (rank 0 of 1) for a single process.
    """
    check_nproc(nproc)
    env = _env_world()
    if env is None or env.size == 1:
        if nproc > 1:
            raise ValueError(
                f"nproc={nproc} asks for {nproc} processes, but this process is no rank of a "
                "launch; call fieldguide.train(..., nproc=N) or run under torchrun."
            )
        return World()
    if nproc not in (1, env.size):
        raise OptionError(
            f"{{nproc}} {nproc} disagrees with torchrun's WORLD_SIZE {env.size}; leave "
            "{nproc} out under torchrun (it takes torchrun's number of processes).",
            "nproc",
        )
    if dist.is_initialized():  # a caller that set the group up itself keeps it
        return current()
    from fieldguide.train.device import pick_device

    picked = pick_device(device)
    kind = picked.split(":")[0]
    if kind == "mps" or picked.startswith("cuda:"):
        raise OptionError(
            f"{{device}} {picked} cannot hold {env.size} ranks: ranks train on the CPU (gloo) or "
            "on one CUDA device each (rank r on cuda:r); pass {device} cpu or cuda.",
            "device",
        )
    backend = "gloo"
    if kind == "cuda":
        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise OptionError(
                f"{{nproc}} {env.size} starts {env.size} ranks on this machine but it has "
                f"{count} CUDA device(s); pass {{nproc}} {count} or {{device}} cpu.",
                "nproc",
                "device",
            )
        torch.cuda.set_device(env.local_rank)
        backend = "nccl"
    dist.init_process_group(backend, timeout=TIMEOUT)
    if env.rank > 0:  # only rank 0 speaks; errors still go to stderr
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    import atexit

    atexit.register(_leave)
    return current()


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s generators: `seed` itself on rank 0, a distinct 32-bit one else.

    Distinct seeds give each rank its own dropout masks instead of one pattern repeated.
    """
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"fieldguide-rank:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# ---------------------------------------------------------------------------------------------
# What ranks exchange while training
# ---------------------------------------------------------------------------------------------


def shard(index: Tensor, world: World) -> tuple[Tensor, int]:
    """This rank's part of a global micro-batch, and how many of its examples count.

    Rank r takes the r-th of `world.size` contiguous parts of near-equal size (contiguous keeps
    a task's class blocks together). A part of one example is that example twice (its mean loss
    is unchanged, and batch norm gets the two values it needs); an empty part borrows the batch's
    first example, counting none.

    Returns:
        (indices, real): the indices to run (at least 2 when the batch has any), and how many of
        the part's examples are real (0 for a borrowed one).
    """
    part = torch.tensor_split(index, world.size)[world.rank]
    real = len(part)
    if real == 0:
        part = index[:1]
    if len(part) == 1:
        part = part.repeat(2)  # (2,): the same example twice, its loss the same mean
    return part, real


def _flat_sum(tensors: Sequence[Tensor]) -> list[Tensor]:
    """All-reduce (sum) `tensors` across ranks in one collective per dtype; the sums, in order."""
    groups: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.dtype, []).append(i)
    out: list[Tensor] = [torch.empty(0)] * len(tensors)
    for members in groups.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in members])  # (sum of numels,)
        dist.all_reduce(flat)
        offset = 0
        for i in members:
            n = tensors[i].numel()
            out[i] = flat[offset : offset + n].view_as(tensors[i])
            offset += n
    return out


def reduce_gradients(model: nn.Module, stop: bool, sparse: set[str] = frozenset()) -> bool:
    """Sum every rank's gradients into each rank's `.grad`; whether any rank asked to stop.

    The same collective copies rank 0's buffers (batch-norm running statistics; others send
    zeros) to every rank, so all ranks stay bitwise equal. A parameter no rank has a gradient
    for keeps none, as one process leaves it. Parameters named in `sparse` (embedding tables with
    sparse gradients) are summed as sparse tensors, which gloo alone can do.

    Args:
        model: the rank's model, after the backward passes of one optimizer step.
        stop: whether this rank was asked to stop (Ctrl-C, `request_stop`).
        sparse: names of parameters whose gradients are sparse.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    dense = [p for n, p in named if n not in sparse]
    buffers = [b for b in model.buffers() if b.dtype != torch.bool]
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    mine = dist.get_rank() == 0
    # 1. one flat sum: dense gradients, rank 0's buffers, then a 0/1 flag per parameter (has a
    # gradient here) and the stop flag; small integer counts are exact in any float dtype
    flags = torch.tensor(
        [float(p.grad is not None) for _, p in named] + [float(stop)], device=device
    )
    sent = [p.grad if p.grad is not None else torch.zeros_like(p) for p in dense]
    sent += [b if mine else torch.zeros_like(b) for b in buffers]
    summed = _flat_sum([*sent, flags])
    grads, new_buffers, counts = summed[: len(dense)], summed[len(dense) : -1], summed[-1]
    for b, value in zip(buffers, new_buffers, strict=True):
        b.copy_(value)
    has = dict(zip((n for n, _ in named), counts[:-1].tolist(), strict=True))
    for (name, p), grad in zip(((n, p) for n, p in named if n not in sparse), grads, strict=True):
        if not has[name]:
            p.grad = None
        elif p.grad is None:
            p.grad = grad.clone()
        else:
            p.grad.copy_(grad)
    # 2. sparse tables one by one; a rank that looked up no row sends an empty sparse tensor
    for name, p in named:
        if name not in sparse or not has[name]:
            continue
        grad = p.grad
        if grad is None:
            rows = torch.zeros(1, 0, dtype=torch.long, device=device)
            grad = torch.sparse_coo_tensor(rows, p.new_zeros((0, *p.shape[1:])), p.shape)
        dist.all_reduce(grad)
        p.grad = grad.coalesce()
    return bool(counts[-1].item() > 0)


def broadcast_module(model: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (one broadcast per dtype)."""
    tensors = [*model.parameters(), *model.buffers()]
    groups: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for members in groups.values():
            flat = torch.cat([t.reshape(-1) for t in members])
            dist.broadcast(flat, src=0)
            offset = 0
            for t in members:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


def all_sum(tensor: Tensor) -> Tensor:
    """The sum of `tensor` over ranks (a new tensor; the input is left alone)."""
    out = tensor.clone()
    dist.all_reduce(out)
    return out


def any_rank(flag: bool, device: str = "cpu") -> bool:
    """Whether `flag` is true on any rank."""
    return bool(all_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` on every rank (pickled in memory, never on disk); as is for one rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def check_world_size(saved: int, size: int, path: Path | str) -> None:
    """Refuse to resume a checkpoint that `saved` ranks wrote with `size` ranks."""
    if saved != size:
        raise ValueError(
            f"cannot resume from {path} with --nproc {size}: it was written by a run with "
            f"--nproc {saved}, and a resume continues each rank where it stopped, so resume "
            f"with --nproc {saved}."
        )


# ---------------------------------------------------------------------------------------------
# Launching ranks and watching them
# ---------------------------------------------------------------------------------------------


def report(**fields: Any) -> None:
    """Add `fields` to this rank's report to the launcher (nothing outside `launch`'s ranks).

    Rank 0 reports its run folder this way, so a failure message can say where to resume.
    """
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else {}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**old, **fields}, default=str))
    os.replace(tmp, path)


def _threads_per_rank(nproc: int) -> str:
    """OMP_NUM_THREADS for each rank: the cores shared out, at least one (as torchrun's 1)."""
    return str(max(1, (os.cpu_count() or 1) // nproc))


def launch(nproc: int, target: str, kwargs: dict[str, Any]) -> Any:
    """Run `target(**kwargs)` in `nproc` new processes, one per rank; return rank 0's result.

    Each rank is `python` importing "module:function" `target` (with this process's sys.path),
    with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set as torchrun sets them,
    so `join` finds its process group; this process hosts the rendezvous store on a free port of
    127.0.0.1. Rank 0 keeps this process's stdout and stderr; the others are silent. Each rank
    gets OMP_NUM_THREADS = cores / nproc unless it is set.

    The launcher watches its ranks: the first to fail or die stops the others (SIGTERM, then
    SIGKILL), and the failure is raised here as one error. Ctrl-C here is passed on to every
    rank once per press; the ranks decide what it means (the trainer: stop with a checkpoint).

    Args:
        nproc: number of ranks, at least 2.
        target: "package.module:function"; its result must be JSON-friendly or a dataclass.
        kwargs: JSON-friendly keyword arguments of `target`.

    Returns:
        Rank 0's result, through JSON (a dataclass comes back as a dict).

    Raises:
        RankFailedError: a rank died or failed with an error this module does not re-raise as
            its own type; ValueError, TypeError, OSError, OptionError and friends raised in a
            rank (the same on every rank: bad input) are raised here as they were.
        KeyboardInterrupt: the ranks were aborted by a second Ctrl-C.
    """
    check_nproc(nproc)
    store = dist.TCPStore(  # held until the ranks end; port 0 takes a free port, no race
        "127.0.0.1", 0, world_size=nproc, is_master=True, wait_for_workers=False, timeout=TIMEOUT
    )
    with tempfile.TemporaryDirectory(prefix="fieldguide-ranks-") as tmp:
        folder = Path(tmp)
        payload = folder / "payload.json"
        payload.write_text(json.dumps({"target": target, "kwargs": kwargs, "path": sys.path}))
        procs = []
        for rank in range(nproc):
            env = {
                **os.environ,
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(nproc),
                "LOCAL_WORLD_SIZE": str(nproc),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(store.port),
                # every rank is a client of the store this process hosts (as under torchrun)
                "TORCHELASTIC_USE_AGENT_STORE": "True",
                REPORT_ENV: str(folder / f"rank{rank}.json"),
            }
            env.setdefault("OMP_NUM_THREADS", _threads_per_rank(nproc))
            if sys.platform.startswith("linux"):
                env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: loopback only
            log = None if rank == 0 else (folder / f"rank{rank}.err").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _RANK_MAIN, str(payload)],
                    env=env,
                    stdout=None if rank == 0 else subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,  # Ctrl-C reaches this process, which passes it on
                )
            )
            if log is not None:
                log.close()
        first = _watch(procs)
        reports = [_read_json(folder / f"rank{r}.json") for r in range(nproc)]
        logs = [""] + [
            (folder / f"rank{r}.err").read_text("utf-8", "replace") for r in range(1, nproc)
        ]
    del store
    if first is None:
        return reports[0].get("result")
    raise _failure(procs, first, reports, logs)


# The program of each rank: run the payload's target, report what happened, exit.
_RANK_MAIN = "from fieldguide.train.distributed import _rank_main; _rank_main()"


def _watch(procs: list[subprocess.Popen]) -> list[int] | None:
    """Wait for every rank; on the first failure stop the rest. The ranks that failed first."""
    presses = 0

    def forward(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL if presses > 2 else signal.SIGINT)

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, forward)
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [r for r, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                _stop(procs, settle=SETTLE_SECONDS)
                return failed
            if all(code == 0 for code in codes):
                return None
            time.sleep(POLL_SECONDS)
    finally:
        _stop(procs)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _stop(procs: list[subprocess.Popen], settle: float = 0.0) -> None:
    """End every rank still running: SIGTERM, then SIGKILL after GRACE_SECONDS.

    `settle` seconds are first left to the ranks to end by themselves, so that ranks failing on
    the same bad input all report it, and a peer that lost its connection says so.
    """
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(POLL_SECONDS)
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# Errors a rank raises that come back as their own type: bad input, the same on every rank.
_RERAISED = {
    cls.__name__: cls
    for cls in (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError, OSError)
}


def _failure(
    procs: list[subprocess.Popen],
    first: list[int],
    reports: list[dict[str, Any]],
    logs: list[str],
) -> BaseException:
    """The one error a failed launch raises: the cause, not the peers that lost it."""
    n = len(procs)

    def errors(communication: bool) -> list[int]:
        return [
            r
            for r, rep in enumerate(reports)
            if "error" in rep and rep["error"]["communication"] == communication
        ]

    # 1. an error a rank raised itself (the lowest rank's: bad input fails every rank alike,
    # and comes back as its own type); 2. a rank that died without a word (killed); 3. a
    # peer's lost connection.
    own = errors(False)
    if own:
        rank = own[0]
        error = reports[rank]["error"]
        if error["type"] == "KeyboardInterrupt":
            return KeyboardInterrupt()
        if error["type"] == "OptionError":
            return OptionError(error["template"], *error["names"], owner=error["owner"])
        if error["type"] in _RERAISED:
            return _RERAISED[error["type"]](error["message"])
        return RankFailedError(
            f"rank {rank} of {n} failed, so all ranks stopped: {error['message']}", reports[0]
        )
    silent = [r for r in first if "error" not in reports[r]] or first
    rank = silent[0]
    code = procs[rank].returncode
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
        last = [line for line in logs[rank].splitlines() if line.strip()]
        how += f" ({last[-1].strip()})" if last else ""
    return RankFailedError(f"rank {rank} of {n} {how}, so all ranks stopped.", reports[0])


def _is_communication_error(error: BaseException) -> bool:
    """Whether `error` is a collective failing because a peer went away (not a cause itself)."""
    dist_error = getattr(dist, "DistError", ())
    if dist_error and isinstance(error, dist_error):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        word in text for word in ("Connection closed by peer", "Connection reset", "gloo", "NCCL")
    )


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def _exit_with_parent() -> None:
    """End this rank if the launcher goes away (killed), so no rank trains on as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _rank_main() -> None:
    """Body of a rank started by `launch`: run the target, write the report, exit."""
    payload = json.loads(Path(sys.argv[1]).read_text())
    sys.path[:0] = [p for p in payload["path"] if p not in sys.path]
    _exit_with_parent()
    try:
        module, _, name = payload["target"].partition(":")
        result = getattr(importlib.import_module(module), name)(**payload["kwargs"])
        report(result=_jsonable(result))
    except BaseException as error:  # noqa: BLE001 - every failure goes to the launcher
        entry = {
            "type": type(error).__name__,
            "message": str(error),
            "communication": _is_communication_error(error),
        }
        if isinstance(error, OptionError):
            entry.update(template=error.template, names=list(error.names), owner=error.owner)
        report(error=entry)
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip interpreter teardown: destroying a process group whose peer died can block.
        os._exit(130 if isinstance(error, KeyboardInterrupt) else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def resume_hint(run_dir: str | Path | None, nproc: int) -> str:
    """What to do after a failed multi-process run in `run_dir`: resume, or start again."""
    from fieldguide.train.checkpoint import latest_checkpoint

    if not run_dir:
        return ""
    try:
        last = latest_checkpoint(Path(run_dir) / "checkpoint")
    except ValueError:
        last = None
    if last is None:
        return f" No checkpoint was saved in {run_dir}; start the run again."
    return (
        f" The run's last checkpoint, {last.name}, is kept: resume with "
        f"`fieldguide train --resume {run_dir} --nproc {nproc}`."
    )
