#!/usr/bin/env bash
# The issue-8 target runs still open after the seventh session, as device calls on a 4-GPU
# host (nvidia-h100-x4 or nvidia-h200-x4), each under the 10-minute limit. Lanes of one call
# run side by side on separate GPUs. Limits include model build and feature loading (~40 s
# at 3,605 tokens, ~100 s at 8,500).
#   PART=a  3,605 tokens × 5 samples, full default, 1×2 with TF32 sampling (GPUs 0,1; target
#           ≤ 150 s) ‖ capacity: 8,605 tokens on 1×2 under an H100's 79.18 GiB (GPUs 2,3;
#           `cp_model.py --gpu-memory-gib`), then one PairformerLayer profiled (GPU 2)
#   PART=b  speed and CP scaling, full default with TF32 sampling: 2,500 tokens on foldcp 1×1
#           (GPU 0) ‖ stock (GPU 1, needs .anchor) ‖ foldcp 1×2 (GPUs 2,3), then 1,000 the same
# Usage (GPU machine, repo root). Carry .payload/whl .payload/cp .git-commit (+ .anchor for b);
# features_8605.pt = bench/join_inputs.py of features_3605 + 2500 + 2500:
#   PART=a bash bench/targets_session.sh $OUT
set -u
out=${1:-bench/out}; mkdir -p "$out"; t0=$(date +%s)
site=/tmp/foldcp-site
[ -d "$site/boltz" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .payload/whl/*.whl
export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1 TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
echo "commit $(cat .git-commit 2>/dev/null || echo unknown) part ${PART:?set PART=a or b}"; nvidia-smi -L
full="--recycling 3 --steps 200 --sampling-precision tf32"
source bench/cp_run.sh
run() { cp_run "$1" "$2" "$3" "$4" --no-serial "${@:5}"; }  # GPUS PORT LIMIT_S NAME ARGS...
stock() { # GPU N LIMIT_S: stock Boltz-2 with its cuEquivariance kernels (../shared/bench)
  CUDA_VISIBLE_DEVICES=$1 SITE=/tmp/site-stock OUT="$out/stock" BUDGET=$3 TIMEOUT=$3 MODES=full KERNELS=on \
    bash .anchor/run_stock_sweep.sh "$2" 2>&1 | tail -n 4
}
case $PART in
  a) ( run 0,1 29701 560 speed_foldcp --tokens 3605 --samples 5 $full ) > "$out/lane_3605.txt" 2>&1 &
     ( CHECK_FINITE=1 run 2,3 29702 380 capacity --tokens 8605 --pairformer-blocks 2 --recycling 0 \
         --steps 2 --gpu-memory-gib 79.18
       CUDA_VISIBLE_DEVICES=2 timeout -k 5 $(( 570 - ($(date +%s) - t0) )) python3 bench/pairformer_layer.py \
         --tokens 1024 2048 --repeat 3 --profile --out "$out/layer.jsonl" 2>&1 | grep -v "^W1\|^\s*$" | tail -n 60
     ) > "$out/lane_8605.txt" 2>&1 &
     wait; cat "$out"/lane_*.txt ;;
  b) for n in 2500 1000; do
       left=$(( (570 - ($(date +%s) - t0)) / (n == 2500 ? 2 : 1) )); [ "$n" = 2500 ] && left=$(( left + 40 ))
       ( run 0 29701 "$left" speed_foldcp --tokens $n $full ) > "$out/lane_1x1_$n.txt" 2>&1 &
       ( stock 1 $n "$left" ) > "$out/lane_stock_$n.txt" 2>&1 &
       ( run 2,3 29702 "$left" speed_foldcp --tokens $n $full ) > "$out/lane_1x2_$n.txt" 2>&1 &
       wait; tail -n 12 "$out"/lane_*_$n.txt
     done ;;
  *) echo "PART must be a or b" >&2; exit 2 ;;
esac
