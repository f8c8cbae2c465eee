// Reading the resolved configuration into typed settings (settings.h): the one place that looks
// keys up by their strings.
#include "settings.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static char **dup_list(const train_config *c, const char *key, int *n) {
    *n = cfg_list_len(c, key);
    char **out = xcalloc((size_t)(*n ? *n : 1), sizeof(char *));
    for (int i = 0; i < *n; i++) out[i] = xstrdup(cfg_list_item(c, key, i));
    return out;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

int settings_from_config(const train_config *c, run_settings *s) {
    memset(s, 0, sizeof *s);
    s->source = xstrdup(c->source ? c->source : "(defaults)");
    s->config_json = cfg_to_json(c);

    model_settings *m = &s->model;
    m->llm = dup_or_null(cfg_str(c, "model.llm"));
    m->vision_tower = dup_or_null(cfg_str(c, "model.vision_tower"));
    m->init = dup_or_null(cfg_str(c, "model.init"));
    m->tokenizer = dup_or_null(cfg_str(c, "model.tokenizer"));
    m->pretrain_mm_mlp_adapter = dup_or_null(cfg_str(c, "model.pretrain_mm_mlp_adapter"));
    if (llava_projector_parse(cfg_str(c, "model.mm_projector_type"), &m->projector_depth) ||
        llava_pool_parse(cfg_str(c, "model.mm_spatial_pool_mode"), &m->pool_mode))
        return llava_fail_ctx("%s", s->source);
    m->pool_stride = cfg_int(c, "model.mm_spatial_pool_stride");
    m->keep_tokens = cfg_int(c, "model.mm_vision_keep_tokens");
    if (llava_pool_parse(cfg_str(c, "model.video_pool_mode"), &m->video_pool_mode))
        return llava_fail_ctx("%s: model.video_pool_mode", s->source);
    m->video_pool_stride = cfg_int(c, "model.video_pool_stride");
    m->vision_image_size = cfg_int(c, "model.mm_vision_image_size");
    m->vision_select_layer = cfg_int(c, "model.mm_vision_select_layer");
    m->drop_cls = strcmp(cfg_str(c, "model.mm_vision_select_feature"), "patch") == 0;
    m->ignore_unexpected_weights = cfg_bool(c, "model.ignore_unexpected_weights");

    data_settings *d = &s->data;
    d->data_path = dup_or_null(cfg_str(c, "data.data_path"));
    d->image_folder = dup_or_null(cfg_str(c, "data.image_folder"));
    d->template_name = xstrdup(cfg_str(c, "data.template"));
    d->tokenizer_mode_name = xstrdup(cfg_str(c, "data.tokenizer_mode"));
    d->aspect_name = xstrdup(cfg_str(c, "data.image_aspect_ratio"));
    d->aspect = strcmp(d->aspect_name, "pad") == 0 ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE;
    d->anyres_max = llava_anyres_max_parse(d->aspect_name);  // the config's check let only N >= 1 through
    d->anyres = strcmp(d->aspect_name, "anyres") == 0 || d->anyres_max > 0;
    d->grid_pinpoints = xstrdup(cfg_str(c, "data.image_grid_pinpoints"));
    d->model_max_length = cfg_int(c, "data.model_max_length");
    d->video_frames = cfg_int(c, "data.video_frames");
    d->max_images = cfg_int(c, "data.max_images_per_sample");
    d->group_by_modality_length = cfg_bool(c, "data.group_by_modality_length");
    d->num_workers = cfg_int(c, "data.dataloader_num_workers");
    d->truncate_after_splice = cfg_bool(c, "data.truncate_after_splice");
    d->sampler_seed = cfg_int(c, "data.sampler_seed");
    d->single_process_order = strcmp(cfg_str(c, "data.sampler_order"), "llava-single-process") == 0;
    d->prefetch = cfg_int(c, "data.prefetch");
    d->token_budget = cfg_int(c, "data.token_budget");
    d->strict = cfg_bool(c, "data.strict");

    train_settings *t = &s->train;
    t->stage = cfg_int(c, "train.stage");
    t->projector = cfg_list_has(c, "train.trainable", "projector");
    t->lm = cfg_list_has(c, "train.trainable", "lm");
    t->vision = cfg_list_has(c, "train.trainable", "vision");
    t->lora = cfg_list_has(c, "train.trainable", "lora");
    t->freeze = dup_list(c, "train.freeze", &t->n_freeze);
    t->num_train_epochs = cfg_float(c, "train.num_train_epochs");
    t->max_steps = cfg_int(c, "train.max_steps");
    t->per_device_batch = cfg_int(c, "train.per_device_train_batch_size");
    t->per_device_eval_batch = cfg_int(c, "train.per_device_eval_batch_size");
    t->grad_accum = cfg_int(c, "train.gradient_accumulation_steps");
    t->global_batch = cfg_int(c, "train.global_batch_size");
    t->learning_rate = cfg_float(c, "train.learning_rate");
    t->projector_lr = cfg_float(c, "train.mm_projector_lr");
    t->vision_lr = cfg_float(c, "train.mm_vision_tower_lr");
    t->vision_last = cfg_int(c, "train.vision_unfreeze_last");
    t->vision_checkpointing = cfg_bool(c, "train.vision_gradient_checkpointing");
    t->weight_decay = cfg_float(c, "train.weight_decay");
    t->beta1 = cfg_float(c, "train.adam_beta1");
    t->beta2 = cfg_float(c, "train.adam_beta2");
    t->eps = cfg_float(c, "train.adam_epsilon");
    t->max_grad_norm = cfg_float(c, "train.max_grad_norm");
    const char *sched = cfg_str(c, "train.lr_scheduler_type");
    t->schedule = !strcmp(sched, "linear")                 ? SCHED_LINEAR
                  : !strcmp(sched, "constant")             ? SCHED_CONSTANT
                  : !strcmp(sched, "constant_with_warmup") ? SCHED_CONSTANT_WITH_WARMUP
                                                           : SCHED_COSINE;
    t->warmup_ratio = cfg_float(c, "train.warmup_ratio");
    t->warmup_steps = cfg_int(c, "train.warmup_steps");
    t->loss_global_tokens = strcmp(cfg_str(c, "train.loss_normalization"), "global_tokens") == 0;
    t->seed = cfg_int(c, "train.seed");
    t->bf16 = cfg_bool(c, "train.bf16");
    t->tf32 = cfg_bool(c, "train.tf32");
    t->gradient_checkpointing = cfg_bool(c, "train.gradient_checkpointing");
    t->zero_stage = cfg_int(c, "train.zero_stage");
    t->offload_optimizer = strcmp(cfg_str(c, "train.offload_optimizer"), "cpu") == 0;
    t->offload_threads = cfg_int(c, "train.offload_threads");
    t->shard_frozen = cfg_bool(c, "train.shard_frozen");
    t->device = xstrdup(cfg_str(c, "train.device"));
    t->max_nonfinite_steps = cfg_int(c, "train.max_nonfinite_steps");
    t->loss_spike_factor = cfg_float(c, "train.loss_spike_factor");
    t->ignore_memory_plan = cfg_bool(c, "train.ignore_memory_plan");
    // train.nccl_timeout_s is the older name of the collective timeout: when set it wins.
    t->collective_timeout_s = cfg_int(c, "train.nccl_timeout_s") > 0 ? cfg_int(c, "train.nccl_timeout_s")
                                                                     : cfg_int(c, "train.collective_timeout_s");
    t->init_timeout_s = cfg_int(c, "train.init_timeout_s");

    lora_settings *l = &s->lora;
    l->enabled = cfg_bool(c, "lora.enabled");
    l->r = cfg_int(c, "lora.r");
    l->alpha = cfg_float(c, "lora.alpha");
    l->use_rslora = cfg_bool(c, "lora.use_rslora");
    l->bits = cfg_int(c, "lora.bits");
    l->init_adapter = dup_or_null(cfg_str(c, "lora.init_adapter"));
    l->dropout = cfg_float(c, "lora.dropout");
    l->target_modules = dup_list(c, "lora.target_modules", &l->n_target_modules);

    checkpoint_settings *k = &s->checkpoint;
    k->output_dir = xstrdup(cfg_str(c, "checkpoint.output_dir"));
    k->save_steps =
        strcmp(cfg_str(c, "checkpoint.save_strategy"), "steps") == 0 ? cfg_int(c, "checkpoint.save_steps") : 0;
    k->save_total_limit = cfg_int(c, "checkpoint.save_total_limit");

    s->log.logging_steps = cfg_int(c, "log.logging_steps");
    s->log.jsonl = cfg_list_has(c, "log.report_to", "jsonl");
    s->log.tensorboard = cfg_list_has(c, "log.report_to", "tensorboard");

    eval_settings *e = &s->eval;
    e->steps = strcmp(cfg_str(c, "eval.evaluation_strategy"), "steps") == 0;
    e->every = cfg_int(c, "eval.eval_steps") > 0 ? cfg_int(c, "eval.eval_steps") : s->log.logging_steps;
    e->data_path = dup_or_null(cfg_str(c, "eval.data_path"));
    e->image_folder = dup_or_null(cfg_str(c, "eval.image_folder"));

    if (tok_mode_parse(d->tokenizer_mode_name, &d->tokenizer_mode) != 0) {
        settings_free(s);
        return -1;
    }
    return 0;
}

