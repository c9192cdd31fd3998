// dcomm.h — device collectives: the tensor collectives of a mesh on buffers of the
// run's backend (activations, gradients, parameters), as an object installed by
// the backend. Host data (statistics, flags, agreement) goes through comm.h.
//
// Two implementations:
//   "mpi"  (src/parallel/dcomm_mpi.c): host buffers, MPI on the mesh's
//          communicators; the CPU backend's, installed by mesh_init;
//   "nccl" (cuda/dcomm_nccl.cu, in the CUDA backend's library): device buffers of
//          one CUDA backend instance, NCCL communicators per group, each group on
//          its own stream, ordered against the instance's compute stream by events.
// Nothing inspects a pointer to choose: the object decides.
//
// Ordering: a collective reads what the compute stream queued before it, and work
// queued on the compute stream after it sees its result (on MPI the call simply
// returns when done). A DEFERRED collective (between dcomm_defer_begin and
// dcomm_defer_end) starts the same way but the compute stream does not wait for
// it; dcomm_join makes it wait for every deferred collective so far. Between the
// two the caller must not touch the deferred buffers: this is how the DP gradient
// buckets overlap the rest of the backward.
//
// A group of one rank makes every call a no-op (out-of-place calls copy send to
// recv). Counts are elements; there is no int limit (MPI calls go in pieces).
#ifndef DPO_DCOMM_H
#define DPO_DCOMM_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// The groups of a mesh (mesh.h): the world, the tensor-parallel group and the
// data-parallel group of this rank.
typedef enum { DPO_GROUP_WORLD = 0, DPO_GROUP_TP, DPO_GROUP_DP, DPO_N_GROUPS } dpo_group_t;
typedef enum { DPO_REDUCE_SUM = 0, DPO_REDUCE_MAX } dpo_reduce_t;

typedef struct dpo_dcomm dpo_dcomm_t;

// The method table (self first, as the backend's). The wrappers below check the
// group, handle groups of one rank and empty buffers, then call these.
typedef struct {
    const char *name;   // "mpi", "nccl"
    void (*allreduce_f32)(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, dpo_reduce_t op);
    void (*allgather_f32)(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                          size_t n);
    void (*reduce_scatter_f32)(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                               size_t n);
    void (*reduce_scatterv_f32)(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                                const size_t *counts);
    void (*broadcast_f32)(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, int root);
    // Sends n_send to group rank dst and receives n_recv from src at once (dst or
    // src < 0: that half is absent).
    void (*sendrecv_f32)(dpo_dcomm_t *dc, dpo_group_t g, const float *send, size_t n_send,
                         int dst, float *recv, size_t n_recv, int src);
    void (*copy_f32)(dpo_dcomm_t *dc, float *dst, const float *src, size_t n);
    dpo_dcomm_t *(*split)(dpo_dcomm_t *dc, dpo_group_t g, int color);
    void (*set_deferred)(dpo_dcomm_t *dc, bool on);
    void (*join)(dpo_dcomm_t *dc);
    void (*free)(dpo_dcomm_t *dc);
} dpo_dcomm_ops_t;

struct dpo_dcomm {
    const dpo_dcomm_ops_t *ops;
    void *ctx;
    // This rank's rank in, and the size of, each group. Size 0: no such group (a
    // subgroup made by dcomm_split has only DPO_GROUP_WORLD, the subgroup itself).
    int rank[DPO_N_GROUPS], size[DPO_N_GROUPS];
    int deferred;   // depth of dcomm_defer_begin
};

// In place over group g.
void dcomm_allreduce_f32(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, dpo_reduce_t op);
// recv (n * group size) = every rank's send (n), in rank order. In place when send
// is this rank's block of recv (send == recv + rank * n).
void dcomm_allgather_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                         size_t n);
// recv (n) = sum over ranks of send[rank * n : (rank + 1) * n]; send, recv disjoint.
void dcomm_reduce_scatter_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                              size_t n);
// recv (counts[me]) = sum over ranks of send's block me, the blocks of every rank
// back to back (counts[0] elements, then counts[1], ...): one DP gradient bucket
// to the ZeRO shards it overlaps.
void dcomm_reduce_scatterv_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                               const size_t *counts);
// buf (n) of group rank root to every rank of the group.
void dcomm_broadcast_f32(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, int root);
// Point to point within group g (ranks are group ranks). A send must meet the
// matching recv on the peer; a pair of ranks that exchange uses dcomm_sendrecv_f32
// (one call each), which cannot deadlock on the order.
void dcomm_send_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *buf, size_t n, int dst);
void dcomm_recv_f32(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, int src);
void dcomm_sendrecv_f32(dpo_dcomm_t *dc, dpo_group_t g, const float *send, size_t n_send,
                        int dst, float *recv, size_t n_recv, int src);

// A subgroup of group g: the ranks of g with the same color, in their order in g
// (e.g. the TP ranks that hold the same KV head). Collective over g. The result's
// DPO_GROUP_WORLD is the subgroup; free it with dcomm_free.
dpo_dcomm_t *dcomm_split(dpo_dcomm_t *dc, dpo_group_t g, int color);

// Deferred collectives (see the top): begin/end nest; join waits for all of them.
void dcomm_defer_begin(dpo_dcomm_t *dc);
void dcomm_defer_end(dpo_dcomm_t *dc);
void dcomm_join(dpo_dcomm_t *dc);

const char *dcomm_name(const dpo_dcomm_t *dc);
void dcomm_free(dpo_dcomm_t *dc);   // NULL: no-op; waits for queued work first

#ifdef __cplusplus
}
#endif

#endif
