"""Scale-out: the process group, the global batch, the DDP / FSDP2 wrappers and reductions.

``torchrun`` (or Slurm through it) starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``; :func:`init` joins the process group (NCCL on CUDA, gloo on CPU) with a timeout on
every collective, so that when a rank dies the others stop with an :class:`~efm.errors.EfmError`
instead of hanging.

Batch semantics: ``train.batch_size`` is the **global** batch, the number of samples behind one
optimizer step. It is split evenly over the ``WORLD_SIZE`` processes and the ``train.grad_accum``
micro-steps of each (:func:`micro_batch`); a batch that does not divide is an error. Gradients are
averaged over the global batch (DDP averages over ranks, the loop divides each micro-step's loss by
``grad_accum``), so a learning rate means the same thing at any world size.

Every parameter of a model that DDP wraps must receive a gradient at every step. Components whose
forward leaves parameters out (the MAE objective never reads its backbone's final ``norm``) declare
them (:class:`efm.interfaces.SupportsUnusedParameters`); :func:`freeze_unused` turns their
``requires_grad`` off before the optimizers are built, whatever the world size, so that one
checkpoint's optimizer state fits any world size. DDP then runs with ``static_graph=True``.

Strategies (``train.strategy``): ``auto`` is DDP when ``WORLD_SIZE`` > 1, else none; ``ddp``;
``fsdp`` shards parameters, gradients and optimizer state with FSDP2
(``torch.distributed.fsdp.fully_shard``): each backbone block, then the objective, with a bf16
:class:`~torch.distributed.fsdp.MixedPrecisionPolicy` on CUDA (fp32 reductions); ``none``.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from efm.errors import EfmError
from efm.interfaces import ObjectiveOutput, SupportsUnusedParameters

log = logging.getLogger("efm.train.distributed")


def _register_output() -> None:
    """Let torch's pytree see the loss inside an :class:`ObjectiveOutput`: DDP with
    ``static_graph`` reduces gradients through the tensors it finds in the forward's output, and
    would otherwise skip the first step's all-reduce."""
    from torch.utils import _pytree

    try:
        _pytree.register_dataclass(ObjectiveOutput)
    except ValueError:  # registered already
        pass


_register_output()

STRATEGIES = ("auto", "ddp", "fsdp", "none")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0 writes the run directory, logs metrics and reports."""
        return self.rank == 0


def env_rank() -> int:
    """This process's rank as the launcher set it (0 without a launcher), before any group exists."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that prints headers and reports."""
    return env_rank() == 0


def init(timeout_s: float = 600.0) -> Dist:
    """Join the launcher's process group when ``WORLD_SIZE`` > 1; return this process's :class:`Dist`.

    Every collective of the group fails after ``timeout_s`` seconds without its peers (a rank that
    died or hangs), rather than waiting forever.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        # NCCL: an error or timeout tears the process down instead of hanging in a kernel
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        torch.distributed.init_process_group(
            backend=backend, timeout=datetime.timedelta(seconds=float(timeout_s))
        )
    if world > 1:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank = 0
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        return Dist(rank, world, local, torch.device("cuda", local))
    return Dist(rank, world, local, torch.device("cpu"))


def strategy(name: str, world: int) -> str:
    """The strategy ``train.strategy=name`` means at ``world`` processes: ``ddp``, ``fsdp``, ``none``."""
    if name not in STRATEGIES:
        raise EfmError(f"train.strategy={name!r}; options: {', '.join(STRATEGIES)}")
    if name == "auto":
        return "ddp" if world > 1 else "none"
    return name


def micro_batch(global_batch: int, world: int, grad_accum: int = 1) -> int:
    """Samples per process and micro-step: ``train.batch_size / (WORLD_SIZE x train.grad_accum)``."""
    parts = world * grad_accum
    if global_batch % parts or global_batch < parts:
        lower = max(parts, global_batch // parts * parts)
        raise EfmError(
            f"train.batch_size={global_batch} is the global batch and must split evenly over "
            f"{world} process(es) x train.grad_accum={grad_accum} micro-step(s); use a multiple "
            f"of {parts} (e.g. train.batch_size={lower} or {lower + parts})"
        )
    return global_batch // parts


def check_batch(cfg: dict[str, Any]) -> int:
    """:func:`micro_batch` of a resolved config at the launcher's ``WORLD_SIZE`` (before any data
    is prepared or any process group joined)."""
    t = cfg["train"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return micro_batch(int(t["batch_size"]), world, int(t.get("grad_accum", 1)))


# -- parameters that a step never uses ---------------------------------------------------------
def unused_parameters(model: nn.Module) -> set[str]:
    """Names (as ``model.named_parameters()`` gives them) that the model's forward never uses.

    The union of every submodule's :class:`SupportsUnusedParameters` declaration, prefixed with the
    submodule's name.
    """
    names: set[str] = set()
    for prefix, module in model.named_modules():
        if isinstance(module, SupportsUnusedParameters):
            dot = f"{prefix}." if prefix else ""
            names |= {dot + n for n in module.unused_parameters()}
    known = {n for n, _ in model.named_parameters()}
    unknown = sorted(names - known)
    if unknown:
        raise EfmError(
            f"{type(model).__name__} declares unused parameters it does not have: {unknown[:5]}"
        )
    return names


def freeze_unused(model: nn.Module) -> list[str]:
    """Turn ``requires_grad`` off for the declared unused parameters; return their names."""
    names = unused_parameters(model)
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad_(False)
    if names:
        log.info("parameters no step uses (frozen): %s", ", ".join(sorted(names)))
    return sorted(names)


def no_grad_parameters(model: nn.Module) -> list[str]:
    """Trainable parameters that hold no gradient (call after a backward): what DDP refuses."""
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


# -- wrappers -----------------------------------------------------------------------------------
def wrap(
    objective: nn.Module,
    how: str,
    dist: Dist,
    *,
    mixed_precision: torch.dtype | None = None,
    static_graph: bool = True,
) -> nn.Module:
    """The module the loop calls: ``objective`` itself, in DDP, or sharded in place by FSDP2.

    FSDP2 shards ``objective`` in place (its parameters become DTensors) and returns it; build the
    optimizers afterwards. ``static_graph`` (DDP): the same parameters take part in every step;
    DDP refuses it together with ``no_sync`` (gradient accumulation), where the loop turns it off.
    """
    grouped = torch.distributed.is_available() and torch.distributed.is_initialized()
    if how == "none" or (how == "ddp" and not grouped):  # one process, no group: nothing to wrap
        return objective
    if how == "fsdp" and not grouped:
        raise EfmError(
            "train.strategy=fsdp shards over the processes of a torchrun job; launch with "
            "torchrun --nproc_per_node=N (or use train.strategy=none for one process)"
        )
    if how == "ddp":
        return nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            static_graph=static_graph,
        )
    if how == "fsdp":
        return shard(objective, dist, mixed_precision=mixed_precision)
    raise EfmError(f"unknown distribution strategy {how!r}; options: ddp, fsdp, none")


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: every ``nn.ModuleList``'s items with parameters."""
    out: list[nn.Module] = []
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList):
            out += [m for m in module if any(True for _ in m.parameters())]
    return out


