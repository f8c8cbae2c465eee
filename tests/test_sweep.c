// `llava sweep` end to end on a small world from the demo generator (the executable, $LLAVA_BIN):
// every variant trained and evaluated with a row in sweep.json and sweep.md, the learning rate
// showing in the loss, an interrupted variant resumed from its checkpoint, a rerun that trains
// nothing, a deleted variant (or result) that alone runs again, bad keys, bad values and a changed
// variant refused before anything trains, and a two-stage sweep whose stage 2 starts from stage 1's
// projector through {prev}.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/demo.h"
#include "check.h"
#include "common/util.h"
#include "train_run.h"

static char *tmp, *world;
static const char *bin;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *slurp(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    char *t = read_file(p, 1 << 26, NULL);
    free(p);
    return t ? t : xstrdup("");
}

static cJSON *read_json(const char *dir, const char *name) {
    char *t = slurp(dir, name);
    cJSON *j = cJSON_Parse(t);
    free(t);
    return j;
}

static void write_text(const char *path, const char *text) {
    CHECK(write_file_atomic(path, text, strlen(text)) == 0, "%s", llava_errmsg());
}

static int sweep(const char *file, const char *flags, char **out, char **err) {
    char *args = xasprintf("sweep '%s' --quiet %s", file, flags ? flags : "");
    int rc = check_run(bin, tmp, args, out, err);
    free(args);
    return rc;
}

static const cJSON *row_of(const cJSON *j, const char *name) {
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "variants");
    for (const cJSON *r = rows ? rows->child : NULL; r; r = r->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return r;
    }
    return NULL;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

// sweep.md's rows, cell by cell, against sweep.json's: the same variants in the same order, each
// number as the table formats it.
static void check_table(const char *out) {
    cJSON *j = read_json(out, "sweep.json");
    char *md = slurp(out, "sweep.md");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "variants");
    const cJSON *r = rows ? rows->child : NULL;
    char *header = strstr(md, "| variant |");
    CHECK(header != NULL, "sweep.md has no table:\n%s", md);
    char *cols[32];
    int n_cols = 0, n_rows = 0;
    for (char *save = NULL, *line = header ? strtok_r(header, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "|", 1) != 0 || strncmp(line, "|---", 4) == 0) continue;
        char *cells[32];
        int n = 0;
        for (char *s2 = NULL, *c = strtok_r(line, "|", &s2); c && n < 32; c = strtok_r(NULL, "|", &s2)) {
            while (*c == ' ') c++;
            size_t L = strlen(c);
            while (L && c[L - 1] == ' ') c[--L] = 0;
            cells[n++] = c;
        }
        if (n_cols == 0) {  // the header
            for (int i = 0; i < n; i++) cols[i] = cells[i];
            n_cols = n;
            CHECK(n >= 7 && !strcmp(cells[3], "loss") && !strcmp(cells[4], "tokens/s"), "header: %d cells", n);
            continue;
        }
        CHECK(n == n_cols, "row %d: %d cells, the header %d", n_rows, n, n_cols);
        CHECK(r != NULL, "sweep.md has more rows than sweep.json");
        if (!r || n != n_cols) break;
        char want[256];
        CHECK_EQ_STR(cells[0], cJSON_GetObjectItemCaseSensitive(r, "name")->valuestring);
        CHECK_EQ_STR(cells[1], cJSON_GetObjectItemCaseSensitive(r, "status")->valuestring);
        size_t k = 0;
        want[0] = 0;
        for (const cJSON *o = cJSON_GetObjectItemCaseSensitive(r, "overrides")->child; o; o = o->next)
            k += (size_t)snprintf(want + k, sizeof want - k, "%s`%s`", k ? ", " : "", o->valuestring);
        CHECK_EQ_STR(cells[2], k ? want : "-");
        // A number the row lacks (a failed or pending variant) is "-".
        double loss = num(r, "loss"), tps = num(r, "tokens_per_s"), b = num(r, "plan_bytes"), w = num(r, "wall_s");
        snprintf(want, sizeof want, "%.4f", loss);
        CHECK_EQ_STR(cells[3], isfinite(loss) ? want : "-");
        snprintf(want, sizeof want, "%.0f", tps);
        CHECK_EQ_STR(cells[4], isfinite(tps) ? want : "-");
        if (b < (double)(1ull << 30)) snprintf(want, sizeof want, "%.1f MiB", b / (1 << 20));
        else snprintf(want, sizeof want, "%.2f GiB", b / (double)(1ull << 30));
        CHECK_EQ_STR(cells[5], isfinite(b) ? want : "-");
        if (w < 60) snprintf(want, sizeof want, "%.1f s", w);
        else fmt_duration(w, want);
        CHECK_EQ_STR(cells[6], isfinite(w) ? want : "-");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "eval"), "scores");
        for (int c = 7; c < n; c++) {
            double x = num(sc, cols[c]);
            snprintf(want, sizeof want, "%.4g", x);
            CHECK_EQ_STR(cells[c], isfinite(x) ? want : "-");
        }
        n_rows++;
        r = r->next;
    }
    CHECK(n_rows == cJSON_GetArraySize(rows) && n_rows > 0, "%d rows in sweep.md, %d in sweep.json", n_rows,
          cJSON_GetArraySize(rows));
    free(md);
    cJSON_Delete(j);
}

