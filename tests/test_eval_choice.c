// The scorers of POPE, ScienceQA, MME, SEED-Bench, MMBench and MMBench-CN (eval/score_*.c) against the
// official code, run unmodified on synthetic benchmark data in each official format
// (tests/data/eval/<bench>/, tools/reference/eval/make_choice_goldens.py):
//   - POPE (llava/eval/eval_pope.py): every split's TP/FP/TN/FN, and accuracy, precision, recall, F1
//     and yes ratio to the last bit of the double the script prints; the answers paired with labels by
//     order, so missing and reordered answers shift the pairs as they do there; missing counted;
//   - ScienceQA (model_vqa_science.py, eval_science_qa.py): prepare()'s questions equal the user turn
//     the script builds (less the "<image>\n" the generator adds); accuracy and IMG accuracy as
//     printed, the result file's acc to the bit, and both output files as the script writes them;
//   - MME (convert_answer_to_mme.py, calculation.py): every task's score, acc, acc+ and counts, the
//     perception and cognition sums to the bit, the files calculation.py reads byte for byte, and the
//     answer parser on its own against parse_pred_ans;
//   - SEED-Bench (convert_seed_for_submission.py): each accuracy as printed, and the upload file byte
//     for byte;
//   - MMBench, MMBench-CN (model_vqa_mmbench.py, convert_mmbench_for_submission.py, VLMEvalKit's
//     exact-matching CircularEval): the questions, the images written, the upload table as pandas
//     writes the official xlsx's table, Overall and per (l2-)category to the bit, and the answer
//     matcher against can_infer on its own;
//   - errors name the file and the line.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "eval/eval.h"
#include "eval/score_choice.h"

#define D "tests/data/eval/"

static char *tmp;

static cJSON *load(const char *path) {
    cJSON *j = eval_read_json(path);
    if (!j) {
        fprintf(stderr, "cannot read %s: %s\n", path, llava_errmsg());
        exit(1);
    }
    return j;
}

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static double num(const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

#define CHECK_BITS(a, b) CHECK((a) == (b), "%.17g != %.17g", (double)(a), (double)(b))

static cJSON *score(const char *bench, const char *data, const char *answers, const char *questions, const char *out) {
    const eval_bench *b = eval_find(bench);
    if (!b) return NULL;
    eval_inputs in = {.data = data, .answers = answers, .questions = questions, .out = out};
    return b->score(&in);
}

static char *write_tmp(const char *name, const char *text) {
    char *p = path_join(tmp, name);
    if (write_file_atomic(p, text, strlen(text)) != 0) exit(1);
    return p;
}

// "prefix: 12.34%" of a script's output, as printed.
static int printed(const char *out, const char *prefix, char *buf, size_t cap) {
    const char *p = strstr(out, prefix);
    if (!p) return 0;
    p += strlen(prefix);
    size_t n = strcspn(p, "%,\n");
    if (n >= cap) return 0;
    memcpy(buf, p, n);
    buf[n] = 0;
    return 1;
}

static void check_registry(void) {
    int n;
    const eval_bench *const *all = eval_benches(&n);
    const char *order[] = {"scienceqa", "pope", "mme", "mmbench", "mmbench_cn", "seed", "demo"};
    int last = -1;
    for (int k = 0; k < 7; k++) {
        int at = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(all[i]->name, order[k])) at = i;
        CHECK(at > last, "%s is not after %s in LLaVA-1.5's table order", order[k], k ? order[k - 1] : "the start");
        last = at;
    }
    CHECK(eval_find("mmbench")->kind == EVAL_APPROXIMATE && eval_find("mmbench_cn")->kind == EVAL_APPROXIMATE, "kind");
    CHECK(eval_find("pope")->kind == EVAL_EXACT && eval_find("seed")->kind == EVAL_EXACT, "kind");
    CHECK_BITS(eval_find("pope")->published_7b, 85.9);
    CHECK_BITS(eval_find("scienceqa")->published_13b, 71.6);
    CHECK_BITS(eval_find("mme")->published_7b, 1510.7);
    CHECK_BITS(eval_find("mmbench_cn")->published_13b, 63.6);
    CHECK_BITS(eval_find("seed")->published_7b, 58.6);
}

