// Attention over packed variable-length sequences on the GPU, FlashAttention-2 style: tiles of
// queries and keys staged in shared memory, S = Q K^T and O = P V on the tensor cores through
// inline-PTX mma.sync.m16n8k16 (bf16 in, fp32 accumulate) fed by ldmatrix, an online softmax in
// fp32 registers, and no (T, T) matrix anywhere. The contract is kernels/ops.h's; the reference is
// kernels/cpu/attention.c.
//
// Layout of the work (head dims 64 and 128; every other head dim, and pointers that are not
// 16-byte aligned, take the scalar path at the end of this file: slow, fp32 throughout):
//   forward     one CTA = 64 query rows of one (sequence, query head); 4 warps x 16 rows. Loops over
//               key tiles of 64 (causal: only up to the diagonal; with a sliding window, only from
//               the tile holding the first row's first key), K/V double-buffered by cp.async.
//   backward    (1) delta_i = rowsum(dO_i * O_i) in fp32, one warp per (row, head);
//               (2) dK, dV: one CTA = 64 keys of one (sequence, kv head); 4 warps x 16 keys. Loops
//                   over the query heads of the kv head's group, then over query tiles of 64 (causal:
//                   from the diagonal on; with a sliding window, only up to the tile holding the
//                   last query that sees the last key), in a fixed order, accumulating dK and dV in
//                   fp32 registers;
//               (3) dQ: one CTA = 64 query rows of one (sequence, query head), looping over the key
//                   tiles the forward visits and accumulating dQ in fp32 registers.
//   Every output element is written by exactly one thread after a fixed-order loop: no atomics, so
//   the results are bit-identical run to run (ops.h: deterministic). The price of a deterministic
//   dQ is recomputing S and dP in (3): 7 tile GEMMs per (query tile, key tile) instead of 5.
//
// Rounding, as in FlashAttention: P (forward, and backward for dV) and dS are rounded to bf16 to
// enter the tensor cores; S, dP, every sum and the softmax statistics stay fp32.
//
// Mistral's sliding window (ops.h: under the causal mask, key j seen by query i iff
// i - window < j <= i): the tiles wholly outside every row's window are never visited, so the work
// of a tile grows with the window, not with the sequence; the tiles the window cuts through mask
// their scores element by element, exactly as the diagonal tiles do for the causal mask. The host
// passes window 0 where the window cannot bind (no causal mask, or a window of T keys or more), and
// window 0 takes the same loop bounds and masks as before the window existed, so its bits are
// unchanged.
//
// Locating a tile: the host does not know the sequence lengths (cu_seqlens lives on the device), so
// the grid has an upper bound of ceil(T/64) + n_seq tiles per head and each CTA walks cu_seqlens to
// find its (sequence, tile); CTAs past the last tile exit at once.
#include <math.h>
#include <string.h>

#include "common.cuh"

typedef __nv_bfloat16 bf16;

#define ATT_LOG2E 1.4426950408889634f
#define ATT_LN2 0.6931471805599453f

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kRows = 64;      // query rows per tile (16 per warp)
constexpr int kCols = 64;      // keys per tile
// CTAs per SM the register allocation must allow (__launch_bounds__' second argument). Shared
// memory lets an H100 hold 4 (D = 64) or 2 (D = 128) of any of these kernels; the caps below are
// those, lowered where they would make ptxas spill (dQ at D = 64: 3; dK/dV: 2, and at D = 128 it
// needs all 255 registers). With no minimum at all, ptxas 13.0 chose 128 registers for some of
// these kernels and spilled on sm_80.
constexpr int kFwdMinBlocks(int D) { return D <= 64 ? 4 : 2; }
constexpr int kDqMinBlocks(int D) { return D <= 64 ? 3 : 2; }

// ---------------------------------------------------------------------------------------------
// PTX wrappers. Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"),
// with g = lane / 4 and t = lane % 4:
//   A (16x16, row-major)  a0: (g, 2t..2t+1)  a1: (g+8, 2t..)  a2: (g, 8+2t..)  a3: (g+8, 8+2t..)
//   B (16x8,  k x n)      b0: (k = 2t..2t+1, n = g)           b1: (k = 8+2t.., n = g)
//   C (16x8,  fp32)       c0, c1: (g, 2t..2t+1)               c2, c3: (g+8, 2t..2t+1)
// Each 32-bit register holds two bf16, the lower column (or k) in the low half.

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)),
                 "l"((uint64_t)__cvta_generic_to_global(gmem))
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses (16 bytes each) of matrix i.
// Plain: lane gets (row g, cols 2t, 2t+1) of each matrix. Transposed: (rows 2t, 2t+1, col g).
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c (16x8 fp32) += a (16x16 bf16) b (16x8 bf16)
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

// ---------------------------------------------------------------------------------------------
// Warp-level tile GEMMs on shared memory. Shared tiles are row-major bf16 with a row stride of
// D + 8 elements: (D + 8) * 2 bytes is an odd multiple of 16 for D a multiple of 16, so the 8 row
// addresses of an ldmatrix fall in 8 different 16-byte bank groups (no conflicts), and every row
// start stays 16-byte aligned as ldmatrix and cp.async require.

