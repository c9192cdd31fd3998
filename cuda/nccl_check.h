// nccl_check.h — checked NCCL calls for the NCCL device collectives
// (dcomm_nccl.cu). Any failure ends the job through dpo_fatal with the call,
// file:line and NCCL's own message.
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

#endif
