#!/usr/bin/env bash
# One device call: NCCL equivalence checks + Pairformer-layer benchmark on every grid the
# machine's GPUs allow. Usage (on the GPU machine, repo root): bash bench/gpu_session.sh WHEELS OUT
set -u
wheels=${1:-.payload/whl}; out=${2:-bench/out}; mkdir -p "$out"
site=/tmp/foldcp-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
export PYTHONPATH="$PWD:$site"
gpus=$(nvidia-smi -L | wc -l)
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"
git_commit=$(cat .git-commit 2>/dev/null || echo unknown); echo "commit $git_commit"
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-240}" "$@" 2>&1 | grep -v "^W1127\|OMP_NUM_THREADS" | tail -n 40; }
grids="1x2 2x1"; [ "$gpus" -ge 4 ] && grids="$grids 2x2 1x4 4x1"
for g in $grids; do
  n=$(( ${g%x*} * ${g#*x} ))
  run torchrun --nproc-per-node "$n" bench/cp_equivalence_gpu.py --grid "$g" --out "$out/equivalence.jsonl"
done
run python3 bench/pairformer_layer.py --tokens ${TOKENS1:-1024 2048 3072} --out "$out/pairformer_layer.jsonl"
run torchrun --nproc-per-node 2 bench/pairformer_layer.py --grid 1x2 --tokens ${TOKENS2:-1024 2048 3072 4096} --out "$out/pairformer_layer.jsonl"
if [ "$gpus" -ge 4 ]; then
  run torchrun --nproc-per-node 4 bench/pairformer_layer.py --grid 2x2 --tokens ${TOKENS4:-2048 4096 6144} --out "$out/pairformer_layer.jsonl"
fi
