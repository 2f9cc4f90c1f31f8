#!/usr/bin/env bash
# Runs a command with the torchrun-style rendezvous variables that m2sa reads (RANK, WORLD_SIZE, LOCAL_RANK,
# LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), taken from Slurm's per-task environment:
#   srun --nodes 2 --ntasks-per-node 8 --gpus-per-node 8 bash scripts/slurm-env.sh build/m2sa train --config C
# Variables that are already set win (e.g. MASTER_PORT exported before srun).
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: srun ... bash scripts/slurm-env.sh COMMAND [ARGS...]" >&2
  exit 2
fi
for v in SLURM_PROCID SLURM_NTASKS SLURM_LOCALID; do
  if [ -z "${!v:-}" ]; then
    echo "slurm-env.sh: $v is not set: run this under srun (one task per GPU)" >&2
    exit 2
  fi
done
export RANK=${RANK:-$SLURM_PROCID}
export WORLD_SIZE=${WORLD_SIZE:-$SLURM_NTASKS}
export LOCAL_RANK=${LOCAL_RANK:-$SLURM_LOCALID}
export LOCAL_WORLD_SIZE=${LOCAL_WORLD_SIZE:-${SLURM_NTASKS_PER_NODE:-${SLURM_TASKS_PER_NODE%%(*}}}
if [ -z "${MASTER_ADDR:-}" ]; then
  # The first host of the allocation (scontrol expands "node[01-04]" lists).
  MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-localhost}}" 2>/dev/null | head -n 1 || true)
  export MASTER_ADDR=${MASTER_ADDR:-${SLURMD_NODENAME:-localhost}}
fi
# A port derived from the job id, so that two jobs sharing a node do not collide.
export MASTER_PORT=${MASTER_PORT:-$(( 20000 + ${SLURM_JOB_ID:-0} % 20000 ))}
exec "$@"
