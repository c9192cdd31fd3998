// ops_cuda.cu — every op of the CUDA ops table except memory, matmul
// (backend_cuda.cu) and attention (attention_cuda.cu). Each op mirrors its CPU
// twin in src/backend/backend_cpu.c and runs the same math_shared.h formulas.
//
// Determinism: every reduction has a fixed shape that depends only on the sizes
// (never on the device's SM count or on timing), and no op uses atomics, so a
// rerun gives the same bits. embedding_bwd sorts the tokens (stable) and sums
// each vocabulary row's tokens in token order, exactly as the CPU does.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include <cub/device/device_radix_sort.cuh>

#include "cuda_util.cuh"
#include "dpo/error.h"
#include "dpo/math_shared.h"
#include "ops_cuda.cuh"

// Threads of element-wise kernels and of row-per-block reductions (a multiple of 32).
#define EW_THREADS 256u
#define ROW_THREADS 256u
// Column sums (bias_grad, rmsnorm dw): a block owns 32 columns x a chunk of rows;
// its 8 thread rows stride over the chunk. Chunks <= 64 keep the partials small.
#define CS_COLS 32
#define CS_ROWS 8
#define CS_MAX_CHUNKS 64
// Aim for about this many blocks in a column sum (fixed, not the SM count, so the
// summation order does not depend on the device).
#define CS_TARGET_BLOCKS 256
// sumsq: at most this many per-block partials (then one block sums them).
#define SUMSQ_MAX_BLOCKS 1024u

#define GRID_STRIDE(i, n)                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n); \
         i += (size_t)gridDim.x * blockDim.x)

// ---------------------------------------------------------------- scratch ----

// One growing device buffer per instance for temporaries (dpo_cuda_ctx_t.scratch).
// Every user is queued on the instance's one compute stream, so consecutive ops
// can share it without events. sumsq's result comes back through the instance's
// pinned host word (a pageable copy would add a staging hop on every call).
static void *scratch(dpo_cuda_ctx_t *cx, size_t bytes) {
    if (bytes <= cx->scratch_bytes) return cx->scratch;
    if (cx->scratch) {
        // Kernels queued earlier may still use the old buffer.
        DPO_CUDA_CHECK(cudaStreamSynchronize(cx->stream));
        DPO_CUDA_CHECK(cudaFree(cx->scratch));
        cx->scratch = NULL;
        cx->scratch_bytes = 0;
    }
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
    want = (want + 0xFFFFF) & ~(size_t)0xFFFFF;   // whole MiB: fewer regrowths
    if (cudaMalloc(&cx->scratch, want) != cudaSuccess) {
        (void)cudaGetLastError();
        cx->scratch = NULL;
        dpo_fatal("backend cuda: out of memory allocating %zu bytes of scratch on device %d", want,
                  cx->device);
    }
    cx->scratch_bytes = want;
    return cx->scratch;
}

// Offsets into the scratch buffer, each rounded up to 256 bytes (cudaMalloc's
// alignment, which CUB and vector loads expect).
static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

void dpo_cuda_ops_init(dpo_cuda_ctx_t *cx) {
    if (!cx->host_sum) DPO_CUDA_CHECK(cudaMallocHost((void **)&cx->host_sum, sizeof(double)));
}

void dpo_cuda_ops_fini(dpo_cuda_ctx_t *cx) {
    if (cx->scratch) DPO_CUDA_CHECK(cudaFree(cx->scratch));
    if (cx->host_sum) DPO_CUDA_CHECK(cudaFreeHost(cx->host_sum));
    cx->scratch = NULL;
    cx->scratch_bytes = 0;
    cx->host_sum = NULL;
}

// ------------------------------------------------------------- reductions ----

// Butterfly (xor) shuffles: every lane ends with the same bits, since each step
// adds the same two values (a + b == b + a exactly in IEEE arithmetic).
template <typename T>
static __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block, returned to every thread. blockDim.x must be a multiple of
// 32 (<= 1024) and every thread of the block must call it.
template <typename T>
static __device__ T block_sum(T v) {
    __shared__ T part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();   // readers of a previous call are done with part[]
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nwarps ? part[lane] : (T)0;
    return warp_sum(v);   // every warp reduces the partials the same way
}

// Max over the block; NaNs are ignored as in the CPU's `x > m ? x : m` loop.
static __device__ float block_max(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nwarps ? part[lane] : -INFINITY;
    return warp_max(v);
}

