"""Schemas of the ``data`` and ``pipeline`` recipe nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DataConfig:
    """Where the recordings are and where prepared shards go.

    ``root`` None means the embedded demo corpus; ``profile`` ``auto`` picks ``demo`` without a root
    and ``full`` with one. ``out`` None means ``${EFM_CACHE:-~/.cache/efm}/shards/<hash>``, a hash of
    what decides the shards, not the recipe's name: recipes with the same data settings share it.
    ``patient_regex`` is searched in each file's path relative to ``root`` (POSIX separators); its
    group ``patient`` (or the whole match) is the patient id used for patient-level splits. The
    default takes the file name up to its first ``_`` or ``.`` (``chb01_03.edf`` -> ``chb01``,
    ``sub-01_task-rest_eeg.edf`` -> ``sub-01``).

    ``file_labels`` labels whole files: ``{task: {regex: label}}``. Each regex is searched in the
    file's path relative to ``root`` (POSIX separators), in order; the first that matches gives
    every epoch of the file ``labels[task] = label`` (an integer >= 0, overriding an annotation
    label of the same task); a file that none matches gets no ``task`` label. EEGMAT, for example:
    ``{arithmetic: {"_2\\.edf$": 1, "_1\\.edf$": 0}}``. It is part of the prepared data's identity.
    """

    root: str | None = None
    out: str | None = None
    profile: str = "auto"
    workers: int = field(default=1, metadata={"ge": 0})
    glob: str = "**/*"
    patient_regex: str = r"(?:^|/)(?P<patient>[^/_.]+)[^/]*$"
    demo_patients: int = field(default=12, metadata={"ge": 1})
    demo_minutes: float = field(default=10.0, metadata={"gt": 0})
    demo_seed: int = 0
    file_labels: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """The preprocessing stages (ARCHITECTURE.md section 5).

    ``path`` ``eeg`` standardises to the 10-20 electrodes (at least ``min_electrodes`` of them) and
    averages them into the regions of ``regions`` (``default`` or a YAML file); ``ieeg`` keeps every
    channel. ``notch`` None detects 50 or 60 Hz from the spectrum, 0 disables it. An annotated event
    labels an epoch when it overlaps it by ``label_min_overlap_s`` (or entirely, when shorter).
    ``taxonomy`` is ``default`` or a YAML file in the format of ``efm/data/taxonomy.yaml``.
    ``picks`` keeps channels of those types (``eeg``, ``seeg`` ...; types implied by names such as
    ``ECG`` count) and ``exclude`` drops channels by name, before the channel path: EEGMAT's
    ``ECG ECG`` and ``EEG A2-A1`` go with ``picks=[eeg] exclude=["EEG A2-A1"]``.
    """

    path: Literal["eeg", "ieeg"] = (
        "eeg"  # "eeg": 10-20 channels averaged to regions; "ieeg": every channel kept
    )
    sfreq: float = field(default=250.0, metadata={"gt": 0})
    epoch_s: float = field(default=30.0, metadata={"gt": 0})
    min_epochs: int = field(default=10, metadata={"ge": 1})
    l_freq: float | None = 0.5
    h_freq: float | None = 100.0
    notch: float | None = None  # None: detect 50 or 60 Hz from the spectrum; 0 disables
    regions: str = "default"
    sleep_staging: Literal["auto", "yasa", "gssc", "none"] = "auto"
    shard_max_epochs: int = field(default=1000, metadata={"ge": 1})
    channels: list[str] = field(default_factory=list)  # empty: the 19 electrodes of the 10-20 set
    min_electrodes: int = field(default=10, metadata={"ge": 1})
    label_min_overlap_s: float = field(default=10.0, metadata={"ge": 0})
    taxonomy: str = "default"
    picks: list[str] = field(default_factory=list)  # channel types kept (empty: all)
    exclude: list[str] = field(default_factory=list)  # channel names dropped (case-insensitive)
