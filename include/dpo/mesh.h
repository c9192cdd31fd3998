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
    // CUDA backend only (mesh_enable_nccl): the NCCL communicators of the world, TP
    // and DP groups (ncclComm_t, kept as void * so that this header needs no
    // nccl.h; NULL for a group of one rank) and the cudaStream_t they run on.
    // nccl is 0 on the CPU backend, and every collective then goes through MPI.
    int nccl;
    void *nccl_world, *nccl_tp, *nccl_dp;
    void *stream;
} dpo_mesh_t;

// Splits MPI_COMM_WORLD; dies with a message when world_size % tp_size != 0.
void mesh_init(dpo_mesh_t *mesh, int tp_size);
// Also destroys the NCCL communicators (before backend_cuda_close frees the stream).
void mesh_free(dpo_mesh_t *mesh);
// A mesh of one rank over MPI_COMM_SELF (unit tests, single-process tools).
void mesh_init_self(dpo_mesh_t *mesh);

// Once this rank's CUDA device is bound (backend_cuda_open): creates one NCCL
// communicator per group of more than one rank, so that the collectives of comm.h
// carry device buffers through NCCL, queued on `stream` (a cudaStream_t: the
// backend's compute stream). Collective over the world. NCCL failures are fatal
// (dpo_fatal with file:line and NCCL's message); in a build without NCCL it dies.
void mesh_enable_nccl(dpo_mesh_t *mesh, void *stream);

// An NCCL communicator over MPI communicator c (collective over c): rank 0 of c
// makes the unique id, MPI_Bcast shares it, every rank joins. NULL when c has one
// rank. Used by mesh_enable_nccl and comm_subgroup_split; needs a bound device.
void *mesh_nccl_create(MPI_Comm c);
// Waits for the communicator's work on `stream`, then destroys it (NULL: no-op).
void mesh_nccl_destroy(void *nccl_comm, void *stream);

#endif