// What the sweep's variants share (the sweep's "set"): 16 samples in batches of 4, 4 steps.
#define COMMON_SETS                                                                                                    \
    "\"model.pretrain_mm_mlp_adapter\": null, \"train.per_device_train_batch_size\": 4, "                              \
    "\"train.num_train_epochs\": 1, \"train.warmup_ratio\": 0, \"checkpoint.save_steps\": 2, "                         \
    "\"data.dataloader_num_workers\": 1"

static void test_sweep(void) {
    char *file = path_join(tmp, "lr.json"), *out = path_join(tmp, "sweep-lr");
    char text[2048];
    // Two named variants (the set as an object and as a list), one from the grid, and lr_mid, which
    // an earlier invocation left after 2 of its 4 steps (a checkpoint at step 2).
    snprintf(text, sizeof text,
             "{\"base\": \"world/stage2.json\",\n"
             " \"set\": {" COMMON_SETS
             "},\n"
             " \"variants\": [{\"name\": \"lr_hi\", \"set\": {\"train.learning_rate\": 0.003}},\n"
             "              {\"name\": \"lr_lo\", \"set\": [\"train.learning_rate=1e-5\"]},\n"
             "              {\"name\": \"lr_mid\", \"set\": {\"train\": {\"learning_rate\": 3e-4}}}],\n"
             " \"grid\": {\"train.learning_rate\": [0.001]},\n"
             " \"eval\": {\"benchmark\": \"demo\", \"data\": \"world/data\"}}\n");
    write_text(file, text);
    char *preset = path_join(world, "stage2.json"), *mid = path_join(out, "lr_mid");
    const char *base[] = {"model.pretrain_mm_mlp_adapter=null",
                          "train.per_device_train_batch_size=4",
                          "train.num_train_epochs=1",
                          "train.warmup_ratio=0",
                          "checkpoint.save_steps=2",
                          "data.dataloader_num_workers=1"};
    const char *mid_set[] = {"train.learning_rate=3e-4"};
    CHECK(test_train_preset(preset, mid, base, 6, mid_set, 1, 0, 2) == 0, "%s", llava_errmsg());

    char *o = NULL, *e = NULL;
    double t0 = now_s();
    int rc = sweep(file, NULL, &o, &e);
    double first = now_s() - t0;
    CHECK(rc == 0, "sweep: %d\n%s\n%s", rc, o, e);
    CHECK(count(o, ": training") == 4 && count(o, ": complete (") == 4, "four variants trained:\n%s", o);
    cJSON *j = read_json(out, "sweep.json");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "variants")) == 4, "4 rows");
    const char *names[] = {"lr_hi", "lr_lo", "lr_mid", "train.learning_rate=0.001"};
    double loss[4];
    for (int i = 0; i < 4; i++) {
        const cJSON *r = row_of(j, names[i]);
        CHECK(r != NULL, "no row for %s", names[i]);
        if (!r) continue;
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "status");
        CHECK(cJSON_IsString(st) && !strcmp(st->valuestring, "complete"), "%s complete", names[i]);
        loss[i] = num(r, "loss");
        CHECK(isfinite(loss[i]) && loss[i] > 0, "%s: loss %g", names[i], loss[i]);
        CHECK(num(r, "tokens_per_s") > 0, "%s: tokens/s %g", names[i], num(r, "tokens_per_s"));
        CHECK(num(r, "plan_bytes") > 1e6, "%s: plan %g bytes", names[i], num(r, "plan_bytes"));
        CHECK(num(r, "wall_s") > 0, "%s: wall %g", names[i], num(r, "wall_s"));
        CHECK(num(r, "steps") == 4, "%s: 16 samples / 4 = 4 steps (%g)", names[i], num(r, "steps"));
        // lr_mid resumed from its checkpoint at step 2: 2 steps ran now.
        double want_run = !strcmp(names[i], "lr_mid") ? 2 : 4;
        CHECK(num(r, "steps_run") == want_run, "%s: %g steps ran, want %g", names[i], num(r, "steps_run"), want_run);
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "eval"), "scores");
        double a = num(sc, "accuracy_with_image"), b = num(sc, "accuracy_blind");
        CHECK(a >= 0 && a <= 1 && b >= 0 && b <= 1, "%s: scores %g %g", names[i], a, b);
    }
    CHECK(fabs(loss[0] - loss[1]) > 1e-4, "learning rates 3e-3 and 1e-5 give losses %.6f and %.6f", loss[0], loss[1]);
    // The grid's variant was named from its key and value, and its folder holds the exported model.
    char *gm = path_join(out, "train.learning_rate=0.001/model/config.json");
    CHECK(file_exists(gm), "%s", gm);
    free(gm);
    check_table(out);

    // A rerun trains nothing: every variant is done, no file of theirs changes.
    char *before[4], *results[4];
    for (int i = 0; i < 4; i++) {
        char *d = path_join(out, names[i]);
        before[i] = slurp(d, "metrics.jsonl");
        results[i] = slurp(d, "result.json");
        free(d);
    }
    free(o), free(e);
    t0 = now_s();
    rc = sweep(file, NULL, &o, &e);
    double again = now_s() - t0;
    CHECK(rc == 0 && count(o, ": done (") == 4 && count(o, ": training") == 0, "a rerun: all done:\n%s\n%s", o, e);
    CHECK(again < first, "the rerun took %.1f s, the first run %.1f s", again, first);
    for (int i = 0; i < 4; i++) {
        char *d = path_join(out, names[i]);
        char *m = slurp(d, "metrics.jsonl"), *r = slurp(d, "result.json");
        CHECK(!strcmp(m, before[i]) && !strcmp(r, results[i]), "%s changed in a rerun", names[i]);
        free(m), free(r), free(d);
    }
    cJSON *j2 = read_json(out, "sweep.json");
    CHECK(cJSON_Compare(j, j2, 1), "sweep.json changed in a rerun");
    cJSON_Delete(j2);

    // A deleted variant alone runs again (from scratch); the others stay done.
    char *lo = path_join(out, "lr_lo");
    check_rm_rf(lo);
    free(o), free(e);
    rc = sweep(file, NULL, &o, &e);
    CHECK(rc == 0 && count(o, ": done (") == 3 && count(o, "lr_lo: training") == 1, "lr_lo alone runs:\n%s\n%s", o, e);
    j2 = read_json(out, "sweep.json");
    const cJSON *r = row_of(j2, "lr_lo");
    CHECK(r && num(r, "steps_run") == 4 && fabs(num(r, "loss") - loss[1]) < 1e-3,
          "lr_lo again: %g steps, loss %g vs %g", r ? num(r, "steps_run") : -1, r ? num(r, "loss") : NAN, loss[1]);
    for (int i = 0; i < 4; i++) {
        if (i == 1) continue;
        char *d = path_join(out, names[i]);
        char *res = slurp(d, "result.json");
        CHECK(!strcmp(res, results[i]), "%s's result changed when lr_lo ran again", names[i]);
        free(res), free(d);
    }
    cJSON_Delete(j2);
    check_table(out);

    // A deleted result.json alone: the variant's row is made again from its finished run, nothing trains.
    char *hi = path_join(out, "lr_hi"), *hr = path_join(hi, "result.json");
    CHECK(remove(hr) == 0, "rm %s", hr);
    free(o), free(e);
    rc = sweep(file, NULL, &o, &e);
    j2 = read_json(out, "sweep.json");
    r = row_of(j2, "lr_hi");
    char *m = slurp(hi, "metrics.jsonl");
    CHECK(rc == 0 && count(o, ": done (") == 3 && r && num(r, "steps_run") == 0 && num(r, "loss") == loss[0] &&
              !strcmp(m, before[0]),
          "lr_hi's row again without training (%g steps ran, loss %g vs %g):\n%s\n%s", r ? num(r, "steps_run") : -1,
          r ? num(r, "loss") : NAN, loss[0], o, e);
    free(m);
    cJSON_Delete(j2);

    // A variant changed since it ran is refused before anything trains, naming it and the key.
    snprintf(text, sizeof text,
             "{\"base\": \"world/stage2.json\", \"set\": {" COMMON_SETS
             "},\n"
             " \"variants\": [{\"name\": \"lr_hi\", \"set\": {\"train.learning_rate\": 0.002}}]}\n");
    write_text(file, text);
    free(o), free(e);
    rc = sweep(file, NULL, &o, &e);
    CHECK(rc == 1 && strstr(e, "variant \"lr_hi\"") && strstr(e, "train.learning_rate") &&
              strstr(e, "nothing was trained"),
          "a changed variant: %d\n%s", rc, e);

    for (int i = 0; i < 4; i++) free(before[i]), free(results[i]);
    free(o), free(e), free(hi), free(hr), free(lo), free(preset), free(mid), free(file), free(out);
    cJSON_Delete(j);
}

