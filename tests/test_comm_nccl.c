// test_comm_nccl.c — every NCCL device collective (cuda/dcomm_nccl.cu, on a CUDA
// backend instance's buffers) against the MPI device collectives (dcomm_mpi.c) on
// host copies of the same data: all-reduce (sum, max), reduce-scatter, the
// unequal-count reduce-scatter, all-gather out of place and in place, broadcast,
// send/recv and sendrecv, splits (the KV-head sums of model.c), and a deferred
// all-reduce that only join makes visible to the compute stream. Two or three
// meshes over the job: TP = world (DP groups of one: the copy path), TP = 1, and
// TP = 2 at 4+ ranks. Needs one GPU per rank; skips (77) on every rank otherwise.
// Values are multiples of 1/64 below 2^10 in magnitude, summed over a few ranks,
// so every sum is exact in any order and NCCL must match MPI to the bit. No CUDA
// runtime here: buffers go through the backend's own ops.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/backend_cuda.h"
#include "dpo/comm.h"
#include "dpo/dcomm.h"
#include "dpo/mesh.h"
#include "testutil.h"

static dpo_backend_t *GPU;

// Exact in float, different on every rank and element.
static float val(int rank, size_t i, int salt) {
    return (float)((int)((i * 2654435761u + (size_t)salt * 97u) % 65536u) - 32768) / 64.0f +
           (float)rank;
}

static float *hbuf(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) exit(1);
    return p;
}

static float *up(const float *h, size_t n) {
    float *d = dpo_alloc(GPU, (n ? n : 1) * sizeof(float));
    if (n) dpo_to_device(GPU, d, h, n * sizeof(float));
    return d;
}

// The device result (after the compute stream's work: to_host waits for it)
// against the MPI one.
static void expect_same(const char *what, dpo_group_t g, size_t n, const float *dev,
                        const float *host) {
    float *got = hbuf(n);
    if (n) dpo_to_host(GPU, got, dev, n * sizeof(float));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &host[i], sizeof(float)) != 0 && bad++ == 0) first = i;
    if (bad)
        test_fail(__FILE__, __LINE__, "%s (group %d, n %zu): %zu element(s) differ, first %zu: "
                  "nccl %.9g vs mpi %.9g", what, (int)g, n, bad, first, (double)got[first],
                  (double)host[first]);
    free(got);
}

static void test_group(dpo_dcomm_t *nc, dpo_dcomm_t *mc, int wr, dpo_group_t g, size_t n) {
    const int r = mc->rank[g], p = mc->size[g];
    CHECK(nc->rank[g] == r && nc->size[g] == p);
    const size_t total = n * (size_t)p;
    float *h = hbuf(total), *h2 = hbuf(total);

    for (int op = 0; op < 2; op++) {
        for (size_t i = 0; i < n; i++) h[i] = val(wr, i, op);
        float *d = up(h, n);
        dcomm_allreduce_f32(mc, g, h, n, (dpo_reduce_t)op);
        dcomm_allreduce_f32(nc, g, d, n, (dpo_reduce_t)op);
        expect_same(op ? "allreduce max" : "allreduce sum", g, n, d, h);
        dpo_free(GPU, d);
    }

    for (size_t i = 0; i < total; i++) h[i] = val(wr, i, 2);
    float *ds = up(h, total), *dr = up(h2, n);
    dcomm_reduce_scatter_f32(mc, g, h, h2, n);
    dcomm_reduce_scatter_f32(nc, g, ds, dr, n);
    expect_same("reduce_scatter", g, n, dr, h2);
    dpo_free(GPU, ds), dpo_free(GPU, dr);

    size_t *counts = malloc((size_t)p * sizeof(size_t)), all = 0;
    for (int q = 0; q < p; q++) all += counts[q] = (size_t)q * n / 2 + (q == 0);
    float *vs = hbuf(all), *vr = hbuf(counts[r]);
    for (size_t i = 0; i < all; i++) vs[i] = val(wr, i, 3);
    float *dvs = up(vs, all), *dvr = up(vr, counts[r]);
    dcomm_reduce_scatterv_f32(mc, g, vs, vr, counts);
    dcomm_reduce_scatterv_f32(nc, g, dvs, dvr, counts);
    expect_same("reduce_scatterv", g, counts[r], dvr, vr);
    dpo_free(GPU, dvs), dpo_free(GPU, dvr), free(vs), free(vr), free(counts);

    for (size_t i = 0; i < n; i++) h[i] = val(wr, i, 4);
    ds = up(h, n);
    dr = up(h2, total);
    dcomm_allgather_f32(mc, g, h, h2, n);
    dcomm_allgather_f32(nc, g, ds, dr, n);
    expect_same("allgather", g, total, dr, h2);
    dpo_free(GPU, ds), dpo_free(GPU, dr);

    for (size_t i = 0; i < total; i++) h[i] = -1.0f;
    for (size_t i = 0; i < n; i++) h[(size_t)r * n + i] = val(wr, i, 5);
    float *db = up(h, total);
    dcomm_allgather_f32(mc, g, h + (size_t)r * n, h, n);
    dcomm_allgather_f32(nc, g, db + (size_t)r * n, db, n);
    expect_same("allgather in place", g, total, db, h);
    dpo_free(GPU, db);

    for (int root = 0; root < p; root++) {
        for (size_t i = 0; i < n; i++) h[i] = val(wr, i, 6);
        db = up(h, n);
        dcomm_broadcast_f32(mc, g, h, n, root);
        dcomm_broadcast_f32(nc, g, db, n, root);
        expect_same("broadcast", g, n, db, h);
        dpo_free(GPU, db);
    }

    if (p > 1) {
        int next = (r + 1) % p, prev = (r + p - 1) % p;
        for (size_t i = 0; i < n; i++) h[i] = val(wr, i, 7);
        ds = up(h, n);
        dr = up(h2, n);
        dcomm_sendrecv_f32(mc, g, h, n, next, h2, n, prev);
        dcomm_sendrecv_f32(nc, g, ds, n, next, dr, n, prev);
        expect_same("sendrecv", g, n, dr, h2);
        if (r % 2 == 0) {
            dcomm_send_f32(nc, g, ds, n, next);
            dcomm_recv_f32(nc, g, dr, n, prev);
        } else {
            dcomm_recv_f32(nc, g, dr, n, prev);
            dcomm_send_f32(nc, g, ds, n, next);
        }
        expect_same("send / recv", g, n, dr, h2);
        dpo_free(GPU, ds), dpo_free(GPU, dr);
    }

    // Deferred: the compute stream's next work waits only after join.
    for (size_t i = 0; i < n; i++) h[i] = val(wr, i, 8);
    db = up(h, n);
    dcomm_allreduce_f32(mc, g, h, n, DPO_REDUCE_SUM);
    dcomm_defer_begin(nc);
    dcomm_allreduce_f32(nc, g, db, n, DPO_REDUCE_SUM);
    dcomm_defer_end(nc);
    dcomm_join(nc);
    expect_same("deferred allreduce", g, n, db, h);
    dpo_free(GPU, db);
    free(h), free(h2);
}

