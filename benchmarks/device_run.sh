#!/usr/bin/env bash
# The whole GPU check of efm, as one script for a bare accelerator machine whose python3 already
# holds a CUDA build of torch, SciPy, einops, pluggy, PyYAML, pytest and safetensors, with no network.
#
#   bash benchmarks/device_run.sh --fetch          # here, with network: the missing wheels into .whl/
#   bash benchmarks/device_run.sh [PART ...]       # there, with .whl/ carried along
#   DEV=cpu bash benchmarks/device_run.sh          # a rehearsal on the CPU, at tiny sizes
#
# Parts, in the order they run (default: all). Each part has its own time limit, appends to one
# log and writes its JSON as soon as it ends, so a run stopped at its limit keeps what it measured:
#   reps      representations at batch 2048 and 256 of 8 x 7500: efm vs flash-eeg, eager
#   prof      where each representation's time goes on the device: top operators, efm vs flash-eeg
#   eager     hiera_base MAE training steps in bf16 without compilation (the reference for train)
#   train     training steps of EPI-250k's model, bf16, compiled: hiera_base MAE on 224 x 224
#             spectrograms at batch 256: step time, samples/s, MFU, peak memory, the top kernels,
#             loader vs model
#   moirai    the same for DIVER-1's: moirai_small multi-domain on packed 1 s patch tokens
#   compiled  representations compiled by inductor vs flash-eeg compiled (its own max-autotune)
#   check     three jobs side by side (correctness only, so sharing the GPU does not matter):
#             the GPU tests (tests/gpu and every test marked for CUDA), and `efm run` of epi250k
#             and diver1-iEEG on the demo corpus with the full model sizes, loss going down
#             (CHECK_K: a pytest -k filter; RUN_STEPS and RUN_COMPILE: the runs' steps and compile)
#
# Measured on the H200 machine (16 cores), 2026-12-04: install 10 s, reps 24 s, prof 28 s, eager
# 36 s, the GPU tests about 95 s alone (compiles included); compiling hiera_base MAE in inductor's
# default mode took more than 110 s (train did not finish in its limit), and the compiled reps did
# not finish in 70 s: on a 15-minute lease run train or compiled alone, with TRAIN_S / a longer
# limit, and check alone rather than beside both runs (they shared 16 cores and timed out at 75 s).
#
# Results in $OUT when set (the device tool), else benchmarks/results/device/: parts.json (status,
# seconds and environment), device_run.log, representations_cuda.json,
# representations_cuda_compiled.json, training_cuda.json, training_cuda_diver1-EEG.json,
# gpu_tests.xml (JUnit) and runs.json: eight files, the most the device tool returns.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch" ]]; then
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 flash-eeg==0.4.1 mne==1.13.2 \
        neo==0.14.6 quantities==0.16.4 webdataset==1.0.2 braceexpand==0.1.7 decorator==5.2.1 \
        pooch==1.9.0 platformdirs==4.14.9
    ls -l .whl
    exit 0
fi

DEV=${DEV:-cuda}
out=${OUT:-benchmarks/results/device}
mkdir -p "$out"
log="$out/device_run.log"
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(reps prof eager train moirai compiled check)
export PYTHONUNBUFFERED=1 EFM_CACHE=${EFM_CACHE:-/tmp/efm-cache} MPLBACKEND=Agg
py=${PYTHON:-python3}

