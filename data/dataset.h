// A prepared dataset: what `llava prep` writes to HDF5 and the loader reads back. Every sample's
// tokens and labels as LLaVA's preprocess returns them (IMAGE_TOKEN_INDEX -200 where the image goes,
// IGNORE_INDEX -100 where not supervised), its image (a path relative to the image folder, and
// optionally the preprocessed uint8 pixels), and LLaVA's modality length for the grouped sampler.
#ifndef LLAVA_DATA_DATASET_H
#define LLAVA_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t n;              // samples
    int64_t *offsets;       // (n + 1) sample i's tokens are [offsets[i], offsets[i+1])
    int32_t *input_ids;     // (offsets[n]) token ids, -200 at an image
    int32_t *labels;        // (offsets[n]) -100 where not supervised
    int32_t *modality_len;  // (n) sum of whitespace-split word counts over turns; < 0 for text-only
    char **sample_ids;      // (n) the JSON "id" of each sample
    char **image_paths;     // (n) relative path, or NULL for a text-only sample; several images' paths joined by '\n'
                            // (prep_image_count / prep_image_path, data/prep_record.h)
    uint8_t *flags;         // (n) PREP_TRUNCATED | PREP_MISMATCH | PREP_VIDEO (data/template.h); may be NULL (none)
    // Preprocessed pixels, when prep stored them: (n_pixels, S, S, 3) uint8 after resize and crop;
    // pixel_index[i] is sample i's row, or -1. image_size = S. NULL / 0 when not stored.
    int32_t *pixel_index;
    int image_size;
    // Attributes recorded at prep time, so a run can refuse a dataset made with other settings.
    char *image_folder;    // as given to prep (may be NULL)
    char *template_name;   // "plain", "vicuna_v1", ...
    char *tokenizer_mode;  // "hf431", ...
    char *aspect;          // "square" or "pad"
    int model_max_length;
    void *impl;  // the open HDF5 file (for pixel reads)
    // Added by `llava prep`'s reader (data/dataset.c); the layout is described in data/prep.h.
    int64_t *source_index;  // (n) the sample's position in the source JSON array
    char *tokenizer_path;   // the tokenizer.model prep used (as given to it), and its md5
    char *tokenizer_md5;
    char *source;         // the source JSON (as given to prep)
    int prep_image_size;  // the image size and checks prep ran with (image_size is 0 without pixels)
    int video_frames;     // the frames prep kept per video (prep_options.video_frames; 0: all)
    int checked_images;
    // Provenance: where this dataset came from, as prep recorded it, for a run to check it against what it asks
    // (train/build.c, train_open_dataset) and to write beside its checkpoints (state.json). With `source`,
    // `tokenizer_md5`, `template_name`, `tokenizer_mode`, `aspect`, `model_max_length` and `image_folder` above:
    char *path;             // the HDF5 file this was read from (as given to dataset_open)
    int64_t source_bytes;   // the source JSON's size in bytes (-1: not recorded)
    char *source_md5;       // its md5, 32 hex digits
    char *template_source;  // the template as given to prep: a built-in name, or the template JSON file
    int64_t records;        // elements of the source JSON array (-1: not recorded); n of them were written
} llava_dataset;

// Opens a dataset file written by `llava prep`; everything but the pixels is read into memory.
int dataset_open(llava_dataset *d, const char *path);
// Copies sample i's stored pixels (S*S*3 bytes). -1 when the dataset stores none for it.
// HDF5 is not thread-safe: every HDF5 call in dataset.c holds one process-wide mutex, so any thread may call
// this, one read at a time.
int dataset_read_pixels(const llava_dataset *d, int64_t i, uint8_t *out);
// The row of the sample with this JSON id (the first), or -1.
int64_t dataset_find_id(const llava_dataset *d, const char *id);
void dataset_close(llava_dataset *d);
// Whether `path` is an HDF5 file written by `llava prep` (its "format" attribute; any format version): 1 or 0.
int dataset_is_prep_file(const char *path);

#endif
