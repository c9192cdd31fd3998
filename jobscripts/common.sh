# common.sh — shared by the Slurm and PBS job scripts of this folder (sourced, not run).
# Every variable is described in doc/cluster.md. A script sets SCHEDULER (slurm|pbs),
# LAUNCHER (mpirun|srun) and SINGLE_NODE (0|1), then calls js_main "$@".
# shellcheck shell=bash

set -euo pipefail

js_log() { echo "[jobscript] $*"; }
js_die() { echo "[jobscript] error: $*" >&2; exit 2; }

# Nodes and ranks per node: the caller's NODES / GPUS_PER_NODE, else the scheduler's.
js_geometry() {
  if [ -z "${NODES:-}" ]; then
    if [ -n "${SLURM_JOB_NUM_NODES:-}" ]; then NODES=$SLURM_JOB_NUM_NODES
    elif [ -n "${PBS_NODEFILE:-}" ] && [ -r "$PBS_NODEFILE" ]; then NODES=$(sort -u "$PBS_NODEFILE" | wc -l)
    else NODES=1; fi
  fi
  if [ -z "${GPUS_PER_NODE:-}" ]; then
    if [ -n "${SLURM_NTASKS_PER_NODE:-}" ]; then GPUS_PER_NODE=${SLURM_NTASKS_PER_NODE%%(*}
    elif [ -n "${PBS_NODEFILE:-}" ] && [ -r "$PBS_NODEFILE" ]; then
      GPUS_PER_NODE=$(( $(wc -l < "$PBS_NODEFILE") / NODES ))
    else GPUS_PER_NODE=4; fi
  fi
  if [ "$SINGLE_NODE" = 1 ] && [ "$NODES" != 1 ]; then
    js_log "single-node script: NODES=$NODES ignored, using 1 (use the multi-node script)"
    NODES=1
  fi
  case "$NODES$GPUS_PER_NODE" in *[!0-9]*) js_die "NODES and GPUS_PER_NODE must be integers" ;; esac
  if [ "$NODES" -lt 1 ] || [ "$GPUS_PER_NODE" -lt 1 ]; then js_die "NODES and GPUS_PER_NODE must be >= 1"; fi
  NP=$(( NODES * GPUS_PER_NODE ))
  CPUS_PER_RANK=${CPUS_PER_RANK:-${SLURM_CPUS_PER_TASK:-8}}
}

# Per-job directories: RUN_DIR (default RUN_ROOT/<job name>-<job id>) holds CKPT_DIR and
# OUT_DIR. The job id survives a Slurm requeue; a PBS resubmission passes RUN_DIR on.
js_dirs() {
  local job_id=${SLURM_JOB_ID:-${PBS_JOBID:-local-$$}}
  job_id=${job_id%%.*}
  local job_name=${SLURM_JOB_NAME:-${PBS_JOBNAME:-dpo}}
  RUN_ROOT=${RUN_ROOT:-$DPO_ROOT/runs}
  RUN_DIR=${RUN_DIR:-$RUN_ROOT/$job_name-$job_id}
  CKPT_DIR=${CKPT_DIR:-$RUN_DIR/checkpoints}
  OUT_DIR=${OUT_DIR:-$RUN_DIR/logs}
}

# Environment for NCCL, OpenMP, HDF5 and MPI-IO. Names exported to the ranks are
# collected in JS_VARS (passed to mpirun with -x; srun forwards the environment).
JS_VARS=()
js_set() { export "$1=$2"; JS_VARS+=("$1"); }
js_set_if() { if [ -n "$2" ]; then js_set "$1" "$2"; fi; }

js_env() {
  js_set OMP_NUM_THREADS "${OMP_NUM_THREADS:-$CPUS_PER_RANK}"
  js_set NCCL_DEBUG "${NCCL_DEBUG:-WARN}"
  # Site specific: left unset unless given (doc/cluster.md lists typical values).
  js_set_if NCCL_SOCKET_IFNAME "${NCCL_SOCKET_IFNAME:-}"
  js_set_if NCCL_IB_HCA "${NCCL_IB_HCA:-}"
  js_set_if NCCL_IB_GID_INDEX "${NCCL_IB_GID_INDEX:-}"
  js_set_if NCCL_IB_DISABLE "${NCCL_IB_DISABLE:-}"
  js_set_if NCCL_NET_GDR_LEVEL "${NCCL_NET_GDR_LEVEL:-}"
  # Parallel file systems: no POSIX locks for HDF5, collective buffering for writes.
  js_set HDF5_USE_FILE_LOCKING "${HDF5_USE_FILE_LOCKING:-FALSE}"
  FS_TYPE=${FS_TYPE:-auto}
  if [ "$FS_TYPE" = auto ]; then
    FS_TYPE=other
    local probe=$CKPT_DIR
    while [ ! -e "$probe" ] && [ "$probe" != / ] && [ "$probe" != . ]; do probe=$(dirname "$probe"); done
    case "$(stat -f -c %T "$probe" 2>/dev/null || true)" in
      lustre*) FS_TYPE=lustre ;;
      gpfs*) FS_TYPE=gpfs ;;
    esac
  fi
  LUSTRE_STRIPE_COUNT=${LUSTRE_STRIPE_COUNT:--1}
  LUSTRE_STRIPE_SIZE=${LUSTRE_STRIPE_SIZE:-4M}
  js_set ROMIO_HINTS "${ROMIO_HINTS:-$RUN_DIR/romio_hints}"
  ROMIO_HINT_LINES="romio_cb_write enable