// ---- POPE

static void check_pope(void) {
    const char *cases[] = {"full", "missing"};
    int want_missing[] = {0, 3};
    for (int c = 0; c < 2; c++) {
        char *gp = xasprintf(D "pope/golden/%s.json", cases[c]), *ap = xasprintf(D "pope/answers/%s.jsonl", cases[c]);
        cJSON *g = load(gp), *s = score("pope", D "pope", ap, NULL, NULL);
        CHECK(s != NULL, "pope %s: %s", cases[c], llava_errmsg());
        if (s) {
            const cJSON *gs = get(g, "splits"), *ss = get(s, "splits");
            double f1sum = 0;
            const char *names[] = {"adversarial", "popular", "random"};
            for (int k = 0; k < 3; k++) {
                const cJSON *a = get(gs, names[k]), *b = get(ss, names[k]);
                CHECK(a && b, "split %s", names[k]);
                if (!a || !b) continue;
                const char *ints[] = {"TP", "FP", "TN", "FN", "samples"};
                for (int i = 0; i < 5; i++)
                    CHECK(num(a, ints[i]) == num(b, ints[i]), "%s %s %s: %g != %g", cases[c], names[k], ints[i],
                          num(b, ints[i]), num(a, ints[i]));
                const char *fr[] = {"acc", "precision", "recall", "f1", "yes_ratio"};
                for (int i = 0; i < 5; i++)
                    CHECK(num(b, fr[i]) == num(a, fr[i]) * 100, "%s %s %s: %.17g != %.17g * 100", cases[c], names[k],
                          fr[i], num(b, fr[i]), num(a, fr[i]));
                f1sum += num(a, "f1");
            }
            CHECK_BITS(num(s, "f1"), f1sum / 3 * 100);
            CHECK_EQ_INT(num(s, "missing"), want_missing[c]);
            if (c == 1) {
                CHECK(num(get(ss, "adversarial"), "misaligned") > 0 && num(get(ss, "popular"), "misaligned") == 2,
                      "the shifted pairs are reported");
                CHECK_EQ_INT(num(get(ss, "random"), "missing"), 1);
            }
        }
        cJSON_Delete(s);
        cJSON_Delete(g);
        free(gp);
        free(ap);
    }
    // An answer to a question the question file does not have: the file and the line.
    char *bad = write_tmp("pope_bad.jsonl",
                          "{\"question_id\": 1, \"text\": \"Yes\"}\n\n{\"question_id\": 999, \"text\": \"No\"}\n");
    CHECK(score("pope", D "pope", bad, NULL, NULL) == NULL, "unknown question_id");
    CHECK_ERR_HAS("pope_bad.jsonl line 3");
    CHECK_ERR_HAS("999");
    free(bad);
    bad = write_tmp("pope_bad2.jsonl", "{\"question_id\": 1, \"text\": \"Yes\"}\n{\"question_id\": 2}\n");
    CHECK(score("pope", D "pope", bad, NULL, NULL) == NULL, "no text");
    CHECK_ERR_HAS("pope_bad2.jsonl line 2: no \"text\"");
    free(bad);
}

// ---- ScienceQA

static int check_jsonl_equal(const char *got_path, const char *want_path, const char *what) {
    eval_lines a, b;
    if (eval_read_lines(got_path, &a) != 0 || eval_read_lines(want_path, &b) != 0) {
        CHECK(0, "%s: %s", what, llava_errmsg());
        return 0;
    }
    CHECK_EQ_INT(a.n, b.n);
    int bad = 0;
    for (int i = 0; i < a.n && i < b.n; i++) {
        const cJSON *x = a.obj[i], *y = b.obj[i];
        char *kx = sc_key(get(x, "question_id")), *ky = sc_key(get(y, "question_id"));
        CHECK(kx && ky && !strcmp(kx, ky), "%s line %d: question_id %s != %s", what, i + 1, kx, ky);
        CHECK(!strcmp(str(x, "text"), str(y, "text")), "%s line %d: text\n%s\n!=\n%s", what, i + 1, str(x, "text"),
              str(y, "text"));
        bad += strcmp(str(x, "text"), str(y, "text")) != 0;
        if (get(y, "image")) CHECK_EQ_STR(str(x, "image"), str(y, "image"));
        free(kx);
        free(ky);
    }
    eval_lines_free(&a);
    eval_lines_free(&b);
    return !bad;
}

