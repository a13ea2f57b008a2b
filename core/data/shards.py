"""Stage 10: WebDataset shards, the manifest, the resume log and the failure log.

Layout of a prepared directory ``OUT``::

    OUT/config.json                        the data/pipeline/reader config it was prepared with
    OUT/shards/shard-GGGGGGGGGGGG-PPP.tar  part P of one file's epochs (G: hash of its path)
    OUT/logs/resume-III-of-NNN.jsonl       one line per completed file (key: its sha256)
    OUT/logs/failures-III-of-NNN.jsonl     one line per failed file of the latest run, with reason
    OUT/manifest.json                      every shard, with counts; written when a run ends

A sample (one epoch) is two members of a tar, ``<key>.signal.npy`` and ``<key>.meta.json``:

- ``signal.npy``: float16 µV ``[n_chans, n_times]`` (float32 accepted when reading), saved without
  pickle;
- ``meta.json``: one JSON object, the keys of :data:`META_KEYS` (``prepare`` writes all of them;
  readers of shards rely only on ``patient_id``, ``recording_id``, ``sfreq``, ``ch_names`` and
  ``labels``, and add ``key``, the sample's key, when decoding).

This module owns the format: writing (:func:`write_samples`, used by ``prepare`` and by
:mod:`efm.data.synthetic`) and reading (:func:`read_manifest`, :func:`decode_sample`).

Each source file gets its own shard group, written under a temporary name and renamed when complete;
its sha256 goes to the resume log only after all its shards are renamed. The contents are a pure
function of the file and the config (fixed tar metadata), so a run that is killed and restarted
writes exactly the shards of an uninterrupted one. Group names hash the file's path relative to the
data root, so adding files to the root never renames or overwrites prepared shards. A file whose
sha256 was already prepared under another path is logged as a duplicate and not prepared again.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import EfmError

META_KEYS: dict[str, str] = {
    "patient_id": "str: the subject (the unit of every train/test split)",
    "recording_id": "str: the source recording (unique within a prepared directory)",
    "epoch_index": "int: position of the epoch in its recording",
    "start_s": "float: start of the epoch, seconds from the recording's start",
    "sfreq": "float: sampling rate of signal.npy, Hz",
    "ch_names": "list[str]: one name per row of signal.npy (regions for regional montages)",
    "ch_types": "list[str]: 'eeg', 'seeg', 'ecog', ... per row",
    "ch_pos": "list[[x, y, z] | null] | null: positions in metres (MNE head frame), if known",
    "modality": "str: 'eeg' or 'ieeg'",
    "annotations": "list[str]: annotation texts overlapping the epoch",
    "labels": "dict: task name -> int label (seizure: 0/1, sleep_stage, ...), and 'events': the "
    "taxonomy event names overlapping the epoch",
    "quality": "dict[str, float]: score, flat, clipping, amplitude, line_noise",
}
"""The ``meta.json`` keys of a sample and what each holds."""

MAX_BAD_IN_A_ROW = 1000  # consecutive undecodable samples before the loader gives up

TMP = ".tmp"
MAX_UV = 65000.0  # float16 range


def group_id(rel: str) -> str:
    """The shard-group name of a source file: a hash of its path relative to the data root.

    Stable when files are added to or removed from the root, unlike a position in the file list.
    """
    return hashlib.sha1(rel.encode("utf-8")).hexdigest()[:12]


def shard_name(group: str, part: int) -> str:
    return f"shard-{group}-{part:03d}.tar"


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


def read_manifest(shards: str | Path) -> dict[str, Any]:
    """The manifest of a shard directory, with absolute shard paths under ``"urls"``."""
    root = Path(shards)
    path = root / "manifest.json"
    if not path.is_file():
        raise EfmError(
            f"{root} has no manifest.json: is it a shard directory written by `efm prepare`?"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entries = manifest.get("shards") or []
        urls = [str(root / e["path"]) for e in entries if int(e.get("n_epochs", 1)) > 0]
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, KeyError) as exc:
        raise EfmError(
            f"{path} is damaged ({type(exc).__name__}: {exc}); prepare the shards again"
        ) from None
    if not urls:
        raise EfmError(f"{path} lists no non-empty shards")
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise EfmError(f"{len(missing)} shard(s) listed in {path} are missing, e.g. {missing[0]}")
    manifest["urls"] = urls
    return manifest


class BadSample(EfmError):
    """A shard sample that cannot be decoded (damaged, or not written by ``efm prepare``)."""


@functools.lru_cache(maxsize=64)
def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, shape and order of a ``.npy`` header (parsed once per distinct header)."""
    meta = ast.literal_eval(header.decode("latin1"))
    return np.dtype(meta["descr"]), tuple(meta["shape"]), bool(meta["fortran_order"])


