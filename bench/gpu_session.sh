#!/usr/bin/env bash
# One device call: NCCL equivalence checks, the Pairformer-layer benchmark and (if
# .payload/cp holds bench/cp_inputs.py output) full-model CP vs serial, on every grid the
# machine's GPUs allow. Usage (GPU machine, repo root):
#   PARTS="equiv model layer" bash bench/gpu_session.sh WHEELS OUT
set -u
wheels=${1:-.payload/whl}; out=${2:-bench/out}; mkdir -p "$out"
parts=${PARTS:-equiv model layer}
site=/tmp/foldcp-site
[ -d "$site/boltz" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
export PYTHONPATH="$PWD:$site" TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false PYTHONUNBUFFERED=1
gpus=$(nvidia-smi -L | wc -l)
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"
echo "commit $(cat .git-commit 2>/dev/null || echo unknown)"
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-240}" "$@" 2>&1 | grep -v "^W1127\|OMP_NUM_THREADS\|^\*\*\*\*" | tail -n 40; }
grids="1x2 2x1"; [ "$gpus" -ge 4 ] && grids="$grids 2x2 1x4 4x1"
case " $parts " in *" equiv "*)
  for g in $grids; do
    run torchrun --nproc-per-node $(( ${g%x*} * ${g#*x} )) bench/cp_equivalence_gpu.py --grid "$g" --out "$out/equivalence.jsonl"
  done;;
esac
case " $parts " in *" model "*)
  if [ -d .payload/cp ]; then
    for n in ${MODEL_TOKENS:-1000}; do
      run torchrun --nproc-per-node 2 bench/cp_model.py --inputs .payload/cp --tokens "$n" --recycling 3 --steps ${STEPS:-20} --out "$out/cp_model.jsonl"
      [ "$gpus" -ge 4 ] && run torchrun --nproc-per-node 4 bench/cp_model.py --inputs .payload/cp --tokens "$n" --recycling 3 --steps ${STEPS:-20} --no-serial --out "$out/cp_model.jsonl"
    done
  fi;;
esac
case " $parts " in *" layer "*)
  run python3 bench/pairformer_layer.py --tokens ${TOKENS1:-1024 2048} --out "$out/pairformer_layer.jsonl"
  run torchrun --nproc-per-node 2 bench/pairformer_layer.py --grid 1x2 --tokens ${TOKENS2:-1024 2048 4096} --out "$out/pairformer_layer.jsonl"
  if [ "$gpus" -ge 4 ]; then
    run torchrun --nproc-per-node 4 bench/pairformer_layer.py --grid 2x2 --tokens ${TOKENS4:-2048 4096 6144} --out "$out/pairformer_layer.jsonl"
  fi;;
esac
