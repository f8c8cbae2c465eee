// llava image: decode one image and preprocess it as LLaVA-1.5 does, into a safetensors file;
// or time decode + preprocess over files (--bench).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/image.h"
#include "model/io/safetensors.h"

static const char USAGE[] =
    "usage: llava image [--aspect square|pad] [--size S] IN --out OUT.safetensors [--with-decoded]\n"
    "       llava image --bench N [--aspect square|pad] [--size S] FILE...\n"
    "\n"
    "Decodes an image (JPEG, PNG or GIF, told by its content) and preprocesses it as LLaVA-1.5 does.\n"
    "\n"
    "  IN               the image (required unless --bench)\n"
    "  --out OUT        the safetensors file to write (required unless --bench): pixels_u8 (U8 [S,S,3]) and\n"
    "                   pixel_values (F32 [3,S,S], CLIP-normalised)\n"
    "  --aspect A       square: stage 1 (resize the short side to S, centre crop); pad: stage 2 (expand2square\n"
    "                   with the mean colour (122,116,104), then resize) (default: square)\n"
    "  --size S         the side in pixels, 1..4096 (default: 336)\n"
    "  --with-decoded   also write decoded_u8 (U8 [H,W,3]), the image as decoded (default: off)\n"
    "  --bench N        time decode + preprocess of every FILE, N times over, on one thread (default: off)\n";

static void image_usage(void) { fputs(USAGE, stderr); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_bench(int reps, int size, image_aspect mode, char **files, int n_files) {
    uint8_t **bufs = xcalloc((size_t)n_files, sizeof *bufs);
    size_t *lens = xcalloc((size_t)n_files, sizeof *lens);
    uint8_t *u8 = xmalloc((size_t)size * (size_t)size * 3);
    float *chw = xmalloc(sizeof(float) * 3 * (size_t)size * (size_t)size);
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
            if (image_preprocess(&im, size, mode, u8, chw) != 0) {
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
    printf("bench: %d images (%d files x %d), %s mode, S=%d, one thread\n", ok, n_files, reps,
           mode == IMAGE_ASPECT_PAD ? "pad" : "square", size);
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
    int size = IMAGE_CLIP_SIZE, bench = 0, with_decoded = 0;
    image_aspect mode = IMAGE_ASPECT_SQUARE;
    char **files = xcalloc((size_t)argc, sizeof *files);
    int n_files = 0;
    static const char *const FLAGS[] = {"--aspect", "--size", "--out", "--bench", "--with-decoded", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--aspect") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "square") == 0) {
                mode = IMAGE_ASPECT_SQUARE;
            } else if (strcmp(v, "pad") == 0) {
                mode = IMAGE_ASPECT_PAD;
            } else {
                fprintf(stderr, "llava image: --aspect takes square or pad, not \"%s\"\n", v);
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
    if (bench) {
        int rc = n_files ? run_bench(bench, size, mode, files, n_files) : (image_usage(), 2);
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
    uint8_t *u8 = xmalloc(n * 3);
    float *chw = xmalloc(sizeof(float) * 3 * n);
    int rc = 1;
    if (image_preprocess(&im, size, mode, u8, chw) != 0) {
        fprintf(stderr, "llava image: %s: %s\n", in, llava_errmsg());
        goto done;
    }
    st_writer w;
    st_writer_init(&w);
    int64_t shape_u8[3] = {size, size, 3}, shape_f[3] = {3, size, size}, shape_dec[3] = {im.h, im.w, 3};
    char dims[64];
    snprintf(dims, sizeof dims, "%dx%d", im.w, im.h);
    st_writer_meta(&w, "source", in);
    st_writer_meta(&w, "source_size", dims);
    st_writer_meta(&w, "aspect", mode == IMAGE_ASPECT_PAD ? "pad" : "square");
    if (st_writer_add(&w, "pixels_u8", DT_U8, 3, shape_u8, u8) != 0 ||
        st_writer_add(&w, "pixel_values", DT_F32, 3, shape_f, chw) != 0 ||
        (with_decoded && st_writer_add(&w, "decoded_u8", DT_U8, 3, shape_dec, im.rgb) != 0) ||
        st_writer_save(&w, out) != 0) {
        fprintf(stderr, "llava image: %s\n", llava_errmsg());
        st_writer_free(&w);
        goto done;
    }
    st_writer_free(&w);
    printf("%s: %dx%d -> %s %dx%d, wrote %s\n", in, im.w, im.h, mode == IMAGE_ASPECT_PAD ? "pad" : "square", size, size,
           out);
    rc = 0;
done:
    image_free(&im);
    free(u8);
    free(chw);
    return rc;
}
