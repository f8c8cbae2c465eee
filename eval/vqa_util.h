// What the VQA-family scorers (TextVQA, VQAv2, VizWiz, GQA) share beyond eval/common.c (JSON Lines
// with their line numbers, eval/eval.h; the string map, eval/strmap.h): answers files checked and
// keyed by question_id, the submission files of VQAv2 test-dev and VizWiz test, VQA accuracy summed
// per answer type (VQAv2 val, VizWiz val), and files written whole.
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>

#include "data/strbuf.h"
#include "eval.h"
#include "strmap.h"

// An answers file in LLaVA's format: every line has question_id (a number or a string) and text (a
// string), and prompt (a string) when need_prompt. Fails naming the file, the line and the field.
int vqa_read_answers(const char *path, eval_lines *out, int need_prompt);
// The last answer line for each question_id (the key eval_qid_key makes), as LLaVA's converters'
// {x['question_id']: x['text'] for x in results} keeps it.
void vqa_answers_last(const eval_lines *a, strmap *by_id);

// A question file's question_ids (keys as eval_qid_key makes them), to restrict a scorer to the
// questions asked. Fails naming the file and line of a question without question_id.
int vqa_question_ids(const char *path, strmap *ids);

// The submission scorers' (VQAv2 test-dev, VizWiz test) pieces. How many of `asked`'s question_ids
// have no answer in `last` (vqa_answers_last), or -1 naming `path` and the line of a question
// without question_id.
int vqa_count_missing(const eval_lines *asked, const char *path, const strmap *last);
// The file LLaVA's convert_*_for_submission.py writes, as json.dump writes it: for every line of
// `test` (read from test_path), in order, {"image": ..., "answer": ...} (by_image: VizWiz) or
// {"question_id": <int>, "answer": ...} (VQAv2), the answer through EvalAIAnswerProcessor or ""
// where there is none. -1 naming the line of a test question without them, or the file unwritten.
int vqa_write_submission(const char *path, const eval_lines *test, const char *test_path, const strmap *last,
                         int by_image);
// Their scores: questions, answered, missing, submission_questions, submission_file (upath or null)
// and submit_to.
cJSON *vqa_submission_scores(int questions, int missing, int submission_questions, const char *upath,
                             const char *submit_to);

// VQA accuracy as vqaEval.py's setAccuracy reports it: the sum over questions, and per answer_type
// (first-seen order). `type` strings are not copied: they must outlive the tally.
typedef struct {
    const char *type;
    double sum;
    int n;
} vqa_type_acc;
typedef struct {
    strmap idx;  // type -> index + 1 into t
    vqa_type_acc *t;
    int nt;
    double sum;
} vqa_acc_tally;
void vqa_tally_add(vqa_acc_tally *t, const char *type, double acc);
// {"accuracy": round(100 * sum / questions, 2), "perAnswerType": {type: the same per type},
// "questions", "missing"}, rounded as Python 2.7 rounds.
cJSON *vqa_tally_scores(const vqa_acc_tally *t, int questions, int missing);
void vqa_tally_free(vqa_acc_tally *t);

// Writes a file whole (creating its folder). -1 with an error naming it.
int vqa_write(const char *path, const strbuf *b);
