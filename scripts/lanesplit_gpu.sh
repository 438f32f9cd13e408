#!/usr/bin/env bash
# Lane split on the GPU machine, in one command (under ~560 s): the lane-split GPU tests with the
# split on and off (LANE_SPLIT=0u), then the A/B benchmarks: bench/ingest.py (4 GiB warm, the
# default 16 MiB x 96 arena and a small 4 MiB x 16 one) and bench/fused.py, each with the define
# on and off, then, time allowing, the older GPU tests the split touches (the default threshold)
# and main's GPU tests that meet it since the merge (JIT speculative loop trips over split runs,
# the watcher). Logs under $OUT; summary.txt gathers the GB/s and ratio lines.
#   OUT=$OUT timeout 590 bash scripts/lanesplit_gpu.sh
# Knobs: LANESPLIT_BUDGET_S (540: later steps are skipped past it), LANESPLIT_LANES (4096: lanes
# of the benchmark runs; 256 lanes are one batch, which no block can share).
set -u
. "$(dirname "$0")/gpu_env.sh"
budget=${LANESPLIT_BUDGET_S:-540}
lanes=${LANESPLIT_LANES:-4096}
began=$SECONDS
OFF="LANE_SPLIT=0u"

{ nvidia-smi; python3 -c 'import cuda.bindings, numpy; print("cuda-bindings", cuda.bindings.__version__, "numpy", numpy.__version__)'; } > "$OUT/machine.txt" 2>&1
echo "commit ${VYRE_BENCH_COMMIT:-unknown}, lanes $lanes" > "$OUT/summary.txt"

# correctness first: split on (every run of >= 2 batches splits: the test module sets
# LANE_SPLIT_MIN_BYTES=0u), then off (the same results, nothing split)
step tests-split-on 170 python3 -m pytest -q -m gpu tests/test_cuda_lanesplit.py
VYRE_MEGAKERNEL_DEFINES=$OFF VYRE_LANESPLIT_SEEDS=40 \
  step tests-split-off 80 python3 -m pytest -q -m gpu tests/test_cuda_lanesplit.py -k "random or lowest or records or pause"

# A/B: the 4 GiB file is written once (bench/ingest.py keeps it), then read warm by each row
INGEST="python3 bench/ingest.py --backend cuda --size 4GiB --dir /tmp/vyre-bench --consumers histogram,checksum --lanes $lanes"
step ingest-on-default 120 $INGEST  # (writes the file first)
step ingest-on-small-arena 50 $INGEST --chunk-size 4MiB --chunks 16
VYRE_MEGAKERNEL_DEFINES=$OFF step ingest-off-default 60 $INGEST
VYRE_MEGAKERNEL_DEFINES=$OFF step ingest-off-small-arena 50 $INGEST --chunk-size 4MiB --chunks 16
FUSED="python3 bench/fused.py --size 512MiB --stream-size 1GiB --repeats 2 --lanes $lanes --dir /tmp/vyre-bench"
step fused-on 60 $FUSED
VYRE_MEGAKERNEL_DEFINES=$OFF step fused-off 60 $FUSED

# the older GPU tests whose runs now split at the default threshold (filter_compact's 16384
# lanes over 300 kB, fused members, JIT'd examples), then one batch of lanes (256, nothing to split)
VYRE_DIFFERENTIAL_SEEDS=100 VYRE_FUSED_SEEDS=20 step tests-older 120 python3 -m pytest -q -m gpu \
  tests/test_cuda_backend.py tests/test_cuda_fused.py tests/test_cuda_relaunch.py -k "not bursts"
# main's since the merge: loop loads JIT'd as speculative trips (runs of up to 4 batches over
# 100 kB: split at the default threshold), and the watched channels (block 0, beside the split)
step tests-merged 90 python3 -m pytest -q -m gpu tests/test_cuda_jit.py tests/test_cuda_channel_watch.py \
  -k "loop_loads or watched"
step ingest-on-256-lanes 50 python3 bench/ingest.py --backend cuda --size 4GiB --dir /tmp/vyre-bench \
  --consumers histogram,checksum --lanes 256

{
  echo "== rates"
  grep -H -E "GB/s|fused / 1 program|passed|failed|error" "$OUT"/ingest-*.txt "$OUT"/fused-*.txt "$OUT"/tests-*.txt 2>/dev/null
} >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
