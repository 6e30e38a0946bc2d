#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster for the tests: munge, slurmctld and slurmd
# (Debian packages slurmctld, slurmd, slurm-client, munge; .ci/system-packages.sh installs
# them), all state under $1, fake GPUs as gres, free TCP ports. Needs root (the daemons run as
# root and the config must sit at /etc/slurm/slurm.conf: snakemake's slurm-jobstep plugin
# drops SLURM_CONF before its inner srun). Stop it with down.sh $1.
#
#   up.sh DIR [GPUS] [CPUS]     (defaults: 4 fake GPUs, 8 CPUs declared)
set -euo pipefail
R=$(realpath -m "${1:?usage: up.sh STATE_DIR [GPUS] [CPUS]}")
GPUS=${2:-4}
CPUS=${3:-8}
for tool in munged slurmctld slurmd sinfo srun sbatch squeue; do
  command -v "$tool" >/dev/null || { echo "up.sh: $tool not found" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "up.sh: must run as root" >&2; exit 3; }
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
  if [ -e "$f" ] || [ -L "$f" ]; then
    case "$(readlink "$f" || true)" in
      */foldcp-slurm-etc/*) ;;  # an earlier test cluster's link: stopped and replaced below
      *) echo "up.sh: $f exists and is not a test cluster's: not touching a real Slurm" >&2; exit 3 ;;
    esac
  fi
done
# a test cluster left running (its test was killed): stop it first
old=$(readlink /etc/slurm/slurm.conf 2>/dev/null || true)
case "$old" in
  */foldcp-slurm-etc/slurm.conf) bash "$(dirname "$0")/down.sh" "${old%/foldcp-slurm-etc/slurm.conf}" ;;
esac
mkdir -p "$R"/{etc,state,spool,log,munge,fakedev}
chmod 711 "$R/munge"

# munge: its own key and socket
dd if=/dev/urandom of="$R/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$R/munge/munge.key"
munged --force --socket="$R/munge/munge.socket" --key-file="$R/munge/munge.key" \
  --log-file="$R/munge/munged.log" --pid-file="$R/munge/munged.pid" --seed-file="$R/munge/munged.seed"

# GPUs on a CPU-only machine: gres File= must be character devices; links to /dev/null do.
for i in $(seq 0 $((GPUS - 1))); do ln -sf /dev/null "$R/fakedev/nvidia$i"; done
cat > "$R/etc/gres.conf" <<EOG
AutoDetect=off
NodeName=localhost Name=gpu Type=fake File=$R/fakedev/nvidia[0-$((GPUS - 1))]
EOG

# two free ports for slurmctld and slurmd
read -r CTLD_PORT SLURMD_PORT < <(python3 - <<'EOP'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOP
)
# MinJobAge: finished jobs stay visible to squeue (the profile's status command without
# slurmdbd) for 10 minutes, well above 3 x the plugin's first status-check delay.
cat > "$R/etc/slurm.conf" <<EOS
ClusterName=foldcp-test
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$R/munge/munge.socket
StateSaveLocation=$R/state
SlurmdSpoolDir=$R/spool
SlurmctldPidFile=$R/slurmctld.pid
SlurmdPidFile=$R/slurmd.pid
SlurmctldLogFile=$R/log/slurmctld.log
SlurmdLogFile=$R/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$R/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=5
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=64000 Gres=gpu:fake:$GPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOS
mkdir -p /etc/slurm
# the link names carry "foldcp-slurm-" so down.sh (and the next up.sh) know them as ours
ln -sfn "$R/etc" "$R/foldcp-slurm-etc"
ln -sf "$R/foldcp-slurm-etc/slurm.conf" /etc/slurm/slurm.conf
ln -sf "$R/foldcp-slurm-etc/gres.conf" /etc/slurm/gres.conf

slurmctld
slurmd -N localhost
for _ in $(seq 120); do
  [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && { sinfo; exit 0; }
  sleep 0.5
done
echo "up.sh: the node did not become idle; logs in $R/log" >&2
sinfo >&2 || true
exit 4
