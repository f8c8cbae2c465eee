// Elementwise activations: CLIP's quick_gelu, the projector's exact GELU, SigLIP's tanh GELU and LLaMA's
// SwiGLU product.
// Each value is computed in fp64 and rounded once to fp32, so the final rounding is the only error
// that shows (HF's fp32 kernels land within an ulp or so of these values).
// Every element is read before its output is written, so outputs may alias inputs index for index.
#include <math.h>

#include "cpu.h"
#include "kernels/op_require.h"

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

// x * sigmoid(1.702 x) (spec §1.1)
void cpu_quick_gelu_forward(llava_backend *be, void *out_, const void *x_, size_t n) {
    req_elementwise(be, "quick_gelu_forward", n, "out x", out_, x_, NULL, NULL, NULL);
    float *out = out_;    // (n)
    const float *x = x_;  // (n)
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        out[i] = (float)(xi * sigmoid(1.702 * xi));
    }
}

void cpu_quick_gelu_backward(llava_backend *be, void *dx_, const void *dout_, const void *x_, size_t n) {
    req_elementwise(be, "quick_gelu_backward", n, "dx dout x", dx_, dout_, x_, NULL, NULL);
    float *dx = dx_;            // (n)
    const float *dout = dout_;  // (n)
    const float *x = x_;        // (n)
    for (size_t i = 0; i < n; i++) {
        double xi = x[i], s = sigmoid(1.702 * xi);
        dx[i] = (float)(dout[i] * (s + 1.702 * xi * s * (1.0 - s)));
    }
}

// 0.5 x (1 + erf(x / sqrt 2)), written with erfc: for x below about -3, 1 + erf(...) cancels to a
// few significant bits while erfc(-x / sqrt 2) keeps full relative precision.
void cpu_gelu_forward(llava_backend *be, void *out_, const void *x_, size_t n) {
    req_elementwise(be, "gelu_forward", n, "out x", out_, x_, NULL, NULL, NULL);
    float *out = out_;    // (n)
    const float *x = x_;  // (n)
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        out[i] = (float)(0.5 * xi * erfc(-xi * M_SQRT1_2));
    }
}

// The tanh approximation, in fp64 and rounded once, as the exact form above.
void cpu_gelu_tanh_forward(llava_backend *be, void *out_, const void *x_, size_t n) {
    req_elementwise(be, "gelu_tanh_forward", n, "out x", out_, x_, NULL, NULL, NULL);
    float *out = out_;    // (n)
    const float *x = x_;  // (n)
    const double k = sqrt(2.0 / M_PI);
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        out[i] = (float)(0.5 * xi * (1.0 + tanh(k * (xi + 0.044715 * xi * xi * xi))));
    }
}

// d/dx of 0.5 x (1 + tanh(u)), u = k (x + 0.044715 x^3), k = sqrt(2 / pi):
//     0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) k (1 + 3 * 0.044715 x^2)
//   = s + 2 k x s (1 - s) (1 + 0.134145 x^2),  s = sigmoid(2 u), 1 - s = sigmoid(-2 u)
// (1 + tanh(u) = 2 s and 1 - tanh(u) = 2 (1 - s)): the sigmoid form keeps full relative precision in
// both tails, where 1 + tanh(u) or 1 - tanh(u) cancel. fp64, rounded once.
void cpu_gelu_tanh_backward(llava_backend *be, void *dx_, const void *dout_, const void *x_, size_t n) {
    req_elementwise(be, "gelu_tanh_backward", n, "dx dout x", dx_, dout_, x_, NULL, NULL);
    float *dx = dx_;            // (n)
    const float *dout = dout_;  // (n)
    const float *x = x_;        // (n)
    const double k = sqrt(2.0 / M_PI);
    for (size_t i = 0; i < n; i++) {
        double xi = x[i], u2 = 2.0 * k * (xi + 0.044715 * xi * xi * xi);
        double s = sigmoid(u2), sm = sigmoid(-u2);
        dx[i] = (float)(dout[i] * (s + 2.0 * k * xi * s * sm * (1.0 + 3.0 * 0.044715 * xi * xi)));
    }
}

// d/dx [x Phi(x)] = Phi(x) + x phi(x), Phi and phi the standard normal CDF and density.
void cpu_gelu_backward(llava_backend *be, void *dx_, const void *dout_, const void *x_, size_t n) {
    req_elementwise(be, "gelu_backward", n, "dx dout x", dx_, dout_, x_, NULL, NULL);
    float *dx = dx_;            // (n)
    const float *dout = dout_;  // (n)
    const float *x = x_;        // (n)
    const double inv_sqrt_2pi = 0.5 * M_2_SQRTPI * M_SQRT1_2;
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        double cdf = 0.5 * erfc(-xi * M_SQRT1_2), pdf = inv_sqrt_2pi * exp(-0.5 * xi * xi);
        dx[i] = (float)(dout[i] * (cdf + xi * pdf));
    }
}

// silu(gate) * up, silu(x) = x sigmoid(x) (spec §2.5)
void cpu_silu_mul_forward(llava_backend *be, void *out_, const void *gate_, const void *up_, size_t n) {
    req_elementwise(be, "silu_mul_forward", n, "out gate up", out_, gate_, up_, NULL, NULL);
    float *out = out_;          // (n)
    const float *gate = gate_;  // (n)
    const float *up = up_;      // (n)
    for (size_t i = 0; i < n; i++) {
        double g = gate[i];
        out[i] = (float)(g * sigmoid(g) * up[i]);
    }
}

void cpu_silu_mul_backward(llava_backend *be, void *dgate_, void *dup_, const void *dout_, const void *gate_,
                           const void *up_, size_t n) {
    req_elementwise(be, "silu_mul_backward", n, "dgate dup dout gate up", dgate_, dup_, dout_, gate_, up_);
    float *dgate = dgate_;      // (n)
    float *dup = dup_;          // (n)
    const float *dout = dout_;  // (n)
    const float *gate = gate_;  // (n)
    const float *up = up_;      // (n)
    for (size_t i = 0; i < n; i++) {
        double g = gate[i], u = up[i], d = dout[i], s = sigmoid(g);
        dgate[i] = (float)(d * u * s * (1.0 + g * (1.0 - s)));
        dup[i] = (float)(d * g * s);
    }
}