static void test_split(dpo_dcomm_t *nc, dpo_dcomm_t *mc, int wr, dpo_group_t g, int color,
                       size_t n) {
    dpo_dcomm_t *ns = dcomm_split(nc, g, color), *ms = dcomm_split(mc, g, color);
    CHECK(ns->size[DPO_GROUP_WORLD] == ms->size[DPO_GROUP_WORLD]);
    float *h = hbuf(n);
    for (size_t i = 0; i < n; i++) h[i] = val(wr, i, 9);
    float *d = up(h, n);
    dcomm_allreduce_f32(ms, DPO_GROUP_WORLD, h, n, DPO_REDUCE_SUM);
    dcomm_allreduce_f32(ns, DPO_GROUP_WORLD, d, n, DPO_REDUCE_SUM);
    expect_same("split allreduce", g, n, d, h);
    dpo_free(GPU, d);
    free(h);
    dcomm_free(ns);
    dcomm_free(ms);
}

static void run_mesh(int tp) {
    dpo_mesh_t m;
    mesh_init(&m, tp);
    char err[1024] = "";
    dpo_dcomm_t *nc = dcomm_nccl_open(&m, GPU, err, sizeof err);
    CHECK(nc != NULL);
    if (!nc) {
        fprintf(stderr, "dcomm_nccl_open: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    CHECK(strcmp(dcomm_name(nc), "nccl") == 0);
    dpo_dcomm_t *mc = m.dcomm;   // the MPI one of mesh_init, on host copies
    const size_t sizes[] = {0, 1, 1000, ((size_t)1 << 20) + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int g = 0; g < DPO_N_GROUPS; g++) {
            test_group(nc, mc, m.world_rank, (dpo_group_t)g, sizes[k]);
            test_split(nc, mc, m.world_rank, (dpo_group_t)g, 0, sizes[k]);
            test_split(nc, mc, m.world_rank, (dpo_group_t)g, mc->rank[g], sizes[k]);
            test_split(nc, mc, m.world_rank, (dpo_group_t)g, mc->rank[g] % 2, sizes[k]);
        }
    dcomm_free(nc);
    mesh_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    comm_errors_init();
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
    int local_rank, local_size;
    MPI_Comm_rank(local, &local_rank);
    MPI_Comm_size(local, &local_size);
    int n = backend_cuda_device_count();
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
    char err[1024] = "";
    GPU = backend_cuda_open(local_rank, DPO_MATMUL_FP32, err, sizeof err);
    if (!GPU) {
        fprintf(stderr, "backend_cuda_open: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    run_mesh(world);  // TP = world: DP groups of one rank
    run_mesh(1);      // DP = world
    if (world % 2 == 0 && world > 2) run_mesh(2);
    backend_cuda_close(GPU);
    MPI_Comm_free(&local);
    int rc = test_finish("test_comm_nccl");
    MPI_Finalize();
    return rc;
}
