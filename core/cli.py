"""The ``efm`` command.

``efm run recipe=NAME [overrides]``      prepare (if needed), pretrain, probe and report
``efm pretrain recipe=NAME [overrides]`` prepare (if needed) and pretrain, without probes
``efm prepare recipe=NAME data.root=DIR out=DIR workers=N``
``efm validate recipe=NAME [overrides]`` print the resolved YAML, or every problem at once
``efm list [kind] [glob]``               registered components
``efm plugins``                          loaded plugins as JSON
``efm cp recipe=NAME PATH``              copy a recipe to edit it
``efm eval --run-dir RUN task=NAME``      downstream tasks (``efm list tasks``), every row
``efm embed --run-dir RUN task=NAME out=FILE``  embeddings with their metadata
``efm mup-check``                        muP coordinate check plot
``efm scale recipe=NAME sweep.sizes=[..]``  scaling-law sweep, fits and report (``--plan C=1e18``)

Overrides and flags mix in any order (``efm run recipe=epi250k --dry-run train.steps=5``).
Errors that users can cause (:class:`efm.errors.EfmError`) print ``error: ...`` (a config error one
line per problem) and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from efm.errors import ConfigError, EfmError, UsageError

log = logging.getLogger("efm.cli")

# subcommands implemented in their own modules: name -> "module:function(argv) -> int"
EXTERNAL = {
    "prepare": "efm.data.prepare:cli",
    "probe": "efm.evaluate.run:cli",
    "eval": "efm.evaluate.cli:cli",
    "embed": "efm.evaluate.cli:cli_embed",
    "mup-check": "efm.train.mup_check:cli",
    "scale": "efm.scale.cli:cli",
}
EXTERNAL_HELP = {
    "prepare": "recordings on disk to WebDataset shards (without training)",
    "probe": "linear probes of a run's frozen encoder, into its report",
    "eval": "downstream tasks: pretrained vs random init vs baselines, on identical splits",
    "embed": "embeddings of a checkpoint with subject, recording, start and label",
    "mup-check": "muP coordinate-check plot of a backbone",
    "scale": "scaling-law sweeps: sizes x data x epochs, fits, IsoLoss, --plan C=FLOPS",
}


def _setup_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0") or 0)  # under torchrun: rank 0 speaks, others warn
    logging.basicConfig(
        level=logging.INFO if rank == 0 or verbose else logging.WARNING,
        format="%(message)s" if rank == 0 else f"rank {rank}: %(message)s",
        stream=sys.stderr,
    )
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

    cfg = compose(args.overrides, paths=True)
    sys.stdout.write(to_yaml(cfg))
    return 0


def _run_module() -> Any:
    return importlib.import_module("efm.run")  # imported when used: keeps `efm --help` fast


def cmd_run(args: argparse.Namespace) -> int:
    from efm.config import compose, to_yaml

    cfg = compose(args.overrides, paths=True)  # every problem, files included, before any set-up
    if args.dry_run:
        sys.stdout.write(to_yaml(cfg))
        return 0
    return int(_run_module().run(cfg) or 0)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from efm.config import compose, to_yaml

    if not args.overrides:
        raise UsageError("efm pretrain needs recipe=NAME (see `efm pretrain --help`)")
    cfg = compose(args.overrides, paths=True)
    if args.dry_run:
        sys.stdout.write(to_yaml(cfg))
        return 0
    # cli_pretrain composes the same overrides again: its notes (group choices) were said above
    notes = logging.getLogger("efm.config")
    level = notes.level
    notes.setLevel(logging.WARNING)
    try:
        return int(_run_module().cli_pretrain(args.overrides) or 0)
    finally:
        notes.setLevel(level)


def cmd_list(args: argparse.Namespace) -> int:
    from efm import registry

    reg = registry.get_registry()
    kinds = [registry._kind(args.kind)] if args.kind else list(registry.KINDS)
    for kind in kinds:
        rows = reg.names(kind, args.pattern)
        print(f"{kind}:")
        for name in rows:
            comp = reg.tables[kind][name]
            tags = ", ".join(
                f"{k}={'/'.join(v) if isinstance(v, (tuple, list)) else v}"
                for k, v in comp.meta.items()
                if k in ("family", "accepts", "extensions")
            )
            alias = f" (aliases: {', '.join(comp.aliases)})" if comp.aliases else ""
            text = plain(comp.description) + (f" [{tags}]" if tags else "")
            print(f"  {name:<24} {comp.distribution:<14} {text}{alias}")
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


def cmd_consolidate(args: argparse.Namespace) -> int:
    from efm.train import checkpoint as ckpt

    path = Path(args.checkpoint)
    if (path / "checkpoints").is_dir():  # a run directory: its newest checkpoint
        found = ckpt.latest(path)
        if found is None:
            raise UsageError(f"{path} has no complete checkpoint")
        path = found
    if not path.is_dir():
        raise UsageError(f"{path} is not a checkpoint folder or a run directory")
    print(f"wrote {ckpt.consolidate(path, Path(args.out) if args.out else None)}")
    return 0


_ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\\s*<[^>]*>)?`")


def plain(text: str) -> str:
    """Docstring text without reStructuredText markup, for help and listings."""
    text = _ROLE.sub(
        lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), text
    )
    return text.replace("``", "").replace("`", "")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Each command's help on its name's line, however long the name (``consolidate``).

    argparse measures subcommand names one indent short of where it prints them.
    """

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.help is not argparse.SUPPRESS:
            names = [len(self._format_action_invocation(a)) for a in action._get_subactions()]
            width = max(names, default=0) + self._current_indent + self._indent_increment
            self._action_max_length = max(self._action_max_length, width)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose epilog is computed when help is shown (it loads the registry)."""

    def __init__(self, *a: Any, epilog_fn: Callable[[], str] | None = None, **kw: Any) -> None:
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*a, **kw)
        self.epilog_fn = epilog_fn

    def format_help(self) -> str:
        if self.epilog_fn is not None:
            self.epilog = self.epilog_fn()
        return super().format_help()


def _run_epilog(command: str) -> str:
    """Recipes and profiles, the top-level keys, and where results go (``efm run --help``)."""
    from dataclasses import fields

    from efm import registry
    from efm.config import core_schemas

    recipes = registry.get_registry().tables["recipes"]
    width = max([14, *map(len, recipes)])
    lines = [
        "recipes and their profiles (data.profile=NAME; auto: demo without data.root, full with):"
    ]
    for name, comp in recipes.items():
        recipe = comp.builder if isinstance(comp.builder, dict) else {}
        profiles = ", ".join(sorted({"demo", "full", *(recipe.get("profiles") or {})}))
        lines.append(f"  {name:<{width}} {profiles:<11} {plain(comp.description)}")
    lines += [
        "",
        "top-level keys (key.path=value sets, ~key.path deletes; `efm validate recipe=NAME` prints",
        "every key with its value):",
    ]

    def entry(node: str, text: str) -> None:
        lead = f"  {node:<15}"
        lines.extend(textwrap.wrap(text, 98, initial_indent=lead, subsequent_indent=" " * 17))

    for node, kind in registry.COMPONENT_NODES.items():
        entry(
            node,
            f"a registered {registry.SINGULAR[kind]}: {node}=NAME chooses one (efm list {kind}), "
            f"{node}.OPTION=value sets one of its options",
        )
    for node, schema in core_schemas().items():
        entry(node, ", ".join(f.name for f in fields(schema)))  # type: ignore[arg-type]
    lines += [
        "",
        "output:",
        "  run directory  runs/<recipe>-<profile>-<hash>/ under the working directory",
        "                 (train.run_dir=DIR chooses it; the same command resumes the same run):",
        "                 config.yaml, provenance.json, metrics.csv, tensorboard/, checkpoints/,",
        "                 figures/, embeddings/, report.md and report.json",
        "  prepared data  ${EFM_CACHE:-~/.cache/efm}/shards/<hash>/ (data.out=DIR chooses it),",
        "                 shared by recipes with the same data settings;",
        "                 the demo corpus under ${EFM_CACHE:-~/.cache/efm}/demo/",
        "",
        "runs: train.threads=N sets PyTorch's CPU threads (default: OMP_NUM_THREADS, else one per",
        "core); Ctrl-C or SIGTERM saves a checkpoint of the current step, and the same command",
        "resumes from it",
        "",
        "examples:",
        f"  efm {command} recipe=epi250k                        the demo profile, embedded corpus",
        f"  efm {command} recipe=epi250k data.root=/data/edf    the paper's configuration",
        f"  efm {command} recipe=epi250k --dry-run train.steps=5",
    ]
    return "\n".join(lines)


def _global_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks for efm errors"
    )
    parser.add_argument(
        "--verbose", action="store_true", default=default, help="let MNE and Neo log"
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="efm",
        description="EEG/iEEG foundation models.",
        epilog=textwrap.fill(
            "efm COMMAND --help shows each command's options. To start: efm run recipe=epi250k "
            "(the demo), efm list, efm validate recipe=epi250k.",
            98,
        ),
    )
    _global_flags(p, False)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # --debug / --verbose after the command too; SUPPRESS keeps those given before it
    common = _Parser(add_help=False)
    _global_flags(common, argparse.SUPPRESS)
    for name, what in (
        ("run", "prepare (if needed), pretrain, probe the encoder and write a report"),
        ("pretrain", "prepare (if needed) and pretrain, without probes or report"),
    ):
        s = sub.add_parser(
            name,
            help=what,
            parents=[common],
            description=textwrap.fill(
                f"efm {name}: {what}. Overrides (key=value) and flags may come in any order.", 98
            ),
            epilog_fn=lambda name=name: _run_epilog(name),  # type: ignore[misc]
        )
        s.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
        s.add_argument("overrides", nargs="*", metavar="recipe=NAME key=value ~key")
        s.set_defaults(func=cmd_run if name == "run" else cmd_pretrain)
    s = sub.add_parser(
        "validate",
        help="resolve and check a recipe, print it as YAML",
        parents=[common],
        description=textwrap.fill(
            "efm validate: resolve a recipe with its overrides and print it as YAML, or list "
            "every problem (one line each, files on this machine included) and exit with status 2.",
            98,
        ),
        epilog_fn=lambda: _run_epilog("validate"),
    )
    s.add_argument("overrides", nargs="*", metavar="recipe=NAME key=value ~key")
    s.set_defaults(func=cmd_validate)
    s = sub.add_parser("list", help="list registered components", parents=[common])
    s.add_argument(
        "kind", nargs="?", help="readers, tokenizers, backbones, objectives, recipes or tasks"
    )
    s.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'hiera*'")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("plugins", help="loaded plugins as JSON", parents=[common])
    s.set_defaults(func=cmd_plugins)
    s = sub.add_parser("cp", help="copy a recipe to a file for editing", parents=[common])
    s.add_argument("args", nargs="*", metavar="recipe=NAME PATH")
    s.set_defaults(func=cmd_cp)
    s = sub.add_parser(
        "consolidate",
        help="one model.safetensors from a sharded (train.strategy=fsdp) checkpoint",
        parents=[common],
        description=textwrap.fill(
            "efm consolidate: gather a checkpoint written with train.strategy=fsdp (its dcp/ "
            "folder of shards) into one model.safetensors, in one process, for evaluation or "
            "sharing. Evaluation does this itself on first use; this command does it ahead.",
            98,
        ),
    )
    s.add_argument("checkpoint", help="a checkpoint folder (step-N/) or a run directory (newest)")
    s.add_argument("--out", help="the file to write (default: CHECKPOINT/model.safetensors)")
    s.set_defaults(func=cmd_consolidate)
    for name in EXTERNAL:
        s = sub.add_parser(name, help=EXTERNAL_HELP[name], add_help=False)
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
        raise EfmError(
            f"`efm {name}` needs module {module_name}, which is missing: reinstall efm"
        ) from exc
    return int(getattr(module, func)(argv) or 0)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # the flags before the command are efm's own; the command's parser takes the rest, with
    # overrides and flags in any order; external subcommands own everything after their name
    split = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    args = parser.parse_args(argv[:split])
    if split < len(argv):
        name, rest = argv[split], argv[split + 1 :]
        if name in EXTERNAL:
            args.command, args.external, args.rest = name, name, rest
        else:
            sub = _subparser(parser, name) if name in _commands(parser) else None
            if sub is None:
                parser.parse_args(argv)  # argparse's "invalid choice" message, exit 2
                return 2
            args = sub.parse_intermixed_args(rest, namespace=args)
            args.command = name
    _setup_logging(args.verbose)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "external", None):
            return _external(args.external, args.rest)
        return int(args.func(args) or 0)
    except ConfigError as exc:
        if args.debug:
            raise
        if len(exc.problems) == 1:
            print(f"error: invalid config: {exc.problems[0]}", file=sys.stderr)
        else:
            print(f"error: invalid config ({len(exc.problems)} problems):", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        return 2
    except EfmError as exc:
        if args.debug:
            raise
        msg = " ".join(str(exc).split("\n"))
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a training loop saved a checkpoint first (efm.train.loop)
        print("interrupted", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", 2))
    except BrokenPipeError:  # `efm plugins | head`
        sys.stderr.close()
        return 0


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def entry(argv: list[str] | None = None) -> Any:  # pragma: no cover
    sys.exit(main(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
