#include "base64.h"

#include "util.h"

size_t base64_decoded_max(size_t len) { return len / 4 * 3 + (len % 4 ? 3 : 0); }

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int base64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len) {
    size_t n = 0;
    uint32_t acc = 0;
    int have = 0;  // characters in the current group of four
    size_t i = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (is_space(c)) continue;
        if (c == '=') break;
        int v = b64_value(c);
        if (v < 0) {
            if (c >= 0x20 && c < 0x7f)
                return llava_fail("base64: character '%c' at offset %zu is not in the alphabet", c, i);
            return llava_fail("base64: byte 0x%02x at offset %zu is not in the alphabet", c, i);
        }
        acc = acc << 6 | (uint32_t)v;
        if (++have == 4) {
            out[n++] = (uint8_t)(acc >> 16);
            out[n++] = (uint8_t)(acc >> 8);
            out[n++] = (uint8_t)acc;
            acc = 0;
            have = 0;
        }
    }
    size_t pad_at = i;
    int pads = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (is_space(c)) continue;
        if (c != '=') return llava_fail("base64: '%c' at offset %zu follows the padding", c, i);
        pads++;
    }
    if (have == 1) return llava_fail("base64: the input ends inside a group (one character left over)");
    if (pads && (have == 0 || have + pads != 4))
        return llava_fail("base64: %d padding character%s at offset %zu do not complete the last group", pads,
                          pads == 1 ? "" : "s", pad_at);
    if (have == 2) {
        if (acc & 0xf) return llava_fail("base64: the last group has bits set past the data");
        out[n++] = (uint8_t)(acc >> 4);
    } else if (have == 3) {
        if (acc & 0x3) return llava_fail("base64: the last group has bits set past the data");
        out[n++] = (uint8_t)(acc >> 10);
        out[n++] = (uint8_t)(acc >> 2);
    }
    *out_len = n;
    return 0;
}
