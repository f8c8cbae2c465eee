// `llava train` step for step against LLaVA's own trainer: haotian-liu/LLaVA's llava/train/train.py, run
// unmodified on the demo's tiny models and data (fp32, CPU; tools/reference/make_llava_train_goldens.py), logged
// a loss and a learning rate per step; the same runs through `llava train` with the mirrored settings
// (tests/data/llava_train/<config>/config.json, a --set list) must log the same loss at HF's logged precision
// (4 decimals) at every step, use the learning rate LLaVA's step used, and log the learning rate HF logs (the
// one after the scheduler's step) as the next step's. Tighter than the logged precision, as a guard against drift
// hidden by the rounding: the unrounded loss within 2e-5 and the gradient norm before clipping within 1e-4
// relative. The one allowance: where LLaVA's unrounded loss lies within 5e-6 of a 4-decimal rounding boundary,
// a last logged digit flipped by fp32 summation order passes when the unrounded losses are within 5e-6 (counted).
// A mismatch names the first differing step, what differs, and the samples LLaVA's step took.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/demo.h"
#include "check.h"
#include "common/crc32c.h"
#include "common/util.h"

#define GOLDENS "tests/data/llava_train"
#define BOUNDARY 5e-6     // see the loss comparison in check_config
#define WORLD_SAMPLES 96  // the goldens' runs read the demo's first 96 conversations (captions in stage 1)

// In the order the goldens are made: stage 2 starts from stage1_full's LLaVA-written mm_projector.bin.
static const char *CONFIGS[] = {"stage1_full",
                                "stage2_full",
                                "stage2_grouped_1proc",
                                "stage2_grouped_torchrun1",
                                "stage2_grouped_torchrun2",
                                "stage2_grouped_torchrun2_ga2",
                                "stage2_full_release",
                                "stage2_lora"};

static cJSON *read_json(const char *path) {
    size_t len;
    char *t = read_file(path, 1 << 24, &len);
    cJSON *j = t ? cJSON_Parse(t) : NULL;
    free(t);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// "%.4f" rounds the binary value exactly as Python's round(x, 4) does (both from its exact decimal expansion).
static void round4(double x, char *buf, size_t n) { snprintf(buf, n, "%.4f", x); }

static char *replace_all(const char *s, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + nf, from)) n++;
    char *out = xmalloc(strlen(s) + n * (nt > nf ? nt - nf : 0) + 1), *o = out;
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (!q) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, nt);
        o += nt;
        p = q + nf;
    }
    return out;
}

// The demo world the test made is the one the goldens were made from (the demo's generator unchanged).
static void check_world(const char *world, const cJSON *golden, const char *name) {
    const cJSON *crcs = cJSON_GetObjectItemCaseSensitive(golden, "demo_crc32c");
    CHECK(cJSON_IsObject(crcs), "%s: golden.json records the demo files' checksums", name);
    for (const cJSON *e = crcs ? crcs->child : NULL; e; e = e->next) {
        char *p = path_join(world, e->string);
        uint32_t crc = 0;
        uint64_t bytes = 0;
        int rc = crc32c_file(p, &crc, &bytes);
        char got[16];
        snprintf(got, sizeof got, "%08x", crc);
        CHECK(rc == 0 && cJSON_IsString(e) && strcmp(got, e->valuestring) == 0,
              "%s: the demo's %s has CRC-32C %s, the goldens were made from %s: the demo generator changed; "
              "regenerate with tools/reference/make_llava_train_goldens.py",
              name, e->string, got, cJSON_IsString(e) ? e->valuestring : "?");
        free(p);
    }
    // The projector both runs start from is the one this golden's run started from (stage 2: the mm_projector.bin
    // LLaVA's stage-1 run of the same generation wrote).
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(golden, "start_projector"),
                *sc = cJSON_GetObjectItemCaseSensitive(golden, "start_projector_crc32c");
    uint32_t crc = 0;
    uint64_t bytes = 0;
    int rc = cJSON_IsString(sp) ? crc32c_file(sp->valuestring, &crc, &bytes) : -1;
    char got[16];
    snprintf(got, sizeof got, "%08x", crc);
    CHECK(rc == 0 && cJSON_IsString(sc) && strcmp(got, sc->valuestring) == 0,
          "%s: the starting projector %s has CRC-32C %s, the golden's run started from %s: regenerate every "
          "configuration together (tools/reference/make_llava_train_goldens.py)",
          name, cJSON_IsString(sp) ? sp->valuestring : "?", got, cJSON_IsString(sc) ? sc->valuestring : "?");
}

