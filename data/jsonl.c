#include "jsonl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static int hex4(const char *p, uint32_t *v) {
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        x = x * 16 + (uint32_t)d;
    }
    *v = x;
    return 0;
}

static size_t put_utf8(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int json_string_decode(const char *s, size_t n, char **out, size_t *out_len) {
    size_t i = 0;
    while (i < n && is_ws(s[i])) i++;
    if (i >= n || s[i] != '"') return llava_fail("offset %zu: expected a JSON string", i);
    i++;
    char *o = xmalloc(n + 1);  // the decoded form is never longer than the literal
    size_t k = 0;
    for (;;) {
        if (i >= n) {
            free(o);
            return llava_fail("unterminated JSON string");
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            i++;
            break;
        }
        if (c < 0x20) {
            free(o);
            return llava_fail("offset %zu: raw control character 0x%02x in a JSON string", i, c);
        }
        if (c != '\\') {
            o[k++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= n) {
            free(o);
            return llava_fail("offset %zu: truncated escape", i);
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t u;
            if (i + 4 > n || hex4(s + i, &u)) {
                free(o);
                return llava_fail("offset %zu: bad \\u escape", i - 2);
            }
            i += 4;
            if (u >= 0xd800 && u <= 0xdbff) {
                uint32_t lo;
                if (i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u' && hex4(s + i + 2, &lo) == 0 && lo >= 0xdc00 &&
                    lo <= 0xdfff) {
                    i += 6;
                    k += put_utf8(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00), o + k);
                } else {
                    free(o);
                    return llava_fail("offset %zu: lone high surrogate \\u%04x", i - 6, (unsigned)u);
                }
            } else if (u >= 0xdc80 && u <= 0xdcff) {
                o[k++] = (char)(u - 0xdc00);  // surrogateescape: a raw byte
            } else if (u >= 0xdc00 && u <= 0xdfff) {
                free(o);
                return llava_fail("offset %zu: lone low surrogate \\u%04x", i - 6, (unsigned)u);
            } else {
                k += put_utf8(u, o + k);
            }
            break;
        }
        default: free(o); return llava_fail("offset %zu: unknown escape \\%c", i - 2, e);
        }
    }
    while (i < n && is_ws(s[i])) i++;
    if (i != n) {
        free(o);
        return llava_fail("offset %zu: text after the JSON string", i);
    }
    o[k] = 0;
    *out = o;
    if (out_len) *out_len = k;
    return 0;
}

void json_string_encode(const char *s, size_t n, strbuf *out) {
    sb_put(out, "\"", 1);
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        uint8_t c = u[i];
        char esc[16];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(out, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (named) sb_put(out, named, 2);
            else sb_put(out, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
            i++;
        } else if (c < 0x80) {
            sb_put(out, s + i, 1);
            i++;
        } else {
            size_t l = 0;
            if (c >= 0xc2 && c <= 0xdf) l = 2;
            else if (c >= 0xe0 && c <= 0xef) l = 3;
            else if (c >= 0xf0 && c <= 0xf4) l = 4;
            if (l && i + l <= n && utf8_valid(u + i, l)) {
                sb_put(out, s + i, l);
                i += l;
            } else {
                sb_put(out, esc, (size_t)snprintf(esc, sizeof esc, "\\udc%02x", c));
                i++;
            }
        }
    }
    sb_put(out, "\"", 1);
}
