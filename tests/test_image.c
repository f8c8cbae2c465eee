// Images: decoding and LLaVA-1.5 preprocessing against Pillow 11.0 + transformers 4.46.3 goldens
// (tools/reference/make_image_goldens.py, tests/data/images/README.md), edge geometry, and broken input.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "check.h"
#include "common/util.h"
#include "data/image.h"
#include "model/io/safetensors.h"

#define DIR "tests/data/images"
#define S 336
#define SMALL 32

static uint32_t crc_of(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const uint8_t *b = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

// Agreement with the goldens, over everything compared.
static struct {
    uint64_t values, same;
    int max_diff;
    double pv_max;
    int images;
} agg;

// Compares `got` with a golden u8 image; counts, and checks the bar per image: at least
// 99.9% of values identical, none more than 1 level apart.
static void compare_u8(const char *what, const uint8_t *got, const uint8_t *want, size_t n) {
    uint64_t same = 0;
    int maxd = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)want[i]);
        same += d == 0;
        if (d > maxd) maxd = d;
    }
    agg.values += n;
    agg.same += same;
    if (maxd > agg.max_diff) agg.max_diff = maxd;
    CHECK(same * 1000 >= (uint64_t)n * 999 && maxd <= 1, "%s: %.4f%% identical, max diff %d", what, 100.0 * same / n,
          maxd);
}

static char *xstrndup(const char *s, size_t n) {
    char *o = xmalloc(n + 1);
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}

#define NF 10
typedef struct {
    char *f[NF];
} row;

static int split_tabs(char *line, row *r) {
    int n = 0;
    char *p = line;
    while (n < NF) {
        char *t = strchr(p, '\t');
        r->f[n++] = t ? xstrndup(p, (size_t)(t - p)) : xstrdup(p);
        if (!t) break;
        p = t + 1;
    }
    for (int i = n; i < NF; i++) r->f[i] = xstrdup("-");
    return n;
}

static void free_row(row *r) {
    for (int i = 0; i < NF; i++) free(r->f[i]);
}

static uint32_t hexu(const char *s) { return (uint32_t)strtoul(s, NULL, 16); }

// The 4000x3000-class images the reference script builds with the same formula.
static void procedural(image_u8 *im, int w, int h) {
    CHECK(image_alloc(im, w, h, "procedural") == 0, "%s", llava_errmsg());
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                uint32_t v = (uint32_t)x * (uint32_t)(3 + c) + (uint32_t)y * (uint32_t)(5 + 2 * c) +
                             ((((uint32_t)x ^ (uint32_t)y) & 255u) * (uint32_t)(c + 1) >> 2);
                im->rgb[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] = (uint8_t)(v & 255);
            }
}

// pixel_values from pixels_u8 in double: (u8/255 - mean)/std. Ours is transformers' float32 sequence.
static void check_pixel_values(const char *what, const uint8_t *u8, const float *chw, int size) {
    double maxd = 0;
    size_t plane = (size_t)size * (size_t)size;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            double want = ((double)u8[i * 3 + (size_t)c] / 255.0 - IMAGE_CLIP_MEAN[c]) / IMAGE_CLIP_STD[c];
            double d = fabs(want - (double)chw[(size_t)c * plane + i]);
            if (d > maxd) maxd = d;
        }
    CHECK(maxd <= 1e-6, "%s: pixel_values differ from (u8/255 - mean)/std by %.3g", what, maxd);
}

static const char *MODES[2] = {"square", "pad"};

