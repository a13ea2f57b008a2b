"""Distributed conformance: an objective trains under DDP (or FSDP2) on 2 CPU processes with gloo.

DDP needs a gradient for every trainable parameter at every step; a component whose forward leaves
parameters out must declare them (:class:`efm.interfaces.SupportsUnusedParameters`), and the
declaration must be true (a declared parameter is frozen, so declaring a used one would silently
stop training it). :func:`unused_problems` checks both in one process; :func:`check_distributed`
runs a few optimizer steps of the assembled objective as ``world`` processes, exactly as the
training loop wraps it, and checks that every rank ends with the same weights::

    from efm.testing.ddp import check_distributed
    problems = check_distributed(cfg, data)      # [] when it conforms

:class:`efm.testing.ObjectiveSuite` runs it on every objective it lists (``test_ddp_step``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["check_distributed", "free_port", "random_batch", "unused_problems"]


def free_port() -> int:
    """A free TCP port on this machine for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def random_batch(n: int, n_chans: int, n_times: int, seed: int) -> dict[str, Any]:
    """A batch of ``n`` random epochs ``[n, n_chans, n_times]`` in µV, seeded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(n, n_chans, n_times, generator=g) * 30.0
    return {"signal": signal, "channel_mask": torch.ones(n, n_chans, dtype=torch.bool)}


def unused_problems(objective: Any, batch: dict[str, Any]) -> list[str]:
    """Compare the declared unused parameters with what one forward and backward leave without a
    gradient; one line per problem (``[]`` when they agree). Leaves ``.grad`` of the objective set.
    """
    from efm.train.distributed import unused_parameters

    declared = unused_parameters(objective)
    objective.zero_grad(set_to_none=True)
    objective(batch).loss.backward()
    trainable = {n for n, p in objective.named_parameters() if p.requires_grad}
    missing = {n for n, p in objective.named_parameters() if p.requires_grad and p.grad is None}
    problems = []
    if sorted(missing - declared):
        problems.append(
            f"{type(objective).__name__}: parameters without a gradient after a step, not declared "
            f"by unused_parameters(): {sorted(missing - declared)[:8]} (DDP refuses them: declare "
            "them, or build only what the forward uses)"
        )
    used = (trainable - missing) & declared
    if used:
        problems.append(
            f"{type(objective).__name__}: parameters declared unused that do get a gradient: "
            f"{sorted(used)[:8]} (they would be frozen)"
        )
    return problems


def check_distributed(
    cfg: dict[str, Any],
    data: Any,
    *,
    world: int = 2,
    steps: int = 2,
    batch_size: int = 4,
    strategy: str = "ddp",
    setup: Callable[[], None] | None = None,
    timeout_s: float = 120.0,
) -> list[str]:
    """Train ``steps`` steps of the objective that ``cfg`` assembles as ``world`` gloo processes.

    Parameters
    ----------
    cfg : dict
        ``representation``, ``backbone`` and ``objective`` nodes (and ``optim``, optional), as
        :func:`efm.assemble.assemble` takes them.
    data : efm.assemble.DataSpec
        The data shape to assemble for.
    batch_size : int
        The global batch (split over the processes, as ``train.batch_size``).
    strategy : str
        ``ddp`` or ``fsdp``.
    setup : callable, optional
        A module-level function each process calls first (e.g. to register test components).

    Returns
    -------
    list of str
        The problems found (``[]``: the objective conforms): an error on a rank, parameters that
        got no gradient, declared-unused parameters that did, ranks whose weights differ.
    """
    import torch

    with tempfile.TemporaryDirectory(prefix="efm-ddp-") as tmp:
        out = Path(tmp)
        args = (world, free_port(), cfg, data, steps, batch_size, strategy, setup, timeout_s, out)
        try:
            torch.multiprocessing.spawn(_rank, args=args, nprocs=world, join=True)
        except Exception as exc:  # a rank raised: its traceback is in the message
            errors = sorted(out.glob("error-*.txt"))
            text = errors[0].read_text() if errors else str(exc)
            return [f"a rank failed under {strategy}: {text.strip().splitlines()[-1]}\n{text}"]
        results = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]
    problems: list[str] = []
    for r, res in enumerate(results):
        problems += [f"rank {r}: {p}" for p in res["problems"]]
    if len({res["digest"] for res in results}) != 1:
        differ = [n for n, d in results[0]["digests"].items() if results[1]["digests"][n] != d]
        problems.append(
            f"the ranks' weights differ after {steps} step(s) under {strategy}: {differ[:8]}"
        )
    if len({tuple(res["losses"]) for res in results}) != 1:
        problems.append("the ranks report different (unreduced) losses")
    return problems


def _rank(rank: int, *args: Any) -> None:
    """One spawned process: :func:`_train` (same arguments), its traceback kept in ``out``."""
    try:
        _train(rank, *args)
    except BaseException:
        out: Path = args[-1]
        (out / f"error-{rank}.txt").write_text(traceback.format_exc())
        raise


def _train(
    rank: int,
    world: int,
    port: int,
    cfg: dict[str, Any],
    data: Any,
    steps: int,
    batch_size: int,
    strategy: str,
    setup: Callable[[], None] | None,
    timeout_s: float,
    out: Path,
) -> None:
    import torch

    from efm import registry
    from efm.assemble import assemble
    from efm.train import distributed
    from efm.train.config import OptimConfig
    from efm.train.optim import Optimizers

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    registry.get_registry(refresh=True)
    if setup is not None:
        setup()
    dist = distributed.init(timeout_s)
    try:
        torch.manual_seed(0)  # the same initial weights on every rank, as in training
        objective = assemble(cfg, data)
        distributed.freeze_unused(objective)
        how = distributed.strategy(strategy, world)
        if how == "fsdp":
            distributed.wrap(objective, how, dist)
        from dataclasses import asdict

        optim = {**asdict(OptimConfig()), "warmup_steps": 0, **dict(cfg.get("optim") or {})}
        optimizers = Optimizers(objective, optim, steps)
        model = objective if how == "fsdp" else distributed.wrap(objective, how, dist)
        micro = distributed.micro_batch(batch_size, world)
        torch.manual_seed(1 + rank)  # per-rank masks, as in training
        problems: list[str] = []
        losses = []
        for step in range(steps):
            batch = random_batch(micro, data.n_chans, data.n_times, seed=1000 * step + rank)
            loss = model(batch).loss
            loss.backward()
            missing = distributed.no_grad_parameters(objective)
            if missing:
                problems.append(f"step {step}: parameters without a gradient: {missing[:8]}")
            optimizers.clip_and_step()
            optimizers.zero_grad()
            losses.append(distributed.mean_over_ranks([float(loss.detach())], dist)[0])
        digests = {}
        for n, p in sorted(objective.named_parameters()):
            full = p.full_tensor() if hasattr(p, "full_tensor") else p
            digests[n] = hashlib.sha256(full.detach().cpu().contiguous().numpy().tobytes())
        digest = hashlib.sha256("".join(d.hexdigest() for d in digests.values()).encode())
        if rank == 0:
            torch.manual_seed(0)  # the declaration, checked in one process on a fresh model
            fresh = assemble(cfg, data)
            problems += unused_problems(fresh, random_batch(2, data.n_chans, data.n_times, 0))
        torch.save(
            {
                "problems": problems,
                "losses": losses,
                "digest": digest.hexdigest(),
                "digests": {n: d.hexdigest() for n, d in digests.items()},
            },
            out / f"rank{rank}.pt",
        )
        distributed.barrier(dist)
    finally:
        torch.distributed.destroy_process_group()
