#!/usr/bin/env bash
# One device call: the capacity probes of issues 8 and 11 at the sizes where a GPU holds 36 M
# pairs (6,000 tokens on 1 GPU, 8,500 on 1×2, 12,000 on 2×2), each grid on its own GPUs and
# side by side where the machine has 4. Every stage at full size with 2 of the 64 Pairformer
# blocks (each block has the same peak), CHECK_FINITE on, out-of-memory recorded as a row.
# Inputs: .payload/cp/features_{6000,8500,12000}.pt (bench/cp_inputs.py + bench/join_inputs.py).
# Usage (GPU machine, repo root): bash bench/capacity_session.sh WHEELS OUT
set -u
wheels=${1:-.payload/whl}; out=${2:-bench/out}; mkdir -p "$out"
site=/tmp/foldcp-site
[ -d "$site/boltz" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1 CHECK_FINITE=1 TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
echo "commit $(cat .git-commit 2>/dev/null || echo unknown)"
probe() { # GPUS GRID TOKENS TIMEOUT PORT
  CUDA_VISIBLE_DEVICES=$1 timeout -k 5 "$4" torchrun --master-port "$5" \
    --nproc-per-node $(( ${2%x*} * ${2#*x} )) bench/cp_model.py --inputs .payload/cp --tokens "$3" \
    --pairformer-blocks 2 --recycling 0 --steps 2 --no-serial --out "$out/capacity.jsonl" 2>&1 \
    | grep "^{\|^finite\|Error" | cut -c1-600
}
if [ "$(nvidia-smi -L | wc -l)" -ge 4 ]; then
  ( probe 0,1 1x2 8500 "${T:-280}" 29701 ) > "$out/log_1x2.txt" 2>&1 &
  ( probe 2 1x1 6000 "${T:-280}" 29702 ) > "$out/log_1x1.txt" 2>&1 &
  wait
  probe 0,1,2,3 2x2 12000 "${T:-280}" 29703
  tail -n 20 "$out"/log_*.txt
else
  probe 0 1x1 6000 "${T:-280}" 29702
fi
