// test_gpu_attention.c — the CUDA backend's attention_fwd / attention_bwd /
// attention_cached (cuda/attention_cuda.cu) against the CPU backend on the same
// random inputs: single and packed sequences of uneven lengths (length 1
// included, lengths not multiples of the kernels' 32/64-row tiles), H = Hkv and
// GQA, head dims from 4 to 128. Skips (77) without CUDA or without a visible GPU.
//
// Tolerances, as max |gpu - cpu| / max |cpu| over each tensor: 1e-5 for out and
// lse, 5e-5 for dq, dk, dv (both sides are fp32 with different summation orders;
// gradients sum over up to a few hundred keys or queries). Cached attention must
// equal the GPU forward rows bit for bit (same kernel, same order of operations).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/backend_cuda.h"
#include "testutil.h"

static void *dev_copy(const dpo_backend_t *G, const void *host, size_t bytes) {
    void *d = dpo_alloc(G, bytes);
    dpo_to_device(G, d, host, bytes);
    return d;
}

// One shape: sequences of the given lengths packed into T tokens.
static void compare(const dpo_backend_t *G, const int *lens, int nseq, int H, int Hkv, int D,
                    unsigned seed) {
    const dpo_backend_t *C = backend_cpu();
    int32_t *cu = malloc((size_t)(nseq + 1) * sizeof(int32_t));   // (nseq+1)
    cu[0] = 0;
    for (int s = 0; s < nseq; s++) cu[s + 1] = cu[s] + lens[s];
    const int T = cu[nseq];
    const size_t nq = (size_t)T * H * D, nkv = (size_t)T * Hkv * D, nl = (size_t)H * T;

    float *q = malloc(nq * 4), *k = malloc(nkv * 4), *v = malloc(nkv * 4), *dout = malloc(nq * 4);
    test_fill_uniform(q, nq, seed, -2.0f, 2.0f);   // wide enough for a peaked softmax
    test_fill_uniform(k, nkv, seed + 1, -1.0f, 1.0f);
    test_fill_uniform(v, nkv, seed + 2, -1.0f, 1.0f);
    test_fill_uniform(dout, nq, seed + 3, -1.0f, 1.0f);

    // CPU reference.
    float *out_c = malloc(nq * 4), *lse_c = malloc(nl * 4);
    float *dq_c = malloc(nq * 4), *dk_c = malloc(nkv * 4), *dv_c = malloc(nkv * 4);
    dpo_attention_fwd(C, out_c, lse_c, q, k, v, cu, nseq, T, H, Hkv, D, DPO_F32);
    dpo_attention_bwd(C, dq_c, dk_c, dv_c, dout, out_c, lse_c, q, k, v, cu, nseq, T, H, Hkv, D, DPO_F32);

    // GPU.
    float *q_d = dev_copy(G, q, nq * 4), *k_d = dev_copy(G, k, nkv * 4);
    float *v_d = dev_copy(G, v, nkv * 4), *dout_d = dev_copy(G, dout, nq * 4);
    int32_t *cu_d = dev_copy(G, cu, (size_t)(nseq + 1) * sizeof(int32_t));
    float *out_d = dpo_alloc(G, nq * 4), *lse_d = dpo_alloc(G, nl * 4);
    float *dq_d = dpo_alloc(G, nq * 4), *dk_d = dpo_alloc(G, nkv * 4), *dv_d = dpo_alloc(G, nkv * 4);
    // Garbage in the gradients first: the op must overwrite them.
    float *junk = malloc(nq * 4);
    for (size_t i = 0; i < nq; i++) junk[i] = 1e3f;
    dpo_to_device(G, dq_d, junk, nq * 4);
    dpo_to_device(G, dk_d, junk, nkv * 4);
    dpo_to_device(G, dv_d, junk, nkv * 4);
    dpo_attention_fwd(G, out_d, lse_d, q_d, k_d, v_d, cu_d, nseq, T, H, Hkv, D, DPO_F32);
    dpo_attention_bwd(G, dq_d, dk_d, dv_d, dout_d, out_d, lse_d, q_d, k_d, v_d, cu_d, nseq, T, H,
                     Hkv, D, DPO_F32);
    float *out_g = malloc(nq * 4), *lse_g = malloc(nl * 4);
    float *dq_g = malloc(nq * 4), *dk_g = malloc(nkv * 4), *dv_g = malloc(nkv * 4);
    dpo_to_host(G, out_g, out_d, nq * 4);
    dpo_to_host(G, lse_g, lse_d, nl * 4);
    dpo_to_host(G, dq_g, dq_d, nq * 4);
    dpo_to_host(G, dk_g, dk_d, nkv * 4);
    dpo_to_host(G, dv_g, dv_d, nkv * 4);

    double e_out = test_rel_err(out_g, out_c, nq), e_lse = test_rel_err(lse_g, lse_c, nl);
    double e_dq = test_rel_err(dq_g, dq_c, nq), e_dk = test_rel_err(dk_g, dk_c, nkv);
    double e_dv = test_rel_err(dv_g, dv_c, nkv);

    // Cached attention over the last sequence: its first `past` tokens are the
    // cache, the remaining n rows are the new queries.
    const int t0 = cu[nseq - 1], len = lens[nseq - 1], past = len / 3, n = len - past;
    const size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
    float *cout_d = dpo_alloc(G, (size_t)n * qs * 4), *cout_g = malloc((size_t)n * qs * 4);
    float *cout_c = malloc((size_t)n * qs * 4);
    dpo_attention_cached(G, cout_d, q_d + ((size_t)t0 + past) * qs, k_d + (size_t)t0 * kvs,
                        v_d + (size_t)t0 * kvs, n, past, H, Hkv, D, DPO_F32);
    dpo_to_host(G, cout_g, cout_d, (size_t)n * qs * 4);
    dpo_attention_cached(C, cout_c, q + ((size_t)t0 + past) * qs, k + (size_t)t0 * kvs,
                        v + (size_t)t0 * kvs, n, past, H, Hkv, D, DPO_F32);
    const float *fwd_rows = out_g + ((size_t)t0 + past) * qs;
    double e_cached = test_rel_err(cout_g, cout_c, (size_t)n * qs);
    int cached_same = memcmp(cout_g, fwd_rows, (size_t)n * qs * 4) == 0;

    printf("T=%d nseq=%d H=%d Hkv=%d D=%d: out %.2e lse %.2e dq %.2e dk %.2e dv %.2e | "
           "cached (past=%d n=%d) vs cpu %.2e, bitwise == fwd rows: %s\n",
           T, nseq, H, Hkv, D, e_out, e_lse, e_dq, e_dk, e_dv, past, n, e_cached,
           cached_same ? "yes" : "NO");
    CHECK(e_out <= 1e-5);
    CHECK(e_lse <= 1e-5);
    CHECK(e_dq <= 5e-5);
    CHECK(e_dk <= 5e-5);
    CHECK(e_dv <= 5e-5);
    CHECK(e_cached <= 1e-5);
    CHECK(cached_same);

    dpo_free(G, q_d), dpo_free(G, k_d), dpo_free(G, v_d), dpo_free(G, dout_d), dpo_free(G, cu_d);
    dpo_free(G, out_d), dpo_free(G, lse_d), dpo_free(G, dq_d), dpo_free(G, dk_d), dpo_free(G, dv_d);
    dpo_free(G, cout_d);
    free(cu), free(q), free(k), free(v), free(dout), free(junk);
    free(out_c), free(lse_c), free(dq_c), free(dk_c), free(dv_c);
    free(out_g), free(lse_g), free(dq_g), free(dk_g), free(dv_g);
    free(cout_g), free(cout_c);
}

