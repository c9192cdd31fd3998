// attention_cuda.cu — causal attention over packed sequences with GQA, fp32,
// flash style: the (T x T) score matrix is never stored; tiles of scores live in
// registers and shared memory only.
//
// Layout: q (T,H,D), k/v (T,Hkv,D), out (T,H,D), lse (H,T); query head h reads kv
// head h / (H/Hkv); a query at position i of its sequence sees keys 0..i of that
// sequence. scale = 1/sqrt(D) as in the CPU backend.
//
// Scheme (all kernels: 256 threads as a 16 x 16 grid (ty, tx)):
//  * D is padded to DP in {16, 32, 64, 128, 256} with zeros in shared memory (zero
//    columns add exact zeros to the dot products), so any D <= 256 runs.
//  * Tiles never straddle sequences: a tiny kernel writes the exclusive prefix of
//    tiles per sequence (tile_start, nseq+1) and each block finds its (sequence,
//    tile) by binary search in it. Grid x = ceil(T/B) + nseq bounds the tile
//    count; surplus blocks exit at once. Key tiles are aligned to the sequence
//    start, and a block only visits key tiles at or below its last query row
//    (the causal skip).
//  * Forward: block = (query tile of BQ rows, head); loops over key tiles of BK
//    keys: S = Q K^T (each thread a (BQ/16) x (BK/16) micro tile, rows ty+16a,
//    cols tx+16b), online softmax in fp32 (running max m and sum l per row; the 16
//    threads of a row reduce with xor shuffles, so all 16 hold identical m, l), P
//    to shared memory, O += P V (each thread rows ty+16a, cols tx+16c of O in
//    registers). O / l and lse = m + log l at the end.
//  * Backward (deterministic, no atomics): delta = rowsum(dout * out) by a small
//    kernel; then one kernel per (key tile, kv head) that recomputes P and dS for
//    every query head of the group and every query tile at or below the diagonal,
//    accumulating dK, dV in registers; and a second kernel per (query tile, head)
//    that recomputes them again for dQ. Each output element is written by exactly
//    one thread with a fixed summation order, so results are bit reproducible.
//  * Cached attention runs the forward kernel itself (one sequence, query rows at
//    positions past..past+n-1 over past+n keys): every row does the same
//    operations in the same order as in attention_fwd (key tiles aligned at key 0,
//    same per-thread mapping of keys and head-dim columns; key tiles that are fully
//    masked for a row leave its m, l and O bit for bit unchanged), so cached rows
//    equal forward rows bit for bit given the same q, k, v.
#include <math.h>
#include <stdint.h>

#include "attention_cuda.cuh"
#include "cuda_util.cuh"
#include "dpo/math_shared.h"