romio_ds_write disable
cb_buffer_size 16777216"
  case "$FS_TYPE" in
    lustre) ROMIO_HINT_LINES+="
striping_unit 4194304" ;;
    gpfs) ROMIO_HINT_LINES+="
IBM_largeblock_io true" ;;
  esac
}

# Creates the directories, the hints file and the Lustre striping (not in a dry run).
js_prepare() {
  if [ "$DRY_RUN" = 1 ]; then
    js_log "would create $CKPT_DIR $OUT_DIR and write $ROMIO_HINTS"
    if [ "$FS_TYPE" = lustre ]; then
      js_log "would run: lfs setstripe -c $LUSTRE_STRIPE_COUNT -S $LUSTRE_STRIPE_SIZE $CKPT_DIR"
    fi
    return
  fi
  mkdir -p "$CKPT_DIR" "$OUT_DIR"
  if [ ! -e "$ROMIO_HINTS" ]; then printf '%s\n' "$ROMIO_HINT_LINES" > "$ROMIO_HINTS"; fi
  if [ "$FS_TYPE" = lustre ] && command -v lfs > /dev/null; then
    lfs setstripe -c "$LUSTRE_STRIPE_COUNT" -S "$LUSTRE_STRIPE_SIZE" "$CKPT_DIR" ||
      js_log "lfs setstripe failed; default striping kept"
  fi
}

# The launcher command, in the array CMD.
js_command() {
  local prog=(
    "$DPO_ROOT/jobscripts/gpu_bind.sh" "$DPO_BIN" "$CONFIG" "${OVERRIDES[@]}"
    checkpointing.enabled=true checkpointing.resume=true
    "checkpointing.checkpoint_dir=$CKPT_DIR" "logger.log_dir=$OUT_DIR"
  )
  if [ "$LAUNCHER" = srun ]; then
    CMD=(srun "--mpi=${SRUN_MPI:-pmix}" "--nodes=$NODES" "--ntasks=$NP"
         "--ntasks-per-node=$GPUS_PER_NODE" "--cpus-per-task=$CPUS_PER_RANK"
         --cpu-bind=cores --kill-on-bad-exit=1 "${prog[@]}")
  else
    CMD=("${MPIRUN:-mpirun}" -np "$NP" --map-by "ppr:$GPUS_PER_NODE:node:PE=$CPUS_PER_RANK"
         --bind-to core)
    if [ "$SCHEDULER" = pbs ] && [ -n "${PBS_NODEFILE:-}" ]; then
      CMD+=(--hostfile "$PBS_NODEFILE")
    fi
    local v
    for v in "${JS_VARS[@]}"; do CMD+=(-x "$v"); done
    # shellcheck disable=SC2206  # MPIRUN_EXTRA is a list of words by design
    CMD+=(${MPIRUN_EXTRA:-} "${prog[@]}")
  fi
}

# The command that brings the job back: Slurm requeues itself (same job id, same
# RUN_DIR); PBS submits this script again, to start after this job ends, with RUN_DIR
# and the arguments file passed on.
js_requeue_command() {
  if [ "$SCHEDULER" = slurm ]; then
    REQ=(scontrol requeue "${SLURM_JOB_ID:-JOBID}")
  else
    REQ=(qsub -W "depend=afterany:${PBS_JOBID:-JOBID}"
         -v "RUN_DIR=$RUN_DIR,DPO_REQUEUE_COUNT=$((REQUEUE_COUNT + 1)),DPO_ROOT=$DPO_ROOT"
         "${JS_SCRIPT_PATH}")
  fi
}

JS_CHILD=""
JS_REQUEUED=0
js_on_signal() {
  js_log "signal received: wall-clock limit near (requeue count $REQUEUE_COUNT of $REQUEUE_MAX)"
  if [ "$REQUEUE_COUNT" -ge "$REQUEUE_MAX" ]; then
    js_log "REQUEUE_MAX reached; not requeueing"
  else
    js_requeue_command
    if [ "$DRY_RUN" = 1 ]; then
      printf '[jobscript] would requeue:'; printf ' %q' "${REQ[@]}"; printf '\n'
    else
      js_log "requeue: ${REQ[*]}"
      "${REQ[@]}" || js_log "requeue command failed"
    fi
    JS_REQUEUED=1
  fi
  # USR1 to the launcher reaches every rank (mpirun and srun forward it): dpo_hpc
  # finishes its step, writes a checkpoint and exits, so the next job loses nothing.
  # A launcher still running CKPT_GRACE seconds later gets TERM; the next job then
  # resumes from the latest complete checkpoint (files are written, then renamed).
  if [ -n "$JS_CHILD" ] && [ -z "${JS_KILLER:-}" ]; then
    kill -USR1 "$JS_CHILD" 2> /dev/null || true
    js_log "asked dpo_hpc to checkpoint and stop; TERM in ${CKPT_GRACE}s if it has not"
    ( sleep "$CKPT_GRACE"; kill -TERM "$JS_CHILD" 2> /dev/null || true ) &
    JS_KILLER=$!
  fi
}

