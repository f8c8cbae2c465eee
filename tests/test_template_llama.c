// Templates and label masks on the real LLaMA/Vicuna tokenizer: the worked examples of spec llava15-recipe.md
// Appendix A reproduced exactly (ids and labels) and every sample of tests/data/tokenizer/samples.jsonl identical to
// LLaVA's own preprocessing, on the committed LLaMA tokenizer (see test_tokenizer_llama.c).
#include "tokenizer_golden.h"

#define X IGNORE_INDEX
#define IMG IMAGE_TOKEN_INDEX

static void expect(const char *what, const tok_ids *got, const int32_t *want, size_t n) {
    tok_ids w = {0};
    for (size_t i = 0; i < n; i++) tok_ids_push(&w, want[i]);
    int ok = ids_equal(got, &w);
    CHECK(ok, "%s", what);
    if (!ok) ids_report(what, 0, got, &w);
    tok_ids_free(&w);
}

static int run(const tokenizer *t, tok_mode mode, const conv_template *tp, const char *const *from,
               const char *const *value, size_t n, int image, prep_result *r) {
    conv_turn turns[8];
    for (size_t i = 0; i < n; i++) turns[i] = (conv_turn){from[i], value[i], strlen(value[i])};
    prep_config c = {.tok = t, .mode = mode, .tmpl = tp, .model_max_length = 2048};
    return prep_sample(&c, "appendix-a", turns, n, image, r);
}

static const char *FROM[] = {"human", "gpt", "human", "gpt"};

// A.1: stage 1, identical in the three modes.
static void a1(const tokenizer *t) {
    static const char *v[] = {"Render a clear and concise summary of the photo.\n<image>",
                              "select luxury furniture 3 - inch gel memory foam mattress topper"};
    static const int32_t ids[] = {1,   IMG,  1831, 21684, 2857, 15252, 17252, 29871, 29941, 448,  297,
                                  305, 9127, 3370, 1701,  314,  1775,  509,   404,   304,   2496, 13};
    static const int32_t labels[] = {X,   X,    1831, 21684, 2857, 15252, 17252, 29871, 29941, 448,  297,
                                     305, 9127, 3370, 1701,  314,  1775,  509,   404,   304,   2496, 13};
    for (int m = 0; m < 3; m++) {
        prep_result r;
        CHECK(run(t, (tok_mode)m, conv_template_builtin("plain"), FROM, v, 2, 1, &r) == 0, "%s", llava_errmsg());
        expect("A.1 ids", &r.ids, ids, sizeof ids / sizeof ids[0]);
        expect("A.1 labels", &r.labels, labels, sizeof labels / sizeof labels[0]);
        prep_result_free(&r);
    }
}

