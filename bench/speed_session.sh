#!/usr/bin/env bash
# Issue 8 speed/capacity runs on one device call: foldcp's full inference (bench/cp_model.py,
# no serial) and stock Boltz-2 (../shared/bench, carried in .anchor/) side by side.
# Usage (GPU machine, repo root, after bench/gpu_session.sh installed the wheels):
#   FOLDCP="1x1:1000 1x2:2500" STOCK="1000" STEPS=200 RECYCLING=3 SAMPLES=1 \
#     bash bench/speed_session.sh $OUT
set -u
out=${1:-bench/out}; mkdir -p "$out"
site=/tmp/foldcp-site
export PYTHONPATH="$PWD:$site" TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false PYTHONUNBUFFERED=1
started=$(date +%s)
budget=${BUDGET:-560}
left() { echo $(( budget - ($(date +%s) - started) )); }
for job in ${FOLDCP:-}; do
  g=${job%%:*}; n=${job#*:}; t=$(left); [ "$t" -lt 30 ] && { echo "skip foldcp $job: budget"; continue; }
  echo "== foldcp grid $g N=$n (timeout $t s)"
  timeout -k 5 "$t" torchrun --nproc-per-node $(( ${g%x*} * ${g#*x} )) bench/cp_model.py --inputs .payload/cp \
    --tokens "$n" --recycling "${RECYCLING:-3}" --steps "${STEPS:-200}" --samples "${SAMPLES:-1}" --no-serial \
    --out "$out/speed_foldcp.jsonl" 2>&1 | grep -v "^W1127\|OMP_NUM_THREADS\|^\*\*\*\*" | tail -n 8
done
if [ -n "${STOCK:-}" ] && [ -d .anchor ]; then
  t=$(left)
  OUT="$out" BUDGET=$(( t > 40 ? t - 10 : 30 )) MODES=full KERNELS=on EXTRA="${STOCK_EXTRA:-}" \
    bash .anchor/run_stock_sweep.sh $STOCK 2>&1 | tail -n 12
fi
