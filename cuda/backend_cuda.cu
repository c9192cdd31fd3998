// backend_cuda.cu — the CUDA backend: open/close (device, compute stream,
// cuBLASLt handle and workspace), the memory ops, the cuBLASLt matmul and the ops
// table. The other ops live in ops_cuda.cu, attention in attention_cuda.cu.
//
// Everything is queued on one non-blocking compute stream, so ops are ordered
// among themselves without events; the host waits only where it must see a
// result (to_host, to_device, sumsq, synchronize, free).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <stdint.h>
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

static bool g_open = false;
static int g_device = -1;
static dpo_matmul_precision_t g_precision = DPO_MATMUL_BF16;
static cudaStream_t g_stream = NULL;
static cublasLtHandle_t g_lt = NULL;
static void *g_workspace = NULL;   // (LT_WORKSPACE_BYTES)
static dpo_backend_t g_table;

cudaStream_t dpo_cuda_compute_stream(void) { return g_stream; }

extern "C" void *dpo_cuda_stream_handle(void) { return (void *)g_stream; }

extern "C" int dpo_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();   // clear the error so later CUDA calls start clean
        return 0;
    }
    return n;
}

// ---------------------------------------------------------------- memory ----

static void cu_alloc_fail(size_t bytes, cudaError_t e) {
    (void)cudaGetLastError();
    dpo_fatal("backend cuda: cannot allocate %zu bytes on device %d: %s", bytes, g_device,
              cudaGetErrorString(e));
}

static void *cu_alloc(size_t bytes) {
    // Whole 64-byte lines and never 0 bytes, like the CPU backend: a zero-size
    // tensor still gets a distinct non-NULL pointer.
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (sz == 0) sz = 64;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, sz);
    if (e != cudaSuccess || !p) cu_alloc_fail(bytes, e);
    DPO_CUDA_CHECK(cudaMemsetAsync(p, 0, sz, g_stream));   // zero-filled, ordered before any use
    return p;
}

static void cu_free(void *p) {
    if (!p) return;
    // Kernels queued earlier may still read p; cudaFree's own implicit sync is not
    // documented to cover a non-blocking stream, so wait explicitly (not hot path).
    DPO_CUDA_CHECK(cudaStreamSynchronize(g_stream));
    DPO_CUDA_CHECK(cudaFree(p));
}

static void cu_to_device(void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    DPO_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, g_stream));
    // The caller may reuse or free host_src as soon as we return; from pinned memory
    // the copy would still be reading it, so wait for the copy to finish.
    DPO_CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

static void cu_to_host(void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    DPO_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
    DPO_CUDA_CHECK(cudaStreamSynchronize(g_stream));   // the host reads the data next
}

static void cu_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    DPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream));
}

static void cu_zero(void *p, size_t bytes) {
    if (!bytes) return;
    DPO_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, g_stream));
}

static void cu_synchronize(void) { DPO_CUDA_CHECK(cudaStreamSynchronize(g_stream)); }

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

static plan_t g_plans[PLAN_SLOTS];
static int g_nplans = 0;

static void plan_destroy(plan_t *p) {
    if (!p->used) return;
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lc));
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lb));
    DPO_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->la));
    DPO_CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
    p->used = false;
}

