#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/prep.h"
#include "data/tokenizer.h"
#include "checkpoint.h"
#include "train/dist/dist.h"
#include "model/io/export.h"
#include "memplan.h"
#include "model/llava.h"
#include "optim.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int train_model_config(const train_config *c, model_config *out) {
    const char *init = cfg_str(c, "model.init");
    if (init) {
        if (model_config_load(init, out) != 0) return -1;
        if (out->kind != HF_LLAVA_HF && out->kind != HF_LLAVA_ORIGINAL)
            return llava_fail("model.init %s: a %s folder, not a whole LLaVA model", init, hf_kind_name(out->kind));
        return 0;
    }
    model_config lm, vis;
    const char *llm = cfg_str(c, "model.llm"), *vt = cfg_str(c, "model.vision_tower");
    if (model_config_load(llm, &lm) != 0) return llava_fail_ctx("model.llm");
    if (lm.kind != HF_LLAMA) return llava_fail("model.llm %s: a %s folder, not a LlamaForCausalLM", llm, hf_kind_name(lm.kind));
    if (model_config_load(vt, &vis) != 0) return llava_fail_ctx("model.vision_tower");
    if (vis.kind != HF_CLIP && vis.kind != HF_CLIP_VISION)
        return llava_fail("model.vision_tower %s: a %s folder, not CLIP", vt, hf_kind_name(vis.kind));
    memset(out, 0, sizeof *out);
    out->kind = HF_LLAVA_ORIGINAL;
    strcpy(out->model_type, "llava");
    strcpy(out->architecture, "LlavaLlamaForCausalLM");
    out->has_text = out->has_vision = out->has_projector = 1;
    out->text = lm.text;
    out->vision = vis.vision;
    llava_glue_config *g = &out->glue;
    g->image_token_index = -200;
    strcpy(g->projector_hidden_act, "gelu");
    g->projector = strcmp(cfg_str(c, "model.mm_projector_type"), "linear") == 0 ? PROJ_LINEAR : PROJ_MLP2X_GELU;
    g->projector_bias = 1;
    g->vision_feature_layer = cfg_int(c, "model.mm_vision_select_layer");
    g->drop_cls = strcmp(cfg_str(c, "model.mm_vision_select_feature"), "patch") == 0;
    int grid = out->vision.image_size / out->vision.patch_size;
    g->image_seq_length = grid * grid + (g->drop_cls ? 0 : 1);
    g->pad_token_id = -1;
    int n_hidden = out->vision.num_hidden_layers + 1;
    if (g->vision_feature_layer < -n_hidden || g->vision_feature_layer >= n_hidden)
        return llava_fail("model.mm_vision_select_layer %d is outside the tower's %d hidden states", g->vision_feature_layer,
                          n_hidden);
    return 0;
}

int train_build_model(const train_config *c, llava_backend *be, llava_model *m) {
    model_config mc;
    if (train_model_config(c, &mc) != 0) return -1;
    if (llava_model_create(m, &mc, be) != 0) return -1;
    const int ALL = (1 << N_GROUPS) - 1, PROJ = 1 << GROUP_PROJECTOR;
    const char *init = cfg_str(c, "model.init"), *adapter = cfg_str(c, "model.pretrain_mm_mlp_adapter");
    int rc = 0;
    if (init) {
        rc = llava_model_add_weights(m, init, adapter ? ALL & ~PROJ : ALL, NULL);
    } else {
        rc = llava_model_add_weights(m, cfg_str(c, "model.llm"), 1 << GROUP_LM, NULL);
        if (rc == 0) rc = llava_model_add_weights(m, cfg_str(c, "model.vision_tower"), 1 << GROUP_VISION, NULL);
    }
    if (rc == 0 && adapter) {
        int n = 0;
        rc = llava_model_add_weights(m, adapter, PROJ, &n);
        if (rc == 0 && n == 0) rc = llava_fail("model.pretrain_mm_mlp_adapter %s holds no projector tensors", adapter);
    } else if (rc == 0 && !init) {
        llava_model_init_projector(m, (uint64_t)cfg_int(c, "train.seed"));
    }
    if (rc == 0) rc = llava_model_finish(m);
    if (rc != 0) llava_model_free(m);
    return rc;
}

