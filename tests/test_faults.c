// Faults a careful user runs into, each reproduced and shown handled (issue "Nothing lost, nothing
// silently wrong"), on the demo's small world and the CPU backend:
//   - a flipped byte in the newest checkpoint: resume names it, sets it aside and continues from
//     the newest good one, bit for bit as the uninterrupted run; ckpt_verify on every damage;
//   - a finite but absurd loss (weights scaled by 1e6 in a checkpoint with a valid manifest): the
//     steps are skipped like non-finite ones and the run stops after train.max_nonfinite_steps;
//   - a NaN in one step's gradient (planted, train/fault.h): that step skipped, nothing moved, the
//     run goes on to its end;
//   - two runs into one folder: the second fails at once naming the first; a stale lock is taken;
//   - a memory plan beyond the machine, a step larger than the dataset: refused at start;
//   - --resume with max_steps below the checkpoint's step: nothing trained, the results written
//     when missing;
//   - SIGTERM at many moments: each time the run finishes its step, writes its checkpoint and exits
//     with 75; resumed, the curve equals the uninterrupted one; a second signal ends it at once.
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/demo.h"
#include "check.h"
#include "common/crc32c.h"
#include "common/util.h"
#include "model/io/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/runlock.h"
#include "train/trainer.h"
#include "train_run.h"

static char *world;

static const char *BASE_SETS[] = {
    "train.num_train_epochs=1",     "train.per_device_train_batch_size=4", "train.gradient_accumulation_steps=2",
    "checkpoint.save_steps=2",      "checkpoint.save_total_limit=2",       "model.pretrain_mm_mlp_adapter=null",
    "data.dataloader_num_workers=0"};
enum { N_BASE = sizeof BASE_SETS / sizeof BASE_SETS[0] };

// A stage-2 run in `out` with the base settings and `extra` ones; returns train_run's result.
static int train(const char *out, const char *const *extra, int n_extra, int resume, int stop_after) {
    char *p = path_join(world, "stage2.json");
    int rc = test_train_preset(p, out, BASE_SETS, N_BASE, extra, n_extra, resume, stop_after);
    free(p);
    return rc;
}

static char *curve(const char *out) { return test_curve(out); }

static int count_lines(const char *text) {
    int n = 0;
    for (const char *c = text; *c; c++) n += *c == '\n';
    return n;
}

// Flips one bit of byte `at` from the end of a file.
static void flip_byte(const char *path, long from_end) {
    int fd = open(path, O_RDWR);
    off_t size = lseek(fd, 0, SEEK_END);
    unsigned char b = 0;
    CHECK(pread(fd, &b, 1, size - from_end) == 1, "read %s", path);
    b ^= 0x10;
    CHECK(pwrite(fd, &b, 1, size - from_end) == 1, "write %s", path);
    close(fd);
}

// Rewrites checkpoint dir's COMPLETE manifest from its files as they are now (what a checkpoint
// that was written with bad numbers in it, rather than damaged after, looks like).
static void rewrite_manifest(const char *dir) {
    const char *names[3] = {"weights.safetensors", "optimizer.safetensors", "state.json"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "format", 2);
    cJSON *arr = cJSON_AddArrayToObject(j, "files");
    for (int i = 0; i < 3; i++) {
        char *p = path_join(dir, names[i]);
        uint32_t crc = 0;
        uint64_t bytes = 0;
        CHECK(crc32c_file(p, &crc, &bytes) == 0, "%s", llava_errmsg());
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", crc);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", names[i]);
        cJSON_AddNumberToObject(e, "bytes", (double)bytes);
        cJSON_AddStringToObject(e, "crc32c", hex);
        cJSON_AddItemToArray(arr, e);
        free(p);
    }
    char *text = cJSON_Print(j), *mp = path_join(dir, "COMPLETE");
    CHECK(write_file_atomic(mp, text, strlen(text)) == 0, "%s", llava_errmsg());
    free(text);
    free(mp);
    cJSON_Delete(j);
}

