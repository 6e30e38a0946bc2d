#!/usr/bin/env bash
# The issue-8 / issue-11 target runs still open after the sixth session, as three device calls
# on a 4-GPU host (nvidia-h100-x4), each under the 10-minute limit. Lanes of one call run side
# by side on separate GPUs. Limits include model build and feature loading (~40 s at 3,605
# tokens, ~100 s at 8,500–12,000: the sixth session's lanes were cut for not counting them).
#   PART=a  3,605 tokens × 5 samples, full default, on 2×2           (target ≤ 75 s)
#   PART=b  3,605 × 5 on 1×2 (GPUs 0,1; target ≤ 150 s) ‖ 8,500 on 1×2 capacity probe (GPUs 2,3)
#   PART=c  2,500 full default: foldcp 1×1 (GPU 0) ‖ stock (GPU 1, needs .anchor) ‖ foldcp 1×2
#           (GPUs 2,3), then 2,500 on 2×2 (per-GPU memory at 1, 2 and 4 GPUs, same N)
# Usage (GPU machine, repo root; carry .payload with whl/ and cp/, .git-commit, .anchor for c):
#   PART=a bash bench/targets_session.sh .payload/whl $OUT
set -u
wheels=${1:-.payload/whl}; out=${2:-bench/out}; mkdir -p "$out"
site=/tmp/foldcp-site
[ -d "$site/boltz" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1 TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
echo "commit $(cat .git-commit 2>/dev/null || echo unknown) part ${PART:?set PART=a, b or c}"
full="--recycling 3 --steps 200"
source bench/cp_run.sh
run() { cp_run "$1" "$2" "$3" "$4" --no-serial "${@:5}"; }  # GPUS PORT LIMIT_S NAME ARGS...
case $PART in
  a) run 0,1,2,3 29701 560 speed_foldcp --tokens 3605 --samples 5 $full ;;
  b) ( run 0,1 29701 560 speed_foldcp --tokens 3605 --samples 5 $full ) > "$out/lane_3605.txt" 2>&1 &
     ( CHECK_FINITE=1 run 2,3 29702 560 capacity --tokens 8500 --pairformer-blocks 2 --recycling 0 --steps 2 ) \
       > "$out/lane_8500.txt" 2>&1 &
     wait; tail -n 20 "$out"/lane_*.txt ;;
  c) ( run 0 29701 260 speed_foldcp --tokens 2500 $full ) > "$out/lane_1x1.txt" 2>&1 &
     ( CUDA_VISIBLE_DEVICES=1 SITE=/tmp/site-stock OUT="$out/stock" BUDGET=280 TIMEOUT=280 MODES=full KERNELS=on \
         bash .anchor/run_stock_sweep.sh 2500 2>&1 | tail -n 4 ) > "$out/lane_stock.txt" 2>&1 &
     ( run 2,3 29702 260 speed_foldcp --tokens 2500 $full ) > "$out/lane_1x2.txt" 2>&1 &
     wait; tail -n 12 "$out"/lane_*.txt
     run 0,1,2,3 29703 250 speed_foldcp --tokens 2500 $full ;;
  *) echo "PART must be a, b or c" >&2; exit 2 ;;
esac
