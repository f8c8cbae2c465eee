// safetensors: read (mmap, single file or sharded through *.safetensors.index.json) and write.
//
// Every file is untrusted input. Opening checks, before any tensor is touched: the header size cap,
// valid UTF-8 JSON, known dtypes, sane shapes (no overflow), dtype x shape == byte length, names
// unique and non-empty, tensors contiguous from offset 0 without holes or overlaps, and the data
// section ending exactly at the end of the file. Any failure is one error naming the file and tensor.
#ifndef LLAVA_SAFETENSORS_H
#define LLAVA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"

#define ST_MAX_HEADER 100000000ull  // the reference implementation's cap
#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;  // byte range within the data section
    const uint8_t *data;  // points into the mapping; NULL for a header parsed without data
} st_tensor;

typedef struct {
    char *path;
    void *map;
    size_t map_len;
    uint64_t header_len;
    st_tensor *tensors;  // sorted by name
    int n_tensors;
    char **meta_keys, **meta_vals;
    int n_meta;
} st_file;

// Parses and validates a header of `header_len` bytes for a data section of `data_len` bytes.
// `path` only names the file in messages. On success the tensors have data == NULL.
int st_parse_header(const char *path, const uint8_t *header, size_t header_len, uint64_t data_len, st_file *out);
// Parses a whole file image held in memory (what the fuzz target calls).
int st_parse_buffer(const char *path, const uint8_t *buf, size_t len, st_file *out);
int st_open(st_file *f, const char *path);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key);

// Copies a tensor into fp32, converting F16/BF16/F64/integer types. `dst` holds t->numel floats.
int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *dst);

// A set of files that together hold a model: one file, the shards named by an index, or every
// *.safetensors file in a directory.
typedef struct {
    st_file *files;
    int n_files;
    // all tensors over all files, sorted by name; file_of[i] is the file holding entries[i]
    const st_tensor **entries;
    int *file_of;
    int n_entries;
    char *origin;  // what was opened, for messages
} st_set;

// `path` is a .safetensors file, a *.safetensors.index.json file, or a directory holding either.
// A directory without safetensors files is an error; use st_set_find_weights() to ask first.
int st_set_open(st_set *s, const char *path);
void st_set_close(st_set *s);
const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file);
// 1 when `dir` holds an index or at least one *.safetensors file, else 0.
int st_dir_has_weights(const char *dir);

// Writer: collects tensor descriptions, then streams header and data to a temporary file, fsyncs
// and renames it into place. Data pointers are borrowed until st_writer_save returns.
typedef struct {
    char *name;
    dtype_t dtype;      // stored type
    dtype_t src_dtype;  // type of *data (converted while writing when it differs)
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    const void *data;
} st_wentry;

typedef struct {
    st_wentry *entries;
    int n, cap;
    char **meta_keys, **meta_vals;
    int n_meta;
    // After st_writer_save: the CRC-32C (common/crc32c.h) and length of the bytes it wrote, computed
    // from memory as they went out, so a later read of the file can be checked against them.
    uint32_t crc32c;
    uint64_t bytes;
} st_writer;

void st_writer_init(st_writer *w);
// Adds a tensor stored as `dtype` from data of the same type.
int st_writer_add(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape, const void *data);
// Adds a tensor stored as `dtype` (F32, F16, BF16, F64) from fp32 data, converted while writing.
int st_writer_add_f32(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape, const float *data);
void st_writer_meta(st_writer *w, const char *key, const char *value);
int st_writer_save(st_writer *w, const char *path);
void st_writer_free(st_writer *w);

#endif
