"""Training throughput and MFU of a recipe's full-size model, and the loader.

    python benchmarks/training.py                                  # CPU, batch 8 (see below)
    python benchmarks/training.py --batch-size 256 --compile max-autotune   # on a GPU
    python benchmarks/training.py --recipe diver1-EEG --backbone moirai_small   # DIVER-1 on a GPU
    python benchmarks/training.py --quick                          # tiny, for a smoke test
    python benchmarks/training.py --ranks                          # 1 vs 2 processes (DDP, gloo)

The default is EPI-250k's model (spectrogram -> hiera_base -> MAE on 8 x 7500 epochs);
``--recipe diver1-EEG`` is DIVER-1's (1 s patch tokens of 19 channels x 5 s at 500 Hz ->
moirai_small, packed any-variate attention -> multi-domain reconstruction).

One training step is what ``efm.train.loop`` does: the representation on the device, the backbone,
the MAE decoder and loss, backward, one global clip, Muon + AdamW. Throughput is the median of
``--steps`` timed steps after ``--warmup`` steps (compilation happens in the warm-up).

MFU = model FLOP/s / peak FLOP/s, against the datasheet peak and, on CUDA, against the bf16 matrix
rate measured in the same run (8192^3 products). Model FLOPs are counted once with ``torch.utils.flop_counter``
over forward + backward of the objective (matmuls, convolutions, attention; the optimizer's
Newton-Schulz iterations are not model FLOPs and are left out) and scaled to the batch. Peak: for
CUDA the dense bf16 tensor-core peak of the GPU (H100 / H200 SXM: 989 TFLOP/s); for CPUs an fp32
estimate, cores x clock x FLOP per cycle (32 for AVX2/AVX-512 on AMD Zen, 64 for Intel AVX-512),
overridable with ``--peak-tflops``.

``--ranks``: the same global batch trained by 1 process and by 2 DDP processes (gloo on a CPU,
each with half the cores), samples/s and their ratio; on a GPU, one process with the model plain,
in DDP and sharded by FSDP2 (the wrappers' overhead ratio against none). Written to
``benchmarks/results/training_ranks_<device>.json``.

The loader is measured alone on synthetic shards of the same format and epoch shape (8 x 7500
float16 µV): samples/s with ``--workers`` workers at the same batch size, to compare with the rate
at which the model consumes samples (the loader must be at least 1.5x faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from efm.assemble import assemble
from efm.config import compose
from efm.data.synthetic import write_synthetic_shards
from efm.train.loader import make_loader
from efm.train.loop import autocast_dtype, compile_model
from efm.train.optim import Optimizers

GPU_PEAK_BF16 = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def cpu_peak_tflops() -> tuple[float, str]:
    flags, vendor, mhz = "", "", 0.0
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags" and not flags:
                flags = value
            elif key == "vendor_id" and not vendor:
                vendor = value.strip()
            elif key == "cpu MHz" and not mhz:
                mhz = float(value)
    cores = len(os.sched_getaffinity(0))
    per_cycle = 64 if ("avx512f" in flags and vendor == "GenuineIntel") else 32
    if "fma" not in flags:
        per_cycle = 8
    peak = cores * mhz * 1e6 * per_cycle / 1e12
    return peak, f"{cores} cores x {mhz:.0f} MHz x {per_cycle} fp32 FLOP/cycle ({vendor})"


def gpu_peak_tflops() -> tuple[float, str]:
    name = torch.cuda.get_device_name(0)
    for key, peak in GPU_PEAK_BF16.items():
        if key in name:
            return peak, f"{name}: dense bf16 tensor-core peak {peak} TFLOP/s"
    return float("nan"), f"{name}: unknown peak (pass --peak-tflops)"


def measured_matmul_tflops() -> float:
    """The bf16 matrix rate of this GPU: mean of ten 8192^3 products after three warm-ups."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * 10 / (time.perf_counter() - t) / 1e12


def epoch_shape(cfg: dict, n_chans: int) -> tuple[int, int]:
    """``(n_chans, n_times)`` of one training sample: the shortest crop, else the whole epoch."""
    p, crops = cfg["pipeline"], list(cfg["train"].get("crops_s") or [])
    return n_chans, round(float(p["sfreq"]) * min(crops or [float(p["epoch_s"])]))


