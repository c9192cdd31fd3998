// device_bind.h — binding the ranks of a mesh to devices: a policy over the node's
// ranks (MPI), so it sits in the parallel layer, above the CUDA backend that
// enumerates, describes and opens devices (backend_cuda.h).
#ifndef DPO_DEVICE_BIND_H
#define DPO_DEVICE_BIND_H

#include <stddef.h>

#include "dpo/backend_cuda.h"
#include "dpo/mesh.h"

// cluster.backend = "cuda": binds node-local rank i to visible device i % count,
// opens a CUDA backend instance there and installs the NCCL device collectives in
// the mesh (mesh_set_dcomm). One GPU per rank is the model: two ranks of a node on
// one GPU is an error (NCCL refuses a GPU twice in a communicator, and they would
// only slow each other down), found by comparing device UUIDs, so a launcher that
// gives each rank its own CUDA_VISIBLE_DEVICES (every rank sees "device 0")
// passes. Every failure (no library, no device, a shared GPU, open, NCCL) is
// agreed over the world and ends the job with one message naming
// cluster.backend and the failing rank. Collective over the world. Writes the
// device for the start-up report into desc (", CUDA device 0 of 4 (name, PCI ..)").
dpo_backend_t *device_bind_cuda(dpo_mesh_t *mesh, dpo_matmul_precision_t precision, char *desc,
                                size_t desc_len);

#endif
