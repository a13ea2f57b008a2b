"""Stage 3: channel standardisation to 10-20 names, channel types, and the 19 -> 8 regional grouping.

Names are matched after removing device prefixes (``EEG``, ``POL``), reference suffixes (``-REF``,
``-LE``, ``-AVG``, ``-A1`` ...), trailing dots (EEGMMIDB's ``Fc5.``) and case; the old names T3, T4,
T5, T6 are aliases of T7, T8, P7, P8. A name whose two halves are both electrodes (``Fp1-F7``) is a
bipolar derivation, which the regional path cannot use. The regional grouping is data
(``efm/data/regions.yaml`` or a YAML file given as ``pipeline.regions``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from efm.errors import ConfigError, ReaderError
from efm.interfaces import Recording

# the 19 electrodes of the 10-20 system, modern names, in the usual display order
STANDARD_1020 = (
    "Fp1",
    "Fp2",
    "F7",
    "F3",
    "Fz",
    "F4",
    "F8",
    "T7",
    "C3",
    "Cz",
    "C4",
    "T8",
    "P7",
    "P3",
    "Pz",
    "P4",
    "P8",
    "O1",
    "O2",
)
ALIASES = {"t3": "T7", "t4": "T8", "t5": "P7", "t6": "P8"}
_REF = r"(ref|le|re|ar|av|avg|average|a1|a2|m1|m2|a1a2|m1m2|a12|linked|lm|ref1)"
_PREFIX = re.compile(r"^(eeg|pol|seeg|ecog)[\s:_-]+", re.I)
_SUFFIX = re.compile(r"[\s_-]+" + _REF + r"$", re.I)
_TYPE_WORDS = {
    "eog": "eog",
    "emg": "emg",
    "ecg": "ecg",
    "ekg": "ecg",
    "chin": "emg",
    "loc": "eog",
    "roc": "eog",
}


def clean(name: str) -> str:
    """Strip prefixes, reference suffixes and trailing dots (``'EEG Fp1-Ref'`` -> ``'Fp1'``)."""
    s = _PREFIX.sub("", name.strip()).rstrip(".").strip()
    return _SUFFIX.sub("", s).strip()


@lru_cache(maxsize=1)
def _lookup() -> dict[str, str]:
    table = {n.lower(): n for n in STANDARD_1020}
    table.update(ALIASES)
    return table


def canonical(name: str) -> str | None:
    """The 10-20 name of a channel, or None when it is not one of the 19 electrodes."""
    return _lookup().get(clean(name).lower())


def is_bipolar(name: str) -> bool:
    """True for a derivation between two electrodes, e.g. ``Fp1-F7``."""
    parts = re.split(r"\s*-\s*", _PREFIX.sub("", name.strip()))
    return len(parts) == 2 and all(_lookup().get(p.rstrip(".").lower()) for p in parts)


def channel_type(name: str, given: str) -> str:
    """The type implied by a channel's name (EOG, EMG, ECG ...) or the type the reader gave."""
    words = set(re.split(r"[^a-z]+", name.lower()))
    for w, t in _TYPE_WORDS.items():
        if w in words:
            return t
    return given


def pick_channels(
    rec: Recording,
    picks: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
) -> Recording:
    """Keep the channels whose type (as :func:`channel_type` reads it) is in ``picks`` (all when
    empty) and whose name is not in ``exclude`` (case-insensitive)."""
    if not picks and not exclude:
        return rec
    drop = {n.lower() for n in exclude}
    keep = [
        i
        for i, (n, t) in enumerate(zip(rec.ch_names, rec.ch_types))
        if n.lower() not in drop and (not picks or channel_type(n, t) in picks)
    ]
    if not keep:
        raise ReaderError(f"{rec.source}: no channel left after picks {list(picks)} / exclude")
    if len(keep) == rec.n_chans:
        return rec
    return Recording(
        data=rec.data[keep],
        sfreq=rec.sfreq,
        ch_names=[rec.ch_names[i] for i in keep],
        ch_types=[rec.ch_types[i] for i in keep],
        ch_pos=None if rec.ch_pos is None else rec.ch_pos[keep],
        annotations=rec.annotations,
        patient_id=rec.patient_id,
        recording_id=rec.recording_id,
        sha256=rec.sha256,
        source=rec.source,
        modality=rec.modality,
        meas_date=rec.meas_date,
        extra=rec.extra,
    )


@lru_cache(maxsize=1)
def positions_1020() -> dict[str, np.ndarray]:
    """Head-frame positions (metres) of the 10-20 electrodes from MNE's template montage."""
    import mne

    try:
        mont = mne.channels.make_standard_montage("colin27_1020")
    except ValueError:  # MNE < 1.13
        mont = mne.channels.make_standard_montage("standard_1020")
    pos = mont.get_positions()["ch_pos"]
    lower = {k.lower(): v for k, v in pos.items()}
    return {n: np.asarray(lower[n.lower()], dtype=float) for n in STANDARD_1020}