static void plans_clear(void) {
    for (int i = 0; i < PLAN_SLOTS; i++) plan_destroy(&g_plans[i]);
    g_nplans = 0;
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

static cublasComputeType_t compute_type(void) {
    switch (g_precision) {
    case DPO_MATMUL_FP32: return CUBLAS_COMPUTE_32F;
    case DPO_MATMUL_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case DPO_MATMUL_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    }
    return CUBLAS_COMPUTE_32F;
}

// Builds the descriptor, layouts and best algorithm of key k with compute type
// ct. Returns false (nothing left allocated) when cuBLASLt has no algorithm.
static bool plan_try(plan_t *p, const plan_key_t *k, cublasComputeType_t ct) {
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
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g_lt, p->desc, p->la, p->lb, p->lc, p->lc,
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
static void plan_build(plan_t *p, const plan_key_t *k) {
    static bool warned = false;
    cublasComputeType_t ct = compute_type();
    if (plan_try(p, k, ct)) return;
    if (ct != CUBLAS_COMPUTE_32F && plan_try(p, k, CUBLAS_COMPUTE_32F)) {
        if (!warned) {
            log_warn("backend cuda: no reduced-precision cuBLASLt kernel for matmul M=%d N=%d "
                     "K=%d (lda=%d ldb=%d ldc=%d); using fp32 for such shapes",
                     k->M, k->N, k->K, k->lda, k->ldb, k->ldc);
            warned = true;
        }
        return;
    }
    dpo_fatal("backend cuda: cuBLASLt has no algorithm for matmul M=%d N=%d K=%d trans_a=%d "
              "trans_b=%d lda=%d ldb=%d ldc=%d",
              k->M, k->N, k->K, k->ta, k->tb, k->lda, k->ldb, k->ldc);
}

static const plan_t *plan_get(const plan_key_t *k) {
    uint32_t h = plan_hash(k) & (PLAN_SLOTS - 1);
    for (int probe = 0; probe < PLAN_SLOTS; probe++) {
        plan_t *p = &g_plans[(h + (uint32_t)probe) & (PLAN_SLOTS - 1)];
        if (!p->used) break;
        if (memcmp(&p->key, k, sizeof(*k)) == 0) return p;
    }
    if (g_nplans >= PLAN_MAX_FILL) plans_clear();   // rare: start over
    for (int probe = 0; probe < PLAN_SLOTS; probe++) {
        plan_t *p = &g_plans[(h + (uint32_t)probe) & (PLAN_SLOTS - 1)];
        if (p->used) continue;
        plan_build(p, k);
        g_nplans++;
        return p;
    }
    dpo_fatal("backend cuda: matmul plan cache full");   // unreachable: fill <= 3/4
}

static void cu_matmul(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc) {
    if (M <= 0 || N <= 0) return;
    // Row-major leading dimensions must cover the stored rows (as BLAS requires).
    int need_a = trans_a ? M : K, need_b = trans_b ? K : N;
    if (K < 0 || lda < (need_a > 1 ? need_a : 1) || ldb < (need_b > 1 ? need_b : 1) || ldc < N) {
        dpo_fatal("backend cuda: bad matmul M=%d N=%d K=%d trans_a=%d trans_b=%d lda=%d ldb=%d "
                  "ldc=%d",
                  M, N, K, (int)trans_a, (int)trans_b, lda, ldb, ldc);
    }
    if (K == 0 || alpha == 0.0f) {   // no product term: C = beta * C, as BLAS does
        dpo_cuda_scale_matrix(C, M, N, ldc, beta);
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
    const plan_t *p = plan_get(&key);
    DPO_CUBLAS_CHECK(cublasLtMatmul(g_lt, p->desc, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C,
                                    p->lc, &p->algo, g_workspace, LT_WORKSPACE_BYTES, g_stream));
}

// ------------------------------------------------------------ open/close ----

static void fill_table(void) {
    memset(&g_table, 0, sizeof(g_table));
    g_table.name = "cuda";
    g_table.alloc = cu_alloc;
    g_table.free = cu_free;
    g_table.to_device = cu_to_device;
    g_table.to_host = cu_to_host;
    g_table.copy = cu_copy;
    g_table.zero = cu_zero;
    g_table.synchronize = cu_synchronize;
    g_table.matmul = cu_matmul;
    g_table.add_inplace = dpo_cuda_add_inplace;
    g_table.scale_inplace = dpo_cuda_scale_inplace;
    g_table.sumsq = dpo_cuda_sumsq;
    g_table.bias_add = dpo_cuda_bias_add;
    g_table.bias_grad = dpo_cuda_bias_grad;
    g_table.embedding_fwd = dpo_cuda_embedding_fwd;
    g_table.embedding_bwd = dpo_cuda_embedding_bwd;
    g_table.rmsnorm_fwd = dpo_cuda_rmsnorm_fwd;
    g_table.rmsnorm_bwd = dpo_cuda_rmsnorm_bwd;
    g_table.rope_fwd = dpo_cuda_rope_fwd;
    g_table.rope_bwd = dpo_cuda_rope_bwd;
    g_table.attention_fwd = dpo_cuda_attention_fwd;
    g_table.attention_bwd = dpo_cuda_attention_bwd;
    g_table.attention_cached = dpo_cuda_attention_cached;
    g_table.swiglu_fwd = dpo_cuda_swiglu_fwd;
    g_table.swiglu_bwd = dpo_cuda_swiglu_bwd;
    g_table.gather_rows = dpo_cuda_gather_rows;
    g_table.scatter_add_rows = dpo_cuda_scatter_add_rows;
    g_table.logprob_stats = dpo_cuda_logprob_stats;
    g_table.logprob_bwd = dpo_cuda_logprob_bwd;
    g_table.adamw = dpo_cuda_adamw;
}

// Records a failing CUDA call of open in err and returns false.
static bool open_ok(cudaError_t e, const char *what, char *err, size_t err_len) {
    if (e == cudaSuccess) return true;
    (void)cudaGetLastError();
    dpo_errf(err, err_len, "CUDA device %d: %s failed: %s", g_device, what,
             cudaGetErrorString(e));
    return false;
}

extern "C" const dpo_backend_t *dpo_cuda_open(int ordinal, int precision, char *err,
                                              size_t err_len) {
    if (precision != DPO_MATMUL_FP32 && precision != DPO_MATMUL_TF32 &&
        precision != DPO_MATMUL_BF16) {
        dpo_errf(err, err_len, "unknown matmul precision %d", precision);
        return NULL;
    }
    if (g_open) {
        if (ordinal != g_device) {
            dpo_errf(err, err_len, "the CUDA backend is already open on device %d (asked for %d)",
                     g_device, ordinal);
            return NULL;
        }
        if ((dpo_matmul_precision_t)precision != g_precision) {
            DPO_CUDA_CHECK(cudaStreamSynchronize(g_stream));
            plans_clear();   // plans carry the compute type
            g_precision = (dpo_matmul_precision_t)precision;
        }
        return &g_table;
    }
    int count = dpo_cuda_device_count();
    if (ordinal < 0 || ordinal >= count) {
        dpo_errf(err, err_len, "CUDA device %d does not exist (this process sees %d device%s)",
                 ordinal, count, count == 1 ? "" : "s");
        return NULL;
    }
    g_device = ordinal;
    g_precision = (dpo_matmul_precision_t)precision;
    if (!open_ok(cudaSetDevice(ordinal), "cudaSetDevice", err, err_len)) goto fail;
    if (!open_ok(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking), "stream creation",
                 err, err_len))
        goto fail;
    {
        cublasStatus_t st = cublasLtCreate(&g_lt);
        if (st != CUBLAS_STATUS_SUCCESS) {
            g_lt = NULL;
            dpo_errf(err, err_len, "CUDA device %d: cublasLtCreate failed: %s", ordinal,
                     cublasLtGetStatusName(st));
            goto fail;
        }
    }
    if (!open_ok(cudaMalloc(&g_workspace, LT_WORKSPACE_BYTES), "cuBLASLt workspace allocation",
                 err, err_len))
        goto fail;
    dpo_cuda_ops_init();
    memset(g_plans, 0, sizeof(g_plans));
    g_nplans = 0;
    fill_table();
    g_open = true;
    return &g_table;
fail:
    if (g_workspace) (void)cudaFree(g_workspace);
    if (g_lt) (void)cublasLtDestroy(g_lt);
    if (g_stream) (void)cudaStreamDestroy(g_stream);
    g_workspace = NULL;
    g_lt = NULL;
    g_stream = NULL;
    g_device = -1;
    return NULL;
}

extern "C" void dpo_cuda_close(void) {
    if (!g_open) return;
    DPO_CUDA_CHECK(cudaStreamSynchronize(g_stream));
    plans_clear();
    dpo_cuda_ops_fini();
    DPO_CUDA_CHECK(cudaFree(g_workspace));
    DPO_CUBLAS_CHECK(cublasLtDestroy(g_lt));
    DPO_CUDA_CHECK(cudaStreamDestroy(g_stream));
    g_workspace = NULL;
    g_lt = NULL;
    g_stream = NULL;
    g_device = -1;
    g_open = false;
}

extern "C" const dpo_backend_t *dpo_cuda_table(void) { return g_open ? &g_table : NULL; }
