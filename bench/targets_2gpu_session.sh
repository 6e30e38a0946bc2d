#!/usr/bin/env bash
# The issue-8 runs still open after the seventh session, as device calls on a 2-GPU host
# (nvidia-h200-x2 or nvidia-h100-x2), each under the 10-minute limit:
#   PART=a  3,605 tokens × 5 samples, full default, on 1×2 with TF32 sampling (target ≤ 150 s)
#   PART=b  screening throughput, both sides in one call: stock `boltz predict` (GPU 0) ‖
#           foldcp with featurize-ahead (its default on GPUs) and TF32 sampling (GPU 1), as
#           many runs as B_VARIANTS lists (default: one, "default"), each from cold caches ("warm":
#           with those "default" left);
#           B_AGREEMENT=N then runs serial Boltz2.forward against foldcp 1×1 at N tokens (float32
#           and TF32 sampling, full default) on GPU 1 while stock finishes (carry .payload/cp too)
#   PART=c  capacity: 8,605 tokens on 1×2 under an H100's 79.18 GiB (--gpu-memory-gib; the
#           probe of cp_model.py; CAPACITY_2GPU=none skips it), then on H200 hosts the largest
#           one-GPU size in .payload/cp (CAPACITY_1GPU, default 8000) uncapped
#   PART=d  CP scaling: 2,500 tokens, full default with TF32 sampling, warm (--warmup), foldcp on
#           1×1 (GPU 0) then on 1×2 (both GPUs) — target: 1×2 ≤ 0.6× the 1×1 time
#           (D_GPUS="0,1": the 1×2 run only)
#   PART=e  replicated sampling (FOLDCP_REPLICATED_SAMPLING=1, replicated_sampling.py): d's 1×2
#           run, then a's, each to compare with the same run sampling tiled (parts d and a)
#   PART=f  where CP's Pairformer time goes: one PairformerLayer at 2,500 tokens on 1×2, then on
#           1×1 (GPU 0), each profiled (sub-layers, top kernels with NCCL's) — CP scaling's
#           Pairformer ran at 0.79× its one-GPU time, where 0.5× is the ideal (F_ONE_GPU=0:
#           the 1×2 run only)
#   PART=g  same seed, same weights: foldcp on 1×2 against serial Boltz2.forward (rank 0), 1,000
#           tokens, 3 recycles, 20 steps, float32 sampling — coordinate and confidence differences
# Usage (GPU machine, repo root). Carry: a: .payload/whl .payload/cp .git-commit;
#   b: .payload/tp-site.tar.xz .anchor/.whl_cueq .git-commit (bench/throughput.py's recipe);
#   c: .payload/whl .payload/cp (features_8605.pt = bench/join_inputs.py of 3605 + 2500 + 2500;
#      CAPACITY_2GPU=N for another size) .git-commit;
#   d: .payload/whl .payload/cp (features_2500.pt) .git-commit; e: as a and d; f: .payload/whl;
#   g: as d (features_1000.pt)
#   PART=a bash bench/targets_2gpu_session.sh $OUT
# PART may list several ("d a"): they run in that order within one call, each run's limit cut
# to what is left of BUDGET_S (default 565 s, under the device's 10-minute call).
set -u
out=${1:-bench/out}; mkdir -p "$out"; t0=$(date +%s)
budget=${BUDGET_S:-565}
left() { local own=$1 rest=$(( budget - ($(date +%s) - t0) )); echo $(( own < rest ? own : rest )); }
export PYTHONUNBUFFERED=1 TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
echo "commit $(cat .git-commit 2>/dev/null || echo unknown) parts ${PART:?set PART=a, b, c, d, e, f or g (or a list)}"; nvidia-smi -L
site=/tmp/foldcp-site
wheels() { [ -d "$site/boltz" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
  --target "$site" .payload/whl/*.whl; export PYTHONPATH="$PWD:$site"; }
source bench/cp_run.sh
run() { cp_run "$1" "$2" "$3" "$4" --no-serial "${@:5}"; }  # GPUS PORT LIMIT_S NAME ARGS...
for part in $PART; do echo "== part $part after $(( $(date +%s) - t0 )) s"
case $part in
  a) wheels; run 0,1 29701 $(left 560) speed_foldcp --tokens 3605 --samples 5 --recycling 3 --steps 200 \
       --sampling-precision tf32 --warmup ;;
  b) w=/tmp/tp; source bench/throughput_run.sh
     tp_setup $w 16 || exit
     echo "setup $(( $(date +%s) - t0 )) s, limit $(left 565) s"
     tp_stock $w 0 &
     # foldcp's runs on GPU 1, one after another (B_VARIANTS: tp_foldcp's variants), then, on
     # GPU 1 while stock still runs: serial Boltz2.forward vs foldcp 1×1 at B_AGREEMENT tokens
     ( for variant in ${B_VARIANTS:-default}; do tp_foldcp $w 1 "$variant" || break; done
       [ -z "${B_AGREEMENT:-}" ] || cp_run 1 29709 $(left 565) agreement --tokens "$B_AGREEMENT" \
         --recycling 3 --steps 200 --sampling-precision float32 tf32 ) &
     wait; tp_table ;;
  c) wheels
     [ "${CAPACITY_2GPU:-8605}" = none ] || CHECK_FINITE=1 run 0,1 29701 $(left 330) capacity \
       --tokens ${CAPACITY_2GPU:-8605} --pairformer-blocks 2 --recycling 0 --steps 2 --gpu-memory-gib 79.18
     n=${CAPACITY_1GPU:-8000}
     [ -e .payload/cp/features_$n.pt ] && CHECK_FINITE=1 run 0 29702 $(left 560) \
       capacity --tokens $n --pairformer-blocks 2 --recycling 0 --steps 2 ;;
  d) wheels
     for gpus in ${D_GPUS:-0 0,1}; do
       run $gpus 29703 $(left 560) scaling --tokens 2500 --recycling 3 --steps 200 \
         --sampling-precision tf32 --warmup
     done ;;
  e) wheels
     [[ " ${E_RUNS:-scaling speed} " == *" scaling "* ]] && FOLDCP_REPLICATED_SAMPLING=1 run 0,1 \
       29704 $(left 200) scaling_replicated --tokens 2500 --recycling 3 --steps 200 \
       --sampling-precision tf32 --warmup
     [[ " ${E_RUNS:-scaling speed} " == *" speed "* ]] && FOLDCP_REPLICATED_SAMPLING=1 run 0,1 \
       29705 $(left 330) speed_foldcp_replicated --tokens 3605 --samples 5 --recycling 3 \
       --steps 200 --sampling-precision tf32 --warmup ;;
  f) wheels
     layer="bench/pairformer_layer.py --tokens 2500 --token-multiple 16 --foldcp-only --profile --top 30 --label ${BENCH_COMMIT:-unknown}"
     CUDA_VISIBLE_DEVICES=0,1 timeout -k 5 $(left 200) torchrun --master-port 29706 --nproc-per-node 2 \
       $layer --out "$out/layer_1x2.jsonl" 2>&1 | grep -v "^W1\|^\s*$" | tail -n 50
     [ "${F_ONE_GPU:-1}" = 0 ] || CUDA_VISIBLE_DEVICES=0 timeout -k 5 $(left 200) python3 $layer \
       --out "$out/layer_1x1.jsonl" 2>&1 | grep -v "^W1\|^\s*$" | tail -n 50 ;;
  g) wheels
     cp_run 0,1 29707 $(left 150) agreement_1x2 --tokens 1000 --recycling 3 --steps 20 ;;
  *) echo "PART must list a, b, c, d, e, f or g" >&2; exit 2 ;;
esac
done