// acc (16 x 8NT) += A (16 x KD) B^T, with A the 16 rows at sA and B the 8NT rows at sB, both
// row-major with KD columns (so B^T is k x n as the mma wants: B's row n is column n of B^T).
// Used for Q K^T, K Q^T, dO V^T and V dO^T.
template <int NT, int KD>
__device__ __forceinline__ void warp_gemm_abt(float (&acc)[NT][4], uint32_t sA, uint32_t sB, int ld_bytes) {
    static_assert(NT % 2 == 0 && KD % 16 == 0, "tile shape");
    const int lane = threadIdx.x & 31;
    // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3.
    const uint32_t a_base = sA + (uint32_t)(((lane & 7) + 8 * ((lane >> 3) & 1)) * ld_bytes + 16 * (lane >> 4));
    // B: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15) = b0, b1 of n-tile
    // 0 and b0, b1 of n-tile 1 (B's rows are n, its columns k; the plain load gives (n = g, k = 2t..)).
    const uint32_t b_base = sB + (uint32_t)(((lane & 7) + 8 * (lane >> 4)) * ld_bytes + 16 * ((lane >> 3) & 1));
#pragma unroll
    for (int kk = 0; kk < KD / 16; kk++) {
        uint32_t a[4];
        ldmatrix_x4(a, a_base + kk * 32);
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            ldmatrix_x4(b, b_base + (uint32_t)(np * 16 * ld_bytes) + kk * 32);
            mma_16816(acc[2 * np], a, b[0], b[1]);
            mma_16816(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

// acc (16 x 8NT) += A (16 x 16KT) B, with A in registers as mma A fragments (a[kk] covers k
// 16kk..16kk+15) and B (16KT x 8NT) row-major in shared memory at sB. Used for P V, P^T dO, dS^T Q
// and dS K.
template <int NT, int KT>
__device__ __forceinline__ void warp_gemm_rb(float (&acc)[NT][4], const uint32_t (&a)[KT][4], uint32_t sB,
                                             int ld_bytes) {
    static_assert(NT % 2 == 0, "tile shape");
    const int lane = threadIdx.x & 31;
    // B stored k-major (rows k, columns n): transposed loads of matrices (k 0-7, n 0-7), (k 8-15, n 0-7),
    // (k 0-7, n 8-15), (k 8-15, n 8-15) give b0, b1 of n-tile 0 and b0, b1 of n-tile 1.
    const uint32_t b_base = sB + (uint32_t)(((lane & 7) + 8 * ((lane >> 3) & 1)) * ld_bytes + 16 * (lane >> 4));
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, b_base + (uint32_t)(kk * 16 * ld_bytes) + np * 32);
            mma_16816(acc[2 * np], a[kk], b[0], b[1]);
            mma_16816(acc[2 * np + 1], a[kk], b[2], b[3]);
        }
    }
}

// C fragments of a 16 x 16KT fp32 tile -> A fragments of the same tile in bf16. The C layout of
// n-tiles 2kk and 2kk+1 is exactly the A layout of k-block kk (see the table above).
template <int KT>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[KT][4], const float (&c)[2 * KT][4]) {
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
        a[kk][0] = pack_bf16(c[2 * kk][0], c[2 * kk][1]);
        a[kk][1] = pack_bf16(c[2 * kk][2], c[2 * kk][3]);
        a[kk][2] = pack_bf16(c[2 * kk + 1][0], c[2 * kk + 1][1]);
        a[kk][3] = pack_bf16(c[2 * kk + 1][2], c[2 * kk + 1][3]);
    }
}

