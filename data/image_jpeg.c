// JPEG through libjpeg(-turbo) with the settings Pillow's JpegDecode uses: libjpeg's defaults
// (JDCT_ISLOW, fancy upsampling, block smoothing), out_color_space GRAYSCALE / RGB / CMYK for 1 / 3 / 4
// components. CMYK is taken as Adobe-inverted ("CMYK;I", as Pillow always assumes) and converted with
// Pillow's cmyk2rgb. Like Pillow without LOAD_TRUNCATED_IMAGES, running out of data before the last
// scanline is an error; a missing EOI after complete image data is not.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "common/util.h"
#include "image.h"

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int eof;  // libjpeg's source ran dry and inserted a fake EOI
} jerr_ctx;

static void on_error_exit(j_common_ptr c) {
    jerr_ctx *e = (jerr_ctx *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void on_emit_message(j_common_ptr c, int level) {
    jerr_ctx *e = (jerr_ctx *)c->err;
    if (level < 0) {  // warnings: corrupt data is decoded on, as Pillow does; only note EOF
        if (c->err->msg_code == JWRN_JPEG_EOF) e->eof = 1;
        c->err->num_warnings++;
    }
}

static void on_progress(j_common_ptr c) {
    if (c->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)c;
        if (d->input_scan_number > IMAGE_MAX_JPEG_SCANS) {
            jerr_ctx *e = (jerr_ctx *)c->err;
            snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", IMAGE_MAX_JPEG_SCANS);
            longjmp(e->jb, 1);
        }
    }
}

// MULDIV255 and cmyk2rgb of Pillow's libImaging (Convert.c, ImagingUtils.h).
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static inline uint8_t clip8i(int v) { return v <= 0 ? 0 : v < 256 ? (uint8_t)v : 255; }

int image_decode_jpeg(const uint8_t *bytes, size_t len, const char *name, uint64_t max_pixels, image_u8 *out) {
    struct jpeg_decompress_struct cinfo;
    jerr_ctx jerr;
    struct jpeg_progress_mgr progress;
    // Touched after setjmp and read after longjmp: volatile.
    uint8_t *volatile rgb = NULL;
    uint8_t *volatile row = NULL;
    volatile int stage = 0;  // 0 header, 1 start, 2 scanlines

    out->w = out->h = 0;
    out->rgb = NULL;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = on_error_exit;
    jerr.pub.emit_message = on_emit_message;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(row);
        static const char *what[] = {"reading the header", "starting decompression", "decoding"};
        if (jerr.eof) return llava_fail("%s: truncated JPEG (the file ends while %s: %s)", name, what[stage], jerr.msg);
        return llava_fail("%s: corrupt JPEG (%s while %s)", name, jerr.msg, what[stage]);
    }
    jpeg_create_decompress(&cinfo);
    progress.progress_monitor = on_progress;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, bytes, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    if (jerr.eof) {
        jpeg_destroy_decompress(&cinfo);
        return llava_fail("%s: truncated JPEG (the file ends inside the header)", name);
    }
    const int w = (int)cinfo.image_width, h = (int)cinfo.image_height, nc = cinfo.num_components;
    if (cinfo.data_precision != 8) {
        jpeg_destroy_decompress(&cinfo);
        return llava_fail("%s: unsupported JPEG: %d-bit samples", name, cinfo.data_precision);
    }
    if (nc != 1 && nc != 3 && nc != 4) {
        jpeg_destroy_decompress(&cinfo);
        return llava_fail("%s: unsupported JPEG: %d components", name, nc);
    }
    if (w <= 0 || h <= 0) {
        jpeg_destroy_decompress(&cinfo);
        return llava_fail("%s: zero-size JPEG (%dx%d)", name, w, h);
    }
    if ((uint64_t)w * (uint64_t)h > max_pixels) {
        jpeg_destroy_decompress(&cinfo);
        return llava_fail("%s: JPEG of %dx%d = %llu pixels exceeds the %llu-pixel limit (decompression bomb?)", name, w,
                          h, (unsigned long long)w * (unsigned long long)h, (unsigned long long)max_pixels);
    }
    cinfo.out_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
    stage = 1;
    jpeg_start_decompress(&cinfo);
    if (jerr.eof) {
        jpeg_destroy_decompress(&cinfo);
        return llava_fail("%s: truncated JPEG (the file ends before the last scan)", name);
    }
    const int oc = cinfo.output_components;
    if ((int)cinfo.output_width != w || (int)cinfo.output_height != h || oc != (nc == 1 ? 1 : nc == 3 ? 3 : 4)) {
        jpeg_destroy_decompress(&cinfo);
        return llava_fail("%s: JPEG decoder gave an unexpected output geometry", name);
    }
    size_t npix = (size_t)w * (size_t)h;
    rgb = malloc(npix * 3);
    row = malloc((size_t)w * (size_t)oc);
    if (!rgb || !row) {
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(row);
        return llava_fail("%s: out of memory for a %dx%d JPEG", name, w, h);
    }
    stage = 2;
    while ((int)cinfo.output_scanline < h) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) break;
        uint8_t *d = rgb + (size_t)y * (size_t)w * 3;
        const uint8_t *s = row;
        if (oc == 1) {
            for (int x = 0; x < w; x++) d[x * 3 + 0] = d[x * 3 + 1] = d[x * 3 + 2] = s[x];
        } else if (oc == 3) {
            memcpy(d, s, (size_t)w * 3);
        } else {
            for (int x = 0; x < w; x++) {
                // "CMYK;I": every channel inverted, then cmyk2rgb.
                int c = 255 - s[x * 4 + 0], m = 255 - s[x * 4 + 1], yy = 255 - s[x * 4 + 2], k = 255 - s[x * 4 + 3];
                int nk = 255 - k;
                d[x * 3 + 0] = clip8i(nk - muldiv255(c, nk));
                d[x * 3 + 1] = clip8i(nk - muldiv255(m, nk));
                d[x * 3 + 2] = clip8i(nk - muldiv255(yy, nk));
            }
        }
    }
    int complete = (int)cinfo.output_scanline == h;
    int eof = jerr.eof;
    // No jpeg_finish_decompress: Pillow stops once the last scanline is out, whatever follows.
    jpeg_destroy_decompress(&cinfo);
    free(row);
    if (!complete || eof) {
        free(rgb);
        return llava_fail("%s: truncated JPEG (image data ends early)", name);
    }
    out->w = w;
    out->h = h;
    out->rgb = rgb;
    return 0;
}
