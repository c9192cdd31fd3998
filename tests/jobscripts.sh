#!/usr/bin/env bash
# Job scripts (jobscripts/, doc/cluster.md): shellcheck clean, dry runs at 1, 2 and 4
# nodes print the right launcher command, and the requeue trap (Slurm: USR1 from
# --signal; PBS: the script's own walltime timer) prints the requeue command.
source "$(dirname "$0")/lib.sh"
setup "$@"
unset MPIRUN   # the job scripts read MPIRUN (launcher path); the dry runs expect plain mpirun

command -v shellcheck > /dev/null || { echo "shellcheck not installed: skipping"; exit 77; }
JS=$SRC/jobscripts
scripts=(slurm_single_node.sbatch slurm_multi_node.sbatch pbs_single_node.pbs pbs_multi_node.pbs)

for s in "${scripts[@]}" common.sh gpu_bind.sh; do
  [ -f "$JS/$s" ] || fail "jobscripts/$s missing"
done
[ "$(grep -l '^#SBATCH --signal=B:USR1@300$' "$JS"/*.sbatch | wc -l)" = 2 ] || fail "a Slurm script lacks --signal"

# 1. shellcheck, every severity: any finding fails.
(cd "$SRC" && shellcheck -x jobscripts/*.sbatch jobscripts/*.pbs jobscripts/*.sh) ||
  fail "shellcheck reported findings"

# dry SCRIPT NODES GPUS [env...] : dry run, output in dry.log
dry() {
  local script=$1 nodes=$2 gpus=$3; shift 3
  env -u SLURM_JOB_ID -u PBS_JOBID -u PBS_NODEFILE -u OMP_NUM_THREADS DRY_RUN=1 NODES="$nodes" GPUS_PER_NODE="$gpus" \
      RUN_ROOT="$WORK/runs" "$@" bash "$JS/$script" input.cfg dpo.max_num_steps=7 > dry.log 2>&1 ||
    { cat dry.log >&2; fail "$script dry run exited non-zero"; }
  [ -e "$WORK/runs" ] && fail "$script dry run created files"
  grep -q '^command: ' dry.log || fail "$script printed no command"
  grep -q 'dry run: not launching' dry.log || fail "$script did not stop"
  grep '^command: ' dry.log | grep -q ' dpo.max_num_steps=7 checkpointing.enabled=true checkpointing.resume=true ' ||
    fail "$script: overrides missing: $(cat dry.log)"
  grep -q '^export HDF5_USE_FILE_LOCKING=FALSE$' dry.log || fail "$script: no HDF5_USE_FILE_LOCKING"
  grep -q '^export OMP_NUM_THREADS=' dry.log || fail "$script: no OMP_NUM_THREADS"
  return 0
}

# 2. Dry runs: -np = NODES * GPUS_PER_NODE, per-node mapping, gpu_bind.sh wrapper.
for nodes in 1 2 4; do
  for launcher in mpirun srun; do
    dry slurm_multi_node.sbatch "$nodes" 4 LAUNCHER=$launcher
    np=$((nodes * 4))
    if [ "$launcher" = mpirun ]; then
      grep -Eq "^command: mpirun -np $np --map-by ppr:4:node:PE=8 .*-x HDF5_USE_FILE_LOCKING .*/jobscripts/gpu_bind.sh .*/dpo_hpc .*input.cfg" dry.log ||
        fail "slurm mpirun $nodes nodes: $(grep '^command' dry.log)"
    else
      grep -Eq "^command: srun --mpi=pmix --nodes=$nodes --ntasks=$np --ntasks-per-node=4 .*/jobscripts/gpu_bind.sh .*/dpo_hpc" dry.log ||
        fail "slurm srun $nodes nodes: $(grep '^command' dry.log)"
    fi
  done
  dry pbs_multi_node.pbs "$nodes" 2
  grep -Eq "^command: mpirun -np $((nodes * 2)) --map-by ppr:2:node:PE=8 " dry.log ||
    fail "pbs $nodes nodes: $(grep '^command' dry.log)"
done
dry slurm_single_node.sbatch 1 4
grep -Eq '^command: srun --mpi=pmix --nodes=1 --ntasks=4 ' dry.log || fail "slurm single node: $(cat dry.log)"
dry slurm_single_node.sbatch 2 4   # NODES > 1 is ignored by a single-node script
grep -Eq '^command: srun --mpi=pmix --nodes=1 --ntasks=4 ' dry.log || fail "slurm single node NODES=2: $(cat dry.log)"
dry pbs_single_node.pbs 2 4
grep -Eq '^command: mpirun -np 4 --map-by ppr:4:node:PE=8 ' dry.log || fail "pbs single node: $(cat dry.log)"
dry slurm_multi_node.sbatch 2 4 LAUNCHER=mpirun NCCL_SOCKET_IFNAME=ib0 CPUS_PER_RANK=6 FS_TYPE=lustre
grep -q '^export NCCL_SOCKET_IFNAME=ib0$' dry.log || fail "NCCL_SOCKET_IFNAME not exported"
grep -q -- '-x NCCL_SOCKET_IFNAME' dry.log || fail "NCCL_SOCKET_IFNAME not passed to mpirun"
grep -q '^export OMP_NUM_THREADS=6$' dry.log || fail "OMP_NUM_THREADS != CPUS_PER_RANK"
grep -q 'would run: lfs setstripe -c -1 -S 4M .*/checkpoints' dry.log || fail "no lfs setstripe on Lustre"

# 3. Slurm requeue: USR1 (as sent by --signal=B:USR1@300) during a simulated run.
env -u PBS_JOBID DRY_RUN=1 DRY_RUN_SECONDS=60 NODES=2 GPUS_PER_NODE=4 SLURM_JOB_ID=4242 \
    RUN_ROOT="$WORK/runs" bash "$JS/slurm_multi_node.sbatch" input.cfg > slurm_trap.log 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'simulating' slurm_trap.log && break; sleep 0.1; done
grep -q 'simulating' slurm_trap.log || fail "slurm simulated run did not start: $(cat slurm_trap.log)"
kill -USR1 "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 0 ] || fail "slurm script exited $rc after USR1: $(cat slurm_trap.log)"
grep -q '^\[jobscript\] would requeue: scontrol requeue 4242$' slurm_trap.log ||
  fail "no scontrol requeue: $(cat slurm_trap.log)"
grep -q 'resumes from the latest checkpoint in .*/runs/dpo-4242/checkpoints' slurm_trap.log ||
  fail "no resume message: $(cat slurm_trap.log)"

# REQUEUE_MAX reached: no requeue.
env -u PBS_JOBID DRY_RUN=1 DRY_RUN_SECONDS=60 SLURM_RESTART_COUNT=3 REQUEUE_MAX=3 SLURM_JOB_ID=4243 \
    RUN_ROOT="$WORK/runs" bash "$JS/slurm_single_node.sbatch" input.cfg > slurm_max.log 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'simulating' slurm_max.log && break; sleep 0.1; done
kill -USR1 "$pid"
wait "$pid" || true
grep -q 'REQUEUE_MAX reached' slurm_max.log || fail "REQUEUE_MAX ignored: $(cat slurm_max.log)"
grep -q 'would requeue' slurm_max.log && fail "requeued past REQUEUE_MAX"

# 4. PBS requeue: the script's timer fires REQUEUE_MARGIN seconds before the walltime.
env -u SLURM_JOB_ID DRY_RUN=1 DRY_RUN_SECONDS=60 WALLTIME_SEC=3 REQUEUE_MARGIN=2 NODES=2 \
    GPUS_PER_NODE=4 PBS_JOBID=77.pbsserver RUN_ROOT="$WORK/runs" \
    timeout 30 bash "$JS/pbs_multi_node.pbs" input.cfg > pbs_trap.log 2>&1 ||
  fail "pbs script failed: $(cat pbs_trap.log)"
grep -q 'requeue timer: USR1 in 1s' pbs_trap.log || fail "no PBS timer: $(cat pbs_trap.log)"
grep -Eq '^\[jobscript\] would requeue: qsub -W depend=afterany:77.pbsserver -v RUN_DIR=.*/runs/dpo-77.*DPO_REQUEUE_COUNT=1.* .*/jobscripts/pbs_multi_node.pbs$' pbs_trap.log ||
  fail "no qsub resubmission: $(cat pbs_trap.log)"
[ -e "$WORK/runs" ] && fail "dry runs created files"
echo "jobscripts: all checks passed"
