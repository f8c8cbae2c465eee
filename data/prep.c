// llava prep (see prep.h): the sample pipeline, the thread pool, progress and the report.
#include "prep.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bpe.h"
#include "common/util.h"
#include "dataset.h"
#include "json_stream.h"
#include "jsonl.h"
#include "prep_h5.h"
#include "prep_record.h"
#include "strbuf.h"
#include "template.h"

void prep_options_default(prep_options *o) {
    memset(o, 0, sizeof *o);  // template_name NULL: no default, the caller names it
    o->mode = TOK_MODE_DEFAULT;
    o->model_max_length = 2048;
    o->aspect = IMAGE_ASPECT_SQUARE;
    o->image_size = IMAGE_CLIP_SIZE;
    o->check_images = 1;
    o->compress = 1;
}

const char *prep_kind_name(int kind) {
    static const char *names[PREP_N_KINDS] = {"missing_image",  "unreadable_image",  "path_refused",
                                              "malformed",      "mismatch",          "truncated",
                                              "no_image_token", "extra_image_token", "image_in_answer"};
    return kind >= 0 && kind < PREP_N_KINDS ? names[kind] : "?";
}

int prep_kind_written(int kind) {
    return kind == PREP_KIND_MISMATCH || kind == PREP_KIND_TRUNCATED || kind == PREP_KIND_IMAGE_IN_ANSWER;
}

const char *prep_kind_summary(int kind) {
    static const char *what[PREP_N_KINDS] = {"left out, image missing",
                                             "left out, image unreadable",
                                             "left out, image path refused",
                                             "left out, malformed record",
                                             "written masked (tokenization mismatch)",
                                             "written truncated to model_max_length",
                                             "left out, an image but no <image> token",
                                             "left out, extra <image> tokens",
                                             "written with the <image> in an answer"};
    return kind >= 0 && kind < PREP_N_KINDS ? what[kind] : "?";
}

char *prep_report_path(const char *out) {
    size_t n = strlen(out);
    if (n > 3 && strcmp(out + n - 3, ".h5") == 0) n -= 3;
    else if (n > 5 && strcmp(out + n - 5, ".hdf5") == 0) n -= 5;
    return xasprintf("%.*s.report.json", (int)n, out);
}

// ---------------------------------------------------------------------------------------------
// Text of tokens (llava show)

char *prep_render_text(const tokenizer *t, const int32_t *ids, const int32_t *labels, size_t n, const char *open,
                       const char *close, size_t *len) {
    strbuf o = {0};
    sb_put(&o, "", 0);
    int in_sup = 0, bos = tok_bos_id(t);
    for (size_t k = 0; k < n; k++) {
        int sup = labels && labels[k] != IGNORE_INDEX;
        if (open && sup != in_sup) {
            sb_puts(&o, sup ? open : close);
            in_sup = sup;
        }
        int id = ids[k];
        if (id == IMAGE_TOKEN_INDEX) {
            sb_puts(&o, DEFAULT_IMAGE_TOKEN);
            continue;
        }
        size_t pl;
        const char *p = tok_id_to_piece(t, id, &pl);
        if (!p) {
            free(o.p);
            llava_fail("token %zu: id %d is not in the tokenizer's vocabulary of %d pieces", k, id, tok_n_pieces(t));
            return NULL;
        }
        const bpe_tokenizer *bpe = tok_bpe(t);
        if (bpe) {  // byte-level: a run of tokens of one kind decodes together (a character may span tokens)
            size_t e = k + 1;
            while (e < n && ids[e] != IMAGE_TOKEN_INDEX && bpe_id_to_token(bpe, ids[e], NULL) &&
                   (!labels || (labels[e] != IGNORE_INDEX) == sup))
                e++;
            char *d = NULL;
            size_t dl = 0;
            bpe_decode(bpe, ids + k, e - k, 0, &d, &dl);
            sb_put(&o, d, dl);
            free(d);
            k = e - 1;
            continue;
        }
        int type = tok_piece_type(t, id);
        unsigned byte;
        if (type == TOK_BYTE && pl == 6 && sscanf(p, "<0x%2X>", &byte) == 1) {
            unsigned char b = (unsigned char)byte;
            sb_put(&o, &b, 1);
            continue;
        }
        if (type == TOK_CONTROL || type == TOK_UNKNOWN || type == TOK_BYTE) {
            sb_put(&o, p, pl);
            continue;
        }
        // A chunk's first piece carries SentencePiece's dummy-prefix "▁", which is not in the text.
        int chunk_start = k == 0 || ids[k - 1] == bos || ids[k - 1] == IMAGE_TOKEN_INDEX;
        size_t i = 0;
        if (chunk_start && pl >= 3 && memcmp(p, "\xe2\x96\x81", 3) == 0) i = 3;
        while (i < pl) {
            if (i + 3 <= pl && memcmp(p + i, "\xe2\x96\x81", 3) == 0) {
                sb_put(&o, " ", 1);
                i += 3;
            } else {
                sb_put(&o, p + i, 1);
                i++;
            }
        }
    }
    if (open && in_sup) sb_puts(&o, close);
    if (len) *len = o.n;
    return o.p;
}

