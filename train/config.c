#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "model/config.h"

// One row per key. The LLaVA flag each key mirrors is named in its help text
// (spec/llava15-recipe.md §1); keys for features that land later are here already so that presets
// are complete and stable.
// One key per line, however long its help:
// clang-format off
const cfg_key CFG_SCHEMA[] = {
    // ---- model
    {"model.llm", CFG_STR, "null", NULL, "language model folder (HF LlamaForCausalLM, e.g. vicuna-7b-v1.5) [model_name_or_path]"},
    {"model.vision_tower", CFG_STR, "null", NULL, "CLIP vision tower folder (clip-vit-large-patch14-336) [vision_tower]"},
    {"model.init", CFG_STR, "null", NULL, "a whole LLaVA model to start from instead of llm+vision_tower (llava-hf or original layout) [finetune_task.sh model_name_or_path]"},
    {"model.tokenizer", CFG_STR, "null", NULL, "tokenizer.model path; null: the one in model.llm (or model.init)"},
    {"model.mm_projector_type", CFG_STR, "\"mlp2x_gelu\"", NULL, "projector architecture: linear, mlp{N}x_gelu (N Linear layers with GELU between, N <= 16; LLaVA-1.5: mlp2x_gelu), identity (tower width = LM width) [mm_projector_type]"},
    {"model.mm_spatial_pool_mode", CFG_ENUM, "\"none\"", "none|average|max|bilinear", "visual-token reduction between tower and projector: average/max pooling of the patch grid with kernel and stride mm_spatial_pool_stride ((G/s)^2 tokens), or a bilinear resize to ceil(G/s)^2 (LLaVA-NeXT's get_2dPool, which pools after the projector for video) [mm_spatial_pool_mode]"},
    {"model.mm_spatial_pool_stride", CFG_INT, "2", NULL, "the pooling's kernel and stride s: 576 tokens -> 144 at s=2 (24x24 grid) [mm_spatial_pool_stride]"},
    {"model.video_pool_mode", CFG_ENUM, "\"none\"", "none|average|max", "video frames only, as transformers' LlavaNextVideo: each frame's patch grid average/max pooled with kernel and stride model.video_pool_stride before the projector ((G/s)^2 tokens per frame); images are not pooled. Not with mm_spatial_pool_mode, mm_vision_keep_tokens or AnyRes [LlavaNextVideoConfig spatial_pool_mode]"},
    {"model.video_pool_stride", CFG_INT, "2", NULL, "the video pooling's kernel and stride s: a 24x24 grid's 576 tokens per frame -> 144 at s=2 [LlavaNextVideoConfig spatial_pool_stride]"},
    {"model.mm_vision_image_size", CFG_INT, "0", NULL, "run the vision tower at this image size (a multiple of its patch) with its position embeddings interpolated bicubically at load, as transformers' interpolate_pos_encoding; 0 = the tower's own size"},
    {"model.mm_vision_keep_tokens", CFG_INT, "0", NULL, "keep the K patch features the CLS query attends to most in the feature layer (mean over heads), in their order; 0 = all (parameter-free pruning; exclusive with pooling)"},
    {"model.mm_vision_select_layer", CFG_INT, "-2", NULL, "vision hidden state fed to the projector; -2 = output of the second-to-last layer [mm_vision_select_layer]"},
    {"model.mm_vision_select_feature", CFG_ENUM, "\"patch\"", "patch|cls_patch", "patch drops the CLS token [mm_vision_select_feature]"},
    {"model.mm_use_im_start_end", CFG_BOOL, "false", NULL, "wrap images in start/end tokens (false in LLaVA-1.5; true is not supported) [mm_use_im_start_end]"},
    {"model.mm_use_im_patch_token", CFG_BOOL, "false", NULL, "add an image patch token (false in LLaVA-1.5) [mm_use_im_patch_token]"},
    {"model.ignore_unexpected_weights", CFG_BOOL, "false", NULL, "load weights although the files hold tensors the model config has no place for (skipped); false: such tensors are an error naming them (a config declaring fewer layers than the weights hold)"},
    {"model.pretrain_mm_mlp_adapter", CFG_STR, "null", NULL, "stage-1 projector to start stage 2 from: our mm_projector.safetensors or LLaVA's mm_projector.bin [pretrain_mm_mlp_adapter]"},
    // ---- data
    {"data.data_path", CFG_STR, "null", NULL, "LLaVA JSON array, or an HDF5 file written by `llava prep` [data_path]"},
    {"data.image_folder", CFG_STR, "null", NULL, "folder that the samples' image paths are relative to [image_folder]"},
    {"data.template", CFG_ENUM, "\"plain\"", "plain|vicuna_v1|llava_llama_2|mistral_instruct|llava_llama_3|qwen_1_5", "conversation template: plain (stage 1), vicuna_v1 (LLaVA-1.5 stage 2), or LLaVA-NeXT's for other LMs (docs/tokenizer.md) [version: plain / v1 / ...]"},
    {"data.tokenizer_mode", CFG_ENUM, "\"hf431\"", "hf431|hf437|legacy", "slow-tokenizer rules: hf431 = transformers 4.31 as the released checkpoints were trained, hf437 = LLaVA HEAD, legacy = legacy=True"},
    {"data.image_aspect_ratio", CFG_ENUM, "\"square\"", "square|pad|anyres|anyres_max_N", "square: resize shortest side + center crop; pad: expand to square with the mean colour first; anyres: LLaVA-NeXT's tiles (the whole image and a grid of crops at the best of data.image_grid_pinpoints), the model merging their features with image_newline; anyres_max_N (e.g. anyres_max_9): the same, each image's unpadded features resized (bilinear) to about N tiles' worth when above 1.1 times that [image_aspect_ratio]"},
    {"data.image_grid_pinpoints", CFG_STR, "\"[[336,672],[672,336],[672,672],[1008,336],[336,1008]]\"", NULL, "with anyres: the resolutions a tile grid may take, [[height, width], ...] as transformers reads them, or LLaVA-NeXT's range form \"(1x1),...,(3x3)\" in tiles [image_grid_pinpoints]"},
    {"data.model_max_length", CFG_INT, "2048", NULL, "truncate sequences (image features included) to this many positions [model_max_length]"},
    {"data.max_images_per_sample", CFG_INT, "0", NULL, "the most images a sample brings into the tower (several images, or a video's frames): the memory plan and the activations hold per_device_train_batch_size x this many (x tiles with AnyRes); 0 = the dataset's own maximum when training starts (llava plan: data.video_frames when set, else 1, LLaVA-1.5's)"},
    {"data.video_frames", CFG_INT, "0", NULL, "a video sample (\"video\": its frames' image paths) keeps this many frames, uniformly spaced as LLaVA-NeXT samples them; 0 = all [frames_upbound]"},
    {"data.group_by_modality_length", CFG_BOOL, "false", NULL, "LLaVA's modality-grouped length sampler [group_by_modality_length]"},
    {"data.dataloader_num_workers", CFG_INT, "4", NULL, "loader threads [dataloader_num_workers]"},
    {"data.lazy_preprocess", CFG_BOOL, "true", NULL, "accepted for parity with LLaVA's flag, which nothing reads [lazy_preprocess]"},
    {"data.truncate_after_splice", CFG_BOOL, "false", NULL, "also cut each sequence to model_max_length after its image features are spliced in (LLaVA HEAD does; the release code did not)"},
    {"data.sampler_order", CFG_ENUM, "\"llava-distributed\"", "llava-distributed|llava-single-process", "the sample order of which LLaVA launch to reproduce: llava-distributed = torchrun/deepspeed with 2 or more processes (the sampler's own generator, data.sampler_seed), llava-single-process = one process: `python llava/train/train.py`, torchrun --nproc_per_node 1, deepspeed on one GPU (every draw from the global generator seeded by train.seed, after the DataLoader's base-seed draw; needs group_by_modality_length and one rank)"},
    {"data.sampler_seed", CFG_INT, "-1", NULL, "seed of the sampler's generator; -1: torch's default generator seed (67280421310721), which LLaVA's runs used through accelerate 0.21"},
    {"data.prefetch", CFG_INT, "2", NULL, "optimizer steps whose images are decoded ahead of training"},
    {"data.token_budget", CFG_INT, "0", NULL, "if > 0, split each micro-batch into forward passes of at most this many tokens (same result, less memory)"},
    {"data.strict", CFG_BOOL, "false", NULL, "fail on a bad sample instead of counting and skipping it"},
    // ---- optimisation
    {"train.stage", CFG_INT, "1", NULL, "1: projector pretraining, 2: instruction tuning (selects defaults and what is saved)"},
    {"train.trainable", CFG_STRLIST, "[\"projector\"]", "vision|projector|lm|lora", "modules that receive updates; the rest are frozen; vision trains the tower up to its feature layer (LLaVA-NeXT's unfreeze_mm_vision_tower) [tune_mm_mlp_adapter / freeze_backbone / lora_enable]"},
    {"train.vision_unfreeze_last", CFG_INT, "0", NULL, "with vision trainable: train only the tower's last N layers that run (down from the feature layer), the rest and the embeddings frozen; 0 = the whole tower"},
    {"train.mm_vision_tower_lr", CFG_FLOAT, "null", NULL, "separate peak learning rate for the vision tower; null: learning_rate [mm_vision_tower_lr]"},
    {"train.vision_gradient_checkpointing", CFG_BOOL, "true", NULL, "recompute each trained vision layer's activations in backward (one layer's kept) [gradient_checkpointing]"},
    {"train.freeze", CFG_STRLIST, "[]", NULL, "parameters to keep frozen inside trainable modules, by name prefix: e.g. lm.model.embed_tokens, lm.model.layers.0., projector. (`llava inspect` lists names)"},
    {"train.num_train_epochs", CFG_FLOAT, "1", NULL, "[num_train_epochs]"},
    {"train.max_steps", CFG_INT, "-1", NULL, "stop after this many optimizer steps; -1: run the epochs [max_steps]"},
    {"train.per_device_train_batch_size", CFG_INT, "16", NULL, "samples per rank per micro-batch [per_device_train_batch_size]"},
    {"train.per_device_eval_batch_size", CFG_INT, "4", NULL, "[per_device_eval_batch_size]"},
    {"train.gradient_accumulation_steps", CFG_INT, "1", NULL, "micro-batches per optimizer step [gradient_accumulation_steps]"},
    {"train.global_batch_size", CFG_INT, "0", NULL, "if set, the global batch the run must have (per_device x accumulation x ranks); a run on fewer ranks raises accumulation to keep it"},
    {"train.learning_rate", CFG_FLOAT, "2e-5", NULL, "peak learning rate [learning_rate]"},
    {"train.mm_projector_lr", CFG_FLOAT, "null", NULL, "separate peak learning rate for the projector; null: learning_rate [mm_projector_lr]"},
    {"train.weight_decay", CFG_FLOAT, "0", NULL, "decoupled weight decay; biases and norm weights never decay [weight_decay]"},
    {"train.adam_beta1", CFG_FLOAT, "0.9", NULL, "[adam_beta1]"},
    {"train.adam_beta2", CFG_FLOAT, "0.999", NULL, "[adam_beta2]"},
    {"train.adam_epsilon", CFG_FLOAT, "1e-8", NULL, "[adam_epsilon]"},
    {"train.optim", CFG_ENUM, "\"adamw_torch\"", "adamw_torch", "optimizer: torch.optim.AdamW semantics [optim]"},
    {"train.lr_scheduler_type", CFG_ENUM, "\"cosine\"", "cosine|linear|constant|constant_with_warmup", "[lr_scheduler_type]"},
    {"train.warmup_ratio", CFG_FLOAT, "0.03", NULL, "warmup steps = ceil(ratio x total steps) [warmup_ratio]"},
    {"train.warmup_steps", CFG_INT, "0", NULL, "if > 0, overrides warmup_ratio [warmup_steps]"},
    {"train.max_grad_norm", CFG_FLOAT, "0", NULL, "global gradient-norm clip; 0 = off, as in the official runs (DeepSpeed ignored HF's 1.0) [max_grad_norm]"},
    {"train.loss_normalization", CFG_ENUM, "\"llava\"", "llava|global_tokens", "llava: mean over ranks of each micro-batch's token mean; global_tokens: sum over all tokens of the step / their count"},
    {"train.seed", CFG_INT, "42", NULL, "[seed]"},
    {"train.bf16", CFG_BOOL, "true", NULL, "bf16 weights and activations on the GPU (fp32 master weights and optimizer) [bf16]"},
    {"train.tf32", CFG_BOOL, "true", NULL, "allow TF32 in fp32 GEMMs on the GPU [tf32]"},
    {"train.gradient_checkpointing", CFG_BOOL, "true", NULL, "recompute each decoder layer's activations in backward [gradient_checkpointing]"},
    {"train.zero_stage", CFG_INT, "2", NULL, "0: replicate, 1: shard optimizer state, 2: shard gradients too, 3: and the trained LM's and projector's parameters, gathered a layer at a time [deepspeed zero2.json / zero3.json]"},
    {"train.device", CFG_ENUM, "\"cuda\"", "cpu|cuda", "backend"},
    {"train.shard_frozen", CFG_BOOL, "false", NULL, "with zero_stage 3, shard the frozen vision tower too (each layer gathered as it runs) instead of keeping it whole on every rank"},
    {"train.offload_threads", CFG_INT, "0", NULL, "threads of the offloaded AdamW step per rank; 0: the node's cores shared among its ranks"},
    {"train.offload_optimizer", CFG_ENUM, "\"none\"", "none|cpu", "cpu: fp32 masters and AdamW moments in host memory, the AdamW step on the host (the same arithmetic as the GPU's) [deepspeed offload_optimizer]"},
    {"train.ignore_memory_plan", CFG_BOOL, "false", NULL, "run even when `llava plan`'s total exceeds the memory there is (CPU: MemAvailable per rank; GPU: the device's memory)"},
    {"train.max_nonfinite_steps", CFG_INT, "10", NULL, "stop after this many consecutive steps with non-finite loss or gradients, or loss spikes (each is skipped)"},
    {"train.loss_spike_factor", CFG_FLOAT, "1000", NULL, "a step whose loss exceeds this many times the mean of the last 32 accepted losses (at least 1) is skipped like a non-finite one; 0: off"},
    {"train.collective_timeout_s", CFG_INT, "1800", NULL, "a collective (NCCL or MPI) that takes longer than this many seconds fails the run on every rank with a message naming it: a rank that died or hangs never leaves the others waiting forever"},
    {"train.init_timeout_s", CFG_INT, "3600", NULL, "the same deadline during start-up: the ranks' rendezvous, and the wait while rank 0 prepares the dataset and every rank loads its weights (then train.collective_timeout_s applies)"},
    {"train.nccl_timeout_s", CFG_INT, "0", NULL, "older name of train.collective_timeout_s: when > 0 it is used instead"},
    // ---- LoRA
    {"lora.enabled", CFG_BOOL, "false", NULL, "[lora_enable]"},
    {"lora.r", CFG_INT, "128", NULL, "[lora_r]"},
    {"lora.alpha", CFG_FLOAT, "256", NULL, "scaling = alpha / r [lora_alpha]"},
    {"lora.init_adapter", CFG_STR, "null", NULL, "start from this adapter instead of fresh ones: a PEFT folder (adapter_config.json + adapter_model.safetensors, as `llava train` writes) or one of LLaVA's LoRA checkpoints (adapter_model.bin + non_lora_trainables.bin); its r, alpha and target modules must be lora.*'s; what else it saved (the projector) is loaded too"},
    {"lora.bits", CFG_INT, "16", NULL, "4: QLoRA, the frozen LM's linears stored as bitsandbytes' NF4 with double quantisation (model/nf4.h), as LLaVA's --bits 4; 16: as loaded. Each linear is dequantised into one scratch weight as it runs: no whole bf16 copy of the LM is held, and `llava plan` counts exactly that [bits]"},
    {"lora.use_rslora", CFG_BOOL, "false", NULL, "rank-stabilised LoRA: scaling = alpha / sqrt(r) (PEFT's use_rslora)"},
    {"lora.dropout", CFG_FLOAT, "0.05", NULL, "dropout on each adapter's input, in training passes [lora_dropout]"},
    {"lora.bias", CFG_ENUM, "\"none\"", "none", "[lora_bias]"},
    {"lora.target_modules", CFG_STRLIST, "[\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\",\"gate_proj\",\"up_proj\",\"down_proj\"]",
     "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj", "LM linears that get adapters (find_all_linear_names)"},
    // ---- checkpoints and logs
    {"checkpoint.output_dir", CFG_STR, "\"./checkpoints/run\"", NULL, "[output_dir]"},
    {"checkpoint.save_strategy", CFG_ENUM, "\"steps\"", "steps|no", "[save_strategy]"},
    {"checkpoint.save_steps", CFG_INT, "500", NULL, "write a resumable checkpoint every N optimizer steps [save_steps]"},
    {"checkpoint.save_total_limit", CFG_INT, "2", NULL, "keep the newest K complete checkpoints [save_total_limit]"},
    {"log.logging_steps", CFG_INT, "1", NULL, "[logging_steps]"},
    {"log.report_to", CFG_STRLIST, "[\"jsonl\"]", "jsonl|tensorboard|none", "where metrics go, one name or a list: jsonl = output_dir/metrics.jsonl, tensorboard = event files in output_dir/runs/ (docs/logging.md), none = nowhere (LLaVA reports to wandb) [report_to]"},
    {"eval.evaluation_strategy", CFG_ENUM, "\"no\"", "no|steps", "steps: the eval loss of eval.data_path every eval.eval_steps optimizer steps, in metrics.jsonl and `llava plot` (LLaVA's scripts: no) [evaluation_strategy]"},
    {"eval.eval_steps", CFG_INT, "0", NULL, "evaluate every N optimizer steps and after the last; 0: log.logging_steps, as the HF Trainer [eval_steps]"},
    {"eval.data_path", CFG_STR, "null", NULL, "held-out samples, LLaVA JSON (prepared like data.data_path into output_dir/eval_dataset.h5) or a prepared HDF5 [eval_data_path]"},
    {"eval.image_folder", CFG_STR, "null", NULL, "the held-out samples' image folder; null: data.image_folder"},
};
// clang-format on
const int CFG_SCHEMA_LEN = (int)(sizeof CFG_SCHEMA / sizeof CFG_SCHEMA[0]);

