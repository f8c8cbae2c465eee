// LLaVA-NeXT's templates for other language models: every sample of tests/data/chat/samples.jsonl through
// prep_sample with the built-in llava_llama_3, qwen_1_5 and mistral_instruct templates, ids and labels identical to
// what LLaVA-NeXT's own preprocess_llama3 / preprocess_qwen / preprocess_llama_2 return for it (run unmodified by
// tools/reference/make_chat_template_goldens.py), a sample NeXT's code raises on refused here, and NeXT's
// "tokenization mismatch" flagged with its two lengths. The tokenizers are the committed Llama-3- and Qwen2-shaped
// tokenizer.json files and LLaMA's tokenizer.model (legacy=True, as Mistral's fast tokenizer behaves).
// Multi-image conversations (tests/data/chat/multi_image.jsonl: "image" a list of 2-4 paths, as many "<image>"
// placed every way) against <golden>.multi.prep.jsonl, for those three templates and vicuna_v1 (NeXT's
// preprocess_v1, the slow LlamaTokenizer with legacy=False as hf437 and legacy=True): ids and labels identical, and
// one IMAGE_TOKEN_INDEX in the ids per path of the sample's list.
#include "data/prep.h"
#include "tokenizer_golden.h"

#define CHAT_DIR "tests/data/chat/"

typedef struct {
    const char *name;    // the template
    const char *golden;  // its golden file in CHAT_DIR
    const char *tokenizer;
    tok_mode mode;
} chat_case;

typedef struct {
    size_t compared;      // samples compared (NeXT's refusals included)
    size_t identical;     // of them, samples NeXT takes whose ids and labels are identical to its
    size_t errors;        // refused as NeXT raises
    size_t masked;        // NeXT's "tokenization mismatch"
    size_t image_labels;  // image places with a label
    size_t images;        // multi: IMAGE_TOKEN_INDEX places counted against the samples' lists
} chat_counts;

