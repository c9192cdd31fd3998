// backend_cuda.cu — the CUDA backend: device enumeration and description, open /
// close of an instance (device, compute stream, cuBLASLt handle, workspace, plan
// cache, all in its dpo_cuda_ctx_t), the memory ops, the cuBLASLt matmul and the
// ops table. The other kernels live in ops_cuda.cu, attention in attention_cuda.cu.
// Built as libdpo_backend_cuda.so; its one exported symbol is
// dpo_cuda_backend_entry (backend_cuda.h), which src/backend/backend_cuda_loader.c
// looks up after dlopen.
//
// Everything of an instance is queued on its one non-blocking compute stream, so
// ops are ordered among themselves without events; the host waits only where it
// must see a result (to_host, to_device, sumsq, synchronize, free).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_cuda.cuh"
#include "cuda_util.cuh"
#include "dpo/backend_cuda.h"
#include "dpo/error.h"
#include "ops_cuda.cuh"

// Any failing cuBLAS(Lt) call is fatal: file:line, the call and the status name.
#define DPO_CUBLAS_CHECK(call)                                                            \
    do {                                                                                  \
        cublasStatus_t st_ = (call);                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                 \
            dpo_fatal("cuBLAS error at %s:%d: %s: %s", __FILE__, __LINE__, #call,         \
                      cublasLtGetStatusName(st_));                                        \
    } while (0)

// cuBLASLt workspace: enough for the split-K / stream-K kernels the heuristic
// picks on Hopper.
#define LT_WORKSPACE_BYTES ((size_t)32 << 20)
// Matmul plan cache: open addressing, power of two; a full table is flushed
// (the shapes of a run are few, but packed batches vary M, so it must not grow
// without bound).
#define PLAN_SLOTS 512
#define PLAN_MAX_FILL (PLAN_SLOTS * 3 / 4)

static int cu_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();   // clear the error so later CUDA calls start clean
        return 0;
    }
    return n;
}

static int cu_device_info(int ordinal, dpo_cuda_device_info_t *out, char *err, size_t err_len) {
    memset(out, 0, sizeof(*out));
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, ordinal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        dpo_errf(err, err_len, "%s", cudaGetErrorString(e));
        return -1;
    }
    snprintf(out->name, sizeof(out->name), "%s", p.name);
    static_assert(sizeof(p.uuid.bytes) == sizeof(out->uuid), "16-byte UUID");
    memcpy(out->uuid, p.uuid.bytes, sizeof(out->uuid));
    out->pci_domain = p.pciDomainID;
    out->pci_bus = p.pciBusID;
    out->pci_device = p.pciDeviceID;
    out->total_mem = p.totalGlobalMem;
    return 0;
}

// Every table entry starts here: the instance behind be, with its device made
// current for this thread (a no-op in the one-device-per-process case, where it
// already is; cudaGetDevice reads a thread-local).
static dpo_cuda_ctx_t *enter(const dpo_backend_t *be) {
    dpo_cuda_ctx_t *cx = dpo_cuda_ctx(be);
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != cx->device)
        DPO_CUDA_CHECK(cudaSetDevice(cx->device));
    return cx;
}

// ---------------------------------------------------------------- memory ----

static void cu_alloc_fail(const dpo_cuda_ctx_t *cx, size_t bytes, cudaError_t e) {
    (void)cudaGetLastError();
    dpo_fatal("backend cuda: cannot allocate %zu bytes on device %d: %s", bytes, cx->device,
              cudaGetErrorString(e));
}

static void *cu_alloc(const dpo_backend_t *be, size_t bytes) {
    dpo_cuda_ctx_t *cx = enter(be);
    // Whole 64-byte lines and never 0 bytes, like the CPU backend: a zero-size
    // tensor still gets a distinct non-NULL pointer.
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (sz == 0) sz = 64;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, sz);
    if (e != cudaSuccess || !p) cu_alloc_fail(cx, bytes, e);
    DPO_CUDA_CHECK(cudaMemsetAsync(p, 0, sz, cx->stream));   // zero-filled, ordered before any use
    return p;
}