static void test_manifest(st_file *pv) {
    size_t len;
    char *text = read_file(DIR "/manifest.tsv", 1 << 20, &len);
    CHECK(text != NULL, "%s", llava_errmsg());
    if (!text) return;
    uint8_t *u8 = xmalloc((size_t)S * S * 3), *u8s = xmalloc((size_t)SMALL * SMALL * 3);
    float *chw = xmalloc(sizeof(float) * 3 * S * S);
    int n_ok = 0, n_err = 0, n_proc = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || !line[0]) continue;
        row r;
        split_tabs(line, &r);
        const char *name = r.f[0], *kind = r.f[1];
        char *path = xasprintf(DIR "/src/%s", name);
        image_u8 im = {0, 0, NULL};
        if (strcmp(kind, "error") == 0 || strcmp(kind, "unsupported") == 0) {
            // Pillow refuses these (or, "unsupported", reads a format we do not): one clear error.
            n_err++;
            int rc = image_load_file(path, &im);
            CHECK(rc != 0, "%s: decoded, but Pillow %s", name, strcmp(kind, "error") == 0 ? "refuses it" : "only");
            CHECK(strstr(llava_errmsg(), name) != NULL, "%s: error names the file: %s", name, llava_errmsg());
            CHECK(strcasestr(llava_errmsg(), r.f[8]) != NULL, "%s: error \"%s\" lacks \"%s\"", name, llava_errmsg(),
                  r.f[8]);
            CHECK(im.rgb == NULL && im.w == 0, "%s: output left empty", name);
            image_free(&im);
            free(path);
            free_row(&r);
            continue;
        }
        if (strcmp(kind, "procedural") == 0) {
            n_proc++;
            procedural(&im, atoi(r.f[2]), atoi(r.f[3]));
        } else {
            n_ok++;
            CHECK(image_load_file(path, &im) == 0, "%s: %s", name, llava_errmsg());
        }
        if (!im.rgb) {
            free(path);
            free_row(&r);
            continue;
        }
        CHECK(im.w == atoi(r.f[2]) && im.h == atoi(r.f[3]), "%s: %dx%d, Pillow %sx%s", name, im.w, im.h, r.f[2],
              r.f[3]);
        CHECK(crc_of(im.rgb, (size_t)im.w * im.h * 3) == hexu(r.f[4]), "%s: decoded pixels differ from Pillow's", name);
        agg.images++;
        for (int m = 0; m < 2; m++) {
            char what[300];
            snprintf(what, sizeof what, "%s %s S=%d", name, MODES[m], S);
            int rc = image_preprocess(&im, S, (image_aspect)m, u8, chw);
            CHECK(rc == 0, "%s: %s", what, llava_errmsg());
            if (rc != 0) continue;
            CHECK(crc_of(u8, (size_t)S * S * 3) == hexu(r.f[5 + m]), "%s: pixels_u8 differ from transformers'", what);
            if (strstr(r.f[7], "full336")) {
                char *g = xasprintf(DIR "/golden/%d/%s.%s.png", S, name, MODES[m]);
                image_u8 want;
                if (image_load_file(g, &want) == 0) {
                    compare_u8(what, u8, want.rgb, (size_t)S * S * 3);
                    image_free(&want);
                } else {
                    CHECK(0, "%s", llava_errmsg());
                }
                free(g);
                check_pixel_values(what, u8, chw, S);
            }
            if (pv && strstr(r.f[7], "pv")) {
                char key[300];
                snprintf(key, sizeof key, "%s.%s.index", name, MODES[m]);
                const st_tensor *ti = st_find(pv, key);
                snprintf(key, sizeof key, "%s.%s.value", name, MODES[m]);
                const st_tensor *tv = st_find(pv, key);
                CHECK(ti && tv && ti->numel == tv->numel, "%s: pixel_values samples present", what);
                if (ti && tv && ti->numel == tv->numel) {
                    float *want = xmalloc(sizeof(float) * tv->numel);
                    st_tensor_to_f32(pv, tv, want);
                    const int32_t *idx = (const int32_t *)ti->data;
                    double maxd = 0;
                    for (uint64_t i = 0; i < ti->numel; i++) {
                        int32_t k;
                        memcpy(&k, idx + i, 4);
                        double d = fabs((double)chw[k] - (double)want[i]);
                        if (d > maxd) maxd = d;
                    }
                    if (maxd > agg.pv_max) agg.pv_max = maxd;
                    CHECK(maxd <= 1e-6, "%s: pixel_values differ from CLIPImageProcessor's by %.3g", what, maxd);
                    free(want);
                }
            }
            if (strcmp(kind, "procedural") != 0) {
                snprintf(what, sizeof what, "%s %s S=%d", name, MODES[m], SMALL);
                CHECK(image_preprocess(&im, SMALL, (image_aspect)m, u8s, NULL) == 0, "%s: %s", what, llava_errmsg());
                char *g = xasprintf(DIR "/golden/%d/%s.%s.png", SMALL, name, MODES[m]);
                image_u8 want;
                if (image_load_file(g, &want) == 0) {
                    CHECK(want.w == SMALL && want.h == SMALL, "%s: golden size", what);
                    compare_u8(what, u8s, want.rgb, (size_t)SMALL * SMALL * 3);
                    image_free(&want);
                } else {
                    CHECK(0, "%s", llava_errmsg());
                }
                free(g);
            }
        }
        image_free(&im);
        free(path);
        free_row(&r);
    }
    CHECK(n_ok >= 100 && n_err >= 15 && n_proc == 2, "manifest: %d decodable, %d refused, %d procedural", n_ok, n_err,
          n_proc);
    printf("image goldens: %d images decoded as Pillow does; %d broken/unsupported files refused\n", agg.images, n_err);
    free(text);
    free(u8);
    free(u8s);
    free(chw);
}

