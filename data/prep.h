// llava prep: LLaVA's JSON array and image folder in, one HDF5 file out (data/dataset.h is its reader).
//
// The JSON is streamed (data/json_stream.h): memory is bounded by a few blocks of records, never by the file.
// A block of records is read in order, processed on all cores (parse, template and masks of data/template.h,
// LLaVA's modality length, image path checks, image decode and optionally preprocessing), and written in
// input order, so the file does not depend on the number of threads. Every HDF5 write is a whole chunk in
// a sequence that depends only on the data, and object timestamps are off: the same inputs give the same
// bytes.
//
// What happens to a sample (ARCHITECTURE.md decision 7), each kind counted and listed by id in the report:
//   written          tokens, labels, modality length, image path, id (and pixels with store_pixels)
//     mismatch       written with every label IGNORE_INDEX, as LLaVA trains on it (flag PREP_MISMATCH)
//     truncated      written cut at model_max_length, as LLaVA's collator cuts it (flag PREP_TRUNCATED)
//   missing_image    not written: the image file does not exist
//   unreadable_image not written: the image does not decode (corrupt, truncated, unsupported, too large)
//   path_refused     not written: the image path is absolute, empty, has a ".." component, or holds a NUL
//                    character (JSON "\u0000": cJSON's copy would end there and open another file)
//   malformed        not written: not a JSON object, no "conversations" list of {"from","value"} strings,
//                    an "image" that is not a string, a conversation the template refuses, no words at all
//                    (LLaVA's length-grouped sampler asserts a non-zero length), or a NUL character in the id, a
//                    "from" or a "value" (data/prep_record.h)
//   no_image_token   not written: an "image" but no <image> token: none in the conversation, only in a first
//                    turn the template drops, or cut off by model_max_length. LLaVA-1.5 loads the image and
//                    trains on the text alone (prepare_inputs_labels_for_multimodal splices a zero-length slice
//                    of its features); the loader cannot pair an image with no token, and the image is almost
//                    surely what the answer is about, so the sample is left out with that reason.
//   extra_image_token not written: more <image> tokens than images: <image> in several turns (each turn's are
//                    merged into one by preprocess_multimodal), or an <image> in a sample without an "image"
//                    (the plain template tokenizes it; LLaVA would pair it with a blank image). LLaVA-1.5 takes
//                    one image per sample: extra tokens take the next sample's image or fail (issue #732).
//   image_in_answer  written (flag none), listed: the one <image> is in an answer. LLaVA-1.5 trains on it as
//                    it is (the image spliced into the answer, its positions unsupervised), and so does the
//                    loader; it is listed because the question is then asked before the image is seen.
// With `strict`, the first sample that is not written or is masked for a mismatch fails the run instead.
//
// HDF5 layout (format_version 1), all 1-D unless noted, n = samples written, T = total tokens:
//   /input_ids int32 (T), /labels int32 (T)     sample i is [offsets[i], offsets[i+1]); -200 image, -100 ignored
//   /offsets int64 (n+1)
//   /modality_lengths int32 (n)                 sum over turns of len(value.split()); negative for text-only
//   /flags uint8 (n)                            PREP_TRUNCATED | PREP_MISMATCH (data/template.h)
//   /source_index int64 (n)                     the sample's position in the JSON array
//   /sample_id_chars uint8, /sample_id_offsets int64 (n+1)    id i is chars[off[i]:off[i+1]] (UTF-8)
//   /image_path_chars uint8, /image_path_offsets int64 (n+1)  likewise; empty = text-only
//   /pixels uint8 (n_pixels, S, S, 3), /pixel_index int32 (n) only with store_pixels; row or -1 (text-only)
//   root attributes: format, format_version, template, template_source, tokenizer, tokenizer_md5,
//   tokenizer_mode, aspect, image_size, model_max_length, image_folder, source, source_bytes, source_md5,
//   checked_images, and the counts (records, samples, missing_image, ...).
// Strings are stored as bytes plus offsets rather than HDF5 variable-length strings: their global heap can
// carry uninitialised bytes into the file, which would break byte-identical re-runs. In h5py:
//   ids = f["sample_id_chars"][:].tobytes(); off = f["sample_id_offsets"][:]; ids[off[i]:off[i+1]].decode()
#ifndef LLAVA_DATA_PREP_H
#define LLAVA_DATA_PREP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "image.h"
#include "tokenizer.h"

#define PREP_FORMAT "llava.c prepared dataset"
#define PREP_FORMAT_VERSION 1

