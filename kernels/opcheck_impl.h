// Private to kernels/: how the registry (opcheck.h) describes each op. opcheck.c has the machinery
// (draws, runs, guards, comparisons), opcheck_ops.c one descriptor per op, opcheck_cases.c the table.
#ifndef LLAVA_KERNELS_OPCHECK_IMPL_H
#define LLAVA_KERNELS_OPCHECK_IMPL_H

#include <stdint.h>

#include "opcheck.h"

typedef struct {
    const char *name;  // the llava_ops entry
    int family;        // llava_op_family
    // Adds the case's buffers (opcheck_add_buf), outputs first, in the op's argument order.
    void (*layout)(const opcheck_case *c, opcheck_data *d);
    // After the generic draw: I32 inputs, patterns, derived inputs (bench: 1 for a benchmark-only case,
    // whose derived inputs are drawn). May be NULL.
    void (*prepare)(opcheck_data *d, uint64_t *rng, int bench);
    void (*run)(llava_backend *be, const opcheck_case *c, void *const *p);
    // want[k] for output k, allocated by the caller, initial ACC/INOUT contents already in it. NULL: none.
    void (*reference)(const opcheck_data *d, double **want);
    void (*cost)(const opcheck_case *c, double *flops, double *bytes);
    void (*shape)(const opcheck_case *c, char *buf, size_t cap);
    // In-place pairs {output buffer, input buffer} the op allows, -1 when none.
    int alias[2][2];
} opcheck_op_desc;

extern const opcheck_op_desc OPCHECK_OPS[OPCHECK_N_OPS];

// Adds a buffer; returns its index. Roles other than OPCHECK_IN are outputs, counted in order.
int opcheck_add_buf(opcheck_data *d, const char *name, int kind, int role, size_t n, double lo, double hi);
enum { OPCHECK_BUF_OPTIONAL = 1, OPCHECK_BUF_DERIVED = 2 };
int opcheck_add_buf_flags(opcheck_data *d, const char *name, int kind, int role, size_t n, double lo, double hi,
                          int flags);

// Uniform [0, 1) from a splitmix64 state.
double opcheck_uniform(uint64_t *state);
// An integer in [lo, hi).
int opcheck_rand_int(uint64_t *state, int lo, int hi);
// bf16 rounding of an fp32 value (round to nearest even, as the CUDA backend's uploads).
float opcheck_bf16(float x);

#endif
