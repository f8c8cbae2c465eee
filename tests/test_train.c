// `llava train` end to end on a small world from the demo generator: resume reproduces the
// uninterrupted loss curve bit for bit (also after SIGKILL at many points, in and out of checkpoint
// writes), stage 1 changes only the projector, the two loss normalisations, non-finite steps, clear
// errors for misconfiguration, and the llava-hf export reloading with the same logits.
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/demo.h"
#include "app/plot.h"
#include "check.h"
#include "common/util.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "kernels/ops.h"
#include "model/batch_hf.h"
#include "model/io/export.h"
#include "model/io/safetensors.h"
#include "model/llava.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/optim.h"
#include "train/trainer.h"
#include "train_run.h"

static char *world;

// Runs a stage-2 style training in `out` with extra overrides; returns train_run's result.
static int train(const char *preset, const char *out, const char *const *sets, int n, int resume, int stop_after) {
    char *p = path_join(world, preset);
    int rc = test_train_preset(p, out, NULL, 0, sets, n, resume, stop_after);
    free(p);
    return rc;
}

static char *curve(const char *out) { return test_curve(out); }

// `preset` (a path) with `sets` trained into `full`, and into `part` stopped after stop_after steps then resumed: the
// two loss curves must be equal bit for bit and not empty (`what` names the run in a failure).
static void check_resumed_curve(const char *preset, const char *full, const char *part, const char *const *sets, int n,
                                int stop_after, const char *what) {
    CHECK(test_train_preset(preset, full, NULL, 0, sets, n, 0, 0) == 0, "%s: %s", what, llava_errmsg());
    CHECK(test_train_preset(preset, part, NULL, 0, sets, n, 0, stop_after) == 0, "%s: %s", what, llava_errmsg());
    CHECK(test_train_preset(preset, part, NULL, 0, sets, n, 1, 0) == 0, "%s: %s", what, llava_errmsg());
    char *a = curve(full), *b = curve(part);
    CHECK(a[0] && strcmp(a, b) == 0, "resumed %s curve differs:\n%s\nvs uninterrupted:\n%s", what, b, a);
    free(a), free(b);
}

static const char *STAGE2_SETS[] = {
    "train.num_train_epochs=1",         "train.per_device_train_batch_size=4", "train.gradient_accumulation_steps=2",
    "checkpoint.save_steps=2",          "checkpoint.save_total_limit=2",       "model.pretrain_mm_mlp_adapter=null",
    "train.gradient_checkpointing=true"};

static void test_resume(void) {
    char *full = path_join(world, "run_full"), *part = path_join(world, "run_part");
    CHECK(train("stage2.json", full, STAGE2_SETS, 7, 0, 0) == 0, "%s", llava_errmsg());
    char *a = curve(full);
    int steps = 0;
    for (char *c = a; *c; c++) steps += *c == '\n';
    CHECK(steps == 8, "64 samples / (4 x 2) = 8 steps, metrics has %d lines", steps);
    // Stop after 3 steps (a checkpoint exists at step 2), resume, stop again after 2, resume to the end.
    CHECK(train("stage2.json", part, STAGE2_SETS, 7, 0, 3) == 0, "%s", llava_errmsg());
    CHECK(train("stage2.json", part, STAGE2_SETS, 7, 1, 2) == 0, "%s", llava_errmsg());
    CHECK(train("stage2.json", part, STAGE2_SETS, 7, 1, 0) == 0, "%s", llava_errmsg());
    char *b = curve(part);
    CHECK(strcmp(a, b) == 0, "resumed curve differs:\n%s\nvs uninterrupted:\n%s", b, a);
    // A fresh run into a folder with an earlier run's checkpoints is refused and changes nothing
    // (resuming or rotating would otherwise mix the two runs).
    char *metrics = path_join(full, "metrics.jsonl");
    size_t ml0 = 0, ml1 = 0;
    free(read_file(metrics, 1 << 20, &ml0));
    CHECK(train("stage2.json", full, STAGE2_SETS, 7, 0, 0) != 0, "a fresh run over an earlier run's checkpoints");
    CHECK_ERR_HAS("already holds checkpoint-8 from an earlier run: continue it with --resume");
    free(read_file(metrics, 1 << 20, &ml1));
    CHECK(ml0 == ml1 && ml0 > 0, "the refused run changed metrics.jsonl (%zu -> %zu bytes)", ml0, ml1);
    free(metrics);
    // Only the newest checkpoints are kept, each complete.
    char *ck8 = path_join(full, "checkpoint-8/COMPLETE"), *ck6 = path_join(full, "checkpoint-6/COMPLETE");
    char *ck4 = path_join(full, "checkpoint-4");
    CHECK(file_exists(ck8) && file_exists(ck6) && !dir_exists(ck4), "save_total_limit 2 keeps checkpoints 6 and 8");
    // The final model and projector are written; the model reloads.
    char *model = path_join(full, "model"), *proj = path_join(full, "mm_projector.safetensors");
    llava_model m;
    CHECK(llava_model_load(&m, model, test_cpu()) == 0, "exported model: %s", llava_errmsg());
    CHECK(m.cfg.text.vocab_size % 64 == 0, "vocabulary padded to a multiple of 64 (%d)", m.cfg.text.vocab_size);
    llava_model_free(&m);
    st_file f;
    CHECK(st_open(&f, proj) == 0 && st_find(&f, "model.mm_projector.0.weight") &&
              st_find(&f, "model.mm_projector.2.bias"),
          "mm_projector.safetensors with LLaVA's names");
    st_close(&f);
    // The picture of the curve: one polyline point per logged step.
    char *svg = path_join(full, "loss.svg");
    int n_points = 0;
    CHECK(plot_metrics(full, svg, &n_points) == 0 && n_points == 8, "plot: %d points (%s)", n_points, llava_errmsg());
    size_t svg_len;
    char *svg_text = read_file(svg, 1 << 20, &svg_len);
    int commas = 0;
    const char *pl = svg_text ? strstr(svg_text, "<polyline") : NULL;
    for (const char *q = pl ? strstr(pl, "points=\"") + 8 : NULL; q && *q && *q != '"'; q++) commas += *q == ',';
    CHECK(commas == 8, "the loss polyline has %d points", commas);
    free(svg_text);
    free(svg);
    free(a);
    free(b);
    free(ck8);
    free(ck6);
    free(ck4);
    free(model);
    free(proj);
    free(full);
    free(part);
}

