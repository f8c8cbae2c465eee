// Streaming JSON array reader (see json_stream.h). The input is read in CHUNK pieces into one buffer that
// holds at most the current element plus one piece: the element's bytes are kept (moved to the front when
// the buffer is refilled) and everything before it is dropped.
#include "json_stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

#define CHUNK ((size_t)1 << 20)

enum { S_START, S_BEFORE, S_ELEM, S_TRAILER };

struct json_stream {
    FILE *f;
    const uint8_t *mem;
    size_t mem_len, mem_pos;
    char *buf;
    size_t cap, end, pos;          // buf[0..end) holds input bytes; pos is where scanning continues
    size_t elem_start, elem_last;  // the current element: its first byte, and one past its last non-space byte
    uint64_t base;                 // the input offset of buf[0]
    uint64_t size, count;
    size_t max_elem, chunk;
    int state, first, eof, done, bom;
    int in_str, esc, depth;
    uint64_t stack[JSON_STREAM_MAX_DEPTH / 64];  // bit set: '[' (1) or '{' (0) at each depth
    void (*on_read)(void *ctx, const void *bytes, size_t n);
    void *ctx;
    char err[512];
};

static json_stream *alloc_stream(void) {
    json_stream *s = xcalloc(1, sizeof *s);
    s->max_elem = JSON_STREAM_MAX_ELEMENT_DEFAULT;
    s->chunk = CHUNK;
    s->state = S_START;
    return s;
}

json_stream *json_stream_open(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        llava_fail("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        fclose(f);
        llava_fail("%s: not a file", path);
        return NULL;
    }
    json_stream *s = alloc_stream();
    s->f = f;
    s->size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    return s;
}

json_stream *json_stream_open_mem(const void *data, size_t len) {
    json_stream *s = alloc_stream();
    s->mem = data;
    s->mem_len = len;
    s->size = len;
    return s;
}

void json_stream_close(json_stream *s) {
    if (!s) return;
    if (s->f) fclose(s->f);
    free(s->buf);
    free(s);
}

void json_stream_set_max_element(json_stream *s, size_t max_bytes) { s->max_elem = max_bytes ? max_bytes : 1; }

void json_stream_set_read_size(json_stream *s, size_t bytes) { s->chunk = bytes ? bytes : 1; }

void json_stream_on_read(json_stream *s, void (*fn)(void *ctx, const void *bytes, size_t n), void *ctx) {
    s->on_read = fn;
    s->ctx = ctx;
}

uint64_t json_stream_offset(const json_stream *s) { return s->base + s->pos; }
uint64_t json_stream_size(const json_stream *s) { return s->size; }
uint64_t json_stream_count(const json_stream *s) { return s->count; }

