"""Stages 4-5: annotations to clinical events through the bilingual keyword taxonomy, then to labels.

The taxonomy is data (``efm/data/taxonomy.yaml``): 5 categories, their subcategories and
German and English keywords. :func:`classify` maps one annotation text to a subcategory;
:func:`epoch_labels` turns a recording's annotations into per-epoch labels: binary tasks
(``seizure``, ``interictal``, ``artefact``), ``sleep_stage`` where annotated, and the list of
events overlapping each epoch. Seizure intervals come from annotations with a duration, or from
onset/offset marker pairs ("Anfallsbeginn" ... "Anfallsende", "seizure onset" ... "seizure end").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from efm.errors import ConfigError
from efm.interfaces import Annotation

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_TIMEKEEPING = re.compile(r"^[+-]?\d+(\.\d*)?$")
UNPAIRED_ONSET_S = 120.0  # a seizure onset without an offset lasts at most this long


def normalize(text: str) -> tuple[str, ...]:
    """Lower-case, fold umlauts and accents, split on anything that is not a letter or a digit."""
    text = text.lower().translate(_FOLD)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return tuple(t for t in re.split(r"[^a-z0-9]+", text) if t)


@dataclass
class Subcategory:
    name: str
    category: str
    label: str | None = None  # binary task switched on
    stage: int | None = None  # sleep stage
    role: str | None = None  # "onset" | "offset" for seizure markers


@dataclass
class Taxonomy:
    """Keyword table: token tuple -> subcategory."""

    subcategories: dict[str, Subcategory]
    keywords: dict[tuple[str, ...], str]
    labels: list[str] = field(default_factory=list)
    max_len: int = 1

    @property
    def categories(self) -> list[str]:
        return sorted({s.category for s in self.subcategories.values()})

    def classify(self, text: str) -> Subcategory | None:
        """The subcategory of the longest keyword in ``text``; None for no match or timekeeping."""
        if _TIMEKEEPING.match(text.strip()):
            return None
        toks = normalize(text)
        best: tuple[int, int] | None = None  # (length, -position)
        hit = None
        for i in range(len(toks)):
            for n in range(min(self.max_len, len(toks) - i), 0, -1):
                name = self.keywords.get(toks[i : i + n])
                if name is not None:
                    if best is None or (n, -i) > best:
                        best, hit = (n, -i), name
                    break
        return self.subcategories[hit] if hit else None


def load(source: str = "default") -> Taxonomy:
    """Load ``"default"`` (the shipped taxonomy) or a YAML file path; conflicts are a ConfigError."""
    stamp = Path(source).stat().st_mtime_ns if source != "default" and Path(source).is_file() else 0
    return _load_cached(source, stamp)


@lru_cache(maxsize=8)
def _load_cached(source: str, stamp: int) -> Taxonomy:
    if source == "default":
        text = resources.files("efm.data").joinpath("taxonomy.yaml").read_text("utf-8")
    else:
        text = Path(source).read_text(encoding="utf-8")
    doc = yaml.safe_load(text) or {}
    subs: dict[str, Subcategory] = {}
    kws: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    for cat, cnode in (doc.get("categories") or {}).items():
        for sname, snode in (cnode.get("subcategories") or {}).items():
            snode = snode or {}
            subs[sname] = Subcategory(
                sname, cat, cnode.get("label"), snode.get("stage"), snode.get("role")
            )
            for kw in [*snode.get("en", []), *snode.get("de", [])]:
                toks = normalize(str(kw))
                if kws.get(toks, sname) != sname:
                    problems.append(f"taxonomy keyword {kw!r} is in both {kws[toks]} and {sname}")
                kws[toks] = sname
    if problems:
        raise ConfigError(problems)
    labels = sorted({s.label for s in subs.values() if s.label})
    return Taxonomy(subs, kws, labels, max(len(k) for k in kws))


def intervals(
    anns: list[Annotation], tax: Taxonomy
) -> list[tuple[float, float, Annotation, Subcategory]]:
    """Classified events as ``(start, stop, annotation, subcategory)``; seizure markers paired."""
    out = []
    open_onsets: list[Annotation] = []
    for a in sorted(anns, key=lambda a: a.onset):
        sub = tax.classify(a.description)
        if sub is None:
            continue
        if sub.role == "onset" and a.duration <= 0:
            open_onsets.append(a)
            continue
        if sub.role == "offset" and open_onsets:
            start = open_onsets.pop()
            out.append((start.onset, a.onset, start, tax.subcategories["seizure"]))
        out.append((a.onset, a.onset + max(a.duration, 0.0), a, sub))
    for start in open_onsets:
        out.append(
            (start.onset, start.onset + UNPAIRED_ONSET_S, start, tax.subcategories["seizure"])
        )
    return out


def epoch_labels(
    anns: list[Annotation], tax: Taxonomy, n_epochs: int, epoch_s: float, min_overlap_s: float
) -> list[dict[str, Any]]:
    """Per-epoch labels: binary tasks, ``sleep_stage`` (-1 unknown), ``events`` and their texts.

    An event with a duration counts for an epoch when it overlaps it by ``min_overlap_s`` (or covers
    the whole event when shorter); an instant event counts for the epoch that contains it.
    """
    starts = np.arange(n_epochs) * epoch_s
    stops = starts + epoch_s
    labels: list[dict[str, Any]] = [
        {**{t: 0 for t in tax.labels}, "events": [], "annotations": []} for _ in range(n_epochs)
    ]
    stage = np.full(n_epochs, -1)
    stage_marks: list[tuple[float, float, int]] = []
    for start, stop, ann, sub in intervals(anns, tax):
        if stop > start:
            overlap = np.minimum(stops, stop) - np.maximum(starts, start)
            need = min(min_overlap_s, stop - start)
            hit = np.flatnonzero(overlap >= max(need, 1e-9))
        else:
            hit = np.flatnonzero((starts <= start) & (start < stops))
        if sub.stage is not None:
            stage_marks.append((start, stop, sub.stage))
        for e in hit:
            lab = labels[e]
            if sub.label:
                lab[sub.label] = 1
            if sub.name not in lab["events"]:
                lab["events"].append(sub.name)
            lab["annotations"].append(
                {
                    "onset": round(ann.onset, 3),
                    "text": ann.description,
                    "annotator": ann.annotator,
                    "subcategory": sub.name,
                }
            )
    if stage_marks:  # a stage without duration holds until the next stage annotation
        stage_marks.sort()
        mids = starts + epoch_s / 2
        for i, (start, stop, st) in enumerate(stage_marks):
            end = (
                stop
                if stop > start
                else (stage_marks[i + 1][0] if i + 1 < len(stage_marks) else np.inf)
            )
            stage[(mids >= start) & (mids < end)] = st
        for lab, st_e in zip(labels, stage.tolist()):
            lab["sleep_stage"] = int(st_e)
    return labels
