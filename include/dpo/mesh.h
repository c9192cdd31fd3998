// mesh.h — the process mesh: world = tensor-parallel groups × data-parallel groups.
//
// TP groups are consecutive ranks (so they share a node); DP groups gather the
// ranks that hold the same TP shard. Communicators come from MPI_Comm_split.
#ifndef DPO_MESH_H
#define DPO_MESH_H

#include <mpi.h>
#include <stddef.h>

typedef struct {
    int world_rank, world_size;
    int tp_rank, tp_size;
    int dp_rank, dp_size;
    int local_rank, local_size;  // within the node (MPI_COMM_TYPE_SHARED)
    MPI_Comm world, tp, dp, local;
    // The device collectives of this mesh (dcomm.h): MPI on host buffers from
    // mesh_init, NCCL on a CUDA backend's buffers once mesh_set_dcomm installs it.
    struct dpo_dcomm *dcomm;
} dpo_mesh_t;

// Splits MPI_COMM_WORLD; dies with a message when world_size % tp_size != 0.
void mesh_init(dpo_mesh_t *mesh, int tp_size);
// Frees the device collectives too (NCCL: before backend_cuda_close frees the stream).
void mesh_free(dpo_mesh_t *mesh);
// A mesh of one rank over MPI_COMM_SELF (unit tests, single-process tools).
void mesh_init_self(dpo_mesh_t *mesh);

// Replaces the mesh's device collectives (freeing the previous ones); the mesh
// frees dc in mesh_free. dc must be over this mesh's groups.
void mesh_set_dcomm(dpo_mesh_t *mesh, struct dpo_dcomm *dc);

// The MPI device collectives over the mesh's communicators (host buffers).
struct dpo_dcomm *dcomm_mpi_open(const dpo_mesh_t *mesh);

struct dpo_backend;
// The NCCL device collectives on the buffers of CUDA backend instance be (the
// rank's device bound): one NCCL communicator per group of more than one rank,
// each group on its own stream, ordered against be's compute stream. They live in
// the CUDA backend's library (cuda/dcomm_nccl.cu). Collective over the world.
// NULL with the reason in err (no CUDA in this build, library, NCCL error).
struct dpo_dcomm *dcomm_nccl_open(const dpo_mesh_t *mesh, const struct dpo_backend *be,
                                  char *err, size_t err_len);

#endif