// A kill that left a checkpoint half-written: a temporary folder, or a folder without its marker.
static int partial_checkpoint_left(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) && !found) {
        if (!strncmp(e->d_name, ".tmp-checkpoint-", 16)) found = 1;
        else if (!strncmp(e->d_name, "checkpoint-", 11)) {
            char *m = xasprintf("%s/%s/COMPLETE", dir, e->d_name);
            found = !file_exists(m);
            free(m);
        }
    }
    closedir(d);
    return found;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Starts `llava train PRESET` into `run` with the settings `sets` and --resume, in a child process;
// `fault` (or NULL) is its LLAVA_DEBUG_FAULT (train/fault.h).
static pid_t spawn_train(const char *bin, const char *preset, const char *run, const char *const *sets, int n_sets,
                         const char *fault) {
    pid_t pid = fork();
    if (pid == 0) {
        if (fault) setenv("LLAVA_DEBUG_FAULT", fault, 1);
        else unsetenv("LLAVA_DEBUG_FAULT");
        const char *argv[32];
        int n = 0;
        argv[n++] = bin;
        argv[n++] = "train";
        argv[n++] = preset;
        char o[512];
        snprintf(o, sizeof o, "checkpoint.output_dir=%s", run);
        argv[n++] = "--set";
        argv[n++] = o;
        for (int i = 0; i < n_sets; i++) argv[n++] = "--set", argv[n++] = sets[i];
        argv[n++] = "--resume";
        argv[n++] = "--quiet";
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        perror("exec llava");
        _exit(127);
    }
    return pid;
}

// SIGKILL a real `llava train` process inside checkpoint writes, deterministically (the writer
// pauses where LLAVA_DEBUG_FAULT says and the kill lands there, whatever the machine's speed), then
// at varying moments, resuming each time; the final curve equals the uninterrupted one. The
// planted kills leave each kind of half-written checkpoint: a temporary folder holding the weights
// only (ckpt-tmp), and a checkpoint-N folder renamed into place without its manifest
// (ckpt-nomarker), twice each.
static void test_sigkill(void) {
    const char *bin = getenv("LLAVA_BIN");
    CHECK(bin != NULL, "LLAVA_BIN not set (run through ctest)");
    if (!bin) return;
    char *ref = path_join(world, "kill_ref"), *run = path_join(world, "kill_run");
    const char *sets[] = {"train.num_train_epochs=2", "train.per_device_train_batch_size=2", "checkpoint.save_steps=1",
                          "checkpoint.save_total_limit=2", "model.pretrain_mm_mlp_adapter=null"};
    const int n_sets = 5;
    CHECK(train("stage2.json", ref, sets, n_sets, 0, 0) == 0, "%s", llava_errmsg());
    char *want = curve(ref);
    char *preset = path_join(world, "stage2.json");
    // Bit-identical needs the same summation order: the same GEMM thread count as the reference run.
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    int kills = 0, finished = 0, torn = 0, planted = 0;
    // The planted kills: checkpoint STEP paused at MODE, found paused on disk, killed.
    static const struct {
        int step;
        const char *mode;
    } plant[] = {{1, "ckpt-tmp"}, {2, "ckpt-nomarker"}, {3, "ckpt-tmp"}, {4, "ckpt-nomarker"}};
    enum { N_PLANT = sizeof plant / sizeof plant[0] };
    for (int i = 0; i < N_PLANT; i++) {
        char fault[64];
        snprintf(fault, sizeof fault, "0:%d:%s", plant[i].step, plant[i].mode);
        pid_t pid = spawn_train(bin, preset, run, sets, n_sets, fault);
        char *tmp_w = xasprintf("%s/.tmp-checkpoint-%d-%d/weights.safetensors", run, plant[i].step, (int)pid);
        char *ck = xasprintf("%s/checkpoint-%d", run, plant[i].step);
        char *ck_mark = xasprintf("%s/COMPLETE", ck);
        int paused = 0, status = 0, exited = 0;
        for (int waited = 0; waited < 300000 && !paused && !exited; waited += 5) {
            paused =
                strcmp(plant[i].mode, "ckpt-tmp") == 0 ? file_exists(tmp_w) : dir_exists(ck) && !file_exists(ck_mark);
            if (!paused && waitpid(pid, &status, WNOHANG) == pid) exited = 1;
            else if (!paused) sleep_ms(5);
        }
        CHECK(paused, "%s at step %d: the writer never paused there (exited %d, status %d)", plant[i].mode,
              plant[i].step, exited, status);
        if (!exited) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            kills++;
        }
        int left = partial_checkpoint_left(run);
        CHECK(paused && left, "%s at step %d: no half-written checkpoint left by the kill", plant[i].mode,
              plant[i].step);
        planted += paused && left;
        torn += left;
        free(tmp_w), free(ck), free(ck_mark);
    }
    CHECK(planted == N_PLANT, "%d of %d planted kills landed inside a checkpoint write", planted, (int)N_PLANT);
    // Then kills at varying moments; the later attempts get longer so the run finishes.
    for (int attempt = 0; attempt < 30 && !finished; attempt++) {
        pid_t pid = spawn_train(bin, preset, run, sets, n_sets, NULL);
        int delay = attempt < 20 ? 60 + (attempt * 37) % 400 : 100000;
        int status = 0, done = 0;
        for (int waited = 0; waited < delay; waited += 5) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                done = 1;
                break;
            }
            sleep_ms(5);
        }
        if (!done) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            kills++;
            torn += partial_checkpoint_left(run);
        } else {
            finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            CHECK(finished, "train exited with status %d", status);
        }
    }
    CHECK(finished && kills >= N_PLANT, "finished %d after %d kills", finished, kills);
    char *got = curve(run);
    CHECK(strcmp(want, got) == 0, "curve after %d kills differs:\n%s\nvs\n%s", kills, got, want);
    printf(
        "sigkill: %d kills, %d planted inside checkpoint writes (2 torn temporary folders, 2 checkpoints without "
        "a manifest), %d half-written checkpoints in all, curve identical: %s\n",
        kills, planted, torn, strcmp(want, got) == 0 ? "yes" : "no");
    free(want);
    free(got);
    free(preset);
    free(ref);
    free(run);
}

