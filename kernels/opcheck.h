// The op-case registry: one table of op cases (shapes, how each input is drawn, tolerances) that
// drives three programs, so that a shape, a range or a tolerance is written once:
//   tests/test_ops_cpu.c       the CPU backend against fp64 references (finite differences for the
//                              backward ops), with the registry's CPU tolerances;
//   tests/gpu/test_cuda_ops.c  the CUDA backend against the CPU backend, with the GPU bounds;
//   llava bench-kernels        times the benchmark cases (LLaVA-1.5-7B shapes) on the CUDA backend.
//
// A case names its op (an entry of llava_ops), its sizes, how its inputs are drawn (ranges, id and
// position patterns, sequence boundaries), and per output a tolerance against the fp64 reference
// (CPU check) and a bound against the CPU backend (GPU check). Everything about a case's buffers
// follows from its op (opcheck_make): which buffers there are, their kinds (ops.h), whether the op
// reads, overwrites (OUT: poisoned with NaN first), accumulates into (ACC) or rewrites in place
// (INOUT) each one, and which outputs may be NULL (frozen variants) or may alias an input.
//
// Guard regions: every buffer a case runs on (opcheck_setup) is allocated OPCHECK_GUARD elements
// longer than the op needs, the extra elements hold a sentinel bit pattern (a NaN payload no
// arithmetic produces), written and read back raw on every backend; opcheck_guards() fails the run
// naming the op and the buffer when one has changed (a write past the end).
//
// Inputs are deterministic: each buffer's values come from a generator seeded by the case (its op,
// sizes, scalar and label) and the buffer's position, so adding a case changes no other case's data.
// In cases that run on a GPU, ACT and PARAM inputs are drawn as bf16 numbers, so a bf16 backend and
// the fp32 CPU hold the same values and only the ops' arithmetic differs; CPU-only cases draw full
// fp32 values (a CPU op that rounded its inputs would show).
#ifndef LLAVA_KERNELS_OPCHECK_H
#define LLAVA_KERNELS_OPCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The compute entries of llava_ops, one registry op each. The sizes a case gives in n[], per op:
enum {
    OPCHECK_LINEAR_FORWARD = 0,      // N, I, O, bias (1: with a bias)
    OPCHECK_LINEAR_BACKWARD_INPUT,   // N, I, O
    OPCHECK_LINEAR_BACKWARD_WEIGHT,  // N, I, O
    OPCHECK_LINEAR_BACKWARD_BIAS,    // N, O
    OPCHECK_PATCH_UNFOLD,            // B, Cin, H, W, P
    OPCHECK_CLIP_EMBED,              // B, N, C
    OPCHECK_LAYERNORM_FORWARD,       // N, C; f = eps
    OPCHECK_LAYERNORM_BACKWARD,      // N, C; f = eps (of the saved statistics)
    OPCHECK_RMSNORM_FORWARD,         // N, C; f = eps
    OPCHECK_RMSNORM_BACKWARD,        // N, C; f = eps
    OPCHECK_QUICK_GELU_FORWARD,      // rows, cols (n = rows * cols; cols 0 means 1)
    OPCHECK_QUICK_GELU_BACKWARD,     // rows, cols
    OPCHECK_GELU_FORWARD,            // rows, cols
    OPCHECK_GELU_BACKWARD,           // rows, cols
    OPCHECK_SILU_MUL_FORWARD,        // rows, cols
    OPCHECK_SILU_MUL_BACKWARD,       // rows, cols
    OPCHECK_ROPE_FORWARD,            // T, H, D; f = theta
    OPCHECK_ROPE_BACKWARD,           // T, H, D; f = theta
    OPCHECK_ATTENTION_FORWARD,       // T, Hq, Hkv, D, n_seq, causal; f = scale
    OPCHECK_ATTENTION_BACKWARD,      // T, Hq, Hkv, D, n_seq, causal; f = scale
    OPCHECK_EMBEDDING_FORWARD,       // T, C, V, padding_idx (only shapes the drawn ids)
    OPCHECK_EMBEDDING_BACKWARD,      // T, C, V, padding_idx
    OPCHECK_SCATTER_ROWS,            // n, C, rows (of dst)
    OPCHECK_GATHER_ROWS,             // n, C, rows (of src)
    OPCHECK_CROSS_ENTROPY,           // T, V; f = grad_scale
    OPCHECK_ADAMW,                   // n
    OPCHECK_GRAD_SQ_SUM,             // n
    OPCHECK_ADD,                     // rows, cols
    OPCHECK_ADD_INPLACE,             // rows, cols
    OPCHECK_ATTENTION_DECODE,        // T, Hq, Hkv, D, context, block_size; f = scale (I32 inputs drawn: below)
    OPCHECK_DROPOUT_SCALE,           // rows, cols, dropout rate in 1/1000; f = scale
    OPCHECK_GRID_POOL,               // B, G, C, mode (LLAVA_POOL_*), stride s
    OPCHECK_GELU_TANH_FORWARD,       // rows, cols
    OPCHECK_GELU_TANH_BACKWARD,      // rows, cols
    OPCHECK_GRID_POOL_BACKWARD,      // B, G, C, mode, stride s (new ops go last: a case's data is seeded by its
                                     // op's number)

