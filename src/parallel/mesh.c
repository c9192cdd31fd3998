// mesh.c — world → tensor-parallel × data-parallel communicators, and their NCCL
// twins for the CUDA backend.
#include "dpo/mesh.h"

#include <string.h>

#include "dpo/error.h"

#ifdef DPO_HAVE_NCCL
#include "nccl_check.h"
#endif

static void mesh_split(dpo_mesh_t *m, MPI_Comm world, int tp_size) {
    memset(m, 0, sizeof *m);
    MPI_Comm_rank(world, &m->world_rank);
    MPI_Comm_size(world, &m->world_size);
    if (tp_size < 1 || m->world_size % tp_size != 0)
        dpo_fatal_all("policy.tensor_parallel_size = %d does not divide the %d MPI ranks of the job",
                  tp_size, m->world_size);
    m->world = world;
    m->tp_size = tp_size;
    m->dp_size = m->world_size / tp_size;
    // Consecutive ranks form a TP group, so a TP group stays inside a node.
    m->tp_rank = m->world_rank % tp_size;
    m->dp_rank = m->world_rank / tp_size;
    MPI_Comm_split(world, m->dp_rank, m->tp_rank, &m->tp);
    MPI_Comm_split(world, m->tp_rank, m->dp_rank, &m->dp);
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, m->world_rank, MPI_INFO_NULL, &m->local);
    MPI_Comm_rank(m->local, &m->local_rank);
    MPI_Comm_size(m->local, &m->local_size);
}

void mesh_init(dpo_mesh_t *m, int tp_size) { mesh_split(m, MPI_COMM_WORLD, tp_size); }

void mesh_init_self(dpo_mesh_t *m) { mesh_split(m, MPI_COMM_SELF, 1); }

void mesh_free(dpo_mesh_t *m) {
    if (m->nccl) {
        mesh_nccl_destroy(m->nccl_dp, m->stream);
        mesh_nccl_destroy(m->nccl_tp, m->stream);
        mesh_nccl_destroy(m->nccl_world, m->stream);
        m->nccl_world = m->nccl_tp = m->nccl_dp = NULL;
        m->nccl = 0;
    }
    MPI_Comm_free(&m->tp);
    MPI_Comm_free(&m->dp);
    MPI_Comm_free(&m->local);
}

#ifdef DPO_HAVE_NCCL

void *mesh_nccl_create(MPI_Comm c) {
    int size, rank;
    MPI_Comm_size(c, &size);
    MPI_Comm_rank(c, &rank);
    if (size == 1) return NULL;  // every collective of a one-rank group is a no-op
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) DPO_NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c);
    ncclComm_t comm;
    DPO_NCCL_CHECK(ncclCommInitRank(&comm, size, id, rank));
    return comm;
}

void mesh_nccl_destroy(void *nccl_comm, void *stream) {
    if (!nccl_comm) return;
    // Queued collectives still use the communicator: let them finish first.
    DPO_CUDART_CHECK(cudaStreamSynchronize((cudaStream_t)stream));
    DPO_NCCL_CHECK(ncclCommDestroy((ncclComm_t)nccl_comm));
}

void mesh_enable_nccl(dpo_mesh_t *m, void *stream) {
    if (m->nccl) return;
    // Same order on every rank (world, TP, DP), so no rank waits on a group whose
    // other members are still inside a different initialisation.
    m->nccl_world = mesh_nccl_create(m->world);
    m->nccl_tp = mesh_nccl_create(m->tp);
    m->nccl_dp = mesh_nccl_create(m->dp);
    m->stream = stream;
    m->nccl = 1;
}

#else

void *mesh_nccl_create(MPI_Comm c) {
    (void)c;
    dpo_fatal("mesh_nccl_create: this build has no NCCL (configure with CUDA)");
}

void mesh_nccl_destroy(void *nccl_comm, void *stream) {
    (void)nccl_comm;
    (void)stream;
}

void mesh_enable_nccl(dpo_mesh_t *m, void *stream) {
    (void)m;
    (void)stream;
    dpo_fatal("mesh_enable_nccl: this build has no NCCL (configure with CUDA)");
}

#endif
