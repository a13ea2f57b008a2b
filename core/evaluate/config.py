"""Schema of the ``eval`` recipe node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class EvalConfig:
    """Linear probes on frozen embeddings with patient-level splits (``efm.evaluate``).

    ``seeds`` patient-level splits (and probe fits) are made per task, with ``test_fraction`` of the
    patients held out; ``C`` is the inverse L2 strength of the logistic regression. ``batch_size``
    is used to compute embeddings; ``max_epochs`` caps how many epochs are embedded (0: all).
    """

    probe: Literal["logistic"] = "logistic"
    tasks: list[str] = field(default_factory=lambda: ["seizure"])
    test_fraction: float = field(default=0.3, metadata={"gt": 0, "lt": 1})
    seeds: int = field(default=3, metadata={"ge": 1})
    C: float = field(default=1.0, metadata={"gt": 0})
    batch_size: int = field(default=64, metadata={"ge": 1})
    max_epochs: int = field(default=0, metadata={"ge": 0})