    // anyres_max_N's resize of one image (H x W -> OH x OW rows of C)
    OPCHECK_RESIZE_BILINEAR,           // H, W, OH, OW, C
    OPCHECK_RESIZE_BILINEAR_BACKWARD,  // H, W, OH, OW, C
    OPCHECK_N_OPS
};

// Which programs use a case, and how.
enum {
    OPCHECK_CPU = 1 << 0,        // a correctness case of the CPU backend against the fp64 reference
    OPCHECK_GPU = 1 << 1,        // a correctness case of the CUDA backend against the CPU backend
    OPCHECK_BENCH = 1 << 2,      // a benchmark row of `llava bench-kernels` (LLaVA-1.5-7B shapes)
    OPCHECK_PEAK = 1 << 3,       // the benchmark's own peak measurement (not a row)
    OPCHECK_ALIAS = 1 << 4,      // also run with the outputs over the inputs the op allows (ops.h);
                                 // a benchmark case runs only that way
    OPCHECK_UNALIGNED = 1 << 5,  // every ACT and PARAM pointer one element past a 16-byte boundary
    OPCHECK_RUN2RUN = 1 << 6,    // GPU: run again from the same start; ACC outputs must keep their bits
    OPCHECK_FD = 1 << 7,         // cross_entropy: dlogits against finite differences, not the formula
};

// Extra input patterns, per op (a case's `pattern`).
enum {
    OPCHECK_PAT_NONE = 0,
    OPCHECK_PAT_TAILS,      // activations: x[0..5] = -5, -4.5, -3, 3, 8, 12 (where exp and erf go wrong first)
    OPCHECK_PAT_REPEAT5,    // rope: tokens 5..9 repeat tokens 0..4 (a second sequence, same positions)
    OPCHECK_PAT_CE_CHUNKS,  // cross_entropy T=6, V=4099: row 0's max in the last 2048-column chunk, row 1's in
                            // the first, row 2's logits offset by 1000 (a naive exp overflows)
    OPCHECK_PAT_CE_PEAKY,   // cross_entropy: every 7th row has one logit of 30 (a peaky softmax)
    OPCHECK_PAT_POOL_INF,   // grid_pool (and its backward's `in`): -inf entries: image 0's first window
                            // wholly -inf, and about one element in 7 of the windows -inf
    OPCHECK_PAT_POOL_NAN,   // grid_pool: the same -inf entries, and NaN met first in its window (image 0's
                            // second window, the even channels), met last (the last image's last window,
                            // the odd channels) and about one element in 11 elsewhere (max: the window's
                            // max is NaN wherever it holds one; the backward gives dout to the last NaN)
    OPCHECK_PAT_POOL_TIES,  // grid_pool max (backward): ties, inputs drawn from {-1, 0.5, 1} (about half of
                            // the windows hold their maximum twice or more: the first one gets dout)
};

// How I32 inputs are drawn when a case gives none (`ints`).
enum {
    OPCHECK_GEN_RANDOM = 0,  // rope: packed sequences (positions restart, the second half near 4096);
                             // embedding: repeats of hot rows, image placeholders (< 0), ids past V, the
                             // padding row; rows: distinct rows in shuffled order; cross_entropy: 20%
                             // ignored (-100), 5% class 0, 5% class V-1, the rest uniform;
                             // attention: n_seq sequences of T/n_seq tokens; attention_decode: T/2 + 2
                             // sequences (the last one without queries), each query row in a random
                             // one, row 0 at position 0, row 1 at context - 1, the others anywhere
                             // below context; block tables a shuffle of the cache's blocks, entries
                             // past a sequence's last position out of range, and every cache row no
                             // query may see NaN
    OPCHECK_GEN_BENCH,       // as the benchmark has them: positions 0..T-1; ids a third from 64 common
                             // rows; two images spliced after a 35-token prompt; uniform targets;
                             // attention_decode: T sequences of `context` tokens, one query each at
                             // its last position
};

