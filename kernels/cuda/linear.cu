// nn.Linear on the GPU: three cuBLASLt GEMMs (bf16 inputs, fp32 accumulation, CUBLAS_COMPUTE_32F)
// and a deterministic column sum for the bias gradient.
//
// Row-major to cuBLAS's column-major: a row-major (R, C) matrix is the column-major (C, R) matrix
// with leading dimension C, i.e. its transpose. So each row-major product Y = A B is computed as
// the column-major Y^T = B^T A^T:
//   forward          out (N, O) = x (N, I) W^T        ->  out^T (O, N) = W (as col-major I x O, op T) x^T (I x N)
//                    with the bias added in the epilogue (CUBLASLT_EPILOGUE_BIAS: one value per row of
//                    the column-major D, i.e. per output feature) before the single rounding to bf16.
//   backward_input   dx (N, I) = dout (N, O) W        ->  dx^T (I, N) = W^T (col-major I x O, op N) dout^T (O x N)
//   backward_weight  dW (O, I) += dout^T x            ->  dW^T (I, O) += x^T (I x N, op N) dout (op T of O x N)
//                    with fp32 C = D = dW and beta = 1: the accumulation happens in fp32 inside the GEMM.
//
// Plans (descriptors, layouts and the chosen algorithm) are cached by (kind, shape, pointer
// alignments, bias), so one shape always runs the same algorithm: cuBLASLt is deterministic for a
// fixed algorithm on a given GPU (its split-K reductions are ordered), hence so are these ops.
// One 32 MiB workspace per context serves its GEMMs (they run in order on its stream).
#include <cublasLt.h>
#include <string.h>

#include "common.cuh"

#define CUBLAS_CHECK(call)                                                                                             \
    do {                                                                                                               \
        cublasStatus_t st_ = (call);                                                                                   \
        if (st_ != CUBLAS_STATUS_SUCCESS) cuda_fatal(__FILE__, __LINE__, #call, cublas_status_name(st_));              \
    } while (0)

static const char *cublas_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}

static const size_t WORKSPACE_BYTES = (size_t)32 << 20;

enum { GEMM_FORWARD = 0, GEMM_BACKWARD_INPUT = 1, GEMM_BACKWARD_WEIGHT = 2 };

typedef struct {
    int kind;           // GEMM_*
    int N, I, O;        // the op's shape
    int bias;           // forward with the bias epilogue
    unsigned align[5];  // A, B, C, D, bias pointer alignments (bytes, capped at 256)
} gemm_key;

typedef struct {
    gemm_key key;
    int used;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c, d;
    cublasLtMatmulAlgo_t algo;
    int bias_kernel;  // no algorithm took the bias epilogue: add the bias in a second kernel
} gemm_plan;

enum { MAX_PLANS = 128 };

// A context's cuBLASLt state (common.cuh's cuda_ctx.gemm), made on its first GEMM.
struct cuda_gemm_cache {
    cublasLtHandle_t lt;
    void *workspace;  // WORKSPACE_BYTES
    gemm_plan plans[MAX_PLANS];
    int next_evict;
};

static cuda_gemm_cache *gemm_cache(llava_backend *be) {
    cuda_ctx *cx = cuda_cx(be);
    if (!cx->gemm) {
        cuda_gemm_cache *g = (cuda_gemm_cache *)calloc(1, sizeof *g);
        if (!g) cuda_fatal(__FILE__, __LINE__, "calloc", "out of host memory");
        CUBLAS_CHECK(cublasLtCreate(&g->lt));
        CUDA_CHECK(cudaMalloc(&g->workspace, WORKSPACE_BYTES));
        cx->gemm = g;
    }
    return cx->gemm;
}

static unsigned ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && (a % al) != 0) al >>= 1;
    return al;
}

static void plan_destroy(gemm_plan *p) {
    if (!p->used) return;
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->c));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->d));
    p->used = 0;
}

static void set_op(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, cublasOperation_t op) {
    int32_t v = (int32_t)op;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &v, sizeof v));
}

