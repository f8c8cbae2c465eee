// The judged benchmarks: LLaVA-Bench in the Wild and MM-Vet. Their answers are long and free; LLaVA
// scores the first with GPT-4 as a judge (llava/eval/eval_gpt_review_bench.py, then
// summarize_gpt_review.py) and hands the second to MM-Vet's own GPT-4 grader. Here:
//   - llavabench: the answers, and when the user names a judge (--judge-url, --judge-model,
//     --judge-rule: LLaVA's llava/eval/table/rule.json), one review per question asked as
//     eval_gpt_review_bench.py asks it (context captions, the question, GPT-4's reference answer as
//     assistant 1, ours as assistant 2, the rule's prompt), kept in reviews.jsonl (a rerun asks only
//     what is missing), summarised as summarize_gpt_review.py does: per category and over all, the
//     mean of the two scores (rounded to 3 places) and ours relative to the reference, in percent.
//     Where LLaVA pairs questions and answers by line, this pairs them by question_id (the same on
//     complete files; a missing answer is counted, not shifted onto the next question).
//   - mmvet: the answers, and results.json as scripts/convert_mmvet_for_eval.py writes it ({"v1_<id>":
//     answer}, json.dump with indent 2) for MM-Vet's grader. Not scored here.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "data/strbuf.h"
#include "eval.h"
#include "judge.h"
#include "pyunicode.h"

extern const eval_bench eval_bench_llavabench, eval_bench_mmvet;

// The system message eval_gpt_review_bench.py sends with every review request (the protocol's).
static const char *JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer.";

// Python's round(x, 1) and round(x, 3): the exact binary value rounded half to even, as printf does.
static double py_round(double x, int places) {
    char s[64];
    snprintf(s, sizeof s, "%.*f", places, x);
    return strtod(s, NULL);
}

static cJSON *read_questions(const eval_bench *b, const eval_inputs *in) {
    char *qp = in->questions ? xstrdup(in->questions) : eval_data_file(b, in, b->question_file);
    cJSON *qs = qp ? eval_read_jsonl(qp) : NULL;
    free(qp);
    return qs;
}

// ---------------------------------------------------------------------------------------------
// LLaVA-Bench in the Wild

typedef struct {
    char name[96];
    double sum[2];
    int n;
} cat_sum;

static void add_score(cat_sum *cats, int *nc, const char *name, const double s[2]) {
    int c = 0;
    while (c < *nc && strcmp(cats[c].name, name) != 0) c++;
    if (c == *nc) {
        snprintf(cats[c].name, sizeof cats[c].name, "%s", name);
        cats[c].sum[0] = cats[c].sum[1] = 0;
        cats[c].n = 0;
        (*nc)++;
    }
    cats[c].sum[0] += s[0];
    cats[c].sum[1] += s[1];
    cats[c].n++;
}

