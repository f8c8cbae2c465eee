// The HDF5 writer of `llava prep` (layout in prep.h). Internal to data/prep*.c.
//
// Byte-identical output on re-runs: object timestamps off on the root group and every dataset, library
// version bounds fixed (1.8 format), explicit zero fill values allocated with each chunk, and every write
// is one chunk staged in memory, issued in an order that depends only on the samples (never on threads or
// block sizes). HDF5 is not thread-safe: one thread owns a writer.
#ifndef LLAVA_DATA_PREP_H5_H
#define LLAVA_DATA_PREP_H5_H

#include <stddef.h>
#include <stdint.h>

typedef struct prep_writer prep_writer;

// Creates (truncates) `path`. image_size > 0 adds /pixels and /pixel_index. compress: deflate level 0-9.
prep_writer *prep_writer_create(const char *path, int image_size, int compress);

typedef struct {
    const int32_t *ids, *labels;
    size_t n_tokens;
    int32_t modality_len;
    uint8_t flags;
    int64_t source_index;
    const char *id;         // "" when the record had none
    const char *image;      // NULL: text-only
    const uint8_t *pixels;  // S*S*3, or NULL
} prep_writer_sample;

int prep_writer_add(prep_writer *w, const prep_writer_sample *s);

// Root attributes, written at close.
int prep_writer_attr_str(prep_writer *w, const char *name, const char *value);
int prep_writer_attr_int(prep_writer *w, const char *name, int64_t value);

// Writes what is staged and closes the file. Returns 0 or -1; frees w either way.
int prep_writer_close(prep_writer *w);
// Closes without caring (after an error); the caller removes the file.
void prep_writer_abort(prep_writer *w);

// HDF5's automatic error printing off (we report errors as values). Idempotent.
void prep_h5_quiet(void);

#endif
