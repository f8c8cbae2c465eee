// Image decoding dispatch and LLaVA-1.5 preprocessing (see image.h for what is reproduced).
#include "image.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

const double IMAGE_CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
const double IMAGE_CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};
const uint8_t IMAGE_PAD_RGB[3] = {122, 116, 104};

// ---------------------------------------------------------------------------------------------
// Formats

image_format image_sniff(const uint8_t *b, size_t n) {
    // The prefixes Pillow's plugins accept (JpegImagePlugin, PngImagePlugin, GifImagePlugin _accept).
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return IMAGE_FMT_JPEG;
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return IMAGE_FMT_PNG;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return IMAGE_FMT_GIF;
    return IMAGE_FMT_UNKNOWN;
}

const char *image_format_name(image_format f) {
    switch (f) {
    case IMAGE_FMT_JPEG: return "JPEG";
    case IMAGE_FMT_PNG: return "PNG";
    case IMAGE_FMT_GIF: return "GIF";
    default: return "unknown";
    }
}

// Names a few formats we do not decode, so that the error says what the file is.
static const char *other_format(const uint8_t *b, size_t n) {
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0) return "HEIF/AVIF (ISO media)";
    if (n >= 4 && memcmp(b, "\0\0\1\0", 4) == 0) return "ICO";
    if (n >= 12 && memcmp(b, "\0\0\0\x0cjP  ", 8) == 0) return "JPEG 2000";
    if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) return "JPEG without a marker after SOI";
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') return "PNM";
    return NULL;
}

int image_alloc(image_u8 *im, int w, int h, const char *name) {
    im->w = im->h = 0;
    im->rgb = NULL;
    if (w <= 0 || h <= 0) return llava_fail("%s: zero-size image (%dx%d)", name, w, h);
    size_t n = (size_t)w * (size_t)h * 3;
    uint8_t *p = malloc(n);
    if (!p) return llava_fail("%s: out of memory for a %dx%d image", name, w, h);
    im->w = w;
    im->h = h;
    im->rgb = p;
    return 0;
}

void image_free(image_u8 *im) {
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->w = im->h = 0;
}

int image_decode_ex(const uint8_t *bytes, size_t len, const char *name, const image_limits *lim, image_u8 *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!name) name = "image";
    uint64_t max_pixels = lim && lim->max_pixels ? lim->max_pixels : IMAGE_MAX_PIXELS_DEFAULT;
    if (len == 0 || !bytes) return llava_fail("%s: empty file", name);
    switch (image_sniff(bytes, len)) {
    case IMAGE_FMT_JPEG: return image_decode_jpeg(bytes, len, name, max_pixels, out);
    case IMAGE_FMT_PNG: return image_decode_png(bytes, len, name, max_pixels, out);
    case IMAGE_FMT_GIF: return image_decode_gif(bytes, len, name, max_pixels, out);
    default: break;
    }
    const char *other = other_format(bytes, len);
    if (other)
        return llava_fail("%s: unsupported image format (%s content); JPEG, PNG and GIF are decoded", name, other);
    return llava_fail("%s: not an image this decoder knows (no JPEG, PNG or GIF signature)", name);
}

int image_decode(const uint8_t *bytes, size_t len, const char *name, image_u8 *out) {
    return image_decode_ex(bytes, len, name, NULL, out);
}

