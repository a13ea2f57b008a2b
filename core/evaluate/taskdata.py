"""A task's recordings as labelled epochs, conditioned like the checkpoint's pretraining data.

Every file goes through the pretraining stages (:mod:`efm.data`): the registered reader, the
task's channel picks, the recipe's channel path (``eeg``: the 10-20 electrodes averaged into
regions; ``ieeg``: every channel), then resampling, bandpass and notch to the recipe's
``pipeline`` (:func:`efm.data.conditioning.condition`). Epochs are cut from the conditioned signal
(a grid from 0 s, or one epoch at each labelled event onset) and stored as float16 microvolts like
the shards. The result is cached under ``${EFM_CACHE}/tasks/<task>-<hash>.npz``, keyed by the task,
the files (names and sizes) and the pipeline options that decide the epochs.

A file that cannot be read or used is logged with its reason and skipped; the run goes on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import EfmError, UsageError
from efm.evaluate.task import Task
from efm.interfaces import Recording

log = logging.getLogger("efm.evaluate.taskdata")

PIPELINE_KEYS = ("path", "sfreq", "l_freq", "h_freq", "notch", "regions", "min_electrodes")
CACHE_VERSION = 1


@dataclass
class TaskData:
    """Labelled epochs of one task, one row per epoch.

    ``x``: ``[N, C, T]`` float16 µV; ``y``: class indices; ``subject``, ``session``,
    ``recording`` (ids), ``sha256`` (of the source file) and ``start_s`` per epoch.
    """

    x: np.ndarray  # [N, C, T] float16 µV
    y: np.ndarray  # [N] int64
    classes: list[str]
    subject: np.ndarray  # [N] str
    session: np.ndarray  # [N] str
    recording: np.ndarray  # [N] str
    sha256: np.ndarray  # [N] str
    start_s: np.ndarray  # [N] float64
    sfreq: float
    ch_names: list[str]
    ch_types: list[str]
    ch_pos: list[Any] | None
    modality: str
    skipped: list[dict[str, str]] = field(default_factory=list)
    root: str = ""

    def __len__(self) -> int:
        return int(self.y.size)

    def subset(self, idx: np.ndarray) -> TaskData:
        """The epochs ``idx`` (same channels and classes)."""
        out = TaskData(**{k: v for k, v in self.__dict__.items()})
        for k in ("x", "y", "subject", "session", "recording", "sha256", "start_s"):
            setattr(out, k, getattr(self, k)[idx])
        return out

    def meta(self) -> dict[str, Any]:
        """One epoch's shard-style metadata (what a representation reads)."""
        return {
            "sfreq": self.sfreq,
            "ch_names": self.ch_names,
            "ch_types": self.ch_types,
            "ch_pos": self.ch_pos,
            "modality": self.modality,
        }

    def counts(self) -> dict[str, int]:
        """Epochs per class name."""
        n = np.bincount(self.y, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n)}


# -- identities ------------------------------------------------------------------------------------
def subject_of(rel: str, rule: str | None) -> str:
    """The subject of a file from its path relative to the root (see :mod:`efm.evaluate.task`)."""
    p = Path(rel)
    if rule in (None, "", "recording"):
        return re.sub(r"[^A-Za-z0-9_-]+", "-", rel.rsplit(".", 1)[0]).strip("-")
    if rule == "bids":
        m = re.search(r"(?:^|[/_])sub-([A-Za-z0-9]+)", rel)
        return f"sub-{m.group(1)}" if m else (p.parent.name or p.stem)
    if rule == "parent":
        m = re.search(r"(?:^|[/_])sub-([A-Za-z0-9]+)", rel)
        if m:  # BIDS entities win over the folder
            return f"sub-{m.group(1)}"
        return p.parent.name if p.parent.name else p.stem.split("_")[0]
    m = re.search(rule, rel)
    if not m:
        raise EfmError(f"{rel}: the subject pattern {rule!r} does not match")
    return str(m.group("subject"))


