// test_comm.c — every collective on a real mesh, against values computed here from
// what each rank contributes:
//   host (comm.h):   all-reduce f32/f64 (sum, max), all-gather, broadcast from
//                    every root, all_ok, agreement (the lowest failing rank's
//                    message, named);
//   device (dcomm.h, the MPI implementation): all-reduce (sum, max), all-gather out
//                    of place and in place, reduce-scatter, reduce-scatter with
//                    unequal (and empty) counts, broadcast from every root, send /
//                    recv around a ring, sendrecv exchanges, a split and its
//                    all-reduce, deferred collectives and join.
// Over the world, TP and DP groups; at 4 ranks the mesh is TP=2 x DP=2, so every
// group is a proper subset of the world. Values are small integers, so every sum
// is exact and results must match to the bit.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/comm.h"
#include "dpo/dcomm.h"
#include "dpo/mesh.h"
#include "testutil.h"

static int g_rank(const dpo_mesh_t *m, dpo_group_t g) {
    return g == DPO_GROUP_TP ? m->tp_rank : g == DPO_GROUP_DP ? m->dp_rank : m->world_rank;
}
static int g_size(const dpo_mesh_t *m, dpo_group_t g) {
    return g == DPO_GROUP_TP ? m->tp_size : g == DPO_GROUP_DP ? m->dp_size : m->world_size;
}

// The value group rank r contributes at element i in test `t` (exact in float).
static float val(int r, size_t i, int t) {
    return (float)((r + 1) * 1000 + (int)(i % 997) + 7 * t) * ((i + (size_t)r) % 3 == 1 ? -1.0f : 1.0f);
}

static float *fbuf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

// Counts the mismatches of got against want.
static int mismatches(const float *got, const float *want, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += got[i] != want[i];
    return bad;
}

// ---------------------------------------------------------------- host ----

// buf (n) = this rank's contribution to test `op`; want = the sum (op 0) or the
// max (op 1) of every rank's.
static void fill_allreduce(float *buf, float *want, int r, int p, size_t n, int op) {
    for (size_t i = 0; i < n; i++) {
        buf[i] = val(r, i, op);
        want[i] = val(0, i, op);
        for (int q = 1; q < p; q++) {
            float v = val(q, i, op);
            want[i] = op ? (v > want[i] ? v : want[i]) : want[i] + v;
        }
    }
}

static void test_host(const dpo_mesh_t *m, dpo_group_t g, size_t n) {
    const int r = g_rank(m, g), p = g_size(m, g);
    float *buf = fbuf(n * (size_t)p), *want = fbuf(n * (size_t)p);
    for (int op = 0; op < 2; op++) {
        fill_allreduce(buf, want, r, p, n, op);
        comm_allreduce_f32(m, g, buf, n, op ? DPO_REDUCE_MAX : DPO_REDUCE_SUM);
        CHECK(mismatches(buf, want, n) == 0);
        double d[3] = {val(r, 0, op), 0.5 * r, -(double)r};
        comm_allreduce_f64(m, g, d, 3, op ? DPO_REDUCE_MAX : DPO_REDUCE_SUM);
        double w0 = 0, w1 = 0, w2 = 0, m0 = val(0, 0, op);
        for (int q = 0; q < p; q++) {
            w0 += val(q, 0, op), w1 += 0.5 * q, w2 -= q;
            if (val(q, 0, op) > m0) m0 = val(q, 0, op);
        }
        if (op) CHECK(d[0] == m0 && d[1] == 0.5 * (p - 1) && d[2] == 0.0);
        else CHECK(d[0] == w0 && d[1] == w1 && d[2] == w2);
    }
    // all-gather (host)
    for (size_t i = 0; i < n; i++) buf[i] = val(r, i, 3);
    float *all = fbuf(n * (size_t)p);
    comm_allgather_f32(m, g, buf, all, n);
    for (int q = 0; q < p; q++)
        for (size_t i = 0; i < n; i++) want[(size_t)q * n + i] = val(q, i, 3);
    CHECK(mismatches(all, want, n * (size_t)p) == 0);
    free(all);
    // broadcast from every root
    for (int root = 0; root < p; root++) {
        for (size_t i = 0; i < n; i++) buf[i] = val(r, i, 4);
        comm_broadcast(m, g, buf, n * sizeof(float), root);
        for (size_t i = 0; i < n; i++) want[i] = val(root, i, 4);
        CHECK(mismatches(buf, want, n) == 0);
    }
    free(buf);
    free(want);
}