# PBS has no "signal before the limit": a timer signals this shell REQUEUE_MARGIN
# seconds before WALLTIME_SEC (default: the job's Resource_List.walltime).
js_pbs_timer() {
  local wall=${WALLTIME_SEC:-}
  if [ -z "$wall" ] && [ -n "${PBS_JOBID:-}" ] && command -v qstat > /dev/null; then
    local hms
    hms=$(qstat -f "$PBS_JOBID" 2> /dev/null | sed -n 's/^ *Resource_List.walltime = //p' || true)
    if [ -n "$hms" ]; then
      IFS=: read -r h m s <<< "$hms"
      wall=$(( 10#$h * 3600 + 10#$m * 60 + 10#$s ))
    fi
  fi
  if [ -z "$wall" ]; then js_log "walltime unknown: no automatic requeue"; return; fi
  local delay=$(( wall - REQUEUE_MARGIN ))
  [ "$delay" -gt 0 ] || delay=1
  js_log "requeue timer: USR1 in ${delay}s (walltime ${wall}s, margin ${REQUEUE_MARGIN}s)"
  local self=$$
  ( sleep "$delay"; kill -USR1 "$self" 2> /dev/null || true ) &
  JS_TIMER=$!
}

js_main() {
  DRY_RUN=${DRY_RUN:-0}
  DPO_BIN=${DPO_BIN:-$DPO_ROOT/build/bin/dpo_hpc}
  REQUEUE_MAX=${REQUEUE_MAX:-10}
  REQUEUE_MARGIN=${REQUEUE_MARGIN:-300}
  # Seconds dpo_hpc gets to finish its step and write the checkpoint after the signal;
  # keep it below the margin before the limit (Slurm: the @300 of --signal).
  CKPT_GRACE=${CKPT_GRACE:-240}
  REQUEUE_COUNT=${DPO_REQUEUE_COUNT:-${SLURM_RESTART_COUNT:-0}}
  js_geometry
  js_dirs
  # Arguments: CONFIG [overrides]; a resubmitted PBS job (no arguments) reads them back.
  local args_file=$RUN_DIR/job.args
  if [ "$#" -eq 0 ] && [ -r "$args_file" ]; then
    mapfile -t saved < "$args_file"
    set -- "${saved[@]}"
  fi
  [ "$#" -ge 1 ] || js_die "usage: $JS_SCRIPT_PATH CONFIG [section.key=value ...]"
  CONFIG=$(realpath -m "$1"); shift
  OVERRIDES=("$@")
  js_env
  js_prepare
  if [ "$DRY_RUN" != 1 ]; then printf '%s\n' "$CONFIG" "${OVERRIDES[@]}" > "$args_file"; fi
  js_command

  js_log "scheduler=$SCHEDULER launcher=$LAUNCHER nodes=$NODES gpus_per_node=$GPUS_PER_NODE np=$NP"
  js_log "run_dir=$RUN_DIR checkpoint_dir=$CKPT_DIR output_dir=$OUT_DIR fs_type=$FS_TYPE"
  local v
  for v in "${JS_VARS[@]}"; do echo "export $v=${!v}"; done
  printf 'command:'; printf ' %q' "${CMD[@]}"; printf '\n'

  trap js_on_signal USR1 TERM
  if [ "$SCHEDULER" = pbs ]; then js_pbs_timer; fi
  local rc=0
  if [ "$DRY_RUN" = 1 ]; then
    if [ "${DRY_RUN_SECONDS:-0}" -le 0 ]; then js_log "dry run: not launching"; js_cleanup; return 0; fi
    js_log "dry run: simulating a ${DRY_RUN_SECONDS}s run (pid $$)"
    sleep "$DRY_RUN_SECONDS" &
  else
    "${CMD[@]}" &
  fi
  JS_CHILD=$!
  # wait returns early when a trapped signal arrives; wait again for the launcher.
  while :; do
    rc=0; wait "$JS_CHILD" || rc=$?
    if ! kill -0 "$JS_CHILD" 2> /dev/null; then break; fi
  done
  js_cleanup
  if [ "$JS_REQUEUED" = 1 ]; then js_log "stopped for requeue; resumes from the latest checkpoint in $CKPT_DIR"; return 0; fi
  js_log "launcher exited with status $rc"
  return "$rc"
}

js_cleanup() {
  if [ -n "${JS_TIMER:-}" ]; then kill "$JS_TIMER" 2> /dev/null || true; fi
  if [ -n "${JS_KILLER:-}" ]; then kill "$JS_KILLER" 2> /dev/null || true; fi
}
