// comm.c — collectives. MPI carries host buffers (all of them on the CPU backend);
// with NCCL enabled on the mesh (CUDA backend), device buffers go through NCCL on
// the backend's compute stream. Every call on a group of one rank returns at once.
#include "dpo/comm.h"

#include <stdlib.h>

#include "dpo/error.h"

#ifdef DPO_HAVE_NCCL
#include "nccl_check.h"
#endif

static MPI_Comm group_comm(const dpo_mesh_t *m, dpo_group_t g) {
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

static void *group_nccl(const dpo_mesh_t *m, dpo_group_t g) {
    switch (g) {
        case DPO_GROUP_TP: return m->nccl_tp;
        case DPO_GROUP_DP: return m->nccl_dp;
        default: return m->nccl_world;
    }
}

static MPI_Op mpi_op(dpo_reduce_t op) { return op == DPO_REDUCE_MAX ? MPI_MAX : MPI_SUM; }

// MPI counts are int: large buffers go in pieces.
#define COMM_PIECE ((size_t)1 << 30)

// ---- the NCCL side (device buffers once mesh_enable_nccl ran) ----

#ifdef DPO_HAVE_NCCL
// Device (or managed) memory that NCCL can read; plain host memory is not.
static int on_device(const void *p) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();  // unknown pointer: host memory; leave no sticky error
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

// Whether NCCL carries a call on buffers a and b (b may equal a): only when NCCL
// is on and the data lives on the device. The f32 calls also see host arrays
// (log-prob statistics, reference values), which stay on MPI.
static int use_nccl(int nccl_on, const void *a, const void *b, const char *what) {
    if (!nccl_on) return 0;
    int da = on_device(a), db = b == a ? da : on_device(b);
    if (da != db)
        dpo_fatal("%s: one buffer is in device memory and the other in host memory", what);
    return da;
}

static ncclRedOp_t nccl_op(dpo_reduce_t op) { return op == DPO_REDUCE_MAX ? ncclMax : ncclSum; }

static void nccl_allreduce(void *comm, void *stream, float *buf, size_t n, dpo_reduce_t op) {
    if (n == 0) return;
    DPO_NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat, nccl_op(op), (ncclComm_t)comm,
                                 (cudaStream_t)stream));
}
#else
static int use_nccl(int nccl_on, const void *a, const void *b, const char *what) {
    (void)a;
    (void)b;
    if (nccl_on) dpo_fatal("%s: NCCL enabled in a build without NCCL", what);
    return 0;
}

static void nccl_allreduce(void *comm, void *stream, float *buf, size_t n, dpo_reduce_t op) {
    (void)comm;
    (void)stream;
    (void)buf;
    (void)n;
    (void)op;
}
#endif

// Host-side (MPI) in-place all-reduce, in int-sized pieces.
static void mpi_allreduce_f32(MPI_Comm c, float *buf, size_t n, dpo_reduce_t op) {
    for (size_t i = 0; i < n; i += COMM_PIECE) {
        size_t k = n - i < COMM_PIECE ? n - i : COMM_PIECE;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, mpi_op(op), c);
    }
}

// recv = send (n floats) for a group of one rank.
static void copy_f32(int nccl_on, const float *send, float *recv, size_t n, void *stream,
                     const char *what) {
    if (recv == send) return;
    if (use_nccl(nccl_on, send, recv, what)) {
#ifdef DPO_HAVE_NCCL
        DPO_CUDART_CHECK(cudaMemcpyAsync(recv, send, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                         (cudaStream_t)stream));
#endif
        return;
    }
    (void)stream;
    for (size_t i = 0; i < n; i++) recv[i] = send[i];
}

void comm_allreduce_f32(const dpo_mesh_t *m, dpo_group_t g, float *buf, size_t n,
                        dpo_reduce_t op) {
    if (group_size(m, g) == 1) return;
    if (use_nccl(m->nccl, buf, buf, "comm_allreduce_f32"))
        nccl_allreduce(group_nccl(m, g), m->stream, buf, n, op);
    else
        mpi_allreduce_f32(group_comm(m, g), buf, n, op);
}

void comm_allreduce_f64(const dpo_mesh_t *m, dpo_group_t g, double *buf, size_t n,
                        dpo_reduce_t op) {
    if (group_size(m, g) == 1) return;
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, mpi_op(op), group_comm(m, g));
}

void comm_broadcast(const dpo_mesh_t *m, dpo_group_t g, void *buf, size_t bytes, int root) {
    if (group_size(m, g) == 1) return;
    char *p = buf;
    for (size_t i = 0; i < bytes; i += COMM_PIECE) {
        size_t k = bytes - i < COMM_PIECE ? bytes - i : COMM_PIECE;
        MPI_Bcast(p + i, (int)k, MPI_BYTE, root, group_comm(m, g));
    }
}

