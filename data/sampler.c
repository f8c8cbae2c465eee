#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

// ---------------------------------------------------------------------------------------------
// LLaVA's length-grouped order (llava/train/llava_trainer.py, spec §7.1)

typedef struct {
    const int64_t *len;
} len_ctx;

// Python's sorted(mb, key=len, reverse=True) is stable: equal lengths keep their order.
static int cmp_len_desc(const void *a, const void *b, void *ctx) {
    const int64_t *len = ((const len_ctx *)ctx)->len;
    const int64_t *x = a, *y = b;
    if (len[x[1]] != len[y[1]]) return len[x[1]] > len[y[1]] ? -1 : 1;
    return x[0] < y[0] ? -1 : (x[0] > y[0]);  // position in the megabatch
}

// split_to_even_chunks, then flattened: mb (m) reordered in place into chunk order.
static void even_chunks(int64_t *mb, int64_t m, const int64_t *len, int W) {
    int64_t *out = xmalloc(sizeof(int64_t) * (size_t)(m ? m : 1));
    if (m % W != 0) {
        int64_t k = 0;
        for (int c = 0; c < W; c++)
            for (int64_t i = c; i < m; i += W) out[k++] = mb[i];
    } else {
        int64_t per = m / W;
        int64_t *fill = xcalloc((size_t)W, sizeof(int64_t));
        double *sum = xcalloc((size_t)W, sizeof(double));
        int64_t **chunks = xmalloc(sizeof(int64_t *) * (size_t)W);
        for (int c = 0; c < W; c++) chunks[c] = xmalloc(sizeof(int64_t) * (size_t)per);
        for (int64_t i = 0; i < m; i++) {
            int best = 0;  // list.index(min(...)): the first chunk with the smallest sum
            for (int c = 1; c < W; c++)
                if (sum[c] < sum[best]) best = c;
            chunks[best][fill[best]++] = mb[i];
            sum[best] += (double)len[mb[i]];
            if (fill[best] == per) sum[best] = INFINITY;
        }
        int64_t k = 0;
        for (int c = 0; c < W; c++)
            for (int64_t i = 0; i < per; i++) out[k++] = chunks[c][i];
        for (int c = 0; c < W; c++) free(chunks[c]);
        free(chunks);
        free(fill);
        free(sum);
    }
    memcpy(mb, out, sizeof(int64_t) * (size_t)m);
    free(out);
}

// get_length_grouped_indices(lengths, B, W, generator): out receives n positions into `len`.
static void length_grouped(const int64_t *len, int64_t n, int B, int W, torch_rng *g, int64_t *out) {
    torch_randperm(g, n, out);
    int64_t M = (int64_t)B * W;
    int64_t *pairs = xmalloc(sizeof(int64_t) * 2 * (size_t)(M ? M : 1));
    len_ctx ctx = {len};
    for (int64_t s = 0; s < n; s += M) {
        int64_t m = n - s < M ? n - s : M;
        for (int64_t i = 0; i < m; i++) {
            pairs[2 * i] = i;
            pairs[2 * i + 1] = out[s + i];
        }
        qsort_r(pairs, (size_t)m, 2 * sizeof(int64_t), cmp_len_desc, &ctx);
        for (int64_t i = 0; i < m; i++) out[s + i] = pairs[2 * i + 1];
        even_chunks(out + s, m, len, W);
    }
    free(pairs);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : (x > y);
}

