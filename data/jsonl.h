// JSON Lines of strings: the input of `llava tokenize` and of the tokenizer test corpus.
//
// A JSON string carries any Unicode text, but not bytes that are not UTF-8. Python's "surrogateescape" convention
// fills that gap and is what tools/reference writes: a lone escaped low surrogate \udc80..\udcff stands for the raw
// byte 0x80..0xff. Raw bytes inside the quotes are passed through unchanged; "\u0000" gives a NUL byte (the
// result carries its length).
#ifndef LLAVA_DATA_JSONL_H
#define LLAVA_DATA_JSONL_H

#include <stddef.h>

#include "strbuf.h"

// Decodes the JSON string literal at s[0..n) (leading/trailing whitespace allowed, nothing else) into a
// malloc'ed, NUL-terminated buffer. Returns 0, or -1 with an error naming the problem and its offset.
int json_string_decode(const char *s, size_t n, char **out, size_t *out_len);

// Appends the JSON string literal for [s, s+n) to *out: UTF-8 passes through, control characters and quotes are
// escaped, a byte that is not part of valid UTF-8 becomes \udcXX.
void json_string_encode(const char *s, size_t n, strbuf *out);

#endif