static cJSON *llavabench_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_llavabench;
    cJSON *qs = read_questions(b, in), *ans = qs ? eval_answers_by_id(in->answers) : NULL;
    if (!ans) {
        cJSON_Delete(qs);
        return NULL;
    }
    int nq = cJSON_GetArraySize(qs), missing = 0;
    for (const cJSON *q = qs->child; q; q = q->next) {
        char *key = eval_qid_key(cJSON_GetObjectItemCaseSensitive(q, "question_id"));
        missing += !cJSON_GetObjectItemCaseSensitive(ans, key);
        free(key);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "questions", nq);
    cJSON_AddNumberToObject(out, "missing", missing);
    if (!in->judge_url) {
        cJSON_AddFalseToObject(out, "judged");
        cJSON_AddStringToObject(out, "note",
                                "answers only: scoring needs a judge (--judge-url, --judge-model, --judge-rule)");
        cJSON_Delete(qs);
        cJSON_Delete(ans);
        return out;
    }
    cJSON *ctx = NULL, *ref = NULL, *rule = NULL, *done = NULL;
    char *cp = eval_data_file(b, in, "context.jsonl"), *rp = cp ? eval_data_file(b, in, "answers_gpt4.jsonl") : NULL;
    int rc = cp && rp ? 0 : -1;
    if (rc == 0 && !in->judge_model) rc = llava_fail("llavabench: --judge-url needs --judge-model");
    if (rc == 0 && !in->judge_rule)
        rc = llava_fail("llavabench: --judge-url needs --judge-rule (LLaVA's llava/eval/table/rule.json)");
    if (rc == 0 && !(ctx = eval_read_jsonl(cp))) rc = -1;
    if (rc == 0 && !(ref = eval_answers_by_id(rp))) rc = -1;
    if (rc == 0 && !(rule = eval_read_json(in->judge_rule))) rc = -1;
    // The reviews so far (a rerun asks only for the questions after them).
    char *review_path = path_join(in->out ? in->out : ".", "reviews.jsonl");
    if (rc == 0 && file_exists(review_path) && !(done = eval_read_jsonl(review_path))) rc = -1;
    int n_done = done ? cJSON_GetArraySize(done) : 0;
    FILE *rf = rc == 0 ? fopen(review_path, "a") : NULL;
    if (rc == 0 && !rf) rc = llava_fail("llavabench: cannot write %s", review_path);
    cat_sum cats[64];
    int nc = 0, idx = 0;
    for (const cJSON *q = qs->child; q && rc == 0; q = q->next, idx++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "question_id");
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(q, "image"),
                    *qt = cJSON_GetObjectItemCaseSensitive(q, "text");
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(q, "category");
        if (!cJSON_IsString(img) || !cJSON_IsString(qt) || !cJSON_IsString(qc)) {
            rc = llava_fail("llavabench: question %d lacks image, text or category", idx + 1);
            break;
        }
        char category[96];
        snprintf(category, sizeof category, "llava_bench_%s", qc->valuestring);
        double sc[2];
        if (idx < n_done) {  // reviewed by an earlier run
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(done, idx), "tuple");
            sc[0] = cJSON_GetArrayItem(t, 0) ? cJSON_GetArrayItem(t, 0)->valuedouble : -1;
            sc[1] = cJSON_GetArrayItem(t, 1) ? cJSON_GetArrayItem(t, 1)->valuedouble : -1;
            add_score(cats, &nc, category, sc);
            add_score(cats, &nc, "all", sc);
            continue;
        }
        char *key = eval_qid_key(qid);
        const cJSON *mine = cJSON_GetObjectItemCaseSensitive(ans, key),
                    *theirs = cJSON_GetObjectItemCaseSensitive(ref, key);
        free(key);
        const cJSON *c = NULL;  // the last entry for the image, as the script's dict keeps it
        for (const cJSON *e = ctx->child; e; e = e->next) {
            const cJSON *ci = cJSON_GetObjectItemCaseSensitive(e, "image");
            if (cJSON_IsString(ci) && strcmp(ci->valuestring, img->valuestring) == 0) c = e;
        }
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(rule, category);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(r, "role"),
                    *prompt = cJSON_GetObjectItemCaseSensitive(r, "prompt");
        if (!theirs || !c || !cJSON_IsString(role) || !cJSON_IsString(prompt)) {
            rc = llava_fail("llavabench: question %d: %s", idx + 1,
                            !theirs ? "no reference answer in answers_gpt4.jsonl"
                            : !c    ? "its image has no entry in context.jsonl"
                                    : "the rule file has no role and prompt for its category");
            break;
        }
        // The context: the caption, or the captions joined by newlines.
        strbuf cap = {0};
        const cJSON *capj = cJSON_GetObjectItemCaseSensitive(c, "caption");
        if (cJSON_IsArray(capj)) {
            int k = 0;
            for (const cJSON *e = capj->child; e; e = e->next, k++) {
                if (k) sb_puts(&cap, "\n");
                if (cJSON_IsString(e)) sb_puts(&cap, e->valuestring);
            }
        } else if (cJSON_IsString(capj)) {
            sb_puts(&cap, capj->valuestring);
        }
        const char *t1 = cJSON_GetObjectItemCaseSensitive(theirs, "text")->valuestring;
        const char *t2 = mine ? cJSON_GetObjectItemCaseSensitive(mine, "text")->valuestring : "";
        char *content = xasprintf(
            "[Context]\n%s\n\n[Question]\n%s\n\n[%s 1]\n%s\n\n[End of %s 1]\n\n[%s 2]\n%s\n\n[End of %s "
            "2]\n\n[System]\n%s\n\n",
            cap.p ? cap.p : "", qt->valuestring, role->valuestring, t1, role->valuestring, role->valuestring, t2,
            role->valuestring, prompt->valuestring);
        free(cap.p);
        char *review = NULL;
        rc = eval_judge_ask(in, JUDGE_SYSTEM, content, 0.2, 1024, 5, &review);
        free(content);
        if (rc != 0) break;
        int parsed = eval_judge_parse_score(review, sc);
        // The review line, as eval_gpt_review_bench.py writes it (json.dumps).
        strbuf line = {0};
        char num[64];
        snprintf(num, sizeof num, "{\"id\": %d, \"question_id\": ", idx + 1);
        sb_puts(&line, num);
        pyu_json_value(&line, qid);
        const cJSON *a1 = cJSON_GetObjectItemCaseSensitive(theirs, "answer_id");
        const cJSON *a2 = mine ? cJSON_GetObjectItemCaseSensitive(mine, "answer_id") : NULL;
        sb_puts(&line, ", \"answer1_id\": ");
        pyu_json_value(&line, a1 ? a1 : qid);
        sb_puts(&line, ", \"answer2_id\": ");
        pyu_json_value(&line, a2);  // null: no answer (the script would stop there)
        sb_puts(&line, ", \"category\": ");
        pyu_json_string(&line, category);
        sb_puts(&line, ", \"content\": ");
        pyu_json_string(&line, review);
        sb_puts(&line, ", \"tuple\": [");
        if (parsed) {  // parse_score's floats; its failure is [-1, -1], ints
            pyu_json_float(&line, sc[0]);
            sb_puts(&line, ", ");
            pyu_json_float(&line, sc[1]);
        } else sb_puts(&line, "-1, -1");
        sb_puts(&line, "]}\n");
        fputs(line.p, rf);
        fflush(rf);
        free(line.p);
        free(review);
        add_score(cats, &nc, category, sc);
        add_score(cats, &nc, "all", sc);
    }
    if (rf) fclose(rf);
    if (rc == 0) {
        // summarize_gpt_review.py: the mean of each score rounded to 3 places; ours relative to the
        // reference's, and each times 10, rounded to 1 place.
        cJSON *per = cJSON_AddObjectToObject(out, "per_category");
        for (int k = 0; k < nc; k++) {
            double m0 = py_round(cats[k].sum[0] / cats[k].n, 3), m1 = py_round(cats[k].sum[1] / cats[k].n, 3);
            cJSON *o = cJSON_AddObjectToObject(strcmp(cats[k].name, "all") == 0 ? out : per, cats[k].name);
            cJSON_AddNumberToObject(o, "relative", py_round(m1 / m0 * 100, 1));
            cJSON_AddNumberToObject(o, "reference", py_round(m0 * 10, 1));
            cJSON_AddNumberToObject(o, "model", py_round(m1 * 10, 1));
            cJSON_AddNumberToObject(o, "questions", cats[k].n);
        }
        cJSON_AddTrueToObject(out, "judged");
        cJSON_AddStringToObject(out, "judge_model", in->judge_model);
        cJSON_AddStringToObject(out, "reviews_file", review_path);
    }
    free(review_path);
    free(cp);
    free(rp);
    cJSON_Delete(ctx);
    cJSON_Delete(ref);
    cJSON_Delete(rule);
    cJSON_Delete(done);
    cJSON_Delete(qs);
    cJSON_Delete(ans);
    if (rc != 0) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

