// Packed batches from Hugging Face-style padded inputs (input_ids, attention_mask, labels,
// pixel_values): what `llava forward` reads and what the tests compare with transformers.
#include "batch_hf.h"

#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/util.h"
#include "model/io/safetensors.h"

// The same with the number of image positions the tokens must hold (n_img * tokens_per_image without AnyRes).
static int batch_from_hf(llava_batch *b, const llava_model *m, const int64_t *input_ids, const int64_t *attention_mask,
                         const int64_t *labels, int B, int S, const float *pixels, int n_img, int H, int W,
                         int expect_feat, int image_id) {
    memset(b, 0, sizeof *b);
    int V = m->cfg.text.vocab_size;
    int *len = xcalloc((size_t)B, sizeof(int));
    int T = 0, n_feat = 0;
    for (int r = 0; r < B; r++) {
        int L = S;
        if (attention_mask) {
            L = 0;
            while (L < S && attention_mask[(size_t)r * S + L]) L++;
            for (int t = L; t < S; t++)
                if (attention_mask[(size_t)r * S + t]) {
                    free(len);
                    return llava_fail("batch row %d: attention_mask is not right-padded (1 after 0 at %d)", r, t);
                }
        }
        len[r] = L;
        T += L;
        for (int t = 0; t < L; t++) n_feat += input_ids[(size_t)r * S + t] == image_id;
    }
    if (n_feat != expect_feat) {
        free(len);
        if (image_id != m->cfg.glue.image_token_index)
            return llava_fail("batch: %d video tokens for %d frames of %d features each", n_feat, n_img,
                              m->tokens_per_video_frame);
        if (expect_feat != n_img * m->tokens_per_image)
            return llava_fail("batch: %d image tokens where the AnyRes images' features are %d", n_feat, expect_feat);
        if (expect_feat != n_img * m->tokens_per_image)
            return llava_fail("batch: %d image tokens where the images' and video frames' features are %d", n_feat,
                              expect_feat);
        return llava_fail("batch: %d image tokens for %d images of %d features each", n_feat, n_img,
                          m->tokens_per_image);
    }
    b->T = T;
    b->n_seq = B;
    b->cu_seqlens = xmalloc(sizeof(int32_t) * (size_t)(B + 1));
    b->ids = xmalloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->targets = xmalloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->pos = xmalloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->img_rows = xmalloc(sizeof(int32_t) * (size_t)(n_feat ? n_feat : 1));
    int k = 0, f = 0;
    b->cu_seqlens[0] = 0;
    for (int r = 0; r < B; r++) {
        for (int t = 0; t < len[r]; t++, k++) {
            int64_t id = input_ids[(size_t)r * S + t];
            if (id == image_id) {
                b->ids[k] = -1;
                b->img_rows[f++] = k;
            } else if (id < 0 || id >= V) {
                llava_batch_free(b);
                free(len);
                return llava_fail("batch row %d position %d: token id %lld outside the vocabulary of %d", r, t,
                                  (long long)id, V);
            } else {
                b->ids[k] = (int32_t)id;
            }
            b->pos[k] = t;
            // Position t predicts the label of t+1 in the same row; the last real token predicts nothing.
            int64_t y = (labels && t + 1 < len[r]) ? labels[(size_t)r * S + t + 1] : -100;
            b->targets[k] = y < 0 ? -100 : (int32_t)y;
            if (y >= V) {
                llava_batch_free(b);
                free(len);
                return llava_fail("batch row %d position %d: label %lld outside the vocabulary of %d", r, t + 1,
                                  (long long)y, V);
            }
            b->n_targets += y >= 0;
        }
        b->cu_seqlens[r + 1] = k;
    }
    free(len);
    if (n_img) {  // a NaN or infinity would only show as a NaN loss or no answer
        size_t np = (size_t)n_img * 3 * H * W, bad = 0, at = f32_first_nonfinite(pixels, np, &bad);
        if (bad) {
            llava_batch_free(b);
            size_t plane = (size_t)H * W;
            return llava_fail(
                "pixel_values holds %zu value%s that %s not finite (%s at image %zu, channel %zu, row %zu, "
                "column %zu)",
                bad, bad == 1 ? "" : "s", bad == 1 ? "is" : "are", f32_nonfinite_name(pixels[at]), at / (3 * plane),
                at / plane % 3, at % plane / (size_t)W, at % (size_t)W);
        }
    }
    b->n_img = n_img;
    b->img_h = H;
    b->img_w = W;
    if (n_img) {
        size_t np = (size_t)n_img * 3 * H * W;
        b->pixels = xmalloc(sizeof(float) * np);
        memcpy(b->pixels, pixels, sizeof(float) * np);
    }
    return 0;
}