static const cfg_key *schema_find(const char *key) {
    for (int i = 0; i < CFG_SCHEMA_LEN; i++)
        if (strcmp(CFG_SCHEMA[i].key, key) == 0) return &CFG_SCHEMA[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return 99;
    int prev[65], cur[65];
    for (size_t j = 0; j <= m; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, sizeof(int) * (m + 1));
    }
    return prev[m];
}

static int unknown_key(const char *where, const char *key) {
    const char *best = NULL;
    int bd = 1 << 30;
    const char *leaf = strrchr(key, '.');
    leaf = leaf ? leaf + 1 : key;
    for (int i = 0; i < CFG_SCHEMA_LEN; i++) {
        int d = edit_distance(key, CFG_SCHEMA[i].key);
        const char *sl = strrchr(CFG_SCHEMA[i].key, '.') + 1;
        if (strcmp(sl, leaf) == 0) d = 0;  // right name, wrong section
        if (d < bd) {
            bd = d;
            best = CFG_SCHEMA[i].key;
        }
    }
    if (best && bd <= 4) return llava_fail("%s: unknown key \"%s\" (did you mean \"%s\"?)", where, key, best);
    return llava_fail("%s: unknown key \"%s\" (`llava config --keys` lists them)", where, key);
}

// Walks the dotted path, creating objects; returns the parent object and the leaf name.
static cJSON *parent_of(cJSON *root, const char *key, const char **leaf) {
    cJSON *o = root;
    const char *p = key;
    const char *dot;
    while ((dot = strchr(p, '.'))) {
        char part[64];
        size_t n = (size_t)(dot - p);
        if (n >= sizeof part) n = sizeof part - 1;
        memcpy(part, p, n);
        part[n] = 0;
        cJSON *child = cJSON_GetObjectItemCaseSensitive(o, part);
        if (!child) child = cJSON_AddObjectToObject(o, part);
        o = child;
        p = dot + 1;
    }
    *leaf = p;
    return o;
}

