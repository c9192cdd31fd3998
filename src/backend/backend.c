// backend.c — backend lookup by name, and the CUDA backend's entry points, which
// forward to cuda/backend_cuda.cu in CUDA builds and report "not built" otherwise.
#include "dpo/backend.h"

#include <string.h>

#include "dpo/error.h"

#ifdef DPO_HAVE_CUDA
#include "dpo/backend_cuda.h"
#endif

// "cuda" is provided only between backend_cuda_open() and backend_cuda_close():
// the open binds the device and creates the stream every op runs on.
const dpo_backend_t *backend_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "cpu") == 0) return backend_cpu();
#ifdef DPO_HAVE_CUDA
    if (strcmp(name, "cuda") == 0) return dpo_cuda_table();
#endif
    return NULL;
}

const dpo_backend_t *backend_cuda_open(int ordinal, dpo_matmul_precision_t precision, char *err,
                                       size_t err_len) {
#ifdef DPO_HAVE_CUDA
    return dpo_cuda_open(ordinal, (int)precision, err, err_len);
#else
    (void)ordinal;
    (void)precision;
    dpo_errf(err, err_len,
             "this build has no CUDA backend (configure with nvcc present, -DDPO_CUDA=ON)");
    return NULL;
#endif
}

void backend_cuda_close(void) {
#ifdef DPO_HAVE_CUDA
    dpo_cuda_close();
#endif
}

int backend_cuda_device_count(void) {
#ifdef DPO_HAVE_CUDA
    return dpo_cuda_device_count();
#else
    return 0;
#endif
}
