// Everything that moves rows into the token stream: CLIP's patch unfold and CLS/position
// embeddings, token embeddings (forward and a deterministic backward), and the row gather/scatter
// of the image-feature splice. Copies move raw bf16 bits; sums are one fp32 add rounded once.
#include <limits.h>

#include "common.cuh"

// ---------------------------------------------------------------------------------------------
// patch_unfold: out (B*G*G, Cin*P*P) bf16 from pix (B, Cin, H, W) fp32. One thread per output
// element (256 per block); consecutive threads take consecutive columns j of a patch row, so the
// pix reads of a warp fall in runs of P contiguous floats.

__global__ void patch_unfold_kernel(uint16_t *out, const float *pix, int B, int Cin, int H, int W, int P) {
    const int gh = H / P, gw = W / P, K = Cin * P * P;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t total = (size_t)B * gh * gw * K;
    if (idx >= total) return;
    size_t row = idx / K;
    int col = (int)(idx % K);
    int b = (int)(row / ((size_t)gh * gw)), rc = (int)(row % ((size_t)gh * gw));
    int r = rc / gw, c = rc % gw;
    int ch = col / (P * P), ij = col % (P * P), i = ij / P, j = ij % P;
    size_t src = (((size_t)b * Cin + ch) * H + (size_t)r * P + i) * W + (size_t)c * P + j;
    out[idx] = f_to_bf16(pix[src]);
}

extern "C" void cuda_patch_unfold(llava_backend *be, void *out, const float *pix, int B, int Cin, int H, int W, int P) {
    req_patch_unfold(be, out, pix, B, Cin, H, W, P);
    if (B <= 0 || Cin <= 0 || P <= 0 || H < P || W < P) return;
    size_t total = (size_t)B * (H / P) * (W / P) * Cin * P * P;
    patch_unfold_kernel<<<grid_for(total, 256), 256, 0, cuda_stream_of(be)>>>((uint16_t *)out, pix, B, Cin, H, W, P);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// clip_embed: out (B*(N+1), C); row b*(N+1) = cls + pos[0], row b*(N+1)+1+n = patches[b*N+n] +
// pos[1+n]. One thread per output element.

__global__ void clip_embed_kernel(uint16_t *out, const uint16_t *patches, const uint16_t *cls, const uint16_t *pos,
                                  int B, int N, int C) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t total = (size_t)B * (N + 1) * C;
    if (idx >= total) return;
    size_t row = idx / C;
    int c = (int)(idx % C);
    int b = (int)(row / (N + 1)), m = (int)(row % (N + 1));
    float e = bf16_to_f(pos[(size_t)m * C + c]);
    float v = m == 0 ? bf16_to_f(cls[c]) : bf16_to_f(patches[((size_t)b * N + (m - 1)) * C + c]);
    out[idx] = f_to_bf16(v + e);
}