// eval.evaluation_strategy steps: the eval loss of held-out samples (here the training JSON itself,
// 64 samples) every 3 steps and after the last, in metrics.jsonl; the training curve is bit for bit
// the run without evaluation; the logged value at the last step equals the HF Trainer's formula
// recomputed here another way: each sample alone (its summed token losses), grouped in file order
// into batches of 4 (a batch's loss is its token mean), averaged over batches weighted by their
// sizes, with checkpoint-8's weights (bound 1e-6 relative: the same fp32 arithmetic, packed or alone,
// agrees to ~1e-7, tests/test_model_parity.c); `llava plot` draws the three points.
static void test_eval_loss(void) {
    char *run = path_join(world, "eval_run"), *ref = path_join(world, "run_full");
    char *ed = xasprintf("eval.data_path=%s/data/train_qa.json", world);
    const char *sets[] = {STAGE2_SETS[0],
                          STAGE2_SETS[1],
                          STAGE2_SETS[2],
                          STAGE2_SETS[3],
                          STAGE2_SETS[4],
                          STAGE2_SETS[5],
                          STAGE2_SETS[6],
                          "eval.evaluation_strategy=steps",
                          "eval.eval_steps=3",
                          ed,
                          "train.per_device_eval_batch_size=4"};
    CHECK(train("stage2.json", run, sets, 11, 0, 0) == 0, "%s", llava_errmsg());
    char *a = curve(ref), *b = curve(run);
    CHECK(strcmp(a, b) == 0, "evaluating changed the training curve:\n%s\nvs\n%s", b, a);
    char *mp = path_join(run, "metrics.jsonl");
    size_t len = 0;
    char *text = read_file(mp, 1 << 20, &len);
    double logged = NAN;
    int evals = 0, bad = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        int step = 0;
        sscanf(line, "{\"step\":%d", &step);
        const char *e = strstr(line, "\"eval_loss\":");
        int want = step == 3 || step == 6 || step == 8;
        bad += want != (e != NULL);
        if (e) {
            evals++;
            bad += strstr(line, "\"eval_samples\":64") == NULL;
            if (step == 8) logged = strtod(e + 12, NULL);
        }
    }
    CHECK(evals == 3 && bad == 0 && isfinite(logged),
          "eval_loss at steps 3, 6 and 8 over 64 samples (%d lines, %d bad)", evals, bad);
    // The recomputation.
    // The model of the last step: built as the run builds it, with checkpoint-8's weights (the
    // exported folder pads the vocabulary, which changes the softmax).
    char *model_dir = path_join(run, "checkpoint-8"), *h5 = path_join(run, "eval_dataset.h5");
    char *preset = path_join(world, "stage2.json");
    run_settings rs;
    CHECK(settings_load(preset, sets, 11, &rs) == 0, "%s", llava_errmsg());
    llava_model m;
    CHECK(train_build_model(&rs, test_cpu(), &m) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    optim_state os;
    optim_init(&os, &m);
    ckpt_state cks;
    memset(&cks, 0, sizeof cks);
    CHECK(ckpt_load(model_dir, &m, &os, &cks) == 0, "%s", llava_errmsg());
    ckpt_state_free(&cks);
    settings_free(&rs);
    free(preset);
    llava_dataset ds;
    CHECK(dataset_open(&ds, h5) == 0, "%s", llava_errmsg());
    loader_config lc = {.ds = &ds,
                        .batch = 1,
                        .world = 1,
                        .rank = 0,
                        .accum = 1,
                        .sequential = 1,
                        .tokens_per_image = m.tokens_per_image,
                        .image_size = m.cfg.vision.image_size,
                        .aspect = IMAGE_ASPECT_PAD};
    loader *ld = loader_create(&lc, (loader_pos){0, 0});
    CHECK(ld != NULL, "%s", llava_errmsg());
    double batch_sum = 0, batch_targets = 0, weighted = 0;
    int in_batch = 0, samples = 0;
    for (int64_t i = 0; ld && i < ds.n; i++) {
        loader_step st;
        CHECK(loader_next(ld, &st) == 0, "%s", llava_errmsg());
        const llava_batch *bt = &st.micro[0].chunks[0];
        float l = llava_forward_backward(&m, bt, 0, 1.0f, NULL);
        batch_sum += (double)l * bt->n_targets;
        batch_targets += bt->n_targets;
        in_batch++;
        if (in_batch == 4 || i == ds.n - 1) {
            weighted += batch_sum / batch_targets * in_batch;
            samples += in_batch;
            batch_sum = batch_targets = 0;
            in_batch = 0;
        }
        loader_step_free(&st);
    }
    double want = weighted / samples;
    CHECK(fabs(want - logged) <= 1e-6 * fabs(want), "eval_loss %.9g logged at the last step, %.9g recomputed", logged,
          want);
    printf("eval loss at the last step %.7f, recomputed sample by sample %.7f\n", logged, want);
    if (ld) loader_free(ld);
    dataset_close(&ds);
    optim_free(&os, &m);
    llava_model_free(&m);
    // The plot marks the three evaluations.
    char *svg = path_join(run, "loss.svg");
    int n_points = 0;
    CHECK(plot_metrics(run, svg, &n_points) == 0, "%s", llava_errmsg());
    char *st = read_file(svg, 1 << 20, &len);
    int circles = 0;
    for (const char *q = st; q && (q = strstr(q, "class=\"eval\"")); q++) circles++;
    CHECK(circles == 3, "the plot draws %d eval points", circles);
    // Two runs overlaid: this one and the run without evaluation, one colour each, named by folder.
    const char *dirs[2] = {ref, run}, *labels[2] = {"run_full", "eval_run"};
    char *ov = path_join(world, "runs.svg");
    CHECK(plot_runs(dirs, labels, 2, ov) == 0, "%s", llava_errmsg());
    char *ot = read_file(ov, 1 << 20, &len);
    int lines0 = 0, lines1 = 0, evals1 = 0, evals0_points = 0;
    for (const char *q = ot; q && (q = strstr(q, "<polyline class=\"run")); q++) {
        int r = q[20] - '0', is_eval = strncmp(q + 21, " eval", 5) == 0;
        if (r == 0) lines0++, evals0_points += is_eval && strstr(q, "points=\"\"") != strstr(q, "points=\"");
        if (r == 1) lines1++, evals1 += is_eval;
    }
    CHECK(ot && lines0 == 4 && lines1 == 4 && evals1 == 1 && evals0_points == 0 && strstr(ot, "eval_run (8 steps)") &&
              strstr(ot, "run_full (8 steps)"),
          "the overlay: %d and %d lines (loss, eval loss, lr, tokens/s), eval loss only for the run that evaluated",
          lines0, lines1);
    free(ot), free(ov);
    // The same as a PNG: 720 pixels wide, both runs' colours drawn.
    char *png = path_join(world, "runs.png");
    CHECK(plot_runs(dirs, labels, 2, png) == 0, "%s", llava_errmsg());
    image_u8 im;
    CHECK(image_load_file(png, &im) == 0, "%s", llava_errmsg());
    int blue = 0, red = 0;
    for (int i = 0; i < im.w * im.h; i++) {
        const uint8_t *q = im.rgb + 3 * i;
        blue += q[0] == 0x1f && q[1] == 0x6f && q[2] == 0xd1;
        red += q[0] == 0xd1 && q[1] == 0x40 && q[2] == 0x1f;
    }
    CHECK(im.w == 720 && blue > 500 && red > 500, "runs.png: %d wide, %d and %d pixels of the two runs' colours", im.w,
          blue, red);
    image_free(&im);
    free(png);
    free(st), free(svg), free(model_dir), free(h5), free(text), free(mp), free(a), free(b), free(ed), free(run),
        free(ref);
}