// Bad keys and values anywhere in a sweep fail before any variant trains, naming the variant and key.
static void test_invalid(void) {
    char *file = path_join(tmp, "bad.json"), *out = path_join(tmp, "sweep-bad");
    static const char *const CASES[][3] = {
        // the variants, what stderr names
        {"{\"name\": \"ok\", \"set\": {\"train.max_steps\": 1}}, {\"name\": \"typo\", \"set\": "
         "{\"train.lerning_rate\": 0.1}}",
         "variant \"typo\"", "train.lerning_rate"},
        {"{\"name\": \"ok\"}, {\"name\": \"badval\", \"set\": [\"train.num_train_epochs=many\"]}", "variant \"badval\"",
         "train.num_train_epochs"},
        {"{\"name\": \"ok\"}, {\"name\": \"enum\", \"set\": {\"model.mm_projector_type\": \"nope\"}}",
         "variant \"enum\"", "model.mm_projector_type"},
        {"{\"name\": \"ok\"}, {\"name\": \"outdir\", \"set\": {\"checkpoint.output_dir\": \"x\"}}",
         "\"checkpoint.output_dir=x\"", "the sweep sets checkpoint.output_dir"},
        {"{\"name\": \"ok\"}, {\"name\": \"ok\"}", "two variants named \"ok\"", "bad.json"},
    };
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        char *text = xasprintf("{\"base\": \"world/stage2.json\", \"set\": {" COMMON_SETS "},\n \"variants\": [%s]}\n",
                               CASES[c][0]);
        write_text(file, text);
        char *o = NULL, *e = NULL;
        int rc = sweep(file, NULL, &o, &e);
        CHECK(rc == 1 && strstr(e, CASES[c][1]) && strstr(e, CASES[c][2]) && !dir_exists(out),
              "case %zu: status %d, want 1 naming %s and %s, and no output folder:\n%s", c, rc, CASES[c][1],
              CASES[c][2], e);
        free(o), free(e), free(text);
    }
    free(file), free(out);
}

