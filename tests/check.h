// Minimal test harness: every check prints what it compared on failure and is counted;
// a test program ends with `return check_done();` which prints "N passed, M failed".
#ifndef LLAVA_TESTS_CHECK_H
#define LLAVA_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/util.h"
#include "kernels/backend.h"

static int check_pass_count, check_fail_count;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) {                                                                                                    \
            check_pass_count++;                                                                                        \
        } else {                                                                                                       \
            check_fail_count++;                                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                            \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
        }                                                                                                              \
    } while (0)

#define CHECK_EQ_INT(a, b) CHECK((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_EQ_STR(a, b) CHECK(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"", (a), (b))
#define CHECK_NEAR(a, b, tol)                                                                                          \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (|diff| %.3g > %.3g)", (double)(a), (double)(b),     \
          fabs((double)(a) - (double)(b)), (double)(tol))
// The error message of the last failed call contains `needle`.
#define CHECK_ERR_HAS(needle)                                                                                          \
    CHECK(strstr(llava_errmsg(), (needle)) != NULL, "error \"%s\" lacks \"%s\"", llava_errmsg(), (needle))

// ||a - ref|| / ||ref|| in fp64 (||a - ref|| when ref is all zero); a NaN anywhere gives NaN, which
// fails every <= bound.
static inline double check_rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static inline int check_done(void) {
    printf("%d passed, %d failed\n", check_pass_count, check_fail_count);
    return check_fail_count ? 1 : 0;
}

// A temporary directory for files a test writes; removed by the caller with rm_rf.
static inline char *check_tmpdir(void) {
    char tmpl[] = "/tmp/llava_test_XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) {
        perror("mkdtemp");
        exit(2);
    }
    char *out = malloc(strlen(d) + 1);
    strcpy(out, d);
    return out;
}

// Runs `'bin' args` through the shell with stdout and stderr caught in files under tmp; *out and *err
// (either pointer may be NULL) get their text (malloc'd, "" when empty). Returns the exit status
// (-1 when the command did not exit).
static inline int check_run(const char *bin, const char *tmp, const char *args, char **out, char **err) {
    char *o = xasprintf("%s/cmd.out", tmp), *e = xasprintf("%s/cmd.err", tmp);
    char *cmd = xasprintf("'%s' %s > '%s' 2> '%s'", bin, args, o, e);
    int st = system(cmd);
    if (out) {
        *out = read_file(o, 1 << 24, NULL);
        if (!*out) *out = xstrdup("");
    }
    if (err) {
        *err = read_file(e, 1 << 24, NULL);
        if (!*err) *err = xstrdup("");
    }
    free(cmd);
    free(o);
    free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline void check_rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

// The CUDA backend context of a GPU test, opened on first use. Without a usable device (or without
// a CUDA build) the program reports itself skipped (exit 77, ctest's SKIP_RETURN_CODE); a device
// that is there but cannot be opened is a failure.
static inline llava_backend *test_cuda(void) {
    static llava_backend *be;
    if (be) return be;
    char why[256];
    if (!llava_backend_available("cuda", why, sizeof why)) {
        printf("skipped: %s\n", why);
        exit(77);
    }
    be = llava_backend_open("cuda", NULL);
    if (!be) {
        fprintf(stderr, "FAIL: a CUDA device is present but the backend does not open: %s\n", llava_errmsg());
        exit(1);
    }
    llava_backend_info info;
    llava_backend_describe(be, &info);
    printf("device: %s\n", info.device);
    return be;
}

// The CPU backend context of a test program, opened on first use and kept to the end.
static inline llava_backend *test_cpu(void) {
    static llava_backend *be;
    if (!be) be = llava_backend_open("cpu", NULL);
    return be;
}

#endif
