// backend_cuda.h — the host-callable (extern "C") entry points of the CUDA backend
// (cuda/backend_cuda.cu). Only present in builds with DPO_HAVE_CUDA; C code goes
// through backend_cuda_open() / backend_by_name() / backend_cuda_device_count()
// of backend.h, which forward here.
#ifndef DPO_BACKEND_CUDA_H
#define DPO_BACKEND_CUDA_H

#include <stddef.h>

#include "dpo/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Number of CUDA devices visible to this process; 0 on any CUDA error (no driver,
// no device, CUDA_VISIBLE_DEVICES empty, ...).
int dpo_cuda_device_count(void);

// backend_cuda_open / backend_cuda_close (backend.h). precision is a
// dpo_matmul_precision_t. Opening again on the same device returns the same table
// (switching the matmul precision if asked); another device is an error.
const dpo_backend_t *dpo_cuda_open(int ordinal, int precision, char *err, size_t err_len);
void dpo_cuda_close(void);

// The ops table while the backend is open, NULL otherwise.
const dpo_backend_t *dpo_cuda_table(void);

// The backend's compute stream as a cudaStream_t cast to void * (NULL while
// closed), for C code that queues work on it (e.g. NCCL collectives).
void *dpo_cuda_stream_handle(void);

#ifdef __cplusplus
}
#endif

#endif
