// backend.c — what every backend shares: dtype sizes, the op names, the check that
// a table is complete, the unsupported-dtype error. (The CUDA backend's entry
// points: backend_cuda_loader.c.)
#include "dpo/backend.h"

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
