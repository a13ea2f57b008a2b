"""A minimal Nicolet/Nervus ``.e`` writer for tests.

Follows the layout read by the ieeg-portal MATLAB reader (``NicoletFile.m``) and the
Swiss-Epilepsy-Center Neo fork: a tag table at byte 172, the QI block at 172208, a linked main index
of sections, and per-channel int16 sections (tags ``"0"``, ``"1"``, ...). Dates are OLE automation
dates in *local* wall-clock time, as ``.e`` files store them.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

G = {  # section / packet GUIDs (strings as printed by the readers)
    "TS": "{A271CCCB-515D-4590-B6A1-DC170C8D6EE2}",
    "PATIENT": "{D0B3FD0B-49D9-4BF0-8929-296DE5A55910}",
    "SIGNAL": "{8032E68A-EA3E-42E8-893E-6E93C59ED515}",
    "CHANNEL": "{BF7C95EF-6C3B-4E70-9E11-779BFFF58EA7}",
    "DERIVATION": "{8A19AA48-BEA0-40D5-B89F-667FC578D635}",
    "DISPLAY": "{02950361-35BB-4A22-9F0B-C78AAA5DB094}",
    "EVENTPKT": "{B799F680-72A4-11D3-93D3-00500400C148}",
}
EVENT_TYPES = {
    "Annotation": "{A5A95612-A7F8-11CF-831A-0800091B5BDA}",
    "Seizure": "{A5A95646-A7F8-11CF-831A-0800091B5BDA}",
    "Anfall": "{F4DD5874-23BA-4FFA-94DD-BE436BB6910F}",
    "Eyes closed": "{0DE05C94-7D03-47B9-864F-D586627EA891}",
    "Artifact": "{0A205CD4-1480-4F02-8AFF-4E4CD3B21078}",
    "Custom": "{11111111-2222-3333-4444-555555555555}",  # unknown to every reader
}
OLE0 = datetime(1899, 12, 30)


def ole(dt: datetime) -> float:
    td = dt - OLE0
    return td.days + (td.seconds + td.microseconds / 1e6) / 86400


def guid_bytes(s: str) -> bytes:
    return uuid.UUID(s).bytes_le


def utf16(text: str, n_chars: int) -> bytes:
    raw = text.encode("utf-16-le")[: 2 * n_chars]
    return raw.ljust(2 * n_chars, b"\x00")


@dataclass
class EChannel:
    name: str
    sfreq: float
    resolution: float = 0.1  # µV per bit
    unit: str = "uV"
    eeg_offset: float = 0.0


@dataclass
class EEvent:
    time: datetime | None  # local wall-clock time
    kind: str = "Annotation"  # key of EVENT_TYPES
    text: str = ""
    duration: float = 0.0
    user: str = "MC"
    label: str = ""


@dataclass
class ESpec:
    channels: list[EChannel]
    segments: list[tuple[datetime, float]]  # (local start, duration in s)
    raw: list[np.ndarray]  # per channel, int16 samples of all segments concatenated
    events: list[EEvent] = field(default_factory=list)
    section_s: float = 1.0
    patient: dict[str, str] = field(
        default_factory=lambda: {
            "patientID": "PID-0042",
            "firstName": "Jürgen",
            "lastName": "Müller",
        }
    )

    def n_samples(self, c: int, s: int) -> int:
        return int(round(self.segments[s][1] * self.channels[c].sfreq))


def local(utc: datetime, tz: str) -> datetime:
    """The naive local wall-clock time of a UTC instant in ``tz`` (what ``.e`` files store)."""
    return utc.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def default_spec(
    seed: int = 0,
    tz: str = "Europe/Zurich",
    start_utc: datetime = datetime(2024, 3, 31, 0, 59, 50),
    gap_s: float = 30.0,
    durations: tuple[float, ...] = (4.0, 3.0, 2.5),
    section_s: float = 0.75,
) -> ESpec:
    """Three segments, two streams (256 Hz EEG, 64 Hz ECG + SpO2), German annotations.

    Segment and event times are given in UTC and stored as local wall-clock time of ``tz``. The
    default starts at 01:59:50 CET on the night Central Europe moves its clocks forward, so the
    second segment starts 34 s later in UTC but at 03:00:24 CEST, 3634 s later on the wall clock.
    """
    rng = np.random.default_rng(seed)
    chans = [EChannel(n, 256.0, 0.1) for n in ("Fp1", "Fp2", "C3", "C4", "O1", "O2", "T7")]
    chans += [EChannel("EKG", 64.0, 1.0), EChannel("SpO2", 64.0, 0.5, unit="%")]
    utc, t = [], start_utc
    for d in durations:
        utc.append(t)
        t = t + timedelta(seconds=d + gap_s)
    raw = []
    for ch in chans:
        n = sum(int(round(d * ch.sfreq)) for d in durations)
        x = rng.normal(0, 300, n) + 2000 * np.sin(np.arange(n) * 2 * np.pi * 9 / ch.sfreq)
        raw.append(np.clip(x, -32768, 32767).astype("<i2"))

    def at(seg: int, sec: float) -> datetime:
        return local(utc[seg] + timedelta(seconds=sec), tz)

    planned = [  # (segment, seconds into it, event); events of missing segments are left out
        (0, 0.5, EEvent(None, "Annotation", "Augen geschlossen")),
        (0, 1.25, EEvent(None, "Anfall", duration=2.0, user="Dr. Weiß")),
        (
            0,
            2.375,
            EEvent(
                None, "Annotation", "Patient reagiert nicht – Ärztin informiert → Notfallmedikation"
            ),
        ),
        (1, 1.0, EEvent(None, "Eyes closed")),
        (1, 1.5, EEvent(None, "Annotation", "Zähneputzen, Bewegungsartefakt", duration=1.0)),
        (2, 0.25, EEvent(None, "Custom", label="Kom.-Aufwachen")),
        (2, 2.0, EEvent(None, "Seizure", duration=0.5)),
    ]
    events = []
    for seg, sec, ev in planned:
        if seg < len(durations):
            ev.time = at(seg, sec)
            events.append(ev)
    segs = [(local(u, tz), d) for u, d in zip(utc, durations)]
    return ESpec(chans, segs, raw, events, section_s)


def _patient(spec: ESpec) -> bytes:
    ids = {"patientID": 1, "firstName": 2, "lastName": 4}
    strs = [(ids[k], v) for k, v in spec.patient.items()]
    body = struct.pack("<QQ", 2, len(strs))
    body += struct.pack("<Qd", 7, ole(datetime(1980, 11, 7)))  # DOB
    body += struct.pack("<Qd", 24, 71.5)  # weight
    body += b"".join(struct.pack("<QQ", i, len(v)) for i, v in strs)
    body += b"".join(utf16(v + "\x00", len(v) + 1) for _, v in strs)
    return guid_bytes(G["PATIENT"]) + struct.pack("<Q", 16 + 8 + len(body)) + body


def _signal_info(spec: ESpec) -> bytes:
    out = bytearray(752 + 384 * len(spec.channels))
    out[0:16] = guid_bytes(G["SIGNAL"])
    out[16:80] = b"Signal Info".ljust(64, b"\x00")
    struct.pack_into("<H", out, 744, len(spec.channels))
    for i, ch in enumerate(spec.channels):
        o = 752 + 384 * i
        out[o : o + 64] = utf16(ch.name, 32)
        out[o + 64 : o + 96] = utf16(ch.unit, 16)
        struct.pack_into("<IIII", out, o + 112, 0, 1, 0, 0xFF00 + i)
    return bytes(out)


def _channel_info(spec: ESpec) -> bytes:
    out = bytearray(760 + 216 * len(spec.channels))
    out[0:16] = guid_bytes(G["CHANNEL"])
    out[16:80] = b"Channel Info".ljust(64, b"\x00")
    struct.pack_into("<ii", out, 752, len(spec.channels), len(spec.channels))
    for i, ch in enumerate(spec.channels):
        o = 760 + 216 * i
        out[o : o + 64] = utf16(ch.name, 32)
        struct.pack_into("<dIII", out, o + 64, ch.sfreq, 1, i, i)
    return bytes(out)


def _ts_info(spec: ESpec) -> bytes:
    out = bytearray(760 + 552 * len(spec.channels))
    struct.pack_into("<II", out, 752, len(spec.channels), len(spec.channels))
    for i, ch in enumerate(spec.channels):
        o = 760 + 552 * i
        out[o : o + 128] = utf16(ch.name, 64)
        out[o + 128 : o + 192] = utf16(ch.name, 32)
        out[o + 192 : o + 200] = utf16("REF", 4)
        struct.pack_into(
            "<ddddHHd", out, o + 256, 0.5, 70.0, ch.sfreq, ch.resolution, 0, 1, ch.eeg_offset
        )
    return bytes(out)


def _montage(guid: str) -> bytes:
    out = bytearray(40 + 64 + 640 + 8 + 64)
    out[0:16] = guid_bytes(guid)
    out[40:104] = utf16("Referential", 32)
    return bytes(out)  # zero derivations / traces


def _segments(spec: ESpec) -> bytes:
    return b"".join(struct.pack("<d8xd128x", ole(t), d) for t, d in spec.segments)


def _events(spec: ESpec) -> bytes:
    out = b""
    for k, ev in enumerate(spec.events):
        text = ev.text.encode("utf-16-le")
        n = 264 + len(text)
        n += -n % 8
        whole = ev.time.replace(microsecond=0)
        pkt = bytearray(n)
        pkt[0:16] = guid_bytes(G["EVENTPKT"])
        struct.pack_into(
            "<QQddd", pkt, 16, n, k + 1, ole(whole), ev.time.microsecond / 1e6, ev.duration
        )
        pkt[104:128] = utf16(ev.user, 12)
        struct.pack_into("<Q", pkt, 128, len(text) // 2)
        pkt[136:152] = guid_bytes(EVENT_TYPES[ev.kind])
        pkt[168:232] = utf16(ev.label or ev.kind, 32)
        pkt[264 : 264 + len(text)] = text
        out += bytes(pkt)
    return out + bytes(24)  # a zero packet header ends the list


def write_e(path: str | Path, spec: ESpec, truncate: int = 0, junk: int = 40) -> Path:
    """Write ``spec`` as a ``.e`` file.

    ``truncate`` drops that many bytes from the end; ``junk`` is the size of the non-data section
    written between every third block of data sections (odd: int16 sections at odd offsets).
    """
    path = Path(path)
    n_ch = len(spec.channels)
    tag_names = [
        "SegmentStream",
        "InfoChangeStream",
        "InfoGuids",
        "Events",
        G["TS"],
        G["PATIENT"],
        G["SIGNAL"],
        G["CHANNEL"],
        G["DERIVATION"],
        G["DISPLAY"],
    ]
    tag_names += [str(c) for c in range(n_ch)]
    tag = {t: i for i, t in enumerate(tag_names)}
    ts = _ts_info(spec)
    half = len(ts) // 2
    dyn = guid_bytes(G["TS"]) + struct.pack("<ddQQ", ole(spec.segments[0][0]), 0.0, 0, len(ts))
    sections = [
        (tag[G["PATIENT"]], _patient(spec)),
        (tag[G["SIGNAL"]], _signal_info(spec)),
        (tag[G["CHANNEL"]], _channel_info(spec)),
        (tag["InfoChangeStream"], dyn),
        (tag[G["TS"]], ts[:half]),
        (tag["InfoGuids"], bytes(64)),
        (tag[G["TS"]], ts[half:]),
        (tag[G["DERIVATION"]], _montage(G["DERIVATION"])),
        (tag[G["DISPLAY"]], _montage(G["DISPLAY"])),
        (tag["SegmentStream"], _segments(spec)),
        (tag["Events"], _events(spec)),
    ]
    pos = [0] * n_ch
    for s in range(len(spec.segments)):
        n_blocks = int(np.ceil(spec.segments[s][1] / spec.section_s))
        for b in range(n_blocks):
            for c, ch in enumerate(spec.channels):
                edge = [
                    min(spec.n_samples(c, s), round(k * spec.section_s * ch.sfreq))
                    for k in (b, b + 1)
                ]
                n = spec.n_samples(c, s) - edge[0] if b == n_blocks - 1 else edge[1] - edge[0]
                if n > 0:
                    sections.append((tag[str(c)], spec.raw[c][pos[c] : pos[c] + n].tobytes()))
                    pos[c] += n
            if b % 3 == 2:  # something else between data blocks, as real files have
                sections.append((tag["InfoGuids"], bytes(junk)))
    assert pos == [len(r) for r in spec.raw], "raw lengths must match the segment durations"

    first = 196608
    blob, entries, off = bytearray(), [], first
    for idx, payload in sections:
        entries.append((idx, off, len(payload)))
        blob += payload
        off += len(payload)
    cut = len(entries) // 2  # the main index in two linked blocks
    blocks = [entries[:cut], entries[cut:]]
    index_at = [off, off + 16 + 24 * cut]
    index = bytearray()
    for k, block in enumerate(blocks):
        index += struct.pack("<Q", len(block))
        for idx, o, n in block:
            index += struct.pack("<QQQ", idx, o, (n << 32) | n)
        index += struct.pack("<Q", index_at[1] if k == 0 else 0)

    head = bytearray(first)
    struct.pack_into("<5III", head, 0, 0x0125, 0, 0, 0, 0, 0, index_at[0])
    struct.pack_into("<I", head, 172, len(tag_names))
    for i, t in enumerate(tag_names):
        head[176 + 84 * i : 176 + 84 * i + 80] = utf16(t, 40)
        struct.pack_into("<I", head, 176 + 84 * i + 80, i)
    struct.pack_into("<IIIIQ", head, 172208, len(entries), 0, index_at[0], 0, len(entries))
    payload = bytes(head) + bytes(blob) + bytes(index)
    path.write_bytes(payload[: len(payload) - truncate] if truncate else payload)
    return path
