// PNG through libpng, converted to RGB with the rules of Pillow 11.0 (PngImagePlugin's modes, then
// Image.convert('RGB')). Pillow decodes PNG itself; for valid files the samples are the same, and
// the mapping to RGB is:
//   gray 1/2/4/8 bit      "1" / "L;2" / "L;4" / "L": 0|255, v*85, v*17, v, replicated
//   gray 16 bit           "I;16" -> RGB (I16_RGB): v < 256 ? v : 255 (not the high byte!)
//   RGB / RGBA 16 bit     "RGB;16B" / "RGBA;16B": the most significant byte of each sample
//   gray+alpha 8 / 16 bit "LA" / "LA;16B": the (high byte of the) gray sample, replicated
//   palette 1/2/4/8 bit   PLTE lookup; indices past the PLTE entries are black (Pillow's palette
//                         is zero-filled)
// Alpha and tRNS are dropped, never composited, as convert('RGB') does. Ancillary chunks are not
// parsed (text, ICC, EXIF...), so they cannot be used to exhaust memory. Truncated data is an error.
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "image.h"

typedef struct {
    const uint8_t *data;
    size_t len, pos;
    char msg[256];
} png_src;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_src *s = (png_src *)png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void on_png_read(png_structp png, png_bytep dst, size_t n) {
    png_src *s = (png_src *)png_get_io_ptr(png);
    if (n > s->len - s->pos) png_error(png, "truncated file");
    memcpy(dst, s->data + s->pos, n);
    s->pos += n;
}

// One row of samples as libpng hands them (bit depths below 8 unpacked to a byte each, 16-bit big
// endian) to RGB.
static void row_to_rgb(const uint8_t *s, int w, int color_type, int depth, const png_color *pal, int npal, uint8_t *d) {
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        if (depth == 16) {
            for (int x = 0; x < w; x++) {
                uint8_t v = s[x * 2] == 0 ? s[x * 2 + 1] : 255;
                d[x * 3 + 0] = d[x * 3 + 1] = d[x * 3 + 2] = v;
            }
        } else {
            int mul = depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1;
            for (int x = 0; x < w; x++) {
                uint8_t v = (uint8_t)(s[x] * mul);
                d[x * 3 + 0] = d[x * 3 + 1] = d[x * 3 + 2] = v;
            }
        }
        break;
    case PNG_COLOR_TYPE_RGB:
        if (depth == 16) {
            for (int x = 0; x < w * 3; x++) d[x] = s[x * 2];
        } else {
            memcpy(d, s, (size_t)w * 3);
        }
        break;
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < w; x++) {
            int i = s[x];
            if (i < npal) {
                d[x * 3 + 0] = pal[i].red;
                d[x * 3 + 1] = pal[i].green;
                d[x * 3 + 2] = pal[i].blue;
            } else {
                d[x * 3 + 0] = d[x * 3 + 1] = d[x * 3 + 2] = 0;
            }
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
        int step = depth == 16 ? 4 : 2;
        for (int x = 0; x < w; x++) d[x * 3 + 0] = d[x * 3 + 1] = d[x * 3 + 2] = s[x * step];
        break;
    }
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        int bps = depth == 16 ? 2 : 1;
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) d[x * 3 + c] = s[(x * 4 + c) * bps];
        break;
    }
    default: break;
    }
}

