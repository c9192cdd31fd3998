// backend_cuda.cu — the CUDA backend. So far: device discovery and an AdamW kernel
// that runs the very same dpo_adamw_update (math_shared.h) as the CPU backend.
// The full ops table comes later; backend_by_name("cuda") stays NULL until then.
#include <cuda_runtime.h>

#include <stdio.h>

#include "dpo/backend_cuda.h"
#include "dpo/math_shared.h"

// Checks a CUDA call; on failure prints the call, file:line and CUDA's message,
// sets rc = -1 and jumps to the function's `done:` cleanup label.
#define CUDA_TRY(call)                                                                   \
    do {                                                                                 \
        cudaError_t err_ = (call);                                                       \
        if (err_ != cudaSuccess) {                                                       \
            fprintf(stderr, "dpo_hpc: CUDA error at %s:%d: %s: %s\n", __FILE__, __LINE__, \
                    #call, cudaGetErrorString(err_));                                    \
            rc = -1;                                                                     \
            goto done;                                                                   \
        }                                                                                \
    } while (0)

extern "C" int dpo_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();   // clear the error so later CUDA calls start clean
        return 0;
    }
    return n;
}

// One thread per element (grid-stride, so any n fits any grid).
__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n,
                             float lr, float beta1, float beta2, float eps, float wd, float bc1,
                             float bc2) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        dpo_adamw_update(&param[i], grad[i], &m[i], &v[i], lr, beta1, beta2, eps, wd, bc1, bc2);
    }
}

extern "C" int dpo_cuda_adamw(float *param, const float *grad, float *m, float *v, size_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay,
                              float bc1, float bc2) {
    int rc = 0;
    float *d = NULL;   // one buffer: param | grad | m | v, n floats each
    size_t bytes = n * sizeof(float);
    const int threads = 256;
    size_t want = (n + threads - 1) / threads;
    int blocks = (int)(want < 65535 ? (want > 0 ? want : 1) : 65535);
    if (n == 0) return 0;
    CUDA_TRY(cudaMalloc((void **)&d, 4 * bytes));
    CUDA_TRY(cudaMemcpy(d, param, bytes, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(d + n, grad, bytes, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(d + 2 * n, m, bytes, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(d + 3 * n, v, bytes, cudaMemcpyHostToDevice));
    adamw_kernel<<<blocks, threads>>>(d, d + n, d + 2 * n, d + 3 * n, n, lr, beta1, beta2, eps,
                                      weight_decay, bc1, bc2);
    CUDA_TRY(cudaGetLastError());        // launch errors
    CUDA_TRY(cudaDeviceSynchronize());   // execution errors
    CUDA_TRY(cudaMemcpy(param, d, bytes, cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaMemcpy(m, d + 2 * n, bytes, cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaMemcpy(v, d + 3 * n, bytes, cudaMemcpyDeviceToHost));
done:
    if (d) cudaFree(d);
    return rc;
}
