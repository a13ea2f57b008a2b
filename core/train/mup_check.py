"""``efm mup-check``: the muP coordinate check (Yang et al., Tensor Programs V, arXiv 2203.03466).

For a range of widths (same depth), train a backbone plus a read-out for a few Adam steps on a fixed
regression target and record the mean absolute activation of every layer before each step (step 1 is
the initialisation). Under a correct muP the curves are flat across widths; under standard
parametrisation they grow with width after the first update (``microsoft/mup``'s ``coord_check``).

The backbone must take ``d_model`` and ``mup`` options, provide ``example_input``, ``readout(n)`` and
``lr_multipliers()`` (``efm_plugins.backbones.moirai.Moirai`` does).

>>> efm mup-check --backbone moirai_test --widths 64,128,256,512 --out mup_check.png  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from efm.errors import UsageError

log = logging.getLogger("efm.train.mup_check")

DEFAULT_LAYERS = r"^(patch_embed|stcpe|encoder\.layers\.\d+|encoder\.norm)$"


def coord_check(
    backbone: str = "moirai_test",
    widths: tuple[int, ...] = (64, 128, 256, 512),
    steps: int = 4,
    lr: float = 1e-2,
    mup: bool = True,
    batch_size: int = 2,
    seed: int = 0,
    layers: str = DEFAULT_LAYERS,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mean ``|activation|`` per layer, step and width.

    Returns
    -------
    dict
        ``{"widths": [...], "steps": n, "mup": bool, "l1": {layer: [[per width] per step]}}``;
        layer ``"readout"`` is the network output.
    """
    import torch

    from efm import registry

    pattern = re.compile(layers)
    l1: dict[str, list[list[float]]] = {}
    acts: dict[str, float] = {}  # filled by the forward hooks
    for wi, width in enumerate(widths):
        torch.manual_seed(seed)
        cfg = {"d_model": width, "mup": mup, "dropout": 0.0} | (options or {})
        model = registry.create("backbones", backbone, **cfg).train()
        for name in ("readout", "lr_multipliers", "example_input"):
            if not hasattr(model, name):
                raise UsageError(f"backbone {backbone!r} has no {name}(); it cannot be mup-checked")
        x = model.example_input(batch_size)
        torch.manual_seed(seed + 1)
        head = model.readout(16)
        if not mup:  # standard parametrisation: a plain, randomly initialised read-out
            head = torch.nn.Linear(model.embed_dim, 16)
        target = torch.randn(batch_size, 1, 16, generator=torch.Generator().manual_seed(seed))
        mults = model.lr_multipliers()
        groups = [
            {"params": [p], "lr": lr * mults.get(n, 1.0)} for n, p in model.named_parameters()
        ]
        opt = torch.optim.Adam([*groups, {"params": list(head.parameters()), "lr": lr}])

        def hook(name: str) -> Callable[[Any, Any, Any], None]:
            def fn(_mod: Any, _inp: Any, out: Any) -> None:
                acts[name] = float(out.detach().abs().mean())

            return fn

        handles = [
            m.register_forward_hook(hook(n))
            for n, m in model.named_modules()
            if n and pattern.match(n)
        ]
        try:
            for step in range(steps):
                acts.clear()
                y = head(model(x).features)  # [B, L, 16]
                acts["readout"] = float(y.detach().abs().mean())
                loss = (y - target).square().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                for name, value in acts.items():
                    rows = l1.setdefault(name, [[0.0] * len(widths) for _ in range(steps)])
                    rows[step][wi] = value
        finally:
            for h in handles:
                h.remove()
    return {"widths": list(widths), "steps": steps, "mup": mup, "l1": l1}


def growth(result: dict[str, Any], step: int = -1) -> dict[str, float]:
    """Per layer, ``l1(widest) / l1(narrowest)`` at ``step`` (1 = flat across widths)."""
    return {k: v[step][-1] / max(v[step][0], 1e-12) for k, v in result["l1"].items()}


def plot(results: list[dict[str, Any]], path: str | Path) -> Path:
    """One row per parametrisation, one panel per step: ``l1`` vs width for every layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = results[0]["steps"]
    fig, axes = plt.subplots(
        len(results), steps, figsize=(3.2 * steps, 3.0 * len(results)), squeeze=False
    )
    for row, res in zip(axes, results):
        for t, ax in enumerate(row):
            for name, values in res["l1"].items():
                ax.plot(res["widths"], values[t], marker="o", ms=3, label=name)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{'muP' if res['mup'] else 'SP'}, step {t + 1}", fontsize=9)
            ax.set_xlabel("width")
        row[0].set_ylabel("mean |activation|")
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cli(argv: list[str]) -> int:
    """``efm mup-check``: coordinate check under muP and standard parametrisation, to a PNG."""
    from efm.cli import plain

    ap = argparse.ArgumentParser(prog="efm mup-check", description=plain(__doc__.splitlines()[0]))
    ap.add_argument("--backbone", default="moirai_test")
    ap.add_argument("--widths", default="64,128,256,512", help="comma-separated d_model values")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="mup_check.png", help="PNG path (a .json with numbers too)")
    args = ap.parse_args(argv[1:] if argv[:1] == ["--"] else argv)
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError as err:
        raise UsageError(f"--widths must be comma-separated integers, got {args.widths!r}") from err
    if len(widths) < 2 or args.steps < 1:
        raise UsageError("need at least two widths and one step")
    kw = dict(
        backbone=args.backbone,
        widths=widths,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    results = [coord_check(mup=True, **kw), coord_check(mup=False, **kw)]  # type: ignore[arg-type]
    png = plot(results, args.out)
    png.with_suffix(".json").write_text(json.dumps(results, indent=1))
    for res in results:
        g = growth(res)
        worst = max(g, key=lambda k: abs(g[k] - 1.0))
        print(
            f"{'muP' if res['mup'] else 'SP '}: widest/narrowest l1 at step {res['steps']}: "
            f"worst {worst} x{g[worst]:.2f}, readout x{g['readout']:.2f}"
        )
    print(f"wrote {png}")
    return 0