// Stage 1 trains the projector through the frozen LM: the LM and vision weights stay bit-identical.
static void test_stage1_freezing(void) {
    llava_model m;
    CHECK(llava_model_load(&m, "tests/data/golden/model/tiny64/model", test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR);
    llava_batch b;
    CHECK(llava_batch_from_file(&b, &m, "tests/data/golden/model/tiny64/inputs.safetensors", NULL, NULL) == 0, "%s",
          llava_errmsg());
    size_t n[N_GROUPS];
    float *before[N_GROUPS], *after[N_GROUPS];
    for (int g = 0; g < N_GROUPS; g++) {
        n[g] = m.pt.group_numel[g];
        before[g] = xmalloc(sizeof(float) * n[g]);
        after[g] = xmalloc(sizeof(float) * n[g]);
        if (n[g]) m.ops->download(m.be, BUF_PARAM, before[g], m.params[g], n[g]);  // a group may be empty
    }
    CHECK(m.grads[GROUP_LM] == NULL && m.grads[GROUP_VISION] == NULL, "no gradient buffers for frozen groups");
    optim_state os;
    optim_init(&os, &m);
    optim_config oc = {.lr = 1e-2,
                       .projector_lr = NAN,
                       .beta1 = 0.9,
                       .beta2 = 0.999,
                       .eps = 1e-8,
                       .schedule = SCHED_CONSTANT,
                       .total_steps = 3,
                       .warmup_steps = 0};
    for (int s = 1; s <= 3; s++) {
        llava_model_zero_grads(&m);
        llava_forward_backward(&m, &b, 1, 1.0f, NULL);
        optim_step(&os, &m, &oc, 1.0f, s);
    }
    for (int g = 0; g < N_GROUPS; g++)
        if (n[g]) m.ops->download(m.be, BUF_PARAM, after[g], m.params[g], n[g]);
    CHECK(memcmp(before[GROUP_LM], after[GROUP_LM], sizeof(float) * n[GROUP_LM]) == 0, "LM weights changed in stage 1");
    CHECK(memcmp(before[GROUP_VISION], after[GROUP_VISION], sizeof(float) * n[GROUP_VISION]) == 0,
          "vision weights changed");
    size_t changed = 0;
    for (size_t i = 0; i < n[GROUP_PROJECTOR]; i++) changed += before[GROUP_PROJECTOR][i] != after[GROUP_PROJECTOR][i];
    CHECK(changed > n[GROUP_PROJECTOR] / 2, "only %zu of %zu projector values changed", changed, n[GROUP_PROJECTOR]);
    for (int g = 0; g < N_GROUPS; g++) {
        free(before[g]);
        free(after[g]);
    }
    optim_free(&os, &m);
    llava_batch_free(&b);
    llava_model_free(&m);
    // And a stage-1 run's checkpoint holds projector tensors only.
    char *out = path_join(world, "run_stage1");
    const char *sets[] = {"train.max_steps=2", "train.per_device_train_batch_size=4", "checkpoint.save_steps=2"};
    CHECK(train("stage1.json", out, sets, 3, 0, 0) == 0, "%s", llava_errmsg());
    char *w = path_join(out, "checkpoint-2/weights.safetensors");
    st_file f;
    CHECK(st_open(&f, w) == 0, "%s", llava_errmsg());
    int others = 0;
    for (int i = 0; i < f.n_tensors; i++) others += strncmp(f.tensors[i].name, "projector.", 10) != 0;
    CHECK(f.n_tensors == 4 && others == 0, "stage-1 checkpoint: %d tensors, %d not the projector's", f.n_tensors,
          others);
    st_close(&f);
    free(w);
    free(out);
}

static int tensors_equal(const char *fa, const char *na, const char *fb, const char *nb, size_t n_bytes) {
    st_file a, b;
    if (st_open(&a, fa) != 0) return -1;
    if (st_open(&b, fb) != 0) {
        st_close(&a);
        return -1;
    }
    const st_tensor *x = st_find(&a, na), *y = st_find(&b, nb);
    int eq = x && y ? memcmp(x->data, y->data, n_bytes ? n_bytes : (size_t)(x->end - x->begin)) == 0 : -1;
    st_close(&a);
    st_close(&b);
    return eq;
}

// Freezing by name inside a trainable module: the named parameters keep their initial values.
static void test_freeze_by_name(void) {
    char *out = path_join(world, "run_freeze");
    const char *sets[] = {"train.max_steps=3", "train.per_device_train_batch_size=4",
                          "model.pretrain_mm_mlp_adapter=null",
                          "train.freeze=lm.model.embed_tokens,lm.model.layers.0."};
    CHECK(train("stage2.json", out, sets, 4, 0, 0) == 0, "%s", llava_errmsg());
    char *init = path_join(world, "lm/model.safetensors"), *done = path_join(out, "model/model.safetensors");
    st_file f;
    size_t embed_bytes = 0;
    if (st_open(&f, init) == 0) {
        const st_tensor *t = st_find(&f, "model.embed_tokens.weight");
        embed_bytes = t ? (size_t)(t->end - t->begin) : 0;  // the export appends rows for <image> and <pad>
        st_close(&f);
    }
    CHECK(tensors_equal(init, "model.embed_tokens.weight", done, "language_model.model.embed_tokens.weight",
                        embed_bytes) == 1,
          "frozen embed_tokens changed");
    CHECK(tensors_equal(init, "model.layers.0.mlp.up_proj.weight", done,
                        "language_model.model.layers.0.mlp.up_proj.weight", 0) == 1,
          "frozen layer 0 changed");
    CHECK(tensors_equal(init, "model.layers.1.mlp.up_proj.weight", done,
                        "language_model.model.layers.1.mlp.up_proj.weight", 0) == 0,
          "layer 1 did not train");
    const char *bad[] = {"train.max_steps=1", "model.pretrain_mm_mlp_adapter=null", "train.freeze=lm.model.nothing"};
    CHECK(train("stage2.json", out, bad, 3, 0, 0) != 0, "an unknown freeze prefix was accepted");
    CHECK_ERR_HAS("lm.model.nothing");
    free(init);
    free(done);
    free(out);
}

static double first_loss(const char *out) {
    char *c = curve(out);
    char *p = strstr(c, "\"loss\":");
    double v = p ? atof(p + 7) : NAN;
    free(c);
    return v;
}

// LLaVA's normalisation averages each micro-batch's token mean; global_tokens takes one mean over
// the step's tokens. The same four samples (one- and four-question conversations, so their target
// counts differ) as one micro-batch of 4 or four of 1: under global_tokens the step loss is the
// same; under LLaVA's it is the mean of the four means.
static void test_loss_normalisation(void) {
    const char *g1[] = {"train.max_steps=1",
                        "train.per_device_train_batch_size=4",
                        "train.gradient_accumulation_steps=1",
                        "train.loss_normalization=global_tokens",
                        "model.pretrain_mm_mlp_adapter=null",
                        "data.group_by_modality_length=false"};
    const char *g2[] = {"train.max_steps=1",
                        "train.per_device_train_batch_size=1",
                        "train.gradient_accumulation_steps=4",
                        "train.loss_normalization=global_tokens",
                        "model.pretrain_mm_mlp_adapter=null",
                        "data.group_by_modality_length=false"};
    const char *l2[] = {"train.max_steps=1",
                        "train.per_device_train_batch_size=1",
                        "train.gradient_accumulation_steps=4",
                        "train.loss_normalization=llava",
                        "model.pretrain_mm_mlp_adapter=null",
                        "data.group_by_modality_length=false"};
    char *o1 = path_join(world, "norm_g1"), *o2 = path_join(world, "norm_g2"), *o3 = path_join(world, "norm_l2");
    CHECK(train("stage2.json", o1, g1, 6, 0, 0) == 0 && train("stage2.json", o2, g2, 6, 0, 0) == 0 &&
              train("stage2.json", o3, l2, 6, 0, 0) == 0,
          "%s", llava_errmsg());
    double a = first_loss(o1), b = first_loss(o2), c = first_loss(o3);
    CHECK(fabs(a - b) <= 1e-6 * fabs(a), "global_tokens: %.9g as one micro-batch, %.9g as two", a, b);
    CHECK(fabs(a - c) > 1e-4, "LLaVA's normalisation gives the mean of means (%.9g), not the token mean (%.9g)", c, a);
    free(o1);
    free(o2);
    free(o3);
}

static void test_errors(void) {
    char *out = path_join(world, "run_err");
    // Non-finite steps are skipped and counted; enough in a row stop the run with a clear message.
    const char *nan_sets[] = {"train.learning_rate=1e30", "train.max_steps=8", "train.max_nonfinite_steps=2",
                              "train.per_device_train_batch_size=4", "model.pretrain_mm_mlp_adapter=null"};
    CHECK(train("stage2.json", out, nan_sets, 5, 0, 0) != 0, "a diverging run did not stop");
    CHECK_ERR_HAS("max_nonfinite_steps");
    // A missing model folder names itself.
    const char *missing[] = {"model.llm=/nonexistent/vicuna"};
    CHECK(train("stage2.json", out, missing, 1, 0, 0) != 0, "missing llm accepted");
    CHECK_ERR_HAS("/nonexistent/vicuna");
    // A projector whose shape does not fit the LM.
    char *bad = path_join(world, "bad_projector.safetensors");
    float z[6] = {0};
    int64_t shape[2] = {2, 3};
    st_writer w;
    st_writer_init(&w);
    st_writer_add_f32(&w, "model.mm_projector.0.weight", DT_F32, 2, shape, z);
    st_writer_save(&w, bad);
    st_writer_free(&w);
    char *adapter = xasprintf("model.pretrain_mm_mlp_adapter=%s", bad);
    const char *mismatch[] = {adapter};
    CHECK(train("stage2.json", out, mismatch, 1, 0, 0) != 0, "mismatched projector accepted");
    CHECK_ERR_HAS("wrong shape");
    // A dataset prepared with another template.
    char *prepared = path_join(world, "run_stage1/dataset.h5");
    char *data = xasprintf("data.data_path=%s", prepared);
    const char *other[] = {data, "model.pretrain_mm_mlp_adapter=null"};
    CHECK(train("stage2.json", out, other, 2, 0, 0) != 0, "plain-template dataset accepted for vicuna_v1");
    CHECK_ERR_HAS("template");
    free(adapter);
    free(bad);
    free(data);
    free(prepared);
    free(out);
}

// `llava plan` against what a run really holds: the CPU backend counts every byte its allocator
// hands out (parameters, gradients, AdamW's moments, the activation arenas, the loss ledger), and
// its peak over a run must agree with the plan's total within 5% (the plan is what decides whether a
// run fits a GPU). Stage 1 and stage 2 of the demo world, with and without activation
// checkpointing, and stage 2 with LoRA and with QLoRA, two steps each. LoRA against QLoRA: what NF4
// saves in the plan is what it saves in the measured peak, to the byte.
static void test_plan_vs_peak(void) {
    const struct {
        const char *preset, *ckpt, *lora, *variant[3];
    } runs[] = {{"stage1.json", "train.gradient_checkpointing=true", NULL, {NULL}},
                {"stage2.json", "train.gradient_checkpointing=true", NULL, {NULL}},
                {"stage2.json", "train.gradient_checkpointing=false", NULL, {NULL}},
                {"stage2.json", "train.gradient_checkpointing=true", "lora.bits=16", {NULL}},
                {"stage2.json", "train.gradient_checkpointing=true", "lora.bits=4", {NULL}},
                // research variants: a deeper projector over pooled features, and pruning (docs/ablations.md)
                {"stage2.json",
                 "train.gradient_checkpointing=false",
                 NULL,
                 {"model.mm_projector_type=mlp3x_gelu", "model.mm_spatial_pool_mode=average"}},
                {"stage2.json",
                 "train.gradient_checkpointing=false",
                 NULL,
                 {"model.mm_projector_type=linear", "model.mm_vision_keep_tokens=9"}},
                // the tower trained (both of its layers: the feature layer is the last), its layers kept or
                // recomputed
                {"stage2.json",
                 "train.gradient_checkpointing=true",
                 NULL,
                 {"train.trainable=vision,projector,lm", "model.mm_vision_select_layer=-1",
                  "train.vision_gradient_checkpointing=false"}},
                {"stage2.json",
                 "train.gradient_checkpointing=true",
                 NULL,
                 {"train.trainable=vision,projector,lm", "model.mm_vision_select_layer=-1",
                  "train.vision_gradient_checkpointing=true"}}};
    uint64_t plan[9] = {0}, peak[9] = {0};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char *out = xasprintf("%s/plan%zu", world, i);
        char *p = path_join(world, runs[i].preset);
        char *o = xasprintf("checkpoint.output_dir=%s", out);
        const char *sets[12] = {o, runs[i].ckpt, "train.max_steps=2", "train.device=cpu",
                                "model.pretrain_mm_mlp_adapter=null"};
        int ns = 5;
        if (runs[i].lora) {
            const char *lora[] = {"train.trainable=projector,lora", "lora.enabled=true", "lora.r=8", runs[i].lora};
            for (int k = 0; k < 4; k++) sets[ns++] = lora[k];
        }
        for (int k = 0; k < 3 && runs[i].variant[k]; k++) sets[ns++] = runs[i].variant[k];
        run_settings c;
        int rc = settings_load(p, sets, ns, &c), loaded = rc == 0;
        train_stats st;
        train_options opt = {.quiet = 1, .stats = &st};
        if (rc == 0) rc = train_run_settings(&c, &opt);
        CHECK(rc == 0, "%s: %s", runs[i].preset, llava_errmsg());
        if (rc == 0) {
            double rel =
                fabs((double)st.backend_peak_bytes - (double)st.plan_total_bytes) / (double)st.plan_total_bytes;
            CHECK(st.steps == 2 && st.plan_activation_bytes > 0 && rel <= 0.05,
                  "%s, %s: plan %llu bytes, measured peak %llu (%.2f%% apart)", runs[i].preset, runs[i].ckpt,
                  (unsigned long long)st.plan_total_bytes, (unsigned long long)st.backend_peak_bytes, 100 * rel);
            printf(
                "plan vs measured, %s, %s%s%s%s%s: plan %llu bytes (activations %llu), backend peak %llu: %.3f%% "
                "apart\n",
                runs[i].preset, runs[i].ckpt, runs[i].lora ? ", LoRA " : "", runs[i].lora ? runs[i].lora : "",
                runs[i].variant[0] ? ", " : "", runs[i].variant[0] ? runs[i].variant[0] : "",
                (unsigned long long)st.plan_total_bytes, (unsigned long long)st.plan_activation_bytes,
                (unsigned long long)st.backend_peak_bytes, 100 * rel);
            plan[i] = st.plan_total_bytes;
            peak[i] = st.backend_peak_bytes;
        }
        if (loaded) settings_free(&c);
        free(o);
        free(p);
        free(out);
    }
    long long saved_plan = (long long)plan[3] - (long long)plan[4],
              saved_peak = (long long)peak[3] - (long long)peak[4];
    CHECK(saved_plan > 0 && saved_plan == saved_peak, "NF4 saves %lld bytes in the plan, %lld in the measured peak",
          saved_plan, saved_peak);
    printf("plan vs measured: QLoRA's NF4 saves %lld bytes in the plan and %lld in the backend's peak\n", saved_plan,
           saved_peak);
    // Pooling 36 features to 9 per image shrinks the language model's sequences: less plan and less peak than the
    // plain stage 2 (same checkpointing), by the same sign.
    CHECK(plan[5] && plan[5] < plan[2] && peak[5] < peak[2], "pooled run: plan %llu / peak %llu vs plain %llu / %llu",
          (unsigned long long)plan[5], (unsigned long long)peak[5], (unsigned long long)plan[2],
          (unsigned long long)peak[2]);
    // Recomputing the tower's layers keeps one layer's activations instead of two: less plan and less peak.
    CHECK(plan[8] && plan[8] < plan[7] && peak[8] < peak[7],
          "recomputed tower: plan %llu / peak %llu vs kept %llu / %llu", (unsigned long long)plan[8],
          (unsigned long long)peak[8], (unsigned long long)plan[7], (unsigned long long)peak[7]);
}

