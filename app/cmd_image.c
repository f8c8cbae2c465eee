// llava image: decode one image and preprocess it as LLaVA-1.5 does (square, pad) or as LLaVA-NeXT does
// (anyres: tiles of the image at a grid pinpoint, data/image_anyres.c), into a safetensors file; or time
// decode + preprocess over files (--bench).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/image.h"
#include "model/io/safetensors.h"

#define DEFAULT_PINPOINTS "[[336,672],[672,336],[672,672],[1008,336],[336,1008]]"

static const char USAGE[] =
    "usage: llava image [--aspect square|pad|anyres] [--size S] IN --out OUT.safetensors [--with-decoded]\n"
    "                   [--grid-pinpoints P] [--anyres-flavor hf|llava-next]\n"
    "       llava image --bench N [--aspect square|pad|anyres] [--size S] [--grid-pinpoints P] FILE...\n"
    "\n"
    "Decodes an image (JPEG, PNG or GIF, told by its content) and preprocesses it as LLaVA-1.5 does, or as\n"
    "LLaVA-NeXT does (anyres).\n"
    "\n"
    "  IN               the image (required unless --bench)\n"
    "  --out OUT        the safetensors file to write (required unless --bench): pixels_u8 (U8 [S,S,3]) and\n"
    "                   pixel_values (F32 [3,S,S], CLIP-normalised); with anyres pixels_u8 (U8 [T,S,S,3]),\n"
    "                   pixel_values (F32 [T,3,S,S]) for T tiles and image_sizes (I64 [2]: height, width)\n"
    "  --aspect A       square: stage 1 (resize the short side to S, centre crop); pad: stage 2 (expand2square\n"
    "                   with the mean colour (122,116,104), then resize); anyres: LLaVA-NeXT's tiles: the\n"
    "                   image squashed to S x S, then S x S tiles (row-major) of it resized and zero-padded to\n"
    "                   the best grid pinpoint, each CLIP-normalised (default: square)\n"
    "  --size S         the side in pixels (with anyres: of each tile), 1..4096 (default: 336)\n"
    "  --grid-pinpoints P\n"
    "                   anyres only: the resolutions to choose from, as a JSON list of pairs or LLaVA-NeXT's\n"
    "                   range form \"(1x1),...,(3x3)\" (times S)\n"
    "                   (default: " DEFAULT_PINPOINTS
    ")\n"
    "  --anyres-flavor F\n"
    "                   anyres only: hf: transformers' LlavaNextImageProcessor (pinpoints [height, width]);\n"
    "                   llava-next: LLaVA-NeXT's process_anyres_image (pinpoints [width, height], padding on a\n"
    "                   full canvas) (default: hf)\n"
    "  --with-decoded   also write decoded_u8 (U8 [H,W,3]), the image as decoded (default: off)\n"
    "  --bench N        time decode + preprocess of every FILE, N times over, on one thread (default: off)\n";

typedef enum { MODE_SQUARE = IMAGE_ASPECT_SQUARE, MODE_PAD = IMAGE_ASPECT_PAD, MODE_ANYRES } image_mode;

static const char *mode_name(image_mode m) { return m == MODE_ANYRES ? "anyres" : m == MODE_PAD ? "pad" : "square"; }

