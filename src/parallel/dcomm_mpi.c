// dcomm_mpi.c — device collectives on host memory through MPI (the CPU backend's).
// The calls complete before they return, so deferral and join have nothing to do.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/dcomm.h"
#include "dpo/error.h"
#include "dpo/mesh.h"

typedef struct {
    MPI_Comm comm[DPO_N_GROUPS];   // MPI_COMM_NULL: no such group
    int owns;                      // a split's communicator is its own to free
} mpi_ctx_t;

static MPI_Comm C(const dpo_dcomm_t *dc, dpo_group_t g) { return ((mpi_ctx_t *)dc->ctx)->comm[g]; }

static MPI_Op mpi_op(dpo_reduce_t op) { return op == DPO_REDUCE_MAX ? MPI_MAX : MPI_SUM; }

// MPI counts are int: the element-wise calls go in pieces.
#define PIECE ((size_t)1 << 30)

static void need_int(size_t n, const char *what) {
    if (n > (size_t)INT_MAX) dpo_fatal("%s: %zu elements exceed one MPI call", what, n);
}

static void mpi_allreduce(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, dpo_reduce_t op) {
    for (size_t i = 0; i < n; i += PIECE) {
        size_t k = n - i < PIECE ? n - i : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, mpi_op(op), C(dc, g));
    }
}

static void mpi_allgather(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                          size_t n) {
    need_int(n, "dcomm_allgather_f32");
    const void *sb = send == recv + (size_t)dc->rank[g] * n ? MPI_IN_PLACE : (const void *)send;
    MPI_Allgather(sb, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, C(dc, g));
}

static void mpi_reduce_scatter(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                               size_t n) {
    need_int(n, "dcomm_reduce_scatter_f32");
    MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, C(dc, g));
}

static void mpi_reduce_scatterv(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                                const size_t *counts) {
    int P = dc->size[g];
    size_t total = 0;
    int *rc = xmalloc((size_t)P * sizeof(int), "reduce-scatter counts");
    for (int r = 0; r < P; r++) {
        total += counts[r];
        rc[r] = (int)counts[r];
    }
    need_int(total, "dcomm_reduce_scatterv_f32");
    MPI_Reduce_scatter(send, recv, rc, MPI_FLOAT, MPI_SUM, C(dc, g));
    free(rc);
}

static void mpi_broadcast(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, int root) {
    for (size_t i = 0; i < n; i += PIECE) {
        size_t k = n - i < PIECE ? n - i : PIECE;
        MPI_Bcast(buf + i, (int)k, MPI_FLOAT, root, C(dc, g));
    }
}

// Pieces of an n-element message: at least one (an empty message still matches).
static size_t n_pieces(size_t n) { return n == 0 ? 1 : (n + PIECE - 1) / PIECE; }

static void mpi_sendrecv(dpo_dcomm_t *dc, dpo_group_t g, const float *send, size_t n_send,
                         int dst, float *recv, size_t n_recv, int src) {
    // Both peers cut a message at the same PIECE boundaries, so piece p of a send
    // meets piece p of the matching receive; past its last piece a half is off.
    size_t ps = dst < 0 ? 0 : n_pieces(n_send), pr = src < 0 ? 0 : n_pieces(n_recv);
    size_t np = ps > pr ? ps : pr;
    for (size_t p = 0; p < np; p++) {
        size_t i = p * PIECE;
        size_t ks = p < ps ? (n_send - i < PIECE ? n_send - i : PIECE) : 0;
        size_t kr = p < pr ? (n_recv - i < PIECE ? n_recv - i : PIECE) : 0;
        MPI_Sendrecv(ks ? send + i : NULL, (int)ks, MPI_FLOAT, p < ps ? dst : MPI_PROC_NULL, 0,
                     kr ? recv + i : NULL, (int)kr, MPI_FLOAT, p < pr ? src : MPI_PROC_NULL, 0,
                     C(dc, g), MPI_STATUS_IGNORE);
    }
}

static void mpi_copy(dpo_dcomm_t *dc, float *dst, const float *src, size_t n) {
    (void)dc;
    memmove(dst, src, n * sizeof(float));
}

static void mpi_set_deferred(dpo_dcomm_t *dc, bool on) {
    (void)dc;
    (void)on;
}

static void mpi_join(dpo_dcomm_t *dc) { (void)dc; }

static dpo_dcomm_t *mpi_open(const MPI_Comm comm[DPO_N_GROUPS], int owns);

static dpo_dcomm_t *mpi_split(dpo_dcomm_t *dc, dpo_group_t g, int color) {
    MPI_Comm sub[DPO_N_GROUPS] = {MPI_COMM_NULL, MPI_COMM_NULL, MPI_COMM_NULL};
    MPI_Comm_split(C(dc, g), color, dc->rank[g], &sub[DPO_GROUP_WORLD]);
    return mpi_open(sub, 1);
}

static void mpi_free(dpo_dcomm_t *dc) {
    mpi_ctx_t *cx = dc->ctx;
    if (cx->owns)
        for (int g = 0; g < DPO_N_GROUPS; g++)
            if (cx->comm[g] != MPI_COMM_NULL) MPI_Comm_free(&cx->comm[g]);
    free(cx);
    free(dc);
}

static const dpo_dcomm_ops_t MPI_OPS = {
    .name = "mpi",
    .allreduce_f32 = mpi_allreduce,
    .allgather_f32 = mpi_allgather,
    .reduce_scatter_f32 = mpi_reduce_scatter,
    .reduce_scatterv_f32 = mpi_reduce_scatterv,
    .broadcast_f32 = mpi_broadcast,
    .sendrecv_f32 = mpi_sendrecv,
    .copy_f32 = mpi_copy,
    .split = mpi_split,
    .set_deferred = mpi_set_deferred,
    .join = mpi_join,
    .free = mpi_free,
};

static dpo_dcomm_t *mpi_open(const MPI_Comm comm[DPO_N_GROUPS], int owns) {
    dpo_dcomm_t *dc = xcalloc(1, sizeof *dc, "MPI communicator");
    mpi_ctx_t *cx = xcalloc(1, sizeof *cx, "MPI communicator");
    cx->owns = owns;
    for (int g = 0; g < DPO_N_GROUPS; g++) {
        cx->comm[g] = comm[g];
        if (comm[g] == MPI_COMM_NULL) continue;
        MPI_Comm_rank(comm[g], &dc->rank[g]);
        MPI_Comm_size(comm[g], &dc->size[g]);
    }
    dc->ops = &MPI_OPS;
    dc->ctx = cx;
    return dc;
}

dpo_dcomm_t *dcomm_mpi_open(const dpo_mesh_t *mesh) {
    MPI_Comm comm[DPO_N_GROUPS] = {mesh->world, mesh->tp, mesh->dp};
    return mpi_open(comm, 0);
}
