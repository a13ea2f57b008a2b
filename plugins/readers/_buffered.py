"""Shared pieces of the buffered Neo-style readers (Micromed ``.TRC``, Nicolet ``.e``).

Neo (Garcia et al. 2014, Front. Neuroinform. 8:10; https://github.com/NeuralEnsemble/python-neo)
defines the rawio API these readers follow. Stock Neo reads signal chunks through ``mmap``: every
page fault is a small, readahead-limited request, which is slow on network filesystems. Here every
requested chunk is one ``seek`` plus one ``readinto`` of a contiguous byte range into a freshly
allocated (preallocated-per-chunk) numpy buffer; :class:`BufferedFile` counts those calls so tests
can assert exactly one read per chunk.

This module is light (numpy only): the registration hook imports the config dataclasses from here
without importing Neo.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import ReaderError
from efm.interfaces import Annotation, Recording

log = logging.getLogger("efm.readers.buffered")

VOLT_SCALE = {"nV": 1e-9, "uV": 1e-6, "µV": 1e-6, "μV": 1e-6, "mV": 1e-3, "V": 1.0}


@dataclass
class MicromedConfig:
    """Options of the ``micromed`` reader.

    Parameters
    ----------
    ch_type : str
        Type given to channels whose name does not say otherwise (``"eeg"``, ``"seeg"``, ``"ecog"``).
    tz : str | None
        IANA time zone of the recording site; the file stores local wall-clock time. ``None`` reads
        it as UTC.
    strict : bool
        Refuse a data region that is not a whole number of sample frames (a truncated file).
    """

    ch_type: str = "eeg"
    tz: str | None = None
    strict: bool = True


@dataclass
class NicoletConfig:
    """Options of the ``nicolet`` reader.

    Parameters
    ----------
    ch_type : str
        Type given to channels whose name does not say otherwise.
    tz : str | None
        IANA time zone of the recording site (segment and event dates are local wall-clock time in
        ``.e`` files); ``None`` reads them as UTC.
    stream : int
        Which signal stream (one sampling rate) becomes the Recording; ``-1`` picks the stream with
        the most channels (ties: the highest rate).
    """

    ch_type: str = "eeg"
    tz: str | None = None
    stream: int = -1


class BufferedFile:
    """A file opened once, read by ``seek`` + one ``readinto`` per request, with call counters.

    Parameters
    ----------
    path : str | Path
        The file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.n_reads = 0  # readinto calls
        self.n_seeks = 0
        self.n_bytes = 0
        self._f: Any = None

    def _file(self) -> Any:
        if self._f is None or self._f.closed:
            try:
                self._f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open between chunks
            except OSError as err:
                raise ReaderError(f"cannot open {self.path}: {err.strerror or err}") from err
            if hasattr(os, "posix_fadvise"):
                try:
                    os.posix_fadvise(self._f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                except OSError:  # pragma: no cover - not supported by some filesystems
                    pass
        return self._f

    @property
    def size(self) -> int:
        return os.fstat(self._file().fileno()).st_size

    def read_into(self, offset: int, out: np.ndarray) -> np.ndarray:
        """Fill the C-contiguous array ``out`` with the bytes at ``offset``: one seek, one read."""
        f = self._file()
        view = memoryview(out.reshape(-1).view(np.uint8))
        f.seek(offset)
        self.n_seeks += 1
        got = f.readinto(view)
        self.n_reads += 1
        got = got or 0
        while got < len(view):  # only on pipes/odd filesystems; regular files fill in one call
            more = f.readinto(view[got:])
            self.n_reads += 1
            if not more:
                raise ReaderError(
                    f"{self.path.name}: truncated: wanted {len(view)} bytes at offset {offset}, "
                    f"the file ends after {got}"
                )
            got += more
        self.n_bytes += got
        return out

    def read_bytes(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` (one seek, one read)."""
        buf = np.empty(n, np.uint8)
        return self.read_into(offset, buf).tobytes()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def reset_counters(self) -> None:
        self.n_reads = self.n_seeks = self.n_bytes = 0


def check_file(path: str | Path, min_size: int) -> Path:
    """The path, or a ReaderError saying it is missing, a directory, empty or too short."""
    path = Path(path)
    if not path.exists():
        raise ReaderError(f"{path}: no such file")
    if not path.is_file():
        raise ReaderError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise ReaderError(f"{path.name}: zero-length file")
    if size < min_size:
        raise ReaderError(f"{path.name}: truncated header ({size} bytes, need at least {min_size})")
    return path


_TYPE_PATTERNS = (
    ("ecg", re.compile(r"^(ecg|ekg)", re.I)),
    ("eog", re.compile(r"^(eog|veog|heog|loc|roc)", re.I)),
    ("emg", re.compile(r"^(emg|chin)", re.I)),
    ("misc", re.compile(r"^(mkr|trig|status|event|photic|resp|spo2|sao2|pulse|pleth|dc\d)", re.I)),
)


def guess_ch_types(names: list[str], units: list[str], default: str) -> list[str]:
    """Channel types from names (ECG/EOG/EMG/markers) and units (non-voltage -> misc)."""
    out = []
    for name, unit in zip(names, units):
        kind = default
        for ch_type, pattern in _TYPE_PATTERNS:
            if pattern.match(name.strip()):
                kind = ch_type
                break
        if unit not in VOLT_SCALE:
            kind = "misc"
        out.append(kind)
    return out


def pseudonym(prefix: str, *fields: object) -> str:
    """A stable pseudonymous id from identifying fields (the fields themselves are never kept)."""
    text = "\x1f".join(str(f) for f in fields)
    if not text.strip("\x1f "):
        return ""
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def local_to_utc(naive: datetime, tz: str | None) -> datetime:
    """Attach the site time zone to a naive local wall-clock time and convert it to UTC."""
    if tz is None:
        return naive.replace(tzinfo=UTC)
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(tz)
    except Exception as err:  # ZoneInfoNotFoundError, ValueError
        raise ReaderError(
            f"unknown time zone {tz!r} (use an IANA name like 'Europe/Zurich')"
        ) from err
    return naive.replace(tzinfo=zone).astimezone(UTC)


def rawio_to_recording(
    rawio: Any,
    stream_index: int,
    *,
    path: Path,
    ch_types: list[str],
    annotations: list[Annotation],
    patient_id: str,
    meas_date: float | None,
    modality: str,
    extra: dict[str, Any],
    chunk_bytes: int = 32 << 20,
) -> Recording:
    """Read every segment of one stream chunk-wise and build a Recording in volts.

    Segments are concatenated; each junction gets MNE's ``BAD boundary`` and ``EDGE boundary``
    annotations (as ``mne.concatenate_raws`` adds), and ``extra["segments"]`` lists where each
    segment starts in the concatenated signal and in file time.
    """
    stream_id = rawio.header["signal_streams"][stream_index]["id"]
    chans = rawio.header["signal_channels"]
    chans = chans[chans["stream_id"] == stream_id]
    units = [str(u) for u in chans["units"]]
    scale = np.array([VOLT_SCALE.get(u, 1.0) for u in units], dtype=np.float64)
    gain = (chans["gain"].astype(np.float64) * scale)[:, None]  # [C, 1]
    offset = (chans["offset"].astype(np.float64) * scale)[:, None]
    sfreq = float(rawio.get_signal_sampling_rate(stream_index))
    n_seg = rawio.segment_count(0)
    sizes = [rawio.get_signal_size(0, s, stream_index) for s in range(n_seg)]
    total = int(sum(sizes))
    if total == 0:
        raise ReaderError(f"{path.name}: the recording holds no samples")
    data = np.empty((len(chans), total), dtype=np.float32)  # [C, T]
    step = max(1, chunk_bytes // max(1, 2 * len(chans)))  # frames per read
    segments, pos = [], 0
    for s, n in enumerate(sizes):
        for i0 in range(0, n, step):  # one buffered read per chunk of ~chunk_bytes
            i1 = min(n, i0 + step)
            raw = rawio.get_analogsignal_chunk(0, s, i0, i1, stream_index)  # [T, C]
            out = data[:, pos + i0 : pos + i1]
            np.add(raw.T * gain, offset, out=out, casting="unsafe")  # float64, then float32
        t_start = float(rawio.segment_t_start(0, s))
        segments.append({"start_s": pos / sfreq, "n_times": int(n), "t_start": t_start})
        pos += n
    bounds = [
        Annotation(seg["start_s"], 0.0, kind, "efm.reader")
        for seg in segments[1:]
        for kind in ("BAD boundary", "EDGE boundary")
    ]
    anns = sorted(annotations + bounds, key=lambda a: (a.onset, a.description))
    extra = {**extra, "segments": segments, "units": units, "stream": str(stream_id)}
    return Recording(
        data,
        sfreq,
        [str(n) for n in chans["name"]],
        ch_types,
        annotations=anns,
        patient_id=patient_id,
        recording_id=path.stem,
        source=str(path),
        modality=modality,
        meas_date=meas_date,
        extra=extra,
    )


def to_posix(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()
