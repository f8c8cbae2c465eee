// A judge model behind an OpenAI-compatible chat-completions endpoint (eval/eval.h's judge_*),
// asked as LLaVA's eval_gpt_review_bench.py asks GPT-4: a system message, one user message,
// temperature 0.2. Called only when a user names a judge.
#pragma once

#include "eval.h"

// The judge's reply to `user` (after `system`), malloc'd in *reply. Retries a failed request up to
// `tries` times (0.5 s apart, as LLaVA's script does forever). Returns 0, or -1 with an error naming
// the URL and what the server said.
int eval_judge_ask(const eval_inputs *in, const char *system, const char *user, double temperature, int max_tokens,
                   int tries, char **reply);

// eval_gpt_review_bench.py's parse_score: the first line of a review, commas as spaces, split on
// single spaces; exactly two fields that Python 3's float() takes give the two scores (returns 1),
// anything else gives -1, -1 (returns 0; the script's [-1, -1] are ints, its scores floats).
int eval_judge_parse_score(const char *review, double score[2]);
