// Buffers on the CPU backend are plain host arrays of 4-byte elements for every kind (cpu.h), so
// upload and download are copies and `kind` only matters on backends that store bf16.
#include <stdlib.h>
#include <string.h>

#include "../../common/util.h"
#include "cpu.h"

void *cpu_alloc(int kind, size_t n) { return xcalloc(n, 4); }

void cpu_free(void *p) { free(p); }

void cpu_zero(int kind, void *p, size_t n) { memset(p, 0, n * 4); }

// memmove: callers may copy a buffer onto itself, which memcpy leaves undefined.
void cpu_copy(int kind, void *dst, const void *src, size_t n) { memmove(dst, src, n * 4); }

void cpu_upload(int kind, void *dst, const float *src, size_t n) { memcpy(dst, src, n * 4); }

void cpu_download(int kind, float *dst, const void *src, size_t n) { memcpy(dst, src, n * 4); }

void cpu_upload_i32(int32_t *dst, const int32_t *src, size_t n) { memcpy(dst, src, n * 4); }

// Every op has finished when it returns.
void cpu_sync(void) {}
