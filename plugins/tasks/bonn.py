"""Reader of the Bonn epilepsy segments (Andrzejak et al. 2001, Phys. Rev. E 64:061907).

Each ``.txt`` file holds 4097 integer samples, one per line, of one channel at 173.61 Hz; the
published values are in microvolts (an amplifier's 12-bit counts scaled by the authors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from efm.errors import ReaderError
from efm.interfaces import Recording


class BonnReader:
    """``read(path) -> Recording`` of one Bonn segment."""

    def __init__(self, sfreq: float = 173.61, ch_type: str = "eeg") -> None:
        self.sfreq, self.ch_type = float(sfreq), ch_type

    def read(self, path: str | Path) -> Recording:
        path = Path(path)
        try:
            values = np.loadtxt(path, dtype=np.float64, ndmin=1)
        except (OSError, ValueError) as exc:
            raise ReaderError(f"{path}: not a Bonn segment: {exc}") from exc
        if values.ndim != 1 or values.size < 2:
            raise ReaderError(f"{path}: not a Bonn segment: {values.size} samples")
        return Recording(
            data=(values * 1e-6).astype(np.float32)[None, :],  # [1, T] volts
            sfreq=self.sfreq,
            ch_names=["EEG"],
            ch_types=[self.ch_type],
            source=str(path),
            recording_id=path.stem,
            modality="ieeg" if self.ch_type in ("seeg", "ecog") else "eeg",
        )
