// comm.h — collectives on backend buffers, per mesh group. On the CPU backend the
// buffers are host memory and MPI carries them. Once mesh_enable_nccl has run (CUDA
// backend), the f32 calls on DEVICE buffers go through NCCL instead, queued on the
// backend's compute stream (they return before the data has moved; whatever runs
// next on that stream, or a to_host, sees the result); f32 calls on host buffers
// (log-prob statistics, reference values) still use MPI. A group of size 1 makes
// every call a no-op.
#ifndef DPO_COMM_H
#define DPO_COMM_H

#include <stddef.h>

#include "dpo/mesh.h"

typedef enum { DPO_GROUP_WORLD = 0, DPO_GROUP_TP, DPO_GROUP_DP } dpo_group_t;
typedef enum { DPO_REDUCE_SUM = 0, DPO_REDUCE_MAX } dpo_reduce_t;

// In place over the group.
void comm_allreduce_f32(const dpo_mesh_t *m, dpo_group_t g, float *buf, size_t n,
                        dpo_reduce_t op);
// Host doubles (metrics, norms); always MPI.
void comm_allreduce_f64(const dpo_mesh_t *m, dpo_group_t g, double *buf, size_t n,
                        dpo_reduce_t op);
// Host bytes; always MPI.
void comm_broadcast(const dpo_mesh_t *m, dpo_group_t g, void *buf, size_t bytes, int root);
// recv (n * group size) = concatenation of every rank's send (n). In place when
// send is this rank's block of recv (send == recv + group rank * n).
void comm_allgather_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send, float *recv,
                        size_t n);
// recv (n) = sum over ranks of send[rank * n : (rank+1) * n]. send and recv must
// not overlap (MPI_Reduce_scatter_block has no in-place form with this layout).
void comm_reduce_scatter_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send, float *recv,
                             size_t n);
// recv (counts[me]) = sum over ranks of send's block me, where send holds the
// blocks of every rank back to back (counts[0] elements, then counts[1], ...).
// Unequal counts: the data-parallel reduction of one gradient bucket to the ZeRO
// shards it overlaps.
void comm_reduce_scatterv_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send,
                              float *recv, const size_t *counts);
// Logical AND of a flag over the group (every rank learns whether all are fine);
// always MPI.
int comm_all_ok(const dpo_mesh_t *m, dpo_group_t g, int ok);

// A subgroup of a mesh group (e.g. the TP ranks that hold the same KV head), with
// its NCCL communicator when the mesh has NCCL enabled.
typedef struct comm_subgroup comm_subgroup_t;
// Splits group g by color (ranks keep their order in g). Collective over g.
comm_subgroup_t *comm_subgroup_split(const dpo_mesh_t *m, dpo_group_t g, int color);
void comm_subgroup_free(comm_subgroup_t *s);  // NULL: no-op
int comm_subgroup_size(const comm_subgroup_t *s);
// In place over the subgroup, like comm_allreduce_f32.
void comm_subgroup_allreduce_f32(const comm_subgroup_t *s, float *buf, size_t n,
                                 dpo_reduce_t op);

#endif
