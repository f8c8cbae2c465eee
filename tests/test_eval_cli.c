// `llava eval` end to end on the demo's trained model (the demo_model fixture of tests/cli.cmake,
// whose `llava demo --check` itself reports through `llava eval --benchmark demo`):
//
//   - `llava eval score` on the demo's answers file prints one JSON object whose accuracies are the
//     ones the demo wrote to scores.json (the same scorer, the same file);
//   - `--limit 24` answered as 2 chunks (--chunks 2 --chunk-idx 1, then 0, as LLaVA's CHUNKS split:
//     ceil(24 / 2) questions each, in order): the joined answers.jsonl holds the first 24 questions in
//     order with the answers the whole run gave them, and its scores are a subset's;
//   - a question whose image is missing is answered by no one, counted as wrong (the denominator
//     keeps it), reported as missing, and the exit status says so (3);
//   - a malformed answers line is an error naming the file and the line; an unknown benchmark lists
//     the known ones; a benchmark folder without its question file names the path and what LLaVA's
//     docs say to get.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"

static const char *demo, *bin;
static char *tmp;

static int run(const char *args, char **out, char **err) { return check_run(bin, tmp, args, out, err); }

static cJSON *json_file(const char *path) {
    size_t n;
    char *t = read_file(path, 1 << 26, &n);
    cJSON *j = t ? cJSON_Parse(t) : NULL;
    free(t);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1.0;
}

// The answers of a file as "question_id\ttext" lines, in file order (answer_id is random).
static char *qid_text(const char *path, int *n) {
    size_t len;
    char *t = read_file(path, 1 << 26, &len);
    size_t cap = 1 << 16, m = 0;
    char *out = xmalloc(cap);
    out[0] = 0;
    *n = 0;
    for (char *p = t; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t L = nl ? (size_t)(nl - p) : strlen(p);
        cJSON *o = cJSON_ParseWithLength(p, L);
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "question_id"),
                    *x = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (cJSON_IsString(q) && cJSON_IsString(x)) {
            size_t need = strlen(q->valuestring) + strlen(x->valuestring) + 3;
            while (m + need >= cap) out = xrealloc(out, cap *= 2);
            m += (size_t)sprintf(out + m, "%s\t%s\n", q->valuestring, x->valuestring);
            (*n)++;
        }
        cJSON_Delete(o);
        p += L + (nl ? 1 : 0);
    }
    free(t);
    return out;
}

