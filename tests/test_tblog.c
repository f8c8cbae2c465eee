// TensorBoard event files (train/tblog.h), read back by a reader of the format written here from
// its description, not with the writer's code: TFRecord framing with both masked CRC-32Cs checked,
// the tf.Event protobuf decoded field by field (an unknown field or wire type is an error).
//  1. unit: known scalars written and read back; tags by the HF Trainer's rule; names of files;
//     truncation on resume (steps past it, torn and corrupt tails, files left empty, leftovers);
//     log.report_to as one string or a list.
//  2. golden: the event file tools/reference/make_tensorboard_golden.py read with the tensorboard
//     package's EventAccumulator (tests/data/tensorboard/) is rewritten here from the same inputs,
//     byte for byte, and its scalars decoded here equal the (tag, step, wall_time, value) the
//     package read; the script also re-serialised every record with protobuf and TensorBoard's own
//     record writer and found the same bytes (recorded in the golden, asserted here).
//     LLAVA_WRITE_TB_GOLDEN=1 rewrites the committed event file (then rerun the script).
//  3. a training run of the demo world with log.report_to ["jsonl", "tensorboard"] and an eval
//     loss: the event file's scalars equal metrics.jsonl's values step by step (float32 rounding),
//     and a run stopped after a step that has no checkpoint, then resumed, shows each step once
//     with the values of its metrics.jsonl.
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/demo.h"
#include "check.h"
#include "common/crc32c.h"
#include "common/util.h"
#include "kernels/ops.h"
#include "train/config.h"
#include "train/tblog.h"
#include "train_run.h"

#define GOLDEN_DIR "tests/data/tensorboard"
#define GOLDEN_FILE GOLDEN_DIR "/events.out.tfevents.1700000000.golden"

// ---------------------------------------------------------------------------------------------
// The reader.

#define MAX_VALUES 32

typedef struct {
    double wall_time;
    int64_t step;
    char file_version[32];  // "" when the record has none
    int has_summary;
    int n;  // values in the summary
    char tags[MAX_VALUES][64];
    float values[MAX_VALUES];
} tb_event;

typedef struct {
    tb_event *ev;
    int n;
} tb_events;