int main(void) {
    if (backend_cuda_device_count() == 0) {
        printf("no GPU visible: skipped\n");
        return TEST_SKIP_CODE;
    }
    char err[2048] = "";
    dpo_backend_t *G = backend_cuda_open(0, DPO_MATMUL_FP32, err, sizeof err);
    if (!G) {
        printf("CUDA backend unavailable (%s): skipped\n", err);
        return TEST_SKIP_CODE;
    }
    {   // single sequence, not a multiple of any tile, H = Hkv
        const int lens[] = {130};
        compare(G, lens, 1, 2, 2, 8, 11);
    }
    {   // packed, uneven lengths including 1, GQA H = 4 Hkv
        const int lens[] = {1, 69, 5, 64, 1, 37};
        compare(G, lens, 6, 8, 2, 16, 21);
    }
    {   // the test configs' head dim (hidden 32 / 8 heads), GQA
        const int lens[] = {3, 17, 40};
        compare(G, lens, 3, 8, 2, 4, 31);
    }
    {   // D = 64, GQA 4:1, long enough for several key tiles
        const int lens[] = {200, 33};
        compare(G, lens, 2, 4, 1, 64, 41);
    }
    {   // D = 128 (32-row backward tiles), H = Hkv
        const int lens[] = {1, 150};
        compare(G, lens, 2, 4, 4, 128, 51);
    }
    {   // a head dim between the instantiated sizes (padded to 128), GQA 2:1
        const int lens[] = {70, 1, 90};
        compare(G, lens, 3, 4, 2, 96, 61);
    }
    backend_cuda_close(G);
    return test_finish("test_gpu_attention");
}