namespace {

constexpr int kThreads = 256;   // 16 x 16

// ---------------------------------------------------------------- helpers ----

// Largest of v over the 16 lanes of this half warp (lanes l with equal l / 16).
__device__ __forceinline__ float half_warp_max(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the 16 lanes of this half warp. The xor butterfly adds the same pairs
// on every lane (a + b == b + a), so all 16 lanes get the same bits.
__device__ __forceinline__ float half_warp_sum(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// acc[a][b] += sum_d A[ty+16a][d] * B[tx+16b][d]; A, B shared tiles with row
// stride DP+1 (the +1 keeps the 16 rows that tx reads in distinct banks).
template <int RA, int RB, int DP>
__device__ __forceinline__ void mm_abt(float (&acc)[RA][RB], const float *A, const float *B,
                                       int ty, int tx) {
    constexpr int LD = DP + 1;
#pragma unroll 4
    for (int d = 0; d < DP; d++) {
        float a[RA], b[RB];
#pragma unroll
        for (int i = 0; i < RA; i++) a[i] = A[(ty + 16 * i) * LD + d];
#pragma unroll
        for (int j = 0; j < RB; j++) b[j] = B[(tx + 16 * j) * LD + d];
#pragma unroll
        for (int i = 0; i < RA; i++)
#pragma unroll
            for (int j = 0; j < RB; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}

// acc[a][c] += sum_j P[ty+16a][j] * X[j][tx+16c]; P (rows, NJ) with row stride
// NJ+1, X (NJ, DP) with row stride DP+1.
template <int RA, int NJ, int DP>
__device__ __forceinline__ void mm_pv(float (&acc)[RA][DP / 16], const float *P, const float *X,
                                      int ty, int tx) {
    constexpr int RC = DP / 16;
#pragma unroll 4
    for (int j = 0; j < NJ; j++) {
        float p[RA], x[RC];
#pragma unroll
        for (int i = 0; i < RA; i++) p[i] = P[(ty + 16 * i) * (NJ + 1) + j];
#pragma unroll
        for (int c = 0; c < RC; c++) x[c] = X[j * (DP + 1) + tx + 16 * c];
#pragma unroll
        for (int i = 0; i < RA; i++)
#pragma unroll
            for (int c = 0; c < RC; c++) acc[i][c] = fmaf(p[i], x[c], acc[i][c]);
    }
}

// Shared tile s (ROWS, DP) with row stride DP+1 from global rows g + r*gstride,
// r < nvalid, columns < D; the rest (padding rows and columns) is zero.
template <int ROWS, int DP>
__device__ __forceinline__ void load_tile(float *s, const float *g, size_t gstride, int nvalid,
                                          int D) {
    for (int idx = threadIdx.x; idx < ROWS * DP; idx += kThreads) {
        int r = idx / DP, c = idx % DP;
        s[r * (DP + 1) + c] = (r < nvalid && c < D) ? g[(size_t)r * gstride + c] : 0.0f;
    }
}

// Which sequence the block's tile belongs to: the largest s < nseq with
// tile_start[s] <= b (empty sequences own no tile and are skipped by this rule).
__device__ __forceinline__ int find_seq(const int32_t *tile_start, int nseq, int b) {
    int lo = 0, hi = nseq - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (tile_start[mid] <= b) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// ------------------------------------------------------------ tile prefix ----

// tile_start (nseq+1): exclusive prefix of ceil(len_s / tile) over the sequences.
// One block: each thread sums a contiguous chunk, thread 0 scans the partials.
__global__ void __launch_bounds__(kThreads)
    tile_prefix_kernel(int32_t *tile_start, const int32_t *cu, int nseq, int tile) {
    __shared__ int part[kThreads];
    int chunk = (nseq + kThreads - 1) / kThreads;
    int s0 = threadIdx.x * chunk, s1 = min(nseq, s0 + chunk);
    int sum = 0;
    for (int s = s0; s < s1; s++) {
        int len = cu[s + 1] - cu[s];
        sum += len > 0 ? (len + tile - 1) / tile : 0;
    }
    part[threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (int i = 0; i < kThreads; i++) {
            int x = part[i];
            part[i] = run;
            run += x;
        }
        tile_start[nseq] = run;
    }
    __syncthreads();
    int run = part[threadIdx.x];
    for (int s = s0; s < s1; s++) {
        tile_start[s] = run;
        int len = cu[s + 1] - cu[s];
        run += len > 0 ? (len + tile - 1) / tile : 0;
    }
}

// ---------------------------------------------------------------- forward ----

template <int DP, int BQ, int BK>
constexpr size_t fwd_smem_bytes() {
    return sizeof(float) * ((size_t)BQ * (DP + 1) + (size_t)BK * (DP + 1) + (size_t)BQ * (BK + 1));
}

// grid (tiles, H). Packed mode (tile_start != NULL): tiles of BQ rows of each
// sequence of cu. Cached mode (tile_start == NULL): one sequence, query row r of
// q/out is at position past + r, keys 0..past+n-1; lse is not written.
template <int DP, int BQ, int BK>
__global__ void __launch_bounds__(kThreads)
    attn_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                    const int32_t *cu, const int32_t *tile_start, int nseq, int T, int H,
                    int Hkv, int D, float scale, int n_cached, int past) {
    constexpr int RQ = BQ / 16, RK = BK / 16, RC = DP / 16;
    extern __shared__ float smem[];
    float *Qs = smem;                       // (BQ, DP+1)
    float *KVs = Qs + BQ * (DP + 1);        // (BK, DP+1): K, then V of the key tile
    float *Ps = KVs + BK * (DP + 1);        // (BQ, BK+1): exp(S - m) of the tile

    const int h = blockIdx.y, g = h / (H / Hkv);
    const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    int qbase, pos0, nrows, kbase, klen;   // q/out row index of tile row 0, its position,
                                           // valid rows, key token of position 0, keys
    if (tile_start) {
        int b = blockIdx.x;
        if (b >= tile_start[nseq]) return;   // block-uniform: surplus block
        int s = find_seq(tile_start, nseq, b);
        int t0 = cu[s], len = cu[s + 1] - t0;
        pos0 = (b - tile_start[s]) * BQ;
        qbase = t0 + pos0;
        nrows = min(BQ, len - pos0);
        kbase = t0;
        klen = len;
    } else {
        int r0 = blockIdx.x * BQ;
        if (r0 >= n_cached) return;
        qbase = r0;
        pos0 = past + r0;
        nrows = min(BQ, n_cached - r0);
        kbase = 0;
        klen = past + n_cached;
    }
    const size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;   // token strides
    const float *kg = k + (size_t)kbase * kvs + (size_t)g * D;
    const float *vg = v + (size_t)kbase * kvs + (size_t)g * D;

    load_tile<BQ, DP>(Qs, q + (size_t)qbase * qs + (size_t)h * D, qs, nrows, D);

    float o[RQ][RC], m[RQ], l[RQ];
#pragma unroll
    for (int a = 0; a < RQ; a++) {
        m[a] = -INFINITY;
        l[a] = 0.0f;
#pragma unroll
        for (int c = 0; c < RC; c++) o[a][c] = 0.0f;
    }

    const int last = pos0 + nrows - 1;   // last valid query position: keys 0..last
    const int nkt = last / BK + 1;
    for (int kt = 0; kt < nkt; kt++) {
        const int j0 = kt * BK, kn = min(BK, klen - j0);
        load_tile<BK, DP>(KVs, kg + (size_t)j0 * kvs, kvs, kn, D);
        __syncthreads();   // Q (first pass) and K visible

        float s[RQ][RK];
#pragma unroll
        for (int a = 0; a < RQ; a++)
#pragma unroll
            for (int b = 0; b < RK; b++) s[a][b] = 0.0f;
        mm_abt<RQ, RK, DP>(s, Qs, KVs, ty, tx);
        __syncthreads();   // everyone done with K before V overwrites it

        load_tile<BK, DP>(KVs, vg + (size_t)j0 * kvs, kvs, kn, D);

#pragma unroll
        for (int a = 0; a < RQ; a++) {
            const int p = pos0 + ty + 16 * a;   // query position of this row
            float x[RK], mt = -INFINITY;
#pragma unroll
            for (int b = 0; b < RK; b++) {
                const int j = j0 + tx + 16 * b;
                x[b] = (j < klen && dpo_attn_visible(p, j)) ? s[a][b] * scale : -INFINITY;
                mt = fmaxf(mt, x[b]);
            }
            mt = half_warp_max(mt);
            const float mn = fmaxf(m[a], mt);
            // No valid key yet for this row: keep everything at zero (avoids inf - inf).
            const float corr = mn == -INFINITY ? 1.0f : expf(m[a] - mn);
            float rs = 0.0f;
#pragma unroll
            for (int b = 0; b < RK; b++) {
                const float e = x[b] == -INFINITY ? 0.0f : expf(x[b] - mn);
                Ps[(ty + 16 * a) * (BK + 1) + tx + 16 * b] = e;
                rs += e;
            }
            rs = half_warp_sum(rs);
            l[a] = l[a] * corr + rs;
            m[a] = mn;
#pragma unroll
            for (int c = 0; c < RC; c++) o[a][c] *= corr;
        }
        __syncthreads();   // P and V visible

        mm_pv<RQ, BK, DP>(o, Ps, KVs, ty, tx);
        __syncthreads();   // done with V and P before the next tile overwrites them
    }

#pragma unroll
    for (int a = 0; a < RQ; a++) {
        const int r = ty + 16 * a;
        if (r >= nrows) continue;
        const float inv = 1.0f / l[a];
        float *orow = out + (size_t)(qbase + r) * qs + (size_t)h * D;
#pragma unroll
        for (int c = 0; c < RC; c++) {
            const int col = tx + 16 * c;
            if (col < D) orow[col] = o[a][c] * inv;
        }
        if (lse && tx == 0) lse[(size_t)h * T + qbase + r] = m[a] + logf(l[a]);
    }
}

// --------------------------------------------------------------- backward ----

// delta (H,T) = rowsum(dout * out), summed over d in order as the CPU does.
__global__ void attn_delta_kernel(float *delta, const float *dout, const float *out, int T,
                                  int H, int D) {
    size_t n = (size_t)T * H, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const size_t t = idx / H, h = idx % H;
        const float *a = dout + idx * D, *b = out + idx * D;   // row (t, h) of (T,H,D)
        float sum = 0.0f;
        for (int d = 0; d < D; d++) sum += a[d] * b[d];
        delta[h * T + t] = sum;
    }
}

// dK/dV kernel: K, V, Q, dO tiles, P^T and dS^T, lse and delta of the query tile.
template <int DP, int B>
constexpr size_t dkdv_smem_bytes() {
    return sizeof(float) * (4 * (size_t)B * (DP + 1) + 2 * (size_t)B * (B + 1) + 2 * (size_t)B);
}

// dQ kernel: Q, dO, K, V tiles and dS.
template <int DP, int B>
constexpr size_t dq_smem_bytes() {
    return sizeof(float) * (4 * (size_t)B * (DP + 1) + (size_t)B * (B + 1));
}

// grid (key tiles, Hkv): dK, dV of B keys of kv head g, summed over the G query
// heads of the group and all query tiles at or below the diagonal.
template <int DP, int B>
__global__ void __launch_bounds__(kThreads)
    attn_bwd_dkdv_kernel(float *dk, float *dv, const float *dout, const float *lse,
                         const float *delta, const float *q, const float *k, const float *v,
                         const int32_t *cu, const int32_t *tile_start, int nseq, int T, int H,
                         int Hkv, int D, float scale) {
    constexpr int R = B / 16, RC = DP / 16;
    extern __shared__ float smem[];
    float *Ks = smem;                   // (B, DP+1) keys of this tile
    float *Vs = Ks + B * (DP + 1);      // (B, DP+1)
    float *Qs = Vs + B * (DP + 1);      // (B, DP+1) queries of the current query tile
    float *dOs = Qs + B * (DP + 1);     // (B, DP+1)
    float *Ps = dOs + B * (DP + 1);     // (B keys, B+1) P^T
    float *dSs = Ps + B * (B + 1);      // (B keys, B+1) dS^T (scale included)
    float *lse_s = dSs + B * (B + 1);   // (B) lse of the query tile's rows
    float *del_s = lse_s + B;           // (B) delta of the query tile's rows

    const int b = blockIdx.x, g = blockIdx.y, G = H / Hkv;
    if (b >= tile_start[nseq]) return;
    const int s = find_seq(tile_start, nseq, b);
    const int t0 = cu[s], len = cu[s + 1] - t0;
    const int kt = b - tile_start[s], j0 = kt * B, kn = min(B, len - j0);
    const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    const size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;

    load_tile<B, DP>(Ks, k + (size_t)(t0 + j0) * kvs + (size_t)g * D, kvs, kn, D);
    load_tile<B, DP>(Vs, v + (size_t)(t0 + j0) * kvs + (size_t)g * D, kvs, kn, D);

    float dka[R][RC], dva[R][RC];
#pragma unroll
    for (int a = 0; a < R; a++)
#pragma unroll
        for (int c = 0; c < RC; c++) dka[a][c] = dva[a][c] = 0.0f;

    const int nqt = (len + B - 1) / B;
    for (int h = g * G; h < (g + 1) * G; h++) {
        // Query tiles before kt hold only positions < j0: fully masked, skipped.
        for (int qt = kt; qt < nqt; qt++) {
            const int i0 = qt * B, qn = min(B, len - i0);
            __syncthreads();   // previous tile's readers of Qs, dOs, Ps, dSs are done
            const size_t roff = (size_t)(t0 + i0) * qs + (size_t)h * D;
            load_tile<B, DP>(Qs, q + roff, qs, qn, D);
            load_tile<B, DP>(dOs, dout + roff, qs, qn, D);
            for (int r = tid; r < B; r += kThreads) {
                const size_t li = (size_t)h * T + t0 + i0 + r;
                lse_s[r] = r < qn ? lse[li] : 0.0f;
                del_s[r] = r < qn ? delta[li] : 0.0f;
            }
            __syncthreads();

            float st[R][R], dpt[R][R];   // rows keys ty+16a, cols queries tx+16c
#pragma unroll
            for (int a = 0; a < R; a++)
#pragma unroll
                for (int c = 0; c < R; c++) st[a][c] = dpt[a][c] = 0.0f;
            mm_abt<R, R, DP>(st, Ks, Qs, ty, tx);
            mm_abt<R, R, DP>(dpt, Vs, dOs, ty, tx);
#pragma unroll
            for (int a = 0; a < R; a++) {
                const int jr = ty + 16 * a;
#pragma unroll
                for (int c = 0; c < R; c++) {
                    const int ir = tx + 16 * c;
                    const bool ok = jr < kn && ir < qn && dpo_attn_visible(i0 + ir, j0 + jr);
                    const float p = ok ? expf(st[a][c] * scale - lse_s[ir]) : 0.0f;
                    const float ds = ok ? p * (dpt[a][c] - del_s[ir]) * scale : 0.0f;
                    Ps[jr * (B + 1) + ir] = p;
                    dSs[jr * (B + 1) + ir] = ds;
                }
            }
            __syncthreads();
            mm_pv<R, B, DP>(dva, Ps, dOs, ty, tx);    // dV += P^T dO
            mm_pv<R, B, DP>(dka, dSs, Qs, ty, tx);    // dK += dS^T Q
        }
    }

#pragma unroll
    for (int a = 0; a < R; a++) {
        const int jr = ty + 16 * a;
        if (jr >= kn) continue;
        const size_t off = (size_t)(t0 + j0 + jr) * kvs + (size_t)g * D;
#pragma unroll
        for (int c = 0; c < RC; c++) {
            const int col = tx + 16 * c;
            if (col < D) {
                dk[off + col] = dka[a][c];
                dv[off + col] = dva[a][c];
            }
        }
    }
}

// grid (query tiles, H): dQ of B query rows of head h over key tiles 0..diagonal.
template <int DP, int B>
__global__ void __launch_bounds__(kThreads)
    attn_bwd_dq_kernel(float *dq, const float *dout, const float *lse, const float *delta,
                       const float *q, const float *k, const float *v, const int32_t *cu,
                       const int32_t *tile_start, int nseq, int T, int H, int Hkv, int D,
                       float scale) {
    constexpr int R = B / 16, RC = DP / 16;
    extern __shared__ float smem[];
    float *Qs = smem;                   // (B, DP+1)
    float *dOs = Qs + B * (DP + 1);     // (B, DP+1)
    float *Ks = dOs + B * (DP + 1);     // (B, DP+1) current key tile
    float *Vs = Ks + B * (DP + 1);      // (B, DP+1)
    float *dSs = Vs + B * (DP + 1);     // (B queries, B+1) dS (scale included)

    const int b = blockIdx.x, h = blockIdx.y, g = h / (H / Hkv);
    if (b >= tile_start[nseq]) return;
    const int s = find_seq(tile_start, nseq, b);
    const int t0 = cu[s], len = cu[s + 1] - t0;
    const int qt = b - tile_start[s], i0 = qt * B, qn = min(B, len - i0);
    const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    const size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;

    const size_t roff = (size_t)(t0 + i0) * qs + (size_t)h * D;
    load_tile<B, DP>(Qs, q + roff, qs, qn, D);
    load_tile<B, DP>(dOs, dout + roff, qs, qn, D);
    float lr[R], dr[R];   // lse and delta of rows ty+16a
#pragma unroll
    for (int a = 0; a < R; a++) {
        const int ir = ty + 16 * a;
        lr[a] = ir < qn ? lse[(size_t)h * T + t0 + i0 + ir] : 0.0f;
        dr[a] = ir < qn ? delta[(size_t)h * T + t0 + i0 + ir] : 0.0f;
    }

    float dqa[R][RC];
#pragma unroll
    for (int a = 0; a < R; a++)
#pragma unroll
        for (int c = 0; c < RC; c++) dqa[a][c] = 0.0f;

    const float *kg = k + (size_t)t0 * kvs + (size_t)g * D;
    const float *vg = v + (size_t)t0 * kvs + (size_t)g * D;
    for (int kt = 0; kt <= qt; kt++) {   // key tiles past the diagonal are fully masked
        const int j0 = kt * B, kn = min(B, len - j0);
        load_tile<B, DP>(Ks, kg + (size_t)j0 * kvs, kvs, kn, D);
        load_tile<B, DP>(Vs, vg + (size_t)j0 * kvs, kvs, kn, D);
        __syncthreads();   // Q, dO (first pass), K, V visible

        float st[R][R], dpt[R][R];   // rows queries ty+16a, cols keys tx+16c
#pragma unroll
        for (int a = 0; a < R; a++)
#pragma unroll
            for (int c = 0; c < R; c++) st[a][c] = dpt[a][c] = 0.0f;
        mm_abt<R, R, DP>(st, Qs, Ks, ty, tx);
        mm_abt<R, R, DP>(dpt, dOs, Vs, ty, tx);
#pragma unroll
        for (int a = 0; a < R; a++) {
            const int ir = ty + 16 * a;
#pragma unroll
            for (int c = 0; c < R; c++) {
                const int jr = tx + 16 * c;
                const bool ok = jr < kn && ir < qn && dpo_attn_visible(i0 + ir, j0 + jr);
                const float p = ok ? expf(st[a][c] * scale - lr[a]) : 0.0f;
                dSs[ir * (B + 1) + jr] = ok ? p * (dpt[a][c] - dr[a]) * scale : 0.0f;
            }
        }
        __syncthreads();   // dS visible
        mm_pv<R, B, DP>(dqa, dSs, Ks, ty, tx);   // dQ += dS K
        __syncthreads();   // done with K, V, dS before the next tile
    }

#pragma unroll
    for (int a = 0; a < R; a++) {
        const int ir = ty + 16 * a;
        if (ir >= qn) continue;
        float *row = dq + (size_t)(t0 + i0 + ir) * qs + (size_t)h * D;
#pragma unroll
        for (int c = 0; c < RC; c++) {
            const int col = tx + 16 * c;
            if (col < D) row[col] = dqa[a][c];
        }
    }
}

// ------------------------------------------------------------ dispatchers ----

// Tile sizes per padded head dim. Forward: 64 query rows; 64 keys (32 at DP=256 to
// keep shared memory near 105 KiB). Backward: square tiles of 64 (32 from DP=128).
template <int DP>
struct Cfg {
    static constexpr int BQ = 64, BK = DP >= 256 ? 32 : 64, B = DP >= 128 ? 32 : 64;
};

void check_shape(const char *what, int H, int Hkv, int D) {
    if (Hkv <= 0 || H <= 0 || H % Hkv != 0)
        dpo_fatal("cuda %s: Hkv must divide H (H=%d, Hkv=%d)", what, H, Hkv);
    if (D <= 0 || D > 256) dpo_fatal("cuda %s: head dim %d unsupported (1..256)", what, D);
}

// Kernels above 48 KiB of dynamic shared memory must opt in, once per kernel and
// device: *done is the instance's flag for that kernel (dpo_cuda_ctx_t).
template <typename K>
void allow_smem(K kernel, size_t bytes, bool *done) {
    if (*done) return;
    DPO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)bytes));
    *done = true;
}

// Prefix of tiles of `tile` rows per sequence into a stream-ordered allocation.
int32_t *tile_prefix(const int32_t *cu, int nseq, int tile, cudaStream_t st) {
    int32_t *ts = nullptr;
    DPO_CUDA_CHECK(cudaMallocAsync((void **)&ts, (size_t)(nseq + 1) * sizeof(int32_t), st));
    tile_prefix_kernel<<<1, kThreads, 0, st>>>(ts, cu, nseq, tile);
    DPO_CUDA_LAUNCHED();
    return ts;
}

// Index of a padded head dim among the instantiations (the per-instance flags).
constexpr int dim_index(int DP) { return DP <= 16 ? 0 : DP <= 32 ? 1 : DP <= 64 ? 2 : DP <= 128 ? 3 : 4; }
static_assert(dim_index(256) == DPO_CUDA_ATTN_DIMS - 1, "one flag per instantiation");

template <int DP>
void fwd_launch(dpo_cuda_ctx_t *cx, float *out, float *lse, const float *q, const float *k, const float *v,
                const int32_t *cu, const int32_t *ts, int nseq, int T, int H, int Hkv, int D,
                int n_cached, int past, unsigned tiles) {
    constexpr int BQ = Cfg<DP>::BQ, BK = Cfg<DP>::BK;
    constexpr size_t smem = fwd_smem_bytes<DP, BQ, BK>();
    allow_smem(attn_fwd_kernel<DP, BQ, BK>, smem, &cx->attn_smem_fwd[dim_index(DP)]);
    dim3 grid(tiles, (unsigned)H);
    attn_fwd_kernel<DP, BQ, BK><<<grid, kThreads, smem, cx->stream>>>(
        out, lse, q, k, v, cu, ts, nseq, T, H, Hkv, D, 1.0f / sqrtf((float)D), n_cached, past);
    DPO_CUDA_LAUNCHED();
}

template <int DP>
void bwd_launch(dpo_cuda_ctx_t *cx, float *dq, float *dk, float *dv, const float *dout, const float *lse,
                const float *delta, const float *q, const float *k, const float *v,
                const int32_t *cu, int nseq, int T, int H, int Hkv, int D) {
    constexpr int B = Cfg<DP>::B;
    constexpr size_t smem_kv = dkdv_smem_bytes<DP, B>(), smem_q = dq_smem_bytes<DP, B>();
    allow_smem(attn_bwd_dkdv_kernel<DP, B>, smem_kv, &cx->attn_smem_dkdv[dim_index(DP)]);
    allow_smem(attn_bwd_dq_kernel<DP, B>, smem_q, &cx->attn_smem_dq[dim_index(DP)]);
    cudaStream_t st = cx->stream;
    int32_t *ts = tile_prefix(cu, nseq, B, st);
    const float scale = 1.0f / sqrtf((float)D);
    const unsigned tiles = (unsigned)((T + B - 1) / B + nseq);   // >= sum of ceil(len/B)
    attn_bwd_dkdv_kernel<DP, B><<<dim3(tiles, (unsigned)Hkv), kThreads, smem_kv, st>>>(
        dk, dv, dout, lse, delta, q, k, v, cu, ts, nseq, T, H, Hkv, D, scale);
    DPO_CUDA_LAUNCHED();
    attn_bwd_dq_kernel<DP, B><<<dim3(tiles, (unsigned)H), kThreads, smem_q, st>>>(
        dq, dout, lse, delta, q, k, v, cu, ts, nseq, T, H, Hkv, D, scale);
    DPO_CUDA_LAUNCHED();
    DPO_CUDA_CHECK(cudaFreeAsync(ts, st));
}

int padded_dim(int D) { return D <= 16 ? 16 : D <= 32 ? 32 : D <= 64 ? 64 : D <= 128 ? 128 : 256; }

// Runs the forward kernel instantiated for D's padded size.
void fwd_dispatch(dpo_cuda_ctx_t *cx, float *out, float *lse, const float *q, const float *k, const float *v,
                  const int32_t *cu, const int32_t *ts, int nseq, int T, int H, int Hkv, int D,
                  int n_cached, int past, unsigned tiles) {
    switch (padded_dim(D)) {
    case 16: fwd_launch<16>(cx, out, lse, q, k, v, cu, ts, nseq, T, H, Hkv, D, n_cached, past, tiles); break;
    case 32: fwd_launch<32>(cx, out, lse, q, k, v, cu, ts, nseq, T, H, Hkv, D, n_cached, past, tiles); break;
    case 64: fwd_launch<64>(cx, out, lse, q, k, v, cu, ts, nseq, T, H, Hkv, D, n_cached, past, tiles); break;
    case 128: fwd_launch<128>(cx, out, lse, q, k, v, cu, ts, nseq, T, H, Hkv, D, n_cached, past, tiles); break;
    default: fwd_launch<256>(cx, out, lse, q, k, v, cu, ts, nseq, T, H, Hkv, D, n_cached, past, tiles); break;
    }
}

}  // namespace