static uint32_t masked(const void *p, size_t n) {
    uint32_t c = crc32c_sw(0, p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int varint(const uint8_t *p, size_t n, size_t *at, uint64_t *v) {
    *v = 0;
    for (int s = 0; s < 70; s += 7) {
        if (*at >= n) return -1;
        uint8_t b = p[(*at)++];
        *v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

// Decodes one Summary.Value into e's next slot.
static int decode_value(const uint8_t *p, size_t n, tb_event *e) {
    if (e->n == MAX_VALUES) return -1;
    int k = e->n++, has_value = 0;
    e->tags[k][0] = 0;
    for (size_t at = 0; at < n;) {
        uint64_t key, len;
        if (varint(p, n, &at, &key) != 0) return -1;
        if (key == (1 << 3 | 2)) {  // tag
            if (varint(p, n, &at, &len) != 0 || len > n - at || len >= sizeof e->tags[k]) return -1;
            memcpy(e->tags[k], p + at, len);
            e->tags[k][len] = 0;
            at += len;
        } else if (key == (2 << 3 | 5)) {  // simple_value
            if (n - at < 4) return -1;
            uint32_t bits = (uint32_t)le(p + at, 4);
            memcpy(&e->values[k], &bits, 4);
            at += 4, has_value = 1;
        } else {
            return -1;
        }
    }
    return has_value ? 0 : -1;
}

static int decode_event(const uint8_t *p, size_t n, tb_event *e) {
    memset(e, 0, sizeof *e);
    for (size_t at = 0; at < n;) {
        uint64_t key, v;
        if (varint(p, n, &at, &key) != 0) return -1;
        if (key == (1 << 3 | 1)) {  // wall_time
            if (n - at < 8) return -1;
            uint64_t bits = le(p + at, 8);
            memcpy(&e->wall_time, &bits, 8);
            at += 8;
        } else if (key == (2 << 3 | 0)) {  // step
            if (varint(p, n, &at, &v) != 0) return -1;
            e->step = (int64_t)v;
        } else if (key == (3 << 3 | 2)) {  // file_version
            if (varint(p, n, &at, &v) != 0 || v > n - at || v >= sizeof e->file_version) return -1;
            memcpy(e->file_version, p + at, v);
            at += v;
        } else if (key == (5 << 3 | 2)) {  // summary: repeated Value value = 1
            if (varint(p, n, &at, &v) != 0 || v > n - at) return -1;
            e->has_summary = 1;
            const uint8_t *s = p + at;
            size_t sn = v;
            at += v;
            for (size_t sa = 0; sa < sn;) {
                uint64_t sk, len;
                if (varint(s, sn, &sa, &sk) != 0 || sk != (1 << 3 | 2)) return -1;
                if (varint(s, sn, &sa, &len) != 0 || len > sn - sa) return -1;
                if (decode_value(s + sa, len, e) != 0) return -1;
                sa += len;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

// Appends the events of one file to `out`; -1 (with a message) on any framing, CRC or decoding
// error, or bytes left over.
static int read_events(const char *path, tb_events *out) {
    size_t len;
    uint8_t *b = (uint8_t *)read_file(path, 1 << 26, &len);
    if (!b) return -1;
    int rc = 0;
    size_t at = 0;
    while (at < len && rc == 0) {
        if (len - at < 16) {
            rc = llava_fail("%s: %zu bytes left at %zu, no whole record", path, len - at, at);
            break;
        }
        uint64_t n = le(b + at, 8);
        if (masked(b + at, 8) != (uint32_t)le(b + at + 8, 4)) rc = llava_fail("%s: length CRC at %zu", path, at);
        else if (n > len - at - 16) rc = llava_fail("%s: record at %zu runs past the end", path, at);
        else if (masked(b + at + 12, n) != (uint32_t)le(b + at + 12 + n, 4))
            rc = llava_fail("%s: data CRC at %zu", path, at);
        else {
            out->ev = xrealloc(out->ev, sizeof *out->ev * (size_t)(out->n + 1));
            if (decode_event(b + at + 12, n, &out->ev[out->n]) != 0)
                rc = llava_fail("%s: record at %zu is not an Event of the expected fields", path, at);
            else out->n++;
            at += n + 16;
        }
    }
    free(b);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The event files of a folder in name order (as TensorBoard reads them); returns how many.
static int list_event_files(const char *dir, char ***names) {
    DIR *d = opendir(dir);
    int n = 0;
    *names = NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) != 0) continue;
        *names = xrealloc(*names, sizeof **names * (size_t)(n + 1));
        (*names)[n++] = xstrdup(e->d_name);
    }
    if (d) closedir(d);
    if (n) qsort(*names, (size_t)n, sizeof **names, cmp_str);
    return n;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

// The value of `tag` in e, or NULL.
static const float *find_value(const tb_event *e, const char *tag) {
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->tags[i], tag) == 0) return &e->values[i];
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// 1. unit

static void test_unit(const char *tmp) {
    // CRC-32C's check value, and the mask of the format.
    CHECK(crc32c(0, "123456789", 9) == 0xe3069283u, "CRC-32C check value");
    uint8_t rec[20];
    tblog_frame("abcd", 4, rec);
    CHECK(le(rec, 8) == 4 && (uint32_t)le(rec + 8, 4) == masked(rec, 8) && !memcmp(rec + 12, "abcd", 4) &&
              (uint32_t)le(rec + 16, 4) == masked("abcd", 4),
          "one framed record");

    char tag[96];
    const char *map[][2] = {{"loss", "train/loss"},           {"lr", "train/learning_rate"},
                            {"grad_norm", "train/grad_norm"}, {"epoch", "train/epoch"},
                            {"eval_loss", "eval/loss"},       {"tokens_per_s", "train/tokens_per_s"},
                            {"eval_samples", "eval/samples"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        tblog_tag(map[i][0], tag, sizeof tag);
        CHECK_EQ_STR(tag, map[i][1]);
    }

    char *dir = path_join(tmp, "unit/runs");
    tblog *w = tblog_open(dir, 1700000123.75, "unit-host");
    CHECK(w != NULL, "%s", llava_errmsg());
    if (!w) return;
    char *want = path_join(dir, "events.out.tfevents.1700000123.unit-host");
    CHECK_EQ_STR(tblog_path(w), want);
    tblog *w2 = tblog_open(dir, 1700000123.9, "unit-host");  // the same second: a suffix
    char *want2 = xasprintf("%s.1", want);
    CHECK(w2 && strcmp(tblog_path(w2), want2) == 0, "second file %s", w2 ? tblog_path(w2) : llava_errmsg());
    tblog_close(w2);
    unlink(want2);
    const char *tags[] = {"train/loss", "train/learning_rate", "eval/π"};
    for (int s = 1; s <= 5; s++) {
        double v[] = {1.0 / s, 2e-5 * s, -0.1 * s};
        CHECK(tblog_scalars(w, s, 1700000200.5 + s, tags, v, 3) == 0, "%s", llava_errmsg());
    }
    const char *keys[] = {"loss", "lr", "grad_norm", "eval_loss"};
    double mv[] = {NAN, 1e-3, INFINITY, 0.0};  // a skipped step: loss and norm are null
    CHECK(tblog_metrics(w, 6, 1700000300.0, keys, mv, 4) == 0, "%s", llava_errmsg());
    CHECK(tblog_sync(w) == 0 && tblog_close(w) == 0, "%s", llava_errmsg());

    tb_events ev = {0};
    CHECK(read_events(want, &ev) == 0, "%s", llava_errmsg());
    CHECK(ev.n == 7, "7 records, read %d", ev.n);
    if (ev.n == 7) {
        CHECK(!strcmp(ev.ev[0].file_version, "brain.Event:2") && ev.ev[0].wall_time == 1700000123.75 &&
                  ev.ev[0].step == 0 && !ev.ev[0].has_summary,
              "file_version record first");
        for (int s = 1; s <= 5; s++) {
            const tb_event *e = &ev.ev[s];
            CHECK(e->step == s && e->wall_time == 1700000200.5 + s && e->n == 3 && !e->file_version[0],
                  "event %d: step %lld, %d values", s, (long long)e->step, e->n);
            CHECK(e->n == 3 && !strcmp(e->tags[0], "train/loss") && e->values[0] == (float)(1.0 / s) &&
                      !strcmp(e->tags[1], "train/learning_rate") && e->values[1] == (float)(2e-5 * s) &&
                      !strcmp(e->tags[2], "eval/π") && e->values[2] == (float)(-0.1 * s),
                  "event %d's values", s);
        }
        const tb_event *e = &ev.ev[6];
        CHECK(e->step == 6 && e->n == 2 && !strcmp(e->tags[0], "train/learning_rate") && e->values[0] == 1e-3f &&
                  !strcmp(e->tags[1], "eval/loss") && e->values[1] == 0.0f,
              "metrics: the nulls left out, the zero kept (%d values)", e->n);
    }
    free(ev.ev);

    // Truncation: a second file with steps 4..5, a torn tail on the first, a leftover temporary.
    tblog *w3 = tblog_open(dir, 1700000500, "unit-host");
    for (int s = 4; s <= 5; s++) {
        double v = s;
        tblog_scalars(w3, s, 1700000600 + s, tags, &v, 1);
    }
    char *p3 = xstrdup(tblog_path(w3));
    tblog_close(w3);
    FILE *f = fopen(want, "ab");
    fwrite("\x30\0\0\0\0\0\0\0torn", 1, 12, f);
    fclose(f);
    char *tmpf = xasprintf("%s.tmp.4242", want);
    f = fopen(tmpf, "wb");
    fclose(f);
    struct stat st0, st1;
    CHECK(tblog_truncate(dir, 3) == 0, "%s", llava_errmsg());
    CHECK(!file_exists(p3), "a file with only steps past the resume step is removed");
    CHECK(!file_exists(tmpf), "a leftover temporary file is removed");
    memset(&ev, 0, sizeof ev);
    CHECK(read_events(want, &ev) == 0, "after truncation: %s", llava_errmsg());
    CHECK(ev.n == 4 && ev.ev[3].step == 3 && ev.ev[1].step == 1, "file_version and steps 1-3 kept (%d)", ev.n);
    free(ev.ev);
    // Nothing to cut: the file is not rewritten.
    stat(want, &st0);
    CHECK(tblog_truncate(dir, 3) == 0 && stat(want, &st1) == 0 && st0.st_ino == st1.st_ino, "unchanged file kept");
    // A corrupt record (one data byte flipped in step 2's record) ends what is kept.
    size_t len;
    char *b = read_file(want, 1 << 20, &len);
    size_t at = 0;
    for (int r = 0; r < 2; r++) at += le((uint8_t *)b + at, 8) + 16;  // record 2 = step 2
    b[at + 14] ^= 1;
    write_file_atomic(want, b, len);
    free(b);
    CHECK(tblog_truncate(dir, 100) == 0, "%s", llava_errmsg());
    memset(&ev, 0, sizeof ev);
    CHECK(read_events(want, &ev) == 0 && ev.n == 2 && ev.ev[1].step == 1, "cut at the corrupt record (%d left)", ev.n);
    free(ev.ev);
    // Truncating to step 0 (a fresh run over an unfinished one) leaves no file with scalars.
    CHECK(tblog_truncate(dir, 0) == 0 && !file_exists(want), "no scalars left: removed");
    char *missing = path_join(tmp, "no/such/dir");
    CHECK(tblog_truncate(missing, 3) == 0, "a missing folder is fine");
    free(missing);
    free(tmpf);
    free(p3);
    free(want);
    free(want2);
    free(dir);
}

// log.report_to: one string or a list, in a preset or a --set; "none" alone.
static void test_config(void) {
    train_config c;
    cfg_init_defaults(&c);
    CHECK(cfg_list_len(&c, "log.report_to") == 1 && cfg_list_has(&c, "log.report_to", "jsonl"), "default [jsonl]");
    const char *one = "{\"log\": {\"report_to\": \"tensorboard\"}}";
    CHECK(cfg_load_text(&c, one, strlen(one), "one.json") == 0, "%s", llava_errmsg());
    CHECK(cfg_list_len(&c, "log.report_to") == 1 && cfg_list_has(&c, "log.report_to", "tensorboard"),
          "a string is the one-item list");
    const char *two = "{\"log\": {\"report_to\": [\"jsonl\", \"tensorboard\"]}}";
    CHECK(cfg_load_text(&c, two, strlen(two), "two.json") == 0 && cfg_list_len(&c, "log.report_to") == 2, "a list: %s",
          llava_errmsg());
    const char *bad = "{\"log\": {\"report_to\": \"wandb\"}}";
    CHECK(cfg_load_text(&c, bad, strlen(bad), "bad.json") != 0, "wandb is not a place here");
    CHECK_ERR_HAS("jsonl|tensorboard|none");
    CHECK(cfg_set(&c, "log.report_to=jsonl,tensorboard") == 0 && cfg_list_len(&c, "log.report_to") == 2,
          "--set comma list: %s", llava_errmsg());
    CHECK(cfg_set(&c, "log.report_to=none") == 0 && cfg_list_has(&c, "log.report_to", "none"), "--set none");
    CHECK(cfg_set(&c, "log.report_to=[\"none\",\"jsonl\"]") == 0, "%s", llava_errmsg());
    CHECK(cfg_set(&c, "data.data_path=x.json") == 0 && cfg_set(&c, "model.init=m") == 0, "%s", llava_errmsg());
    CHECK(cfg_validate(&c) != 0, "none with another place");
    CHECK_ERR_HAS("\"none\" with other places");
    cfg_free(&c);
}

// ---------------------------------------------------------------------------------------------
// 2. golden

// The inputs of the golden file: what make_tensorboard_golden.py's reading is compared with.
static int write_golden(const char *dir) {
    tblog *w = tblog_open(dir, 1700000000.5, "golden");
    if (!w) return -1;
    int rc = 0;
    {  // step 0 (proto3 leaves a zero step out), a zero value (kept: simple_value is in a oneof)
        const char *t[] = {"train/loss", "train/epoch"};
        double v[] = {10.0, 0.0};
        rc |= tblog_scalars(w, 0, 1700000001.0, t, v, 2);
    }
    {  // the usual metrics, values float32 cannot hold exactly
        const char *t[] = {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_s"};
        double v[] = {2.302585093, 2e-5, 0.1, 12345.6};
        rc |= tblog_scalars(w, 1, 1700000002.25, t, v, 4);
    }
    {  // extremes: tiny, huge, negative zero, a float32-rounded integer, a non-ASCII tag
        const char *t[] = {"train/loss", "train/learning_rate", "eval/loss", "train/tokens", "eval/π"};
        double v[] = {1e-30, 3.4e38, -0.0, 16777217.0, -123456.789};
        rc |= tblog_scalars(w, 2, 1700000003.125, t, v, 5);
    }
    rc |= tblog_scalars(w, 3, 1700000004.0, NULL, NULL, 0);  // a step whose metrics were all null
    {                                                        // multi-byte varint steps
        const char *t[] = {"train/loss"};
        double v[] = {1.5};
        rc |= tblog_scalars(w, 300, 1700000005.0, t, v, 1);
        const char *keys[] = {"loss", "lr", "grad_norm", "eval_loss", "eval_samples"};
        double m[] = {0.5, 1e-3, NAN, 0.25, 64};
        rc |= tblog_metrics(w, 301, 1700000006.0, keys, m, 5);
        v[0] = 0.75;
        rc |= tblog_scalars(w, (int64_t)1 << 40, 1700000007.0, t, v, 1);
    }
    rc |= tblog_close(w);
    return rc;
}

static void test_golden(const char *tmp) {
    if (getenv("LLAVA_WRITE_TB_GOLDEN")) {
        unlink(GOLDEN_FILE);
        CHECK(write_golden(GOLDEN_DIR) == 0 && file_exists(GOLDEN_FILE), "%s", llava_errmsg());
        printf("wrote %s: now run tools/reference/make_tensorboard_golden.py\n", GOLDEN_FILE);
    }
    char *dir = path_join(tmp, "golden");
    CHECK(write_golden(dir) == 0, "%s", llava_errmsg());
    char *mine = path_join(dir, "events.out.tfevents.1700000000.golden");
    size_t la = 0, lb = 0;
    char *a = read_file(mine, 1 << 20, &la), *b = read_file(GOLDEN_FILE, 1 << 20, &lb);
    CHECK(a && b && la == lb && memcmp(a, b, la) == 0, "the event file differs from %s (%zu vs %zu bytes)", GOLDEN_FILE,
          la, lb);
    free(a), free(b);
    tb_events ev = {0};
    CHECK(read_events(mine, &ev) == 0, "%s", llava_errmsg());
    size_t jl;
    char *jt = read_file(GOLDEN_DIR "/golden.json", 1 << 20, &jl);
    cJSON *j = jt ? cJSON_Parse(jt) : NULL;
    CHECK(j != NULL, "tests/data/tensorboard/golden.json: %s", jt ? "not JSON" : llava_errmsg());
    if (j) {
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "reserialized_identical")),
              "protobuf and TensorBoard's record writer gave other bytes for the same events");
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "records")->valueint, ev.n);
        const cJSON *sc = cJSON_GetObjectItem(j, "scalars");
        int n_mine = 0, n_golden = cJSON_GetArraySize(sc), matched = 0;
        for (int i = 0; i < ev.n; i++) n_mine += ev.ev[i].n;
        for (const cJSON *s = sc ? sc->child : NULL; s; s = s->next) {
            const char *t = cJSON_GetObjectItem(s, "tag")->valuestring;
            double step = cJSON_GetObjectItem(s, "step")->valuedouble;
            double wall = cJSON_GetObjectItem(s, "wall_time")->valuedouble;
            double value = cJSON_GetObjectItem(s, "value")->valuedouble;
            int found = 0;
            for (int i = 0; i < ev.n; i++) {
                const float *v = (double)ev.ev[i].step == step ? find_value(&ev.ev[i], t) : NULL;
                if (!v) continue;
                found++;
                CHECK((double)*v == value && ev.ev[i].wall_time == wall && signbit((double)*v) == signbit(value),
                      "%s at step %.0f: %.9g (wall %.17g) here, %.9g (wall %.17g) by tensorboard", t, step, (double)*v,
                      ev.ev[i].wall_time, value, wall);
            }
            CHECK(found == 1, "%s at step %.0f: %d events here", t, step, found);
            matched += found == 1;
        }
        CHECK(n_golden == 17 && matched == n_golden && n_mine == n_golden, "%d scalars here, %d by tensorboard", n_mine,
              n_golden);
    }
    cJSON_Delete(j);
    free(jt);
    free(ev.ev);
    free(mine);
    free(dir);
}

// ---------------------------------------------------------------------------------------------
// 3. a training run

// Every event of out/runs/ against every line of out/metrics.jsonl: the same steps, each once, and
// at each step a scalar for every number of the line under its tag (none for a null). Equal as
// float32 (within one float32 step of the line's value: the line holds 9 digits, which can round
// to the float next to the double's own rounding); tokens_per_s to the line's 0.1.
static void check_against_jsonl(const char *out, const char *what) {
    char *runs = path_join(out, "runs");
    char **names;
    int nf = list_event_files(runs, &names);
    tb_events ev = {0};
    for (int i = 0; i < nf; i++) {
        char *p = path_join(runs, names[i]);
        int before = ev.n;
        CHECK(read_events(p, &ev) == 0, "%s: %s", what, llava_errmsg());
        CHECK(ev.n > before && !strcmp(ev.ev[before].file_version, "brain.Event:2"),
              "%s: %s starts with the file_version record", what, names[i]);
        free(p);
    }
    char *mp = path_join(out, "metrics.jsonl");
    size_t len;
    char *text = read_file(mp, 1 << 24, &len);
    CHECK(text != NULL, "%s", llava_errmsg());
    int lines = 0, events = 0, compared = 0, bad = 0, evals = 0;
    for (int i = 0; i < ev.n; i++) events += ev.ev[i].has_summary;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        lines++;
        cJSON *j = cJSON_Parse(line);
        int step = cJSON_GetObjectItem(j, "step")->valueint;
        const tb_event *e = NULL;
        int seen = 0;
        for (int i = 0; i < ev.n; i++)
            if (ev.ev[i].has_summary && ev.ev[i].step == step) e = &ev.ev[i], seen++;
        CHECK(seen == 1, "%s: step %d has %d events", what, step, seen);
        if (!e) {
            cJSON_Delete(j);
            continue;
        }
        int numbers = 0;
        for (const cJSON *f = j->child; f; f = f->next) {
            if (!strcmp(f->string, "step")) continue;
            char tag[96];
            tblog_tag(f->string, tag, sizeof tag);
            const float *v = find_value(e, tag);
            evals += !strcmp(tag, "eval/loss") && v;
            if (cJSON_IsNull(f)) {
                CHECK(v == NULL, "%s: step %d: %s is null in metrics.jsonl, %g in the events", what, step, tag,
                      v ? (double)*v : 0.0);
                continue;
            }
            numbers++;
            float x = (float)f->valuedouble;
            int ok = v && (*v == x || *v == nextafterf(x, INFINITY) || *v == nextafterf(x, -INFINITY));
            if (v && !strcmp(f->string, "tokens_per_s")) ok = fabs((double)*v - f->valuedouble) <= 0.05 + 1e-3;
            compared++;
            if (!ok) bad++;
            CHECK(ok, "%s: step %d: %s = %.9g in metrics.jsonl, %.9g in the events", what, step, tag, f->valuedouble,
                  v ? (double)*v : NAN);
        }
        CHECK(numbers == e->n, "%s: step %d: %d numbers in metrics.jsonl, %d scalars", what, step, numbers, e->n);
        cJSON_Delete(j);
    }
    CHECK(lines > 0 && lines == events && bad == 0, "%s: %d lines, %d events with scalars, %d of %d values differ",
          what, lines, events, bad, compared);
    CHECK(evals == 3, "%s: the eval loss at 3 steps (%d)", what, evals);
    printf("%s: %d event files, %d steps, %d scalars equal to metrics.jsonl's\n", what, nf, lines, compared);
    free(text);
    free(mp);
    free(ev.ev);
    free_names(names, nf);
    free(runs);
}

static void test_training(const char *tmp) {
    char *world = path_join(tmp, "world");
    CHECK(demo_make_world(world, 16, 0, 1, NULL) == 0, "%s", llava_errmsg());
    char *preset = path_join(world, "stage2.json");
    char *ed = xasprintf("eval.data_path=%s/data/train_qa.json", world);
    // 16 samples / batch 2 = 8 steps; checkpoints at 2, 4, 6, 8; the eval loss at 3, 6 and 8.
    const char *sets[] = {"train.num_train_epochs=1",
                          "train.per_device_train_batch_size=2",
                          "train.gradient_accumulation_steps=1",
                          "checkpoint.save_steps=2",
                          "model.pretrain_mm_mlp_adapter=null",
                          "eval.evaluation_strategy=steps",
                          "eval.eval_steps=3",
                          ed,
                          "log.report_to=[\"jsonl\", \"tensorboard\"]"};
    const int n = sizeof sets / sizeof sets[0];
    char *full = path_join(tmp, "run_full"), *part = path_join(tmp, "run_part");
    CHECK(test_train_preset(preset, full, NULL, 0, sets, n, 0, 0) == 0, "%s", llava_errmsg());
    check_against_jsonl(full, "one run");
    // Stopped after step 3 (its last checkpoint is step 2: the events of step 3 are cut on resume),
    // then resumed to the end: a second event file.
    CHECK(test_train_preset(preset, part, NULL, 0, sets, n, 0, 3) == 0, "%s", llava_errmsg());
    CHECK(test_train_preset(preset, part, NULL, 0, sets, n, 1, 0) == 0, "%s", llava_errmsg());
    char *a = test_curve(full), *b = test_curve(part);
    CHECK(strcmp(a, b) == 0, "resumed curve differs:\n%s\nvs\n%s", b, a);
    check_against_jsonl(part, "stopped and resumed");
    char *runs = path_join(part, "runs");
    char **names;
    int nf = list_event_files(runs, &names);
    CHECK(nf == 2, "two launches, two event files (%d)", nf);
    free_names(names, nf);
    // report_to none: no event files, no metrics.jsonl.
    char *none = path_join(tmp, "run_none");
    const char *sets_none[] = {"train.max_steps=1", "model.pretrain_mm_mlp_adapter=null", "log.report_to=none"};
    CHECK(test_train_preset(preset, none, NULL, 0, sets_none, 3, 0, 0) == 0, "%s", llava_errmsg());
    char *none_runs = path_join(none, "runs"), *none_m = path_join(none, "metrics.jsonl");
    CHECK(!dir_exists(none_runs) && !file_exists(none_m), "report_to none writes neither");
    free(none_runs), free(none_m), free(none);
    free(runs), free(a), free(b), free(full), free(part), free(ed), free(preset), free(world);
}

int main(void) {
    llava_cpu_set_threads(1);
    char *tmp = check_tmpdir();
    test_unit(tmp);
    test_config();
    test_golden(tmp);
    test_training(tmp);
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
