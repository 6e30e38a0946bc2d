#!/usr/bin/env bash
# Issue-8 runs for a session lent only one GPU (nvidia-h200 / nvidia-h100), one device call
# under the 10-minute limit. PARTS picks, in this order (default: all):
#   layer     one PairformerLayer, foldcp 1×1 at LAYER_TOKENS (1,024 2,048 3,072), padded to a
#             multiple of LAYER_MULTIPLE (1; 16 = as folds run, padded tokens masked): the code in
#             .payload/old (an earlier commit's foldcp/, `git archive C foldcp`) if present,
#             then this tree's with FOLDCP_COMPILE=0 (element-wise chains unfused, pointwise.py),
#             then this tree's as it runs, profiled (sub-layers and top kernels), then (unfused)
#             with FOLDCP_FUSED_TRANSITION=0, profiled, then with
#             FOLDCP_GATED_KERNEL=0 (triton_gated_projection.py off), profiled, and (only when
#             LAYER_RUNS names it: chunks) with FOLDCP_SMALL_CHUNK_MIB=${SMALL_CHUNK_MIB:-0}
#             (another small-chunk budget; 0 = every block row-chunked as before), profiled; LAYER_RUNS picks among these
#             (default: old eager current ungated); LAYER_ARGS adds
#             pairformer_layer.py options to each (e.g. --cuda-graph)
#   attention the triangle-attention kernels at ATTENTION_TOKENS (2,048 3,072): .payload/old's
#             if present, then this tree's; SWEEP=1 adds the Triton tile sweep
#   attention32 the diffusion transformer's attention core in full float32 (the default
#             sampling mode) at ATTENTION_TOKENS: CUDA-core float32 dots against three TF32
#             products ("tf32x3"), each with its error against float64 (SWEEP=1: all tiles)
#   gemm      the triangle products alone: batched bf16 GEMMs (bench/trimul_gemm.py)
#   transition the pair transition at TRANSITION_TOKENS (2512 1008): the fused kernel
#             (triton_transition.py) against the unfused path (bench/transition_kernel.py;
#             SWEEP=1: its tiles)
#   profile   one fold at PROFILE_TOKENS (2500), 1 recycle, 3 steps, eager steps: its second
#             Pairformer pass, MSA stage and denoising step profiled (cp_model.py --profile-*)
#   sampling  one fold at each of SAMPLING_TOKENS (2500 1000), no recycles, 30 steps, TF32, CUDA
#             graphs as folds run: denoising steps 10-19 profiled with all between their
#             networks (cp_model.py --profile-sampling): the sampling loop's own overhead
#   agreement serial Boltz2.forward (float32 sampling, as stock) vs foldcp 1×1 in float32 and in
#             TF32 at AGREEMENT_TOKENS (1000), full default inference: coordinate RMSD and
#             confidence differences (cp_model.py without --no-serial)
#   ungraphed the speed part's foldcp runs, then the agreement part, with FOLDCP_GRAPHED_SAMPLING=0
#             (Boltz's loop around the graphed network instead of each whole denoising step
#             one CUDA graph, graphed_sampling.py, the default): compare with the speed /
#             agreement rows of the same call
#   capacity  CAPACITY_TOKENS (6000) on 1×1 under an H100's 79.18 GiB (--gpu-memory-gib; the
#             capacity probe of cp_model.py: every stage at full size, 2 Pairformer blocks)
#   speed     full default inference with SPEED_PRECISIONS sampling (tf32; float32 is the
#             runner's default) at each of SPEED_TOKENS (1000): foldcp
#             1×1 after an untimed warm-up fold (cp_model.py --warmup: the stock bench warms up
#             too), then, at those of STOCK_TOKENS (default: all), stock Boltz-2 with its
#             cuEquivariance kernels (.anchor) on the same GPU
#   unaligned the speed run of foldcp at UNALIGNED_TOKENS (2500) without the GPU token padding
#             (--token-multiple 1): what aligning the pair dimension to 16 tokens buys
#   throughput screening throughput on this one GPU (bench/throughput.py, bench/throughput_run.sh):
#             THROUGHPUT_COUNT (8) random complexes of 300-1,500 tokens, foldcp's runs
#             (THROUGHPUT_VARIANTS, default "default": from cold compile caches; "warm" after it),
#             then stock `boltz predict` over the same directory; carry .payload/tp-site.tar.xz
#             and .anchor/.whl_cueq. Two GPUs run the sides at once: targets_2gpu_session.sh b
# Variables starting with FOLDCP_ (e.g. FOLDCP_GRAPHED_SAMPLING=0) reach every run; cp_model.py
# rows record them under "env".
# Usage (GPU machine, repo root). Carry .payload/whl .payload/cp .git-commit (+ .payload/old
# for layer, .anchor for speed):
#   PARTS="layer attention capacity speed" bash bench/one_gpu_session.sh $OUT
set -u
out=${1:-bench/out}; mkdir -p "$out"; t0=$(date +%s)
site=/tmp/foldcp-site
[ -d "$site/boltz" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .payload/whl/*.whl
export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1 SPEED_TOKENS=${SPEED_TOKENS:-1000}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
commit=$(cat .git-commit 2>/dev/null || echo unknown)
echo "commit $commit parts ${PARTS:=layer attention capacity speed unaligned}"; nvidia-smi -L
source bench/cp_run.sh
left() { echo $(( ${BUDGET_S:-570} - ($(date +%s) - t0) )); }
layer() { # PYTHONPATH_FIRST LABEL ARGS...
  PYTHONPATH="$1:$PYTHONPATH" timeout -k 5 "$(left)" python3 bench/pairformer_layer.py --foldcp-only \
    --tokens ${LAYER_TOKENS:-1024 2048 3072} --token-multiple "${LAYER_MULTIPLE:-1}" --repeat 3 \
    --label "$2" --out "$out/layer.jsonl" "${@:3}" ${LAYER_ARGS:-} 2>&1 \
    | grep -v "^W1\|^\s*$" | cut -c1-1500 | tail -n 40
}
for part in $PARTS; do
  echo "== $part after $(( $(date +%s) - t0 )) s"
  case $part in
    layer) for run in ${LAYER_RUNS:-old eager current ungated}; do case $run in
             old) [ -d .payload/old/foldcp ] && layer "$PWD/.payload/old" old ;;
             eager) FOLDCP_COMPILE=0 layer "$PWD" "$commit-eager" ;;  # element-wise chains unfused
             current) layer "$PWD" "$commit" --profile --top 40 ;;
             # the pair transition unfused (triton_transition.py off)
             unfused) FOLDCP_FUSED_TRANSITION=0 layer "$PWD" "$commit-unfused-transition" --profile --top 40 ;;
             # without the gated-projection kernel (triangle multiplication, pair transition)
             ungated) FOLDCP_GATED_KERNEL=0 layer "$PWD" "$commit-no-gated-kernel" --profile --top 40 ;;
             # another small-chunk budget than layout.SMALL_CHUNK_MIB's (0: off)
             chunks) FOLDCP_SMALL_CHUNK_MIB=${SMALL_CHUNK_MIB:-0} layer "$PWD" \
                       "$commit-small-chunks-${SMALL_CHUNK_MIB:-0}" --profile --top 40 ;;
           esac; done ;;
    attention) for code in old new; do
                 [ $code = old ] && { [ -d .payload/old/foldcp ] || continue; first="$PWD/.payload/old:"; } || first=""
                 echo "-- $code kernel"
                 PYTHONPATH="$first$PYTHONPATH" timeout -k 5 "$(left)" python3 bench/attention_kernels.py \
                   --tokens ${ATTENTION_TOKENS:-2048 3072} ${SWEEP:+--sweep} --out "$out/attention_$code.jsonl" 2>&1 \
                   | grep -v "^{" | tail -n 45
               done ;;
    attention32) timeout -k 5 "$(left)" python3 bench/attention_kernels.py --single-track --float32 \
                   --tokens ${ATTENTION_TOKENS:-2048 3072} ${SWEEP:+--sweep} --out "$out/attention32.jsonl" 2>&1 \
                   | grep -v "^{" | tail -n 30 ;;
    transition) timeout -k 5 "$(left)" python3 bench/transition_kernel.py \
                  --tokens ${TRANSITION_TOKENS:-2512 1008} ${SWEEP:+--sweep} --out "$out/transition.jsonl" 2>&1 \
                  | grep -v "^{" | tail -n 30 ;;
    gemm) timeout -k 5 "$(left)" python3 bench/trimul_gemm.py --tokens ${GEMM_TOKENS:-2048 2512} \
            --out "$out/gemm.jsonl" 2>&1 | grep -v "^{" ;;
    profile) cp_run 0 29704 "$(left)" profile --no-serial --tokens "${PROFILE_TOKENS:-2500}" --recycling 1 \
               --steps 3 --no-cuda-graphs --sampling-precision tf32 --profile-pairformer 2 --profile-msa 2 \
               --profile-step 2 ;;
    sampling) for n in ${SAMPLING_TOKENS:-2500 1000}; do
                cp_run 0 29705 "$(left)" sampling --no-serial --tokens "$n" --recycling 0 --steps 30 \
                  --sampling-precision tf32 --profile-sampling 10 10
              done ;;
    agreement) cp_run 0 29706 "$(left)" agreement --tokens "${AGREEMENT_TOKENS:-1000}" --recycling 3 \
                 --steps 200 --sampling-precision float32 tf32 ;;
    ungraphed) for n in $SPEED_TOKENS; do
               FOLDCP_GRAPHED_SAMPLING=0 cp_run 0 29707 "$(left)" ungraphed --no-serial --tokens "$n" \
                 --recycling 3 --steps 200 --sampling-precision tf32 --warmup
             done
             FOLDCP_GRAPHED_SAMPLING=0 cp_run 0 29708 "$(left)" ungraphed_agreement \
               --tokens "${AGREEMENT_TOKENS:-1000}" --recycling 3 --steps 200 --sampling-precision float32 tf32 ;;
    capacity) CHECK_FINITE=1 cp_run 0 29701 "$(left)" capacity --no-serial \
                --tokens "${CAPACITY_TOKENS:-6000}" --pairformer-blocks 2 --recycling 0 --steps 2 \
                --gpu-memory-gib 79.18 ;;
    speed) for n in $SPEED_TOKENS; do
             for precision in ${SPEED_PRECISIONS:-tf32}; do
               cp_run 0 29702 "$(left)" speed_foldcp --no-serial --tokens "$n" --recycling 3 --steps 200 \
                 --sampling-precision "$precision" --warmup
             done
             case " ${STOCK_TOKENS:-$SPEED_TOKENS} " in *" $n "*)
               SITE=/tmp/site-stock OUT="$out/stock" BUDGET="$(left)" TIMEOUT="$(left)" MODES=full \
                 KERNELS=on bash .anchor/run_stock_sweep.sh "$n" 2>&1 | tail -n 4 ;; esac
           done ;;
    unaligned) cp_run 0 29703 "$(left)" speed_foldcp --no-serial --tokens "${UNALIGNED_TOKENS:-2500}" \
                 --recycling 3 --steps 200 --sampling-precision tf32 --warmup --token-multiple 1 ;;
    throughput) ( w=/tmp/tp; source bench/throughput_run.sh  # its own PYTHONPATH: a subshell
                  tp_setup $w "${THROUGHPUT_COUNT:-8}" || exit
                  echo "setup $(( $(date +%s) - t0 )) s"
                  for variant in ${THROUGHPUT_VARIANTS:-default}; do tp_foldcp $w 0 "$variant" || break; done
                  tp_stock $w 0; tp_table ) ;;
    *) echo "unknown part $part" >&2 ;;
  esac
done
echo "done after $(( $(date +%s) - t0 )) s"
