// TextVQA val as LLaVA-1.5 scores it: llava/eval/eval_textvqa.py pairs each answer with its
// annotation by (image id, question) — LLaVA's question_id is the image id, and the question is cut
// from the prompt by prompt_processor — and m4c_evaluator.py's TextVQAAccuracyEvaluator scores it:
// the answer and the ten annotators' answers through EvalAIAnswerProcessor (eval/vqa_norm.c), and
// the answer's soft accuracy min(1, matches/3) averaged over the ten leave-one-out subsets.
//
// The official script averages over the answers it is given; here the questions asked (the question
// file) are the denominator and a question without an answer scores 0 ("missing"). With every
// question answered once, the two are the same number.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "pyunicode.h"
#include "vqa_norm.h"
#include "vqa_util.h"

extern const eval_bench eval_bench_textvqa;

#define TEXTVQA_ANNOTATIONS "TextVQA_0.5.1_val.json"

// prompt_processor(prompt): the question as eval_textvqa.py cuts it from a prompt, lowered; NULL
// where the official asserts (or fails to match its "OCR tokens:" form).
static char *textvqa_question(const char *prompt) {
    char *q = NULL;
    int lines = 1;
    for (const char *p = prompt; *p; p++) lines += *p == '\n';
    if (strncmp(prompt, "OCR tokens: ", 12) == 0) {
        // r"Question: (.*?) Short answer:" with DOTALL: the first "Question: ", then the first
        // " Short answer:" after it.
        const char *a = strstr(prompt, "Question: ");
        const char *b = a ? strstr(a + 10, " Short answer:") : NULL;
        if (!b) return NULL;
        q = xmalloc((size_t)(b - a - 10) + 1);
        memcpy(q, a + 10, (size_t)(b - a - 10));
        q[b - a - 10] = 0;
    } else if (strstr(prompt, "Reference OCR token: ") && lines == 3) {
        const char *a = prompt;
        if (strncmp(prompt, "Reference OCR token:", 20) == 0) a = strchr(prompt, '\n') + 1;
        const char *b = strchr(a, '\n');
        q = xmalloc((size_t)(b - a) + 1);
        memcpy(q, a, (size_t)(b - a));
        q[b - a] = 0;
    } else if (lines == 2) {
        const char *b = strchr(prompt, '\n');
        q = xmalloc((size_t)(b - prompt) + 1);
        memcpy(q, prompt, (size_t)(b - prompt));
        q[b - prompt] = 0;
    } else {
        return NULL;
    }
    char *low = pyu_lower3_utf8(q);
    free(q);
    return low;
}

// The key eval_textvqa.py's dict uses: (image id, lowered question). The id as JSON prints it, then
// a unit separator (which a printed id never holds raw).
static char *textvqa_key(const cJSON *id, const char *question_lower) {
    char *k = eval_qid_key(id);
    char *out = xasprintf("%s\x1f%s", k, question_lower);
    free(k);
    return out;
}

// TextVQAAccuracyEvaluator: the score of one answer against the annotators' ten.
static double textvqa_soft_score(const char *pred, char *const *gt, int n) {
    int total = 0;
    for (int i = 0; i < n; i++) total += strcmp(gt[i], pred) == 0;
    if (total == 0) return 0.0;  // unique_answer_scores.get(pred, 0.0)
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        int matches = total - (strcmp(gt[i], pred) == 0);
        double acc = (double)matches / 3;
        sum += acc < 1 ? acc : 1;
    }
    return sum / n;
}

typedef struct {
    int *idx;  // answer lines with this key, in file order
    int n, next;
} textvqa_bucket;

