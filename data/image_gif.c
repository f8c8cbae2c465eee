// GIF, first frame, as Pillow 11.0 opens it (GifImagePlugin with the default loading strategy
// RGB_AFTER_FIRST, its own LZW decoder GifDecode.c) and converts it with convert('RGB'). Pillow does
// not use giflib, and neither do we: giflib refuses streams Pillow reads (LZW code sizes above 8,
// image data running on past an early end code) and stops on ones Pillow reads differently.
//
// What is reproduced:
// - the canvas is the logical screen, grown to hold the first frame when the frame sticks out;
// - it starts filled with the frame's transparent index (graphic control extension) or 0, the frame
//   is decoded into its rectangle (a frame at x = 0 of width 0 fills the whole canvas, like
//   Pillow's tile setup), transparent pixels included;
// - the palette is the local one, else the global one; a palette that is the identity grey ramp
//   (entry i = (i,i,i)) makes an "L" image, whose pixels are their own grey level; in a "P" image,
//   indices past the palette's 2^bits entries are black;
// - the LZW stream is Pillow's: initial code sizes up to 12, codes past the table's next free entry
//   are a broken stream, zero-length sub-blocks do not end the data, and the image is done as soon as
//   its last pixel is written. Data running out first is a truncated file, as it is for Pillow
//   without LOAD_TRUNCATED_IMAGES (Pillow reads on past an early end code when more of the file is
//   left in 64 KiB steps; so do we).
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "image.h"

#define GIFBITS 12
#define GIFTABLE (1 << GIFBITS)
#define PIL_MAXBLOCK 65536  // ImageFile.MAXBLOCK: how much Pillow hands the decoder at a time

static int le16(const uint8_t *p) { return p[0] | (p[1] << 8); }

// GifImageFile._is_palette_needed: false when the table is exactly the grey ramp.
static int palette_needed(const uint8_t *p, int n) {
    for (int i = 0; i + 2 < n; i += 3)
        if (!(i / 3 == p[i] && p[i] == p[i + 1] && p[i + 1] == p[i + 2])) return 1;
    return 0;
}

typedef struct {
    const uint8_t *b;
    size_t n, pos;
} reader;

// GifImageFile.data(): a sub-block (possibly short at the end of the file), or NULL at a
// zero-length block or the end of the file. *len is 0 for an empty result.
static const uint8_t *sub_block(reader *r, size_t *len) {
    *len = 0;
    if (r->pos >= r->n) return NULL;
    size_t sz = r->b[r->pos++];
    if (sz == 0) return NULL;
    size_t got = r->n - r->pos < sz ? r->n - r->pos : sz;
    const uint8_t *p = r->b + r->pos;
    r->pos += got;
    *len = got;
    return p;
}

typedef struct {
    // configuration
    int bits, interlace;
    // geometry of the decoded rectangle inside the canvas
    int xoff, yoff, xsize, ysize, canvas_w;
    uint8_t *canvas;
    // state
    int x, y, step;
    int state;
    int clear, end, next, codesize, codemask, lastcode;
    uint8_t lastdata;
    int bufferindex;
    uint8_t buffer[GIFTABLE];
    uint16_t link[GIFTABLE];
    uint8_t data[GIFTABLE];
} lzw;

enum { LZW_DONE = 0, LZW_BROKEN = -1, LZW_TRUNCATED = -2 };

// Advances to the next row (Pillow's NEWLINE). Returns 1 when the image is complete.
static int newline(lzw *z) {
    z->x = 0;
    z->y += z->step;
    while (z->y >= z->ysize) {
        switch (z->interlace) {
        case 1:
            z->y = 4;
            z->interlace = 2;
            break;
        case 2:
            z->step = 4;
            z->y = 2;
            z->interlace = 3;
            break;
        case 3:
            z->step = 2;
            z->y = 1;
            z->interlace = 0;
            break;
        default: return 1;
        }
    }
    return 0;
}

