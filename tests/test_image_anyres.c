// AnyRes (data/image_anyres.c) against transformers 4.46.3 LlavaNextImageProcessor and LLaVA-NeXT's
// process_anyres_image (tools/reference/make_anyres_goldens.py, tests/data/images/anyres/): the plan and every
// tile's uint8 pixels and float32 pixel_values bit for bit, and the shape helpers (select_best_resolution,
// grid shape, number of patches, unpad, anyres_max) exactly on every recorded case.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "common/util.h"
#include "data/image.h"
#include "model/io/safetensors.h"

#define DIR "tests/data/images/anyres"

static uint32_t crc_of(const void *p, size_t n) { return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n); }

static cJSON *load_json(const char *path) {
    size_t len = 0;
    char *text = read_file(path, 64u << 20, &len);
    CHECK(text != NULL, "%s", llava_errmsg());
    if (!text) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    CHECK(j != NULL, "%s: not JSON", path);
    return j;
}

static int ival(const cJSON *a, int i) { return cJSON_GetArrayItem(a, i)->valueint; }

static int pinpoints_from(const cJSON *arr, image_pinpoints *pp) {
    memset(pp, 0, sizeof *pp);  // no anyres_max cap (max_num_patches 0) unless a case sets one
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (pp->n >= IMAGE_ANYRES_MAX_PINPOINTS) return -1;
        pp->res[pp->n][0] = ival(e, 0);
        pp->res[pp->n][1] = ival(e, 1);
        pp->n++;
    }
    return 0;
}

static int pair_is(const cJSON *arr, int a, int b) { return ival(arr, 0) == a && ival(arr, 1) == b; }

// ---------------------------------------------------------------------------------------------