// SigLIP's image processor (tools/reference/make_image_goldens.py --siglip, golden/siglip/): every decodable fixture
// (and the two procedural images) at S = 384 by CRC and at S = 32 against the PNGs, both modes; pixel_values at
// sampled positions equal to SiglipImageProcessor's; the rescale-and-normalise table bit for bit.
static void test_siglip(void) {
    enum { SL = 384 };
    size_t len;
    char *text = read_file(DIR "/golden/siglip/manifest.tsv", 1 << 20, &len);
    CHECK(text != NULL, "%s", llava_errmsg());
    if (!text) return;
    st_file pv;
    int have_pv = st_open(&pv, DIR "/golden/siglip/pixel_values.safetensors") == 0;
    CHECK(have_pv, "%s", llava_errmsg());
    uint8_t *u8 = xmalloc((size_t)SL * SL * 3), *u8s = xmalloc((size_t)SMALL * SMALL * 3);
    float *chw = xmalloc(sizeof(float) * 3 * SL * SL);
    int n = 0, n_png = 0, n_pv = 0;
    double pv_max = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || !line[0]) continue;
        row r;
        split_tabs(line, &r);
        const char *name = r.f[0];
        char *path = xasprintf(DIR "/src/%s", name);
        image_u8 im = {0, 0, NULL};
        int fixture = file_exists(path);
        if (fixture) CHECK(image_load_file(path, &im) == 0, "%s: %s", name, llava_errmsg());
        else procedural(&im, atoi(r.f[1]), atoi(r.f[2]));
        for (int m = 0; im.rgb && m < 2; m++) {
            char what[300];
            snprintf(what, sizeof what, "SigLIP %s %s S=%d", name, MODES[m], SL);
            int rc = image_preprocess_proc(&im, SL, (image_aspect)m, IMAGE_PROC_SIGLIP, u8, chw);
            CHECK(rc == 0, "%s: %s", what, llava_errmsg());
            if (rc != 0) continue;
            CHECK(crc_of(u8, (size_t)SL * SL * 3) == hexu(r.f[3 + m]), "%s: pixels_u8 differ from transformers'", what);
            if (have_pv && strstr(r.f[5], "pv")) {
                char key[300];
                snprintf(key, sizeof key, "%s.%s.index", name, MODES[m]);
                const st_tensor *ti = st_find(&pv, key);
                snprintf(key, sizeof key, "%s.%s.value", name, MODES[m]);
                const st_tensor *tv = st_find(&pv, key);
                CHECK(ti && tv && ti->numel == tv->numel, "%s: pixel_values samples present", what);
                if (ti && tv && ti->numel == tv->numel) {
                    float *want = xmalloc(sizeof(float) * tv->numel);
                    st_tensor_to_f32(&pv, tv, want);
                    for (uint64_t i = 0; i < ti->numel; i++) {
                        int32_t k;
                        memcpy(&k, (const int32_t *)ti->data + i, 4);
                        double d = fabs((double)chw[k] - (double)want[i]);
                        if (d > pv_max) pv_max = d;
                    }
                    free(want);
                    n_pv++;
                }
            }
            if (fixture) {
                snprintf(what, sizeof what, "SigLIP %s %s S=%d", name, MODES[m], SMALL);
                CHECK(image_preprocess_proc(&im, SMALL, (image_aspect)m, IMAGE_PROC_SIGLIP, u8s, NULL) == 0, "%s: %s",
                      what, llava_errmsg());
                char *g = xasprintf(DIR "/golden/siglip/%d/%s.%s.png", SMALL, name, MODES[m]);
                image_u8 want;
                if (image_load_file(g, &want) == 0) {
                    CHECK(want.w == SMALL && want.h == SMALL, "%s: golden size", what);
                    compare_u8(what, u8s, want.rgb, (size_t)SMALL * SMALL * 3);
                    image_free(&want);
                    n_png++;
                } else {
                    CHECK(0, "%s", llava_errmsg());
                }
                free(g);
            }
        }
        n += im.rgb != NULL;
        image_free(&im);
        free(path);
        free_row(&r);
    }
    // transformers' rescale then normalise, float64 then float32 steps: every byte value bit for bit.
    const st_tensor *lut = have_pv ? st_find(&pv, "rescale_normalize.lut") : NULL;
    CHECK(lut && lut->numel == 256, "rescale_normalize.lut present");
    if (lut && lut->numel == 256) {
        float want[256], got[3 * 256];
        uint8_t ramp[256 * 3];
        st_tensor_to_f32(&pv, lut, want);
        for (int v = 0; v < 256; v++) ramp[v * 3] = ramp[v * 3 + 1] = ramp[v * 3 + 2] = (uint8_t)v;
        image_normalize_proc(ramp, 256, 1, IMAGE_PROC_SIGLIP, got);
        int same = 0;
        for (int v = 0; v < 256; v++)
            same += memcmp(&got[v], &want[v], 4) == 0 && memcmp(&got[512 + v], &want[v], 4) == 0;
        CHECK(same == 256, "SigLIP's rescale-normalise: %d of 256 byte values bit for bit", same);
    }
    CHECK(n >= 105 && n_png >= 200 && n_pv >= 12, "SigLIP goldens: %d images, %d PNGs, %d pixel_values sets", n, n_png,
          n_pv);
    CHECK(pv_max == 0, "SigLIP pixel_values differ from SiglipImageProcessor's by %.3g", pv_max);
    printf(
        "SigLIP's image processor: %d images in both modes as transformers (S=384 by CRC, %d S=32 PNGs), "
        "pixel_values max diff %.3g over %d sampled sets\n",
        n, n_png, pv_max, n_pv);
    if (have_pv) st_close(&pv);
    free(text);
    free(u8);
    free(u8s);
    free(chw);
}