if [[ "$DEV" == cuda ]]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/efm-site .whl/*.whl >>"$log" 2>&1
    export PYTHONPATH=/tmp/efm-site${PYTHONPATH:+:$PYTHONPATH}
    $py -m pip install -q --no-index --no-deps --no-build-isolation -e . >>"$log" 2>&1
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version \
        --format=csv >>"$log" 2>&1
fi
efm=("$py" -m efm.cli)

# one entry of parts.json: PATH NAME RC SECONDS
RECORD=$(cat <<'PY'
import json, os, platform, sys
path, name, rc, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    doc = json.load(open(path))
except (OSError, ValueError):
    import torch
    doc = {"env": {"python": platform.python_version(), "torch": torch.__version__,
                   "cuda": torch.version.cuda,
                   "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                   "cpus": os.cpu_count(), "git": os.popen("git rev-parse HEAD").read().strip()},
           "parts": {}}
doc["parts"][name] = {"rc": rc, "seconds": round(secs, 1),
                      "status": {0: "ok", 124: "time limit"}.get(rc, "failed")}
json.dump(doc, open(path, "w"), indent=1)
PY
)

part() {  # part NAME LIMIT_S COMMAND...: run with a time limit, log it, record it
    local name=$1 limit=$2 t0 rc plog=${PART_LOG:-$log}
    shift 2
    echo "== $name (limit ${limit}s): $*" | tee -a "$plog"
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" >>"$plog" 2>&1
    rc=$?
    flock /tmp/efm-parts.lock "$py" - "$out/parts.json" "$name" "$rc" "$(($(date +%s) - t0))" \
        <<<"$RECORD"
    echo "== $name: rc $rc in $(($(date +%s) - t0)) s" | tee -a "$plog"
}

if [[ "$DEV" == cuda ]]; then
    batches=(2048 256) train_hiera=(--steps 6 --warmup 2) train_moirai=(--steps 6 --warmup 2)
    run_steps=${RUN_STEPS:-200} hiera_batch=128 moirai_batch=64 pytest_k=${CHECK_K:-cuda or gpu}
    mode=default
else  # rehearsal: the same commands at sizes a 2-core CPU finishes in minutes
    batches=(16) train_hiera=(--quick) train_moirai=(--quick)
    run_steps=4 hiera_batch=2 moirai_batch=2 pytest_k="representation_on_cuda and spectrogram"
    mode=none
    export EFM_GPU_TESTS_ON=cpu
fi

runs_json() {  # the losses and probe results of the check part's two runs
    $py - "$out/runs.json" /tmp/efm-runs/* <<'PY'
import csv, json, sys
from pathlib import Path
doc = {}
for d in map(Path, sys.argv[2:]):
    rows = list(csv.DictReader(open(d / "metrics.csv"))) if (d / "metrics.csv").exists() else []
    rep = json.loads((d / "report.json").read_text()) if (d / "report.json").exists() else {}
    doc[d.name] = {
        "losses": [(int(r["step"]), float(r["loss"])) for r in rows],
        "samples_per_s": [float(r["samples_per_s"]) for r in rows],
        "report": {k: rep.get(k) for k in ("train", "probes", "times", "header")},
        "config": (d / "config.yaml").read_text() if (d / "config.yaml").exists() else None,
    }
json.dump(doc, open(sys.argv[1], "w"), indent=1, default=str)
PY
}

for p in "${parts[@]}"; do
    case $p in
    prof)
        part prof 30 $py benchmarks/profile_representations.py --device "$DEV" \
            --out "$out/profile_representations.json" spectrogram bandpass temporal_matrix wpli ;;
    eager)
        part train-hiera-eager 45 $py benchmarks/training.py --compile none \
            "${train_hiera[@]}" --out "$out/training_cuda_eager.json" \
            --note "hiera_base MAE, bf16 autocast, eager (no torch.compile)" ;;
    moirai)
        part train-moirai 70 $py benchmarks/training.py --recipe diver1-EEG --compile $mode \
            --profile "${train_moirai[@]}" --set backbone.pack=true \
            --out "$out/training_cuda_diver1-EEG.json" \
            --note "moirai_small multi-domain, 19 channels x 5 s at 500 Hz, 1 s patches, packed rows" ;;
    reps)
        part reps 70 $py benchmarks/representations.py --device "$DEV" --batches "${batches[@]}" \
            --repeats 5 --out "$out/representations_cuda.json" ;;
    train)
        part train-hiera ${TRAIN_S:-110} $py benchmarks/training.py --compile $mode --profile \
            "${train_hiera[@]}" --out "$out/training_cuda.json" \
            --note "hiera_base MAE, bf16 autocast, inductor default mode (max-autotune compiles too long for the device budget)"
        ;;
    compiled)
        part compiled 70 $py benchmarks/representations.py --device "$DEV" --batches "${batches[@]}" \
            --repeats 3 --compile --out "$out/representations_cuda_compiled.json" ;;
    check)
        rm -rf /tmp/efm-runs
        common=(train.steps=$run_steps train.log_every=10 train.ckpt_every=100
            optim.warmup_steps=20 eval.seeds=2 train.num_workers=4)
        PART_LOG=/tmp/efm-check-tests.log part gpu-tests ${CHECK_S:-140} $py -m pytest -q -p no:cacheprovider \
            tests/gpu tests/plugins/test_moirai.py -k "$pytest_k" -rA \
            --junitxml="$out/gpu_tests.xml" &
        PART_LOG=/tmp/efm-check-epi.log part run-epi250k ${CHECK_S:-140} "${efm[@]}" run recipe=epi250k \
            representation=spectrogram backbone=hiera_base objective=mae \
            train.batch_size=$hiera_batch train.compile=${RUN_COMPILE:-$mode} \
            train.run_dir=/tmp/efm-runs/epi250k "${common[@]}" &
        PART_LOG=/tmp/efm-check-diver.log part run-diver1-iEEG ${CHECK_S:-140} "${efm[@]}" run \
            recipe=diver1-iEEG backbone=moirai_tiny backbone.patch_len=50 backbone.embed_window=50 \
            'train.crops_s=[5.0]' train.batch_size=$moirai_batch \
            train.run_dir=/tmp/efm-runs/diver1-iEEG "${common[@]}" &
        wait
        cat /tmp/efm-check-*.log >>"$log"
        runs_json ;;
    *) echo "unknown part $p (reps prof eager moirai train compiled check)" >&2; exit 2 ;;
    esac
done
echo "done: $(ls "$out")"
