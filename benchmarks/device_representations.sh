#!/usr/bin/env bash
# The GPU run of benchmarks/representations.py on a bare accelerator machine whose python3
# already holds a CUDA build of torch, SciPy, einops, pluggy and PyYAML, with no network.
#
#   bash benchmarks/device_representations.sh --fetch   # here, with network: wheels into .whl/
#   bash benchmarks/device_representations.sh           # there, with .whl/ carried along
#   (extra arguments go to representations.py and override, e.g. --transforms wpli)
#
# Results: representations_cuda.json (efm and flash-eeg eager) and
# representations_cuda_compiled.json (efm compiled by inductor, default mode, and flash-eeg
# compiled, its own max-autotune, next to both eager) in $OUT when set, else benchmarks/results/;
# written after every transform, so a run stopped at its time limit keeps what it measured.
# Batches 2048 first, then 256 and 64.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch" ]]; then
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl omegaconf==2.3.0 flash-eeg==0.4.1
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # sdist only
    ls -l .whl
    exit 0
fi

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/efm-site .whl/*.whl
export PYTHONPATH=/tmp/efm-site${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
out=${OUT:-benchmarks/results}
bench() { PYTHONUNBUFFERED=1 python3 benchmarks/representations.py --device cuda \
    --batches 2048 256 64 --repeats 5 "$@" 2>&1 | grep -v '^{'; }
# eager first (about a minute), then compiled: each compile of each batch size costs seconds
# to a minute, and the second file keeps the eager rows of its own run as the reference
bench --out "$out/representations_cuda.json" "$@" | tee "$out/representations_cuda.log"
bench --compile --out "$out/representations_cuda_compiled.json" "$@" |
    tee "$out/representations_cuda_compiled.log"
