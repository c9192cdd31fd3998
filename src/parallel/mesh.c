// mesh.c — world → tensor-parallel × data-parallel communicators, and the mesh's
// device collectives (MPI from the start; NCCL once the CUDA backend installs it).
#include "dpo/mesh.h"

#include <string.h>

#include "dpo/backend_cuda.h"
#include "dpo/comm.h"
#include "dpo/dcomm.h"
#include "dpo/error.h"

static void mesh_split(dpo_mesh_t *m, MPI_Comm world, int tp_size) {
    memset(m, 0, sizeof *m);
    comm_errors_init();   // a program that forgot still ends its job cleanly
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
    m->dcomm = dcomm_mpi_open(m);
}

void mesh_init(dpo_mesh_t *m, int tp_size) { mesh_split(m, MPI_COMM_WORLD, tp_size); }

void mesh_init_self(dpo_mesh_t *m) { mesh_split(m, MPI_COMM_SELF, 1); }

void mesh_set_dcomm(dpo_mesh_t *m, dpo_dcomm_t *dc) {
    if (dc == m->dcomm) return;
    dcomm_free(m->dcomm);
    m->dcomm = dc;
}

void mesh_free(dpo_mesh_t *m) {
    dcomm_free(m->dcomm);
    m->dcomm = NULL;
    MPI_Comm_free(&m->tp);
    MPI_Comm_free(&m->dp);
    MPI_Comm_free(&m->local);
}

dpo_dcomm_t *dcomm_nccl_open(const dpo_mesh_t *m, const dpo_backend_t *be, char *err,
                             size_t err_len) {
    MPI_Comm comms[DPO_N_GROUPS] = {m->world, m->tp, m->dp};
    return backend_cuda_dcomm_open(be, comms, err, err_len);
}