static void cu_free(const dpo_backend_t *be, void *p) {
    if (!p) return;
    dpo_cuda_ctx_t *cx = enter(be);
    // Kernels queued earlier may still read p; cudaFree's own implicit sync is not
    // documented to cover a non-blocking stream, so wait explicitly (not hot path).
    DPO_CUDA_CHECK(cudaStreamSynchronize(cx->stream));
    DPO_CUDA_CHECK(cudaFree(p));
}

static void cu_to_device(const dpo_backend_t *be, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    dpo_cuda_ctx_t *cx = enter(be);
    DPO_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cx->stream));
    // The caller may reuse or free host_src as soon as we return; from pinned memory
    // the copy would still be reading it, so wait for the copy to finish.
    DPO_CUDA_CHECK(cudaStreamSynchronize(cx->stream));
}

static void cu_to_host(const dpo_backend_t *be, void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    dpo_cuda_ctx_t *cx = enter(be);
    DPO_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cx->stream));
    DPO_CUDA_CHECK(cudaStreamSynchronize(cx->stream));   // the host reads the data next
}

static void cu_copy(const dpo_backend_t *be, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    dpo_cuda_ctx_t *cx = enter(be);
    DPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cx->stream));
}

static void cu_zero(const dpo_backend_t *be, void *p, size_t bytes) {
    if (!bytes) return;
    dpo_cuda_ctx_t *cx = enter(be);
    DPO_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cx->stream));
}

static void cu_synchronize(const dpo_backend_t *be) {
    DPO_CUDA_CHECK(cudaStreamSynchronize(enter(be)->stream));
}

// ---------------------------------------------------------------- matmul ----
//
// The ops table is row-major; cuBLASLt is column-major. A row-major X stored with
// leading dimension ld is, byte for byte, the column-major X^T with the same ld.
// So C (M,N) = op(A) op(B) is computed as the column-major product
//   C^T (N,M) = op(B)^T (N,K) @ op(A)^T (K,M):
// cuBLASLt's first operand is our B (its transpose flag is trans_b), its second
// our A (flag trans_a), m = N, n = M, k = K, and C's layout is (N rows, M cols, ldc).

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, beta0;
    int align_a, align_b, align_c;   // byte alignment of the pointers, capped at 256
} plan_key_t;

typedef struct {
    bool used;
    plan_key_t key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;   // cuBLASLt's A (our B), B (our A), C
    cublasLtMatmulAlgo_t algo;
} plan_t;

// The matmul state of an instance (dpo_cuda_ctx_t.mm).
struct dpo_cuda_matmul {
    cublasLtHandle_t lt;
    void *workspace;   // (LT_WORKSPACE_BYTES)
    plan_t plans[PLAN_SLOTS];
    int nplans;
    bool warned_fallback;   // the fp32 fallback has been reported
};

static void plan_destroy(plan_t *p) {
    if (!p->used) return;
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lc));
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lb));
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->la));
    DPO_CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
    p->used = false;
}

static void plans_clear(struct dpo_cuda_matmul *mm) {
    for (int i = 0; i < PLAN_SLOTS; i++) plan_destroy(&mm->plans[i]);
    mm->nplans = 0;
}

static uint32_t plan_hash(const plan_key_t *k) {
    const int *w = (const int *)k;   // the key is a plain array of ints
    uint32_t h = 2166136261u;        // FNV-1a over the words
    for (size_t i = 0; i < sizeof(*k) / sizeof(int); i++) {
        h ^= (uint32_t)w[i];
        h *= 16777619u;
    }
    return h;
}

static int ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uintptr_t low = a & (~a + 1);   // lowest set bit
    return (a == 0 || low >= 256) ? 256 : (int)low;
}

static cublasComputeType_t compute_type(dpo_matmul_precision_t precision) {
    switch (precision) {
    case DPO_MATMUL_FP32: return CUBLAS_COMPUTE_32F;
    case DPO_MATMUL_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case DPO_MATMUL_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    }
    return CUBLAS_COMPUTE_32F;
}

