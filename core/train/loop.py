"""The training loop: setup, step, log, checkpoint, top to bottom.

``pretrain(cfg, shards)`` assembles the representation, backbone and objective named by the config
for the shards' shape (:mod:`efm.assemble`), streams raw epochs from the shards, computes the
representation on the device inside the step (the objective calls it), and optimises with Muon + AdamW (``efm.train.optim``). It writes the run
directory (``efm.train.rundir``), checkpoints (``efm.train.checkpoint``) and figures, and resumes
exactly from the newest checkpoint of its run directory.

Precision: ``train.precision=auto`` is bf16 autocast on CUDA (no GradScaler is needed with bf16,
so fused AdamW and one global ``clip_grad_norm_`` are correct) and fp32 on CPU. ``train.compile``
compiles the outermost module in place (state-dict names unchanged): ``default``, ``max-autotune``
(fixed 30 s inputs) or ``reduce-overhead`` with ``dynamic=True`` (random crops).

Distributed (``efm.train.distributed``): launched by ``torchrun`` (``WORLD_SIZE`` > 1), the loop
joins a process group (NCCL on CUDA, gloo on CPU, collectives with ``train.dist_timeout_s``), freezes
the parameters no step uses, wraps the objective in DDP (or shards it with FSDP2,
``train.strategy=fsdp``), and each rank reads its own WebDataset split. ``train.batch_size`` is the
global batch: each rank takes ``batch_size / (WORLD_SIZE x grad_accum)`` samples per micro-step.
The logged loss and metrics are means over ranks; rank 0 writes the run directory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from efm.assemble import assemble, data_spec
from efm.errors import EfmError
from efm.interfaces import SupportsActivationCheckpointing
from efm.train import checkpoint as ckpt
from efm.train import distributed, plots
from efm.train.loader import make_loader, read_manifest
from efm.train.optim import Optimizers
from efm.train.rundir import Metrics, default_run_dir, provenance, write_config

log = logging.getLogger("efm.train.loop")

COMPILE_MODES = ("none", "default", "max-autotune", "reduce-overhead")


@dataclass
class TrainResult:
    """What a call to :func:`pretrain` did."""

    run_dir: Path
    start_step: int
    steps: int
    losses: list[float] = field(default_factory=list)  # one per step run by this call
    checkpoint: Path | None = None
    samples_per_s: float = 0.0


# -- setup ------------------------------------------------------------------------------------
def build_objective(cfg: dict[str, Any], n_chans: int | None = None) -> nn.Module:
    """Representation, backbone and objective of the config: :func:`efm.assemble.assemble`.

    Kept for callers of the earlier name; new code calls :func:`efm.assemble.assemble`.
    """
    return assemble(cfg, data_spec(cfg, n_chans))


def init_distributed(timeout_s: float = 600.0) -> tuple[int, int, torch.device]:
    """Join the torchrun process group when there is one; return ``(rank, world, device)``."""
    d = distributed.init(timeout_s)
    return d.rank, d.world, d.device


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM after saving a checkpoint of the step it was on."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}; checkpoint {checkpoint}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Catch SIGINT and SIGTERM while training: the list receives the signal, the loop stops.

    The loop finishes its step, saves a checkpoint and raises :class:`Interrupted`. A second signal
    interrupts at once (the previous handlers are back). Outside the main thread: no handlers.
    """
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        got.append(signum)
        for s, h in previous.items():
            signal.signal(s, h)
        log.warning(
            "%s: stopping after this step and saving a checkpoint (again to stop at once)",
            signal.Signals(signum).name,
        )

    for s in previous:
        signal.signal(s, handler)
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


_BUSY_WARNED: list[bool] = []


