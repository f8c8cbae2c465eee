// GGUF, the file format of ggml and llama.cpp (version 3, little-endian): a writer, a reader, and the
// export of a LLaVA model as the two files llama.cpp's LLaVA-1.5 path loads (docs/gguf.md):
//
//  - the language model as a "llama" GGUF: llama.* hyperparameters, the SentencePiece vocabulary as
//    tokenizer.ggml.*, tensors named and laid out as llama.cpp's convert_hf_to_gguf.py writes a
//    LlamaForCausalLM (Q and K rows permuted from Hugging Face's rotate-half order to the interleaved
//    pairs llama.cpp's RoPE rotates), matrices in F32, F16, BF16 or Q8_0 and norms in F32;
//  - the vision tower (up to the feature layer) and the projector as the "mmproj" file of llama.cpp's
//    LLaVA converter (tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py): clip.* keys, v.* and
//    mm.* tensors.
//
// The format, as the gguf package (gguf_writer.py, gguf_reader.py) writes and reads it: "GGUF", the
// version (u32), the tensor and key counts (u64), the keys (each a string, a value type u32 and the
// value; strings are a u64 length and UTF-8 bytes; arrays an element type u32, a u64 count and the
// elements), the tensor infos (name, dimension count u32, the dimensions u64 innermost first, ggml type
// u32, u64 offset into the data section), zero padding to the alignment (general.alignment, default
// 32), then each tensor's data padded to the alignment.
#ifndef LLAVA_MODEL_IO_GGUF_H
#define LLAVA_MODEL_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "model/llava.h"

#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

// Metadata value types (GGUFValueType in the gguf package).
typedef enum {
    GGUF_UINT8 = 0,
    GGUF_INT8 = 1,
    GGUF_UINT16 = 2,
    GGUF_INT16 = 3,
    GGUF_UINT32 = 4,
    GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_UINT64 = 10,
    GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12,
    GGUF_N_VTYPES
} gguf_vtype;
const char *gguf_vtype_name(int t);  // "UINT8" ... "FLOAT64", NULL when unknown

// The ggml tensor types this code converts (ggml_type numbers). The reader knows the block sizes of
// the other common types too, to walk files holding them; it converts these four.
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q8_0 = 8, GGML_TYPE_BF16 = 30 };
#define GGML_QK8_0 32  // values per Q8_0 block; a block is an fp16 scale and 32 int8: 34 bytes

const char *ggml_type_label(int t);  // "F32", "F16", "Q8_0", "BF16", ... or NULL when unknown
// Bytes of n values of type t: 0 for an unknown type or when n is not a whole number of blocks.
uint64_t ggml_type_nbytes(int t, uint64_t n);

// Q8_0 as ggml's reference quantizer makes it (quantize_row_q8_0_ref): per block of 32 values
// d = max|x| / 127 (fp32), stored as fp16; q = roundf(x * (1/d)) (0 when d is 0). n is a multiple of 32.
void q8_0_quantize(const float *x, uint8_t *out, size_t n);
// q * fp16 d.
void q8_0_dequantize(const uint8_t *in, float *out, size_t n);

// ---------------------------------------------------------------------------------------------
// Writer. Keys keep the order they are set in; setting a key twice is an error at save. Tensors keep
// theirs and are converted from fp32 when the file is written, one at a time.

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);

void gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_set_f32(gguf_writer *w, const char *key, float v);
void gguf_set_bool(gguf_writer *w, const char *key, int v);
void gguf_set_str(gguf_writer *w, const char *key, const char *s);
void gguf_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n);
void gguf_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
// Strings of the given lengths (not NUL-terminated).
void gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *s, const size_t *len, size_t n);

// Fills dst (the tensor's element count of fp32 values, in ggml order) for tensor `arg`. 0, or -1
// with an error.
typedef int (*gguf_fill_fn)(void *ctx, int arg, float *dst);

// A tensor of n_dims dimensions ne[0..n_dims), ne[0] the innermost (a PyTorch (O, I) matrix is
// ne = {I, O}), stored as `type` (F32, F16, BF16 or Q8_0; Q8_0 needs ne[0] % 32 == 0). Its values
// come from `data` (kept, not copied: it must live until the save) or, when data is NULL, from
// fill(ctx, arg, dst) at the save. -1 with an error for a bad shape or type or a duplicate name.
int gguf_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne, const float *data,
                    gguf_fill_fn fill, void *ctx, int arg);