void dpo_cuda_attention_fwd_f32(dpo_cuda_ctx_t *cx, float *out, float *lse, const float *q, const float *k,
                            const float *v, const int32_t *cu_seqlens, int nseq, int T, int H,
                            int Hkv, int D) {
    check_shape("attention_fwd", H, Hkv, D);
    if (T <= 0 || nseq <= 0) return;
    cudaStream_t st = cx->stream;
    const int BQ = 64;   // Cfg<DP>::BQ for every DP
    int32_t *ts = tile_prefix(cu_seqlens, nseq, BQ, st);
    const unsigned tiles = (unsigned)((T + BQ - 1) / BQ + nseq);   // >= sum of ceil(len/BQ)
    fwd_dispatch(cx, out, lse, q, k, v, cu_seqlens, ts, nseq, T, H, Hkv, D, 0, 0, tiles);
    DPO_CUDA_CHECK(cudaFreeAsync(ts, st));
}

void dpo_cuda_attention_bwd_f32(dpo_cuda_ctx_t *cx, float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu_seqlens, int nseq, int T, int H, int Hkv, int D) {
    check_shape("attention_bwd", H, Hkv, D);
    if (T <= 0) return;
    cudaStream_t st = cx->stream;
    // Overwrite semantics: the kernels write every row of every sequence; rows of
    // no sequence (cu_seqlens[nseq] < T) must still read as zero.
    DPO_CUDA_CHECK(cudaMemsetAsync(dq, 0, (size_t)T * H * D * sizeof(float), st));
    DPO_CUDA_CHECK(cudaMemsetAsync(dk, 0, (size_t)T * Hkv * D * sizeof(float), st));
    DPO_CUDA_CHECK(cudaMemsetAsync(dv, 0, (size_t)T * Hkv * D * sizeof(float), st));
    if (nseq <= 0) return;
    float *delta = nullptr;   // (H,T)
    DPO_CUDA_CHECK(cudaMallocAsync((void **)&delta, (size_t)H * T * sizeof(float), st));
    attn_delta_kernel<<<dpo_cuda_blocks((size_t)T * H, 256), 256, 0, st>>>(delta, dout, out, T,
                                                                             H, D);
    DPO_CUDA_LAUNCHED();
    switch (padded_dim(D)) {
    case 16: bwd_launch<16>(cx, dq, dk, dv, dout, lse, delta, q, k, v, cu_seqlens, nseq, T, H, Hkv, D); break;
    case 32: bwd_launch<32>(cx, dq, dk, dv, dout, lse, delta, q, k, v, cu_seqlens, nseq, T, H, Hkv, D); break;
    case 64: bwd_launch<64>(cx, dq, dk, dv, dout, lse, delta, q, k, v, cu_seqlens, nseq, T, H, Hkv, D); break;
    case 128: bwd_launch<128>(cx, dq, dk, dv, dout, lse, delta, q, k, v, cu_seqlens, nseq, T, H, Hkv, D); break;
    default: bwd_launch<256>(cx, dq, dk, dv, dout, lse, delta, q, k, v, cu_seqlens, nseq, T, H, Hkv, D); break;
    }
    DPO_CUDA_CHECK(cudaFreeAsync(delta, st));
}

void dpo_cuda_attention_cached_f32(dpo_cuda_ctx_t *cx, float *out, const float *q, const float *k, const float *v, int n,
                               int past, int H, int Hkv, int D) {
    check_shape("attention_cached", H, Hkv, D);
    if (n <= 0) return;
    const int BQ = 64;
    fwd_dispatch(cx, out, nullptr, q, k, v, nullptr, nullptr, 1, past + n, H, Hkv, D, n, past,
                 (unsigned)((n + BQ - 1) / BQ));
}
