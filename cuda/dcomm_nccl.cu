// dcomm_nccl.cu — the NCCL device collectives (include/dpo/dcomm.h) on the buffers
// of one CUDA backend instance. One NCCL communicator per group of more than one
// rank, each on a stream of its own: a collective waits (event) for what the
// instance's compute stream queued before it, runs on its group's stream, and,
// unless deferred, the compute stream waits (event) for it before its next work.
// Deferred collectives (the DP gradient buckets) run beside the backward; join
// makes the compute stream wait for them. Separate streams per group keep a
// deferred DP reduction from delaying the TP all-reduces the backward waits on.
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_util.cuh"
#include "dpo/backend_cuda.h"
#include "dpo/dcomm.h"
#include "dpo/error.h"
#include "nccl_check.h"

namespace {

struct nccl_ctx {
    int device;
    cudaStream_t compute;                 // the backend instance's (not ours)
    cudaEvent_t ready;                    // compute's point a collective waits for
    ncclComm_t comm[DPO_N_GROUPS];        // NULL: one rank, or no such group
    cudaStream_t stream[DPO_N_GROUPS];
    cudaEvent_t done[DPO_N_GROUPS];
    bool pending[DPO_N_GROUPS];           // deferred work not yet joined
    MPI_Comm mpi[DPO_N_GROUPS];           // for splits
    bool owns_mpi;                        // a split's communicator is its own
    bool deferred;
};

nccl_ctx *CX(const dpo_dcomm_t *dc) { return (nccl_ctx *)dc->ctx; }

ncclRedOp_t nccl_op(dpo_reduce_t op) { return op == DPO_REDUCE_MAX ? ncclMax : ncclSum; }

// The group's stream, after the compute stream's work queued so far.
cudaStream_t start(dpo_dcomm_t *dc, dpo_group_t g) {
    nccl_ctx *cx = CX(dc);
    DPO_CUDA_CHECK(cudaSetDevice(cx->device));
    DPO_CUDA_CHECK(cudaEventRecord(cx->ready, cx->compute));
    DPO_CUDA_CHECK(cudaStreamWaitEvent(cx->stream[g], cx->ready, 0));
    return cx->stream[g];
}

void finish(dpo_dcomm_t *dc, dpo_group_t g) {
    nccl_ctx *cx = CX(dc);
    if (cx->deferred) {
        cx->pending[g] = true;
        return;
    }
    DPO_CUDA_CHECK(cudaEventRecord(cx->done[g], cx->stream[g]));
    DPO_CUDA_CHECK(cudaStreamWaitEvent(cx->compute, cx->done[g], 0));
}

void n_allreduce(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, dpo_reduce_t op) {
    cudaStream_t s = start(dc, g);
    DPO_NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat, nccl_op(op), CX(dc)->comm[g], s));
    finish(dc, g);
}

void n_allgather(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv, size_t n) {
    cudaStream_t s = start(dc, g);
    // In place by itself when send == recv + rank * n.
    DPO_NCCL_CHECK(ncclAllGather(send, recv, n, ncclFloat, CX(dc)->comm[g], s));
    finish(dc, g);
}

void n_reduce_scatter(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv, size_t n) {
    cudaStream_t s = start(dc, g);
    DPO_NCCL_CHECK(ncclReduceScatter(send, recv, n, ncclFloat, ncclSum, CX(dc)->comm[g], s));
    finish(dc, g);
}

void n_reduce_scatterv(dpo_dcomm_t *dc, dpo_group_t g, const float *send, float *recv,
                       const size_t *counts) {
    cudaStream_t s = start(dc, g);
    // NCCL has no reduce-scatter with unequal counts: one reduce per owner, grouped.
    DPO_NCCL_CHECK(ncclGroupStart());
    size_t at = 0;
    for (int r = 0; r < dc->size[g]; r++) {
        if (counts[r] > 0)
            DPO_NCCL_CHECK(ncclReduce(send + at, r == dc->rank[g] ? recv : NULL, counts[r],
                                      ncclFloat, ncclSum, r, CX(dc)->comm[g], s));
        at += counts[r];
    }
    DPO_NCCL_CHECK(ncclGroupEnd());
    finish(dc, g);
}

void n_broadcast(dpo_dcomm_t *dc, dpo_group_t g, float *buf, size_t n, int root) {
    cudaStream_t s = start(dc, g);
    DPO_NCCL_CHECK(ncclBroadcast(buf, buf, n, ncclFloat, root, CX(dc)->comm[g], s));
    finish(dc, g);
}

void n_sendrecv(dpo_dcomm_t *dc, dpo_group_t g, const float *send, size_t n_send, int dst,
                float *recv, size_t n_recv, int src) {
    cudaStream_t s = start(dc, g);
    // Grouped, so an exchange between two ranks cannot deadlock on the order.
    DPO_NCCL_CHECK(ncclGroupStart());
    if (dst >= 0) DPO_NCCL_CHECK(ncclSend(send, n_send, ncclFloat, dst, CX(dc)->comm[g], s));
    if (src >= 0) DPO_NCCL_CHECK(ncclRecv(recv, n_recv, ncclFloat, src, CX(dc)->comm[g], s));
    DPO_NCCL_CHECK(ncclGroupEnd());
    finish(dc, g);
}

void n_copy(dpo_dcomm_t *dc, float *dst, const float *src, size_t n) {
    nccl_ctx *cx = CX(dc);
    DPO_CUDA_CHECK(cudaSetDevice(cx->device));
    DPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                   cx->compute));
}

