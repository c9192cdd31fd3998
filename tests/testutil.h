// testutil.h — tiny assertion helpers shared by the tests. A failed check prints
// file:line and the values, and the test exits 1 at the end (or at once for FATAL).
#ifndef DPO_TESTUTIL_H
#define DPO_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

#define TEST_SKIP_CODE 77

extern int test_failures;

// Relative-or-absolute closeness: |a-b| <= atol + rtol*|b|.
bool test_close(double a, double b, double rtol, double atol);

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            test_fail(__FILE__, __LINE__, "%s", #cond);                                   \
        }                                                                                 \
    } while (0)

#define CHECK_CLOSE(a, b, rtol, atol)                                                     \
    do {                                                                                  \
        double _a = (double)(a), _b = (double)(b);                                        \
        if (!test_close(_a, _b, (rtol), (atol))) {                                        \
            test_fail(__FILE__, __LINE__, "%s = %.9g vs %s = %.9g (rtol %g, atol %g)", #a, \
                      _a, #b, _b, (double)(rtol), (double)(atol));                        \
        }                                                                                 \
    } while (0)

void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Prints a summary and returns the process exit code (0 when nothing failed).
int test_finish(const char *name);
// Fills x (n) with uniform values in [lo, hi) from a fixed seed.
void test_fill_uniform(float *x, size_t n, unsigned seed, float lo, float hi);
// max |a - b| / max |b| over n values (NaN in a counts as infinitely wrong).
double test_rel_err(const float *a, const float *b, size_t n);

#endif
