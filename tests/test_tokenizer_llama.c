// The tokenizer on the real LLaMA/Vicuna tokenizer.model: every corpus line identical to sentencepiece 0.1.99 and to
// transformers' slow LlamaTokenizer (legacy, 4.31 legacy=False, 4.37 legacy=False), decoding identical to
// sentencepiece, and the token sequences the spec quotes. The model is tests/data/tokenizer/llama.model (or
// $LLAVA_TEST_TOKENIZER); a missing file fails the test.
#include "tokenizer_golden.h"

static void expect_ids(const tokenizer *t, tok_mode m, const char *text, const int32_t *want, size_t n) {
    tok_ids got = {0}, w = {0};
    for (size_t i = 0; i < n; i++) tok_ids_push(&w, want[i]);
    CHECK(tok_encode(t, m, text, strlen(text), &got) == 0, "%s", llava_errmsg());
    int ok = ids_equal(&got, &w);
    CHECK(ok, "%s \"%s\"", tok_mode_name(m), text);
    if (!ok) ids_report(tok_mode_name(m), 0, &got, &w);
    tok_ids_free(&got);
    tok_ids_free(&w);
}

#define EXPECT(t, m, text, ...)                                                                                        \
    do {                                                                                                               \
        static const int32_t want_[] = {__VA_ARGS__};                                                                  \
        expect_ids(t, m, text, want_, sizeof want_ / sizeof want_[0]);                                                 \
    } while (0)

int main(void) {
    const char *path = golden_llama_path();
    tokenizer *t = tok_load(path);
    CHECK(t != NULL, "%s", llava_errmsg());
    if (!t) return check_done();
    CHECK_EQ_INT(tok_n_pieces(t), 32000);
    CHECK_EQ_INT(tok_unk_id(t), 0);
    CHECK_EQ_INT(tok_bos_id(t), 1);
    CHECK_EQ_INT(tok_eos_id(t), 2);
    CHECK_EQ_INT(tok_piece_to_id(t, "\xe2\x96\x81\xe2\x96\x81", 6), 259);
    CHECK_EQ_INT(tok_piece_to_id(t,
                                 "\xe2\x96\x81"
                                 "Hello",
                                 8),
                 15043);

    size_t n = golden_check_model(t, "llama");
    printf("llama: %zu lines and id sequences compared with sentencepiece 0.1.99 and transformers 4.31.0 / 4.37.2\n",
           n);

    // spec model-and-formats.md §5.6: "Hello <s>." in the legacy and non-legacy modes.
    EXPECT(t, TOK_LEGACY, "Hello <s>.", 1, 15043, 29871, 1, 869);
    EXPECT(t, TOK_HF437, "Hello <s>.", 1, 15043, 29871, 1, 29889);
    EXPECT(t, TOK_HF431, "Hello <s>.", 1, 15043, 29871, 1, 29889);
    // spec llava15-recipe.md §4.4: "USER" at the start of a round after "</s>".
    EXPECT(t, TOK_LEGACY, "A cat.</s>USER:", 1, 319, 6635, 29889, 2, 3148, 1001, 29901);
    EXPECT(t, TOK_HF431, "A cat.</s>USER:", 1, 319, 6635, 29889, 2, 3308, 1001, 29901);
    EXPECT(t, TOK_HF437, "A cat.</s>USER:", 1, 319, 6635, 29889, 2, 11889, 29901);
    // transformers 4.31 strips the "▁" of the first piece after a special token and looks the rest up: "lux" is
    // not a piece, so it becomes <unk> (0).
    EXPECT(t, TOK_HF431, "lux</s>luxury", 1, 21684, 2, 0, 2857);
    EXPECT(t, TOK_HF437, "lux</s>luxury", 1, 21684, 2, 29880, 1314, 2857);
    // Chunks after an image start with the dummy "▁" (tokenizer_image_token tokenizes them on their own).
    EXPECT(t, TOK_HF431, "\nWhat is shown?", 1, 29871, 13, 5618, 338, 4318, 29973);
    EXPECT(t, TOK_HF437, "\nWhat is shown?", 1, 29871, 13, 5618, 338, 4318, 29973);
    EXPECT(t, TOK_HF431, "", 1);
    EXPECT(t, TOK_HF437, "", 1);
    EXPECT(t, TOK_HF437, "<s>hi", 1, 1, 2918);
    // The system prompt of vicuna_v1 plus the first role, identical in every mode (spec §4.4).
    static const char sys[] =
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. USER:";
    for (int m = 0; m < 3; m++)
        EXPECT(t, (tok_mode)m, sys, 1, 319, 13563, 1546, 263, 12758, 1404, 322, 385, 23116, 21082, 20255, 29889, 450,
               20255, 4076, 8444, 29892, 13173, 29892, 322, 1248, 568, 6089, 304, 278, 1404, 29915, 29879, 5155, 29889,
               3148, 1001, 29901);

    // Decoding inverts encoding for valid text without "▁".
    golden_lines corpus = golden_read_jsonl(GOLDEN_DIR "corpus.jsonl");
    size_t bad = 0, tried = 0;
    for (size_t i = 0; i < corpus.n; i++) {
        if (!utf8_valid((const uint8_t *)corpus.line[i], corpus.len[i]) ||
            memmem(corpus.line[i], corpus.len[i], "\xe2\x96\x81", 3))
            continue;
        tok_ids v = {0};
        char *s = NULL;
        size_t sl = 0;
        tok_sp_encode(t, corpus.line[i], corpus.len[i], &v);
        if (tok_decode(t, v.v, v.n, &s, &sl) || sl != corpus.len[i] || memcmp(s, corpus.line[i], sl) != 0) bad++;
        tried++;
        free(s);
        tok_ids_free(&v);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(tried > 4500, "round trips tried: %zu", tried);
    printf("llama: sentencepiece's ids on all %zu corpus lines; %zu of them decoded back to themselves\n", corpus.n,
           tried - bad);
    golden_free(&corpus);
    // Byte pieces that do not form UTF-8 decode to U+FFFD one byte at a time; <s> and </s> vanish; <unk> shows " ⁇ ".
    static const int32_t ids[] = {1, 3 + 0xe4, 3 + 0xbd, 29871, 3 + 0xff, 2, 0, 15043};
    char *s = NULL;
    size_t sl = 0;
    CHECK(tok_decode(t, ids, sizeof ids / sizeof ids[0], &s, &sl) == 0, "%s", llava_errmsg());
    static const char want[] = "\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd \xe2\x81\x87  Hello";
    CHECK(s && sl == sizeof want - 1 && memcmp(s, want, sl) == 0, "decoded \"%s\"", s ? s : "");
    free(s);
    tok_free(t);
    return check_done();
}
