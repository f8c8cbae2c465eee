// The VQA-family scorers (eval/bench_textvqa.c, bench_gqa.c, bench_vqav2.c, bench_vizwiz.c) against the
// official code, run unmodified by tools/reference/eval/make_vqa_goldens.py on synthetic benchmark data
// in each official format (tests/data/eval/<bench>/golden.json records every source file's sha256):
//
//   - the normalisations, string by string: EvalAIAnswerProcessor (LLaVA's m4c_evaluator.py, Python
//     3.10) and vqaEval.py's processPunctuation / processDigitArticle (Python 2.7), on 447 answers
//     that hit every branch (case, periods, articles, number words, contractions, punctuation beside
//     spaces, commas in numbers, the 32-period limit, Unicode lower, final sigma, U+0130, whitespace,
//     non-ASCII digits); Python 2's round(x, 2), halfway cases included;
//   - TextVQA: eval_textvqa.py's accuracy, to the printed digit and bit for bit, answers in order and
//     shuffled with some questions left out, a repeated (image, question) key;
//   - GQA: convert_gqa_for_eval.py's predictions file byte for byte, and eval.py (LLaVA's gist
//     modification; GQA's later eval.py agrees) accuracy, binary, open and distribution bit for bit,
//     also for a question-file subset;
//   - VQAv2: convert_vqav2_for_submission.py's upload file byte for byte; vqav2_val against
//     vqaEval.py (Python 2.7) on that converter's output, also for a prepared --limit subset;
//   - VizWiz: convert_vizwiz_for_submission.py's upload file byte for byte; vizwiz_val against vqaEval.py
//     (Python 2.7) on that converter's output for VizWiz's val answers in the VQA v2 layout (overall and
//     per answer_type, also with questions unanswered and for a prepared --limit subset), and the
//     question file prepare() writes from val.json byte for byte;
//   - errors name the file and line (a line that is not JSON, a line without text, a prompt
//     prompt_processor refuses) and a missing annotation file names its path and the download.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "eval/eval.h"
#include "eval/pyunicode.h"
#include "eval/vqa_norm.h"

#define D "tests/data/eval/"

static char *tmp;