// ---------------------------------------------------------------------------------------------
// One sample

enum { KIND_OK = -1 };

typedef struct {
    char *json;  // the record's bytes, NUL-terminated
    size_t json_len;
    uint64_t index;  // position in the JSON array
    int kind;        // KIND_OK, or the PREP_KIND_* that keeps it out of the file
    char *id;        // "" when the record has none
    char *image;     // NULL: text-only
    char *reason;
    prep_result r;
    int32_t modality_len;
    uint8_t *pixels;     // S*S*3 with store_pixels
    char *answer_image;  // written, but listed as image_in_answer: why
} prep_item;

typedef struct {
    const prep_options *o;
    prep_config cfg;
} work_ctx;

static void item_clear(prep_item *it) {
    free(it->json);
    free(it->id);
    free(it->image);
    free(it->reason);
    free(it->pixels);
    free(it->answer_image);
    prep_result_free(&it->r);
    memset(it, 0, sizeof *it);
}

static int skip(prep_item *it, int kind, const char *reason) {
    it->kind = kind;
    it->reason = xstrdup(reason);
    return -1;
}

// Reads and decodes one image file. *missing tells a file that is not there from one that does not decode.
static int load_image(const char *path, image_u8 *im, int *missing) {
    *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *missing = errno == ENOENT || errno == ENOTDIR;
        return llava_fail("%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return llava_fail("%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > IMAGE_MAX_FILE_BYTES) {
        close(fd);
        return llava_fail("%s: %lld bytes, more than the %llu an image may have", path, (long long)st.st_size,
                          (unsigned long long)IMAGE_MAX_FILE_BYTES);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = xmalloc(n ? n : 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    int rc = got == n ? image_decode(buf, n, path, im) : llava_fail("%s: short read", path);
    free(buf);
    return rc;
}

// The <image> tokens of a tokenized sample against its one image (or none), as the loader (data/loader.c) and
// LLaVA-1.5's prepare_inputs_labels_for_multimodal pair them: exactly one token for an image, none without. A
// sample that does not pair is left out here with its true reason (prep.h: no_image_token, extra_image_token),
// so training never meets it; a single <image> in an answer is written (LLaVA trains on it) and noted.
static int check_image_tokens(const work_ctx *w, const prep_record *rec, int has_image, prep_item *it) {
    const conv_template *tp = w->cfg.tmpl;
    size_t n_img = 0, n_want = (size_t)rec->n_images;
    if (rec->video) {  // LLaVA-NeXT-Video / OneVision: one <image> stands for the frames
        for (size_t k = 0; k < it->r.ids.n; k++) n_img += it->r.ids.v[k] == IMAGE_TOKEN_INDEX;
        if (n_img == 1) return 0;
        char msg[200];
        snprintf(msg, sizeof msg, "%zu <image> tokens in a video sample (one stands for its %zu frames)", n_img,
                 n_want);
        prep_result_free(&it->r);
        return skip(it, n_img > 1 ? PREP_KIND_EXTRA_IMAGE_TOKEN : PREP_KIND_NO_IMAGE_TOKEN, msg);
    }
    for (size_t k = 0; k < it->r.ids.n; k++) n_img += it->r.ids.v[k] == IMAGE_TOKEN_INDEX;
    // The turns in the prompt: a rounds template (preprocess_v1) drops a first turn that is not the user's.
    size_t start = !tp->plain && strcmp(rec->turns[0].from, tp->from[0]) != 0, first = rec->n_turns, any = 0;
    for (size_t k = 0; k < rec->n_turns; k++) {
        any += rec->turn_image[k];
        if (k >= start && rec->turn_image[k] && first == rec->n_turns) first = k;
    }
    // A list of images (LLaVA-NeXT's multi-image samples): one <image> per image, in order.
    if (n_want > 1) {
        if (n_img == n_want) return 0;
        char msg[200];
        snprintf(msg, sizeof msg, "%zu <image> tokens for the %zu images of its \"image\" list (one each, in order)",
                 n_img, n_want);
        prep_result_free(&it->r);
        return skip(it, n_img > n_want ? PREP_KIND_EXTRA_IMAGE_TOKEN : PREP_KIND_NO_IMAGE_TOKEN, msg);
    }
    if (n_img == (size_t)(has_image != 0)) {
        if (n_img && !tp->plain && first < rec->n_turns && strcmp(rec->turns[first].from, tp->from[1]) == 0)
            it->answer_image = xasprintf(
                "the <image> is in turn %zu, an answer (\"%s\"): written, as LLaVA-1.5 trains on it (the image comes "
                "after the question)",
                first, tp->from[1]);
        return 0;
    }
    static const char unused[] = "LLaVA-1.5 would train on the text alone, the image loaded and unused";
    char msg[320];
    int kind = PREP_KIND_EXTRA_IMAGE_TOKEN;
    if (!has_image) {
        snprintf(msg, sizeof msg,
                 "an <image> in a sample without an \"image\" (LLaVA-1.5 would pair it with a blank "
                 "image)");
    } else if (n_img > 1) {
        char turns[160] = "";
        size_t at = 0, listed = 0;
        for (size_t k = start; k < rec->n_turns && listed < n_img && at < sizeof turns - 24; k++)
            if (rec->turn_image[k] || (tp->plain && k == 0))
                at += (size_t)snprintf(turns + at, sizeof turns - at, "%s%zu", listed++ ? ", " : "", k);
        snprintf(msg, sizeof msg,
                 "<image> in %zu turns (%s) for one image: LLaVA-1.5 takes one image per sample (more <image> tokens "
                 "than images misalign a batch's images, LLaVA issue #732)",
                 n_img, turns);
    } else {
        kind = PREP_KIND_NO_IMAGE_TOKEN;
        if (!any) snprintf(msg, sizeof msg, "an \"image\" but no <image> in the conversation (%s)", unused);
        else if (first == rec->n_turns)
            snprintf(msg, sizeof msg,
                     "the only <image> is in turn 0, which the %s template drops (a conversation starts with the user)",
                     tp->name);
        else
            snprintf(msg, sizeof msg, "the <image> of turn %zu lies beyond model_max_length %d and is cut off (%s)",
                     first, w->cfg.model_max_length, unused);
    }
    prep_result_free(&it->r);
    return skip(it, kind, msg);
}

static void process(const work_ctx *w, prep_item *it) {
    const prep_options *o = w->o;
    char label[64];
    it->kind = KIND_OK;
    prep_record rec;
    int rc = prep_record_parse(it->json, it->json_len, &rec);
    it->id = rec.id;
    rec.id = NULL;
    it->image = rec.image;
    rec.image = NULL;
    if (rc) {
        skip(it, rec.kind, rec.reason);
        goto done;
    }
    // A video's frames: uniformly video_frames of them when it has more (prep_video_frame: LLaVA-NeXT's sampling).
    if (rec.video && o->video_frames > 0 && rec.n_images > o->video_frames) {
        int F = rec.n_images, N = o->video_frames;
        strbuf sb = {0};
        for (int k = 0; k < N; k++) {
            char *one = prep_image_path(it->image, prep_video_frame(F, N, k));
            if (k) sb_put(&sb, "\n", 1);
            sb_put(&sb, one, strlen(one));
            free(one);
        }
        sb_put(&sb, "", 0);
        free(it->image);
        it->image = sb.p;
        rec.n_images = N;
    }
    if (it->id[0]) snprintf(label, sizeof label, "%.60s", it->id);
    else snprintf(label, sizeof label, "#%llu", (unsigned long long)it->index);
    int has_image = it->image != NULL;
    it->modality_len = (int32_t)(rec.words > INT32_MAX ? INT32_MAX : rec.words) * (has_image ? 1 : -1);
    // Several images: LLaVA-NeXT's preprocess_multimodal whatever the template (LLaVA-1.5's would pull every
    // <image> out and put one in front; NeXT's leaves a turn's images where they are unless it holds only one).
    prep_config cfg = w->cfg;
    conv_template multi;
    if ((rec.n_images > 1 || rec.video) && !cfg.tmpl->multimodal_next) {
        multi = *cfg.tmpl;
        multi.multimodal_next = 1;
        cfg.tmpl = &multi;
    }
    if (prep_sample(&cfg, label, rec.turns, rec.n_turns, has_image, &it->r)) {
        skip(it, PREP_KIND_MALFORMED, llava_errmsg());
        goto done;
    }
    if (check_image_tokens(w, &rec, has_image, it)) goto done;
    if (rec.video) it->r.flags |= PREP_VIDEO;
    // Several images: each checked; their pixels are never stored (the loader reads the files).
    for (int k = 1;
         has_image && (rec.n_images > 1 || rec.video) && o->check_images && k <= rec.n_images && it->kind == KIND_OK;
         k++) {
        char *one = prep_image_path(it->image, k - 1), *full = path_join(o->image_folder, one);
        image_u8 im = {0};
        int missing;
        if (load_image(full, &im, &missing)) {
            skip(it, missing ? PREP_KIND_MISSING_IMAGE : PREP_KIND_UNREADABLE_IMAGE, llava_errmsg());
            prep_result_free(&it->r);
        }
        image_free(&im);
        free(full);
        free(one);
    }
    if (has_image && rec.n_images == 1 && !rec.video && (o->check_images || o->store_pixels)) {
        char *full = path_join(o->image_folder, it->image);
        image_u8 im = {0};
        int missing;
        if (load_image(full, &im, &missing)) {
            skip(it, missing ? PREP_KIND_MISSING_IMAGE : PREP_KIND_UNREADABLE_IMAGE, llava_errmsg());
        } else if (o->store_pixels) {
            size_t S = (size_t)o->image_size;
            it->pixels = xmalloc(S * S * 3);
            if (image_preprocess(&im, o->image_size, o->aspect, it->pixels, NULL))
                skip(it, PREP_KIND_UNREADABLE_IMAGE, llava_errmsg());
        }
        image_free(&im);
        free(full);
        if (it->kind != KIND_OK) prep_result_free(&it->r);
    }
done:
    prep_record_free(&rec);
    free(it->json);  // the bytes are no longer needed
    it->json = NULL;
}

// ---------------------------------------------------------------------------------------------
// Blocks and the thread pool: the main thread reads block k+1 and writes block k while the workers
// process; items are handed out one at a time in input order.

typedef struct block {
    prep_item *items;
    size_t n, next, done;
    struct block *qnext;
} block;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    block *head, *tail;
    int quit, cancel;
    work_ctx *ctx;
    const atomic_int *stop;  // prep_options.stop
} pool;

static int stopped(const atomic_int *stop) { return stop ? atomic_load_explicit(stop, memory_order_relaxed) : 0; }

static void *worker(void *arg) {
    pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && !p->head) pthread_cond_wait(&p->work, &p->mu);
        if (p->quit) break;
        block *b = p->head;
        size_t i = b->next++;
        if (b->next == b->n) {
            p->head = b->qnext;
            if (!p->head) p->tail = NULL;
        }
        int cancel = p->cancel;
        pthread_mutex_unlock(&p->mu);
        if (!cancel && !stopped(p->stop)) process(p->ctx, &b->items[i]);  // (skipped items are never written)
        pthread_mutex_lock(&p->mu);
        if (++b->done == b->n) pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_submit(pool *p, block *b) {
    if (b->n == 0) return;
    pthread_mutex_lock(&p->mu);
    b->qnext = NULL;
    if (p->tail) p->tail->qnext = b;
    else p->head = b;
    p->tail = b;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
}

static void pool_wait(pool *p, block *b) {
    pthread_mutex_lock(&p->mu);
    while (b->done < b->n) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void block_free(block *b) {
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) item_clear(&b->items[i]);
    free(b->items);
    free(b);
}

// Reads up to `max_items` records (and about 64 MiB of JSON). *end is set when the array is done.
// Returns NULL with an error, or a block (possibly empty at the end).
static block *read_block(json_stream *js, size_t max_items, int *end) {
    block *b = xcalloc(1, sizeof *b);
    b->items = xcalloc(max_items, sizeof *b->items);
    size_t bytes = 0;
    while (b->n < max_items && bytes < ((size_t)64 << 20)) {
        const char *e;
        size_t len;
        uint64_t index = json_stream_count(js);
        int r = json_stream_next(js, &e, &len);
        if (r < 0) {
            block_free(b);
            return NULL;
        }
        if (r == 0) {
            *end = 1;
            break;
        }
        prep_item *it = &b->items[b->n++];
        it->json = xmalloc(len + 1);
        memcpy(it->json, e, len);
        it->json[len] = 0;
        it->json_len = len;
        it->index = index;
        bytes += len;
    }
    return b;
}

// ---------------------------------------------------------------------------------------------
// Report and progress

// The entries of one kind go to an anonymous temporary file as they come, so that memory does not grow
// with the number of reported samples either; the report is assembled from them at the end.
typedef struct {
    FILE *f;
    uint64_t n;
} report_list;

static void report_add(report_list *l, const prep_item *it, int64_t row, const char *reason) {
    if (!l->f) l->f = tmpfile();
    if (!l->f) return;  // counted anyway; write_report says the list is incomplete
    strbuf s = {0};
    char b[96];
    int m = snprintf(b, sizeof b, "%s\n      {\"index\": %llu, ", l->n ? "," : "", (unsigned long long)it->index);
    sb_put(&s, b, (size_t)m);
    if (row >= 0) {
        m = snprintf(b, sizeof b, "\"row\": %lld, ", (long long)row);
        sb_put(&s, b, (size_t)m);
    }
    sb_puts(&s, "\"id\": ");
    const char *id = it->id ? it->id : "";
    json_string_encode(id, strlen(id), &s);
    sb_puts(&s, ", \"reason\": ");
    json_string_encode(reason, strlen(reason), &s);
    sb_puts(&s, "}");
    fwrite(s.p, 1, s.n, l->f);
    free(s.p);
    l->n++;
}

static void fput_u64(FILE *f, const char *key, uint64_t v) {
    fprintf(f, "  \"%s\": %llu,\n", key, (unsigned long long)v);
}

static void fput_jstr(FILE *f, const char *s) {
    strbuf b = {0};
    json_string_encode(s, strlen(s), &b);
    fwrite(b.p, 1, b.n, f);
    free(b.p);
}

static const char REPORT_HEAD[] = "{\n  \"source\": ";  // how every report begins

// The report's text, streamed to f (`path` names it in errors).
static int report_body(FILE *f, const char *path, const prep_options *o, const prep_counts *c,
                       report_list lists[PREP_N_KINDS]) {
    fputs(REPORT_HEAD, f);
    fput_jstr(f, o->data_path);
    fputs(",\n  \"out\": ", f);
    if (o->dry_run) fputs("null", f);  // a check: nothing was written
    else fput_jstr(f, o->out_path);
    fputs(",\n", f);
    fput_u64(f, "records", c->records);
    fput_u64(f, "written", c->written);
    fput_u64(f, "with_image", c->with_image);
    fput_u64(f, "text_only", c->text_only);
    fput_u64(f, "tokens", c->tokens);
    for (int k = 0; k < PREP_N_KINDS; k++) fput_u64(f, prep_kind_name(k), c->kind[k]);
    fputs("  \"samples\": {\n", f);
    int rc = 0;
    for (int k = 0; k < PREP_N_KINDS; k++) {
        fprintf(f, "    \"%s\": [", prep_kind_name(k));
        if (lists[k].n && !lists[k].f)
            rc = llava_fail("%s: the %s list was lost (no temporary file)", path, prep_kind_name(k));
        if (lists[k].f) {
            char buf[1 << 16];
            size_t got;
            if (fflush(lists[k].f) != 0 || fseek(lists[k].f, 0, SEEK_SET) != 0)
                rc = llava_fail("%s: temporary list: %s", path, strerror(errno));
            while (rc == 0 && (got = fread(buf, 1, sizeof buf, lists[k].f)) > 0) fwrite(buf, 1, got, f);
            if (ferror(lists[k].f)) rc = llava_fail("%s: temporary list: read error", path);
        }
        fputs(lists[k].n ? "\n    ]" : "]", f);
        fputs(k + 1 < PREP_N_KINDS ? ",\n" : "\n", f);
    }
    fputs("  }\n}\n", f);
    return rc;
}

// Streams the report to a temporary file beside `path`, then renames it into place.
static int write_report(const char *path, const prep_options *o, const prep_counts *c,
                        report_list lists[PREP_N_KINDS]) {
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        llava_fail("%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = report_body(f, path, o, c, lists);
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0)
        rc = rc ? rc : llava_fail("%s: write failed: %s", tmp, strerror(errno));
    fclose(f);
    if (rc == 0 && rename(tmp, path) != 0) rc = llava_fail("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int on, tty, shown;
    double t0, last;
    const char *who;  // "llava prep", or "llava data check" for a dry run
} progress;

static void progress_show(progress *p, const json_stream *js, const prep_counts *c, int final) {
    uint64_t records = c->records, written = c->written, left = 0;
    for (int k = 0; k < PREP_N_KINDS; k++)  // left out so far
        if (!prep_kind_written(k)) left += c->kind[k];
    if (!p->on) return;
    double t = now_s();
    // On a terminal a bar redrawn 5 times a second; in a log a line every 30 s (and a last one if any was).
    if (!final && t - p->last < (p->tty ? 0.2 : 30.0)) return;
    if (final && !p->shown) return;
    p->last = t;
    p->shown = 1;
    double el = t - p->t0,
           frac = json_stream_size(js) ? (double)json_stream_offset(js) / (double)json_stream_size(js) : 0;
    double rate = el > 0 ? (double)records / el : 0;
    char eta[32], elapsed[32], cb[32], wb[32], lb[32];
    fmt_duration(frac > 0 ? el * (1 - frac) / frac : -1, eta);
    fmt_duration(el, elapsed);
    fmt_count(records, cb);
    fmt_count(written, wb);
    fmt_count(left, lb);
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30 + 0.5);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %5.1f%%  %s records (%s written, %s left out)  %.0f/s  %s  ETA %s \033[K", p->who,
                bar, 100 * frac, cb, wb, lb, rate, elapsed, final ? "0s" : eta);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %5.1f%%, %s records (%s written, %s left out), %.0f/s, %s elapsed, ETA %s\n", p->who,
                100 * frac, cb, wb, lb, rate, elapsed, final ? "0s" : eta);
    }
    fflush(stderr);
}