// `multi`: the samples are multi-image ones (every one has an "image" list).
static void check_template(const chat_case *cc, const char *samples_path, const golden_lines *samples, int multi,
                           chat_counts *n) {
    tokenizer *t = tok_load(cc->tokenizer);
    CHECK(t != NULL, "%s", llava_errmsg());
    if (!t) return;
    const conv_template *builtin = conv_template_builtin(cc->name);
    CHECK(builtin != NULL, "built-in template %s", cc->name);
    if (!builtin) {
        tok_free(t);
        return;
    }
    // Multi-image samples take LLaVA-NeXT's preprocess_multimodal rule whatever the template (only a turn with
    // exactly one "<image>" that does not start with it has it moved to the front; "QA_GT_caption_based_noisy"
    // removed): NeXT's own code runs every template so. vicuna_v1 keeps LLaVA-1.5's rule for single-image samples,
    // so for these samples the test runs a copy of the template with multimodal_next set, as data/prep.c does for a
    // sample with more than one image.
    conv_template next_rule = *builtin;
    if (multi) next_rule.multimodal_next = 1;
    const conv_template *tmpl = multi ? &next_rule : builtin;
    char path[512];
    snprintf(path, sizeof path, CHAT_DIR "%s", cc->golden);
    golden_lines gold = golden_read_lines(path);
    size_t g = 0;
    for (size_t i = 0; i < samples->n; i++) {
        cJSON *s = cJSON_Parse(samples->line[i]);
        if (!s) {
            fprintf(stderr, "%s: line %zu is not JSON\n", samples_path, i + 1);
            exit(1);
        }
        if (strcmp(cJSON_GetObjectItem(s, "template")->valuestring, cc->name) != 0) {
            cJSON_Delete(s);
            continue;
        }
        CHECK(g < gold.n, "%s: fewer golden lines than samples", path);
        if (g >= gold.n) {
            cJSON_Delete(s);
            break;
        }
        cJSON *want = cJSON_Parse(gold.line[g++]);
        const char *id = cJSON_GetObjectItem(s, "id")->valuestring;
        CHECK(!strcmp(id, cJSON_GetObjectItem(want, "id")->valuestring), "%s: sample %s out of order", path, id);
        size_t nt;
        conv_turn *turns = golden_turns(s, &nt);
        prep_config cfg = {.tok = t, .mode = cc->mode, .tmpl = tmpl, .model_max_length = 2048};
        prep_result r;
        const cJSON *image = cJSON_GetObjectItem(s, "image");
        if (multi)
            CHECK(cJSON_IsArray(image) && cJSON_GetArraySize(image) >= 2, "%s: sample %s has no image list",
                  samples_path, id);
        int rc = prep_sample(&cfg, id, turns, nt, image != NULL, &r);
        const cJSON *err = cJSON_GetObjectItem(want, "error");
        if (err) {
            CHECK(rc != 0, "%s sample %s: NeXT raises %s, we do not", cc->name, id, err->valuestring);
            if (rc == 0) prep_result_free(&r);
            n->errors++;
        } else if (rc != 0) {
            CHECK(0, "%s sample %s: %s", cc->name, id, llava_errmsg());
        } else {
            tok_ids ids = {0}, labels = {0};
            golden_parse_ids(cJSON_GetObjectItem(want, "ids")->valuestring, &ids);
            golden_parse_ids(cJSON_GetObjectItem(want, "labels")->valuestring, &labels);
            int ok_ids = ids_equal(&r.ids, &ids), ok_labels = ids_equal(&r.labels, &labels);
            CHECK(ok_ids, "%s sample %s: input ids differ", cc->name, id);
            if (!ok_ids) ids_report("ids", g, &r.ids, &ids);
            CHECK(ok_labels, "%s sample %s: labels differ", cc->name, id);
            if (!ok_labels) ids_report("labels", g, &r.labels, &labels);
            for (size_t k = 0; k < labels.n && k < ids.n; k++)
                n->image_labels += ids.v[k] == IMAGE_TOKEN_INDEX && labels.v[k] != IGNORE_INDEX;
            if (multi) {  // one image place per path of the list (fewer only where the sample is cut at 2048)
                size_t places = 0, paths = (size_t)cJSON_GetArraySize(image);
                for (size_t k = 0; k < r.ids.n; k++) places += r.ids.v[k] == IMAGE_TOKEN_INDEX;
                if (r.flags & PREP_TRUNCATED)
                    CHECK(places <= paths, "%s sample %s: %zu image places, %zu paths", cc->name, id, places, paths);
                else CHECK(places == paths, "%s sample %s: %zu image places, %zu paths", cc->name, id, places, paths);
                n->images += places;
            }
            const cJSON *mm = cJSON_GetObjectItem(want, "mismatch");
            int want_mm = mm && cJSON_IsArray(mm);
            CHECK(want_mm == !!(r.flags & PREP_MISMATCH), "%s sample %s: mismatch %d, NeXT %d", cc->name, id,
                  !!(r.flags & PREP_MISMATCH), want_mm);
            if (want_mm) {
                CHECK_EQ_INT(r.cur_len, cJSON_GetArrayItem(mm, 0)->valueint);
                CHECK_EQ_INT(r.total_len, cJSON_GetArrayItem(mm, 1)->valueint);
                n->masked++;
            }
            tok_ids_free(&ids);
            tok_ids_free(&labels);
            prep_result_free(&r);
            n->identical += ok_ids && ok_labels;
        }
        n->compared++;
        free(turns);
        cJSON_Delete(s);
        cJSON_Delete(want);
    }
    CHECK_EQ_INT(g, gold.n);
    golden_free(&gold);
    tok_free(t);
}

