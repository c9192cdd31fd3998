// test_comm_nccl.c — every f32 collective of src/parallel/comm.c through NCCL (device
// buffers, NCCL enabled on the mesh) against the same call through MPI (host
// copies of the same data, which comm.c still sends through MPI with NCCL on).
// Two meshes over the job: TP = world (DP groups of one: the device-to-device copy
// path) and TP = 1 (DP = world), plus a subgroup split (the KV-head sums of
// model.c). Needs one GPU per rank; skips (77) on every rank otherwise. Values are
// multiples of 1/64 below 2^10 in magnitude, summed over a few ranks, so every sum is exact in
// any order and NCCL must match MPI to the bit.
#include <cuda_runtime.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/comm.h"
#include "dpo/mesh.h"
#include "testutil.h"

#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                 \
                    cudaGetErrorString(e_));                                              \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                 \
        }                                                                                 \
    } while (0)

static cudaStream_t g_stream;

static int g_rank(const dpo_mesh_t *m, dpo_group_t g) {
    return g == DPO_GROUP_TP ? m->tp_rank : g == DPO_GROUP_DP ? m->dp_rank : m->world_rank;
}
static int g_size(const dpo_mesh_t *m, dpo_group_t g) {
    return g == DPO_GROUP_TP ? m->tp_size : g == DPO_GROUP_DP ? m->dp_size : m->world_size;
}

// Exact in float, different on every rank and element.
static float val(int rank, size_t i, int salt) {
    return (float)((int)((i * 2654435761u + (size_t)salt * 97u) % 65536u) - 32768) / 64.0f +
           (float)rank;
}

static float *dev_from(const float *h, size_t n) {
    float *d = NULL;
    CK(cudaMalloc((void **)&d, (n ? n : 1) * sizeof(float)));
    if (n) CK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

// Waits for the NCCL work queued on the stream, then compares the device result
// with the MPI one.
static void expect_same(const char *what, dpo_group_t g, size_t n, const float *dev,
                        const float *host) {
    CK(cudaStreamSynchronize(g_stream));
    float *got = malloc((n ? n : 1) * sizeof(float));
    if (n) CK(cudaMemcpy(got, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &host[i], sizeof(float)) != 0 && bad++ == 0) first = i;
    if (bad)
        test_fail(__FILE__, __LINE__, "%s (group %d, n %zu): %zu element(s) differ, first %zu: "
                  "nccl %.9g vs mpi %.9g", what, (int)g, n, bad, first, (double)got[first],
                  (double)host[first]);
    free(got);
}

static void test_group(const dpo_mesh_t *m, dpo_group_t g, size_t n) {
    const int r = g_rank(m, g), p = g_size(m, g);
    const size_t total = n * (size_t)p;
    float *h = malloc((total ? total : 1) * sizeof(float));
    float *h2 = malloc((total ? total : 1) * sizeof(float));

    // all-reduce, sum and max
    for (int op = 0; op < 2; op++) {
        for (size_t i = 0; i < n; i++) h[i] = val(m->world_rank, i, op);
        float *d = dev_from(h, n);
        comm_allreduce_f32(m, g, h, n, (dpo_reduce_t)op);
        comm_allreduce_f32(m, g, d, n, (dpo_reduce_t)op);
        expect_same(op ? "allreduce max" : "allreduce sum", g, n, d, h);
        CK(cudaFree(d));
    }

    // reduce-scatter: send (n * p) -> recv (n)
    for (size_t i = 0; i < total; i++) h[i] = val(m->world_rank, i, 2);
    float *ds = dev_from(h, total), *dr = NULL;
    CK(cudaMalloc((void **)&dr, (n ? n : 1) * sizeof(float)));
    comm_reduce_scatter_f32(m, g, h, h2, n);
    comm_reduce_scatter_f32(m, g, ds, dr, n);
    expect_same("reduce_scatter", g, n, dr, h2);
    CK(cudaFree(ds));
    CK(cudaFree(dr));

    // all-gather out of place: send (n) -> recv (n * p)
    for (size_t i = 0; i < n; i++) h[i] = val(m->world_rank, i, 3);
    ds = dev_from(h, n);
    CK(cudaMalloc((void **)&dr, (total ? total : 1) * sizeof(float)));
    comm_allgather_f32(m, g, h, h2, n);
    comm_allgather_f32(m, g, ds, dr, n);
    expect_same("allgather", g, total, dr, h2);
    CK(cudaFree(ds));
    CK(cudaFree(dr));

    // all-gather in place: this rank's block already sits at buf + r * n
    for (size_t i = 0; i < total; i++) h[i] = -1.0f;
    for (size_t i = 0; i < n; i++) h[(size_t)r * n + i] = val(m->world_rank, i, 4);
    float *db = dev_from(h, total);
    comm_allgather_f32(m, g, h + (size_t)r * n, h, n);
    comm_allgather_f32(m, g, db + (size_t)r * n, db, n);
    expect_same("allgather in place", g, total, db, h);
    CK(cudaFree(db));

    free(h);
    free(h2);
}

// A subgroup of the world split by color, as model.c splits the TP group into the
// ranks that hold the same KV head.
static void test_subgroup(const dpo_mesh_t *m, int color, size_t n) {
    comm_subgroup_t *s = comm_subgroup_split(m, DPO_GROUP_WORLD, color);
    float *h = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = val(m->world_rank, i, 5);
    float *d = dev_from(h, n);
    comm_subgroup_allreduce_f32(s, h, n, DPO_REDUCE_SUM);
    comm_subgroup_allreduce_f32(s, d, n, DPO_REDUCE_SUM);
    expect_same("subgroup allreduce", DPO_GROUP_WORLD, n, d, h);
    CK(cudaFree(d));
    free(h);
    comm_subgroup_free(s);
}

static void run_mesh(int tp) {
    dpo_mesh_t m;
    mesh_init(&m, tp);
    mesh_enable_nccl(&m, g_stream);
    CHECK(m.nccl == 1);
    const size_t sizes[] = {0, 1, 1000, ((size_t)1 << 20) + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int g = 0; g < 3; g++) test_group(&m, (dpo_group_t)g, sizes[k]);
        test_subgroup(&m, 0, sizes[k]);                  // the whole world
        test_subgroup(&m, m.world_rank, sizes[k]);       // one rank each: no-op
        test_subgroup(&m, m.world_rank % 2, sizes[k]);   // every other rank
    }
    mesh_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
    int local_rank, local_size;
    MPI_Comm_rank(local, &local_rank);
    MPI_Comm_size(local, &local_size);
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    // One GPU per rank of the node, on every node, or nobody runs.
    int enough = n >= local_size && world >= 2, all = 0;
    MPI_Allreduce(&enough, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (!all) {
        if (rank == 0)
            printf("test_comm_nccl: needs >= 2 ranks and one GPU per rank (this rank sees %d "
                   "for %d local rank(s)): skipped\n", n, local_size);
        MPI_Comm_free(&local);
        MPI_Finalize();
        return TEST_SKIP_CODE;
    }
    CK(cudaSetDevice(local_rank));
    CK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    run_mesh(world);  // TP = world: DP groups of one rank
    run_mesh(1);      // DP = world
    if (world % 2 == 0 && world > 2) run_mesh(2);
    CK(cudaStreamDestroy(g_stream));
    MPI_Comm_free(&local);
    int rc = test_finish("test_comm_nccl");
    MPI_Finalize();
    return rc;
}