static void test_pixels(void) {
    cJSON *doc = load_json(DIR "/golden.json");
    if (!doc) return;
    st_file st;
    int have_st = st_open(&st, DIR "/s28.safetensors") == 0;
    CHECK(have_st, "%s", llava_errmsg());
    const cJSON *cfgs = cJSON_GetObjectItem(doc, "configs"), *cases = cJSON_GetObjectItem(doc, "cases");
    int n_cases = 0, n_tiles = 0, n_full = 0, n_diff_flavour = 0;
    const cJSON *cs;
    char prev_crc[4096] = "";
    cJSON_ArrayForEach(cs, cases) {
        const char *cfg_name = cJSON_GetObjectItem(cs, "config")->valuestring;
        const char *flavor = cJSON_GetObjectItem(cs, "flavor")->valuestring;
        const char *name = cJSON_GetObjectItem(cs, "image")->valuestring;
        image_anyres_config cfg;
        memset(&cfg, 0, sizeof cfg);
        const cJSON *c;
        cJSON_ArrayForEach(c, cfgs) {
            if (strcmp(cJSON_GetObjectItem(c, "name")->valuestring, cfg_name) != 0) continue;
            cfg.size = cJSON_GetObjectItem(c, "size")->valueint;
            pinpoints_from(cJSON_GetObjectItem(c, "pinpoints"), &cfg.pinpoints);
        }
        cfg.flavor = strcmp(flavor, "hf") == 0 ? IMAGE_ANYRES_HF : IMAGE_ANYRES_LLAVA_NEXT;
        char what[256], path[512];
        snprintf(what, sizeof what, "%s/%s/%s", cfg_name, flavor, name);
        snprintf(path, sizeof path, DIR "/src/%s.png", name);
        image_u8 im;
        if (image_load_file(path, &im) != 0) {
            CHECK(0, "%s: %s", what, llava_errmsg());
            continue;
        }
        CHECK(im.h == cJSON_GetObjectItem(cs, "h")->valueint && im.w == cJSON_GetObjectItem(cs, "w")->valueint,
              "%s: decoded size", what);
        const int S = cfg.size, want_tiles = cJSON_GetObjectItem(cs, "tiles")->valueint;
        int max_tiles = image_anyres_max_tiles(&cfg);
        CHECK(max_tiles >= want_tiles, "%s: max tiles %d < %d", what, max_tiles, want_tiles);
        const size_t tile_px = (size_t)S * S;
        uint8_t *u8 = xmalloc(tile_px * 3 * (size_t)max_tiles);
        float *chw = xmalloc(sizeof(float) * tile_px * 3 * (size_t)max_tiles);
        image_anyres_plan plan;
        int rc = image_anyres_preprocess(&im, &cfg, &plan, u8, chw);
        CHECK(rc == 0, "%s: %s", what, llava_errmsg());
        if (rc == 0) {
            n_cases++;
            const cJSON *best = cJSON_GetObjectItem(cs, "best"), *rs = cJSON_GetObjectItem(cs, "resized"),
                        *pd = cJSON_GetObjectItem(cs, "padded"), *off = cJSON_GetObjectItem(cs, "offset");
            CHECK(pair_is(best, plan.best_h, plan.best_w), "%s: best %dx%d (h x w), reference %dx%d", what, plan.best_h,
                  plan.best_w, ival(best, 0), ival(best, 1));
            CHECK(pair_is(rs, plan.resized_h, plan.resized_w), "%s: resized %dx%d, reference %dx%d", what,
                  plan.resized_h, plan.resized_w, ival(rs, 0), ival(rs, 1));
            CHECK(pair_is(pd, plan.padded_h, plan.padded_w), "%s: padded %dx%d, reference %dx%d", what, plan.padded_h,
                  plan.padded_w, ival(pd, 0), ival(pd, 1));
            CHECK(pair_is(off, plan.top, plan.left), "%s: offset", what);
            CHECK(plan.n_tiles == want_tiles, "%s: %d tiles, reference %d", what, plan.n_tiles, want_tiles);
            // The plan alone (what a loader sizes buffers by) says the same.
            image_anyres_plan p2;
            CHECK(image_anyres_plan_for(im.h, im.w, &cfg, &p2) == 0 && memcmp(&p2, &plan, sizeof plan) == 0,
                  "%s: plan_for", what);
            const cJSON *uc = cJSON_GetObjectItem(cs, "u8_crc"), *pc = cJSON_GetObjectItem(cs, "pv_crc");
            for (int t = 0; t < plan.n_tiles && t < want_tiles; t++) {
                uint32_t wu = (uint32_t)strtoul(cJSON_GetArrayItem(uc, t)->valuestring, NULL, 16);
                uint32_t wp = (uint32_t)strtoul(cJSON_GetArrayItem(pc, t)->valuestring, NULL, 16);
                CHECK(crc_of(u8 + (size_t)t * tile_px * 3, tile_px * 3) == wu, "%s: tile %d uint8 pixels differ", what,
                      t);
                CHECK(crc_of(chw + (size_t)t * tile_px * 3, sizeof(float) * tile_px * 3) == wp,
                      "%s: tile %d pixel_values differ", what, t);
                n_tiles++;
            }
            // The same image without the float output, and without the uint8 one.
            uint8_t *u8b = xmalloc(tile_px * 3 * (size_t)max_tiles);
            float *chwb = xmalloc(sizeof(float) * tile_px * 3 * (size_t)max_tiles);
            CHECK(image_anyres_preprocess(&im, &cfg, NULL, u8b, NULL) == 0 &&
                      memcmp(u8b, u8, tile_px * 3 * (size_t)plan.n_tiles) == 0,
                  "%s: u8 only", what);
            CHECK(image_anyres_preprocess(&im, &cfg, NULL, NULL, chwb) == 0 &&
                      memcmp(chwb, chw, sizeof(float) * tile_px * 3 * (size_t)plan.n_tiles) == 0,
                  "%s: pixel_values only", what);
            free(u8b);
            free(chwb);
            if (have_st && cfg.flavor == IMAGE_ANYRES_HF) {
                char key[256];
                snprintf(key, sizeof key, "%s.%s.u8", cfg_name, name);
                const st_tensor *tu = st_find(&st, key);
                if (tu) {
                    CHECK(tu->numel == tile_px * 3 * (size_t)plan.n_tiles && memcmp(tu->data, u8, tu->numel) == 0,
                          "%s: uint8 tiles differ from %s", what, key);
                    n_full++;
                }
                snprintf(key, sizeof key, "%s.%s.pixel_values", cfg_name, name);
                const st_tensor *tp = st_find(&st, key);
                if (tp) {
                    CHECK(tp->numel == tile_px * 3 * (size_t)plan.n_tiles &&
                              memcmp(tp->data, chw, sizeof(float) * tp->numel) == 0,
                          "%s: pixel_values differ from %s", what, key);
                    n_full++;
                }
            }
        }
        // hf and llava-next cases of one image come in pairs: count where the references differ.
        char *crcs = cJSON_PrintUnformatted(cJSON_GetObjectItem(cs, "pv_crc"));
        if (cfg.flavor == IMAGE_ANYRES_LLAVA_NEXT && strcmp(crcs, prev_crc) != 0) n_diff_flavour++;
        snprintf(prev_crc, sizeof prev_crc, "%s", crcs);
        free(crcs);
        free(u8);
        free(chw);
        image_free(&im);
    }
    CHECK(n_cases == 66 && n_tiles == 293 && n_full == 6, "%d cases, %d tiles, %d full tensors", n_cases, n_tiles,
          n_full);
    printf(
        "anyres pixels: %d cases (%d tiles) bit for bit, uint8 and pixel_values; %d of %d images differ between "
        "the hf and llava-next references\n",
        n_cases, n_tiles, n_diff_flavour, n_cases / 2);
    if (have_st) st_close(&st);
    cJSON_Delete(doc);
}