typedef struct {
    const char *data_path;       // LLaVA's JSON array
    const char *image_folder;    // required unless check_images and store_pixels are both 0
    const char *tokenizer_path;  // tokenizer.model
    const char *template_name;   // "plain", "vicuna_v1" (alias "v1"), or a template JSON file (no default)
    const char *out_path;        // the HDF5 file
    const char *report_path;     // NULL: out_path less ".h5"/".hdf5", plus ".report.json"
    tok_mode mode;
    int model_max_length;  // 0 = no limit
    image_aspect aspect;
    int image_size;  // S of the stored pixels (336)
    int store_pixels;
    int check_images;  // decode every image to find unreadable ones (on by default)
    int anyres;        // the run tiles its images (LLaVA-NeXT's anyres): recorded as the aspect; no stored pixels
    int video_frames;  // a video sample's frames: uniformly N of them (numpy.linspace(0, F - 1, N, dtype=int), as
                       // LLaVA-NeXT samples), when it has more; 0 = all (data.video_frames)
    int threads;       // 0: every core this process may use
    int strict;
    int force;     // write over an existing out_path (or report) that prep did not write; never over the input
    int progress;  // a progress bar (or, off a terminal, a line now and then) on stderr
    int compress;  // deflate level (0-9) of the token and per-sample datasets; pixels are stored raw
    size_t block;  // records per block (0: chosen from the thread count)
    // A signal handler's flag (NULL: none): once it holds a signal number the workers stop taking samples, and
    // prep_run removes its temporary file and fails with "interrupted by signal N" (unless the output was
    // already in place). The caller's handler only stores into it (atomic_int is lock-free: signal-safe).
    const atomic_int *stop;
    // Check only (`llava data check`): every sample goes through the same pipeline and is counted and reported
    // alike, but nothing is written: no HDF5 file, no temporary file, no report file (out_path, report_path and
    // force are not used; out_path may be NULL). The report, byte for byte what prep would write but for its
    // "out" (null), goes to report_to when that is set. With strict, the first bad sample fails as in a real run.
    int dry_run;
    FILE *report_to;
} prep_options;

void prep_options_default(prep_options *o);

// Kinds of samples, as counted and reported (index into prep_counts.kind).
enum {
    PREP_KIND_MISSING_IMAGE,
    PREP_KIND_UNREADABLE_IMAGE,
    PREP_KIND_PATH_REFUSED,
    PREP_KIND_MALFORMED,
    PREP_KIND_MISMATCH,
    PREP_KIND_TRUNCATED,
    PREP_KIND_NO_IMAGE_TOKEN,
    PREP_KIND_EXTRA_IMAGE_TOKEN,
    PREP_KIND_IMAGE_IN_ANSWER,
    PREP_N_KINDS
};
// "missing_image", "unreadable_image", "path_refused", "malformed", "mismatch", "truncated", "no_image_token",
// "extra_image_token", "image_in_answer"
const char *prep_kind_name(int kind);
// 1 for the kinds that are written (with a note: a mismatch masked, a truncation, an <image> in an
// answer), 0 for those left out.
int prep_kind_written(int kind);
// The kind as the summaries print it: "left out, image missing", "written masked (...)", ...
const char *prep_kind_summary(int kind);

typedef struct {
    uint64_t records;                // elements of the JSON array
    uint64_t written;                // samples in the file
    uint64_t with_image, text_only;  // of those written
    uint64_t tokens;                 // total input ids written
    uint64_t pixels;                 // pixel rows written
    uint64_t kind[PREP_N_KINDS];
    double seconds;
    int threads;
} prep_counts;

// Runs the whole preparation. The HDF5 file appears (atomically) only when the run succeeds; the report
// (JSON: the counts and, per kind, every sample's index, id and reason) is written beside it. Neither is ever
// written over the input JSON (the same file, however its path is spelled), and an existing file in their place
// must be one prep wrote (a dataset; a report), unless `force`.
// Returns 0, or -1 with llava_errmsg(). *counts may be NULL.
int prep_run(const prep_options *o, prep_counts *counts);

// The report path for an output path (malloc'd): "x.h5" -> "x.report.json".
char *prep_report_path(const char *out_path);

// len(s.split()) in Python: the number of runs of non-whitespace (str.isspace) characters. Bytes that are
// not valid UTF-8 count as non-space.
int64_t prep_word_count(const char *s, size_t n);

// Whether an image path may be joined to the image folder: 0, or -1 with *why set ("an absolute path", ...).
int prep_check_image_path(const char *path, const char **why);

// The text a sample's tokens stand for, piece by piece as the model sees them: "▁" becomes a space, byte
// pieces are reassembled, "<s>" and "</s>" are shown, IMAGE_TOKEN_INDEX is "<image>", and the dummy-prefix
// space that starts each tokenized chunk (after "<s>" or an image) is dropped. Supervised tokens (labels not
// IGNORE_INDEX) are wrapped in `open` ... `close` (NULL: not marked). Returns a malloc'd NUL-terminated string
// (its length in *len), or NULL with an error for an id out of the tokenizer's range.
char *prep_render_text(const tokenizer *t, const int32_t *ids, const int32_t *labels, size_t n, const char *open,
                       const char *close, size_t *len);

// MD5 (RFC 1321), for provenance attributes: the tokenizer file's and the source JSON's.
typedef struct {
    uint32_t h[4];
    uint64_t n;
    uint8_t buf[64];
} prep_md5;
void prep_md5_init(prep_md5 *m);
void prep_md5_update(prep_md5 *m, const void *data, size_t n);
void prep_md5_hex(prep_md5 *m, char out[33]);  // finishes and writes 32 hex digits and a NUL
// A whole file's md5 (read in pieces) and size (*size may be NULL). 0, or -1 with an error naming the file.
int prep_file_md5(const char *path, char hex[33], uint64_t *size);

#endif
