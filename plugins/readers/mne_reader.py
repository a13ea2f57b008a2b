"""The ``mne`` reader: every EEG/iEEG format that ``mne.io.read_raw`` reads, chosen by extension.

Implements the thin MNE reader of EPI-250k's pipeline (stage 2): Gramfort et al. (2013), "MEG and EEG
data analysis with MNE-Python", Front. Neurosci. 7:267; upstream https://github.com/mne-tools/mne-python.
Values are MNE's own (``raw.get_data()``, volts) cast to float32; annotations keep their onset
relative to the first sample, their duration, text and (where MNE has one) annotator. Channel types
are MNE's (read from the file where the format stores them, else ``eeg``); ``seeg``/``ecog``/``dbs``
mark an iEEG recording, and ``ch_type="seeg"|"ecog"`` retypes MNE's ``eeg`` channels of intracranial
recordings in formats that cannot say so (EDF, Persyst ``.lay``, Nihon Kohden). Every failure
becomes one-line :class:`efm.errors.ReaderError` with the reason; EDF/BDF files are checked for
truncation against their header first, because MNE pads a truncated EDF silently.

MNE is imported inside :meth:`MneReader.read`, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import ConfigError, ReaderError
from efm.interfaces import Annotation, Recording

log = logging.getLogger("efm.readers.mne")

# EEG/iEEG formats of mne.io.read_raw (MNE 1.13), by lower-case extension. MEG-, NIRS- and eye-
# tracking-only formats are left out; `.eeg` is Nihon Kohden (a BrainVision `.eeg` is read
# through its `.vhdr`).
EXTENSIONS = (
    ".edf",
    ".bdf",
    ".gdf",
    ".vhdr",
    ".ahdr",
    ".set",
    ".fif",
    ".fif.gz",
    ".cnt",
    ".mff",
    ".eeg",
    ".lay",
    ".data",
    ".cdt",
    ".dap",
    ".nedf",
    ".nxe",
    ".ns3",
    ".mefd",
)
IEEG_TYPES = {"seeg", "ecog", "dbs"}
CH_TYPES = (None, "eeg", "seeg", "ecog")  # values of the ch_type option
ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
ANNOTATIONS_ONLY = (
    "no signal channels: an annotation-only EDF+ (its one signal is 'EDF Annotations', e.g. a "
    "Sleep-EDF hypnogram); its events describe another recording and are not read on their own"
)
# MNE channel type -> efm channel type (anything else becomes "misc")
TYPE_MAP = {
    "eeg": "eeg",
    "seeg": "seeg",
    "ecog": "ecog",
    "dbs": "seeg",
    "eog": "eog",
    "emg": "emg",
    "ecg": "ecg",
}


@dataclass
class MneReaderConfig:
    """Options of the ``mne`` reader.

    Parameters
    ----------
    check_size : bool
        Refuse EDF/BDF files shorter than their header says (MNE would pad them).
    ch_type : str | None
        ``"seeg"`` or ``"ecog"``: the channels MNE types ``eeg`` are intracranial (formats such as
        EDF, Persyst ``.lay`` or Nihon Kohden store no type, and MNE calls every such channel
        ``eeg``); the recording's modality becomes ``ieeg``. ``"eeg"`` or None (the default) keeps
        MNE's types. Channels MNE types otherwise (``eog``, ``ecg``, ``seeg`` ...) keep their type.
    """

    check_size: bool = True
    ch_type: str | None = None


def suffix(path: str | Path) -> str:
    """Lower-case extension, with ``.fif.gz`` kept whole."""
    name = Path(path).name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else Path(name).suffix


def _edf_check(path: Path, size: int) -> None:
    """Raise when an EDF/BDF header is unreadable or promises more data than the file holds."""
    with open(path, "rb") as fh:
        head = fh.read(256)
        if len(head) < 256:
            raise ReaderError(
                f"{path}: truncated header ({size} bytes; an EDF/BDF header has 256+)"
            )
        if head[:8] not in (b"0       ", b"\xffBIOSEMI"):
            raise ReaderError(f"{path}: not an EDF/BDF file (first bytes {head[:8]!r})")
        try:
            n_header = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            n_signals = int(head[252:256].decode("ascii").strip())
        except ValueError as exc:
            raise ReaderError(f"{path}: corrupt EDF/BDF header ({exc})") from exc
        if n_signals <= 0 or n_header != 256 * (n_signals + 1):
            raise ReaderError(
                f"{path}: corrupt EDF/BDF header ({n_signals} signals but {n_header} header bytes)"
            )
        ext = fh.read(256 * n_signals)
        if len(ext) < 256 * n_signals:
            raise ReaderError(f"{path}: truncated header ({size} bytes, header needs {n_header})")
    labels = [ext[16 * i : 16 * i + 16].decode("latin-1").strip() for i in range(n_signals)]
    if all(lab in ANNOTATION_LABELS for lab in labels):
        raise ReaderError(f"{path}: {ANNOTATIONS_ONLY}")
    off = 216 * n_signals  # samples-per-record field, 8 bytes per signal
    try:
        per_record = sum(
            int(ext[off + 8 * i : off + 8 * i + 8].decode("ascii").strip())
            for i in range(n_signals)
        )
    except ValueError as exc:
        raise ReaderError(f"{path}: corrupt EDF/BDF header ({exc})") from exc
    width = 3 if head[:1] == b"\xff" else 2
    if n_records == 0 or (n_records < 0 and size <= n_header):
        raise ReaderError(f"{path}: no data records (zero-length recording)")
    if n_records > 0:
        expected = n_header + n_records * per_record * width
        if size < expected:
            raise ReaderError(
                f"{path}: truncated: header promises {n_records} records "
                f"({expected} bytes), file has {size} bytes"
            )


def _annotations(raw: Any) -> list[Annotation]:
    """MNE annotations as efm ones, onsets relative to the first sample, sorted by onset."""
    ann = raw.annotations
    if len(ann) == 0:
        return []
    onset = np.asarray(ann.onset, dtype=float)
    if ann.orig_time is not None:
        onset = onset - raw.first_samp / raw.info["sfreq"]
    extras = getattr(ann, "extras", None) or [{}] * len(ann)
    out = []
    for o, d, desc, ex in zip(onset, ann.duration, ann.description, extras):
        who = ""
        if isinstance(ex, dict):
            who = str(ex.get("annotator") or ex.get("author") or "")
        out.append(Annotation(float(o), float(d), str(desc), who))
    out.sort(key=lambda a: a.onset)
    return out


def _positions(raw: Any) -> np.ndarray | None:
    """Electrode positions in metres, NaN rows where unknown; None when none is known."""
    loc = np.array([ch["loc"][:3] for ch in raw.info["chs"]], dtype=float)  # [n_chans, 3]
    unknown = ~np.isfinite(loc).all(axis=1) | (np.abs(loc).sum(axis=1) == 0)
    if unknown.all():
        return None
    loc[unknown] = np.nan
    return loc


def _get_float32(raw: Any, chunk_s: float = 600.0) -> np.ndarray:
    """``raw.get_data()`` as float32, read in time chunks so a long file never exists in float64."""
    n = raw.n_times
    step = max(1, int(chunk_s * raw.info["sfreq"]))
    out = np.empty((len(raw.ch_names), n), dtype=np.float32)
    for start in range(0, n, step):  # chunks of ten minutes, not samples
        out[:, start : start + step] = raw.get_data(
            start=start, stop=min(n, start + step), verbose="error"
        )
    return out


class MneReader:
    """Reads any format of :data:`EXTENSIONS` through ``mne.io.read_raw``.

    Parameters
    ----------
    check_size : bool
        See :class:`MneReaderConfig`.
    """

    name = "mne"
    extensions = EXTENSIONS

    def __init__(self, check_size: bool = True, ch_type: str | None = None) -> None:
        if ch_type not in CH_TYPES:
            raise ConfigError(
                [f"reader mne: ch_type={ch_type!r}; options: {', '.join(map(str, CH_TYPES))}"]
            )
        self.check_size, self.ch_type = check_size, ch_type

    def read(self, path: str | Path) -> Recording:
        """Read the whole file into a :class:`~efm.interfaces.Recording` (volts, float32)."""
        path = Path(path)
        ext = suffix(path)
        if ext not in EXTENSIONS:
            raise ReaderError(
                f"{path}: extension {ext!r} is not read by the mne reader; "
                f"options: {', '.join(EXTENSIONS)}"
            )
        if not path.is_file():
            raise ReaderError(f"{path}: no such file")
        size = os.path.getsize(path)
        if size == 0:
            raise ReaderError(f"{path}: zero-length file")
        if self.check_size and ext in (".edf", ".bdf"):
            _edf_check(path, size)
        import mne

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                raw = mne.io.read_raw(path, preload=False, verbose="error")
                data = _get_float32(raw)  # [n_chans, n_times] volts
            except ReaderError:
                raise
            except Exception as exc:  # MNE raises many types for corrupt files
                msg = " ".join(str(exc).split()) or type(exc).__name__
                if "No appropriate channels found" in msg:  # nothing MNE can read as a signal
                    raise ReaderError(
                        f"{path}: no signal channels: the file holds no channel MNE reads as "
                        f"data (only annotations or status channels?)"
                    ) from exc
                raise ReaderError(f"{path}: cannot be read as {ext} by MNE ({msg[:300]})") from exc
        if data.size == 0 or data.shape[1] == 0:
            raise ReaderError(f"{path}: no samples (zero-length recording)")
        if not np.isfinite(data).all():
            raise ReaderError(f"{path}: non-finite samples in the data (corrupt file)")
        mne_types = raw.get_channel_types()
        if self.ch_type not in (None, "eeg"):  # the recipe says what MNE cannot know
            mne_types = [self.ch_type if t == "eeg" else t for t in mne_types]
        ch_types = [TYPE_MAP.get(t, "misc") for t in mne_types]
        meas = raw.info["meas_date"]
        return Recording(
            data=data,
            sfreq=float(raw.info["sfreq"]),
            ch_names=list(raw.ch_names),
            ch_types=ch_types,
            ch_pos=_positions(raw),
            annotations=_annotations(raw),
            source=str(path),
            modality="ieeg" if IEEG_TYPES & set(mne_types) else "eeg",
            meas_date=meas.timestamp() if meas is not None else None,
            extra={
                "reader": "mne",
                "format": ext,
                "mne_ch_types": list(raw.get_channel_types()),
                "line_freq": raw.info.get("line_freq"),
                "warnings": sorted({str(w.message).splitlines()[0][:200] for w in caught}),
            },
        )


def build(**cfg: Any) -> MneReader:
    """Builder registered as reader ``mne``."""
    return MneReader(**cfg)