// Every prefix length class and some flipped bytes of every fixture: an image or an error, never a crash.
static void test_mangled(void) {
    size_t len;
    char *text = read_file(DIR "/manifest.tsv", 1 << 20, &len);
    if (!text) return;
    uint8_t *u8 = xmalloc(24 * 24 * 3);
    int tried = 0, decoded = 0;
    uint32_t seed = 12345;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || strncmp(line, "procedural", 10) == 0) continue;
        row r;
        split_tabs(line, &r);
        char *path = xasprintf(DIR "/src/%s", r.f[0]);
        size_t n;
        uint8_t *b = (uint8_t *)read_file(path, 64 << 20, &n);
        if (b) {
            size_t cuts[] = {0, 1, 2, 3, 5, 8, 13, 33, 64, 100, n / 4, n / 2, n - n / 8, n > 0 ? n - 1 : 0};
            for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
                if (cuts[i] > n) continue;
                uint8_t *c = xmalloc(cuts[i] + 1);  // exactly cuts[i] readable bytes (+1: malloc(0))
                memcpy(c, b, cuts[i]);
                image_u8 im;
                tried++;
                if (image_decode(c, cuts[i], "mangled", &im) == 0) {
                    decoded++;
                    CHECK(im.w > 0 && im.h > 0 && im.rgb, "%s cut at %zu: empty image", r.f[0], cuts[i]);
                    CHECK(image_preprocess(&im, 24, IMAGE_ASPECT_PAD, u8, NULL) == 0 || im.w != im.h, "%s cut: %s",
                          r.f[0], llava_errmsg());
                    image_free(&im);
                } else {
                    CHECK(strstr(llava_errmsg(), "mangled") != NULL, "error names the input: %s", llava_errmsg());
                }
                free(c);
            }
            for (int k = 0; k < 6 && n > 0; k++) {
                uint8_t *c = xmalloc(n);
                memcpy(c, b, n);
                for (int j = 0; j < 1 + k; j++) {
                    seed = seed * 1103515245u + 12345u;
                    c[(seed >> 8) % n] ^= (uint8_t)(1u << ((seed >> 3) & 7));
                }
                image_u8 im;
                tried++;
                if (image_decode(c, n, "flipped", &im) == 0) {
                    decoded++;
                    image_free(&im);
                }
                free(c);
            }
            free(b);
        }
        free(path);
        free_row(&r);
    }
    printf("mangled inputs: %d tried, %d still decoded, the rest refused, none crashed\n", tried, decoded);
    free(text);
    free(u8);
}

