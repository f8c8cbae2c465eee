// nn.Linear on the CPU: every product is one OpenBLAS sgemm on row-major data. OpenBLAS splits work
// over output blocks, not over the reduction, so results are the same bits for a given thread count.
// K is ops.h's I (input features): <complex.h>, which cblas.h includes, defines I as a macro.
// cpu.h (and through it ops.h, whose prototypes name a parameter I) before cblas.h, whose
// <complex.h> defines I as a macro.
#include "cpu.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/op_require.h"

void cpu_linear_forward(llava_backend *be, void *out_, const void *x_, const void *W_, const void *bias_, int N, int K,
                        int O) {
    req_linear_forward(be, out_, x_, W_, N, K, O);
    float *out = out_;          // (N, O)
    const float *x = x_;        // (N, K)
    const float *W = W_;        // (O, K)
    const float *bias = bias_;  // (O) or NULL
    // N = 0 happens (a batch without images gives the projector no rows); BLAS rejects it.
    if (N <= 0) return;
    if (be->batch_invariant) {
        // Fixed chunks of R rows, the last one padded with zero rows in scratch: every GEMM has the
        // same height, so each row is summed the same way whatever else the call holds.
        enum { R = LLAVA_INVARIANT_ROWS };
        float *xp = NULL, *op = NULL;
        for (int n0 = 0; n0 < N; n0 += R) {
            int rows = N - n0 < R ? N - n0 : R;
            const float *xs = x + (size_t)n0 * K;
            float *os = out + (size_t)n0 * O;
            if (rows < R) {
                xp = xcalloc((size_t)R * K, sizeof(float));
                op = xcalloc((size_t)R * O, sizeof(float));
                memcpy(xp, xs, sizeof(float) * (size_t)rows * K);
                xs = xp;
                os = op;
            }
            float beta = 0.0f;
            if (bias) {
                for (int n = 0; n < R; n++) memcpy(os + (size_t)n * O, bias, (size_t)O * sizeof(float));
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, O, K, 1.0f, xs, K, W, K, beta, os, O);
            if (rows < R) memcpy(out + (size_t)n0 * O, op, sizeof(float) * (size_t)rows * O);
        }
        free(xp);
        free(op);
        return;
    }
    // Seeding out with the bias and letting sgemm add x W^T (beta = 1) adds the bias without a
    // second pass over the output.
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * O, bias, (size_t)O * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, K, 1.0f, x, K, W, K, beta, out, O);
}

void cpu_linear_backward_input(llava_backend *be, void *dx_, const void *dout_, const void *W_, int N, int K, int O) {
    req_linear_backward_input(be, dx_, dout_, W_, N, K, O);
    float *dx = dx_;            // (N, K)
    const float *dout = dout_;  // (N, O)
    const float *W = W_;        // (O, K)
    if (N <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, O, 1.0f, dout, O, W, K, 0.0f, dx, K);
}

void cpu_linear_backward_weight(llava_backend *be, float *dW, const void *dout_, const void *x_, int N, int K, int O) {
    req_linear_backward_weight(be, dW, dout_, x_, N, K, O);
    const float *dout = dout_;  // (N, O)
    const float *x = x_;        // (N, K); dW (O, K) accumulated
    if (N <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, K, N, 1.0f, dout, O, x, K, 1.0f, dW, K);
}

void cpu_linear_backward_bias(llava_backend *be, float *db, const void *dout_, int N, int O) {
    req_linear_backward_bias(be, db, dout_, N, O);
    const float *dout = dout_;  // (N, O); db (O) accumulated
    // The sum runs over every token of the batch (thousands of rows); fp64 keeps its rounding error
    // far below fp32's.
    double *acc = xcalloc((size_t)O, sizeof(double));  // (O)
    for (int n = 0; n < N; n++) {
        const float *row = dout + (size_t)n * O;
        for (int o = 0; o < O; o++) acc[o] += row[o];
    }
    for (int o = 0; o < O; o++) db[o] = (float)((double)db[o] + acc[o]);
    free(acc);
}