def model_flops(cfg: dict, batch: int, device: torch.device, shape: tuple[int, int]) -> float:
    """Forward + backward FLOPs of one batch (counted at batch 2, scaled)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    if cfg["representation"]["name"] == "patch":
        # counted on the dense path, one sample per row (the flop counter cannot see inside
        # FlexAttention): the same model FLOPs, attention within each sample only
        cfg = {**cfg, "backbone": {**cfg["backbone"], "attention": "sdpa", "pack": False}}
    obj = assemble(cfg).to(device)
    x = torch.randn(2, *shape, device=device) * 30
    counter = FlopCounterMode(display=False)
    with counter:
        obj({"signal": x}).loss.backward()
    return counter.get_total_flops() / 2 * batch


def train_rate(
    cfg: dict,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    shape: tuple[int, int],
    profile: bool = False,
) -> dict:
    torch.manual_seed(0)
    obj = assemble(cfg).to(device)
    opt = Optimizers(obj, cfg["optim"], 1000)
    compile_model(obj, str(cfg["train"]["compile"]))
    amp = autocast_dtype(str(cfg["train"]["precision"]), device)
    x = torch.randn(batch, *shape, device=device) * 30
    t_first = time.perf_counter()
    times: list[float] = []
    opt_times: list[float] = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = obj({"signal": x})
        out.loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_opt = time.perf_counter()
        opt.clip_and_step()
        opt.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            first_step_s = time.perf_counter() - t_first  # compilation included
        if i >= warmup:
            times.append(time.perf_counter() - t)
            opt_times.append(time.perf_counter() - t_opt)
    kernels = profile_step(obj, opt, x, amp, device) if profile else None
    step = statistics.median(times)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    opt_s = statistics.median(opt_times)
    return {
        "step_s": step,
        "step_s_all": times,
        "samples_per_s": batch / step,
        "optimizer_s": opt_s,
        "model_samples_per_s": batch / (step - opt_s),
        "first_step_s": first_step_s,
        "loss": float(out.loss.detach()),
        "max_gpu_mem_gib": mem,
        "top_kernels": kernels,
    }


def profile_step(obj, opt, x, amp, device: torch.device, top: int = 25) -> list[dict]:
    """The ``top`` operators of two profiled steps by device (else CPU) self time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = obj({"signal": x})
            out.loss.backward()
            opt.clip_and_step()
            opt.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0.0), reverse=True)
    total = sum(getattr(e, key, 0.0) for e in events) or 1.0
    return [
        {
            "name": e.key[:120],
            "calls": e.count,
            "self_ms_per_step": getattr(e, key, 0.0) / 1e3 / 2,
            "share": getattr(e, key, 0.0) / total,
        }
        for e in events[:top]
    ]


