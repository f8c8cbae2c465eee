// AnyRes: LLaVA-NeXT's high-resolution preprocessing (transformers 4.46.3 LlavaNextImageProcessor and LLaVA-NeXT's
// llava/mm_utils.py process_anyres_image) and its shape helpers; see image.h for what each reproduces. The
// resizes are data/image.c's Pillow bicubic, the per-tile steps its CLIPImageProcessor pipeline.
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "image.h"

const char *image_anyres_flavor_name(image_anyres_flavor f) {
    return f == IMAGE_ANYRES_LLAVA_NEXT ? "llava-next" : "hf";
}

// ---------------------------------------------------------------------------------------------
// Pinpoint lists

static int add_pinpoint(image_pinpoints *out, long a, long b) {
    if (a < 1 || b < 1 || a > IMAGE_ANYRES_MAX_SIDE || b > IMAGE_ANYRES_MAX_SIDE)
        return llava_fail("grid pinpoints: [%ld, %ld] is not a pair of sides in 1..%d", a, b, IMAGE_ANYRES_MAX_SIDE);
    if (out->n >= IMAGE_ANYRES_MAX_PINPOINTS)
        return llava_fail("grid pinpoints: more than %d resolutions", IMAGE_ANYRES_MAX_PINPOINTS);
    out->res[out->n][0] = (int)a;
    out->res[out->n][1] = (int)b;
    out->n++;
    return 0;
}