// ---------------------------------------------------------------------------------------------
// The run

static int count_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void md5_cb(void *ctx, const void *bytes, size_t n) { prep_md5_update(ctx, bytes, n); }

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return llava_fail("%s: cannot open: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? llava_fail("%s: fsync failed: %s", path, strerror(errno)) : 0;
}

// Writes one finished item; counts and reports it. Fails under strict for a sample LLaVA would not train on.
static int write_item(prep_writer *w, const prep_options *o, prep_item *it, prep_counts *c, report_list *lists) {
    c->records++;
    if (it->kind != KIND_OK) {
        c->kind[it->kind]++;
        report_add(&lists[it->kind], it, -1, it->reason);
        if (o->strict)
            return llava_fail("sample %s (record %llu): %s: %s (--strict)", it->id && it->id[0] ? it->id : "without id",
                              (unsigned long long)it->index, prep_kind_name(it->kind), it->reason);
        return 0;
    }
    int64_t row = (int64_t)c->written;
    char reason[160];
    if (it->r.flags & PREP_MISMATCH) {
        snprintf(reason, sizeof reason, "tokenization mismatch: %d vs. %d (every label masked, as LLaVA does)",
                 it->r.cur_len, it->r.total_len);
        c->kind[PREP_KIND_MISMATCH]++;
        report_add(&lists[PREP_KIND_MISMATCH], it, row, reason);
        if (o->strict)
            return llava_fail("sample %s (record %llu): %s (--strict)", it->id[0] ? it->id : "without id",
                              (unsigned long long)it->index, reason);
    }
    if (it->r.flags & PREP_TRUNCATED) {
        snprintf(reason, sizeof reason, "%zu tokens, cut to model_max_length %d", it->r.full_len, o->model_max_length);
        c->kind[PREP_KIND_TRUNCATED]++;
        report_add(&lists[PREP_KIND_TRUNCATED], it, row, reason);
    }
    if (it->answer_image) {
        c->kind[PREP_KIND_IMAGE_IN_ANSWER]++;
        report_add(&lists[PREP_KIND_IMAGE_IN_ANSWER], it, row, it->answer_image);
    }
    prep_writer_sample s = {
        .ids = it->r.ids.v,
        .labels = it->r.labels.v,
        .n_tokens = it->r.ids.n,
        .modality_len = it->modality_len,
        .flags = (uint8_t)it->r.flags,
        .source_index = (int64_t)it->index,
        .id = it->id,
        .image = it->image,
        .pixels = it->pixels,
    };
    if (w && prep_writer_add(w, &s)) return -1;  // (no writer in a dry run)
    c->written++;
    c->tokens += it->r.ids.n;
    if (it->image) c->with_image++;
    else c->text_only++;
    if (it->pixels) c->pixels++;
    return 0;
}