static const cJSON *lookup(const train_config *c, const char *key) {
    const cJSON *o = c->root;
    const char *p = key;
    const char *dot;
    while (o && (dot = strchr(p, '.'))) {
        char part[64];
        size_t n = (size_t)(dot - p);
        if (n >= sizeof part) n = sizeof part - 1;
        memcpy(part, p, n);
        part[n] = 0;
        o = cJSON_GetObjectItemCaseSensitive(o, part);
        p = dot + 1;
    }
    return o ? cJSON_GetObjectItemCaseSensitive(o, p) : NULL;
}

// A choice ending in "_N" takes its prefix and a positive integer (anyres_max_N: llava_anyres_max_parse's rule).
static int choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        if (len == strlen("anyres_max_N") && strncmp(p, "anyres_max_N", len) == 0 && llava_anyres_max_parse(v) > 0)
            return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

// What a value of k's type is, for messages.
static const char *type_words(const cfg_key *k) {
    switch (k->type) {
    case CFG_INT: return "an integer";
    case CFG_FLOAT: return strcmp(k->def, "null") == 0 ? "a number or null" : "a number";
    case CFG_BOOL: return "true or false";
    case CFG_STR: return "a string or null";
    case CFG_ENUM: return "a string";
    case CFG_STRLIST: return "a list of strings (or one string)";
    }
    return "a value";
}

