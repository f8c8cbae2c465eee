// The op cases (opcheck.h): every shape the op checks and the kernel benchmark run, with its draws
// and its tolerances. Sizes are odd on purpose in the correctness cases (7, 37, 101, 1031, 1000003),
// so that no loop bound, stride or tail can hide behind a power of two; the GPU cases add LLaMA-7B /
// CLIP-L shapes (hidden 4096, MLP 11008, vocabulary 32000, 1031-2048 tokens) and pointers one
// element off 16 bytes (the element-by-element paths beside the 16-byte ones).
//
// Buffers in each op's order (a case's range[] is indexed by these; outputs first, as in ops.h):
//   linear_forward out x W [bias]          linear_backward_input dx dout W
//   linear_backward_weight dW dout x       linear_backward_bias db dout
//   patch_unfold out pix                   clip_embed out patches cls pos
//   layernorm_forward out mean rstd x w b  layernorm_backward dx dw db dout x w mean rstd
//   rmsnorm_forward out rstd x w           rmsnorm_backward dx dw dout x w rstd
//   <act>_forward out x                    <act>_backward dx dout x
//   silu_mul_forward out gate up           silu_mul_backward dgate dup dout gate up
//   rope_* x pos                           attention_forward out lse q k v cu_seqlens
//   attention_backward dq dk dv dout q k v out lse cu_seqlens
//   embedding_forward out ids table        embedding_backward dtable dout ids
//   scatter_rows dst src idx               gather_rows dst src idx
//   cross_entropy losses dlogits logits targets
//   adamw param master grad m v            grad_sq_sum grad
//   add out a b                            add_inplace acc x
//   attention_decode out q k_cache v_cache block_table seq pos
//
// ---- The CPU check (tests/test_ops_cpu.c): the CPU backend against the fp64 reference.
//   forward, ||ours - ref|| / ||ref|| <= 1e-6 (REF_FWD; per element for statistics, REF_MAXFWD).
//     Our outputs are fp32: one rounding costs 6e-8, and the fp32 sgemm dot products (<= 257 terms
//     here) add a few 1e-7 at worst. A wrong formula, index or stride gives 1e-3 or more.
//   backward, ||ours - fd|| / ||fd|| <= 1e-5 (REF_BWD). The finite differences run on the fp64
//     reference with h = 1e-5: truncation error ~h^2 = 1e-10 and cancellation ~1e-16 |L| / h ~ 1e-9,
//     far below the fp32 rounding of our analytic gradient (~1e-7, several fp32 steps and fp32 GEMMs).
//   elementwise activations, max relative error per element <= 1.2e-7 (one ulp; REF_ULP): they are
//     computed in fp64 and rounded once, so they must be within half an ulp of the fp64 formula.
//     Inputs span [-5, 5] plus the tails, where exp and erf lose precision first if computed
//     carelessly. (Below -5 the spec's 1 + erf(x / sqrt 2), which the reference evaluates
//     literally, itself loses more than 1e-8 relative in fp64.)
//   copies, gathers, embeddings, adds: exact (bit-for-bit; REF_EXACT), since they do one fp32 add
//     at most.
//
// ---- The GPU check (tests/gpu/test_cuda_ops.c): the CUDA backend against the CPU backend. Each
// comparison measures ||gpu - cpu|| / ||cpu|| and the worst element against its own bound
// |gpu - cpu| <= rtol |cpu| + atol rms(cpu): the element check catches what a norm cannot, a few
// wrong elements at the tail of a million. Outputs the op accumulates into (GRAD) start from random
// values, the same on both sides, and what each backend ADDED is compared, so an op that overwrites
// instead of accumulating fails.
//   BF16 (norm 4e-3, element 2^-7 |ref| + 1e-3 rms): ops computed in fp32 and rounded once to bf16.
//     Rounding to nearest costs at most half a bf16 ulp, <= 2^-8 relative per element (<= 2^-9 on
//     average, ~1e-3 rms over many elements); the fp32 arithmetic (expf, erfcf, cosf: a few fp32
//     ulps) adds ~1e-6. The atol term covers elements where the formula cancels (gradients near
//     their zero crossing). A wrong index, formula or missed element gives 1e-1 or more.
//   GEMM (norm 1e-2, element 2^-7 |ref| + 2e-3 rms): bf16 products are exact in fp32, the sums are
//     fp32 over up to 11008 terms (relative error ~k 2^-24 <= 7e-4 in the worst case, far less for
//     random signs), then one rounding to bf16 (2^-8 per element, as above).
//   GEMM_F32 (norm 1e-3, element 1e-3 |ref| + 1e-4 rms): weight gradients accumulate in fp32 with no
//     bf16 rounding, so only the fp32 summation orders differ (~1e-6 relative).
//   SUM (norm 1e-4, element 1e-3 |ref| + 1e-4 rms): column sums over N rows in fp32 (two-stage,
//     fixed order) against the CPU's fp64 sums: ~1e-6.
//   STAT (norm 1e-5, element 1e-4 |ref| + 1e-5 rms): fp32 row statistics (mean, rstd) and losses
//     (log-sum-exp over 32000 logits in fp32): ~1e-6.
//   ATTN (norm 1e-2, element 2^-6 |ref| + 2e-2 rms): the tiled attention kernels, which also round P
//     and dS to bf16 to enter the tensor cores (2^-9 relative per term, FlashAttention's rounding;
//     tests/gpu/test_cuda_attention.c holds their full check, with the same norm). A row's output
//     sums a handful of terms under a small window, each off by up to 2^-9 of itself: the element
//     bound leaves room for all of them rounding one way (~4e-3 against an rms of ~0.4). A key the
//     window should hide, or one it should show, moves a row by ~1e-1.
//   EXACT: copies, gathers, the embedding backward (same fp32 adds in the same order as the CPU),
//     clip_embed and add (one fp32 add rounded once: the GPU's bits are bf16(CPU's fp32 value)).
//   Determinism (RUN2RUN): gradients that reduce over rows (bias, norm weights, embedding) are run
//     twice from the same start and must be bit-identical.
#include <stdint.h>

#include "kernels/opcheck.h"

#define REF_FWD                                                                                                        \
    { .metric = OPCHECK_REL, .tol = 1e-6 }
#define REF_MAXFWD                                                                                                     \
    { .metric = OPCHECK_MAXREL, .tol = 1e-6 }
#define REF_BWD                                                                                                        \
    { .metric = OPCHECK_REL, .tol = 1e-5 }
#define REF_ULP                                                                                                        \
    { .metric = OPCHECK_MAXREL, .tol = 1.2e-7, .floor = 1e-30 }
