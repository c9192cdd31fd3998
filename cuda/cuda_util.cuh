// cuda_util.cuh — what every CUDA source file of the backend shares: the checked
// call macro (file:line on failure, then the job ends through dpo_fatal), the one
// compute stream every kernel, cuBLASLt call and NCCL collective is queued on
// (so ordering needs no events and the host never waits except where it reads a
// result), and the grid size of element-wise kernels.
#ifndef DPO_CUDA_UTIL_CUH
#define DPO_CUDA_UTIL_CUH

#include <cuda_runtime.h>
#include <stddef.h>

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

// The backend's compute stream (created with the backend, non-blocking).
cudaStream_t dpo_cuda_compute_stream(void);

// Blocks for an element-wise kernel over n items with `threads` per block; the
// kernels are grid-stride loops, so the grid is capped and any n fits.
static inline unsigned dpo_cuda_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    if (b == 0) b = 1;
    if (b > 65535u * 8u) b = 65535u * 8u;
    return (unsigned)b;
}

#endif