// Hand-made headers: bombs, zero sizes, limits.
static void test_headers(void) {
    image_u8 im;
    CHECK(image_decode(NULL, 0, "nothing", &im) != 0, "empty input");
    CHECK_ERR_HAS("empty");
    CHECK(image_decode((const uint8_t *)"\xff\xd8", 2, "two.jpg", &im) != 0, "two bytes");
    CHECK_ERR_HAS("two.jpg");

    // GIF: a 65535x65535 logical screen (4.3G pixels) in 30 bytes.
    const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 0xff, 0xff, 0xff, 0xff, 0,    0,    0, ',', 0,
                           0,   0,   0,   1,   0,   1,   0,    0,    2,    2,    0x44, 0x01, 0, ';'};
    CHECK(image_decode(gif, sizeof gif, "bomb.gif", &im) != 0, "GIF bomb");
    CHECK_ERR_HAS("limit");
    // The same with a screen of 0x0 and a 1x1 frame: the canvas grows to the frame, like Pillow.
    uint8_t g2[sizeof gif];
    memcpy(g2, gif, sizeof gif);
    memset(g2 + 6, 0, 4);
    CHECK(image_decode(g2, sizeof g2, "tiny.gif", &im) == 0, "%s", llava_errmsg());
    CHECK(im.w == 1 && im.h == 1, "canvas grown to 1x1, got %dx%d", im.w, im.h);
    image_free(&im);

    // A caller's own pixel limit.
    size_t n;
    uint8_t *png = (uint8_t *)read_file(DIR "/src/pil_hopper.png", 1 << 20, &n);
    image_limits lim = {128 * 128 - 1};
    CHECK(png && image_decode_ex(png, n, "hopper.png", &lim, &im) != 0, "128x128 over a 16383-pixel limit");
    CHECK_ERR_HAS("limit");
    lim.max_pixels = 128 * 128;
    CHECK(png && image_decode_ex(png, n, "hopper.png", &lim, &im) == 0, "%s", llava_errmsg());
    image_free(&im);
    free(png);

    // JPEG: a frame header claiming 65000x65000, and one with height 0.
    uint8_t *jpg = (uint8_t *)read_file(DIR "/src/pil_hopper.jpg", 1 << 20, &n);
    CHECK(jpg != NULL, "hopper.jpg");
    if (jpg) {
        size_t sof = 2;
        while (sof + 4 < n && !(jpg[sof] == 0xFF && jpg[sof + 1] >= 0xC0 && jpg[sof + 1] <= 0xC2))
            sof += 2 + (size_t)((jpg[sof + 2] << 8) | jpg[sof + 3]);
        CHECK(sof + 9 < n, "found the SOF marker");
        uint8_t *c = xmalloc(n);
        memcpy(c, jpg, n);
        c[sof + 5] = c[sof + 7] = 0xFD;  // height, width = 0xFDxx
        CHECK(image_decode(c, n, "bomb.jpg", &im) != 0, "JPEG bomb");
        CHECK_ERR_HAS("limit");
        memcpy(c, jpg, n);
        c[sof + 5] = c[sof + 6] = 0;  // height 0
        CHECK(image_decode(c, n, "zero.jpg", &im) != 0, "zero-height JPEG");
        CHECK_ERR_HAS("zero.jpg");
        free(c);
        free(jpg);
    }
}