// all_ok and the agreement, failing on one rank at a time and on none.
static void test_agreement(const dpo_mesh_t *m, dpo_group_t g) {
    const int r = g_rank(m, g), p = g_size(m, g);
    CHECK(comm_all_ok(m, g, true));
    char err[256];
    snprintf(err, sizeof err, "untouched");
    CHECK(comm_agree(m, g, true, err, sizeof err));
    CHECK(strcmp(err, "untouched") == 0);
    for (int bad = 0; bad < p; bad++) {
        CHECK(comm_all_ok(m, g, r != bad) == false);
        // Ranks bad and bad + 1 fail: the lower one's message reaches everyone.
        bool ok = r != bad && r != bad + 1;
        snprintf(err, sizeof err, ok ? "" : "cannot open file.h5 (from group rank %d)", r);
        CHECK(!comm_agree(m, g, ok, err, sizeof err));
        char want[256];
        if (bad == 0) snprintf(want, sizeof want, "cannot open file.h5 (from group rank 0)");
        else snprintf(want, sizeof want, "cannot open file.h5 (from group rank %d) [rank %d]", bad, bad);
        CHECK(strcmp(err, want) == 0);
        if (strcmp(err, want) != 0) fprintf(stderr, "agree: got '%s', want '%s'\n", err, want);
    }
    // The MPI form over the group's communicator is the same helper.
    CHECK(comm_agree_mpi(comm_mpi(m, g), true, err, sizeof err));
}

// --------------------------------------------------------------- device ----

static void test_device(const dpo_mesh_t *m, dpo_group_t g, size_t n) {
    dpo_dcomm_t *dc = m->dcomm;
    const int r = g_rank(m, g), p = g_size(m, g);
    CHECK(dc->rank[g] == r && dc->size[g] == p);
    const size_t total = n * (size_t)p;
    float *send = fbuf(total), *recv = fbuf(total), *buf = fbuf(total), *want = fbuf(total);

    for (int op = 0; op < 2; op++) {
        fill_allreduce(buf, want, r, p, n, op);
        dcomm_allreduce_f32(dc, g, buf, n, op ? DPO_REDUCE_MAX : DPO_REDUCE_SUM);
        CHECK(mismatches(buf, want, n) == 0);
    }

    // reduce-scatter: rank r receives the sum over ranks q of send_q[r*n : (r+1)*n]
    for (size_t i = 0; i < total; i++) send[i] = val(r, i, 2);
    dcomm_reduce_scatter_f32(dc, g, send, recv, n);
    for (size_t i = 0; i < n; i++) {
        want[i] = 0.0f;
        for (int q = 0; q < p; q++) want[i] += val(q, (size_t)r * n + i, 2);
    }
    CHECK(mismatches(recv, want, n) == 0);

    // reduce-scatter with unequal counts: block q holds q * n / 2 + (q == 0) elements
    // (some empty when n is small); rank r receives the sum of its block.
    size_t *counts = malloc((size_t)p * sizeof(size_t)), at = 0, mine = 0;
    for (int q = 0; q < p; q++) {
        counts[q] = (size_t)q * n / 2 + (q == 0);
        if (q < r) mine += counts[q];
        at += counts[q];
    }
    float *vs = fbuf(at), *vr = fbuf(counts[r]);
    for (size_t i = 0; i < at; i++) vs[i] = val(r, i, 3);
    dcomm_reduce_scatterv_f32(dc, g, vs, vr, counts);
    int bad = 0;
    for (size_t i = 0; i < counts[r]; i++) {
        float w = 0.0f;
        for (int q = 0; q < p; q++) w += val(q, mine + i, 3);
        bad += vr[i] != w;
    }
    CHECK(bad == 0);
    free(vs), free(vr), free(counts);

    // all-gather out of place, then in place (this rank's block already at buf + r*n)
    for (size_t i = 0; i < n; i++) send[i] = val(r, i, 4);
    dcomm_allgather_f32(dc, g, send, recv, n);
    for (int q = 0; q < p; q++)
        for (size_t i = 0; i < n; i++) want[(size_t)q * n + i] = val(q, i, 4);
    CHECK(mismatches(recv, want, total) == 0);
    for (size_t i = 0; i < total; i++) buf[i] = -1.0f;
    memcpy(buf + (size_t)r * n, send, n * sizeof(float));
    dcomm_allgather_f32(dc, g, buf + (size_t)r * n, buf, n);
    CHECK(mismatches(buf, want, total) == 0);

    // broadcast from every root
    for (int root = 0; root < p; root++) {
        for (size_t i = 0; i < n; i++) buf[i] = val(r, i, 5);
        dcomm_broadcast_f32(dc, g, buf, n, root);
        for (size_t i = 0; i < n; i++) want[i] = val(root, i, 5);
        CHECK(mismatches(buf, want, n) == 0);
    }

    if (p > 1) {
        // A ring: even ranks send first, odd ranks receive first (the pipeline shape).
        int next = (r + 1) % p, prev = (r + p - 1) % p;
        for (size_t i = 0; i < n; i++) send[i] = val(r, i, 6);
        if (r % 2 == 0) {
            dcomm_send_f32(dc, g, send, n, next);
            dcomm_recv_f32(dc, g, recv, n, prev);
        } else {
            dcomm_recv_f32(dc, g, recv, n, prev);
            dcomm_send_f32(dc, g, send, n, next);
        }
        for (size_t i = 0; i < n; i++) want[i] = val(prev, i, 6);
        CHECK(mismatches(recv, want, n) == 0);
        // The other way round in one call each: send to prev, receive from next.
        for (size_t i = 0; i < n; i++) recv[i] = 0.0f;
        dcomm_sendrecv_f32(dc, g, send, n, prev, recv, n, next);
        for (size_t i = 0; i < n; i++) want[i] = val(next, i, 6);
        CHECK(mismatches(recv, want, n) == 0);
    }

    // Deferred collectives complete by join (on MPI at once; the contract holds).
    for (size_t i = 0; i < n; i++) buf[i] = (float)(r + 1);
    dcomm_defer_begin(dc);
    dcomm_defer_begin(dc);   // nests
    dcomm_allreduce_f32(dc, g, buf, n, DPO_REDUCE_SUM);
    dcomm_defer_end(dc);
    dcomm_defer_end(dc);
    dcomm_join(dc);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += buf[i] != (float)(p * (p + 1) / 2);
    CHECK(bad == 0);
    CHECK(dc->deferred == 0);

    free(send), free(recv), free(buf), free(want);
}