// Column sums out (ncols) += sum over rows of f(r, c), in double. Pass 1: block
// (x, y) sums columns [32x, 32x+32) over row chunk y into part (nchunks, ncols);
// pass 2 adds the chunks in order. No atomics: the order is fixed by the sizes.
template <class F>
static __global__ void colsum_partial_kernel(double *part, F f, int nrows, int ncols,
                                             int rows_per_chunk) {
    __shared__ double sh[CS_ROWS][CS_COLS + 1];   // +1: no bank conflicts on the column read
    int c = blockIdx.x * CS_COLS + threadIdx.x;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = r0 + rows_per_chunk < nrows ? r0 + rows_per_chunk : nrows;
    double acc = 0.0;
    if (c < ncols) {
        for (int r = r0 + (int)threadIdx.y; r < r1; r += CS_ROWS) acc += f(r, c);
    }
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < ncols) {
        double s = 0.0;
        for (int y = 0; y < CS_ROWS; y++) s += sh[y][threadIdx.x];
        part[(size_t)blockIdx.y * ncols + c] = s;
    }
}

static __global__ void colsum_finish_kernel(float *out, const double *part, int nchunks,
                                            int ncols) {
    GRID_STRIDE(c, ncols) {
        double s = 0.0;
        for (int k = 0; k < nchunks; k++) s += part[(size_t)k * ncols + c];
        out[c] += (float)s;
    }
}

template <class F>
static void colsum_add(dpo_cuda_ctx_t *cx, float *out, F f, int nrows, int ncols) {
    if (nrows <= 0 || ncols <= 0) return;
    int gx = (ncols + CS_COLS - 1) / CS_COLS;
    int want = (CS_TARGET_BLOCKS + gx - 1) / gx;                 // chunks for ~256 blocks
    int maxc = (nrows + CS_ROWS - 1) / CS_ROWS;                  // >= 8 rows per chunk
    int nchunks = want < maxc ? want : maxc;
    if (nchunks > CS_MAX_CHUNKS) nchunks = CS_MAX_CHUNKS;
    if (nchunks < 1) nchunks = 1;
    int rpc = (nrows + nchunks - 1) / nchunks;
    nchunks = (nrows + rpc - 1) / rpc;                           // no empty chunk
    // part (nchunks, ncols)
    double *part = (double *)scratch(cx, (size_t)nchunks * ncols * sizeof(double));
    dim3 grid((unsigned)gx, (unsigned)nchunks), block(CS_COLS, CS_ROWS);
    colsum_partial_kernel<<<grid, block, 0, cx->stream>>>(part, f, nrows, ncols, rpc);
    DPO_CUDA_LAUNCHED();
    colsum_finish_kernel<<<dpo_cuda_blocks((size_t)ncols, EW_THREADS), EW_THREADS, 0, cx->stream>>>(
        out, part, nchunks, ncols);
    DPO_CUDA_LAUNCHED();
}

// ----------------------------------------------------------- element-wise ----

static __global__ void add_kernel(float *y, const float *x, size_t n) {
    GRID_STRIDE(i, n) y[i] += x[i];
}

void dpo_cuda_add_inplace_f32(dpo_cuda_ctx_t *cx, float *y, const float *x, size_t n) {
    if (n == 0) return;
    add_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(y, x, n);
    DPO_CUDA_LAUNCHED();
}

static __global__ void scale_kernel(float *x, float s, size_t n) {
    GRID_STRIDE(i, n) x[i] *= s;
}

void dpo_cuda_scale_inplace_f32(dpo_cuda_ctx_t *cx, float *x, float s, size_t n) {
    if (n == 0) return;
    scale_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(x, s, n);
    DPO_CUDA_LAUNCHED();
}

static __global__ void scale_matrix_kernel(float *C, int rows, int cols, int ldc, float beta) {
    size_t n = (size_t)rows * cols;
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)cols, c = i - r * (size_t)cols;
        float *p = C + r * (size_t)ldc + c;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

void dpo_cuda_scale_matrix_f32(dpo_cuda_ctx_t *cx, float *C, int rows, int cols, int ldc, float beta) {
    if (rows <= 0 || cols <= 0 || beta == 1.0f) return;
    size_t n = (size_t)rows * cols;
    scale_matrix_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(C, rows, cols,
                                                                                   ldc, beta);
    DPO_CUDA_LAUNCHED();
}

