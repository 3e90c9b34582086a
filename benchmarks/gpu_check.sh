#!/usr/bin/env bash
# The one-call GPU check of issue 20, for a bare NVIDIA H200 machine lent through the device
# tool: at most 9 minutes of command, no network and no registry there (its python3 already
# has torch with CUDA, torchvision, lightning, numpy, scikit-learn, pytest, matplotlib).
#
# Prepare, once, HERE, in the checkout the device tool sends (the session's own checkout):
#
#     bash benchmarks/gpu_carry.sh      # fills the ignored .carry/ (reference wheel, Fashion-MNIST)
#
# Call (the device tool's run):
#
#     command "bash benchmarks/gpu_check.sh"   carry [".carry"]   timeout_s 560
#
# In one run, each part as its own process under its own timeout (a part that hangs or
# fails is logged and costs only its time; the parts after it still run):
#   a. info: nvidia-smi, torch, CUDA, cuDNN; the carried tsimcne wheel installed offline
#      into a temporary folder (pip --no-index --no-deps), on PYTHONPATH for (d) only;
#   c. timing: seconds per epoch of ResNet18 on 60,000 random 32x32 RGB images at batch 512
#      (paper's settings, bf16 "auto", store on the GPU) through simcne.train.train_stage
#      (cudnn.benchmark as the library sets it, then the other way), and through
#      TSimCNE.fit; images/s, TFLOP/s against
#      a bf16 matmul rate measured here, peak GPU memory;
#   b. tests: tests/test_cuda.py (skipped, saying so, where the tree lacks it), then the
#      whole suite besides it, with CUDA there (tests that pin the CPU run on the CPU; the
#      others take the GPU), SIMCNE_CPU_BF16 unset, beside the map (e);
#   d. reference: tsimcne 0.3.12 on the same GPU and images, seconds per epoch, for a ratio;
#   e. map: TSimCNE on all 70,000 Fashion-MNIST images (from .carry/fashion-mnist) with a
#      schedule planned from (c)'s epoch time for the time left (at most
#      $SIMCNE_GPU_CHECK_MAP_SECONDS, default 240 s, of training); 2-D kNN against t-SNE's 0.841
#      (a constant measured before, named so in the report: the machine has no openTSNE); a
#      map that diverges is reported as DIVERGED, with its stage, epoch and rate;
#   f. report: PASS/MISS against the targets (<= 1.5 s an epoch, >= 10x the reference, a map
#      above 0.841).
# Order and caps: a (60 s), c (100), b: test_cuda.py (120), d (100), then e and the rest of b
# at the same time (the map on the GPU and one CPU core, the suite on 8 other cores in 8
# pytest-xdist workers), both until what is left of the 520 s less 25 for f; f. Each cap
# shrinks to the time left, so the command ends within 520 s plus the kill margins (10 s a
# part): at most about 9 minutes with the device tool's start. pytest-timeout and
# pytest-xdist are used where present (the H200 image has both).
# Files under $OUT (5; at most 8 come back): gpu_check.log (everything printed),
# results.json (every figure), gpu_check.md (a block for BENCHMARKS.md:
# `python benchmarks/gpu_check.py record gpu_check.md` puts it there), fmnist70k_map.png,
# fmnist70k_embedding.npy. The parts' own files stay in a temporary folder.
#
# Dry run (any machine, on its CPU even where CUDA is: CUDA_VISIBLE_DEVICES is emptied; about
# 30 s): the same script at tiny sizes (256 images, resnet_tiny at 8x8, the map's recipe with
# ResNet18 on 256 images at 8x8, the tests collected, not run; one thread unless
# OMP_NUM_THREADS says otherwise; SIMCNE_CPU_BF16 kept as the caller set it), the reference
# and the CUDA-only figures skipped, saying so; $OUT defaults to a new temporary folder:
#
#     bash benchmarks/gpu_check.sh --dry-run         # or SIMCNE_GPU_CHECK_DRY=1
#
# Environment: OUT (results folder), PYTHON (default python3), SIMCNE_GPU_CHECK_CARRY
# (default <repo>/.carry), SIMCNE_GPU_CHECK_DEADLINE (seconds for the whole run, default
# 520), SIMCNE_GPU_CHECK_MAP_SECONDS (most training seconds for the map, default 240),
# SIMCNE_GPU_CHECK_MAP_PARAMS (JSON of TSimCNE parameters replacing the map's),
# SIMCNE_GPU_CHECK_TESTS (the test files beside the map, by name without .py; default
# all of tests/ but test_cuda),
# SIMCNE_GPU_CHECK_KEEP=1 (keep the parts' temporary folder, named in the log),
# SIMCNE_GPU_CHECK_COMMIT (the tree's commit, for the report: the device gets no .git; e.g.
# command "SIMCNE_GPU_CHECK_COMMIT=0f6395a bash benchmarks/gpu_check.sh").
# Exit status: 0 when every part ran (figures that miss a target included), 1 when a part
# failed or timed out, 2 for a bad argument.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