int gguf_writer_n_tensors(const gguf_writer *w);
// The file's size once written.
uint64_t gguf_writer_size(const gguf_writer *w);

// Writes the file: to a temporary beside `path`, renamed over it when complete. 0, or -1 with an
// error (a value that F16 cannot hold is one: it would become infinite).
int gguf_writer_save(gguf_writer *w, const char *path);

// ---------------------------------------------------------------------------------------------
// Reader. The whole file is read into memory and checked before anything is returned: the magic and
// version, every length against the bytes left, value types, UTF-8 keys and names, unique keys and
// tensor names, dimensions (1..4, no overflow), known tensor types with whole blocks, offsets aligned
// and inside the data section, and tensors not overlapping.

typedef struct {
    char *key;
    int type;          // gguf_vtype
    int arr_type;      // for an array: its elements' type
    uint64_t n;        // for an array: its element count; 1 otherwise
    const uint8_t *p;  // the value's bytes as stored: a scalar's bytes, a string's bytes after its
    size_t size;       // length, an array's elements after type and count (each string with its length)
} gguf_kv;

typedef struct {
    char *name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];  // ne[0] innermost; 1 past n_dims
    int type;                   // ggml type
    uint64_t offset;            // into the data section
    uint64_t numel, nbytes;
    const uint8_t *data;
} gguf_tensor;

typedef struct {
    uint8_t *buf;
    size_t len;
    uint32_t version;
    int n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset;  // where the data section starts in the file
} gguf_file;

// Reads and checks a file (at most 64 GiB). 0, or -1 with an error naming the file.
int gguf_open(gguf_file *f, const char *path);
// The same on bytes in memory (copied); `what` names them in messages.
int gguf_parse(gguf_file *f, const void *data, size_t len, const char *what);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
// Typed scalars: 0, or -1 when the key is absent or of another type.
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
int gguf_get_f32(const gguf_file *f, const char *key, float *out);
int gguf_get_bool(const gguf_file *f, const char *key, int *out);
// A string value (not NUL-terminated: *len bytes), or NULL.
const char *gguf_get_str(const gguf_file *f, const char *key, size_t *len);
// Element i of an array of strings (walks the array: O(i)), or NULL.
const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, size_t *len);
// Element i of an array of 4-byte numbers (UINT32, INT32, FLOAT32) as its raw bits.
uint32_t gguf_arr_u32(const gguf_kv *kv, uint64_t i);

// A tensor's values as fp32 (F32, F16, BF16 or Q8_0); out holds t->numel floats. 0, or -1.
int gguf_tensor_to_f32(const gguf_tensor *t, float *out);

// ---------------------------------------------------------------------------------------------
// The LLaVA export.

typedef enum { GGUF_OUT_F32 = 0, GGUF_OUT_F16, GGUF_OUT_BF16, GGUF_OUT_Q8_0 } gguf_out_type;
int gguf_out_type_parse(const char *s, gguf_out_type *out);  // "f32", "f16", "bf16", "q8_0"
const char *gguf_out_type_name(gguf_out_type t);

typedef struct {
    int n_tensors;
    int n_fallback;  // Q8_0 matrices whose rows are not whole blocks, written as F16
    uint64_t bytes;  // the file's size
} gguf_export_info;

// The language model as a "llama" GGUF at `path`, with the vocabulary of `tok` (its pieces must not
// outnumber the model's vocabulary; ids past them become the model's <image> and <pad> tokens and
// [PADn] placeholders, as the converter pads). `name` is general.name. 0, or -1 with an error.
int gguf_export_lm(const llava_model *m, const tokenizer *tok, gguf_out_type t, const char *name, const char *path,
                   gguf_export_info *info);
// The vision tower (its layers up to the feature layer) and the projector as llama.cpp's mmproj
// file: F16 matrices (F32 with t == GGUF_OUT_F32; the patch embedding always F16, as the converter
// writes it), F32 vectors. Refuses what llama.cpp's LLaVA graph cannot run (a single-Linear
// projector, a projector without biases, the CLS feature kept).
int gguf_export_mmproj(const llava_model *m, gguf_out_type t, const char *name, const char *path,
                       gguf_export_info *info);

#endif
