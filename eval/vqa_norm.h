// The answer normalisations of the VQA family, re-stated from the official Python:
//
//   EvalAIAnswerProcessor (LLaVA's llava/eval/m4c_evaluator.py, from MMF; Python 3): what LLaVA's
//   TextVQA scorer and its VQAv2 / VizWiz submission converters apply to an answer;
//   VQAEval (GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py; Python 2.7): the
//   official VQA accuracy's own steps, applied to the answers and the annotators' answers.
#pragma once

// EvalAIAnswerProcessor()(s): lower case; ',' and '?' removed and "'s" split off; newlines and tabs
// to spaces; the punctuation rule; periods not before a digit removed (the first 32 only: the
// official passes re.UNICODE as sub's count); number words to digits; articles dropped; the
// contraction table. A new string.
char *evalai_answer(const char *s);

// VQAEval's steps (Python 2.7 semantics): the newline/tab replacement and strip every answer gets,
// processPunctuation and processDigitArticle. Each returns a new string.
char *vqa_eval_prestrip(const char *s);
char *vqa_eval_punctuation(const char *s);
char *vqa_eval_digit_article(const char *s);