def session_of(rel: str, rule: str | None) -> str:
    """The session of a file (``""`` when the task names no rule or none matches)."""
    if not rule:
        return ""
    if rule == "bids":
        m = re.search(r"(?:^|[/_])ses-([A-Za-z0-9]+)", rel)
        return f"ses-{m.group(1)}" if m else ""
    m = re.search(rule, rel)
    return str(m.group("session")) if m else ""


# -- labels ----------------------------------------------------------------------------------------
def _class_of(description: str, table: dict[str, str]) -> str | None:
    text = description.strip()
    for key, cls in table.items():
        if key.startswith("re:") and re.search(key[3:], text):
            return cls
        if key == text:
            return cls
    return None


def events_tsv(path: Path) -> list[tuple[float, float, str]]:
    """``(onset, duration, trial_type|value)`` of the BIDS ``*_events.tsv`` beside ``path``."""
    stem = re.sub(r"_(eeg|ieeg|meg)$", "", path.name.split(".")[0])
    tsv = path.with_name(f"{stem}_events.tsv")
    if not tsv.is_file():
        return []
    out = []
    with open(tsv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            text = row.get("trial_type") or row.get("value") or ""
            dur = row.get("duration") or "0"
            out.append((float(row["onset"]), 0.0 if dur == "n/a" else float(dur), str(text)))
    return out


def recording_events(rec: Recording, task: Task, path: Path) -> list[tuple[float, float, str]]:
    """``(onset, duration, description)`` of the events the task labels from."""
    if task.labels == "annotations":
        return [(a.onset, a.duration, a.description) for a in rec.annotations]
    if task.labels == "events.tsv":
        return events_tsv(path)
    if task.labels == "taxonomy":
        from efm.data import taxonomy

        tax = taxonomy.load("default")
        return [
            (start, stop - start, sub.label or sub.name)
            for start, stop, _, sub in taxonomy.intervals(rec.annotations, tax)
        ]
    return []


def grid_labels(
    events: list[tuple[float, float, int]],
    n_epochs: int,
    epoch_s: float,
    min_overlap: float,
    n_classes: int,
    background: int | None,
) -> np.ndarray:
    """Class per grid epoch (-1: left out) from ``(onset, duration, class)`` events.

    An epoch takes a class when events of that class cover at least ``min_overlap`` of it and no
    event of another class touches it; an epoch that no event touches gets ``background`` (or -1).
    Instant events count as covering the epoch that holds them.
    """
    starts = np.arange(n_epochs)[:, None] * epoch_s  # [E, 1]
    cover = np.zeros((n_epochs, n_classes))
    if events:
        ev = np.asarray(events, dtype=float)  # [K, 3]
        on, dur, cls = ev[:, 0][None], ev[:, 1][None], ev[:, 2].astype(int)
        inside = (starts <= on) & (on < starts + epoch_s)  # [E, K] instant events
        ov = np.clip(np.minimum(starts + epoch_s, on + dur) - np.maximum(starts, on), 0, None)
        ov = np.where(dur > 0, ov, np.where(inside, epoch_s, 0.0))  # [E, K] seconds
        np.add.at(cover.T, cls, ov.T)  # [C, E] += per-event overlaps
    touched = (cover > 0).sum(axis=1)
    best = cover.argmax(axis=1)
    ok = (touched == 1) & (cover.max(axis=1) >= min_overlap * epoch_s - 1e-9)
    out = np.where(ok, best, -1)
    if background is not None:
        out = np.where(touched == 0, background, out)
    return out.astype(np.int64)


def epochs_of(
    task: Task,
    rel: str,
    events: list[tuple[float, float, str]],
    duration_s: float,
    csv_rows: list[tuple[float, float, str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """``(start_s [E], class [E], descriptions found)`` of one recording's labelled epochs."""
    cls = {c: i for i, c in enumerate(task.classes)}
    found = {d for _, _, d in events}
    ep = task.epoch_s
    if task.labels == "file":
        hit = next((c for rx, c in task.label_map.items() if re.search(rx, rel)), None)
        n = int(duration_s // ep + 1e-9)
        if hit is None or n == 0:
            return np.zeros(0), np.zeros(0, dtype=np.int64), found
        return np.arange(n) * ep, np.full(n, cls[hit], dtype=np.int64), found
    if task.labels == "csv":
        starts, labels = [], []
        for start, stop, label in csv_rows or []:
            if label not in cls:
                raise EfmError(
                    f"{task.csv}: label {label!r} of {rel} is not a class {task.classes}"
                )
            n = max(int((stop - start) // ep + 1e-9), 0)
            starts += [start + k * ep for k in range(n)]
            labels += [cls[label]] * n
        s, y = np.asarray(starts, dtype=float), np.asarray(labels, dtype=np.int64)
        keep = s + ep <= duration_s + 1e-9
        return s[keep], y[keep], found
    mapped = [
        (on, dur, cls[c])
        for on, dur, d in events
        if (c := _class_of(d, task.label_map)) is not None
    ]
    if task.epochs == "events":
        s = np.asarray([on for on, _, _ in mapped], dtype=float)
        y = np.asarray([c for _, _, c in mapped], dtype=np.int64)
        keep = (s >= 0) & (s + ep <= duration_s + 1e-9)
        return s[keep], y[keep], found
    n = int(duration_s // ep + 1e-9)
    bg = cls[task.background] if task.background else None
    y = grid_labels(mapped, n, ep, task.min_overlap, len(task.classes), bg)
    keep = y >= 0
    return (np.arange(n) * ep)[keep], y[keep], found


# -- channels and conditioning ---------------------------------------------------------------------
def pick_channels(rec: Recording, task: Task) -> Recording:
    """Drop the task's excluded names and the types it does not pick."""
    drop = {n.lower() for n in task.exclude}
    keep = [
        i
        for i, (n, t) in enumerate(zip(rec.ch_names, rec.ch_types))
        if n.lower() not in drop and (not task.picks or t in task.picks)
    ]
    if not keep:
        raise EfmError(f"{rec.source}: no channel left after picks {task.picks} / exclude")
    if len(keep) == rec.n_chans:
        return rec
    pos = rec.ch_pos[keep] if rec.ch_pos is not None else None
    return Recording(
        data=rec.data[keep],
        sfreq=rec.sfreq,
        ch_names=[rec.ch_names[i] for i in keep],
        ch_types=[rec.ch_types[i] for i in keep],
        ch_pos=pos,
        annotations=rec.annotations,
        patient_id=rec.patient_id,
        recording_id=rec.recording_id,
        sha256=rec.sha256,
        source=rec.source,
        modality=rec.modality,
        meas_date=rec.meas_date,
        extra=rec.extra,
    )


def condition_recording(rec: Recording, pipe: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The pretraining stages 3 and 6 (and 9's region average on the eeg path).

    Returns the conditioned signal ``[C, T]`` in volts at ``pipe["sfreq"]`` and its channel meta.
    """
    from efm.data import conditioning, montage

    if pipe["path"] == "eeg":
        rec = montage.standardize(rec, pipe.get("channels") or None, int(pipe["min_electrodes"]))
    else:
        rec = montage.ieeg_channels(rec)
    data, _, _ = conditioning.condition(
        rec.data, rec.sfreq, float(pipe["sfreq"]), pipe["l_freq"], pipe["h_freq"], pipe["notch"]
    )
    if pipe["path"] == "eeg":
        regions = montage.load_regions(pipe["regions"])
        w = montage.region_matrix(rec.ch_names, regions, rec.source)  # [R, C]
        pos = None if rec.ch_pos is None else (w @ rec.ch_pos).round(5).tolist()
        return (w @ data).astype(np.float32), {
            "ch_names": list(regions),
            "ch_types": ["eeg"] * len(regions),
            "ch_pos": pos,
            "modality": rec.modality,
        }
    pos = (
        None
        if rec.ch_pos is None
        else [[None if not np.isfinite(v) else round(float(v), 5) for v in r] for r in rec.ch_pos]
    )
    return data, {
        "ch_names": rec.ch_names,
        "ch_types": rec.ch_types,
        "ch_pos": pos,
        "modality": rec.modality,
    }


# -- files, cache, assembly ------------------------------------------------------------------------
def task_root(task: Task, root: str | Path | None) -> Path:
    """``data.root``, else the task's own root, else its fetcher's download."""
    if root not in (None, ""):
        return Path(str(root)).expanduser()
    if task.root:
        return Path(task.root).expanduser()
    if task.fetch is not None:
        log.info("task %s: no data.root given, fetching its data", task.name)
        return Path(task.fetch())
    raise UsageError(f"task {task.name} needs data.root=DIR (the folder of its recordings)")


def task_files(task: Task, root: Path) -> list[tuple[Path, str]]:
    """``(path, relative POSIX path)`` of the task's recordings, sorted."""
    from efm.data.sources import claimed_extensions, discover

    if not root.exists():
        raise UsageError(f"data.root={str(root)!r} does not exist")
    if task.reader:  # a reader that claims no extension: every file of the glob
        files = sorted(
            (p, p.relative_to(root).as_posix())
            for p in root.glob(task.glob)
            if p.is_file() and not p.name.startswith(".")
        )
    else:
        files = discover(root, task.glob, claimed_extensions())
    if task.include:
        files = [(p, r) for p, r in files if re.search(task.include, r)]
    if not files:
        raise UsageError(
            f"task {task.name}: no recordings under {root} matching {task.glob!r}"
            + (f" and {task.include!r}" if task.include else "")
        )
    return files


def _csv_table(task: Task, root: Path) -> dict[str, list[tuple[float, float, str]]]:
    path = Path(task.csv or "")
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise UsageError(f"task {task.name}: label sidecar {path} does not exist")
    table: dict[str, list[tuple[float, float, str]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "start", "stop", "label"} - set(reader.fieldnames or [])
        if missing:
            raise UsageError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for row in reader:
            key = Path(row["path"]).as_posix()
            table.setdefault(key, []).append(
                (float(row["start"]), float(row["stop"]), row["label"])
            )
    return table


def cache_key(task: Task, files: list[tuple[Path, str]], pipe: dict[str, Any], reader: Any) -> str:
    ident = {
        "version": CACHE_VERSION,
        "task": task.identity(),
        "files": [[rel, p.stat().st_size] for p, rel in files],
        "pipeline": {k: pipe.get(k) for k in PIPELINE_KEYS},
        "reader": reader,
    }
    text = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _sha256(path: Path) -> str:
    from efm.data.pipeline import sha256

    return sha256(path)


def load(
    task: Task, cfg: dict[str, Any], root: str | Path | None = None, cache: bool = True
) -> TaskData:
    """The labelled epochs of ``task``, conditioned to ``cfg``'s pipeline (cached).

    Raises :class:`~efm.errors.EfmError` when no epoch is labelled (listing the events found).
    """
    from efm import registry
    from efm.data.paths import cache_dir
    from efm.data.pipeline import read
    from efm.data.sources import claimed_extensions, reader_for

    pipe = cfg["pipeline"]
    base = task_root(task, root)
    files = task_files(task, base)
    reader_cfg = cfg.get("reader") or {"name": "mne"}
    key = cache_key(task, files, pipe, reader_cfg)
    path = cache_dir() / "tasks" / f"{task.name or 'task'}-{key}.npz"
    if cache and path.is_file():
        log.info("task %s: epochs from the cache %s", task.name, path)
        return _read_cache(path)
    csv_rows = _csv_table(task, base) if task.labels == "csv" else {}
    exts = claimed_extensions()
    chunks: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    found: set[str] = set()
    meta: dict[str, Any] | None = None
    n_t = int(round(task.epoch_s * float(pipe["sfreq"])))
    for p, rel in files:
        try:
            name = task.reader or reader_for(p, str(reader_cfg.get("name", "mne")), exts)
            opts = {k: v for k, v in reader_cfg.items() if k != "name"} if not task.reader else {}
            if name != reader_cfg.get("name"):
                opts = {}
            rec = read(p, registry.create("readers", name, **opts))
            events = recording_events(rec, task, p)
            starts, y, seen = epochs_of(task, rel, events, rec.duration, csv_rows.get(rel))
            found |= seen
            if y.size == 0:
                continue
            rec = pick_channels(rec, task)
            data, m = condition_recording(rec, pipe)  # [C, T'] volts
            if meta is None:
                meta = m
            elif m["ch_names"] != meta["ch_names"]:
                raise EfmError(
                    f"{rel}: channels {m['ch_names'][:4]}... differ from the task's first "
                    f"recording ({meta['ch_names'][:4]}...); pick a common set (task picks)"
                )
            first = np.round(starts * float(pipe["sfreq"])).astype(int)
            ok = first + n_t <= data.shape[1]
            first, starts, y = first[ok], starts[ok], y[ok]
            idx = first[:, None] + np.arange(n_t)[None, :]  # [E, T]
            x = np.clip(data[:, idx] * 1e6, -65000, 65000).astype(np.float16)  # [C, E, T]
            chunks.append(
                {
                    "x": x.transpose(1, 0, 2),
                    "y": y,
                    "start_s": starts,
                    "subject": subject_of(rel, task.subject),
                    "session": session_of(rel, task.session),
                    "recording": re.sub(r"[^A-Za-z0-9_-]+", "-", rel.rsplit(".", 1)[0]),
                    "sha256": _sha256(p),
                }
            )
        except EfmError as exc:
            skipped.append({"file": rel, "reason": " ".join(str(exc).split())[:300]})
            log.warning("task %s: skipped %s: %s", task.name, rel, exc)
        except Exception as exc:  # a damaged file is this file's problem, not the run's
            skipped.append({"file": rel, "reason": f"{type(exc).__name__}: {exc}"[:300]})
            log.warning("task %s: skipped %s: %s: %s", task.name, rel, type(exc).__name__, exc)
    if not chunks or meta is None:
        what = (
            f"events found: {', '.join(sorted(found)[:20])}"
            if found
            else "no events found in the recordings"
            if task.labels not in ("file", "csv")
            else f"{len(files)} file(s), {len(skipped)} skipped"
        )
        raise EfmError(
            f"task {task.name}: no epoch is labelled under {base} (label table "
            f"{task.label_map or task.csv}; {what})"
        )
    lengths = [len(c["y"]) for c in chunks]
    out = TaskData(
        x=np.concatenate([c["x"] for c in chunks]),
        y=np.concatenate([c["y"] for c in chunks]).astype(np.int64),
        classes=list(task.classes),
        subject=np.repeat([c["subject"] for c in chunks], lengths),
        session=np.repeat([c["session"] for c in chunks], lengths),
        recording=np.repeat([c["recording"] for c in chunks], lengths),
        sha256=np.repeat([c["sha256"] for c in chunks], lengths),
        start_s=np.concatenate([c["start_s"] for c in chunks]).astype(float),
        sfreq=float(pipe["sfreq"]),
        skipped=skipped,
        root=str(base),
        **meta,
    )
    if cache:
        _write_cache(path, out)
    return out


def _write_cache(path: Path, d: TaskData) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(d, k) for k in ("x", "y", "subject", "session", "recording", "sha256")}
    info = {
        k: getattr(d, k)
        for k in (
            "classes",
            "sfreq",
            "ch_names",
            "ch_types",
            "ch_pos",
            "modality",
            "skipped",
            "root",
        )
    }
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, start_s=d.start_s, info=json.dumps(info), **arrays)
    os.replace(tmp, path)


def _read_cache(path: Path) -> TaskData:
    with np.load(path, allow_pickle=False) as z:
        info = json.loads(str(z["info"]))
        arrays = {k: z[k] for k in z.files if k != "info"}
    return TaskData(**arrays, **info)