static cJSON *load(const char *path) {
    cJSON *j = eval_read_json(path);
    if (!j) {
        fprintf(stderr, "FAIL: cannot read %s: %s\n", path, llava_errmsg());
        exit(1);
    }
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

// The two files hold the same bytes.
static void check_same_file(const char *ours, const char *official) {
    size_t n1 = 0, n2 = 0;
    char *a = read_file(ours, 1 << 24, &n1), *b = read_file(official, 1 << 24, &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "%s (%zu bytes) differs from the official %s (%zu bytes)", ours,
          n1, official, n2);
    if (a && b && (n1 != n2 || memcmp(a, b, n1) != 0)) {
        size_t i = 0;
        while (i < n1 && i < n2 && a[i] == b[i]) i++;
        fprintf(stderr, "  first difference at byte %zu: ours \"%.60s\" official \"%.60s\"\n", i, a + i, b + i);
    }
    free(a);
    free(b);
}

// The number as the official script prints it ("%.2f") and the value itself, bit for bit.
static void check_number(const cJSON *ours, const cJSON *golden, const char *key, const char *what) {
    double o = num(ours, key), g = num(golden, key);
    char so[64], sg[64];
    snprintf(so, sizeof so, "%.2f", o);
    snprintf(sg, sizeof sg, "%.2f", g);
    CHECK(strcmp(so, sg) == 0, "%s %s: %s, official %s", what, key, so, sg);
    CHECK(o == g, "%s %s: %.17g, official %.17g", what, key, o, g);
}

static void check_counts(const cJSON *ours, const cJSON *golden, const char *what) {
    CHECK(num(ours, "questions") == num(golden, "questions"), "%s: %g questions, golden %g", what,
          num(ours, "questions"), num(golden, "questions"));
    CHECK(num(ours, "missing") == num(golden, "missing"), "%s: %g missing, golden %g", what, num(ours, "missing"),
          num(golden, "missing"));
}

static cJSON *score(const char *bench, const char *data, const char *answers, const char *questions, const char *out) {
    const eval_bench *b = eval_find(bench);
    if (!b) return NULL;
    eval_inputs in = {.data = data, .answers = answers, .questions = questions, .out = out};
    llava_clear_error();
    return b->score(&in);
}

// The first n lines of a file, into a new file under tmp.
static char *first_lines(const char *path, int n, const char *name) {
    size_t len;
    char *t = read_file(path, 1 << 24, &len);
    char *p = t;
    for (int i = 0; p && i < n; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    char *out = path_join(tmp, name);
    write_file_atomic(out, t, p ? (size_t)(p - t) : len);
    free(t);
    return out;
}

static void test_registry(void) {
    const char *order[] = {"vqav2", "vqav2_val", "gqa", "vizwiz", "vizwiz_val", "textvqa", "demo"};
    int n, at[7];
    const eval_bench *const *all = eval_benches(&n);
    for (int k = 0; k < 7; k++) {
        at[k] = -1;
        for (int i = 0; i < n; i++)
            if (strcmp(all[i]->name, order[k]) == 0) at[k] = i;
        CHECK(at[k] >= 0, "%s is not registered", order[k]);
        if (k) CHECK(at[k] > at[k - 1], "%s comes before %s in the table", order[k], order[k - 1]);
    }
    const eval_bench *t = eval_find("textvqa"), *g = eval_find("gqa"), *v = eval_find("vqav2"),
                     *w = eval_find("vizwiz");
    if (!t || !g || !v || !w) return;
    CHECK(t->published_7b == 58.2 && t->published_13b == 61.3, "TextVQA published");
    CHECK(g->published_7b == 62.0 && g->published_13b == 63.3, "GQA published");
    CHECK(v->published_7b == 78.5 && v->published_13b == 80.0 && v->kind == EVAL_SUBMISSION, "VQAv2");
    CHECK(w->published_7b == 50.0 && w->published_13b == 53.6 && w->kind == EVAL_SUBMISSION, "VizWiz");
    CHECK(t->prepare == NULL && g->prepare == NULL && eval_find("vqav2_val")->prepare != NULL, "prepare");
    CHECK_EQ_STR(t->question_file, "llava_textvqa_val_v051_ocr.jsonl");
    CHECK_EQ_STR(g->image_folder, "data/images");
    const eval_bench *wv = eval_find("vizwiz_val");
    if (!wv) return;
    CHECK(isnan(wv->published_7b) && isnan(wv->published_13b) && wv->kind == EVAL_EXACT && wv->prepare != NULL,
          "vizwiz_val: exact, prepared, no published number");
    CHECK_EQ_STR(wv->primary, "accuracy");
    CHECK_EQ_STR(wv->question_file, "val.json");
    CHECK_EQ_STR(wv->image_folder, "val");
}

static void test_normalisation(void) {
    cJSON *j = load(D "vqa_norm.json");
    int n = 0;
    for (const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "cases")->child; c; c = c->next, n++) {
        // [in, EvalAIAnswerProcessor, processPunctuation, processDigitArticle after it]
        const char *in = cJSON_GetArrayItem(c, 0)->valuestring, *we = cJSON_GetArrayItem(c, 1)->valuestring,
                   *wp = cJSON_GetArrayItem(c, 2)->valuestring, *wd = cJSON_GetArrayItem(c, 3)->valuestring;
        char *e = evalai_answer(in), *p = vqa_eval_punctuation(in), *d = vqa_eval_digit_article(p);
        CHECK(strcmp(e, we) == 0, "EvalAIAnswerProcessor(\"%s\") = \"%s\", official \"%s\"", in, e, we);
        CHECK(strcmp(p, wp) == 0, "processPunctuation(\"%s\") = \"%s\", official \"%s\"", in, p, wp);
        CHECK(strcmp(d, wd) == 0, "processDigitArticle(\"%s\") = \"%s\", official \"%s\"", p, d, wd);
        free(e);
        free(p);
        free(d);
    }
    CHECK(n >= 400, "%d normalisation cases", n);
    int r = 0;
    for (const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "py2_round_2")->child; c; c = c->next, r++) {
        double x = c->child->valuedouble, want = c->child->next->valuedouble, got = pyu_round2_py2(x, 2);
        CHECK(got == want && signbit(got) == signbit(want), "round(%.17g, 2): %.17g, Python 2 %.17g", x, got, want);
    }
    CHECK(r > 200, "%d round cases", r);
    // The character tables whole.
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tables");
    const char *lows[] = {"py3_lower", "py2_lower"};
    for (int v = 0; v < 2; v++) {
        const cJSON *pair = cJSON_GetObjectItemCaseSensitive(t, lows[v]);
        pyustr s = {0};
        pyustr_set(&s, cJSON_GetArrayItem(pair, 0)->valuestring);
        size_t n_in = s.n;
        pyu_lower(v == 0 ? PYU3 : PYU2, &s);
        char *got = pyustr_utf8(&s);
        CHECK(n_in > 1000 && strcmp(got, cJSON_GetArrayItem(pair, 1)->valuestring) == 0, "%s of %zu code points",
              lows[v], n_in);
        free(got);
        pyustr_free(&s);
    }
    const char *sets[] = {"py3_space", "py2_space", "py3_decimal"};
    for (int k = 0; k < 3; k++) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(t, sets[k]);
        char *in = xcalloc(0x110000, 1);
        for (const cJSON *c = list ? list->child : NULL; c; c = c->next) in[(int)c->valuedouble] = 1;
        int wrong = 0;
        for (uint32_t c = 0; c < 0x110000; c++) {
            int ours = k == 2 ? pyu_re_digit(PYU3, c) : pyu_isspace(k == 0 ? PYU3 : PYU2, c);
            wrong += (c < 0xD800 || c >= 0xE000) && ours != in[c];
        }
        CHECK(cJSON_GetArraySize(list) > 20 && wrong == 0, "%s: %d code points differ", sets[k], wrong);
        free(in);
    }
    cJSON_Delete(j);
}