// The tower trained (train.trainable vision): its last layer only (vision_unfreeze_last 1 of the 2 that run, at
// feature layer -1) at its own learning rate. A run stopped and resumed gives the uninterrupted curve bit for bit,
// and so does recomputing the tower's layers; the export carries the trained layer, the frozen layer and the
// embeddings unchanged.
static void test_vision_train(void) {
    const char *sets[] = {"train.max_steps=4",
                          "train.per_device_train_batch_size=4",
                          "train.gradient_accumulation_steps=2",
                          "checkpoint.save_steps=2",
                          "model.pretrain_mm_mlp_adapter=null",
                          "model.mm_vision_select_layer=-1",
                          "train.trainable=vision,projector,lm",
                          "train.vision_unfreeze_last=1",
                          "train.mm_vision_tower_lr=2e-4",
                          "train.vision_gradient_checkpointing=false"};
    int n = sizeof sets / sizeof sets[0];
    char *full = path_join(world, "run_vision"), *part = path_join(world, "run_vision_part"),
         *ck = path_join(world, "run_vision_ck");
    CHECK(train("stage2.json", full, sets, n, 0, 0) == 0, "%s", llava_errmsg());
    CHECK(train("stage2.json", part, sets, n, 0, 3) == 0, "%s", llava_errmsg());
    CHECK(train("stage2.json", part, sets, n, 1, 0) == 0, "%s", llava_errmsg());
    sets[n - 1] = "train.vision_gradient_checkpointing=true";
    CHECK(train("stage2.json", ck, sets, n, 0, 0) == 0, "%s", llava_errmsg());
    char *a = curve(full), *b = curve(part), *c = curve(ck);
    CHECK(strcmp(a, b) == 0, "resumed curve with a trained tower differs:\n%s\nvs uninterrupted:\n%s", b, a);
    CHECK(strcmp(a, c) == 0, "recomputing the tower's layers changed the curve:\n%s\nvs\n%s", c, a);
    // The checkpoint holds the tower's tensors; the export the trained layer 1, layer 0 and the embeddings as they were.
    char *w = path_join(full, "checkpoint-4/weights.safetensors"), *init = path_join(world, "clip/model.safetensors"),
         *done = path_join(full, "model/model.safetensors");
    st_file f;
    int vision = 0;
    if (st_open(&f, w) == 0) {
        for (int i = 0; i < f.n_tensors; i++) vision += strncmp(f.tensors[i].name, "vision.", 7) == 0;
        st_close(&f);
    }
    CHECK(vision > 0, "the checkpoint holds %d tower tensors", vision);
    static const char *const T[][2] = {
        {"vision_model.encoder.layers.1.mlp.fc1.weight", "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"},
        {"vision_model.encoder.layers.0.mlp.fc1.weight", "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"},
        {"vision_model.embeddings.patch_embedding.weight",
         "vision_tower.vision_model.embeddings.patch_embedding.weight"}};
    CHECK(tensors_equal(init, T[0][0], done, T[0][1], 0) == 0, "the trained tower layer did not change");
    CHECK(tensors_equal(init, T[1][0], done, T[1][1], 0) == 1, "the frozen tower layer changed");
    CHECK(tensors_equal(init, T[2][0], done, T[2][1], 0) == 1, "the frozen patch embedding changed");
    printf("vision training: %d tower tensors in the checkpoint; resumed and recomputed curves equal\n", vision);
    free(a), free(b), free(c), free(w), free(init), free(done), free(full), free(part), free(ck);
}

