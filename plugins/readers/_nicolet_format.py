"""Byte layouts of the Nicolet/Nervus ``.e`` format (parsing helpers of :mod:`.nicolet`).

Offsets follow the reverse-engineered description in ../shared/reference/data-formats.md §1.2 and the
ieeg-portal MATLAB reader (https://github.com/ieeg-portal/Nicolet-Reader). All parsing is numpy
structured ``frombuffer`` over bytes already read; nothing here touches the file except
:func:`parse_main_index`, which follows the index's linked blocks (one read per block).
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

import numpy as np

from efm.errors import ReaderError

TAGS_AT, QI_AT = 172, 172208
GUID_TS = "{A271CCCB-515D-4590-B6A1-DC170C8D6EE2}"
GUID_PATIENT = "{D0B3FD0B-49D9-4BF0-8929-296DE5A55910}"
GUID_SIGNAL = "{8032E68A-EA3E-42E8-893E-6E93C59ED515}"
GUID_EVENT_PACKET = "{B799F680-72A4-11D3-93D3-00500400C148}"
# event type GUIDs -> names (NicoletOne built-ins; German ones from Swiss clinical exports)
EVENT_NAMES = {
    "{A5A95612-A7F8-11CF-831A-0800091B5BDA}": "Annotation",
    "{A5A95646-A7F8-11CF-831A-0800091B5BDA}": "Seizure",
    "{A0172995-4A24-401C-AB68-B585474E4C07}": "Seizure",
    "{A5A95645-A7F8-11CF-831A-0800091B5BDA}": "Event Comment",
    "{08784382-C765-11D3-90CE-00104B6F4F70}": "Format change",
    "{6FF394DA-D1B8-46DA-B78F-866C67CF02AF}": "Photic",
    "{A5A95608-A7F8-11CF-831A-0800091B5BDA}": "Hyperventilation",
    "{481DFC97-013C-4BC5-A203-871B0375A519}": "Posthyperventilation",
    "{A5A95617-A7F8-11CF-831A-0800091B5BDA}": "Impedance",
    "{C3B68051-EDCF-418C-8D53-27077B92DE22}": "Spike",
    "{0DE05C94-7D03-47B9-864F-D586627EA891}": "Eyes closed",
    "{583AA2C6-1F4E-47CF-A8D4-80C69EB8A5F3}": "Eyes open",
    "{0A205CD4-1480-4F02-8AFF-4E4CD3B21078}": "Artifact",
    "{CA4FCAD4-802E-4214-881A-E9C1C6549ABD}": "Arousal",
    "{A5A95603-A7F8-11CF-831A-0800091B5BDA}": "Blink",
    "{F4DD5874-23BA-4FFA-94DD-BE436BB6910F}": "Anfall",
    "{24387A0E-AA04-40B4-82D4-6D58F24D59AB}": "Anfallsmuster",
    "{5A946B85-2E1D-46B8-9FB2-C0519C9BE681}": "Zaehneputzen",
    "{48DA028A-5264-4620-AD03-C8787951E237}": "Bewegt",
    "{C15CFF61-0326-4276-A08F-0BFC2354E7CC}": "Kratzt",
}
PATIENT_FIELDS = (
    "patientID",
    "firstName",
    "middleName",
    "lastName",
    "altID",
    "mothersMaidenName",
    "DOB",
    "DOD",
    "street",
    "sexID",
    "phone",
    "notes",
    "dominance",
    "siteID",
    "suffix",
    "prefix",
    "degree",
    "apartment",
    "city",
    "state",
    "country",
    "language",
    "height",
    "weight",
    "race",
    "religion",
    "maritalStatus",
)


def utf16(raw: bytes | np.void) -> str:
    """A NUL-terminated UTF-16-LE field as text."""
    b = bytes(raw)
    return b[: len(b) // 2 * 2].decode("utf-16-le", errors="replace").split("\x00", 1)[0].strip()


def guid(raw: bytes | np.void) -> str:
    return "{" + str(uuid.UUID(bytes_le=bytes(raw))).upper() + "}"


def parse_tags(head: bytes, name: str) -> dict[str, int]:
    """Tag name -> section index, from the table at byte 172."""
    (n,) = struct.unpack_from("<I", head, TAGS_AT)
    if not 0 < n <= (QI_AT - TAGS_AT - 4) // 84:
        raise ReaderError(f"{name}: not a Nicolet .e file (tag count {n} at byte {TAGS_AT})")
    rows = np.frombuffer(head, np.dtype([("name", "V80"), ("index", "<u4")]), n, TAGS_AT + 4)
    tags = {}
    for row in rows:
        text = utf16(row["name"])
        if not text or not text.isprintable():
            raise ReaderError(f"{name}: not a Nicolet .e file (unreadable tag table)")
        tags.setdefault(text, int(row["index"]))
    return tags


def parse_main_index(f: Any, head: bytes, size: int, name: str) -> np.ndarray:
    """The main index as a structured array (tag, offset, length), following its linked blocks."""
    n_entries, _, ptr = struct.unpack_from("<III", head, QI_AT)
    if n_entries == 0 or n_entries > size // 24:
        raise ReaderError(
            f"{name}: not a Nicolet .e file or corrupt (index claims {n_entries} entries)"
        )
    entry = np.dtype([("tag", "<u8"), ("offset", "<u8"), ("lens", "<u8")])
    blocks, got = [], 0
    while got < n_entries:
        if not QI_AT < ptr <= size - 16 or len(blocks) > n_entries:
            raise ReaderError(
                f"{name}: truncated or corrupt: index block at {ptr} outside the file "
                f"({size} bytes), {got} of {n_entries} entries read"
            )
        (nr,) = struct.unpack("<Q", f.read_bytes(ptr, 8))
        if nr == 0 or ptr + 16 + 24 * nr > size:
            raise ReaderError(f"{name}: truncated or corrupt: index block at {ptr} of {nr} entries")
        blob = f.read_bytes(ptr + 8, 24 * nr + 8)
        blocks.append(np.frombuffer(blob, entry, nr))
        (ptr,) = struct.unpack_from("<Q", blob, 24 * nr)
        got += nr
    raw = np.concatenate(blocks)
    out = np.empty(raw.size, np.dtype([("tag", "<i8"), ("offset", "<i8"), ("length", "<i8")]))
    out["tag"], out["offset"], out["length"] = raw["tag"], raw["offset"], raw["lens"] >> 32
    if (out["offset"] + out["length"] > size).any():
        bad = int((out["offset"] + out["length"]).max())
        raise ReaderError(f"{name}: truncated: a section ends at byte {bad}, the file has {size}")
    return out


_TS = np.dtype(
    {
        "names": [
            "label",
            "active",
            "ref",
            "low_cut",
            "high_cut",
            "sampling_rate",
            "resolution",
            "mark",
            "notch",
            "eeg_offset",
        ],
        "formats": ["V128", "V32", "V8", "<f8", "<f8", "<f8", "<f8", "<u2", "<u2", "<f8"],
        "offsets": [0, 128, 192, 256, 264, 272, 280, 288, 290, 292],
        "itemsize": 552,
    }
)


def parse_ts(data: bytes, name: str) -> np.ndarray:
    """Channel records of a TS-info packet: label, sensor, rate, resolution, offset ..."""
    if len(data) < 760:
        raise ReaderError(f"{name}: corrupt: TS-info packet of {len(data)} bytes")
    (n,) = struct.unpack_from("<I", data, 752)
    if n == 0 or 760 + 552 * n > len(data):
        raise ReaderError(f"{name}: corrupt: TS info lists {n} channels in {len(data)} bytes")
    rec = np.frombuffer(data, _TS, n, 760)
    out = np.empty(
        n,
        [
            ("label", "U64"),
            ("active", "U32"),
            ("ref", "U8"),
            ("sampling_rate", "f8"),
            ("resolution", "f8"),
            ("eeg_offset", "f8"),
            ("low_cut", "f8"),
            ("high_cut", "f8"),
        ],
    )
    for k in ("label", "active", "ref"):
        out[k] = [utf16(v) for v in rec[k]]
    for k in ("sampling_rate", "resolution", "eeg_offset", "low_cut", "high_cut"):
        out[k] = rec[k]
    return out


def parse_signal_units(data: bytes) -> dict[str, str]:
    """Sensor name -> unit (transducer) from the signal-info section (empty if absent)."""
    if len(data) < 752:
        return {}
    (n,) = struct.unpack_from("<H", data, 744)
    n = min(n, (len(data) - 752) // 384)
    rec = np.frombuffer(data, np.dtype([("name", "V64"), ("unit", "V32"), ("_", "V288")]), n, 752)
    units = {}
    for r in rec:
        unit = utf16(r["unit"]).replace("µ", "u").replace("μ", "u")
        units[utf16(r["name"])] = unit or "uV"
    return units


_EVENT = np.dtype(
    {
        "names": [
            "guid",
            "len",
            "date",
            "fraction",
            "duration",
            "user",
            "text_len",
            "type",
            "label",
        ],
        "formats": ["V16", "<u8", "<f8", "<f8", "<f8", "V24", "<u8", "V16", "V64"],
        "offsets": [0, 16, 32, 40, 48, 104, 128, 136, 168],
        "itemsize": 232,
    }
)


def parse_events(data: bytes, packet_guid: str) -> list[dict[str, Any]]:
    """Event packets (date, fraction, duration, annotator, type, text) until the chain ends."""
    want, pos, out = uuid.UUID(packet_guid).bytes_le, 0, []
    while pos + _EVENT.itemsize <= len(data):
        e = np.frombuffer(data, _EVENT, 1, pos)[0]
        n = int(e["len"])
        if bytes(e["guid"]) != want or n < _EVENT.itemsize or pos + n > len(data):
            break
        tl = int(e["text_len"])
        text = data[pos + 264 : pos + 264 + 2 * tl] if 264 + 2 * tl <= n else b""
        out.append(
            {
                "date": float(e["date"]),
                "fraction": float(e["fraction"]),
                "duration": max(float(e["duration"]), 0.0),
                "user": utf16(e["user"]),
                "type": guid(e["type"]),
                "type_label": utf16(e["label"]),
                "text": text.decode("utf-16-le", errors="replace").split("\x00", 1)[0].strip(),
            }
        )
        pos += n
    return out


def parse_patient(data: bytes) -> dict[str, Any]:
    """Patient fields (identifying: used only to derive a pseudonym, never stored)."""
    info: dict[str, Any] = {}
    if len(data) < 40:
        return info
    n_val, n_str = struct.unpack_from("<QQ", data, 24)
    pos = 40
    try:
        for _ in range(min(n_val, 64)):
            (i,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            if i in (7, 8, 23, 24):
                info[PATIENT_FIELDS[i - 1]] = struct.unpack_from("<d", data, pos)[0]
                pos += 8
        setup = struct.unpack_from(f"<{2 * min(n_str, 64)}Q", data, pos)
        pos += 16 * min(n_str, 64)
        for i, n in zip(setup[::2], setup[1::2]):
            info[PATIENT_FIELDS[i - 1] if 0 < i <= len(PATIENT_FIELDS) else f"field{i}"] = data[
                pos : pos + 2 * n
            ].decode("utf-16-le", errors="replace")
            pos += 2 * (n + 1)
    except struct.error:  # a damaged patient block costs only the pseudonym
        pass
    return info