static const char *tokenizer_path(const train_config *c, char **owned) {
    *owned = NULL;
    if (cfg_str(c, "model.tokenizer")) return cfg_str(c, "model.tokenizer");
    const char *dir = cfg_str(c, "model.init") ? cfg_str(c, "model.init") : cfg_str(c, "model.llm");
    *owned = path_join(dir, "tokenizer.model");
    return *owned;
}

// The prepared dataset: data.data_path if it is one, else `llava prep` into output_dir first.
static int open_dataset(const train_config *c, const char *out_dir, llava_dataset *ds) {
    const char *data = cfg_str(c, "data.data_path");
    size_t n = strlen(data);
    int is_json = n > 5 && strcmp(data + n - 5, ".json") == 0;
    char *h5 = NULL;
    if (is_json) {
        h5 = path_join(out_dir, "dataset.h5");
        if (!file_exists(h5)) {
            char *owned;
            prep_options o;
            prep_options_default(&o);
            o.data_path = data;
            o.image_folder = cfg_str(c, "data.image_folder");
            o.tokenizer_path = tokenizer_path(c, &owned);
            o.template_name = cfg_str(c, "data.template");
            o.out_path = h5;
            if (tok_mode_parse(cfg_str(c, "data.tokenizer_mode"), &o.mode) != 0) {
                free(owned);
                free(h5);
                return -1;
            }
            o.model_max_length = cfg_int(c, "data.model_max_length");
            o.aspect = strcmp(cfg_str(c, "data.image_aspect_ratio"), "pad") == 0 ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE;
            o.strict = cfg_bool(c, "data.strict");
            fprintf(stderr, "train: preparing %s into %s\n", data, h5);
            int rc = prep_run(&o, NULL);
            free(owned);
            if (rc != 0) {
                free(h5);
                return -1;
            }
        }
        data = h5;
    }
    int rc = dataset_open(ds, data);
    free(h5);
    if (rc != 0) return -1;
    // A dataset prepared with other settings would train on other tokens: refuse it.
    const char *want_t = cfg_str(c, "data.template"), *want_m = cfg_str(c, "data.tokenizer_mode");
    const char *want_a = cfg_str(c, "data.image_aspect_ratio");
    int same_t = ds->template_name && (!strcmp(ds->template_name, want_t) ||
                                       (!strcmp(want_t, "vicuna_v1") && !strcmp(ds->template_name, "v1")));
    if (!same_t || !ds->tokenizer_mode || strcmp(ds->tokenizer_mode, want_m) != 0)
        rc = llava_fail("%s was prepared with template %s / tokenizer mode %s, the config asks for %s / %s", data,
                        ds->template_name ? ds->template_name : "?", ds->tokenizer_mode ? ds->tokenizer_mode : "?", want_t,
                        want_m);
    else if (ds->aspect && strcmp(ds->aspect, want_a) != 0 && ds->pixel_index)
        rc = llava_fail("%s stores %s-mode pixels, the config asks for %s", data, ds->aspect, want_a);
    if (rc != 0) dataset_close(ds);
    return rc;
}

// Drops metrics lines past `step` so a resumed run's log continues where the checkpoint left it.
static int truncate_metrics(const char *path, int step) {
    if (!file_exists(path)) return 0;
    size_t len;
    char *text = read_file(path, (size_t)1 << 32, &len);
    if (!text) return -1;
    size_t keep = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break;  // a torn last line is dropped
        const char *p = strstr(line, "\"step\":");
        int s = p && p < nl ? atoi(p + 7) : 0;
        if (s > step) break;
        keep = (size_t)(nl + 1 - text);
        line = nl + 1;
    }
    int rc = write_file_atomic(path, text, keep);
    free(text);
    return rc;
}