template <int NT>
__device__ __forceinline__ void zero_acc(float (&acc)[NT][4]) {
#pragma unroll
    for (int i = 0; i < NT; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
}

// ---------------------------------------------------------------------------------------------
// Tiles and sequences.

// Copies rows [0, valid) of a ROWS x D tile from global memory (row stride ld elements) into shared
// memory (row stride D + 8) with 16-byte cp.async; rows [valid, ROWS) are zero-filled so that they
// contribute exact zeros (and never read another sequence's rows or past the end of the buffer).
template <int ROWS, int D>
__device__ __forceinline__ void load_tile(bf16 *s, const bf16 *g, size_t ld, int valid) {
    constexpr int chunks = D / 8;  // 16-byte chunks per row
    for (int c = threadIdx.x; c < ROWS * chunks; c += kThreads) {
        int r = c / chunks, col = (c % chunks) * 8;
        bf16 *dst = s + r * (D + 8) + col;
        if (r < valid) cp_async16(dst, g + (size_t)r * ld + col);
        else *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
}

// Writes a warp's 16 x D fp32 accumulator (C fragments, times `mul`) as bf16 rows [row0, row0 + 16)
// of global memory, rows at or past `valid` skipped. Goes through the warp's own 16 rows of the
// shared tile `s` (row stride D + 8) so that the global stores are 16 bytes wide; the caller
// guarantees no other warp touches those rows any more.
template <int D>
__device__ __forceinline__ void store_rows(bf16 *g, size_t ld, int row0, int valid, bf16 *s,
                                           const float (&acc)[D / 8][4], float mul0, float mul1) {
    const int lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    __syncwarp();
#pragma unroll
    for (int nt = 0; nt < D / 8; nt++) {
        uint32_t lo = pack_bf16(acc[nt][0] * mul0, acc[nt][1] * mul0);
        uint32_t hi = pack_bf16(acc[nt][2] * mul1, acc[nt][3] * mul1);
        *reinterpret_cast<uint32_t *>(s + gq * (D + 8) + nt * 8 + 2 * tq) = lo;
        *reinterpret_cast<uint32_t *>(s + (gq + 8) * (D + 8) + nt * 8 + 2 * tq) = hi;
    }
    __syncwarp();
    constexpr int chunks = D / 8;
    for (int c = lane; c < 16 * chunks; c += 32) {
        int r = c / chunks, col = (c % chunks) * 8;
        if (row0 + r < valid)
            *reinterpret_cast<uint4 *>(g + (size_t)(row0 + r) * ld + col) =
                *reinterpret_cast<const uint4 *>(s + r * (D + 8) + col);
    }
}

// Finds this CTA's (sequence, tile) for tiles of `rows`: sequence s has ceil(L_s / rows) tiles,
// numbered from its last (the most work under the causal mask, so it starts first). Returns 0 for
// the CTAs past the last tile. Every thread computes the same answer.
__device__ __forceinline__ int find_tile(const int32_t *cu, int n_seq, int rows, int *start, int *len, int *tile) {
    int b = blockIdx.x;
    for (int s = 0; s < n_seq; s++) {
        int st = cu[s], L = cu[s + 1] - st;
        int n = L > 0 ? (L + rows - 1) / rows : 0;
        if (b < n) {
            *start = st, *len = L, *tile = n - 1 - b;
            return 1;
        }
        b -= n;
    }
    return 0;
}

// Key tiles a query tile [q0, q0 + kRows) sees: all of the sequence's, or under the causal mask
// those up to the one holding the tile's last valid row.
__device__ __forceinline__ int key_tiles(int q0, int L, int causal) {
    int last = causal ? min(q0 + kRows, L) : L;  // keys [0, last)
    return (last + kCols - 1) / kCols;
}

// The first key tile a query tile [q0, q0 + kRows) sees: 0, or under a sliding window the one
// holding the first key of its first row, q0 - window + 1 (later rows' windows start later). The
// tiles before it are skipped whole.
__device__ __forceinline__ int first_key_tile(int q0, int window) {
    return window > 0 && q0 - window + 1 > 0 ? (q0 - window + 1) / kCols : 0;
}

// The end (exclusive) of the query tiles that see a key tile [k0, k0 + kCols): all n_qt of them, or
// under a sliding window those up to the one holding k0 + kCols - 2 + window, the last query whose
// window holds the tile's last key.
__device__ __forceinline__ int query_tiles_end(int k0, int n_qt, int window) {
    return window > 0 ? min(n_qt, (k0 + kCols - 2 + window) / kRows + 1) : n_qt;
}

// ---------------------------------------------------------------------------------------------
// Forward. grid (tiles, Hq); dynamic shared memory: Q (64 x D+8), then 2 stages of K, V (64 x D+8).

template <int D>
__global__ void __launch_bounds__(kThreads, kFwdMinBlocks(D))
    attn_fwd_kernel(bf16 *__restrict__ out, float *__restrict__ lse, const bf16 *__restrict__ q,
                    const bf16 *__restrict__ k, const bf16 *__restrict__ v, const int32_t *__restrict__ cu, int n_seq,
                    int T, int Hq, int Hkv, float scale_log2, int causal, int window) {
    constexpr int LDS = D + 8, LDB = LDS * 2;  // row stride in elements, bytes
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem);  // (64, D+8)
    bf16 *sK = sQ + kRows * LDS;                // 2 x (64, D+8)
    bf16 *sV = sK + 2 * kCols * LDS;            // 2 x (64, D+8)

    int start, L, tile;
    if (!find_tile(cu, n_seq, kRows, &start, &L, &tile)) return;
    const int h = blockIdx.y, hk = h / (Hq / Hkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;  // row strides
    const int q0 = tile * kRows;
    const bf16 *kg = k + (size_t)start * ks + (size_t)hk * D;
    const bf16 *vg = v + (size_t)start * ks + (size_t)hk * D;
    // Key tiles [kt0, n_kt); stage (j - kt0) & 1 holds tile j (kt0 = 0 without a window).
    const int n_kt = key_tiles(q0, L, causal), kt0 = first_key_tile(q0, window), kb = kt0 * kCols;

    load_tile<kRows, D>(sQ, q + (size_t)(start + q0) * qs + (size_t)h * D, qs, min(kRows, L - q0));
    load_tile<kCols, D>(sK, kg + (size_t)kb * ks, ks, min(kCols, L - kb));
    load_tile<kCols, D>(sV, vg + (size_t)kb * ks, ks, min(kCols, L - kb));
    cp_async_commit();

    // This thread's two query rows (within the sequence): r = 0 for row g, r = 1 for row g + 8.
    const int row[2] = {q0 + warp * 16 + gq, q0 + warp * 16 + gq + 8};
    float m[2] = {-INFINITY, -INFINITY};  // running max of the log2-scaled scores
    float l[2] = {0.0f, 0.0f};            // running sum of exp2(score - m), this thread's columns only
    float o[D / 8][4];                    // (16, D) output accumulator of the warp
    zero_acc(o);

    for (int j = kt0; j < n_kt; j++) {
        if (j + 1 < n_kt) {
            int k1 = (j + 1) * kCols, buf = (j + 1 - kt0) & 1;
            load_tile<kCols, D>(sK + buf * kCols * LDS, kg + (size_t)k1 * ks, ks, min(kCols, L - k1));
            load_tile<kCols, D>(sV + buf * kCols * LDS, vg + (size_t)k1 * ks, ks, min(kCols, L - k1));
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int buf = (j - kt0) & 1, k0 = j * kCols;

        float s[kCols / 8][4];  // (16, 64) scores of this warp's rows
        zero_acc(s);
        warp_gemm_abt<kCols / 8, D>(s, smem_addr(sQ + warp * 16 * LDS), smem_addr(sK + buf * kCols * LDS), LDB);

        // Mask (keys past the sequence's end; keys after the query under the causal mask; keys at or
        // before query - window under a sliding window) and scale. A tile is on the window's edge
        // when its first key falls out of its last row's window: k0 <= q0 + kRows - 1 - window.
        const bool edge = k0 + kCols > L || (causal && k0 + kCols - 1 > q0) || (window > 0 && k0 + window < q0 + kRows);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < kCols / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = k0 + nt * 8 + 2 * tq + (e & 1);
                float x = s[nt][e] * scale_log2;
                if (edge && (col >= L || (causal && col > row[e >> 1]) || (window > 0 && col <= row[e >> 1] - window)))
                    x = -INFINITY;
                s[nt][e] = x;
                mx[e >> 1] = fmaxf(mx[e >> 1], x);
            }
        // Online softmax: the four threads of a quad hold one row between them.
        float alpha[2], mref[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float mnew = fmaxf(m[r], mx[r]);
            // A row with nothing visible yet (under a sliding window, the first tile of a query
            // tile can hold none of its later rows' keys): keep exp2 finite.
            mref[r] = mnew == -INFINITY ? 0.0f : mnew;
            alpha[r] = exp2f(m[r] - mref[r]);  // 0 on the first visible tile (m = -inf)
            m[r] = mnew;
            l[r] *= alpha[r];
        }
#pragma unroll
        for (int nt = 0; nt < kCols / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = exp2f(s[nt][e] - mref[e >> 1]);
                s[nt][e] = p;
                l[e >> 1] += p;
            }
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++) {
            o[nt][0] *= alpha[0], o[nt][1] *= alpha[0];
            o[nt][2] *= alpha[1], o[nt][3] *= alpha[1];
        }
        uint32_t pa[kCols / 16][4];
        c_to_a(pa, s);
        warp_gemm_rb<D / 8, kCols / 16>(o, pa, smem_addr(sV + buf * kCols * LDS), LDB);
        __syncthreads();  // every warp is done with this stage before the next iteration refills it
    }

    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        inv[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        if (tq == 0 && row[r] < L) lse[(size_t)h * T + start + row[r]] = (m[r] + log2f(l[r])) * ATT_LN2;
    }
    // sQ's rows of this warp were read by this warp only.
    store_rows<D>(out + (size_t)start * qs + (size_t)h * D, qs, q0 + warp * 16, L, sQ + warp * 16 * LDS, o, inv[0],
                  inv[1]);
}

// ---------------------------------------------------------------------------------------------
// Backward (2): dK, dV. grid (key tiles, Hkv); dynamic shared memory: K, V (64 x D+8), then 2
// stages of Q, dO (64 x D+8), then 2 stages of lse*log2(e) and delta (64 floats each).
// Each warp owns 16 keys and computes the transposed products directly: S^T = K Q^T,
// dP^T = V dO^T, dV += P^T dO, dK += dS^T Q, so nothing is shared between warps.

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    attn_bwd_dkdv_kernel(bf16 *__restrict__ dk, bf16 *__restrict__ dv, const bf16 *__restrict__ dout,
                         const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                         const float *__restrict__ lse, const float *__restrict__ delta, const int32_t *__restrict__ cu,
                         int n_seq, int T, int Hq, int Hkv, float scale, float scale_log2, int causal, int window) {
    constexpr int LDS = D + 8, LDB = LDS * 2;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sK = reinterpret_cast<bf16 *>(smem);                    // (64, D+8)
    bf16 *sV = sK + kCols * LDS;                                  // (64, D+8)
    bf16 *sQ = sV + kCols * LDS;                                  // 2 x (64, D+8)
    bf16 *sO = sQ + 2 * kRows * LDS;                              // 2 x (64, D+8): dO
    float *sL = reinterpret_cast<float *>(sO + 2 * kRows * LDS);  // 2 x (64): lse * log2(e)
    float *sD = sL + 2 * kRows;                                   // 2 x (64): delta

    int start, L, tile;
    if (!find_tile(cu, n_seq, kCols, &start, &L, &tile)) return;
    const int hk = blockIdx.y, group = Hq / Hkv;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
    const int k0 = tile * kCols;

    load_tile<kCols, D>(sK, k + (size_t)(start + k0) * ks + (size_t)hk * D, ks, min(kCols, L - k0));
    load_tile<kCols, D>(sV, v + (size_t)(start + k0) * ks + (size_t)hk * D, ks, min(kCols, L - k0));

    // Work list: for each query head of the group in order, the query tiles that see these keys
    // (causal: from the one holding key k0 on; with a sliding window, up to the one holding the
    // last query whose window reaches these keys). One flat index so the pipeline crosses heads.
    const int qt_first = causal ? k0 / kRows : 0, n_qt = (L + kRows - 1) / kRows;
    const int per_head = query_tiles_end(k0, n_qt, window) - qt_first, total = group * per_head;
    auto load_stage = [&](int it, int buf) {
        int h = hk * group + it / per_head, i0 = (qt_first + it % per_head) * kRows;
        int valid = min(kRows, L - i0);
        size_t off = (size_t)(start + i0) * qs + (size_t)h * D;
        load_tile<kRows, D>(sQ + buf * kRows * LDS, q + off, qs, valid);
        load_tile<kRows, D>(sO + buf * kRows * LDS, dout + off, qs, valid);
        for (int r = threadIdx.x; r < kRows; r += kThreads) {
            size_t idx = (size_t)h * T + start + i0 + r;
            sL[buf * kRows + r] = r < valid ? lse[idx] * ATT_LOG2E : 0.0f;
            sD[buf * kRows + r] = r < valid ? delta[idx] : 0.0f;
        }
    };
    if (total > 0) load_stage(0, 0);
    cp_async_commit();

    const int key[2] = {k0 + warp * 16 + gq, k0 + warp * 16 + gq + 8};  // this thread's two keys
    float dka[D / 8][4], dva[D / 8][4];                                 // (16, D) accumulators of the warp's keys
    zero_acc(dka);
    zero_acc(dva);

    for (int it = 0; it < total; it++) {
        if (it + 1 < total) {
            load_stage(it + 1, (it + 1) & 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int buf = it & 1, i0 = (qt_first + it % per_head) * kRows;
        const bf16 *q_t = sQ + buf * kRows * LDS, *o_t = sO + buf * kRows * LDS;
        const float *l_t = sL + buf * kRows, *d_t = sD + buf * kRows;

        float st[kRows / 8][4];  // (16 keys, 64 queries): S^T, then P^T
        zero_acc(st);
        warp_gemm_abt<kRows / 8, D>(st, smem_addr(sK + warp * 16 * LDS), smem_addr(q_t), LDB);
        // Masked: queries past the sequence's end, before the key (causal), or at or past key +
        // window (a sliding window; the tile is on its edge when its last query is out of its
        // first key's window: i0 + kRows - 1 >= k0 + window).
        const bool edge = i0 + kRows > L || (causal && i0 < k0 + kCols - 1) || (window > 0 && i0 + kRows > k0 + window);
#pragma unroll
        for (int nt = 0; nt < kRows / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int c = nt * 8 + 2 * tq + (e & 1), i = i0 + c;  // query
                float p = exp2f(st[nt][e] * scale_log2 - l_t[c]);
                if (edge && (i >= L || (causal && i < key[e >> 1]) || (window > 0 && i >= key[e >> 1] + window)))
                    p = 0.0f;
                st[nt][e] = p;
            }
        uint32_t pa[kRows / 16][4];
        c_to_a(pa, st);

        float dpt[kRows / 8][4];  // (16 keys, 64 queries): dP^T, then dS^T
        zero_acc(dpt);
        warp_gemm_abt<kRows / 8, D>(dpt, smem_addr(sV + warp * 16 * LDS), smem_addr(o_t), LDB);
#pragma unroll
        for (int nt = 0; nt < kRows / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) dpt[nt][e] = st[nt][e] * (dpt[nt][e] - d_t[nt * 8 + 2 * tq + (e & 1)]);
        uint32_t dsa[kRows / 16][4];
        c_to_a(dsa, dpt);

        warp_gemm_rb<D / 8, kRows / 16>(dva, pa, smem_addr(o_t), LDB);
        warp_gemm_rb<D / 8, kRows / 16>(dka, dsa, smem_addr(q_t), LDB);
        __syncthreads();
    }
    cp_async_wait<0>();
    __syncthreads();  // (only matters when total == 0: K/V copies still in flight)

    // sK's and sV's rows of this warp were read by this warp only.
    const size_t off = (size_t)start * ks + (size_t)hk * D;
    store_rows<D>(dk + off, ks, k0 + warp * 16, L, sK + warp * 16 * LDS, dka, scale, scale);
    store_rows<D>(dv + off, ks, k0 + warp * 16, L, sV + warp * 16 * LDS, dva, 1.0f, 1.0f);
}

// ---------------------------------------------------------------------------------------------
// Backward (3): dQ. grid (query tiles, Hq); dynamic shared memory: Q, dO (64 x D+8), then 2 stages
// of K, V (64 x D+8). S = Q K^T, P = exp(S scale - lse), dP = dO V^T, dS = P (dP - delta),
// dQ += dS K, all for the warp's 16 rows.

template <int D>
__global__ void __launch_bounds__(kThreads, kDqMinBlocks(D))
    attn_bwd_dq_kernel(bf16 *__restrict__ dq, const bf16 *__restrict__ dout, const bf16 *__restrict__ q,
                       const bf16 *__restrict__ k, const bf16 *__restrict__ v, const float *__restrict__ lse,
                       const float *__restrict__ delta, const int32_t *__restrict__ cu, int n_seq, int T, int Hq,
                       int Hkv, float scale, float scale_log2, int causal, int window) {
    constexpr int LDS = D + 8, LDB = LDS * 2;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem);  // (64, D+8)
    bf16 *sO = sQ + kRows * LDS;                // (64, D+8): dO
    bf16 *sK = sO + kRows * LDS;                // 2 x (64, D+8)
    bf16 *sV = sK + 2 * kCols * LDS;            // 2 x (64, D+8)

    int start, L, tile;
    if (!find_tile(cu, n_seq, kRows, &start, &L, &tile)) return;
    const int h = blockIdx.y, hk = h / (Hq / Hkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
    const int q0 = tile * kRows;
    const bf16 *kg = k + (size_t)start * ks + (size_t)hk * D;
    const bf16 *vg = v + (size_t)start * ks + (size_t)hk * D;
    // The forward's key tiles [kt0, n_kt), stage (j - kt0) & 1 holding tile j.
    const int n_kt = key_tiles(q0, L, causal), kt0 = first_key_tile(q0, window), kb = kt0 * kCols;

    const size_t qoff = (size_t)(start + q0) * qs + (size_t)h * D;
    load_tile<kRows, D>(sQ, q + qoff, qs, min(kRows, L - q0));
    load_tile<kRows, D>(sO, dout + qoff, qs, min(kRows, L - q0));
    load_tile<kCols, D>(sK, kg + (size_t)kb * ks, ks, min(kCols, L - kb));
    load_tile<kCols, D>(sV, vg + (size_t)kb * ks, ks, min(kCols, L - kb));
    cp_async_commit();

    const int row[2] = {q0 + warp * 16 + gq, q0 + warp * 16 + gq + 8};
    float lse2[2], dlt[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        size_t idx = (size_t)h * T + start + row[r];
        lse2[r] = row[r] < L ? lse[idx] * ATT_LOG2E : 0.0f;
        dlt[r] = row[r] < L ? delta[idx] : 0.0f;
    }
    float dqa[D / 8][4];
    zero_acc(dqa);

    for (int j = kt0; j < n_kt; j++) {
        if (j + 1 < n_kt) {
            int k1 = (j + 1) * kCols, buf = (j + 1 - kt0) & 1;
            load_tile<kCols, D>(sK + buf * kCols * LDS, kg + (size_t)k1 * ks, ks, min(kCols, L - k1));
            load_tile<kCols, D>(sV + buf * kCols * LDS, vg + (size_t)k1 * ks, ks, min(kCols, L - k1));
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int buf = (j - kt0) & 1, k0 = j * kCols;
        const bf16 *k_t = sK + buf * kCols * LDS, *v_t = sV + buf * kCols * LDS;

        float s[kCols / 8][4];  // (16, 64): S, then P
        zero_acc(s);
        warp_gemm_abt<kCols / 8, D>(s, smem_addr(sQ + warp * 16 * LDS), smem_addr(k_t), LDB);
        // The forward's mask: past the end, after the query, at or before query - window.
        const bool edge = k0 + kCols > L || (causal && k0 + kCols - 1 > q0) || (window > 0 && k0 + window < q0 + kRows);
#pragma unroll
        for (int nt = 0; nt < kCols / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = k0 + nt * 8 + 2 * tq + (e & 1);
                float p = exp2f(s[nt][e] * scale_log2 - lse2[e >> 1]);
                if (edge && (col >= L || (causal && col > row[e >> 1]) || (window > 0 && col <= row[e >> 1] - window)))
                    p = 0.0f;
                s[nt][e] = p;
            }
        float dp[kCols / 8][4];  // (16, 64): dP, then dS
        zero_acc(dp);
        warp_gemm_abt<kCols / 8, D>(dp, smem_addr(sO + warp * 16 * LDS), smem_addr(v_t), LDB);
#pragma unroll
        for (int nt = 0; nt < kCols / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) dp[nt][e] = s[nt][e] * (dp[nt][e] - dlt[e >> 1]);
        uint32_t dsa[kCols / 16][4];
        c_to_a(dsa, dp);
        warp_gemm_rb<D / 8, kCols / 16>(dqa, dsa, smem_addr(k_t), LDB);
        __syncthreads();
    }
    store_rows<D>(dq + (size_t)start * qs + (size_t)h * D, qs, q0 + warp * 16, L, sQ + warp * 16 * LDS, dqa, scale,
                  scale);
}

// ---------------------------------------------------------------------------------------------
// Backward (1): delta (Hq, T) = rowsum(dO * O) per (row, head), fp32, one warp per (row, head),
// lanes striding over D and a fixed butterfly (common.cuh's warp_sum) to finish (any D).

__global__ void attn_bwd_delta_kernel(float *__restrict__ delta, const bf16 *__restrict__ dout,
                                      const bf16 *__restrict__ out, int T, int Hq, int D) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (size_t)T * Hq) return;
    int t = (int)(w / Hq), h = (int)(w % Hq);
    const bf16 *g = dout + (size_t)t * Hq * D + (size_t)h * D, *o = out + (size_t)t * Hq * D + (size_t)h * D;
    float acc = 0.0f;
    for (int d = lane; d < D; d += 32) acc += __bfloat162float(g[d]) * __bfloat162float(o[d]);
    acc = warp_sum(acc);
    if (lane == 0) delta[(size_t)h * T + t] = acc;
}

// ---------------------------------------------------------------------------------------------
// Scalar path for any head dim up to 256 (and misaligned pointers): one warp per row, lanes holding
// columns lane, lane + 32, ..., keys one at a time with the same online softmax in fp32. No bf16
// rounding of P or dS here. A sliding window bounds the loops over keys (queries for dK, dV).

constexpr int kGenMaxD = 256, kGenC = kGenMaxD / 32;

// The sequence holding packed row t: (start, L); 0 when t is past cu[n_seq].
__device__ __forceinline__ int seq_of_row(const int32_t *cu, int n_seq, int t, int *start, int *len) {
    int lo = 0, hi = n_seq;  // find the last s with cu[s] <= t
    if (n_seq <= 0 || t < cu[0] || t >= cu[n_seq]) return 0;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (cu[mid] <= t) lo = mid;
        else hi = mid;
    }
    *start = cu[lo], *len = cu[lo + 1] - cu[lo];
    return 1;
}

__device__ __forceinline__ void gen_load(float (&x)[kGenC], const bf16 *p, int D, int lane) {
#pragma unroll
    for (int c = 0; c < kGenC; c++) {
        int d = lane + 32 * c;
        x[c] = d < D ? __bfloat162float(p[d]) : 0.0f;
    }
}

__device__ __forceinline__ float gen_dot(const float (&x)[kGenC], const bf16 *p, int D, int lane) {
    float acc = 0.0f;
#pragma unroll
    for (int c = 0; c < kGenC; c++) {
        int d = lane + 32 * c;
        if (d < D) acc += x[c] * __bfloat162float(p[d]);
    }
    return warp_sum(acc);
}

__device__ __forceinline__ void gen_store(bf16 *p, const float (&x)[kGenC], float mul, int D, int lane) {
#pragma unroll
    for (int c = 0; c < kGenC; c++) {
        int d = lane + 32 * c;
        if (d < D) p[d] = __float2bfloat16_rn(x[c] * mul);
    }
}

__global__ void attn_fwd_generic_kernel(bf16 *__restrict__ out, float *__restrict__ lse, const bf16 *__restrict__ q,
                                        const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                                        const int32_t *__restrict__ cu, int n_seq, int T, int Hq, int Hkv, int D,
                                        float scale_log2, int causal, int window) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31, start, L;
    if (w >= (size_t)T * Hq) return;
    int t = (int)(w / Hq), h = (int)(w % Hq), hk = h / (Hq / Hkv);
    if (!seq_of_row(cu, n_seq, t, &start, &L)) return;
    int i = t - start, n_keys = causal ? i + 1 : L, j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
    size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
    float qv[kGenC], acc[kGenC] = {0};
    gen_load(qv, q + (size_t)t * qs + (size_t)h * D, D, lane);
    float m = -INFINITY, l = 0.0f;
    for (int j = j0; j < n_keys; j++) {
        const bf16 *kr = k + (size_t)(start + j) * ks + (size_t)hk * D;
        const bf16 *vr = v + (size_t)(start + j) * ks + (size_t)hk * D;
        float s = gen_dot(qv, kr, D, lane) * scale_log2;
        float mnew = fmaxf(m, s), alpha = exp2f(m - mnew), p = exp2f(s - mnew);
        l = l * alpha + p;
#pragma unroll
        for (int c = 0; c < kGenC; c++) {
            int d = lane + 32 * c;
            acc[c] = acc[c] * alpha + (d < D ? p * __bfloat162float(vr[d]) : 0.0f);
        }
        m = mnew;
    }
    gen_store(out + (size_t)t * qs + (size_t)h * D, acc, 1.0f / l, D, lane);
    if (lane == 0) lse[(size_t)h * T + t] = (m + log2f(l)) * ATT_LN2;
}

