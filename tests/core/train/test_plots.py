"""The run's figures say what they show: axes with units, names, a colour bar, what was masked."""

from __future__ import annotations

import numpy as np
import torch

from efm.evaluate.report import class_names, confusion_plot
from efm.train import plots


def _close(fig):
    plots._pyplot().close(fig)


def test_signal_reconstruction_shows_each_rows_own_mask_in_microvolts():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 200, generator=gen) * 20  # [C, T] µV
    hidden = torch.zeros(3, 200, dtype=torch.bool)
    hidden[0, :50], hidden[1, 100:150], hidden[2, 150:] = True, True, True  # a mask per row
    figures = {"original": x, "masked": x * ~hidden, "reconstruction": x * 0.5}
    info = {"ch_names": ["LA1", "LA2", "RH1"], "duration_s": 2.0, "units": "µV"}
    fig = plots.reconstruction_figure(figures, "t", info)
    axes = np.array(fig.axes).reshape(3, 3)
    for i in range(3):
        line = axes[i, 1].get_lines()[0]  # the masked panel: the original, blank where hidden
        y = np.asarray(line.get_ydata(), dtype=float)
        np.testing.assert_array_equal(np.isnan(y), hidden[i].numpy())
        np.testing.assert_allclose(y[~hidden[i].numpy()], x[i][~hidden[i]].numpy(), rtol=1e-6)
        assert axes[i, 0].get_ylabel() == "µV"
        assert axes[i, 0].texts[0].get_text() == info["ch_names"][i]
    assert axes[2, 0].get_xlabel() == "time (s)"
    np.testing.assert_allclose(axes[2, 0].get_lines()[0].get_xdata()[[0, -1]], [0.0, 1.99])
    assert {t.get_text() for t in axes[0, 2].get_legend().get_texts()} == {
        "original",
        "reconstruction",
    }
    assert "hidden: 25% of the input" in fig.texts[0].get_text()
    _close(fig)


def test_image_reconstruction_has_frequency_axis_and_one_colour_bar():
    x = torch.rand(2, 16, 32) + 0.1  # [C, H=freq, W=time]
    vis = torch.ones(16, 32)
    vis[:8, :16] = 0  # one mask shared by the channels
    figures = {"original": x, "masked": x * vis, "reconstruction": x}
    freqs = np.geomspace(1, 100, 16)
    info = {"ch_names": ["frontal", "temporal"], "duration_s": 30.0, "freqs": freqs, "units": "dB"}
    fig = plots.reconstruction_figure(figures, "t", info)
    panels, bars = fig.axes[:6], fig.axes[6:]
    assert len(bars) == 1 and bars[0].get_ylabel() == "dB"
    assert panels[0].get_ylabel() == "frequency (Hz)"
    ticks = [float(t.get_text()) for t in panels[0].get_yticklabels()]
    assert ticks[0] == 1 and ticks[-1] == 100
    masked = panels[1].get_images()[0].get_array()
    assert masked.mask[:8, :16].all() and not masked.mask[8:].any()  # grey where hidden
    assert panels[4].get_xlabel() == "time (s)" and panels[0].get_images()[0].get_extent()[1] == 30
    assert "one mask for every channel" in fig.texts[0].get_text()
    _close(fig)


def test_loss_figure_has_a_legend_and_a_log_learning_rate_axis():
    rows = [
        {"step": s, "loss": 1.0 / s, "lr_muon": 0.02 * s / 10, "lr_adamw": 3e-4 * s / 10}
        for s in range(1, 11)
    ]
    fig = plots.loss_figure(rows, "t")
    ax, ax2 = fig.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["loss", "learning rate, adamw", "learning rate, muon"]
    assert ax2.get_yscale() == "log" and ax.get_xlabel() == "step"
    _close(fig)


def test_confusion_matrices_name_their_classes(tmp_path):
    assert class_names("seizure", [0, 1]) == ["no seizure", "seizure"]
    assert class_names("sleep_stage", [0, 2, 4]) == ["W", "N2", "REM"]
    assert class_names("grade", [1, 2, 3]) == ["1", "2", "3"]
    path = confusion_plot([[5, 1], [2, 7]], class_names("seizure", [0, 1]), tmp_path / "c.png", "x")
    assert path.is_file() and path.stat().st_size > 1000
