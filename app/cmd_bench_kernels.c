// `llava bench-kernels`: times the benchmark cases of the op-case registry (kernels/opcheck_cases.c:
// every CUDA op at LLaVA-1.5-7B shapes, LLaMA-7B: hidden 4096, MLP 11008, vocabulary 32000, 32 heads
// of 128, 2048 tokens; CLIP-L/336: width 1024, MLP 4096, 577 tokens, 16 heads of 64, 16 images per
// batch) and prints what each achieves against the device's own peaks, measured at start: the
// registry's peak case (a large bf16 GEMM) for TFLOP/s and a large device-to-device copy for GB/s.
//
// Timing: CUDA events around each call on the backend's stream, after warm-up calls (module load,
// cuBLASLt plans), median of the repetitions. Inputs are the registry's (random, never zeros: a GEMM
// on zeros runs faster than on real data). Achieved GB/s count the fewest bytes the op must move
// (each input read once, each output written once); GEMM and attention TFLOP/s count 2 flops per
// multiply-add (causal attention half the square; its backward 2.5 times the forward,
// FlashAttention's convention): opcheck_case_cost. attention_decode (generation against a paged KV
// cache) is bandwidth-bound, so its rows give GB/s: the bytes of K and V its rows read (every key of
// each row's context, once per kv head) plus q and out, over the time, against the copy's GB/s.
// Each case runs in the registry's guard regions,
// checked after its timing: a write past the end of a buffer fails the command, naming the op and
// the buffer. Rows are printed as they finish, so a failing op leaves the rows before it on the screen.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "kernels/backend.h"
#include "kernels/device.h"
#include "kernels/opcheck.h"

enum { MAX_REPS = 200 };

static const char USAGE[] =
    "usage: llava bench-kernels [--reps N] [--only SUBSTRING] [--no-attention]\n"
    "\n"
    "Times every CUDA kernel of the op-case registry at LLaVA-1.5-7B shapes against the device's own peaks,\n"
    "measured at start (a large bf16 GEMM for TFLOP/s, a 1 GiB device copy for GB/s). Without a CUDA device it\n"
    "says so and exits 0.\n"
    "\n"
    "  --reps N          timed calls per kernel, the median reported, 1..200 (default 20)\n"
    "  --only SUBSTRING  only the kernels whose name contains SUBSTRING (default: all)\n"
    "  --no-attention    leave out the attention kernels (default: off)\n";

typedef struct {
    int reps, no_attention;
    const char *only;
} bench_args;

// 0 to run, or the exit status (0 after --help, 2 on a usage error).
static int parse_args(int argc, char **argv, bench_args *a, int *done) {
    static const char *const FLAGS[] = {"--reps", "--only", "--no-attention", "--help"};
    *a = (bench_args){.reps = 20};
    *done = 1;
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            a->reps = atoi(argv[++i]);
            if (a->reps < 1 || a->reps > MAX_REPS) {
                fprintf(stderr, "bench-kernels: --reps must be 1..%d\n", MAX_REPS);
                return 2;
            }
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            a->only = argv[++i];
        } else if (strcmp(argv[i], "--no-attention") == 0) {
            a->no_attention = 1;
        } else {
            return args_unknown("bench-kernels", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    *done = 0;
    return 0;
}

#ifdef LLAVA_HAVE_CUDA
#include <cuda_runtime_api.h>

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return a < b ? -1 : a > b;
}

// Median milliseconds of `reps` calls after `warmup` calls.
static double time_run(llava_backend *be, opcheck_run *r, const char *name, int warmup, int reps) {
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        fprintf(stderr, "bench-kernels: cudaEventCreate failed\n");
        exit(1);
    }
    for (int i = 0; i < warmup; i++) opcheck_exec(r);
    be->ops->sync(be);
    float ms[MAX_REPS];
    for (int k = 0; k < reps; k++) {
        llava_device_record(be, e0);
        opcheck_exec(r);
        llava_device_record(be, e1);
        cudaError_t err = cudaEventSynchronize(e1);
        if (err == cudaSuccess) err = cudaEventElapsedTime(&ms[k], e0, e1);
        if (err != cudaSuccess) {
            fprintf(stderr, "bench-kernels: %s: %s\n", name, cudaGetErrorString(err));
            exit(1);
        }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    qsort(ms, (size_t)reps, sizeof(float), cmp_float);
    return reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
}

// Times one case in its guard regions; 0 with why when a guard changed.
static int time_case(llava_backend *be, const opcheck_case *c, int warmup, int reps, double *ms, char *why,
                     size_t cap) {
    char name[96];
    opcheck_case_name(c, name, sizeof name);
    opcheck_data d;
    opcheck_make(c, &d);
    // adamw rewrites its inputs: fine for timing (the values stay finite and nonzero).
    opcheck_run *r = opcheck_setup(be, &d, (c->flags & OPCHECK_ALIAS) ? OPCHECK_RUN_IN_PLACE : OPCHECK_RUN_PLAIN);
    *ms = time_run(be, r, name, warmup, reps);
    int ok = opcheck_guards(r, why, cap);
    opcheck_finish(r);
    opcheck_data_free(&d);
    return ok;
}