static void test_geometry(void) {
    int w, h;
    image_shortest_edge_size(640, 480, 336, &w, &h);
    CHECK(w == 448 && h == 336, "640x480 -> %dx%d", w, h);
    image_shortest_edge_size(480, 640, 336, &w, &h);
    CHECK(w == 336 && h == 448, "480x640 -> %dx%d", w, h);
    image_shortest_edge_size(1, 1000, 336, &w, &h);
    CHECK(w == 336 && h == 336000, "1x1000 -> %dx%d", w, h);
    image_shortest_edge_size(1001, 3, 336, &w, &h);  // 336 * 1001 / 3 = 112112 exactly
    CHECK(w == 112112 && h == 336, "1001x3 -> %dx%d", w, h);
    image_shortest_edge_size(501, 499, 336, &w, &h);  // 337.3467 -> 337
    CHECK(w == 337 && h == 336, "501x499 -> %dx%d", w, h);
    CHECK(image_shortest_edge_size(1, 100000000, 336, &w, &h) != 0, "a long side past 2^31 is refused");

    // expand2square puts the image at ((w-h)//2) rows down or ((h-w)//2) columns across.
    uint8_t px[5 * 2 * 3];
    for (int i = 0; i < 30; i++) px[i] = (uint8_t)(200 + i % 50);
    image_u8 in = {5, 2, px}, sq;
    CHECK(image_expand2square(&in, &sq) == 0 && sq.w == 5 && sq.h == 5, "5x2 -> 5x5");
    CHECK(sq.rgb[0] == 122 && sq.rgb[1] == 116 && sq.rgb[2] == 104, "pad colour (122,116,104)");
    CHECK(memcmp(sq.rgb + 5 * 3, px, 30) == 0, "rows 1-2 hold the image");
    CHECK(sq.rgb[3 * 5 * 3] == 122 && sq.rgb[4 * 5 * 3 + 2] == 104, "rows 3-4 padded");
    image_free(&sq);
    image_u8 tall = {2, 5, px};
    CHECK(image_expand2square(&tall, &sq) == 0 && sq.w == 5, "2x5 -> 5x5");
    CHECK(memcmp(sq.rgb + 1 * 3, px, 6) == 0 && sq.rgb[0] == 122 && sq.rgb[3 * 3] == 122, "columns 1-2 hold the image");
    image_free(&sq);

    // A resize to the same size is a copy; the crop of it a plain crop.
    image_u8 out = {3, 1, xmalloc(9)};
    CHECK(image_resize_bicubic_crop(&in, 5, 2, 1, 1, &out) == 0, "%s", llava_errmsg());
    CHECK(memcmp(out.rgb, px + 5 * 3 + 3, 9) == 0, "identity resize copies");
    CHECK(image_resize_bicubic_crop(&in, 5, 2, 3, 1, &out) != 0, "crop outside the image is refused");
    image_free(&out);

    // Pad mode reads the square in place; it must equal expand2square + square mode.
    image_u8 big;
    procedural(&big, 301, 97);
    uint8_t *a = xmalloc(S * S * 3), *b = xmalloc(S * S * 3);
    image_u8 sq2;
    CHECK(image_expand2square(&big, &sq2) == 0, "expand");
    CHECK(image_preprocess(&big, S, IMAGE_ASPECT_PAD, a, NULL) == 0, "%s", llava_errmsg());
    CHECK(image_preprocess(&sq2, S, IMAGE_ASPECT_SQUARE, b, NULL) == 0, "%s", llava_errmsg());
    CHECK(memcmp(a, b, S * S * 3) == 0, "pad mode == expand2square + resize (wide)");
    image_free(&sq2);
    image_free(&big);
    procedural(&big, 13, 400);
    CHECK(image_expand2square(&big, &sq2) == 0, "expand");
    CHECK(image_preprocess(&big, S, IMAGE_ASPECT_PAD, a, NULL) == 0, "%s", llava_errmsg());
    CHECK(image_preprocess(&sq2, S, IMAGE_ASPECT_SQUARE, b, NULL) == 0, "%s", llava_errmsg());
    CHECK(memcmp(a, b, S * S * 3) == 0, "pad mode == expand2square + resize (tall)");
    image_free(&sq2);
    image_free(&big);
    // Extreme aspect ratios: only the crop is computed, so these are cheap.
    procedural(&big, 1, 12000);
    CHECK(image_preprocess(&big, S, IMAGE_ASPECT_SQUARE, a, NULL) == 0, "%s", llava_errmsg());
    CHECK(image_preprocess(&big, S, IMAGE_ASPECT_PAD, a, NULL) == 0, "%s", llava_errmsg());
    image_free(&big);
    procedural(&big, 20000, 1);
    CHECK(image_preprocess(&big, S, IMAGE_ASPECT_PAD, a, NULL) != 0, "a 20000x20000 pad canvas is over the limit");
    CHECK_ERR_HAS("limit");
    image_free(&big);
    free(a);
    free(b);

    // Normalisation of every byte value against the double formula.
    uint8_t v[256 * 3];
    float f[3 * 256];
    for (int i = 0; i < 256 * 3; i++) v[i] = (uint8_t)(i / 3);
    image_normalize(v, 256, 1, f);
    double maxd = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 256; i++) {
            double want = (i / 255.0 - IMAGE_CLIP_MEAN[c]) / IMAGE_CLIP_STD[c];
            maxd = fmax(maxd, fabs(want - f[c * 256 + i]));
        }
    CHECK(maxd <= 1e-6, "normalisation off by %.3g", maxd);
    // The pad colour lands slightly below zero after normalisation (int() truncated the mean).
    CHECK(f[0 * 256 + 122] < 0 && f[0 * 256 + 122] > -0.02, "pad red %.6f", f[122]);
}