// Rewrites tensor `name` of checkpoint dir's weights: every value times `scale`, and with `nan` the
// first one NaN; then a manifest that matches the new file.
static void edit_weights(const char *dir, const char *name, float scale, int nan) {
    char *wp = path_join(dir, "weights.safetensors"), *tmp = path_join(dir, "weights.new");
    st_file f;
    CHECK(st_open(&f, wp) == 0, "%s", llava_errmsg());
    CHECK(st_find(&f, name) != NULL, "the checkpoint holds %s", name);
    st_writer wr;
    st_writer_init(&wr);
    float **bufs = xcalloc((size_t)f.n_tensors, sizeof(float *));
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        bufs[i] = xmalloc(sizeof(float) * t->numel);
        memcpy(bufs[i], t->data, sizeof(float) * t->numel);
        if (strcmp(t->name, name) == 0) {
            for (uint64_t k = 0; k < t->numel; k++) bufs[i][k] *= scale;
            if (nan) bufs[i][0] = NAN;
        }
        st_writer_add(&wr, t->name, DT_F32, t->ndim, t->shape, bufs[i]);
    }
    CHECK(st_writer_save(&wr, tmp) == 0 && rename(tmp, wp) == 0, "rewrite the weights: %s", llava_errmsg());
    int n = f.n_tensors;
    st_close(&f);
    st_writer_free(&wr);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(wp);
    free(tmp);
    rewrite_manifest(dir);
}

// A NaN behind a valid manifest: resume refuses the checkpoint by the tensor's name.
static void test_nan_checkpoint(void) {
    char *run = path_join(world, "nan");
    const char *every[] = {"checkpoint.save_steps=1"};
    CHECK(train(run, every, 1, 0, 2) == 0, "%s", llava_errmsg());
    char *ck = path_join(run, "checkpoint-2");
    edit_weights(ck, "projector.linear_1.weight", 1.0f, 1);
    CHECK(train(run, every, 1, 1, 0) != 0, "a checkpoint with a NaN weight is refused");
    CHECK_ERR_HAS("tensor \"projector.linear_1.weight\" holds 1 values that are not finite (the first at element 0)");
    free(ck), free(run);
}

static void test_damaged_checkpoint(void) {
    char *full = path_join(world, "dmg_full"), *part = path_join(world, "dmg_part");
    CHECK(train(full, NULL, 0, 0, 0) == 0, "%s", llava_errmsg());
    char *want = curve(full);
    CHECK(count_lines(want) == 8, "64 samples / (4 x 2): 8 steps, %d logged", count_lines(want));
    // state.json records what the dataset was prepared from and the recent losses of the spike check.
    char *sp = path_join(full, "checkpoint-8/state.json");
    size_t slen = 0;
    char *stext = read_file(sp, 1 << 20, &slen);
    cJSON *sj = stext ? cJSON_Parse(stext) : NULL;
    const cJSON *dsj = cJSON_GetObjectItemCaseSensitive(sj, "dataset");
    const cJSON *md5 = cJSON_GetObjectItemCaseSensitive(dsj, "source_md5"),
                *ns = cJSON_GetObjectItemCaseSensitive(dsj, "samples");
    const cJSON *lw = cJSON_GetObjectItemCaseSensitive(sj, "loss_window");
    CHECK(cJSON_IsString(md5) && strlen(md5->valuestring) == 32 && cJSON_IsNumber(ns) && ns->valuedouble == 64 &&
              cJSON_GetArraySize(lw) == 8,
          "state.json: dataset source and 8 recent losses:\n%s", stext ? stext : "(none)");
    cJSON_Delete(sj);
    free(stext);
    free(sp);
    // ckpt_verify on a good checkpoint, then on each kind of damage (on copies).
    char why[512];
    char *ck8 = path_join(full, "checkpoint-8");
    CHECK(ckpt_verify(ck8, why, sizeof why) == 1, "a fresh checkpoint verifies: %s", why);
    char *copy = path_join(world, "dmg_copy");
    char *cmd = xasprintf("rm -rf '%s' && cp -r '%s' '%s'", copy, ck8, copy);
    CHECK(system(cmd) == 0, "copy a checkpoint");
    char *w = path_join(copy, "weights.safetensors");
    flip_byte(w, 5);
    CHECK(ckpt_verify(copy, why, sizeof why) == 0 && strstr(why, "weights.safetensors is damaged (crc32c"),
          "a flipped bit in the weights: \"%s\"", why);
    flip_byte(w, 5);  // restored
    CHECK(ckpt_verify(copy, why, sizeof why) == 1, "restored: %s", why);
    char *o = path_join(copy, "optimizer.safetensors");
    CHECK(truncate(o, 1000) == 0, "truncate");
    CHECK(ckpt_verify(copy, why, sizeof why) == 0 &&
              strstr(why, "optimizer.safetensors has 1000 bytes, its manifest says"),
          "a truncated optimizer state: \"%s\"", why);
    char *mark = path_join(copy, "COMPLETE");
    unlink(mark);
    CHECK(ckpt_verify(copy, why, sizeof why) == 0 && strstr(why, "never finished"), "no manifest: \"%s\"", why);
    // The newest checkpoint damaged: resume sets it aside and goes on from the one before, and the
    // run ends exactly as the uninterrupted one did.
    CHECK(train(part, NULL, 0, 0, 6) == 0, "%s", llava_errmsg());
    char *opt6 = path_join(part, "checkpoint-6/optimizer.safetensors");
    flip_byte(opt6, 4096);
    CHECK(train(part, NULL, 0, 1, 0) == 0, "resume past a damaged checkpoint: %s", llava_errmsg());
    char *aside = path_join(part, "damaged-checkpoint-6/optimizer.safetensors"), *got = curve(part);
    CHECK(file_exists(aside), "the damaged checkpoint is set aside, not deleted");
    CHECK(strcmp(want, got) == 0, "resumed from checkpoint-4 after the damaged 6: curve differs\n%s\nvs\n%s", got,
          want);
    printf("damaged checkpoint-6 set aside; resumed from checkpoint-4: curve identical to the uninterrupted run\n");
    free(want), free(got), free(ck8), free(copy), free(cmd), free(w), free(o), free(mark), free(opt6), free(aside);
    free(full), free(part);
}

