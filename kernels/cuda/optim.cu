// AdamW over flat buffers (fp32 master, m, v and gradient; bf16 working copy) and the squared
// gradient norm.
//
// adamw follows kernels/cpu/optim.c operation for operation: the same fp32 scalars (computed in
// double on the host by the same expressions), the same order, each product and sum rounded on
// its own (__fmul_rn/__fadd_rn keep the compiler from fusing them into FMAs, which the CPU build
// does not do), IEEE division and square root. So master, m and v come out with the CPU's bits,
// and param is master rounded to bf16. One thread per element, 256 per block.
//
// grad_sq_sum: a fixed grid of GSS_BLOCKS blocks (independent of the device) sums squares in fp64
// over a grid-stride loop and reduces each block in a fixed order; one block then adds the block
// sums in order. The same bits every run; NaN or inf anywhere propagates to the result.
#include <math.h>

#include "common.cuh"

__global__ void adamw_kernel(uint16_t *param, float *master, const float *grad, float *m, float *v, size_t n,
                             float decay, float w1, float b2, float w2, float neg_step_size, float bc2s, float feps,
                             float grad_scale) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = __fmul_rn(grad[i], grad_scale);
    float p = __fmul_rn(master[i], decay);
    float mi = m[i], vi = v[i];
    mi = __fadd_rn(mi, __fmul_rn(w1, __fsub_rn(g, mi)));  // exp_avg.lerp_(grad, 1 - beta1)
    vi = __fmul_rn(vi, b2);                               // exp_avg_sq.mul_(beta2)
    vi = __fadd_rn(vi, __fmul_rn(__fmul_rn(w2, g), g));   // .addcmul_(grad, grad, 1 - beta2)
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2s), feps);
    p = __fadd_rn(p, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));  // addcdiv_(m, denom, -step_size)
    m[i] = mi;
    v[i] = vi;
    master[i] = p;
    param[i] = f_to_bf16(p);
}

extern "C" void cuda_adamw(llava_backend *be, void *param, float *master, const float *grad, float *m, float *v,
                           size_t n, double lr, double beta1, double beta2, double eps, double weight_decay, int step,
                           float grad_scale) {
    req_adamw(be, param, grad, m, v, n, step);
    CUDA_REQUIRE(master != NULL, "adamw: the CUDA backend keeps fp32 masters; master must not be NULL");
    if (n == 0) return;
    // The CPU reference's scalars, expression for expression.
    const float decay = (float)(1.0 - lr * weight_decay);
    const float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    const double bc1 = 1.0 - pow(beta1, step), bc2_sqrt = sqrt(1.0 - pow(beta2, step));
    const float neg_step_size = (float)(-(lr / bc1)), bc2s = (float)bc2_sqrt, feps = (float)eps;
    adamw_kernel<<<grid_for(n, 256), 256, 0, cuda_stream_of(be)>>>((uint16_t *)param, master, grad, m, v, n, decay, w1,
                                                                   b2, w2, neg_step_size, bc2s, feps, grad_scale);
    CUDA_CHECK_LAUNCH();
}

enum { GSS_BLOCKS = 1024, GSS_THREADS = 256 };

// Each thread: elements i, i + stride, ... in fp64; with 16-byte aligned input, four at a time.
__global__ void grad_sq_partial_kernel(double *part, const float *g, size_t n, int vec) {
    const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    double s = 0.0;
    if (vec) {
        const size_t n4 = n / 4;
        const float4 *g4 = reinterpret_cast<const float4 *>(g);
        for (size_t i = tid; i < n4; i += stride) {
            float4 q = g4[i];
            s += (double)q.x * q.x;
            s += (double)q.y * q.y;
            s += (double)q.z * q.z;
            s += (double)q.w * q.w;
        }
        for (size_t i = n4 * 4 + tid; i < n; i += stride) s += (double)g[i] * g[i];
    } else {
        for (size_t i = tid; i < n; i += stride) s += (double)g[i] * g[i];
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void grad_sq_final_kernel(double *out, const double *part, int nparts) {
    double s = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += part[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) *out = s;
}

extern "C" double cuda_grad_sq_sum(llava_backend *be, const float *grad, size_t n) {
    req_elementwise(be, "grad_sq_sum", n, "grad", grad, NULL, NULL, NULL, NULL);
    if (n == 0) return 0.0;
    double *part = (double *)cuda_scratch(be, (GSS_BLOCKS + 1) * sizeof(double));  // (GSS_BLOCKS) + the total
    cudaStream_t st = cuda_stream_of(be);
    grad_sq_partial_kernel<<<GSS_BLOCKS, GSS_THREADS, 0, st>>>(part, grad, n, is_aligned16(grad));
    CUDA_CHECK_LAUNCH();
    grad_sq_final_kernel<<<1, GSS_THREADS, 0, st>>>(part + GSS_BLOCKS, part, GSS_BLOCKS);
    CUDA_CHECK_LAUNCH();
    double result = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&result, part + GSS_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    return result;
}