// llava generate on an export with one of the world's images (one BLAS thread: the sanitizer build runs this test,
// and OpenBLAS's own threads are not instrumented): its prompt's tokens, image features included, or -1 when it
// failed or LLAVA_BIN is unset (*ran says which).
static int generate_prompt_tokens(const char *model, const char *what, int *ran) {
    const char *bin = getenv("LLAVA_BIN");
    *ran = bin != NULL;
    if (!bin) return -1;
    char *img = path_join(world, "data/images/train_00000.png");
    char *args = xasprintf(
        "generate --model '%s' --image '%s' --prompt 'What color is the shape?' --json --max-new-tokens 4 --threads 1",
        model, img);
    char *o = NULL, *e = NULL;
    int rc = check_run(bin, world, args, &o, &e);
    const char *pt = strstr(o, "\"prompt_tokens\":");
    int n_prompt = rc == 0 && pt && strstr(o, "\"finish_reason\"") ? atoi(pt + 16) : -1;
    if (n_prompt < 0) fprintf(stderr, "generate on the %s export failed:\n%s%s", what, o, e);
    free(img), free(args), free(o), free(e);
    return n_prompt;
}

// LLaVA-NeXT's AnyRes trained from its parts (data.image_aspect_ratio anyres): the demo's 48-pixel images tiled at the
// best of [[48,96],[96,48],[96,96]] (a 1x2 grid: 3 tiles, 36 + 6 x 7 = 78 features each), a fresh image_newline.
// A run stopped and resumed gives the uninterrupted curve bit for bit; the export is a llava_next folder that loads
// back with the same pinpoints and an image_newline that trained.
static void test_anyres(void) {
    const char *sets[] = {"train.max_steps=4",
                          "train.per_device_train_batch_size=4",
                          "checkpoint.save_steps=2",
                          "model.pretrain_mm_mlp_adapter=null",
                          "data.image_aspect_ratio=anyres",
                          "data.image_grid_pinpoints=[[48,96],[96,48],[96,96]]"};
    int n = sizeof sets / sizeof sets[0];
    char *full = path_join(world, "run_anyres"), *part = path_join(world, "run_anyres_part");
    char *preset = path_join(world, "stage2.json");
    check_resumed_curve(preset, full, part, sets, n, 3, "AnyRes");
    char *model = path_join(full, "model");
    llava_model m;
    if (llava_model_load(&m, model, test_cpu()) == 0) {
        CHECK(m.cfg.glue.anyres && m.cfg.glue.pinpoints.n == 3 && m.cfg.glue.pinpoints.res[0][0] == 48 &&
                  m.cfg.glue.pinpoints.res[0][1] == 96 && m.pt.w.newline,
              "the export is a llava_next model with the run's pinpoints");
        CHECK(!strcmp(m.cfg.model_type, "llava_next"), "model_type %s", m.cfg.model_type);
        llava_model_free(&m);
    } else {
        CHECK(0, "the AnyRes export does not load: %s", llava_errmsg());
    }
    // llava generate on the export: the image's 3 tiles through the tower, its 78 merged features in the prompt.
    int ran, n_prompt = generate_prompt_tokens(model, "AnyRes", &ran);
    if (ran) {
        CHECK(n_prompt > 78, "generate on the AnyRes export: %d prompt tokens", n_prompt);
        printf("anyres generate: %d prompt tokens (78 of them the image's merged features)\n", n_prompt);
    }
    printf("anyres: 4 steps of 3-tile images, resumed bit for bit, exported as llava_next\n");
    free(preset), free(model), free(full), free(part);
}