def load_npy(buf: bytes) -> np.ndarray:
    """A ``.npy`` payload as an array view of ``buf`` (no copy; headers are cached, not re-parsed).

    Only plain numeric arrays are accepted (efm writes float16 or float32 ``[C, T]``): an object
    array (pickled Python objects) or a damaged header is a :class:`BadSample`.
    """
    if buf[:6] != b"\x93NUMPY":
        raise BadSample("signal.npy is not a NumPy .npy payload")
    major = buf[6]
    size_bytes = 2 if major == 1 else 4
    n = int.from_bytes(buf[8 : 8 + size_bytes], "little")
    start = 8 + size_bytes
    try:
        dtype, shape, fortran = _npy_header(bytes(buf[start : start + n]))
    except (ValueError, SyntaxError, TypeError, KeyError, UnicodeDecodeError, MemoryError):
        raise BadSample("signal.npy has a damaged header") from None
    if dtype.kind not in "fiu":
        raise BadSample(f"signal.npy holds {dtype} values, not numbers (efm writes float16/32)")
    if len(shape) != 2:
        raise BadSample(f"signal.npy has shape {shape}, expected [channels, samples]")
    count = int(np.prod(shape))
    if len(buf) - start - n < count * dtype.itemsize:
        raise BadSample(f"signal.npy is truncated (shape {shape}, {len(buf)} bytes)")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=start + n)
    return arr.reshape(shape, order="F" if fortran else "C")


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """A raw WebDataset sample (bytes) -> ``{"signal": ndarray [C, T] as stored, "meta": dict}``.

    Raises :class:`BadSample` naming the shard and the sample when it cannot be decoded.
    """
    where = f"sample {sample.get('__key__')!r} of {sample.get('__url__', 'a shard')}"
    try:
        meta = json.loads(sample["meta.json"])
        if not isinstance(meta, dict):
            raise BadSample("meta.json is not a JSON object")
        meta.setdefault("key", sample.get("__key__"))
        return {"signal": load_npy(sample["signal.npy"]), "meta": meta}
    except BadSample as exc:
        raise BadSample(f"{where}: {exc}") from None
    except KeyError as exc:
        raise BadSample(f"{where}: no {exc.args[0]} in it") from None
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise BadSample(f"{where}: meta.json is not valid JSON ({exc})") from None


def write_samples(fh: Any, samples: list[dict[str, Any]]) -> None:
    """Write samples ``{"__key__", "signal", "meta"}`` to an open binary file as one tar, with fixed
    tar metadata so that the bytes are a pure function of the samples."""
    import webdataset as wds

    writer = wds.TarWriter(fh, encoder=False, mtime=0.0, user="efm", group="efm")
    for s in samples:
        meta = json.dumps(s["meta"], sort_keys=True, allow_nan=False).encode("utf-8")
        writer.write({"__key__": s["__key__"], "signal.npy": _npy(s["signal"]), "meta.json": meta})
    writer.close()


