#!/usr/bin/env bash
# The one script to run whenever a GPU is at hand: on one GPU, in under 8 minutes,
#   1. the GPU tests (pytest -m gpu with AIFBENCH_TEST_GPU=1, tests/e2e/test_gpu.py),
#   2. a short acceptance subset (scripts/gpu-check.toml: GEMM bf16/fp8 with burst and the harness
#      A/B interval, triad, pinned host link, small llm_train and llm_infer, telemetry overhead),
#   3. the GEMM cases once more (two consecutive runs: does harness_overhead_pct agree?), sampling
#      telemetry at 100 Hz so the 0.1 s burst window has its own clocks and power,
#   4. validate of both runs against benchmarks/targets/<detected catalog id>.toml where one exists,
# and leaves ONE archive, gpu-check-<UTC stamp>.tar.gz, of the results stores and every log under
# the output directory: the first argument, else $OUT, else the current directory.
#
#   scripts/gpu-check.sh [OUTDIR]             # on a GPU machine, from a checkout
#   scripts/gpu-check.sh --dry-run [OUTDIR]   # anywhere: the plan, the GPU tests collected, no GPU needed
#
# Environment: PYTHON (default python3; PYTHONPATH=src is added), GPU_CHECK_TIMEOUT_S per step.
# Exit: 0 all steps ok; 1 a step failed (the archive still holds everything); 2 no CUDA GPU
# visible (nothing run, nothing written; use --dry-run).
set -u -o pipefail

dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
step_timeout=${GPU_CHECK_TIMEOUT_S:-300}
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"

if [ $dry = 0 ] && ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu-check: no CUDA GPU visible here (torch.cuda.is_available() is False); run it on a GPU machine, or use --dry-run" >&2
    exit 2
fi

out=$(mkdir -p "${1:-${OUT:-.}}" && cd "${1:-${OUT:-.}}" && pwd) || { echo "gpu-check: cannot write to ${1:-${OUT:-.}}" >&2; exit 2; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-$stamp.XXXXXX")
name=gpu-check-$stamp
mkdir -p "$work/$name"
dir=$work/$name
status=0

step() {  # step NAME CMD...: run with a timeout, log to NAME.log, remember a failure
    local n=$1; shift
    echo "== $n: $*" | tee -a "$dir/steps.log"
    (cd "$repo" && timeout "$step_timeout" "$@") >"$dir/$n.log" 2>&1
    local rc=$?
    echo "   exit $rc" | tee -a "$dir/steps.log"
    [ $rc = 0 ] || status=1
    return 0
}

{
    echo "date_utc: $stamp"
    echo "commit: $(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "dirty: $(git -C "$repo" status --porcelain 2>/dev/null | wc -l) changed file(s)"
    "$py" -c 'import torch; print("torch:", torch.__version__, "cuda:", torch.version.cuda)' 2>&1
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,pci.device_id,driver_version,power.limit,power.default_limit,clocks.max.sm --format=csv 2>&1
} >"$dir/environment.txt"
command -v nvidia-smi >/dev/null && nvidia-smi -q >"$dir/nvidia-smi-q.txt" 2>&1

if [ $dry = 1 ]; then
    step plan "$py" -m aifbench run scripts/gpu-check.toml --dry-run
    step gpu-tests-collected env AIFBENCH_TEST_GPU=1 "$py" -m pytest -q -p no:cacheprovider -m gpu --collect-only tests
else
    step hardware "$py" -m aifbench hardware --detect
    step gpu-tests env AIFBENCH_TEST_GPU=1 "$py" -m pytest -q -p no:cacheprovider -m gpu tests \
        --junitxml="$dir/gpu-tests.junit.xml"
    step acceptance "$py" -m aifbench run scripts/gpu-check.toml --results "$dir/results"
    step gemm-again "$py" -m aifbench run scripts/gpu-check.toml --only gemm --results "$dir/results" --telemetry-hz 100
    sku=$("$py" -c 'import torch; from aifbench.hardware import catalog
m = catalog.load().match(name=torch.cuda.get_device_name(0), pci_device_id=None, device="cuda:0")
print(m.entry.id if m.entry else "")' 2>>"$dir/steps.log")
    echo "catalog id: ${sku:-none}" >>"$dir/environment.txt"
    targets=$repo/benchmarks/targets/$sku.toml
    for run in "$dir"/results/*/; do
        [ -d "$run" ] || continue
        id=$(basename "$run")
        step "show-$id" "$py" -m aifbench show "$id" --results "$dir/results" --all
        if [ -n "$sku" ] && [ -f "$targets" ]; then
            step "validate-$id" "$py" -m aifbench validate "$id" --results "$dir/results" --references "$targets" \
                --format markdown
        fi
    done
fi

tar -czf "$out/$name.tar.gz" -C "$work" "$name" && rm -rf "$work"
echo "gpu-check: $( [ $status = 0 ] && echo ok || echo 'a step failed (see steps.log)'): $out/$name.tar.gz"
exit $status