// Checks a JSON value against a key's type. `text` is the value as the user wrote it (a --set),
// or NULL to quote the value as JSON (a preset).
static int check_value(const char *where, const cfg_key *k, const cJSON *v, const char *text) {
    char *json = text ? NULL : cJSON_PrintUnformatted(v);
    const char *shown = text ? text : json ? json : "?";
    int rc = 0;
    switch (k->type) {
    case CFG_INT:
        if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || fabs(v->valuedouble) > 2147483647.0)
            rc = llava_fail("%s: \"%s\" must be an integer (32-bit), not %.60s", where, k->key, shown);
        break;
    case CFG_FLOAT:
        if (!cJSON_IsNumber(v) && !(cJSON_IsNull(v) && strcmp(k->def, "null") == 0))
            rc = llava_fail("%s: \"%s\" must be %s, not %.60s", where, k->key, type_words(k), shown);
        else if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
            rc = llava_fail("%s: \"%s\" must be a finite number%s%.60s", where, k->key, text ? ", not " : "",
                            text ? text : "");
        break;
    case CFG_BOOL:
        if (!cJSON_IsBool(v)) rc = llava_fail("%s: \"%s\" must be true or false, not %.60s", where, k->key, shown);
        break;
    case CFG_STR:
        if (!cJSON_IsString(v) && !cJSON_IsNull(v))
            rc = llava_fail("%s: \"%s\" must be a string or null, not %.60s", where, k->key, shown);
        break;
    case CFG_ENUM:
        if (!cJSON_IsString(v) || !choice_ok(k->choices, v->valuestring))
            rc = llava_fail("%s: \"%s\" must be one of %s, not %.60s", where, k->key, k->choices, shown);
        break;
    case CFG_STRLIST:
        if (!cJSON_IsArray(v)) {
            rc = llava_fail("%s: \"%s\" must be a list of strings, not %.60s", where, k->key, shown);
            break;
        }
        for (const cJSON *e = v->child; e && rc == 0; e = e->next) {
            if (!cJSON_IsString(e))
                rc = llava_fail("%s: \"%s\" must be a list of strings, not %.60s", where, k->key, shown);
            else if (k->choices && !choice_ok(k->choices, e->valuestring))
                rc = llava_fail("%s: \"%s\" item \"%s\" is not one of %s", where, k->key, e->valuestring, k->choices);
        }
        break;
    }
    free(json);
    return rc;
}

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

