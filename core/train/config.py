"""Schemas of the ``optim`` and ``train`` recipe nodes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OptimConfig:
    """Muon for hidden 2-D weight matrices, AdamW for everything else."""

    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    muon_weight_decay: float = 0.0
    adamw_lr: float = 3e-4
    adamw_betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    use_muon: bool = True


@dataclass
class TrainConfig:
    """The training loop."""

    steps: int = 1000
    batch_size: int = 64
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16
    compile: str = "none"  # none | default | max-autotune | reduce-overhead
    num_workers: int = 2
    shuffle_buffer: int = 1000
    log_every: int = 10
    ckpt_every: int = 500
    run_dir: str | None = None
    resume: bool = True
    activation_checkpointing: bool = False
    crop_s: float | None = None