static int fail(json_stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(json_stream *s, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(s->err, sizeof s->err, "JSON array, element %llu (byte %llu): %s", (unsigned long long)s->count,
             (unsigned long long)(s->base + s->pos), msg);
    s->done = -1;
    return llava_fail("%s", s->err);
}

// Reads the next piece. Keeps the current element's bytes (when inside one), drops what lies before.
// Returns the number of bytes read: 0 at the end of the input, -1 on a read error.
static long fill(json_stream *s) {
    if (s->eof) return 0;
    size_t keep = s->state == S_ELEM ? s->elem_start : s->pos;
    if (keep > 0) {
        memmove(s->buf, s->buf + keep, s->end - keep);
        s->base += keep;
        s->end -= keep;
        s->pos -= keep;
        if (s->state == S_ELEM) {
            s->elem_start -= keep;
            s->elem_last -= keep;
        }
    }
    size_t chunk = s->chunk;
    if (s->end + chunk + 1 > s->cap) {
        size_t c = s->cap ? s->cap : chunk + 1;
        while (c < s->end + chunk + 1) c *= 2;
        s->buf = xrealloc(s->buf, c);
        s->cap = c;
    }
    size_t got;
    if (s->f) {
        got = fread(s->buf + s->end, 1, chunk, s->f);
        if (got < chunk && ferror(s->f)) return -1;
    } else {
        got = s->mem_len - s->mem_pos < chunk ? s->mem_len - s->mem_pos : chunk;
        memcpy(s->buf + s->end, s->mem + s->mem_pos, got);
        s->mem_pos += got;
    }
    if (got == 0) {
        s->eof = 1;
        return 0;
    }
    if (s->on_read) s->on_read(s->ctx, s->buf + s->end, got);
    s->end += got;
    return (long)got;
}

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static const char *show(int c, char b[8]) {
    if (c >= 0x21 && c < 0x7f) snprintf(b, 8, "'%c'", c);
    else snprintf(b, 8, "0x%02x", c & 0xff);
    return b;
}

int json_stream_next(json_stream *s, const char **elem, size_t *len) {
    static const uint8_t BOM[3] = {0xef, 0xbb, 0xbf};
    if (s->done == 1) return 0;
    if (s->done == -1) return llava_fail("%s", s->err);
    char cb[8];
    for (;;) {
        if (s->pos == s->end) {
            long r = fill(s);
            if (r < 0) return fail(s, "read error: %s", strerror(errno));
            if (r == 0) {
                switch (s->state) {
                case S_START: return fail(s, "the input is empty or holds no '['");
                case S_TRAILER: s->done = 1; return 0;
                default: return fail(s, "the input ends inside the array (no closing ']')");
                }
            }
        }
        int c = (unsigned char)s->buf[s->pos];
        switch (s->state) {
        case S_START:
            if (s->bom < 3 && s->base + s->pos == (uint64_t)s->bom && c == BOM[s->bom]) {
                s->bom++;
                s->pos++;
                continue;
            }
            if (is_ws(c)) {
                s->pos++;
                continue;
            }
            if (c != '[') return fail(s, "expected a JSON array, found %s", show(c, cb));
            s->pos++;
            s->state = S_BEFORE;
            s->first = 1;
            continue;
        case S_BEFORE:
            if (is_ws(c)) {
                s->pos++;
                continue;
            }
            if (c == ']') {
                if (!s->first) return fail(s, "a ',' before the closing ']' (trailing comma)");
                s->pos++;
                s->state = S_TRAILER;
                continue;
            }
            if (c == ',') return fail(s, "an empty element (',' where a value should be)");
            s->state = S_ELEM;
            s->elem_start = s->elem_last = s->pos;
            s->in_str = s->esc = s->depth = 0;
            continue;
        case S_TRAILER:
            if (is_ws(c)) {
                s->pos++;
                continue;
            }
            return fail(s, "%s after the closing ']' of the array", show(c, cb));
        default: break;
        }
        // S_ELEM: scan what the buffer holds.
        char *b = s->buf;
        size_t p = s->pos, end = s->end;
        int ended = 0, closed = 0;
        while (p < end) {
            if (s->in_str) {
                if (s->esc) {
                    s->esc = 0;
                    p++;
                    continue;
                }
                while (p < end && b[p] != '"' && b[p] != '\\') p++;
                if (p == end) break;
                if (b[p] == '\\') s->esc = 1;
                else s->in_str = 0;
                p++;
                s->elem_last = p;
                continue;
            }
            c = (unsigned char)b[p];
            if (is_ws(c)) {
                p++;
                continue;
            }
            if (c == ',' && s->depth == 0) {
                ended = 1;
                break;
            }
            if ((c == ']' || c == '}') && s->depth == 0) {
                if (c == '}') {
                    s->pos = p;
                    return fail(s, "a '}' that closes nothing");
                }
                ended = closed = 1;
                break;
            }
            if (c == '"') {
                s->in_str = 1;
            } else if (c == '[' || c == '{') {
                if (s->depth >= JSON_STREAM_MAX_DEPTH) {
                    s->pos = p;
                    return fail(s, "nesting deeper than %d", JSON_STREAM_MAX_DEPTH);
                }
                uint64_t bit = (uint64_t)1 << (s->depth % 64);
                if (c == '[') s->stack[s->depth / 64] |= bit;
                else s->stack[s->depth / 64] &= ~bit;
                s->depth++;
            } else if (c == ']' || c == '}') {
                s->depth--;
                int open_sq = (s->stack[s->depth / 64] >> (s->depth % 64)) & 1;
                if (open_sq != (c == ']')) {
                    s->pos = p;
                    return fail(s, "a '%c' closes a '%c'", c, open_sq ? '[' : '{');
                }
            }
            p++;
            s->elem_last = p;
        }
        s->pos = p;
        if (s->pos - s->elem_start > s->max_elem)
            return fail(s, "the element is larger than %zu bytes (a record this large is not a LLaVA sample)",
                        s->max_elem);
        if (!ended) continue;  // refill and go on
        *elem = b + s->elem_start;
        *len = s->elem_last - s->elem_start;
        b[s->elem_last] = 0;  // a space or the terminator, already read
        s->pos = p + 1;
        s->count++;
        s->state = closed ? S_TRAILER : S_BEFORE;
        s->first = 0;
        return 1;
    }
}
