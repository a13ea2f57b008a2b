"""Nicolet/Nervus ``.e`` (NicoletOne) with buffered chunk reads, in the Neo rawio API.

No vendor specification exists; the layout was reverse-engineered by the ieeg-portal MATLAB reader
(Wagenaar, Donos, Brogger, Stewart; https://github.com/ieeg-portal/Nicolet-Reader, Apache-2.0) and
ported to Neo by the Swiss Epilepsy Center (open PR NeuralEnsemble/python-neo#1750). This is an
independent implementation of that description (../shared/reference/data-formats.md §1.2, §1.4):

* the tag table at byte 172 and the QI block at 172208 lead to a linked *main index* of sections
  ``(tag index, file offset, length)``;
* the TS-info dynamic packet gives each channel's label, rate, resolution (gain) and offset; channel
  ``i`` is stored as int16 sections of tag ``"i"``, concatenated over all segments;
* the segment stream gives each segment's start (an OLE date in local wall-clock time) and duration;
* event packets carry an OLE date + seconds fraction, a duration, the annotator and UTF-16 text.

Fixed relative to the fork: channel selection, gain applied once (raw int16 + ``gain``), full UTF-16
text, free-text annotations exposed as event labels, no patient names in annotations, and a signal
chunk is one ``seek`` + one ``readinto`` of the byte span of the needed sections (no ``np.memmap``).
"""

from __future__ import annotations

import logging
import struct
import uuid
from datetime import datetime, timedelta
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
    NicoletConfig,
    check_file,
    guess_ch_types,
    pseudonym,
    rawio_to_recording,
    to_posix,
)
from efm_plugins.readers._nicolet_format import (
    EVENT_NAMES,
    GUID_EVENT_PACKET,
    GUID_PATIENT,
    GUID_SIGNAL,
    GUID_TS,
    QI_AT,
    parse_events,
    parse_main_index,
    parse_patient,
    parse_signal_units,
    parse_tags,
    parse_ts,
)

log = logging.getLogger("efm.readers.nicolet")
OLE0 = datetime(1899, 12, 30)


def ole_to_local(days: float, fraction_s: float = 0.0) -> datetime:
    """An OLE automation date (+ seconds fraction) as a naive local datetime."""
    if not -1 < days < 2_958_466:  # before 1900 or after 9999: corrupt
        raise ReaderError(f"date {days!r} is not a valid OLE date")
    return OLE0 + timedelta(days=float(days)) + timedelta(seconds=float(fraction_s))