__global__ void attn_bwd_dq_generic_kernel(bf16 *__restrict__ dq, const bf16 *__restrict__ dout,
                                           const bf16 *__restrict__ q, const bf16 *__restrict__ k,
                                           const bf16 *__restrict__ v, const float *__restrict__ lse,
                                           const float *__restrict__ delta, const int32_t *__restrict__ cu, int n_seq,
                                           int T, int Hq, int Hkv, int D, float scale, float scale_log2, int causal,
                                           int window) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31, start, L;
    if (w >= (size_t)T * Hq) return;
    int t = (int)(w / Hq), h = (int)(w % Hq), hk = h / (Hq / Hkv);
    if (!seq_of_row(cu, n_seq, t, &start, &L)) return;
    int i = t - start, n_keys = causal ? i + 1 : L, j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
    size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
    float qv[kGenC], gv[kGenC], acc[kGenC] = {0};
    gen_load(qv, q + (size_t)t * qs + (size_t)h * D, D, lane);
    gen_load(gv, dout + (size_t)t * qs + (size_t)h * D, D, lane);
    float lse2 = lse[(size_t)h * T + t] * ATT_LOG2E, dl = delta[(size_t)h * T + t];
    for (int j = j0; j < n_keys; j++) {
        const bf16 *kr = k + (size_t)(start + j) * ks + (size_t)hk * D;
        const bf16 *vr = v + (size_t)(start + j) * ks + (size_t)hk * D;
        float p = exp2f(gen_dot(qv, kr, D, lane) * scale_log2 - lse2);
        float ds = p * (gen_dot(gv, vr, D, lane) - dl);
#pragma unroll
        for (int c = 0; c < kGenC; c++) {
            int d = lane + 32 * c;
            if (d < D) acc[c] += ds * __bfloat162float(kr[d]);
        }
    }
    gen_store(dq + (size_t)t * qs + (size_t)h * D, acc, scale, D, lane);
}

