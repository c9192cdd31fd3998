#!/usr/bin/env bash
# gpu_bind.sh PROGRAM [ARGS...] — runs as every MPI rank (the launcher starts it), gives
# the rank one GPU chosen by its node-local rank, then execs PROGRAM.
#
# Local rank, first found: OMPI_COMM_WORLD_LOCAL_RANK (Open MPI mpirun), SLURM_LOCALID
# (srun), MPI_LOCALRANKID (MPICH/Intel MPI, Hydra), PMI_LOCAL_RANK, PALS_LOCAL_RANKID
# (Cray PALS). When CUDA_VISIBLE_DEVICES already lists the node's devices (Slurm with
# --gpus-per-node, PBS with ngpus), the rank takes entry <local rank> of that list;
# otherwise it takes device <local rank>. dpo_hpc then uses device 0 of what it sees.
set -euo pipefail

local_rank=${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-${MPI_LOCALRANKID:-${PMI_LOCAL_RANK:-${PALS_LOCAL_RANKID:-}}}}}
if [ -z "$local_rank" ]; then
  echo "gpu_bind.sh: no local rank in the environment; GPU binding left as is" >&2
elif [ "${DPO_GPU_BIND:-1}" = 1 ]; then
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    IFS=, read -r -a devices <<< "$CUDA_VISIBLE_DEVICES"
    if [ "$local_rank" -ge "${#devices[@]}" ]; then
      echo "gpu_bind.sh: local rank $local_rank but CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES" >&2
      exit 1
    fi
    export CUDA_VISIBLE_DEVICES=${devices[$local_rank]}
  else
    export CUDA_VISIBLE_DEVICES=$local_rank
  fi
fi
exec "$@"
