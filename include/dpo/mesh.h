// mesh.h — the process mesh: world = tensor-parallel groups × data-parallel groups.
//
// TP groups are consecutive ranks (so they share a node); DP groups gather the
// ranks that hold the same TP shard. Communicators come from MPI_Comm_split.
#ifndef DPO_MESH_H
#define DPO_MESH_H

#include <mpi.h>

typedef struct {
    int world_rank, world_size;
    int tp_rank, tp_size;
    int dp_rank, dp_size;
    int local_rank, local_size;  // within the node (MPI_COMM_TYPE_SHARED)
    MPI_Comm world, tp, dp, local;
} dpo_mesh_t;

// Splits MPI_COMM_WORLD; dies with a message when world_size % tp_size != 0.
void mesh_init(dpo_mesh_t *mesh, int tp_size);
void mesh_free(dpo_mesh_t *mesh);
// A mesh of one rank over MPI_COMM_SELF (unit tests, single-process tools).
void mesh_init_self(dpo_mesh_t *mesh);

#endif