int main(void) {
    demo = getenv("LLAVA_DEMO_DIR");
    bin = getenv("LLAVA_BIN");
    CHECK(demo && bin, "LLAVA_DEMO_DIR and LLAVA_BIN must be set (run through ctest)");
    if (!demo || !bin) return check_done();
    tmp = check_tmpdir();
    char *model = xasprintf("%s/checkpoints/stage2/model", demo), *tok = xasprintf("%s/tokenizer.model", demo);
    char *data = xasprintf("%s/data", demo), *answers = xasprintf("%s/eval/answers.jsonl", demo);
    char *scores_path = xasprintf("%s/eval/scores.json", demo);
    char *out, *err;

    // The demo's own answers, rescored by `llava eval score`.
    cJSON *demo_scores = json_file(scores_path);
    CHECK(demo_scores != NULL, "the demo wrote %s", scores_path);
    char *args = xasprintf("eval score --benchmark demo --answers '%s' --data '%s'", answers, data);
    int rc = run(args, &out, &err);
    free(args);
    cJSON *j = cJSON_Parse(out);
    CHECK(rc == 0 && j != NULL && strchr(out, '\n') == out + strlen(out) - 1, "eval score prints one JSON line: %s %s",
          out, err);
    CHECK(j && num(j, "accuracy_with_image") == num(demo_scores, "accuracy_with_image") &&
              num(j, "accuracy_blind") == num(demo_scores, "accuracy_blind") && num(j, "questions") == 200 &&
              num(j, "missing") == 0,
          "rescored: %s", out);
    CHECK(num(j, "accuracy_with_image") >= 0.90, "the demo's accuracy with images %.3f", num(j, "accuracy_with_image"));
    cJSON_Delete(j);
    free(out), free(err);

    // --limit 24 in two chunks, the second first (chunk 0 waits for the other's answers).
    char *res = xasprintf("%s/limited", tmp);
    for (int k = 1; k >= 0; k--) {
        args = xasprintf(
            "eval --model '%s' --tokenizer '%s' --benchmark demo --data '%s' --out '%s' --limit 24 --chunks 2 "
            "--chunk-idx %d",
            model, tok, data, res, k);
        rc = run(args, &out, &err);
        CHECK(rc == 0, "chunk %d: exit %d\n%s%s", k, rc, out, err);
        free(args);
        if (k == 0) {
            CHECK(strstr(out, "a --limit subset") != NULL, "the table says the scores are a subset's:\n%s", out);
        }
        free(out), free(err);
    }
    char *c0 = xasprintf("%s/answers-2_0.jsonl", res), *c1 = xasprintf("%s/answers-2_1.jsonl", res);
    char *joined = xasprintf("%s/answers.jsonl", res);
    int n0, n1, nj, nall;
    char *t0 = qid_text(c0, &n0), *t1 = qid_text(c1, &n1), *tj = qid_text(joined, &nj),
         *tall = qid_text(answers, &nall);
    CHECK(n0 == 12 && n1 == 12 && nj == 24, "chunks of 12 and 12 joined into 24: %d %d %d", n0, n1, nj);
    char *both = xasprintf("%s%s", t0, t1);
    CHECK(strcmp(both, tj) == 0, "answers.jsonl is chunk 0 then chunk 1");
    CHECK(strncmp(tall, tj, strlen(tj)) == 0, "the first 24 answers equal the whole run's:\n%s\nvs\n%.*s", tj,
          (int)strlen(tj), tall);
    char *sp = xasprintf("%s/scores.json", res);
    cJSON *ls = json_file(sp);
    CHECK(ls && num(ls, "questions") == 12 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ls, "subset")),
          "the subset's scores: 12 questions with images (24 lines), marked as a subset");
    cJSON_Delete(ls);
    free(sp), free(both), free(t0), free(t1), free(tj), free(tall), free(c0), free(c1), free(joined), free(res);

    // A missing image: counted as wrong, reported, exit 3.
    char *qsrc = xasprintf("%s/eval_questions.jsonl", data), *qdir = xasprintf("%s/broken", tmp);
    char *qdst = xasprintf("%s/eval_questions.jsonl", qdir);
    CHECK(mkdir_p(qdir) == 0, "mkdir");
    size_t qlen;
    char *qtext = read_file(qsrc, 1 << 24, &qlen);
    char *first_nl = qtext ? strchr(qtext, '\n') : NULL;
    char *second_nl = first_nl ? strchr(first_nl + 1, '\n') : NULL;
    CHECK(second_nl != NULL, "the demo's question file has lines");
    if (second_nl) {
        // Two lines: the first question, and the second with its image renamed away.
        char *line2 = strndup(first_nl + 1, (size_t)(second_nl - first_nl - 1));
        char *img = strstr(line2, "images/");
        if (img) memcpy(img, "imagez/", 7);
        char *two = xasprintf("%.*s\n%s\n", (int)(first_nl - qtext), qtext, line2);
        CHECK(write_file_atomic(qdst, two, strlen(two)) == 0, "write");
        free(two);
        free(line2);
    }
    free(qtext);
    char *link_src = xasprintf("%s/images", data), *link_dst = xasprintf("%s/images", qdir);
    CHECK(symlink(link_src, link_dst) == 0, "link the images");
    res = xasprintf("%s/broken_out", tmp);
    args =
        xasprintf("eval --model '%s' --tokenizer '%s' --benchmark demo --data '%s' --out '%s'", model, tok, qdir, res);
    rc = run(args, &out, &err);
    free(args);
    CHECK(rc == 3, "a question without its image: exit %d (want 3)\n%s%s", rc, out, err);
    CHECK(strstr(err, "imagez/") != NULL, "the error names the missing image:\n%s", err);
    CHECK(strstr(out, "1 question(s) had no answer") != NULL, "the table reports the missing answer:\n%s", out);
    sp = xasprintf("%s/scores.json", res);
    ls = json_file(sp);
    CHECK(ls && num(ls, "missing") == 1 && num(ls, "questions") == 1,
          "scores.json counts the missing answer (the blind question) and keeps it in the denominator");
    cJSON_Delete(ls);
    free(out), free(err), free(sp), free(res), free(link_src), free(link_dst);

    // Errors that name what is wrong.
    char *bad = xasprintf("%s/bad_answers.jsonl", tmp);
    const char *bad_text = "{\"question_id\": \"eval-00000\", \"text\": \"red\"}\n{\"question_id\": \n";
    CHECK(write_file_atomic(bad, bad_text, strlen(bad_text)) == 0, "write");
    args = xasprintf("eval score --benchmark demo --answers '%s' --data '%s'", bad, data);
    rc = run(args, &out, &err);
    CHECK(rc == 1 && strstr(err, "bad_answers.jsonl line 2: not a JSON object"), "a torn answers line: %d %s", rc, err);
    free(args), free(out), free(err), free(bad);
    rc = run("eval score --benchmark nope --answers x --data y", &out, &err);
    CHECK(rc == 2 && strstr(err, "no benchmark \"nope\"") && strstr(err, " demo"), "unknown benchmark: %s", err);
    free(out), free(err);
    args = xasprintf("eval --model '%s' --benchmark demo --data '%s' --out '%s/x'", model, tmp, tmp);
    rc = run(args, &out, &err);
    CHECK(rc == 1 && strstr(err, "eval_questions.jsonl is missing") && strstr(err, "`llava demo` writes it"),
          "a folder without the question file: %s", err);
    free(args), free(out), free(err);
    rc = run("eval list", &out, &err);
    CHECK(rc == 0 && strstr(out, "demo ") != NULL, "eval list: %s", out);
    free(out), free(err);

    cJSON_Delete(demo_scores);
    free(qsrc), free(qdir), free(qdst), free(model), free(tok), free(data), free(answers), free(scores_path);
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