// The plan for `key`, built on first use. `bias` is the bias pointer (the heuristic reads its
// alignment from the descriptor).
static gemm_plan *plan_get(cuda_gemm_cache *g, const gemm_key *key, const void *bias) {
    gemm_plan *plans = g->plans;
    for (int i = 0; i < MAX_PLANS; i++)
        if (plans[i].used && memcmp(&plans[i].key, key, sizeof *key) == 0) return &plans[i];

    gemm_plan *p = NULL;
    for (int i = 0; i < MAX_PLANS && !p; i++)
        if (!plans[i].used) p = &plans[i];
    if (!p) {  // full: replace the plans round-robin (a run uses a few dozen shapes at most)
        p = &plans[g->next_evict];
        g->next_evict = (g->next_evict + 1) % MAX_PLANS;
        plan_destroy(p);
    }
    memset(p, 0, sizeof *p);
    p->key = *key;

    const uint64_t N = (uint64_t)key->N, I = (uint64_t)key->I, O = (uint64_t)key->O;
    cudaDataType_t dtype_d = key->kind == GEMM_BACKWARD_WEIGHT ? CUDA_R_32F : CUDA_R_16BF;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    switch (key->kind) {
    case GEMM_FORWARD:  // D (O x N) = op_T(A: I x O) * B (I x N)
        set_op(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
        set_op(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, I, O, I));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, I, N, I));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, dtype_d, O, N, O));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, dtype_d, O, N, O));
        break;
    case GEMM_BACKWARD_INPUT:  // D (I x N) = A (I x O) * B (O x N)
        set_op(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_N);
        set_op(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, I, O, I));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, O, N, O));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, dtype_d, I, N, I));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, dtype_d, I, N, I));
        break;
    default:  // GEMM_BACKWARD_WEIGHT: D (I x O) += A (I x N) * op_T(B: O x N)
        set_op(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_N);
        set_op(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_T);
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, I, N, I));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, O, N, O));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, dtype_d, I, O, I));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, dtype_d, I, O, I));
        break;
    }
    if (key->bias) {
        uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        int32_t bias_type = CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = WORKSPACE_BYTES;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++) {
        uint32_t al = key->align[i];
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &al, sizeof al));
    }
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    memset(&result, 0, sizeof result);
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(g->lt, p->desc, p->a, p->b, p->c, p->d, pref, 1, &result, &found));
    if (found == 0 && key->bias) {
        // Fallback (not expected for bf16): plain GEMM, then bias_add_kernel. The output is then
        // rounded to bf16 twice (GEMM, then + bias) instead of once.
        uint32_t epi = CUBLASLT_EPILOGUE_DEFAULT;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        p->bias_kernel = 1;
        CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(g->lt, p->desc, p->a, p->b, p->c, p->d, pref, 1, &result, &found));
    }
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (found == 0) {
        char why[160];
        snprintf(why, sizeof why, "no cuBLASLt algorithm for GEMM kind %d N=%d I=%d O=%d bias=%d", key->kind, key->N,
                 key->I, key->O, key->bias);
        cuda_fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", why);
    }
    p->algo = result.algo;
    p->used = 1;
    return p;
}

// out (N, O) += bias (O), row by row (the fallback of plan_get).
__global__ void bias_add_kernel(uint16_t *out, const uint16_t *bias, size_t total, int O) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < total) out[i] = f_to_bf16(bf16_to_f(out[i]) + bf16_to_f(bias[i % O]));
}

static void gemm(llava_backend *be, int kind, void *D, const void *A, const void *B, const void *bias, int N, int I,
                 int O, float beta) {
    cuda_gemm_cache *g = gemm_cache(be);
    gemm_key key;
    memset(&key, 0, sizeof key);  // padding included: keys are compared with memcmp
    key.kind = kind;
    key.N = N;
    key.I = I;
    key.O = O;
    key.bias = bias != NULL;
    key.align[0] = ptr_align(A);
    key.align[1] = ptr_align(B);
    key.align[2] = ptr_align(D);  // C is D (in place)
    key.align[3] = ptr_align(D);
    key.align[4] = bias ? ptr_align(bias) : 0;
    gemm_plan *p = plan_get(g, &key, bias);
    if (bias && !p->bias_kernel)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasLtMatmul(g->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, D, p->c, D, p->d, &p->algo,
                                g->workspace, WORKSPACE_BYTES, cuda_stream_of(be)));
    if (bias && p->bias_kernel) {
        size_t total = (size_t)N * O;
        bias_add_kernel<<<grid_for(total, 256), 256, 0, cuda_stream_of(be)>>>((uint16_t *)D, (const uint16_t *)bias,
                                                                              total, O);
        CUDA_CHECK_LAUNCH();
    }
}

// ---------------------------------------------------------------------------------------------
// Host entry points (cuda_ops.h).

extern "C" void cuda_linear_forward(llava_backend *be, void *out, const void *x, const void *W, const void *bias, int N,
                                    int I, int O) {
    req_linear_forward(be, out, x, W, N, I, O);
    if (N <= 0 || O <= 0) return;  // no rows: nothing to compute (a batch without images)
    if (I <= 0) {
        CUDA_REQUIRE(0, "linear_forward: zero input features");
    }
    gemm(be, GEMM_FORWARD, out, W, x, bias, N, I, O, 0.0f);
}

extern "C" void cuda_linear_backward_input(llava_backend *be, void *dx, const void *dout, const void *W, int N, int I,
                                           int O) {
    req_linear_backward_input(be, dx, dout, W, N, I, O);
    if (N <= 0 || I <= 0) return;
    CUDA_REQUIRE(O > 0, "linear_backward_input: zero output features");
    gemm(be, GEMM_BACKWARD_INPUT, dx, W, dout, NULL, N, I, O, 0.0f);
}

extern "C" void cuda_linear_backward_weight(llava_backend *be, float *dW, const void *dout, const void *x, int N, int I,
                                            int O) {
    req_linear_backward_weight(be, dW, dout, x, N, I, O);
    if (N <= 0 || I <= 0 || O <= 0) return;  // nothing to add
    gemm(be, GEMM_BACKWARD_WEIGHT, dW, x, dout, NULL, N, I, O, 1.0f);
}

extern "C" void cuda_linear_backward_bias(llava_backend *be, float *db, const void *dout, int N, int O) {
    req_linear_backward_bias(be, db, dout, N, O);
    cuda_colsum(be, COLSUM_PLAIN, db, NULL, dout, NULL, NULL, NULL, N, O);
}

void cuda_gemm_release(llava_backend *be) {
    cuda_ctx *cx = cuda_cx(be);
    cuda_gemm_cache *g = cx->gemm;
    if (!g) return;
    for (int i = 0; i < MAX_PLANS; i++) plan_destroy(&g->plans[i]);
    cublasLtDestroy(g->lt);
    cudaFree(g->workspace);
    free(g);
    cx->gemm = NULL;
}
