"""The efm exception family.

Every error a user can cause derives from :class:`EfmError`; the CLI prints those as one line,
``error: ...``, and exits with status 2 (``--debug`` re-raises them with the traceback).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EfmError(Exception):
    """Base of every error efm raises on purpose."""


class UsageError(EfmError):
    """The command line was wrong."""


class PluginError(EfmError):
    """A plugin could not be loaded or registered (duplicate name, unknown hook...)."""


class ReaderError(EfmError):
    """A recording could not be read: truncated, corrupt header, unknown format..."""


class UnknownNameError(EfmError):
    """A name is not registered; the message lists the closest registered names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; {suggest(name, known)}")


class ConfigError(EfmError):
    """One or more problems in a configuration, reported together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            msg = f"invalid config: {self.problems[0]}"
        else:
            msg = f"invalid config ({len(self.problems)} problems): " + "; ".join(self.problems)
        super().__init__(msg)


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` registered names close to ``name`` (difflib, case-insensitive)."""
    known = list(known)
    lower = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.5)
    hits += [k for k in known if name.lower() in k.lower() and lower.get(k.lower()) not in hits]
    out: list[str] = []
    for h in hits:
        real = lower.get(h, h)
        if real not in out:
            out.append(real)
    return out[:n]


def suggest(name: str, known: Iterable[str]) -> str:
    """A sentence naming the closest matches and the full list of options."""
    known = sorted(known)
    near = closest(name, known)
    parts = []
    if near:
        parts.append("did you mean " + " or ".join(repr(k) for k in near) + "?")
    if known:
        shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
        parts.append(f"options: {shown}")
    else:
        parts.append("nothing is registered")
    return " ".join(parts)
