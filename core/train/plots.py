"""Figures of a run: the loss curve and reconstructions (original / masked / reconstruction)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("efm.train.plots")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def loss_curve(rows: list[dict[str, float]], path: Path, title: str = "") -> Path | None:
    """Plot ``loss`` (and ``lr_*`` on a twin axis) against ``step`` from metrics rows."""
    rows = [r for r in rows if "loss" in r and "step" in r]
    if not rows:
        return None
    plt = _pyplot()
    step = np.array([r["step"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(step, [r["loss"] for r in rows], color="C0", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if np.all([r["loss"] > 0 for r in rows]):
        ax.set_yscale("log")
    lr_keys = sorted({k for r in rows for k in r if k.startswith("lr_")})
    if lr_keys:
        ax2 = ax.twinx()
        for i, key in enumerate(lr_keys):
            ax2.plot(
                step,
                [r.get(key, np.nan) for r in rows],
                color=f"C{i + 1}",
                lw=0.8,
                ls="--",
                label=key,
            )
        ax2.set_ylabel("learning rate")
        ax2.legend(loc="upper right", fontsize=7)
    ax.set_title(title or "training loss")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _as_panels(x: Any, max_panels: int = 4) -> list[np.ndarray]:
    """One sample of a figure tensor as a list of 1-D or 2-D arrays."""
    a = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)
    while a.ndim > 3:  # [B, ...] or [n_repr, C, H, W]: first item
        a = a[0]
    if a.ndim == 3:
        return [a[i] for i in range(min(max_panels, a.shape[0]))]
    return [a]


def reconstructions(figures: dict[str, Any], path: Path, title: str = "") -> Path | None:
    """Plot an objective's figure tensors side by side: one column per key, one row per channel.

    ``figures`` maps names (``original``, ``masked``, ``reconstruction``) to tensors with a leading
    batch dimension; the first sample is shown, up to four channels / regions of it.
    """
    if not figures:
        return None
    plt = _pyplot()
    keys = list(figures)
    panels = {k: _as_panels(figures[k]) for k in keys}
    n_rows = max(len(p) for p in panels.values())
    fig, axes = plt.subplots(
        n_rows, len(keys), figsize=(3 * len(keys), 2.2 * n_rows), dpi=100, squeeze=False
    )
    for j, key in enumerate(keys):
        ref = panels[keys[0]]
        lo = min(float(np.nanmin(p)) for p in ref)
        hi = max(float(np.nanmax(p)) for p in ref)
        for i in range(n_rows):
            ax = axes[i, j]
            if i >= len(panels[key]):
                ax.axis("off")
                continue
            p = panels[key][i]
            if p.ndim == 1:
                ax.plot(p, lw=0.6)
            else:
                ax.imshow(p, aspect="auto", origin="lower", vmin=lo, vmax=hi, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(key)
    fig.suptitle(title or "reconstruction")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
