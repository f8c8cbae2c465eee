// NF4 with double quantisation, bit for bit as bitsandbytes stores a QLoRA model's frozen weights:
// quantize_4bit(W, blocksize=64, compress_statistics=True, quant_type="nf4", quant_storage=uint8),
// which is what transformers' BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
// bnb_4bit_use_double_quant=True) and LLaVA's --bits 4 apply to every nn.Linear of the language model
// (not lm_head, not mm_projector; the vision tower is loaded unquantised).
//
// The rule is bitsandbytes' CUDA kernels' (what QLoRA users run), re-stated and checked by
// tools/reference/make_nf4_goldens.py, whose docstring lists where bitsandbytes' CPU path differs:
//   - A weight of shape (out, in) is flattened row-major (n = out * in) and cut into blocks of 64
//     consecutive values, so blocks run along `in`; the last block may be shorter (n % 64 values).
//   - absmax[b] = max |w| in block b; each w becomes the NF4 level nearest to w * (1/absmax[b]), by the
//     kernel's 15 fixed thresholds (the levels' midpoints; a value exactly on one keeps the lower code).
//     An all-zero block codes every value 0 (level -1; 0 * inf is NaN), which dequantises to -0.
//   - Two codes a byte, the first value in the HIGH nibble. Odd n: the last byte's low nibble is the
//     code of a 0 in the last block (7, or 0 if that block is all zero).
//   - Double quantisation: offset = mean(absmax); absmax - offset is coded in 8 bits (the signed dynamic
//     map, create_dynamic_map(signed=True)) in blocks of 256 statistics, each with its fp32 absmax2.
//   - Dequantisation: absmax' = code2[q] * absmax2 + offset (two roundings), w' = nf4[code] * absmax'
//     in fp32. bitsandbytes returns w' in the weight's own dtype (bf16 for a bf16 model), rounded to
//     nearest even: nf4_dequantize_as does that rounding, nf4_dequantize gives the fp32 products.
// The kernels are built with --use_fast_math: subnormals are flushed to zero as they are there.
// Not reproduced: the GPU's reciprocal 1/absmax is approximate (within 1 ulp), ours is exact. For bf16
// weights no (value, absmax) pair can change code through that ulp (checked exhaustively); for fp16
// exactly one mantissa pair can; fp32 weights can where w/absmax is within an ulp of a threshold. And
// the GPU's offset is torch.mean's float tree sum times fp32(1/nblocks); ours is the exact sum, rounded
// once, times the same factor (equal unless the tree's rounding moves the sum's last bit).
#ifndef LLAVA_MODEL_NF4_H
#define LLAVA_MODEL_NF4_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"

#define NF4_BLOCK 64        // weights per absmax
#define NF4_STAT_BLOCK 256  // absmaxes per absmax2
#define NF4_MAX_DIMS 4

typedef struct {
    size_t n;                     // weights quantised (the flattened tensor)
    int ndim;                     // shape of the weight, for callers (nf4_quantize sets (n)); a
    int64_t shape[NF4_MAX_DIMS];  // matrix's caller sets (out, in), as bitsandbytes' quant_state.shape
    dtype_t dtype;                // the weight's dtype (F32 from nf4_quantize; BF16/F16 set by the
                                  // caller): what bitsandbytes' dequantize_4bit returns
    size_t n_blocks;              // ceil(n / 64)
    size_t n_stat_blocks;         // ceil(n_blocks / 256)
    uint8_t *packed;              // ((n + 1) / 2) two 4-bit codes a byte, the first in the high nibble
    uint8_t *absmax_q;            // (n_blocks) 8-bit code of absmax[b] - offset in code2
    float *absmax2;               // (n_stat_blocks) max |absmax - offset| over each 256 blocks
    float offset;                 // mean of the n_blocks absmaxes
    const float *code;            // (16) the NF4 levels, ascending (shared, not owned)
    const float *code2;           // (256) the signed dynamic map, ascending (shared, not owned)
} nf4_tensor;

// The 16 NF4 levels and the 256-entry map of the statistics (bitsandbytes' quant_map and
// nested_quant_map), ascending.
extern const float nf4_code[16];
extern const float nf4_dynamic_code[256];

// Quantises n values w (n >= 1): the weight's values widened exactly to fp32 (bf16, fp16 or fp32).
// Returns 0, or -1 (llava_fail) for n == 0 or a value that is NaN or infinite (bitsandbytes would code
// such a block to garbage and poison the offset of the whole tensor). q is zeroed first; free with nf4_free.
int nf4_quantize(const float *w, size_t n, nf4_tensor *q);
// The n dequantised values as fp32 products, before any rounding to the weight's dtype (what
// dequantize_4bit returns for an fp32 weight). out holds q->n floats.
void nf4_dequantize(const nf4_tensor *q, float *out);
// The same values rounded to nearest even to `dtype` (DT_F32, DT_BF16 or DT_F16) and widened back to
// fp32 exactly, as dequantize_4bit returns them for a weight of that dtype. -1 (llava_fail) for another dtype.
int nf4_dequantize_as(const nf4_tensor *q, dtype_t dtype, float *out);
void nf4_free(nf4_tensor *q);

// Bytes nf4_quantize stores for n weights: the packed codes, one byte per 64-block, one fp32 per
// 256 blocks and the fp32 offset (the two code tables are shared). About 4.127 bits per weight.
size_t nf4_bytes(size_t n);

#endif