static void test_shapes(void) {
    cJSON *doc = load_json(DIR "/shapes.json");
    if (!doc) return;
    const cJSON *sets = cJSON_GetObjectItem(doc, "pinpoint_sets");
    // The range form, expanded as LLaVA-NeXT expands it.
    const cJSON *rf = cJSON_GetObjectItem(doc, "range_form");
    image_pinpoints want, got;
    pinpoints_from(cJSON_GetObjectItem(rf, "pinpoints"), &want);
    CHECK(image_parse_pinpoints(cJSON_GetObjectItem(rf, "text")->valuestring,
                                cJSON_GetObjectItem(rf, "patch")->valueint, &got) == 0,
          "%s", llava_errmsg());
    CHECK(got.n == want.n && memcmp(got.res, want.res, sizeof(int) * 2 * (size_t)want.n) == 0,
          "range form: %d pinpoints, reference %d", got.n, want.n);

    int n_sel = 0, n_grid = 0, n_unpad = 0, n_max = 0, n_order = 0, n_split = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(doc, "select")) {
        image_pinpoints pp;
        pinpoints_from(cJSON_GetObjectItem(sets, cJSON_GetArrayItem(r, 0)->valuestring), &pp);
        int oh = ival(r, 1), ow = ival(r, 2);
        const cJSON *hf = cJSON_GetArrayItem(r, 3), *nx = cJSON_GetArrayItem(r, 4);
        int i = image_select_best_resolution(oh, ow, &pp), j = image_select_best_resolution(ow, oh, &pp);
        CHECK(i >= 0 && pair_is(hf, pp.res[i][0], pp.res[i][1]), "select %s %dx%d (h x w): transformers",
              cJSON_GetArrayItem(r, 0)->valuestring, oh, ow);
        CHECK(j >= 0 && pair_is(nx, pp.res[j][0], pp.res[j][1]), "select %s %dx%d (h x w): LLaVA-NeXT",
              cJSON_GetArrayItem(r, 0)->valuestring, oh, ow);
        int bh, bw;
        CHECK(image_anyres_best_resolution(oh, ow, &pp, IMAGE_ANYRES_HF, &bh, &bw) == 0 && pair_is(hf, bh, bw),
              "best hf");
        CHECK(image_anyres_best_resolution(oh, ow, &pp, IMAGE_ANYRES_LLAVA_NEXT, &bh, &bw) == 0 && pair_is(nx, bw, bh),
              "best llava-next");
        n_order += i >= 0 && j >= 0 && (pp.res[i][0] != pp.res[j][1] || pp.res[i][1] != pp.res[j][0]);
        n_sel++;
    }
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(doc, "grid")) {
        const char *set = cJSON_GetArrayItem(r, 0)->valuestring;
        image_pinpoints pp;
        pinpoints_from(cJSON_GetObjectItem(sets, set), &pp);
        int p = ival(r, 1), oh = ival(r, 2), ow = ival(r, 3), rows = -1, cols = -1;
        CHECK(image_anyres_grid_shape(oh, ow, &pp, IMAGE_ANYRES_HF, p, &rows, &cols) == 0 &&
                  pair_is(cJSON_GetArrayItem(r, 4), rows, cols),
              "grid %s %dx%d: transformers (%d, %d)", set, oh, ow, rows, cols);
        CHECK(image_anyres_grid_shape(oh, ow, &pp, IMAGE_ANYRES_LLAVA_NEXT, p, &rows, &cols) == 0 &&
                  pair_is(cJSON_GetArrayItem(r, 5), rows, cols),
              "grid %s %dx%d: LLaVA-NeXT (%d, %d)", set, oh, ow, rows, cols);
        int np = image_anyres_num_patches(oh, ow, &pp, IMAGE_ANYRES_HF, p);
        CHECK(np == ival(r, 6), "num patches %s %dx%d: %d, reference %d", set, oh, ow, np, ival(r, 6));
        n_grid++;
    }
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(doc, "unpad")) {
        int oh = ival(r, 0), ow = ival(r, 1), ch = ival(r, 2), cw = ival(r, 3), top, left, nh, nw;
        CHECK(image_unpad_shape(oh, ow, ch, cw, &top, &left, &nh, &nw) == 0, "%s", llava_errmsg());
        CHECK(pair_is(cJSON_GetArrayItem(r, 4), nh, nw) && pair_is(cJSON_GetArrayItem(r, 5), nh, nw),
              "unpad %dx%d image on a %dx%d grid: %dx%d", oh, ow, ch, cw, nh, nw);
        int ih, iw;
        CHECK(image_unpad_shape_int(oh, ow, ch, cw, &ih, &iw) == 0 && pair_is(cJSON_GetArrayItem(r, 6), ih * iw, ih),
              "LlavaNextProcessor's unpad of %dx%d on %dx%d: %dx%d", oh, ow, ch, cw, ih, iw);
        n_split += ih != nh || iw != nw;
        // Python cuts `pad` from both ends: the kept block is centred.
        CHECK(top * 2 + nh == ch || nh == 0 || top == 0, "unpad rows symmetric");
        CHECK(left * 2 + nw == cw || nw == 0 || left == 0, "unpad cols symmetric");
        n_unpad++;
    }
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(doc, "anyres_max")) {
        int h = ival(r, 0), w = ival(r, 1), unit = ival(r, 2), N = ival(r, 3), oh = -1, ow = -1;
        int rc = image_anyres_max_shape(h, w, unit, N, &oh, &ow);
        CHECK(rc >= 0 && pair_is(cJSON_GetArrayItem(r, 4), oh, ow), "anyres_max_%d %dx%d (unit %d): %dx%d", N, h, w,
              unit, oh, ow);
        CHECK(rc == (oh != h || ow != w) || (rc == 1 && oh == h && ow == w), "anyres_max: resized flag");
        n_max++;
    }
    int n_feat = 0, n_feat_split = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(doc, "features")) {
        const char *set = cJSON_GetArrayItem(r, 0)->valuestring;
        image_pinpoints pp;
        pinpoints_from(cJSON_GetObjectItem(sets, set), &pp);
        int tile = ival(r, 1), grid = ival(r, 2), oh = ival(r, 3), ow = ival(r, 4);
        int model = image_anyres_num_features(oh, ow, &pp, IMAGE_ANYRES_HF, tile, grid, 0);
        int proc = image_anyres_num_features(oh, ow, &pp, IMAGE_ANYRES_HF, tile, grid, 1);
        CHECK(model == ival(r, 5), "features %s %dx%d: %d, pack_image_features %d", set, oh, ow, model, ival(r, 5));
        CHECK(proc == ival(r, 6), "tokens %s %dx%d: %d, LlavaNextProcessor %d", set, oh, ow, proc, ival(r, 6));
        n_feat_split += model != proc;
        n_feat++;
    }
    CHECK(n_sel == 500 && n_grid == 500 && n_unpad == 300 && n_max >= 200 && n_order > 0 && n_split == 40 &&
              n_feat == 270 && n_feat_split == 30,
          "%d select, %d grid, %d unpad (%d split), %d anyres_max, %d order-dependent, %d features", n_sel, n_grid,
          n_unpad, n_split, n_max, n_order, n_feat);
    printf(
        "anyres shapes: %d select_best_resolution (%d where the two references' pinpoint order matters), %d grid "
        "shapes and patch counts, %d unpad (%d where LlavaNextProcessor's integer count differs), %d anyres_max, "
        "%d feature counts (%d where the processor's token count differs) exact\n",
        n_sel, n_order, n_grid, n_unpad, n_split, n_max, n_feat, n_feat_split);
    cJSON_Delete(doc);
}

