# Sourced by the GPU session scripts (gpu_session.sh, jitvec_gpu.sh, lanesplit_gpu.sh), run from the repository
# root: $OUT made, the carried wheels (.whl/*.whl) installed under /tmp/site, and the paths and
# build cache every session uses.
OUT=${OUT:-/tmp/vyre-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export VYRE_CACHE_DIR=${VYRE_CACHE_DIR:-/tmp/vyre-cache}
