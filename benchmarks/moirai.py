"""MOIRAI / DIVER-1 backbone on CPU: packing vs padding, and the Small model's throughput.

1. Packing vs padding: a batch of recordings with varied channel counts (drawn from
   ``--chans-min..--chans-max``) through a Tiny-width backbone (0.1 s patches), once attending over
   the padded ``(C_max + 1) x (N + 1)`` grid of every sample (``pack=False``) and once with the valid
   tokens packed into shared rows by first-fit decreasing (``pack=True``). Same weights, same outputs
   (checked); forward (inference) and forward + backward are timed. On CPU the dense-bias SDPA path
   pays ``rows x cap^2`` per layer whether rows are packed or padded, so its gain is only the rows
   and padded tokens saved; the score entries a FlexAttention kernel would visit (non-empty
   128 x 128 blocks of the packed rows' block mask) are reported alongside, as the GPU-side figure.
2. Throughput of DIVER-1 Small (d 512, 12 layers, 1 s patches): patch tokens per second for inference
   and for a training step (forward + backward), with FLOPs counted by ``torch.utils.flop_counter``.

Usage: ``python benchmarks/moirai.py [--threads 2] [--out benchmarks/results/moirai_cpu.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from efm_plugins.backbones.moirai import Moirai  # noqa: E402
from efm_plugins.backbones.moirai_config import MoiraiConfig  # noqa: E402


def timed(fn, reps: int) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": reps}


def varied_batch(model: Moirai, counts: list[int], n_patches: int):
    tok = model.example_input(len(counts), n_chans=max(counts), n_patches=n_patches)
    tok.channel_mask = torch.arange(max(counts))[None] < torch.tensor(counts)[:, None]
    tok.patches = tok.patches * tok.channel_mask[..., None, None]
    return tok


def attention_work(lengths: list[int], padded_len: int) -> dict:
    """Score entries one attention layer computes per head: dense padded rows, dense packed rows,
    and FlexAttention's non-empty 128 x 128 blocks of the packed rows (what a GPU kernel visits)."""
    from torch.nn.attention.flex_attention import create_block_mask

    from efm_plugins.backbones.moirai import pack_rows

    cap = max(lengths)
    rows, starts = pack_rows(lengths, cap)
    seg = torch.zeros(max(rows) + 1, cap, dtype=torch.long)
    for i, (r, s0) in enumerate(zip(rows, starts)):  # bookkeeping over samples, not a hot path
        seg[r, s0 : s0 + lengths[i]] = i + 1

    def mask_mod(b, h, q, k):
        return seg[b, q] == seg[b, k]

    bm = create_block_mask(mask_mod, seg.shape[0], None, cap, cap, device="cpu")
    dense_padded = len(lengths) * padded_len**2
    dense_packed = seg.shape[0] * cap**2
    flex_packed = dense_packed * (1 - bm.sparsity() / 100)
    return {
        "rows_padded": len(lengths),
        "rows_packed": seg.shape[0],
        "dense_padded": dense_padded,
        "dense_packed": dense_packed,
        "flex_blocks_packed": int(flex_packed),
        "padded_over_flex_packed": dense_padded / flex_packed,
        "exact_sum_of_squares": sum(n * n for n in lengths),
    }


def packing(args: argparse.Namespace) -> dict:
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(args.chans_min, args.chans_max + 1, (args.batch,), generator=g).tolist()
    cfg = MoiraiConfig(d_model=256, n_layers=args.layers, patch_len=50, dropout=0.0)
    torch.manual_seed(0)
    padded = Moirai(cfg)
    packed = Moirai(MoiraiConfig(**{**cfg.__dict__, "pack": True}))
    packed.load_state_dict(padded.state_dict())
    tok = varied_batch(padded, counts, args.patches)
    n = args.patches + 1
    grid_tokens = args.batch * (max(counts) + 1) * n
    real_tokens = sum((c + 1) * n for c in counts)
    with torch.no_grad():
        diff = (padded.eval()(tok).features - packed.eval()(tok).features).abs().max().item()
    work = attention_work([(c + 1) * n for c in counts], grid_tokens // args.batch)
    out = {
        "channel_counts": counts,
        "patches_per_channel": args.patches,
        "layers": args.layers,
        "d_model": 256,
        "encoder_tokens_padded": grid_tokens,
        "encoder_tokens_real": real_tokens,
        "max_abs_diff_packed_vs_padded": diff,
        "attention_score_entries": work,
    }
    for mode in ("inference", "train_step"):
        res = {}
        for name, model in (("padded", padded), ("packed", packed)):
            if mode == "inference":
                model.eval()

                def step(model=model):
                    with torch.no_grad():
                        model(tok)
            else:
                model.train()

                def step(model=model):
                    model(tok).features.square().mean().backward()

            res[name] = timed(step, args.reps)
        res["speedup"] = res["padded"]["median_s"] / res["packed"]["median_s"]
        out[mode] = res
    return out


def small_throughput(args: argparse.Namespace) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = Moirai(MoiraiConfig(d_model=512, n_layers=12, patch_len=500))
    tok = model.example_input(args.small_batch, n_chans=19, n_patches=5)
    patch_tokens = args.small_batch * 19 * 5
    out = {
        "model": "moirai_small (DIVER-1 Small, 1 s patches)",
        "params": sum(p.numel() for p in model.parameters()),
        "batch": args.small_batch,
        "channels": 19,
        "patches_per_channel": 5,
        "patch_tokens_per_batch": patch_tokens,
        "encoder_tokens_per_batch": args.small_batch * 20 * 6,
    }
    for mode in ("inference", "train_step"):
        if mode == "inference":
            model.eval()

            def step():
                with torch.no_grad():
                    model(tok)
        else:
            model.train()

            def step():
                model(tok).features.square().mean().backward()

        with FlopCounterMode(display=False) as fc:
            step()
        t = timed(step, args.reps)
        out[mode] = {
            **t,
            "patch_tokens_per_s": patch_tokens / t["median_s"],
            "gflop_per_step": fc.get_total_flops() / 1e9,
            "gflop_per_s": fc.get_total_flops() / 1e9 / t["median_s"],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--chans-min", type=int, default=8)
    ap.add_argument("--chans-max", type=int, default=64)
    ap.add_argument("--patches", type=int, default=10, help="0.1 s patches per channel (1 s)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--small-batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/moirai_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "benchmark": "moirai",
        "date": datetime.now().isoformat(timespec="seconds"),
        "device": f"cpu ({platform.processor() or platform.machine()}), {args.threads} threads",
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "attention": "sdpa (dense bias), fp32",
        "packing_vs_padding": packing(args),
        "small_throughput": small_throughput(args),
        "load_avg_at_end": os.getloadavg(),
        "notes": "CPU only (no GPU lent to this task): no MFU figure. The machine is shared with "
        "other jobs; see the load averages.",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("packing_vs_padding", "small_throughput")}, indent=1))


if __name__ == "__main__":
    main()
