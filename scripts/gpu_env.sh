# Sourced by the GPU-machine scripts (gpu_session.sh, lanesplit_gpu.sh): the carried wheels
# (.whl/*.whl) installed into /tmp/site, this checkout first on PYTHONPATH, the build cache in
# /tmp, unbuffered output, and $OUT (default /tmp/vyre-out) created.
OUT=${OUT:-/tmp/vyre-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export VYRE_CACHE_DIR=/tmp/vyre-cache
