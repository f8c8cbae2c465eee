// A streaming reader of one JSON array: yields the bytes of each top-level element in turn, so that a file
// far larger than memory (LLaVA's 665K-sample JSON is about 1 GB) is read with memory bounded by its
// largest element. The scanner finds element boundaries only (strings, escapes, nesting); each element's
// content is then parsed on its own (cJSON), so a malformed record is one bad sample, not a dead file.
//
// What is fatal (the boundaries cannot be trusted after it): no '[' at the start, a closing bracket that does
// not match, an empty element (",,", "[,", a trailing ","), an unterminated string or array at the end of the
// input, nesting deeper than JSON_STREAM_MAX_DEPTH, an element larger than the limit, or anything but
// whitespace after the closing ']'. A UTF-8 byte order mark before the '[' is skipped.
#ifndef LLAVA_DATA_JSON_STREAM_H
#define LLAVA_DATA_JSON_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define JSON_STREAM_MAX_ELEMENT_DEFAULT ((size_t)64 << 20)
#define JSON_STREAM_MAX_DEPTH 1024

typedef struct json_stream json_stream;

// Opens a file (read in pieces, never whole) or a memory buffer (not copied; it must outlive the stream).
// NULL with llava_errmsg() when the file cannot be opened.
json_stream *json_stream_open(const char *path);
json_stream *json_stream_open_mem(const void *data, size_t len);
void json_stream_close(json_stream *s);

// The largest element accepted, in bytes (default JSON_STREAM_MAX_ELEMENT_DEFAULT).
void json_stream_set_max_element(json_stream *s, size_t max_bytes);
// How many bytes each read asks for (default 1 MiB). Small values exercise the refill paths in tests.
void json_stream_set_read_size(json_stream *s, size_t bytes);
// Called with every piece of the input in order as it is read (for a checksum of the whole file).
void json_stream_on_read(json_stream *s, void (*fn)(void *ctx, const void *bytes, size_t n), void *ctx);

// The next element: returns 1 with *elem pointing at its bytes (leading and trailing whitespace removed,
// NUL-terminated at elem[*len]; valid until the next call), 0 when the array has ended (the rest of the input
// is whitespace), or -1 with an error naming the element index and byte offset. After 0 or -1 it keeps
// returning the same.
int json_stream_next(json_stream *s, const char **elem, size_t *len);

uint64_t json_stream_offset(const json_stream *s);  // bytes of the input consumed so far
uint64_t json_stream_size(const json_stream *s);    // the input's size in bytes (a file's size when opened)
uint64_t json_stream_count(const json_stream *s);   // elements returned so far

#endif
