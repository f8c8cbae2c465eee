// The training loop in its parts (trainer.h): open, step, log, checkpoint, finish.
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common/util.h"
#include "data/loader.h"
#include "data/prep_record.h"
#include "fault.h"
#include "kernels/backend.h"
#include "memplan.h"
#include "model/io/export.h"
#include "model/io/peft.h"
#include "model/llava.h"
#include "optim.h"
#include "runlock.h"
#include "tblog.h"
#include "train/dist/dist.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The losses a step's loss is compared with to call it a spike (train.loss_spike_factor).
#define LOSS_WINDOW 32

// Preemption (SIGTERM from Slurm or Kubernetes, SIGINT from a person): the first signal asks the
// run to stop after the step in progress, with a checkpoint; the step's loss all-reduce carries the
// request to every rank, so they stop together. A second signal ends the process at once. The
// handler only sets a flag (a process has one set of signal handlers, hence a global).
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (stop_signal) _exit(128 + sig);
    stop_signal = sig;
}

// Everything a run holds between its parts.
typedef struct {
    const run_settings *s;
    const train_options *opt;
    dist *d;
    int rank, world, lead;
    double coll_timeout, write_timeout;  // the steps' collective deadline; waits on rank 0's writes
    llava_backend *be;
    llava_model m;
    llava_dataset ds;
    int images_per_sample;  // what the plan and the activations hold per sample: the run's, or the dataset's most
    loader *ld;
    optim_state os;
    int have_model, have_ds, have_os;
    llava_dataset eval_ds;  // eval.data_path, prepared (eval.evaluation_strategy "steps")
    int have_eval_ds;
    trainable_set ts;
    optim_config oc;
    int per_device, accum, V;  // V: virtual ranks, the micro-batches of a step over every rank
    int total;                 // optimizer steps of the run
    int64_t per_epoch;
    // where the run is
    int step, ran, consecutive;
    long tokens_seen;
    double t_start;
    char *metrics_path;
    FILE *mf;
    tblog *tb;             // rank 0, log.report_to "tensorboard": the event file in <output_dir>/runs/
    uint64_t device_used;  // the device's memory in use after the first step
    float *losses;         // the ledger read back: per-token losses of a step's passes (host)
    size_t losses_cap;
    run_lock lock;                    // rank 0: the output folder's (runlock.h)
    int handlers;                     // the signal handlers are installed
    ckpt_verified verified;           // checkpoints known good in this process
    double loss_window[LOSS_WINDOW];  // the last accepted losses, oldest first (the spike check)
    int n_window;
    int stop;            // every rank agreed to stop after this step (a signal)
    char *dataset_json;  // what the dataset was prepared from (state.json records it)
    struct sigaction old_term, old_int;
} trainer;

// What one step did.
typedef struct {
    double loss, lr, gnorm, seconds;
    double eval_loss, eval_seconds;  // NaN: no evaluation after this step
    int eval_samples;
    int skipped, spike, epoch, samples;
    int64_t tokens;
    loader_pos next;  // the loader's position after the step (what a checkpoint records)
} step_report;

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

// LLAVA_DEBUG_FAULT (train/fault.h) at the start of a step: exit (without saying goodbye to its
// peers), die of SIGKILL, hang, or receive SIGTERM: how the tests check that the other ranks stop
// within the collective timeout instead of waiting forever, and that a signal to one rank stops
// every rank after the same step, with a checkpoint.
static void debug_fault(int rank, int step) {
    const char *mode = debug_fault_mode(rank, step);
    if (!mode || strcmp(mode, "nangrad") == 0 || strncmp(mode, "ckpt-", 5) == 0) return;  // acting elsewhere
    fprintf(stderr, "\nllava: rank %d: LLAVA_DEBUG_FAULT: %s at step %d\n", rank, mode, step);
    fflush(stderr);
    if (strcmp(mode, "term") == 0) {
        raise(SIGTERM);
        return;
    }
    if (strcmp(mode, "hang") == 0)
        for (;;) pause();
    if (strcmp(mode, "kill") == 0) raise(SIGKILL);
    _exit(3);
}

// LLAVA_DEBUG_FAULT's nangrad: one reduced gradient value of this rank becomes NaN.
static void debug_nan_gradient(trainer *t) {
    const char *mode = debug_fault_mode(t->rank, t->step + 1);
    if (!mode || strcmp(mode, "nangrad") != 0) return;
    llava_model *m = &t->m;
    const optim_state *os = &t->os;
    const float nan = NAN;
    for (int g = 0; g < N_GROUPS; g++) {
        float *dst = os->zero == 0 ? m->grads[g] : (os->state_numel[g] ? os->grad_shard[g] : NULL);
        if (!dst) continue;
        m->ops->upload(m->be, BUF_GRAD, dst, &nan, 1);
        fprintf(stderr, "\nllava: rank %d: LLAVA_DEBUG_FAULT: a NaN in the %s gradient at step %d\n", t->rank,
                GROUP_NAMES[g], t->step + 1);
        return;
    }
}

