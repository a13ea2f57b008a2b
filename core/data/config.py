"""Schemas of the ``data`` and ``pipeline`` recipe nodes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Where the recordings are and where prepared shards go.

    ``root`` None means the embedded demo corpus; ``profile`` ``auto`` picks ``demo`` without a root
    and ``full`` with one.
    """

    root: str | None = None
    out: str | None = None
    profile: str = "auto"
    workers: int = 1
    glob: str = "**/*"
    demo_patients: int = 6
    demo_minutes: float = 10.0
    demo_seed: int = 0


@dataclass
class PipelineConfig:
    """The preprocessing stages (ARCHITECTURE.md section 5)."""

    path: str = "eeg"  # "eeg": 10-20 channels averaged to regions; "ieeg": every channel kept
    sfreq: float = 250.0
    epoch_s: float = 30.0
    min_epochs: int = 10
    l_freq: float | None = 0.5
    h_freq: float | None = 100.0
    notch: float | None = None  # None: detect 50 or 60 Hz from the spectrum; 0 disables
    regions: str = "default"
    sleep_staging: str = "auto"  # auto | yasa | gssc | none
    shard_max_epochs: int = 1000
    channels: list[str] = field(default_factory=list)  # empty: the 19 electrodes of the 10-20 set
