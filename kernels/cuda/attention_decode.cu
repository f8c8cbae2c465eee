// Attention of query rows against a paged KV cache (ops.h's attention_decode), flash-decoding style:
// the keys of a row are split into chunks, each CTA runs an online softmax over one chunk of one
// (query row, kv head) for every query head of that kv head's group, and a second small kernel
// combines the chunks' partial results. The contract is kernels/ops.h's; the reference is
// kernels/cpu/attention.c's cpu_attention_decode.
//
// What bounds it. Decode does 4 D flops per (query head, key) and reads 4 D bytes of bf16 K and V
// per (kv head, key): about one flop per byte (G flops per byte with G query heads per kv head),
// where an H100 offers ~300 bf16 flops per byte of memory bandwidth. The time is the bytes of K and V
// over the bandwidth, so the design is about reading each byte of K and V once, in full 32-byte
// sectors, with enough loads in flight to cover the memory latency:
//   * one CTA serves all the query heads of a kv head's group (up to 8; larger groups are cut into
//     sub-groups of 8, 4, 2 or 1), so K and V are read once per group, not once per query head;
//   * each lane loads 16 bytes (8 bf16 of one row): a row of D = 128 is 16 lanes, D = 64 is 8, so
//     one warp-wide load covers 2 or 4 whole rows and every sector it touches is used entirely;
//   * a warp issues all the K and V loads of its tile (16 keys at G <= 2, fewer as the group's
//     registers grow: 4 to 16 independent 16-byte loads per lane, 2-8 KB per warp) before using the
//     first, and 4 warps per CTA, 2-4 CTAs per SM (123 registers a thread at D = 128, G = 1), keep
//     tens of KB per SM in flight; Little's law wants ~20 KB per SM on an H100 (3.35 TB/s x ~0.7 us
//     over 132 SMs);
//   * the partial results cost G (D + 2) fp32 per CTA, written once and read once by the combine:
//     against 4 D bytes x chunk keys of K and V, about 2G / chunk of the traffic (the chunk is at
//     least 64 keys, 64 G / 2 for G > 2: at most ~3% at G = 1, ~6% otherwise, and less as rows grow
//     past want x min_chunk keys).
// One query row per sequence is the case this is built for. Several rows of one sequence (a chunk
// of new tokens) each read the sequence's K and V again: correct, but a tiled kernel over the
// queries (attention_forward's) reads them once per tile.
//
// Work of one CTA (4 warps, 128 threads): grid (T, Hkv x sub-groups, splits). It reads its row's
// sequence and position, works out the row's splits (below), and skips out when its split is past
// them. Its chunk is cut into tiles of TR keys (TR divides 16, so a tile never crosses a cache block
// when block_size is a multiple of 16: one block-table read per tile); warp w takes tiles w, w + 4,
// ... Lane (rw, li) owns dims [8 li, 8 li + 8) of rows rw, rw + RPW, ... of each tile (RPW rows per
// warp-wide load). Per tile: load K and V rows (rows past the context load as zeros and score -inf,
// so whatever the cache holds there, NaN included, never reaches the result); scores q.k summed in
// fp32 over the LPR lanes of a row (xor butterfly, every lane gets the same bits); the tile's max
// over the warp; rescale the running (max, sum, acc) per query head; acc += p v. Then each warp's
// row groups are summed (butterfly), the 4 warps' states meet in shared memory, and the CTA either
// writes the normalised row (one split) or its fp32 partial (acc unnormalised, max, sum).
//
// Mistral's sliding window (window > 0): a row attends to its last `window` keys, [first, ctx) with
// first = ctx - window (0 while ctx <= window). The row's keys then start at span = first rounded
// down to a multiple of 16 (so that tiles still never cross a cache block): the splits below cut
// [span, ctx) instead of [0, ctx), so a windowed row costs its window, not its context. The tiles
// wholly before `first` (only in split 0's first 16 keys) are skipped, the keys before `first` in
// the tile that holds it load as zeros and score -inf as keys past the context do, and every tile
// that runs still holds a key of the window. Window 0 gives span = first = 0: the plain path.
//
// Splits, and why they never depend on the batch. ops.h promises that a row's result does not
// depend on the other rows of the call, so the number of splits is a function of the row's own
// context, the model's head counts and the device's SM count, never of T:
//   want  = ceil(2 x SMs / (kv heads x sub-groups))  splits that give a lone row 2 CTAs per SM
//   n     = min(want, ceil(keys / min_chunk), 64)    min_chunk = 64 keys (64 G / 2 for G > 2)
//   chunk = ceil(keys / n) rounded up to 16;  splits = ceil(keys / chunk)
// with keys = ctx - span (ctx without a window).
// LLaVA-7B (32 kv heads) on an H100 (132 SMs): want = 9; a 600-token row runs as 8 chunks of 80
// keys (256 CTAs), a 2048-token row as 9 of 240 (288 CTAs). At batch 64 the same rule gives 18432
// CTAs: more than enough, and no tail of a few CTAs on an otherwise idle GPU. Every sum runs in a
// fixed order (butterflies, warps in order, splits in order): bit-identical run to run, and a row's
// bits are the same alone or in any batch.
//
// Expected share of bandwidth: batch 64 at 700 keys moves 734 MB of K and V (LLaVA-7B, per layer);
// with the loads above it should reach 80-90% of the copy bandwidth (the partials add ~3%, the
// combine is one more launch). A lone row at 600 keys moves 9.8 MB, ~3 us at 3.35 TB/s: comparable
// to the two launches and one memory round trip it also needs, so expect well under half of the
// bandwidth there; at 2048 keys (33.5 MB) more.
//
// Rows whose sequence or position is outside the table, or whose block table names a block outside
// the cache, give NaN (the GPU cannot stop on the host's precondition checks, which read host
// memory; the CPU backend does stop). A row never reads a table entry past its own position, nor,
// under a window, one whose block lies wholly before the window.
//
// Head dims other than 64 and 128, block sizes that are not multiples of 16, and pointers that are
// not 16-byte aligned take the scalar kernel at the end: one warp per (row, query head), keys one
// at a time, fp32 throughout; slow, for coverage.
#include <math.h>