// LLAVA_DEBUG_FAULT=RANK:STEP:exit|kill|hang makes rank RANK exit (without saying goodbye to its
// peers), die of SIGKILL, or hang at the start of step STEP: how the tests check that the other
// ranks stop within the collective timeout instead of waiting forever.
static void debug_fault(int rank, int step) {
    const char *f = getenv("LLAVA_DEBUG_FAULT");
    int r, s;
    char mode[8] = "";
    if (!f || sscanf(f, "%d:%d:%7s", &r, &s, mode) != 3 || r != rank || s != step) return;
    fprintf(stderr, "\nllava: rank %d: LLAVA_DEBUG_FAULT: %s at step %d\n", rank, mode, step);
    fflush(stderr);
    if (strcmp(mode, "hang") == 0)
        for (;;) pause();
    if (strcmp(mode, "kill") == 0) raise(SIGKILL);
    _exit(3);
}

int train_run(const train_config *c, const train_options *opt) {
    dist *d = opt->dist ? opt->dist : dist_single();
    int rank = dist_rank(d), world = dist_world(d), lead = rank == 0;
    // Collective deadlines: start-up (prep, weights, the first step) gets the long one, the steps
    // after it the collective timeout (train.nccl_timeout_s is its older name), and waits on rank
    // 0's writes (checkpoints, the final export) the longer of the two.
    int coll_timeout = cfg_int(c, "train.nccl_timeout_s") > 0 ? cfg_int(c, "train.nccl_timeout_s")
                                                              : cfg_int(c, "train.collective_timeout_s");
    int init_timeout = cfg_int(c, "train.init_timeout_s");
    double write_timeout = init_timeout > coll_timeout ? init_timeout : coll_timeout;
    dist_set_timeout(d, init_timeout);
    int rc = 0;
    llava_model m = {0};
    llava_dataset ds = {0};
    optim_state os = {0};
    loader *ld = NULL;
    char *metrics_path = NULL, *config_json = NULL;
    int have_model = 0, have_ds = 0, have_os = 0;
    FILE *mf = NULL;

    const char *out_dir = cfg_str(c, "checkpoint.output_dir");
    const char *device = cfg_str(c, "train.device");
    llava_backend *be = NULL;
    trainable_set ts;
    int want_p = cfg_list_has(c, "train.trainable", "projector"), want_lm = cfg_list_has(c, "train.trainable", "lm");
    // The LM trains with the projector's gradient buffers too (its backward runs through them); a
    // frozen projector is then frozen by name.
    ts = want_lm ? TRAIN_PROJECTOR_LM : TRAIN_PROJECTOR;
    if (mkdir_p(out_dir) != 0) rc = -1;
    else if (!(be = llava_backend_open(device, NULL))) {
        char why[LLAVA_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", llava_errmsg());
        rc = llava_fail("train.device %s: %s (or use train.device=cpu)", device, why);
    }
    else if (cfg_list_has(c, "train.trainable", "vision")) rc = llava_fail("train.trainable: training the vision tower is not supported");
    else if (cfg_list_has(c, "train.trainable", "lora")) rc = llava_fail("train.trainable: LoRA is not implemented yet");
    else if (!want_p && !want_lm) rc = llava_fail("train.trainable: nothing to train");
    if (rc != 0) goto done;

    if (train_build_model(c, be, &m) != 0) {
        rc = -1;
        goto done;
    }
    have_model = 1;
    dist_bind_backend(d, be);  // the NCCL collectives order themselves after the ops on its stream
    llava_model_set_trainable(&m, ts);
    m.checkpoint_layers = cfg_bool(c, "train.gradient_checkpointing");
    int rcf = want_p ? 0 : llava_model_freeze(&m, "projector.");
    for (int i = 0; i < cfg_list_len(c, "train.freeze") && rcf >= 0; i++) rcf = llava_model_freeze(&m, cfg_list_item(c, "train.freeze", i));
    if (rcf < 0) {
        rc = -1;
        goto done;
    }
    // Rank 0 prepares the dataset (when data_path is LLaVA JSON) while the others wait for it; then
    // every rank opens the prepared file.
    if (lead) rc = open_dataset(c, out_dir, &ds);
    int lead_rc = rc;
    dist_broadcast_host(d, &lead_rc, sizeof lead_rc, 0, "start-up: rank 0 prepares the dataset");
    if (!lead) rc = lead_rc != 0 ? llava_fail("rank 0 could not open or prepare the dataset") : open_dataset(c, out_dir, &ds);
    if (rc != 0) goto done;
    have_ds = 1;
    for (int64_t i = 0; i < ds.offsets[ds.n]; i++)
        if (ds.input_ids[i] >= m.cfg.text.vocab_size) {
            rc = llava_fail("the dataset has token id %d but the language model's vocabulary has %d: wrong tokenizer?",
                            ds.input_ids[i], m.cfg.text.vocab_size);
            goto done;
        }

    int per_device = cfg_int(c, "train.per_device_train_batch_size");
    int accum = cfg_int(c, "train.gradient_accumulation_steps"), global = cfg_int(c, "train.global_batch_size");
    if (global > 0) {
        if (global % (per_device * world) != 0) {
            rc = llava_fail("train.global_batch_size %d is not a multiple of per-device batch %d x %d ranks", global,
                            per_device, world);
            goto done;
        }
        accum = global / (per_device * world);
    }
    int sampler_seed = cfg_int(c, "data.sampler_seed");
    loader_config lc = {.ds = &ds,
                        .batch = per_device,
                        .world = world,
                        .rank = rank,
                        .accum = accum,
                        .group_by_modality = cfg_bool(c, "data.group_by_modality_length"),
                        .seed = sampler_seed < 0 ? TORCH_DEFAULT_SEED : (uint64_t)sampler_seed,
                        .inner_seed = (uint64_t)cfg_int(c, "train.seed"),
                        .tokens_per_image = m.tokens_per_image,
                        .image_size = m.cfg.vision.image_size,
                        .aspect = strcmp(cfg_str(c, "data.image_aspect_ratio"), "pad") == 0 ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE,
                        .image_folder = cfg_str(c, "data.image_folder"),
                        .max_len_after_splice = cfg_bool(c, "data.truncate_after_splice") ? cfg_int(c, "data.model_max_length") : 0,
                        .token_budget = cfg_int(c, "data.token_budget"),
                        .threads = cfg_int(c, "data.dataloader_num_workers"),
                        .prefetch = cfg_int(c, "data.prefetch")};

    // Where to start: the newest complete checkpoint when resuming. Rank 0 picks it and every rank
    // loads that one (each keeps its own shards of the optimizer state).
    optim_init_dist(&os, &m, d, cfg_int(c, "train.zero_stage"));
    have_os = 1;
    // ZeRO-2 keeps no full-size LM gradient buffer: per-layer slots instead (one pass per
    // micro-batch, so not with a token budget).
    if (cfg_int(c, "data.token_budget") == 0) optim_use_grad_slots(&os, &m);
    ckpt_state st = {0};
    int step = 0;
    loader_pos start = {0, 0};
    long tokens_seen = 0;
    int consecutive = 0;
    metrics_path = path_join(out_dir, "metrics.jsonl");
    // A fresh run never mixes with an earlier one's checkpoints: resuming (or rotating) would pick
    // theirs up. Nothing is deleted; the user says which they want.
    if (!opt->resume) {
        double earlier = 0;
        char *latest = lead ? ckpt_latest(out_dir) : NULL;
        if (latest) earlier = 1;
        dist_broadcast_host(d, &earlier, sizeof earlier, 0, "fresh run: earlier checkpoints");
        if (earlier) {
            rc = llava_fail("%s already holds %s from an earlier run: continue it with --resume, or give another "
                            "checkpoint.output_dir (nothing was changed)",
                            out_dir, latest ? strrchr(latest, '/') + 1 : "checkpoints");
            free(latest);
            goto done;
        }
    }
    if (lead) ckpt_clean_partial(out_dir);
    if (opt->resume) {
        double found = -1;
        if (lead) {
            char *latest = ckpt_latest(out_dir);
            if (latest) found = atoi(strrchr(latest, '-') + 1);
            free(latest);
        }
        dist_broadcast_host(d, &found, sizeof found, 0, "resume: the checkpoint to load");
        if (found >= 0) {
            char name[64];
            snprintf(name, sizeof name, "checkpoint-%d", (int)found);
            char *latest = path_join(out_dir, name);
            if (ckpt_load(latest, &m, &os, &st) != 0) {
                free(latest);
                rc = -1;
                goto done;
            }
            step = st.step;
            start = (loader_pos){st.epoch, st.loader_step};
            tokens_seen = (long)st.tokens_seen;
            consecutive = st.consecutive_skipped;
            if (lead)
                fprintf(stderr, "train: resuming from %s (step %d, written by %d rank%s)\n", latest, step, st.world,
                        st.world == 1 ? "" : "s");
            free(latest);
            ckpt_state_free(&st);
        } else if (lead) {
            fprintf(stderr, "train: no complete checkpoint in %s; starting from the beginning\n", out_dir);
        }
    }
    if (lead) truncate_metrics(metrics_path, step);

    ld = loader_create(&lc, start);
    if (!ld) {
        rc = -1;
        goto done;
    }
    int64_t per_epoch = loader_steps_per_epoch(ld);
    int total = cfg_int(c, "train.max_steps") > 0 ? cfg_int(c, "train.max_steps")
                                                   : (int)ceil(cfg_float(c, "train.num_train_epochs") * (double)per_epoch);
    const char *sched = cfg_str(c, "train.lr_scheduler_type");
    optim_config oc = {.lr = cfg_float(c, "train.learning_rate"),
                       .projector_lr = cfg_float(c, "train.mm_projector_lr"),
                       .beta1 = cfg_float(c, "train.adam_beta1"),
                       .beta2 = cfg_float(c, "train.adam_beta2"),
                       .eps = cfg_float(c, "train.adam_epsilon"),
                       .weight_decay = cfg_float(c, "train.weight_decay"),
                       .max_grad_norm = cfg_float(c, "train.max_grad_norm"),
                       .schedule = !strcmp(sched, "linear") ? SCHED_LINEAR
                                   : !strcmp(sched, "constant") ? SCHED_CONSTANT
                                   : !strcmp(sched, "constant_with_warmup") ? SCHED_CONSTANT_WITH_WARMUP
                                                                            : SCHED_COSINE,
                       .total_steps = total,
                       .warmup_steps = warmup_steps_for(total, cfg_float(c, "train.warmup_ratio"), cfg_int(c, "train.warmup_steps"))};
    int global_tokens = strcmp(cfg_str(c, "train.loss_normalization"), "global_tokens") == 0;
    int save_steps = strcmp(cfg_str(c, "checkpoint.save_strategy"), "steps") == 0 ? cfg_int(c, "checkpoint.save_steps") : 0;
    int keep = cfg_int(c, "checkpoint.save_total_limit"), log_every = cfg_int(c, "log.logging_steps");
    int max_bad = cfg_int(c, "train.max_nonfinite_steps");
    int jsonl = strcmp(cfg_str(c, "log.report_to"), "jsonl") == 0;
    config_json = cfg_to_json(c);
    int V = accum * world;  // virtual ranks: micro-batches per step over all ranks
    if (lead) {
        fprintf(stderr, "train: %s backend, %d steps (%lld per epoch), warmup %d, %d x %d samples per step, trainable: %s\n",
                be->ops->name, total, (long long)per_epoch, oc.warmup_steps, V, per_device,
                ts == TRAIN_PROJECTOR ? "projector" : "projector + language model");
        if (world > 1)
            fprintf(stderr, "train: %d ranks (%s collectives), %d micro-batch%s per rank per step, ZeRO-%d, %d gradient buckets%s\n",
                    world, dist_backend_name(dist_kind(d)), accum, accum == 1 ? "" : "es", os.zero, os.n_buckets,
                    os.slotted ? ", LM gradients in slots" : "");
        if (world > 1 && os.slotted)
            fprintf(stderr, "train: LM gradients: %d slots of %zu elements instead of a buffer of %zu\n", OPTIM_GRAD_SLOTS,
                    os.slot_n, (size_t)m.pt.group_numel[GROUP_LM]);
        mem_plan mp;
        if (!opt->quiet && mem_plan_make(c, &m.cfg, world, &mp) == 0)
            mem_plan_print(&mp, strcmp(device, "cuda") == 0 ? MEM_PLAN_GPU_BYTES : 0, stderr);
    }

    mf = lead && jsonl ? fopen(metrics_path, "a") : NULL;
    int ran = 0;
    double t_start = now_s();
    while (step < total && rc == 0) {
        debug_fault(rank, step + 1);
        loader_step ls;
        double t0 = now_s();
        if (loader_next(ld, &ls) != 0) {
            rc = -1;
            break;
        }
        // The step's counts over every rank (global_tokens needs the target count before the backward).
        double cnt[4] = {0, 0, 0, 0};  // targets, tokens, samples, non-empty micro-batches
        for (int mi = 0; mi < ls.accum; mi++) {
            cnt[0] += (double)ls.micro[mi].n_targets;
            cnt[1] += (double)ls.micro[mi].n_tokens;
            cnt[2] += ls.micro[mi].n_samples;
            cnt[3] += ls.micro[mi].n_targets > 0;
        }
        dist_allreduce_host_f64(d, cnt, 4, "step counts");
        double step_targets = cnt[0], n_micro_nonempty = cnt[3];
        int64_t step_tokens = (int64_t)cnt[1];
        int step_samples = (int)cnt[2];
        llava_model_zero_grads(&m);
        double loss_sum = 0;  // the step's loss under the configured normalisation (this rank's part)
        for (int mi = 0; mi < ls.accum && rc == 0; mi++) {
            const loader_micro *mb = &ls.micro[mi];
            optim_micro_begin(&os, &m, mi);
            // The reduction starts inside the last backward before it (optim_arm).
            int last_chunk = -1;
            for (int ch = 0; ch < mb->n_chunks && mb->n_targets > 0; ch++)
                if (mb->chunks[ch].n_targets) last_chunk = ch;
            int reduce_after = os.zero == 2 || mi == ls.accum - 1;
            // A fully masked micro-batch has no loss to learn from (but its rank still takes part
            // in the reduction).
            for (int ch = 0; ch < mb->n_chunks && mb->n_targets > 0; ch++) {
                const llava_batch *b = &mb->chunks[ch];
                if (b->n_targets == 0) continue;
                optim_arm(&os, &m, reduce_after && ch == last_chunk);
                // LLaVA: each micro-batch's token mean, averaged over micro-batches and ranks;
                // global_tokens: one mean over every target of the step. The reduction sums ranks.
                double w = global_tokens ? (double)b->n_targets / step_targets
                                         : (double)b->n_targets / (double)mb->n_targets / (double)V;
                float l = llava_forward_backward(&m, b, 1, (float)w, NULL);
                loss_sum += (double)l * w;
            }
            optim_micro_end(&os, &m);
        }
        optim_reduce(&os, &m);
        dist_allreduce_host_f64(d, &loss_sum, 1, "step loss");
        // With LLaVA's normalisation a micro-batch without targets contributes nothing, so the
        // mean runs over the others (LLaVA would get NaN from it).
        double loss = global_tokens ? loss_sum : (n_micro_nonempty > 0 ? loss_sum * V / n_micro_nonempty : NAN);
        double lr = lr_at_update(&oc, step + 1, 0), gnorm = NAN;
        int skipped = 0;
        if (!isfinite(loss)) {  // the same verdict on every rank: the loss is the global one
            skipped = 1;
            os.n_skipped++;
        } else {
            float scale = global_tokens || n_micro_nonempty == V ? 1.0f : (float)V / (float)n_micro_nonempty;
            gnorm = optim_step(&os, &m, &oc, scale, step + 1);
            skipped = !isfinite(gnorm);
        }
        consecutive = skipped ? consecutive + 1 : 0;
        step++;
        ran++;
        tokens_seen += (long)step_tokens;
        if (ran == 1) dist_set_timeout(d, coll_timeout);  // start-up is over
        double dt = now_s() - t0;
        if (mf && (step % log_every == 0 || step == total)) {
            // JSON has no NaN: a skipped step's loss or norm is null.
            char lbuf[32], gbuf[32];
            snprintf(lbuf, sizeof lbuf, isfinite(loss) ? "%.9g" : "null", loss);
            snprintf(gbuf, sizeof gbuf, isfinite(gnorm) ? "%.9g" : "null", gnorm);
            fprintf(mf,
                    "{\"step\":%d,\"epoch\":%d,\"loss\":%s,\"lr\":%.9g,\"grad_norm\":%s,\"tokens\":%lld,\"samples\":%d,"
                    "\"tokens_per_s\":%.1f,\"skipped\":%d,\"skipped_total\":%ld}\n",
                    step, ls.pos.epoch, lbuf, lr, gbuf, (long long)step_tokens, step_samples, (double)step_tokens / dt,
                    skipped, os.n_skipped);
            fflush(mf);
        }
        if (!opt->quiet && lead) {
            double el = now_s() - t_start, eta = el / ran * (total - step);
            fprintf(stderr, "\rstep %d/%d | loss %.4f | lr %.3g | %.0f tok/s | %.1f samples/s | ETA %dm%02ds   ", step, total,
                    loss, lr, (double)step_tokens / dt, step_samples / dt, (int)(eta / 60), (int)eta % 60);
        }
        loader_pos next = loader_position(ld);
        loader_step_free(&ls);
        if (consecutive >= max_bad) {
            rc = llava_fail("train: %d steps in a row had a non-finite loss or gradient (step %d); stopping "
                            "(train.max_nonfinite_steps)", consecutive, step);
        }
        if ((save_steps > 0 && step % save_steps == 0) || step == total) {
            ckpt_state cs = {.step = step, .epoch = next.epoch, .loader_step = next.step, .n_skipped = os.n_skipped,
                             .consecutive_skipped = consecutive, .tokens_seen = tokens_seen, .world = world,
                             .config_json = config_json};
            if (mf) fsync(fileno(mf));
            double t = dist_timeout(d);
            dist_set_timeout(d, write_timeout);
            if (rc == 0 && ckpt_save(out_dir, &m, &os, &cs, keep) != 0) rc = -1;
            dist_set_timeout(d, t);
        }
        if (opt->stop_after > 0 && ran >= opt->stop_after) break;
    }
    if (!opt->quiet && lead) fprintf(stderr, "\n");
    const char *last_drop = NULL;
    double dropped = (double)loader_dropped(ld, &last_drop);
    if (rc == 0) dist_allreduce_host_f64(d, &dropped, 1, "samples dropped");
    if (lead && dropped > 0)
        fprintf(stderr, "train: %.0f samples were dropped for unreadable images (rank 0's last: %s)\n", dropped,
                last_drop ? last_drop : "-");
    if (lead && ran)
        fprintf(stderr, "train: waited %.1f s for images over %d steps (%.1f s of training)\n", loader_wait_seconds(ld), ran,
                now_s() - t_start);
    int finished = rc == 0 && step == total;
    if (finished && lead) {
        // The results: the projector in LLaVA's own layout, and (when the LM trained) the whole model.
        // Every rank holds all parameters, so rank 0 writes them.
        char *pp = path_join(out_dir, "mm_projector.safetensors");
        rc = export_projector(&m, pp, DT_F32);
        free(pp);
        if (rc == 0 && ts == TRAIN_PROJECTOR_LM) {
            char *md = path_join(out_dir, "model");
            rc = export_llava_hf(&m, md, DT_F32);
            free(md);
        }
        if (rc == 0) fprintf(stderr, "train: done, %d steps, %ld skipped; results in %s\n", step, os.n_skipped, out_dir);
        if (rc == 0 && world > 1)
            fprintf(stderr, "train: rank 0 issued %ld bucket reductions, %ld of them during the backward\n", os.issued_total,
                    os.issued_in_backward);
    }
    if (finished && world > 1) {
        // Every rank ends with rank 0's verdict on the export.
        dist_set_timeout(d, write_timeout);
        double ok = lead && rc == 0 ? 1.0 : 0.0;
        dist_allreduce_host_f64(d, &ok, 1, "final result");
        if (ok != 1.0 && rc == 0) rc = llava_fail("rank 0 failed to write the results");
    }

done:
    if (mf) fclose(mf);
    free(config_json);
    free(metrics_path);
    if (ld) loader_free(ld);
    if (have_os) optim_free(&os, &m);
    if (have_ds) dataset_close(&ds);
    if (have_model) llava_model_free(&m);
    if (!opt->dist) dist_finalize(d);
    else dist_bind_backend(d, NULL);
    llava_backend_close(be);
    return rc;
}
