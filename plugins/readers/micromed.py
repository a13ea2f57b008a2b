"""Micromed ``.TRC`` (header type 4, "System98") with buffered chunk reads.

Implements the Neo rawio API (Garcia et al. 2014, Front. Neuroinform. 8:10;
https://github.com/NeuralEnsemble/python-neo, ``neo/rawio/micromedrawio.py``) for the TRC layout
documented by Micromed and used by Neo and micromed-io
(https://github.com/etiennedemontalivet/micromed-io). Header, channels, units, segments (TRONCA) and
the four event zones (Trigger, Note, Event A, Event B) follow Neo's interpretation, so the header
arrays compare field by field with ``neo.rawio.MicromedRawIO``. Differences: the header is read with
two reads instead of many small ones and ``np.memmap``; a signal chunk is one seek plus one
``readinto`` of the multiplexed frames ``[i_start, i_stop)`` (Neo maps the file with ``mmap``);
unit code 2 is ``"V"`` (Neo writes ``1``); corrupt or truncated files raise
:class:`efm.errors.ReaderError`.
"""

from __future__ import annotations

import logging
import struct
from datetime import datetime
from pathlib import Path

import numpy as np
from neo.rawio.baserawio import (
    BaseRawIO,
    _event_channel_dtype,
    _signal_buffer_dtype,
    _signal_channel_dtype,
    _signal_stream_dtype,
    _spike_channel_dtype,
)

from efm.errors import ReaderError
from efm.interfaces import Annotation, Recording
from efm_plugins.readers._buffered import (
    BufferedFile,
    MicromedConfig,
    check_file,
    guess_ch_types,
    local_to_utc,
    pseudonym,
    rawio_to_recording,
    to_posix,
)

log = logging.getLogger("efm.readers.micromed")

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
UNITS = {-1: "nV", 0: "uV", 1: "mV", 2: "V", 100: "percent", 101: "bpm", 102: "dimensionless"}
EVENT_DTYPES = {  # zone -> (Neo event channel name, record layout, channel type)
    "TRIGGER": ("Trigger", np.dtype([("start", "<u4"), ("label", "<u2")]), "event"),
    "NOTE": ("Note", np.dtype([("start", "<u4"), ("label", "S40")]), "event"),
    "EVENT A": (
        "Event A",
        np.dtype([("label", "<u4"), ("start", "<u4"), ("stop", "<u4")]),
        "epoch",
    ),
    "EVENT B": (
        "Event B",
        np.dtype([("label", "<u4"), ("start", "<u4"), ("stop", "<u4")]),
        "epoch",
    ),
}
HEADER_MIN = 176 + 16 * len(ZONES)