__global__ void attn_bwd_dkdv_generic_kernel(bf16 *__restrict__ dk, bf16 *__restrict__ dv,
                                             const bf16 *__restrict__ dout, const bf16 *__restrict__ q,
                                             const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                                             const float *__restrict__ lse, const float *__restrict__ delta,
                                             const int32_t *__restrict__ cu, int n_seq, int T, int Hq, int Hkv, int D,
                                             float scale, float scale_log2, int causal, int window) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31, start, L;
    if (w >= (size_t)T * Hkv) return;
    int t = (int)(w / Hkv), hk = (int)(w % Hkv), group = Hq / Hkv;
    if (!seq_of_row(cu, n_seq, t, &start, &L)) return;
    int j = t - start, i_end = window > 0 ? min(L, j + window) : L;  // queries [causal ? j : 0, i_end)
    size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
    float kv[kGenC], vv[kGenC], dka[kGenC] = {0}, dva[kGenC] = {0};
    gen_load(kv, k + (size_t)t * ks + (size_t)hk * D, D, lane);
    gen_load(vv, v + (size_t)t * ks + (size_t)hk * D, D, lane);
    for (int h = hk * group; h < (hk + 1) * group; h++)
        for (int i = causal ? j : 0; i < i_end; i++) {
            size_t r = (size_t)(start + i);
            const bf16 *qr = q + r * qs + (size_t)h * D, *gr = dout + r * qs + (size_t)h * D;
            float p = exp2f(gen_dot(kv, qr, D, lane) * scale_log2 - lse[(size_t)h * T + r] * ATT_LOG2E);
            float ds = p * (gen_dot(vv, gr, D, lane) - delta[(size_t)h * T + r]);
#pragma unroll
            for (int c = 0; c < kGenC; c++) {
                int d = lane + 32 * c;
                if (d < D) {
                    dva[c] += p * __bfloat162float(gr[d]);
                    dka[c] += ds * __bfloat162float(qr[d]);
                }
            }
        }
    gen_store(dk + (size_t)t * ks + (size_t)hk * D, dka, scale, D, lane);
    gen_store(dv + (size_t)t * ks + (size_t)hk * D, dva, 1.0f, D, lane);
}