// Decodes the LZW stream starting at d[off] the way Pillow's GifDecode consumes it.
static int lzw_decode(lzw *z, const uint8_t *d, size_t n, size_t off) {
    size_t pos = off;
    size_t avail = n - off < PIL_MAXBLOCK ? n : off + PIL_MAXBLOCK;
    int32_t bitbuffer = 0;
    int bitcount = 0, blocksize = 0;

    z->clear = 1 << z->bits;
    z->end = z->clear + 1;
    if (z->interlace) {
        z->interlace = 1;
        z->step = 8;
    } else {
        z->step = 1;
    }
    z->state = 1;
    z->x = z->y = 0;

    for (;;) {
        if (z->state == 1) {
            z->next = z->clear + 2;
            z->codesize = z->bits + 1;
            z->codemask = (1 << z->codesize) - 1;
            z->bufferindex = GIFTABLE;
            z->state = 2;
        }
        const uint8_t *p;
        int i;
        if (z->bufferindex < GIFTABLE) {
            i = GIFTABLE - z->bufferindex;
            p = &z->buffer[z->bufferindex];
            z->bufferindex = GIFTABLE;
        } else {
            while (bitcount < z->codesize) {
                if (blocksize > 0) {
                    int c = d[pos++];
                    blocksize--;
                    bitbuffer |= (int32_t)c << bitcount;
                    bitcount += 8;
                } else {
                    // A new sub-block: Pillow waits until the whole block is in its buffer.
                    while (pos >= avail || pos + 1 + d[pos] > avail) {
                        if (avail >= n) return LZW_TRUNCATED;
                        avail = n - avail < PIL_MAXBLOCK ? n : avail + PIL_MAXBLOCK;
                    }
                    blocksize = d[pos++];
                }
            }
            int c = (int)bitbuffer & z->codemask;
            bitbuffer >>= z->codesize;
            bitcount -= z->codesize;
            if (c == z->clear) {
                if (z->state != 2) z->state = 1;
                continue;
            }
            if (c == z->end) {
                // Pillow's decoder returns here and is called again only if the file has more.
                if (avail >= n) return LZW_TRUNCATED;
                avail = n - avail < PIL_MAXBLOCK ? n : avail + PIL_MAXBLOCK;
                continue;
            }
            i = 1;
            p = &z->lastdata;
            if (z->state == 2) {
                if (c > z->clear) return LZW_BROKEN;
                z->lastdata = (uint8_t)c;
                z->lastcode = c;
                z->state = 3;
            } else {
                int thiscode = c;
                if (c > z->next) return LZW_BROKEN;
                if (c == z->next) {
                    if (z->bufferindex <= 0) return LZW_BROKEN;
                    z->buffer[--z->bufferindex] = z->lastdata;
                    c = z->lastcode;
                }
                while (c >= z->clear) {
                    if (z->bufferindex <= 0 || c >= GIFTABLE) return LZW_BROKEN;
                    z->buffer[--z->bufferindex] = z->data[c];
                    c = z->link[c];
                }
                z->lastdata = (uint8_t)c;
                if (z->next < GIFTABLE) {
                    z->data[z->next] = (uint8_t)c;
                    z->link[z->next] = (uint16_t)z->lastcode;
                    if (z->next == z->codemask && z->codesize < GIFBITS) {
                        z->codesize++;
                        z->codemask = (1 << z->codesize) - 1;
                    }
                    z->next++;
                }
                z->lastcode = thiscode;
            }
        }
        // Copy the string into the image (frame 0 has no transparency skipping).
        for (int k = 0; k < i; k++) {
            z->canvas[(size_t)(z->y + z->yoff) * (size_t)z->canvas_w + (size_t)(z->xoff + z->x)] = p[k];
            if (++z->x >= z->xsize && newline(z)) return LZW_DONE;
        }
    }
}

