// One record of LLaVA's JSON as `llava prep` reads it (data/prep.h): the bytes of one array element in, the
// sample's id, image and conversation out, or the kind and reason that keep it out of the file. Pure: no
// tokenizer, no files, so it is fuzzed on its own (tests/fuzz/fuzz_prep_record.c).
//
// Python's json and LLaVA's `'image' in sample` are the reference: the last of repeated keys wins, the image
// key alone makes a sample multimodal, and a string holding a NUL character (JSON "\u0000", or a raw 0 byte)
// is a different string from its prefix. cJSON ends its strings at the first NUL, so every NUL-holding string
// is found in the raw bytes first: such a key is a key no lookup matches (as in Python), and such an id, image
// path, "from" or "value" refuses the sample rather than silently using the part before the NUL.
#ifndef LLAVA_DATA_PREP_RECORD_H
#define LLAVA_DATA_PREP_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "template.h"

typedef struct {
    char *id;          // the record's "id" as text ("" when it has none); set whatever the outcome
    char *image;       // the "image" path; NULL for a text-only sample (no "image" key). A list of paths (LLaVA-NeXT /
                       // OneVision's multi-image samples) is kept as its paths joined by '\n' (prep_image_count)
    int n_images;      // paths in image (0, 1, or the list's length)
    int video;         // 1: the sample's "video" (a list of its frames' paths) is in image/n_images: one <image>
                       // stands for every frame (LLaVA-NeXT-Video / OneVision's layout)
    conv_turn *turns;  // n_turns, pointing into the parsed record (valid until prep_record_free)
    size_t n_turns;    // at least 1 when the record is usable
    int *turn_image;   // (n_turns) 1 where the turn's value contains "<image>"
    int64_t words;     // sum over turns of len(value.split()): LLaVA's modality length before its sign
    int kind;          // -1 when usable, else the PREP_KIND_* (data/prep.h) that keeps the sample out
    char *reason;      // why, when kind >= 0
    void *json;        // the parsed record (cJSON), owning the strings the turns point at
} prep_record;

// Parses one record: `json` holds `len` bytes followed by a NUL. Returns 0 with a usable record, or -1 with
// r->kind and r->reason set (a malformed record, or a refused image path). Free with prep_record_free either
// way. The image path, when there is one, has passed prep_check_image_path.
int prep_record_parse(const char *json, size_t len, prep_record *r);
void prep_record_free(prep_record *r);
// The number of paths in a stored image string (its '\n'-joined list; 0 for NULL).
int prep_image_count(const char *image);
// Path k of a stored image string, copied (NULL past the end).
char *prep_image_path(const char *image, int k);
// Of a video's F frames, the k-th of the n taken uniformly (LLaVA-NeXT's np.linspace(0, F - 1, n, dtype=int): each
// index the float64 value truncated, the last exactly F - 1); n >= F takes every frame (k itself).
int prep_video_frame(int F, int n, int k);

#endif
