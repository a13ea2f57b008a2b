"""A minimal Micromed TRC (header type 4) writer for tests.

Layout as read by ``neo.rawio.MicromedRawIO`` and ``micromed_io``: a 640-byte header with the
15 zone descriptors at byte 176, then the zones (ORDER, LABCOD, NOTE, ...), then multiplexed unsigned
samples ``[n_times, n_chans]``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

ZONES = (
    "ORDER",
    "LABCOD",
    "NOTE",
    "FLAGS",
    "TRONCA",
    "IMPED_B",
    "IMPED_E",
    "MONTAGE",
    "COMPRESS",
    "AVERAGE",
    "HISTORY",
    "DVIDEO",
    "EVENT A",
    "EVENT B",
    "TRIGGER",
)
UNIT_CODES = {"nV": -1, "uV": 0, "mV": 1, "V": 2, "percent": 100}


@dataclass
class TrcSpec:
    """What to write. ``raw`` is ``[n_times, n_chans]`` unsigned integers as stored."""

    raw: np.ndarray
    sfreq: int = 256
    ch_names: list[str] = field(default_factory=list)
    grounds: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)  # "uV" by default
    logical: tuple[int, int, int] = (0, 65535, 32768)  # min, max, ground
    physical: list[tuple[int, int]] = field(default_factory=list)  # (min, max) per channel
    notes: list[tuple[int, str]] = field(default_factory=list)  # (sample, text <= 40 bytes cp1252)
    triggers: list[tuple[int, int]] = field(default_factory=list)  # (sample, code)
    events_a: list[tuple[int, int, int]] = field(default_factory=list)  # (code, start, stop)
    events_b: list[tuple[int, int, int]] = field(default_factory=list)
    segments: list[tuple[int, int]] = field(default_factory=list)  # (time in samples, data offset)
    rec_datetime: datetime = datetime(2024, 3, 5, 14, 30, 15)
    surname: str = "Muster"
    name: str = "Hans"
    birth: tuple[int, int, int] = (7, 11, 1980)  # day, month, year
    header_version: int = 4
    order: list[int] | None = None  # LABCOD entry of each stored channel (default: reversed)


def default_spec(
    n_chans: int = 6, seconds: float = 4.0, sfreq: int = 256, seed: int = 0, **kw: object
) -> TrcSpec:
    """A spec with EEG-like random data, notes (one with umlauts), triggers and A/B events."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    sig = 30 * np.sin(2 * np.pi * 10 * t)[:, None] + rng.normal(0, 20, (n, n_chans))  # µV
    names = ["Fp1", "Fp2", "C3", "C4", "O1", "O2", "T3", "T4", "Fz", "Cz", "Pz", "EKG"][:n_chans]
    names += [f"X{i}" for i in range(len(names), n_chans)]
    physical = [(-3200, 3200)] * n_chans
    gain = 6400 / 65536
    raw = np.clip(np.round(sig / gain) + 32768, 0, 65535).astype("<u2")
    spec = TrcSpec(
        raw=raw,
        sfreq=sfreq,
        ch_names=names,
        grounds=["G2"] * n_chans,
        units=["uV"] * n_chans,
        physical=physical,
        notes=[
            (int(0.5 * sfreq), "Augen zu"),
            (int(1.25 * sfreq), "Anfall Beginn äöü"),
            (int(2.0 * sfreq), "eyes open"),
        ],
        triggers=[(int(0.75 * sfreq), 1), (int(1.5 * sfreq), 2), (int(3.0 * sfreq), 7)],
        events_a=[(3, int(1.0 * sfreq), int(1.5 * sfreq))],
        events_b=[(5, int(2.5 * sfreq), int(3.5 * sfreq))],
    )
    for k, v in kw.items():
        setattr(spec, k, v)
    return spec