// get_modality_length_grouped_indices for one epoch, drawing from the sampler's generator g and
// the global generator `inner`.
static int modality_grouped(const sampler_config *c, torch_rng *g, torch_rng *inner, int64_t *out) {
    int64_t n = c->n;
    int B = c->batch, W = c->virtual_ranks;
    int64_t n_mm = 0, n_lang = 0;
    for (int64_t i = 0; i < n; i++) {
        if (c->modality_len[i] == 0) return llava_fail("sampler: sample %lld has modality length 0", (long long)i);
        if (c->modality_len[i] > 0) n_mm++;
        else n_lang++;
    }
    int64_t *len = xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (n_mm == 0 || n_lang == 0) {
        // One modality: the plain grouped order over the signed lengths, with the sampler's generator.
        for (int64_t i = 0; i < n; i++) len[i] = c->modality_len[i];
        length_grouped(len, n, B, W, g, out);
        free(len);
        return 0;
    }
    int64_t *mm_idx = xmalloc(sizeof(int64_t) * (size_t)n_mm), *lang_idx = xmalloc(sizeof(int64_t) * (size_t)n_lang);
    int64_t *mm_len = xmalloc(sizeof(int64_t) * (size_t)n_mm), *lang_len = xmalloc(sizeof(int64_t) * (size_t)n_lang);
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        if (c->modality_len[i] > 0) {
            mm_idx[a] = i;
            mm_len[a++] = c->modality_len[i];
        } else {
            lang_idx[b] = i;
            lang_len[b++] = -(int64_t)c->modality_len[i];
        }
    }
    int64_t *mm = xmalloc(sizeof(int64_t) * (size_t)n_mm), *lang = xmalloc(sizeof(int64_t) * (size_t)n_lang);
    length_grouped(mm_len, n_mm, B, W, inner, mm);  // generator=None: the global RNG, mm first
    length_grouped(lang_len, n_lang, B, W, inner, lang);
    for (int64_t i = 0; i < n_mm; i++) mm[i] = mm_idx[mm[i]];
    for (int64_t i = 0; i < n_lang; i++) lang[i] = lang_idx[lang[i]];
    int64_t M = (int64_t)B * W;
    int64_t mm_mb = (n_mm + M - 1) / M, lang_mb = (n_lang + M - 1) / M;  // both >= 1
    int64_t n_full = (mm_mb - 1) + (lang_mb - 1);
    // The megabatches but the last of each modality, shuffled by the sampler's generator.
    int64_t *perm = xmalloc(sizeof(int64_t) * (size_t)(n_full ? n_full : 1));
    torch_randperm(g, n_full, perm);
    int64_t k = 0;
    for (int64_t j = 0; j < n_full; j++) {
        int64_t id = perm[j];
        const int64_t *src = id < mm_mb - 1 ? mm + id * M : lang + (id - (mm_mb - 1)) * M;
        memcpy(out + k, src, sizeof(int64_t) * (size_t)M);
        k += M;
    }
    // The two last megabatches together, sorted by sample index, close the epoch.
    int64_t last_mm = n_mm - (mm_mb - 1) * M, last_lang = n_lang - (lang_mb - 1) * M;
    memcpy(out + k, mm + (mm_mb - 1) * M, sizeof(int64_t) * (size_t)last_mm);
    memcpy(out + k + last_mm, lang + (lang_mb - 1) * M, sizeof(int64_t) * (size_t)last_lang);
    qsort(out + k, (size_t)(last_mm + last_lang), sizeof(int64_t), cmp_i64);
    free(perm);
    free(mm);
    free(lang);
    free(mm_idx);
    free(lang_idx);
    free(mm_len);
    free(lang_len);
    free(len);
    return 0;
}

int sampler_epoch_order(const sampler_config *c, int epoch, int64_t *out) {
    if (c->n <= 0 || c->batch <= 0 || c->virtual_ranks <= 0)
        return llava_fail("sampler: empty dataset or bad batch/ranks");
    if (c->n >= ((int64_t)1 << 32)) return llava_fail("sampler: more than 2^32 samples");
    if (c->sequential) {
        for (int64_t i = 0; i < c->n; i++) out[i] = i;
        return 0;
    }
    torch_rng g, inner;
    torch_rng_seed(&g, c->seed);
    torch_rng_seed(&inner, c->inner_seed);
    // Generators continue across epochs: replay the earlier epochs' draws.
    for (int e = 0; e <= epoch; e++) {
        for (int k = 0; k < c->inner_skip; k++) torch_rng_next(&inner);
        torch_rng *gp = c->single_generator ? &inner : &g;
        int rc;
        if (!c->modality_len) {
            torch_randperm(gp, c->n, out);
            rc = 0;
        } else {
            rc = modality_grouped(c, gp, &inner, out);
        }
        if (rc != 0) return rc;
    }
    return 0;
}

int64_t sampler_batches_per_rank(const sampler_config *c) {
    int64_t nb = (c->n + c->batch - 1) / c->batch;
    return (nb + c->virtual_ranks - 1) / c->virtual_ranks;
}

int sampler_rank_batch(const sampler_config *c, const int64_t *order, int64_t step, int v, int64_t *out) {
    int64_t n = c->n, B = c->batch, W = c->virtual_ranks;
    int64_t nb = (n + B - 1) / B;  // batches cut from the order; the last may be short
    int64_t j = step * W + v;      // this batch's index in the dealt sequence
    int64_t last_len = n - (nb - 1) * B;
    if (j < nb && (j < nb - 1 || last_len == B)) {
        memcpy(out, order + j * B, sizeof(int64_t) * (size_t)B);
        return (int)B;
    }
    // accelerate's even_batches tail: the first W batches of the epoch (doubled while shorter than
    // one batch) complete the short last batch, then fill the rest of the last round, in order.
    int64_t init_len = n < W * B ? n : W * B;
    int64_t init_total = init_len;
    while (init_total < B) init_total *= 2;
    int64_t k = 0, start;
    if (last_len < B && j == nb - 1) {
        memcpy(out, order + (nb - 1) * B, sizeof(int64_t) * (size_t)last_len);
        k = last_len;
        start = 0;
    } else {
        start = (last_len < B ? B - last_len : 0) + (j - nb) * B;
    }
    int64_t end = start + (B - k);
    for (int64_t i = start; i < end && i < init_total; i++) out[k++] = order[i % init_len];
    return (int)k;
}