// The inference side of the same templates: the prompt a chat turns into ends with the generation prompt, where the
// model's answer starts, and none of it is supervised.
static void generation_prompts(void) {
    tokenizer *t = tok_load("tests/data/bpe/qwen2/tokenizer.json");
    CHECK(t != NULL, "%s", llava_errmsg());
    if (!t) return;
    conv_turn turns[2] = {{"human", "<image>\nWhat is it?", 19}, {"gpt", NULL, 0}};
    prep_config cfg = {.tok = t, .mode = TOK_MODE_DEFAULT, .tmpl = conv_template_builtin("qwen_1_5")};
    prep_result r;
    CHECK(prep_sample(&cfg, "gen", turns, 2, 1, &r) == 0, "%s", llava_errmsg());
    const char *want =
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\nWhat is "
        "it?<|im_end|>\n<|im_start|>assistant\n";
    CHECK(r.prompt && !strcmp(r.prompt, want), "qwen_1_5 generation prompt: \"%s\"", r.prompt ? r.prompt : "");
    // ... assistant \n: the last three ids are <|im_start|>, "assistant", "\n" (198)
    CHECK(r.ids.n > 3 && r.ids.v[r.ids.n - 3] == 4501 && r.ids.v[r.ids.n - 1] == 198, "ends with the prompt");
    size_t images = 0;
    for (size_t k = 0; k < r.ids.n; k++) images += r.ids.v[k] == IMAGE_TOKEN_INDEX;
    CHECK_EQ_INT(images, 1);
    // `llava show`'s text of the tokens: the prompt itself, byte-level characters decoded; the supervised spans
    // (the unmask tokens: <|im_start|>, <|im_end|>, "\n") marked.
    size_t rl = 0;
    char *text = prep_render_text(t, r.ids.v, NULL, r.ids.n, NULL, NULL, &rl);
    CHECK(text && !strcmp(text, want), "rendered: \"%s\"", text ? text : llava_errmsg());
    free(text);
    text = prep_render_text(t, r.ids.v, r.labels.v, r.ids.n, "[", "]", &rl);
    CHECK(
        text && !strncmp(text, "[<|im_start|>]system[\n]You are a helpful assistant.[<|im_end|>\n<|im_start|>]user",
                         strlen("[<|im_start|>]system[\n]You are a helpful assistant.[<|im_end|>\n<|im_start|>]user")),
        "rendered with spans: \"%s\"", text ? text : llava_errmsg());
    free(text);
    prep_result_free(&r);
    tok_free(t);

    t = tok_load("tests/data/bpe/llama3/tokenizer.json");
    CHECK(t != NULL, "%s", llava_errmsg());
    if (!t) return;
    turns[0] = (conv_turn){"human", "  Hi  ", 6};
    cfg = (prep_config){.tok = t, .mode = TOK_MODE_DEFAULT, .tmpl = conv_template_builtin("llava_llama_3")};
    CHECK(prep_sample(&cfg, "gen", turns, 2, 0, &r) == 0, "%s", llava_errmsg());
    const char *tail =
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    size_t tl = strlen(tail);
    CHECK(r.prompt && r.prompt_len > tl && !strcmp(r.prompt + r.prompt_len - tl, tail), "llava_llama_3 prompt: \"%s\"",
          r.prompt ? r.prompt : "");
    CHECK(r.ids.n > 0 && r.ids.v[0] == 4000, "the prompt starts with <|begin_of_text|>");
    for (size_t k = 0; k < r.labels.n; k++)
        if (r.ids.v[k] != 4000 && r.ids.v[k] != 4006 && r.ids.v[k] != 4007 && r.ids.v[k] != 4009)
            CHECK(r.labels.v[k] == IGNORE_INDEX, "only the unmask tokens carry labels in a prompt (position %zu)", k);
    prep_result_free(&r);
    tok_free(t);
}

// A template file in the messages style parses, and bad ones are refused with the key named.
static void template_files(void) {
    static const char ok[] =
        "{\"name\": \"chatml_test\", \"messages\": true, \"roles\": [\"user\", \"assistant\"], \"system\": \"S\", "
        "\"prefix\": \"<|im_start|>system\\n{system}<|im_end|>\\n\", \"turn\": [\"<|im_start|>{role}\\n{message}"
        "<|im_end|>\\n\", \"<|im_start|>{role}\\n{message}<|im_end|>\\n\"], \"unmask_tokens\": [\"<|im_end|>\"], "
        "\"unmask_ids\": [198], \"generation_prompt\": \"<|im_start|>assistant\\n\", \"multimodal\": \"next\"}";
    conv_template *t = conv_template_parse(ok, strlen(ok));
    CHECK(t != NULL, "%s", llava_errmsg());
    if (t) {
        CHECK(t->messages == 1 && t->multimodal_next == 1 && t->n_unmask_tokens == 1 && t->n_unmask_ids == 1 &&
                  t->unmask_ids[0] == 198 && !strcmp(t->generation_prompt, "<|im_start|>assistant\n"),
              "messages template fields");
        conv_template_free(t);
    }
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"name\": \"x\", \"messages\": true, \"turn\": [\"a\", \"b\"], \"unmask_ids\": [\"198\"]}", "unmask_ids"},
        {"{\"name\": \"x\", \"messages\": true, \"turn\": [\"a\", \"b\"], \"unmask_tokens\": [1]}", "unmask_tokens"},
        {"{\"name\": \"x\", \"messages\": true, \"turn\": [\"a\", \"b\"], \"multimodal\": \"onevision\"}",
         "multimodal"},
        {"{\"name\": \"x\", \"messages\": true, \"plain\": true, \"turn\": [\"a\", \"b\"]}", "two styles"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        conv_template *b = conv_template_parse(bad[i].json, strlen(bad[i].json));
        CHECK(b == NULL && strstr(llava_errmsg(), bad[i].want), "bad template %zu refused naming %s: %s", i,
              bad[i].want, b ? "(accepted)" : llava_errmsg());
        conv_template_free(b);
    }
}