// Parses text[0, len) as one JSON value. Returns it, with *rest at the first character after it
// that is not whitespace (text + len when the value is all there is); NULL when the text does not
// start with a JSON value. The caller decides what text after the value means: always an error.
static cJSON *parse_value(const char *text, size_t len, const char **rest) {
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);  // len 0 fails, and sets the error position
    if (!v) return NULL;
    while (end < text + len && is_space(*end)) end++;
    *rest = end;
    return v;
}

static void put(train_config *c, const char *key, cJSON *v) {
    const char *leaf;
    cJSON *parent = parent_of(c->root, key, &leaf);
    if (cJSON_GetObjectItemCaseSensitive(parent, leaf)) cJSON_ReplaceItemInObjectCaseSensitive(parent, leaf, v);
    else cJSON_AddItemToObject(parent, leaf, v);
}

void cfg_init_defaults(train_config *c) {
    c->root = cJSON_CreateObject();
    c->source = xstrdup("(defaults)");
    for (int i = 0; i < CFG_SCHEMA_LEN; i++) {
        cJSON *v = cJSON_Parse(CFG_SCHEMA[i].def);
        if (!v) {
            fprintf(stderr, "config schema: bad default for %s\n", CFG_SCHEMA[i].key);
            abort();
        }
        put(c, CFG_SCHEMA[i].key, v);
    }
}

void cfg_free(train_config *c) {
    cJSON_Delete(c->root);
    free(c->source);
    c->root = NULL;
    c->source = NULL;
}

// Overlays the keys of a preset object onto the config.
static int overlay(train_config *c, const cJSON *obj, const char *prefix, const char *where) {
    for (const cJSON *e = obj->child; e; e = e->next) {
        if (e->string[0] == '_') continue;  // comment
        char key[160];
        snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", e->string);
        // JSON leaves a repeated key to the reader; here the second would silently win.
        for (const cJSON *before = obj->child; before != e; before = before->next)
            if (strcmp(before->string, e->string) == 0) return llava_fail("%s: \"%s\" is given twice", where, key);
        if (!prefix[0] && strcmp(e->string, "base") == 0) continue;
        const cfg_key *k = schema_find(key);
        if (!k) {
            if (cJSON_IsObject(e)) {
                // A section name ("train") or a typo in one.
                int section = 0;
                size_t n = strlen(key);
                for (int i = 0; i < CFG_SCHEMA_LEN && !section; i++)
                    section = strncmp(CFG_SCHEMA[i].key, key, n) == 0 && CFG_SCHEMA[i].key[n] == '.';
                if (section) {
                    if (overlay(c, e, key, where) != 0) return -1;
                    continue;
                }
            }
            return unknown_key(where, key);
        }
        // A list key given one string is the one-item list (as HF's report_to takes either).
        cJSON *v = cJSON_Duplicate(e, 1);
        if (k->type == CFG_STRLIST && cJSON_IsString(e)) {
            cJSON *one = cJSON_CreateArray();
            cJSON_AddItemToArray(one, v);
            v = one;
        }
        if (check_value(where, k, v, NULL) != 0) {
            cJSON_Delete(v);
            return -1;
        }
        put(c, key, v);
    }
    return 0;
}

static int load_rec(train_config *c, const char *path, int depth);

// Whether a path names something (a file or a folder).
static int path_exists(const char *path) { return access(path, F_OK) == 0; }

// How much of the text from `at` an error quotes: 40 bytes at most, never past `end`.
static int near_len(const char *at, const char *end) { return end - at < 40 ? (int)(end - at) : 40; }

