// device_bind.c — one device per rank of a node (include/dpo/device_bind.h).
#include "dpo/device_bind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dpo/comm.h"
#include "dpo/dcomm.h"
#include "dpo/error.h"

dpo_backend_t *device_bind_cuda(dpo_mesh_t *mesh, dpo_matmul_precision_t prec, char *desc,
                                size_t desc_len) {
    const char *key = "cluster.backend = \"cuda\"";
    char msg[3072], host[256] = "", err[2048] = "";
    gethostname(host, sizeof host - 1);
    // The backend's library (libdpo_backend_cuda.so) must load before anything else.
    bool avail = backend_cuda_available(err, sizeof err);
    snprintf(msg, sizeof msg, "on host %s: %s; use cluster.backend = \"cpu\"", host, err);
    comm_agree_or_die(mesh, avail, key, msg);
    int n = backend_cuda_device_count();
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    snprintf(msg, sizeof msg,
             "no CUDA device visible on host %s "
             "(CUDA_VISIBLE_DEVICES=%s); run where a GPU is visible or use cluster.backend = \"cpu\"",
             host, vis ? vis : "unset");
    comm_agree_or_die(mesh, n > 0, key, msg);

    int ordinal = mesh->local_rank % n;
    dpo_cuda_device_info_t prop;
    int e = backend_cuda_device_info(ordinal, &prop, err, sizeof err);
    snprintf(msg, sizeof msg, "cannot query CUDA device %d on %s: %s",
             ordinal, host, err);
    comm_agree_or_die(mesh, e == 0, key, msg);

    // The node-local ranks compare device UUIDs: the first other rank on ours, if any.
    unsigned char *uuids = xmalloc((size_t)mesh->local_size * 16, "device uuids");
    MPI_Allgather(prop.uuid, 16, MPI_BYTE, uuids, 16, MPI_BYTE, mesh->local);
    int other = -1;
    for (int q = 0; q < mesh->local_size && other < 0; q++)
        if (q != mesh->local_rank && memcmp(uuids + 16 * (size_t)q, prop.uuid, 16) == 0)
            other = q;
    free(uuids);
    snprintf(msg, sizeof msg,
             "rank %d (node-local rank %d of %d on %s) would share "
             "CUDA device %d (%s) with node-local rank %d: %d device(s) visible to each of the "
             "node's %d ranks. One GPU per rank: start at most %d rank(s) on this node, or give "
             "each rank its own GPU (CUDA_VISIBLE_DEVICES)",
             mesh->world_rank, mesh->local_rank, mesh->local_size, host, ordinal, prop.name, other,
             n, mesh->local_size, n);
    comm_agree_or_die(mesh, other < 0, key, msg);

    err[0] = '\0';
    dpo_backend_t *be = backend_cuda_open(ordinal, prec, err, sizeof err);
    snprintf(msg, sizeof msg, "CUDA device %d on %s: %s", ordinal,
             host, err[0] ? err : "cannot be opened");
    comm_agree_or_die(mesh, be != NULL, key, msg);
    // After the device is bound: the NCCL device collectives replace the MPI ones.
    err[0] = '\0';
    dpo_dcomm_t *dc = dcomm_nccl_open(mesh, be, err, sizeof err);
    snprintf(msg, sizeof msg, "NCCL on CUDA device %d on %s: %s", ordinal, host, err);
    comm_agree_or_die(mesh, dc != NULL, key, msg);
    mesh_set_dcomm(mesh, dc);
    snprintf(desc, desc_len, ", CUDA device %d of %d (%s, PCI %04x:%02x:%02x)", ordinal, n,
             prop.name, prop.pci_domain, prop.pci_bus, prop.pci_device);
    return be;
}