void n_set_deferred(dpo_dcomm_t *dc, bool on) { CX(dc)->deferred = on; }

void n_join(dpo_dcomm_t *dc) {
    nccl_ctx *cx = CX(dc);
    DPO_CUDA_CHECK(cudaSetDevice(cx->device));
    for (int g = 0; g < DPO_N_GROUPS; g++) {
        if (!cx->pending[g]) continue;
        DPO_CUDA_CHECK(cudaEventRecord(cx->done[g], cx->stream[g]));
        DPO_CUDA_CHECK(cudaStreamWaitEvent(cx->compute, cx->done[g], 0));
        cx->pending[g] = false;
    }
}

void n_free(dpo_dcomm_t *dc) {
    nccl_ctx *cx = CX(dc);
    DPO_CUDA_CHECK(cudaSetDevice(cx->device));
    for (int g = 0; g < DPO_N_GROUPS; g++) {
        if (!cx->comm[g]) continue;
        // Queued collectives still use the communicator: let them finish first.
        DPO_CUDA_CHECK(cudaStreamSynchronize(cx->stream[g]));
        DPO_NCCL_CHECK(ncclCommDestroy(cx->comm[g]));
        DPO_CUDA_CHECK(cudaEventDestroy(cx->done[g]));
        DPO_CUDA_CHECK(cudaStreamDestroy(cx->stream[g]));
        if (cx->owns_mpi && cx->mpi[g] != MPI_COMM_NULL) MPI_Comm_free(&cx->mpi[g]);
    }
    DPO_CUDA_CHECK(cudaEventDestroy(cx->ready));
    free(cx);
    free(dc);
}

dpo_dcomm_t *n_split(dpo_dcomm_t *dc, dpo_group_t g, int color);

// Filled in order (C++ has no designated initializers before C++20).
const dpo_dcomm_ops_t NCCL_OPS = {"nccl",     n_allreduce,  n_allgather,    n_reduce_scatter,
                                  n_reduce_scatterv, n_broadcast, n_sendrecv, n_copy,
                                  n_split,    n_set_deferred, n_join,       n_free};

// An NCCL communicator over MPI communicator c: rank 0 of c makes the unique id,
// MPI_Bcast shares it, every rank joins. NULL when c has one rank.
ncclComm_t nccl_over(MPI_Comm c) {
    int size, rank;
    MPI_Comm_size(c, &size);
    MPI_Comm_rank(c, &rank);
    if (size == 1) return NULL;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) DPO_NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c);
    ncclComm_t comm;
    DPO_NCCL_CHECK(ncclCommInitRank(&comm, size, id, rank));
    return comm;
}

// The device collectives over the given MPI communicators (MPI_COMM_NULL: no such
// group), in group order on every rank, so no rank waits on a group whose other
// members are still inside another initialisation.
dpo_dcomm_t *open_over(int device, cudaStream_t compute, const MPI_Comm mpi[DPO_N_GROUPS],
                       bool owns_mpi) {
    dpo_dcomm_t *dc = (dpo_dcomm_t *)xcalloc(1, sizeof *dc, "NCCL communicator");
    nccl_ctx *cx = (nccl_ctx *)xcalloc(1, sizeof *cx, "NCCL communicator");
    cx->device = device;
    cx->compute = compute;
    cx->owns_mpi = owns_mpi;
    DPO_CUDA_CHECK(cudaSetDevice(device));
    DPO_CUDA_CHECK(cudaEventCreateWithFlags(&cx->ready, cudaEventDisableTiming));
    for (int g = 0; g < DPO_N_GROUPS; g++) {
        cx->mpi[g] = mpi[g];
        if (mpi[g] == MPI_COMM_NULL) continue;
        MPI_Comm_rank(mpi[g], &dc->rank[g]);
        MPI_Comm_size(mpi[g], &dc->size[g]);
        cx->comm[g] = nccl_over(mpi[g]);
        if (!cx->comm[g]) continue;
        DPO_CUDA_CHECK(cudaStreamCreateWithFlags(&cx->stream[g], cudaStreamNonBlocking));
        DPO_CUDA_CHECK(cudaEventCreateWithFlags(&cx->done[g], cudaEventDisableTiming));
    }
    dc->ops = &NCCL_OPS;
    dc->ctx = cx;
    return dc;
}

dpo_dcomm_t *n_split(dpo_dcomm_t *dc, dpo_group_t g, int color) {
    nccl_ctx *cx = CX(dc);
    MPI_Comm sub[DPO_N_GROUPS] = {MPI_COMM_NULL, MPI_COMM_NULL, MPI_COMM_NULL};
    MPI_Comm_split(cx->mpi[g], color, dc->rank[g], &sub[DPO_GROUP_WORLD]);
    return open_over(cx->device, cx->compute, sub, true);
}

}  // namespace

// The library's entry (backend_cuda.h: dpo_cuda_backend_api_t.dcomm_open).
dpo_dcomm_t *dpo_cuda_dcomm_open(const dpo_backend_t *be, const void *mpi_comms, char *err,
                                 size_t err_len) {
    (void)err;
    (void)err_len;
    const dpo_cuda_ctx_t *bx = dpo_cuda_ctx(be);
    return open_over(bx->device, bx->stream, (const MPI_Comm *)mpi_comms, false);
}
