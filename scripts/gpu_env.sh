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

# step NAME LIMIT_S COMMAND... (for the session scripts that set $budget and $began): runs COMMAND
# with a timeout unless the budget is spent; logs to $OUT/NAME.txt, its exit to $OUT/summary.txt
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - began)))
  if [ "$left" -le 20 ]; then
    echo "SKIPPED (budget) $name" | tee -a "$OUT/summary.txt"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}
