// A growable byte string, always NUL-terminated (the data room's text building: normalized text, prompts, output).
#ifndef LLAVA_DATA_STRBUF_H
#define LLAVA_DATA_STRBUF_H

#include <string.h>

#include "common/util.h"

typedef struct {
    char *p;
    size_t n, cap;
} strbuf;

// Room for `extra` more bytes and the NUL.
static inline void sb_reserve(strbuf *b, size_t extra) {
    if (b->n + extra + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + extra + 1) c *= 2;
        b->p = xrealloc(b->p, c);
        b->cap = c;
    }
}

static inline void sb_put(strbuf *b, const void *s, size_t n) {
    sb_reserve(b, n);
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static inline void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

#endif
