"""Where recordings come from and where prepared shards go: discovery, reader choice, the output
folder (named by a hash of the config that decides its contents) and its config check.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from efm.data.paths import cache_dir
from efm.errors import EfmError, UsageError

COMPANIONS = {".eeg": (".vhdr", ".ahdr")}  # BrainVision data files are read through their header


def identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved config that decide the shards' contents."""
    data = cfg.get("data", {})
    keep = ["root", "glob", "patient_regex"]
    ident = {k: data.get(k) for k in keep}
    if data.get("file_labels"):  # ordered pairs: the first matching rule wins
        ident["file_labels"] = {
            t: [[rx, v] for rx, v in r.items()] for t, r in data["file_labels"].items()
        }
    if data.get("root") in (None, ""):
        from efm.data.demo import VERSION

        ident.update({k: data.get(k) for k in ("demo_patients", "demo_minutes", "demo_seed")})
        ident["demo_version"] = VERSION
    return {
        "data": ident,
        "pipeline": {**cfg.get("pipeline", {}), "sleep_stager": _stager(cfg)},
        "reader": cfg.get("reader") or {"name": "mne"},
    }


def _stager(cfg: dict[str, Any]) -> str | None:
    """The sleep stager ``auto`` resolves to here (installing YASA changes the shards)."""
    from efm.data import sleep

    path = (cfg.get("pipeline") or {}).get("path", "eeg")
    try:
        return (
            sleep.available((cfg.get("pipeline") or {}).get("sleep_staging", "auto"), notice=False)
            if (path == "eeg")
            else None
        )
    except EfmError:
        return "unavailable"


def config_hash(cfg: dict[str, Any]) -> str:
    text = json.dumps(identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def out_dir(cfg: dict[str, Any]) -> Path:
    """``data.out`` or ``${EFM_CACHE}/shards/<hash of data+pipeline+reader>``.

    The name depends only on what decides the shards' contents (:func:`identity`), not on the
    recipe's name: recipes with the same data settings share one prepared copy.
    """
    out = cfg.get("data", {}).get("out")
    if out:
        return Path(out).expanduser()
    return cache_dir() / "shards" / config_hash(cfg)


def claimed_extensions() -> dict[str, str]:
    """Extension -> the first registered reader (by name) that claims it."""
    from efm import registry

    reg = registry.get_registry()
    table: dict[str, str] = {}
    for name in reg.names("readers"):
        for ext in reg.tables["readers"][name].meta.get("extensions", ()):
            table.setdefault(str(ext).lower(), name)
    return table


def ext_of(path: Path, exts: dict[str, str]) -> str | None:
    name = path.name.lower()
    return next((e for e in sorted(exts, key=len, reverse=True) if name.endswith(e)), None)


def reader_for(path: Path, preferred: str, exts: dict[str, str]) -> str:
    """The recipe's reader when it claims the file's extension, else the one that does."""
    from efm import registry

    ext = ext_of(path, exts) or ""
    if ext in registry.get("readers", preferred).meta.get("extensions", ()):
        return preferred
    return exts[ext]


def discover(root: Path, pattern: str, exts: dict[str, str]) -> list[tuple[Path, str]]:
    """``(path, relative POSIX path)`` of every recording under ``root``, sorted."""
    if root.is_file():
        return [(root, root.name)]
    if not root.is_dir():
        raise UsageError(f"data.root={str(root)!r} is not a directory or a file")
    found = []
    for p in root.glob(pattern):
        if not p.is_file() or p.name.startswith("."):
            continue
        ext = ext_of(p, exts)
        if ext is None:
            continue
        if any(
            p.with_suffix(c).exists() or p.with_suffix(c.upper()).exists()
            for c in COMPANIONS.get(ext, ())
        ):
            continue
        found.append((p, p.relative_to(root).as_posix()))
    return sorted(found, key=lambda t: t[1])


def check_config(out: Path, cfg: dict[str, Any]) -> None:
    ident = json.loads(json.dumps(identity(cfg), sort_keys=True, default=str))
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != ident:
            diff = sorted(
                f"{n}.{k}"
                for n in ident
                for k in set(ident[n]) | set(old.get(n, {}))
                if ident[n].get(k) != old.get(n, {}).get(k)
            )
            raise EfmError(
                f"{out} was prepared with another configuration (differs in "
                f"{', '.join(diff) or 'layout'}); give another out= or remove it"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"config.json.tmp-{os.getpid()}")  # atomic: a kill leaves no torn file
    tmp.write_text(json.dumps(ident, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