// A preset's text (`path` names it in messages, and its folder is where "base" is found).
static int load_text(train_config *c, const char *text, size_t len, const char *path, int depth) {
    const char *rest = NULL;
    cJSON *obj = parse_value(text, len, &rest);
    if (!obj) {  // the error position points into text, which need not end in a NUL
        const char *at = cJSON_GetErrorPtr();
        if (!at || at < text || at > text + len) at = text + len;
        return llava_fail("%s: not valid JSON at byte %zu (near: %.*s)", path, (size_t)(at - text),
                          near_len(at, text + len), at);
    }
    if (rest != text + len) {
        cJSON_Delete(obj);
        return llava_fail("%s: text after the JSON object at byte %zu (near: %.*s)", path, (size_t)(rest - text),
                          near_len(rest, text + len), rest);
    }
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return llava_fail("%s: not a JSON object", path);
    }
    int rc = 0;
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(obj, "base");
    if (base) {
        if (!cJSON_IsString(base)) rc = llava_fail("%s: \"base\" must be a file name", path);
        else {
            char *dir = path_dirname(path);
            char *bp = base->valuestring[0] == '/' ? xstrdup(base->valuestring) : path_join(dir, base->valuestring);
            if (!path_exists(bp)) {  // named with what it resolved to: the folder of this preset, not the working one
                char *abs = cfg_abs_path(bp);
                rc = llava_fail(
                    "%s: \"base\" %s: no such file or directory (\"base\" resolves against the folder of the "
                    "preset naming it: %s)",
                    path, base->valuestring, abs);
                free(abs);
            } else {
                rc = load_rec(c, bp, depth + 1);
            }
            free(bp);
            free(dir);
        }
    }
    if (rc == 0) rc = overlay(c, obj, "", path);
    cJSON_Delete(obj);
    return rc;
}

char *cfg_abs_path(const char *path) {
    char *cwd = path[0] == '/' ? NULL : getcwd(NULL, 0);
    if (path[0] != '/' && !cwd) return xstrdup(path);  // no working folder to resolve against
    char *full = cwd ? path_join(cwd, path) : xstrdup(path);
    free(cwd);
    // "." and ".." by their text: the parts of an absolute path, each kept, dropped or taking back the last.
    size_t n = strlen(full);
    char *out = xmalloc(n + 2);
    size_t o = 0;
    for (const char *p = full; *p;) {
        while (*p == '/') p++;
        const char *e = p;
        while (*e && *e != '/') e++;
        size_t len = (size_t)(e - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
            // nothing
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--;
        } else {
            out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
        }
        p = e;
    }
    if (o == 0) out[o++] = '/';
    out[o] = 0;
    free(full);
    return out;
}

int cfg_fail_missing(const char *key, const char *path) {
    if (path[0] == '/') return llava_fail("%s %s: no such file or directory", key, path);
    char *abs = cfg_abs_path(path);
    llava_fail("%s %s: no such file or directory (relative paths resolve against the working folder: %s)", key, path,
               abs);
    free(abs);
    return -1;
}

static int load_rec(train_config *c, const char *path, int depth) {
    if (depth > 8) return llava_fail("%s: \"base\" chain is deeper than 8 (a cycle?)", path);
    if (depth == 0 && !path_exists(path)) return cfg_fail_missing("preset", path);
    size_t len;
    char *text = read_file(path, 4u << 20, &len);
    if (!text) return -1;
    int rc = load_text(c, text, len, path, depth);
    free(text);
    return rc;
}

int cfg_load(train_config *c, const char *path) {
    if (load_rec(c, path, 0) != 0) return -1;
    free(c->source);
    c->source = xstrdup(path);
    return 0;
}

int cfg_load_text(train_config *c, const char *text, size_t len, const char *path) {
    if (load_text(c, text, len, path, 0) != 0) return -1;
    free(c->source);
    c->source = xstrdup(path);
    return 0;
}

// A comma-separated list ("projector,lm") as a JSON array of its items, each trimmed of surrounding
// whitespace. An empty text is the empty list; an empty item ("a,,b", "a,") is an error.
static cJSON *comma_list(const char *where, const char *val) {
    cJSON *v = cJSON_CreateArray();
    const char *p = val;
    while (*p && is_space(*p)) p++;
    if (!*p) return v;
    p = val;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        while (p < e && is_space(*p)) p++;
        while (e > p && is_space(e[-1])) e--;
        if (e == p) {
            cJSON_Delete(v);
            llava_fail("%s: empty item in the list \"%s\"", where, val);
            return NULL;
        }
        char *item = xmalloc((size_t)(e - p) + 1);
        memcpy(item, p, (size_t)(e - p));
        item[e - p] = 0;
        cJSON_AddItemToArray(v, cJSON_CreateString(item));
        free(item);
        if (!comma) return v;
        p = comma + 1;
    }
}

int cfg_set(train_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) return llava_fail("--set %s: expected key=value", assignment);
    char key[160];
    size_t n = (size_t)(eq - assignment);
    if (n >= sizeof key) return llava_fail("--set: key too long");
    memcpy(key, assignment, n);
    key[n] = 0;
    const char *val = eq + 1;
    const cfg_key *k = schema_find(key);
    char where[200];
    snprintf(where, sizeof where, "--set %s", key);
    if (!k) return unknown_key("--set", key);
    cJSON *v = NULL;
    int json = 1;  // the value is JSON text, read whole
    if (k->type == CFG_STR || k->type == CFG_ENUM) {
        // Strings need no quotes on a command line; "null" means null, a JSON-quoted string is unquoted.
        json = val[0] == '"';
        if (strcmp(val, "null") == 0 && k->type == CFG_STR) v = cJSON_CreateNull();
        else if (!json) v = cJSON_CreateString(val);
    } else if (k->type == CFG_STRLIST && val[strspn(val, " \t\r\n")] != '[') {
        json = 0;
        v = comma_list(where, val);
        if (!v) return -1;
    }
    if (json && !v) {
        const char *rest = NULL;
        size_t len = strlen(val);
        v = parse_value(val, len, &rest);
        if (!v) return llava_fail("%s: cannot read \"%s\" as %s", where, val, type_words(k));
        if (rest != val + len) {
            int rc =
                llava_fail("%s: cannot read \"%s\" as %s (\"%s\" follows the value)", where, val, type_words(k), rest);
            cJSON_Delete(v);
            return rc;
        }
    }
    if (check_value("--set", k, v, val) != 0) {
        cJSON_Delete(v);
        return -1;
    }
    put(c, key, v);
    return 0;
}