DRY=${SIMCNE_GPU_CHECK_DRY:-0}
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1': expected --dry-run or --help" >&2; exit 2 ;;
  esac
  shift
done
[ "$DRY" = 0 ] || DRY=1

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
OUT=${OUT:-}
[ -n "$OUT" ] || OUT=$(mktemp -d "${TMPDIR:-/tmp}/simcne-gpu-check.XXXXXX")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/simcne-gpu-work.XXXXXX")   # the parts' own files
[ "${SIMCNE_GPU_CHECK_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
CARRY=${SIMCNE_GPU_CHECK_CARRY:-$ROOT/.carry}
DEADLINE=${SIMCNE_GPU_CHECK_DEADLINE:-520}
MAP_MAX=${SIMCNE_GPU_CHECK_MAP_SECONDS:-240}
MAP_PARAMS=${SIMCNE_GPU_CHECK_MAP_PARAMS:-}
REPORT_RESERVE=25   # seconds kept for the report at the end
KILL_AFTER=10       # a part that ignores its timeout's TERM is killed this much later

export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg MPLCONFIGDIR="$WORK/mpl"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# on the GPU machine the tests and timings run as they would for a user there; a dry run
# keeps the caller's setting (the test suite's 0: fp32 on CPU, quicker to start)
[ "$DRY" = 1 ] || unset SIMCNE_CPU_BF16
# a dry run is small and its machine may be shared: one thread, unless the caller says more;
# and on the CPU, also on a machine with a GPU (it checks the script, not the GPU)
[ "$DRY" = 0 ] || export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} CUDA_VISIBLE_DEVICES=""

COMMON=(--work "$WORK" --out "$OUT")
[ "$DRY" = 0 ] || COMMON+=(--dry-run)
DRIVER=("$PY" "$ROOT/benchmarks/gpu_check.py")

say() { echo "[gpu_check] $*"; }

# part NAME CAP COMMAND...: run COMMAND under `timeout` (CAP seconds, or less where the
# deadline is nearer), its output to the log and to $WORK/NAME.out; one line in
# $WORK/parts.tsv (name, status, exit code, seconds, note). Never fails the script.
part() {
  local name=$1 cap=$2 reserve=$REPORT_RESERVE
  shift 2
  [ "$name" != report ] || reserve=0
  local left=$(( DEADLINE - SECONDS - reserve - KILL_AFTER ))
  local t=$(( cap < left ? cap : left ))
  if [ "$t" -lt 10 ]; then
    say "== $name: skipped, ${left} s left before the deadline of ${DEADLINE} s"
    printf '%s\tskipped\t-\t0\tno time left\n' "$name" >>"$WORK/parts.tsv"
    return 0
  fi
  say "== $name (timeout ${t} s, at ${SECONDS} s of ${DEADLINE}) =="
  local t0=$SECONDS rc status
  set +e
  if [ "${QUIET_PART:-0}" = 1 ]; then  # beside another part: its output to its file only
    timeout -k "$KILL_AFTER" "$t" "$@" >"$WORK/$name.out" 2>&1
    rc=$?
    tail -n 25 "$WORK/$name.out"
  else
    timeout -k "$KILL_AFTER" "$t" "$@" 2>&1 | tee "$WORK/$name.out"
    rc=${PIPESTATUS[0]}
  fi
  set -e
  case $rc in
    0) status=ok ;;
    124|137) status="timed out" ;;
    *) status=failed ;;
  esac
  [ "$status" = ok ] || touch "$WORK/failed"
  say "== $name: $status (exit $rc) in $(( SECONDS - t0 )) s"
  printf '%s\t%s\t%s\t%s\t\n' "$name" "$status" "$rc" "$(( SECONDS - t0 ))" >>"$WORK/parts.tsv"
}

skip() {  # skip NAME REASON
  say "== $1: skipped: $2"
  printf '%s\tskipped\t-\t0\t%s\n' "$1" "$2" >>"$WORK/parts.tsv"
}

