// What the scorers of POPE, ScienceQA, MME, SEED-Bench and MMBench share (eval/score_*.c) beyond
// eval/common.c (JSON Lines with their line numbers, eval/eval.h; the string map, eval/strmap.h):
// answers files checked, Python's dictionary semantics for question ids, and the few Python str
// operations their official scripts apply.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "data/strbuf.h"
#include "eval.h"
#include "strmap.h"

// An answers file (LLaVA's format): also every line with a question_id (number or string) and a
// string "text"; -1 naming the file, the line and what is wrong.
int sc_read_answers(const char *path, eval_lines *out);

// Python's dict key of a JSON question_id: a number by its value (1 and 1.0 are one key), a string
// by its text, never equal to a number. NULL for anything else. Caller frees.
char *sc_key(const cJSON *qid);
// The key of the string s as a Python str key, and of the integer v as a Python int key.
char *sc_key_str(const char *s);
char *sc_key_int(long long v);

// The question file a scorer reads: in->questions, else `name` under in->data (NULL with an error
// naming it and what to download when it is missing).
char *sc_question_path(const eval_bench *b, const eval_inputs *in, const char *name);

// UTF-8: the code point at *p (a byte that is not UTF-8 reads as U+FFFD) and the bytes it took.
uint32_t sc_utf8(const char *p, int *len);
// Python 3's str.isspace() (what str.split() and str.strip() without arguments split and strip on).
int sc_py_space(uint32_t c);

// Writes `len` bytes to `name` under in->out (made if missing); 0 when in->out is NULL.
int sc_write_out(const eval_inputs *in, const char *name, const char *data, size_t len);

// A percentage as the official scripts compute it: (num / den) * 100, in that order; 0 for den 0.
double sc_pct(long num, long den);

// The matchers, for tests: VLMEvalKit's can_infer on an answer and the options A-D (NULL: none) ->
// 'A'..'D', 'Z' or 0 (eval/score_mmbench.c); MME calculation.py's parse_pred_ans on an answer ->
// 1 yes, 0 no, -1 other (eval/score_mme.c).
char eval_mmbench_can_infer(const char *answer, const char *const choice[4]);
int eval_mme_parse(const char *answer);
