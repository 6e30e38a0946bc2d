#!/usr/bin/env bash
# One device call on a 4-GPU host (issues 8 and 11): NCCL equivalence on 2×2 / 1×4 / 4×1,
# the 3,605-token 4-chain complex with 5 samples on 2×2, then side by side on separate GPUs
# of the same host: the same complex on 1×2 (GPUs 0,1), foldcp on one GPU (GPU 2) and stock
# Boltz-2 with its cuEquivariance kernels (GPU 3, ../shared/bench carried in .anchor/).
# Full default inference everywhere: 3 recycles, 200 steps. Usage: bash bench/session_4gpu.sh $OUT
set -u
out=${1:-bench/out}; mkdir -p "$out"
PARTS=equiv STEP_TIMEOUT=120 bash bench/gpu_session.sh .payload/whl "$out" 2>&1 | grep "all_ranks_ok\|Error\|error" | cut -c1-160
export PYTHONPATH="$PWD:/tmp/foldcp-site" TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false PYTHONUNBUFFERED=1
quiet() { grep -v "^W1127\|OMP_NUM_THREADS\|^\*\*\*\*" | tail -n 4; }
fold() { # GPUS GRID N SAMPLES TIMEOUT PORT
  CUDA_VISIBLE_DEVICES=$1 timeout -k 5 "$5" torchrun --master-port "$6" --nproc-per-node $(( ${2%x*} * ${2#*x} )) \
    bench/cp_model.py --inputs .payload/cp --tokens "$3" --recycling 3 --steps 200 --samples "$4" --no-serial \
    --out "$out/speed_foldcp.jsonl" 2>&1 | quiet
}
echo "== 2x2 3605 x5"; fold 0,1,2,3 2x2 3605 5 ${T22:-200} 29601
echo "== side by side"
( fold 0,1 1x2 3605 5 ${T12:-290} 29602 ) > "$out/log_1x2.txt" 2>&1 &
( fold 2 1x1 1000 1 100 29603; fold 2 1x1 2500 1 ${T11:-180} 29604 ) > "$out/log_1x1.txt" 2>&1 &
( CUDA_VISIBLE_DEVICES=3 OUT="$out" BUDGET=${TS:-285} MODES=full KERNELS=on bash .anchor/run_stock_sweep.sh 1000 2500 ) > "$out/log_stock.txt" 2>&1 &
wait
tail -n 4 "$out"/log_*.txt