// anyres_max_N (data.image_aspect_ratio anyres_max_3) through the loader: the demo's square 48-pixel images on a 2x2
// grid of 48-pixel tiles (the only pinpoint [96,96]: 5 tiles) keep a 12 x 12 map of 6 x 6-feature tiles; times =
// sqrt(144 / 108) = 1.155 > 1.1, so each image's map is resized to 10 x 10 (36 + 10 x 11 = 146 features). A run
// stopped after 2 of 3 steps and resumed gives the uninterrupted curve bit for bit, and the export carries the cap
// back (vision_aspect_ratio).
static void test_anyres_max(void) {
    const char *sets[] = {"train.max_steps=3",
                          "train.per_device_train_batch_size=2",
                          "checkpoint.save_steps=2",
                          "model.pretrain_mm_mlp_adapter=null",
                          "data.image_aspect_ratio=anyres_max_3",
                          "data.image_grid_pinpoints=[[96,96]]"};
    int n = sizeof sets / sizeof sets[0];
    char *full = path_join(world, "run_anyres_max"), *part = path_join(world, "run_anyres_max_part");
    char *preset = path_join(world, "stage2.json");
    check_resumed_curve(preset, full, part, sets, n, 2, "anyres_max");
    char *model = path_join(full, "model");
    llava_model m;
    if (llava_model_load(&m, model, test_cpu()) == 0) {
        CHECK(m.cfg.glue.anyres && m.cfg.glue.pinpoints.max_num_patches == 3, "the export keeps anyres_max_3 (got %d)",
              m.cfg.glue.pinpoints.max_num_patches);
        llava_model_free(&m);
    } else {
        CHECK(0, "the anyres_max export does not load: %s", llava_errmsg());
    }
    // llava generate on the export (the engine counts the capped features and lays out the resize plan)
    int ran, n_prompt = generate_prompt_tokens(model, "anyres_max", &ran);
    if (ran) {
        CHECK(n_prompt > 146, "generate on the anyres_max export: %d prompt tokens", n_prompt);
        printf("anyres_max generate: %d prompt tokens (146 of them the image's capped features)\n", n_prompt);
    }
    printf("anyres_max_3: 3 steps of 5-tile images resized 12x12 -> 10x10, resumed bit for bit, the cap exported\n");
    free(preset), free(model), free(full), free(part);
}