// A split of group g by color (the KV-head subgroup of model.c is a split of TP).
static void test_split(const dpo_mesh_t *m, dpo_group_t g, int color, size_t n) {
    dpo_dcomm_t *s = dcomm_split(m->dcomm, g, color);
    // The members: the ranks of g with the same color, in their order in g.
    int p = g_size(m, g), r = g_rank(m, g);
    int *colors = malloc((size_t)p * sizeof(int));
    MPI_Allgather(&color, 1, MPI_INT, colors, 1, MPI_INT, comm_mpi(m, g));
    int size = 0, rank = 0;
    for (int q = 0; q < p; q++)
        if (colors[q] == color) {
            if (q < r) rank++;
            size++;
        }
    CHECK(s->size[DPO_GROUP_WORLD] == size && s->rank[DPO_GROUP_WORLD] == rank);
    CHECK(s->size[DPO_GROUP_TP] == 0 && s->size[DPO_GROUP_DP] == 0);
    float *buf = fbuf(n), *want = fbuf(n);
    for (size_t i = 0; i < n; i++) {
        buf[i] = val(r, i, 7);
        want[i] = 0.0f;
        for (int q = 0; q < p; q++)
            if (colors[q] == color) want[i] += val(q, i, 7);
    }
    dcomm_allreduce_f32(s, DPO_GROUP_WORLD, buf, n, DPO_REDUCE_SUM);
    CHECK(mismatches(buf, want, n) == 0);
    free(buf), free(want), free(colors);
    dcomm_free(s);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    dpo_mesh_t mesh;
    mesh_init(&mesh, world % 2 == 0 ? 2 : 1);
    CHECK(strcmp(dcomm_name(mesh.dcomm), "mpi") == 0);
    const size_t sizes[] = {0, 1, 7, 4096 + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int g = 0; g < DPO_N_GROUPS; g++) {
            test_host(&mesh, (dpo_group_t)g, sizes[k]);
            test_device(&mesh, (dpo_group_t)g, sizes[k]);
            test_split(&mesh, (dpo_group_t)g, 0, sizes[k]);                    // the group
            test_split(&mesh, (dpo_group_t)g, g_rank(&mesh, (dpo_group_t)g), sizes[k]);  // singletons
            test_split(&mesh, (dpo_group_t)g, g_rank(&mesh, (dpo_group_t)g) % 2, sizes[k]);
        }
    }
    for (int g = 0; g < DPO_N_GROUPS; g++) test_agreement(&mesh, (dpo_group_t)g);
    mesh_free(&mesh);
    int rc = test_finish("test_comm");
    int any = rc;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
