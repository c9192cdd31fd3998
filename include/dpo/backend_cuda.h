// backend_cuda.h — the host-callable entry points of cuda/backend_cuda.cu that
// exist before the full CUDA ops table. Only present in builds with DPO_HAVE_CUDA;
// C code must go through backend_cuda_device_count() (backend.h) otherwise.
#ifndef DPO_BACKEND_CUDA_H
#define DPO_BACKEND_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Number of CUDA devices visible to this process; 0 on any CUDA error (no driver,
// no device, CUDA_VISIBLE_DEVICES empty, ...).
int dpo_cuda_device_count(void);

// One AdamW step (dpo_adamw_update of math_shared.h, the same code the CPU backend
// runs) on n elements held in HOST memory: copies param/grad/m/v to the current
// device, updates there, copies param/m/v back. Returns 0, or -1 after printing
// the failing CUDA call with file:line to stderr (the host arrays are then left
// unchanged unless the failure was in the final copy back).
int dpo_cuda_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                   float beta1, float beta2, float eps, float weight_decay, float bc1,
                   float bc2);

#ifdef __cplusplus
}
#endif

#endif