static void test_loss_spike(void) {
    char *run = path_join(world, "spike");
    const char *every[] = {"checkpoint.save_steps=1", "train.max_nonfinite_steps=2"};
    CHECK(train(run, every, 2, 0, 3) == 0, "%s", llava_errmsg());
    // Checkpoint 3 with its LM head scaled by 1e6 and a manifest that matches: a bad number that
    // verification cannot see, as a buggy writer or a bad GPU would leave it.
    char *ck = path_join(run, "checkpoint-3");
    edit_weights(ck, "lm.lm_head.weight", 1e6f, 0);
    rewrite_manifest(ck);
    int rc = train(run, every, 2, 1, 0);
    CHECK(rc != 0, "a run whose loss jumps by orders of magnitude stops");
    CHECK_ERR_HAS("2 steps in a row had a non-finite loss or gradient, or a loss spike (step 5)");
    char *mp = path_join(run, "metrics.jsonl");
    size_t len = 0;
    char *c = read_file(mp, 1 << 20, &len);
    const char *s4 = c ? strstr(c, "{\"step\":4,") : NULL, *s5 = c ? strstr(c, "{\"step\":5,") : NULL;
    CHECK(c && count_lines(c) == 5 && s4 && s5 && strstr(s4, "\"skipped\":1,") &&
              strstr(s5, "\"skipped\":1,\"skipped_total\":2"),
          "steps 4 and 5 logged as skipped:\n%s", c ? c : "(no metrics)");
    free(mp);
    printf("loss spike after a checkpoint with a scaled LM head: steps 4 and 5 skipped, run stopped\n");
    free(c), free(ck), free(run);
}

// The tensors of two safetensors files are the same bytes, name by name.
static int same_tensors(const char *a, const char *b) {
    st_file fa, fb;
    if (st_open(&fa, a) != 0) return 0;
    if (st_open(&fb, b) != 0) {
        st_close(&fa);
        return 0;
    }
    int same = fa.n_tensors == fb.n_tensors && fa.n_tensors > 0;
    for (int i = 0; same && i < fa.n_tensors; i++) {
        const st_tensor *x = &fa.tensors[i], *y = st_find(&fb, x->name);
        same = y && y->end - y->begin == x->end - x->begin && memcmp(x->data, y->data, x->end - x->begin) == 0;
    }
    st_close(&fa);
    st_close(&fb);
    return same;
}