static void image_usage(void) { fputs(USAGE, stderr); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_bench(int reps, int size, image_mode mode, const image_anyres_config *anyres, char **files,
                     int n_files) {
    int tiles = mode == MODE_ANYRES ? image_anyres_max_tiles(anyres) : 1;
    if (tiles < 1) {
        fprintf(stderr, "llava image: %s\n", llava_errmsg());
        return 1;
    }
    uint8_t **bufs = xcalloc((size_t)n_files, sizeof *bufs);
    size_t *lens = xcalloc((size_t)n_files, sizeof *lens);
    uint8_t *u8 = xmalloc((size_t)tiles * (size_t)size * (size_t)size * 3);
    float *chw = xmalloc(sizeof(float) * 3 * (size_t)tiles * (size_t)size * (size_t)size);
    int rc = 0, ok = 0;
    uint64_t pixels = 0;
    for (int i = 0; i < n_files; i++) {
        bufs[i] = (uint8_t *)read_file(files[i], IMAGE_MAX_FILE_BYTES, &lens[i]);
        if (!bufs[i]) {
            fprintf(stderr, "llava image: %s\n", llava_errmsg());
            rc = 1;
            goto done;
        }
    }
    double t0 = now_s(), t_dec = 0;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < n_files; i++) {
            double a = now_s();
            image_u8 im;
            if (image_decode(bufs[i], lens[i], files[i], &im) != 0) {
                if (r == 0) fprintf(stderr, "llava image: skipped: %s\n", llava_errmsg());
                continue;
            }
            t_dec += now_s() - a;
            int prc = mode == MODE_ANYRES ? image_anyres_preprocess(&im, anyres, NULL, u8, chw)
                                          : image_preprocess(&im, size, (image_aspect)mode, u8, chw);
            if (prc != 0) {
                if (r == 0) fprintf(stderr, "llava image: skipped: %s\n", llava_errmsg());
                image_free(&im);
                continue;
            }
            pixels += (uint64_t)im.w * (uint64_t)im.h;
            image_free(&im);
            ok++;
        }
    }
    double dt = now_s() - t0;
    if (ok == 0) {
        fprintf(stderr, "llava image: no image could be decoded\n");
        rc = 1;
        goto done;
    }
    printf("bench: %d images (%d files x %d), %s mode, S=%d, one thread\n", ok, n_files, reps, mode_name(mode), size);
    printf("bench: %.1f images/s, %.2f ms/image (decode %.2f ms, preprocess %.2f ms), mean %.2f Mpixel/image\n",
           ok / dt, 1e3 * dt / ok, 1e3 * t_dec / ok, 1e3 * (dt - t_dec) / ok, (double)pixels / ok / 1e6);
done:
    for (int i = 0; i < n_files; i++) free(bufs[i]);
    free(bufs);
    free(lens);
    free(u8);
    free(chw);
    return rc;
}

