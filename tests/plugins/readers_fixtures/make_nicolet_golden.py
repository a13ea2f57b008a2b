"""Golden values for the Nicolet tests, computed by an independent reader (run by hand, not in CI).

Source: ``neo/rawio/nicoletrawio.py`` of Swiss-Epilepsy-Center/python-neo at c1c04378 (2025-07-15,
the code of NeuralEnsemble/python-neo PR #1750), copied OUTSIDE this repository, with one local
change: the 256 reserved bytes after each signal-info record are skipped, as the ieeg-portal MATLAB
reader and the fork's later revision 087c67a do (without it the fork misparses every signal-info
record after the first). Only reads the fork gets right are recorded: its chunk reader ignores
``channel_indexes`` (bug 1 in data-formats.md §1.2) and mislocates sections in the third segment,
so only stream 0 of segments 0 and 1 is recorded as data.

Usage: ``python -m tests.plugins.readers_fixtures.make_nicolet_golden /tmp/necfork``
(a folder holding ``necfork/nicoletrawio.py``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tests.plugins.readers_fixtures.nicolet import default_spec, write_e

OUT = Path(__file__).with_name("nicolet_fork_golden.json")


def main(fork_dir: str) -> None:
    sys.path.insert(0, fork_dir)
    from necfork.nicoletrawio import NicoletRawIO  # the fork, outside the repo

    warnings.simplefilter("ignore")
    path = write_e(Path(tempfile.mkdtemp()) / "golden.e", default_spec(seed=0))
    r = NicoletRawIO(str(path))
    r.parse_header()
    ch = r.header["signal_channels"]
    data = {}
    for seg in (0, 1):
        x = r.get_analogsignal_chunk(0, seg, 0, r.get_signal_size(0, seg, 0), 0)
        raw = np.rint(x / ch["gain"][ch["stream_id"] == "0"]).astype("<i2")
        data[f"seg{seg}_stream0"] = {
            "shape": list(raw.shape),
            "sha256": hashlib.sha256(raw.tobytes()).hexdigest(),
        }
    golden = {
        "source": "Swiss-Epilepsy-Center/python-neo@c1c04378 neo/rawio/nicoletrawio.py "
        "(+ 256-byte signal-info skip), run outside the repo on default_spec(seed=0)",
        "channels": [
            {
                "name": str(c["name"]),
                "sampling_rate": float(c["sampling_rate"]),
                "units": str(c["units"]),
                "gain": float(c["gain"]),
                "offset": float(c["offset"]),
                "stream_id": str(c["stream_id"]),
            }
            for c in ch
        ],
        "segments": [
            {
                "date": s["date"].isoformat(),
                "duration": s["duration"].total_seconds(),
                "n": r.get_signal_size(0, i, 0),
            }
            for i, s in enumerate(r.segments_properties)
        ],
        "events": [
            {
                "t": e["timestamp"],
                "duration": e["duration"],
                "type": e["id_str"],
                "text": e["annotation"],
                "user": e["user"],
            }
            for e in r.events
        ],
        "data": data,
    }
    OUT.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
