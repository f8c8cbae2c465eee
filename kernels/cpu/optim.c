// AdamW over flat fp32 buffers, in torch.optim.AdamW's order of operations (single-tensor path,
// torch 2.x): decoupled decay first, m by lerp, v by multiply then addcmul, bias corrections in
// double folded into the step size and the denominator. Scalars are computed in double and rounded
// to fp32 once, as torch's tensor-scalar kernels do for fp32 tensors.
#include <math.h>

#include "cpu.h"
#include "kernels/op_require.h"

void cpu_adamw(llava_backend *be, void *param_, float *master, const float *grad, float *m, float *v, size_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int step, float grad_scale) {
    req_adamw(be, param_, grad, m, v, n, step);
    float *p = master ? master : param_;  // (n) the fp32 weights being updated
    const float decay = (float)(1.0 - lr * weight_decay);
    const float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    const double bc1 = 1.0 - pow(beta1, step), bc2_sqrt = sqrt(1.0 - pow(beta2, step));
    const float neg_step_size = (float)(-(lr / bc1)), bc2s = (float)bc2_sqrt, feps = (float)eps;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        p[i] *= decay;
        m[i] += w1 * (g - m[i]);  // exp_avg.lerp_(grad, 1 - beta1), weight < 0.5 branch
        v[i] = v[i] * b2;
        v[i] = v[i] + w2 * g * g;  // exp_avg_sq.addcmul_(grad, grad, value=1 - beta2)
        float denom = sqrtf(v[i]) / bc2s + feps;
        p[i] = p[i] + neg_step_size * m[i] / denom;  // param.addcdiv_(exp_avg, denom, value=-step_size)
    }
    if (master) {
        float *param = param_;  // an fp32 copy on this backend
        for (size_t i = 0; i < n; i++) param[i] = master[i];
    }
}

double cpu_grad_sq_sum(llava_backend *be, const float *grad, size_t n) {
    req_elementwise(be, "grad_sq_sum", n, "grad", grad, NULL, NULL, NULL, NULL);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)grad[i] * grad[i];
    return s;
}