def shard(
    objective: nn.Module, dist: Dist, *, mixed_precision: torch.dtype | None = None
) -> nn.Module:
    """FSDP2: ``fully_shard`` each block (every ``nn.ModuleList`` item), then the whole objective.

    On CUDA with ``mixed_precision`` (bf16), parameters are gathered in that dtype and gradients
    reduced in fp32; the batch itself is not cast (representations compute in fp32).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(dist.device.type, (dist.world,))
    kw: dict[str, Any] = {"mesh": mesh}
    inner, outer = kw, kw
    if mixed_precision is not None and dist.device.type == "cuda":
        inner = {
            **kw,
            "mp_policy": MixedPrecisionPolicy(
                param_dtype=mixed_precision, reduce_dtype=torch.float32
            ),
        }
        outer = {
            **kw,
            "mp_policy": MixedPrecisionPolicy(
                param_dtype=mixed_precision, reduce_dtype=torch.float32, cast_forward_inputs=False
            ),
        }
    for block in _blocks(objective):
        fully_shard(block, **inner)
    fully_shard(objective, **outer)
    return objective


def unwrap(model: nn.Module) -> nn.Module:
    """The objective inside a DDP wrapper (FSDP2 shards in place: the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_sync(model: nn.Module, last: bool) -> Any:
    """Skip the gradient all-reduce on every micro-step but the last (gradient accumulation)."""
    if last:
        return nullcontext()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    setter = getattr(model, "set_requires_gradient_sync", None)  # FSDP2
    if setter is not None:
        return _fsdp_no_sync(model)
    return nullcontext()


@contextmanager
def _fsdp_no_sync(model: nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


# -- reductions ---------------------------------------------------------------------------------
def mean_over_ranks(values: list[float], dist: Dist) -> list[float]:
    """The mean of each value over all ranks (one collective); the values themselves at world 1."""
    if dist.world == 1 or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=dist.device)
    with collective("averaging the loss"):
        torch.distributed.all_reduce(t)
    return (t / dist.world).tolist()


def gather_objects(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if dist.world == 1:
        return [obj]
    out: list[Any] = [None] * dist.world
    with collective("gathering the RNG states for a checkpoint"):
        torch.distributed.all_gather_object(out, obj)
    return out


def barrier(dist: Dist, what: str = "waiting for the other processes") -> None:
    """A barrier over every rank that fails with a clear error when one of them is gone."""
    if dist.world > 1:
        with collective(what):
            torch.distributed.barrier()


_PEER_GONE = (
    "connection closed",
    "connection reset",
    "broken pipe",
    "timed out",
    "timeout",
    "gloo",
    "nccl",
    "processgroup",
)


def peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective failing because another rank died, hung or timed out."""
    if isinstance(exc, torch.distributed.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(p in text for p in _PEER_GONE)


@contextmanager
def collective(what: str, world: int = 2) -> Iterator[None]:
    """Turn the backend's error when a peer died or timed out into one :class:`EfmError`
    (other errors pass unchanged; nothing to do in a single process)."""
    try:
        yield
    except (RuntimeError, torch.distributed.DistError) as exc:
        if world < 2 or not peer_failure(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EfmError(
            f"rank {env_rank()}: another process of this run stopped or stalled while {what} "
            f"({first}); see that rank's log, then rerun the same command to resume from the "
            "newest checkpoint"
        ) from None
