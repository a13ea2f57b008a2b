"""A small EDF+C writer (16-bit, 1 s data records, an ``EDF Annotations`` signal).

Written from the EDF+ specification (Kemp & Olivan 2003, https://www.edfplus.info/specs/edfplus.html)
for the demo corpus and test fixtures; MNE reads what it writes (tested). Annotation texts are UTF-8,
as EDF+ allows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from einops import rearrange


def _field(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:  # numbers are shortened, never silently corrupted
        text = text[:width]
    return text.ljust(width).encode("latin-1")


def _num(x: float, width: int = 8) -> str:
    s = f"{x:.6g}"
    return s if len(s) <= width else f"{x:.{max(width - 6, 1)}e}"


def _tal(onset: float, duration: float, text: str) -> bytes:
    dur = f"\x15{duration:.6g}" if duration > 0 else ""
    return f"{onset:+.6f}{dur}\x14{text}\x14\x00".encode()


def write_edf(
    path: str | Path,
    data_uv: np.ndarray,
    sfreq: float,
    ch_names: list[str],
    annotations: Sequence[tuple[float, float, str]] = (),
    patient: str = "X X X X",
    start: dt.datetime | None = None,
    phys_range: float = 3276.7,
) -> Path:
    """Write ``data_uv`` (``[n_chans, n_times]``, microvolts) as an EDF+C file.

    ``sfreq`` must be an integer number of samples per second; the signal is cut to whole seconds
    and clipped to ``±phys_range`` µV. ``annotations`` are ``(onset_s, duration_s, text)``.
    """
    path = Path(path)
    spr = int(round(sfreq))
    if abs(spr - sfreq) > 1e-9:
        raise ValueError(f"sfreq must be whole samples per second, got {sfreq}")
    n_rec = data_uv.shape[1] // spr
    n_c = len(ch_names)
    dmin, dmax = -32768, 32767
    scale = (dmax - dmin) / (2 * phys_range)
    dig = np.clip(np.round((data_uv[:, : n_rec * spr] + phys_range) * scale + dmin), dmin, dmax)
    dig = rearrange(dig.astype("<i2"), "c (r s) -> r (c s)", s=spr)  # [records, C * spr]
    # annotations: each record opens with its time-keeping TAL, then the events starting in it
    per_rec: list[list[bytes]] = [[_tal(r, 0, "")[:-1] + b"\x00"] for r in range(n_rec)]
    for onset, duration, text in sorted(annotations):
        per_rec[min(int(onset), n_rec - 1)].append(_tal(onset, duration, text))
    ann_bytes = max(len(b"".join(p)) for p in per_rec)
    ann_bytes += ann_bytes % 2
    ann = np.zeros((n_rec, ann_bytes), dtype=np.uint8)
    for r, parts in enumerate(per_rec):
        blob = b"".join(parts)
        ann[r, : len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    start = start or dt.datetime(2020, 1, 1, 8, 0, 0)
    ns = n_c + 1
    labels = [*ch_names, "EDF Annotations"]
    head = b"".join(
        [
            _field(0, 8),
            _field(patient, 80),
            _field(f"Startdate {start.strftime('%d-%b-%Y').upper()} X X efm", 80),
            _field(start.strftime("%d.%m.%y"), 8),
            _field(start.strftime("%H.%M.%S"), 8),
            _field(256 * (ns + 1), 8),
            _field("EDF+C", 44),
            _field(n_rec, 8),
            _field(1, 8),
            _field(ns, 4),
        ]
    )
    cols = [
        [_field(lab, 16) for lab in labels],
        [_field("AgAgCl electrode" if i < n_c else "", 80) for i in range(ns)],
        [_field("uV" if i < n_c else "", 8) for i in range(ns)],
        [_field(_num(-phys_range) if i < n_c else -1, 8) for i in range(ns)],
        [_field(_num(phys_range) if i < n_c else 1, 8) for i in range(ns)],
        [_field(dmin, 8) for _ in range(ns)],
        [_field(dmax, 8) for _ in range(ns)],
        [_field("HP:0.1Hz LP:100Hz" if i < n_c else "", 80) for i in range(ns)],
        [_field(spr if i < n_c else ann_bytes // 2, 8) for i in range(ns)],
        [_field("", 32) for _ in range(ns)],
    ]
    head += b"".join(b"".join(c) for c in cols)
    body = np.concatenate([dig.view(np.uint8), ann], axis=1)  # [records, bytes]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.write(body.tobytes())
    return path