class NicoletBufferedRawIO(BaseRawIO):
    """Neo rawio for Nicolet ``.e`` files; every signal chunk is one contiguous read.

    Parameters
    ----------
    filename : str | Path
        The ``.e`` file.
    tz : str | None
        IANA time zone the file's local dates belong to (``None``: read them as UTC).
    """

    extensions = ["e"]
    rawmode = "one-file"

    def __init__(self, filename: str | Path = "", tz: str | None = None) -> None:
        BaseRawIO.__init__(self)
        self.filename = str(filename)
        self.tz = tz
        self.file = BufferedFile(filename)

    def _source_name(self) -> str:
        return self.filename

    def _sections(self, tag: str) -> bytes:
        """All sections of one tag, concatenated in file order (one read each)."""
        rows = self._index[self._index["tag"] == self._tags.get(tag, -1)]
        return b"".join(
            self.file.read_bytes(int(o), int(n)) for o, n in zip(rows["offset"], rows["length"])
        )

    # -- header -------------------------------------------------------------------------------
    def _parse_header(self) -> None:
        from efm_plugins.readers._buffered import local_to_utc

        path = check_file(self.filename, QI_AT + 24)
        name, f = path.name, self.file
        size = f.size
        head = f.read_bytes(0, QI_AT + 24)
        self._tags = parse_tags(head, name)
        self._index = parse_main_index(f, head, size, name)
        for need in ("SegmentStream", "InfoChangeStream", GUID_TS):
            if need not in self._tags:
                raise ReaderError(f"{name}: not a Nicolet .e file or corrupt: no {need!r} section")

        # channels: the first TS-info dynamic packet
        dyn = self._sections("InfoChangeStream")
        packets = np.frombuffer(
            dyn,
            np.dtype(
                [
                    ("guid", "V16"),
                    ("date", "<f8"),
                    ("frac", "<f8"),
                    ("start", "<u8"),
                    ("size", "<u8"),
                ]
            ),
            len(dyn) // 48,
        )
        ts_guid = uuid.UUID(GUID_TS).bytes_le
        ts_packets = [p for p in packets if bytes(p["guid"]) == ts_guid]
        if not ts_packets:
            raise ReaderError(f"{name}: corrupt: no TS-info packet describes the channels")
        if len(ts_packets) > 1:
            log.info(
                "%s: %d TS-info packets; using the first for all segments", name, len(ts_packets)
            )
        blob = self._sections(GUID_TS)
        p = ts_packets[0]
        ts = parse_ts(blob[int(p["start"]) : int(p["start"]) + int(p["size"])], name)
        units = parse_signal_units(self._sections(GUID_SIGNAL))
        self._ts = ts

        # segments: local start dates and durations
        seg = self._sections("SegmentStream")
        segs = np.frombuffer(
            seg,
            np.dtype([("date", "<f8"), ("_a", "V8"), ("dur", "<f8"), ("_b", "V128")]),
            len(seg) // 152,
        )
        if segs.size == 0:
            raise ReaderError(f"{name}: corrupt: the segment table is empty")
        self.seg_local = [ole_to_local(d) for d in segs["date"]]
        self.seg_utc = [local_to_utc(d, self.tz) for d in self.seg_local]
        self._durations = segs["dur"].astype(np.float64)
        t0 = self.seg_utc[0]
        self._t_starts = np.array([(u - t0).total_seconds() for u in self.seg_utc])

        # streams: one per sampling rate, in order of first appearance
        rates = ts["sampling_rate"].astype(np.float64)
        if (rates <= 0).any() or not np.isfinite(rates).all():
            raise ReaderError(f"{name}: corrupt TS info: sampling rates {rates.tolist()}")
        uniq = list(dict.fromkeys(rates.tolist()))
        self._stream_of = np.array([uniq.index(r) for r in rates])
        self._rates = uniq
        names = [str(n) for n in ts["label"]]
        chans = [
            (
                names[i],
                str(i),
                rates[i],
                "int16",
                units.get(str(ts["active"][i]), units.get(names[i], "uV")),
                float(ts["resolution"][i]),
                float(ts["eeg_offset"][i]),
                str(self._stream_of[i]),
                "",
            )
            for i in range(len(ts))
        ]
        # per-segment sample counts and each channel's section table
        self._n = np.rint(np.outer(self._durations, rates)).astype(np.int64)  # [S, C]
        self._base = np.vstack([np.zeros((1, len(ts)), np.int64), np.cumsum(self._n, axis=0)])
        self._secs = []
        for i in range(len(ts)):
            rows = self._index[self._index["tag"] == self._tags.get(str(i), -1)]
            lens = rows["length"].astype(np.int64) // 2
            starts = np.concatenate([[0], np.cumsum(lens)])
            if starts[-1] < self._base[-1, i]:
                raise ReaderError(
                    f"{name}: truncated: channel {names[i]!r} holds {starts[-1]} samples, "
                    f"the segments need {self._base[-1, i]}"
                )
            self._secs.append((starts[:-1], rows["offset"].astype(np.int64), lens))

        ev = self._sections("Events") if "Events" in self._tags else b""
        self._events = parse_events(ev, GUID_EVENT_PACKET)
        for e in self._events:
            e["utc"] = local_to_utc(ole_to_local(e["date"], e["fraction"]), self.tz)
            e["t"] = (e["utc"] - t0).total_seconds()
            e["seg"] = (
                int(np.searchsorted(self._t_starts, e["t"], "right") - 1) if e["t"] >= 0 else 0
            )
            e["label"] = e["text"] or EVENT_NAMES.get(
                e["type"], e["type_label"] or f"event {e['type']}"
            )
        self._events.sort(key=lambda e: e["t"])
        self.patient = parse_patient(self._sections(GUID_PATIENT))

        self.header = {
            "nb_block": 1,
            "nb_segment": [len(segs)],
            "signal_buffers": np.array([], dtype=_signal_buffer_dtype),
            "signal_streams": np.array(
                [(f"{r:g} Hz", str(k), "") for k, r in enumerate(uniq)], dtype=_signal_stream_dtype
            ),
            "signal_channels": np.array(chans, dtype=_signal_channel_dtype),
            "spike_channels": np.array([], dtype=_spike_channel_dtype),
            "event_channels": np.array(
                [("Events", "0", "event"), ("Epochs", "1", "epoch")], dtype=_event_channel_dtype
            ),
        }
        self._generate_minimal_annotations()
        block = self.raw_annotations["blocks"][0]
        block["rec_datetime"] = self.seg_utc[0]
        for s, seg_ann in enumerate(block["segments"]):
            seg_ann["rec_datetime"] = self.seg_utc[s]
            seg_ann["local_datetime"] = self.seg_local[s]

    # -- sizes and times ----------------------------------------------------------------------
    def _stream_channels(self, stream_index: int) -> np.ndarray:
        return np.flatnonzero(self._stream_of == stream_index)

    def _segment_t_start(self, block_index: int, seg_index: int) -> float:
        return float(self._t_starts[seg_index])

    def _segment_t_stop(self, block_index: int, seg_index: int) -> float:
        return float(self._t_starts[seg_index] + self._durations[seg_index])

    def _get_signal_size(self, block_index: int, seg_index: int, stream_index: int) -> int:
        return int(self._n[seg_index, self._stream_channels(stream_index)[0]])

    def _get_signal_t_start(self, block_index: int, seg_index: int, stream_index: int) -> float:
        return self._segment_t_start(block_index, seg_index)

    # -- signals: one seek + one readinto of the span of the needed sections ----------------------
    def _get_analogsignal_chunk(
        self, block_index, seg_index, i_start, i_stop, stream_index, channel_indexes
    ):
        chans = self._stream_channels(stream_index)
        if channel_indexes is not None:
            chans = chans[channel_indexes]
        chans = np.atleast_1d(chans)
        n = self._get_signal_size(block_index, seg_index, stream_index)
        i_start = 0 if i_start is None else int(i_start)
        i_stop = n if i_stop is None else int(i_stop)
        if not 0 <= i_start <= i_stop <= n:
            raise IndexError(f"samples [{i_start}, {i_stop}) outside segment {seg_index} of {n}")
        n_t = i_stop - i_start
        out = np.empty((n_t, chans.size), np.int16)  # [T, C]
        if n_t == 0 or chans.size == 0:
            return out
        g0 = int(self._base[seg_index, chans[0]]) + i_start  # same rate => same base in a stream
        # the sections each channel needs, as flat arrays over (channel, section)
        starts, offs, lens, owner = [], [], [], []
        for j, c in enumerate(chans):  # a handful of small index arrays, not the samples
            s, o, ln = self._secs[c]
            k0 = np.searchsorted(s, g0, "right") - 1
            k1 = np.searchsorted(s, g0 + n_t, "left")
            starts.append(s[k0:k1])
            offs.append(o[k0:k1])
            lens.append(ln[k0:k1])
            owner.append(np.full(k1 - k0, j))
        starts_a, offs_a, lens_a, owner_a = map(np.concatenate, (starts, offs, lens, owner))
        first = np.maximum(starts_a, g0)
        lo = int((offs_a + 2 * (first - starts_a)).min())
        ends = np.minimum(starts_a + lens_a, g0 + n_t)
        hi = int((offs_a + 2 * (ends - starts_a)).max())
        buf = np.empty(hi - lo, np.uint8)
        self.file.read_into(lo, buf)  # the one read of this chunk
        # pieces (channel, section) are in channel-major, time order and tile [T] per channel
        piece = ends - first  # samples of each piece
        start = offs_a + 2 * (first - starts_a) - lo  # byte offset of each piece's first sample
        flat = np.concatenate([[0], np.cumsum(piece)[:-1]])  # where each piece starts in [C*T]
        pos = np.repeat(start - 2 * flat, piece) + 2 * np.arange(piece.sum())  # [C*T] bytes
        if (start % 2 == 0).all():
            vals = buf.view("<i2")[pos >> 1]
        else:  # sections at odd offsets: assemble each int16 from its two bytes
            vals = (buf[pos].astype(np.uint16) | (buf[pos + 1].astype(np.uint16) << 8)).view(
                np.int16
            )
        out[:] = vals.reshape(chans.size, n_t).T  # [C, T] -> [T, C]
        return out

    # -- events -------------------------------------------------------------------------------
    def _select(self, seg_index: int, kind: int) -> list[dict]:
        return [e for e in self._events if e["seg"] == seg_index and (e["duration"] > 0) == kind]

    def _spike_count(self, block_index, seg_index, spike_channel_index):
        return 0

    def _event_count(self, block_index, seg_index, event_channel_index):
        return len(self._select(seg_index, event_channel_index))

    def _get_event_timestamps(self, block_index, seg_index, event_channel_index, t_start, t_stop):
        evs = [
            e
            for e in self._select(seg_index, event_channel_index)
            if (t_start is None or e["t"] >= t_start) and (t_stop is None or e["t"] <= t_stop)
        ]
        ts = np.array([e["t"] for e in evs], np.float64)
        labels = np.array([e["label"] for e in evs], dtype="U")
        dur = np.array([e["duration"] for e in evs], np.float64) if event_channel_index else None
        return ts, dur, labels

    def _rescale_event_timestamp(self, event_timestamps, dtype, event_channel_index):
        return event_timestamps.astype(dtype)

    def _rescale_epoch_duration(self, raw_duration, dtype, event_channel_index):
        return raw_duration.astype(dtype)


