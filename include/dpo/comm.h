// comm.h — collectives on backend buffers, per mesh group. On the CPU backend the
// buffers are host memory and MPI carries them; the CUDA backend swaps in NCCL
// behind these same calls. A group of size 1 makes every call a no-op.
#ifndef DPO_COMM_H
#define DPO_COMM_H

#include <stddef.h>

#include "dpo/mesh.h"

typedef enum { GROUP_WORLD = 0, GROUP_TP, GROUP_DP } comm_group_t;
typedef enum { REDUCE_SUM = 0, REDUCE_MAX } comm_reduce_t;

// In place over the group.
void comm_allreduce_f32(const dpo_mesh_t *m, comm_group_t g, float *buf, size_t n,
                        comm_reduce_t op);
// Host doubles (metrics, norms).
void comm_allreduce_f64(const dpo_mesh_t *m, comm_group_t g, double *buf, size_t n,
                        comm_reduce_t op);
void comm_broadcast(const dpo_mesh_t *m, comm_group_t g, void *buf, size_t bytes, int root);
// recv (n * group size) = concatenation of every rank's send (n). In place when
// send is this rank's block of recv (send == recv + group rank * n).
void comm_allgather_f32(const dpo_mesh_t *m, comm_group_t g, const float *send, float *recv,
                        size_t n);
// recv (n) = sum over ranks of send[rank * n : (rank+1) * n].
void comm_reduce_scatter_f32(const dpo_mesh_t *m, comm_group_t g, const float *send, float *recv,
                             size_t n);
// Logical AND of a flag over the group (every rank learns whether all are fine).
int comm_all_ok(const dpo_mesh_t *m, comm_group_t g, int ok);

#endif