static void test_parse_and_errors(void) {
    image_pinpoints pp;
    CHECK(image_parse_pinpoints(" [[336, 672], [672,336] ,[672,672]] ", 0, &pp) == 0 && pp.n == 3 &&
              pp.res[0][0] == 336 && pp.res[0][1] == 672 && pp.res[2][1] == 672,
          "JSON list: %s", llava_errmsg());
    const char *bad[] = {"",          "[]",           "[[336]]",     "[[336,672,1]]",
                         "[[0,336]]", "[[336,-1]]",   "[[336,672]",  "[[336,672]] x",
                         "336,672",   "[[336,672],]", "[[99999,1]]", "(ax1)"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(image_parse_pinpoints(bad[i], 336, &pp) != 0 && pp.n == 0, "refused: \"%s\"", bad[i]);
    CHECK(image_parse_pinpoints("(1x1),...,(2x3)", 336, &pp) == 0 && pp.n == 6 && pp.res[1][0] == 336 &&
              pp.res[1][1] == 672 && pp.res[5][0] == 672 && pp.res[5][1] == 1008,
          "range form");
    CHECK(image_parse_pinpoints("(2x2),(1x1)", 336, &pp) != 0, "empty range refused");
    CHECK(image_parse_pinpoints("(1x1),...,(2x2)", 0, &pp) != 0, "range form needs a patch size");

    CHECK(image_parse_pinpoints("[[336,672],[672,336],[672,672],[1008,336],[336,1008]]", 0, &pp) == 0, "v1.6");
    CHECK(image_select_best_resolution(0, 10, &pp) < 0, "zero-size image refused");
    // A thread no pinpoint keeps a row of: every effective resolution is 0, and the smallest waste wins.
    CHECK(image_select_best_resolution(1, 100000000, &pp) == 0, "a thread: the first of the smallest");
    image_pinpoints none = {0};
    CHECK(image_select_best_resolution(10, 10, &none) < 0, "no pinpoints");
    int top, left, nh, nw;
    CHECK(image_unpad_shape(0, 5, 24, 24, &top, &left, &nh, &nw) != 0, "unpad of a zero size");
    CHECK(image_anyres_max_shape(0, 5, 27, 9, &nh, &nw) < 0, "anyres_max of nothing");
    // The documented split: an 88x55 (h x w) image on llava-v1.6's 24x48 grid: the model keeps 14 columns, the
    // processor counts 16.
    CHECK(image_unpad_shape(88, 55, 24, 48, &top, &left, &nh, &nw) == 0 && nh == 24 && nw == 14 && left == 17,
          "model %dx%d", nh, nw);
    CHECK(image_unpad_shape_int(88, 55, 24, 48, &nh, &nw) == 0 && nh == 24 && nw == 16, "processor %dx%d", nh, nw);
    CHECK(image_anyres_num_features(88, 55, &pp, IMAGE_ANYRES_HF, 336, 24, 0) == 936 &&
              image_anyres_num_features(88, 55, &pp, IMAGE_ANYRES_HF, 336, 24, 1) == 984,
          "936 features, 984 tokens");
    CHECK(image_anyres_max_shape(27 * 3, 27 * 3, 27, 9, &nh, &nw) == 0 && nh == 81 && nw == 81, "3x3 tiles kept");
    CHECK(image_anyres_max_shape(27 * 6, 27 * 6, 27, 9, &nh, &nw) == 1 && nh == 81 && nw == 81, "6x6 halved");

    // Geometry: strips, one-pixel images and the largest pinpoint, every tile finite.
    image_anyres_config cfg = {.size = 28, .pinpoints = {0}, .flavor = IMAGE_ANYRES_HF};
    CHECK(image_parse_pinpoints("[[28,56],[56,28],[56,56]]", 0, &cfg.pinpoints) == 0, "small");
    CHECK(image_anyres_max_tiles(&cfg) == 5, "max tiles 5");
    const int dims[][2] = {{1, 1},  {1, 2},   {2, 1},    {3, 100}, {100, 3},
                           {1, 60}, {1, 200}, {5000, 1}, {57, 29}, {600, 599}};
    for (int f = 0; f < 2; f++) {
        cfg.flavor = (image_anyres_flavor)f;
        for (size_t k = 0; k < sizeof dims / sizeof *dims; k++) {
            image_u8 im;
            CHECK(image_alloc(&im, dims[k][0], dims[k][1], "t") == 0, "alloc");
            for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++) im.rgb[i] = (uint8_t)(i * 37 + k);
            float *chw = xmalloc(sizeof(float) * 5 * 3 * 28 * 28);
            image_anyres_plan plan;
            int rc = image_anyres_preprocess(&im, &cfg, &plan, NULL, chw);
            CHECK(rc == 0, "%dx%d %s: %s", im.w, im.h, image_anyres_flavor_name(cfg.flavor), llava_errmsg());
            if (rc == 0) {
                CHECK(plan.n_tiles >= 3 && plan.n_tiles <= 5, "%dx%d: %d tiles", im.w, im.h, plan.n_tiles);
                CHECK(plan.resized_h >= 1 && plan.resized_w >= 1 && plan.padded_h <= plan.best_h &&
                          plan.padded_w <= plan.best_w && plan.best_h - plan.padded_h <= 1 &&
                          plan.best_w - plan.padded_w <= 1,
                      "%dx%d: plan", im.w, im.h);
                int finite = 1;
                for (int i = 0; i < plan.n_tiles * 3 * 28 * 28; i++) finite &= isfinite(chw[i]) && fabsf(chw[i]) < 3;
                CHECK(finite, "%dx%d: finite pixel_values", im.w, im.h);
            }
            free(chw);
            image_free(&im);
        }
    }
    image_anyres_config badc = cfg;
    badc.size = 0;
    CHECK(image_anyres_max_tiles(&badc) < 0, "size 0 refused");
    badc = cfg;
    badc.pinpoints.res[0][0] = IMAGE_ANYRES_MAX_SIDE + 1;
    image_anyres_plan plan;
    CHECK(image_anyres_plan_for(10, 10, &badc, &plan) != 0, "oversized pinpoint refused");
    image_u8 empty = {0, 0, NULL};
    CHECK(image_anyres_preprocess(&empty, &cfg, NULL, NULL, NULL) != 0, "empty image refused");
}