void settings_free(run_settings *s) {
    model_settings *m = &s->model;
    free(m->llm), free(m->vision_tower), free(m->init), free(m->tokenizer), free(m->pretrain_mm_mlp_adapter);
    data_settings *d = &s->data;
    free(d->data_path), free(d->image_folder), free(d->template_name), free(d->tokenizer_mode_name),
        free(d->aspect_name);
    free(d->grid_pinpoints);
    free_list(s->train.freeze, s->train.n_freeze);
    free(s->train.device);
    free_list(s->lora.target_modules, s->lora.n_target_modules);
    free(s->lora.init_adapter);
    free(s->checkpoint.output_dir);
    free(s->eval.data_path), free(s->eval.image_folder);
    free(s->source);
    free(s->config_json);
    memset(s, 0, sizeof *s);
}

int settings_load(const char *preset, const char *const *sets, int n_sets, run_settings *s) {
    train_config c;
    cfg_init_defaults(&c);
    int rc = preset ? cfg_load(&c, preset) : 0;
    for (int i = 0; i < n_sets && rc == 0; i++) rc = cfg_set(&c, sets[i]);
    if (rc == 0) rc = cfg_validate(&c);
    if (rc == 0) rc = settings_from_config(&c, s);
    cfg_free(&c);
    return rc;
}
