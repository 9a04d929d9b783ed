#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm_cluster.py (run as root):
#   bash tests/local_slurm.sh && NTKBOOK_SLURM_PARTITION=gpu pytest tests/test_slurm_cluster.py
# Installs Debian's slurm-wlm and munge if missing, writes /etc/slurm/slurm.conf for this host
# (its cores and memory, one partition "gpu") with two placeholder GPUs (GRES backed by
# /dev/null and /dev/zero: jobs that ask for --gres=gpu:1 are scheduled, and compute on the CPU),
# and starts munged, slurmctld and slurmd. Overwrites an existing slurm.conf: a throwaway machine.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ReturnToService=2
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$memory Gres=gpu:2 State=UNKNOWN
PartitionName=gpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
echo "NodeName=$host Name=gpu File=/dev/null,/dev/zero AutoDetect=off" >/etc/slurm/gres.conf
[ -s /etc/munge/munge.key ] || (mungekey --create 2>/dev/null || create-munge-key -f)
chown -R munge:munge /etc/munge /run/munge
pkill -x slurmd || true
pkill -x slurmctld || true
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
sleep 1
slurmctld
slurmd
for _ in $(seq 30); do
  if sinfo -h -o %t | grep -qx idle; then
    sinfo -o "%P %N %c %m %G %t"
    exit 0
  fi
  sleep 1
done
echo "the local SLURM node did not become idle:" >&2
sinfo -o "%P %N %c %m %G %t %E" >&2
exit 1
