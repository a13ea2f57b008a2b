"""Stage 10: WebDataset shards, the manifest, the resume log and the failure log.

Layout of a prepared directory ``OUT``::

    OUT/config.json                        the data/pipeline/reader config it was prepared with
    OUT/shards/shard-GGGGGGGGGGGG-PPP.tar  part P of one file's epochs (G: hash of its path)
    OUT/logs/resume-III-of-NNN.jsonl       one line per completed file (key: its sha256)
    OUT/logs/failures-III-of-NNN.jsonl     one line per failed file of the latest run, with reason
    OUT/manifest.json                      every shard, with counts; written when a run ends

Each source file gets its own shard group, written under a temporary name and renamed when complete;
its sha256 goes to the resume log only after all its shards are renamed. The contents are a pure
function of the file and the config (fixed tar metadata), so a run that is killed and restarted
writes exactly the shards of an uninterrupted one. Group names hash the file's path relative to the
data root, so adding files to the root never renames or overwrites prepared shards. A file whose
sha256 was already prepared under another path is logged as a duplicate and not prepared again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

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


def write_group(
    out: Path, group: str, samples: list[dict[str, Any]], max_per_shard: int
) -> list[dict[str, Any]]:
    """Write one file's samples into its shard group; return ``[{"path", "n_epochs"}]``.

    Each sample is ``{"__key__", "signal" (float16 µV [C, T]), "meta" (dict)}``. Shards are written
    as ``<name>.tmp-<pid>`` and renamed once closed and flushed.
    """
    import webdataset as wds

    folder = out / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for part, lo in enumerate(range(0, len(samples), max_per_shard)):
        chunk = samples[lo : lo + max_per_shard]
        final = folder / shard_name(group, part)
        tmp = final.with_name(f"{final.name}{TMP}-{os.getpid()}")  # a killed run's orphan differs
        with open(tmp, "wb") as fh:
            writer = wds.TarWriter(fh, encoder=False, mtime=0.0, user="efm", group="efm")
            for s in chunk:
                meta = json.dumps(s["meta"], sort_keys=True, allow_nan=False).encode("utf-8")
                writer.write(
                    {"__key__": s["__key__"], "signal.npy": _npy(s["signal"]), "meta.json": meta}
                )
            writer.close()
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