static void test_textvqa(void) {
    cJSON *g = load(D "textvqa/golden.json");
    const char *runs[][2] = {{"complete", D "textvqa/answers/complete.jsonl"},
                             {"missing", D "textvqa/answers/missing.jsonl"}};
    for (int i = 0; i < 2; i++) {
        cJSON *s = score("textvqa", D "textvqa", runs[i][1], NULL, NULL);
        CHECK(s != NULL, "textvqa %s: %s", runs[i][0], llava_errmsg());
        const cJSON *gold = cJSON_GetObjectItemCaseSensitive(g, runs[i][0]);
        if (s) {
            check_number(s, gold, "accuracy", runs[i][0]);
            check_counts(s, gold, runs[i][0]);
        }
        cJSON_Delete(s);
    }
    // The question file given: the same numbers.
    cJSON *s = score("textvqa", D "textvqa", D "textvqa/answers/complete.jsonl",
                     D "textvqa/llava_textvqa_val_v051_ocr.jsonl", NULL);
    if (s) check_number(s, cJSON_GetObjectItemCaseSensitive(g, "complete"), "accuracy", "with --questions");
    cJSON_Delete(s);
    // Errors name the file and the line.
    s = score("textvqa", D "textvqa", D "textvqa/answers/malformed.jsonl", NULL, NULL);
    CHECK(s == NULL, "a line that is not JSON");
    CHECK_ERR_HAS("textvqa/answers/malformed.jsonl line 3: not a JSON object");
    cJSON_Delete(s);
    s = score("textvqa", D "textvqa", D "textvqa/answers/bad_prompt.jsonl", NULL, NULL);
    CHECK(s == NULL, "a prompt of four lines");
    CHECK_ERR_HAS("bad_prompt.jsonl line 2: the prompt has none of the forms");
    cJSON_Delete(s);
    char *noText = path_join(tmp, "no_text.jsonl");
    const char *t = "{\"question_id\": \"a\", \"prompt\": \"q\\nr\", \"text\": \"x\"}\n\n{\"question_id\": \"a\"}\n";
    write_file_atomic(noText, t, strlen(t));
    s = score("textvqa", D "textvqa", noText, NULL, NULL);
    CHECK(s == NULL, "a line without text");
    CHECK_ERR_HAS("no_text.jsonl line 3: no \"text\" string");
    cJSON_Delete(s);
    free(noText);
    // The annotation file missing: its path and what LLaVA's docs say to download.
    char *q = path_join(tmp, "llava_textvqa_val_v051_ocr.jsonl");
    char *qt = read_file(D "textvqa/llava_textvqa_val_v051_ocr.jsonl", 1 << 24, NULL);
    write_file_atomic(q, qt, strlen(qt));
    s = score("textvqa", tmp, D "textvqa/answers/complete.jsonl", NULL, NULL);
    CHECK(s == NULL, "no annotation file");
    char *want = path_join(tmp, "TextVQA_0.5.1_val.json is missing");
    CHECK_ERR_HAS(want);
    CHECK_ERR_HAS("https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_val.json");
    remove(q);
    free(want);
    free(qt);
    free(q);
    cJSON_Delete(g);
}

