// The benchmark registry (eval/eval.h): every benchmark is one eval_bench, defined beside its
// scorer, listed here in the order of LLaVA-1.5's table.
#include <string.h>

#include "eval.h"

// Each is defined in the file that scores it.
extern const eval_bench eval_bench_demo;
extern const eval_bench eval_bench_scienceqa;
extern const eval_bench eval_bench_pope;
extern const eval_bench eval_bench_mme;
extern const eval_bench eval_bench_mmbench;
extern const eval_bench eval_bench_mmbench_cn;
extern const eval_bench eval_bench_seed;
extern const eval_bench eval_bench_vqav2;
extern const eval_bench eval_bench_vqav2_val;
extern const eval_bench eval_bench_gqa;
extern const eval_bench eval_bench_vizwiz;
extern const eval_bench eval_bench_vizwiz_val;
extern const eval_bench eval_bench_textvqa;
extern const eval_bench eval_bench_llavabench;
extern const eval_bench eval_bench_mmvet;

static const eval_bench *const BENCHES[] = {
    &eval_bench_vqav2,       // eval/bench_vqav2.c: the test-dev submission file
    &eval_bench_vqav2_val,   // eval/bench_vqav2.c: val2014 offline, the official VQA accuracy
    &eval_bench_gqa,         // eval/bench_gqa.c
    &eval_bench_vizwiz,      // eval/bench_vizwiz.c: the test submission file
    &eval_bench_vizwiz_val,  // eval/bench_vizwiz_val.c: val offline, the official VQA accuracy
    &eval_bench_scienceqa,   // eval/score_scienceqa.c
    &eval_bench_textvqa,     // eval/bench_textvqa.c

    &eval_bench_pope,        // eval/score_pope.c
    &eval_bench_mme,         // eval/score_mme.c
    &eval_bench_mmbench,     // eval/score_mmbench.c: CircularEval, exact matching (approximate)
    &eval_bench_mmbench_cn,  // eval/score_mmbench.c
    &eval_bench_seed,        // eval/score_seed.c

    &eval_bench_llavabench,  // eval/bench_judged.c: answers; scored by a judge the user names
    &eval_bench_mmvet,       // eval/bench_judged.c: answers and MM-Vet's results file

    &eval_bench_demo,  // the built-in demo's held-out questions (eval/bench_demo.c)
};

const eval_bench *const *eval_benches(int *n) {
    *n = (int)(sizeof BENCHES / sizeof BENCHES[0]);
    return BENCHES;
}

const eval_bench *eval_find(const char *name) {
    int n;
    const eval_bench *const *b = eval_benches(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(b[i]->name, name) == 0) return b[i];
    return NULL;
}