static cJSON *textvqa_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_textvqa;
    char *qpath = in->questions ? xstrdup(in->questions) : eval_data_file(b, in, b->question_file);
    char *apath = qpath ? eval_data_file(b, in, TEXTVQA_ANNOTATIONS) : NULL;
    cJSON *ann = apath ? eval_read_json(apath) : NULL, *out = NULL;
    eval_lines qs = {0}, as = {0};
    strmap by_key = {0}, buckets = {0};
    double *scores = NULL;
    int ok = ann && eval_read_lines(qpath, &qs) == 0 && vqa_read_answers(in->answers, &as, 1) == 0;
    const cJSON *data = ok ? cJSON_GetObjectItemCaseSensitive(ann, "data") : NULL;
    if (ok && !cJSON_IsArray(data)) ok = 0, llava_fail("%s: no \"data\" array", apath);
    // Annotations by (image_id, question.lower()): a repeated key keeps the last, as the dict does.
    int na = 0;
    for (const cJSON *a = ok ? data->child : NULL; a; a = a->next, na++) {
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(a, "image_id");
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(a, "question");
        const cJSON *gts = cJSON_GetObjectItemCaseSensitive(a, "answers");
        int strings = cJSON_IsArray(gts);
        for (const cJSON *g = strings ? gts->child : NULL; g; g = g->next) strings &= cJSON_IsString(g);
        if (!img || !cJSON_IsString(q) || !strings || cJSON_GetArraySize(gts) != 10) {
            ok = 0;
            llava_fail("%s: data[%d] lacks image_id, question or ten answers (strings)", apath, na);
            break;
        }
        char *low = pyu_lower3_utf8(q->valuestring), *k = textvqa_key(img, low);
        strmap_put(&by_key, k, (void *)a);
        free(low);
        free(k);
    }
    // Answers by the same key, each key's answers in file order.
    for (int i = 0; ok && i < as.n; i++) {
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(as.obj[i], "prompt");
        char *q = textvqa_question(prompt->valuestring);
        if (!q) {
            ok = 0;
            llava_fail("%s line %d: the prompt has none of the forms eval_textvqa.py's prompt_processor takes",
                       in->answers, as.line[i]);
            break;
        }
        char *k = textvqa_key(cJSON_GetObjectItemCaseSensitive(as.obj[i], "question_id"), q);
        textvqa_bucket *bk = strmap_get(&buckets, k);
        if (!bk) strmap_put(&buckets, k, bk = xcalloc(1, sizeof *bk));
        bk->idx = xrealloc(bk->idx, (size_t)(bk->n + 1) * sizeof *bk->idx);
        bk->idx[bk->n++] = i;
        free(k);
        free(q);
    }
    if (ok && qs.n == 0) ok = 0, llava_fail("%s: no questions", qpath);
    // Each question takes the next answer of its key; scores are summed in the answers' order, as
    // the official sums its list.
    scores = ok ? xcalloc((size_t)as.n, sizeof *scores) : NULL;
    int missing = 0;
    for (int i = 0; ok && i < qs.n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "text");
        char *q = cJSON_IsString(text) ? textvqa_question(text->valuestring) : NULL;
        if (!qid || !q) {
            ok = 0;
            llava_fail("%s line %d: %s", qpath, qs.line[i],
                       !qid ? "no question_id" : "the text has none of the forms prompt_processor takes");
            free(q);
            break;
        }
        char *k = textvqa_key(qid, q);
        const cJSON *a = strmap_get(&by_key, k);
        textvqa_bucket *bk = strmap_get(&buckets, k);
        free(k);
        if (!a) {
            ok = 0;
            llava_fail("%s line %d: no annotation in %s for image %s, question \"%s\"", qpath, qs.line[i], apath,
                       cJSON_IsString(qid) ? qid->valuestring : "(a number)", q);
            free(q);
            break;
        }
        free(q);
        if (!bk || bk->next == bk->n) {
            missing++;
            continue;
        }
        int ai = bk->idx[bk->next++];
        const cJSON *gts = cJSON_GetObjectItemCaseSensitive(a, "answers");
        char *gt[10];
        int n = 0;
        for (const cJSON *g = gts->child; g; g = g->next) gt[n++] = evalai_answer(g->valuestring);
        char *pred = evalai_answer(cJSON_GetObjectItemCaseSensitive(as.obj[ai], "text")->valuestring);
        scores[ai] = textvqa_soft_score(pred, gt, n);
        free(pred);
        for (int j = 0; j < n; j++) free(gt[j]);
    }
    if (ok) {
        double sum = 0.0;
        for (int i = 0; i < as.n; i++) sum += scores[i];
        out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "accuracy", 100. * (sum / qs.n));  // eval_textvqa.py prints this, "%.2f"
        cJSON_AddNumberToObject(out, "questions", qs.n);
        cJSON_AddNumberToObject(out, "missing", missing);
    }
    for (size_t i = 0; i < buckets.cap; i++)
        if (buckets.keys && buckets.keys[i]) {
            textvqa_bucket *bk = buckets.vals[i];
            free(bk->idx);
            free(bk);
        }
    strmap_free(&buckets);
    strmap_free(&by_key);
    free(scores);
    eval_lines_free(&qs);
    eval_lines_free(&as);
    cJSON_Delete(ann);
    free(apath);
    free(qpath);
    return out;
}

const eval_bench eval_bench_textvqa = {
    .name = "textvqa",
    .title = "TextVQA",
    .question_file = "llava_textvqa_val_v051_ocr.jsonl",
    .image_folder = "train_images",
    .max_new_tokens = 128,
    .kind = EVAL_EXACT,
    .primary = "accuracy",
    .published_7b = 58.2,
    .published_13b = 61.3,
    .download =
        "TextVQA_0.5.1_val.json (https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_val.json) and the "
        "images (https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip) extracted to "
        "./playground/data/eval/textvqa; llava_textvqa_val_v051_ocr.jsonl comes with LLaVA's eval.zip",
    .prepare = NULL,
    .score = textvqa_score,
};
