// LLaVA-1.5's benchmark suite: each benchmark's files (LLaVA's playground/data/eval/<bench> layout,
// docs/Evaluation.md), the question file the model answers, and the scorer, re-stated from the
// official scripts and checked against them (tools/reference/eval/).
//
// The room sits above data/ and below train/ (the trainer runs a benchmark subset while training)
// and knows nothing of models: `llava eval` (app/cmd_eval.c) answers the questions with the
// generation engine and calls a benchmark's scorer on the answers file, which may as well come
// from PyTorch LLaVA (`llava eval score`).
#pragma once

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>

// What a scorer reads.
typedef struct {
    const char *data;       // the benchmark's folder (playground/data/eval/<bench>)
    const char *answers;    // answers in LLaVA's format: JSON Lines with question_id and text
    const char *questions;  // the question file answered (NULL: the benchmark's own, under data)
    const char *out;        // a folder for the files a scorer writes beside its scores (submission
                            // files, converted answers), or NULL for none
    // A judge for the judged benchmarks (never called unless given): an OpenAI-compatible base URL
    // (".../v1"; POST <url>/chat/completions), its model, its key (NULL: none), and the rule file
    // of LLaVA's eval_gpt_review_bench.py (llava/eval/table/rule.json in LLaVA's repository).
    const char *judge_url, *judge_model, *judge_key, *judge_rule;
} eval_inputs;

typedef enum {
    EVAL_EXACT,        // scored offline exactly as the official script scores it
    EVAL_APPROXIMATE,  // scored offline, but the official number comes from a server (MMBench)
    EVAL_SUBMISSION,   // only the file an evaluation server takes (VQAv2 test-dev, VizWiz test)
    EVAL_JUDGED,       // answers only; scored by a judge model the user names (LLaVA-Bench, MM-Vet)
} eval_kind;

typedef struct eval_bench {
    const char *name;           // as `--benchmark` takes it: "pope"
    const char *title;          // as LLaVA's paper names it: "POPE"
    const char *question_file;  // under data: the question file LLaVA's script passes
    const char *image_folder;   // under data: the image folder LLaVA's script passes
    int max_new_tokens;         // 128 (model_vqa_loader.py), 1024 where LLaVA uses model_vqa.py
    eval_kind kind;
    const char *primary;  // the key of the number LLaVA reports, in the scores object
    // published_*: in the primary score's unit, the official script's (accuracies in percent: 58.2)
    double published_7b;  // LLaVA-1.5-7B's and -13B's published numbers (NAN: none)
    double published_13b;
    const char *download;  // what docs/Evaluation.md says to download, for error messages
    // Writes the question file the model answers (LLaVA's question format: question_id, image,
    // text per line, with the prompt exactly as LLaVA's eval script builds it) to `path`, the first
    // `limit` questions when limit > 0. NULL: the question file is used as it is.
    int (*prepare)(const eval_inputs *in, const char *path, long limit);
    // The scores as one JSON object (keys as the official scripts name the metrics), or NULL with
    // llava_fail's message naming the file, line and reason. Questions without an answer count as
    // wrong and are reported ("missing"), never dropped from the denominator.
    cJSON *(*score)(const eval_inputs *in);
} eval_bench;

// The benchmarks, in the order of LLaVA-1.5's table.
const eval_bench *const *eval_benches(int *n);
const eval_bench *eval_find(const char *name);  // NULL when there is none of that name

// --- helpers the scorers share (eval/common.c)

// A JSON Lines file in order, each object with the line it came from: obj[i] (an item of arr) came
// from line line[i]. Blank lines are skipped; a line that is not a JSON object fails (-1) naming the
// file and the line.
typedef struct {
    cJSON *arr;
    cJSON **obj;
    int *line;
    int n;
} eval_lines;
int eval_read_lines(const char *path, eval_lines *out);
void eval_lines_free(eval_lines *l);  // NULL-safe
// The same file as an array of objects only. NULL with an error naming the file and the line.
cJSON *eval_read_jsonl(const char *path);
// A JSON file. NULL with an error naming the file.
cJSON *eval_read_json(const char *path);
// The path of a benchmark file: `name` under in->data. Fails naming the path and what to download
// (b->download) when it does not exist.
char *eval_data_file(const eval_bench *b, const eval_inputs *in, const char *name);
// The answers by question_id: an object whose keys are the question_ids as JSON prints them
// (numbers as numbers, strings quoted) and whose values are the answer lines. NULL with an error
// naming the line when a line is not JSON or has no question_id or no text.
cJSON *eval_answers_by_id(const char *path);
// The key eval_answers_by_id uses for a question_id value.
char *eval_qid_key(const cJSON *qid);
