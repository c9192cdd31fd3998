// nccl_check.h — checked NCCL and CUDA runtime calls for src/mesh.c and src/comm.c
// (builds with DPO_HAVE_NCCL only). Any failure ends the job through dpo_fatal with
// the call, file:line and the library's own message.
#ifndef DPO_NCCL_CHECK_H
#define DPO_NCCL_CHECK_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "dpo/error.h"

#define DPO_NCCL_CHECK(call)                                                              \
    do {                                                                                  \
        ncclResult_t r_ = (call);                                                         \
        if (r_ != ncclSuccess)                                                            \
            dpo_fatal("NCCL error at %s:%d: %s: %s", __FILE__, __LINE__, #call,           \
                      ncclGetErrorString(r_));                                            \
    } while (0)

#define DPO_CUDART_CHECK(call)                                                            \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess)                                                            \
            dpo_fatal("CUDA error at %s:%d: %s: %s", __FILE__, __LINE__, #call,           \
                      cudaGetErrorString(e_));                                            \
    } while (0)

#endif
