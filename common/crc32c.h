// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of every checkpoint file
// (train/checkpoint.c), as iSCSI, ext4 and many storage formats use it. On x86-64 with SSE4.2 the
// CPU's crc32 instruction computes it (several GB/s); elsewhere a table-driven loop, 8 bytes a step.
#ifndef LLAVA_COMMON_CRC32C_H
#define LLAVA_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Extends `crc` (0 to start) over n bytes: crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
uint32_t crc32c(uint32_t crc, const void *data, size_t n);
// The same, always by the table (for tests: both ways must agree).
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t n);
// The CRC of a whole file, or -1 with llava_errmsg() when it cannot be read.
int crc32c_file(const char *path, uint32_t *crc, uint64_t *bytes);

#ifdef __cplusplus
}
#endif

#endif
