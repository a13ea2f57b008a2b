"""The plugin manager: efm's own plugins and third-party ones load through the ``efm`` entry points.

Switches (environment variables):

``EFM_DISABLE_PLUGIN_AUTOLOAD=1``
    Load only the plugins of the ``efm`` distribution itself (what the test-suite uses).
``EFM_LOAD_PLUGINS=a,b``
    Load only the entry points with these names (built-in or not); empty means none.
``EFM_TRACE_PLUGINS=1``
    Log every hook call.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from typing import Any

import pluggy

from efm import hookspecs
from efm.errors import PluginError

log = logging.getLogger("efm.plugins")
GROUP = "efm"
SELF_DIST = "efm"


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"], dist.version


def _selected(eps: list[metadata.EntryPoint]) -> list[metadata.EntryPoint]:
    allow = os.environ.get("EFM_LOAD_PLUGINS")
    if allow is not None:
        names = {n.strip() for n in allow.split(",") if n.strip()}
        return [ep for ep in eps if ep.name in names]
    if os.environ.get("EFM_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return [ep for ep in eps if _dist_of(ep)[0] == SELF_DIST]
    return eps


def make_manager() -> tuple[pluggy.PluginManager, list[dict[str, Any]]]:
    """A fresh manager with every selected entry point loaded, and a description of each plugin."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    infos: list[dict[str, Any]] = []
    eps = sorted(
        metadata.entry_points(group=GROUP), key=lambda e: (_dist_of(e)[0] != SELF_DIST, e.name)
    )
    seen: set[str] = set()
    for ep in _selected(list(eps)):
        if ep.value in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(ep.value)
        dist, version = _dist_of(ep)
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take efm down silently
            raise PluginError(
                f"plugin {ep.name!r} ({ep.value}) of distribution {dist!r} failed to import: {exc}; "
                "set EFM_DISABLE_PLUGIN_AUTOLOAD=1 to start without third-party plugins"
            ) from exc
        try:
            pm.register(module, name=ep.value)
        except ValueError as exc:
            raise PluginError(f"plugin {ep.name!r} of {dist!r}: {exc}") from exc
        infos.append(
            {"plugin": ep.name, "module": ep.value, "distribution": dist, "version": version}
        )
    check(pm)
    if os.environ.get("EFM_TRACE_PLUGINS", "") not in ("", "0"):
        pm.trace.root.setwriter(lambda msg: log.info(msg.rstrip()))
        pm.enable_tracing()
    return pm, infos


def check(pm: pluggy.PluginManager) -> None:
    """Fail on hook implementations that match no hook (a misspelt ``efm_register_*``)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = sorted(n for n in dir(hookspecs) if n.startswith("efm_"))
        raise PluginError(f"{exc}; known hooks: {', '.join(known)}") from exc
    for plugin in pm.get_plugins():
        for attr in dir(plugin):
            if attr.startswith("efm_register") and not hasattr(hookspecs, attr):
                name = pm.get_name(plugin)
                raise PluginError(
                    f"plugin {name!r} defines {attr!r}, which is not an efm hook; known hooks: "
                    + ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("efm_register")))
                )


def hooks_of(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Names of the hooks a plugin implements."""
    return sorted(h.name for h in pm.get_hookcallers(plugin) or [])