// Pass 1: each block's grid-stride share, squared and summed in double.
static __global__ void sumsq_partial_kernel(double *part, const float *x, size_t n) {
    double s = 0.0;
    GRID_STRIDE(i, n) s += (double)x[i] * (double)x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// Pass 2: one block adds the nparts partials.
static __global__ void sumsq_final_kernel(double *out, const double *part, unsigned nparts) {
    double s = 0.0;
    for (unsigned i = threadIdx.x; i < nparts; i += blockDim.x) s += part[i];
    s = block_sum(s);
    if (threadIdx.x == 0) *out = s;
}

double dpo_cuda_sumsq_f32(dpo_cuda_ctx_t *cx, const float *x, size_t n) {
    if (n == 0) return 0.0;
    unsigned nb = dpo_cuda_blocks(n, ROW_THREADS);
    if (nb > SUMSQ_MAX_BLOCKS) nb = SUMSQ_MAX_BLOCKS;
    double *part = (double *)scratch(cx, ((size_t)nb + 1) * sizeof(double));   // (nb) + result
    double *result = part + nb;
    sumsq_partial_kernel<<<nb, ROW_THREADS, 0, cx->stream>>>(part, x, n);
    DPO_CUDA_LAUNCHED();
    sumsq_final_kernel<<<1, ROW_THREADS, 0, cx->stream>>>(result, part, nb);
    DPO_CUDA_LAUNCHED();
    DPO_CUDA_CHECK(cudaMemcpyAsync(cx->host_sum, result, sizeof(double), cudaMemcpyDeviceToHost,
                                   cx->stream));
    DPO_CUDA_CHECK(cudaStreamSynchronize(cx->stream));   // the host reads the value next
    return *cx->host_sum;
}

static __global__ void bias_add_kernel(float *y, const float *b, size_t n, int N) {
    GRID_STRIDE(i, n) y[i] += b[i % (size_t)N];
}

void dpo_cuda_bias_add_f32(dpo_cuda_ctx_t *cx, float *y, const float *b, int T, int N) {
    if (T <= 0 || N <= 0) return;
    size_t n = (size_t)T * N;   // y (T,N)
    bias_add_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(y, b, n, N);
    DPO_CUDA_LAUNCHED();
}

struct BiasGradTerm {   // dy (T,N) element as double
    const float *dy;
    int N;
    __device__ double operator()(int r, int c) const { return (double)dy[(size_t)r * N + c]; }
};

void dpo_cuda_bias_grad_f32(dpo_cuda_ctx_t *cx, float *db, const float *dy, int T, int N) {
    BiasGradTerm f = {dy, N};
    colsum_add(cx, db, f, T, N);
}

// ------------------------------------------------------------- embedding ----

static __global__ void embedding_fwd_kernel(float *out, const int32_t *tokens, const float *table,
                                            int C, int vstart, int V, size_t n) {
    GRID_STRIDE(i, n) {
        size_t t = i / (size_t)C, c = i - t * (size_t)C;
        int r = tokens[t] - vstart;   // row in this shard, or out of range
        out[i] = (r >= 0 && r < V) ? table[(size_t)r * C + c] : 0.0f;
    }
}

void dpo_cuda_embedding_fwd_f32(dpo_cuda_ctx_t *cx, float *out, const int32_t *tokens, const float *table, int T, int C,
                            int vstart, int V) {
    if (T <= 0 || C <= 0) return;
    size_t n = (size_t)T * C;   // out (T,C)
    embedding_fwd_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(
        out, tokens, table, C, vstart, V, n);
    DPO_CUDA_LAUNCHED();
}

// Sort keys: the token's row in this shard, or V for tokens of other shards (they
// sort last and are skipped). vals = token positions 0..T-1.
static __global__ void embedding_keys_kernel(uint32_t *keys, int32_t *vals, const int32_t *tokens,
                                             int T, int vstart, int V) {
    GRID_STRIDE(t, T) {
        int r = tokens[t] - vstart;
        keys[t] = (r >= 0 && r < V) ? (uint32_t)r : (uint32_t)V;
        vals[t] = (int32_t)t;
    }
}

// After the stable sort, the first position b of each run of equal keys owns row
// keys[b] and adds the run's dout rows in ascending token order (the CPU's order).
static __global__ void embedding_runs_kernel(float *dtable, const float *dout,
                                             const uint32_t *keys, const int32_t *vals, int T,
                                             int C, int V) {
    for (int b = blockIdx.x; b < T; b += gridDim.x) {   // the whole block shares b
        uint32_t k = keys[b];
        if (k >= (uint32_t)V) continue;                // other shard
        if (b > 0 && keys[b - 1] == k) continue;       // not the first of its run
        float *dst = dtable + (size_t)k * C;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float acc = dst[c];
            for (int j = b; j < T && keys[j] == k; j++) acc += dout[(size_t)vals[j] * C + c];
            dst[c] = acc;
        }
    }
}

