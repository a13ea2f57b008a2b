"""The ``efm`` command.

``efm run recipe=NAME [overrides]``      prepare (if needed), pretrain, probe and report
``efm prepare recipe=NAME data.root=DIR out=DIR workers=N``
``efm validate recipe=NAME [overrides]`` print the resolved YAML, or every problem at once
``efm list [kind] [glob]``               registered components
``efm plugins``                          loaded plugins as JSON
``efm cp recipe=NAME PATH``              copy a recipe to edit it
``efm mup-check``                        muP coordinate check plot

Errors that users can cause (:class:`efm.errors.EfmError`) print one line, ``error: ...``, and exit
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from efm.errors import EfmError, UsageError

log = logging.getLogger("efm.cli")

# subcommands implemented in their own modules: name -> "module:function(argv) -> int"
EXTERNAL = {
    "prepare": "efm.data.prepare:cli",
    "pretrain": "efm.train.run:cli_pretrain",
    "probe": "efm.evaluate.run:cli",
    "mup-check": "efm.train.mup_check:cli",
}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not verbose:
        for noisy in ("mne", "neo", "matplotlib", "PIL", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        try:
            import mne

            mne.set_log_level("ERROR")
        except ImportError:  # pragma: no cover
            pass


def cmd_validate(args: argparse.Namespace) -> int:
    from efm.config import compose, to_yaml

    cfg = compose(args.overrides)
    # assembly: representation -> backbone -> objective on shapes alone (efm.assemble.check)
    from efm.assemble import require as require_assembly

    require_assembly(cfg)
    sys.stdout.write(to_yaml(cfg))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from efm.config import compose, to_yaml

    cfg = compose(args.overrides)
    if args.dry_run:
        sys.stdout.write(to_yaml(cfg))
        return 0
    try:
        module = importlib.import_module("efm.train.run")
    except ModuleNotFoundError as exc:
        if exc.name != "efm.train.run":
            raise
        raise EfmError(
            "`efm run` is not available yet: the training engine is still being built"
        ) from exc
    return int(module.run(cfg) or 0)


def cmd_list(args: argparse.Namespace) -> int:
    from efm import registry

    reg = registry.get_registry()
    kinds = [registry._kind(args.kind)] if args.kind else list(registry.KINDS)
    for kind in kinds:
        rows = reg.names(kind, args.pattern)
        print(f"{kind}:")
        for name in rows:
            comp = reg.tables[kind][name]
            extra = comp.meta.get("description") or ", ".join(
                f"{k}={v}" for k, v in comp.meta.items() if k in ("family", "accepts", "extensions")
            )
            alias = f" (aliases: {', '.join(comp.aliases)})" if comp.aliases else ""
            print(f"  {name:<24} {comp.distribution:<14} {extra}{alias}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from efm import registry

    reg = registry.get_registry()
    print(json.dumps(reg.plugins, indent=2))
    return 0


def cmd_cp(args: argparse.Namespace) -> int:
    from efm.config import parse_overrides, recipe_mapping, to_yaml

    recipe, ops = parse_overrides([a for a in args.args if "=" in a])
    paths = [a for a in args.args if "=" not in a]
    if recipe is None or len(paths) != 1 or ops:
        raise UsageError("usage: efm cp recipe=NAME PATH")
    name, mapping = recipe_mapping(recipe)
    dest = Path(paths[0])
    if dest.is_dir():
        dest = dest / f"{name}.yaml"
    if dest.exists():
        raise UsageError(f"{dest} exists; remove it or give another path")
    header = (
        f"# Copied from efm recipe {name!r}. Run it with: efm run recipe={dest}\n"
        f"# Override any key on the command line, e.g.: efm run recipe={dest} train.steps=10\n"
    )
    dest.write_text(header + to_yaml(mapping), encoding="utf-8")
    print(f"wrote {dest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="efm", description="EEG/iEEG foundation models.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for efm errors")
    p.add_argument("--verbose", action="store_true", help="let MNE and Neo log")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("run", help="prepare, pretrain, probe and report")
    s.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    s.add_argument("overrides", nargs="*", metavar="recipe=NAME key=value ~key")
    s.set_defaults(func=cmd_run)
    s = sub.add_parser("validate", help="resolve and check a recipe, print it as YAML")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(func=cmd_validate)
    s = sub.add_parser("list", help="list registered components")
    s.add_argument("kind", nargs="?", help="readers, tokenizers, backbones, objectives or recipes")
    s.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'hiera*'")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("plugins", help="loaded plugins as JSON")
    s.set_defaults(func=cmd_plugins)
    s = sub.add_parser("cp", help="copy a recipe to a file for editing")
    s.add_argument("args", nargs="*", metavar="recipe=NAME PATH")
    s.set_defaults(func=cmd_cp)
    for name in EXTERNAL:
        s = sub.add_parser(name, help=f"see `efm {name} --help`", add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(func=None, external=name)
    return p


def _version() -> str:
    from efm import __version__

    return f"efm {__version__}"


def _external(name: str, argv: list[str]) -> int:
    module_name, func = EXTERNAL[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise EfmError(f"`efm {name}` is not available yet") from exc
    return int(getattr(module, func)(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # external subcommands own everything after their name, `--help` included
    split = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    if split < len(argv) and argv[split] in EXTERNAL:
        args = parser.parse_args(argv[:split])
        args.command, args.external, args.rest = argv[split], argv[split], argv[split + 1 :]
    else:
        args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "external", None):
            return _external(args.external, args.rest)
        return int(args.func(args) or 0)
    except EfmError as exc:
        if args.debug:
            raise
        msg = " ".join(str(exc).split("\n"))
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `efm plugins | head`
        sys.stderr.close()
        return 0


def entry(argv: list[str] | None = None) -> Any:  # pragma: no cover
    sys.exit(main(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