int llava_batch_from_hf(llava_batch *b, const llava_model *m, const int64_t *input_ids, const int64_t *attention_mask,
                        const int64_t *labels, int B, int S, const float *pixels, int n_img, int H, int W) {
    return batch_from_hf(b, m, input_ids, attention_mask, labels, B, S, pixels, n_img, H, W,
                         n_img * m->tokens_per_image, m->cfg.glue.image_token_index);
}

int llava_batch_from_hf_frames(llava_batch *b, const llava_model *m, const int64_t *input_ids,
                               const int64_t *attention_mask, const int64_t *labels, int B, int S, const float *pixels,
                               int n_img, int H, int W, const uint8_t *video_frame) {
    int any = 0, feats = 0;
    for (int i = 0; i < n_img; i++) {
        any |= video_frame && video_frame[i];
        feats += video_frame && video_frame[i] ? m->tokens_per_video_frame : m->tokens_per_image;
    }
    if (!any) return llava_batch_from_hf(b, m, input_ids, attention_mask, labels, B, S, pixels, n_img, H, W);
    if (batch_from_hf(b, m, input_ids, attention_mask, labels, B, S, pixels, n_img, H, W, feats,
                      m->cfg.glue.image_token_index) != 0)
        return -1;
    b->video_frame = xmalloc((size_t)n_img);
    for (int i = 0; i < n_img; i++) b->video_frame[i] = video_frame[i] != 0;
    return 0;
}

int llava_batch_from_hf_anyres(llava_batch *b, const llava_model *m, const int64_t *ids, const int64_t *mask,
                               const int64_t *labels, int B, int S, const float *tiles, int n_images,
                               const int64_t *sizes) {
    const llava_glue_config *g = &m->cfg.glue;
    int tile = m->cfg.vision.image_size, grid = tile / m->cfg.vision.patch_size, tpi = m->tokens_per_image;
    if (!g->anyres) return llava_fail("AnyRes inputs for a model without AnyRes");
    int total_tiles = 0, total_feat = 0, rc = 0;
    int *nt = xmalloc(sizeof(int) * (size_t)(n_images ? n_images : 1)),
        *nf = xmalloc(sizeof(int) * (size_t)(n_images ? n_images : 1));
    for (int i = 0; i < n_images && rc == 0; i++) {
        int h = (int)sizes[2 * i], w = (int)sizes[2 * i + 1], r = 0, c = 0;
        if (image_anyres_grid_shape(h, w, &g->pinpoints, IMAGE_ANYRES_HF, tile, &r, &c) != 0 ||
            (nf[i] = image_anyres_feature_rows(h, w, &g->pinpoints, IMAGE_ANYRES_HF, tile, grid, NULL)) < 0)
            rc = -1;
        nt[i] = 1 + r * c;
        total_tiles += nt[i], total_feat += nf[i];
    }
    if (rc == 0)
        rc = batch_from_hf(b, m, ids, mask, labels, B, S, tiles, total_tiles, tile, tile, total_feat,
                           g->image_token_index);
    if (rc == 0) {
        b->n_feat = total_feat;
        b->feat_rows = xmalloc(sizeof(int32_t) * (size_t)(total_feat ? total_feat : 1));
        for (int i = 0, o = 0, k = 0; i < n_images; o += nt[i], k += nf[i], i++) {
            image_anyres_feature_rows((int)sizes[2 * i], (int)sizes[2 * i + 1], &g->pinpoints, IMAGE_ANYRES_HF, tile,
                                      grid, b->feat_rows + k);
            for (int j = k; j < k + nf[i]; j++)
                if (b->feat_rows[j] >= 0) b->feat_rows[j] += o * tpi;
        }
        if (g->pinpoints.max_num_patches > 0) {  // anyres_max_N: each image's map the model resizes, if it does
            b->resize_dims = xmalloc(sizeof(int32_t) * 4 * (size_t)(n_images + 1));
            b->resize_rows = xmalloc(sizeof(int32_t) * ((size_t)total_tiles * tpi + 1));
            for (int i = 0, o = 0, at = 0; i < n_images; o += nt[i], i++) {
                int dd[4];
                int32_t *from = b->resize_rows + at;
                if (image_anyres_resize_plan((int)sizes[2 * i], (int)sizes[2 * i + 1], &g->pinpoints, IMAGE_ANYRES_HF,
                                             tile, grid, dd, from) != 1)
                    continue;
                for (int f = 0; f < dd[0] * dd[1]; f++) from[f] += o * tpi;
                for (int q = 0; q < 4; q++) b->resize_dims[4 * b->n_resize + q] = dd[q];
                at += dd[0] * dd[1];
                b->n_resize++;
            }
        }
    }
    free(nt);
    free(nf);
    return rc;
}

