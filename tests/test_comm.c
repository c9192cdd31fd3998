// test_comm.c — the collectives of src/parallel/comm.c on a real mesh: all-reduce,
// reduce-scatter (each rank receives the sum of its block) and all-gather (out of
// place and in place, send being the rank's own block of recv), over the world,
// TP and DP groups. At any rank count; with 4 ranks the mesh is TP=2 x DP=2, so
// every group is a proper subset of the world. Values are small integers, so every
// sum is exact and results must match to the bit.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "dpo/comm.h"
#include "dpo/mesh.h"
#include "testutil.h"

static int g_rank(const dpo_mesh_t *m, dpo_group_t g) {
    return g == DPO_GROUP_TP ? m->tp_rank : g == DPO_GROUP_DP ? m->dp_rank : m->world_rank;
}
static int g_size(const dpo_mesh_t *m, dpo_group_t g) {
    return g == DPO_GROUP_TP ? m->tp_size : g == DPO_GROUP_DP ? m->dp_size : m->world_size;
}

// The value rank r of a group contributes at element i (exact in float).
static float val(int r, size_t i) { return (float)((r + 1) * 1000 + (int)(i % 997)); }

static void test_group(const dpo_mesh_t *m, dpo_group_t g, size_t n) {
    const int r = g_rank(m, g), p = g_size(m, g);
    const size_t total = n * (size_t)p;
    float *send = malloc(total * sizeof(float));
    float *recv = malloc(total * sizeof(float));
    float *buf = malloc(total * sizeof(float));
    if (!send || !recv || !buf) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }

    // reduce-scatter: rank r receives sum over ranks q of send_q[r*n : (r+1)*n]
    for (size_t i = 0; i < total; i++) send[i] = val(r, i);
    comm_reduce_scatter_f32(m, g, send, recv, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = 0.0f;
        for (int q = 0; q < p; q++) want += val(q, (size_t)r * n + i);
        if (recv[i] != want) bad++;
    }
    CHECK(bad == 0);

    // all-gather out of place: recv = concatenation of every rank's block
    for (size_t i = 0; i < n; i++) send[i] = val(r, i) + 0.5f;
    comm_allgather_f32(m, g, send, recv, n);
    bad = 0;
    for (int q = 0; q < p; q++)
        for (size_t i = 0; i < n; i++)
            if (recv[(size_t)q * n + i] != val(q, i) + 0.5f) bad++;
    CHECK(bad == 0);

    // all-gather in place: this rank's block already sits at buf + r*n
    for (size_t i = 0; i < total; i++) buf[i] = -1.0f;
    for (size_t i = 0; i < n; i++) buf[(size_t)r * n + i] = val(r, i) - 0.25f;
    comm_allgather_f32(m, g, buf + (size_t)r * n, buf, n);
    bad = 0;
    for (int q = 0; q < p; q++)
        for (size_t i = 0; i < n; i++)
            if (buf[(size_t)q * n + i] != val(q, i) - 0.25f) bad++;
    CHECK(bad == 0);

    // reduce-scatter followed by in-place all-gather = all-reduce (the ZeRO-1 pair)
    for (size_t i = 0; i < total; i++) send[i] = buf[i] = val(r, i);
    comm_allreduce_f32(m, g, buf, total, DPO_REDUCE_SUM);
    comm_reduce_scatter_f32(m, g, send, recv + (size_t)r * n, n);
    comm_allgather_f32(m, g, recv + (size_t)r * n, recv, n);
    bad = 0;
    for (size_t i = 0; i < total; i++)
        if (recv[i] != buf[i]) bad++;
    CHECK(bad == 0);

    free(send);
    free(recv);
    free(buf);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    dpo_mesh_t mesh;
    mesh_init(&mesh, world % 2 == 0 ? 2 : 1);
    const size_t sizes[] = {1, 7, 4096 + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        test_group(&mesh, DPO_GROUP_WORLD, sizes[k]);
        test_group(&mesh, DPO_GROUP_TP, sizes[k]);
        test_group(&mesh, DPO_GROUP_DP, sizes[k]);
    }
    mesh_free(&mesh);
    int rc = test_finish("test_comm");
    int any = rc;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