def configure_threads(t: dict[str, Any]) -> str:
    """Apply ``train.threads`` to PyTorch's CPU thread pool; describe the count and its source.

    None keeps PyTorch's choice, which follows ``OMP_NUM_THREADS`` when it is set and is one thread
    per core otherwise. A warning says when the machine's load average already exceeds its cores:
    PyTorch's OpenMP threads slow down badly when oversubscribed.
    """
    threads = t.get("threads")
    if threads is not None:
        torch.set_num_threads(int(threads))
        source = "train.threads"
    elif os.environ.get("OMP_NUM_THREADS"):
        source = "OMP_NUM_THREADS"
    else:
        source = "PyTorch's default"
    n = torch.get_num_threads()
    cores = os.cpu_count() or 1
    text = f"{n} CPU thread(s) ({source}; {cores} core(s); train.threads=N sets it)"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return text
    if load > cores and not _BUSY_WARNED:
        _BUSY_WARNED.append(True)
        log.warning(
            "this machine is busy (load average %.1f on %d cores): PyTorch's threads slow down "
            "badly when oversubscribed; train.threads=1 (or OMP_NUM_THREADS=1) is often faster",
            load,
            cores,
        )
    return text


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` on ``device`` (None: fp32)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise EfmError(f"train.precision={precision!r}; options: auto, fp32, bf16")
    if precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    ):
        return torch.bfloat16
    return None


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """Compile ``model`` in place with a ``train.compile`` mode (no-op for ``none``)."""
    if mode not in COMPILE_MODES:
        raise EfmError(f"train.compile={mode!r}; options: {', '.join(COMPILE_MODES)}")
    if mode != "none":
        model.compile(mode=None if mode == "default" else mode, dynamic=mode == "reduce-overhead")
    return model


def duration(seconds: float) -> str:
    """``42 s``, ``7.5 min``, ``3.2 h`` or ``4.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# an estimate beyond this on a CPU is a configuration meant for GPUs
ABSURD_CPU_S = 6 * 3600


def estimate(per_step_s: float, steps_left: int, device: torch.device) -> tuple[str, bool]:
    """The pretraining time left as text, and whether it is absurd for ``device``."""
    left = per_step_s * steps_left
    text = f"about {duration(left)} left ({per_step_s:.3g} s/step, {steps_left} steps)"
    return text, device.type == "cpu" and left > ABSURD_CPU_S


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to ``device``; float16 signals (from a half loader) become float32 there."""
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            v = v.to(device, non_blocking=True)
            if v.dtype == torch.float16:
                v = v.float()
        out[k] = v
    return out


def _activation_checkpointing(backbone: nn.Module) -> None:
    if isinstance(backbone, SupportsActivationCheckpointing):
        backbone.set_activation_checkpointing(True)
        return
    log.warning(
        "backbone %s has no activation checkpointing switch; ignoring train.activation_"
        "checkpointing",
        type(backbone).__name__,
    )


def figure_info(objective: nn.Module, batch: dict[str, Any], sfreq: float) -> dict[str, Any]:
    """Axes of the reconstruction figure: channel names, duration, an image's frequencies, units."""
    meta = (batch.get("meta") or [{}])[0]
    rate = float(meta.get("sfreq") or sfreq or 0.0)
    rep = getattr(objective, "representation", None)
    return {
        "ch_names": meta.get("ch_names"),
        "duration_s": batch["signal"].shape[-1] / rate if rate else None,
        "freqs": getattr(rep, "freqs", None),
        "image_units": getattr(rep, "units", None),
    }


def save_figures(
    objective: nn.Module,
    batch: dict[str, Any],
    path: Path | None,
    title: str,
    info: dict[str, Any] | None = None,
) -> Path | None:
    """Run the objective on a few samples and plot its ``figures``, leaving every RNG untouched
    (``path`` None: run it only, as the other ranks of a sharded model must)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    was_training = objective.training
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        objective.eval()
        try:
            out = objective(batch)
        finally:
            objective.train(was_training)
    if path is None or not out.figures:
        return None
    info = dict(info or {})
    first = next(iter(out.figures.values()))
    # signals [C, T] are in µV; images in the representation's units
    info["units"] = "µV" if first.dim() == 2 else (info.pop("image_units", None) or "value")
    if torch.is_tensor(info.get("freqs")):
        info["freqs"] = info["freqs"].detach().cpu().numpy()
    return plots.reconstructions(out.figures, path, title, info)


# -- the loop ---------------------------------------------------------------------------------
def pretrain(
    cfg: dict[str, Any],
    shards: str | Path,
    run_dir: str | Path | None = None,
    *,
    stop_at: int | None = None,
) -> TrainResult:
    """Pretrain the recipe's objective on a shard directory.

    Parameters
    ----------
    cfg : dict
        The resolved config (``efm.config.compose``).
    shards : path
        A shard directory (``manifest.json`` + ``shards/*.tar``).
    run_dir : path, optional
        Where to write; default ``train.run_dir`` or ``runs/<recipe>-<profile>-<hash>``.
    stop_at : int, optional
        Stop after this step as if interrupted (the schedule still spans ``train.steps``).

    Returns
    -------
    TrainResult
    """
    t, o = cfg["train"], cfg["optim"]
    threads = configure_threads(t)
    dist = distributed.init(float(t.get("dist_timeout_s", 600.0)))
    rank, world, device, main = dist.rank, dist.world, dist.device, dist.main
    how = distributed.strategy(str(t.get("strategy", "auto")), world)
    accum = int(t.get("grad_accum", 1))
    micro = distributed.micro_batch(int(t["batch_size"]), world, accum)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    total = int(t["steps"])
    manifest = read_manifest(shards)  # fail early and clearly on a bad shard directory

    # setup: the model (assembled for the shards' shape), identical on every rank; then a
    # per-rank stream of masks
    torch.manual_seed(int(t["seed"]))
    objective = assemble(cfg, data_spec(cfg, manifest.get("n_chans") or None)).to(device)
    if t.get("activation_checkpointing"):
        _activation_checkpointing(getattr(objective, "backbone", objective))
    distributed.freeze_unused(objective)  # at any world size: one optimizer layout
    amp = autocast_dtype(str(t["precision"]), device)
    if how == "fsdp":  # sharded in place before the optimizers see the parameters
        distributed.wrap(objective, how, dist, mixed_precision=amp)
    optimizers = Optimizers(objective, o, total)
    torch.manual_seed(int(t["seed"]) + 7919 * rank)

    start, position, state = 0, 0, None
    last = ckpt.latest(run_dir) if t.get("resume", True) else None
    if last is not None:
        load = ckpt.load_sharded if how == "fsdp" else ckpt.load
        state = load(last, objective, optimizers)
        start, position = int(state["step"]), int(state["data_position"])
        saved = state.get("extra") or {}
        if (saved.get("num_workers"), saved.get("world_size")) != (t["num_workers"], world):
            log.warning(
                "resuming with %s loader workers x %s processes instead of %s x %s: training "
                "continues, but the data order differs from an uninterrupted run's",
                t["num_workers"],
                world,
                saved.get("num_workers"),
                saved.get("world_size"),
            )
        log.info("resuming %s from step %d (data position %d)", run_dir, start, position)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, cfg)
        import json

        (run_dir / "provenance.json").write_text(
            json.dumps(provenance(device, world), indent=2, default=str), encoding="utf-8"
        )
    metrics = Metrics(run_dir, resume_step=start if state else None) if main else None

    workers = int(t["num_workers"])
    loader = make_loader(
        shards,
        micro,
        seed=int(t["seed"]),
        num_workers=workers,
        shuffle_buffer=int(t["shuffle_buffer"]),
        resampled=bool(t["resampled"]),
        crops_s=list(t.get("crops_s") or []),
        start_batch=position,
        pin_memory=device.type == "cuda",
        dtype="float16" if device.type == "cuda" else "float32",
    )
    batches = iter(loader)
    if state is not None:  # last: nothing after this may draw random numbers
        ranks = (state.get("extra") or {}).get("rng_ranks") or []
        ckpt.set_rng_state(ranks[rank] if world > 1 and len(ranks) == world else state["rng"])

    model = (
        objective
        if how == "fsdp"
        else distributed.wrap(objective, how, dist, static_graph=accum == 1)
    )
    compile_model(model, str(t["compile"]))
    autocast = (
        torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    )
    log.info(
        "training %s on %s (%s): steps %d..%d, global batch %d = %d process(es) x %d "
        "micro-step(s) x %d, strategy %s, precision %s, compile %s",
        cfg.get("recipe"),
        device,
        threads if device.type == "cpu" else "CUDA",
        start,
        total,
        t["batch_size"],
        world,
        accum,
        micro,
        how,
        "bf16" if amp else "fp32",
        t["compile"],
    )

    result = TrainResult(run_dir, start, total)
    fig_batch: dict[str, Any] | None = None
    bar = None
    if main and t.get("progress", True):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, unit="step", desc="pretrain", dynamic_ncols=True)
    log_every, ckpt_every = max(1, int(t["log_every"])), max(1, int(t["ckpt_every"]))
    fig_every = int(t.get("figures_every") or 0) or ckpt_every
    interval: list[float] = []
    tick, samples = time.perf_counter(), 0
    loop_start, loop_samples = tick, 0
    # the ETA: timed over the steps after the first (which pays for warm-up), said once
    eta_from, eta_steps = start + 1, min(5, max(1, (total - start) // 10))
    eta_clock = 0.0
    model.train()
    with stop_requests() as stop:
        for step in range(start + 1, total + 1):
            if step == eta_from + 1:
                eta_clock = time.perf_counter()
            # step: forward (representation -> backbone -> objective) and backward, per micro-batch
            total_loss = torch.zeros((), device=device)
            logs: dict[str, float] = {}
            for micro_step in range(accum):
                batch = to_device(next(batches), device)
                position += 1
                if fig_batch is None and (main or how == "fsdp"):  # FSDP: every rank runs it
                    fig_batch = {k: v[:4] for k, v in batch.items()}
                with (
                    distributed.collective(f"training step {step}", world),
                    distributed.no_sync(model, last=micro_step == accum - 1),  # one all-reduce
                ):
                    with autocast:
                        out = model(batch)
                    (out.loss / accum).backward()
                total_loss += out.loss.detach() / accum
                for key, v in out.logs.items():
                    logs[key] = logs.get(key, 0.0) + float(v) / accum
            grad_norm = optimizers.clip_and_step()
            optimizers.zero_grad()
            # the step's loss and logs: means over micro-steps, then over ranks (one collective)
            value, *reduced = distributed.mean_over_ranks([float(total_loss), *logs.values()], dist)
            logs = dict(zip(logs, reduced))
            if not math.isfinite(value):
                raise EfmError(
                    f"the loss became {value} at step {step}; lower optim.muon_lr / "
                    f"optim.adamw_lr or check the data (run dir: {run_dir})"
                )
            result.losses.append(value)
            interval.append(value)
            samples += int(t["batch_size"])  # the global batch of this step
            loop_samples += int(t["batch_size"])
            if main and step == eta_from + eta_steps and step < total:
                per_step = (time.perf_counter() - eta_clock) / eta_steps
                text, absurd = estimate(per_step, total - step, device)
                log.info("pretraining: %s", text)
                if absurd:
                    log.warning(
                        "pretraining this configuration on a CPU would take %s: it is meant for "
                        "GPUs; data.profile=demo (or fewer train.steps) runs on a CPU",
                        duration(per_step * (total - step)),
                    )

            # log: the loss of an interval is the mean of its steps, on the console and in
            # metrics.csv (the report reads it from there)
            if step % log_every == 0 or step == total:
                now = time.perf_counter()
                rate = samples / max(now - tick, 1e-9)
                result.samples_per_s = rate
                mean_loss = sum(interval) / len(interval)
                if metrics is not None:
                    metrics.log(
                        step,
                        {
                            "loss": mean_loss,
                            "loss_last": value,
                            "grad_norm": grad_norm,
                            "samples_per_s": rate,
                            **optimizers.lrs(),
                            **logs,
                        },
                    )
                if bar is not None:
                    bar.set_postfix(loss=f"{mean_loss:.4g}", samples_s=f"{rate:.1f}")
                interval, tick, samples = [], now, 0
            if bar is not None:
                bar.update(1)

            # checkpoint (and figures); a signal (SIGINT, SIGTERM) saves this step and stops
            stopping = bool(stop)
            if world > 1:  # every rank stops at the same step
                flag = torch.tensor([float(stopping)], device=device)
                with distributed.collective(f"training step {step}", world):
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stopping = bool(flag.item())
            if step % ckpt_every == 0 or step == total or stopping:
                extra = {"num_workers": workers, "world_size": world}
                rngs = distributed.gather_objects(ckpt.rng_state(), dist)  # every rank's masks
                if world > 1:
                    extra["rng_ranks"] = rngs
                keep = int(t.get("keep_ckpts", 2))
                if how == "fsdp":  # every rank writes its shards; the last step also one file
                    with distributed.collective("writing a sharded checkpoint", world):
                        result.checkpoint = ckpt.save_sharded(
                            run_dir, step, objective, optimizers, position, keep, extra,
                            full_weights=step == total,
                        )  # fmt: skip
                elif main:
                    result.checkpoint = ckpt.save(
                        run_dir, step, objective, optimizers, position, keep=keep, extra=extra
                    )
                distributed.barrier(dist, "writing a checkpoint")
            if stopping:
                if bar is not None:
                    bar.close()
                if metrics is not None:
                    metrics.close()
                if main:
                    log.warning(
                        "stopped at step %d: checkpoint %s; the same command resumes from there",
                        step,
                        result.checkpoint,
                    )
                raise Interrupted(stop[0] if stop else signal.SIGTERM, step, result.checkpoint)
            if (
                (main or how == "fsdp")
                and fig_batch is not None
                and t.get("figures", True)
                and (step % fig_every == 0 or step == total)
            ):
                save_figures(
                    objective,
                    fig_batch,
                    run_dir / "figures" / "reconstruction.png" if main else None,
                    f"{cfg.get('recipe')} step {step}",
                    figure_info(objective, fig_batch, float(cfg["pipeline"]["sfreq"])),
                )
            if stop_at is not None and step >= stop_at:
                break
    if bar is not None:
        bar.close()
    # the report's throughput: every sample of this call over its whole loop (checkpoints included)
    result.samples_per_s = loop_samples / max(time.perf_counter() - loop_start, 1e-9)
    if metrics is not None:
        plots.loss_curve(metrics.read(), run_dir / "figures" / "loss.png", f"{cfg.get('recipe')}")
        metrics.close()
    if result.checkpoint is None:
        result.checkpoint = ckpt.latest(run_dir)
    return result