static const char *skip_ws(const char *p) {
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

static int parse_uint(const char **pp, long *out) {
    const char *p = *pp;
    if (!isdigit((unsigned char)*p)) return -1;
    long v = 0;
    while (isdigit((unsigned char)*p)) {
        if (v > 100000000) return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    *out = v;
    *pp = p;
    return 0;
}

// LLaVA-NeXT: re.findall(r"\((\d+)x(\d+)\)", text); the first and last matches bound the grid.
static int parse_range_form(const char *text, int patch, image_pinpoints *out) {
    long first[2] = {0, 0}, last[2] = {0, 0};
    int found = 0;
    for (const char *p = text; *p; p++) {
        if (*p != '(') continue;
        const char *q = p + 1;
        long a, b;
        if (parse_uint(&q, &a) != 0 || *q != 'x') continue;
        q++;
        if (parse_uint(&q, &b) != 0 || *q != ')') continue;
        if (!found) {
            first[0] = a;
            first[1] = b;
        }
        last[0] = a;
        last[1] = b;
        found = 1;
        p = q;
    }
    if (!found) return llava_fail("grid pinpoints \"%s\": a range form needs \"(AxB)\" entries", text);
    if (patch < 1) return llava_fail("grid pinpoints \"%s\": the range form needs the patch size", text);
    for (long i = first[0]; i <= last[0]; i++)
        for (long j = first[1]; j <= last[1]; j++)
            if (add_pinpoint(out, i * patch, j * patch) != 0) return -1;
    if (out->n == 0) return llava_fail("grid pinpoints \"%s\": the range is empty", text);
    return 0;
}

int image_parse_pinpoints(const char *text, int patch_size, image_pinpoints *out) {
    out->n = 0;
    out->max_num_patches = 0;
    if (!text) return llava_fail("grid pinpoints: none given");
    if (strchr(text, 'x')) return parse_range_form(text, patch_size, out);
    // JSON: [[a, b], ...]
    const char *p = skip_ws(text);
    if (*p != '[') return llava_fail("grid pinpoints \"%s\": expected a JSON list like [[336,672],[672,336]]", text);
    p = skip_ws(p + 1);
    if (*p == ']') return llava_fail("grid pinpoints \"%s\": the list is empty", text);
    for (;;) {
        long ab[2];
        if (*p != '[') goto bad;
        p = skip_ws(p + 1);
        for (int k = 0; k < 2; k++) {
            if (parse_uint(&p, &ab[k]) != 0) goto bad;
            p = skip_ws(p);
            if (k == 0) {
                if (*p != ',') goto bad;
                p = skip_ws(p + 1);
            }
        }
        if (*p != ']') goto bad;
        if (add_pinpoint(out, ab[0], ab[1]) != 0) return -1;
        p = skip_ws(p + 1);
        if (*p == ']') break;
        if (*p != ',') goto bad;
        p = skip_ws(p + 1);
    }
    if (*skip_ws(p + 1) != '\0') goto bad;
    return 0;
bad:
    out->n = 0;
    return llava_fail("grid pinpoints \"%s\": expected a JSON list of [a, b] pairs of positive integers", text);
}

// ---------------------------------------------------------------------------------------------
// Shapes

int image_select_best_resolution(int orig_a, int orig_b, const image_pinpoints *pp) {
    if (!pp || pp->n < 1) return llava_fail("select_best_resolution: no grid pinpoints");
    if (orig_a < 1 || orig_b < 1) return llava_fail("select_best_resolution: zero-size image (%dx%d)", orig_a, orig_b);
    int best = -1;
    int64_t max_eff = 0, min_wasted = 0;
    const int64_t area = (int64_t)orig_a * orig_b;
    for (int i = 0; i < pp->n; i++) {
        const int a = pp->res[i][0], b = pp->res[i][1];
        // scale = min(width / original_width, height / original_height): Python's min keeps the first on a tie.
        double s1 = (double)b / (double)orig_b, s2 = (double)a / (double)orig_a;
        double scale = s2 < s1 ? s2 : s1;
        int64_t da = (int64_t)((double)orig_a * scale), db = (int64_t)((double)orig_b * scale);  // int(): truncation
        int64_t eff = da * db < area ? da * db : area;
        int64_t wasted = (int64_t)a * b - eff;
        // min_wasted_resolution starts at float("inf"): the first pinpoint always wins its turn, even with an
        // effective resolution of 0 (a strip too thin for any pinpoint to keep a row of it).
        if (best < 0 || eff > max_eff || (eff == max_eff && wasted < min_wasted)) {
            max_eff = eff;
            min_wasted = wasted;
            best = i;
        }
    }
    return best;
}

int image_anyres_best_resolution(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int *best_h,
                                 int *best_w) {
    if (f == IMAGE_ANYRES_LLAVA_NEXT) {  // (width, height) everywhere
        int i = image_select_best_resolution(orig_w, orig_h, pp);
        if (i < 0) return -1;
        *best_w = pp->res[i][0];
        *best_h = pp->res[i][1];
    } else {
        int i = image_select_best_resolution(orig_h, orig_w, pp);
        if (i < 0) return -1;
        *best_h = pp->res[i][0];
        *best_w = pp->res[i][1];
    }
    return 0;
}

int image_anyres_grid_shape(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int patch,
                            int *rows, int *cols) {
    if (patch < 1) return llava_fail("get_anyres_image_grid_shape: patch size %d", patch);
    int bh, bw;
    if (image_anyres_best_resolution(orig_h, orig_w, pp, f, &bh, &bw) != 0) return -1;
    *rows = bh / patch;
    *cols = bw / patch;
    return 0;
}

int image_anyres_num_patches(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int patch) {
    if (patch < 1) return llava_fail("image_size_to_num_patches: patch size %d", patch);
    int bh, bw;
    if (image_anyres_best_resolution(orig_h, orig_w, pp, f, &bh, &bw) != 0) return -1;
    return ((bh + patch - 1) / patch) * ((bw + patch - 1) / patch) + 1;
}

static int64_t floordiv2(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

// len(range(n)[start:stop]) and its first index, with Python's slice rules (negative indices count from the end).
static void py_slice(int64_t n, int64_t start, int64_t stop, int *first, int *count) {
    if (start < 0) start = start + n < 0 ? 0 : start + n;
    if (start > n) start = n;
    if (stop < 0) stop = stop + n < 0 ? 0 : stop + n;
    if (stop > n) stop = n;
    *first = (int)start;
    *count = stop > start ? (int)(stop - start) : 0;
}

int image_unpad_shape(int orig_h, int orig_w, int cur_h, int cur_w, int *top, int *left, int *new_h, int *new_w) {
    if (orig_h < 1 || orig_w < 1 || cur_h < 1 || cur_w < 1)
        return llava_fail("unpad_image: zero size (image %dx%d, grid %dx%d)", orig_w, orig_h, cur_w, cur_h);
    double orig_ar = (double)orig_w / (double)orig_h, cur_ar = (double)cur_w / (double)cur_h;
    if (orig_ar > cur_ar) {  // padding was added to the height
        double sf = (double)cur_w / (double)orig_w;
        int64_t nh = (int64_t)((double)orig_h * sf);
        int64_t pad = floordiv2(cur_h - nh);
        py_slice(cur_h, pad, cur_h - pad, top, new_h);
        *left = 0;
        *new_w = cur_w;
    } else {  // padding was added to the width
        double sf = (double)cur_h / (double)orig_h;
        int64_t nw = (int64_t)((double)orig_w * sf);
        int64_t pad = floordiv2(cur_w - nw);
        py_slice(cur_w, pad, cur_w - pad, left, new_w);
        *top = 0;
        *new_h = cur_h;
    }
    return 0;
}

int image_unpad_shape_int(int orig_h, int orig_w, int cur_h, int cur_w, int *new_h, int *new_w) {
    if (orig_h < 1 || orig_w < 1 || cur_h < 1 || cur_w < 1)
        return llava_fail("unpad: zero size (image %dx%d, grid %dx%d)", orig_w, orig_h, cur_w, cur_h);
    *new_h = cur_h;
    *new_w = cur_w;
    if ((double)orig_w / (double)orig_h > (double)cur_w / (double)cur_h) {
        int64_t nh = (int64_t)orig_h * cur_w / orig_w;  // non-negative: // is C's division
        *new_h = (int)(cur_h - 2 * floordiv2(cur_h - nh));
    } else {
        int64_t nw = (int64_t)orig_w * cur_h / orig_h;
        *new_w = (int)(cur_w - 2 * floordiv2(cur_w - nw));
    }
    return 0;
}

// An image's merged layout: the tile grid (rows x cols), the kept block of its (rows * grid) x (cols * grid) canvas
// (top, left, kh x kw; processor: image_unpad_shape_int's counts, top and left unset) and its size after
// anyres_max_N (oh x ow; kh x kw without the cap or under it). Returns 1 when resized, 0 when not, -1 on error.
static int anyres_layout(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int tile, int grid,
                         int processor, int *rows, int *cols, int *top, int *left, int *kh, int *kw, int *oh, int *ow) {
    if (grid < 1 || tile < 1) return llava_fail("anyres features: tile %d, grid %d", tile, grid);
    *top = *left = 0;
    if (image_anyres_grid_shape(orig_h, orig_w, pp, f, tile, rows, cols) != 0) return -1;
    if (*rows < 1 || *cols < 1)
        return llava_fail("anyres features: a %dx%d pinpoint holds no %d-pixel tile", *rows * tile, *cols * tile, tile);
    int64_t ch = (int64_t)*rows * grid, cw = (int64_t)*cols * grid;
    if (ch > INT_MAX || cw > INT_MAX) return llava_fail("anyres features: grid too large");
    int rc = processor ? image_unpad_shape_int(orig_h, orig_w, (int)ch, (int)cw, kh, kw)
                       : image_unpad_shape(orig_h, orig_w, (int)ch, (int)cw, top, left, kh, kw);
    if (rc != 0) return -1;
    *oh = *kh, *ow = *kw;
    if (pp->max_num_patches > 0 && *kh > 0 && *kw > 0)
        return image_anyres_max_shape(*kh, *kw, grid, pp->max_num_patches, oh, ow);
    return 0;
}

int image_anyres_num_features(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int tile,
                              int grid, int processor) {
    int r, c, top, left, kh, kw, oh, ow;
    if (anyres_layout(orig_h, orig_w, pp, f, tile, grid, processor, &r, &c, &top, &left, &kh, &kw, &oh, &ow) < 0)
        return -1;
    int64_t n = (int64_t)grid * grid + (int64_t)oh * (ow + 1);
    if (n > INT_MAX) return llava_fail("anyres features: too many");
    return (int)n;
}

int image_anyres_feature_rows(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int tile,
                              int grid, int32_t *rows) {
    int n = image_anyres_num_features(orig_h, orig_w, pp, f, tile, grid, 0);
    if (n < 0 || !rows) return n;
    int r = 0, c = 0, top = 0, left = 0, kh = 0, kw = 0, oh = 0, ow = 0;
    int resized = anyres_layout(orig_h, orig_w, pp, f, tile, grid, 0, &r, &c, &top, &left, &kh, &kw, &oh, &ow);
    if (resized < 0) return -1;
    int k = 0, gg = grid * grid;
    for (int i = 0; i < gg; i++) rows[k++] = i;  // the base tile, whole
    if (resized) {                               // the model's resized map, row by row, each row then a newline
        for (int y = 0; y < oh; y++) {
            for (int x = 0; x < ow; x++) rows[k++] = -2;
            rows[k++] = -1;
        }
        return k == n ? n : llava_fail("anyres feature rows: %d written, %d counted", k, n);
    }
    for (int Y = top; Y < top + kh; Y++) {
        for (int X = left; X < left + kw; X++) {
            int t = 1 + (Y / grid) * c + X / grid;
            rows[k++] = t * gg + (Y % grid) * grid + X % grid;
        }
        rows[k++] = -1;  // image_newline after each kept row
    }
    return k == n ? n : llava_fail("anyres feature rows: %d written, %d counted", k, n);
}

int image_anyres_resize_plan(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int tile,
                             int grid, int dims[4], int32_t *grid_rows) {
    int r = 0, c = 0, top = 0, left = 0, kh = 0, kw = 0, oh = 0, ow = 0;
    int resized = anyres_layout(orig_h, orig_w, pp, f, tile, grid, 0, &r, &c, &top, &left, &kh, &kw, &oh, &ow);
    if (resized < 0) return -1;
    dims[0] = kh, dims[1] = kw, dims[2] = oh, dims[3] = ow;
    if (resized && grid_rows) {
        int k = 0, gg = grid * grid;
        for (int Y = top; Y < top + kh; Y++)
            for (int X = left; X < left + kw; X++)
                grid_rows[k++] = (1 + (Y / grid) * c + X / grid) * gg + (Y % grid) * grid + X % grid;
    }
    return resized;
}

// CPython's float floor division (float_floor_div / _float_div_mod), for vx // wx with wx > 0.
static double py_float_floordiv(double vx, double wx) {
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod != 0.0 && ((wx < 0) != (mod < 0))) div -= 1.0;
    double fl;
    if (div != 0.0) {
        fl = floor(div);
        if (div - fl > 0.5) fl += 1.0;
    } else {
        fl = copysign(0.0, vx / wx);
    }
    return fl;
}

int image_anyres_max_shape(int h, int w, int unit, int max_num_patches, int *out_h, int *out_w) {
    if (h < 1 || w < 1 || unit < 1 || max_num_patches < 1)
        return llava_fail("anyres_max: bad sizes (%dx%d features, unit %d, N %d)", h, w, unit, max_num_patches);
    // h * w / (max_num_patches * unit**2): Python ints, true division (exact operands below 2^53).
    double times = sqrt((double)((int64_t)h * w) / (double)((int64_t)max_num_patches * unit * unit));
    if (!(times > 1.1)) {
        *out_h = h;
        *out_w = w;
        return 0;
    }
    double nh = py_float_floordiv((double)h, times), nw = py_float_floordiv((double)w, times);
    if (nh < 1 || nw < 1) return llava_fail("anyres_max: %dx%d features shrink to nothing", h, w);
    *out_h = (int)nh;
    *out_w = (int)nw;
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Preprocessing

static int check_config(const image_anyres_config *cfg) {
    if (!cfg) return llava_fail("anyres: no config");
    if (cfg->size < 1 || cfg->size > 4096) return llava_fail("anyres: bad tile size %d", cfg->size);
    if (cfg->flavor != IMAGE_ANYRES_HF && cfg->flavor != IMAGE_ANYRES_LLAVA_NEXT)
        return llava_fail("anyres: unknown flavour %d", (int)cfg->flavor);
    if (cfg->pinpoints.n < 1 || cfg->pinpoints.n > IMAGE_ANYRES_MAX_PINPOINTS)
        return llava_fail("anyres: %d grid pinpoints", cfg->pinpoints.n);
    for (int i = 0; i < cfg->pinpoints.n; i++) {
        const int a = cfg->pinpoints.res[i][0], b = cfg->pinpoints.res[i][1];
        if (a < 1 || b < 1 || a > IMAGE_ANYRES_MAX_SIDE || b > IMAGE_ANYRES_MAX_SIDE ||
            (uint64_t)a * (uint64_t)b > IMAGE_MAX_PIXELS_DEFAULT)
            return llava_fail("anyres: grid pinpoint [%d, %d] out of range", a, b);
    }
    return 0;
}

int image_anyres_max_tiles(const image_anyres_config *cfg) {
    if (check_config(cfg) != 0) return -1;
    const int S = cfg->size;
    int64_t best = 0;
    for (int i = 0; i < cfg->pinpoints.n; i++) {
        int64_t t = (int64_t)((cfg->pinpoints.res[i][0] + S - 1) / S) * ((cfg->pinpoints.res[i][1] + S - 1) / S);
        if (t > best) best = t;
    }
    if (best + 1 > INT_MAX / 2) return llava_fail("anyres: too many tiles");
    return (int)best + 1;
}

int image_anyres_plan_for(int orig_h, int orig_w, const image_anyres_config *cfg, image_anyres_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (check_config(cfg) != 0) return -1;
    int th, tw;
    if (image_anyres_best_resolution(orig_h, orig_w, &cfg->pinpoints, cfg->flavor, &th, &tw) != 0) return -1;
    // _get_patch_output_size / resize_and_pad_image: the side with the smaller scale fills its target.
    double scale_w = (double)tw / (double)orig_w, scale_h = (double)th / (double)orig_h;
    int nh, nw;
    if (scale_w < scale_h) {
        nw = tw;
        double c = ceil((double)orig_h * scale_w);
        nh = c < (double)th ? (int)c : th;
    } else {
        nh = th;
        double c = ceil((double)orig_w * scale_h);
        nw = c < (double)tw ? (int)c : tw;
    }
    const int S = cfg->size;
    plan->orig_h = orig_h;
    plan->orig_w = orig_w;
    plan->best_h = th;
    plan->best_w = tw;
    plan->resized_h = nh;
    plan->resized_w = nw;
    plan->top = (th - nh) / 2;
    plan->left = (tw - nw) / 2;
    if (cfg->flavor == IMAGE_ANYRES_HF) {  // np.pad((paste_y, paste_y), (paste_x, paste_x))
        plan->padded_h = nh + 2 * plan->top;
        plan->padded_w = nw + 2 * plan->left;
    } else {  // a full canvas
        plan->padded_h = th;
        plan->padded_w = tw;
    }
    plan->rows = (plan->padded_h + S - 1) / S;
    plan->cols = (plan->padded_w + S - 1) / S;
    plan->n_tiles = 1 + plan->rows * plan->cols;
    return 0;
}

int image_anyres_preprocess(const image_u8 *in, const image_anyres_config *cfg, image_anyres_plan *plan_out,
                            uint8_t *out_u8, float *out_chw) {
    if (!in || in->w <= 0 || in->h <= 0 || !in->rgb) return llava_fail("anyres: zero-size image");
    image_anyres_plan plan;
    if (image_anyres_plan_for(in->h, in->w, cfg, &plan) != 0) return -1;
    if (plan_out) *plan_out = plan;
    const int S = cfg->size;
    const size_t tile_px = (size_t)S * (size_t)S;
    int rc = -1;
    uint8_t *u8 = out_u8 ? out_u8 : malloc(tile_px * 3 * (size_t)plan.n_tiles);
    image_u8 resized = {0, 0, NULL}, padded = {0, 0, NULL}, tile = {0, 0, NULL};
    if (!u8) return llava_fail("anyres: out of memory");

    // Tile 0: the whole image squashed to S x S; CLIP's resize and crop then leave it as it is.
    image_u8 base = {S, S, u8};
    if (image_resize_bicubic_crop(in, S, S, 0, 0, &base) != 0) goto done;

    // The resized image on its zero canvas.
    if (image_alloc(&resized, plan.resized_w, plan.resized_h, "anyres") != 0) goto done;
    if (image_resize_bicubic_crop(in, plan.resized_w, plan.resized_h, 0, 0, &resized) != 0) goto done;
    if (image_alloc(&padded, plan.padded_w, plan.padded_h, "anyres") != 0) goto done;
    memset(padded.rgb, 0, (size_t)padded.w * (size_t)padded.h * 3);
    for (int y = 0; y < resized.h; y++)
        memcpy(padded.rgb + ((size_t)(y + plan.top) * (size_t)padded.w + (size_t)plan.left) * 3,
               resized.rgb + (size_t)y * (size_t)resized.w * 3, (size_t)resized.w * 3);
    image_free(&resized);

    if (image_alloc(&tile, S, S, "anyres") != 0) goto done;
    for (int r = 0; r < plan.rows; r++) {
        for (int c = 0; c < plan.cols; c++) {
            const int y0 = r * S, x0 = c * S;
            int th = padded.h - y0 < S ? padded.h - y0 : S, tw = padded.w - x0 < S ? padded.w - x0 : S;
            uint8_t *dst = u8 + (size_t)(1 + r * plan.cols + c) * tile_px * 3;
            if (cfg->flavor == IMAGE_ANYRES_LLAVA_NEXT) {
                // image.crop((x0, y0, x0 + S, y0 + S)): S x S, zero outside the canvas; CLIP's steps keep it.
                memset(dst, 0, tile_px * 3);
                for (int y = 0; y < th; y++)
                    memcpy(dst + (size_t)y * (size_t)S * 3, padded.rgb + ((size_t)(y0 + y) * (size_t)padded.w + x0) * 3,
                           (size_t)tw * 3);
                continue;
            }
            // transformers: the patch as cut (maybe short), then CLIP's shortest-edge resize and centre crop.
            tile.w = tw;
            tile.h = th;
            for (int y = 0; y < th; y++)
                memcpy(tile.rgb + (size_t)y * (size_t)tw * 3,
                       padded.rgb + ((size_t)(y0 + y) * (size_t)padded.w + x0) * 3, (size_t)tw * 3);
            if (image_preprocess(&tile, S, IMAGE_ASPECT_SQUARE, dst, NULL) != 0) goto done;
        }
    }
    if (out_chw)
        for (int t = 0; t < plan.n_tiles; t++)
            image_normalize(u8 + (size_t)t * tile_px * 3, S, S, out_chw + (size_t)t * tile_px * 3);
    rc = 0;
done:
    image_free(&resized);
    image_free(&padded);
    image_free(&tile);
    if (u8 != out_u8) free(u8);
    return rc;
}