static char *kg_text(const char *adapter) {
    return xasprintf("{\"base\": \"world/stage2.json\", \"set\": {" COMMON_SETS
                     ", \"train.max_steps\": 1},\n"
                     " \"variants\": [{\"name\": \"bad\", \"set\": {\"model.pretrain_mm_mlp_adapter\": %s}},\n"
                     "              {\"name\": \"ok\", \"set\": {\"train.learning_rate\": 1e-4}}]}\n",
                     adapter);
}

// A variant that fails while training: the sweep stops there (the rest pending), or with --keep-going
// goes on; fixed, the failed variant runs (its record of the failed configuration is replaced).
static void test_failure(void) {
    char *file = path_join(tmp, "kg.json"), *out = path_join(tmp, "sweep-kg");
    char *text = kg_text("\"/nonexistent/mm_projector.safetensors\"");
    write_text(file, text);
    free(text);
    char *o = NULL, *e = NULL;
    int rc = sweep(file, NULL, &o, &e);
    cJSON *j = read_json(out, "sweep.json");
    const cJSON *bad = row_of(j, "bad"), *ok = row_of(j, "ok");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(bad, "error");
    CHECK(rc == 1 && strstr(e, "variant \"bad\"") && cJSON_IsString(err) &&
              strstr(err->valuestring, "model.pretrain_mm_mlp_adapter") &&
              !strcmp(cJSON_GetObjectItemCaseSensitive(bad, "status")->valuestring, "failed") &&
              !strcmp(cJSON_GetObjectItemCaseSensitive(ok, "status")->valuestring, "pending"),
          "a failed variant stops the sweep: %d\n%s\n%s", rc, o, e);
    cJSON_Delete(j);
    free(o), free(e);
    rc = sweep(file, "--keep-going", &o, &e);
    j = read_json(out, "sweep.json");
    ok = row_of(j, "ok");
    CHECK(rc == 1 && !strcmp(cJSON_GetObjectItemCaseSensitive(ok, "status")->valuestring, "complete"),
          "--keep-going: %d\n%s\n%s", rc, o, e);
    cJSON_Delete(j);
    check_table(out);
    free(o), free(e);
    text = kg_text("null");
    write_text(file, text);
    free(text);
    rc = sweep(file, NULL, &o, &e);
    CHECK(rc == 0 && count(o, "bad: training") == 1 && count(o, "ok: done") == 1, "fixed: %d\n%s\n%s", rc, o, e);
    free(o), free(e), free(file), free(out);
}

