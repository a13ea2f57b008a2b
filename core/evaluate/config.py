"""Schema of the ``eval`` recipe node."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """Linear probes on frozen embeddings with patient-level splits (``efm.evaluate``).

    ``seeds`` patient-level splits (and probe fits) are made per task, with ``test_fraction`` of the
    patients held out; ``C`` is the inverse L2 strength of the logistic regression. ``batch_size``
    is used to compute embeddings; ``max_epochs`` caps how many epochs are embedded (0: all).
    """

    probe: str = "logistic"
    tasks: list[str] = field(default_factory=lambda: ["seizure"])
    test_fraction: float = 0.3
    seeds: int = 3
    C: float = 1.0
    batch_size: int = 64
    max_epochs: int = 0