// Builds the descriptor, layouts and best algorithm of key k with compute type
// ct. Returns false (nothing left allocated) when cuBLASLt has no algorithm.
static bool plan_try(cublasLtHandle_t lt, plan_t *p, const plan_key_t *k, cublasComputeType_t ct) {
    cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;   // cuBLASLt's A = our B
    cublasOperation_t opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;   // cuBLASLt's B = our A
    DPO_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, ct, CUDA_R_32F));
    DPO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                                    sizeof(opa)));
    DPO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                                    sizeof(opb)));
    // Stored (column-major) shapes: our B is (K,N) row-major = (N rows, K cols), or
    // (N,K) row-major = (K rows, N cols) when transposed; likewise our A.
    uint64_t la_rows = k->tb ? (uint64_t)k->K : (uint64_t)k->N;
    uint64_t la_cols = k->tb ? (uint64_t)k->N : (uint64_t)k->K;
    uint64_t lb_rows = k->ta ? (uint64_t)k->M : (uint64_t)k->K;
    uint64_t lb_cols = k->ta ? (uint64_t)k->K : (uint64_t)k->M;
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_32F, la_rows, la_cols, k->ldb));
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_32F, lb_rows, lb_cols, k->lda));
    DPO_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, (uint64_t)k->N, (uint64_t)k->M, k->ldc));

    // The heuristic must know the real alignments: its default assumes 256-byte
    // aligned pointers, and views into a buffer (row offsets) are often less.
    cublasLtMatmulPreference_t pref;
    DPO_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = LT_WORKSPACE_BYTES;
    uint32_t al_a = (uint32_t)k->align_b, al_b = (uint32_t)k->align_a, al_c = (uint32_t)k->align_c;
    DPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    DPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
    DPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
    DPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c)));
    DPO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c)));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    memset(&res, 0, sizeof(res));
    // NOT_SUPPORTED here means "no algorithm", which the caller handles.
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->la, p->lb, p->lc, p->lc,
                                                       pref, 1, &res, &found);
    DPO_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) DPO_CUBLAS_CHECK(st);
    p->used = true;   // so plan_destroy frees what was created
    if (st != CUBLAS_STATUS_SUCCESS || found < 1 || res.state != CUBLAS_STATUS_SUCCESS) {
        plan_destroy(p);
        return false;
    }
    p->algo = res.algo;
    p->key = *k;
    return true;
}

// A tensor-core compute type may have no kernel for an odd layout or alignment;
// exact fp32 always has one, so fall back to it (correct, only slower) and say so once.
static void plan_build(dpo_cuda_ctx_t *cx, plan_t *p, const plan_key_t *k) {
    cublasComputeType_t ct = compute_type(cx->precision);
    if (plan_try(cx->mm->lt, p, k, ct)) return;
    if (ct != CUBLAS_COMPUTE_32F && plan_try(cx->mm->lt, p, k, CUBLAS_COMPUTE_32F)) {
        if (!cx->mm->warned_fallback) {
            log_warn("backend cuda: no reduced-precision cuBLASLt kernel for matmul M=%d N=%d "
                     "K=%d (lda=%d ldb=%d ldc=%d); using fp32 for such shapes",
                     k->M, k->N, k->K, k->lda, k->ldb, k->ldc);
            cx->mm->warned_fallback = true;
        }
        return;
    }
    dpo_fatal("backend cuda: cuBLASLt has no algorithm for matmul M=%d N=%d K=%d trans_a=%d "
              "trans_b=%d lda=%d ldb=%d ldc=%d",
              k->M, k->N, k->K, k->ta, k->tb, k->lda, k->ldb, k->ldc);
}