#include "common.cuh"

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kAlign = 16;      // chunks start on multiples of 16 keys (the fast path's block sizes)
constexpr int kMaxSplits = 64;  // bounds the partials' scratch
constexpr int kCtasPerSm = 2;   // what a lone row's splits aim at
constexpr uint16_t kBf16NaN = 0x7FC0;

__host__ __device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The rule above: the splits of a row of `ctx` keys (>= 1), the upper bound a launch sizes its
// scratch with (n before the rounding of chunk), and the chunk length (a multiple of 16).
__host__ __device__ __forceinline__ int splits_bound(long long ctx, int want, int min_chunk) {
    long long n = (ctx + min_chunk - 1) / min_chunk;
    if (n > want) n = want;
    if (n > kMaxSplits) n = kMaxSplits;
    return n < 1 ? 1 : (int)n;
}

__host__ __device__ __forceinline__ int row_splits(int ctx, int want, int min_chunk, int *chunk) {
    int n = splits_bound(ctx, want, min_chunk);
    int c = ceil_div(ceil_div(ctx, n), kAlign) * kAlign;
    *chunk = c;
    return ceil_div(ctx, c);  // <= n
}

// Where a row of `ctx` keys starts under a sliding window: its first key (ctx - window, or 0 while
// the window holds the whole context), and that rounded down to a multiple of kAlign, where its
// splits start. Both 0 without a window.
__device__ __forceinline__ int window_first(int ctx, int window) {
    return window > 0 && ctx > window ? ctx - window : 0;
}
__device__ __forceinline__ int window_span(int ctx, int window) { return window_first(ctx, window) / kAlign * kAlign; }

