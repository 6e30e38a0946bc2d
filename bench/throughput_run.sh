# Sourced by the session scripts: bench/throughput.py's steps on the device machine. Needs $out
# and a function `left OWN_S` (the seconds left of the call, at most OWN_S).
#   tp_setup W COUNT   the carried site (.payload/tp-site.tar.xz, stock's cuEquivariance payload
#                      .anchor/.whl_cueq) installed in /tmp/tp-site and byte-compiled, COUNT
#                      random complexes of 300-1,500 tokens (seed 0) and the full random-weight
#                      checkpoint in W; sets $tp (the script) and $common (its input arguments)
#   tp_foldcp W GPU VARIANT   one foldcp run of W's complexes on GPU, rows to $out/foldcp.jsonl;
#                      VARIANT "default" (from cold compile caches of its own), "warm" (with the
#                      caches "default" left: a job after the first on the same machine) or
#                      VAR=VALUE[,VAR=VALUE] (e.g. FOLDCP_COMPILE=0; not the cache folders, set
#                      here); its start-up timeline and when each Triton kernel was compiled
#                      (cache files' times) are appended to $out/startup.txt
#   tp_stock W GPU     stock `boltz predict` over W's complexes on GPU, rows to $out/stock.jsonl
#   tp_table           both sides' rows in $out/throughput.jsonl, printed with their ratios
tp_setup() {
  local w=$1 count=$2 site=/tmp/tp-site
  tp="python3 bench/throughput.py"; common="--inputs $w/in --checkpoint $w/full.ckpt --cache $w/cache"
  mkdir -p $site && tar -xJf .payload/tp-site.tar.xz -C $site &&
    tar -xJf .anchor/.whl_cueq/cueq-*.tar.xz -C $site && python3 -m pip install -q --no-index \
    --no-deps --no-compile --target $site --upgrade .anchor/.whl_cueq/*.whl || return
  # bytecode compiled before anything is timed, as `pip install` leaves it: without it each
  # side's first process compiled every module it imported (~1,000 files of the carried site)
  python3 -m compileall -q -j 0 $site $PWD/foldcp > /dev/null
  export PYTHONPATH=$PWD:$site
  $tp make --out $w/in --count "$count" --min-tokens 300 --max-tokens 1500 --seed 0 || return
  $tp checkpoint --out $w/full.ckpt --size full --cache $w/cache
}
tp_foldcp() {
  local w=$1 gpu=$2 variant=$3 v=${3//[^A-Za-z0-9_]/_} vars=() caches limit
  caches=$v
  case $variant in default) ;; warm) caches=default ;; *) IFS=, read -ra vars <<< "$variant" ;; esac
  [ "$variant" = warm ] || rm -rf /tmp/cold-$caches  # cold: nothing left by an earlier call
  touch $w/started-$v  # the kernels this run compiled are the cache files newer than it
  limit=$(left 565); [ "$limit" -gt 60 ] || return
  env "${vars[@]}" TRITON_CACHE_DIR=/tmp/cold-$caches/triton TORCHINDUCTOR_CACHE_DIR=/tmp/cold-$caches/inductor \
    CUDA_VISIBLE_DEVICES=$gpu $tp foldcp $common --time-limit $limit --work $w/foldcp-$v \
    --out $out/foldcp.jsonl --single-gpu foldcp --sampling-precision tf32 >> $out/foldcp.txt 2>&1
  # (per-complex times are in the rows) the batch's start-up timeline, the kernels compiled
  # inside folds, and when each Triton kernel was compiled: one file for all variants
  { echo "== $variant"; grep "^\[foldcp\]\|^batch " $w/foldcp-$v/foldcp.log
    echo "Triton kernels compiled (seconds since the first, name):"
    find /tmp/cold-$caches/triton -name "*.json" ! -name "__grp__*" -newer $w/started-$v \
      -printf "%T@ %f\n" 2>/dev/null | sort -n | awk 'NR == 1 {t = $1} {printf "%.2f %s\n", $1 - t, $2}'
  } >> $out/startup.txt
}
tp_stock() {
  CUDA_VISIBLE_DEVICES=$2 $tp stock $common --time-limit "$(left 565)" --work $1/stock \
    --out $out/stock.jsonl > $out/stock.txt 2>&1
}
tp_table() {
  cat $out/stock.jsonl $out/foldcp.jsonl > $out/throughput.jsonl
  tail -n 3 $out/stock.txt $out/foldcp.txt; $tp table --out $out/throughput.jsonl
}
