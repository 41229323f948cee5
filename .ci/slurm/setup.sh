#!/usr/bin/env bash
# Prepare a single-node SLURM cluster on localhost in DIR (tests/slurm_cluster.py starts it):
#   .ci/slurm/setup.sh DIR [SLURMCTLD_PORT] [SLURMD_PORT]
# Installs slurm-wlm and munge with apt when missing (root only), then writes DIR/slurm.conf and a
# fresh DIR/munge.key. Everything the cluster writes stays in DIR: state, spool, logs, pid
# files and munge's socket; no system file or service is touched. Accounting is off (no slurmdbd),
# process tracking is plain /proc (no cgroups), so it runs in containers. Credentials expire after
# 10 s (SLURM's default is 120), which is also how long a requeued job waits before it restarts.
set -euo pipefail

dir=$(realpath -m "${1:?usage: setup.sh DIR [SLURMCTLD_PORT] [SLURMD_PORT]}")
ctld_port=${2:-6817}
slurmd_port=${3:-6818}

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "slurm-wlm and munge are not installed and installing them needs root" >&2
    exit 3
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p "$dir"/{state,spool,log,munge}
chmod 755 "$dir" "$dir/munge"
rm -f "$dir/munge.key"
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge.key"

cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
user=$(id -un)

cat >"$dir/slurm.conf" <<CONF
ClusterName=diffrl-ci
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
JobRequeue=1
MinJobAge=300
KillWait=5
InactiveLimit=0
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
echo "$dir/slurm.conf"