def standardize(
    rec: Recording, channels: list[str] | None = None, min_electrodes: int = 10
) -> Recording:
    """Keep the 10-20 electrodes of ``rec`` in canonical order, renamed, typed eeg, positioned.

    Raises :class:`~efm.errors.ReaderError` ("unknown channel layout") when fewer than
    ``min_electrodes`` are found, naming what was found instead.
    """
    wanted = list(channels or STANDARD_1020)
    found: dict[str, int] = {}
    for i, (name, typ) in enumerate(zip(rec.ch_names, rec.ch_types)):
        canon = canonical(name)
        if canon in wanted and canon not in found and channel_type(name, typ) == "eeg":
            found[canon] = i
    if len(found) < min(min_electrodes, len(wanted)):
        bip = [n for n in rec.ch_names if is_bipolar(n)]
        why = (
            f"bipolar montage ({', '.join(bip[:3])} ...), referential channels are needed"
            if bip
            else f"channels {', '.join(rec.ch_names[:6])}{' ...' if rec.n_chans > 6 else ''}"
        )
        raise ReaderError(
            f"{rec.source}: unknown channel layout: {len(found)} of the {len(wanted)} 10-20 "
            f"electrodes found (need {min_electrodes}); {why}"
        )
    names = [n for n in wanted if n in found]
    idx = [found[n] for n in names]
    pos = positions_1020()
    return Recording(
        data=rec.data[idx],
        sfreq=rec.sfreq,
        ch_names=names,
        ch_types=["eeg"] * len(names),
        ch_pos=np.stack([pos.get(n, np.full(3, np.nan)) for n in names]),
        annotations=rec.annotations,
        patient_id=rec.patient_id,
        recording_id=rec.recording_id,
        sha256=rec.sha256,
        source=rec.source,
        modality="eeg",
        meas_date=rec.meas_date,
        extra={
            **rec.extra,
            "original_names": [rec.ch_names[i] for i in idx],
            "missing": [n for n in wanted if n not in found],
        },
    )


def ieeg_channels(rec: Recording) -> Recording:
    """The iEEG path: every signal channel kept (``misc`` dropped), types from names, positions kept."""
    types = [channel_type(n, t) for n, t in zip(rec.ch_names, rec.ch_types)]
    keep = [i for i, t in enumerate(types) if t != "misc"]
    if not keep:
        raise ReaderError(f"{rec.source}: unknown channel layout: no EEG/iEEG channels (all misc)")
    pos = rec.ch_pos[keep] if rec.ch_pos is not None else np.full((len(keep), 3), np.nan)
    tmpl = positions_1020()
    names = [rec.ch_names[i] for i in keep]
    for j, n in enumerate(names):  # scalp electrodes without positions get the template's
        canon = canonical(n)
        if canon and not np.isfinite(pos[j]).all() and types[keep[j]] == "eeg":
            pos[j] = tmpl[canon]
    return Recording(
        data=rec.data[keep],
        sfreq=rec.sfreq,
        ch_names=names,
        ch_types=[types[i] for i in keep],
        ch_pos=pos,
        annotations=rec.annotations,
        patient_id=rec.patient_id,
        recording_id=rec.recording_id,
        sha256=rec.sha256,
        source=rec.source,
        modality=rec.modality,
        meas_date=rec.meas_date,
        extra=rec.extra,
    )


def load_regions(source: str = "default") -> dict[str, tuple[str, ...]]:
    """Region name -> electrodes, from the shipped grouping or a YAML file."""
    stamp = Path(source).stat().st_mtime_ns if source != "default" and Path(source).is_file() else 0
    return _load_regions(source, stamp)


@lru_cache(maxsize=8)
def _load_regions(source: str, stamp: int) -> dict[str, tuple[str, ...]]:
    if source == "default":
        text = resources.files("efm.data").joinpath("regions.yaml").read_text("utf-8")
    else:
        if not Path(source).is_file():
            raise ConfigError(
                [f"pipeline.regions: {source!r} is neither 'default' nor a YAML file"]
            )
        text = Path(source).read_text(encoding="utf-8")
    doc = yaml.safe_load(text) or {}
    regions = {str(k): tuple(canonical(e) or e for e in v) for k, v in doc["regions"].items()}
    bad = [e for v in regions.values() for e in v if e not in STANDARD_1020]
    if bad:
        raise ConfigError([f"pipeline.regions: unknown electrodes {bad}; options: {STANDARD_1020}"])
    return regions


def region_matrix(
    ch_names: list[str], regions: dict[str, tuple[str, ...]], source: str = ""
) -> np.ndarray:
    """Averaging weights ``[n_regions, n_chans]`` over the electrodes present; raises if one is empty."""
    w = np.zeros((len(regions), len(ch_names)), dtype=np.float32)
    col = {n: i for i, n in enumerate(ch_names)}
    for r, (name, members) in enumerate(regions.items()):
        idx = [col[m] for m in members if m in col]
        if not idx:
            raise ReaderError(
                f"{source}: unknown channel layout: region {name!r} has none of its electrodes "
                f"({', '.join(members)})"
            )
        w[r, idx] = 1.0 / len(idx)
    return w