class MicromedBufferedRawIO(BaseRawIO):
    """Neo rawio for Micromed ``.TRC`` files whose chunk reads are one ``readinto`` each.

    Parameters
    ----------
    filename : str | Path
        The ``.TRC`` file.
    strict : bool
        Raise :class:`~efm.errors.ReaderError` when the data region ends in a partial frame.

    Attributes
    ----------
    file : BufferedFile
        The open file; ``file.n_reads`` counts read calls (one per signal chunk).
    """

    extensions = ["trc", "TRC"]
    rawmode = "one-file"

    def __init__(self, filename: str | Path = "", strict: bool = True) -> None:
        BaseRawIO.__init__(self)
        self.filename = str(filename)
        self.strict = strict
        self.file = BufferedFile(filename)

    def _source_name(self) -> str:
        return self.filename

    # -- header -------------------------------------------------------------------------------
    def _parse_header(self) -> None:
        path = check_file(self.filename, HEADER_MIN)
        f, name = self.file, path.name
        size = f.size
        head = f.read_bytes(0, HEADER_MIN)
        data_start, n_chan, _mux, rate_min, n_bytes = struct.unpack_from("<IHHHH", head, 138)
        version = head[175]
        if version != 4:
            raise ReaderError(
                f"{name}: not a Micromed TRC type-4 header (header type byte {version})"
            )
        zones = {}
        for i, zname in enumerate(ZONES):
            label, pos, length = struct.unpack_from("<8sII", head, 176 + 16 * i)
            if label.decode("latin-1").strip(" \x00") != zname:
                raise ReaderError(
                    f"{name}: corrupt header: zone {i} is {label!r}, expected {zname!r}"
                )
            if pos + length > size:
                raise ReaderError(
                    f"{name}: corrupt or truncated header: zone {zname} ends at "
                    f"{pos + length} beyond the file size {size}"
                )
            zones[zname] = (pos, length)
        if n_chan == 0 or n_bytes not in (1, 2, 4) or rate_min == 0:
            raise ReaderError(
                f"{name}: corrupt header: {n_chan} channels, {n_bytes} bytes per "
                f"sample, base rate {rate_min} Hz"
            )
        if not HEADER_MIN <= data_start <= size:
            raise ReaderError(
                f"{name}: corrupt header: data offset {data_start} outside the file ({size} bytes)"
            )
        end = max([data_start] + [p + n for p, n in zones.values()])
        head = f.read_bytes(0, end)  # the whole header region in one read

        surname = head[64:86].rstrip(b" \x00").decode("latin-1")
        first = head[86:106].rstrip(b" \x00").decode("latin-1")
        bm, bd, by = struct.unpack_from("bbb", head, 106)
        day, month, year, hour, minute, sec = struct.unpack_from("bbbbbb", head, 128)
        try:
            self.rec_datetime = datetime(year + 1900, month, day, hour, minute, sec)
        except ValueError as err:
            raise ReaderError(f"{name}: corrupt header: recording date {err}") from err
        self._patient = (surname, first, f"{by}-{bm}-{bd}")

        frame = n_chan * n_bytes
        n_frames, rest = divmod(size - data_start, frame)
        if rest:
            msg = (
                f"{name}: truncated: the data region ({size - data_start} bytes) is not a whole "
                f"number of {frame}-byte frames"
            )
            if self.strict:
                raise ReaderError(msg)
            log.warning("%s; the partial frame is ignored", msg)
        self._data_start, self._n_chan, self._frame = data_start, n_chan, frame
        self._dtype = np.dtype(f"<u{n_bytes}")

        pos, _ = zones["ORDER"]
        order = np.frombuffer(head, "<u2", n_chan, pos).astype(np.int64)
        lab_pos, lab_len = zones["LABCOD"]
        if (order * 128 + 128 > lab_len).any():
            raise ReaderError(
                f"{name}: corrupt header: channel codes point outside the LABCOD zone"
            )
        rec = np.dtype(
            [
                ("status", "u1"),
                ("type", "u1"),
                ("name", "S6"),
                ("ground", "S6"),
                ("lmin", "<i4"),
                ("lmax", "<i4"),
                ("lground", "<i4"),
                ("pmin", "<i4"),
                ("pmax", "<i4"),
                ("units", "<i2"),
                ("filters", "<u2", 4),
                ("rate", "<u2"),
            ]
        )
        rec = np.dtype(rec.descr + [("_free", f"V{128 - rec.itemsize}")])  # one 128-byte entry
        labs = np.frombuffer(head, rec, lab_len // 128, lab_pos)[order]
        names = [bytes(n).rstrip(b"\x00 ").decode("latin-1") for n in labs["name"]]
        self._grounds = [bytes(g).rstrip(b"\x00 ").decode("latin-1") for g in labs["ground"]]
        span = labs["lmax"].astype(np.float64) - labs["lmin"] + 1
        if (span <= 0).any():
            raise ReaderError(f"{name}: corrupt header: logical range of a channel is empty")
        gain = (labs["pmax"].astype(np.float64) - labs["pmin"]) / span
        offset = -labs["lground"] * gain
        units = [UNITS.get(int(k), "uV") for k in labs["units"]]
        rates = labs["rate"].astype(np.float64) * rate_min
        if np.unique(rates).size != 1:
            raise ReaderError(
                f"{name}: channels have different sampling rates {sorted(set(rates))}; "
                "mixed-rate TRC files are not supported"
            )
        self._sfreq = float(rates[0])
        if self._sfreq <= 0:
            raise ReaderError(f"{name}: corrupt header: sampling rate {self._sfreq} Hz")
        chans = [
            (names[i], str(i), self._sfreq, self._dtype.str, units[i], gain[i], offset[i], "0", "")
            for i in range(n_chan)
        ]

        # segments (TRONCA): (time in samples, sample offset in the data), ended by (0, 0)
        pos, length = zones["TRONCA"]
        tronca = np.frombuffer(head, "<u4", min(length // 4, 200) // 2 * 2, pos).reshape(-1, 2)
        stop = np.flatnonzero((tronca == 0).all(axis=1))
        tronca = tronca[: stop[0] if stop.size else len(tronca)]
        self.info_segments = [tuple(int(v) for v in row) for row in tronca] or [(0, 0)]
        limits = [t for _, t in self.info_segments] + [n_frames]
        if any(b < a for a, b in zip(limits, limits[1:])):
            raise ReaderError(
                f"{name}: corrupt TRONCA zone: segment offsets {limits[:-1]} are not "
                f"increasing within {n_frames} frames"
            )
        self._seg_limits = limits

        self._raw_events = []
        for zname, (_label, dt, _kind) in EVENT_DTYPES.items():
            pos, length = zones[zname]
            ev = np.frombuffer(head, dt, length // dt.itemsize, pos)
            self._raw_events.append(
                [
                    ev[(ev["start"] >= a) & (ev["start"] < b) & (ev["start"] != 0)]
                    for a, b in zip(limits, limits[1:])
                ]
            )

        self.header = {
            "nb_block": 1,
            "nb_segment": [len(self.info_segments)],
            "signal_buffers": np.array([], dtype=_signal_buffer_dtype),
            "signal_streams": np.array([("Signals", "0", "")], dtype=_signal_stream_dtype),
            "signal_channels": np.array(chans, dtype=_signal_channel_dtype),
            "spike_channels": np.array([], dtype=_spike_channel_dtype),
            "event_channels": np.array(
                [(lab, "", kind) for lab, _, kind in EVENT_DTYPES.values()],
                dtype=_event_channel_dtype,
            ),
        }
        self._generate_minimal_annotations()
        for d in (
            self.raw_annotations["blocks"][0],
            self.raw_annotations["blocks"][0]["segments"][0],
        ):
            d["rec_datetime"] = self.rec_datetime
            d["header_version"] = version
        sig = self.raw_annotations["blocks"][0]["segments"][0]["signals"][0]
        sig["__array_annotations__"]["ground"] = np.array(self._grounds)

    # -- sizes and times ----------------------------------------------------------------------
    def _segment_t_start(self, block_index: int, seg_index: int) -> float:
        return self.info_segments[seg_index][0] / self._sfreq

    def _segment_t_stop(self, block_index: int, seg_index: int) -> float:
        return (
            self._segment_t_start(block_index, seg_index)
            + self._get_signal_size(block_index, seg_index, 0) / self._sfreq
        )

    def _get_signal_size(self, block_index: int, seg_index: int, stream_index: int) -> int:
        return self._seg_limits[seg_index + 1] - self._seg_limits[seg_index]

    def _get_signal_t_start(self, block_index: int, seg_index: int, stream_index: int) -> float:
        return self._segment_t_start(block_index, seg_index)

    # -- signals: one seek + one readinto per chunk ---------------------------------------------
    def _get_analogsignal_chunk(
        self, block_index, seg_index, i_start, i_stop, stream_index, channel_indexes
    ):
        n = self._get_signal_size(block_index, seg_index, stream_index)
        i_start = 0 if i_start is None else int(i_start)
        i_stop = n if i_stop is None else int(i_stop)
        if not 0 <= i_start <= i_stop <= n:
            raise IndexError(f"samples [{i_start}, {i_stop}) outside segment {seg_index} of {n}")
        first = self._seg_limits[seg_index] + i_start
        buf = np.empty((i_stop - i_start, self._n_chan), self._dtype)  # [T, C] preallocated
        if buf.size:
            self.file.read_into(self._data_start + first * self._frame, buf)
        if channel_indexes is None or (
            isinstance(channel_indexes, slice) and channel_indexes == slice(None)
        ):
            return buf
        return buf[:, channel_indexes]

    # -- events -------------------------------------------------------------------------------
    def _spike_count(self, block_index, seg_index, spike_channel_index):
        return 0

    def _event_count(self, block_index, seg_index, event_channel_index):
        return int(self._raw_events[event_channel_index][seg_index].size)

    def _get_event_timestamps(self, block_index, seg_index, event_channel_index, t_start, t_stop):
        ev = self._raw_events[event_channel_index][seg_index]
        ts = ev["start"].astype(np.int64) + self.info_segments[0][0]  # Neo: relative to segment 0
        keep = np.ones(ts.size, bool)
        if t_start is not None:
            keep &= ts >= int(t_start * self._sfreq)
        if t_stop is not None:
            keep &= ts <= int(t_stop * self._sfreq)
        ev, ts = ev[keep], ts[keep]
        durations = None if event_channel_index < 2 else (ev["stop"].astype(np.int64) - ev["start"])
        return ts, durations, self._labels(ev["label"])

    @staticmethod
    def _labels(raw: np.ndarray) -> np.ndarray:
        if raw.dtype.kind != "S":
            return raw.astype("U")
        out = []
        for b in raw:
            try:
                out.append(b.decode("ascii"))
            except UnicodeDecodeError:
                out.append(b.decode("cp1252", errors="replace"))
        return np.array(out, dtype="U")

    def _rescale_event_timestamp(self, event_timestamps, dtype, event_channel_index):
        return event_timestamps.astype(dtype) / self._sfreq

    def _rescale_epoch_duration(self, raw_duration, dtype, event_channel_index):
        return raw_duration.astype(dtype) / self._sfreq


class MicromedReader:
    """The efm ``micromed`` reader: a whole ``.TRC`` file as a :class:`~efm.interfaces.Recording`.

    Parameters
    ----------
    ch_type, tz, strict
        See :class:`efm_plugins.readers._buffered.MicromedConfig`.
    """

    name = "micromed"
    extensions = (".trc",)

    def __init__(self, ch_type: str = "eeg", tz: str | None = None, strict: bool = True) -> None:
        self.cfg = MicromedConfig(ch_type, tz, strict)

    def rawio(self, path: str | Path) -> MicromedBufferedRawIO:
        """The parsed Neo-style rawio of ``path``."""
        raw = MicromedBufferedRawIO(path, strict=self.cfg.strict)
        try:
            raw.parse_header()
        except ReaderError:
            raw.file.close()
            raise
        except (ValueError, struct.error, IndexError, ArithmeticError) as err:
            raw.file.close()
            raise ReaderError(f"{Path(path).name}: corrupt TRC header ({err})") from err
        return raw

    def read(self, path: str | Path) -> Recording:
        """Read ``path`` whole, in volts; see :class:`~efm.interfaces.Reader`."""
        path = Path(path)
        raw = self.rawio(path)
        try:
            sfreq, seg_starts = raw._sfreq, raw._seg_limits[:-1]
            anns = []
            for ev_index, (zname, (label, _dt, kind)) in enumerate(EVENT_DTYPES.items()):
                for s in range(len(seg_starts)):
                    ev = raw._raw_events[ev_index][s]
                    texts = raw._labels(ev["label"])
                    for j in range(ev.size):  # events are few; this is not a signal path
                        onset = float(ev["start"][j]) / sfreq  # sample index in the data
                        dur = (
                            0.0
                            if kind == "event"
                            else float(ev["stop"][j] - ev["start"][j]) / sfreq
                        )
                        text = texts[j].strip() if zname == "NOTE" else f"{label} {texts[j]}"
                        anns.append(
                            Annotation(
                                onset, max(dur, 0.0), text, "" if zname == "NOTE" else "device"
                            )
                        )
            names = [str(n) for n in raw.header["signal_channels"]["name"]]
            units = [str(u) for u in raw.header["signal_channels"]["units"]]
            types = guess_ch_types(names, units, self.cfg.ch_type)
            meas = to_posix(local_to_utc(raw.rec_datetime, self.cfg.tz))
            return rawio_to_recording(
                raw,
                0,
                path=path,
                ch_types=types,
                annotations=anns,
                patient_id=pseudonym("trc", *raw._patient),
                meas_date=meas,
                modality="ieeg" if self.cfg.ch_type in ("seeg", "ecog") else "eeg",
                extra={"grounds": raw._grounds, "format": "micromed-trc4", "tz": self.cfg.tz},
            )
        finally:
            raw.file.close()