// One step whose gradient holds a NaN (LLAVA_DEBUG_FAULT's nangrad: planted after the reduction,
// with a finite loss) is skipped: no weight and no AdamW moment moves (checkpoint-3 holds what
// checkpoint-2 holds), the step is logged as skipped with no gradient norm, and the run goes on to
// its end with the steps after it applied; resumed right after the skipped step, it ends as the run
// that was never interrupted.
static void test_nan_gradient_step(void) {
    char *run = path_join(world, "nangrad"), *whole = path_join(world, "nangrad_whole");
    const char *every[] = {"checkpoint.save_steps=1"};
    setenv("LLAVA_DEBUG_FAULT", "0:3:nangrad", 1);
    CHECK(train(whole, every, 1, 0, 0) == 0, "%s", llava_errmsg());  // the same fault, never interrupted
    CHECK(train(run, every, 1, 0, 3) == 0, "%s", llava_errmsg());
    unsetenv("LLAVA_DEBUG_FAULT");
    char *w2 = path_join(run, "checkpoint-2/weights.safetensors"),
         *w3 = path_join(run, "checkpoint-3/weights.safetensors");
    char *o2 = path_join(run, "checkpoint-2/optimizer.safetensors"),
         *o3 = path_join(run, "checkpoint-3/optimizer.safetensors");
    CHECK(same_tensors(w2, w3), "the skipped step 3 changed the weights");
    CHECK(same_tensors(o2, o3), "the skipped step 3 changed AdamW's moments");
    CHECK(train(run, every, 1, 1, 0) == 0, "the run goes on after a skipped step: %s", llava_errmsg());
    char *mp = path_join(run, "metrics.jsonl");
    size_t len = 0;
    char *c = read_file(mp, 1 << 20, &len);
    const char *s3 = c ? strstr(c, "{\"step\":3,") : NULL, *s8 = c ? strstr(c, "{\"step\":8,") : NULL;
    int skipped_lines = 0;
    for (const char *q = c; q && (q = strstr(q, "\"skipped\":1,")); q++) skipped_lines++;
    CHECK(c && count_lines(c) == 8 && s3 && strstr(s3, "\"grad_norm\":null") && strstr(s3, "\"skipped\":1,") &&
              skipped_lines == 1 && s8 && strstr(s8, "\"skipped\":0,\"skipped_total\":1"),
          "8 steps, step 3 alone skipped (no gradient norm), counted to the end:\n%s", c ? c : "(no metrics)");
    // Resumed after the skipped step, the run goes on as the uninterrupted one: AdamW's own count of
    // applied updates (its bias correction) is the steps minus the skipped ones, not the step.
    char *cw = curve(whole), *cr = curve(run);
    CHECK(strcmp(cw, cr) == 0, "resumed after a skipped step, the curve differs:\n%s\nvs uninterrupted\n%s", cr, cw);
    printf(
        "a NaN gradient at step 3: step skipped (weights and moments unchanged), run finished its 8 steps, "
        "resumed after it bit-identical to the uninterrupted run\n");
    free(cw), free(cr), free(whole);
    free(c), free(mp), free(w2), free(w3), free(o2), free(o3), free(run);
}

static void test_run_lock(void) {
    char *run = path_join(world, "locked");
    run_lock held;
    CHECK(run_lock_take(&held, run) == 0, "%s", llava_errmsg());
    CHECK(train(run, NULL, 0, 0, 1) != 0, "a second run into a locked folder");
    char pid[64];
    snprintf(pid, sizeof pid, "in use by another llava train (pid %d host ", (int)getpid());
    CHECK_ERR_HAS(pid);
    char *metrics = path_join(run, "metrics.jsonl");
    CHECK(!file_exists(metrics), "the refused run wrote nothing");
    run_lock_release(&held);
    // A lock left by a run that died: its text is there, nobody holds the lock. Taken over.
    char *lock = path_join(run, ".llava.lock");
    CHECK(write_file_atomic(lock, "pid 1 host elsewhere since 0\n", 29) == 0, "%s", llava_errmsg());
    CHECK(train(run, NULL, 0, 0, 1) == 0, "a stale lock is taken over: %s", llava_errmsg());
    printf("run lock: a second run refused naming pid %d; a stale lock taken over\n", (int)getpid());
    free(metrics), free(lock), free(run);
}