static void check_sqa(void) {
    const eval_bench *b = eval_find("scienceqa");
    eval_inputs in = {.data = D "scienceqa"};
    char *qp = path_join(tmp, "sqa_questions.jsonl");
    CHECK(b->prepare(&in, qp, 0) == 0, "prepare: %s", llava_errmsg());
    check_jsonl_equal(qp, D "scienceqa/golden/prepare.jsonl", "scienceqa prepare");
    char *q3 = path_join(tmp, "sqa_q3.jsonl");
    CHECK(b->prepare(&in, q3, 3) == 0, "prepare limit");
    eval_lines l3;
    if (eval_read_lines(q3, &l3) == 0) {
        CHECK_EQ_INT(l3.n, 3);
        eval_lines_free(&l3);
    }
    const char *cases[] = {"model", "missing", "noimage_prompt"};
    for (int c = 0; c < 3; c++) {
        char *gp = xasprintf(D "scienceqa/golden/%s.json", c == 2 ? "model" : cases[c]);
        char *ap = xasprintf(D "scienceqa/answers/%s.jsonl", cases[c]);
        char *od = xasprintf("%s/sqa_out_%d", tmp, c);
        cJSON *g = load(gp), *s = score("scienceqa", D "scienceqa", ap, NULL, od);
        CHECK(s != NULL, "scienceqa %s: %s", cases[c], llava_errmsg());
        if (s) {
            const char *out = str(g, "stdout");
            char want[64], got[64];
            CHECK(printed(out, "IMG-Accuracy: ", want, sizeof want), "printed IMG-Accuracy");
            snprintf(got, sizeof got, "%.2f", num(s, "img_acc"));
            CHECK_EQ_STR(got, want);
            CHECK(printed(out, " Accuracy: ", want, sizeof want), "printed Accuracy");
            snprintf(got, sizeof got, "%.2f", num(s, "acc"));
            CHECK_EQ_STR(got, want);
            const cJSON *res = get(g, "result");
            CHECK_BITS(num(s, "acc"), num(res, "acc"));
            CHECK_EQ_INT(num(s, "correct"), num(res, "correct"));
            CHECK_EQ_INT(num(s, "count"), num(res, "count"));
            CHECK_EQ_INT(num(s, "missing"), c == 1 ? 2 : 0);
            CHECK_EQ_INT(num(s, "missing_img"), c == 1 ? 1 : 0);
            // the script's two files
            char *p1 = path_join(od, "scienceqa_result.json"), *p2 = path_join(od, "scienceqa_output.json");
            cJSON *r1 = load(p1), *r2 = load(p2);
            if (c < 2) {
                CHECK(cJSON_Compare(r1, res, 1), "scienceqa_result.json differs from the script's");
                CHECK(cJSON_Compare(r2, get(g, "output"), 1), "scienceqa_output.json differs from the script's");
            }
            cJSON_Delete(r1);
            cJSON_Delete(r2);
            free(p1);
            free(p2);
        }
        cJSON_Delete(s);
        cJSON_Delete(g);
        free(gp);
        free(ap);
        free(od);
    }
    // A question file answered in part (--limit 3): its problems only.
    cJSON *s = score("scienceqa", D "scienceqa", D "scienceqa/answers/model.jsonl", q3, NULL);
    CHECK(s && num(s, "count") == 3, "limited to the question file");
    cJSON_Delete(s);
    char *bad = write_tmp("sqa_bad.jsonl", "{\"question_id\": \"4\", \"text\": \"A\"}\nnot json\n");
    CHECK(score("scienceqa", D "scienceqa", bad, NULL, NULL) == NULL, "bad line");
    CHECK_ERR_HAS("sqa_bad.jsonl line 2");
    free(bad);
    free(qp);
    free(q3);
}

// ---- MME

