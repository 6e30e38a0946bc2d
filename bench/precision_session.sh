#!/usr/bin/env bash
# model.sampling_precision on the GPU (issue 8, speed): one device call on a 2-GPU host.
#   lane GPU 0: 1,000 tokens, full default inference, serial Boltz-2 (float32 sampling) once,
#               then foldcp 1×1 with float32, tf32 and bf16 sampling (one row each: time per
#               phase and the differences from the float32 serial run); then 2,500 tokens with
#               the modes in FAST (default bf16), no serial
#   lane GPU 1: stock Boltz-2 with its cuEquivariance kernels (../shared/bench, in .anchor/),
#               full default at 1,000 and 2,500 tokens
#   then 1×2:   1,000 tokens, serial and CP both under bf16 and tf32 (CP = serial per mode)
# Usage (GPU machine, repo root; carry .payload with whl/ or tp_whl/ and cp/, .anchor, .git-commit):
#   bash bench/precision_session.sh .payload/tp_whl $OUT
set -u
wheels=${1:-.payload/whl}; out=${2:-bench/out}; mkdir -p "$out"
site=/tmp/foldcp-site; t0=$(date +%s)
[ -d "$site/boltz" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1 TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false
echo "commit $(cat .git-commit 2>/dev/null || echo unknown); install $(( $(date +%s) - t0 )) s"
full="--recycling 3 --steps 200"
budget=${BUDGET:-550}
left() { echo $(( budget - ($(date +%s) - t0) )); }
source bench/cp_run.sh
run() { cp_run "$1" "$2" "$3" "$4" "${@:5}"; }  # GPUS PORT LIMIT_S NAME ARGS...
( run 0 29701 240 precision_1x1 --tokens 1000 $full --sampling-precision float32 tf32 bf16
  run 0 29703 $(( $(left) - 120 )) precision_1x1 --tokens 2500 $full --no-serial \
      --sampling-precision ${FAST:-bf16} ) > "$out/lane_foldcp.txt" 2>&1 &
( CUDA_VISIBLE_DEVICES=1 SITE=/tmp/site-stock OUT="$out/stock" BUDGET=$(( $(left) - 130 )) \
    TIMEOUT=300 MODES=full KERNELS=on bash .anchor/run_stock_sweep.sh 1000 2500 2>&1 | tail -n 6 ) \
  > "$out/lane_stock.txt" 2>&1 &
wait; cat "$out"/lane_*.txt
for mode in bf16 tf32; do
  t=$(left); [ "$t" -lt 50 ] && { echo "skip 1x2 $mode: $t s left"; continue; }
  run 0,1 29705 $(( t < 110 ? t : 110 )) precision_1x2 --tokens 1000 --recycling 1 --steps 50 \
      --sampling-precision $mode --serial-sampling-precision $mode
done