extern "C" void cuda_clip_embed(llava_backend *be, void *out, const void *patches, const void *cls, const void *pos,
                                int B, int N, int C) {
    req_clip_embed(be, out, patches, cls, pos, B, N, C);
    if (B <= 0 || C <= 0 || N < 0) return;
    size_t total = (size_t)B * (N + 1) * C;
    clip_embed_kernel<<<grid_for(total, 256), 256, 0, cuda_stream_of(be)>>>(
        (uint16_t *)out, (const uint16_t *)patches, (const uint16_t *)cls, (const uint16_t *)pos, B, N, C);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Row copies: out row i <- src row map(i), or a zero row where the source is invalid. Shared by
// the embedding lookup, gather and scatter. One block (128 threads) per destination row; a thread
// moves 8 bf16 (16 bytes) at a time when the rows are 16-byte aligned, else single elements.

enum { ROW_EMBED = 0, ROW_GATHER = 1, ROW_SCATTER = 2 };

__global__ void copy_rows_kernel(uint16_t *dst, const uint16_t *src, const int32_t *idx, int C, int V, int mode,
                                 int vec) {
    const int i = blockIdx.x;
    int64_t drow, srow;
    if (mode == ROW_EMBED) {
        drow = i;
        srow = idx[i] >= 0 && idx[i] < V ? idx[i] : -1;  // outside [0, V): a zero row
    } else if (mode == ROW_GATHER) {
        drow = i;
        srow = idx[i];
    } else {
        drow = idx[i];
        srow = i;
    }
    uint16_t *d = dst + (size_t)drow * C;
    if (vec) {
        const int nv = C / 8;
        uint4 *d4 = reinterpret_cast<uint4 *>(d);
        const uint4 *s4 = srow >= 0 ? reinterpret_cast<const uint4 *>(src + (size_t)srow * C) : NULL;
        for (int k = threadIdx.x; k < nv; k += blockDim.x) d4[k] = s4 ? s4[k] : make_uint4(0, 0, 0, 0);
    } else {
        const uint16_t *s = srow >= 0 ? src + (size_t)srow * C : NULL;
        for (int k = threadIdx.x; k < C; k += blockDim.x) d[k] = s ? s[k] : (uint16_t)0;
    }
}

static void copy_rows(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C, int V,
                      int mode) {
    if (n <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && is_aligned16(dst) && is_aligned16(src);
    copy_rows_kernel<<<(unsigned)n, 128, 0, cuda_stream_of(be)>>>((uint16_t *)dst, (const uint16_t *)src, idx, C, V,
                                                                  mode, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_embedding_forward(llava_backend *be, void *out, const int32_t *ids, const void *table, int T,
                                       int C, int V) {
    req_embedding_forward(be, out, ids, table, T, C, V);
    copy_rows(be, out, table, ids, T, C, V, ROW_EMBED);
}

// Rows are assumed in range and, for scatter, distinct (as the splice produces them); with
// repeated destinations which copy lands is unspecified (the CPU backend keeps the last).
extern "C" void cuda_gather_rows(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C) {
    req_rows(be, "gather_rows", dst, src, idx, n, C);
    copy_rows(be, dst, src, idx, n, C, 0, ROW_GATHER);
}

extern "C" void cuda_scatter_rows(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C) {
    req_rows(be, "scatter_rows", dst, src, idx, n, C);
    copy_rows(be, dst, src, idx, n, C, 0, ROW_SCATTER);
}

// ---------------------------------------------------------------------------------------------
// embedding_backward: dtable[ids[t]] += dout[t], deterministically and without atomics, with the
// CPU reference's exact sequence of fp32 adds (so the CPU's bits, and the same bits every run).
//
// Pass 1 (links), one block of 256 threads per token t: owner[t] = 1 when t is the first token with
// its id (no earlier token has it; invalid ids and padding_idx own nothing), and next[t] = the next
// token with the same id, or -1. Both are found by cooperative scans of ids: O(T^2) compares in all
// (268M for a packed micro-batch of 16K tokens), the next-scan stopping at the first tile with a match.
// Pass 2 (rows), block (t, column block of 256): only owners act. Each thread takes one column,
// starts from the row's current value and walks the chain t, next[t], ... adding dout rows in token
// order. One block writes each (row, column), so no two blocks touch the same element.

enum { EMB_BWD_THREADS = 256 };

__global__ void embedding_links_kernel(int32_t *owner, int32_t *next, const int32_t *ids, int T, int V,
                                       int padding_idx) {
    const int t = blockIdx.x;
    const int id = ids[t];
    if (id < 0 || id >= V || id == padding_idx) {  // uniform over the block
        if (threadIdx.x == 0) owner[t] = 0, next[t] = -1;
        return;
    }
    int earlier = 0;
    for (int u = threadIdx.x; u < t; u += blockDim.x) earlier |= ids[u] == id;
    earlier = __syncthreads_or(earlier);
    __shared__ int s_next;
    if (threadIdx.x == 0) s_next = INT_MAX;
    __syncthreads();
    for (int base = t + 1; base < T; base += blockDim.x) {
        int u = base + threadIdx.x;
        int match = u < T && ids[u] == id;
        if (match) atomicMin(&s_next, u);    // a minimum: the same result in any order
        if (__syncthreads_or(match)) break;  // uniform: every thread sees the same predicate
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        owner[t] = !earlier;
        next[t] = s_next == INT_MAX ? -1 : s_next;
    }
}

__global__ void embedding_rows_kernel(float *dtable, const uint16_t *dout, const int32_t *ids, const int32_t *owner,
                                      const int32_t *next, int C) {
    const int t = blockIdx.x;
    if (!owner[t]) return;
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float *row = dtable + (size_t)ids[t] * C;
    float acc = row[c];
    for (int u = t; u >= 0; u = next[u]) acc += bf16_to_f(dout[(size_t)u * C + c]);
    row[c] = acc;
}

extern "C" void cuda_embedding_backward(llava_backend *be, float *dtable, const void *dout, const int32_t *ids, int T,
                                        int C, int V, int padding_idx) {
    req_embedding_backward(be, dtable, dout, ids, T, C, V);
    if (T <= 0 || C <= 0 || V <= 0) return;
    int32_t *owner = (int32_t *)cuda_scratch(be, 2 * (size_t)T * sizeof(int32_t)), *next = owner + T;
    cudaStream_t st = cuda_stream_of(be);
    embedding_links_kernel<<<(unsigned)T, EMB_BWD_THREADS, 0, st>>>(owner, next, ids, T, V, padding_idx);
    CUDA_CHECK_LAUNCH();
    dim3 grid((unsigned)T, grid_for((size_t)C, EMB_BWD_THREADS));
    CUDA_REQUIRE(grid.y <= 65535, "embedding_backward: C too large");
    embedding_rows_kernel<<<grid, EMB_BWD_THREADS, 0, st>>>(dtable, (const uint16_t *)dout, ids, owner, next, C);
    CUDA_CHECK_LAUNCH();
}