main() {
  say "$(date -u '+%Y-%m-%d %H:%M:%S UTC'): bash benchmarks/gpu_check.sh ${ARGS[*]:-}" \
      "(dry run: $DRY) in $ROOT; results in $OUT, the parts' files in $WORK; deadline" \
      "${DEADLINE} s"

  # a. the machine, and the reference wheel installed offline
  timeout 20 nvidia-smi -L 2>&1 || say "nvidia-smi: not available"
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm \
    --format=csv 2>&1 || true
  part info 60 "${DRIVER[@]}" info "${COMMON[@]}"
  local site="$WORK/site" wheels
  wheels=$(find "$CARRY/whl" -maxdepth 1 -name '*.whl' 2>/dev/null | sort || true)
  if [ -n "$wheels" ]; then
    # shellcheck disable=SC2086  # one path per line, no spaces in the names
    part wheel 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --disable-pip-version-check --target "$site" $wheels
  else
    skip wheel "no wheel in $CARRY/whl (run benchmarks/gpu_carry.sh here and carry .carry)"
  fi

  # c. seconds per epoch (first: the map's plan reads it)
  part timing 100 "${DRIVER[@]}" timing "${COMMON[@]}"

  # b. the GPU's own tests (tests/test_cuda.py), on CUDA
  local pt=(-q -rfEs -p no:cacheprovider --durations=5) pytest=("$PY" -m pytest)
  local pt_cuda pt_cpu
  if [ "$DRY" = 1 ]; then
    pt+=(--collect-only -q)
    say "dry run: the tests are collected, not run (the suite itself runs this dry run)"
    # without CUDA, test_cuda.py skips itself whole: pytest's exit 5 (no tests) is no
    # failure here, as it would be on the GPU machine
    pytest=(bash -c '"$@"; rc=$?; if [ "$rc" = 5 ]; then
      echo "[gpu_check] dry run: pytest collected no test here (exit 5), taken as 0"; exit 0; fi
      exit "$rc"' _ "${pytest[@]}")
  fi
  pt_cuda=("${pt[@]}")
  pt_cpu=("${pt[@]}")
  if [ "$DRY" = 0 ] && "$PY" -c "import pytest_timeout" 2>/dev/null; then
    pt_cuda+=(--timeout=100)   # a cold torch.compile is the slowest test
    pt_cpu+=(--timeout=120)
  fi
  if [ "$DRY" = 0 ] && "$PY" -c "import xdist" 2>/dev/null; then
    pt_cuda+=(-n 4)            # several processes on the one GPU, the compile test beside the rest
    pt_cpu+=(-n 8)             # the suite beside the map: 8 workers of 1 thread (16 cores)
  fi
  if [ -f tests/test_cuda.py ]; then
    part test_cuda 120 "${pytest[@]}" "${pt_cuda[@]}" tests/test_cuda.py
  else
    skip test_cuda "tests/test_cuda.py is absent in this tree"
  fi

  # d. the reference on the same GPU
  if [ "$DRY" = 1 ]; then
    skip reference "dry run: the reference (tsimcne 0.3.12 on a GPU) is not timed"
  elif [ ! -d "$site/tsimcne" ]; then
    skip reference "the tsimcne wheel is not installed (see the wheel part)"
  else
    part reference 100 env PYTHONPATH="$site:$PYTHONPATH" "${DRIVER[@]}" reference \
      "${COMMON[@]}" --budget 60
  fi

  # e. the 70,000-image map with what time is left, and beside it (b2) the rest of the test
  # suite on the CPU cores the map leaves (the tests that do not pin the CPU take the GPU)
  local left=$(( DEADLINE - SECONDS - REPORT_RESERVE - KILL_AFTER ))
  local budget=$(( left - 75 ))   # start-up, data, three embeddings, kNN, figure
  [ "$budget" -le "$MAP_MAX" ] || budget=$MAP_MAX
  [ "$DRY" = 0 ] || budget=20   # the dry run's map has a fixed, tiny schedule
  local suite=() f
  if [ -n "${SIMCNE_GPU_CHECK_TESTS:-}" ]; then
    for f in $SIMCNE_GPU_CHECK_TESTS; do
      [ ! -f "tests/$f.py" ] || suite+=("tests/$f.py")
    done
  else
    for f in tests/test_*.py; do
      [ "$f" = tests/test_cuda.py ] || suite+=("$f")
    done
  fi
  local suite_pid=""
  if [ ${#suite[@]} -gt 0 ]; then
    QUIET_PART=1 part tests_suite "$left" env OMP_NUM_THREADS=1 "${pytest[@]}" "${pt_cpu[@]}" \
      "${suite[@]}" &
    suite_pid=$!
  else
    skip tests_suite "no test file to run"
  fi
  local map_args=(--budget "$budget" --time-left "$left" --data "$CARRY/fashion-mnist")
  [ -z "$MAP_PARAMS" ] || map_args+=(--params "$MAP_PARAMS")
  if [ "$budget" -lt 20 ]; then
    skip map "${left} s left: too little for a map"
  else
    part map "$left" "${DRIVER[@]}" map "${COMMON[@]}" "${map_args[@]}"
  fi
  if [ -n "$suite_pid" ]; then
    wait "$suite_pid" || true
  fi

  # f. the report
  part report 60 "${DRIVER[@]}" report "${COMMON[@]}" --elapsed "$SECONDS" \
    --command "bash benchmarks/gpu_check.sh${ARGS[*]:+ ${ARGS[*]}}   # device tool: carry [\".carry\"], timeout_s 560"
  say "files in $OUT:"
  ls -l "$OUT"
  if [ -e "$WORK/failed" ]; then
    say "done in ${SECONDS} s; some parts failed or timed out (see above)"
    return 1
  fi
  say "done in ${SECONDS} s"
}

set +e
main 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