#define REF_EXACT                                                                                                      \
    { .metric = OPCHECK_EXACT }
// The same, and exact zeros where the reference is 0 by construction: ignored rows' losses and
// gradients, embedding rows no token touches.
#define REF_MAXFWD_Z                                                                                                   \
    { .metric = OPCHECK_MAXREL, .tol = 1e-6, .zeros = 1 }
#define REF_FWD_Z                                                                                                      \
    { .metric = OPCHECK_REL, .tol = 1e-6, .zeros = 1 }
#define REF_BWD_Z                                                                                                      \
    { .metric = OPCHECK_REL, .tol = 1e-5, .zeros = 1 }

#define DEV_BF16                                                                                                       \
    { 4e-3, 0x1p-7, 1e-3, 0 }
#define DEV_GEMM                                                                                                       \
    { 1e-2, 0x1p-7, 2e-3, 0 }
#define DEV_GEMM_F32                                                                                                   \
    { 1e-3, 1e-3, 1e-4, 0 }
#define DEV_SUM                                                                                                        \
    { 1e-4, 1e-3, 1e-4, 0 }
#define DEV_STAT                                                                                                       \
    { 1e-5, 1e-4, 1e-5, 0 }
#define DEV_ATTN                                                                                                       \
    { 1e-2, 0x1p-6, 2e-2, 0 }
#define DEV_EXACT                                                                                                      \
    { 0, 0, 0, 1 }

#define CPU OPCHECK_CPU
#define GPU OPCHECK_GPU
#define BENCH OPCHECK_BENCH

// LLaVA-1.5-7B shapes (LLaMA-7B: hidden 4096, MLP 11008, vocabulary 32000, 32 heads of 128, 2048
// tokens; CLIP-L/336: width 1024, MLP 4096, 577 tokens, 16 heads of 64, 16 images per batch).
enum {
    LM_T = 2048,
    LM_C = 4096,
    LM_F = 11008,
    LM_V = 32000,
    LM_H = 32,
    LM_D = 128,
    VIS_B = 16,
    VIS_N = 576,
    VIS_T = VIS_B * (VIS_N + 1),
    VIS_C = 1024,
    VIS_F = 4096,
    VIS_H = 16,
    VIS_D = 64,
    ADAM_N = 1 << 27,
    PACKED_T = 16384,  // a packed micro-batch (16 samples of ~1000 tokens)
};

// Three packed sequences (lengths 5, 6, 2); the last sits at the end of a 4096 context, where fp32
// angles are the least precise. With OPCHECK_PAT_REPEAT5 sequence 2 repeats sequence 1's first
// five tokens: same positions, so the same outputs.
static const int32_t ROPE_POS[] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 4094, 4095};

// Packed sequences for attention: a one-token sequence, lengths around a tile, several sequences.
static const int32_t CU_A[] = {0, 5, 6, 13};
static const int32_t CU_B[] = {0, 4, 10};
static const int32_t CU_C[] = {0, 5, 6, 15, 27, 64};
static const int32_t CU_D[] = {0, 17, 47};

// The ids the model produces (V = 11, padding row 1): image placeholders outside [0, V) (11, 32000),
// negative ids, the padding row, repeated tokens.
static const int32_t EMB_IDS[] = {3, 7, 1, 3, 11, -1, 10, 0, 3, 1, 32000, 5, -200};

static const int32_t ROWS[] = {12, 0, 7, 3, 8};  // 5 of 13 rows

// V = 4099 spans three 2048-column chunks (OPCHECK_PAT_CE_CHUNKS). Row 0: max in the last chunk (the
// running sum is rescaled twice); row 1: max in the first chunk; row 2: all logits near 1000 (a
// naive exp overflows); row 3: ignored; row 4: target in the last column; row 5: -1, also ignored.
static const int32_t CE_TARGETS6[] = {17, 2050, 4000, -100, 4099 - 1, -1};
static const int32_t CE_TARGETS4[] = {5, -100, 1030, 0};

#define SCALE_128 0.08838834764831845  // 1 / sqrt(128)

// The GPU's draws for the linear layers: weights of a trained layer's size, so that a product over
// 11008 terms stays O(1); weight gradients start small and random.
#define LIN_X_W [1] = {-1, 1}, [2] = {-0.05, 0.05}
#define LIN_B [3] = {-0.5, 0.5}
// GPU activations: x over [-6, 6] (both tails of every activation), up [-3, 3], dout [-1, 1].
#define ACT_FWD_R .range = {[1] = {-6, 6}}
#define ACT_BWD_R .range = {[2] = {-6, 6}}
#define SILU_FWD_R .range = {[1] = {-6, 6}, [2] = {-3, 3}}
#define SILU_BWD_R .range = {[3] = {-6, 6}, [4] = {-3, 3}}