int cmd_image(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    const char *pinpoints = NULL, *flavor = NULL;
    int size = IMAGE_CLIP_SIZE, bench = 0, with_decoded = 0;
    image_mode mode = MODE_SQUARE;
    char **files = xcalloc((size_t)argc, sizeof *files);
    int n_files = 0;
    static const char *const FLAGS[] = {"--aspect",       "--size",           "--out",           "--bench",
                                        "--with-decoded", "--grid-pinpoints", "--anyres-flavor", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--aspect") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "square") == 0) {
                mode = MODE_SQUARE;
            } else if (strcmp(v, "pad") == 0) {
                mode = MODE_PAD;
            } else if (strcmp(v, "anyres") == 0) {
                mode = MODE_ANYRES;
            } else {
                fprintf(stderr, "llava image: --aspect takes square, pad or anyres, not \"%s\"\n", v);
                free(files);
                return 2;
            }
        } else if (strcmp(a, "--size") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 4096) {
                fprintf(stderr, "llava image: --size takes an integer in 1..4096\n");
                free(files);
                return 2;
            }
            size = (int)v;
        } else if (strcmp(a, "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(a, "--grid-pinpoints") == 0 && i + 1 < argc) {
            pinpoints = argv[++i];
        } else if (strcmp(a, "--anyres-flavor") == 0 && i + 1 < argc) {
            flavor = argv[++i];
        } else if (strcmp(a, "--bench") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000) {
                fprintf(stderr, "llava image: --bench takes a repeat count >= 1\n");
                free(files);
                return 2;
            }
            bench = (int)v;
        } else if (strcmp(a, "--with-decoded") == 0) {
            with_decoded = 1;
        } else if (args_is_help(a)) {
            fputs(USAGE, stdout);
            free(files);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            free(files);
            return args_unknown("image", a, FLAGS, ARGS_COUNT(FLAGS));
        } else {
            files[n_files++] = argv[i];
        }
    }
    image_anyres_config anyres;
    memset(&anyres, 0, sizeof anyres);
    if (mode != MODE_ANYRES && (pinpoints || flavor)) {
        fprintf(stderr, "llava image: --grid-pinpoints and --anyres-flavor go with --aspect anyres\n");
        free(files);
        return 2;
    }
    if (mode == MODE_ANYRES) {
        anyres.size = size;
        if (!flavor || strcmp(flavor, "hf") == 0) {
            anyres.flavor = IMAGE_ANYRES_HF;
        } else if (strcmp(flavor, "llava-next") == 0) {
            anyres.flavor = IMAGE_ANYRES_LLAVA_NEXT;
        } else {
            fprintf(stderr, "llava image: --anyres-flavor takes hf or llava-next, not \"%s\"\n", flavor);
            free(files);
            return 2;
        }
        if (image_parse_pinpoints(pinpoints ? pinpoints : DEFAULT_PINPOINTS, size, &anyres.pinpoints) != 0 ||
            image_anyres_max_tiles(&anyres) < 1) {
            fprintf(stderr, "llava image: --grid-pinpoints: %s\n", llava_errmsg());
            free(files);
            return 2;
        }
    }
    if (bench) {
        int rc = n_files ? run_bench(bench, size, mode, &anyres, files, n_files) : (image_usage(), 2);
        free(files);
        return rc;
    }
    if (n_files != 1 || !out) {
        image_usage();
        free(files);
        return 2;
    }
    in = files[0];
    free(files);

    image_u8 im;
    if (image_load_file(in, &im) != 0) {
        fprintf(stderr, "llava image: %s\n", llava_errmsg());
        return 1;
    }
    size_t n = (size_t)size * (size_t)size;
    image_anyres_plan plan;
    memset(&plan, 0, sizeof plan);
    int tiles = 1;
    if (mode == MODE_ANYRES) {
        if (image_anyres_plan_for(im.h, im.w, &anyres, &plan) != 0) {
            fprintf(stderr, "llava image: %s: %s\n", in, llava_errmsg());
            image_free(&im);
            return 1;
        }
        tiles = plan.n_tiles;
    }
    uint8_t *u8 = xmalloc((size_t)tiles * n * 3);
    float *chw = xmalloc(sizeof(float) * 3 * (size_t)tiles * n);
    int rc = 1;
    int prc = mode == MODE_ANYRES ? image_anyres_preprocess(&im, &anyres, &plan, u8, chw)
                                  : image_preprocess(&im, size, (image_aspect)mode, u8, chw);
    if (prc != 0) {
        fprintf(stderr, "llava image: %s: %s\n", in, llava_errmsg());
        goto done;
    }
    st_writer w;
    st_writer_init(&w);
    int64_t shape_u8[4] = {tiles, size, size, 3}, shape_f[4] = {tiles, 3, size, size}, shape_dec[3] = {im.h, im.w, 3};
    int64_t image_sizes[2] = {im.h, im.w}, shape_sizes[1] = {2};
    const int nd = mode == MODE_ANYRES ? 4 : 3, off = mode == MODE_ANYRES ? 0 : 1;  // one image: no tile axis
    char dims[64], best[64], pins[64 * IMAGE_ANYRES_MAX_PINPOINTS];
    snprintf(dims, sizeof dims, "%dx%d", im.w, im.h);
    st_writer_meta(&w, "source", in);
    st_writer_meta(&w, "source_size", dims);
    st_writer_meta(&w, "aspect", mode_name(mode));
    if (mode == MODE_ANYRES) {
        size_t k = 0;
        k += (size_t)snprintf(pins + k, sizeof pins - k, "[");
        for (int i = 0; i < anyres.pinpoints.n; i++)
            k += (size_t)snprintf(pins + k, sizeof pins - k, "%s[%d,%d]", i ? "," : "", anyres.pinpoints.res[i][0],
                                  anyres.pinpoints.res[i][1]);
        snprintf(pins + k, sizeof pins - k, "]");
        snprintf(best, sizeof best, "[%d,%d]", plan.best_h, plan.best_w);
        st_writer_meta(&w, "grid_pinpoints", pins);
        st_writer_meta(&w, "anyres_flavor", image_anyres_flavor_name(anyres.flavor));
        st_writer_meta(&w, "best_resolution_hw", best);
    }
    if (st_writer_add(&w, "pixels_u8", DT_U8, nd, shape_u8 + off, u8) != 0 ||
        st_writer_add(&w, "pixel_values", DT_F32, nd, shape_f + off, chw) != 0 ||
        (mode == MODE_ANYRES && st_writer_add(&w, "image_sizes", DT_I64, 1, shape_sizes, image_sizes) != 0) ||
        (with_decoded && st_writer_add(&w, "decoded_u8", DT_U8, 3, shape_dec, im.rgb) != 0) ||
        st_writer_save(&w, out) != 0) {
        fprintf(stderr, "llava image: %s\n", llava_errmsg());
        st_writer_free(&w);
        goto done;
    }
    st_writer_free(&w);
    if (mode == MODE_ANYRES)
        printf("%s: %dx%d -> anyres (%s) at %dx%d (width x height), %d tiles of %dx%d, wrote %s\n", in, im.w, im.h,
               image_anyres_flavor_name(anyres.flavor), plan.best_w, plan.best_h, tiles, size, size, out);
    else printf("%s: %dx%d -> %s %dx%d, wrote %s\n", in, im.w, im.h, mode_name(mode), size, size, out);
    rc = 0;
done:
    image_free(&im);
    free(u8);
    free(chw);
    return rc;
}