int image_load_file(const char *path, image_u8 *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    size_t len = 0;
    char *buf = read_file(path, IMAGE_MAX_FILE_BYTES, &len);
    if (!buf) return -1;
    int rc = image_decode((const uint8_t *)buf, len, path, out);
    free(buf);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// expand2square (llava/mm_utils.py)

int image_expand2square(const image_u8 *in, image_u8 *out) {
    int w = in->w, h = in->h;
    int side = w > h ? w : h;
    if (image_alloc(out, side, side, "expand2square") != 0) return -1;
    if (w == h) {
        memcpy(out->rgb, in->rgb, (size_t)w * (size_t)h * 3);
        return 0;
    }
    size_t npix = (size_t)side * (size_t)side;
    for (size_t i = 0; i < npix; i++) memcpy(out->rgb + i * 3, IMAGE_PAD_RGB, 3);
    int ox = w > h ? 0 : (h - w) / 2;
    int oy = w > h ? (w - h) / 2 : 0;
    for (int y = 0; y < h; y++)
        memcpy(out->rgb + ((size_t)(y + oy) * (size_t)side + (size_t)ox) * 3, in->rgb + (size_t)y * (size_t)w * 3,
               (size_t)w * 3);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Pillow's bicubic resampler (ImagingResample with IMAGING_TRANSFORM_BICUBIC on an 8-bit image)

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static inline uint8_t clip8(int v) {
    v >>= PRECISION_BITS;  // arithmetic shift (floor), as Pillow's lookup index
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

typedef struct {
    int ksize;
    int *bounds;  // [n][2]: first input index, number of taps
    int32_t *kk;  // [n][ksize] fixed-point coefficients
} coeffs;

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for outputs first..first+n-1 of an in_size ->
// out_size resize over the box [0, in_size). The box edges are C floats in Pillow.
static int precompute_coeffs(int in_size, int out_size, int first, int n, coeffs *c) {
    const float in0 = 0.0f, in1 = (float)in_size;
    double support, scale, filterscale;
    filterscale = scale = (double)(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    support = 2.0 * filterscale;  // BICUBIC support 2.0
    double ks = ceil(support) * 2 + 1;
    if (ks > 1e6) return llava_fail("resize: filter too wide (%d -> %d)", in_size, out_size);
    int ksize = (int)ks;
    c->ksize = ksize;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)n);
    c->kk = malloc(sizeof(int32_t) * (size_t)ksize * (size_t)n);
    double *k = malloc(sizeof(double) * (size_t)ksize);
    if (!c->bounds || !c->kk || !k) {
        free(c->bounds);
        free(c->kk);
        free(k);
        c->bounds = NULL;
        c->kk = NULL;
        return llava_fail("resize: out of memory for coefficients (%d -> %d)", in_size, out_size);
    }
    for (int i = 0; i < n; i++) {
        int xx = first + i;
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bicubic_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        int32_t *kq = c->kk + (size_t)i * (size_t)ksize;
        for (x = 0; x < ksize; x++) {
            if (k[x] < 0) kq[x] = (int32_t)(int)(-0.5 + k[x] * (1 << PRECISION_BITS));
            else kq[x] = (int32_t)(int)(0.5 + k[x] * (1 << PRECISION_BITS));
        }
        c->bounds[i * 2 + 0] = xmin;
        c->bounds[i * 2 + 1] = xmax;
    }
    free(k);
    return 0;
}

static void coeffs_free(coeffs *c) {
    free(c->bounds);
    free(c->kk);
    c->bounds = NULL;
    c->kk = NULL;
}

// The image the resampler reads: `img` pasted at (ox, oy) on a cw x ch canvas of colour `bg`
// (expand2square without building the square), or the image itself when ox = oy = 0 and the canvas
// is the image's size.
typedef struct {
    const image_u8 *img;
    int cw, ch, ox, oy;
    int bg[3];
} canvas;

static void canvas_row(const canvas *cv, int r, int x0, int n, uint8_t *dst) {
    const image_u8 *im = cv->img;
    for (int i = 0; i < n; i++) {
        int x = x0 + i;
        if (r >= cv->oy && r < cv->oy + im->h && x >= cv->ox && x < cv->ox + im->w)
            memcpy(dst + i * 3, im->rgb + ((size_t)(r - cv->oy) * (size_t)im->w + (size_t)(x - cv->ox)) * 3, 3);
        else
            for (int c = 0; c < 3; c++) dst[i * 3 + c] = (uint8_t)cv->bg[c];
    }
}

// Pillow's ImagingResampleInner on the canvas, computing only the crop [x0, x0+out->w) x
// [y0, y0+out->h) of the full_w x full_h result. Integer sums are exact, so splitting a row's sum
// into "background everywhere" plus "image minus background where the image is" gives Pillow's
// value; rows that are all background are computed once.
static int resize_canvas(const canvas *cv, int full_w, int full_h, int x0, int y0, image_u8 *out) {
    const int cw = out->w, ch = out->h;
    const image_u8 *im = cv->img;
    if (cv->cw <= 0 || cv->ch <= 0 || full_w <= 0 || full_h <= 0 || cw <= 0 || ch <= 0 || x0 < 0 || y0 < 0 ||
        x0 > full_w - cw || y0 > full_h - ch)
        return llava_fail("resize: bad geometry (%dx%d -> %dx%d, crop %dx%d at %d,%d)", cv->cw, cv->ch, full_w, full_h,
                          cw, ch, x0, y0);
    const int need_h = full_w != cv->cw, need_v = full_h != cv->ch;
    const int init = 1 << (PRECISION_BITS - 1);
    int rc = -1;

    coeffs kv = {0, NULL, NULL}, kh = {0, NULL, NULL};
    uint8_t *tmp = NULL, *bg_row = NULL;
    const uint8_t **rows = NULL;
    int32_t *ksum = NULL;

    // Rows of the canvas the vertical pass reads (the crop's rows when there is no vertical pass).
    int ybox_first = y0, ybox_last = y0 + ch;
    if (need_v) {
        if (precompute_coeffs(cv->ch, full_h, y0, ch, &kv) != 0) goto done;
        ybox_first = kv.bounds[0];
        ybox_last = kv.bounds[(ch - 1) * 2] + kv.bounds[(ch - 1) * 2 + 1];
        for (int i = 0; i < ch; i++) kv.bounds[i * 2] -= ybox_first;
    }
    const int nrows = ybox_last - ybox_first;
    const size_t row_bytes = (size_t)cw * 3;
    rows = malloc(sizeof(*rows) * (size_t)nrows);
    // Rows holding image pixels get their own buffer; all-background rows share one.
    int img_first = cv->oy > ybox_first ? cv->oy : ybox_first;
    int img_last = cv->oy + im->h < ybox_last ? cv->oy + im->h : ybox_last;
    int n_img = img_last > img_first ? img_last - img_first : 0;
    tmp = malloc(row_bytes * (size_t)(n_img > 0 ? n_img : 1));
    bg_row = malloc(row_bytes);
    if (!rows || !tmp || !bg_row) {
        llava_fail("resize: out of memory (%dx%d -> %dx%d)", cv->cw, cv->ch, full_w, full_h);
        goto done;
    }

    if (need_h) {
        if (precompute_coeffs(cv->cw, full_w, x0, cw, &kh) != 0) goto done;
        const int ksize = kh.ksize;
        ksum = malloc(sizeof(int32_t) * (size_t)cw);
        if (!ksum) {
            llava_fail("resize: out of memory");
            goto done;
        }
        for (int xx = 0; xx < cw; xx++) {
            int32_t s = 0;
            for (int x = 0; x < ksize; x++) s += kh.kk[(size_t)xx * (size_t)ksize + (size_t)x];
            ksum[xx] = s;
            for (int c = 0; c < 3; c++) bg_row[xx * 3 + c] = clip8(init + cv->bg[c] * s);
        }
        const int padded = cv->ox != 0 || im->w != cv->cw;
        for (int r = 0; r < n_img; r++) {
            const uint8_t *src = im->rgb + (size_t)(img_first + r - cv->oy) * (size_t)im->w * 3;
            uint8_t *dst = tmp + (size_t)r * row_bytes;
            for (int xx = 0; xx < cw; xx++) {
                const int xmin = kh.bounds[xx * 2], xmax = kh.bounds[xx * 2 + 1];
                const int32_t *k = kh.kk + (size_t)xx * (size_t)ksize;
                if (!padded) {
                    const uint8_t *s = src + (size_t)xmin * 3;
                    int ss0 = init, ss1 = init, ss2 = init;
                    for (int x = 0; x < xmax; x++) {
                        ss0 += s[x * 3 + 0] * k[x];
                        ss1 += s[x * 3 + 1] * k[x];
                        ss2 += s[x * 3 + 2] * k[x];
                    }
                    dst[xx * 3 + 0] = clip8(ss0);
                    dst[xx * 3 + 1] = clip8(ss1);
                    dst[xx * 3 + 2] = clip8(ss2);
                    continue;
                }
                int a = xmin > cv->ox ? xmin : cv->ox;
                int b = xmin + xmax < cv->ox + im->w ? xmin + xmax : cv->ox + im->w;
                if (a >= b) {
                    memcpy(dst + xx * 3, bg_row + xx * 3, 3);
                    continue;
                }
                int ss[3];
                for (int c = 0; c < 3; c++) ss[c] = init + cv->bg[c] * ksum[xx];
                for (int x = a; x < b; x++) {
                    const uint8_t *p = src + (size_t)(x - cv->ox) * 3;
                    const int32_t kx = k[x - xmin];
                    for (int c = 0; c < 3; c++) ss[c] += (p[c] - cv->bg[c]) * kx;
                }
                for (int c = 0; c < 3; c++) dst[xx * 3 + c] = clip8(ss[c]);
            }
        }
    } else {
        // No horizontal pass: the canvas's own pixels, from the crop's first column.
        for (int r = 0; r < n_img; r++) canvas_row(cv, img_first + r, x0, cw, tmp + (size_t)r * row_bytes);
        for (int xx = 0; xx < cw; xx++)
            for (int c = 0; c < 3; c++) bg_row[xx * 3 + c] = (uint8_t)cv->bg[c];
    }
    for (int r = 0; r < nrows; r++) {
        int y = ybox_first + r;
        rows[r] = y >= img_first && y < img_last ? tmp + (size_t)(y - img_first) * row_bytes : bg_row;
    }

    // Vertical pass (or the plain row copy when the height does not change).
    if (need_v) {
        const int ksize = kv.ksize;
        int *acc = malloc(sizeof(int) * row_bytes);
        if (!acc) {
            llava_fail("resize: out of memory");
            goto done;
        }
        for (int yy = 0; yy < ch; yy++) {
            const int ymin = kv.bounds[yy * 2], ymax = kv.bounds[yy * 2 + 1];
            const int32_t *k = kv.kk + (size_t)yy * (size_t)ksize;
            for (size_t i = 0; i < row_bytes; i++) acc[i] = init;
            for (int y = 0; y < ymax; y++) {
                const uint8_t *s = rows[ymin + y];
                const int32_t ky = k[y];
                for (size_t i = 0; i < row_bytes; i++) acc[i] += s[i] * ky;
            }
            uint8_t *dst = out->rgb + (size_t)yy * row_bytes;
            for (size_t i = 0; i < row_bytes; i++) dst[i] = clip8(acc[i]);
        }
        free(acc);
    } else {
        for (int yy = 0; yy < ch; yy++) memcpy(out->rgb + (size_t)yy * row_bytes, rows[yy], row_bytes);
    }
    rc = 0;
done:
    coeffs_free(&kv);
    coeffs_free(&kh);
    free(ksum);
    free(tmp);
    free(bg_row);
    free(rows);
    return rc;
}

int image_resize_bicubic_crop(const image_u8 *in, int full_w, int full_h, int x0, int y0, image_u8 *out) {
    if (!in || in->w <= 0 || in->h <= 0 || !in->rgb) return llava_fail("resize: zero-size image");
    canvas cv = {in, in->w, in->h, 0, 0, {0, 0, 0}};
    return resize_canvas(&cv, full_w, full_h, x0, y0, out);
}

// ---------------------------------------------------------------------------------------------
// CLIPImageProcessor

int image_shortest_edge_size(int w, int h, int size, int *out_w, int *out_h) {
    if (w <= 0 || h <= 0 || size <= 0) return llava_fail("image: zero-size image");
    int shrt = w <= h ? w : h, lng = w <= h ? h : w;
    // Python: int(size * long / short): exact integer product, correctly rounded true division, truncation.
    double q = (double)((int64_t)size * (int64_t)lng) / (double)shrt;
    if (q >= (double)INT_MAX)
        return llava_fail("image: a %dx%d image resized to short side %d has a long side over 2^31", w, h, size);
    int nl = (int)q;
    if (w <= h) {
        *out_w = size;
        *out_h = nl;
    } else {
        *out_w = nl;
        *out_h = size;
    }
    return 0;
}

void image_normalize(const uint8_t *u8, int w, int h, float *out_chw) {
    image_normalize_proc(u8, w, h, IMAGE_PROC_CLIP, out_chw);
}

void image_normalize_proc(const uint8_t *u8, int w, int h, image_processor proc, float *out_chw) {
    float mean[3], stdv[3];
    for (int c = 0; c < 3; c++) {
        mean[c] = proc == IMAGE_PROC_SIGLIP ? 0.5f : (float)IMAGE_CLIP_MEAN[c];  // np.array(mean, float32)
        stdv[c] = proc == IMAGE_PROC_SIGLIP ? 0.5f : (float)IMAGE_CLIP_STD[c];
    }
    const double scale = 1.0 / 255.0;  // rescale_factor 0.00392156862745098
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)((double)v * scale);  // astype(float64) * scale, then astype(float32)
            lut[c][v] = (x - mean[c]) / stdv[c];   // float32 subtract, then float32 divide
        }
    size_t plane = (size_t)w * (size_t)h;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) out_chw[(size_t)c * plane + i] = lut[c][u8[i * 3 + (size_t)c]];
}

