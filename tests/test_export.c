// The llava-hf export of a model put together the way training puts it together (a vicuna-style
// LM without an image token, a CLIP tower, a fresh projector): the folder is byte-identical to the
// one in tests/data/export/model, which transformers 4.46.3 loaded (tools/reference/check_export.py)
// to compute the logits and loss stored beside it; our forward on our export matches them. The
// export holds the whole CLIP tower, the layers LLaVA never runs included.
// transformers loaded that folder with no missing, unexpected or mismatched key (loading_info.json).
// With LLAVA_UPDATE_GOLDEN=1 the test writes the folder instead (then rerun check_export.py).
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "app/demo.h"
#include "check.h"
#include "common/util.h"
#include "data/image.h"
#include "data/prep.h"
#include "data/template.h"
#include "data/tokenizer.h"
#include "kernels/ops.h"
#include "model/batch_hf.h"
#include "model/io/export.h"
#include "model/io/safetensors.h"
#include "model/llava.h"
#include "train/config.h"
#include "train/trainer.h"

#define GOLDEN "tests/data/export"

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = read_file(a, 64u << 20, &la), *y = read_file(b, 64u << 20, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

// The JSON object in dir/name (NULL with a failed check when it is not there or does not parse).
static cJSON *load_json(const char *dir, const char *name) {
    char *path = path_join(dir, name);
    size_t n;
    char *text = read_file(path, 1 << 20, &n);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(cJSON_IsObject(j), "%s: %s", path, text ? "not a JSON object" : llava_errmsg());
    free(text);
    free(path);
    return cJSON_IsObject(j) ? j : (cJSON_Delete(j), NULL);
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "(absent)";
}
static double jnum(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static int jbool(const cJSON *o, const char *key) {  // 1 true, 0 false, -1 absent
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

// export_llava_hf_processor beside the export: every file transformers' AutoProcessor reads, with its keys
// (model/io/export.h); and the record of transformers 4.46.3 loading the demo's trained export with them
// (GOLDEN/processor_check.json, tools/reference/check_export_processor.py): its processor's input ids and
// pixel values against ours, and its answer.
static void check_processor_files(const llava_model *m, const char *world, const char *out) {
    char *tok = path_join(world, "tokenizer.model");
    export_processor_options po = {.tokenizer = tok, .model_max_length = 256, .template_name = "vicuna_v1"};
    CHECK(export_llava_hf_processor(m, out, &po) == 0, "%s", llava_errmsg());
    int V = m->cfg.text.vocab_size, S = m->cfg.vision.image_size, P = m->cfg.vision.patch_size;
    char *copy = path_join(out, "tokenizer.model");
    CHECK(same_file(tok, copy), "tokenizer.model is not the run's tokenizer, byte for byte");
    free(copy);
    char image_key[16], pad_key[16];
    snprintf(image_key, sizeof image_key, "%d", V);  // the vocabulary grew by <image> and <pad>
    snprintf(pad_key, sizeof pad_key, "%d", V + 1);

    cJSON *tc = load_json(out, "tokenizer_config.json");
    if (tc) {
        CHECK_EQ_STR(jstr(tc, "tokenizer_class"), "LlamaTokenizer");
        CHECK_EQ_STR(jstr(tc, "processor_class"), "LlavaProcessor");
        CHECK(jbool(tc, "legacy") == 0 && jbool(tc, "add_bos_token") == 1 && jbool(tc, "add_eos_token") == 0,
              "legacy %d, add_bos_token %d, add_eos_token %d", jbool(tc, "legacy"), jbool(tc, "add_bos_token"),
              jbool(tc, "add_eos_token"));
        CHECK_EQ_STR(jstr(tc, "bos_token"), "<s>");
        CHECK_EQ_STR(jstr(tc, "eos_token"), "</s>");
        CHECK_EQ_STR(jstr(tc, "unk_token"), "<unk>");
        CHECK_EQ_STR(jstr(tc, "pad_token"), "<pad>");
        CHECK(jnum(tc, "model_max_length") == 256, "model_max_length %g", jnum(tc, "model_max_length"));
        CHECK(strstr(jstr(tc, "chat_template"), "ASSISTANT:") != NULL, "no vicuna_v1 chat_template");
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(tc, "added_tokens_decoder");
        const char *want[][2] = {
            {"0", "<unk>"}, {"1", "<s>"}, {"2", "</s>"}, {image_key, "<image>"}, {pad_key, "<pad>"}};
        for (int k = 0; k < 5; k++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(dec, want[k][0]);
            CHECK(e && !strcmp(jstr(e, "content"), want[k][1]) && jbool(e, "special") == 1,
                  "added_tokens_decoder[%s] is not the special %s", want[k][0], want[k][1]);
        }
    }
    cJSON *sm = load_json(out, "special_tokens_map.json");
    const char *special[][2] = {
        {"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"pad_token", "<pad>"}};
    for (int k = 0; sm && k < 4; k++)
        CHECK(!strcmp(jstr(cJSON_GetObjectItemCaseSensitive(sm, special[k][0]), "content"), special[k][1]),
              "special_tokens_map %s is not %s", special[k][0], special[k][1]);
    cJSON *pp = load_json(out, "preprocessor_config.json");
    if (pp) {
        CHECK_EQ_STR(jstr(pp, "image_processor_type"), "CLIPImageProcessor");
        const cJSON *crop = cJSON_GetObjectItemCaseSensitive(pp, "crop_size");
        CHECK(jnum(crop, "height") == S && jnum(crop, "width") == S, "crop_size is not %d", S);
        CHECK(jnum(cJSON_GetObjectItemCaseSensitive(pp, "size"), "shortest_edge") == S, "size is not %d", S);
        CHECK(jbool(pp, "do_center_crop") == 1 && jbool(pp, "do_resize") == 1 && jbool(pp, "do_normalize") == 1 &&
                  jbool(pp, "do_rescale") == 1 && jbool(pp, "do_convert_rgb") == 1,
              "a do_* flag is off");
        CHECK(jnum(pp, "resample") == 3, "resample %g (3 = bicubic)", jnum(pp, "resample"));
        CHECK(fabs(jnum(pp, "rescale_factor") - 1.0 / 255.0) < 1e-15, "rescale_factor %g", jnum(pp, "rescale_factor"));
        const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, sd[3] = {0.26862954, 0.26130258, 0.27577711};
        const cJSON *jm = cJSON_GetObjectItemCaseSensitive(pp, "image_mean"),
                    *js = cJSON_GetObjectItemCaseSensitive(pp, "image_std");
        for (int k = 0; k < 3; k++)
            CHECK(cJSON_GetArrayItem(jm, k) && cJSON_GetArrayItem(js, k) &&
                      cJSON_GetArrayItem(jm, k)->valuedouble == mean[k] &&
                      cJSON_GetArrayItem(js, k)->valuedouble == sd[k],
                  "CLIP's mean and std, channel %d", k);
    }
    cJSON *pc = load_json(out, "processor_config.json"), *cfg = load_json(out, "config.json");
    if (pc && cfg) {
        CHECK_EQ_STR(jstr(pc, "processor_class"), "LlavaProcessor");
        CHECK_EQ_STR(jstr(pc, "image_token"), "<image>");
        CHECK(jnum(pc, "patch_size") == P, "patch_size %g, the tower's %d", jnum(pc, "patch_size"), P);
        CHECK(jnum(pc, "num_additional_image_tokens") == 1, "num_additional_image_tokens %g",
              jnum(pc, "num_additional_image_tokens"));
        CHECK(!strcmp(jstr(pc, "vision_feature_select_strategy"), jstr(cfg, "vision_feature_select_strategy")),
              "vision_feature_select_strategy %s, config.json's %s", jstr(pc, "vision_feature_select_strategy"),
              jstr(cfg, "vision_feature_select_strategy"));
        // What LlavaProcessor expands "<image>" to is what the model takes.
        int grid = S / P, n = grid * grid + (int)jnum(pc, "num_additional_image_tokens") -
                              !strcmp(jstr(pc, "vision_feature_select_strategy"), "default");
        CHECK(n == m->tokens_per_image && jnum(cfg, "image_seq_length") == n,
              "the processor expands <image> to %d, the "
              "model takes %d",
              n, m->tokens_per_image);
    }
    cJSON *ct = load_json(out, "chat_template.json");
    if (ct && tc) CHECK_EQ_STR(jstr(ct, "chat_template"), jstr(tc, "chat_template"));
    cJSON_Delete(tc), cJSON_Delete(sm), cJSON_Delete(pp), cJSON_Delete(pc), cJSON_Delete(cfg), cJSON_Delete(ct);

    // transformers on the demo's export (the same tokenizer as this world's: the demo writes this world).
    cJSON *g = load_json(GOLDEN, "processor_check.json");
    if (!g) {
        free(tok);
        return;
    }
    char md5[33];
    CHECK(prep_file_md5(tok, md5, NULL) == 0 && !strcmp(md5, jstr(g, "tokenizer_md5")),
          "the demo's tokenizer (md5 %s) is not this world's (%s)", jstr(g, "tokenizer_md5"), md5);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(g, "processor");
    CHECK_EQ_STR(jstr(pr, "class"), "LlavaProcessor");
    CHECK_EQ_STR(jstr(pr, "tokenizer_class"), "LlamaTokenizerFast");
    CHECK_EQ_STR(jstr(pr, "image_processor_class"), "CLIPImageProcessor");
    CHECK(jnum(pr, "image_token_id") == V && jnum(pr, "pad_token_id") == V + 1, "transformers' <image> %g, <pad> %g",
          jnum(pr, "image_token_id"), jnum(pr, "pad_token_id"));
    // The chat template's prompt is LLaVA-1.5's vicuna_v1 prompt for one question with an image.
    const conv_template *vt = conv_template_builtin("vicuna_v1");
    char *prompt = xasprintf("%s USER: <image>\n%s ASSISTANT:", vt->system, jstr(g, "question"));
    CHECK_EQ_STR(jstr(g, "prompt"), prompt);
    // Its input ids are LLaVA's (tokenizer_image_token, hf431, the image's tokens expanded) but for one token:
    // LLaVA tokenizes the text after <image> on its own, so it starts with SentencePiece's dummy "▁"; the fast
    // tokenizer (legacy false) puts nothing between <image> and "\n" (docs/export.md).
    tokenizer *t = tok_load(tok);
    tok_ids ours = {0};
    CHECK(t && tok_encode_with_images(t, TOK_HF431, prompt, strlen(prompt), &ours) == 0, "%s", llava_errmsg());
    int space = t ? tok_piece_to_id(t, "\xe2\x96\x81", 3) : -1;
    int32_t *want = xmalloc(sizeof(int32_t) * (ours.n + (size_t)m->tokens_per_image));
    size_t n_want = 0;
    int dropped = 0;
    for (size_t i = 0; i < ours.n; i++) {
        if (ours.v[i] == IMAGE_TOKEN_INDEX) {
            for (int k = 0; k < m->tokens_per_image; k++) want[n_want++] = V;
            if (i + 1 < ours.n && ours.v[i + 1] == space) i++, dropped++;
        } else {
            want[n_want++] = ours.v[i];
        }
    }
    CHECK(dropped == 1, "LLaVA's ids have %d dummy pieces after the image (one expected)", dropped);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(g, "input_ids");
    int same = cJSON_GetArraySize(ids) == (int)n_want;
    for (size_t i = 0; same && i < n_want; i++) same = cJSON_GetArrayItem(ids, (int)i)->valueint == want[i];
    CHECK(same, "transformers' input ids (%d) are not LLaVA's less the dummy piece (%zu)", cJSON_GetArraySize(ids),
          n_want);
    CHECK(jnum(g, "image_tokens") == m->tokens_per_image, "%g image tokens", jnum(g, "image_tokens"));
    // Its pixel values are LLaVA's: a square image, so crop (transformers) and pad (LLaVA-1.5) agree.
    image_u8 im;
    char *img = path_join(GOLDEN, jstr(g, "image"));
    CHECK(image_load_file(img, &im) == 0, "%s", llava_errmsg());
    float *chw = xmalloc(sizeof(float) * 3 * (size_t)S * S);
    uint8_t *u8 = xmalloc(3 * (size_t)S * S);
    for (int mode = 0; mode < 2; mode++) {
        CHECK(image_preprocess(&im, S, mode ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE, u8, chw) == 0, "%s",
              llava_errmsg());
        double sum = 0, sq = 0;
        for (size_t i = 0; i < 3 * (size_t)S * S; i++) sum += chw[i], sq += (double)chw[i] * chw[i];
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(g, "pixel_values");
        CHECK(fabs(sum - jnum(pv, "sum")) < 1e-3 && fabs(sq - jnum(pv, "sum_sq")) < 1e-3,
              "%s: pixel sums %.6f %.6f, transformers' %.6f %.6f", mode ? "pad" : "square", sum, sq, jnum(pv, "sum"),
              jnum(pv, "sum_sq"));
        const cJSON *first = cJSON_GetObjectItemCaseSensitive(pv, "first");
        for (int k = 0; k < 8; k++)
            CHECK(fabs(chw[k] - cJSON_GetArrayItem(first, k)->valuedouble) < 1e-6, "pixel %d: %.7f vs %.7f", k,
                  (double)chw[k], cJSON_GetArrayItem(first, k)->valuedouble);
    }
    image_free(&im);
    // The answers: generate() on the processor's inputs, the pipeline, and `llava generate --model FOLDER`.
    const char *a1 = jstr(cJSON_GetObjectItemCaseSensitive(g, "generate"), "text"),
               *a2 = jstr(cJSON_GetObjectItemCaseSensitive(g, "pipeline"), "text"),
               *a3 = jstr(cJSON_GetObjectItemCaseSensitive(g, "llava_generate"), "text");
    CHECK(!strcmp(a1, "yellow") && !strcmp(a2, "yellow") && !strcmp(a3, "yellow"),
          "answers: generate %s, pipeline %s, llava generate %s (the shape is yellow)", a1, a2, a3);
    printf(
        "transformers 4.46.3 on the export's processor files: %d input ids (LLaVA's less the dummy piece after "
        "the image), pixel values equal, answer \"%s\" (llava generate: \"%s\")\n",
        cJSON_GetArraySize(ids), a2, a3);
    free(img), free(chw), free(u8), free(want), free(prompt), free(tok);
    tok_ids_free(&ours);
    tok_free(t);
    cJSON_Delete(g);
}

// A run whose tokenizer is a tokenizer.json (the Qwen2-shaped demo's, qwen_1_5): the export's tokenizer.json is the
// run's with <image> and <pad> added at the export's ids, tokenizer_config.json a PreTrainedTokenizerFast one naming
// the template, generation_config.json stops at <|im_end|>; and transformers 4.46.3 on the Qwen2 demo's trained
// export (GOLDEN/processor_check_qwen2.json) renders the chat template into our prompt and tokenizes it into our
// ids, images expanded.
static void check_bpe_export(void) {
    char *world = check_tmpdir();
    CHECK(demo_make_world_lm(world, 4, 0, 1, NULL, "cpu", "qwen2") == 0, "%s", llava_errmsg());
    char *preset = path_join(world, "stage2.json"), *tok = path_join(world, "tokenizer/tokenizer.json");
    run_settings c;
    CHECK(settings_load(preset, NULL, 0, &c) == 0, "%s", llava_errmsg());
    llava_model m;
    free(c.model.pretrain_mm_mlp_adapter);  // stage 1 has not run: a fresh projector will do
    c.model.pretrain_mm_mlp_adapter = NULL;
    CHECK(train_build_model(&c, test_cpu(), &m) == 0, "%s", llava_errmsg());
    settings_free(&c);
    char *out = path_join(world, "export");
    export_processor_options po = {.tokenizer = tok, .model_max_length = 256, .template_name = "qwen_1_5"};
    CHECK(export_llava_hf(&m, out, DT_F32) == 0 && export_llava_hf_processor(&m, out, &po) == 0, "%s", llava_errmsg());
    int V = m.cfg.text.vocab_size;
    tokenizer *src = tok_load(tok);
    char *etp = path_join(out, "tokenizer.json");
    tokenizer *ex = tok_load(etp);
    CHECK(src && ex, "%s", llava_errmsg());
    if (src && ex) {
        CHECK_EQ_INT(tok_n_pieces(src), V);
        CHECK_EQ_INT(tok_n_pieces(ex), V + 2);  // <image> = V, <pad> = V + 1
        size_t l = 0;
        const char *p = tok_id_to_piece(ex, V, &l);
        CHECK(p && l == 7 && !memcmp(p, "<image>", 7) && tok_piece_type(ex, V) == TOK_CONTROL, "<image> at %d", V);
        p = tok_id_to_piece(ex, V + 1, &l);
        CHECK(p && l == 5 && !memcmp(p, "<pad>", 5), "<pad> at %d", V + 1);
        const char *text = "<|im_start|>user\nWhat color is the shape?<|im_end|>\n";
        tok_ids a = {0}, b = {0};
        CHECK(tok_encode(src, TOK_MODE_DEFAULT, text, strlen(text), &a) == 0 &&
                  tok_encode(ex, TOK_MODE_DEFAULT, text, strlen(text), &b) == 0 && a.n == b.n && a.n > 0 &&
                  !memcmp(a.v, b.v, a.n * sizeof *a.v),
              "the exported tokenizer encodes as the run's");
        tok_ids_free(&a), tok_ids_free(&b);
    }
    cJSON *tc = load_json(out, "tokenizer_config.json"), *gc = load_json(out, "generation_config.json"),
          *ct = load_json(out, "chat_template.json");
    if (tc) {
        CHECK_EQ_STR(jstr(tc, "tokenizer_class"), "PreTrainedTokenizerFast");
        CHECK_EQ_STR(jstr(tc, "eos_token"), "<|im_end|>");
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(tc, "bos_token")), "Qwen2 has no bos_token");
        CHECK_EQ_STR(jstr(tc, "pad_token"), "<pad>");
        CHECK_EQ_STR(jstr(tc, "llava_template"), "qwen_1_5");
        CHECK(strstr(jstr(tc, "chat_template"), "<|im_start|>assistant\\n") != NULL, "qwen_1_5's chat template");
        CHECK(ct && !strcmp(jstr(ct, "chat_template"), jstr(tc, "chat_template")), "chat_template.json");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(tc, "model_input_names")) == 2,
              "model_input_names: input_ids, attention_mask");
    }
    int im_end = src ? tok_piece_to_id(src, "<|im_end|>", 10) : -2;
    CHECK(gc && jnum(gc, "eos_token_id") == im_end, "generation_config.json stops at <|im_end|> (%d)", im_end);
    char *rec = export_recorded_template(out);
    CHECK(rec && !strcmp(rec, "qwen_1_5"), "the export records its template: %s", rec ? rec : "(none)");
    free(rec);

    cJSON *g = load_json(GOLDEN, "processor_check_qwen2.json");
    if (g && src) {
        char md5[33];
        CHECK(prep_file_md5(etp, md5, NULL) == 0 && !strcmp(md5, jstr(g, "tokenizer_md5")),
              "the Qwen2 demo's exported tokenizer.json (md5 %s) is not this export's (%s)", jstr(g, "tokenizer_md5"),
              md5);
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(g, "processor");
        CHECK_EQ_STR(jstr(pr, "tokenizer_class"), "PreTrainedTokenizerFast");
        CHECK(jnum(pr, "image_token_id") == V && jnum(pr, "pad_token_id") == V + 1, "transformers' <image> %g",
              jnum(pr, "image_token_id"));
        // Our prompt for one question with an image (the engine's: a user turn, then the turn to generate).
        char *q = xasprintf("<image>\n%s", jstr(g, "question"));
        conv_turn turns[2] = {{"human", q, strlen(q)}, {"gpt", NULL, 0}};
        prep_config pc = {.tok = src, .mode = TOK_MODE_DEFAULT, .tmpl = conv_template_builtin("qwen_1_5")};
        prep_result r;
        CHECK(prep_sample(&pc, "check", turns, 2, 1, &r) == 0, "%s", llava_errmsg());
        CHECK_EQ_STR(jstr(g, "prompt"), r.prompt);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(g, "input_ids");
        size_t k = 0;
        int same = 1;
        for (size_t i = 0; i < r.ids.n && same; i++)
            for (int f = 0; f < (r.ids.v[i] == IMAGE_TOKEN_INDEX ? m.tokens_per_image : 1) && same; f++, k++) {
                int want = r.ids.v[i] == IMAGE_TOKEN_INDEX ? V : r.ids.v[i];
                same = (int)k < cJSON_GetArraySize(ids) && cJSON_GetArrayItem(ids, (int)k)->valueint == want;
            }
        CHECK(same && (int)k == cJSON_GetArraySize(ids), "transformers' %d input ids are ours, images expanded",
              cJSON_GetArraySize(ids));
        const char *a1 = jstr(cJSON_GetObjectItemCaseSensitive(g, "generate"), "text"),
                   *a2 = jstr(cJSON_GetObjectItemCaseSensitive(g, "pipeline"), "text"),
                   *a3 = jstr(cJSON_GetObjectItemCaseSensitive(g, "llava_generate"), "text");
        CHECK(!strcmp(a1, "yellow") && !strcmp(a2, "yellow") && !strcmp(a3, "yellow"),
              "answers: generate %s, pipeline %s, llava generate %s (the shape is yellow)", a1, a2, a3);
        printf(
            "transformers 4.46.3 on the Qwen2 demo's export: prompt and %d input ids ours, answer \"%s\" "
            "(llava generate: \"%s\")\n",
            cJSON_GetArraySize(ids), a1, a3);
        prep_result_free(&r);
        free(q);
    }
    cJSON_Delete(g), cJSON_Delete(tc), cJSON_Delete(gc), cJSON_Delete(ct);
    tok_free(src), tok_free(ex);
    llava_model_free(&m);
    free(etp), free(out), free(preset), free(tok), free(world);
}

int main(void) {
    check_bpe_export();
    char *world = check_tmpdir();
    CHECK(demo_make_world(world, 4, 0, 1, NULL) == 0, "%s", llava_errmsg());
    char *preset = path_join(world, "stage1.json");
    run_settings c;
    CHECK(settings_load(preset, NULL, 0, &c) == 0, "%s", llava_errmsg());
    llava_model m;
    CHECK(train_build_model(&c, test_cpu(), &m) == 0, "%s", llava_errmsg());
    settings_free(&c);
    int V = m.cfg.text.vocab_size;
    const char *update = getenv("LLAVA_UPDATE_GOLDEN");
    char *out = (update && *update == '1') ? xstrdup(GOLDEN "/model") : path_join(world, "export");
    CHECK(export_llava_hf(&m, out, DT_F32) == 0, "%s", llava_errmsg());
    if (!(update && *update == '1')) check_processor_files(&m, world, out);
    llava_model_free(&m);
    if (update && *update == '1') {
        printf("wrote %s; now run tools/reference/check_export.py\n", out);
        free(out);
        return check_done();
    }
    // The whole CLIP tower is in the export, the layer past the feature layer and post_layernorm
    // included (copied from the tower's file; transformers then loads every weight, none "newly
    // initialised").
    {
        char *clip = path_join(world, "clip/model.safetensors"), *ex = path_join(out, "model.safetensors");
        st_file a, b;
        int n_src = 0, n_out = 0;
        if (st_open(&a, clip) == 0 && st_open(&b, ex) == 0) {
            for (int i = 0; i < a.n_tensors; i++) {
                if (strncmp(a.tensors[i].name, "vision_model.", 13) != 0) continue;
                n_src++;
                char *name = xasprintf("vision_tower.%s", a.tensors[i].name);
                const st_tensor *t = st_find(&b, name);
                n_out += t && t->numel == a.tensors[i].numel &&
                         memcmp(t->data, a.tensors[i].data, t->end - t->begin) == 0 && t->dtype == a.tensors[i].dtype;
                free(name);
            }
            st_close(&a);
            st_close(&b);
        }
        CHECK(n_src > 0 && n_out == n_src, "%d of the tower's %d tensors in the export, identical", n_out, n_src);
        free(clip);
        free(ex);
    }
    // Byte-identical to the folder transformers checked.
    char *a = path_join(out, "model.safetensors"), *b = path_join(out, "config.json");
    CHECK(same_file(a, GOLDEN "/model/model.safetensors"), "model.safetensors differs from the checked export");
    CHECK(same_file(b, GOLDEN "/model/config.json"), "config.json differs from the checked export");
    free(a);
    free(b);
    // transformers loaded that folder cleanly: from_pretrained(..., output_loading_info=True) reported
    // no missing, unexpected or mismatched key and no error (check_export.py records it), and the model
    // it built holds exactly as many tensors as the file.
    {
        size_t n;
        char *text = read_file(GOLDEN "/loading_info.json", 1 << 20, &n);
        CHECK(text != NULL, "%s", llava_errmsg());
        cJSON *info = text ? cJSON_Parse(text) : NULL;
        CHECK(info != NULL, GOLDEN "/loading_info.json does not parse");
        const char *lists[] = {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"};
        for (int i = 0; info && i < 4; i++) {
            const cJSON *l = cJSON_GetObjectItem(info, lists[i]);
            CHECK(cJSON_IsArray(l) && cJSON_GetArraySize(l) == 0, "transformers reported %s: %s", lists[i],
                  l ? cJSON_PrintUnformatted(l) : "(absent)");
        }
        st_file f;
        CHECK(st_open(&f, GOLDEN "/model/model.safetensors") == 0, "%s", llava_errmsg());
        const cJSON *nt = info ? cJSON_GetObjectItem(info, "n_model_tensors") : NULL;
        CHECK(cJSON_IsNumber(nt) && nt->valueint == f.n_tensors, "transformers' model holds %d tensors, the file %d",
              nt ? nt->valueint : -1, f.n_tensors);
        printf(
            "export loaded by transformers (loading_info.json): %d missing, %d unexpected, %d mismatched keys; "
            "its model holds %d tensors, the file %d\n",
            cJSON_GetArraySize(cJSON_GetObjectItem(info, "missing_keys")),
            cJSON_GetArraySize(cJSON_GetObjectItem(info, "unexpected_keys")),
            cJSON_GetArraySize(cJSON_GetObjectItem(info, "mismatched_keys")), nt ? nt->valueint : -1, f.n_tensors);
        st_close(&f);
        cJSON_Delete(info);
        free(text);
    }
    // The export reloads; its vocabulary grew by <image> and <pad> to a multiple of 64.
    llava_model e;
    CHECK(llava_model_load(&e, out, test_cpu()) == 0, "%s", llava_errmsg());
    CHECK(e.cfg.text.vocab_size == (V + 2 + 63) / 64 * 64, "vocab %d from %d", e.cfg.text.vocab_size, V);
    CHECK(e.cfg.glue.image_token_index == V, "image token %d", e.cfg.glue.image_token_index);
    // Our logits and loss on transformers' inputs, against transformers' own.
    llava_batch bt;
    int B = 0, S = 0;
    CHECK(llava_batch_from_file(&bt, &e, GOLDEN "/inputs.safetensors", &B, &S) == 0, "%s", llava_errmsg());
    int Vo = e.cfg.text.vocab_size;
    float *logits = xmalloc(sizeof(float) * (size_t)bt.T * Vo);
    float loss = llava_forward_backward(&e, &bt, 0, 1.0f, logits);
    st_file ref;
    CHECK(st_open(&ref, GOLDEN "/hf_outputs.safetensors") == 0, "%s", llava_errmsg());
    const st_tensor *rl = st_find(&ref, "logits"), *rs = st_find(&ref, "loss");
    float ref_loss = 0;
    float *want = xmalloc(sizeof(float) * rl->numel);
    st_tensor_to_f32(&ref, rl, want);
    st_tensor_to_f32(&ref, rs, &ref_loss);
    double maxd = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < bt.cu_seqlens[r + 1] - bt.cu_seqlens[r]; t++)
            for (int v = 0; v < Vo; v++) {
                double d =
                    fabs((double)logits[(size_t)(bt.cu_seqlens[r] + t) * Vo + v] - want[((size_t)r * S + t) * Vo + v]);
                if (d > maxd) maxd = d;
            }
    // fp32 on both sides (different summation orders): the tolerances of the model parity test
    // (measured here: 6e-7 on logits, loss equal to the printed digits).
    CHECK(maxd <= 1e-5, "logits differ from transformers by %.3g", maxd);
    CHECK(fabs(loss - ref_loss) <= 1e-6 * fabs(ref_loss), "loss %.7f vs transformers %.7f", (double)loss,
          (double)ref_loss);
    printf("export vs transformers 4.46.3: logits max |diff| %.2e, loss %.7f vs %.7f\n", maxd, (double)loss,
           (double)ref_loss);
    free(want);
    free(logits);
    st_close(&ref);
    llava_batch_free(&bt);
    llava_model_free(&e);
    free(preset);
    free(out);
    check_rm_rf(world);
    free(world);
    return check_done();
}
