"""What a downstream task is: recordings, a labelling rule, epochs, subjects, splits, channel picks.

A :class:`Task` is registered by a plugin (``efm_register_tasks``) and turned into labelled epochs
by :mod:`efm.evaluate.taskdata`. Nothing here reads data; the class only holds and checks fields.

Labels (``labels``):

- ``"file"``: ``label_map`` maps regexes, searched in each file's path relative to the root, to
  class names; every epoch of a file gets its file's class (a file that no regex matches is left
  out). Epochs lie on a grid from 0 s.
- ``"annotations"``: events inside the recordings (EDF+ annotations, BrainVision markers, EEGLAB
  events, read by the reader) whose description is a key of ``label_map`` (exact text, or a regex
  when the key starts with ``re:``). With ``epochs="events"`` each epoch starts at an event's onset
  and lasts ``epoch_s`` (event-locked); with ``epochs="grid"`` a grid epoch takes the class of the
  event covering at least ``min_overlap`` of it (a fraction in (0, 1]; epochs that two classes
  cover, or no event covers enough, are left out: the explicit partial-overlap rule).
- ``"events.tsv"``: as ``"annotations"``, from a BIDS ``*_events.tsv`` next to each recording
  (columns ``onset``, ``duration``, ``trial_type`` or ``value``).
- ``"taxonomy"``: as ``"annotations"``, with the events classified by efm's event taxonomy
  (:mod:`efm.data.taxonomy`, onset/offset markers paired); ``label_map`` keys are its labels
  (``seizure``).
- ``"csv"``: a sidecar CSV (``csv``, relative to the root unless absolute) with the columns
  ``path,start,stop,label``: every row is one epoch (``label`` a class name), cut into epochs of
  ``epoch_s`` when ``stop - start`` is longer.

Classes are named, in index order (``classes``); "rest" is a class like any other. Grid epochs
that no event touches at all get the class ``background`` when it is set (else they are left out).
``include`` is a regex a file's relative path must match (after ``glob``).

Subjects (``subject``): ``"bids"`` (the ``sub-`` entity), ``"parent"`` (the file's folder),
``"recording"`` (every recording its own subject: no subject-level split is possible, and reports
say so), or a regex with a group ``subject`` searched in the relative path. Sessions likewise
(``session``: ``"bids"`` or a regex with a group ``session``; default: none).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from efm.errors import ConfigError

LABEL_SOURCES = ("file", "annotations", "events.tsv", "csv", "taxonomy")
EPOCHS = ("grid", "events")
SPLITS = ("kfold", "loso", "fixed")
SUBJECT_RULES = ("bids", "parent", "recording")
METRICS = ("balanced_accuracy", "kappa", "auroc", "auprc", "f1")


@dataclass
class Task:
    """A downstream task (see the module docstring for every field's meaning).

    Parameters
    ----------
    labels : str
        One of ``file``, ``annotations``, ``events.tsv``, ``csv``.
    classes : list of str
        Class names in index order.
    label_map : dict
        Regex (file labels) or event description (annotations, events.tsv) -> class name.
    epoch_s : float
        Epoch length in seconds.
    epochs : str
        ``grid`` (from 0 s, non-overlapping) or ``events`` (one epoch at each labelled onset).
    min_overlap : float
        Grid epochs labelled by events: the fraction of the epoch one event must cover.
    background : str | None
        Class of grid epochs that no event touches (event labels only).
    glob : str
        Files under the root that belong to the task.
    include : str | None
        A regex the relative path must match too.
    root : str | None
        Default data folder (``data.root`` overrides it).
    fetch : callable | None
        ``fetch() -> Path``: downloads the data (a well-kept fetcher) when no root is given.
    reader : str | None
        A registered reader for every file (default: the one that claims the extension).
    subject, session : str | None
        Subject / session rule (see the module docstring).
    split : str
        ``kfold`` (subject-level, default), ``loso`` or ``fixed``.
    folds : int
        Folds of ``kfold``.
    test_subjects : list of str
        The fixed test set of ``split="fixed"``.
    picks : list of str
        Channel types kept (``eeg``, ``seeg`` ...; empty: all).
    exclude : list of str
        Channel names dropped (exact, case-insensitive), e.g. EEGMAT's ``ECG ECG``.
    csv : str | None
        The sidecar of ``labels="csv"``.
    note : str
        A sentence the report prints with the task (e.g. "no subject-level split is possible").
    """

    labels: str
    classes: list[str]
    label_map: dict[str, str] = field(default_factory=dict)
    epoch_s: float = 5.0
    epochs: str = "grid"
    min_overlap: float = 1.0
    background: str | None = None
    glob: str = "**/*"
    include: str | None = None
    root: str | None = None
    fetch: Callable[[], Path] | None = None
    reader: str | None = None
    subject: str | None = "parent"
    session: str | None = None
    split: str = "kfold"
    folds: int = 5
    test_subjects: list[str] = field(default_factory=list)
    picks: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    csv: str | None = None
    note: str = ""
    description: str = ""
    name: str = ""

    def problems(self) -> list[str]:
        """Every field that cannot work, one line each."""
        out = []
        where = f"task {self.name or '?'}"
        if self.labels not in LABEL_SOURCES:
            out.append(f"{where}: labels={self.labels!r}; options: {', '.join(LABEL_SOURCES)}")
        if self.epochs not in EPOCHS:
            out.append(f"{where}: epochs={self.epochs!r}; options: {', '.join(EPOCHS)}")
        if self.split not in SPLITS:
            out.append(f"{where}: split={self.split!r}; options: {', '.join(SPLITS)}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            out.append(f"{where}: classes={self.classes!r} needs 2 or more distinct names")
        named = [*self.label_map.values(), *([self.background] if self.background else [])]
        unknown = sorted({c for c in named if c not in self.classes})
        if unknown:
            out.append(
                f"{where}: label_map names {', '.join(unknown)}, not in classes {self.classes}"
            )
        if self.labels != "csv" and not self.label_map:
            out.append(f"{where}: labels={self.labels!r} needs a label_map")
        if self.labels == "csv" and not self.csv:
            out.append(f"{where}: labels='csv' needs csv=PATH (columns path,start,stop,label)")
        if self.epoch_s <= 0:
            out.append(f"{where}: epoch_s={self.epoch_s} must be > 0")
        if not 0 < self.min_overlap <= 1:
            out.append(f"{where}: min_overlap={self.min_overlap} must be in (0, 1]")
        if self.folds < 2:
            out.append(f"{where}: folds={self.folds} must be >= 2")
        if self.epochs == "events" and self.labels == "file":
            out.append(f"{where}: epochs='events' needs labels from events, not file names")
        rules = [("subject", self.subject), ("session", self.session)]
        for key, rule in rules:
            if rule and rule not in SUBJECT_RULES:
                try:
                    rx = re.compile(rule)
                except re.error as exc:
                    out.append(f"{where}: {key}={rule!r} is not a regex: {exc}")
                    continue
                if key not in rx.groupindex:
                    out.append(f"{where}: {key}={rule!r} needs a named group (?P<{key}>...)")
        if self.labels == "file":
            for pattern in self.label_map:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    out.append(f"{where}: label_map regex {pattern!r}: {exc}")
        return out

    def check(self) -> Task:
        """Raise :class:`~efm.errors.ConfigError` with every problem; return ``self``."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that decide a task's epochs (the cache key's part)."""
        skip = {"fetch", "description", "note", "split", "folds", "test_subjects", "name"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def coerce(name: str, task: Task | Mapping[str, Any]) -> Task:
    """A registered task as a :class:`Task` named ``name`` (mappings are converted)."""
    if isinstance(task, Task):
        out = Task(**{f.name: getattr(task, f.name) for f in fields(Task)})
    elif isinstance(task, Mapping):
        allowed = {f.name for f in fields(Task)}
        unknown = sorted(set(task) - allowed)
        if unknown:
            raise ConfigError(
                [
                    f"task {name}: unknown field {k!r}; fields: {', '.join(sorted(allowed))}"
                    for k in unknown
                ]
            )
        out = Task(**dict(task))
    else:
        raise ConfigError([f"task {name}: expected a Task or a mapping, got {type(task).__name__}"])
    out.name = name
    return out


def get(name: str) -> Task:
    """The registered task ``name`` (aliases and case folded), checked."""
    from efm import registry

    comp = registry.get("tasks", name)
    task = coerce(comp.name, comp.builder)
    if not task.description:
        task.description = comp.description
    return task.check()


def split_names(names: list[str]) -> tuple[list[str], list[str]]:
    """``eval.tasks`` as (labels of the pretraining corpus to probe, registered downstream tasks)."""
    from efm import registry

    reg = registry.get_registry()
    registered = set(reg.tables["tasks"]) | set(reg.aliases["tasks"])
    return [n for n in names if n not in registered], [n for n in names if n in registered]