// Buffer roles: what the op does with it.
enum {
    OPCHECK_IN = 0,  // reads it
    OPCHECK_OUT,     // overwrites it (starts as NaN, so a forgotten element shows)
    OPCHECK_ACC,     // accumulates into it (GRAD: starts from the case's values, zeros by default)
    OPCHECK_INOUT,   // rewrites it in place from its own values (rope, scatter, add_inplace, adamw)
};

// Metrics of the CPU check against fp64.
enum {
    OPCHECK_REL = 0,  // ||got - want|| / ||want|| <= tol
    OPCHECK_MAXREL,   // max over elements with |want| > floor of |got - want| / |want| <= tol
    OPCHECK_EXACT,    // got == (float)want, bit for bit
};

typedef struct {
    double lo, hi;  // uniform in [lo, hi), never within 1e-3 of zero; {0, 0}: the op's default
} opcheck_range;

// CPU vs fp64. zeros: also, where the reference is exactly 0 by construction (ignored rows, rows no
// token touches) the op must give exactly 0 (not where the math cancels to 0 but rounding does not:
// the gradient of a query that sees one key).
typedef struct {
    int metric;
    double tol, floor;
    int zeros;
} opcheck_ref_tol;

// GPU vs CPU: ||d|| / ||cpu|| <= norm and per element |d_i| <= rtol |cpu_i| + atol rms(cpu), d = gpu - cpu
// (for ACC outputs, what each backend added); exact: the CPU's value rounded to the GPU buffer's
// storage, bit for bit (whole values, ACC included).
typedef struct {
    double norm, rtol, atol;
    int exact;
} opcheck_dev_tol;

enum { OPCHECK_MAX_BUFS = 12, OPCHECK_MAX_OUTS = 4, OPCHECK_GUARD = 1031 };

typedef struct opcheck_case {
    int op;                                 // OPCHECK_<OP>
    unsigned flags;                         // OPCHECK_CPU | OPCHECK_GPU | OPCHECK_BENCH ...
    const char *label;                      // what the case is ("lm_head", "GQA causal"); may be NULL
    int64_t n[7];                           // sizes, per op (above)
    double f;                               // the op's scalar (eps, theta, scale, grad_scale)
    int pattern;                            // OPCHECK_PAT_*
    const int32_t *ints;                    // the I32 input as given (positions, ids, rows, targets,
                                            // cu_seqlens), or NULL: drawn as `gen` says
    int gen;                                // OPCHECK_GEN_*
    opcheck_range range[OPCHECK_MAX_BUFS];  // per buffer (in the op's order), for drawn ones
    opcheck_ref_tol ref[OPCHECK_MAX_OUTS];  // per output: the CPU check against fp64
    opcheck_dev_tol dev[OPCHECK_MAX_OUTS];  // per output: the GPU check against the CPU
} opcheck_case;

extern const opcheck_case OPCHECK_CASES[];
extern const int OPCHECK_N_CASES;

// One buffer of a case.
typedef struct {
    const char *name;  // as ops.h names the argument ("dW", "lse")
    int kind;          // BUF_*
    int role;          // OPCHECK_IN, OUT, ACC, INOUT
    int optional;      // the op accepts NULL here (frozen weights, losses without gradients)
    int derived;       // an input computed from the others (saved statistics), not drawn
    size_t n;          // elements
    double lo, hi;     // the draw
} opcheck_buf;

// A case made concrete: its buffers and their initial host contents (float, or int32_t for I32).
typedef struct {
    const opcheck_case *c;
    int nbuf, nout;
    int out[OPCHECK_MAX_OUTS];  // buffer index of each output (OUT, ACC, INOUT), in order
    opcheck_buf buf[OPCHECK_MAX_BUFS];
    void *host[OPCHECK_MAX_BUFS];
} opcheck_data;

