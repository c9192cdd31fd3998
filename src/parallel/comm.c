// comm.c — host collectives (include/dpo/comm.h): MPI on host memory.
#include "dpo/comm.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "dpo/error.h"

MPI_Comm comm_mpi(const dpo_mesh_t *m, dpo_group_t g) {
    switch (g) {
        case DPO_GROUP_TP: return m->tp;
        case DPO_GROUP_DP: return m->dp;
        default: return m->world;
    }
}

static int group_size(const dpo_mesh_t *m, dpo_group_t g) {
    switch (g) {
        case DPO_GROUP_TP: return m->tp_size;
        case DPO_GROUP_DP: return m->dp_size;
        default: return m->world_size;
    }
}

static int group_rank(const dpo_mesh_t *m, dpo_group_t g) {
    switch (g) {
        case DPO_GROUP_TP: return m->tp_rank;
        case DPO_GROUP_DP: return m->dp_rank;
        default: return m->world_rank;
    }
}

static MPI_Op mpi_op(dpo_reduce_t op) { return op == DPO_REDUCE_MAX ? MPI_MAX : MPI_SUM; }

// MPI counts are int: large buffers go in pieces.
#define PIECE ((size_t)1 << 30)

void comm_allreduce_f32(const dpo_mesh_t *m, dpo_group_t g, float *buf, size_t n,
                        dpo_reduce_t op) {
    if (group_size(m, g) == 1) return;
    for (size_t i = 0; i < n; i += PIECE) {
        size_t k = n - i < PIECE ? n - i : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, mpi_op(op), comm_mpi(m, g));
    }
}

void comm_allreduce_f64(const dpo_mesh_t *m, dpo_group_t g, double *buf, size_t n,
                        dpo_reduce_t op) {
    if (group_size(m, g) == 1) return;
    for (size_t i = 0; i < n; i += PIECE) {
        size_t k = n - i < PIECE ? n - i : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_DOUBLE, mpi_op(op), comm_mpi(m, g));
    }
}

void comm_allgather_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send, float *recv,
                        size_t n) {
    if (n > (size_t)INT_MAX) dpo_fatal("comm_allgather_f32: %zu elements exceed one MPI call", n);
    if (group_size(m, g) == 1) {
        if (recv != send) memmove(recv, send, n * sizeof(float));
        return;
    }
    const void *sb = send == recv + (size_t)group_rank(m, g) * n ? MPI_IN_PLACE : (const void *)send;
    MPI_Allgather(sb, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, comm_mpi(m, g));
}

void comm_broadcast(const dpo_mesh_t *m, dpo_group_t g, void *buf, size_t bytes, int root) {
    if (group_size(m, g) == 1) return;
    char *p = buf;
    for (size_t i = 0; i < bytes; i += PIECE) {
        size_t k = bytes - i < PIECE ? bytes - i : PIECE;
        MPI_Bcast(p + i, (int)k, MPI_BYTE, root, comm_mpi(m, g));
    }
}

bool comm_all_ok(const dpo_mesh_t *m, dpo_group_t g, bool ok) {
    if (group_size(m, g) == 1) return ok;
    int all = ok ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_LAND, comm_mpi(m, g));
    return all != 0;
}

#define AGREE_MSG_LEN 1024

bool comm_agree_mpi(MPI_Comm c, bool ok, char *err, size_t err_len) {
    int size, rank;
    MPI_Comm_size(c, &size);
    MPI_Comm_rank(c, &rank);
    // The lowest failing rank, or size when every rank is fine: one all-reduce
    // when all went well.
    int who = ok ? size : rank;
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, &who, 1, MPI_INT, MPI_MIN, c);
    if (who == size) return true;
    char msg[AGREE_MSG_LEN] = {0};
    if (rank == who) snprintf(msg, sizeof msg, "%s", err && err[0] ? err : "failed");
    if (size > 1) MPI_Bcast(msg, AGREE_MSG_LEN, MPI_CHAR, who, c);
    if (who != 0)
        dpo_errf(err, err_len, "%s [rank %d]", msg, who);
    else
        dpo_errf(err, err_len, "%s", msg);
    return false;
}

bool comm_agree(const dpo_mesh_t *m, dpo_group_t g, bool ok, char *err, size_t err_len) {
    return comm_agree_mpi(comm_mpi(m, g), ok, err, err_len);
}

void comm_agree_or_die(const dpo_mesh_t *m, bool ok, const char *what, const char *err) {
    char msg[AGREE_MSG_LEN];
    snprintf(msg, sizeof msg, "%s", err ? err : "");
    if (comm_agree(m, DPO_GROUP_WORLD, ok, msg, sizeof msg)) return;
    dpo_fatal_all("%s: %s", what, msg);
}

// ---- how a fatal error ends an MPI job (error.h) ----

static int mpi_up(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

static void abort_job(void) {
    if (mpi_up()) MPI_Abort(MPI_COMM_WORLD, 1);
}

static void finish_job(void) {
    if (mpi_up()) MPI_Finalize();
}

void comm_errors_init(void) {
    int rank = 0, size = 1;
    if (mpi_up()) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    log_set_rank(rank, size);
    dpo_set_job_exit(abort_job, finish_job);
}
