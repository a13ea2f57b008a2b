"""Schema of the ``eval`` recipe node."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """Linear probes on frozen embeddings with patient-level splits."""

    probe: str = "logistic"
    tasks: list[str] = field(default_factory=lambda: ["seizure"])
    test_fraction: float = 0.3
    seeds: int = 3
    C: float = 1.0
