#!/usr/bin/env bash
# Debian/Ubuntu system tools foldcp's tests and optional features use (README set-up step):
#   chromium                                 renders report.html in tests/unit/test_report.py
#   mmseqs2                                  msa.mode mmseqs (tests/unit/test_msa_mmseqs.py and
#                                            the mmseqs workflow test)
#   slurmctld slurmd slurm-client munge      the single-node Slurm cluster that
#                                            tests/workflow/test_slurm.py starts (and stops)
# Needs root and apt-get; elsewhere it only says what is missing (the tests that need a tool
# skip with that reason; the pipeline itself needs none of them).
set -uo pipefail
packages=(chromium mmseqs2 slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-packages: not installed (need root + apt-get): ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
  || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
