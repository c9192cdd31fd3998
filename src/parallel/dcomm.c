// dcomm.c — the device-collective wrappers (include/dpo/dcomm.h): the group check,
// groups of one rank and empty buffers, then the implementation's method.
#include "dpo/dcomm.h"

#include "dpo/error.h"

// Dies on a group this object does not have (a subgroup has only the world).
static int group_size(const dpo_dcomm_t *dc, dpo_group_t g, const char *what) {
    if ((int)g < 0 || g >= DPO_N_GROUPS || dc->size[g] <= 0)
        dpo_fatal("%s: group %d does not exist on this %s communicator", what, (int)g,
                  dc->ops->name);
    return dc->size[g];
}

static void check_peer(const dpo_dcomm_t *dc, dpo_group_t g, int peer, const char *what) {
    if (peer >= dc->size[g])
        dpo_fatal("%s: rank %d is outside the group of %d", what, peer, dc->size[g]);
}

void dcomm_allreduce_f32(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, dpo_reduce_t op) {
    if (group_size(dc, g, "dcomm_allreduce_f32") == 1 || n == 0) return;
    dc->ops->allreduce_f32(dc, g, buf, n, op);
}

void dcomm_allgather_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                         size_t n) {
    if (group_size(dc, g, "dcomm_allgather_f32") == 1) {
        if (send != recv && n) dc->ops->copy_f32(dc, recv, send, n);
        return;
    }
    if (n) dc->ops->allgather_f32(dc, g, send, recv, n);
}

void dcomm_reduce_scatter_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                              size_t n) {
    if (group_size(dc, g, "dcomm_reduce_scatter_f32") == 1) {
        if (send != recv && n) dc->ops->copy_f32(dc, recv, send, n);
        return;
    }
    if (n) dc->ops->reduce_scatter_f32(dc, g, send, recv, n);
}

void dcomm_reduce_scatterv_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                               const size_t *counts) {
    int P = group_size(dc, g, "dcomm_reduce_scatterv_f32");
    if (P == 1) {
        if (send != recv && counts[0]) dc->ops->copy_f32(dc, recv, send, counts[0]);
        return;
    }
    size_t total = 0;
    for (int r = 0; r < P; r++) total += counts[r];
    if (total) dc->ops->reduce_scatterv_f32(dc, g, send, recv, counts);
}

void dcomm_broadcast_f32(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, int root) {
    int P = group_size(dc, g, "dcomm_broadcast_f32");
    if (root < 0 || root >= P) dpo_fatal("dcomm_broadcast_f32: root %d outside the group of %d", root, P);
    if (P == 1 || n == 0) return;
    dc->ops->broadcast_f32(dc, g, buf, n, root);
}

void dcomm_sendrecv_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, size_t n_send,
                        int dst, float *recv, size_t n_recv, int src) {
    group_size(dc, g, "dcomm_sendrecv_f32");
    check_peer(dc, g, dst, "dcomm_sendrecv_f32 (destination)");
    check_peer(dc, g, src, "dcomm_sendrecv_f32 (source)");
    if (dst == dc->rank[g] || src == dc->rank[g])
        dpo_fatal("dcomm_sendrecv_f32: rank %d sends to or receives from itself", dc->rank[g]);
    if (dst < 0 && src < 0) return;
    dc->ops->sendrecv_f32(dc, g, send, n_send, dst, recv, n_recv, src);
}

void dcomm_send_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *buf, size_t n, int dst) {
    if (dst < 0) dpo_fatal("dcomm_send_f32: no destination");
    dcomm_sendrecv_f32(dc, g, buf, n, dst, NULL, 0, -1);
}

void dcomm_recv_f32(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, int src) {
    if (src < 0) dpo_fatal("dcomm_recv_f32: no source");
    dcomm_sendrecv_f32(dc, g, NULL, 0, -1, buf, n, src);
}

dpo_dcomm_t *dcomm_split(dpo_dcomm_t *dc, dpo_group_t g, int color) {
    group_size(dc, g, "dcomm_split");
    return dc->ops->split(dc, g, color);
}

void dcomm_defer_begin(dpo_dcomm_t *dc) {
    if (dc->deferred++ == 0) dc->ops->set_deferred(dc, true);
}

void dcomm_defer_end(dpo_dcomm_t *dc) {
    if (dc->deferred <= 0) dpo_fatal("dcomm_defer_end without dcomm_defer_begin");
    if (--dc->deferred == 0) dc->ops->set_deferred(dc, false);
}

void dcomm_join(dpo_dcomm_t *dc) { dc->ops->join(dc); }

const char *dcomm_name(const dpo_dcomm_t *dc) { return dc->ops->name; }

void dcomm_free(dpo_dcomm_t *dc) {
    if (dc) dc->ops->free(dc);
}
