// mesh.c — world → tensor-parallel × data-parallel communicators.
#include "dpo/mesh.h"

#include "dpo/error.h"

static void mesh_split(dpo_mesh_t *m, MPI_Comm world, int tp_size) {
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
    MPI_Comm_free(&m->tp);
    MPI_Comm_free(&m->dp);
    MPI_Comm_free(&m->local);
}