static const plan_t *plan_get(dpo_cuda_ctx_t *cx, const plan_key_t *k) {
    struct dpo_cuda_matmul *mm = cx->mm;
    uint32_t h = plan_hash(k) & (PLAN_SLOTS - 1);
    for (int probe = 0; probe < PLAN_SLOTS; probe++) {
        plan_t *p = &mm->plans[(h + (uint32_t)probe) & (PLAN_SLOTS - 1)];
        if (!p->used) break;
        if (memcmp(&p->key, k, sizeof(*k)) == 0) return p;
    }
    if (mm->nplans >= PLAN_MAX_FILL) plans_clear(mm);   // rare: start over
    for (int probe = 0; probe < PLAN_SLOTS; probe++) {
        plan_t *p = &mm->plans[(h + (uint32_t)probe) & (PLAN_SLOTS - 1)];
        if (p->used) continue;
        plan_build(cx, p, k);
        mm->nplans++;
        return p;
    }
    dpo_fatal("backend cuda: matmul plan cache full");   // unreachable: fill <= 3/4
}

static void matmul_f32(dpo_cuda_ctx_t *cx, bool trans_a, bool trans_b, int M, int N, int K,
                       float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                       float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    // Row-major leading dimensions must cover the stored rows (as BLAS requires).
    int need_a = trans_a ? M : K, need_b = trans_b ? K : N;
    if (K < 0 || lda < (need_a > 1 ? need_a : 1) || ldb < (need_b > 1 ? need_b : 1) || ldc < N) {
        dpo_fatal("backend cuda: bad matmul M=%d N=%d K=%d trans_a=%d trans_b=%d lda=%d ldb=%d "
                  "ldc=%d",
                  M, N, K, (int)trans_a, (int)trans_b, lda, ldb, ldc);
    }
    if (K == 0 || alpha == 0.0f) {   // no product term: C = beta * C, as BLAS does
        dpo_cuda_scale_matrix_f32(cx, C, M, N, ldc, beta);
        return;
    }
    plan_key_t key;
    memset(&key, 0, sizeof(key));   // no padding bytes in it, but memcmp/hash read all
    key.ta = trans_a;
    key.tb = trans_b;
    key.M = M;
    key.N = N;
    key.K = K;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.beta0 = beta == 0.0f;
    key.align_a = ptr_align(A);
    key.align_b = ptr_align(B);
    key.align_c = ptr_align(C);
    const plan_t *p = plan_get(cx, &key);
    DPO_CUBLAS_CHECK(cublasLtMatmul(cx->mm->lt, p->desc, &alpha, B, p->la, A, p->lb, &beta, C,
                                    p->lc, C, p->lc, &p->algo, cx->mm->workspace,
                                    LT_WORKSPACE_BYTES, cx->stream));
}

// ---------------------------------------------------------- table entries ----
//
// Each entry has the exact signature of its op in DPO_BACKEND_OPS (the table
// below is built from the list, so a mismatch does not compile): it checks the
// dtype of its buffers, makes the instance's device current and calls the fp32
// kernel. Only fp32 kernels exist so far; another dtype is a programmer error.