const eval_bench eval_bench_llavabench = {
    .name = "llavabench",
    .title = "LLaVA-Bench in the Wild",
    .question_file = "questions.jsonl",
    .image_folder = "images",
    .max_new_tokens = 1024,
    .kind = EVAL_JUDGED,
    .primary = "all.relative",
    .published_7b = 65.4,
    .published_13b = 72.5,
    .download =
        "extract liuhaotian/llava-bench-in-the-wild (Hugging Face datasets) to "
        "playground/data/eval/llava-bench-in-the-wild",
    .prepare = NULL,
    .score = llavabench_score,
};

// ---------------------------------------------------------------------------------------------
// MM-Vet

static cJSON *mmvet_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_mmvet;
    cJSON *qs = read_questions(b, in), *arr = qs ? eval_read_jsonl(in->answers) : NULL;
    if (!arr) {
        cJSON_Delete(qs);
        return NULL;
    }
    // convert_mmvet_for_eval.py: a dict in answer-file order (a repeated id keeps its first place
    // and its last text), dumped with indent 2.
    int n = cJSON_GetArraySize(arr), i = 0;
    char **keys = xcalloc((size_t)(n ? n : 1), sizeof(char *));
    const char **texts = xcalloc((size_t)(n ? n : 1), sizeof(char *));
    int nk = 0, rc = 0;
    for (const cJSON *a = arr->child; a; a = a->next, i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(a, "question_id"),
                    *t = cJSON_GetObjectItemCaseSensitive(a, "text");
        if (!(cJSON_IsNumber(qid) || cJSON_IsString(qid)) || !cJSON_IsString(t)) {
            rc = llava_fail("%s: answer %d: no question_id or no text", in->answers, i + 1);
            break;
        }
        char *k = cJSON_IsString(qid) ? xasprintf("v1_%s", qid->valuestring) : xasprintf("v1_%.0f", qid->valuedouble);
        int j = 0;
        while (j < nk && strcmp(keys[j], k) != 0) j++;
        if (j == nk) keys[nk++] = k;
        else free(k);
        texts[j] = t->valuestring;
    }
    cJSON *out = NULL;
    if (rc == 0) {
        strbuf f = {0};
        if (nk == 0) sb_puts(&f, "{}");
        else {
            sb_puts(&f, "{\n");
            for (int j = 0; j < nk; j++) {
                sb_puts(&f, "  ");
                pyu_json_string(&f, keys[j]);
                sb_puts(&f, ": ");
                pyu_json_string(&f, texts[j]);
                sb_puts(&f, j + 1 < nk ? ",\n" : "\n");
            }
            sb_puts(&f, "}");
        }
        char *rp = path_join(in->out ? in->out : ".", "results.json");
        rc = write_file_atomic(rp, f.p, f.n);
        free(f.p);
        int missing = 0;
        for (const cJSON *q = qs->child; q; q = q->next) {
            const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "question_id");
            char *k =
                cJSON_IsString(qid) ? xasprintf("v1_%s", qid->valuestring) : xasprintf("v1_%.0f", qid->valuedouble);
            int j = 0;
            while (j < nk && strcmp(keys[j], k) != 0) j++;
            missing += j == nk;
            free(k);
        }
        if (rc == 0) {
            out = cJSON_CreateObject();
            cJSON_AddNumberToObject(out, "questions", cJSON_GetArraySize(qs));
            cJSON_AddNumberToObject(out, "missing", missing);
            cJSON_AddFalseToObject(out, "judged");
            cJSON_AddStringToObject(out, "submission_file", rp);
            cJSON_AddStringToObject(out, "note", "answers only: grade results.json with MM-Vet's own GPT-4 grader");
        }
        free(rp);
    }
    for (int j = 0; j < nk; j++) free(keys[j]);
    free(keys);
    free(texts);
    cJSON_Delete(arr);
    cJSON_Delete(qs);
    return out;
}

const eval_bench eval_bench_mmvet = {
    .name = "mmvet",
    .title = "MM-Vet",
    .question_file = "llava-mm-vet.jsonl",
    .image_folder = "images",
    .max_new_tokens = 1024,
    .kind = EVAL_JUDGED,
    .primary = NULL,
    .published_7b = 31.1,
    .published_13b = 36.1,
    .download =
        "extract mm-vet.zip (github.com/yuweihao/MM-Vet releases, v1) to playground/data/eval/mm-vet, with "
        "LLaVA's llava-mm-vet.jsonl from eval.zip",
    .prepare = NULL,
    .score = mmvet_score,
};