static void check_mme(void) {
    const char *tasks[] = {"existence",
                           "count",
                           "position",
                           "color",
                           "posters",
                           "celebrity",
                           "scene",
                           "landmark",
                           "artwork",
                           "OCR",
                           "commonsense_reasoning",
                           "numerical_calculation",
                           "text_translation",
                           "code_reasoning"};
    const char *cases[] = {"full", "missing"};
    for (int c = 0; c < 2; c++) {
        char *gp = xasprintf(D "MME/golden/%s.json", cases[c]), *ap = xasprintf(D "MME/answers/%s.jsonl", cases[c]);
        char *od = xasprintf("%s/mme_out_%d", tmp, c);
        cJSON *g = load(gp), *s = score("mme", D "MME", ap, NULL, od);
        CHECK(s != NULL, "mme %s: %s", cases[c], llava_errmsg());
        if (s) {
            const cJSON *gs = get(g, "scores"), *gt = get(g, "tasks"), *st = get(s, "tasks");
            CHECK_BITS(num(s, "perception"), num(gs, "Perception"));
            CHECK_BITS(num(s, "cognition"), num(gs, "Cognition"));
            for (int k = 0; k < 14; k++) {
                const cJSON *a = get(gt, tasks[k]), *b = get(st, tasks[k]);
                CHECK(a && b, "task %s", tasks[k]);
                if (!a || !b) continue;
                CHECK(num(b, "score") == num(gs, tasks[k]), "%s %s score %.17g != %.17g", cases[c], tasks[k],
                      num(b, "score"), num(gs, tasks[k]));
                CHECK_BITS(num(b, "acc"), num(a, "acc") * 100);
                CHECK_BITS(num(b, "acc_plus"), num(a, "acc_plus") * 100);
                const char *ints[] = {"other_num", "TP", "FN", "TN", "FP"};
                for (int i = 0; i < 5; i++) CHECK_EQ_INT(num(b, ints[i]), num(a, ints[i]));
                CHECK_BITS(num(b, "precision"), num(a, "precision") * 100);
                CHECK_BITS(num(b, "recall"), num(a, "recall") * 100);
                char *name = xasprintf("%s.txt", tasks[k]), *p = xasprintf("%s/mme_eval_tool/%s.txt", od, tasks[k]);
                char *mine = read_file(p, 1 << 20, NULL);
                CHECK(mine && !strcmp(mine, str(get(g, "files"), name)),
                      "%s: %s differs from convert_answer_to_mme.py's", cases[c], name);
                free(mine);
                free(p);
                free(name);
            }
            CHECK_EQ_INT(num(s, "missing"), c ? 2 : 0);
        }
        // parse_pred_ans, case by case (the file gives it each answer with its line break)
        const cJSON *pp = get(g, "parse_pred_ans");
        for (const cJSON *e = pp ? pp->child : NULL; c == 0 && e; e = e->next) {
            int v = eval_mme_parse(e->string);
            const char *w = e->valuestring;
            CHECK(!strcmp(w, v == 1   ? "yes"
                             : v == 0 ? "no"
                                      : "other"),
                  "parse_pred_ans(\"%s\") = %s, ours %d", e->string, w, v);
        }
        cJSON_Delete(s);
        cJSON_Delete(g);
        free(gp);
        free(ap);
        free(od);
    }
    // An answer with a line break: cut there (calculation.py would stop on it), reported.
    char *cut = write_tmp("mme_cut.jsonl",
                          "{\"question_id\": \"existence/1001.jpg\", \"prompt\": \"Is there thing 1-0 in the existence "
                          "image?\\nAnswer the question using a single word or phrase.\", \"text\": \"Yes\\nNo\"}\n");
    cJSON *s = score("mme", D "MME", cut, NULL, NULL);
    CHECK(s && num(s, "cut_answers") == 1 && num(get(get(s, "tasks"), "existence"), "TP") == 1, "a cut answer");
    cJSON_Delete(s);
    free(cut);
    char *bad = write_tmp(
        "mme_bad.jsonl",
        "{\"question_id\": \"existence/1001.jpg\", \"prompt\": \"Is there thing "
        "1-0 in the existence image?\\nAnswer the question using a single word or phrase.\", \"text\": \"Yes\"}\n"
        "{\"question_id\": \"existence/1001.jpg\", \"prompt\": \"Is it a dog?\", "
        "\"text\": \"Yes\"}\n");
    CHECK(score("mme", D "MME", bad, NULL, NULL) == NULL, "unknown prompt");
    CHECK_ERR_HAS("mme_bad.jsonl line 2");
    free(bad);
}