static void test_refusals(void) {
    char *run = path_join(world, "refused");
    const char *huge[] = {"data.model_max_length=268435456"};
    CHECK(train(run, huge, 1, 0, 0) != 0, "a run whose memory plan is beyond the machine");
    CHECK_ERR_HAS("the memory plan needs");
    CHECK_ERR_HAS("set train.ignore_memory_plan=true to run anyway");
    const char *big[] = {"train.per_device_train_batch_size=64", "train.gradient_accumulation_steps=2"};
    CHECK(train(run, big, 2, 0, 0) != 0, "a step larger than the dataset");
    CHECK_ERR_HAS("one step takes 128 samples (64 per device x 2 micro-batches x 1 ranks) but the dataset has 64");
    free(run);
}

static void test_resume_past_end(void) {
    char *run = path_join(world, "past_end");
    const char *four[] = {"train.max_steps=4"}, *two[] = {"train.max_steps=2"};
    CHECK(train(run, four, 1, 0, 0) == 0, "%s", llava_errmsg());
    char *proj = path_join(run, "mm_projector.safetensors"), *model = path_join(run, "model");
    CHECK(file_exists(proj) && dir_exists(model), "results written");
    CHECK(train(run, two, 1, 1, 0) == 0, "resume past max_steps: %s", llava_errmsg());
    char *c = curve(run);
    CHECK(count_lines(c) == 4, "nothing trained past the checkpoint: %d steps logged", count_lines(c));
    // Results missing (deleted by hand): the same resume writes them from the checkpoint.
    remove_tree(model);
    unlink(proj);
    CHECK(train(run, two, 1, 1, 0) == 0 && file_exists(proj) && dir_exists(model),
          "resume past max_steps writes the missing results: %s", llava_errmsg());
    printf("resume with max_steps below the checkpoint: nothing trained, missing results written\n");
    free(c), free(proj), free(model), free(run);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Starts `llava train --resume` in `run` and waits until it holds the folder's lock (its signal
// handlers are in place a moment later). Returns the pid; 0 when it ended before (its status in
// *ended), -1 when it did not start.
static pid_t start_run(const char *bin, const char *run, int *ended) {
    char *preset = path_join(world, "stage2.json"), *lock = path_join(run, ".llava.lock");
    unlink(lock);
    pid_t pid = fork();
    if (pid == 0) {
        char o[512];
        snprintf(o, sizeof o, "checkpoint.output_dir=%s", run);
        const char *argv[40] = {
            bin, "train", preset, "--set", o, "--set", "checkpoint.save_steps=1", "--set", "train.num_train_epochs=6"};
        int k = 9;
        for (int i = 0; i < N_BASE; i++)
            if (strncmp(BASE_SETS[i], "checkpoint.save_steps", 21) != 0 &&
                strncmp(BASE_SETS[i], "train.num_train", 15) != 0) {
                argv[k++] = "--set";
                argv[k++] = BASE_SETS[i];
            }
        argv[k++] = "--resume";
        argv[k++] = "--quiet";
        argv[k] = NULL;
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    // Held by this run: the lock names its pid (a run ended by a second signal leaves its own pid
    // there, and a signal sent on that would reach this run before its handlers are installed).
    char mine[32];
    snprintf(mine, sizeof mine, "pid %d ", (int)pid);
    for (int i = 0; i < 4000; i++) {  // up to 20 s
        size_t len = 0;
        char *t = read_file(lock, 256, &len);
        int held = t && len > 0 && strncmp(t, mine, strlen(mine)) == 0;
        free(t);
        if (held) break;
        if (waitpid(pid, ended, WNOHANG) == pid) {  // it ended before it was seen
            pid = 0;
            break;
        }
        sleep_ms(5);
    }
    free(preset);
    free(lock);
    return pid;
}

// The newest complete checkpoint's step in run, or 0.
static int newest_checkpoint(const char *run) {
    char *p = ckpt_latest(run);
    int s = p ? atoi(strrchr(p, '-') + 1) : 0;
    free(p);
    return s;
}

// The run in `run` ended: its whole curve (`want`'s lines) and its exported projector are there.
static int run_complete(const char *run, const char *want) {
    char *c = curve(run), *pp = path_join(run, "mm_projector.safetensors");
    int done = strcmp(c, want) == 0 && file_exists(pp);
    free(c);
    free(pp);
    return done;
}

static void test_sigterm(void) {
    const char *bin = getenv("LLAVA_BIN");
    CHECK(bin != NULL, "LLAVA_BIN not set (run through ctest)");
    if (!bin) return;
    setenv("OPENBLAS_NUM_THREADS", "1", 1);  // the same summation order as the reference
    char *ref = path_join(world, "term_ref"), *run = path_join(world, "term_run");
    const char *every[] = {"checkpoint.save_steps=1", "train.num_train_epochs=6"};
    CHECK(train(ref, every, 2, 0, 0) == 0, "%s", llava_errmsg());
    char *want = curve(ref);
    int stopped = 0, finished = 0, lost = 0, status_bad = 0, twice = 0;
    for (int attempt = 0; attempt < 30 && !finished; attempt++) {
        int ended = 0;
        pid_t pid = start_run(bin, run, &ended);
        if (pid == 0) {  // it ended before its lock was seen
            finished = WIFEXITED(ended) && WEXITSTATUS(ended) == 0;
            break;
        }
        CHECK(pid > 0, "the run did not start");
        if (pid < 0) break;
        sleep_ms(attempt % 2 ? 30 + (attempt * 53) % 250 : 1);
        kill(pid, SIGTERM);
        int st = 0, reaped = 0, doubled = attempt >= 5 && !twice;
        if (doubled) {
            // A second signal ends it at once. Two signals sent before the process runs its handler
            // merge into one (POSIX does not queue them), so the second is repeated until it exits.
            for (int k = 0; k < 500 && !reaped; k++) {
                sleep_ms(2);
                if (waitpid(pid, &st, WNOHANG) == pid) reaped = 1;
                else kill(pid, SIGTERM);
            }
        }
        if (!reaped) waitpid(pid, &st, 0);
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (code == 0) {
            finished = 1;
        } else if (code == 75) {
            stopped++;
            // Nothing lost: the step it stopped after is its newest checkpoint's.
            char *c = curve(run);
            lost += count_lines(c) != newest_checkpoint(run);
            free(c);
        } else if (code == 128 + SIGTERM && doubled) {
            twice = 1;
        } else if (code == 128 + SIGTERM && run_complete(run, want)) {
            // The signal came after the run had finished and put its handlers back (train_run is a
            // library call: it restores the caller's): the default action ended a completed run.
            finished = 1;
        } else {
            status_bad++;
            fprintf(stderr, "attempt %d: exit %d\n", attempt, code);
        }
    }
    if (!finished) CHECK(train(run, every, 2, 1, 0) == 0, "the last resume: %s", llava_errmsg());
    char *got = curve(run);
    CHECK(stopped >= 3 && lost == 0 && status_bad == 0, "%d stops with a checkpoint (%d lost a step, %d other exits)",
          stopped, lost, status_bad);
    CHECK(twice, "a second SIGTERM did not end the run at once (exit 143)");
    CHECK(strcmp(want, got) == 0, "the curve after %d stops differs:\n%s\nvs\n%s", stopped, got, want);
    printf(
        "SIGTERM: %d stops, each after a step with its checkpoint (exit 75), a second signal exits at once; "
        "curve identical: %s\n",
        stopped, strcmp(want, got) == 0 ? "yes" : "no");
    free(want), free(got), free(ref), free(run);
}

int main(void) {
    llava_cpu_set_threads(1);
    world = check_tmpdir();
    CHECK(demo_make_world(world, 64, 0, 1, NULL) == 0, "%s", llava_errmsg());
    test_damaged_checkpoint();
    test_loss_spike();
    test_nan_gradient_step();
    test_nan_checkpoint();
    test_run_lock();
    test_refusals();
    test_resume_past_end();
    test_sigterm();
    check_rm_rf(world);
    free(world);
    return check_done();
}
