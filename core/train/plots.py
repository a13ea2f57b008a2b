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
    """Plot ``loss`` (and ``lr_*`` on a twin log axis) against ``step`` from metrics rows."""
    fig = loss_figure(rows, title)
    if fig is None:
        return None
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def loss_figure(rows: list[dict[str, float]], title: str = "") -> Any:
    """The loss curve's matplotlib figure (None without rows)."""
    rows = [r for r in rows if "loss" in r and "step" in r]
    if not rows:
        return None
    plt = _pyplot()
    step = np.array([r["step"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(step, [r["loss"] for r in rows], color="C0", label="loss")
    ax.set_xlabel("step")
    if np.all([r["loss"] > 0 for r in rows]):
        ax.set_yscale("log")
    ax.set_ylabel("training loss (mean per log interval)")
    handles, labels = ax.get_legend_handles_labels()
    lr_keys = sorted({k for r in rows for k in r if k.startswith("lr_")})
    if lr_keys:
        # Muon's and AdamW's rates differ by about 100x: a log axis shows both schedules' shapes
        ax2 = ax.twinx()
        for i, key in enumerate(lr_keys):
            lr = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            ax2.plot(
                step,
                np.where(lr > 0, lr, np.nan),
                color=f"C{i + 1}",
                lw=0.8,
                ls="--",
                label=f"learning rate, {key[3:]}",
            )
        ax2.set_yscale("log")
        ax2.set_ylabel("learning rate (log scale)")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right", fontsize=7)
    ax.set_title(title or "training loss")
    fig.tight_layout()
    return fig


def _as_panels(x: Any, max_panels: int = 4) -> np.ndarray:
    """One sample of a figure tensor as ``[rows, ...]``: rows of 1-D traces or 2-D images."""
    a = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)
    while a.ndim > 3:  # [B, ...] or [n_repr, C, H, W]: first item
        a = a[0]
    if a.ndim == 1:
        a = a[None]
    return a[:max_panels]


def _masked_where(masked: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Where the objective hid the input: the masked copy is zero and the original is not."""
    return (masked == 0) & (original != 0)


def _freq_ticks(ax: Any, freqs: Any, n_rows: int) -> None:
    """Label an image's rows with frequencies (Hz), which may be spaced unevenly."""
    f = np.asarray(freqs, dtype=float)
    pos = np.linspace(0, n_rows - 1, 5)
    ax.set_yticks(
        pos, [f"{v:.0f}" for v in np.interp(pos / max(n_rows - 1, 1), np.linspace(0, 1, len(f)), f)]
    )
    ax.set_ylabel("frequency (Hz)")


def reconstructions(
    figures: dict[str, Any], path: Path, title: str = "", info: dict[str, Any] | None = None
) -> Path | None:
    """Save :func:`reconstruction_figure` to ``path`` (None without figures)."""
    fig = reconstruction_figure(figures, title, info)
    return None if fig is None else _save(fig, path)


def reconstruction_figure(
    figures: dict[str, Any], title: str = "", info: dict[str, Any] | None = None
) -> Any:
    """Plot an objective's figure tensors: one column per key, one row per channel / region.

    ``figures`` maps names (``original``, ``masked``, ``reconstruction``) to tensors of one sample:
    images ``[C, H, W]`` (a representation: frequency x time) or signals ``[C, T]`` (µV). The
    masked panel shows what the objective hid (grey for images, shaded spans for signals), row by
    row, in the original's units. ``info``: ``ch_names`` (row labels), ``duration_s`` (time axis),
    ``freqs`` (Hz of an image's rows), ``units`` (the values' unit, for the colour bar / y axis).
    """
    if not figures:
        return None
    info = info or {}
    plt = _pyplot()
    keys = list(figures)
    panels = {k: _as_panels(figures[k]) for k in keys}
    ref = panels[keys[0]]
    n_rows = ref.shape[0]
    names = list(info.get("ch_names") or [])
    names = [str(n) for n in names[:n_rows]] + [f"channel {i}" for i in range(len(names), n_rows)]
    duration = info.get("duration_s")
    units = str(info.get("units") or "value")
    images = ref.ndim == 3
    mask = (
        _masked_where(panels["masked"], ref)
        if "masked" in panels and panels["masked"].shape == ref.shape
        else None
    )
    fig, axes = plt.subplots(
        n_rows,
        len(keys),
        figsize=(3.4 * len(keys) + 0.8, 2.3 * n_rows + 0.6),
        dpi=100,
        squeeze=False,
        sharex=True,
    )
    lo, hi = float(np.nanmin(ref)), float(np.nanmax(ref))
    colour = None
    for i in range(n_rows):
        for j, key in enumerate(keys):
            ax = axes[i, j]
            p = panels[key][i] if i < panels[key].shape[0] else None
            if p is None:
                ax.axis("off")
                continue
            t_end = duration if duration else p.shape[-1]
            if images:
                shown = (
                    np.where(mask[i], np.nan, ref[i]) if key == "masked" and mask is not None else p
                )
                cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
                im = ax.imshow(
                    shown,
                    aspect="auto",
                    origin="lower",
                    vmin=lo,
                    vmax=hi,
                    cmap=cmap,
                    extent=(0, t_end, -0.5, p.shape[0] - 0.5),
                )
                if j == 0:
                    if info.get("freqs") is not None:
                        _freq_ticks(ax, info["freqs"], p.shape[0])
                    else:
                        ax.set_ylabel("row")
                else:
                    ax.set_yticks([])
                colour = im
            else:
                t = np.linspace(0, t_end, p.shape[-1], endpoint=False)
                if key == "masked" and mask is not None:
                    ax.plot(t, np.where(mask[i], np.nan, ref[i]), lw=0.5, color="k")
                    ax.fill_between(
                        t, lo, hi, where=mask[i], color="tab:red", alpha=0.2, lw=0, label="hidden"
                    )
                elif key == "reconstruction":
                    ax.plot(t, ref[i], lw=0.5, color="0.7", label="original")
                    ax.plot(t, p, lw=0.5, color="tab:blue", label="reconstruction")
                else:
                    ax.plot(t, p, lw=0.5, color="k")
                ax.set_ylim(lo, hi)
                if j == 0:
                    ax.set_ylabel(units)
                if i == 0 and key in ("masked", "reconstruction"):
                    ax.legend(loc="upper right", fontsize=6)
            if j == 0:
                ax.annotate(
                    names[i],
                    (-0.32, 0.5),
                    xycoords="axes fraction",
                    rotation=90,
                    va="center",
                    ha="center",
                    fontweight="bold",
                )
            if i == 0:
                ax.set_title(key)
            if i == n_rows - 1:
                ax.set_xlabel("time (s)" if duration else "sample")
    if colour is not None:  # one scale for every panel
        fig.colorbar(colour, ax=axes.ravel().tolist(), label=units, fraction=0.03, pad=0.02)
    if mask is not None:
        share = float(mask.mean())
        note = f"hidden: {share:.0%} of the input"
        if images and mask.shape[0] > 1 and bool((mask == mask[:1]).all()):
            note += " (one mask for every channel: the backbone masks time-frequency tokens)"
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8)
    fig.suptitle(title or "reconstruction")
    return fig