// `llava image --aspect anyres` end to end: ctest sets LLAVA_BIN; run by hand, the llava beside this program.
static char *llava_bin(void) {
    const char *env = getenv("LLAVA_BIN");
    if (env) return xasprintf("%s", env);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return NULL;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (!slash) return NULL;
    strcpy(slash + 1, "llava");
    return access(self, X_OK) == 0 ? xasprintf("%s", self) : NULL;
}

static void test_cli(void) {
    char *bin = llava_bin();
    CHECK(bin != NULL, "no llava executable: LLAVA_BIN is not set and none is beside this test");
    if (!bin) return;
    char *tmp = check_tmpdir();
    char *out = path_join(tmp, "anyres.safetensors");
    // The small config, hf: pixel_values and pixels_u8 equal the reference's tensors bit for bit.
    char *cmd = xasprintf("'%s' image --aspect anyres --size 28 --grid-pinpoints '[[28,56],[56,28],[56,56]]' " DIR
                          "/src/wide3x1.png --out '%s' >/dev/null",
                          bin, out);
    CHECK(system(cmd) == 0, "%s", cmd);
    free(cmd);
    st_file f, g;
    if (st_open(&f, out) == 0 && st_open(&g, DIR "/s28.safetensors") == 0) {
        const st_tensor *v = st_find(&f, "pixel_values"), *u = st_find(&f, "pixels_u8"),
                        *z = st_find(&f, "image_sizes");
        const st_tensor *gv = st_find(&g, "s28.wide3x1.pixel_values"), *gu = st_find(&g, "s28.wide3x1.u8");
        CHECK(v && v->dtype == DT_F32 && v->ndim == 4 && v->shape[0] == 3 && v->shape[1] == 3 && v->shape[2] == 28 &&
                  v->shape[3] == 28,
              "pixel_values F32 [3,3,28,28]");
        CHECK(u && u->dtype == DT_U8 && u->ndim == 4 && u->shape[0] == 3 && u->shape[3] == 3,
              "pixels_u8 U8 [3,28,28,3]");
        CHECK(z && z->dtype == DT_I64 && z->numel == 2 && ((const int64_t *)z->data)[0] == 100 &&
                  ((const int64_t *)z->data)[1] == 300,
              "image_sizes I64 [100, 300] (height, width)");
        CHECK(v && gv && v->numel == gv->numel && memcmp(v->data, gv->data, sizeof(float) * v->numel) == 0,
              "CLI pixel_values = LlavaNextImageProcessor's");
        CHECK(u && gu && u->numel == gu->numel && memcmp(u->data, gu->data, u->numel) == 0, "CLI pixels_u8");
        CHECK(st_meta(&f, "best_resolution_hw") && strcmp(st_meta(&f, "best_resolution_hw"), "[28,56]") == 0,
              "best_resolution_hw metadata");
        st_close(&f);
        st_close(&g);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    // The defaults (S = 336, llava-v1.6's pinpoints) with the llava-next flavour: the library's tiles.
    cmd = xasprintf("'%s' image --aspect anyres --anyres-flavor llava-next " DIR
                    "/src/odd500x333.png --out '%s' >/dev/null",
                    bin, out);
    CHECK(system(cmd) == 0, "%s", cmd);
    free(cmd);
    image_anyres_config cfg = {.size = 336, .pinpoints = {0}, .flavor = IMAGE_ANYRES_LLAVA_NEXT};
    image_parse_pinpoints("[[336,672],[672,336],[672,672],[1008,336],[336,1008]]", 0, &cfg.pinpoints);
    image_u8 im;
    if (image_load_file(DIR "/src/odd500x333.png", &im) == 0 && st_open(&f, out) == 0) {
        float *chw = xmalloc(sizeof(float) * 3 * 336 * 336 * 5);
        image_anyres_plan plan;
        CHECK(image_anyres_preprocess(&im, &cfg, &plan, NULL, chw) == 0, "%s", llava_errmsg());
        const st_tensor *v = st_find(&f, "pixel_values");
        CHECK(v && v->shape[0] == plan.n_tiles && v->numel == (uint64_t)plan.n_tiles * 3 * 336 * 336 &&
                  memcmp(v->data, chw, sizeof(float) * v->numel) == 0,
              "CLI defaults: pixel_values as the library's");
        free(chw);
        st_close(&f);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    image_free(&im);
    cmd = xasprintf("'%s' image --grid-pinpoints '[[28,56]]' " DIR "/src/wide3x1.png --out '%s' 2>/dev/null", bin, out);
    CHECK(system(cmd) != 0, "--grid-pinpoints without --aspect anyres refused");
    free(cmd);
    cmd = xasprintf("'%s' image --aspect anyres --grid-pinpoints '[[28,56]' " DIR
                    "/src/wide3x1.png --out '%s' 2>/dev/null",
                    bin, out);
    CHECK(system(cmd) != 0, "a malformed --grid-pinpoints refused");
    free(cmd);
    free(out);
    check_rm_rf(tmp);
    free(tmp);
    free(bin);
}

// The order transformers' LlavaNextForConditionalGeneration.pack_image_features lays out an image's features
// (tools/reference/make_anyres_feature_goldens.py: row-id features through it): image_anyres_feature_rows on 161
// image sizes under three pinpoint sets (grids 1x1 to 3x1; crops that keep nothing, newlines with no features, float
// truncation moving the crop), every index equal.
static void test_feature_rows(void) {
    cJSON *j = load_json("tests/data/images/anyres/feature_rows.json");
    CHECK(j != NULL, "feature_rows.json");
    if (!j) return;
    int n_cases = 0, n_rows = 0;
    for (const cJSON *c = cJSON_GetObjectItem(j, "configs")->child; c; c = c->next) {
        int S = cJSON_GetObjectItem(c, "image_size")->valueint, G = cJSON_GetObjectItem(c, "grid")->valueint;
        image_pinpoints pp;
        CHECK(pinpoints_from(cJSON_GetObjectItem(c, "pinpoints"), &pp) == 0, "pinpoints");
        for (const cJSON *e = cJSON_GetObjectItem(c, "cases")->child; e; e = e->next) {
            const cJSON *hw = cJSON_GetObjectItem(e, "image_hw"), *order = cJSON_GetObjectItem(e, "order");
            int h = ival(hw, 0), w = ival(hw, 1), n = cJSON_GetArraySize(order), rows = 0, cols = 0;
            CHECK(image_anyres_grid_shape(h, w, &pp, IMAGE_ANYRES_HF, S, &rows, &cols) == 0 &&
                      rows == cJSON_GetObjectItem(e, "rows")->valueint &&
                      cols == cJSON_GetObjectItem(e, "cols")->valueint,
                  "%dx%d at %d: grid %dx%d", h, w, S, rows, cols);
            int32_t *got = xmalloc(sizeof(int32_t) * (size_t)(n + 1));
            int k = image_anyres_feature_rows(h, w, &pp, IMAGE_ANYRES_HF, S, G, got);
            CHECK(k == n && k == cJSON_GetObjectItem(e, "feature_len")->valueint, "%dx%d at %d: %d features, want %d",
                  h, w, S, k, n);
            int same = k == n;
            for (int i = 0; i < n && same; i++) same = got[i] == ival(order, i);
            CHECK(same, "%dx%d at %d (grid %d): the feature order differs from transformers'", h, w, S, G);
            free(got);
            n_cases++;
            n_rows += n;
        }
    }
    cJSON_Delete(j);
    printf("anyres feature order: %d images, %d rows, equal to transformers' pack_image_features\n", n_cases, n_rows);
}

// anyres_max_N in the counts and the order (data/image.h): a 60 x 36 image under tiny pinpoints (28-pixel tiles of
// 2 x 2 features) has a 2 x 2 grid, a 4 x 4 canvas, columns 1..2 kept (4 x 2 = 8 features). Under anyres_max_1,
// times = sqrt(8 / 4) = 1.414 > 1.1: resized to 4 // 1.414 = 2 rows of 2 // 1.414 = 1, each then a newline; under
// anyres_max_2 times = 1: as without the cap. The kept map's source rows, row-major, by hand: canvas (Y, X) is
// tile 1 + (Y / 2) * 2 + X / 2 at (Y % 2, X % 2).
static void test_feature_rows_max(void) {
    image_pinpoints pp;
    CHECK(image_parse_pinpoints("[[28,56],[56,28],[56,56]]", 14, &pp) == 0 && pp.max_num_patches == 0, "pinpoints");
    int32_t rows[32], grid[16], dims[4];
    pp.max_num_patches = 1;
    CHECK_EQ_INT(image_anyres_num_features(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, 0), 8);
    CHECK_EQ_INT(image_anyres_num_features(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, 1), 8);
    CHECK_EQ_INT(image_anyres_feature_rows(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, rows), 8);
    const int32_t want_rows[8] = {0, 1, 2, 3, -2, -1, -2, -1}, want_grid[8] = {5, 8, 7, 10, 13, 16, 15, 18};
    CHECK(memcmp(rows, want_rows, sizeof want_rows) == 0, "anyres_max_1 feature rows");
    CHECK_EQ_INT(image_anyres_resize_plan(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, dims, grid), 1);
    CHECK(dims[0] == 4 && dims[1] == 2 && dims[2] == 2 && dims[3] == 1, "resize 4x2 -> 2x1, got %dx%d -> %dx%d",
          dims[0], dims[1], dims[2], dims[3]);
    CHECK(memcmp(grid, want_grid, sizeof want_grid) == 0, "the kept map's source rows");
    pp.max_num_patches = 2;
    CHECK_EQ_INT(image_anyres_num_features(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, 0), 16);
    CHECK_EQ_INT(image_anyres_resize_plan(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, dims, grid), 0);
    CHECK(dims[0] == 4 && dims[1] == 2 && dims[2] == 4 && dims[3] == 2, "no resize under anyres_max_2");
    int32_t plain[32];
    pp.max_num_patches = 0;
    CHECK_EQ_INT(image_anyres_feature_rows(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, plain), 16);
    pp.max_num_patches = 2;
    CHECK_EQ_INT(image_anyres_feature_rows(60, 36, &pp, IMAGE_ANYRES_HF, 28, 2, rows), 16);
    CHECK(memcmp(rows, plain, sizeof(int32_t) * 16) == 0, "anyres_max_2 under the cap: the plain order");
    printf("anyres_max: 60x36 kept 4x2 -> 2x1 under N = 1 (8 features), unchanged under N = 2 (16)\n");
}

int main(void) {
    test_parse_and_errors();
    test_feature_rows_max();
    test_shapes();
    test_pixels();
    test_cli();
    test_feature_rows();
    return check_done();
}