static void print_samples(const cJSON *step) {
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(step, "samples"));
    fprintf(stderr, "  LLaVA's step took the samples %s (dataset indices; one list per rank under torchrun)\n",
            s ? s : "?");
    free(s);
}

static void check_config(const char *bin, const char *world, const char *name, double *seconds) {
    char *dir = path_join(GOLDENS, name);
    char *gp = path_join(dir, "golden.json"), *cp = path_join(dir, "config.json");
    cJSON *golden = read_json(gp), *cfg = read_json(cp);
    CHECK(golden && cfg, "%s: %s and %s (tools/reference/make_llava_train_goldens.py)", name, gp, cp);
    if (!golden || !cfg) goto out;
    check_world(world, golden, name);

    // The mirrored run, through the command line as a user types it.
    char *out = xasprintf("%s/run_%s", world, name);
    char *args = xasprintf("train '%s/empty.json' --quiet --set 'checkpoint.output_dir=%s'", world, out);
    for (const cJSON *s = cJSON_GetObjectItemCaseSensitive(cfg, "set")->child; s; s = s->next) {
        char *a = replace_all(s->valuestring, "@WORLD@", world), *b = replace_all(a, "@DATA@", dir);
        char *next = xasprintf("%s --set '%s'", args, b);
        free(args);
        args = next;
        free(a);
        free(b);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *err = NULL;
    int rc = check_run(bin, world, args, NULL, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(rc == 0, "%s: llava %s exited %d:\n%s", name, args, rc, err);

    // metrics.jsonl against the golden steps.
    char *mp = path_join(out, "metrics.jsonl");
    size_t len = 0;
    char *text = rc == 0 ? read_file(mp, 1 << 24, &len) : NULL;
    const cJSON *gsteps = cJSON_GetObjectItemCaseSensitive(golden, "steps");
    int n_gold = cJSON_GetArraySize(gsteps);
    cJSON **mine = xcalloc((size_t)n_gold + 1, sizeof *mine);
    int n_mine = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (j && cJSON_GetObjectItemCaseSensitive(j, "loss") && n_mine <= n_gold) mine[n_mine++] = j;
        else cJSON_Delete(j);
    }
    CHECK(n_mine == n_gold, "%s: llava train logged %d steps, LLaVA's train.py %d", name, n_mine, n_gold);
    int first_bad = 0;
    double max_dloss = 0, max_dlr = 0, max_dgn = 0;
    int n_flips = 0;
    for (int k = 0; k < n_gold && k < n_mine; k++) {
        const cJSON *g = cJSON_GetArrayItem(gsteps, k), *m = mine[k];
        double gl = num(g, "loss"), gu = num(g, "loss_unrounded"), glr = num(g, "lr"), ggn = num(g, "grad_norm");
        double ml = num(m, "loss"), mlr = num(m, "lr"), mgn = num(m, "grad_norm");
        char a[32], b[32];
        round4(ml, a, sizeof a);
        round4(gl, b, sizeof b);
        double dlr = fabs(mlr - glr) / fmax(fabs(glr), 1e-12);
        if (glr == 0 && mlr == 0) dlr = 0;
        double dgn = fabs(mgn - ggn) / fmax(fabs(ggn), 1e-30), du = fabs(ml - gu);
        // HF logs the learning rate after the scheduler's step: the next step's.
        double dnext = 0;
        if (k + 1 < n_mine) {
            double gnext = num(g, "learning_rate_logged"), mnext = num(mine[k + 1], "lr");
            dnext = gnext == 0 && mnext == 0 ? 0 : fabs(mnext - gnext) / fmax(fabs(gnext), 1e-12);
        }
        int step = (int)num(m, "step");
        // A loss within BOUNDARY of a 4-decimal rounding boundary has its last logged digit decided by fp32
        // summation order: there a different digit is a flip, not a difference, when the unrounded losses agree
        // as closely (counted and printed).
        double frac = gu * 1e4 - floor(gu * 1e4), to_boundary = fabs(frac - 0.5) / 1e4;
        int same4 = strcmp(a, b) == 0, flip = !same4 && to_boundary <= BOUNDARY && du <= BOUNDARY;
        n_flips += flip;
        int ok = (same4 || flip) && du <= 2e-5 && dlr <= 1e-6 && dnext <= 1e-6 && dgn <= 1e-4 && step == k + 1;
        if (!ok && !first_bad) {
            first_bad = k + 1;
            fprintf(stderr,
                    "%s: first differing step %d (of %d): loss %s vs LLaVA's %s (unrounded %.8f vs %.8f, |diff| "
                    "%.2g); lr %.9g vs %.9g; logged lr (next step's) rel diff %.2g; grad norm %.7g vs %.7g (rel "
                    "%.2g); step field %d\n",
                    name, k + 1, n_gold, a, b, ml, gu, du, mlr, glr, dnext, mgn, ggn, dgn, step);
            print_samples(g);
        }
        max_dloss = fmax(max_dloss, du);
        max_dlr = fmax(max_dlr, fmax(dlr, dnext));
        max_dgn = fmax(max_dgn, dgn);
    }
    CHECK(first_bad == 0 && n_mine == n_gold, "%s: step %d differs from LLaVA's train.py (above)", name, first_bad);
    if (first_bad == 0 && n_mine == n_gold) {
        const cJSON *g0 = cJSON_GetArrayItem(gsteps, 0), *gl = cJSON_GetArrayItem(gsteps, n_gold - 1);
        printf(
            "%-29s %2d steps equal to LLaVA's train.py at 4 decimals (%.4f ... %.4f; %d last-digit flips at a "
            "rounding boundary); unrounded |diff| <= %.1e, lr rel <= %.1e, grad norm rel <= %.1e; %.1f s\n",
            name, n_gold, num(g0, "loss"), num(gl, "loss"), n_flips, max_dloss, max_dlr, max_dgn, *seconds);
    }
    for (int k = 0; k < n_mine; k++) cJSON_Delete(mine[k]);
    free(mine);
    free(text);
    free(mp);
    free(err);
    free(args);
    free(out);
out:
    cJSON_Delete(golden);
    cJSON_Delete(cfg);
    free(gp);
    free(cp);
    free(dir);
}

int main(void) {
    const char *bin = getenv("LLAVA_BIN");
    CHECK(bin && *bin, "LLAVA_BIN names the llava executable (ctest sets it)");
    if (!bin || !*bin) return check_done();
    // One GEMM thread: the same sums on any machine.
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    char *world = check_tmpdir();
    CHECK(demo_make_world(world, WORLD_SAMPLES, 0, 1, NULL) == 0, "%s", llava_errmsg());
    char *empty = path_join(world, "empty.json");
    CHECK(write_file_atomic(empty, "{}\n", 3) == 0, "%s", empty);
    double total = 0;
    for (size_t i = 0; i < sizeof CONFIGS / sizeof CONFIGS[0]; i++) {
        double s = 0;
        check_config(bin, world, CONFIGS[i], &s);
        total += s;
    }
    printf("llava train curves: %zu configurations against LLaVA's train.py in %.1f s of training runs\n",
           sizeof CONFIGS / sizeof CONFIGS[0], total);
    free(empty);
    check_rm_rf(world);
    free(world);
    return check_done();
}
