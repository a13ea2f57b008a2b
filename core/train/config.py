"""Schemas of the ``optim`` and ``train`` recipe nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class OptimConfig:
    """Muon for hidden 2-D weight matrices, AdamW for everything else (see ``efm.train.optim``).

    The learning rates follow a linear warmup over ``warmup_steps`` and a cosine decay to
    ``min_lr_ratio`` times the peak at the last step. ``grad_clip`` (0 disables) is one global norm
    over every parameter of both optimizers, taken before either steps.
    """

    muon_lr: float = field(default=0.02, metadata={"ge": 0})
    muon_momentum: float = 0.95
    muon_weight_decay: float = field(default=0.0, metadata={"ge": 0})
    adamw_lr: float = field(default=3e-4, metadata={"ge": 0})
    adamw_betas: tuple[float, float] = (0.9, 0.95)
    adamw_eps: float = 1e-10
    weight_decay: float = field(default=0.05, metadata={"ge": 0})
    warmup_steps: int = field(default=100, metadata={"ge": 0})
    min_lr_ratio: float = field(default=0.1, metadata={"ge": 0, "le": 1})
    grad_clip: float = field(default=1.0, metadata={"ge": 0})
    use_muon: bool = True


@dataclass
class TrainConfig:
    """The training loop (``efm.train.loop``).

    ``precision``: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
    ``compile``: ``none``, ``default``, ``max-autotune`` or ``reduce-overhead`` (the latter compiled with
    ``dynamic=True``, meant for random crops). ``crops_s``: crop lengths in seconds; each batch draws one
    and every sample a random offset (empty: whole epochs). ``resampled``: draw shards with
    replacement forever (else: shuffled passes over the shards split across nodes and workers).
    ``threads``: CPU threads of PyTorch's intra-op pool (None: ``OMP_NUM_THREADS`` when set, else
    PyTorch's default, one per core); on a shared or loaded machine fewer threads are often faster.
    ``run_dir`` None: ``runs/<recipe>-<profile>-<config hash>`` under the working directory, so the
    same command resumes the same run.

    ``batch_size`` is the global batch behind one optimizer step, split evenly over the processes
    (``torchrun``'s ``WORLD_SIZE``) and ``grad_accum`` micro-steps of each; learning rates mean the
    same at any world size. ``strategy``: ``auto`` (DDP under torchrun, else none), ``ddp``,
    ``fsdp`` (FSDP2 sharding for the largest models) or ``none``. ``dist_timeout_s``: how long a
    collective waits for the other processes before the run stops with an error.
    """

    steps: int = field(default=1000, metadata={"ge": 1})
    batch_size: int = field(default=64, metadata={"ge": 1})
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["none", "default", "max-autotune", "reduce-overhead"] = "none"
    num_workers: int = field(default=2, metadata={"ge": 0})
    shuffle_buffer: int = field(default=1000, metadata={"ge": 0})
    resampled: bool = True
    log_every: int = field(default=10, metadata={"ge": 1})
    ckpt_every: int = field(default=500, metadata={"ge": 1})
    keep_ckpts: int = field(default=2, metadata={"ge": 1})
    figures: bool = True
    figures_every: int = field(
        default=0, metadata={"ge": 0}
    )  # 0: reconstruction figures at checkpoints and at the end only
    run_dir: str | None = None
    resume: bool = True
    activation_checkpointing: bool = False
    crops_s: list[float] = field(default_factory=list)
    progress: bool = True
    strategy: Literal["auto", "ddp", "fsdp", "none"] = "auto"
    grad_accum: int = field(default=1, metadata={"ge": 1})
    dist_timeout_s: float = field(default=600.0, metadata={"gt": 0})
    threads: int | None = field(default=None, metadata={"ge": 1})

    def check(self) -> list[str]:
        if self.batch_size % self.grad_accum:
            return [
                f"batch_size={self.batch_size} (the global batch) does not split into "
                f"grad_accum={self.grad_accum} micro-steps; use a multiple of {self.grad_accum}"
            ]
        return []