def loader_rates(
    batches: list[int],
    workers: list[int],
    dtypes: list[str],
    n_samples: int,
    n_chans: int = 8,
    sfreq: float = 250.0,
    epoch_s: float = 30.0,
) -> list:
    """Loader samples/s on synthetic shards (float16 µV epochs of the recipe's shape)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        shards = write_synthetic_shards(
            Path(tmp),
            n_patients=4,
            epochs_per_patient=128,
            n_chans=n_chans,
            sfreq=sfreq,
            epoch_s=epoch_s,
            epochs_per_shard=64,
        )
        for batch in batches:
            for w in workers:
                for dtype in dtypes:
                    loader = make_loader(
                        shards,
                        batch,
                        num_workers=w,
                        shuffle_buffer=256,
                        pin_memory=torch.cuda.is_available(),
                        dtype=dtype,
                    )
                    it = iter(loader)
                    for _ in range(max(1, w)):
                        next(it)  # workers started, buffers filled
                    n = max(4, n_samples // batch)
                    t = time.perf_counter()
                    for _ in range(n):
                        next(it)
                    dt = time.perf_counter() - t
                    del it
                    out.append(
                        {
                            "batch_size": batch,
                            "workers": w,
                            "dtype": dtype,
                            "batches": n,
                            "samples_per_s": n * batch / dt,
                        }
                    )
    return out


def _rank_worker(rank: int, world: int, port: int, job: dict, out: str) -> None:
    """One process of a ``--ranks`` measurement: ``job["steps"]`` timed steps of the global batch."""
    from efm.train import distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, job["threads"] // world))
    if job["strategy"] != "none" and world == 1:  # a process group of one: the wrapper alone
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend, rank=0, world_size=1)
    dist = distributed.init()
    cfg, shape = job["cfg"], job["shape"]
    torch.manual_seed(0)
    obj = assemble(cfg).to(dist.device)
    distributed.freeze_unused(obj)
    amp = autocast_dtype(str(cfg["train"]["precision"]), dist.device)
    how = job["strategy"]
    if how == "fsdp":
        distributed.wrap(obj, how, dist, mixed_precision=amp)
    opt = Optimizers(obj, cfg["optim"], 1000)
    model = obj if how in ("fsdp", "none") else distributed.wrap(obj, how, dist)
    micro = distributed.micro_batch(job["batch"], world)
    x = torch.randn(micro, *shape, device=dist.device) * 30
    times = []
    for i in range(job["warmup"] + job["steps"]):
        if dist.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(dist.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = model({"signal": x}).loss
        loss.backward()
        opt.clip_and_step()
        opt.zero_grad()
        distributed.mean_over_ranks([float(loss.detach())], dist)  # what the loop logs
        if i >= job["warmup"]:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    if rank == 0:
        Path(out).write_text(json.dumps({"step_s": step, "samples_per_s": job["batch"] / step}))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_scaling(cfg: dict, batch: int, steps: int, warmup: int, shape: tuple[int, int]) -> dict:
    """samples/s of one global batch at 1 and 2 processes (CPU), or per wrapper on one GPU."""
    import socket

    cuda = torch.cuda.is_available()
    runs = [("none", 1), ("ddp", 1), ("fsdp", 1)] if cuda else [("none", 1), ("ddp", 2)]
    job = {"cfg": cfg, "shape": list(shape), "batch": batch, "steps": steps, "warmup": warmup}
    job["threads"] = torch.get_num_threads()
    found = {}
    for how, world in runs:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "rank0.json")
            torch.multiprocessing.spawn(
                _rank_worker, args=(world, port, {**job, "strategy": how}, out), nprocs=world
            )
            found[f"{how}_x{world}"] = json.loads(Path(out).read_text())
    base = found["none_x1"]["samples_per_s"]
    return {
        "runs": found,
        "ratio_over_one_process": {k: v["samples_per_s"] / base for k, v in found.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="epi250k")
    p.add_argument("--backbone", default=None, help="default: the recipe's full-size backbone")
    p.add_argument("--n-chans", type=int, default=None, help="default: 8 (images), 19 (tokens)")
    p.add_argument("--profile", action="store_true", help="top operators of two profiled steps")
    p.add_argument(
        "--set", nargs="*", default=[], help="more config overrides, e.g. backbone.pack=true"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: 256 on GPU, 8 on CPU")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", default=None, help="default: max-autotune on GPU, none on CPU")
    p.add_argument("--precision", default="auto")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: cores/2)")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--quick", action="store_true", help="hiera_test, batch 2, 2 steps")
    p.add_argument("--ranks", action="store_true", help="1 vs 2 DDP processes (GPU: wrappers)")
    p.add_argument("--out", default=None)
    p.add_argument("--note", default="", help="free text stored in the JSON")
    args = p.parse_args()

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    mode = args.compile or ("max-autotune" if cuda else "none")
    base = compose([f"recipe={args.recipe}", "data.root=/nonexistent"])  # the paper's sizes
    token = base["representation"]["name"] == "patch"
    backbone = args.backbone or str(base["backbone"]["name"])
    if args.quick:
        backbone = "moirai_test" if token else "hiera_test"
    batch = args.batch_size or (int(base["train"]["batch_size"]) if cuda else 8)
    if args.quick:
        batch, args.steps, args.warmup = 2, 2, 1
    overrides = [f"train.compile={mode}", f"train.precision={args.precision}"]
    if backbone != base["backbone"]["name"]:  # a group choice resets the node: keep patch_len
        overrides[:0] = [f"backbone={backbone}"]
        if token:
            overrides.append(f"backbone.patch_len={base['backbone']['patch_len']}")
    cfg = compose([f"recipe={args.recipe}", "data.root=/nonexistent", *overrides, *args.set])
    shape = epoch_shape(cfg, args.n_chans or (19 if token else 8))
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    if args.ranks:
        log(f"{args.recipe}: {backbone}, global batch {batch}: 1 vs 2 processes")
        found = rank_scaling(cfg, batch, args.steps, args.warmup, shape)
        found.update(
            benchmark="training_ranks",
            recipe=args.recipe,
            model=f"{cfg['representation']['name']} -> {backbone} -> {cfg['objective']['name']}",
            batch_size=batch,
            device=torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            threads=torch.get_num_threads(),
            torch=torch.__version__,
            date=time.strftime("%Y-%m-%dT%H:%M:%S"),
            note=args.note,
        )
        out = Path(args.out or f"benchmarks/results/training_ranks_{device.type}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(found, indent=2), encoding="utf-8")
        print(json.dumps(found["ratio_over_one_process"], indent=1))
        print(f"wrote {out}")
        return
    log(f"{args.recipe}: {backbone}, batch {batch}, compile {mode}: counting FLOPs")
    flops = model_flops(cfg, batch, device, shape)
    log("timing training steps (the first compiles)")
    rate = train_rate(cfg, batch, args.steps, args.warmup, device, shape, args.profile)
    peak, peak_note = cpu_peak_tflops() if not cuda else gpu_peak_tflops()
    measured = measured_matmul_tflops() if cuda else None
    log(f"step {rate['step_s'] * 1e3:.1f} ms (first {rate['first_step_s']:.1f} s); loader")
    if args.peak_tflops:
        peak, peak_note = args.peak_tflops, f"given: {args.peak_tflops} TFLOP/s"
    achieved = flops / rate["step_s"] / 1e12
    achieved_model = flops / (rate["step_s"] - rate["optimizer_s"]) / 1e12
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) // 2)
    dtype = "float16" if cuda else "float32"  # what the training loop asks for on this device
    p = cfg["pipeline"]
    sizes = {"n_chans": shape[0], "sfreq": float(p["sfreq"]), "epoch_s": float(p["epoch_s"])}
    load = loader_rates([batch], [workers], [dtype], 4 * batch, **sizes)[0]
    table = loader_rates([batch], sorted({0, 1, workers}), ["float32", "float16"], 2048, **sizes)
    ratio = load["samples_per_s"] / rate["samples_per_s"]
    result = {
        "benchmark": "training",
        "recipe": args.recipe,
        "model": f"{cfg['representation']['name']} -> {backbone} -> {cfg['objective']['name']}",
        "sample_shape": list(shape),
        "device": {
            "type": device.type,
            "name": torch.cuda.get_device_name(0)
            if cuda
            else platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "batch_size": batch,
        "compile": mode,
        "overrides": [*overrides, *args.set],
        "attention": cfg["backbone"].get("attention"),
        "pack": cfg["backbone"].get("pack"),
        "precision": "bf16" if autocast_dtype(args.precision, device) else "fp32",
        "train": rate,
        "model_tflop_per_step": flops / 1e12,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "peak_note": peak_note,
        "mfu": achieved / peak,
        "measured_matmul_tflops": measured,
        "mfu_of_measured_matmul": achieved / measured if measured else None,
        "mfu_without_optimizer": achieved_model / peak,
        "note": args.note,
        "loader": load,
        "loader_by_workers": table,
        "loader_over_model": ratio,
        "loader_ok": ratio >= 1.5,
    }
    suffix = "" if args.recipe == "epi250k" else f"_{args.recipe}"
    out = Path(args.out or f"benchmarks/results/training_{device.type}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "batch_size",
                    "compile",
                    "precision",
                    "achieved_tflops",
                    "mfu",
                    "loader_over_model",
                )
            }
            | {
                "samples_per_s": rate["samples_per_s"],
                "loader_samples_per_s": load["samples_per_s"],
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