// Whether two paths name the same file (device and inode, through any spelling, symlink or hard link).
static int same_file(const struct stat *a, const char *path) {
    struct stat b;
    return stat(path, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

// Whether an existing file begins as the reports write_report writes.
static int is_prep_report(const char *path) {
    char head[sizeof REPORT_HEAD - 1];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int yes = fread(head, 1, sizeof head, f) == sizeof head && memcmp(head, REPORT_HEAD, sizeof head) == 0;
    fclose(f);
    return yes;
}

// What prep writes must not be what it reads, nor a file it did not write (unless force).
static int check_out_paths(const prep_options *o, const char *report) {
    struct stat in;
    if (stat(o->data_path, &in) != 0) return llava_fail("%s: cannot open: %s", o->data_path, strerror(errno));
    const char *what[2] = {"", "the report "}, *path[2] = {o->out_path, report};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (stat(path[i], &st) != 0) continue;  // not there (or a dangling symlink, which rename replaces)
        if (same_file(&in, path[i]))
            return llava_fail("%s%s is the input %s: refusing to write over it", what[i], path[i], o->data_path);
        if (S_ISDIR(st.st_mode)) return llava_fail("%s%s is a directory", what[i], path[i]);
        if (i == 1 && same_file(&st, o->out_path))
            return llava_fail("the report %s is the output %s: give another --report", report, o->out_path);
        if (o->force) continue;
        if (i == 0 && !dataset_is_prep_file(path[i]))
            return llava_fail(
                "%s exists and is not a dataset written by llava prep: refusing to write over it "
                "(--force does)",
                path[i]);
        if (i == 1 && !is_prep_report(path[i]))
            return llava_fail(
                "the report %s exists and is not a llava prep report: refusing to write over it "
                "(--force does)",
                path[i]);
    }
    return 0;
}

static int interrupted(const atomic_int *stop, const char *tmp) {
    int sig = stopped(stop);
    if (!tmp) return llava_fail("interrupted by signal %d (%s)", sig, strsignal(sig));  // a dry run
    return llava_fail("interrupted by signal %d (%s): nothing written (%s removed)", sig, strsignal(sig), tmp);
}

int prep_run(const prep_options *o, prep_counts *out_counts) {
    double t0 = now_s();
    prep_counts c = {0};
    if (!o->data_path || !o->tokenizer_path || !o->template_name || (!o->out_path && !o->dry_run))
        return llava_fail("the data, tokenizer, template and output paths are all required");
    if ((o->check_images || o->store_pixels) && !o->image_folder)
        return llava_fail("no image folder: one is needed to %s (or do not check the images)",
                          o->store_pixels ? "store the pixels" : "check the images");
    if ((o->check_images || o->store_pixels) && !dir_exists(o->image_folder))
        return llava_fail("image folder %s is not a directory", o->image_folder);
    if (o->store_pixels && (o->image_size <= 0 || o->image_size > 4096))
        return llava_fail("image size %d is out of range (1..4096)", o->image_size);
    if (o->compress < 0 || o->compress > 9) return llava_fail("compression level %d is not 0..9", o->compress);
    if (o->model_max_length < 0) return llava_fail("model_max_length %d is negative", o->model_max_length);
    if (o->video_frames < 0) return llava_fail("video_frames %d is negative (0: every frame)", o->video_frames);
    if (o->anyres && o->store_pixels)
        return llava_fail("stored pixels with anyres: the tiles depend on each image's size; prepare without them");

    char *report = o->dry_run ? NULL : o->report_path ? xstrdup(o->report_path) : prep_report_path(o->out_path);
    if (!o->dry_run && check_out_paths(o, report)) {
        free(report);
        return -1;
    }
    const conv_template *tmpl = conv_template_builtin(o->template_name);
    conv_template *loaded = NULL;
    if (!tmpl) {
        tmpl = loaded = conv_template_load(o->template_name);
        if (!tmpl) {
            free(report);
            return llava_fail_ctx("no template \"%s\" (built in: " CONV_TEMPLATE_BUILTINS "; or a template JSON file)",
                                  o->template_name);
        }
    }
    char tok_md5[33];
    uint64_t tok_size = 0;
    tokenizer *tok = tok_load(o->tokenizer_path);
    json_stream *js = NULL;
    if (tok && prep_file_md5(o->tokenizer_path, tok_md5, &tok_size) == 0) js = json_stream_open(o->data_path);
    if (!js) {
        free(report);
        tok_free(tok);
        conv_template_free(loaded);
        return -1;
    }
    prep_md5 src_md5;
    prep_md5_init(&src_md5);
    json_stream_on_read(js, md5_cb, &src_md5);

    char *tmp = o->dry_run ? NULL : xasprintf("%s.tmp.%d", o->out_path, (int)getpid());
    prep_writer *w = o->dry_run ? NULL : prep_writer_create(tmp, o->store_pixels ? o->image_size : 0, o->compress);
    if (!w && !o->dry_run) {
        free(tmp);
        free(report);
        json_stream_close(js);
        tok_free(tok);
        conv_template_free(loaded);
        return -1;
    }

    int threads = o->threads > 0 ? o->threads : count_cpus();
    if (threads > 256) threads = 256;
    c.threads = threads;
    size_t max_items = o->block ? o->block : (size_t)threads * (o->store_pixels ? 8 : 32);
    if (max_items < 16) max_items = 16;
    work_ctx ctx = {.o = o,
                    .cfg = {.tok = tok, .mode = o->mode, .tmpl = tmpl, .model_max_length = o->model_max_length}};
    pool p = {.ctx = &ctx, .stop = o->stop};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.work, NULL);
    pthread_cond_init(&p.done, NULL);
    pthread_t *tids = xcalloc((size_t)threads, sizeof *tids);
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&tids[started], NULL, worker, &p) != 0) break;
    report_list lists[PREP_N_KINDS] = {{0}};
    progress pr = {.on = o->progress,
                   .tty = isatty(2),
                   .t0 = t0,
                   .last = t0,
                   .who = o->dry_run ? "llava data check" : "llava prep"};
    int rc = 0, end = 0;
    if (started == 0) rc = llava_fail("cannot start threads");

    block *cur = rc ? NULL : read_block(js, max_items, &end);
    if (!cur && !rc) rc = -1;
    if (cur) pool_submit(&p, cur);
    while (cur) {
        block *next = NULL;
        if (!end && rc == 0) {
            next = read_block(js, max_items, &end);
            if (!next) rc = -1;
            else pool_submit(&p, next);
        }
        if (rc) {  // stop: let the workers drain what was handed out without processing it
            pthread_mutex_lock(&p.mu);
            p.cancel = 1;
            pthread_mutex_unlock(&p.mu);
        }
        pool_wait(&p, cur);
        // A stop seen by a worker (which then skipped items) is seen here too: it was stored before that worker
        // released the pool's mutex, which pool_wait took since.
        if (rc == 0 && stopped(o->stop)) rc = interrupted(o->stop, tmp);
        for (size_t i = 0; i < cur->n && rc == 0; i++) {
            rc = write_item(w, o, &cur->items[i], &c, lists);
            item_clear(&cur->items[i]);
        }
        block_free(cur);
        progress_show(&pr, js, &c, 0);
        cur = next;
    }
    pthread_mutex_lock(&p.mu);
    p.quit = 1;
    pthread_cond_broadcast(&p.work);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
    free(tids);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.work);
    pthread_cond_destroy(&p.done);

    if (rc == 0 && stopped(o->stop)) rc = interrupted(o->stop, tmp);
    if (rc == 0 && o->dry_run) {
        progress_show(&pr, js, &c, 1);
        if (o->report_to) {
            rc = report_body(o->report_to, "the report", o, &c, lists);
            if (rc == 0 && (fflush(o->report_to) != 0 || ferror(o->report_to)))
                rc = llava_fail("the report: write failed: %s", strerror(errno));
        }
    } else if (rc == 0) {
        progress_show(&pr, js, &c, 1);
        char src_hex[33];
        prep_md5_hex(&src_md5, src_hex);
        static const char *aspects[] = {"square", "pad"};
        rc = prep_writer_attr_str(w, "format", PREP_FORMAT) ||
             prep_writer_attr_int(w, "format_version", PREP_FORMAT_VERSION) ||
             prep_writer_attr_str(w, "template", tmpl->name) ||
             prep_writer_attr_str(w, "template_source", o->template_name) ||
             prep_writer_attr_str(w, "tokenizer", o->tokenizer_path) ||
             prep_writer_attr_str(w, "tokenizer_md5", tok_md5) ||
             prep_writer_attr_int(w, "tokenizer_bytes", (int64_t)tok_size) ||
             prep_writer_attr_str(w, "tokenizer_mode", tok_mode_name(o->mode)) ||
             prep_writer_attr_str(w, "aspect", o->anyres ? "anyres" : aspects[o->aspect == IMAGE_ASPECT_PAD]) ||
             prep_writer_attr_int(w, "image_size", o->image_size) ||
             prep_writer_attr_int(w, "model_max_length", o->model_max_length) ||
             prep_writer_attr_int(w, "video_frames", o->video_frames) ||
             prep_writer_attr_str(w, "image_folder", o->image_folder ? o->image_folder : "") ||
             prep_writer_attr_str(w, "source", o->data_path) ||
             prep_writer_attr_int(w, "source_bytes", (int64_t)json_stream_offset(js)) ||
             prep_writer_attr_str(w, "source_md5", src_hex) ||
             prep_writer_attr_int(w, "checked_images", o->check_images || o->store_pixels) ||
             prep_writer_attr_int(w, "records", (int64_t)c.records) ||
             prep_writer_attr_int(w, "samples", (int64_t)c.written);
        for (int k = 0; k < PREP_N_KINDS && rc == 0; k++)
            rc = prep_writer_attr_int(w, prep_kind_name(k), (int64_t)c.kind[k]);
        rc = rc ? -1 : 0;
        rc = prep_writer_close(w) || rc ? -1 : 0;
        w = NULL;
        if (rc == 0) rc = fsync_path(tmp);
        if (rc == 0 && stopped(o->stop)) rc = interrupted(o->stop, tmp);  // the last moment nothing is in place
        if (rc == 0 && rename(tmp, o->out_path) != 0)
            rc = llava_fail("%s: cannot rename to %s: %s", tmp, o->out_path, strerror(errno));
        if (rc == 0) {
            char *dir = path_dirname(o->out_path);
            rc = fsync_dir(dir);
            free(dir);
        }
        if (rc == 0) rc = write_report(report, o, &c, lists);
    } else {
        if (pr.on && pr.tty && pr.shown) fputc('\n', stderr);
    }
    if (w) prep_writer_abort(w);
    if (rc && tmp) unlink(tmp);
    for (int k = 0; k < PREP_N_KINDS; k++)
        if (lists[k].f) fclose(lists[k].f);
    c.seconds = now_s() - t0;
    if (out_counts) *out_counts = c;
    free(tmp);
    free(report);
    json_stream_close(js);
    tok_free(tok);
    conv_template_free(loaded);
    return rc;
}
