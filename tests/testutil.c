#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "dpo/rng.h"

int test_failures = 0;

bool test_close(double a, double b, double rtol, double atol) {
    if (isnan(a) || isnan(b)) return false;
    return fabs(a - b) <= atol + rtol * fabs(b);
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    test_failures++;
}

int test_finish(const char *name) {
    if (test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

void test_fill_uniform(float *x, size_t n, unsigned seed, float lo, float hi) {
    dpo_rng_t r;
    rng_seed(&r, seed, 12345);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)rng_uniform(&r);
}

double test_rel_err(const float *a, const float *b, size_t n) {
    double e = 0.0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return e / m;
}