// ---------------------------------------------------------------------------------------------
// Host side.

template <int D>
constexpr size_t fwd_smem() {
    return (size_t)(kRows + 4 * kCols) * (D + 8) * sizeof(bf16);
}
template <int D>
constexpr size_t bwd_smem() {  // both backward kernels: 6 tiles (+ the dK/dV kernel's 2 x 2 x 64 floats)
    return (size_t)(2 * kCols + 4 * kRows) * (D + 8) * sizeof(bf16) + 4 * kRows * sizeof(float);
}

unsigned tile_grid(int T, int n_seq, int rows) {  // sum over s of ceil(L_s / rows) <= ceil(T / rows) + n_seq
    return (unsigned)((T + rows - 1) / rows + n_seq);
}

unsigned warp_grid(size_t warps) { return (unsigned)((warps * 32 + kThreads - 1) / kThreads); }

// The window the kernels get: ops.h's window where it can bind, else 0. It binds only under the
// causal mask (as the CPU's first_key has it) and only when shorter than T, the longest any packed
// sequence can be; 0 then keeps the plain loops and masks (and keeps window + k0 far from overflow).
int binding_window(int causal, int window, int T) { return causal && window > 0 && window < T ? window : 0; }

void check_args(int n_seq, int T, int Hq, int Hkv, int D) {
    CUDA_REQUIRE(n_seq >= 0 && T >= 0 && Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && D > 0,
                 "attention: bad shape (Hq must be a positive multiple of Hkv)");
    CUDA_REQUIRE(Hq <= 65535, "attention: more than 65535 heads (grid y)");
    CUDA_REQUIRE(D <= kGenMaxD, "attention: head dims above 256 are not supported");
}