const char *opcheck_op_name(int op);  // the llava_ops entry: "linear_forward"
int opcheck_op_family(int op);        // llava_op_family
// "linear_forward lm_head" (the benchmark's kernel column); the op's name alone without a label.
void opcheck_case_name(const opcheck_case *c, char *buf, size_t cap);
// The sizes as a person reads them: "N=2048 I=4096 O=32000".
void opcheck_case_shape(const opcheck_case *c, char *buf, size_t cap);
void opcheck_case_op_shape(const opcheck_case *c, llava_op_shape *s);  // for llava_backend_supports
// The flops and bytes the op must at least do and move at bf16 storage (each input read once, each
// output written once; 2 flops per multiply-add; causal attention half the square, its backward 2.5
// times the forward, FlashAttention's convention). One of the two is 0.
void opcheck_case_cost(const opcheck_case *c, double *flops, double *bytes);
// 1 when the op allows outputs over inputs (what OPCHECK_ALIAS runs).
int opcheck_op_aliases(int op);

// attention_decode's sizes that follow from a case's n[] (and its draw): sequences, block-table
// columns, cache blocks.
void opcheck_decode_geometry(const opcheck_case *c, int *n_seq, int *max_blocks, int *n_blocks);

// Lays out the case's buffers and draws their initial contents. Derived inputs (saved statistics,
// attention's out and lse) come from the fp64 reference, except in benchmark-only cases, where
// they are drawn (values do not change the timing, and the reference would take minutes).
void opcheck_make(const opcheck_case *c, opcheck_data *d);
// The buffers alone (kinds, roles, sizes), nothing drawn: host[] stays NULL.
void opcheck_layout(const opcheck_case *c, opcheck_data *d);
void opcheck_data_free(opcheck_data *d);
int opcheck_find(const opcheck_data *d, const char *name);  // buffer index by name, -1 if none

// The fp64 reference of every output (want[k] has buf[out[k]].n elements; ACC outputs include their
// initial contents). Backward ops are differentiated by central finite differences of the forward's
// fp64 reference (h = 1e-5). NULL when the op has no reference (adamw, grad_sq_sum).
double **opcheck_reference(const opcheck_data *d);
void opcheck_reference_free(const opcheck_data *d, double **want);

// Running a case on a backend.
enum {
    OPCHECK_RUN_PLAIN = 0,
    OPCHECK_RUN_IN_PLACE,  // the outputs the op allows over its inputs share those inputs' buffers
    OPCHECK_RUN_FROZEN,    // NULL for the optional outputs
};
typedef struct opcheck_run opcheck_run;
// Allocates every buffer with its guard region and uploads the initial contents and sentinels.
opcheck_run *opcheck_setup(llava_backend *be, const opcheck_data *d, int mode);
void opcheck_exec(opcheck_run *r);                 // runs the op once (asynchronously on a GPU)
void opcheck_reset(opcheck_run *r);                // uploads the initial contents again
void *opcheck_ptr(const opcheck_run *r, int buf);  // the pointer the op gets for a buffer
// Output k as host floats (malloc'd), or NULL where the run passed NULL (frozen).
float *opcheck_fetch(opcheck_run *r, int k);
// 1 when every guard region holds its sentinel; else 0 with "<op>: wrote past the end of <buffer>
// (element i of the guard)" in why.
int opcheck_guards(opcheck_run *r, char *why, size_t cap);
void opcheck_finish(opcheck_run *r);

// Comparisons. Each fills a verdict: the error measured and whether it is inside the tolerance,
// with a line to print (`what` names the output).
typedef struct {
    int ok;
    double err;      // REL, MAXREL: the error; EXACT: the number of differing elements
    double worst;    // GPU: the worst element's error as a fraction of its bound
    char line[320];  // one line for the log
    char why[320];   // what failed, when !ok
} opcheck_verdict;
void opcheck_compare_ref(const char *what, const opcheck_ref_tol *t, const float *got, const double *want, size_t n,
                         opcheck_verdict *v);
// scale: per-element magnitudes for the bound instead of |cpu_i| (NULL: |cpu_i|).
void opcheck_compare_dev(const char *what, const opcheck_dev_tol *t, const float *got, const float *cpu,
                         const float *scale, size_t n, opcheck_verdict *v);
// The element-bound scales of output k where rounding on the way exceeds the result's (the GEMM
// result plus the bias, below), computed with the CPU backend; NULL where the result's own.
float *opcheck_dev_scale(llava_backend *cpu, const opcheck_data *d, int k);
// x rounded to what a buffer of `kind` stores on `be` (bf16 for ACT and PARAM where act_bytes is 2).
void opcheck_round_to_storage(const llava_backend *be, int kind, float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
