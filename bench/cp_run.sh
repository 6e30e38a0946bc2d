# Sourced by the session scripts. cp_run GPUS PORT LIMIT_S NAME ARGS... runs bench/cp_model.py
# under torchrun on the listed GPUs (one rank each), stops it after LIMIT_S seconds, appends its
# rows to $out/NAME.jsonl and prints them with the phase lines and errors. Needs $out; $t0
# (the script's start, in seconds) for the elapsed time it prints.
# The commit the rows record: the marker written before the call (bench/rows.py).
[ -z "${BENCH_COMMIT:-}" ] && [ -e .git-commit ] && export BENCH_COMMIT=$(cat .git-commit)
cp_run() {
  local gpus=$1 port=$2 limit=$3 name=$4; shift 4
  local ranks; ranks=$(echo "$gpus" | tr ',' '\n' | wc -l)
  CUDA_VISIBLE_DEVICES=$gpus timeout -k 5 "$limit" torchrun --master-port "$port" --nproc-per-node "$ranks" \
    bench/cp_model.py --inputs .payload/cp --out "$out/$name.jsonl" "$@" 2>&1 \
    | grep "^{\|^phase\|^finite\|Error\|WARNING\|not recordable" | cut -c1-700
  echo "exit ${PIPESTATUS[0]} (124: the ${limit} s limit) after $(( $(date +%s) - ${t0:-$(date +%s)} )) s"
}