// The offloaded AdamW's threads per rank: train.offload_threads, or the node's cores shared among
// the ranks on it (as the launcher tells: Open MPI, torchrun, Slurm; else all ranks on one node).
static int offload_threads(int asked, int world) {
    if (asked > 0) return asked;
    const char *keys[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"};
    int local = 0;
    for (int i = 0; i < 3 && local <= 0; i++)
        if (getenv(keys[i])) local = atoi(getenv(keys[i]));
    if (local <= 0) local = world;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cores > 0 ? (int)(cores / local) : 1;
    return n > 0 ? n : 1;
}

// ---------------------------------------------------------------------------------------------
// open: the backend, the model, the dataset, the loader, the optimizer, where to start.

// The memory plan against the machine, before anything large is allocated: a run that cannot fit
// is refused with the plan and the limit instead of being killed by the OOM killer a minute in.
// The CPU's limit is MemAvailable (per rank: ranks sharing a machine each need their plan), the
// GPU's the device's memory. train.ignore_memory_plan runs anyway.
static int check_memory(trainer *t) {
    const run_settings *s = t->s;
    model_config mc;
    mem_plan mp;
    if (train_model_config(s, &mc) != 0 || mem_plan_make(s, &mc, t->world, &mp) != 0) return -1;
    llava_backend_info info;
    llava_backend_describe(t->be, &info);
    int cuda = strcmp(s->train.device, "cuda") == 0;
    uint64_t limit = cuda ? info.memory_total : info.memory_free;
    if (limit == 0 || mp.total <= limit) return 0;
    const double gib = (double)(1ull << 30);
    const char *what = cuda ? "the device has" : "the machine has available";
    if (s->train.ignore_memory_plan) {
        if (t->lead)
            fprintf(stderr, "train: the memory plan needs %.2f GiB per rank, %s %.2f GiB (train.ignore_memory_plan)\n",
                    (double)mp.total / gib, what, (double)limit / gib);
        return 0;
    }
    if (t->lead) mem_plan_print(&mp, limit, stderr);
    return llava_fail(
        "the memory plan needs %.2f GiB per rank but %s %.2f GiB (%s): lower "
        "train.per_device_train_batch_size or data.model_max_length, turn on "
        "train.gradient_checkpointing, or set train.ignore_memory_plan=true to run anyway",
        (double)mp.total / gib, what, (double)limit / gib, cuda ? info.device : "MemAvailable");
}

static int open_model(trainer *t) {
    const run_settings *s = t->s;
    const char *device = s->train.device;
    if (mkdir_p(s->checkpoint.output_dir) != 0) return -1;
    if (!(t->be = llava_backend_open(device, NULL))) {
        char why[LLAVA_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", llava_errmsg());
        return llava_fail("train.device %s: %s (or use train.device=cpu)", device, why);
    }
    if (!s->train.projector && !s->train.lm && !s->train.lora) return llava_fail("train.trainable: nothing to train");
    // The LM (or LoRA's adapters) trains with the projector's gradient buffers too (its backward runs
    // through them); a frozen projector is then frozen by name.
    t->ts = s->train.lm ? TRAIN_PROJECTOR_LM : s->train.lora ? TRAIN_PROJECTOR_LORA : TRAIN_PROJECTOR;
    if (check_memory(t) != 0) return -1;
    if (train_build_model(s, t->be, &t->m) != 0) return -1;
    t->have_model = 1;
    dist_bind_backend(t->d, t->be);  // the NCCL collectives order themselves after the ops on its stream
    llava_model_set_trainable(&t->m, t->ts);
    t->m.checkpoint_layers = s->train.gradient_checkpointing;
    if (s->train.vision &&
        llava_model_set_vision_trainable(&t->m, s->train.vision_last ? s->train.vision_last : -1) < 0)
        return llava_fail_ctx("train.trainable vision");
    t->m.checkpoint_vision = s->train.vision_checkpointing;
    int rcf = s->train.projector ? 0 : llava_model_freeze(&t->m, "projector.");
    for (int i = 0; i < s->train.n_freeze && rcf >= 0; i++) rcf = llava_model_freeze(&t->m, s->train.freeze[i]);
    return rcf < 0 ? -1 : 0;
}

static int open_data(trainer *t) {
    const run_settings *s = t->s;
    // Rank 0 prepares the dataset (when data_path is LLaVA JSON) while the others wait for it; then
    // every rank opens the prepared file.
    int rc = t->lead ? train_open_dataset_as(s, &t->ds, 1) : 0;
    int lead_rc = rc;
    dist_broadcast_host(t->d, &lead_rc, sizeof lead_rc, 0, "start-up: rank 0 prepares the dataset");
    if (!t->lead)
        rc = lead_rc != 0 ? llava_fail("rank 0 could not open or prepare the dataset")
                          : train_open_dataset_as(s, &t->ds, 0);
    if (rc != 0) return -1;
    t->have_ds = 1;
    for (int64_t i = 0; i < t->ds.offsets[t->ds.n]; i++)
        if (t->ds.input_ids[i] >= t->m.cfg.text.vocab_size)
            return llava_fail(
                "the dataset has token id %d but the language model's vocabulary has %d: wrong tokenizer?",
                t->ds.input_ids[i], t->m.cfg.text.vocab_size);
    t->per_device = s->train.per_device_batch;
    t->accum = s->train.grad_accum;
    int global = s->train.global_batch;
    if (global > 0) {
        if (global % (t->per_device * t->world) != 0)
            return llava_fail("train.global_batch_size %d is not a multiple of per-device batch %d x %d ranks", global,
                              t->per_device, t->world);
        t->accum = global / (t->per_device * t->world);
    }
    t->V = t->accum * t->world;
    if (s->data.single_process_order && t->world > 1)
        return llava_fail(
            "data.sampler_order llava-single-process reproduces a one-process launch; this run has %d ranks", t->world);
    t->dataset_json = train_dataset_json(&t->ds);
    if (s->eval.steps) {  // the held-out samples, prepared as the training data (rank 0 first)
        int erc = t->lead ? train_open_eval_dataset(s, &t->eval_ds, 1) : 0, lead_erc = erc;
        dist_broadcast_host(t->d, &lead_erc, sizeof lead_erc, 0, "start-up: rank 0 prepares the eval dataset");
        if (!t->lead)
            erc = lead_erc != 0 ? llava_fail("rank 0 could not open or prepare the eval dataset")
                                : train_open_eval_dataset(s, &t->eval_ds, 0);
        if (erc != 0) return -1;
        t->have_eval_ds = 1;
    }
    int64_t step_samples = (int64_t)t->per_device * t->V;
    if (step_samples > t->ds.n)
        return llava_fail(
            "one step takes %lld samples (%d per device x %d micro-batches x %d ranks) but the dataset has "
            "%lld: lower train.per_device_train_batch_size or the accumulation",
            (long long)step_samples, t->per_device, t->accum, t->world, (long long)t->ds.n);
    return 0;
}

static loader_config loader_settings(const trainer *t) {
    const run_settings *s = t->s;
    const data_settings *d = &s->data;
    loader_config lc = {.ds = (llava_dataset *)&t->ds,
                        .batch = t->per_device,
                        .world = t->world,
                        .rank = t->rank,
                        .accum = t->accum,
                        .group_by_modality = d->group_by_modality_length,
                        .seed = d->sampler_seed < 0 ? TORCH_DEFAULT_SEED : (uint64_t)d->sampler_seed,
                        .inner_seed = (uint64_t)s->train.seed,
                        .single_generator = d->single_process_order,
                        .inner_skip = d->single_process_order ? 2 : 0,  // the DataLoader's int64 base seed
                        .tokens_per_image = t->m.tokens_per_image,
                        .tokens_per_video_frame = t->m.tokens_per_video_frame,
                        .image_size = t->m.cfg.vision.image_size,
                        .aspect = d->aspect,
                        .proc = t->m.cfg.vision.siglip ? IMAGE_PROC_SIGLIP : IMAGE_PROC_CLIP,
                        .image_folder = d->image_folder,
                        .max_len_after_splice = d->truncate_after_splice ? d->model_max_length : 0,
                        .token_budget = d->token_budget,
                        .threads = d->num_workers,
                        .prefetch = d->prefetch};
    if (t->m.cfg.glue.anyres) {  // LLaVA-NeXT's tiles, as transformers' LlavaNextImageProcessor makes them
        lc.anyres = 1;
        lc.anyres_grid = t->m.cfg.vision.image_size / t->m.cfg.vision.patch_size;
        lc.anyres_cfg.size = t->m.cfg.vision.image_size;
        lc.anyres_cfg.pinpoints = t->m.cfg.glue.pinpoints;
        lc.anyres_cfg.flavor = IMAGE_ANYRES_HF;
    }
    return lc;
}

// Where to start: the newest complete checkpoint when resuming. Rank 0 picks it and every rank
// loads that one (each keeps its own shards of the optimizer state). A fresh run never mixes with
// an earlier one's checkpoints: resuming (or rotating) would pick theirs up. Nothing is deleted;
// the user says which they want.
static int open_start(trainer *t, loader_pos *start) {
    const char *out_dir = t->s->checkpoint.output_dir;
    *start = (loader_pos){0, 0};
    if (!t->opt->resume) {
        double earlier = 0;
        char *latest = t->lead ? ckpt_latest(out_dir) : NULL;
        if (latest) earlier = 1;
        dist_broadcast_host(t->d, &earlier, sizeof earlier, 0, "fresh run: earlier checkpoints");
        if (earlier) {
            int rc = llava_fail(
                "%s already holds %s from an earlier run: continue it with --resume, or give another "
                "checkpoint.output_dir (nothing was changed)",
                out_dir, latest ? strrchr(latest, '/') + 1 : "checkpoints");
            free(latest);
            return rc;
        }
    }
    if (t->lead) ckpt_clean_partial(out_dir);
    if (t->opt->resume) {
        double found = -1;
        if (t->lead) {
            // The newest checkpoint whose files match their manifest (damaged ones are set aside).
            char *latest = ckpt_latest_good(out_dir, &t->verified);
            if (latest) found = atoi(strrchr(latest, '-') + 1);
            free(latest);
        }
        dist_broadcast_host(t->d, &found, sizeof found, 0, "resume: the checkpoint to load");
        if (found >= 0) {
            char name[64];
            snprintf(name, sizeof name, "checkpoint-%d", (int)found);
            char *latest = path_join(out_dir, name);
            ckpt_state st = {0};
            if (ckpt_load(latest, &t->m, &t->os, &st) != 0) {
                free(latest);
                return -1;
            }
            t->step = st.step;
            *start = (loader_pos){st.epoch, st.loader_step};
            t->tokens_seen = (long)st.tokens_seen;
            t->consecutive = st.consecutive_skipped;
            t->n_window = st.n_loss_window < LOSS_WINDOW ? st.n_loss_window : LOSS_WINDOW;
            if (t->n_window)
                memcpy(t->loss_window, st.loss_window + (st.n_loss_window - t->n_window),
                       sizeof(double) * (size_t)t->n_window);
            if (t->lead)
                fprintf(stderr, "train: resuming from %s (step %d, written by %d rank%s)\n", latest, t->step, st.world,
                        st.world == 1 ? "" : "s");
            free(latest);
            ckpt_state_free(&st);
        } else if (t->lead) {
            fprintf(stderr, "train: no complete checkpoint in %s; starting from the beginning\n", out_dir);
        }
    }
    return 0;
}

static void print_start(const trainer *t) {
    const run_settings *s = t->s;
    fprintf(stderr,
            "train: %s backend, %d steps (%lld per epoch), warmup %d, %d x %d samples per step, trainable: %s\n",
            t->be->ops->name, t->total, (long long)t->per_epoch, t->oc.warmup_steps, t->V, t->per_device,
            t->ts == TRAIN_PROJECTOR        ? "projector"
            : t->ts == TRAIN_PROJECTOR_LORA ? "projector + LoRA adapters"
                                            : "projector + language model");
    if (t->m.vision_train)
        fprintf(stderr, "train: the vision tower trains too: %d of its %d layers that run%s, peak learning rate %g\n",
                t->m.vision_train, t->m.vision_layers,
                t->m.vision_train == t->m.vision_layers ? " and its embeddings" : "",
                t->oc.vision_lr > 0 ? t->oc.vision_lr : t->oc.lr);
    if (t->world > 1)
        fprintf(
            stderr,
            "train: %d ranks (%s collectives), %d micro-batch%s per rank per step, ZeRO-%d, %d gradient buckets%s\n",
            t->world, dist_backend_name(dist_kind(t->d)), t->accum, t->accum == 1 ? "" : "es", t->os.zero,
            t->os.n_buckets, t->os.slotted ? ", LM gradients in slots" : "");
    if (t->lead && t->os.offload)
        fprintf(stderr,
                "train: optimizer offloaded: fp32 masters and AdamW moments in host memory, the update on the host "
                "(%d thread%s per rank)\n",
                t->os.host_threads, t->os.host_threads == 1 ? "" : "s");
    if (t->lead && t->os.n_segs) {
        char which[96] = "";
        const char *names[] = {"the frozen tower", "the projector", "the LM"};
        const int groups[] = {GROUP_VISION, GROUP_PROJECTOR, GROUP_LM};
        for (int i = 0; i < 3; i++)
            if (t->os.sharded[groups[i]])
                snprintf(which + strlen(which), sizeof which - strlen(which), "%s%s", which[0] ? ", " : "", names[i]);
        fprintf(stderr, "train: ZeRO-3: parameters sharded (%s), gathered in %d segments\n", which, t->os.n_segs);
    }
    if (t->world > 1 && t->os.slotted)
        fprintf(stderr, "train: LM gradients: %d slots of %zu elements instead of a buffer of %zu\n", OPTIM_GRAD_SLOTS,
                t->os.slot_n, (size_t)t->m.pt.group_numel[GROUP_LM]);
    mem_plan mp;
    if (!t->opt->quiet && mem_plan_make(s, &t->m.cfg, t->world, &mp) == 0)
        mem_plan_print(&mp, strcmp(s->train.device, "cuda") == 0 ? MEM_PLAN_GPU_BYTES : 0, stderr);
}

static int trainer_open(trainer *t, const run_settings *s, const train_options *opt) {
    memset(t, 0, sizeof *t);
    t->lock.fd = -1;
    t->s = s;
    t->opt = opt;
    t->d = opt->dist ? opt->dist : dist_single();
    t->rank = dist_rank(t->d), t->world = dist_world(t->d), t->lead = t->rank == 0;
    // Collective deadlines: start-up (prep, weights, the first step) gets the long one, the steps
    // after it the collective timeout, and waits on rank 0's writes (checkpoints, the final export)
    // the longer of the two.
    t->coll_timeout = s->train.collective_timeout_s;
    int init_timeout = s->train.init_timeout_s;
    t->write_timeout = init_timeout > t->coll_timeout ? init_timeout : t->coll_timeout;
    dist_set_timeout(t->d, init_timeout);
    // The signal handlers first: once the lock shows this run, a signal is already a clean stop.
    stop_signal = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &t->old_term);
    sigaction(SIGINT, &sa, &t->old_int);
    t->handlers = 1;
    // One run per output folder: rank 0 holds its lock for the whole run; every rank fails with it.
    int lock_rc = t->lead ? run_lock_take(&t->lock, s->checkpoint.output_dir) : 0;
    double lock_ok = lock_rc == 0;
    dist_broadcast_host(t->d, &lock_ok, sizeof lock_ok, 0, "start-up: the output folder's lock");
    if (lock_rc != 0) return -1;
    if (lock_ok != 1.0) return llava_fail("rank 0 could not lock %s", s->checkpoint.output_dir);
    if (open_model(t) != 0 || open_data(t) != 0) return -1;

    optim_init_ex(&t->os, &t->m, t->d, s->train.zero_stage, s->train.offload_optimizer);
    t->have_os = 1;
    if (t->os.offload) t->os.host_threads = offload_threads(s->train.offload_threads, t->world);
    // ZeRO-3: the trained LM's and projector's parameters sharded, gathered a segment at a time.
    optim_shard_params(&t->os, &t->m, s->train.shard_frozen);
    // ZeRO-2 keeps no full-size LM gradient buffer: per-layer slots instead (one pass per
    // micro-batch, so not with a token budget).
    if (s->data.token_budget == 0) optim_use_grad_slots(&t->os, &t->m);
    loader_pos start;
    t->metrics_path = path_join(s->checkpoint.output_dir, "metrics.jsonl");
    if (open_start(t, &start) != 0) return -1;
    if (t->lead) truncate_metrics(t->metrics_path, t->step);
    if (t->lead) {  // and the TensorBoard events past the step, whatever this run reports to
        char *runs = path_join(s->checkpoint.output_dir, "runs");
        if (tblog_truncate(runs, t->step) != 0) fprintf(stderr, "train: warning: %s\n", llava_errmsg());
        free(runs);
    }

    loader_config lc = loader_settings(t);
    t->ld = loader_create(&lc, start);
    if (!t->ld) return -1;
    t->per_epoch = loader_steps_per_epoch(t->ld);
    t->total =
        s->train.max_steps > 0 ? s->train.max_steps : (int)ceil(s->train.num_train_epochs * (double)t->per_epoch);
    t->oc = (optim_config){.lr = s->train.learning_rate,
                           .projector_lr = s->train.projector_lr,
                           .vision_lr = s->train.vision_lr,
                           .beta1 = s->train.beta1,
                           .beta2 = s->train.beta2,
                           .eps = s->train.eps,
                           .weight_decay = s->train.weight_decay,
                           .max_grad_norm = s->train.max_grad_norm,
                           .schedule = s->train.schedule,
                           .total_steps = t->total,
                           .warmup_steps = warmup_steps_for(t->total, s->train.warmup_ratio, s->train.warmup_steps)};
    // The activations of the largest micro-batch and a step's losses, planned and allocated once:
    // the steps allocate nothing.
    // Images per sample: the dataset's own maximum (several images, a video's frames) unless the run names one.
    run_settings sp = *s;
    if (sp.data.max_images <= 0) {
        sp.data.max_images = 1;
        for (int64_t i = 0; i < t->ds.n; i++) {
            int k = prep_image_count(t->ds.image_paths[i]);
            if (k > sp.data.max_images) sp.data.max_images = k;
        }
    }
    t->images_per_sample = sp.data.max_images;
    act_shape shape = mem_plan_act_shape(&sp, &t->m.cfg);
    if (llava_model_reserve(&t->m, &shape) != 0) return -1;
    llava_model_reserve_losses(&t->m, (size_t)t->accum * (size_t)shape.T);
    if (t->lead) print_start(t);
    t->mf = t->lead && s->log.jsonl ? fopen(t->metrics_path, "a") : NULL;
    if (t->lead && s->log.tensorboard) {
        char *runs = path_join(s->checkpoint.output_dir, "runs");
        t->tb = tblog_open(runs, -1, NULL);
        if (!t->tb) fprintf(stderr, "train: warning: no TensorBoard log: %s\n", llava_errmsg());
        free(runs);
    }
    t->t_start = now_s();
    return 0;
}

// ---------------------------------------------------------------------------------------------
// step: one optimizer update over the loader's next step.

typedef struct {
    const llava_batch *b;
    double w;
} pass_weight;

int train_step_passes(llava_model *m, optim_state *os, const loader_micro *micro, int accum, int V, int global_tokens,
                      double step_targets, float **losses, size_t *losses_cap, double *loss_sum) {
    int n_chunks = 0;
    for (int mi = 0; mi < accum; mi++) n_chunks += micro[mi].n_chunks;
    llava_model_zero_grads(m);
    llava_model_losses_reset(m);
    pass_weight *passes = xmalloc(sizeof(pass_weight) * (size_t)(n_chunks ? n_chunks : 1));
    int n_passes = 0, rc = 0;
    for (int mi = 0; mi < accum && rc == 0; mi++) {
        const loader_micro *mb = &micro[mi];
        optim_micro_begin(os, m, mi);
        // The reduction starts inside the last backward before it (optim_arm).
        int last_chunk = -1;
        for (int ch = 0; ch < mb->n_chunks && mb->n_targets > 0; ch++)
            if (mb->chunks[ch].n_targets) last_chunk = ch;
        int reduce_after = os->zero >= 2 || mi == accum - 1;
        int passed = 0;
        // A fully masked micro-batch has no loss to learn from (but its rank still takes part in
        // the reduction).
        for (int ch = 0; ch < mb->n_chunks && mb->n_targets > 0 && rc == 0; ch++) {
            const llava_batch *b = &mb->chunks[ch];
            if (b->n_targets == 0) continue;
            optim_arm(os, m, reduce_after && ch == last_chunk);
            // LLaVA: each micro-batch's token mean, averaged over micro-batches and ranks;
            // global_tokens: one mean over every target of the step. The reduction sums ranks.
            double w = global_tokens ? (double)b->n_targets / step_targets
                                     : (double)b->n_targets / (double)mb->n_targets / (double)V;
            m->lora_pass_seed = lora_mix64(m->lora_pass_seed);  // each pass its own dropout masks
            rc = llava_pass(m, b, 1, (float)w, NULL);
            passed = 1;
            if (rc == 0) passes[n_passes++] = (pass_weight){b, w};  // a failed pass wrote no losses
        }
        // ZeRO-3: a rank with nothing to train on still takes part in the pass's parameter gathers.
        if (!passed && rc == 0) llava_model_param_walk(m, 1);
        optim_micro_end(os, m);
    }
    optim_reduce(os, m);
    // The step's losses, read back once: each pass's mean over its targets, weighted as above.
    double sum = 0;
    size_t n_losses = m->ledger_used;
    if (n_losses > *losses_cap) {
        *losses_cap = n_losses;
        *losses = xrealloc(*losses, sizeof(float) * n_losses);
    }
    llava_model_losses_read(m, *losses);
    for (int i = 0, off = 0; i < n_passes; off += passes[i].b->T, i++)
        sum += (double)(float)llava_pass_loss(*losses + off, passes[i].b) * passes[i].w;
    free(passes);
    *loss_sum = sum;
    return rc;
}

double train_step_loss(int global_tokens, double loss_sum, int V, double n_micro_nonempty, float *grad_scale) {
    // With LLaVA's normalisation a micro-batch without targets contributes nothing, so the mean
    // runs over the others (LLaVA would get NaN from it).
    *grad_scale = global_tokens || n_micro_nonempty == V ? 1.0f : (float)V / (float)n_micro_nonempty;
    return global_tokens ? loss_sum : (n_micro_nonempty > 0 ? loss_sum * V / n_micro_nonempty : NAN);
}

static int trainer_step(trainer *t, step_report *r) {
    const run_settings *s = t->s;
    llava_model *m = &t->m;
    optim_state *os = &t->os;
    int global_tokens = s->train.loss_global_tokens, V = t->V;
    memset(r, 0, sizeof *r);
    debug_fault(t->rank, t->step + 1);
    loader_step ls;
    double t0 = now_s();
    if (loader_next(t->ld, &ls) != 0) return -1;
    // The step's counts over every rank (global_tokens needs the target count before the backward).
    double cnt[4] = {0, 0, 0, 0};  // targets, tokens, samples, non-empty micro-batches
    for (int mi = 0; mi < ls.accum; mi++) {
        cnt[0] += (double)ls.micro[mi].n_targets;
        cnt[1] += (double)ls.micro[mi].n_tokens;
        cnt[2] += ls.micro[mi].n_samples;
        cnt[3] += ls.micro[mi].n_targets > 0;
    }
    dist_allreduce_host_f64(t->d, cnt, 4, "step counts");
    double step_targets = cnt[0], n_micro_nonempty = cnt[3];
    r->tokens = (int64_t)cnt[1];
    r->samples = (int)cnt[2];
    r->epoch = ls.pos.epoch;
    double loss_sum = 0;  // the step's loss under the configured normalisation (this rank's part)
    // LoRA's dropout masks: a function of the run's seed, the step and the rank, so a resumed run
    // draws the masks it would have drawn.
    m->lora_pass_seed = ((uint64_t)(uint32_t)s->train.seed << 32) ^ ((uint64_t)t->step * (uint64_t)t->world + t->rank);
    int rc = train_step_passes(m, os, ls.micro, ls.accum, V, global_tokens, step_targets, &t->losses, &t->losses_cap,
                               &loss_sum);
    debug_nan_gradient(t);
    // The step's loss, and whether any rank was asked to stop (a signal): every rank stops together.
    double reduced[2] = {loss_sum, stop_signal ? 1.0 : 0.0};
    dist_allreduce_host_f64(t->d, reduced, 2, "step loss");
    loss_sum = reduced[0];
    t->stop = reduced[1] > 0;
    float scale;
    r->loss = train_step_loss(global_tokens, loss_sum, V, n_micro_nonempty, &scale);
    r->lr = lr_at_update(&t->oc, t->step + 1, 0);
    r->gnorm = NAN;
    // A finite loss many orders of magnitude over the recent ones (broken weights or data) is no
    // more to learn from than a NaN: skipped and counted the same way.
    double mean = 0;
    for (int i = 0; i < t->n_window; i++) mean += t->loss_window[i];
    mean = t->n_window ? mean / t->n_window : 0;
    double factor = s->train.loss_spike_factor;
    r->spike = isfinite(r->loss) && factor > 0 && t->n_window > 0 && r->loss > factor * (mean > 1.0 ? mean : 1.0);
    if (!isfinite(r->loss) || r->spike) {  // the same verdict on every rank: the loss is the global one
        r->skipped = 1;
        os->n_skipped++;
        if (r->spike && t->lead)
            fprintf(stderr, "\ntrain: step %d: loss %.6g is over %g x the recent mean %.6g: skipped\n", t->step + 1,
                    r->loss, factor, mean);
    } else {
        r->gnorm = optim_step(os, m, &t->oc, scale, t->step + 1);
        r->skipped = !isfinite(r->gnorm);
    }
    if (!r->skipped) {  // the window of accepted losses, oldest first
        if (t->n_window == LOSS_WINDOW) memmove(t->loss_window, t->loss_window + 1, sizeof(double) * (LOSS_WINDOW - 1));
        else t->n_window++;
        t->loss_window[t->n_window - 1] = r->loss;
    }
    t->consecutive = r->skipped ? t->consecutive + 1 : 0;
    t->step++;
    t->ran++;
    t->tokens_seen += (long)r->tokens;
    if (t->ran == 1) {
        dist_set_timeout(t->d, t->coll_timeout);  // start-up is over
        llava_backend_info info;
        llava_backend_describe(t->be, &info);
        t->device_used = info.memory_total - info.memory_free;
    }
    r->seconds = now_s() - t0;
    r->next = loader_position(t->ld);
    loader_step_free(&ls);
    if (rc == 0 && t->consecutive >= s->train.max_nonfinite_steps)
        rc = llava_fail(
            "train: %d steps in a row had a non-finite loss or gradient, or a loss spike (step %d); stopping "
            "(train.max_nonfinite_steps)",
            t->consecutive, t->step);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// eval: the loss on the held-out samples every eval.eval_steps steps and after the last, as the HF
// Trainer's evaluation loop computes it: the samples in file order, in batches of
// per_device_eval_batch_size, each batch's mean over its targets, averaged over batches weighted by
// their sample counts (the loss repeated batch-size times, then the mean). The batches are dealt
// round robin over the ranks without padding; one rank's value is HF's exactly, several ranks'
// differ from HF only where accelerate pads the last batches with repeated samples.

static int trainer_eval(trainer *t, step_report *r) {
    const run_settings *s = t->s;
    r->eval_loss = NAN;
    if (!t->have_eval_ds || !(t->step % s->eval.every == 0 || t->step == t->total || t->stop)) return 0;
    double t0 = now_s();
    loader_config lc = loader_settings(t);
    lc.ds = &t->eval_ds;
    lc.batch = s->train.per_device_eval_batch;
    lc.world = 1, lc.rank = 0, lc.accum = 1;  // every rank walks the batches and takes its share
    lc.group_by_modality = 0;
    lc.sequential = 1;
    lc.prefetch = 0;
    loader *ld = loader_create(&lc, (loader_pos){0, 0});
    if (!ld) return -1;
    double acc[2] = {0, 0};  // sum of batch loss x samples, samples
    int64_t n_batches = loader_steps_per_epoch(ld);
    int rc = 0;
    for (int64_t b = 0; b < n_batches && rc == 0; b++) {
        loader_step ls;
        if (loader_next(ld, &ls) != 0) {
            rc = -1;
            break;
        }
        // ZeRO-3: every rank takes part in every pass's parameter gathers, its own or not (one pass
        // per batch: a token budget is refused with ZeRO-3).
        if (b % t->world != t->rank && t->os.n_segs) llava_model_param_walk(&t->m, 0);
        if (b % t->world == t->rank) {
            const loader_micro *mb = &ls.micro[0];
            double sum = 0;  // the batch's loss: its chunks' token means, weighted by their targets
            if (mb->n_chunks == 0 || mb->chunks[0].n_targets == 0) llava_model_param_walk(&t->m, 0);
            for (int ch = 0; ch < mb->n_chunks; ch++) {
                const llava_batch *bt = &mb->chunks[ch];
                if (bt->n_targets == 0) continue;
                float l = llava_forward_backward(&t->m, bt, 0, 1.0f, NULL);
                sum += (double)l * bt->n_targets;
            }
            if (mb->n_targets > 0) {  // a batch with nothing to predict has no loss (HF: NaN)
                acc[0] += sum / (double)mb->n_targets * mb->n_samples;
                acc[1] += mb->n_samples;
            }
        }
        loader_step_free(&ls);
    }
    loader_free(ld);
    if (rc != 0) return -1;
    dist_allreduce_host_f64(t->d, acc, 2, "eval loss");
    r->eval_loss = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    r->eval_samples = (int)acc[1];
    r->eval_seconds = now_s() - t0;
    if (!t->opt->quiet && t->lead)
        fprintf(stderr, "\neval: step %d: eval_loss %.6f over %d samples (%.1f s)\n", t->step, r->eval_loss,
                r->eval_samples, r->eval_seconds);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// log: the metrics line (rank 0, every logging_steps and the last step) and the progress line.

// The progress line (rank 0, not --quiet): on a terminal refreshed in place every step; in a log
// file one line every log.logging_steps and at the last step. Step/total, epoch (fractional), loss,
// lr, gradient norm, tokens/s and samples/s of this step, the device's memory in use, the model
// FLOP utilisation on a device with a known bf16 peak, elapsed time and the ETA.
static void trainer_progress(trainer *t, const step_report *r) {
    int tty = isatty(2);
    if (!tty && !(t->step % t->s->log.logging_steps == 0 || t->step == t->total)) return;
    double el = now_s() - t->t_start, eta = t->ran > 0 ? el / t->ran * (t->total - t->step) : 0;
    char e1[32], e2[32], mem[48] = "", mfu[48] = "", gn[24];
    fmt_duration(el, e1);
    fmt_duration(eta, e2);
    snprintf(gn, sizeof gn, isfinite(r->gnorm) ? "%.3g" : "skipped", r->gnorm);
    llava_backend_info info;
    llava_backend_describe(t->be, &info);
    if (strcmp(t->s->train.device, "cuda") == 0 && info.memory_total > 0) {
        snprintf(mem, sizeof mem, " | mem %.1f/%.0f GiB", (double)(info.memory_total - info.memory_free) / (1 << 30),
                 (double)info.memory_total / (1 << 30));
    } else {  // the CPU backend: this process's resident memory
        long pages = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f && fscanf(f, "%ld %ld", &pages, &resident) == 2)
            snprintf(mem, sizeof mem, " | rss %.1f GiB", (double)resident * (double)sysconf(_SC_PAGESIZE) / (1 << 30));
        if (f) fclose(f);
    }
    if (info.peak_bf16_tflops > 0 && r->seconds > 0) {
        // Model FLOPs, as bench-step counts them: 2 per parameter per token forward through the LM
        // linears (and the head), x3 when the LM trains (x2 when only the projector does: the input
        // gradients still run through it), and the vision tower's forward per image.
        const model_config *mc = &t->m.cfg;
        double d = mc->text.hidden_size, I = mc->text.intermediate_size, L = mc->text.num_hidden_layers;
        double kv = mc->text.num_key_value_heads * (d / mc->text.num_attention_heads);
        double lm = 2.0 * (L * (2 * d * d + 2 * d * kv + 3 * d * I) + d * mc->text.vocab_size);
        double dv = mc->vision.hidden_size, Iv = mc->vision.intermediate_size, Lv = mc->vision.num_hidden_layers;
        double patches =
            (double)(mc->vision.image_size / mc->vision.patch_size) * (mc->vision.image_size / mc->vision.patch_size) +
            1;
        double vis = 2.0 * Lv * (4 * dv * dv + 2 * dv * Iv) * patches;
        double mult = t->ts == TRAIN_PROJECTOR ? 2.0 : 3.0;
        double flops = mult * lm * (double)r->tokens + vis * (double)r->samples;  // ~one image per sample
        snprintf(mfu, sizeof mfu, " | MFU %.1f%%",
                 100.0 * flops / r->seconds / (info.peak_bf16_tflops * 1e12 * t->world));
    }
    fprintf(stderr,
            "%sstep %d/%d | epoch %.2f | loss %.4f | lr %.3g | grad norm %s | %.0f tok/s | %.1f samples/s%s%s | %s "
            "elapsed | ETA %s%s",
            tty ? "\r" : "", t->step, t->total, t->per_epoch > 0 ? (double)t->step / (double)t->per_epoch : 0.0,
            r->loss, r->lr, gn, (double)r->tokens / r->seconds, r->samples / r->seconds, mfu, mem, e1, e2,
            tty ? "\033[K" : "\n");
}

// The metrics line's numbers as TensorBoard scalars, under its keys (tblog_metrics names the tags;
// a null is left out).
static void log_tensorboard(trainer *t, const step_report *r, int evaluated) {
    const char *keys[] = {"loss",         "lr",      "grad_norm",     "epoch",     "tokens",      "samples",
                          "tokens_per_s", "skipped", "skipped_total", "eval_loss", "eval_samples"};
    double v[] = {r->loss,
                  r->lr,
                  r->gnorm,
                  r->epoch,
                  (double)r->tokens,
                  r->samples,
                  (double)r->tokens / r->seconds,
                  r->skipped,
                  (double)t->os.n_skipped,
                  evaluated ? r->eval_loss : NAN,
                  evaluated ? r->eval_samples : NAN};
    if (tblog_metrics(t->tb, t->step, -1, keys, v, 11) != 0) fprintf(stderr, "train: warning: %s\n", llava_errmsg());
}

static void trainer_log(trainer *t, const step_report *r) {
    int evaluated = t->have_eval_ds && (isfinite(r->eval_loss) || r->eval_samples > 0);
    int due = t->step % t->s->log.logging_steps == 0 || t->step == t->total || evaluated;
    if (t->tb && due) log_tensorboard(t, r, evaluated);
    if (t->mf && due) {
        // JSON has no NaN: a skipped step's loss or norm is null.
        char lbuf[32], gbuf[32], ebuf[96] = "";
        snprintf(lbuf, sizeof lbuf, isfinite(r->loss) ? "%.9g" : "null", r->loss);
        snprintf(gbuf, sizeof gbuf, isfinite(r->gnorm) ? "%.9g" : "null", r->gnorm);
        if (evaluated && isfinite(r->eval_loss))  // the eval loss of the model after this step
            snprintf(ebuf, sizeof ebuf, ",\"eval_loss\":%.9g,\"eval_samples\":%d", r->eval_loss, r->eval_samples);
        else if (evaluated) snprintf(ebuf, sizeof ebuf, ",\"eval_loss\":null,\"eval_samples\":%d", r->eval_samples);
        fprintf(t->mf,
                "{\"step\":%d,\"epoch\":%d,\"loss\":%s,\"lr\":%.9g,\"grad_norm\":%s,\"tokens\":%lld,\"samples\":%d,"
                "\"tokens_per_s\":%.1f,\"skipped\":%d,\"skipped_total\":%ld%s}\n",
                t->step, r->epoch, lbuf, r->lr, gbuf, (long long)r->tokens, r->samples, (double)r->tokens / r->seconds,
                r->skipped, t->os.n_skipped, ebuf);
        fflush(t->mf);
    }
    if (!t->opt->quiet && t->lead) trainer_progress(t, r);
}

// ---------------------------------------------------------------------------------------------
// checkpoint: every save_steps and after the last step, on every rank (the gathers are collectives).

static int trainer_checkpoint(trainer *t, const step_report *r) {
    int save_steps = t->s->checkpoint.save_steps;
    if (!((save_steps > 0 && t->step % save_steps == 0) || t->step == t->total || t->stop)) return 0;
    ckpt_state cs = {.step = t->step,
                     .epoch = r->next.epoch,
                     .loader_step = r->next.step,
                     .n_skipped = t->os.n_skipped,
                     .consecutive_skipped = t->consecutive,
                     .tokens_seen = t->tokens_seen,
                     .world = t->world,
                     .config_json = t->s->config_json,
                     .loss_window = t->loss_window,
                     .n_loss_window = t->n_window,
                     .dataset_json = t->dataset_json};
    if (t->mf) fsync(fileno(t->mf));
    tblog_sync(t->tb);
    double before = dist_timeout(t->d);
    dist_set_timeout(t->d, t->write_timeout);
    int rc =
        ckpt_save(t->s->checkpoint.output_dir, &t->m, &t->os, &cs, t->s->checkpoint.save_total_limit, &t->verified);
    dist_set_timeout(t->d, before);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// finish: the results (rank 0 writes them) and every rank's verdict.

static int trainer_finish(trainer *t, int rc) {
    const char *out_dir = t->s->checkpoint.output_dir;
    if (!t->opt->quiet && t->lead) fprintf(stderr, "\n");
    const char *last_drop = NULL;
    int64_t by[LOADER_N_DROP];
    double dropped[LOADER_N_DROP + 1];
    dropped[LOADER_N_DROP] = (double)loader_dropped(t->ld, &last_drop, by);
    for (int k = 0; k < LOADER_N_DROP; k++) dropped[k] = (double)by[k];
    if (rc == 0) dist_allreduce_host_f64(t->d, dropped, LOADER_N_DROP + 1, "samples dropped");
    if (t->lead && dropped[LOADER_N_DROP] > 0) {
        fprintf(stderr, "train: %.0f samples were dropped (rank 0's last: %s):", dropped[LOADER_N_DROP],
                last_drop ? last_drop : "-");
        for (int k = 0; k < LOADER_N_DROP; k++)
            if (dropped[k] > 0) fprintf(stderr, " %.0f %s;", dropped[k], LOADER_DROP_NAMES[k]);
        fprintf(stderr, "\n");
    }
    if (t->lead && t->ran)
        fprintf(stderr, "train: waited %.1f s for images over %d steps (%.1f s of training)\n",
                loader_wait_seconds(t->ld), t->ran, now_s() - t->t_start);
    // A resumed run whose checkpoint is already at (or past: a lower train.max_steps) its last step
    // trains nothing; it still writes the results when none are there yet.
    int finished = rc == 0 && !t->stop && t->step >= t->total;
    if (finished && t->ran == 0) {
        if (t->lead && t->step > t->total)
            fprintf(stderr,
                    "train: the checkpoint is at step %d, past the run's %d steps (train.max_steps or the "
                    "epochs): nothing to train\n",
                    t->step, t->total);
        char *pp = path_join(out_dir, "mm_projector.safetensors"),
             *md = path_join(out_dir, t->ts == TRAIN_PROJECTOR_LORA ? "adapter" : "model"),
             *mv = path_join(out_dir, "model");
        int exported =
            file_exists(pp) && (t->ts == TRAIN_PROJECTOR || dir_exists(md)) && (!t->m.vision_train || dir_exists(mv));
        free(mv);
        if (exported && t->lead) fprintf(stderr, "train: the results in %s are there already\n", out_dir);
        finished = !exported;
        free(pp);
        free(md);
    }
    // ZeRO-3: every rank takes part in putting the model back together for rank 0's export.
    if (finished && t->os.n_segs) optim_params_whole(&t->os, &t->m);
    if (finished && t->lead) {
        // The results: the projector in LLaVA's own layout, and (when the LM trained) the whole model,
        // or (LoRA) the adapters with the projector as a PEFT folder for the llava-hf export of the base
        // (`llava merge` folds them in); a trained tower is only in the whole model, which is then written
        // whatever else trained (with LoRA's adapters merged). Every rank holds all parameters, so rank 0
        // writes them.
        char *pp = path_join(out_dir, "mm_projector.safetensors");
        rc = export_projector(&t->m, pp, DT_F32);
        free(pp);
        if (rc == 0 && t->ts == TRAIN_PROJECTOR_LORA) {
            char *ad = path_join(out_dir, "adapter");
            peft_write_options po = {.base_model = t->s->model.init ? t->s->model.init : t->s->model.llm,
                                     .with_projector = 1,
                                     .dtype = DT_F32};
            rc = peft_write_adapter(&t->m, ad, &po);
            free(ad);
        }
        if (rc == 0 && (t->ts == TRAIN_PROJECTOR_LM || t->m.vision_train)) {
            char *md = path_join(out_dir, "model");
            rc = export_llava_hf(&t->m, md, DT_F32);
            if (rc == 0) {  // with the tokenizer and processor files transformers' AutoProcessor reads
                char *tok = train_tokenizer_path(t->s);
                export_processor_options po = {.tokenizer = tok,
                                               .model_max_length = t->s->data.model_max_length,
                                               .template_name = t->s->data.template_name};
                rc = export_llava_hf_processor(&t->m, md, &po);
                free(tok);
            }
            free(md);
        }
        if (rc == 0)
            fprintf(stderr, "train: done, %d steps, %ld skipped; results in %s\n", t->step, t->os.n_skipped, out_dir);
        if (rc == 0 && t->world > 1)
            fprintf(stderr,
                    "train: rank 0 issued %ld bucket reductions, %ld of them during the backward, %ld after it "
                    "behind a bucket the pass did not write, %ld held back by a bucket left partly final\n",
                    t->os.issued_total, t->os.issued_in_backward, t->os.issued_after, t->os.stalled);
        if (rc == 0 && t->os.n_segs)
            fprintf(stderr,
                    "train: rank 0 gathered %ld parameter segments, %ld of them ahead of use and %ld on demand\n",
                    t->os.gathers_ahead + t->os.gathers_on_demand, t->os.gathers_ahead, t->os.gathers_on_demand);
    }
    if (finished && t->world > 1) {
        // Every rank ends with rank 0's verdict on the export.
        dist_set_timeout(t->d, t->write_timeout);
        double ok = t->lead && rc == 0 ? 1.0 : 0.0;
        dist_allreduce_host_f64(t->d, &ok, 1, "final result");
        if (ok != 1.0 && rc == 0) rc = llava_fail("rank 0 failed to write the results");
    }
    return rc;
}

static void trainer_close(trainer *t) {
    run_lock_release(&t->lock);
    ckpt_verified_free(&t->verified);
    free(t->dataset_json);
    if (t->handlers) {
        sigaction(SIGTERM, &t->old_term, NULL);
        sigaction(SIGINT, &t->old_int, NULL);
    }
    train_stats *st = t->opt->stats;
    if (st) {
        memset(st, 0, sizeof *st);
        st->steps = t->ran;
        st->backend_peak_bytes = t->be ? t->be->bytes_peak : 0;
        st->device_used_bytes = t->device_used;
        mem_plan mp;
        run_settings sp = *t->s;  // planned as the run reserved: its images per sample
        if (t->images_per_sample > 0) sp.data.max_images = t->images_per_sample;
        if (t->have_model && mem_plan_make(&sp, &t->m.cfg, t->world, &mp) == 0) {
            st->plan_total_bytes = mp.total;
            st->plan_activation_bytes = mp.activations;
        }
    }
    if (t->mf) fclose(t->mf);
    tblog_close(t->tb);
    free(t->metrics_path);
    free(t->losses);
    if (t->ld) loader_free(t->ld);
    if (t->have_os) optim_free(&t->os, &t->m);
    if (t->have_ds) dataset_close(&t->ds);
    if (t->have_eval_ds) dataset_close(&t->eval_ds);
    if (t->have_model) llava_model_free(&t->m);
    if (!t->opt->dist) dist_finalize(t->d);
    else dist_bind_backend(t->d, NULL);
    llava_backend_close(t->be);
}

// ---------------------------------------------------------------------------------------------

int train_run_settings(const run_settings *s, const train_options *opt) {
    trainer t;
    int rc = trainer_open(&t, s, opt);
    if (rc == 0) {
        while (t.step < t.total && rc == 0) {
            step_report r;
            int ran = t.ran;
            rc = trainer_step(&t, &r);
            if (t.ran == ran) break;  // the loader failed: no step ran
            r.eval_loss = NAN, r.eval_samples = 0;
            if (rc == 0) rc = trainer_eval(&t, &r);
            trainer_log(&t, &r);
            if (rc == 0) rc = trainer_checkpoint(&t, &r);  // not after a run of non-finite steps
            if (rc == 0 && t.stop) {
                if (t.lead)
                    fprintf(stderr,
                            "\ntrain: stopped by a signal after step %d, with its checkpoint; continue with "
                            "--resume\n",
                            t.step);
                break;
            }
            if (opt->stop_after > 0 && t.ran >= opt->stop_after) break;
        }
        rc = trainer_finish(&t, rc);
        if (rc == 0 && t.stop) rc = TRAIN_STOPPED;
    }
    trainer_close(&t);
    return rc;
}

int train_run(const train_config *c, const train_options *opt) {
    run_settings s;
    if (settings_from_config(c, &s) != 0) return -1;
    int rc = train_run_settings(&s, opt);
    settings_free(&s);
    return rc;
}