static const cJSON *get_checked(const train_config *c, const char *key, cfg_type t) {
    const cfg_key *k = schema_find(key);
    if (!k || (k->type != t && !(t == CFG_STR && k->type == CFG_ENUM))) {
        fprintf(stderr, "config: internal error: key %s asked as the wrong type or not in the schema\n", key);
        abort();
    }
    return lookup(c, key);
}

int cfg_int(const train_config *c, const char *key) { return (int)get_checked(c, key, CFG_INT)->valuedouble; }

double cfg_float(const train_config *c, const char *key) {
    const cJSON *v = get_checked(c, key, CFG_FLOAT);
    return cJSON_IsNull(v) ? NAN : v->valuedouble;
}

int cfg_bool(const train_config *c, const char *key) { return cJSON_IsTrue(get_checked(c, key, CFG_BOOL)); }

const char *cfg_str(const train_config *c, const char *key) {
    const cJSON *v = get_checked(c, key, CFG_STR);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int cfg_list_len(const train_config *c, const char *key) {
    return cJSON_GetArraySize(get_checked(c, key, CFG_STRLIST));
}

const char *cfg_list_item(const train_config *c, const char *key, int i) {
    const cJSON *e = cJSON_GetArrayItem(get_checked(c, key, CFG_STRLIST), i);
    return e ? e->valuestring : NULL;
}

int cfg_list_has(const train_config *c, const char *key, const char *item) {
    for (const cJSON *e = get_checked(c, key, CFG_STRLIST)->child; e; e = e->next)
        if (strcmp(e->valuestring, item) == 0) return 1;
    return 0;
}

char *cfg_to_json(const train_config *c) { return cJSON_Print(c->root); }

int cfg_validate(const train_config *c) {
    const char *src = c->source;
    const char *positive[] = {"train.per_device_train_batch_size",
                              "train.per_device_eval_batch_size",
                              "train.gradient_accumulation_steps",
                              "data.model_max_length",
                              "log.logging_steps",
                              "checkpoint.save_steps",
                              "checkpoint.save_total_limit",
                              "lora.r",
                              "train.max_nonfinite_steps",
                              "train.collective_timeout_s",
                              "train.init_timeout_s"};
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (cfg_int(c, positive[i]) <= 0) return llava_fail("%s: \"%s\" must be positive", src, positive[i]);
    int stage = cfg_int(c, "train.stage");
    if (stage != 1 && stage != 2) return llava_fail("%s: \"train.stage\" must be 1 or 2", src);
    if (cfg_int(c, "data.max_images_per_sample") < 0)
        return llava_fail("%s: \"data.max_images_per_sample\" must be >= 0 (0: the dataset's own maximum)", src);
    if (cfg_int(c, "data.video_frames") < 0)
        return llava_fail("%s: \"data.video_frames\" must be >= 0 (0: every frame)", src);
    if (cfg_int(c, "data.dataloader_num_workers") < 0)
        return llava_fail("%s: \"data.dataloader_num_workers\" must be >= 0", src);
    if (cfg_int(c, "train.global_batch_size") < 0)
        return llava_fail("%s: \"train.global_batch_size\" must be >= 0", src);
    if (cfg_int(c, "train.nccl_timeout_s") < 0) return llava_fail("%s: \"train.nccl_timeout_s\" must be >= 0", src);
    int zs = cfg_int(c, "train.zero_stage");
    if (zs < 0 || zs > 3) return llava_fail("%s: \"train.zero_stage\" must be 0, 1, 2 or 3", src);
    if (cfg_int(c, "train.offload_threads") < 0) return llava_fail("%s: \"train.offload_threads\" must be >= 0", src);
    // Every rank must gather the same parameter segments in the same order: one pass per micro-batch.
    if (zs == 3 && cfg_int(c, "data.token_budget") > 0)
        return llava_fail(
            "%s: \"train.zero_stage\" 3 with \"data.token_budget\": a token budget runs a rank's micro-batch "
            "in as many passes as it needs, and ZeRO-3's parameter gathers must be the same on every rank (set "
            "one of them)",
            src);
    if (!(cfg_float(c, "train.learning_rate") >= 0)) return llava_fail("%s: \"train.learning_rate\" must be >= 0", src);
    double wr = cfg_float(c, "train.warmup_ratio");
    if (!(wr >= 0 && wr <= 1)) return llava_fail("%s: \"train.warmup_ratio\" must be in [0, 1]", src);
    double b1 = cfg_float(c, "train.adam_beta1"), b2 = cfg_float(c, "train.adam_beta2");
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) return llava_fail("%s: Adam betas must be in [0, 1)", src);
    if (!(cfg_float(c, "train.adam_epsilon") > 0))
        return llava_fail("%s: \"train.adam_epsilon\" must be positive", src);
    if (!(cfg_float(c, "train.max_grad_norm") >= 0)) return llava_fail("%s: \"train.max_grad_norm\" must be >= 0", src);
    if (strcmp(cfg_str(c, "data.sampler_order"), "llava-single-process") == 0 &&
        !cfg_bool(c, "data.group_by_modality_length"))
        return llava_fail(
            "%s: \"data.sampler_order\" llava-single-process reproduces LLaVA's grouped sampler: it needs "
            "\"data.group_by_modality_length\": true (the random sampler's single-process order is not "
            "implemented)",
            src);
    if (cfg_int(c, "eval.eval_steps") < 0) return llava_fail("%s: \"eval.eval_steps\" must be >= 0", src);
    int depth;
    if (llava_projector_parse(cfg_str(c, "model.mm_projector_type"), &depth))
        return llava_fail_ctx("%s: \"model.mm_projector_type\"", src);
    if (cfg_int(c, "model.mm_spatial_pool_stride") < 1)
        return llava_fail("%s: \"model.mm_spatial_pool_stride\" must be >= 1", src);
    if (cfg_int(c, "train.vision_unfreeze_last") < 0)
        return llava_fail("%s: \"train.vision_unfreeze_last\" must be >= 0 (0: the whole tower)", src);
    if (cfg_int(c, "train.vision_unfreeze_last") > 0 && !cfg_list_has(c, "train.trainable", "vision"))
        return llava_fail("%s: \"train.vision_unfreeze_last\" is set but \"train.trainable\" lacks \"vision\"", src);
    if (!(cfg_float(c, "train.mm_vision_tower_lr") > 0) && !isnan(cfg_float(c, "train.mm_vision_tower_lr")))
        return llava_fail("%s: \"train.mm_vision_tower_lr\" must be > 0, or null for learning_rate", src);
    if (cfg_int(c, "model.mm_vision_image_size") < 0)
        return llava_fail("%s: \"model.mm_vision_image_size\" must be >= 0", src);
    if (cfg_int(c, "model.video_pool_stride") < 1)
        return llava_fail("%s: \"model.video_pool_stride\" must be >= 1", src);
    if (strcmp(cfg_str(c, "model.video_pool_mode"), "none") &&
        (strcmp(cfg_str(c, "model.mm_spatial_pool_mode"), "none") || cfg_int(c, "model.mm_vision_keep_tokens") > 0))
        return llava_fail(
            "%s: \"model.video_pool_mode\" with \"model.%s\": the frames' pooling needs their whole grids; choose "
            "one reduction",
            src, cfg_int(c, "model.mm_vision_keep_tokens") > 0 ? "mm_vision_keep_tokens" : "mm_spatial_pool_mode");
    if (cfg_int(c, "model.mm_vision_keep_tokens") < 0)
        return llava_fail("%s: \"model.mm_vision_keep_tokens\" must be >= 0", src);
    if (cfg_int(c, "model.mm_vision_keep_tokens") > 0 && strcmp(cfg_str(c, "model.mm_spatial_pool_mode"), "none"))
        return llava_fail(
            "%s: \"model.mm_vision_keep_tokens\" and \"model.mm_spatial_pool_mode\": choose one "
            "reduction",
            src);
    if (strcmp(cfg_str(c, "eval.evaluation_strategy"), "steps") == 0 && !cfg_str(c, "eval.data_path"))
        return llava_fail("%s: \"eval.evaluation_strategy\" is \"steps\" but \"eval.data_path\" is not set", src);
    double spike = cfg_float(c, "train.loss_spike_factor");
    if (!(spike == 0 || spike > 1))
        return llava_fail("%s: \"train.loss_spike_factor\" must be 0 (off) or above 1", src);
    if (!(cfg_float(c, "train.num_train_epochs") > 0) && cfg_int(c, "train.max_steps") <= 0)
        return llava_fail("%s: set \"train.num_train_epochs\" > 0 or \"train.max_steps\" > 0", src);
    if (cfg_list_len(c, "train.trainable") == 0)
        return llava_fail("%s: \"train.trainable\" is empty: nothing to train", src);
    int lora = cfg_bool(c, "lora.enabled");
    if (lora != cfg_list_has(c, "train.trainable", "lora"))
        return llava_fail("%s: \"lora.enabled\" and \"lora\" in \"train.trainable\" must agree", src);
    int bits = cfg_int(c, "lora.bits");
    if (bits != 4 && bits != 16) return llava_fail("%s: \"lora.bits\" must be 4 (QLoRA) or 16", src);
    if (bits == 4 && !lora)
        return llava_fail("%s: \"lora.bits\" 4 quantises the frozen LM under LoRA: set lora.enabled", src);
    double ld = cfg_float(c, "lora.dropout");
    if (!(ld >= 0 && ld < 1)) return llava_fail("%s: \"lora.dropout\" must be in [0, 1)", src);
    if (!(cfg_float(c, "lora.alpha") > 0)) return llava_fail("%s: \"lora.alpha\" must be positive", src);
    if (lora && cfg_list_has(c, "train.trainable", "lm"))
        return llava_fail("%s: \"train.trainable\" has both lm and lora: LoRA trains adapters on a frozen LM", src);
    if (cfg_list_has(c, "log.report_to", "none") && cfg_list_len(c, "log.report_to") > 1)
        return llava_fail("%s: \"log.report_to\" lists \"none\" with other places", src);
    if (cfg_bool(c, "model.mm_use_im_start_end"))
        return llava_fail("%s: \"model.mm_use_im_start_end\" = true is not supported (LLaVA-1.5 uses false)", src);
    if (cfg_bool(c, "model.mm_use_im_patch_token"))
        return llava_fail("%s: \"model.mm_use_im_patch_token\" = true is not supported (LLaVA-1.5 uses false)", src);
    if (!cfg_str(c, "model.init") && !(cfg_str(c, "model.llm") && cfg_str(c, "model.vision_tower")))
        return llava_fail("%s: set \"model.llm\" and \"model.vision_tower\", or \"model.init\"", src);
    if (!cfg_str(c, "data.data_path")) return llava_fail("%s: \"data.data_path\" is not set", src);
    return 0;
}
