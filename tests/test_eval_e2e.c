// Every benchmark end to end through `llava eval` on the demo's trained model (the demo_model
// fixture of tests/cli.cmake): the synthetic data of tests/data/eval/<bench> in each official layout
// (copied to a scratch folder, every image the questions name drawn from one of the demo's
// pictures), the first 6 questions answered by the engine, scored by the benchmark's scorer.
// The model knows nothing of these benchmarks, so the scores mean nothing; what is checked is the
// path: the question file found or prepared (ScienceQA's JSON, MMBench's TSV with its base64
// images), the images found under the benchmark's image folder, one answer per question in
// LLaVA's answers format, a scores.json whose primary metric (when the benchmark has one) is a
// number, and the files a submission needs. A first run without the images names each missing one
// and still scores (exit 3: a question without its image counts as wrong); the rerun with the
// images answers only those.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"
#include "common/util.h"
#include "eval/eval.h"

static const char *demo, *bin;
static char *tmp;

static int run(const char *args, char **err) { return check_run(bin, tmp, args, NULL, err); }

static int count_lines(const char *path) {
    size_t n;
    char *t = read_file(path, 1 << 24, &n);
    int k = 0;
    for (size_t i = 0; t && i < n; i++) k += t[i] == '\n';
    free(t);
    return k;
}

// The number at a dotted path of a JSON object ("all.relative").
static const cJSON *at_path(const cJSON *o, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *t = strtok(buf, "."); t && o; t = strtok(NULL, ".")) o = cJSON_GetObjectItemCaseSensitive(o, t);
    return o;
}

static const struct {
    const char *bench, *dir;
} CASES[] = {{"vqav2", "vqav2"},
             {"vqav2_val", "vqav2"},
             {"gqa", "gqa"},
             {"vizwiz", "vizwiz"},
             {"vizwiz_val", "vizwiz"},
             {"scienceqa", "scienceqa"},
             {"textvqa", "textvqa"},
             {"pope", "pope"},
             {"mme", "MME"},
             {"mmbench", "mmbench"},
             {"mmbench_cn", "mmbench_cn"},
             {"seed", "seed_bench"},
             {"llavabench", "llavabench"},
             {"mmvet", "mmvet"}};

int main(void) {
    demo = getenv("LLAVA_DEMO_DIR");
    bin = getenv("LLAVA_BIN");
    CHECK(demo && bin, "LLAVA_DEMO_DIR and LLAVA_BIN must be set (run through ctest)");
    if (!demo || !bin) return check_done();
    tmp = check_tmpdir();
    char *model = xasprintf("%s/checkpoints/stage2/model", demo), *tok = xasprintf("%s/tokenizer.model", demo);
    char *picture = xasprintf("%s/data/images/eval_00000.png", demo);
    size_t pic_len;
    char *pic = read_file(picture, 1 << 22, &pic_len);
    CHECK(pic != NULL, "the demo's picture %s", picture);
    int n_cases = (int)(sizeof CASES / sizeof CASES[0]), n_benches = 0;
    eval_benches(&n_benches);
    CHECK(n_cases == n_benches - 1, "every benchmark but the demo has a case here (%d of %d)", n_cases, n_benches - 1);
    for (int c = 0; c < n_cases && pic; c++) {
        const eval_bench *b = eval_find(CASES[c].bench);
        CHECK(b != NULL, "%s is registered", CASES[c].bench);
        if (!b) continue;
        char *data = xasprintf("%s/data_%s", tmp, CASES[c].bench), *out = xasprintf("%s/out_%s", tmp, CASES[c].bench);
        char *cmd = xasprintf("cp -r 'tests/data/eval/%s' '%s'", CASES[c].dir, data);
        CHECK(system(cmd) == 0, "copy %s", CASES[c].dir);
        free(cmd);
        char *args = xasprintf("eval --model '%s' --tokenizer '%s' --benchmark %s --data '%s' --out '%s' --limit 6",
                               model, tok, b->name, data, out);
        // 1. Without the images (the synthetic data has none): answered where possible, scored.
        char *err;
        int rc = run(args, &err);
        char *qfile = xasprintf("%s/questions.jsonl", out);
        CHECK(file_exists(qfile), "%s: the question file of the run (%s), exit %d\n%s", b->name, qfile, rc, err);
        // 2. Every image the questions name, drawn; the rerun answers the rest.
        cJSON *qs = eval_read_jsonl(qfile);
        int n_q = qs ? cJSON_GetArraySize(qs) : 0, n_img = 0;
        char *folder = b->image_folder ? path_join(data, b->image_folder) : xstrdup(out);
        for (const cJSON *q = qs ? qs->child : NULL; q; q = q->next) {
            const cJSON *im = cJSON_GetObjectItemCaseSensitive(q, "image");
            if (!cJSON_IsString(im)) continue;
            char *p = path_join(folder, im->valuestring);
            if (!file_exists(p)) {
                char *dir = xstrdup(p);
                *strrchr(dir, '/') = 0;
                CHECK(mkdir_p(dir) == 0 && write_file_atomic(p, pic, pic_len) == 0, "%s: draw %s", b->name, p);
                free(dir);
                n_img++;
            }
            free(p);
        }
        if (n_img) CHECK(rc == 3 && strstr(err, "(skipped)"), "%s: without images: exit %d\n%s", b->name, rc, err);
        free(err);
        rc = run(args, &err);
        CHECK(rc == 0, "%s: exit %d\n%s", b->name, rc, err);
        free(err);
        char *ans = xasprintf("%s/answers.jsonl", out), *sp = xasprintf("%s/scores.json", out);
        CHECK(n_q >= 1 && n_q <= 6 && count_lines(ans) == n_q, "%s: %d answers for %d questions", b->name,
              count_lines(ans), n_q);
        size_t sl;
        char *stext = read_file(sp, 1 << 22, &sl);
        cJSON *sj = stext ? cJSON_Parse(stext) : NULL;
        CHECK(sj != NULL, "%s: scores.json", b->name);
        if (sj && b->primary && b->kind != EVAL_JUDGED)  // a judged one has its number only with a judge
            CHECK(cJSON_IsNumber(at_path(sj, b->primary)), "%s: %s in %s", b->name, b->primary, stext);
        const cJSON *sub = sj ? cJSON_GetObjectItemCaseSensitive(sj, "submission_file") : NULL;
        if (sub) CHECK(cJSON_IsString(sub) && file_exists(sub->valuestring), "%s: the submission file", b->name);
        const cJSON *missing = sj ? cJSON_GetObjectItemCaseSensitive(sj, "missing") : NULL;
        if (missing)
            CHECK(cJSON_IsNumber(missing) && missing->valueint == 0, "%s: nothing missing: %s", b->name, stext);
        printf("%-11s %d questions (%d pictures drawn), answered and scored\n", b->name, n_q, n_img);
        cJSON_Delete(sj);
        free(stext), free(ans), free(sp), free(folder), free(qfile), free(args), free(data), free(out);
        cJSON_Delete(qs);
    }
    free(pic), free(picture), free(model), free(tok);
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
