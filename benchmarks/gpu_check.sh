#!/usr/bin/env bash
# GPU check: the CUDA tests, the operator and attack benchmarks on CUDA at 512 x 512, and
# configs/paper_ct.yaml end to end on 16 slices for a few epochs (attack and report
# included), then one summary. Sized for one H100/H200 within 8 minutes.
#
#   PYTHON=/path/to/python-with-cuda-torch benchmarks/gpu_check.sh [CLINICAL_FOLDER]
#
# PYTHON defaults to .venv/bin/python; it needs a CUDA build of torch and the project's
# dependencies (pip install -e . with that torch). CLINICAL_FOLDER defaults to
# $CTROBUST_SHARED_DATA/abdomen_ct_pancreas. Logs go to ${OUT:-gpu_check_out}/.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
FOLDER="${1:-${CTROBUST_SHARED_DATA:-../shared/data}/abdomen_ct_pancreas}"
LOGS="${OUT:-gpu_check_out}"
mkdir -p "$LOGS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: $PYTHON sees no CUDA device (torch.cuda.is_available() is False)" >&2
  exit 2
fi

declare -A status seconds
step() {  # step NAME COMMAND...: run, log to $LOGS/NAME.log, remember status and time
  local name="$1"; shift
  local start=$SECONDS
  echo "== $name: $*"
  "$@" >"$LOGS/$name.log" 2>&1
  status[$name]=$?
  seconds[$name]=$((SECONDS - start))
  tail -n 15 "$LOGS/$name.log"
}

step cuda_tests "$PYTHON" -m pytest -q -m cuda tests
step bench_operator "$PYTHON" benchmarks/bench_operator.py --n 512 --views 143 --batch 8
step bench_attack "$PYTHON" benchmarks/bench_attack.py --config configs/paper_ct.yaml \
  --device cuda --breakdown --set data.n=512
step paper_ct "$PYTHON" -m pipelines.cli run configs/paper_ct.yaml --out "$LOGS/paper_ct_run" \
  --set device=cuda --set "data.folder=$FOLDER" --set data.slices_per_series=16 \
  --set train.epochs=3 \
  --set "train.schemes=[{name: plain, scheme: plain}, {name: adversarial, scheme: adversarial,
         adversarial: {eps: 0.02, relative: true, warmup_epochs: 1, f_lr: 1.0e-4}}]" \
  --set attack.max_slices=4 --set instability.max_slices=1

echo
echo "== gpu_check summary ($("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))'))"
failed=0
for name in cuda_tests bench_operator bench_attack paper_ct; do
  verdict=ok; [ "${status[$name]}" = 0 ] || { verdict="FAILED (exit ${status[$name]})"; failed=1; }
  printf '  %-15s %-20s %5ss  log: %s\n' "$name" "$verdict" "${seconds[$name]}" "$LOGS/$name.log"
done
grep -h -E "ratio|speed-up|per slice|fall" "$LOGS/bench_operator.log" "$LOGS/bench_attack.log" \
  | sed 's/^/  /' | head -n 12
[ -f "$LOGS/paper_ct_run/metrics.json" ] && "$PYTHON" -m pipelines.cli report "$LOGS/paper_ct_run" \
  >/dev/null 2>&1 && echo "  report: $LOGS/paper_ct_run/report/index.html"
exit $failed