// Video frames pooled as transformers' LlavaNextVideo (model.video_pool_mode average): the demo's video world (48-pixel
// images in 8-pixel patches, G = 6; four-frame videos, 2 taken: data.video_frames 2) trains with each frame's 36
// features pooled to 3 x 3 = 9 while the images keep 36, images and videos in the same batches. A run stopped after 2
// of 3 steps and resumed gives the uninterrupted curve bit for bit; the export carries the pooling back
// (spatial_pool_mode / spatial_pool_stride), and llava generate on a video through the engine counts its frames'
// pooled features: the video prompt is the one-image prompt less 36 plus 2 x 9 tokens, exactly.
static void test_video_pool(void) {
    char *vworld = path_join(world, "video_world"), *preset = path_join(vworld, "stage2.json");
    CHECK(demo_make_world_ex(vworld, 16, 0, 1, NULL, "cpu", NULL, NULL, 0, DEMO_VIDEO) == 0, "%s", llava_errmsg());
    const char *sets[] = {"train.max_steps=3",        "train.per_device_train_batch_size=4",
                          "checkpoint.save_steps=2",  "model.pretrain_mm_mlp_adapter=null",
                          "data.video_frames=2",      "model.video_pool_mode=average",
                          "model.video_pool_stride=2"};
    int n = sizeof sets / sizeof sets[0];
    char *full = path_join(vworld, "run_video_pool"), *part = path_join(vworld, "run_video_pool_part");
    check_resumed_curve(preset, full, part, sets, n, 2, "video-pooling");
    // The whole-images pooling and AnyRes are refused beside it, by name.
    const char *both[] = {"model.mm_spatial_pool_mode=max"};
    char *bad = path_join(vworld, "run_video_pool_bad");
    const char *base[] = {"model.video_pool_mode=average", "model.pretrain_mm_mlp_adapter=null"};
    CHECK(test_train_preset(preset, bad, base, 2, both, 1, 0, 0) != 0 &&
              strstr(llava_errmsg(), "model.video_pool_mode") && strstr(llava_errmsg(), "mm_spatial_pool_mode"),
          "video pooling with mm_spatial_pool_mode: %s", llava_errmsg());
    const char *anyres[] = {"data.image_aspect_ratio=anyres", "data.image_grid_pinpoints=[[48,96],[96,48]]"};
    CHECK(test_train_preset(preset, bad, base, 2, anyres, 2, 0, 0) != 0 && strstr(llava_errmsg(), "AnyRes"),
          "video pooling with AnyRes: %s", llava_errmsg());
    char *model = path_join(full, "model");
    llava_model m;
    if (llava_model_load(&m, model, test_cpu()) == 0) {
        CHECK(m.cfg.glue.video_pool_mode == POOL_AVERAGE && m.cfg.glue.video_pool_stride == 2 &&
                  m.tokens_per_video_frame == 9 && m.tokens_per_image == 36,
              "the export's video pooling: %s stride %d, %d tokens per frame, %d per image",
              llava_pool_name(m.cfg.glue.video_pool_mode), m.cfg.glue.video_pool_stride, m.tokens_per_video_frame,
              m.tokens_per_image);
        llava_model_free(&m);
    } else {
        CHECK(0, "the video-pooling export does not load: %s", llava_errmsg());
    }
    const char *bin = getenv("LLAVA_BIN");
    if (bin) {
        char *f[4];
        for (int i = 0; i < 4; i++) f[i] = xasprintf("%s/data/images/train_%05d.png", vworld, i);
        char *vargs = xasprintf(
            "generate --model '%s' --video '%s' --video '%s' --video '%s' --video '%s' --video-frames 2 --prompt "
            "'What color is the shape at the end of the video?' --json --max-new-tokens 4 --threads 1",
            model, f[0], f[1], f[2], f[3]);
        char *iargs = xasprintf(
            "generate --model '%s' --image '%s' --prompt 'What color is the shape at the end of the video?' --json "
            "--max-new-tokens 4 --threads 1",
            model, f[0]);
        char *vo = NULL, *ve = NULL, *io = NULL, *ie = NULL;
        int rv = check_run(bin, vworld, vargs, &vo, &ve), ri = check_run(bin, vworld, iargs, &io, &ie);
        const char *vp = vo ? strstr(vo, "\"prompt_tokens\":") : NULL,
                   *ip = io ? strstr(io, "\"prompt_tokens\":") : NULL;
        int nv = vp ? atoi(vp + 16) : 0, ni = ip ? atoi(ip + 16) : 0;
        CHECK(rv == 0 && ri == 0 && vp && ip && nv == ni - 36 + 2 * 9 && strstr(vo, "\"finish_reason\""),
              "generate on a video with the video-pooling export: %d prompt tokens, %d with one image\n%s%s%s%s", nv,
              ni, vo, ve, io, ie);
        printf("video pooling generate: %d prompt tokens (2 frames x 9 pooled features), %d with one image (36)\n", nv,
               ni);
        // The engine's cached answer is the reference path's (a full pass per token, the frames pooled there too).
        char *cargs = xasprintf(
            "generate --model '%s' --video '%s' --video '%s' --video '%s' --video '%s' --video-frames 2 --prompt "
            "'What color is the shape at the end of the video?' --max-new-tokens 4 --threads 1",
            model, f[0], f[1], f[2], f[3]);
        char *nargs = xasprintf("%s --no-cache", cargs);
        char *co = NULL, *ce = NULL, *no = NULL, *ne = NULL;
        int rc1 = check_run(bin, vworld, cargs, &co, &ce), rc2 = check_run(bin, vworld, nargs, &no, &ne);
        CHECK(rc1 == 0 && rc2 == 0 && co && no && co[0] && strcmp(co, no) == 0,
              "video pooling: cached answer \"%s\" vs no-cache \"%s\"\n%s%s", co ? co : "", no ? no : "", ce ? ce : "",
              ne ? ne : "");
        free(cargs), free(nargs), free(co), free(ce), free(no), free(ne);
        for (int i = 0; i < 4; i++) free(f[i]);
        free(vargs), free(iargs), free(vo), free(ve), free(io), free(ie);
    }
    printf("video pooling: 3 steps of images (36 tokens) and 2-frame videos (9 per frame), resumed bit for bit\n");
    free(model), free(full), free(part), free(bad), free(preset), free(vworld);
}

int main(void) {
    llava_cpu_set_threads(1);
    world = check_tmpdir();
    CHECK(demo_make_world(world, 64, 0, 1, NULL) == 0, "%s", llava_errmsg());
    test_resume();
    test_eval_loss();
    test_stage1_freezing();
    test_loss_normalisation();
    test_freeze_by_name();
    test_vision_train();
    test_anyres();
    test_anyres_max();
    test_video_pool();
    test_errors();
    test_plan_vs_peak();
    test_sigkill();
    check_rm_rf(world);
    free(world);
    return check_done();
}
