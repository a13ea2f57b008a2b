"""The ten stages of ARCHITECTURE.md section 5, composed for one file.

:func:`process_file` runs a source file through them and writes its shard group; it returns the
resume-log entry, or raises :class:`Rejected` / :class:`~efm.errors.ReaderError` with the reason.
Each stage is a plain function of its own module (``montage``, ``taxonomy``, ``conditioning``,
``sleep``, ``quality``, ``shards``) and can be used on its own.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from efm.data import conditioning, montage, quality, shards, sleep, taxonomy
from efm.errors import EfmError, ReaderError
from efm.interfaces import Recording

log = logging.getLogger("efm.data.pipeline")


class Rejected(EfmError):
    """A readable recording that the pipeline cannot use (too short, unknown layout)."""


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Stage 1: hex digest of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def ids(rel: str, regex: str) -> tuple[str, str]:
    """``(patient_id, recording_id)`` from a POSIX path relative to the data root."""
    m = re.search(regex, rel)
    patient = (m.groupdict().get("patient") or m.group(0)) if m else ""
    stem = rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel
    recording = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")  # no dots: WebDataset keys
    return re.sub(r"[^A-Za-z0-9_-]+", "-", patient or recording), recording


EXPORT_FORMATS = (".edf", ".rec")  # what other formats are usually exported to


def same_recording(
    files: list[tuple[Path, str]], regex: str
) -> tuple[list[tuple[Path, str]], dict[str, dict[str, str]]]:
    """Files that map to one recording id (:func:`ids`), e.g. a Nihon Kohden ``x.EEG`` and its
    ``x.EDF`` export, or ``a b.edf`` and ``a-b.edf``: keep one, return ``(kept, dropped)``.

    Rule: a file in another format wins over an EDF (``.edf``/``.rec``, the usual export, which
    also loses resolution for 24-bit sources); among equals the first in sorted path order wins.
    ``dropped`` maps each dropped file to ``{"kept": its twin, "recording_id", "reason"}``.
    """
    groups: dict[str, list[tuple[Path, str]]] = {}
    for p, rel in files:
        groups.setdefault(ids(rel, regex)[1], []).append((p, rel))
    dropped: dict[str, dict[str, str]] = {}
    for rec_id, group in groups.items():
        if len(group) < 2:
            continue
        ranked = sorted(group, key=lambda t: (Path(t[1]).suffix.lower() in EXPORT_FORMATS, t[1]))
        keep = ranked[0][1]
        for _, rel in ranked[1:]:
            why = (
                "an EDF export loses to the original format"
                if Path(rel).suffix.lower() in EXPORT_FORMATS
                and Path(keep).suffix.lower() not in EXPORT_FORMATS
                else "the first in sorted path order is kept"
            )
            dropped[rel] = {
                "kept": keep,
                "recording_id": rec_id,
                "reason": f"same recording id {rec_id!r} as {keep}, which is prepared instead "
                f"({why})",
            }
    kept = [(p, rel) for p, rel in files if rel not in dropped]
    return kept, dropped


RESERVED_TASKS = ("events", "annotations")  # meta keys that are not label tasks


def check_file_labels(spec: dict[str, dict[str, int]] | None) -> list[str]:
    """Problems of a ``data.file_labels`` mapping: bad regexes, negative labels, reserved tasks."""
    problems = []
    for task, rules in (spec or {}).items():
        if task in RESERVED_TASKS:
            problems.append(
                f"data.file_labels.{task}: {task!r} is reserved, name the task otherwise"
            )
        for rx, value in (rules or {}).items():
            try:
                re.compile(rx)
            except re.error as exc:
                problems.append(f"data.file_labels.{task}: bad regex {rx!r}: {exc}")
            if not isinstance(value, int) or value < 0:
                problems.append(f"data.file_labels.{task}[{rx!r}]={value!r}: needs an integer >= 0")
    return problems


def file_labels(rel: str, spec: dict[str, dict[str, int]] | None) -> dict[str, int]:
    """The file-level labels of a POSIX path relative to the data root (``data.file_labels``).

    Per task, the first regex (in order) found in ``rel`` gives the label; no match, no label.
    """
    out = {}
    for task, rules in (spec or {}).items():
        hit = next((v for rx, v in (rules or {}).items() if re.search(rx, rel)), None)
        if hit is not None:
            out[task] = int(hit)
    return out


def failure_kind(exc: BaseException) -> str:
    """A short reason class for the summary: truncated, zero-length, corrupt, layout, too-short,
    no-signal (a file without signal channels, e.g. an annotation-only EDF+ hypnogram) ..."""
    msg = str(exc).lower()
    for kind, words in (
        ("no-signal", ("no signal channels",)),
        ("too-short", ("too short",)),
        ("layout", ("channel layout",)),
        ("zero-length", ("zero-length", "no data records", "no samples")),
        ("truncated", ("truncated",)),
        ("missing", ("no such file",)),
        ("unknown-format", ("not read by", "no reader", "not an edf")),
    ):
        if any(w in msg for w in words):
            return kind
    return "corrupt" if isinstance(exc, ReaderError) else "error"


def read(path: Path, reader: Any) -> Recording:
    """Stage 2 with every unexpected reader failure turned into a ReaderError."""
    try:
        return reader.read(path)
    except EfmError:
        raise
    except Exception as exc:  # a third-party reader's bug must not stop the run
        raise ReaderError(f"{path}: {type(exc).__name__}: {exc}") from exc


def process_recording(
    rec: Recording, pipe: dict[str, Any], fixed: dict[str, int] | None = None
) -> tuple[list[dict[str, Any]], dict]:
    """Stages 3-9 on a recording: epoch samples (float16 µV) and a summary.

    ``fixed`` labels every epoch (file-level labels, :func:`file_labels`), over annotated ones.
    """
    path = pipe["path"]
    rec = montage.pick_channels(rec, pipe.get("picks") or (), pipe.get("exclude") or ())
    if path == "eeg":
        rec = montage.standardize(rec, pipe.get("channels") or None, pipe["min_electrodes"])
    elif path == "ieeg":
        rec = montage.ieeg_channels(rec)
    else:
        raise EfmError(f"pipeline.path={path!r}; options: eeg, ieeg")
    sfreq, epoch_s = float(pipe["sfreq"]), float(pipe["epoch_s"])
    data, unfiltered, cond = conditioning.condition(
        rec.data, rec.sfreq, sfreq, pipe["l_freq"], pipe["h_freq"], pipe["notch"]
    )
    q = quality.epoch_quality(
        data, unfiltered, sfreq, epoch_s, cond["notch"], pipe["h_freq"], rec.data, rec.sfreq
    )
    n_ep = len(q["score"])
    valid = np.flatnonzero(q["valid"])
    if len(valid) < pipe["min_epochs"]:
        raise Rejected(
            f"{rec.source}: too short: {len(valid)} valid {epoch_s:g} s epochs "
            f"({rec.duration:.1f} s of signal), need {pipe['min_epochs']}"
        )
    tax = taxonomy.load(pipe["taxonomy"])
    labels = taxonomy.epoch_labels(rec.annotations, tax, n_ep, epoch_s, pipe["label_min_overlap_s"])
    if path == "eeg":
        unstaged = any(lab.get("sleep_stage", -1) < 0 for lab in labels)  # annotated stages win
        mode = pipe["sleep_staging"] if unstaged else "none"
        staged = sleep.stage(data, sfreq, rec.ch_names, n_ep, epoch_s, mode)
        if staged is not None:
            for lab, st in zip(labels, staged.tolist()):
                if lab.get("sleep_stage", -1) < 0:
                    lab["sleep_stage"] = int(st)
        regions = montage.load_regions(pipe["regions"])
        w = montage.region_matrix(rec.ch_names, regions, rec.source)  # [R, C]
        data = w @ data  # [R, T]
        assert rec.ch_pos is not None
        ch_pos: Any = (w @ rec.ch_pos).round(5).tolist()
        ch_names, ch_types = list(regions), ["eeg"] * len(regions)
    else:
        ch_names, ch_types = rec.ch_names, rec.ch_types
        pos = rec.ch_pos
        ch_pos = (
            None
            if pos is None
            else [[None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in pos]
        )
    n_t = int(round(epoch_s * sfreq))
    ep = quality.epochs_view(data, n_ep, n_t)  # [E, C, t] volts
    base = {
        "patient_id": rec.patient_id,
        "recording_id": rec.recording_id,
        "sfreq": sfreq,
        "ch_names": ch_names,
        "ch_types": ch_types,
        "ch_pos": ch_pos,
        "modality": rec.modality,
    }
    samples = []
    for e in valid.tolist():  # one sample per epoch; the signal work above is vectorised
        sig = np.clip(ep[e] * 1e6, -shards.MAX_UV, shards.MAX_UV).astype(np.float16)
        qual = {
            k: round(float(q[k][e]), 5)
            for k in ("score", "flat", "clipping", "amplitude", "line_noise")
        }
        lab = {**labels[e], **(fixed or {})}
        meta = {
            **base,
            "epoch_index": int(e),
            "start_s": float(e * epoch_s),
            "annotations": lab.pop("annotations"),
            "labels": lab,
            "quality": qual,
        }
        samples.append({"__key__": f"{rec.recording_id}_{int(e):05d}", "signal": sig, "meta": meta})
    counts: dict[str, dict[str, int]] = {}
    for s in samples:
        for task, v in s["meta"]["labels"].items():
            if isinstance(v, int):
                c = counts.setdefault(task, {})
                c[str(v)] = c.get(str(v), 0) + 1
    summary = {
        "n_chans": len(ch_names),
        "ch_names": ch_names,
        "line_freq": cond["line_freq"],
        "hours": rec.duration / 3600.0,
        "label_counts": counts,
        "n_invalid": int(n_ep - len(valid)),
    }
    return samples, summary


def process_file(task: dict[str, Any]) -> dict[str, Any]:
    """Stages 1-10 for one file; returns ``{"status": "ok"|"done"|"failed", ...}``.

    ``task``: ``path``, ``rel``, ``file_index``, ``out``, ``done`` (sha256s already complete),
    ``reader`` (name), ``reader_cfg``, ``pipeline``, ``patient_regex``, ``file_labels``.
    """
    from efm import registry

    path, out = Path(task["path"]), Path(task["out"])
    base = {"source": task["rel"], "file_index": task["file_index"]}
    try:
        digest = sha256(path)
        if digest in task["done"]:
            return {**base, "status": "done", "sha256": digest}
        reader = registry.create("readers", task["reader"], **task["reader_cfg"])
        rec = read(path, reader)
        rec.sha256 = digest
        rec.patient_id, rec.recording_id = ids(task["rel"], task["patient_regex"])
        fixed = file_labels(task["rel"], task.get("file_labels"))
        samples, summary = process_recording(rec, task["pipeline"], fixed)
        written = shards.write_group(
            out, shards.group_id(task["rel"]), samples, int(task["pipeline"]["shard_max_epochs"])
        )
    except Exception as exc:  # any failure is this file's, never the run's
        if not isinstance(exc, EfmError):
            log.debug("unexpected failure on %s", path, exc_info=True)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, EfmError):
            reason = f"{path}: {type(exc).__name__}: {reason}"
        return {**base, "status": "failed", "kind": failure_kind(exc), "reason": reason[:500]}
    return {
        **base,
        "status": "ok",
        "sha256": digest,
        "patient_id": rec.patient_id,
        "recording_id": rec.recording_id,
        "shards": written,
        "n_epochs": sum(s["n_epochs"] for s in written),
        **summary,
    }