static void test_gqa(void) {
    cJSON *g = load(D "gqa/golden.json");
    const char *runs[] = {"complete", "missing"};
    for (int i = 0; i < 2; i++) {
        char *answers = xasprintf(D "gqa/answers/%s.jsonl", runs[i]), *out = xasprintf("%s/gqa_%s", tmp, runs[i]);
        cJSON *s = score("gqa", D "gqa", answers, NULL, out);
        CHECK(s != NULL, "gqa %s: %s", runs[i], llava_errmsg());
        const cJSON *gold = cJSON_GetObjectItemCaseSensitive(g, runs[i]);
        if (s) {
            const char *keys[] = {"accuracy", "binary", "open", "distribution"};
            for (int k = 0; k < 4; k++) check_number(s, gold, keys[k], runs[i]);
            check_counts(s, gold, runs[i]);
            char *official = xasprintf(D "gqa/official/%s/testdev_balanced_predictions.json", runs[i]);
            check_same_file(str(s, "predictions_file"), official);
            free(official);
        }
        cJSON_Delete(s);
        free(answers);
        free(out);
    }
    // A --limit subset: the first 30 questions of LLaVA's question file.
    char *first = first_lines(D "gqa/llava_gqa_testdev_balanced.jsonl", 30, "gqa_first30.jsonl");
    cJSON *s = score("gqa", D "gqa", D "gqa/answers/complete.jsonl", first, NULL);
    CHECK(s != NULL, "gqa subset: %s", llava_errmsg());
    const cJSON *gold = cJSON_GetObjectItemCaseSensitive(g, "first30");
    if (s) {
        const char *keys[] = {"accuracy", "binary", "open", "distribution"};
        for (int k = 0; k < 4; k++) check_number(s, gold, keys[k], "first30");
        check_counts(s, gold, "first30");
        CHECK(cJSON_GetObjectItemCaseSensitive(s, "predictions_file") == NULL, "no --out: no predictions file");
    }
    cJSON_Delete(s);
    free(first);
    s = score("gqa", tmp, D "gqa/answers/complete.jsonl", NULL, NULL);
    CHECK(s == NULL, "no GQA questions file");
    char *want = path_join(tmp, "data/testdev_balanced_questions.json is missing");
    CHECK_ERR_HAS(want);
    CHECK_ERR_HAS("cs.stanford.edu/people/dorarad/gqa/download.html");
    free(want);
    cJSON_Delete(g);
}

static void test_vqav2(void) {
    cJSON *g = load(D "vqav2/golden.json");
    // test-dev: the upload file.
    char *out = path_join(tmp, "vqav2");
    cJSON *s = score("vqav2", D "vqav2", D "vqav2/answers/test-dev.jsonl", NULL, out);
    CHECK(s != NULL, "vqav2: %s", llava_errmsg());
    const cJSON *gold = cJSON_GetObjectItemCaseSensitive(g, "test-dev");
    if (s) {
        check_counts(s, gold, "test-dev");
        CHECK(num(s, "submission_questions") == num(gold, "submission_questions"), "all of test2015 uploaded");
        check_same_file(str(s, "submission_file"), D "vqav2/official/llava_vqav2_mscoco_test-dev2015.json");
    }
    cJSON_Delete(s);
    s = score("vqav2", D "vqav2", D "vqav2/answers/test-dev.jsonl", NULL, NULL);
    CHECK(s && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "submission_file")), "no --out: no upload file");
    cJSON_Delete(s);
    // val2014: prepare() writes LLaVA's question format; --limit keeps the first questions.
    const eval_bench *val = eval_find("vqav2_val");
    eval_inputs in = {.data = D "vqav2"};
    char *prepared = path_join(tmp, "val_questions.jsonl"), *prepared30 = path_join(tmp, "val_questions30.jsonl");
    CHECK(val && val->prepare(&in, prepared, 0) == 0, "prepare: %s", llava_errmsg());
    check_same_file(prepared, D "vqav2/llava_vqav2_mscoco_val2014.jsonl");
    CHECK(val && val->prepare(&in, prepared30, 30) == 0, "prepare --limit 30: %s", llava_errmsg());
    char *want30 = first_lines(D "vqav2/llava_vqav2_mscoco_val2014.jsonl", 30, "val_first30_expected.jsonl");
    check_same_file(prepared30, want30);
    const char *runs[][3] = {{"val_complete", D "vqav2/answers/val_complete.jsonl", NULL},
                             {"val_missing", D "vqav2/answers/val_missing.jsonl", NULL},
                             {"val_first30", D "vqav2/answers/val_complete.jsonl", "30"}};
    for (int i = 0; i < 3; i++) {
        s = score("vqav2_val", D "vqav2", runs[i][1], runs[i][2] ? prepared30 : NULL, NULL);
        CHECK(s != NULL, "vqav2_val %s: %s", runs[i][0], llava_errmsg());
        gold = cJSON_GetObjectItemCaseSensitive(g, runs[i][0]);
        if (!s) continue;
        check_number(s, gold, "accuracy", runs[i][0]);
        check_counts(s, gold, runs[i][0]);
        const cJSON *per = cJSON_GetObjectItemCaseSensitive(s, "perAnswerType");
        const cJSON *gper = cJSON_GetObjectItemCaseSensitive(gold, "perAnswerType");
        CHECK(cJSON_GetArraySize(per) == cJSON_GetArraySize(gper), "answer types");
        for (const cJSON *t = gper ? gper->child : NULL; t; t = t->next) check_number(per, gper, t->string, t->string);
        cJSON_Delete(s);
    }
    char *empty = path_join(tmp, "empty");
    mkdir_p(empty);
    s = score("vqav2_val", empty, D "vqav2/answers/val_complete.jsonl", NULL, NULL);
    CHECK(s == NULL, "no annotations");
    CHECK_ERR_HAS("v2_mscoco_val2014_annotations.json is missing");
    CHECK_ERR_HAS("https://visualqa.org/download.html");
    cJSON_Delete(s);
    free(empty);
    free(want30);
    free(prepared);
    free(prepared30);
    free(out);
    cJSON_Delete(g);
}