void dpo_cuda_embedding_bwd_f32(dpo_cuda_ctx_t *cx, float *dtable, const int32_t *tokens, const float *dout, int T, int C,
                            int vstart, int V) {
    if (T <= 0 || C <= 0 || V <= 0) return;
    int bits = 0;   // radix bits that hold 0..V
    while (bits < 32 && ((uint64_t)1 << bits) <= (uint64_t)V) bits++;
    size_t temp_bytes = 0;
    DPO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, (const uint32_t *)NULL,
                                                   (uint32_t *)NULL, (const int32_t *)NULL,
                                                   (int32_t *)NULL, T, 0, bits, cx->stream));
    size_t kb = align256((size_t)T * sizeof(uint32_t));
    size_t vb = align256((size_t)T * sizeof(int32_t));
    char *base = (char *)scratch(cx, 2 * kb + 2 * vb + align256(temp_bytes));
    uint32_t *keys_in = (uint32_t *)base, *keys_out = (uint32_t *)(base + kb);   // (T)
    int32_t *vals_in = (int32_t *)(base + 2 * kb), *vals_out = (int32_t *)(base + 2 * kb + vb);
    void *temp = base + 2 * kb + 2 * vb;
    embedding_keys_kernel<<<dpo_cuda_blocks((size_t)T, EW_THREADS), EW_THREADS, 0, cx->stream>>>(
        keys_in, vals_in, tokens, T, vstart, V);
    DPO_CUDA_LAUNCHED();
    DPO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, vals_in,
                                                   vals_out, T, 0, bits, cx->stream));
    embedding_runs_kernel<<<dpo_cuda_blocks((size_t)T, 1), 128, 0, cx->stream>>>(
        dtable, dout, keys_out, vals_out, T, C, V);
    DPO_CUDA_LAUNCHED();
}

// --------------------------------------------------------------- RMSNorm ----

// One block per row (grid-stride over rows; the whole block shares a row).
static __global__ void rmsnorm_fwd_kernel(float *out, float *rstd, const float *x, const float *w,
                                          int N, int C, float eps) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *xr = x + (size_t)n * C;
        float *yr = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) ss += (double)xr[c] * xr[c];
        ss = block_sum(ss);
        float r = dpo_rmsnorm_rstd(ss, C, eps);
        if (threadIdx.x == 0) rstd[n] = r;
        for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] = xr[c] * r * w[c];
    }
}

void dpo_cuda_rmsnorm_fwd_f32(dpo_cuda_ctx_t *cx, float *out, float *rstd, const float *x, const float *w, int N, int C,
                          float eps) {
    if (N <= 0 || C <= 0) return;
    rmsnorm_fwd_kernel<<<dpo_cuda_blocks((size_t)N, 1), ROW_THREADS, 0, cx->stream>>>(out, rstd, x,
                                                                                  w, N, C, eps);
    DPO_CUDA_LAUNCHED();
}

static __global__ void rmsnorm_dx_kernel(float *dx, const float *dout, const float *x,
                                         const float *w, const float *rstd, int N, int C) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *xr = x + (size_t)n * C, *gr = dout + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        double dot = 0.0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) dot += (double)gr[c] * w[c] * xr[c];
        dot = block_sum(dot);
        float r = rstd[n];
        float k = dpo_rmsnorm_bwd_k(dot, r, C);
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            dxr[c] = dpo_rmsnorm_dx(r, w[c], gr[c], xr[c], k);
        }
    }
}

struct RmsnormDwTerm {   // dy * x * rstd of element (n, c), as the CPU sums it
    const float *dout, *x, *rstd;
    int C;
    __device__ double operator()(int r, int c) const {
        size_t i = (size_t)r * C + c;
        return (double)dout[i] * x[i] * rstd[r];
    }
};

void dpo_cuda_rmsnorm_bwd_f32(dpo_cuda_ctx_t *cx, float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    rmsnorm_dx_kernel<<<dpo_cuda_blocks((size_t)N, 1), ROW_THREADS, 0, cx->stream>>>(dx, dout, x, w,
                                                                                 rstd, N, C);
    DPO_CUDA_LAUNCHED();
    if (!dw) return;   // a frozen weight: no gradient
    RmsnormDwTerm f = {dout, x, rstd, C};
    colsum_add(cx, dw, f, N, C);
}