// `llava image` end to end (ctest sets LLAVA_BIN to the built executable).
static void test_cli(void) {
    const char *bin = getenv("LLAVA_BIN");
    CHECK(bin != NULL, "LLAVA_BIN is not set (run through ctest)");
    if (!bin) return;
    char *cmd = xasprintf("'%s' image --help 2>&1", bin);
    FILE *p = popen(cmd, "r");
    free(cmd);
    char buf[4096];
    size_t got = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    if (p) pclose(p);
    buf[got] = 0;
    CHECK(strstr(buf, "pixels_u8") != NULL, "`llava image --help` describes its output: %s", buf);
    char *tmp = check_tmpdir();
    char *out = path_join(tmp, "rocket.safetensors");
    cmd = xasprintf("'%s' image --aspect pad " DIR "/src/sk_rocket.jpg --out '%s' >/dev/null", bin, out);
    CHECK(system(cmd) == 0, "%s", cmd);
    free(cmd);
    st_file f;
    if (st_open(&f, out) == 0) {
        const st_tensor *u = st_find(&f, "pixels_u8"), *v = st_find(&f, "pixel_values");
        CHECK(u && u->dtype == DT_U8 && u->ndim == 3 && u->shape[0] == S && u->shape[2] == 3, "pixels_u8 U8 [S,S,3]");
        CHECK(v && v->dtype == DT_F32 && v->ndim == 3 && v->shape[0] == 3 && v->shape[1] == S, "pixel_values F32");
        if (u) CHECK(crc_of(u->data, u->numel) == 0xb1196397u, "pad pixels_u8 of sk_rocket.jpg as in the manifest");
        st_close(&f);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    cmd = xasprintf("'%s' image " DIR "/src/bad_truncated_half.jpg --out '%s' 2>/dev/null", bin, out);
    CHECK(system(cmd) != 0, "a broken file is an error");
    free(cmd);
    free(out);
    check_rm_rf(tmp);
    free(tmp);
}

int main(void) {
    clock_t t0 = clock();
    st_file pv;
    int have_pv = st_open(&pv, DIR "/golden/pixel_values.safetensors") == 0;
    CHECK(have_pv, "%s", llava_errmsg());
    test_manifest(have_pv ? &pv : NULL);
    if (have_pv) st_close(&pv);
    test_siglip();
    test_mangled();
    test_headers();
    test_geometry();
    test_cli();
    printf(
        "agreement with Pillow/transformers: %llu pixels_u8 values, %.5f%% identical, max diff %d; "
        "pixel_values max diff %.3g (%.1f s)\n",
        (unsigned long long)agg.values, agg.values ? 100.0 * agg.same / agg.values : 0, agg.max_diff, agg.pv_max,
        (double)(clock() - t0) / CLOCKS_PER_SEC);
    return check_done();
}
