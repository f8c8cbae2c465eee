// Buffers on the CPU backend are plain host arrays of 4-byte elements for every kind (cpu.h), so
// upload and download are copies and `kind` only matters on backends that store bf16.
//
// Each allocation carries a 16-byte header with its size (the data stays 16-byte aligned), so the
// context can count the bytes in use and the peak (backend.h) that `llava plan` is checked against.
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cpu.h"
#include "kernels/op_require.h"

enum { HEADER = 16 };

void *cpu_alloc(llava_backend *be, int kind, size_t n) {
    req_kind(be, "alloc", kind);
    size_t bytes = n * 4;
    char *p = xcalloc(1, HEADER + bytes);
    memcpy(p, &bytes, sizeof bytes);
    be->bytes_in_use += bytes;
    if (be->bytes_in_use > be->bytes_peak) be->bytes_peak = be->bytes_in_use;
    return p + HEADER;
}

void cpu_free(llava_backend *be, void *ptr) {
    if (!ptr) return;
    char *p = (char *)ptr - HEADER;
    size_t bytes;
    memcpy(&bytes, p, sizeof bytes);
    LLAVA_REQUIRE(bytes <= be->bytes_in_use, "cpu_free: a buffer this context did not allocate");
    be->bytes_in_use -= bytes;
    free(p);
}

void cpu_zero(llava_backend *be, int kind, void *p, size_t n) {
    req_transfer(be, "zero", kind, p, p, n);
    memset(p, 0, n * 4);
}

// memmove: callers may copy a buffer onto itself, which memcpy leaves undefined.
void cpu_copy(llava_backend *be, int kind, void *dst, const void *src, size_t n) {
    req_transfer(be, "copy", kind, dst, src, n);
    memmove(dst, src, n * 4);
}

void cpu_upload(llava_backend *be, int kind, void *dst, const float *src, size_t n) {
    req_transfer(be, "upload", kind, dst, src, n);
    memcpy(dst, src, n * 4);
}

void cpu_download(llava_backend *be, int kind, float *dst, const void *src, size_t n) {
    req_transfer(be, "download", kind, dst, src, n);
    memcpy(dst, src, n * 4);
}

void cpu_upload_i32(llava_backend *be, int32_t *dst, const int32_t *src, size_t n) {
    req_transfer(be, "upload_i32", BUF_I32, dst, src, n);
    memcpy(dst, src, n * 4);
}

void cpu_stage(llava_backend *be, void *dst, const void *src, size_t bytes) {
    req_elementwise(be, "stage", bytes, "dst src", dst, src, NULL, NULL, NULL);
    memcpy(dst, src, bytes);
}

// Every op has finished when it returns.
void cpu_sync(llava_backend *be) {}

// Host memory is what this backend computes on: nothing to pin.
void *cpu_host_alloc(llava_backend *be, size_t bytes) { return xcalloc(1, bytes ? bytes : 1); }
void cpu_host_free(llava_backend *be, void *p) { free(p); }