static void test_vizwiz(void) {
    cJSON *g = load(D "vizwiz/golden.json");
    char *out = path_join(tmp, "vizwiz");
    cJSON *s = score("vizwiz", D "vizwiz", D "vizwiz/answers/complete.jsonl", NULL, out);
    CHECK(s != NULL, "vizwiz: %s", llava_errmsg());
    if (s) {
        check_counts(s, cJSON_GetObjectItemCaseSensitive(g, "complete"), "complete");
        check_same_file(str(s, "submission_file"), D "vizwiz/official/answers_upload.json");
    }
    cJSON_Delete(s);
    // Questions without an answer (the official converter asserts): uploaded as "", counted.
    s = score("vizwiz", D "vizwiz", D "vizwiz/answers/missing.jsonl", NULL, out);
    CHECK(s != NULL, "vizwiz missing: %s", llava_errmsg());
    if (s) {
        check_counts(s, cJSON_GetObjectItemCaseSensitive(g, "missing"), "missing");
        cJSON *up = eval_read_json(str(s, "submission_file"));
        int n = 0, empty = 0;
        for (const cJSON *a = up ? up->child : NULL; a; a = a->next, n++) {
            const char *img = str(a, "image");
            int gone = !strcmp(img, "VizWiz_test_00000003.jpg") || !strcmp(img, "VizWiz_test_00000017.jpg") ||
                       !strcmp(img, "VizWiz_test_00000030.jpg");
            if (gone) empty += str(a, "answer")[0] == 0;
        }
        CHECK(n == 40 && empty == 3, "%d uploaded, %d of the 3 missing as \"\"", n, empty);
        cJSON_Delete(up);
    }
    cJSON_Delete(s);
    free(out);
    cJSON_Delete(g);
}

static void check_val_scores(const cJSON *s, const cJSON *gold, const char *what) {
    check_number(s, gold, "accuracy", what);
    check_counts(s, gold, what);
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(s, "perAnswerType");
    const cJSON *gper = cJSON_GetObjectItemCaseSensitive(gold, "perAnswerType");
    CHECK(cJSON_GetArraySize(per) == cJSON_GetArraySize(gper) && cJSON_GetArraySize(gper) > 0, "%s: answer types",
          what);
    for (const cJSON *t = gper ? gper->child : NULL; t; t = t->next) check_number(per, gper, t->string, t->string);
}

