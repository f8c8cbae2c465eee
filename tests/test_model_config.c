// Hugging Face configs (class defaults for missing keys), parameter counts of the real LLaVA-1.5
// checkpoints, tensor-name mapping for every layout, and loading weights onto the flat tables.
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "model/config.h"
#include "model/io/inspect.h"
#include "model/io/names.h"
#include "model/io/safetensors.h"
#include "model/params.h"

static int parse(const char *json, model_config *mc) { return model_config_parse(json, strlen(json), "test.json", mc); }

static void test_defaults(void) {
    model_config mc;
    // LlamaConfig defaults, including rms_norm_eps 1e-6 (Vicuna's explicit 1e-5 differs).
    CHECK(parse("{\"model_type\":\"llama\"}", &mc) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(mc.kind, HF_LLAMA);
    CHECK(mc.text.rms_norm_eps == 1e-6f, "rms_norm_eps default %g", (double)mc.text.rms_norm_eps);
    CHECK_EQ_INT(mc.text.max_position_embeddings, 2048);
    CHECK_EQ_INT(mc.text.vocab_size, 32000);
    CHECK_EQ_INT(mc.text.num_key_value_heads, 32);
    CHECK_EQ_INT(mc.text.head_dim, 128);
    CHECK(mc.text.rope_theta == 10000.0, "rope_theta");
    CHECK_EQ_STR(mc.text.hidden_act, "silu");
    CHECK_EQ_INT(mc.text.pad_token_id, -1);
    // CLIPVisionConfig defaults.
    CHECK(parse("{\"model_type\":\"clip_vision_model\"}", &mc) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(mc.vision.hidden_size, 768);
    CHECK_EQ_INT(mc.vision.patch_size, 32);
    CHECK_EQ_INT(mc.vision.image_size, 224);
    CHECK_EQ_INT(mc.vision.num_hidden_layers, 12);
    CHECK_EQ_STR(mc.vision.hidden_act, "quick_gelu");
    CHECK(mc.vision.layer_norm_eps == 1e-5f, "clip eps");
    // LlavaConfig with nothing: CLIP-L/336 vision tower, LlamaConfig text, glue defaults.
    CHECK(parse("{\"model_type\":\"llava\"}", &mc) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(mc.kind, HF_LLAVA_HF);
    CHECK_EQ_INT(mc.vision.hidden_size, 1024);
    CHECK_EQ_INT(mc.vision.image_size, 336);
    CHECK_EQ_STR(mc.vision.hidden_act, "quick_gelu");
    CHECK_EQ_INT(mc.glue.image_token_index, 32000);
    CHECK_EQ_INT(mc.glue.vision_feature_layer, -2);
    CHECK_EQ_INT(mc.glue.drop_cls, 1);
    CHECK_EQ_INT(llava_vision_layers_used(&mc), 23);
    CHECK_EQ_INT(mc.text.head_dim, 128);
    // The alias image_token_id and a "full" select strategy.
    CHECK(
        parse("{\"model_type\":\"llava\",\"image_token_id\":7,\"vision_feature_select_strategy\":\"full\"}", &mc) == 0,
        "alias");
    CHECK_EQ_INT(mc.glue.image_token_index, 7);
    CHECK_EQ_INT(mc.glue.drop_cls, 0);
}

// The language-model families: Llama-3.1's rope_scaling, Mistral's window, Qwen2's q/k/v biases.
static void test_families(void) {
    model_config mc;
    CHECK(parse("{\"model_type\":\"llama\",\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":8.0,"
                "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,"
                "\"rope_type\":\"llama3\"}}",
                &mc) == 0,
          "%s", llava_errmsg());
    CHECK(mc.text.rope_llama3 && mc.text.rope_factor == 8 && mc.text.rope_high_freq_factor == 4 &&
              mc.text.rope_original_max == 8192 && mc.text.rope_theta == 500000,
          "llama3 rope_scaling");
    CHECK(parse("{\"model_type\":\"mistral\",\"sliding_window\":4096,\"num_key_value_heads\":8}", &mc) == 0, "%s",
          llava_errmsg());
    CHECK(mc.text.sliding_window == 4096 && mc.text.num_key_value_heads == 8 && !mc.text.qkv_bias, "mistral");
    CHECK(parse("{\"model_type\":\"mistral\",\"sliding_window\":null}", &mc) == 0 && mc.text.sliding_window == 0,
          "mistral without a window");
    CHECK(parse("{\"model_type\":\"llava\",\"text_config\":{\"model_type\":\"qwen2\",\"use_sliding_window\":false,"
                "\"tie_word_embeddings\":true}}",
                &mc) == 0,
          "%s", llava_errmsg());
    CHECK(mc.text.qkv_bias && !mc.text.attention_bias && mc.text.tie_word_embeddings &&
              !strcmp(mc.text.model_type, "qwen2"),
          "qwen2 text_config");
}

static void test_errors(void) {
    model_config mc;
    CHECK(parse("{\"model_type\":\"llama\",\"hidden_size\":\"4096\"}", &mc) != 0, "string size accepted");
    CHECK_ERR_HAS("hidden_size");
    CHECK(parse("{\"model_type\":\"gemma\"}", &mc) != 0, "gemma accepted");
    CHECK_ERR_HAS("gemma");
    CHECK(parse("{\"hidden_size\":4096}", &mc) != 0, "no model_type accepted");
    CHECK_ERR_HAS("model_type");
    CHECK(parse("{\"model_type\":\"llava\",\"vision_feature_layer\":[-2,-5]}", &mc) != 0, "layer list accepted");
    CHECK_ERR_HAS("vision_feature_layer");
    CHECK(parse("{\"model_type\":\"llava\",\"vision_feature_layer\":-30}", &mc) != 0, "layer -30 accepted");
    CHECK_ERR_HAS("outside");
    CHECK(parse("{\"model_type\":\"llama\",\"hidden_size\":100,\"num_attention_heads\":3}", &mc) != 0,
          "100/3 accepted");
    CHECK_ERR_HAS("divisible");
    CHECK(parse("{\"model_type\":\"llava\",\"text_config\":{\"model_type\":\"gemma\"}}", &mc) != 0, "gemma text");
    CHECK_ERR_HAS("text_config");
    CHECK_ERR_HAS("llama, mistral, qwen2");
    CHECK(parse("{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", &mc) == 0 &&
              mc.text.has_rope_scaling && !mc.text.rope_llama3,
          "yarn read as llama3");
    CHECK(parse("{\"model_type\":\"qwen2\",\"use_sliding_window\":true}", &mc) != 0, "Qwen2's window accepted");
    CHECK_ERR_HAS("use_sliding_window");
    CHECK(parse("[1]", &mc) != 0, "array accepted");
    CHECK(parse("{\"model_type\":\"llava\",\"mm_vision_tower\":\"x\",\"mm_projector_type\":\"qformer\"}", &mc) != 0,
          "qformer");
    CHECK_ERR_HAS("qformer");
    CHECK(model_config_load("tests/data/does-not-exist", &mc) != 0, "missing folder");
    CHECK_ERR_HAS("does-not-exist");
}

static uint64_t total(const uint64_t c[N_GROUPS]) { return c[0] + c[1] + c[2]; }

static void test_published_counts(void) {
    inspect_result r;
    CHECK(inspect_path("tests/data/hf/vicuna-7b-v1.5", NULL, &r) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(r.count_all[GROUP_LM], 6738415616ull);
    CHECK(r.config.text.rms_norm_eps == 1e-5f, "vicuna eps 1e-5");
    CHECK_EQ_INT(r.config.text.pad_token_id, 0);
    CHECK_EQ_INT(r.has_weights, 0);
    CHECK(inspect_path("tests/data/hf/vicuna-13b-v1.5/config.json", NULL, &r) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(r.count_all[GROUP_LM], 13015864320ull);
    CHECK(inspect_path("tests/data/hf/clip-vit-large-patch14-336", NULL, &r) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(r.config.kind, HF_CLIP);
    CHECK_EQ_INT(r.count_all[GROUP_VISION], 303507456ull);
    CHECK_EQ_INT(r.count_used[GROUP_VISION], 303507456ull);  // a bare tower runs every layer
    // llava-hf 7B: the projector, the tower LLaVA runs (23 layers, no post_layernorm), vocab 32064.
    CHECK(inspect_path("tests/data/hf/llava-1.5-7b-hf", NULL, &r) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(r.count_all[GROUP_PROJECTOR], 20979712ull);
    CHECK_EQ_INT(r.count_all[GROUP_VISION], 303507456ull);
    CHECK_EQ_INT(r.count_used[GROUP_VISION], 303507456ull - 12596224ull - 2048ull);
    CHECK_EQ_INT(r.count_all[GROUP_LM], 6738415616ull + 2ull * 64 * 4096);
    CHECK(r.config.text.rms_norm_eps == 1e-5f, "text_config eps");
    CHECK_EQ_INT(r.config.text.max_position_embeddings, 4096);
    CHECK_EQ_INT(r.config.glue.pad_token_id, 32001);
    CHECK(inspect_path("tests/data/hf/llava-1.5-13b-hf", NULL, &r) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(r.count_all[GROUP_PROJECTOR], 31467520ull);
    CHECK_EQ_INT(r.count_all[GROUP_LM], 13015864320ull + 2ull * 64 * 5120);
    // Original LLaVA: LlamaConfig + mm_* keys; the tower's shape follows from its name.
    CHECK(inspect_path("tests/data/hf/llava-v1.5-7b", NULL, &r) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(r.config.kind, HF_LLAVA_ORIGINAL);
    CHECK_EQ_INT(r.config.glue.image_token_index, -200);
    CHECK_EQ_INT(r.count_all[GROUP_PROJECTOR], 20979712ull);
    CHECK_EQ_INT(r.count_all[GROUP_LM], 6738415616ull);
    CHECK_EQ_INT(r.count_all[GROUP_VISION], 303507456ull);
    CHECK_EQ_INT(total(r.count_all), 6738415616ull + 20979712ull + 303507456ull);
    CHECK(inspect_path("tests/data/hf/llava-v1.5-13b", NULL, &r) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(r.count_all[GROUP_PROJECTOR], 31467520ull);
    CHECK_EQ_INT(r.count_all[GROUP_LM], 13015864320ull);
}

static void test_names(void) {
    static const struct {
        const char *ext, *internal;
        weight_layout layout;
    } cases[] = {
        {"language_model.model.layers.3.mlp.up_proj.weight", "lm.model.layers.3.mlp.up_proj.weight",
         LAYOUT_LLAVA_HF_LEGACY},
        {"language_model.lm_head.weight", "lm.lm_head.weight", LAYOUT_LLAVA_HF_LEGACY},
        {"vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias",
         "vision.encoder.layers.0.self_attn.q_proj.bias", LAYOUT_LLAVA_HF_LEGACY},
        {"multi_modal_projector.linear_2.weight", "projector.linear_2.weight", LAYOUT_LLAVA_HF_LEGACY},
        {"model.language_model.embed_tokens.weight", "lm.model.embed_tokens.weight", LAYOUT_LLAVA_HF},
        {"model.vision_tower.vision_model.pre_layrnorm.weight", "vision.pre_layrnorm.weight", LAYOUT_LLAVA_HF},
        {"model.multi_modal_projector.linear_1.bias", "projector.linear_1.bias", LAYOUT_LLAVA_HF},
        {"model.mm_projector.0.weight", "projector.linear_1.weight", LAYOUT_LLAVA_ORIGINAL},
        {"model.mm_projector.2.bias", "projector.linear_2.bias", LAYOUT_LLAVA_ORIGINAL},
        {"base_model.model.model.mm_projector.2.weight", "projector.linear_2.weight", LAYOUT_LLAVA_ORIGINAL},
        {"model.vision_tower.vision_tower.vision_model.post_layernorm.bias", "vision.post_layernorm.bias",
         LAYOUT_LLAVA_ORIGINAL},
        {"model.layers.31.self_attn.o_proj.weight", "lm.model.layers.31.self_attn.o_proj.weight", LAYOUT_UNKNOWN},
        {"lm_head.weight", "lm.lm_head.weight", LAYOUT_UNKNOWN},
        {"vision_model.embeddings.class_embedding", "vision.embeddings.class_embedding", LAYOUT_CLIP},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *in = NULL;
        weight_layout l;
        name_status s = name_to_internal(cases[i].ext, &in, &l);
        CHECK(s == NAME_MAPPED && in && strcmp(in, cases[i].internal) == 0, "%s -> %s", cases[i].ext,
              in ? in : "(none)");
        CHECK(l == cases[i].layout, "%s layout %d", cases[i].ext, l);
        free(in);
    }
    const char *ignored[] = {"model.layers.0.self_attn.rotary_emb.inv_freq",
                             "vision_model.embeddings.position_ids",
                             "text_model.encoder.layers.0.mlp.fc1.weight",
                             "logit_scale",
                             "visual_projection.weight",
                             "text_projection.weight"};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
        char *in = NULL;
        CHECK(name_to_internal(ignored[i], &in, NULL) == NAME_IGNORED, "%s ignored", ignored[i]);
    }
    // A projector of up to PROJ_MAX_DEPTH (16) Linear layers: linear_17 is none, nor is an odd nn.Sequential index
    // (a GELU has no weights).
    // LLaVA-NeXT's AnyRes newline: top-level in the legacy layout, under model. in the new one, both ways.
    {
        char *in = NULL, *back = NULL;
        CHECK(
            name_to_internal("image_newline", &in, NULL) == NAME_MAPPED && in && !strcmp(in, "projector.image_newline"),
            "image_newline: %s", in ? in : "(none)");
        back = in ? name_from_internal(in, LAYOUT_LLAVA_HF_LEGACY, 0) : NULL;
        CHECK(back && !strcmp(back, "image_newline"), "back: %s", back ? back : "");
        free(back);
        back = in ? name_from_internal(in, LAYOUT_LLAVA_HF, 0) : NULL;
        CHECK(back && !strcmp(back, "model.image_newline"), "back (new layout): %s", back ? back : "");
        free(back), free(in);
    }
    const char *unknown[] = {"multi_modal_projector.linear_17.weight", "model.mm_projector.0.scale",
                             "model.mm_projector.1.weight", "language_model.model."};
    {
        char *in = NULL;
        CHECK(name_to_internal("model.mm_projector.4.bias", &in, NULL) == NAME_MAPPED && in &&
                  !strcmp(in, "projector.linear_3.bias"),
              "mm_projector.4 is linear_3: %s", in ? in : "(none)");
        char *back = in ? name_from_internal(in, LAYOUT_LLAVA_ORIGINAL, 0) : NULL;
        CHECK(back && !strcmp(back, "model.mm_projector.4.bias"), "linear_3 is mm_projector.4: %s", back ? back : "");
        free(in), free(back);
        in = NULL;
        CHECK(name_to_internal("multi_modal_projector.linear_3.weight", &in, NULL) == NAME_MAPPED && in &&
                  !strcmp(in, "projector.linear_3.weight"),
              "llava-hf linear_3: %s", in ? in : "(none)");
        free(in);
    }
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        char *in = NULL;
        CHECK(name_to_internal(unknown[i], &in, NULL) == NAME_UNKNOWN, "%s unknown", unknown[i]);
    }
    // Back to each layout.
    static const struct {
        const char *internal;
        weight_layout layout;
        const char *ext;
    } back[] = {
        {"lm.model.norm.weight", LAYOUT_LLAVA_HF_LEGACY, "language_model.model.norm.weight"},
        {"lm.lm_head.weight", LAYOUT_LLAVA_HF_LEGACY, "language_model.lm_head.weight"},
        {"lm.model.norm.weight", LAYOUT_LLAVA_HF, "model.language_model.norm.weight"},
        {"lm.lm_head.weight", LAYOUT_LLAVA_HF, "lm_head.weight"},
        {"vision.pre_layrnorm.bias", LAYOUT_LLAVA_HF, "model.vision_tower.vision_model.pre_layrnorm.bias"},
        {"projector.linear_2.weight", LAYOUT_LLAVA_ORIGINAL, "model.mm_projector.2.weight"},
        {"vision.pre_layrnorm.bias", LAYOUT_LLAVA_ORIGINAL,
         "model.vision_tower.vision_tower.vision_model.pre_layrnorm.bias"},
        {"lm.model.embed_tokens.weight", LAYOUT_LLAMA, "model.embed_tokens.weight"},
        {"vision.post_layernorm.weight", LAYOUT_CLIP, "vision_model.post_layernorm.weight"},
    };
    for (size_t i = 0; i < sizeof back / sizeof back[0]; i++) {
        char *e = name_from_internal(back[i].internal, back[i].layout, 0);
        CHECK(e && strcmp(e, back[i].ext) == 0, "%s in %s -> %s", back[i].internal, layout_name(back[i].layout),
              e ? e : "(none)");
        free(e);
    }
    char *e = name_from_internal("projector.linear_1.weight", LAYOUT_LLAMA, 0);
    CHECK(e == NULL, "a vicuna file has no projector");
    e = name_from_internal("projector.linear_1.bias", LAYOUT_LLAVA_ORIGINAL, 1);
    CHECK(e && strcmp(e, "model.mm_projector.bias") == 0, "linear projector %s", e ? e : "(none)");
    free(e);
}

// A small llava-hf config whose every size differs, so a transposed shape cannot pass.
static const char *TINY =
    "{\"model_type\":\"llava\",\"image_token_index\":60,\"text_config\":{\"model_type\":\"llama\",\"hidden_size\":24,"
    "\"intermediate_size\":40,\"num_hidden_layers\":2,\"num_attention_heads\":3,\"vocab_size\":64,\"rms_norm_eps\":1e-"
    "5},"
    "\"vision_config\":{\"hidden_size\":16,\"intermediate_size\":20,\"num_hidden_layers\":3,\"num_attention_heads\":2,"
    "\"image_size\":12,\"patch_size\":4}}";

// Writes every view of `pt` under its name in `layout`, value = view index + element/1000.
static void write_layout(const param_table *pt, weight_layout layout, const char *path, const char *skip,
                         const char *extra) {
    st_writer w;
    st_writer_init(&w);
    float **bufs = xcalloc((size_t)pt->n_views, sizeof(float *));
    for (int i = 0; i < pt->n_views; i++) {
        const param_view *v = &pt->views[i];
        char *ext = name_from_internal(v->name, layout, pt->linear_projector);
        if (!ext || (skip && strcmp(v->name, skip) == 0)) {
            free(ext);
            continue;
        }
        bufs[i] = xmalloc(sizeof(float) * v->numel);
        for (size_t k = 0; k < v->numel; k++) bufs[i][k] = (float)i + (float)(k % 1000) / 1000.0f;
        CHECK(st_writer_add_f32(&w, ext, DT_F32, v->ndim, v->shape, bufs[i]) == 0, "%s", llava_errmsg());
        free(ext);
    }
    float one = 1.0f;
    int64_t shape1[1] = {1};
    if (extra) st_writer_add_f32(&w, extra, DT_F32, 1, shape1, &one);
    CHECK(st_writer_save(&w, path) == 0, "%s", llava_errmsg());
    st_writer_free(&w);
    for (int i = 0; i < pt->n_views; i++) free(bufs[i]);
    free(bufs);
}

static void test_load_layouts(void) {
    model_config mc;
    CHECK(parse(TINY, &mc) == 0, "%s", llava_errmsg());
    param_table pt;
    CHECK(param_table_build(&mc, &pt) == 0, "%s", llava_errmsg());
    // head_dim 8, vision: 3 layers of which 2 run (feature layer -2).
    CHECK_EQ_INT(mc.text.head_dim, 8);
    const param_view *v = param_find(&pt, "vision.encoder.layers.2.mlp.fc1.weight");
    CHECK(v && !v->used, "vision layer 2 is not computed");
    v = param_find(&pt, "vision.encoder.layers.1.mlp.fc1.weight");
    CHECK(v && v->used && v->shape[0] == 20 && v->shape[1] == 16, "fc1 [20,16]");
    v = param_find(&pt, "projector.linear_1.weight");
    CHECK(v && v->shape[0] == 24 && v->shape[1] == 16, "linear_1 [24,16]");
    CHECK(param_find(&pt, "vision.post_layernorm.weight") && !param_find(&pt, "vision.post_layernorm.weight")->used,
          "post_layernorm unused inside LLaVA");
    // Flat buffers: used views follow each other in order, each at the next multiple of
    // PARAM_ALIGN elements, and the group ends with the last view.
    for (int g = 0; g < N_GROUPS; g++) {
        size_t end = 0;
        for (int i = 0; i < pt.n_views; i++)
            if (pt.views[i].group == g && pt.views[i].used) {
                size_t want = (end + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
                CHECK(pt.views[i].offset == want, "%s offset %zu, want %zu", pt.views[i].name, pt.views[i].offset,
                      want);
                end = pt.views[i].offset + pt.views[i].numel;
            }
        CHECK_EQ_INT(end, pt.group_numel[g]);
    }
    char *dir = check_tmpdir();
    weight_layout layouts[3] = {LAYOUT_LLAVA_HF_LEGACY, LAYOUT_LLAVA_HF, LAYOUT_LLAVA_ORIGINAL};
    for (int li = 0; li < 3; li++) {
        char *p = path_join(dir, "model.safetensors");
        write_layout(&pt, layouts[li], p, NULL, NULL);
        st_set s;
        CHECK(st_set_open(&s, p) == 0, "%s", llava_errmsg());
        param_alloc(&pt);
        load_report rep;
        CHECK(param_load(&pt, &s, 1, &rep) == 0, "%s", llava_errmsg());
        CHECK(rep.n_missing == 0 && rep.n_unexpected == 0 && rep.n_mismatched == 0,
              "%s: %d missing %d unexpected %d mismatched", layout_name(layouts[li]), rep.n_missing, rep.n_unexpected,
              rep.n_mismatched);
        CHECK(rep.layout == layouts[li], "detected %s, wrote %s", layout_name(rep.layout), layout_name(layouts[li]));
        CHECK_EQ_INT(rep.n_unused, 16 + 2);  // vision layer 2 (16 tensors) and post_layernorm
        // Each view got its own data.
        int bad = 0;
        for (int i = 0; i < pt.n_views; i++) {
            float *d = param_ptr(&pt, &pt.views[i]);
            if (!d) continue;
            for (size_t k = 0; k < pt.views[i].numel; k++)
                if (d[k] != (float)i + (float)(k % 1000) / 1000.0f) bad++;
        }
        CHECK(bad == 0, "%d values landed in the wrong place", bad);
        load_report_free(&rep);
        st_set_close(&s);
        free(p);
    }
    // Reporting: a missing tensor, an unexpected one and a wrong shape.
    char *p = path_join(dir, "model.safetensors");
    write_layout(&pt, LAYOUT_LLAVA_HF_LEGACY, p, "lm.model.norm.weight",
                 "language_model.model.layers.0.mystery.weight");
    st_set s;
    CHECK(st_set_open(&s, p) == 0, "%s", llava_errmsg());
    load_report rep;
    param_load(&pt, &s, 0, &rep);
    CHECK(rep.n_missing == 1 && strcmp(rep.missing[0], "lm.model.norm.weight") == 0, "missing norm (%d)",
          rep.n_missing);
    CHECK(rep.n_unexpected == 1 && strcmp(rep.unexpected[0], "language_model.model.layers.0.mystery.weight") == 0,
          "unexpected mystery (%d)", rep.n_unexpected);
    load_report_free(&rep);
    st_set_close(&s);
    model_config wide;
    CHECK(parse("{\"model_type\":\"llava\",\"image_token_index\":60,\"text_config\":{\"model_type\":\"llama\",\"hidden_"
                "size\":24,"
                "\"intermediate_size\":40,\"num_hidden_layers\":2,\"num_attention_heads\":3,\"vocab_size\":65},"
                "\"vision_config\":{\"hidden_size\":16,\"intermediate_size\":20,\"num_hidden_layers\":3,"
                "\"num_attention_heads\":2,\"image_size\":12,\"patch_size\":4}}",
                &wide) == 0,
          "wide");
    param_table pw;
    param_table_build(&wide, &pw);
    write_layout(&pt, LAYOUT_LLAVA_HF_LEGACY, p, NULL, NULL);
    CHECK(st_set_open(&s, p) == 0, "%s", llava_errmsg());
    param_load(&pw, &s, 0, &rep);
    CHECK_EQ_INT(rep.n_mismatched, 2);  // embed_tokens and lm_head: vocab 64 in the file, 65 in the config
    CHECK(rep.n_mismatched > 0 && strstr(rep.mismatched[0], "[64, 24]") && strstr(rep.mismatched[0], "[65, 24]"),
          "mismatch message: %s", rep.n_mismatched ? rep.mismatched[0] : "");
    load_report_free(&rep);
    st_set_close(&s);
    param_table_free(&pw);
    // The inspect report over a folder with config + weights.
    char *cfgp = path_join(dir, "config.json");
    CHECK(write_file_atomic(cfgp, TINY, strlen(TINY)) == 0, "config");
    inspect_result r;
    CHECK(inspect_path(dir, NULL, &r) == 0, "%s", llava_errmsg());
    CHECK(r.has_weights && r.n_missing == 0 && r.n_unexpected == 0 && r.layout == LAYOUT_LLAVA_HF_LEGACY,
          "inspect tiny");
    CHECK_EQ_INT(r.n_tensors, pt.n_views);
    CHECK_EQ_INT(r.dtype_count[DT_F32], pt.n_views);
    free(cfgp);
    free(p);
    param_table_free(&pt);

    // Vicuna alone and CLIP alone (with its text tower, which is ignored).
    CHECK(parse("{\"model_type\":\"llama\",\"hidden_size\":24,\"intermediate_size\":40,\"num_hidden_layers\":1,"
                "\"num_attention_heads\":3,\"vocab_size\":64}",
                &mc) == 0,
          "llama");
    param_table_build(&mc, &pt);
    p = path_join(dir, "vicuna.safetensors");
    write_layout(&pt, LAYOUT_LLAMA, p, NULL, "model.layers.0.self_attn.rotary_emb.inv_freq");
    CHECK(st_set_open(&s, p) == 0, "%s", llava_errmsg());
    param_load(&pt, &s, 0, &rep);
    CHECK(rep.n_missing == 0 && rep.n_unexpected == 0 && rep.n_ignored == 1 && rep.layout == LAYOUT_LLAMA,
          "vicuna layout");
    load_report_free(&rep);
    st_set_close(&s);
    param_table_free(&pt);
    free(p);
    CHECK(parse("{\"model_type\":\"clip\",\"vision_config\":{\"hidden_size\":16,\"intermediate_size\":20,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"image_size\":8,\"patch_size\":4}}",
                &mc) == 0,
          "clip");
    param_table_build(&mc, &pt);
    p = path_join(dir, "clip.safetensors");
    write_layout(&pt, LAYOUT_CLIP, p, NULL, "text_model.embeddings.token_embedding.weight");
    CHECK(st_set_open(&s, p) == 0, "%s", llava_errmsg());
    param_load(&pt, &s, 0, &rep);
    CHECK(rep.n_missing == 0 && rep.n_unexpected == 0 && rep.n_ignored == 1 && rep.n_unused == 0 &&
              rep.layout == LAYOUT_CLIP,
          "clip layout: %d %d %d %d", rep.n_missing, rep.n_unexpected, rep.n_ignored, rep.n_unused);
    load_report_free(&rep);
    st_set_close(&s);
    param_table_free(&pt);
    free(p);
    check_rm_rf(dir);
    free(dir);
}

// Folders written by transformers' save_pretrained (tools/reference/make_model_goldens.py) load
// without conversion: every tensor maps, values arrive unchanged.
static void test_save_pretrained_folders(void) {
    const char *dirs[] = {"tests/data/golden/model/tiny64/model", "tests/data/golden/model/tiny128/model"};
    for (int d = 0; d < 2; d++) {
        model_config mc;
        CHECK(model_config_load(dirs[d], &mc) == 0, "%s", llava_errmsg());
        param_table pt;
        CHECK(param_table_build(&mc, &pt) == 0, "%s", llava_errmsg());
        st_set s;
        CHECK(st_set_open(&s, dirs[d]) == 0, "%s", llava_errmsg());
        param_alloc(&pt);
        load_report rep;
        CHECK(param_load(&pt, &s, 1, &rep) == 0, "%s", llava_errmsg());
        CHECK(rep.n_missing == 0 && rep.n_unexpected == 0 && rep.n_mismatched == 0, "%s: %d/%d/%d", dirs[d],
              rep.n_missing, rep.n_unexpected, rep.n_mismatched);
        CHECK(rep.layout == LAYOUT_LLAVA_HF_LEGACY, "%s layout %s", dirs[d], layout_name(rep.layout));
        CHECK_EQ_INT(rep.n_unused, 18);  // the last vision layer (16 tensors) and post_layernorm
        const st_file *f;
        const st_tensor *t = st_set_find(&s, "language_model.model.layers.1.mlp.down_proj.weight", &f);
        const param_view *v = param_find(&pt, "lm.model.layers.1.mlp.down_proj.weight");
        CHECK(t && v && memcmp(t->data, param_ptr(&pt, v), v->numel * 4) == 0, "down_proj values");
        t = st_set_find(&s, "vision_tower.vision_model.embeddings.patch_embedding.weight", &f);
        v = param_find(&pt, "vision.embeddings.patch_embedding.weight");
        CHECK(t && v && v->ndim == 4 && memcmp(t->data, param_ptr(&pt, v), v->numel * 4) == 0,
              "patch_embedding values");
        load_report_free(&rep);
        st_set_close(&s);
        param_table_free(&pt);
    }
}

// The research variants' combinations that cannot work are refused with the key named (llava_glue_check), and the
// tokens per image follow each reduction.
static void test_glue_checks(void) {
    model_config c;
    CHECK(model_config_load("tests/data/golden/model/abl_avgpool/model", &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(llava_tokens_per_image(&c), 4);  // 5x5 grid, average pooling at stride 2: floor, 2x2
    c.glue.pool_mode = POOL_BILINEAR;
    CHECK_EQ_INT(llava_tokens_per_image(&c), 9);  // ceil(5 / 2)^2
    c.glue.pool_stride = 6;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "mm_spatial_pool_stride 6"), "stride past the grid: %s",
          llava_errmsg());
    c.glue.pool_stride = 2;
    c.glue.drop_cls = 0;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "whole patch grid"), "pooling with CLS kept: %s",
          llava_errmsg());
    c.glue.drop_cls = 1, c.glue.pool_mode = POOL_NONE, c.glue.keep_tokens = 26;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "mm_vision_keep_tokens 26"), "K past the grid: %s",
          llava_errmsg());
    c.glue.keep_tokens = 0, c.glue.projector_depth = 0;  // tower 32 wide, LM 64
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "identity"), "identity across widths: %s",
          llava_errmsg());
    // Video frames only (LlavaNextVideo's spatial_pool_mode): images keep their 25 tokens, frames (5 / 2)^2 = 4.
    c.glue.projector_depth = 2, c.glue.video_pool_mode = POOL_MAX, c.glue.video_pool_stride = 2;
    CHECK(llava_glue_check(&c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(llava_tokens_per_image(&c), 25);
    CHECK_EQ_INT(llava_tokens_per_video_frame(&c), 4);
    c.glue.video_pool_stride = 3;
    CHECK_EQ_INT(llava_tokens_per_video_frame(&c), 1);  // floor(5 / 3)^2, as AvgPool2d without padding
    c.glue.pool_mode = POOL_AVERAGE;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "video_pool_mode max with mm_spatial_pool_mode"),
          "video pooling with the all-images pooling: %s", llava_errmsg());
    c.glue.pool_mode = POOL_NONE, c.glue.anyres = 1;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "video_pool_mode max with AnyRes"),
          "video pooling with AnyRes: %s", llava_errmsg());
    c.glue.anyres = 0, c.glue.video_pool_stride = 6;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "video_pool_stride 6"), "stride past the grid: %s",
          llava_errmsg());
    c.glue.video_pool_stride = 2, c.glue.video_pool_mode = POOL_BILINEAR;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "video_pool_mode bilinear"), "bilinear: %s",
          llava_errmsg());
    c.glue.video_pool_mode = POOL_NONE;
    CHECK(model_config_load("tests/data/golden/model/siglip_full/model", &c) == 0, "%s", llava_errmsg());
    CHECK(llava_glue_check(&c) == 0, "%s", llava_errmsg());
    c.glue.keep_tokens = 4;
    CHECK(llava_glue_check(&c) != 0 && strstr(llava_errmsg(), "SigLIP tower has none"), "pruning on SigLIP: %s",
          llava_errmsg());
    c.glue.keep_tokens = 0;
    CHECK(vision_run_at(&c.vision, 22) != 0 && strstr(llava_errmsg(), "not a positive multiple"),
          "22 px on patch 4: %s", llava_errmsg());
    CHECK(vision_run_at(&c.vision, 24) == 0 && c.vision.pos_grid == 5 && llava_tokens_per_image(&c) == 36,
          "run at 24 px: grid of the stored positions %d, %d tokens", c.vision.pos_grid, llava_tokens_per_image(&c));
}

int main(void) {
    test_glue_checks();
    test_save_pretrained_folders();
    test_defaults();
    test_families();
    test_errors();
    test_published_counts();
    test_names();
    test_load_layouts();
    return check_done();
}
