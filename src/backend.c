// backend.c — backend lookup by name and CUDA device discovery.
#include "dpo/backend.h"

#include <string.h>

#ifdef DPO_HAVE_CUDA
#include "dpo/backend_cuda.h"
#endif

// "cuda" stays NULL until the CUDA ops table is complete: a partial table would
// crash on the first missing op, so callers get the documented "not provided".
const dpo_backend_t *backend_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "cpu") == 0) return backend_cpu();
    return NULL;
}

int backend_cuda_device_count(void) {
#ifdef DPO_HAVE_CUDA
    return dpo_cuda_device_count();
#else
    return 0;
#endif
}