def write_trc(path: str | Path, spec: TrcSpec, truncate: int = 0) -> Path:
    """Write ``spec`` to ``path`` (``truncate`` drops that many bytes from the end)."""
    path = Path(path)
    n_times, n_chan = spec.raw.shape
    n_bytes = spec.raw.dtype.itemsize
    order = spec.order if spec.order is not None else list(range(n_chan))[::-1]
    n_lab = max(order) + 1
    sizes = {
        "ORDER": 2 * 256,
        "LABCOD": 128 * n_lab,
        "NOTE": 44 * 32,
        "FLAGS": 8 * 16,
        "TRONCA": 8 * 100,
        "IMPED_B": 2 * 256,
        "IMPED_E": 2 * 256,
        "MONTAGE": 4096,
        "COMPRESS": 128,
        "AVERAGE": 128,
        "HISTORY": 64,
        "DVIDEO": 16 * 4,
        "EVENT A": 12 * 16,
        "EVENT B": 12 * 16,
        "TRIGGER": 6 * 64,
    }
    pos, zones = 640, {}
    for z in ZONES:
        zones[z] = (pos, sizes[z])
        pos += sizes[z]
    data_start = pos
    buf = bytearray(data_start)
    buf[0:32] = b"MICROMED  Brain-Quick - System 98".ljust(32)[:32]
    buf[32:64] = b"efm test lab".ljust(32)
    buf[64:86] = spec.surname.encode("latin-1").ljust(22)
    buf[86:106] = spec.name.encode("latin-1").ljust(20)
    d, m, y = spec.birth
    struct.pack_into("bbb", buf, 106, m, d, y - 1900)
    r = spec.rec_datetime
    struct.pack_into("bbbbbb", buf, 128, r.day, r.month, r.year - 1900, r.hour, r.minute, r.second)
    struct.pack_into("<hH", buf, 134, 18, 74)
    struct.pack_into("<IHHHH", buf, 138, data_start, n_chan, n_chan * n_bytes, spec.sfreq, n_bytes)
    buf[175] = spec.header_version
    for i, z in enumerate(ZONES):
        struct.pack_into("<8sII", buf, 176 + 16 * i, z.encode().ljust(8), *zones[z])
    np.frombuffer(buf, "<u2", n_chan, zones["ORDER"][0])[:] = order  # writable view of bytearray
    lab = zones["LABCOD"][0]
    lmin, lmax, lground = spec.logical
    for c, code in enumerate(order):
        off = lab + code * 128
        pmin, pmax = spec.physical[c]
        unit = UNIT_CODES[spec.units[c] if spec.units else "uV"]
        struct.pack_into(
            "<BB6s6siiiiih",
            buf,
            off,
            1,
            0,
            spec.ch_names[c].encode("latin-1"),
            (spec.grounds[c] if spec.grounds else "G2").encode(),
            lmin,
            lmax,
            lground,
            pmin,
            pmax,
            unit,
        )
        struct.pack_into("<HHHHHH", buf, off + 36, 150, 0, 1200, 0, 1, c)  # filters, rate coef, pos
    note = zones["NOTE"][0]
    for i, (s, text) in enumerate(spec.notes):
        struct.pack_into("<I40s", buf, note + 44 * i, s, text.encode("cp1252"))
    tr = zones["TRONCA"][0]
    for i, (t, s) in enumerate(spec.segments):
        struct.pack_into("<II", buf, tr + 8 * i, t, s)
    for z, evs in (("EVENT A", spec.events_a), ("EVENT B", spec.events_b)):
        for i, (code, a, b) in enumerate(evs):
            struct.pack_into("<III", buf, zones[z][0] + 12 * i, code, a, b)
    trig, n_trig = zones["TRIGGER"][0], zones["TRIGGER"][1] // 6
    for i in range(n_trig):  # unused slots hold the 0xFFFFFFFF/0xFFFF sentinel
        s, code = spec.triggers[i] if i < len(spec.triggers) else (0xFFFFFFFF, 0xFFFF)
        struct.pack_into("<IH", buf, trig + 6 * i, s, code)
    payload = bytes(buf) + np.ascontiguousarray(spec.raw).tobytes()
    path.write_bytes(payload[: len(payload) - truncate] if truncate else payload)
    return path


def expected_volts(spec: TrcSpec) -> np.ndarray:
    """The signals in volts ``[n_chans, n_times]`` as a reader must return them (float64)."""
    lmin, lmax, lground = spec.logical
    scale = {"nV": 1e-9, "uV": 1e-6, "mV": 1e-3, "V": 1.0, "percent": 1.0}
    out = np.empty(spec.raw.shape[::-1])
    for c, (pmin, pmax) in enumerate(spec.physical):
        gain = (pmax - pmin) / (lmax - lmin + 1)
        unit = spec.units[c] if spec.units else "uV"
        out[c] = (spec.raw[:, c].astype(np.float64) - lground) * gain * scale[unit]
    return out