// ---- SEED-Bench

static void check_seed(void) {
    const char *cases[] = {"full", "missing"};
    for (int c = 0; c < 2; c++) {
        char *gp = xasprintf(D "seed_bench/golden/%s.json", cases[c]),
             *ap = xasprintf(D "seed_bench/answers/%s.jsonl", cases[c]);
        char *od = xasprintf("%s/seed_out_%d", tmp, c);
        cJSON *g = load(gp), *s = score("seed", D "seed_bench", ap, NULL, od);
        CHECK(s != NULL, "seed %s: %s", cases[c], llava_errmsg());
        if (s) {
            const char *out = str(g, "stdout");
            char want[64], got[64];
            for (const cJSON *t = get(s, "types")->child; t; t = t->next) {
                char *prefix = xasprintf("%s: ", t->string);
                CHECK(printed(out, prefix, want, sizeof want), "printed %s", t->string);
                snprintf(got, sizeof got, "%.2f", num(t, "acc"));
                CHECK_EQ_STR(got, want);
                free(prefix);
            }
            const char *tot[][2] = {
                {"Total accuracy: ", "all"}, {"image accuracy: ", "image"}, {"video accuracy: ", "video"}};
            for (int i = 0; i < 3; i++) {
                CHECK(printed(out, tot[i][0], want, sizeof want), "printed %s", tot[i][0]);
                snprintf(got, sizeof got, "%.2f", num(s, tot[i][1]));
                CHECK_EQ_STR(got, want);
            }
            char *up = path_join(od, "seed_upload.jsonl");
            char *mine = read_file(up, 1 << 20, NULL);
            if (c == 0) CHECK(mine && !strcmp(mine, str(g, "upload")), "the upload file differs from the script's");
            else
                CHECK(!strcmp(str(g, "error"), "KeyError: 100185") && num(s, "upload_missing") == 2,
                      "the script stops at a missing answer; we leave 2 out");
            free(mine);
            free(up);
            CHECK_EQ_INT(num(s, "missing"), c ? 3 : 0);  // 2 dropped, 1 id written as a string
        }
        cJSON_Delete(s);
        cJSON_Delete(g);
        free(gp);
        free(ap);
        free(od);
    }
}

// ---- MMBench

