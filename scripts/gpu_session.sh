#!/usr/bin/env bash
# One complete GPU-machine session (the H100 of the device tool): install the carried wheels,
# report the machine, run the GPU tests, then the CUDA benchmarks. Logs land under $OUT.
#   bash scripts/gpu_session.sh [tests|soak|memcheck|bench|all]
set -u
what=${1:-all}
OUT=${OUT:-/tmp/vyre-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export VYRE_CACHE_DIR=/tmp/vyre-cache
{ nvidia-smi; python3 -c 'import cuda.bindings, numpy; print("cuda-bindings", cuda.bindings.__version__, "numpy", numpy.__version__)'; } > "$OUT/machine.txt" 2>&1
timeout 120 python3 -m vyre_runtime.cli doctor > "$OUT/doctor.txt" 2>&1
if [ "$what" = tests ] || [ "$what" = all ]; then
  timeout 400 python3 -m pytest -q -m gpu -x tests/test_cuda_backend.py tests/test_differential.py > "$OUT/gpu-tests.txt" 2>&1
  echo "gpu tests exit $?" >> "$OUT/gpu-tests.txt"
fi
if [ "$what" = soak ]; then
  VYRE_DIFFERENTIAL_SEEDS=3000 timeout 300 python3 -m pytest -q -m gpu tests/test_cuda_backend.py -k random > "$OUT/soak.txt" 2>&1
  echo "soak exit $?" >> "$OUT/soak.txt"
fi
if [ "$what" = memcheck ]; then
  VYRE_DIFFERENTIAL_SEEDS=40 VYRE_GPU_SHUTDOWN_S=120 timeout 500 \
    compute-sanitizer --tool memcheck --report-api-errors no --print-limit 20 \
    python3 -m pytest -q -m gpu tests/test_cuda_backend.py \
    > "$OUT/memcheck.txt" 2>&1
  echo "memcheck exit $?" >> "$OUT/memcheck.txt"
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  timeout 120 python3 bench/roundtrip_breakdown.py --backend cuda > "$OUT/breakdown.txt" 2>&1
  timeout 300 python3 bench/dispatch.py --backend cuda > "$OUT/dispatch-cuda.txt" 2>&1
  cp bench/results/dispatch-cuda.json "$OUT/" 2>/dev/null
fi
tail -n 30 "$OUT"/*.txt