int cmd_bench_kernels(int argc, char **argv) {
    bench_args args;
    int done, rc = parse_args(argc, argv, &args, &done);
    if (done) return rc;
    int reps = args.reps, no_attention = args.no_attention;
    const char *only = args.only;
    llava_backend *be = llava_backend_open("cuda", NULL);
    if (!be) {
        printf("no CUDA device (%s)\n", llava_errmsg());
        return 0;
    }
    const llava_ops *o = be->ops;
    llava_backend_info info;
    llava_backend_describe(be, &info);
    printf("device: %s\n", info.device);
    char why[320];

    // Peaks: the registry's peak GEMM and a 1 GiB device-to-device copy.
    const opcheck_case *peak = NULL;
    for (int i = 0; i < OPCHECK_N_CASES; i++)
        if (OPCHECK_CASES[i].flags & OPCHECK_PEAK) peak = &OPCHECK_CASES[i];
    if (!peak) {
        fprintf(stderr, "bench-kernels: the registry has no peak case\n");
        return 1;
    }
    double gemm_ms, gemm_flops, unused;
    if (!time_case(be, peak, 3, 10, &gemm_ms, why, sizeof why)) {
        fprintf(stderr, "bench-kernels: %s\n", why);
        return 1;
    }
    opcheck_case_cost(peak, &gemm_flops, &unused);
    double peak_tflops = gemm_flops / (gemm_ms * 1e-3) / 1e12;
    const size_t copy_n = (size_t)1 << 27;
    float *src = o->alloc(be, BUF_F32, copy_n), *dst = o->alloc(be, BUF_F32, copy_n);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float best = 1e30f;
    for (int r = 0; r < 8; r++) {
        llava_device_record(be, e0);
        o->copy(be, BUF_F32, dst, src, copy_n);  // 512 MiB read + 512 MiB written
        llava_device_record(be, e1);
        cudaEventSynchronize(e1);
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 2 && ms < best) best = ms;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    o->free(be, src), o->free(be, dst);
    double peak_gbs = 2.0 * (double)copy_n * 4.0 / (best * 1e-3) / 1e9;
    printf("peaks measured: bf16 GEMM 8192^3 %.3f ms = %.1f TFLOP/s; device copy 512 MiB %.3f ms = %.0f GB/s\n\n",
           gemm_ms, peak_tflops, (double)best, peak_gbs);

    printf("%-34s %-24s %10s %10s %8s %7s\n", "kernel", "shape", "ms", "TFLOP/s", "GB/s", "%peak");
    int failed = 0;
    for (int i = 0; i < OPCHECK_N_CASES; i++) {
        const opcheck_case *c = &OPCHECK_CASES[i];
        if (!(c->flags & OPCHECK_BENCH)) continue;
        char name[96], shape[64];
        opcheck_case_name(c, name, sizeof name);
        opcheck_case_shape(c, shape, sizeof shape);
        if (only && !strstr(name, only)) continue;
        int family = opcheck_op_family(c->op);
        if (no_attention && (family == LLAVA_OP_ATTENTION || family == LLAVA_OP_ATTENTION_DECODE)) continue;
        llava_op_shape s;
        opcheck_case_op_shape(c, &s);
        if (!llava_backend_supports(be, &s, why, sizeof why)) {
            printf("%-34s %-24s not run: %s\n", name, shape, why);
            continue;
        }
        double ms, flops, bytes;
        if (!time_case(be, c, c->op == OPCHECK_ADAMW ? 1 : 3, reps, &ms, why, sizeof why)) {
            fprintf(stderr, "bench-kernels: %s\n", why);
            failed = 1;
        }
        opcheck_case_cost(c, &flops, &bytes);
        if (flops > 0) {
            double tf = flops / (ms * 1e-3) / 1e12;
            printf("%-34s %-24s %10.4f %10.1f %8s %6.0f%%\n", name, shape, ms, tf, "", 100.0 * tf / peak_tflops);
        } else {
            double gbs = bytes / (ms * 1e-3) / 1e9;
            printf("%-34s %-24s %10.4f %10s %8.0f %6.0f%%\n", name, shape, ms, "", gbs, 100.0 * gbs / peak_gbs);
        }
        fflush(stdout);
    }
    llava_backend_close(be);
    return failed;
}

#else  // a build without CUDA

int cmd_bench_kernels(int argc, char **argv) {
    bench_args args;
    int done, rc = parse_args(argc, argv, &args, &done);
    if (done) return rc;
    char why[256];
    llava_backend_available("cuda", why, sizeof why);
    printf("no CUDA device (%s)\n", why);
    return 0;
}

#endif
