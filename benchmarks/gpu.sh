#!/usr/bin/env bash
# The benchmarks on a CUDA GPU, in one command, from anywhere in a clone:
#
#   benchmarks/gpu.sh [--quick] [PYTHON]
#
# 1. the layer, streaming and whole-model tables (python -m benchmarks.run, jax and torch on the
#    GPU) -> $OUT/performance.md;
# 2. the autotuning of convtrans's GPU plan on the vocoder models' training steps
#    (python -m convtrans.tune benchmarks.models:hifigan_v1_tune_target, then MelGAN's)
#    -> $OUT/tune-*.txt.
#
# OUT defaults to runs/gpu. PYTHON defaults to python3 where it has jax and torch with CUDA (only
# the benchmarks' missing pure-Python dependencies are then installed, the installed jax and torch
# held at their versions); otherwise a venv .venv-gpu gets the package's extras and jax[cuda12].
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
if [[ ${1:-} == --quick ]]; then quick=(--quick); shift; fi
OUT=${OUT:-runs/gpu}
PY=${1:-python3}
mkdir -p "$OUT"
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

has_cuda='import jax, torch; jax.devices("gpu"); assert torch.cuda.is_available()'
if "$PY" -c "$has_cuda" 2>/dev/null; then
    "$PY" - >"$OUT/constraints.txt" <<'EOF'
from importlib import metadata
for name in ("jax", "jaxlib", "torch"):
    print(f"{name}=={metadata.version(name)}")
EOF
    missing=$("$PY" - <<'EOF'
import importlib.util
need = {"flax": "flax>=0.12.6", "optax": "optax>=0.2.3", "keras": "keras>=3.15",
        "equinox": "equinox>=0.12.2", "scipy": "scipy>=1.13"}
print(" ".join(spec for module, spec in need.items() if importlib.util.find_spec(module) is None))
EOF
    )
    if [[ -n $missing ]]; then
        # shellcheck disable=SC2086  # one word per requirement
        "$PY" -m pip install --quiet -c "$OUT/constraints.txt" $missing
    fi
elif [[ $# -gt 0 ]]; then
    echo "$PY has no jax or torch that sees a CUDA GPU" >&2
    exit 1
else
    [[ -x .venv-gpu/bin/python ]] || python3 -m venv .venv-gpu
    PY=.venv-gpu/bin/python
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e ".[test,example,bench]" "jax[cuda12]"
    "$PY" -c "$has_cuda"
fi

device=$("$PY" -c 'import jax; print(jax.devices()[0].device_kind)')
echo "benchmarks on $device with $PY; results in $OUT"
"$PY" -m benchmarks.run ${quick[@]+"${quick[@]}"} --out "$OUT/performance.md" --machine "$device" 2>&1 | tee "$OUT/run.log"
for target in hifigan_v1 melgan; do
    "$PY" -m convtrans.tune "benchmarks.models:${target}_tune_target" 2>&1 | tee "$OUT/tune-$target.txt"
done