int main(void) {
    golden_lines samples = golden_read_lines(CHAT_DIR "samples.jsonl");
    const chat_case cases[] = {
        {"llava_llama_3", "llava_llama_3.prep.jsonl", "tests/data/bpe/llama3/tokenizer.json", TOK_MODE_DEFAULT},
        {"qwen_1_5", "qwen_1_5.prep.jsonl", "tests/data/bpe/qwen2/tokenizer.json", TOK_MODE_DEFAULT},
        {"mistral_instruct", "mistral_instruct.prep.jsonl", GOLDEN_LLAMA_MODEL, TOK_LEGACY},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        chat_counts n = {0};
        check_template(&cases[c], CHAT_DIR "samples.jsonl", &samples, 0, &n);
        printf(
            "%s: %zu samples identical to LLaVA-NeXT's preprocessing (%zu refused as NeXT raises, %zu masked for "
            "a length mismatch, %zu image places with a label, dropped with the image at batching as NeXT's forward "
            "drops it)\n",
            cases[c].name, n.compared, n.errors, n.masked, n.image_labels);
        CHECK(n.compared >= 150, "%s: at least 150 conversations compared (%zu)", cases[c].name, n.compared);
    }
    golden_free(&samples);

    golden_lines multi = golden_read_lines(CHAT_DIR "multi_image.jsonl");
    const chat_case multi_cases[] = {
        {"llava_llama_3", "llava_llama_3.multi.prep.jsonl", "tests/data/bpe/llama3/tokenizer.json", TOK_MODE_DEFAULT},
        {"qwen_1_5", "qwen_1_5.multi.prep.jsonl", "tests/data/bpe/qwen2/tokenizer.json", TOK_MODE_DEFAULT},
        {"mistral_instruct", "mistral_instruct.multi.prep.jsonl", GOLDEN_LLAMA_MODEL, TOK_LEGACY},
        // Vicuna-7B-v1.5's legacy=False under transformers 4.46.3 and tokenizers >= 0.14: the hf437 rules
        {"vicuna_v1", "vicuna_v1.multi.prep.jsonl", GOLDEN_LLAMA_MODEL, TOK_HF437},
        {"vicuna_v1", "vicuna_v1.legacy.multi.prep.jsonl", GOLDEN_LLAMA_MODEL, TOK_LEGACY},
    };
    for (size_t c = 0; c < sizeof multi_cases / sizeof multi_cases[0]; c++) {
        chat_counts n = {0};
        check_template(&multi_cases[c], CHAT_DIR "multi_image.jsonl", &multi, 1, &n);
        printf(
            "%s (%s): %zu multi-image samples compared with LLaVA-NeXT's preprocessing, %zu of them with ids and "
            "labels identical (%zu refused as NeXT raises, %zu masked for a length mismatch, %zu image places, one "
            "per path, %zu of them with a label)\n",
            multi_cases[c].name, tok_mode_name(multi_cases[c].mode), n.compared, n.identical, n.errors, n.masked,
            n.images, n.image_labels);
        CHECK(n.identical >= 100, "%s: at least 100 multi-image conversations compared (%zu)", multi_cases[c].golden,
              n.identical);
    }
    golden_free(&multi);
    generation_prompts();
    template_files();
    return check_done();
}