// ------------------------------------------------------------------ RoPE ----

// One thread per (token, head, pair i); consecutive threads take consecutive i of
// one head, so the loads of x[i] and x[i + D/2] are coalesced.
static __global__ void rope_kernel(float *x, const int32_t *pos, int H, int D, float theta,
                                   float sign, size_t n) {
    size_t half = (size_t)D / 2;
    GRID_STRIDE(idx, n) {
        size_t i = idx % half, th = idx / half;   // th = t * H + h
        size_t t = th / (size_t)H;
        float ang = (float)pos[t] * dpo_rope_inv_freq((int)i, D, theta);
        float c = cosf(ang), s = sign * sinf(ang);
        float *xh = x + th * (size_t)D;
        dpo_rope_rotate(&xh[i], &xh[i + half], c, s);
    }
}

static void rope_apply(dpo_cuda_ctx_t *cx, float *x, const int32_t *pos, int T, int H, int D, float theta,
                       float sign) {
    if (D % 2) dpo_fatal("backend cuda: rope needs an even head dim (got %d)", D);
    if (T <= 0 || H <= 0 || D <= 0) return;
    size_t n = (size_t)T * H * (D / 2);   // rotation pairs
    rope_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(x, pos, H, D, theta,
                                                                           sign, n);
    DPO_CUDA_LAUNCHED();
}

void dpo_cuda_rope_fwd_f32(dpo_cuda_ctx_t *cx, float *x, const int32_t *pos, int T, int H, int D, float theta) {
    rope_apply(cx, x, pos, T, H, D, theta, 1.0f);
}

// The adjoint of a rotation is its inverse: rotate by -angle.
void dpo_cuda_rope_bwd_f32(dpo_cuda_ctx_t *cx, float *dx, const int32_t *pos, int T, int H, int D, float theta) {
    rope_apply(cx, dx, pos, T, H, D, theta, -1.0f);
}

// ---------------------------------------------------------------- SwiGLU ----

static __global__ void swiglu_fwd_kernel(float *out, const float *gate, const float *up,
                                         size_t n) {
    GRID_STRIDE(i, n) out[i] = dpo_swiglu(gate[i], up[i]);
}

void dpo_cuda_swiglu_fwd_f32(dpo_cuda_ctx_t *cx, float *out, const float *gate, const float *up, size_t n) {
    if (n == 0) return;
    swiglu_fwd_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(out, gate, up,
                                                                                 n);
    DPO_CUDA_LAUNCHED();
}

static __global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout,
                                         const float *gate, const float *up, size_t n) {
    GRID_STRIDE(i, n) dpo_swiglu_grad(gate[i], up[i], dout[i], &dgate[i], &dup[i]);
}

void dpo_cuda_swiglu_bwd_f32(dpo_cuda_ctx_t *cx, float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
    if (n == 0) return;
    swiglu_bwd_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(dgate, dup,
                                                                                 dout, gate, up, n);
    DPO_CUDA_LAUNCHED();
}

// -------------------------------------------------------- gather/scatter ----

static __global__ void gather_rows_kernel(float *dst, const float *src, const int32_t *rows,
                                          int C, size_t n) {
    GRID_STRIDE(idx, n) {
        size_t i = idx / (size_t)C, c = idx - i * (size_t)C;
        dst[idx] = src[(size_t)rows[i] * C + c];
    }
}

void dpo_cuda_gather_rows_f32(dpo_cuda_ctx_t *cx, float *dst, const float *src, const int32_t *rows, int n, int C) {
    if (n <= 0 || C <= 0) return;
    size_t total = (size_t)n * C;   // dst (n,C)
    gather_rows_kernel<<<dpo_cuda_blocks(total, EW_THREADS), EW_THREADS, 0, cx->stream>>>(
        dst, src, rows, C, total);
    DPO_CUDA_LAUNCHED();
}

// rows are distinct (backend.h), so no two threads add into the same element.
static __global__ void scatter_add_rows_kernel(float *dst, const float *src, const int32_t *rows,
                                               int C, size_t n) {
    GRID_STRIDE(idx, n) {
        size_t i = idx / (size_t)C, c = idx - i * (size_t)C;
        dst[(size_t)rows[i] * C + c] += src[idx];
    }
}

