// common/base64.c: the test vectors of RFC 4648 section 10, every byte value round trip, MIME line
// breaks, optional padding, and each malformed input refused (bad characters, bad padding, a lone
// final character, bits past the data).
#include "common/base64.h"

#include <stdint.h>

#include "check.h"

// The test's own encoder (RFC 4648 section 4), to round-trip arbitrary bytes.
static char *encode(const uint8_t *in, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *o++ = A[v >> 18 & 63];
        *o++ = A[v >> 12 & 63];
        *o++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? A[v & 63] : '=';
    }
    *o = 0;
    return out;
}

// Decodes `in` and compares with `want` (NULL: must fail, with `err` in the message).
static void check_decode(const char *in, const char *want, const char *err) {
    size_t n = strlen(in), got = 0;
    uint8_t *out = malloc(base64_decoded_max(n) + 1);
    llava_clear_error();
    int rc = base64_decode(in, n, out, &got);
    if (want) {
        CHECK(rc == 0, "\"%s\" refused: %s", in, llava_errmsg());
        if (rc == 0) CHECK(got == strlen(want) && !memcmp(out, want, got), "\"%s\" -> \"%.*s\"", in, (int)got, out);
    } else {
        CHECK(rc != 0, "\"%s\" accepted", in);
        CHECK(strstr(llava_errmsg(), err) != NULL, "\"%s\": error \"%s\" lacks \"%s\"", in, llava_errmsg(), err);
    }
    free(out);
}

int main(void) {
    // RFC 4648 section 10.
    const char *vec[][2] = {{"", ""},
                            {"f", "Zg=="},
                            {"fo", "Zm8="},
                            {"foo", "Zm9v"},
                            {"foob", "Zm9vYg=="},
                            {"fooba", "Zm9vYmE="},
                            {"foobar", "Zm9vYmFy"}};
    for (int i = 0; i < 7; i++) {
        check_decode(vec[i][1], vec[i][0], NULL);
        char *e = encode((const uint8_t *)vec[i][0], strlen(vec[i][0]));
        CHECK_EQ_STR(e, vec[i][1]);
        free(e);
    }
    // Padding is optional; whitespace (MIME line breaks) is skipped anywhere, padding included.
    check_decode("Zg", "f", NULL);
    check_decode("Zm8", "fo", NULL);
    check_decode("Zm9vYmE", "fooba", NULL);
    check_decode("Zm9v\r\nYmFy\n", "foobar", NULL);
    check_decode(" Z g = = ", "f", NULL);
    check_decode("Zm9v\tYg=\n=", "foob", NULL);

    // Every byte value, at every length modulo 3.
    uint8_t all[258];
    for (int i = 0; i < 258; i++) all[i] = (uint8_t)(i * 7 + 3);
    for (size_t n = 255; n <= 258; n++) {
        char *e = encode(all, n);
        uint8_t out[260];
        size_t got = 0;
        CHECK(base64_decode(e, strlen(e), out, &got) == 0, "round trip of %zu bytes: %s", n, llava_errmsg());
        CHECK(got == n && !memcmp(out, all, n), "round trip of %zu bytes differs", n);
        CHECK(base64_decoded_max(strlen(e)) >= n, "decoded_max %zu < %zu", base64_decoded_max(strlen(e)), n);
        free(e);
    }
    CHECK_EQ_INT(base64_decoded_max(0), 0);
    CHECK_EQ_INT(base64_decoded_max(4), 3);
    CHECK_EQ_INT(base64_decoded_max(6), 6);

    // Malformed.
    check_decode("Zm9v!", NULL, "'!' at offset 4 is not in the alphabet");
    check_decode("Zm-v", NULL, "'-' at offset 2");  // the URL-safe alphabet is another encoding
    check_decode("Zm_v", NULL, "'_' at offset 2");
    check_decode("Zm\x01v", NULL, "byte 0x01 at offset 2");
    check_decode("Z", NULL, "one character left over");
    check_decode("Zm9vY", NULL, "one character left over");
    check_decode("Zg=", NULL, "do not complete the last group");
    check_decode("Zm8==", NULL, "do not complete the last group");
    check_decode("Zm9v=", NULL, "do not complete the last group");
    check_decode("====", NULL, "do not complete the last group");
    check_decode("Zg==Zg==", NULL, "'Z' at offset 4 follows the padding");
    check_decode("Zh==", NULL, "bits set past the data");  // RFC 4648 3.5: 'h' leaves a bit set
    check_decode("Zm9=", NULL, "bits set past the data");
    return check_done();
}