const opcheck_case OPCHECK_CASES[] = {
    // ---- linear: y = x W^T + b
    // At a size where OpenBLAS blocks and threads, with and without bias.
    {.op = OPCHECK_LINEAR_FORWARD, .flags = CPU, .label = "bias", .n = {131, 257, 67, 1}, .ref = {REF_FWD}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = CPU, .label = "no bias", .n = {131, 257, 67, 0}, .ref = {REF_FWD}},
    // No rows (a batch without images reaches the projector with N = 0): nothing is written (the guard
    // region right after the empty output holds).
    {.op = OPCHECK_LINEAR_FORWARD, .flags = CPU, .label = "no rows", .n = {0, 257, 67, 1}, .ref = {REF_EXACT}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = CPU, .label = "bias", .n = {7, 37, 29, 1}, .ref = {REF_FWD}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT, .flags = CPU, .n = {7, 37, 29}, .ref = {REF_BWD}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT, .flags = CPU, .n = {7, 37, 29}, .ref = {REF_BWD}},
    {.op = OPCHECK_LINEAR_BACKWARD_BIAS, .flags = CPU, .n = {7, 29}, .ref = {REF_BWD}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = GPU, .n = {37, 101, 67, 0}, .range = {LIN_X_W}, .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_FORWARD,
     .flags = GPU,
     .label = "+bias",
     .n = {37, 101, 67, 1},
     .range = {LIN_X_W, LIN_B},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT,
     .flags = GPU,
     .n = {37, 101, 67},
     .range = {[2] = {-0.05, 0.05}},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT,
     .flags = GPU,
     .n = {37, 101, 67},
     .range = {[0] = {-0.01, 0.01}},
     .dev = {DEV_GEMM_F32}},
    // the projector's first layer (CLIP-L features)
    {.op = OPCHECK_LINEAR_FORWARD,
     .flags = GPU,
     .label = "projector +bias",
     .n = {576, 1024, 4096, 1},
     .range = {LIN_X_W, LIN_B},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT,
     .flags = GPU,
     .label = "projector",
     .n = {576, 1024, 4096},
     .range = {[2] = {-0.05, 0.05}},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT,
     .flags = GPU,
     .label = "projector",
     .n = {576, 1024, 4096},
     .range = {[0] = {-0.01, 0.01}},
     .dev = {DEV_GEMM_F32}},
    // LLaMA-7B MLP up/gate, odd token count
    {.op = OPCHECK_LINEAR_FORWARD,
     .flags = GPU,
     .label = "mlp up",
     .n = {1031, 4096, 11008, 0},
     .range = {LIN_X_W},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT,
     .flags = GPU,
     .label = "mlp up",
     .n = {1031, 4096, 11008},
     .range = {[2] = {-0.05, 0.05}},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT,
     .flags = GPU,
     .label = "mlp up",
     .n = {1031, 4096, 11008},
     .range = {[0] = {-0.01, 0.01}},
     .dev = {DEV_GEMM_F32}},
    {.op = OPCHECK_LINEAR_FORWARD,
     .flags = GPU,
     .label = "lm_head",
     .n = {67, 4096, 32000, 0},
     .range = {LIN_X_W},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_BIAS,
     .flags = GPU | OPCHECK_RUN2RUN,
     .n = {37, 67},
     .range = {[0] = {-1, 1}},
     .dev = {DEV_SUM}},
    {.op = OPCHECK_LINEAR_BACKWARD_BIAS,
     .flags = GPU | OPCHECK_RUN2RUN,
     .n = {2048, 4096},
     .range = {[0] = {-1, 1}},
     .dev = {DEV_SUM}},
    // N = 0 (no rows): nothing written, the gradients left as they are.
    {.op = OPCHECK_LINEAR_FORWARD,
     .flags = CPU | GPU,
     .label = "no rows",
     .n = {0, 8, 8, 0},
     .ref = {REF_EXACT},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT,
     .flags = CPU | GPU,
     .label = "no rows",
     .n = {0, 8, 8},
     .ref = {REF_EXACT},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT,
     .flags = CPU | GPU,
     .label = "no rows",
     .n = {0, 8, 8},
     .range = {[0] = {-1, 1}},
     .ref = {REF_EXACT},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_LINEAR_BACKWARD_BIAS,
     .flags = CPU | GPU,
     .label = "no rows",
     .n = {0, 8},
     .range = {[0] = {-1, 1}},
     .ref = {REF_EXACT},
     .dev = {DEV_EXACT}},

    // ---- patch_unfold and clip_embed: pure data movement, exact
    {.op = OPCHECK_PATCH_UNFOLD, .flags = CPU, .n = {2, 3, 15, 15, 5}, .ref = {REF_EXACT}},
    {.op = OPCHECK_PATCH_UNFOLD, .flags = CPU, .label = "not square", .n = {1, 3, 15, 10, 5}, .ref = {REF_EXACT}},
    {.op = OPCHECK_PATCH_UNFOLD, .flags = GPU, .n = {2, 3, 42, 42, 14}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_PATCH_UNFOLD, .flags = GPU, .label = "not square", .n = {1, 3, 28, 42, 14}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_PATCH_UNFOLD,
     .flags = GPU,
     .label = "CLIP-L/336: 576 patches of 588",
     .n = {4, 3, 336, 336, 14},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_CLIP_EMBED, .flags = CPU, .n = {2, 5, 37}, .ref = {REF_EXACT}},
    {.op = OPCHECK_CLIP_EMBED, .flags = GPU, .n = {3, 9, 101}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_CLIP_EMBED, .flags = GPU, .n = {4, 576, 1024}, .dev = {DEV_EXACT}},

    // ---- LayerNorm and RMSNorm. CPU: an offset of 3 puts the mean far from zero, where a one-pass
    // variance would cancel. GPU: a mean well away from zero (x in [-1, 3)) so that the two-pass
    // variance matters; the backward reads the statistics the fp64 forward gives, so that it is
    // checked on its own.
    {.op = OPCHECK_LAYERNORM_FORWARD,
     .flags = CPU,
     .label = "mean 3",
     .n = {7, 37},
     .f = 1e-5,
     .range = {[3] = {2, 4}, [4] = {-2, 2}, [5] = {-1, 1}},
     .ref = {REF_FWD, REF_MAXFWD, REF_MAXFWD}},
    {.op = OPCHECK_LAYERNORM_BACKWARD,
     .flags = CPU,
     .label = "mean 3",
     .n = {7, 37},
     .f = 1e-5,
     .range = {[4] = {2, 4}, [5] = {-2, 2}},
     .ref = {REF_BWD, REF_BWD, REF_BWD}},
    {.op = OPCHECK_LAYERNORM_FORWARD,
     .flags = GPU,
     .n = {37, 101},
     .f = 1e-5,
     .range = {[3] = {-1, 3}, [4] = {0.5, 1.5}, [5] = {-0.5, 0.5}},
     .dev = {DEV_BF16, DEV_STAT, DEV_STAT}},
    {.op = OPCHECK_LAYERNORM_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .n = {37, 101},
     .f = 1e-5,
     .range = {[1] = {-1, 1}, [2] = {-1, 1}, [4] = {-1, 3}, [5] = {0.5, 1.5}},
     .dev = {DEV_BF16, DEV_SUM, DEV_SUM}},
    {.op = OPCHECK_LAYERNORM_FORWARD,
     .flags = GPU,
     .label = "CLIP-L width",
     .n = {1031, 1024},
     .f = 1e-5,
     .range = {[3] = {-1, 3}, [4] = {0.5, 1.5}, [5] = {-0.5, 0.5}},
     .dev = {DEV_BF16, DEV_STAT, DEV_STAT}},
    {.op = OPCHECK_LAYERNORM_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .label = "CLIP-L width",
     .n = {1031, 1024},
     .f = 1e-5,
     .range = {[1] = {-1, 1}, [2] = {-1, 1}, [4] = {-1, 3}, [5] = {0.5, 1.5}},
     .dev = {DEV_BF16, DEV_SUM, DEV_SUM}},
    {.op = OPCHECK_RMSNORM_FORWARD,
     .flags = CPU,
     .n = {7, 37},
     .f = 1e-5,
     .range = {[2] = {-2, 2}, [3] = {-2, 2}},
     .ref = {REF_FWD, REF_MAXFWD}},
    {.op = OPCHECK_RMSNORM_BACKWARD,
     .flags = CPU,
     .n = {7, 37},
     .f = 1e-5,
     .range = {[3] = {-2, 2}, [4] = {-2, 2}},
     .ref = {REF_BWD, REF_BWD}},
    {.op = OPCHECK_RMSNORM_FORWARD,
     .flags = GPU,
     .n = {37, 101},
     .f = 1e-6,
     .range = {[2] = {-2, 2}, [3] = {0.5, 1.5}},
     .dev = {DEV_BF16, DEV_STAT}},
    {.op = OPCHECK_RMSNORM_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .n = {37, 101},
     .f = 1e-6,
     .range = {[1] = {-1, 1}, [3] = {-2, 2}, [4] = {0.5, 1.5}},
     .dev = {DEV_BF16, DEV_SUM}},
    {.op = OPCHECK_RMSNORM_FORWARD,
     .flags = GPU,
     .label = "LLaMA-7B",
     .n = {2048, 4096},
     .f = 1e-6,
     .range = {[2] = {-2, 2}, [3] = {0.5, 1.5}},
     .dev = {DEV_BF16, DEV_STAT}},
    {.op = OPCHECK_RMSNORM_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .label = "LLaMA-7B",
     .n = {2048, 4096},
     .f = 1e-6,
     .range = {[1] = {-1, 1}, [3] = {-2, 2}, [4] = {0.5, 1.5}},
     .dev = {DEV_BF16, DEV_SUM}},

    // ---- elementwise activations. CPU: [-5, 5] and the tails, against fp64 per element. GPU:
    // 16-byte packs with a tail of 3 (1000003), element by element (12347, unaligned), outputs over
    // inputs (4096 x 3), and the LLaMA-7B and CLIP-L MLPs.
    {.op = OPCHECK_QUICK_GELU_FORWARD,
     .flags = CPU,
     .n = {1031},
     .pattern = OPCHECK_PAT_TAILS,
     .range = {[1] = {-5, 5}},
     .ref = {REF_ULP}},
    {.op = OPCHECK_QUICK_GELU_BACKWARD,
     .flags = CPU,
     .n = {1031},
     .pattern = OPCHECK_PAT_TAILS,
     .range = {[2] = {-5, 5}},
     .ref = {REF_BWD}},
    {.op = OPCHECK_GELU_FORWARD,
     .flags = CPU,
     .n = {1031},
     .pattern = OPCHECK_PAT_TAILS,
     .range = {[1] = {-5, 5}},
     .ref = {REF_ULP}},
    {.op = OPCHECK_GELU_BACKWARD,
     .flags = CPU,
     .n = {1031},
     .pattern = OPCHECK_PAT_TAILS,
     .range = {[2] = {-5, 5}},
     .ref = {REF_BWD}},
    {.op = OPCHECK_SILU_MUL_FORWARD,
     .flags = CPU,
     .n = {1031},
     .pattern = OPCHECK_PAT_TAILS,
     .range = {[1] = {-5, 5}, [2] = {-2, 2}},
     .ref = {REF_ULP}},
    // In place too: dgate over gate and dup over up give the same bits.
    {.op = OPCHECK_SILU_MUL_BACKWARD,
     .flags = CPU | OPCHECK_ALIAS,
     .n = {1031},
     .pattern = OPCHECK_PAT_TAILS,
     .range = {[3] = {-5, 5}, [4] = {-2, 2}},
     .ref = {REF_BWD, REF_BWD}},
    {.op = OPCHECK_QUICK_GELU_FORWARD, .flags = GPU, .n = {1000003}, ACT_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_QUICK_GELU_BACKWARD, .flags = GPU, .n = {1000003}, ACT_BWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_QUICK_GELU_FORWARD, .flags = GPU | OPCHECK_UNALIGNED, .n = {12347}, ACT_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_QUICK_GELU_BACKWARD, .flags = GPU | OPCHECK_UNALIGNED, .n = {12347}, ACT_BWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_QUICK_GELU_FORWARD, .flags = GPU | OPCHECK_ALIAS, .n = {3, 4096}, ACT_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_QUICK_GELU_BACKWARD, .flags = GPU | OPCHECK_ALIAS, .n = {3, 4096}, ACT_BWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_QUICK_GELU_FORWARD,
     .flags = GPU,
     .label = "CLIP-L MLP, 4 images",
     .n = {577 * 4, 4096},
     ACT_FWD_R,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_QUICK_GELU_BACKWARD,
     .flags = GPU,
     .label = "CLIP-L MLP, 4 images",
     .n = {577 * 4, 4096},
     ACT_BWD_R,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_GELU_FORWARD, .flags = GPU, .n = {1000003}, ACT_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_GELU_BACKWARD, .flags = GPU, .n = {1000003}, ACT_BWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_GELU_FORWARD, .flags = GPU | OPCHECK_UNALIGNED, .n = {12347}, ACT_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_GELU_BACKWARD, .flags = GPU | OPCHECK_UNALIGNED, .n = {12347}, ACT_BWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_GELU_FORWARD, .flags = GPU | OPCHECK_ALIAS, .n = {3, 4096}, ACT_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_GELU_BACKWARD, .flags = GPU | OPCHECK_ALIAS, .n = {3, 4096}, ACT_BWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_FORWARD, .flags = GPU, .n = {1000003}, SILU_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_BACKWARD, .flags = GPU, .n = {1000003}, SILU_BWD_R, .dev = {DEV_BF16, DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_FORWARD, .flags = GPU | OPCHECK_UNALIGNED, .n = {12347}, SILU_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_BACKWARD,
     .flags = GPU | OPCHECK_UNALIGNED,
     .n = {12347},
     SILU_BWD_R,
     .dev = {DEV_BF16, DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_FORWARD, .flags = GPU | OPCHECK_ALIAS, .n = {3, 4096}, SILU_FWD_R, .dev = {DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_BACKWARD,
     .flags = GPU | OPCHECK_ALIAS,
     .n = {3, 4096},
     SILU_BWD_R,
     .dev = {DEV_BF16, DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_FORWARD,
     .flags = GPU,
     .label = "LLaMA-7B MLP",
     .n = {2048, 11008},
     SILU_FWD_R,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_SILU_MUL_BACKWARD,
     .flags = GPU,
     .label = "LLaMA-7B MLP",
     .n = {2048, 11008},
     SILU_BWD_R,
     .dev = {DEV_BF16, DEV_BF16}},
    // Residual adds: one fp32 add rounded once, so exact on both backends; out may alias a.
    {.op = OPCHECK_ADD, .flags = CPU | OPCHECK_ALIAS, .n = {1031}, .ref = {REF_EXACT}},
    {.op = OPCHECK_ADD_INPLACE, .flags = CPU, .n = {1031}, .ref = {REF_EXACT}},
    // LoRA's scaling (rate 0) and scaling with dropout (rate 0.05, LLaVA's lora_dropout, and 0.5): one
    // fp32 multiply, exact; out may alias x.
    {.op = OPCHECK_DROPOUT_SCALE, .flags = CPU | OPCHECK_ALIAS, .n = {1031, 0, 0}, .f = 2.0, .ref = {REF_EXACT}},
    {.op = OPCHECK_DROPOUT_SCALE, .flags = CPU | OPCHECK_ALIAS, .n = {1031, 0, 50}, .f = 0.7, .ref = {REF_EXACT}},
    {.op = OPCHECK_DROPOUT_SCALE, .flags = CPU, .n = {37, 7, 500}, .f = 1.0, .ref = {REF_EXACT}},
    {.op = OPCHECK_DROPOUT_SCALE, .flags = GPU | OPCHECK_ALIAS, .n = {1000003, 0, 50}, .f = 2.0, .dev = {DEV_BF16}},
    {.op = OPCHECK_DROPOUT_SCALE, .flags = GPU | OPCHECK_UNALIGNED, .n = {12347, 0, 0}, .f = 0.5, .dev = {DEV_BF16}},
    {.op = OPCHECK_ADD,
     .flags = GPU | OPCHECK_ALIAS,
     .n = {1000003},
     .range = {[1] = {-4, 4}, [2] = {-4, 4}},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_ADD,
     .flags = GPU | OPCHECK_ALIAS | OPCHECK_UNALIGNED,
     .n = {12347},
     .range = {[1] = {-4, 4}, [2] = {-4, 4}},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_ADD_INPLACE,
     .flags = GPU,
     .n = {1000003},
     .range = {[0] = {-4, 4}, [1] = {-4, 4}},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_ADD_INPLACE,
     .flags = GPU | OPCHECK_UNALIGNED,
     .n = {12347},
     .range = {[0] = {-4, 4}, [1] = {-4, 4}},
     .dev = {DEV_EXACT}},

    // ---- RoPE, in place
    {.op = OPCHECK_ROPE_FORWARD,
     .flags = CPU,
     .label = "positions to 4095",
     .n = {13, 3, 64},
     .f = 10000.0,
     .ints = ROPE_POS,
     .pattern = OPCHECK_PAT_REPEAT5,
     .ref = {REF_FWD}},
    {.op = OPCHECK_ROPE_FORWARD,
     .flags = CPU,
     .label = "positions to 4095",
     .n = {13, 3, 128},
     .f = 10000.0,
     .ints = ROPE_POS,
     .pattern = OPCHECK_PAT_REPEAT5,
     .ref = {REF_FWD}},
    {.op = OPCHECK_ROPE_BACKWARD,
     .flags = CPU,
     .label = "positions to 4095",
     .n = {13, 3, 64},
     .f = 10000.0,
     .ints = ROPE_POS,
     .ref = {REF_BWD}},
    {.op = OPCHECK_ROPE_BACKWARD,
     .flags = CPU,
     .label = "positions to 4095",
     .n = {13, 3, 128},
     .f = 10000.0,
     .ints = ROPE_POS,
     .ref = {REF_BWD}},
    {.op = OPCHECK_ROPE_FORWARD,
     .flags = GPU,
     .n = {67, 5, 64},
     .f = 10000.0,
     .range = {[0] = {-2, 2}},
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ROPE_BACKWARD,
     .flags = GPU,
     .n = {67, 5, 64},
     .f = 10000.0,
     .range = {[0] = {-2, 2}},
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ROPE_FORWARD,
     .flags = GPU,
     .label = "LLaMA-7B q",
     .n = {2048, 32, 128},
     .f = 10000.0,
     .range = {[0] = {-2, 2}},
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ROPE_BACKWARD,
     .flags = GPU,
     .label = "LLaMA-7B q",
     .n = {2048, 32, 128},
     .f = 10000.0,
     .range = {[0] = {-2, 2}},
     .dev = {DEV_BF16}},

    // ---- attention over packed sequences (the GPU's: tests/gpu/test_cuda_attention.c). GQA (Hq = 2
    // Hkv) and plain multi-head (Hq = Hkv = 3), a one-token sequence, CLIP's scale (0.125) and an
    // arbitrary one. The backward against finite differences on small packs only: each of the 3 T H D
    // inputs costs two reference forwards.
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "causal",
     .n = {13, 4, 2, 64, 3, 1},
     .f = 0.125,
     .ints = CU_A,
     .ref = {REF_FWD, REF_FWD}},
    // Mistral's sliding window, binding in the long sequences; the same cases on the GPU (the CUDA
    // backend against the CPU's: the GPU check's only attention_forward/backward cases, the rest are
    // test_cuda_attention.c's). Separate cases, since a GPU case's draws are rounded to bf16 and the
    // backward's `out` with them, which the CPU check's finite differences would not match.
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "window 4",
     .n = {47, 4, 2, 64, 2, 1, 4},
     .f = 0.125,
     .ints = CU_D,
     .ref = {REF_FWD, REF_FWD}},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = CPU,
     .label = "window 3",
     .n = {13, 4, 2, 64, 3, 1, 3},
     .f = 0.125,
     .ints = CU_A,
     .ref = {REF_BWD, REF_BWD, REF_BWD}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = GPU,
     .label = "window 4",
     .n = {47, 4, 2, 64, 2, 1, 4},
     .f = 0.125,
     .ints = CU_D,
     .dev = {DEV_ATTN, DEV_STAT}},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = GPU,
     .label = "window 3",
     .n = {13, 4, 2, 64, 3, 1, 3},
     .f = 0.125,
     .ints = CU_A,
     .dev = {DEV_ATTN, DEV_ATTN, DEV_ATTN}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "full",
     .n = {13, 4, 2, 64, 3, 0},
     .f = 0.125,
     .ints = CU_A,
     .ref = {REF_FWD, REF_FWD}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "causal",
     .n = {10, 2, 1, 128, 2, 1},
     .f = 0.3,
     .ints = CU_B,
     .ref = {REF_FWD, REF_FWD}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "full",
     .n = {10, 3, 3, 128, 2, 0},
     .f = SCALE_128,
     .ints = CU_B,
     .ref = {REF_FWD, REF_FWD}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "causal",
     .n = {64, 4, 2, 128, 5, 1},
     .f = SCALE_128,
     .ints = CU_C,
     .ref = {REF_FWD, REF_FWD}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "full",
     .n = {64, 4, 2, 128, 5, 0},
     .f = SCALE_128,
     .ints = CU_C,
     .ref = {REF_FWD, REF_FWD}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = CPU,
     .label = "causal",
     .n = {47, 3, 3, 64, 2, 1},
     .f = 0.125,
     .ints = CU_D,
     .ref = {REF_FWD, REF_FWD}},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = CPU,
     .label = "causal",
     .n = {13, 4, 2, 64, 3, 1},
     .f = 0.125,
     .ints = CU_A,
     .ref = {REF_BWD, REF_BWD, REF_BWD}},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = CPU,
     .label = "full",
     .n = {13, 4, 2, 64, 3, 0},
     .f = 0.125,
     .ints = CU_A,
     .ref = {REF_BWD, REF_BWD, REF_BWD}},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = CPU,
     .label = "causal",
     .n = {10, 2, 1, 128, 2, 1},
     .f = 0.3,
     .ints = CU_B,
     .ref = {REF_BWD, REF_BWD, REF_BWD}},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = CPU,
     .label = "full",
     .n = {10, 3, 3, 128, 2, 0},
     .f = SCALE_128,
     .ints = CU_B,
     .ref = {REF_BWD, REF_BWD, REF_BWD}},

    // ---- attention against a paged KV cache (generation). The draws (opcheck.h's OPCHECK_GEN_RANDOM):
    // T/2 + 2 sequences whose blocks are a shuffle of the cache's, row 0 at position 0, row 1 at
    // context - 1, several rows of one sequence, NaN in every cache row no query may see and table
    // entries past each sequence's end out of range. CPU: full fp32 draws against fp64 (REF_FWD: the
    // same arithmetic as attention_forward's, fp32 dot products of D terms and P V sums of up to 301).
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = CPU,
     .label = "GQA",
     .n = {7, 4, 2, 64, 53, 16},
     .f = 0.125,
     .ref = {REF_FWD}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = CPU,
     .label = "MHA",
     .n = {6, 3, 3, 128, 97, 16},
     .f = SCALE_128,
     .ref = {REF_FWD}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = CPU,
     .label = "blocks of 4, one kv head",
     .n = {5, 4, 1, 32, 40, 4},
     .f = 0.3,
     .ref = {REF_FWD}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = CPU,
     .label = "every query at position 0",
     .n = {3, 2, 2, 16, 1, 16},
     .f = 0.25,
     .ref = {REF_FWD}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = CPU,
     .label = "GQA 3, blocks of 32",
     .n = {9, 6, 2, 128, 301, 32},
     .f = SCALE_128,
     .ref = {REF_FWD}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = CPU | GPU,
     .label = "no rows",
     .n = {0, 4, 2, 64, 16, 16},
     .f = 0.125,
     .ref = {REF_EXACT},
     .dev = {DEV_EXACT}},
    // GPU: the split kernel (head dims 64 and 128, block sizes multiples of 16) at every group size
    // it cuts differently (1, 2, 4, 8 heads a CTA; 16 as two CTAs of 8; 3 and 6 as CTAs of 1 and 2),
    // one split (17 keys) to 32 (4096 keys over 8 kv heads on 132 SMs), and the per-row kernel (head dim 80,
    // blocks of 8, unaligned pointers). DEV_BF16: the kernels keep everything in fp32 (scores, the
    // softmax, P V, the partials and their combine) and round once, to bf16 at the end; the CPU
    // differs in summation order only (~1e-6 relative). Unlike the tiled attention kernels
    // (tests/gpu/test_cuda_attention.c: 1e-2) nothing is rounded to bf16 on the way.
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "MHA",
     .n = {37, 5, 5, 128, 1031, 16},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "MHA",
     .n = {9, 6, 6, 64, 129, 16},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "GQA 2",
     .n = {9, 6, 3, 64, 129, 16},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "GQA 4, blocks of 32",
     .n = {23, 16, 4, 128, 777, 32},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "GQA 8",
     .n = {13, 8, 1, 128, 500, 16},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "GQA 8, blocks of 64",
     .n = {19, 16, 2, 64, 300, 64},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "GQA 16: two CTAs of 8 heads",
     .n = {5, 32, 2, 128, 260, 16},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "group of 3: a CTA per head",
     .n = {11, 9, 3, 128, 200, 16},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "group of 6: CTAs of 2 heads",
     .n = {5, 12, 2, 64, 333, 16},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "one split",
     .n = {7, 4, 2, 128, 17, 16},
     .f = 0.3,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "LLaVA-7B heads",
     .n = {3, LM_H, LM_H, LM_D, 2048, 16},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "4096 keys",
     .n = {4, 8, 8, 128, 4096, 16},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "head dim 80 (per-row kernel)",
     .n = {7, 4, 2, 80, 100, 16},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "blocks of 8 (per-row kernel)",
     .n = {7, 4, 4, 128, 150, 8},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU | OPCHECK_UNALIGNED,
     .label = "per-row kernel",
     .n = {7, 4, 2, 64, 90, 16},
     .f = 0.125,
     .dev = {DEV_BF16}},
    // Mistral's sliding window (n[6]): each row attends to its last `window` keys, and every cache
    // row outside all the windows of its sequence's rows holds NaN. The split kernel starts a row's
    // splits at its first key rounded down to 16, skips its tiles wholly before that key (tiles of
    // 16, 8 and 4 keys: G <= 2 at D = 64, G = 4 and G = 8 at D = 128) and masks the rest; windows
    // of 1 and 3 (inside one tile), 70 (one split), 100 and 300 (several splits at 64 keys a split),
    // and one longer than every context. The per-row kernel: head dim 80, blocks of 8. GPU only:
    // test_ops_cpu.c checks every CPU case against attention_forward's rows without a window.
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window 1, GQA 2",
     .n = {9, 6, 3, 64, 129, 16, 1},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window 3, GQA 4, blocks of 32",
     .n = {23, 16, 4, 128, 777, 32, 3},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window 70, GQA 8",
     .n = {13, 8, 1, 128, 500, 16, 70},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window 100, MHA",
     .n = {37, 5, 5, 128, 1031, 16, 100},
     .f = SCALE_128,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window 300, MHA",
     .n = {9, 6, 6, 64, 1031, 16, 300},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window past every context",
     .n = {7, 4, 2, 128, 17, 16, 64},
     .f = 0.3,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window 7, head dim 80 (per-row kernel)",
     .n = {7, 4, 2, 80, 100, 16, 7},
     .f = 0.125,
     .dev = {DEV_BF16}},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = GPU,
     .label = "window 20, blocks of 8 (per-row kernel)",
     .n = {7, 4, 4, 128, 150, 8, 20},
     .f = SCALE_128,
     .dev = {DEV_BF16}},

    // ---- token embeddings and the image splice's rows
    {.op = OPCHECK_EMBEDDING_FORWARD, .flags = CPU, .n = {13, 37, 11, 1}, .ints = EMB_IDS, .ref = {REF_EXACT}},
    {.op = OPCHECK_EMBEDDING_BACKWARD,
     .flags = CPU,
     .label = "padding row 1",
     .n = {13, 37, 11, 1},
     .ints = EMB_IDS,
     .ref = {REF_BWD_Z}},
    {.op = OPCHECK_EMBEDDING_FORWARD, .flags = GPU, .n = {67, 101, 1031, 0}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_EMBEDDING_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .n = {67, 101, 1031, 0},
     .range = {[0] = {-1, 1}},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_EMBEDDING_FORWARD,
     .flags = GPU,
     .label = "no padding row",
     .n = {67, 104, 1031, -1},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_EMBEDDING_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .label = "no padding row",
     .n = {67, 104, 1031, -1},
     .range = {[0] = {-1, 1}},
     .dev = {DEV_EXACT}},
    // LLaMA-7B (padding row 0, as LLaVA's pad = unk)
    {.op = OPCHECK_EMBEDDING_FORWARD,
     .flags = GPU,
     .label = "LLaMA-7B",
     .n = {2048, 4096, 32000, 0},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_EMBEDDING_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .label = "LLaMA-7B",
     .n = {2048, 4096, 32000, 0},
     .range = {[0] = {-1, 1}},
     .dev = {DEV_EXACT}},
    // a packed micro-batch: chains of ~1200 repeats
    {.op = OPCHECK_EMBEDDING_FORWARD, .flags = GPU, .label = "packed", .n = {16383, 520, 32000, 0}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_EMBEDDING_BACKWARD,
     .flags = GPU | OPCHECK_RUN2RUN,
     .label = "packed",
     .n = {16383, 520, 32000, 0},
     .range = {[0] = {-1, 1}},
     .dev = {DEV_EXACT}},
    {.op = OPCHECK_GATHER_ROWS, .flags = CPU, .n = {5, 37, 13}, .ints = ROWS, .ref = {REF_EXACT}},
    {.op = OPCHECK_SCATTER_ROWS, .flags = CPU, .n = {5, 37, 13}, .ints = ROWS, .ref = {REF_EXACT}},
    {.op = OPCHECK_SCATTER_ROWS, .flags = GPU, .n = {37, 101, 80}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_GATHER_ROWS, .flags = GPU, .n = {37, 101, 80}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_SCATTER_ROWS, .flags = GPU | OPCHECK_UNALIGNED, .n = {37, 104, 80}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_GATHER_ROWS, .flags = GPU | OPCHECK_UNALIGNED, .n = {37, 104, 80}, .dev = {DEV_EXACT}},
    // two images spliced into 2048 tokens
    {.op = OPCHECK_SCATTER_ROWS, .flags = GPU, .label = "2 images", .n = {576 * 2, 4096, 2048}, .dev = {DEV_EXACT}},
    {.op = OPCHECK_GATHER_ROWS, .flags = GPU, .label = "2 images", .n = {576 * 2, 4096, 2048}, .dev = {DEV_EXACT}},

    // ---- cross-entropy with ignore index; the losses-only form (dlogits NULL) and dlogits over the
    // logits are run as variants of each case.
    {.op = OPCHECK_CROSS_ENTROPY,
     .flags = CPU | OPCHECK_ALIAS,
     .label = "3 chunks, offsets to 1000",
     .n = {6, 4099},
     .f = 0.25 /* 1 / the number of valid rows, as the model passes it */,
     .ints = CE_TARGETS6,
     .pattern = OPCHECK_PAT_CE_CHUNKS,
     .range = {[2] = {-4, 4}},
     .ref = {REF_MAXFWD_Z, REF_FWD_Z}},
    {.op = OPCHECK_CROSS_ENTROPY,
     .flags = CPU | OPCHECK_FD,
     .label = "dlogits vs finite differences",
     .n = {4, 1031},
     .f = 1.0 / 3,
     .ints = CE_TARGETS4,
     .range = {[2] = {-3, 3}},
     .ref = {REF_MAXFWD_Z, REF_BWD_Z}},
    // element-by-element path; the LLaMA vocabulary, 16-byte path
    {.op = OPCHECK_CROSS_ENTROPY,
     .flags = GPU | OPCHECK_ALIAS,
     .n = {67, 1031},
     .f = 1.0 / 37,
     .pattern = OPCHECK_PAT_CE_PEAKY,
     .range = {[2] = {-6, 6}},
     .dev = {DEV_STAT, DEV_BF16}},
    {.op = OPCHECK_CROSS_ENTROPY,
     .flags = GPU | OPCHECK_ALIAS,
     .label = "LLaMA vocabulary",
     .n = {700, 32000},
     .f = 1.0 / 512,
     .pattern = OPCHECK_PAT_CE_PEAKY,
     .range = {[2] = {-6, 6}},
     .dev = {DEV_STAT, DEV_BF16}},

    // ---- the benchmark (llava bench-kernels): LLaVA-1.5-7B shapes, in the order printed
    {.op = OPCHECK_LINEAR_FORWARD, .flags = BENCH, .label = "q/k/v/o", .n = {LM_T, LM_C, LM_C}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = BENCH, .label = "gate/up", .n = {LM_T, LM_C, LM_F}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = BENCH, .label = "down", .n = {LM_T, LM_F, LM_C}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = BENCH, .label = "lm_head", .n = {LM_T, LM_C, LM_V}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = BENCH, .label = "clip fc1 +bias", .n = {VIS_T, VIS_C, VIS_F, 1}},
    {.op = OPCHECK_LINEAR_FORWARD, .flags = BENCH, .label = "projector +bias", .n = {2 * VIS_N, VIS_C, LM_C, 1}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT, .flags = BENCH, .label = "gate/up", .n = {LM_T, LM_C, LM_F}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT, .flags = BENCH, .label = "down", .n = {LM_T, LM_F, LM_C}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT, .flags = BENCH, .label = "lm_head", .n = {LM_T, LM_C, LM_V}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT, .flags = BENCH, .label = "gate/up", .n = {LM_T, LM_C, LM_F}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT, .flags = BENCH, .label = "down", .n = {LM_T, LM_F, LM_C}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT, .flags = BENCH, .label = "lm_head", .n = {LM_T, LM_C, LM_V}},
    {.op = OPCHECK_LINEAR_BACKWARD_BIAS, .flags = BENCH, .label = "projector", .n = {2 * VIS_N, LM_C}},
    {.op = OPCHECK_RMSNORM_FORWARD, .flags = BENCH, .n = {LM_T, LM_C}, .f = 1e-5},
    {.op = OPCHECK_RMSNORM_BACKWARD, .flags = BENCH, .label = "(+dw)", .n = {LM_T, LM_C}, .f = 1e-5},
    {.op = OPCHECK_LAYERNORM_FORWARD, .flags = BENCH, .label = "clip", .n = {VIS_T, VIS_C}, .f = 1e-5},
    {.op = OPCHECK_LAYERNORM_BACKWARD, .flags = BENCH, .label = "(+dw,db)", .n = {VIS_T, VIS_C}, .f = 1e-5},
    {.op = OPCHECK_QUICK_GELU_FORWARD, .flags = BENCH, .label = "clip mlp", .n = {VIS_T, VIS_F}},
    {.op = OPCHECK_QUICK_GELU_BACKWARD, .flags = BENCH, .n = {VIS_T, VIS_F}},
    {.op = OPCHECK_GELU_FORWARD, .flags = BENCH, .label = "projector", .n = {2 * VIS_N, LM_C}},
    {.op = OPCHECK_GELU_BACKWARD, .flags = BENCH, .label = "projector", .n = {2 * VIS_N, LM_C}},
    {.op = OPCHECK_SILU_MUL_FORWARD, .flags = BENCH, .n = {LM_T, LM_F}},
    {.op = OPCHECK_SILU_MUL_BACKWARD, .flags = BENCH, .n = {LM_T, LM_F}},
    {.op = OPCHECK_ADD, .flags = BENCH, .label = "(residual)", .n = {LM_T, LM_C}},
    {.op = OPCHECK_DROPOUT_SCALE, .flags = BENCH, .label = "LoRA input", .n = {LM_T, LM_C, 50}, .f = 2.0},
    {.op = OPCHECK_ROPE_FORWARD,
     .flags = BENCH,
     .label = "q",
     .n = {LM_T, LM_H, LM_D},
     .f = 10000.0,
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_ROPE_BACKWARD,
     .flags = BENCH,
     .label = "q",
     .n = {LM_T, LM_H, LM_D},
     .f = 10000.0,
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_EMBEDDING_FORWARD, .flags = BENCH, .n = {LM_T, LM_C, LM_V, 0}, .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_EMBEDDING_BACKWARD, .flags = BENCH, .n = {LM_T, LM_C, LM_V, 0}, .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_EMBEDDING_BACKWARD,
     .flags = BENCH,
     .label = "packed",
     .n = {PACKED_T, LM_C, LM_V, 0},
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_PATCH_UNFOLD, .flags = BENCH, .label = "336px P14", .n = {VIS_B, 3, 336, 336, 14}},
    {.op = OPCHECK_CLIP_EMBED, .flags = BENCH, .n = {VIS_B, VIS_N, VIS_C}},
    {.op = OPCHECK_GATHER_ROWS,
     .flags = BENCH,
     .label = "(2 images)",
     .n = {2 * VIS_N, LM_C, LM_T},
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_SCATTER_ROWS,
     .flags = BENCH,
     .label = "(2 images)",
     .n = {2 * VIS_N, LM_C, LM_T},
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_CROSS_ENTROPY,
     .flags = BENCH | OPCHECK_ALIAS,
     .label = "(dlogits=logits)",
     .n = {LM_T, LM_V},
     .f = 1.0 / 2048,
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_ADAMW, .flags = BENCH, .n = {ADAM_N}},
    {.op = OPCHECK_GRAD_SQ_SUM, .flags = BENCH, .n = {ADAM_N}},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = BENCH,
     .label = "lm causal",
     .n = {LM_T, LM_H, LM_H, LM_D, 1, 1},
     .f = SCALE_128},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = BENCH,
     .label = "lm causal",
     .n = {LM_T, LM_H, LM_H, LM_D, 1, 1},
     .f = SCALE_128},
    {.op = OPCHECK_ATTENTION_FORWARD,
     .flags = BENCH,
     .label = "clip",
     .n = {VIS_T, VIS_H, VIS_H, VIS_D, VIS_B, 0},
     .f = 0.125},
    {.op = OPCHECK_ATTENTION_BACKWARD,
     .flags = BENCH,
     .label = "clip",
     .n = {VIS_T, VIS_H, VIS_H, VIS_D, VIS_B, 0},
     .f = 0.125},
    // Generation at LLaVA-7B shapes, per layer: a lone sequence after its image prompt (600 tokens)
    // and at 2048, and a batch of 64 at the mix's typical 700; the same batch over 8 kv heads.
    // Bandwidth-bound (opcheck_case_cost counts the bytes of K and V read: GB/s against the copy).
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = BENCH,
     .label = "lm",
     .n = {1, LM_H, LM_H, LM_D, 600, 16},
     .f = SCALE_128,
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = BENCH,
     .label = "lm",
     .n = {1, LM_H, LM_H, LM_D, 2048, 16},
     .f = SCALE_128,
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = BENCH,
     .label = "lm",
     .n = {64, LM_H, LM_H, LM_D, 700, 16},
     .f = SCALE_128,
     .gen = OPCHECK_GEN_BENCH},
    {.op = OPCHECK_ATTENTION_DECODE,
     .flags = BENCH,
     .label = "GQA",
     .n = {64, LM_H, 8, LM_D, 700, 16},
     .f = SCALE_128,
     .gen = OPCHECK_GEN_BENCH},
    // The benchmark's peak: a square bf16 GEMM of 8192 (1.1 TFLOP).
    {.op = OPCHECK_LINEAR_FORWARD, .flags = OPCHECK_PEAK, .label = "peak gemm", .n = {8192, 8192, 8192}},

    // ---- last, because a cuBLASLt without an algorithm for 2-byte-aligned bf16 would end the
    // program (linear.cu reports it and exits): every pointer 2 bytes off 16-byte alignment.
    {.op = OPCHECK_LINEAR_FORWARD,
     .flags = GPU | OPCHECK_UNALIGNED,
     .label = "+bias",
     .n = {37, 104, 72, 1},
     .range = {LIN_X_W, LIN_B},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_INPUT,
     .flags = GPU | OPCHECK_UNALIGNED,
     .n = {37, 104, 72},
     .range = {[2] = {-0.05, 0.05}},
     .dev = {DEV_GEMM}},
    {.op = OPCHECK_LINEAR_BACKWARD_WEIGHT,
     .flags = GPU | OPCHECK_UNALIGNED,
     .n = {37, 104, 72},
     .range = {[0] = {-0.01, 0.01}},
     .dev = {DEV_GEMM_F32}},
};

const int OPCHECK_N_CASES = (int)(sizeof OPCHECK_CASES / sizeof OPCHECK_CASES[0]);