int image_decode_gif(const uint8_t *b, size_t n, const char *name, uint64_t max_pixels, image_u8 *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (n < 13) return llava_fail("%s: truncated GIF (%zu-byte header)", name, n);
    if (memcmp(b, "GIF87a", 6) != 0 && memcmp(b, "GIF89a", 6) != 0) return llava_fail("%s: not a GIF", name);
    int W = le16(b + 6), H = le16(b + 8);
    int flags = b[10];
    reader r = {b, n, 13};
    const uint8_t *gpal = NULL;
    int gpal_n = 0;
    if (flags & 128) {
        int bits = (flags & 7) + 1;
        size_t sz = (size_t)3 << bits;
        if (r.pos + sz > n) return llava_fail("%s: truncated GIF (global colour table)", name);
        if (palette_needed(b + r.pos, (int)sz)) {
            gpal = b + r.pos;
            gpal_n = (int)sz / 3;
        }
        r.pos += sz;
    }

    // Pillow's _seek(0): extensions up to the first image descriptor; other bytes are skipped.
    int transparency = -1;
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0, interlace = 0, lzw_bits = 0;
    int have_local = 0;
    const uint8_t *lpal = NULL;
    int lpal_n = 0;
    for (;;) {
        if (r.pos >= n || b[r.pos] == ';') return llava_fail("%s: GIF without an image", name);
        int s = b[r.pos++];
        if (s == '!') {
            if (r.pos >= n) return llava_fail("%s: truncated GIF (extension)", name);
            int label = b[r.pos++];
            size_t blen;
            const uint8_t *blk = sub_block(&r, &blen);
            if (label == 249 && blk) {
                if (blen < 3) return llava_fail("%s: corrupt GIF (short graphic control extension)", name);
                if (blk[0] & 1) {
                    if (blen < 4) return llava_fail("%s: corrupt GIF (short graphic control extension)", name);
                    transparency = blk[3];
                }
            } else if (label == 254) {
                while (blk && blen) blk = sub_block(&r, &blen);
                continue;
            } else if (label == 255 && blk) {
                if (blen >= 11 && memcmp(blk, "NETSCAPE2.0", 11) == 0) blk = sub_block(&r, &blen);
            }
            for (;;) {
                blk = sub_block(&r, &blen);
                if (!blk || !blen) break;
            }
        } else if (s == ',') {
            if (r.pos + 9 > n) return llava_fail("%s: truncated GIF (image descriptor)", name);
            const uint8_t *d = b + r.pos;
            r.pos += 9;
            x0 = le16(d);
            y0 = le16(d + 2);
            x1 = x0 + le16(d + 4);
            y1 = y0 + le16(d + 6);
            if (x1 > W) W = x1;
            if (y1 > H) H = y1;
            int f = d[8];
            interlace = (f & 64) != 0;
            if (f & 128) {
                int bits = (f & 7) + 1;
                size_t sz = (size_t)3 << bits;
                if (r.pos + sz > n) return llava_fail("%s: truncated GIF (local colour table)", name);
                have_local = 1;
                if (palette_needed(b + r.pos, (int)sz)) {
                    lpal = b + r.pos;
                    lpal_n = (int)sz / 3;
                }
                r.pos += sz;
            }
            if (r.pos >= n) return llava_fail("%s: truncated GIF (image data)", name);
            lzw_bits = b[r.pos++];
            break;
        }
    }
    if (W <= 0 || H <= 0) return llava_fail("%s: zero-size GIF (%dx%d)", name, W, H);
    if ((uint64_t)W * (uint64_t)H > max_pixels)
        return llava_fail("%s: GIF of %dx%d pixels exceeds the %llu-pixel limit (decompression bomb?)", name, W, H,
                          (unsigned long long)max_pixels);
    // ImageFile.load -> decoder.setimage(im, extents)
    int xoff, yoff, xsize, ysize;
    if (x0 == 0 && x1 == 0) {
        xoff = yoff = 0;
        xsize = W;
        ysize = H;
    } else {
        xoff = x0;
        yoff = y0;
        xsize = x1 - x0;
        ysize = y1 - y0;
    }
    if (xsize <= 0 || ysize <= 0 || xoff + xsize > W || yoff + ysize > H)
        return llava_fail("%s: corrupt GIF (empty first frame %dx%d)", name, xsize, ysize);
    if (lzw_bits > 12) return llava_fail("%s: corrupt GIF (LZW code size %d)", name, lzw_bits);

    // The palette the frame uses: local, else global; NULL means an "L" image.
    const uint8_t *pal = have_local ? lpal : gpal;
    int pal_n = have_local ? lpal_n : gpal_n;

    size_t npix = (size_t)W * (size_t)H;
    uint8_t *canvas = malloc(npix);
    lzw *z = calloc(1, sizeof(lzw));
    image_u8 img = {0, 0, NULL};
    if (!canvas || !z || image_alloc(&img, W, H, name) != 0) {
        free(canvas);
        free(z);
        if (!img.rgb) return llava_fail("%s: out of memory for a %dx%d GIF", name, W, H);
        image_free(&img);
        return -1;
    }
    memset(canvas, transparency >= 0 ? transparency : 0, npix);
    z->bits = lzw_bits;
    z->interlace = interlace;
    z->xoff = xoff;
    z->yoff = yoff;
    z->xsize = xsize;
    z->ysize = ysize;
    z->canvas_w = W;
    z->canvas = canvas;
    int rc = lzw_decode(z, b, n, r.pos);
    free(z);
    if (rc != LZW_DONE) {
        free(canvas);
        image_free(&img);
        if (rc == LZW_TRUNCATED) return llava_fail("%s: truncated GIF (image data ends early)", name);
        return llava_fail("%s: corrupt GIF (broken LZW data stream)", name);
    }
    for (size_t i = 0; i < npix; i++) {
        int v = canvas[i];
        uint8_t *o = img.rgb + i * 3;
        if (!pal) {
            o[0] = o[1] = o[2] = (uint8_t)v;
        } else if (v < pal_n) {
            memcpy(o, pal + v * 3, 3);
        } else {
            o[0] = o[1] = o[2] = 0;
        }
    }
    free(canvas);
    *out = img;
    return 0;
}