// dir: the data under tests/data/eval; model: its answers file (the model's answers written by
// model_vqa_mmbench.py); answers/missing.jsonl and the upload table are checked where the golden has them.
static void check_mmbench(const char *bench, const char *dir, const char *model) {
    const eval_bench *b = eval_find(bench);
    char *data = xasprintf(D "%s", dir), *od = xasprintf("%s/%s_out", tmp, dir);
    char *qp = path_join(od, "questions.jsonl");
    mkdir_p(od);
    eval_inputs in = {.data = data, .out = od};
    CHECK(b->prepare(&in, qp, 0) == 0, "%s prepare: %s", bench, llava_errmsg());
    char *gq = xasprintf(D "%s/golden/prepare.jsonl", dir);
    check_jsonl_equal(qp, gq, bench);
    eval_lines ql;
    if (eval_read_lines(qp, &ql) == 0) {  // the images exist and are images
        for (int i = 0; i < ql.n; i++) {
            char *ip = path_join(od, str(ql.obj[i], "image"));
            size_t n = 0;
            char *bytes = read_file(ip, 1 << 20, &n);
            CHECK(bytes && n > 8 &&
                      (((unsigned char)bytes[0] == 0x89 && bytes[1] == 'P') ||
                       ((unsigned char)bytes[0] == 0xFF && (unsigned char)bytes[1] == 0xD8)),
                  "%s is an image", ip);
            free(bytes);
            free(ip);
        }
        eval_lines_free(&ql);
    }
    char *gp = xasprintf(D "%s/golden/golden.json", dir);
    cJSON *g = load(gp);
    const char *cases[] = {"model", "missing"};
    for (int c = 0; c < 2; c++) {
        if (!get(g, cases[c])) continue;
        char *ap = c ? xasprintf(D "%s/answers/missing.jsonl", dir) : xasprintf(D "%s/%s", dir, model);
        cJSON *s = score(bench, data, ap, NULL, od);
        CHECK(s != NULL, "%s %s: %s", bench, cases[c], llava_errmsg());
        if (s) {
            const cJSON *acc = get(get(g, cases[c]), "acc");
            CHECK_BITS(num(s, "Overall"), num(acc, "Overall") * 100);
            int groups = 0;
            for (const cJSON *e = acc->child; e; e = e->next) {
                if (!strcmp(e->string, "split") || !strcmp(e->string, "Overall")) continue;
                const cJSON *v = get(get(s, "category"), e->string);
                if (!v) v = get(get(s, "l2-category"), e->string);
                CHECK(v && v->valuedouble == e->valuedouble * 100, "%s %s %s: %.17g != %.17g * 100", bench, cases[c],
                      e->string, v ? v->valuedouble : NAN, e->valuedouble);
                groups++;
            }
            CHECK_EQ_INT(groups, cJSON_GetArraySize(get(s, "category")) + cJSON_GetArraySize(get(s, "l2-category")));
            if (c == 0 && get(g, "upload_tsv")) {
                char *up = xasprintf("%s/%s_upload.tsv", od, bench);
                char *mine = read_file(up, 1 << 20, NULL);
                CHECK(mine && !strcmp(mine, str(g, "upload_tsv")), "%s: the upload table differs from the xlsx's:\n%s",
                      bench, mine ? mine : "(none)");
                free(mine);
                free(up);
            }
        }
        cJSON_Delete(s);
        free(ap);
    }
    // The matcher on its own, against VLMEvalKit's can_infer.
    const cJSON *table = get(get(g, "model"), "table");
    for (const cJSON *e = table ? table->child : NULL; e; e = e->next) {
        const char *ch[4] = {NULL, NULL, NULL, NULL};
        for (int k = 0; k < 4; k++) {
            const cJSON *v = get(get(e, "choices"), (const char[]){(char)('A' + k), 0});
            if (cJSON_IsString(v)) ch[k] = v->valuestring;
        }
        char got = eval_mmbench_can_infer(str(e, "answer"), ch);
        const cJSON *r = get(e, "result");
        char want = cJSON_IsString(r) ? r->valuestring[0] : 0;
        CHECK(got == want, "can_infer(\"%s\") = %c, ours %c", str(e, "answer"), want ? want : '-', got ? got : '-');
    }
    cJSON_Delete(g);
    free(gp);
    free(gq);
    free(qp);
    free(od);
    free(data);
}

static void check_mmbench_errors(void) {
    // A row with more fields than the header: the TSV and the line.
    char *dir = path_join(tmp, "mmb_bad");
    mkdir_p(dir);
    char *p = path_join(dir, "mmbench_dev_20230712.tsv");
    const char *t =
        "index\tquestion\tA\tB\tanswer\timage\n0\tq?\ta\tb\tA\tiVBORw0KGgo=\n1\t\"two\nlines\"\ta\tb\tA\tx\n"
        "2\tq\ta\tb\tA\tx\textra\n";
    write_file_atomic(p, t, strlen(t));
    eval_inputs in = {.data = dir, .answers = D "mmbench/answers/missing.jsonl"};
    CHECK(eval_find("mmbench")->score(&in) == NULL, "extra field");
    CHECK_ERR_HAS("mmbench_dev_20230712.tsv line 5");
    free(p);
    free(dir);
}

int main(void) {
    tmp = check_tmpdir();
    check_registry();
    check_pope();
    check_sqa();
    check_mme();
    check_seed();
    check_mmbench("mmbench", "mmbench", "answers/mmbench_dev_20230712/llava-v1.5-13b.jsonl");
    check_mmbench("mmbench_cn", "mmbench_cn", "answers/mmbench_dev_cn_20231003/llava-v1.5-13b.jsonl");
    // A TSV without circular copies, asked and answered as LLaVA's --all-rounds does (question_id and
    // round_id in its answers): the rounds' prompts, and CircularEval equal to the TSV with copies'.
    check_mmbench("mmbench", "mmbench_rounds", "answers/llava-v1.5-13b.jsonl");
    check_mmbench_errors();
    check_rm_rf(tmp);
    return check_done();
}
