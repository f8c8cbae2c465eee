// What the VQA-family scorers (TextVQA, VQAv2, VizWiz, GQA) share beyond eval/common.c: a string
// hash map, answers files read with their line numbers, and the submission files written as
// Python's json.dump writes them.
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>

#include "data/strbuf.h"

// String keys to pointers (the keys are copied). put replaces: Python's dict built in file order,
// where the last of a repeated key wins.
typedef struct {
    char **keys;
    void **vals;
    size_t cap, n;
} strmap;
void strmap_put(strmap *m, const char *key, void *val);
void *strmap_get(const strmap *m, const char *key);
void strmap_free(strmap *m);

// A JSON Lines file, each object with the line it came from. Blank lines are skipped; a line that
// is not a JSON object fails naming the file and the line.
typedef struct {
    cJSON *arr;
    cJSON **obj;
    int *line;
    int n;
} jsonl_lines;
int jsonl_read_lines(const char *path, jsonl_lines *out);
void jsonl_lines_free(jsonl_lines *l);

// An answers file in LLaVA's format: every line has question_id (a number or a string) and text (a
// string), and prompt (a string) when need_prompt. Fails naming the file, the line and the field.
int vqa_read_answers(const char *path, jsonl_lines *out, int need_prompt);
// The last answer line for each question_id (the key eval_qid_key makes), as LLaVA's converters'
// {x['question_id']: x['text'] for x in results} keeps it.
void vqa_answers_last(const jsonl_lines *a, strmap *by_id);

// A question file's question_ids (keys as eval_qid_key makes them), to restrict a scorer to the
// questions asked. Fails naming the file and line of a question without question_id.
int vqa_question_ids(const char *path, strmap *ids);

// Writes a file whole (creating its folder). -1 with an error naming it.
int vqa_write(const char *path, const strbuf *b);