// A.2: stage 2, two rounds with an image. N31 (release) and N37 (HEAD, with its -1 fix); legacy differs only in
// round 2's "USER" (3148 1001).
static void a2(const tokenizer *t) {
    static const char *v[] = {"<image>\nWhat is shown?", "A cat.", "What color is it?", "Black."};
    static const int32_t head[] = {1,     319,   13563, 1546,  263,  12758, 1404,  322,   385,   23116, 21082,
                                   20255, 29889, 450,   20255, 4076, 8444,  29892, 13173, 29892, 322,   1248,
                                   568,   6089,  304,   278,   1404, 29915, 29879, 5155,  29889, 3148,  1001,
                                   29901, 29871, IMG,   29871, 13,   5618,  338,   4318,  29973, 319,   1799,
                                   9047,  13566, 29901, 319,   6635, 29889, 2};
    static const int32_t tail31[] = {3308, 1001, 29901, 1724,  2927,  338,  372,   29973,
                                     319,  1799, 9047,  13566, 29901, 6054, 29889, 2};
    static const int32_t tail37[] = {11889, 29901, 1724,  2927,  338,  372,   29973, 319,
                                     1799,  9047,  13566, 29901, 6054, 29889, 2};
    static const int32_t tail_legacy[] = {3148, 1001, 29901, 1724,  2927,  338,  372,   29973,
                                          319,  1799, 9047,  13566, 29901, 6054, 29889, 2};
    const size_t nh = sizeof head / sizeof head[0];
    struct {
        tok_mode m;
        const int32_t *tail;
        size_t nt;
    } cases[] = {{TOK_HF431, tail31, 16}, {TOK_HF437, tail37, 15}, {TOK_LEGACY, tail_legacy, 16}};
    for (int c = 0; c < 3; c++) {
        int32_t ids[80], labels[80];
        size_t n = 0;
        for (size_t i = 0; i < nh; i++) ids[n++] = head[i];
        for (size_t i = 0; i < cases[c].nt; i++) ids[n++] = cases[c].tail[i];
        CHECK_EQ_INT(n, cases[c].m == TOK_HF437 ? 66 : 67);  // "67 tokens incl. the -200" (N31), 66 (N37)
        // Supervised: each answer and its </s>: positions 47..50 and the last three.
        for (size_t i = 0; i < n; i++) labels[i] = (i >= 47 && i <= 50) || i >= n - 3 ? ids[i] : X;
        prep_result r;
        CHECK(run(t, cases[c].m, conv_template_builtin("vicuna_v1"), FROM, v, 4, 1, &r) == 0, "%s", llava_errmsg());
        expect("A.2 ids", &r.ids, ids, n);
        expect("A.2 labels", &r.labels, labels, n);
        CHECK_EQ_INT(r.flags, 0);
        CHECK_EQ_INT(r.cur_len, (int)n);  // cur ends at total_len: 67 (N31), 66 (N37)
        CHECK_EQ_INT(r.total_len, (int)n);
        prep_result_free(&r);
    }
    // "Without the fix, N37 yields 'mismatch 67 vs 66' and the whole sample gets masked."
    conv_template nofix = *conv_template_builtin("vicuna_v1");
    nofix.later_round_fix = 0;
    prep_result r;
    CHECK(run(t, TOK_HF437, &nofix, FROM, v, 4, 1, &r) == 0, "%s", llava_errmsg());
    CHECK(r.flags & PREP_MISMATCH, "N37 without the fix mismatches");
    CHECK_EQ_INT(r.cur_len, 67);
    CHECK_EQ_INT(r.total_len, 66);
    prep_result_free(&r);
}

// A.3: text-only, two rounds: the first round's "USER" stays "▁US ER"; N37 needs its fix to match.
static void a3(const tokenizer *t) {
    static const char *v[] = {"Hello", "Hi there!", "How are you?", "I am good."};
    for (int m = 0; m < 3; m++) {
        prep_result r;
        CHECK(run(t, (tok_mode)m, conv_template_builtin("vicuna_v1"), FROM, v, 4, 0, &r) == 0, "%s", llava_errmsg());
        CHECK_EQ_INT(r.flags, 0);
        CHECK(
            r.ids.n > 36 && r.ids.v[31] == 3148 && r.ids.v[32] == 1001 && r.ids.v[33] == 29901 && r.ids.v[34] == 15043,
            "\"USER: Hello\" is 3148 1001 29901 15043");
        CHECK(r.ids.v[0] == 1 && r.ids.v[r.ids.n - 1] == 2, "<s> ... </s>");
        prep_result_free(&r);
    }
    conv_template nofix = *conv_template_builtin("vicuna_v1");
    nofix.later_round_fix = 0;
    prep_result r;
    CHECK(run(t, TOK_HF437, &nofix, FROM, v, 4, 0, &r) == 0, "%s", llava_errmsg());
    CHECK(r.flags & PREP_MISMATCH, "N37 without the fix mismatches");
    CHECK_EQ_INT(r.cur_len, r.total_len + 1);
    prep_result_free(&r);
}

int main(void) {
    const char *path = golden_llama_path();
    tokenizer *t = tok_load(path);
    CHECK(t != NULL, "%s", llava_errmsg());
    if (!t) return check_done();
    a1(t);
    a2(t);
    a3(t);
    size_t n = golden_check_prep(t, "llama");
    printf("llama: %zu samples compared with LLaVA's preprocessing (44e0562 + transformers 4.31, c121f04 + 4.37)\n", n);
    golden_lines samples = golden_read_lines(GOLDEN_DIR "samples.jsonl");
    printf("llama: %zu samples, each in the 3 modes (legacy, hf431, hf437)\n", samples.n);
    golden_free(&samples);
    tok_free(t);
    return check_done();
}