class NicoletReader:
    """The efm ``nicolet`` reader: one stream of a ``.e`` file as a Recording in volts.

    Parameters
    ----------
    ch_type, tz, stream
        See :class:`efm_plugins.readers._buffered.NicoletConfig`.
    """

    name = "nicolet"
    extensions = (".e",)

    def __init__(self, ch_type: str = "eeg", tz: str | None = None, stream: int = -1) -> None:
        self.cfg = NicoletConfig(ch_type, tz, stream)

    def rawio(self, path: str | Path) -> NicoletBufferedRawIO:
        """The parsed Neo-style rawio of ``path``."""
        raw = NicoletBufferedRawIO(path, tz=self.cfg.tz)
        try:
            raw.parse_header()
        except ReaderError:
            raw.file.close()
            raise
        except (ValueError, IndexError, KeyError, ArithmeticError, struct.error) as err:
            raw.file.close()
            raise ReaderError(f"{Path(path).name}: corrupt .e file ({err})") from err
        return raw

    def read(self, path: str | Path) -> Recording:
        """Read ``path`` (every segment of one stream, concatenated), in volts."""
        path = Path(path)
        raw = self.rawio(path)
        try:
            counts = np.bincount(raw._stream_of)
            k = self.cfg.stream
            if k < 0:  # most channels, then highest rate
                k = max(range(len(counts)), key=lambda i: (counts[i], raw._rates[i]))
            if k >= len(counts):
                raise ReaderError(f"{path.name}: stream {k} requested, the file has {len(counts)}")
            sizes = [raw.get_signal_size(0, s, k) for s in range(raw.segment_count(0))]
            sfreq = raw._rates[k]
            concat = np.concatenate([[0], np.cumsum(sizes)]) / sfreq
            anns = []
            for e in raw._events:
                s = e["seg"]
                rel = min(max(e["t"] - raw._t_starts[s], 0.0), sizes[s] / sfreq)
                anns.append(
                    Annotation(float(concat[s] + rel), float(e["duration"]), e["label"], e["user"])
                )
            ch = raw.header["signal_channels"]
            ch = ch[ch["stream_id"] == str(k)]
            types = guess_ch_types(
                [str(n) for n in ch["name"]], [str(u) for u in ch["units"]], self.cfg.ch_type
            )
            others = [
                {
                    "sfreq": r,
                    "ch_names": [
                        str(n) for n in raw.header["signal_channels"]["name"][raw._stream_of == i]
                    ],
                }
                for i, r in enumerate(raw._rates)
                if i != k
            ]
            if others:
                log.info(
                    "%s: reading the %g Hz stream; %d other stream(s) left out",
                    path.name,
                    sfreq,
                    len(others),
                )
            pid = pseudonym(
                "nicolet",
                *(raw.patient.get(f, "") for f in ("patientID", "firstName", "lastName", "DOB")),
            )
            return rawio_to_recording(
                raw,
                k,
                path=path,
                ch_types=types,
                annotations=anns,
                patient_id=pid,
                meas_date=to_posix(raw.seg_utc[0]),
                modality="ieeg" if self.cfg.ch_type in ("seeg", "ecog") else "eeg",
                extra={"format": "nicolet-e", "tz": self.cfg.tz, "other_streams": others},
                chunk_bytes=8 << 20,
            )
        finally:
            raw.file.close()