int image_preprocess(const image_u8 *in, int size, image_aspect mode, uint8_t *out_u8, float *out_chw) {
    return image_preprocess_proc(in, size, mode, IMAGE_PROC_CLIP, out_u8, out_chw);
}

int image_preprocess_proc(const image_u8 *in, int size, image_aspect mode, image_processor proc, uint8_t *out_u8,
                          float *out_chw) {
    if (size <= 0 || size > 16384) return llava_fail("image: bad output size %d", size);
    if (!in || in->w <= 0 || in->h <= 0 || !in->rgb) return llava_fail("image: zero-size image");
    canvas cv = {in, in->w, in->h, 0, 0, {0, 0, 0}};
    if (mode == IMAGE_ASPECT_PAD && in->w != in->h) {
        // expand2square, read in place: the side x side square is never built.
        int side = in->w > in->h ? in->w : in->h;
        if ((uint64_t)side * (uint64_t)side > IMAGE_MAX_PIXELS_DEFAULT)
            return llava_fail("image: padding %dx%d to a %dx%d square exceeds the %llu-pixel limit", in->w, in->h, side,
                              side, (unsigned long long)IMAGE_MAX_PIXELS_DEFAULT);
        cv.cw = cv.ch = side;
        cv.ox = in->w > in->h ? 0 : (in->h - in->w) / 2;
        cv.oy = in->w > in->h ? (in->w - in->h) / 2 : 0;
        for (int c = 0; c < 3; c++) cv.bg[c] = proc == IMAGE_PROC_SIGLIP ? 127 : IMAGE_PAD_RGB[c];
    }
    image_u8 out = {size, size, out_u8};
    if (proc == IMAGE_PROC_SIGLIP) {  // both sides to S: the aspect is not kept, nothing is cropped
        if (resize_canvas(&cv, size, size, 0, 0, &out) != 0) return -1;
        if (out_chw) image_normalize_proc(out_u8, size, size, proc, out_chw);
        return 0;
    }
    int fw = 0, fh = 0;
    if (image_shortest_edge_size(cv.cw, cv.ch, size, &fw, &fh) != 0) return -1;
    // transformers' center_crop: top = (H - S) // 2, left = (W - S) // 2. The resized image is never
    // smaller than S x S here (its short side is S), so the padding branch of center_crop is not taken.
    int top = (fh - size) / 2, left = (fw - size) / 2;
    if (resize_canvas(&cv, fw, fh, left, top, &out) != 0) return -1;
    if (out_chw) image_normalize(out_u8, size, size, out_chw);
    return 0;
}
