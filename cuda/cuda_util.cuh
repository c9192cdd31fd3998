// cuda_util.cuh — what every CUDA source file of the backend shares: the checked
// call macro (file:line on failure, then the job ends through dpo_fatal), the
// instance context (the compute stream every kernel, cuBLASLt call and NCCL
// collective of one instance is queued on, so ordering needs no events and the
// host never waits except where it reads a result; the handles and scratch), and
// the grid size of element-wise kernels.
#ifndef DPO_CUDA_UTIL_CUH
#define DPO_CUDA_UTIL_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#include "dpo/backend.h"
#include "dpo/backend_cuda.h"
#include "dpo/error.h"

// Any failing CUDA runtime call is fatal for the rank: the message names the
// call, the source file and line, and CUDA's own text.
#define DPO_CUDA_CHECK(call)                                                              \
    do {                                                                                  \
        cudaError_t err_ = (call);                                                        \
        if (err_ != cudaSuccess)                                                          \
            dpo_fatal("CUDA error at %s:%d: %s: %s", __FILE__, __LINE__, #call,           \
                      cudaGetErrorString(err_));                                          \
    } while (0)

// After a kernel launch: catches bad launch configurations at once (no sync).
#define DPO_CUDA_LAUNCHED() DPO_CUDA_CHECK(cudaGetLastError())

struct dpo_cuda_matmul;   // cuBLASLt handle, workspace, plan cache (backend_cuda.cu)

// Number of head-dim instantiations of the attention kernels (attention_cuda.cu).
#define DPO_CUDA_ATTN_DIMS 5

// One CUDA backend instance (dpo_backend_t.ctx): the device it runs on and
// everything its ops use. The kernels keep no state of their own, so two
// instances (two streams, two devices) never share anything.
typedef struct dpo_cuda_ctx {
    int device;                        // CUDA ordinal
    dpo_matmul_precision_t precision;  // compute type of the matmuls
    cudaStream_t stream;               // every op of the instance is queued here
    struct dpo_cuda_matmul *mm;
    // ops_cuda.cu: device scratch (reduction partials, sort buffers), grown on
    // demand, and the pinned host word sumsq returns through.
    void *scratch;
    size_t scratch_bytes;
    double *host_sum;
    // attention_cuda.cu: whether each kernel has opted in to its dynamic shared
    // memory on this device (the attribute is per device and kernel).
    bool attn_smem_fwd[DPO_CUDA_ATTN_DIMS], attn_smem_dkdv[DPO_CUDA_ATTN_DIMS],
        attn_smem_dq[DPO_CUDA_ATTN_DIMS];
} dpo_cuda_ctx_t;

// The instance behind a table entry's `be`.
static inline dpo_cuda_ctx_t *dpo_cuda_ctx(const dpo_backend_t *be) {
    return (dpo_cuda_ctx_t *)be->ctx;
}

// Blocks for an element-wise kernel over n items with `threads` per block; the
// kernels are grid-stride loops, so the grid is capped and any n fits.
static inline unsigned dpo_cuda_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    if (b == 0) b = 1;
    if (b > 65535u * 8u) b = 65535u * 8u;
    return (unsigned)b;
}

#endif