// Row t's context (pos + 1) and sequence; 0 when the sequence or the position is outside the table.
__device__ __forceinline__ int row_context(const int32_t *seq, const int32_t *pos, int t, int n_seq, int max_blocks,
                                           int bs, int *s) {
    int sq = __ldg(seq + t), p = __ldg(pos + t);
    *s = sq;
    if (sq < 0 || sq >= n_seq || p < 0 || (long long)p >= (long long)max_blocks * bs) return 0;
    return p + 1;
}

// 8 bf16 (16 bytes) to fp32; the low half of each word is the lower address.
__device__ __forceinline__ void unpack8(const uint4 &u, float f[8]) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = __uint_as_float(w[k] << 16);
        f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}

__device__ __forceinline__ uint4 pack8(const float f[8]) {
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = (uint32_t)f_to_bf16(f[2 * k]) | ((uint32_t)f_to_bf16(f[2 * k + 1]) << 16);
    return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ uint4 ldg16(const uint16_t *p) { return __ldg(reinterpret_cast<const uint4 *>(p)); }

// Rows per lane per tile: 16 keys per warp tile while the registers allow (8 loads of K and 8 of V
// per lane at D = 128), fewer as the group's q and acc (16 fp32 per head per lane) take them.
constexpr int rows_per_lane(int D, int G) { return D == 128 ? (G <= 2 ? 8 : G == 4 ? 4 : 2) : (G <= 4 ? 4 : 2); }
// CTAs per SM the register allocation must allow (__launch_bounds__), so that ptxas neither spills
// nor takes so many registers that a lone row's CTAs cannot share an SM.
constexpr int min_blocks(int G) { return G == 1 ? 4 : G <= 4 ? 3 : 2; }

struct decode_args {
    uint16_t *out;         // (T, Hq*D)
    float *part_acc;       // (T, Hq, S, D) unnormalised partial outputs (S > 1)
    float *part_ml;        // (T, Hq, S, 2) their (max, sum), max in log2 units
    const uint16_t *q;     // (T, Hq*D)
    const uint16_t *kc;    // (n_blocks * bs, Hkv*D)
    const uint16_t *vc;    // (n_blocks * bs, Hkv*D)
    const int32_t *table;  // (n_seq, max_blocks)
    const int32_t *seq;    // (T)
    const int32_t *pos;    // (T)
    int n_seq, max_blocks, bs, n_blocks, Hq, Hkv, n_sub, S, want, min_chunk;
    int window;        // Mistral's sliding window: each row's last `window` keys; 0: all of them
    float scale_log2;  // scale * log2(e): scores in log2 units, exp2 for exp
};

// ---------------------------------------------------------------------------------------------
// The split kernel. grid (T, Hkv * n_sub, S), kThreads threads.

template <int D, int G>
__global__ void __launch_bounds__(kThreads, min_blocks(G)) decode_kernel(const decode_args a) {
    constexpr int LPR = D / 8;  // lanes per key row, 16 bytes each
    constexpr int RPW = 32 / LPR;
    constexpr int RPL = rows_per_lane(D, G);
    constexpr int TR = RPW * RPL;  // keys per warp tile
    static_assert(kAlign % TR == 0, "a tile must not cross a block of 16 keys");
    __shared__ __align__(16) float s_acc[kWarps][G][D];
    __shared__ float s_m[kWarps][G], s_l[kWarps][G];
    __shared__ int s_bad[kWarps];

    const int t = blockIdx.x, split = blockIdx.z;
    const int hk = blockIdx.y / a.n_sub, h0 = hk * (a.Hq / a.Hkv) + (blockIdx.y % a.n_sub) * G;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, li = lane % LPR, rw = lane / LPR;
    const size_t qs = (size_t)a.Hq * D, ks = (size_t)a.Hkv * D;  // row strides
    uint16_t *orow = a.out + (size_t)t * qs + (size_t)h0 * D;    // this CTA's G heads of row t

    int sq;
    const int ctx = row_context(a.seq, a.pos, t, a.n_seq, a.max_blocks, a.bs, &sq);
    if (ctx == 0) {  // outside the table: NaN, once
        if (split == 0)
            for (int i = threadIdx.x; i < G * D; i += kThreads) orow[i] = kBf16NaN;
        return;
    }
    // Keys [first, ctx), split from span (first rounded down to 16): a split's keys [k0, k1).
    const int first = window_first(ctx, a.window), span = window_span(ctx, a.window);
    int chunk;
    const int n_split = row_splits(ctx - span, a.want, a.min_chunk, &chunk);
    if (split >= n_split) return;
    const int k0 = span + split * chunk, k1 = min(ctx, k0 + chunk);
    const int32_t *bt = a.table + (size_t)sq * a.max_blocks;

    // The group's queries, dims [8 li, 8 li + 8), pre-scaled into log2 units.
    float qf[G][8];
#pragma unroll
    for (int g = 0; g < G; g++) {
        unpack8(ldg16(a.q + (size_t)t * qs + (size_t)(h0 + g) * D + 8 * li), qf[g]);
#pragma unroll
        for (int e = 0; e < 8; e++) qf[g][e] *= a.scale_log2;
    }
    float m[G], l[G], acc[G][8];  // running max (log2 units), sum of exp2 over this lane's rows, P V
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.0f;
    }
    int bad = 0;

    // Tiles [skip, n_tiles): those wholly before the window's first key (split 0 only) are skipped.
    const int n_tiles = ceil_div(k1 - k0, TR), skip = first > k0 ? (first - k0) / TR : 0;
    for (int i = skip + warp; i < n_tiles; i += kWarps) {
        const int kt = k0 + i * TR;  // a multiple of TR: the tile lies in one cache block
        const int blk = __ldg(bt + kt / a.bs);
        if (blk < 0 || blk >= a.n_blocks) {  // the same for the whole warp
            bad = 1;
            continue;
        }
        const size_t off = ((size_t)blk * a.bs + (size_t)(kt % a.bs)) * ks + (size_t)hk * D + 8 * li;
        // Every load of the tile first: RPL independent 16-byte loads of K and RPL of V per lane.
        // Keys outside [first, k1) load as zeros.
        uint4 kr[RPL], vr[RPL];
#pragma unroll
        for (int rr = 0; rr < RPL; rr++) {
            const int r = rr * RPW + rw;
            const bool ok = kt + r < k1 && kt + r >= first;
            kr[rr] = ok ? ldg16(a.kc + off + (size_t)r * ks) : make_uint4(0u, 0u, 0u, 0u);
            vr[rr] = ok ? ldg16(a.vc + off + (size_t)r * ks) : make_uint4(0u, 0u, 0u, 0u);
        }
        // Scores: this lane's 8 products, summed over the row's LPR lanes.
        float sc[RPL][G];
#pragma unroll
        for (int rr = 0; rr < RPL; rr++) {
            float kf[8];
            unpack8(kr[rr], kf);
            const bool ok = kt + rr * RPW + rw < k1 && kt + rr * RPW + rw >= first;
#pragma unroll
            for (int g = 0; g < G; g++) {
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; e++) d = fmaf(qf[g][e], kf[e], d);
#pragma unroll
                for (int o = LPR / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
                sc[rr][g] = ok ? d : -INFINITY;
            }
        }
        // The tile's max over the warp (every tile that gets here holds at least one key of the
        // context and of the window: split 0 holds `first`, the later splits start after it), the
        // rescale of the running state, then P V.
#pragma unroll
        for (int g = 0; g < G; g++) {
            float mx = sc[0][g];
#pragma unroll
            for (int rr = 1; rr < RPL; rr++) mx = fmaxf(mx, sc[rr][g]);
#pragma unroll
            for (int o = LPR; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float mn = fmaxf(m[g], mx), alpha = exp2f(m[g] - mn);  // exp2(-inf) = 0 at the first tile
            m[g] = mn;
            l[g] *= alpha;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] *= alpha;
        }
#pragma unroll
        for (int rr = 0; rr < RPL; rr++) {
            float vf[8];
            unpack8(vr[rr], vf);  // zeros past the context
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float p = exp2f(sc[rr][g] - m[g]);
                l[g] += p;
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] = fmaf(p, vf[e], acc[g][e]);
            }
        }
    }

    // The warp's row groups (lanes li, li + LPR, ...) hold sums over different rows of the same
    // tiles, all under the same running max: add them.
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
        for (int o = LPR; o < 32; o <<= 1) {
            l[g] += __shfl_xor_sync(0xffffffffu, l[g], o);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
        }
    }
    if (rw == 0) {
#pragma unroll
        for (int g = 0; g < G; g++) {
            float4 *dst = reinterpret_cast<float4 *>(&s_acc[warp][g][8 * li]);
            dst[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
            dst[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int g = 0; g < G; g++) s_m[warp][g] = m[g], s_l[warp][g] = l[g];
        s_bad[warp] = bad;
    }
    __syncthreads();

    // The CTA's 4 warps, in warp order (a warp without tiles has max -inf and weight 0): each thread
    // 8 consecutive dims of one head.
    for (int x = threadIdx.x; x < G * D / 8; x += kThreads) {
        const int g = x / (D / 8), d0 = (x % (D / 8)) * 8;
        float M = -INFINITY;
        int any_bad = 0;
#pragma unroll
        for (int w = 0; w < kWarps; w++) M = fmaxf(M, s_m[w][g]), any_bad |= s_bad[w];
        float L = 0.0f, o[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int w = 0; w < kWarps; w++) {
            const float wt = exp2f(s_m[w][g] - M);
            L = fmaf(wt, s_l[w][g], L);
#pragma unroll
            for (int e = 0; e < 8; e++) o[e] = fmaf(wt, s_acc[w][g][d0 + e], o[e]);
        }
        if (any_bad) L = NAN;
        if (n_split == 1) {
            const float inv = 1.0f / L;
#pragma unroll
            for (int e = 0; e < 8; e++) o[e] *= inv;
            *reinterpret_cast<uint4 *>(orow + (size_t)g * D + d0) = pack8(o);
        } else {
            const size_t pi = ((size_t)t * a.Hq + (size_t)(h0 + g)) * a.S + split;
            float4 *dst = reinterpret_cast<float4 *>(a.part_acc + pi * D + d0);
            dst[0] = make_float4(o[0], o[1], o[2], o[3]);
            dst[1] = make_float4(o[4], o[5], o[6], o[7]);
            if (d0 == 0) a.part_ml[2 * pi] = M, a.part_ml[2 * pi + 1] = L;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The combine: one warp per (row, query head) whose row has more than one split; lanes over D.
// out = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s, splits in order. A NaN sum (a bad block
// in any split) makes the row NaN.

__global__ void decode_combine_kernel(const decode_args a, int T, int D) {
    const size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)T * a.Hq) return;
    const int t = (int)(w / a.Hq), h = (int)(w % a.Hq);
    int sq;
    const int ctx = row_context(a.seq, a.pos, t, a.n_seq, a.max_blocks, a.bs, &sq);
    if (ctx == 0) return;  // the split kernel wrote NaN
    int chunk;
    const int n_split = row_splits(ctx - window_span(ctx, a.window), a.want, a.min_chunk, &chunk);
    if (n_split == 1) return;  // the split kernel wrote the row
    const float *ml = a.part_ml + w * a.S * 2, *pa = a.part_acc + w * a.S * D;
    float M = -INFINITY, L = 0.0f;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, ml[2 * s]);
    for (int s = 0; s < n_split; s++) L = fmaf(exp2f(ml[2 * s] - M), ml[2 * s + 1], L);
    const float inv = 1.0f / L;
    uint16_t *o = a.out + (size_t)t * a.Hq * D + (size_t)h * D;
    for (int d = lane; d < D; d += 32) {
        float acc = 0.0f;
        for (int s = 0; s < n_split; s++) acc = fmaf(exp2f(ml[2 * s] - M), pa[(size_t)s * D + d], acc);
        o[d] = f_to_bf16(acc * inv);
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar kernel for every other shape: one warp per (row, query head), lane holding dims lane,
// lane + 32, ... (D <= 256), keys one at a time (those of the window: [first, ctx)) with the same
// online softmax in fp32.

constexpr int kGenMaxD = 256, kGenC = kGenMaxD / 32;

__global__ void decode_generic_kernel(const decode_args a, int T, int D) {
    const size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)T * a.Hq) return;
    const int t = (int)(w / a.Hq), h = (int)(w % a.Hq), hk = h / (a.Hq / a.Hkv);
    const size_t qs = (size_t)a.Hq * D, ks = (size_t)a.Hkv * D;
    uint16_t *o = a.out + (size_t)t * qs + (size_t)h * D;
    int sq;
    const int ctx = row_context(a.seq, a.pos, t, a.n_seq, a.max_blocks, a.bs, &sq);
    float qv[kGenC], acc[kGenC];
#pragma unroll
    for (int c = 0; c < kGenC; c++) {
        const int d = lane + 32 * c;
        qv[c] = d < D ? bf16_to_f(a.q[(size_t)t * qs + (size_t)h * D + d]) * a.scale_log2 : 0.0f;
        acc[c] = 0.0f;
    }
    const int32_t *bt = a.table + (size_t)sq * a.max_blocks;
    float m = -INFINITY, l = ctx == 0 ? NAN : 0.0f;
    for (int j = window_first(ctx, a.window); j < ctx; j++) {
        const int blk = bt[j / a.bs];
        if (blk < 0 || blk >= a.n_blocks) {
            l = NAN;
            break;
        }
        const size_t row = ((size_t)blk * a.bs + (size_t)(j % a.bs)) * ks + (size_t)hk * D;
        float s = 0.0f;
#pragma unroll
        for (int c = 0; c < kGenC; c++) {
            const int d = lane + 32 * c;
            if (d < D) s = fmaf(qv[c], bf16_to_f(a.kc[row + d]), s);
        }
        s = warp_sum(s);
        const float mn = fmaxf(m, s), alpha = exp2f(m - mn), p = exp2f(s - mn);
        l = l * alpha + p;
#pragma unroll
        for (int c = 0; c < kGenC; c++) {
            const int d = lane + 32 * c;
            acc[c] = acc[c] * alpha + (d < D ? p * bf16_to_f(a.vc[row + d]) : 0.0f);
        }
        m = mn;
    }
    const float inv = 1.0f / l;
#pragma unroll
    for (int c = 0; c < kGenC; c++) {
        const int d = lane + 32 * c;
        if (d < D) o[d] = f_to_bf16(acc[c] * inv);
    }
}

// ---------------------------------------------------------------------------------------------
// Host side.

unsigned warp_grid(size_t warps) { return (unsigned)((warps * 32 + kThreads - 1) / kThreads); }

// The largest of 8, 4, 2, 1 that divides the group: the query heads one CTA serves.
int heads_per_cta(int group) { return group % 8 == 0 ? 8 : group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1; }

template <int D, int G>
void launch(const decode_args &a, int T, cudaStream_t st) {
    dim3 grid((unsigned)T, (unsigned)(a.Hkv * a.n_sub), (unsigned)a.S);
    decode_kernel<D, G><<<grid, kThreads, 0, st>>>(a);
    CUDA_CHECK_LAUNCH();
}

template <int D>
void launch_d(const decode_args &a, int G, int T, cudaStream_t st) {
    switch (G) {
    case 1: launch<D, 1>(a, T, st); break;
    case 2: launch<D, 2>(a, T, st); break;
    case 4: launch<D, 4>(a, T, st); break;
    default: launch<D, 8>(a, T, st); break;
    }
}

}  // namespace