template <int D>
void launch_fwd(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, const int32_t *cu, int n_seq, int T,
                int Hq, int Hkv, float scale_log2, int causal, int window, cudaStream_t st) {
    size_t smem = fwd_smem<D>();
    CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(tile_grid(T, n_seq, kRows), (unsigned)Hq);
    attn_fwd_kernel<D>
        <<<grid, kThreads, smem, st>>>(out, lse, q, k, v, cu, n_seq, T, Hq, Hkv, scale_log2, causal, window);
    CUDA_CHECK_LAUNCH();
}

template <int D>
void launch_bwd(bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                const float *lse, const float *delta, const int32_t *cu, int n_seq, int T, int Hq, int Hkv, float scale,
                float scale_log2, int causal, int window, cudaStream_t st) {
    size_t smem = bwd_smem<D>();
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkdv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dq_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid_kv(tile_grid(T, n_seq, kCols), (unsigned)Hkv);
    attn_bwd_dkdv_kernel<D><<<grid_kv, kThreads, smem, st>>>(dk, dv, dout, q, k, v, lse, delta, cu, n_seq, T, Hq, Hkv,
                                                             scale, scale_log2, causal, window);
    CUDA_CHECK_LAUNCH();
    dim3 grid_q(tile_grid(T, n_seq, kRows), (unsigned)Hq);
    attn_bwd_dq_kernel<D><<<grid_q, kThreads, smem, st>>>(dq, dout, q, k, v, lse, delta, cu, n_seq, T, Hq, Hkv, scale,
                                                          scale_log2, causal, window);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

extern "C" void cuda_attention_forward(llava_backend *be, void *out, float *lse, const void *q, const void *k,
                                       const void *v, const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv,
                                       int D, float scale, int causal, int window) {
    req_attention_forward(be, out, lse, q, k, v, cu_seqlens, n_seq, T, Hq, Hkv, D);
    check_args(n_seq, T, Hq, Hkv, D);
    window = binding_window(causal, window, T);
    if (T == 0 || n_seq == 0) return;
    cudaStream_t st = cuda_stream_of(be);
    float scale_log2 = scale * ATT_LOG2E;
    bf16 *o = (bf16 *)out;
    const bf16 *qb = (const bf16 *)q, *kb = (const bf16 *)k, *vb = (const bf16 *)v;
    bool tiled = is_aligned16(out) && is_aligned16(q) && is_aligned16(k) && is_aligned16(v);
    if (tiled && D == 64) {
        launch_fwd<64>(o, lse, qb, kb, vb, cu_seqlens, n_seq, T, Hq, Hkv, scale_log2, causal, window, st);
    } else if (tiled && D == 128) {
        launch_fwd<128>(o, lse, qb, kb, vb, cu_seqlens, n_seq, T, Hq, Hkv, scale_log2, causal, window, st);
    } else {
        attn_fwd_generic_kernel<<<warp_grid((size_t)T * Hq), kThreads, 0, st>>>(
            o, lse, qb, kb, vb, cu_seqlens, n_seq, T, Hq, Hkv, D, scale_log2, causal, window);
        CUDA_CHECK_LAUNCH();
    }
}

extern "C" void cuda_attention_backward(llava_backend *be, void *dq, void *dk, void *dv, const void *dout,
                                        const void *q, const void *k, const void *v, const void *out, const float *lse,
                                        const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D,
                                        float scale, int causal, int window) {
    req_attention_backward(be, dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens, n_seq, T, Hq, Hkv, D);
    check_args(n_seq, T, Hq, Hkv, D);
    window = binding_window(causal, window, T);
    if (T == 0 || n_seq == 0) return;
    cudaStream_t st = cuda_stream_of(be);
    float scale_log2 = scale * ATT_LOG2E;
    bf16 *dqb = (bf16 *)dq, *dkb = (bf16 *)dk, *dvb = (bf16 *)dv;
    const bf16 *gb = (const bf16 *)dout, *qb = (const bf16 *)q, *kb = (const bf16 *)k, *vb = (const bf16 *)v;

    // delta (Hq, T) fp32 in the shared scratch buffer (common.cuh): ours until the next op.
    float *delta = (float *)cuda_scratch(be, (size_t)Hq * T * sizeof(float));
    attn_bwd_delta_kernel<<<warp_grid((size_t)T * Hq), kThreads, 0, st>>>(delta, gb, (const bf16 *)out, T, Hq, D);
    CUDA_CHECK_LAUNCH();

    bool tiled = is_aligned16(dq) && is_aligned16(dk) && is_aligned16(dv) && is_aligned16(dout) && is_aligned16(q) &&
                 is_aligned16(k) && is_aligned16(v);
    if (tiled && D == 64) {
        launch_bwd<64>(dqb, dkb, dvb, gb, qb, kb, vb, lse, delta, cu_seqlens, n_seq, T, Hq, Hkv, scale, scale_log2,
                       causal, window, st);
    } else if (tiled && D == 128) {
        launch_bwd<128>(dqb, dkb, dvb, gb, qb, kb, vb, lse, delta, cu_seqlens, n_seq, T, Hq, Hkv, scale, scale_log2,
                        causal, window, st);
    } else {
        attn_bwd_dkdv_generic_kernel<<<warp_grid((size_t)T * Hkv), kThreads, 0, st>>>(
            dkb, dvb, gb, qb, kb, vb, lse, delta, cu_seqlens, n_seq, T, Hq, Hkv, D, scale, scale_log2, causal, window);
        CUDA_CHECK_LAUNCH();
        attn_bwd_dq_generic_kernel<<<warp_grid((size_t)T * Hq), kThreads, 0, st>>>(
            dqb, gb, qb, kb, vb, lse, delta, cu_seqlens, n_seq, T, Hq, Hkv, D, scale, scale_log2, causal, window);
        CUDA_CHECK_LAUNCH();
    }
}