// vizwiz_val: the question file prepare() writes from val.json, and the accuracy against vqaEval.py's.
static void test_vizwiz_val(void) {
    cJSON *g = load(D "vizwiz/golden.json");
    const eval_bench *val = eval_find("vizwiz_val");
    CHECK(val != NULL, "vizwiz_val is registered");
    if (!val) return;
    eval_inputs in = {.data = D "vizwiz"};
    char *prepared = path_join(tmp, "vizwiz_val.jsonl"), *prepared30 = path_join(tmp, "vizwiz_val30.jsonl");
    CHECK(val->prepare(&in, prepared, 0) == 0, "prepare: %s", llava_errmsg());
    check_same_file(prepared, D "vizwiz/llava_val.jsonl");
    CHECK(val->prepare(&in, prepared30, 30) == 0, "prepare --limit 30: %s", llava_errmsg());
    char *want30 = first_lines(D "vizwiz/llava_val.jsonl", 30, "vizwiz_val_first30_expected.jsonl");
    check_same_file(prepared30, want30);
    // The prompt: the question and the suffix of LLaVA's VizWiz files; the id and image the file name.
    cJSON *qs = eval_read_jsonl(prepared), *test = eval_read_jsonl(D "vizwiz/llava_test.jsonl");
    CHECK(cJSON_GetArraySize(qs) == 60, "%d val questions", cJSON_GetArraySize(qs));
    if (qs && test) {
        const cJSON *q0 = qs->child;
        CHECK_EQ_STR(str(q0, "question_id"), "VizWiz_val_00000000.jpg");
        CHECK_EQ_STR(str(q0, "image"), "VizWiz_val_00000000.jpg");
        const char *t = str(test->child, "text"), *suffix = strchr(t, '\n');
        CHECK(suffix && strlen(str(q0, "text")) > strlen(suffix) &&
                  !strcmp(str(q0, "text") + strlen(str(q0, "text")) - strlen(suffix), suffix),
              "the val prompt ends as llava_test.jsonl's: %s", str(q0, "text"));
    }
    cJSON_Delete(qs);
    cJSON_Delete(test);
    const char *runs[][3] = {{"val_complete", D "vizwiz/answers/val_complete.jsonl", NULL},
                             {"val_missing", D "vizwiz/answers/val_missing.jsonl", NULL},
                             {"val_first30", D "vizwiz/answers/val_complete.jsonl", "30"}};
    for (int i = 0; i < 3; i++) {
        cJSON *s = score("vizwiz_val", D "vizwiz", runs[i][1], runs[i][2] ? prepared30 : NULL, NULL);
        CHECK(s != NULL, "vizwiz_val %s: %s", runs[i][0], llava_errmsg());
        if (s) check_val_scores(s, cJSON_GetObjectItemCaseSensitive(g, runs[i][0]), runs[i][0]);
        cJSON_Delete(s);
    }
    // The whole question file given: the numbers of val.json whole.
    cJSON *s = score("vizwiz_val", D "vizwiz", D "vizwiz/answers/val_missing.jsonl", prepared, NULL);
    CHECK(s != NULL, "vizwiz_val with --questions: %s", llava_errmsg());
    if (s) check_val_scores(s, cJSON_GetObjectItemCaseSensitive(g, "val_missing"), "val_missing --questions");
    CHECK(num(s, "missing") == 8, "8 questions unanswered: %g", num(s, "missing"));
    cJSON_Delete(s);
    // A question file naming a question val.json does not have.
    s = score("vizwiz_val", D "vizwiz", D "vizwiz/answers/val_complete.jsonl", D "vizwiz/llava_test.jsonl", NULL);
    CHECK(s == NULL, "test questions are not val questions");
    CHECK_ERR_HAS("llava_test.jsonl line 1: question 0 is not in");
    cJSON_Delete(s);
    char *empty = path_join(tmp, "vizwiz_empty");
    mkdir_p(empty);
    s = score("vizwiz_val", empty, D "vizwiz/answers/val_complete.jsonl", NULL, NULL);
    CHECK(s == NULL, "no val.json");
    CHECK_ERR_HAS("val.json is missing");
    CHECK_ERR_HAS("VizWiz_final/vqa_data/Annotations.zip");
    cJSON_Delete(s);
    eval_inputs ein = {.data = empty};
    CHECK(val->prepare(&ein, prepared, 0) != 0, "prepare without val.json");
    CHECK_ERR_HAS("val.json is missing");
    free(empty);
    free(want30);
    free(prepared);
    free(prepared30);
    cJSON_Delete(g);
}

int main(void) {
    tmp = check_tmpdir();
    test_registry();
    test_normalisation();
    test_textvqa();
    test_gqa();
    test_vqav2();
    test_vizwiz();
    test_vizwiz_val();
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