#define NEED_F32(op, dt) \
    if ((dt) != DPO_F32) backend_dtype_unsupported(be, #op, (dt))
#define F(p) ((float *)(p))
#define CF(p) ((const float *)(p))

static void cu_matmul(const dpo_backend_t *be, bool trans_a, bool trans_b, int M, int N, int K,
                      float alpha, const void *A, dpo_dtype_t a_dtype, int lda, const void *B,
                      dpo_dtype_t b_dtype, int ldb, float beta, void *C, dpo_dtype_t c_dtype,
                      int ldc) {
    NEED_F32(matmul, a_dtype);
    NEED_F32(matmul, b_dtype);
    NEED_F32(matmul, c_dtype);
    matmul_f32(enter(be), trans_a, trans_b, M, N, K, alpha, CF(A), lda, CF(B), ldb, beta, F(C),
               ldc);
}
static void cu_add_inplace(const dpo_backend_t *be, void *y, const void *x, size_t n,
                           dpo_dtype_t dt) {
    NEED_F32(add_inplace, dt);
    dpo_cuda_add_inplace_f32(enter(be), F(y), CF(x), n);
}
static void cu_scale_inplace(const dpo_backend_t *be, void *x, float s, size_t n, dpo_dtype_t dt) {
    NEED_F32(scale_inplace, dt);
    dpo_cuda_scale_inplace_f32(enter(be), F(x), s, n);
}
static double cu_sumsq(const dpo_backend_t *be, const float *x, size_t n) {
    return dpo_cuda_sumsq_f32(enter(be), x, n);
}
static void cu_bias_add(const dpo_backend_t *be, void *y, const void *b, int T, int N,
                        dpo_dtype_t dt) {
    NEED_F32(bias_add, dt);
    dpo_cuda_bias_add_f32(enter(be), F(y), CF(b), T, N);
}
static void cu_bias_grad(const dpo_backend_t *be, float *db, const void *dy, int T, int N,
                         dpo_dtype_t dt) {
    NEED_F32(bias_grad, dt);
    dpo_cuda_bias_grad_f32(enter(be), db, CF(dy), T, N);
}
static void cu_embedding_fwd(const dpo_backend_t *be, void *out, const int32_t *tokens,
                             const void *table, int T, int C, int vstart, int V, dpo_dtype_t dt) {
    NEED_F32(embedding_fwd, dt);
    dpo_cuda_embedding_fwd_f32(enter(be), F(out), tokens, CF(table), T, C, vstart, V);
}
static void cu_embedding_bwd(const dpo_backend_t *be, float *dtable, const int32_t *tokens,
                             const void *dout, int T, int C, int vstart, int V, dpo_dtype_t dt) {
    NEED_F32(embedding_bwd, dt);
    dpo_cuda_embedding_bwd_f32(enter(be), dtable, tokens, CF(dout), T, C, vstart, V);
}
static void cu_rmsnorm_fwd(const dpo_backend_t *be, void *out, float *rstd, const void *x,
                           const void *w, int N, int C, float eps, dpo_dtype_t dt) {
    NEED_F32(rmsnorm_fwd, dt);
    dpo_cuda_rmsnorm_fwd_f32(enter(be), F(out), rstd, CF(x), CF(w), N, C, eps);
}
static void cu_rmsnorm_bwd(const dpo_backend_t *be, void *dx, float *dw, const void *dout,
                           const void *x, const void *w, const float *rstd, int N, int C,
                           dpo_dtype_t dt) {
    NEED_F32(rmsnorm_bwd, dt);
    dpo_cuda_rmsnorm_bwd_f32(enter(be), F(dx), dw, CF(dout), CF(x), CF(w), rstd, N, C);
}
static void cu_rope_fwd(const dpo_backend_t *be, void *x, const int32_t *pos, int T, int H, int D,
                        float theta, dpo_dtype_t dt) {
    NEED_F32(rope_fwd, dt);
    dpo_cuda_rope_fwd_f32(enter(be), F(x), pos, T, H, D, theta);
}
static void cu_rope_bwd(const dpo_backend_t *be, void *dx, const int32_t *pos, int T, int H, int D,
                        float theta, dpo_dtype_t dt) {
    NEED_F32(rope_bwd, dt);
    dpo_cuda_rope_bwd_f32(enter(be), F(dx), pos, T, H, D, theta);
}
static void cu_attention_fwd(const dpo_backend_t *be, void *out, float *lse, const void *q,
                             const void *k, const void *v, const int32_t *cu_seqlens, int nseq,
                             int T, int H, int Hkv, int D, dpo_dtype_t dt) {
    NEED_F32(attention_fwd, dt);
    dpo_cuda_attention_fwd_f32(enter(be), F(out), lse, CF(q), CF(k), CF(v), cu_seqlens, nseq, T,
                               H, Hkv, D);
}
static void cu_attention_bwd(const dpo_backend_t *be, void *dq, void *dk, void *dv,
                             const void *dout, const void *out, const float *lse, const void *q,
                             const void *k, const void *v, const int32_t *cu_seqlens, int nseq,
                             int T, int H, int Hkv, int D, dpo_dtype_t dt) {
    NEED_F32(attention_bwd, dt);
    dpo_cuda_attention_bwd_f32(enter(be), F(dq), F(dk), F(dv), CF(dout), CF(out), lse, CF(q),
                               CF(k), CF(v), cu_seqlens, nseq, T, H, Hkv, D);
}
static void cu_attention_cached(const dpo_backend_t *be, void *out, const void *q, const void *k,
                                const void *v, int n, int past, int H, int Hkv, int D,
                                dpo_dtype_t dt) {
    NEED_F32(attention_cached, dt);
    dpo_cuda_attention_cached_f32(enter(be), F(out), CF(q), CF(k), CF(v), n, past, H, Hkv, D);
}
static void cu_swiglu_fwd(const dpo_backend_t *be, void *out, const void *gate, const void *up,
                          size_t n, dpo_dtype_t dt) {
    NEED_F32(swiglu_fwd, dt);
    dpo_cuda_swiglu_fwd_f32(enter(be), F(out), CF(gate), CF(up), n);
}
static void cu_swiglu_bwd(const dpo_backend_t *be, void *dgate, void *dup, const void *dout,
                          const void *gate, const void *up, size_t n, dpo_dtype_t dt) {
    NEED_F32(swiglu_bwd, dt);
    dpo_cuda_swiglu_bwd_f32(enter(be), F(dgate), F(dup), CF(dout), CF(gate), CF(up), n);
}
static void cu_gather_rows(const dpo_backend_t *be, void *dst, const void *src,
                           const int32_t *rows, int n, int C, dpo_dtype_t dt) {
    NEED_F32(gather_rows, dt);
    dpo_cuda_gather_rows_f32(enter(be), F(dst), CF(src), rows, n, C);
}
static void cu_scatter_add_rows(const dpo_backend_t *be, void *dst, const void *src,
                                const int32_t *rows, int n, int C, dpo_dtype_t dt) {
    NEED_F32(scatter_add_rows, dt);
    dpo_cuda_scatter_add_rows_f32(enter(be), F(dst), CF(src), rows, n, C);
}
static void cu_logprob_stats(const dpo_backend_t *be, float *row_max, float *row_sumexp,
                             float *target_logit, const void *logits, const int32_t *targets,
                             int n, int V, int vstart, int vocab_valid, dpo_dtype_t dt) {
    NEED_F32(logprob_stats, dt);
    dpo_cuda_logprob_stats_f32(enter(be), row_max, row_sumexp, target_logit, CF(logits), targets,
                               n, V, vstart, vocab_valid);
}
static void cu_logprob_bwd(const dpo_backend_t *be, void *logits, const int32_t *targets,
                           const float *lse, const float *dlogp, int n, int V, int vstart,
                           int vocab_valid, dpo_dtype_t dt) {
    NEED_F32(logprob_bwd, dt);
    dpo_cuda_logprob_bwd_f32(enter(be), F(logits), targets, lse, dlogp, n, V, vstart,
                             vocab_valid);
}
static void cu_adamw(const dpo_backend_t *be, float *param, const float *grad, float *m, float *v,
                     size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                     float bc1, float bc2) {
    dpo_cuda_adamw_f32(enter(be), param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1,
                       bc2);
}

#undef NEED_F32
#undef F
#undef CF

// The table, in list order: entry cu_<op> for every op of DPO_BACKEND_OPS.
#define CU_ENTRY_V(name, params, args, flops) cu_##name,
#define CU_ENTRY_R(type, name, params, args, flops) cu_##name,
static const dpo_backend_ops_t cuda_ops = {"cuda", DPO_BACKEND_OPS(CU_ENTRY_V, CU_ENTRY_R)};
#undef CU_ENTRY_V
#undef CU_ENTRY_R

// ------------------------------------------------------------ open/close ----

// Frees whatever of an instance exists (open's failure path and close).
static void instance_free(dpo_backend_t *be) {
    dpo_cuda_ctx_t *cx = dpo_cuda_ctx(be);
    if (cx) {
        if (cx->mm) {
            plans_clear(cx->mm);
            if (cx->mm->workspace) (void)cudaFree(cx->mm->workspace);
            if (cx->mm->lt) (void)cublasLtDestroy(cx->mm->lt);
            free(cx->mm);
        }
        dpo_cuda_ops_fini(cx);
        if (cx->stream) (void)cudaStreamDestroy(cx->stream);
        free(cx);
    }
    free(be);
}

// Records a failing CUDA call of open in err and returns false.
static bool open_ok(cudaError_t e, int ordinal, const char *what, char *err, size_t err_len) {
    if (e == cudaSuccess) return true;
    (void)cudaGetLastError();
    dpo_errf(err, err_len, "CUDA device %d: %s failed: %s", ordinal, what, cudaGetErrorString(e));
    return false;
}

static dpo_backend_t *cu_open(int ordinal, int precision, char *err, size_t err_len) {
    if (precision != DPO_MATMUL_FP32 && precision != DPO_MATMUL_TF32 &&
        precision != DPO_MATMUL_BF16) {
        dpo_errf(err, err_len, "unknown matmul precision %d", precision);
        return NULL;
    }
    int count = cu_device_count();
    if (ordinal < 0 || ordinal >= count) {
        dpo_errf(err, err_len, "CUDA device %d does not exist (this process sees %d device%s)",
                 ordinal, count, count == 1 ? "" : "s");
        return NULL;
    }
    dpo_backend_t *be = (dpo_backend_t *)calloc(1, sizeof(*be));
    dpo_cuda_ctx_t *cx = (dpo_cuda_ctx_t *)calloc(1, sizeof(*cx));
    struct dpo_cuda_matmul *mm = (struct dpo_cuda_matmul *)calloc(1, sizeof(*mm));
    if (!be || !cx || !mm) {
        free(be);
        free(cx);
        free(mm);
        dpo_errf(err, err_len, "CUDA device %d: out of host memory", ordinal);
        return NULL;
    }
    be->ops = &cuda_ops;
    be->ctx = cx;
    cx->device = ordinal;
    cx->precision = (dpo_matmul_precision_t)precision;
    cx->mm = mm;
    if (!open_ok(cudaSetDevice(ordinal), ordinal, "cudaSetDevice", err, err_len)) goto fail;
    if (!open_ok(cudaStreamCreateWithFlags(&cx->stream, cudaStreamNonBlocking), ordinal,
                 "stream creation", err, err_len))
        goto fail;
    {
        cublasStatus_t st = cublasLtCreate(&mm->lt);
        if (st != CUBLAS_STATUS_SUCCESS) {
            mm->lt = NULL;
            dpo_errf(err, err_len, "CUDA device %d: cublasLtCreate failed: %s", ordinal,
                     cublasLtGetStatusName(st));
            goto fail;
        }
    }
    if (!open_ok(cudaMalloc(&mm->workspace, LT_WORKSPACE_BYTES), ordinal,
                 "cuBLASLt workspace allocation", err, err_len))
        goto fail;
    if (!open_ok(cudaMallocHost((void **)&cx->host_sum, sizeof(double)), ordinal,
                 "pinned host allocation", err, err_len))
        goto fail;
    dpo_cuda_ops_init(cx);
    backend_check(be);
    return be;
fail:
    instance_free(be);
    return NULL;
}

static void cu_close(dpo_backend_t *be) {
    if (!be) return;
    dpo_cuda_ctx_t *cx = enter(be);
    DPO_CUDA_CHECK(cudaStreamSynchronize(cx->stream));
    instance_free(be);
}

static void *cu_stream(const dpo_backend_t *be) { return (void *)dpo_cuda_ctx(be)->stream; }

static int cu_device(const dpo_backend_t *be) { return dpo_cuda_ctx(be)->device; }

static const dpo_cuda_backend_api_t cuda_api = {DPO_CUDA_BACKEND_ABI, cu_device_count,
                                                cu_device_info,       cu_open,
                                                cu_close,             cu_stream,
                                                cu_device,            dpo_cuda_dcomm_open};

extern "C" __attribute__((visibility("default"))) const dpo_cuda_backend_api_t *
dpo_cuda_backend_entry(void) {
    return &cuda_api;
}
