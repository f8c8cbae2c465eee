// Base64 (RFC 4648 section 4, the standard alphabet) decoding, for images sent inside data: URLs.
#ifndef LLAVA_COMMON_BASE64_H
#define LLAVA_COMMON_BASE64_H

#include <stddef.h>
#include <stdint.h>

// The most bytes `len` characters of base64 can decode to.
size_t base64_decoded_max(size_t len);

// Decodes [in, in+len) into `out` (at least base64_decoded_max(len) bytes) and sets *out_len.
// ASCII whitespace (space, tab, CR, LF: MIME's line breaks) is skipped anywhere. Padding is optional,
// but when present it must complete the last group ("QQ==" or "QUI="), and nothing but whitespace may
// follow it. A final group of one character, a character outside the alphabet (the URL-safe "-_"
// included) and bits set past the last byte (RFC 4648 3.5: "QR==") are errors.
// 0, or -1 with llava_errmsg() saying what and at which character offset.
int base64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len);

#endif