// AnyRes (LLaVA-NeXT, transformers' LlavaNextForConditionalGeneration inputs): pixel_values (N, T_max, 3, S, S) with
// image_sizes (N, 2) (height, width); image i takes the first 1 + rows * cols tiles of its slot.
static int batch_from_hf_anyres(llava_batch *b, const llava_model *m, const int64_t *ids, const int64_t *mask,
                                const int64_t *labels, int B, int S, const float *pix5, int N, int T_max, int side,
                                const int64_t *sizes) {
    const llava_glue_config *g = &m->cfg.glue;
    int tile = m->cfg.vision.image_size;
    if (side != tile) return llava_fail("AnyRes tiles of %d pixels; the vision tower takes %d", side, tile);
    size_t plane = (size_t)3 * side * side;
    int total = 0, rc = 0;
    int *tiles = xmalloc(sizeof(int) * (size_t)(N ? N : 1));
    for (int i = 0; i < N && rc == 0; i++) {
        int h = (int)sizes[2 * i], w = (int)sizes[2 * i + 1], r = 0, c = 0;
        if (image_anyres_grid_shape(h, w, &g->pinpoints, IMAGE_ANYRES_HF, tile, &r, &c) != 0) rc = -1;
        else if ((tiles[i] = 1 + r * c) > T_max)
            rc = llava_fail("image %d (%dx%d) needs %d tiles; pixel_values holds %d", i, h, w, tiles[i], T_max);
        else total += tiles[i];
    }
    float *flat = rc == 0 ? xmalloc(sizeof(float) * plane * (size_t)(total ? total : 1)) : NULL;
    for (int i = 0, o = 0; i < N && rc == 0; o += tiles[i], i++)
        memcpy(flat + (size_t)o * plane, pix5 + (size_t)i * T_max * plane, sizeof(float) * plane * (size_t)tiles[i]);
    if (rc == 0) rc = llava_batch_from_hf_anyres(b, m, ids, mask, labels, B, S, flat, N, sizes);
    free(flat);
    free(tiles);
    return rc;
}

static int read_i64(const st_file *f, const char *name, int64_t **out, int want_dims, int64_t *shape) {
    const st_tensor *t = st_find(f, name);
    if (!t) return 0;
    if (t->dtype != DT_I64 || t->ndim != want_dims)
        return llava_fail("%s: \"%s\" must be I64 with %d dimensions", f->path, name, want_dims);
    *out = xmalloc(sizeof(int64_t) * (size_t)(t->numel ? t->numel : 1));
    memcpy(*out, t->data, sizeof(int64_t) * (size_t)t->numel);
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return 1;
}