def write_group(
    out: Path, group: str, samples: list[dict[str, Any]], max_per_shard: int
) -> list[dict[str, Any]]:
    """Write one file's samples into its shard group; return ``[{"path", "n_epochs"}]``.

    Each sample is ``{"__key__", "signal" (float16 µV [C, T]), "meta" (dict)}``. Shards are written
    as ``<name>.tmp-<pid>`` and renamed once closed and flushed.
    """
    folder = out / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for part, lo in enumerate(range(0, len(samples), max_per_shard)):
        chunk = samples[lo : lo + max_per_shard]
        final = folder / shard_name(group, part)
        tmp = final.with_name(f"{final.name}{TMP}-{os.getpid()}")  # a killed run's orphan differs
        with open(tmp, "wb") as fh:
            write_samples(fh, chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        written.append({"path": f"shards/{final.name}", "n_epochs": len(chunk)})
    return written


def remove_stale(out: Path, groups: set[str]) -> int:
    """Delete temporary shards left by a killed run (only those of ``groups``)."""
    n = 0
    for p in (out / "shards").glob(f"shard-*{TMP}*"):
        if p.name.split("-")[1] in groups:
            p.unlink(missing_ok=True)
            n += 1
    return n


class Log:
    """An append-only JSON-lines log, flushed and fsynced per line."""

    def __init__(self, path: Path, fresh: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            path.write_text("", encoding="utf-8")
        elif path.is_file():  # drop a line torn by a kill, so the next entry starts on its own line
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as fh:
                    fh.truncate(data.rfind(b"\n") + 1)

    def append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """Entries of a log; a torn last line (killed mid-write) is ignored."""
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def log_paths(out: Path, shard_index: int, num_shards: int) -> tuple[Path, Path]:
    tag = f"{shard_index:03d}-of-{num_shards:03d}"
    return out / "logs" / f"resume-{tag}.jsonl", out / "logs" / f"failures-{tag}.jsonl"


def entries(out: Path) -> list[dict[str, Any]]:
    """The latest resume entry of each source file, over every partition, sorted by source.

    A file whose content changed was prepared again; its newer entry (same shard names) wins.
    """
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted((out / "logs").glob("resume-*.jsonl")):
        for e in Log.read(path):
            latest[e["source"]] = e
    return [latest[k] for k in sorted(latest)]


def completed(out: Path) -> set[str]:
    """sha256 of every completed file (the resume key)."""
    return {e["sha256"] for p in (out / "logs").glob("resume-*.jsonl") for e in Log.read(p)}


def write_manifest(out: Path, info: dict[str, Any], sources: list[str]) -> dict[str, Any]:
    """(Re)write ``manifest.json`` from every resume log, for the files of ``sources``.

    ``complete`` is true once every source is done, failed, or a duplicate (same sha256) of a
    prepared one; a source whose latest attempt failed is left out even if an older version of it
    was prepared.
    """
    failures = [f for p in sorted((out / "logs").glob("failures-*.jsonl")) for f in Log.read(p)]
    failed = {f["source"] for f in failures}
    current = set(sources)
    latest = [e for e in entries(out) if e["source"] in current and e["source"] not in failed]
    done = [e for e in latest if not e.get("duplicate_of")]
    duplicates = {e["source"]: e["duplicate_of"] for e in latest if e.get("duplicate_of")}
    shards = [
        {**s, "recording_id": e["recording_id"], "patient_id": e["patient_id"]}
        for e in done
        for s in e["shards"]
    ]
    labels: dict[str, dict[str, int]] = {}
    for e in done:
        for task, counts in e.get("label_counts", {}).items():
            for k, v in counts.items():
                labels.setdefault(task, {})[k] = labels.setdefault(task, {}).get(k, 0) + v
    n_chans = max((e["n_chans"] for e in done), default=0)
    manifest = {
        **info,
        "shards": shards,
        "n_epochs": sum(s["n_epochs"] for s in shards),
        "n_chans": n_chans,
        "n_recordings": len(done),
        "n_patients": len({e["patient_id"] for e in done}),
        "hours": round(sum(e["hours"] for e in done), 4),
        "label_counts": labels,
        "n_files": len(current),
        "n_failed": len(failed & current),
        "duplicates": duplicates,
        "complete": current <= failed | {e["source"] for e in latest},
    }
    if done:
        manifest["ch_names"] = done[0]["ch_names"]
    tmp = out / f"manifest.json{TMP}-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    return manifest
