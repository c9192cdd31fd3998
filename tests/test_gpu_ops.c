// test_gpu_ops.c — the CUDA AdamW kernel against the CPU backend's AdamW on the
// same random data (both run dpo_adamw_update from math_shared.h). Skips (77)
// in builds without CUDA and on machines where no GPU is visible.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "testutil.h"

#ifdef DPO_HAVE_CUDA
#include "dpo/backend_cuda.h"

// Runs `steps` AdamW steps on both backends from the same state and compares.
static void compare(size_t n, int steps, float wd) {
    const dpo_backend_t *B = backend_cpu();
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    float *pc = malloc(n * 4), *mc = calloc(n, 4), *vc = calloc(n, 4);   // CPU state (n)
    float *pg = malloc(n * 4), *mg = calloc(n, 4), *vg = calloc(n, 4);   // GPU state (n)
    float *g = malloc(n * 4);
    test_fill_uniform(pc, n, 7, -1.0f, 1.0f);
    memcpy(pg, pc, n * 4);
    for (int step = 1; step <= steps; step++) {
        test_fill_uniform(g, n, 100 + (unsigned)step, -2.0f, 2.0f);
        float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
        B->adamw(pc, g, mc, vc, n, lr, b1, b2, eps, wd, bc1, bc2);
        CHECK(dpo_cuda_adamw(pg, g, mg, vg, n, lr, b1, b2, eps, wd, bc1, bc2) == 0);
    }
    int bad = 0;
    double maxrel = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)pg[i] - pc[i]) / fmax(fabs((double)pc[i]), 1e-30);
        if (!(e <= maxrel)) maxrel = e;
        if (!test_close(pg[i], pc[i], 1e-6, 0.0) || !test_close(mg[i], mc[i], 1e-6, 0.0) ||
            !test_close(vg[i], vc[i], 1e-6, 0.0)) {
            if (bad++ < 5) {
                test_fail(__FILE__, __LINE__,
                          "element %zu: gpu p/m/v %.9g %.9g %.9g vs cpu %.9g %.9g %.9g", i,
                          (double)pg[i], (double)mg[i], (double)vg[i], (double)pc[i],
                          (double)mc[i], (double)vc[i]);
            }
        }
    }
    printf("adamw n=%zu steps=%d wd=%g: max relative |gpu - cpu| of param = %.3g\n", n, steps,
           (double)wd, maxrel);
    free(pc), free(mc), free(vc), free(pg), free(mg), free(vg), free(g);
}
#endif

int main(void) {
    if (backend_cuda_device_count() == 0) {
        printf("no GPU visible: skipped\n");
        return TEST_SKIP_CODE;
    }
#ifdef DPO_HAVE_CUDA
    compare(1, 1, 0.1f);
    compare(1000003, 3, 0.1f);     // odd size, more blocks than one pass of the grid
    compare(20000000, 2, 0.0f);    // > 65535 * 256: exercises the grid-stride loop
#endif
    return test_finish("test_gpu_adamw");
}
