"""Where a representation's time goes: the top operators of efm and flash-eeg, side by side.

    python benchmarks/profile_representations.py --device cuda --out prof.json spectrogram bandpass

Each implementation runs ``--calls`` times on a batch of 8 x 7500 epochs after two warm-up
calls, under ``torch.profiler``; the JSON lists the operators by self device time (CPU time on a
CPU), with calls and milliseconds per call of the representation. Used by the GPU check
(``benchmarks/device_run.sh``) to explain a transform that misses its target.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from efm import registry

FLASH: dict[str, Callable] = {
    "spectrogram": lambda fe, x: fe.spectrogram(x, compile=False),
    "morlet": lambda fe, x: fe.morlet(x, compile=False),
    "temporal_matrix": lambda fe, x: fe.reshape(x, compile=False),
    "bandpass": lambda fe, x: fe.bandpass(x),
    "wpli": lambda fe, x: fe.connectivity(x, compile=False),
}


def top_ops(fn: Callable[[], object], device: torch.device, calls: int, top: int) -> dict:
    for _ in range(2):
        fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(calls):
            fn()
        sync()
    wall = (time.perf_counter() - t) / calls
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0.0), reverse=True)
    total = sum(getattr(e, key, 0.0) for e in events)
    return {
        "ms_per_call_profiled": wall * 1e3,
        "device_ms_per_call": total / 1e3 / calls,
        "ops": [
            {
                "name": e.key[:100],
                "calls_per_call": e.count / calls,
                "ms_per_call": getattr(e, key, 0.0) / 1e3 / calls,
                "cpu_ms_per_call": e.self_cpu_time_total / 1e3 / calls,
            }
            for e in events[:top]
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("transforms", nargs="+")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = torch.device(args.device)
    x = torch.randn(args.batch, 8, 7500, device=device) * 30
    try:
        import flash_eeg as fe
    except ImportError:
        fe = None
    doc: dict = {"device": str(device), "batch": args.batch, "shape": [8, 7500], "results": {}}
    for name in args.transforms:
        cfg = {"n_times": 7500} if name in ("morlet", "wpli") else {}
        rep = registry.create("tokenizers", name, **cfg).to(device)
        with torch.no_grad():
            row = {"efm": top_ops(lambda rep=rep: rep(x), device, args.calls, args.top)}
            if fe is not None and name in FLASH:
                row["flash-eeg"] = top_ops(
                    lambda name=name: FLASH[name](fe, x), device, args.calls, args.top
                )
        doc["results"][name] = row
        print(name, {k: round(v["device_ms_per_call"], 3) for k, v in row.items()}, flush=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
