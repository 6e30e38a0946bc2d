#!/usr/bin/env bash
# Stop the test cluster that up.sh DIR started: its daemons by their PID files, then the
# /etc/slurm links that point into DIR.
R=$(realpath -m "${1:?usage: down.sh STATE_DIR}")
for p in "$R/slurmd.pid" "$R/slurmctld.pid" "$R/munge/munged.pid"; do
  [ -f "$p" ] || continue
  pid=$(cat "$p")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
done
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
  case "$(readlink "$f" 2>/dev/null)" in
    "$R"/*) rm -f "$f" ;;
  esac
done
exit 0
