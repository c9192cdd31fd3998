// comm.h — host collectives of a mesh: statistics, metrics, flags, configuration
// and agreement on errors, always through MPI on host memory, whatever the backend.
// The tensor collectives on backend buffers are the mesh's device collectives,
// dcomm.h (mesh->dcomm). A group of one rank makes every call a no-op.
#ifndef DPO_COMM_H
#define DPO_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "dpo/dcomm.h"
#include "dpo/mesh.h"

// After MPI_Init: messages name this rank of MPI_COMM_WORLD, and a fatal error
// ends the job through MPI (error.h). mesh_init calls it too.
void comm_errors_init(void);

// The group's MPI communicator.
MPI_Comm comm_mpi(const dpo_mesh_t *m, dpo_group_t g);

// In place over the group (host floats / doubles).
void comm_allreduce_f32(const dpo_mesh_t *m, dpo_group_t g, float *buf, size_t n,
                        dpo_reduce_t op);
void comm_allreduce_f64(const dpo_mesh_t *m, dpo_group_t g, double *buf, size_t n,
                        dpo_reduce_t op);
// recv (n * group size) = every rank's send (n), in rank order (host floats).
void comm_allgather_f32(const dpo_mesh_t *m, dpo_group_t g, const float *send, float *recv,
                        size_t n);
// bytes of group rank root to every rank of the group.
void comm_broadcast(const dpo_mesh_t *m, dpo_group_t g, void *buf, size_t bytes, int root);
// Logical AND of a flag over the group: every rank learns whether all are fine.
bool comm_all_ok(const dpo_mesh_t *m, dpo_group_t g, bool ok);

// The agreement on a step every rank did on its own (error.h has the rule).
// True when ok holds on every rank of the group; otherwise false everywhere, and
// every rank's err holds the message of the lowest failing rank, followed by
// " [rank R]" when R is not 0. Collective over the group.
bool comm_agree_mpi(MPI_Comm c, bool ok, char *err, size_t err_len);
bool comm_agree(const dpo_mesh_t *m, dpo_group_t g, bool ok, char *err, size_t err_len);
// comm_agree over the world, then, on failure, every rank ends the job cleanly
// (dpo_fatal_all) with "what: <message of the lowest failing rank> [rank R]".
void comm_agree_or_die(const dpo_mesh_t *m, bool ok, const char *what, const char *err);

#endif