int image_decode_png(const uint8_t *bytes, size_t len, const char *name, uint64_t max_pixels, image_u8 *out) {
    png_src src;
    memset(&src, 0, sizeof src);
    src.data = bytes;
    src.len = len;
    out->w = out->h = 0;
    out->rgb = NULL;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_png_error, on_png_warning);
    if (!png) return llava_fail("%s: cannot start the PNG decoder", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return llava_fail("%s: cannot start the PNG decoder", name);
    }
    uint8_t *volatile rgb = NULL;
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rgb);
        free(raw);
        free(rows);
        return llava_fail("%s: corrupt PNG (%s)", name, src.msg[0] ? src.msg : "decoder error");
    }
    png_set_read_fn(png, &src, on_png_read);
    // Pillow checks the CRC of every chunk before the image data and of none after: libpng errors on
    // bad CRCs until png_read_info has read up to the first IDAT, and ignores them from then on.
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
    png_set_benign_errors(png, 1);
    // Pillow accepts any size up to its pixel limit; libpng's default stops at 1,000,000 per side.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_chunk_malloc_max(png, 64u << 20);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    static const png_byte skip[] =
        "bKGD\0cHRM\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0pCAL\0pHYs\0sBIT\0sCAL\0sPLT\0"
        "sRGB\0sTER\0tEXt\0tIME\0tRNS\0zTXt";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));
    png_read_info(png, info);
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);

    png_uint_32 uw, uh;
    int depth, color_type, interlace;
    png_get_IHDR(png, info, &uw, &uh, &depth, &color_type, &interlace, NULL, NULL);
    if (uw == 0 || uh == 0) png_error(png, "zero-size image");
    if ((uint64_t)uw * (uint64_t)uh > max_pixels) {
        snprintf(src.msg, sizeof src.msg, "%ux%u = %llu pixels exceeds the %llu-pixel limit (decompression bomb?)",
                 (unsigned)uw, (unsigned)uh, (unsigned long long)uw * (unsigned long long)uh,
                 (unsigned long long)max_pixels);
        png_longjmp(png, 1);
    }
    const int w = (int)uw, h = (int)uh;
    png_colorp pal = NULL;
    int npal = 0;
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        if (!(png_get_valid(png, info, PNG_INFO_PLTE) && png_get_PLTE(png, info, &pal, &npal)))
            png_error(png, "palette image without PLTE");
    }
    if (depth < 8) png_set_packing(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    size_t npix = (size_t)w * (size_t)h;
    rgb = malloc(npix * 3);
    if (!rgb) {
        snprintf(src.msg, sizeof src.msg, "out of memory for %dx%d", w, h);
        png_longjmp(png, 1);
    }
    if (passes > 1) {
        // Adam7: the passes fill the whole image in its stored form, converted afterwards.
        if (rowbytes && (size_t)h > SIZE_MAX / rowbytes) png_error(png, "image too large");
        raw = malloc(rowbytes * (size_t)h);
        rows = malloc(sizeof(png_bytep) * (size_t)h);
        if (!raw || !rows) {
            snprintf(src.msg, sizeof src.msg, "out of memory for %dx%d", w, h);
            png_longjmp(png, 1);
        }
        for (int y = 0; y < h; y++) rows[y] = raw + (size_t)y * rowbytes;
        png_read_image(png, rows);
        for (int y = 0; y < h; y++)
            row_to_rgb(rows[y], w, color_type, depth, pal, npal, rgb + (size_t)y * (size_t)w * 3);
    } else {
        raw = malloc(rowbytes);
        if (!raw) png_error(png, "out of memory");
        for (int y = 0; y < h; y++) {
            png_read_row(png, raw, NULL);
            row_to_rgb(raw, w, color_type, depth, pal, npal, rgb + (size_t)y * (size_t)w * 3);
        }
    }
    // Pillow reads no further than the image data needs; what follows it (IEND, text) is not checked.
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    out->w = w;
    out->h = h;
    out->rgb = rgb;
    return 0;
}

// Writing: 8-bit RGB PNG (the demo's synthetic images). Written to a temporary name and renamed.
int image_write_png(const char *path, const image_u8 *im) {
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(tmp);
        return llava_fail("%s: cannot create", path);
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = 0;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        rc = llava_fail("%s: PNG encoding failed", path);
    } else {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < im->h; y++) png_write_row(png, im->rgb + (size_t)y * im->w * 3);
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0 && rc == 0) rc = llava_fail("%s: write failed", path);
    if (rc == 0 && rename(tmp, path) != 0) rc = llava_fail("%s: rename failed", path);
    if (rc != 0) remove(tmp);
    free(tmp);
    return rc;
}