// Two stages: stage 1 trains the projector, stage 2 starts from it through {prev}.
static void test_stages(void) {
    char *file = path_join(tmp, "two.json"), *out = path_join(tmp, "two-out");
    write_text(file,
               "{\"name\": \"two\", \"out\": \"two-out\",\n"
               " \"set\": {\"train.max_steps\": 1, \"train.per_device_train_batch_size\": 4, "
               "\"data.dataloader_num_workers\": 1},\n"
               " \"stages\": [{\"name\": \"s1\", \"preset\": \"world/stage1.json\"},\n"
               "            {\"name\": \"s2\", \"preset\": \"world/stage2.json\",\n"
               "             \"set\": {\"model.pretrain_mm_mlp_adapter\": \"{prev}/mm_projector.safetensors\"}}],\n"
               " \"variants\": [{\"name\": \"v\", \"set\": [\"s2:train.learning_rate=5e-4\"]}]}\n");
    char *o = NULL, *e = NULL;
    int rc = sweep(file, "--dry-run", &o, &e);
    CHECK(rc == 0 && strstr(o, "s1: plan/device") && strstr(o, "s2: plan/device") && !dir_exists(out),
          "--dry-run: %d\n%s\n%s", rc, o, e);
    free(o), free(e);
    rc = sweep(file, NULL, &o, &e);
    CHECK(rc == 0, "two stages: %d\n%s\n%s", rc, o, e);
    cJSON *j = read_json(out, "sweep.json");
    const cJSON *r = row_of(j, "v"), *st = cJSON_GetObjectItemCaseSensitive(r, "stages");
    CHECK(cJSON_GetArraySize(st) == 2 && num(r, "steps") == 2 && isfinite(num(r, "loss")), "two stages of one step");
    // Stage 2 started from stage 1's projector, and only stage 2 got the variant's learning rate.
    char *vdir = path_join(out, "v");
    cJSON *rec = read_json(vdir, "variant.json");
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(rec, "stages");
    const cJSON *c1 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(stages, 0), "config"),
                *c2 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(stages, 1), "config");
    const cJSON *ad =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c2, "model"), "pretrain_mm_mlp_adapter");
    char *want = path_join(out, "v/s1/mm_projector.safetensors");
    CHECK(cJSON_IsString(ad) && !strcmp(ad->valuestring, want), "stage 2's adapter: %s, want %s",
          cJSON_IsString(ad) ? ad->valuestring : "?", want);
    double lr1 = num(cJSON_GetObjectItemCaseSensitive(c1, "train"), "learning_rate"),
           lr2 = num(cJSON_GetObjectItemCaseSensitive(c2, "train"), "learning_rate");
    CHECK(lr2 == 5e-4 && lr1 != 5e-4, "learning rates %g (stage 1), %g (stage 2)", lr1, lr2);
    free(want), free(vdir), free(o), free(e), free(file), free(out);
    cJSON_Delete(rec);
    cJSON_Delete(j);
}

int main(void) {
    double t0 = now_s();
    llava_cpu_set_threads(1);
    bin = getenv("LLAVA_BIN");
    CHECK(bin != NULL, "LLAVA_BIN not set (run through ctest)");
    if (!bin) return check_done();
    tmp = check_tmpdir();
    world = path_join(tmp, "world");
    int qtypes[4];
    CHECK(demo_make_world(world, 16, 4, 1, qtypes) == 0, "%s", llava_errmsg());
    test_invalid();
    test_sweep();
    test_failure();
    test_stages();
    printf("test_sweep: %.1f s\n", now_s() - t0);
    check_rm_rf(tmp);
    free(world);
    free(tmp);
    return check_done();
}