extern "C" void cuda_attention_decode(llava_backend *be, void *out, const void *q, const void *k_cache,
                                      const void *v_cache, const int32_t *block_table, const int32_t *seq,
                                      const int32_t *pos, int T, int n_seq, int max_blocks, int block_size,
                                      int n_blocks, int Hq, int Hkv, int D, float scale, int window) {
    req_attention_decode(be, out, q, k_cache, v_cache, block_table, seq, pos, T, n_seq, max_blocks, block_size,
                         n_blocks, Hq, Hkv, D);
    CUDA_REQUIRE(D <= kGenMaxD, "attention_decode: head dims above 256 are not supported");
    if (T == 0) return;
    cudaStream_t st = cuda_stream_of(be);
    const int group = Hq / Hkv, G = heads_per_cta(group);
    decode_args a;
    a.out = (uint16_t *)out;
    a.part_acc = a.part_ml = NULL;
    a.q = (const uint16_t *)q;
    a.kc = (const uint16_t *)k_cache;
    a.vc = (const uint16_t *)v_cache;
    a.table = block_table;
    a.seq = seq;
    a.pos = pos;
    a.n_seq = n_seq, a.max_blocks = max_blocks, a.bs = block_size, a.n_blocks = n_blocks;
    a.Hq = Hq, a.Hkv = Hkv, a.n_sub = group / G;
    a.window = window > 0 ? window : 0;
    a.scale_log2 = scale * 1.4426950408889634f;

    const bool fast = (D == 64 || D == 128) && block_size % kAlign == 0 && is_aligned16(out) && is_aligned16(q) &&
                      is_aligned16(k_cache) && is_aligned16(v_cache);
    if (!fast) {
        a.S = 1, a.want = 1, a.min_chunk = 1;
        decode_generic_kernel<<<warp_grid((size_t)T * Hq), kThreads, 0, st>>>(a, T, D);
        CUDA_CHECK_LAUNCH();
        return;
    }
    CUDA_REQUIRE((long long)Hkv * a.n_sub <= 65535, "attention_decode: more than 65535 CTAs per row (grid y)");
    const int sms = cuda_cx(be)->n_sms > 0 ? cuda_cx(be)->n_sms : 1;
    const int cols = Hkv * a.n_sub;  // CTAs per row and split
    a.want = ceil_div(kCtasPerSm * sms, cols);
    a.min_chunk = 64 * (G > 2 ? G / 2 : 1);
    // The most splits any row can have: positions are below max_blocks * block_size, and under a
    // window a row's keys span at most window + 15 (its first key's 16 rounded down).
    long long keys = (long long)max_blocks * block_size;
    if (a.window > 0 && (long long)a.window + kAlign - 1 < keys) keys = (long long)a.window + kAlign - 1;
    a.S = splits_bound(keys, a.want, a.min_chunk);
    if (a.S > 1) {
        const size_t parts = (size_t)T * Hq * a.S;
        float *scratch = (float *)cuda_scratch(be, parts * (size_t)(D + 2) * sizeof(float));
        a.part_acc = scratch;
        a.part_ml = scratch + parts * D;
    }
    if (D == 64) launch_d<64>(a, G, T, st);
    else launch_d<128>(a, G, T, st);
    if (a.S > 1) {
        decode_combine_kernel<<<warp_grid((size_t)T * Hq), kThreads, 0, st>>>(a, T, D);
        CUDA_CHECK_LAUNCH();
    }
}