void comm_allgather_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send, float *recv,
                        size_t n) {
    // One MPI call per buffer (NCCL counts are size_t, so only MPI has the limit).
    if (!m->nccl && n > (size_t)0x7fffffff)
        dpo_fatal("comm_allgather_f32: %zu elements exceed one MPI call", n);
    if (group_size(m, g) == 1) {
        copy_f32(m->nccl, send, recv, n, m->stream, "comm_allgather_f32");
        return;
    }
    if (use_nccl(m->nccl, send, recv, "comm_allgather_f32")) {
#ifdef DPO_HAVE_NCCL
        // NCCL is in place by itself when send == recv + rank * n; counts are size_t.
        if (n > 0)
            DPO_NCCL_CHECK(ncclAllGather(send, recv, n, ncclFloat, (ncclComm_t)group_nccl(m, g),
                                         (cudaStream_t)m->stream));
#endif
        return;
    }
    // In place when send is this rank's own block of recv.
    const void *sb = send == recv + (size_t)group_rank(m, g) * n ? MPI_IN_PLACE : (const void *)send;
    MPI_Allgather(sb, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, group_comm(m, g));
}

void comm_reduce_scatter_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send, float *recv,
                             size_t n) {
    // One MPI call per buffer (NCCL counts are size_t, so only MPI has the limit).
    if (!m->nccl && n > (size_t)0x7fffffff)
        dpo_fatal("comm_reduce_scatter_f32: %zu elements exceed one MPI call", n);
    if (group_size(m, g) == 1) {
        copy_f32(m->nccl, send, recv, n, m->stream, "comm_reduce_scatter_f32");
        return;
    }
    if (use_nccl(m->nccl, send, recv, "comm_reduce_scatter_f32")) {
#ifdef DPO_HAVE_NCCL
        if (n > 0)
            DPO_NCCL_CHECK(ncclReduceScatter(send, recv, n, ncclFloat, ncclSum,
                                             (ncclComm_t)group_nccl(m, g), (cudaStream_t)m->stream));
#endif
        return;
    }
    MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, group_comm(m, g));
}

void comm_reduce_scatterv_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send,
                              float *recv, const size_t *counts) {
    int P = group_size(m, g);
    size_t total = 0;
    for (int r = 0; r < P; r++) total += counts[r];
    if (!m->nccl && total > (size_t)0x7fffffff)
        dpo_fatal("comm_reduce_scatterv_f32: %zu elements exceed one MPI call", total);
    if (P == 1) {
        copy_f32(m->nccl, send, recv, counts[0], m->stream, "comm_reduce_scatterv_f32");
        return;
    }
    int me = 0;
    MPI_Comm_rank(group_comm(m, g), &me);
    if (use_nccl(m->nccl, send, recv, "comm_reduce_scatterv_f32")) {
#ifdef DPO_HAVE_NCCL
        // NCCL has no reduce-scatter with unequal counts: one reduce per owner, grouped.
        DPO_NCCL_CHECK(ncclGroupStart());
        size_t at = 0;
        for (int r = 0; r < P; r++) {
            if (counts[r] > 0)
                DPO_NCCL_CHECK(ncclReduce(send + at, r == me ? recv : NULL, counts[r], ncclFloat,
                                          ncclSum, r, (ncclComm_t)group_nccl(m, g),
                                          (cudaStream_t)m->stream));
            at += counts[r];
        }
        DPO_NCCL_CHECK(ncclGroupEnd());
#endif
        return;
    }
    int *rc = xmalloc((size_t)P * sizeof(int), "reduce-scatter counts");
    for (int r = 0; r < P; r++) rc[r] = (int)counts[r];
    MPI_Reduce_scatter(send, recv, rc, MPI_FLOAT, MPI_SUM, group_comm(m, g));
    free(rc);
}

int comm_all_ok(const dpo_mesh_t *m, dpo_group_t g, int ok) {
    if (group_size(m, g) == 1) return ok;
    int all = ok ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_LAND, group_comm(m, g));
    return all;
}

// ---- subgroups ----

struct comm_subgroup {
    MPI_Comm comm;
    int size;
    int nccl_on;     // the mesh's NCCL state when the subgroup was made
    void *nccl;      // ncclComm_t, NULL for one rank or without NCCL
    void *stream;
};

comm_subgroup_t *comm_subgroup_split(const dpo_mesh_t *m, dpo_group_t g, int color) {
    comm_subgroup_t *s = xcalloc(1, sizeof *s, "communicator subgroup");
    MPI_Comm_split(group_comm(m, g), color, group_rank(m, g), &s->comm);
    MPI_Comm_size(s->comm, &s->size);
    s->nccl_on = m->nccl;
    s->stream = m->stream;
    // Every rank of g splits, so every subgroup creates its NCCL communicator at once.
    if (m->nccl) s->nccl = mesh_nccl_create(s->comm);
    return s;
}

void comm_subgroup_free(comm_subgroup_t *s) {
    if (!s) return;
    mesh_nccl_destroy(s->nccl, s->stream);
    MPI_Comm_free(&s->comm);
    free(s);
}

int comm_subgroup_size(const comm_subgroup_t *s) { return s->size; }

void comm_subgroup_allreduce_f32(const comm_subgroup_t *s, float *buf, size_t n,
                                 dpo_reduce_t op) {
    if (s->size == 1) return;
    if (use_nccl(s->nccl_on, buf, buf, "comm_subgroup_allreduce_f32"))
        nccl_allreduce(s->nccl, s->stream, buf, n, op);
    else
        mpi_allreduce_f32(s->comm, buf, n, op);
}
