// comm.c — collectives over MPI for the CPU backend (buffers are host memory).
// Every call on a group of one rank returns at once.
#include "dpo/comm.h"

#include <stdlib.h>

#include "dpo/error.h"

static MPI_Comm group_comm(const dpo_mesh_t *m, comm_group_t g) {
    switch (g) {
        case GROUP_TP: return m->tp;
        case GROUP_DP: return m->dp;
        default: return m->world;
    }
}

static int group_size(const dpo_mesh_t *m, comm_group_t g) {
    switch (g) {
        case GROUP_TP: return m->tp_size;
        case GROUP_DP: return m->dp_size;
        default: return m->world_size;
    }
}

static int group_rank(const dpo_mesh_t *m, comm_group_t g) {
    switch (g) {
        case GROUP_TP: return m->tp_rank;
        case GROUP_DP: return m->dp_rank;
        default: return m->world_rank;
    }
}

static MPI_Op mpi_op(comm_reduce_t op) { return op == REDUCE_MAX ? MPI_MAX : MPI_SUM; }

// MPI counts are int: large buffers go in pieces.
#define COMM_PIECE ((size_t)1 << 30)

void comm_allreduce_f32(const dpo_mesh_t *m, comm_group_t g, float *buf, size_t n,
                        comm_reduce_t op) {
    if (group_size(m, g) == 1) return;
    for (size_t i = 0; i < n; i += COMM_PIECE) {
        size_t k = n - i < COMM_PIECE ? n - i : COMM_PIECE;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, mpi_op(op), group_comm(m, g));
    }
}

void comm_allreduce_f64(const dpo_mesh_t *m, comm_group_t g, double *buf, size_t n,
                        comm_reduce_t op) {
    if (group_size(m, g) == 1) return;
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, mpi_op(op), group_comm(m, g));
}

void comm_broadcast(const dpo_mesh_t *m, comm_group_t g, void *buf, size_t bytes, int root) {
    if (group_size(m, g) == 1) return;
    char *p = buf;
    for (size_t i = 0; i < bytes; i += COMM_PIECE) {
        size_t k = bytes - i < COMM_PIECE ? bytes - i : COMM_PIECE;
        MPI_Bcast(p + i, (int)k, MPI_BYTE, root, group_comm(m, g));
    }
}

void comm_allgather_f32(const dpo_mesh_t *m, comm_group_t g, const float *send, float *recv,
                        size_t n) {
    if (n > (size_t)0x7fffffff) dpo_fatal("comm_allgather_f32: %zu elements exceed one MPI call", n);
    if (group_size(m, g) == 1) {
        if (recv != send)
            for (size_t i = 0; i < n; i++) recv[i] = send[i];
        return;
    }
    // In place when send is this rank's own block of recv.
    const void *sb = send == recv + (size_t)group_rank(m, g) * n ? MPI_IN_PLACE : (const void *)send;
    MPI_Allgather(sb, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, group_comm(m, g));
}

void comm_reduce_scatter_f32(const dpo_mesh_t *m, comm_group_t g, const float *send, float *recv,
                             size_t n) {
    if (n > (size_t)0x7fffffff) dpo_fatal("comm_reduce_scatter_f32: %zu elements exceed one MPI call", n);
    if (group_size(m, g) == 1) {
        if (recv != send)
            for (size_t i = 0; i < n; i++) recv[i] = send[i];
        return;
    }
    MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, group_comm(m, g));
}

int comm_all_ok(const dpo_mesh_t *m, comm_group_t g, int ok) {
    if (group_size(m, g) == 1) return ok;
    int all = ok ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_LAND, group_comm(m, g));
    return all;
}