void dpo_cuda_scatter_add_rows_f32(dpo_cuda_ctx_t *cx, float *dst, const float *src, const int32_t *rows, int n, int C) {
    if (n <= 0 || C <= 0) return;
    size_t total = (size_t)n * C;   // src (n,C)
    scatter_add_rows_kernel<<<dpo_cuda_blocks(total, EW_THREADS), EW_THREADS, 0, cx->stream>>>(
        dst, src, rows, C, total);
    DPO_CUDA_LAUNCHED();
}

// ------------------------------------------------------------- log-probs ----

// One block per row: max over the nv valid columns, then the sum of exp in double.
static __global__ void logprob_stats_kernel(float *row_max, float *row_sumexp,
                                            float *target_logit, const float *logits,
                                            const int32_t *targets, int n, int V, int vstart,
                                            int nv) {
    for (int r = blockIdx.x; r < n; r += gridDim.x) {
        const float *lr = logits + (size_t)r * V;
        float mx = -INFINITY;
        for (int j = threadIdx.x; j < nv; j += blockDim.x) mx = lr[j] > mx ? lr[j] : mx;
        mx = block_max(mx);
        double se = 0.0;   // stays 0 for a shard holding only padding
        for (int j = threadIdx.x; j < nv; j += blockDim.x) se += exp((double)lr[j] - mx);
        se = block_sum(se);
        if (threadIdx.x == 0) {
            row_max[r] = mx;
            row_sumexp[r] = (float)se;
            int tj = targets[r] - vstart;   // target column, if this shard holds it
            target_logit[r] = (tj >= 0 && tj < nv) ? lr[tj] : -INFINITY;
        }
    }
}

void dpo_cuda_logprob_stats_f32(dpo_cuda_ctx_t *cx, float *row_max, float *row_sumexp, float *target_logit,
                            const float *logits, const int32_t *targets, int n, int V, int vstart,
                            int vocab_valid) {
    if (n <= 0) return;
    int nv = dpo_vocab_valid_cols(V, vstart, vocab_valid);
    logprob_stats_kernel<<<dpo_cuda_blocks((size_t)n, 1), ROW_THREADS, 0, cx->stream>>>(
        row_max, row_sumexp, target_logit, logits, targets, n, V, vstart, nv);
    DPO_CUDA_LAUNCHED();
}

// grid.y strides over rows, grid.x * blockDim.x over the columns of a row.
static __global__ void logprob_bwd_kernel(float *logits, const int32_t *targets, const float *lse,
                                          const float *dlogp, int n, int V, int vstart, int nv) {
    for (int r = blockIdx.y; r < n; r += gridDim.y) {
        float *lr = logits + (size_t)r * V;
        float g = dlogp[r], l = lse[r];
        long long tj = (long long)targets[r] - vstart;
        for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < V;
             j += (long long)gridDim.x * blockDim.x) {
            lr[j] = j < nv ? dpo_logprob_dlogit(g, lr[j], l, j == tj) : 0.0f;   // padding: 0
        }
    }
}

void dpo_cuda_logprob_bwd_f32(dpo_cuda_ctx_t *cx, float *logits, const int32_t *targets, const float *lse,
                          const float *dlogp, int n, int V, int vstart, int vocab_valid) {
    if (n <= 0 || V <= 0) return;
    int nv = dpo_vocab_valid_cols(V, vstart, vocab_valid);
    unsigned gx = dpo_cuda_blocks((size_t)V, EW_THREADS);
    if (gx > 1024u) gx = 1024u;
    unsigned gy = n < 65535 ? (unsigned)n : 65535u;   // grid.y limit
    logprob_bwd_kernel<<<dim3(gx, gy), EW_THREADS, 0, cx->stream>>>(logits, targets, lse, dlogp, n,
                                                                  V, vstart, nv);
    DPO_CUDA_LAUNCHED();
}

// ---------------------------------------------------------------- AdamW ----

static __global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n,
                                    float lr, float beta1, float beta2, float eps, float wd,
                                    float bc1, float bc2) {
    GRID_STRIDE(i, n) {
        dpo_adamw_update(&param[i], grad[i], &m[i], &v[i], lr, beta1, beta2, eps, wd, bc1, bc2);
    }
}

void dpo_cuda_adamw_f32(dpo_cuda_ctx_t *cx, float *param, const float *grad, float *m, float *v, size_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2) {
    if (n == 0) return;
    adamw_kernel<<<dpo_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, cx->stream>>>(
        param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
    DPO_CUDA_LAUNCHED();
}