int llava_batch_from_file(llava_batch *b, const llava_model *m, const char *path, int *B_out, int *S_out) {
    st_file f;
    if (st_open(&f, path) != 0) return -1;
    int64_t *ids = NULL, *mask = NULL, *labels = NULL;
    int64_t s_ids[2] = {0}, s_mask[2] = {0}, s_lab[2] = {0};
    int rc = read_i64(&f, "input_ids", &ids, 2, s_ids);
    if (rc == 0) rc = llava_fail("%s: no \"input_ids\" tensor", path);
    if (rc > 0) rc = read_i64(&f, "attention_mask", &mask, 2, s_mask);
    if (rc >= 0) rc = read_i64(&f, "labels", &labels, 2, s_lab);
    if (rc >= 0 && ((mask && (s_mask[0] != s_ids[0] || s_mask[1] != s_ids[1])) ||
                    (labels && (s_lab[0] != s_ids[0] || s_lab[1] != s_ids[1]))))
        rc = llava_fail("%s: attention_mask and labels must have input_ids' shape", path);
    float *pix = NULL;
    int n_img = 0, H = 0, W = 0;
    const st_tensor *pt = st_find(&f, "pixel_values");
    if (rc >= 0 && m->cfg.glue.anyres && pt && pt->ndim == 5) {  // LLaVA-NeXT's tiles
        int64_t *sizes = NULL, s_sz[2] = {0};
        rc = read_i64(&f, "image_sizes", &sizes, 2, s_sz);
        if (rc == 0 || (rc > 0 && (s_sz[0] != pt->shape[0] || s_sz[1] != 2)))
            rc = llava_fail("%s: AnyRes pixel_values (n, tiles, 3, S, S) need image_sizes (n, 2)", path);
        if (rc > 0 && (pt->shape[2] != 3 || pt->shape[3] != pt->shape[4]))
            rc = llava_fail("%s: pixel_values must be (n, tiles, 3, S, S)", path);
        if (rc > 0) {
            pix = xmalloc(sizeof(float) * (size_t)(pt->numel ? pt->numel : 1));
            if (st_tensor_to_f32(&f, pt, pix) != 0) rc = -1;
        }
        if (rc > 0)
            rc = batch_from_hf_anyres(b, m, ids, mask, labels, (int)s_ids[0], (int)s_ids[1], pix, (int)pt->shape[0],
                                      (int)pt->shape[1], (int)pt->shape[3], sizes);
        free(sizes);
        if (rc >= 0) {
            if (B_out) *B_out = (int)s_ids[0];
            if (S_out) *S_out = (int)s_ids[1];
        }
        free(ids), free(mask), free(labels), free(pix);
        st_close(&f);
        return rc < 0 ? -1 : 0;
    }
    const st_tensor *vt = st_find(&f, "pixel_values_videos");
    if (rc >= 0 && vt) {  // LlavaNextVideo's inputs: video frames only, each frame's tokens video_token_index
        if (pt) rc = llava_fail("%s: pixel_values beside pixel_values_videos is not supported", path);
        else if (m->cfg.glue.video_token_index < 0)
            rc = llava_fail("%s: pixel_values_videos for a model without a video_token_index", path);
        else if (vt->ndim != 5 || vt->shape[2] != 3)
            rc = llava_fail("%s: pixel_values_videos must be (videos, frames, 3, H, W)", path);
        else {
            n_img = (int)(vt->shape[0] * vt->shape[1]);
            H = (int)vt->shape[3];
            W = (int)vt->shape[4];
            pix = xmalloc(sizeof(float) * (size_t)(vt->numel ? vt->numel : 1));
            if (st_tensor_to_f32(&f, vt, pix) != 0) rc = -1;
        }
        if (rc >= 0)
            rc = batch_from_hf(b, m, ids, mask, labels, (int)s_ids[0], (int)s_ids[1], pix, n_img, H, W,
                               n_img * m->tokens_per_video_frame, m->cfg.glue.video_token_index);
        if (rc >= 0) {
            b->video_frame = xmalloc((size_t)(n_img ? n_img : 1));
            memset(b->video_frame, 1, (size_t)(n_img ? n_img : 1));
            if (B_out) *B_out = (int)s_ids[0];
            if (S_out) *S_out = (int)s_ids[1];
        }
        free(ids), free(mask), free(labels), free(pix);
        st_close(&f);
        return rc < 0 ? -1 : 0;
    }
    if (rc >= 0 && pt) {
        if (pt->ndim != 4 || pt->shape[1] != 3) rc = llava_fail("%s: pixel_values must be (n, 3, H, W)", path);
        else {
            n_img = (int)pt->shape[0];
            H = (int)pt->shape[2];
            W = (int)pt->shape[3];
            pix = xmalloc(sizeof(float) * (size_t)(pt->numel ? pt->numel : 1));
            if (st_tensor_to_f32(&f, pt, pix) != 0) rc = -1;
        }
    }
    if (rc >= 0) rc = llava_batch_from_hf(b, m, ids, mask, labels, (int)s_ids[0], (int)s_ids[1], pix, n_img, H, W);
    if (rc >= 0) {
        if (B_out) *B_out = (int)s_ids[0];
        if (S_out) *S_out = (int)s_ids[1];
    }
    free(ids);
    free(mask);
    free(labels);
    free(pix);
    st_close(&f);
    return rc < 0 ? -1 : 0;
}
