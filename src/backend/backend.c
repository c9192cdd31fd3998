// backend.c — what every backend shares: dtype sizes, the op names, the check that
// a table is complete; backend lookup by name, and the CUDA backend's entry
// points, which forward to cuda/backend_cuda.cu in CUDA builds and report "not
// built" otherwise.
#include "dpo/backend.h"

#include <string.h>

#include "dpo/error.h"

size_t dpo_dtype_size(dpo_dtype_t t) {
    switch (t) {
    case DPO_F32: return 4;
    case DPO_DTYPE_COUNT: break;
    }
    dpo_fatal("dpo_dtype_size: invalid dtype %d", (int)t);
}

const char *dpo_dtype_name(dpo_dtype_t t) {
    static const char *const names[] = {"f32"};
    _Static_assert(sizeof names / sizeof names[0] == DPO_DTYPE_COUNT, "one name per dtype");
    return (unsigned)t < DPO_DTYPE_COUNT ? names[t] : "invalid";
}

#define OP_NAME_V(name, params, args, flops) #name,
#define OP_NAME_R(type, name, params, args, flops) #name,
const char *const dpo_backend_op_names[DPO_BACKEND_N_OPS] = {
    DPO_BACKEND_OPS(OP_NAME_V, OP_NAME_R)};

const char *backend_ops_missing(const dpo_backend_ops_t *ops) {
    // One pointer per op, in list order.
    int i = 0;
#define OP_MISSING_V(name, params, args, flops) \
    if (!ops->name) return dpo_backend_op_names[i]; \
    i++;
#define OP_MISSING_R(type, name, params, args, flops) OP_MISSING_V(name, params, args, flops)
    DPO_BACKEND_OPS(OP_MISSING_V, OP_MISSING_R)
    (void)i;
    return NULL;
}

void backend_check(const dpo_backend_t *be) {
    if (!be || !be->ops) dpo_fatal("backend: no ops table");
    const char *missing = backend_ops_missing(be->ops);
    if (missing)
        dpo_fatal("backend %s: the ops table has no '%s' op", be->ops->name ? be->ops->name : "?",
                  missing);
}

void backend_dtype_unsupported(const dpo_backend_t *be, const char *op, dpo_dtype_t dt) {
    dpo_fatal("backend %s: op %s has no kernel for dtype %s", be->ops->name, op,
              dpo_dtype_name(dt));
}

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
