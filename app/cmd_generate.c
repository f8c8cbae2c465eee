// llava generate: answers from a trained model through the generation engine (infer/engine.h).
//
// One question: --prompt (and --image) becomes LLaVA-1.5's evaluation prompt (the conversation
// template with the question as the user's turn, "<image>\n" before it when there is an image, an
// empty assistant turn), and the answer is printed (or, with --json, one JSON object with the timing).
//
// A question file: --questions Q.jsonl --image-folder D --answers A.jsonl reads LLaVA's question
// format ({"question_id", "image", "text"} per line; "image" may be a list, or "video" a list of
// frames) and writes LLaVA's answer format as model_vqa_loader.py does ({"question_id", "prompt",
// "text", "answer_id", "model_id", "metadata"}, the text stripped), in the order of the questions. The
// questions run batched (the engine batches whatever is in flight); every answer is appended to the
// answers file the moment it is known, so a run that is stopped loses nothing, and a rerun skips the
// questions the file already answers (by question_id and prompt: every line is a question, repeated
// ids included, as in LLaVA's loader); at the end the file is rewritten, atomically, in question
// order.
//
// --no-cache answers with the reference path instead (one full forward pass per token, greedy):
// what the KV cache is checked against.
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/image.h"
#include "data/prep_record.h"
#include "data/strbuf.h"
#include "data/template.h"
#include "data/tokenizer.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "kernels/backend.h"
#include "model/llava.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Python's str.strip() of the answer, as model_vqa_loader.py applies it.
static char *stripped(const char *s, size_t n) {
    size_t len = 0;
    const char *p = py_strip(s, n, &len);
    return strndup(p, len);
}

// LLaVA's get_model_name_from_path: the folder's name, or "PARENT_checkpoint-N" for a checkpoint.
static char *model_name_from_path(const char *path) {
    char *p = xstrdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *last = strrchr(p, '/');
    char *name = last ? last + 1 : p;
    char *out;
    if (strncmp(name, "checkpoint-", 11) == 0 && last) {
        *last = 0;
        char *prev = strrchr(p, '/');
        out = xasprintf("%s_%s", prev ? prev + 1 : p, name);
    } else {
        out = xstrdup(name);
    }
    free(p);
    return out;
}

// A shortuuid-style id: 22 characters of shortuuid's 57-letter alphabet, from /dev/urandom.
static void answer_id(char out[23]) {
    static const char ALPHA[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    unsigned char r[22];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(r, 1, sizeof r, f) : 0;
    if (f) fclose(f);
    for (size_t i = got; i < sizeof r; i++) r[i] = (unsigned char)(rand() & 0xff);
    for (int i = 0; i < 22; i++) out[i] = ALPHA[r[i] % 57];
    out[22] = 0;
}

// A string as Python's json.dumps writes it (ensure_ascii: every non-ASCII character as \uXXXX, a
// surrogate pair above U+FFFF), so an answers line is byte for byte what model_vqa_loader.py writes.
static void sb_putc(strbuf *o, char c) { sb_put(o, &c, 1); }

static void sb_hex4(strbuf *o, unsigned u) {
    char b[8];
    snprintf(b, sizeof b, "\\u%04x", u & 0xffff);
    sb_puts(o, b);
}

static void py_json_string(strbuf *o, const char *s) {
    sb_putc(o, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            sb_putc(o, '\\');
            sb_putc(o, (char)c);
            p++;
        } else if (c < 0x20) {
            const char *esc = c == '\n'   ? "\\n"
                              : c == '\r' ? "\\r"
                              : c == '\t' ? "\\t"
                              : c == '\b' ? "\\b"
                              : c == '\f' ? "\\f"
                                          : NULL;
            if (esc) sb_puts(o, esc);
            else sb_hex4(o, c);
            p++;
        } else if (c < 0x80) {
            sb_putc(o, (char)c);
            p++;
        } else {
            // UTF-8 to a code point (the decoder's text is valid UTF-8: bad bytes became U+FFFD)
            unsigned cp, n;
            if (c >= 0xF0) cp = c & 0x07, n = 3;
            else if (c >= 0xE0) cp = c & 0x0F, n = 2;
            else cp = c & 0x1F, n = 1;
            p++;
            for (unsigned k = 0; k < n && (*p & 0xC0) == 0x80; k++) cp = cp << 6 | (*p++ & 0x3F);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                sb_hex4(o, 0xD800 + (cp >> 10));
                sb_hex4(o, 0xDC00 + (cp & 0x3FF));
            } else {
                sb_hex4(o, cp);
            }
        }
    }
    sb_putc(o, '"');
}

// ---------------------------------------------------------------------------------------------
// One question

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int finish;
    char *text;
    size_t len;
    int n_tokens, prompt_tokens;
    int32_t *tokens;
    double ttft_ms, tokens_per_s;
    char *error;
    int stream;  // print text as it comes
} one_result;

static void one_text(void *ctx, int id, const char *t, size_t n) {
    (void)id;
    one_result *r = ctx;
    if (r->stream) {
        fwrite(t, 1, n, stdout);
        fflush(stdout);
    }
}

static void one_done(void *ctx, const engine_result *res) {
    one_result *r = ctx;
    r->finish = res->finish;
    r->text = strndup(res->text, res->text_len);
    r->len = res->text_len;
    r->n_tokens = res->n_tokens;
    r->tokens = xmalloc(sizeof(int32_t) * (size_t)(res->n_tokens ? res->n_tokens : 1));
    memcpy(r->tokens, res->tokens, sizeof(int32_t) * (size_t)res->n_tokens);
    r->prompt_tokens = res->prompt_tokens;
    r->ttft_ms = res->ttft_ms;
    r->tokens_per_s = res->tokens_per_s;
    r->error = res->error ? xstrdup(res->error) : NULL;
    r->done = 1;
}

enum { GEN_MAX_IMAGES = 8, GEN_MAX_FRAMES = 64 };

typedef struct {
    engine_options eo;
    gen_params gp;
    const char *image, *prompt, *questions, *image_folder, *answers;
    const char *images[GEN_MAX_IMAGES];  // every --image, in order (image is the first)
    int n_images;
    const char *frames[GEN_MAX_FRAMES];  // every --video frame, in order
    int n_frames;
    int video_frames;  // a video's frames taken uniformly (prep_video_frame); 0: all
    int json, print_ids, no_cache, stream, window;
} gen_args;

// The reference path: the engine's prompt (engine_chat_inputs), then one full forward pass per
// token over its model, greedy.
static int answer_no_cache(const gen_args *a, llava_engine *e, const engine_chat *chat) {
    int64_t *ids = NULL;
    float *pix = NULL;
    int n = 0;
    char err[512];
    if (engine_chat_inputs(e, chat, &ids, &n, &pix, err, sizeof err) != ENGINE_OK) {
        fprintf(stderr, "llava generate: %s\n", err);
        return 1;
    }
    const engine_info *in = engine_get_info(e);
    const tokenizer *tok = engine_tokenizer(e);
    int max_new = a->gp.max_new_tokens, eos = in->eos, rc = 1;
    if (a->gp.clamp_to_context && max_new > in->max_context - n) max_new = in->max_context - n;
    int64_t *out = xmalloc(sizeof(int64_t) * (size_t)(max_new > 0 ? max_new : 1));
    int got = llava_generate_greedy(engine_model(e), ids, n, pix, chat->n_images, in->image_size, in->image_size,
                                    max_new, eos, out);
    int keep = got > 0 && out[got - 1] == eos ? got - 1 : got;
    int32_t *o32 = xmalloc(sizeof(int32_t) * (size_t)(keep > 0 ? keep : 1));
    for (int i = 0; i < keep; i++) o32[i] = (int32_t)out[i];
    char *txt = NULL;
    size_t tl = 0;
    if (got >= 0 && tok_decode(tok, o32, (size_t)keep, &txt, &tl) == 0) {
        printf("%.*s\n", (int)tl, txt);
        if (a->print_ids) {
            printf("ids:");
            for (int i = 0; i < got; i++) printf(" %lld", (long long)out[i]);
            printf("\n");
        }
        rc = 0;
    } else {
        fprintf(stderr, "llava generate: %s\n", llava_errmsg());
    }
    free(txt);
    free(o32);
    free(out);
    free(ids);
    free(pix);
    return rc;
}

static void note_ignored(llava_engine *e, const char *dir) {
    int n = engine_get_info(e)->unexpected_ignored;
    if (n)
        fprintf(stderr, "llava generate: %s: %d tensors of the weights are not in the model's config (ignored)\n", dir,
                n);
}

static void free_images(image_u8 *im, int n) {
    for (int i = 0; i < n; i++) image_free(&im[i]);
}

static int answer_one(const gen_args *a) {
    // Its images (several: each before the question, "<image>\n" each, in order), or its video's frames (one
    // "<image>\n" for them all), video_frames of them taken uniformly.
    image_u8 im[GEN_MAX_FRAMES];
    int have_image = 0, video = a->n_frames > 0;
    int n_load =
        video ? (a->video_frames > 0 && a->video_frames < a->n_frames ? a->video_frames : a->n_frames) : a->n_images;
    for (int i = 0; i < n_load; i++) {
        const char *path = video ? a->frames[prep_video_frame(a->n_frames, n_load, i)] : a->images[i];
        if (image_load_file(path, &im[i]) != 0) {
            fprintf(stderr, "llava generate: %s\n", llava_errmsg());
            free_images(im, have_image);
            return 1;
        }
        have_image++;
    }
    engine_message msg = {"user", a->prompt, strlen(a->prompt), have_image};
    engine_chat chat = {&msg, 1, have_image ? im : NULL, have_image, video};
    int rc = 1;
    engine_options eo = a->eo;
    eo.max_batch = 1;
    if (have_image > eo.max_images) eo.max_images = have_image;
    llava_engine *e = engine_open(&eo);
    if (!e) {
        fprintf(stderr, "llava generate: %s\n", llava_errmsg());
        free_images(im, have_image);
        return 1;
    }
    note_ignored(e, a->eo.model_dir);
    if (a->no_cache) {
        rc = answer_no_cache(a, e, &chat);
        engine_close(e);
        free_images(im, have_image);
        return rc;
    }
    one_result r;
    memset(&r, 0, sizeof r);
    r.stream = a->stream && !a->json;
    engine_callbacks cb = {one_text, one_done, &r};
    char err[512];
    int id = engine_submit_chat(e, &chat, &a->gp, &cb, err, sizeof err);
    free_images(im, have_image);
    if (id < 0) {
        fprintf(stderr, "llava generate: %s\n", err);
        engine_close(e);
        return 1;
    }
    engine_run_until_idle(e);
    if (r.finish == FINISH_ERROR) {
        fprintf(stderr, "llava generate: %s\n", r.error ? r.error : "the model failed");
    } else if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", r.text);
        cJSON_AddNumberToObject(o, "tokens", r.n_tokens);
        cJSON_AddNumberToObject(o, "prompt_tokens", r.prompt_tokens);
        cJSON_AddNumberToObject(o, "ttft_ms", r.ttft_ms);
        cJSON_AddNumberToObject(o, "tokens_per_s", r.tokens_per_s);
        cJSON_AddStringToObject(o, "finish_reason", finish_reason_name((finish_reason)r.finish));
        if (a->print_ids) {
            cJSON *ids = cJSON_AddArrayToObject(o, "ids");
            for (int i = 0; i < r.n_tokens; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r.tokens[i]));
        }
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        rc = 0;
    } else {
        if (r.stream) printf("\n");
        else printf("%.*s\n", (int)r.len, r.text);
        if (a->print_ids) {
            printf("ids:");
            for (int i = 0; i < r.n_tokens; i++) printf(" %d", r.tokens[i]);
            printf("\n");
        }
        rc = 0;
    }
    free(r.text);
    free(r.tokens);
    free(r.error);
    engine_close(e);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// A question file

typedef struct {
    char *qid;     // the question_id as JSON (a number or a string), the key of the answers
    cJSON *qid_v;  // the value itself
    char *image;   // relative to the image folder, or NULL ('\n'-joined when several: prep_image_path)
    int video;     // 1: image is a video's frames (the question's "video" list), one <image> for them all
    char *text;    // the question as the file has it (LLaVA's "prompt" field of the answer)
    char *answer;  // the answer line (JSON) once known
} question;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    question *q;
    int in_flight, answered, failed;
    FILE *out;  // the answers file, appended as answers come
    const char *model_id;
    double t0;
    int total, todo;
} batch_run;

static void q_text(void *ctx, int id, const char *t, size_t n) { (void)ctx, (void)id, (void)t, (void)n; }

// A request's callback context: its run and its question.
typedef struct {
    batch_run *b;
    int qi;
} q_ctx;

static void q_done(void *ctx, const engine_result *res) {
    batch_run *b = ((q_ctx *)ctx)->b;
    question *q = &b->q[((q_ctx *)ctx)->qi];
    char *line = NULL;
    if (res->finish == FINISH_ERROR) {
        fprintf(stderr, "llava generate: question %s: %s (no answer written; a rerun retries it)\n", q->qid,
                res->error ? res->error : "the model failed");
    } else {
        char *txt = stripped(res->text, res->text_len), aid[23];
        answer_id(aid);
        // {"question_id": ..., "prompt": ..., "text": ..., "answer_id": ..., "model_id": ..., "metadata": {}}
        strbuf o = {0};
        sb_puts(&o, "{\"question_id\": ");
        if (cJSON_IsString(q->qid_v)) py_json_string(&o, q->qid_v->valuestring);
        else sb_puts(&o, q->qid);
        sb_puts(&o, ", \"prompt\": ");
        py_json_string(&o, q->text);
        sb_puts(&o, ", \"text\": ");
        py_json_string(&o, txt);
        sb_puts(&o, ", \"answer_id\": ");
        py_json_string(&o, aid);
        sb_puts(&o, ", \"model_id\": ");
        py_json_string(&o, b->model_id);
        sb_puts(&o, ", \"metadata\": {}}");
        line = o.p;
        free(txt);
    }
    pthread_mutex_lock(&b->mu);
    if (line) {
        q->answer = line;
        fprintf(b->out, "%s\n", line);
        fflush(b->out);
        b->answered++;
    } else {
        b->failed++;
    }
    b->in_flight--;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void *engine_thread(void *arg) {
    static int rc;
    rc = engine_run(arg);
    return &rc;
}

static void progress(batch_run *b, int final) {
    static double last;
    if (!final && now_s() - last < 1.0) return;
    last = now_s();
    double t = now_s() - b->t0;
    int done = b->answered + b->failed;
    double rate = t > 0 ? done / t : 0;
    int eta = rate > 0 ? (int)((b->todo - done) / rate) : 0;
    char failed[48] = "";
    if (b->failed) snprintf(failed, sizeof failed, " (%d failed)", b->failed);
    int tty = isatty(2);
    fprintf(stderr, "%sllava generate: %d/%d answered%s, %.2f questions/s, ETA %dm%02ds%s", tty ? "\r" : "",
            b->total - b->todo + b->answered, b->total, failed, rate, eta / 60, eta % 60, final || !tty ? "\n" : "");
}

// Reads a JSON Lines file of questions. Returns the count, or -1 with an error naming the line.
static int read_questions(const char *path, question **out) {
    size_t len;
    char *text = read_file(path, (size_t)1 << 32, &len);
    if (!text) return -1;
    int n = 0, cap = 0, lineno = 0;
    question *qs = NULL;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t L = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        lineno++;
        char *line = p;
        p += L + (nl ? 1 : 0);
        size_t k = 0;
        while (k < L && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == L) continue;
        cJSON *o = cJSON_ParseWithLength(line, L);
        const cJSON *qid = o ? cJSON_GetObjectItemCaseSensitive(o, "question_id") : NULL;
        const cJSON *tx = o ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
        const cJSON *im = o ? cJSON_GetObjectItemCaseSensitive(o, "image") : NULL;
        const cJSON *vid = o ? cJSON_GetObjectItemCaseSensitive(o, "video") : NULL;
        // "image": a path, or a list of them (several images, in order); "video": its frames' paths, in order
        int video = vid && !cJSON_IsNull(vid), max_list = video ? GEN_MAX_FRAMES : GEN_MAX_IMAGES;
        if (video) im = vid;
        int im_list_ok = cJSON_IsArray(im) && cJSON_GetArraySize(im) > 0 && cJSON_GetArraySize(im) <= max_list;
        for (const cJSON *e = cJSON_IsArray(im) ? im->child : NULL; e; e = e->next)
            im_list_ok &= cJSON_IsString(e) && !strchr(e->valuestring, '\n');
        int both = video && o && cJSON_GetObjectItemCaseSensitive(o, "image") &&
                   !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "image"));
        if (!o || !qid || !(cJSON_IsNumber(qid) || cJSON_IsString(qid)) || !cJSON_IsString(tx) || both ||
            (video && !im_list_ok) || (im && !cJSON_IsString(im) && !cJSON_IsNull(im) && !im_list_ok)) {
            llava_fail("%s line %d: %s", path, lineno,
                       !o                    ? "not JSON"
                       : !qid                ? "no question_id"
                       : !cJSON_IsString(tx) ? "\"text\" is not a string"
                       : both                ? "both \"image\" and \"video\": one or the other"
                       : video               ? "\"video\" must be a list of 1 to 64 frame paths"
                                             : "question_id must be a number or a string, image a string or a list of "
                                               "up to 8");
            cJSON_Delete(o);
            free(text);
            for (int i = 0; i < n; i++) {
                free(qs[i].qid);
                cJSON_Delete(qs[i].qid_v);
                free(qs[i].image);
                free(qs[i].text);
            }
            free(qs);
            return -1;
        }
        if (n == cap) qs = xrealloc(qs, sizeof *qs * (size_t)(cap = cap ? 2 * cap : 256));
        memset(&qs[n], 0, sizeof qs[n]);
        qs[n].qid_v = cJSON_Duplicate(qid, 1);
        qs[n].qid = cJSON_PrintUnformatted(qid);
        qs[n].image = cJSON_IsString(im) ? xstrdup(im->valuestring) : NULL;
        qs[n].video = video;
        if (cJSON_IsArray(im)) {  // the paths joined by '\n' (prep_image_path takes them apart)
            strbuf sb = {0};
            for (const cJSON *e = im->child; e; e = e->next) {
                if (e != im->child) sb_put(&sb, "\n", 1);
                sb_put(&sb, e->valuestring, strlen(e->valuestring));
            }
            sb_put(&sb, "", 0);
            qs[n].image = sb.p;
        }
        qs[n].text = xstrdup(tx->valuestring);
        n++;
        cJSON_Delete(o);
    }
    free(text);
    *out = qs;
    return n;
}

static int answer_file(const gen_args *a) {
    question *qs = NULL;
    int nq = read_questions(a->questions, &qs);
    if (nq < 0) {
        fprintf(stderr, "llava generate: %s\n", llava_errmsg());
        return 1;
    }
    // What an earlier run already answered: kept. Every question line is answered, as LLaVA's
    // loader answers every line (TextVQA's question_id is the image's, shared by its questions; MME
    // asks two questions per image under one id): an answer belongs to the first unanswered
    // question with its question_id and its prompt (the question's text), in file order.
    int kept = 0;
    if (file_exists(a->answers)) {
        size_t len;
        char *text = read_file(a->answers, (size_t)1 << 32, &len);
        for (char *p = text; text && p < text + len;) {
            char *nl = memchr(p, '\n', (size_t)(text + len - p));
            size_t L = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
            cJSON *o = cJSON_ParseWithLength(p, L);
            const cJSON *qid = o ? cJSON_GetObjectItemCaseSensitive(o, "question_id") : NULL;
            const cJSON *pr = o ? cJSON_GetObjectItemCaseSensitive(o, "prompt") : NULL;
            if (qid && cJSON_IsString(pr)) {
                char *key = cJSON_PrintUnformatted(qid);
                for (int i = 0; i < nq; i++)
                    if (!qs[i].answer && strcmp(qs[i].qid, key) == 0 && strcmp(qs[i].text, pr->valuestring) == 0) {
                        qs[i].answer = strndup(p, L);
                        kept++;
                        break;
                    }
                free(key);
            }
            cJSON_Delete(o);  // a torn last line (a killed run) is simply not an answer
            p += L + (nl ? 1 : 0);
        }
        free(text);
    }
    engine_options eo = a->eo;  // room for the question with the most images
    for (int i = 0; i < nq; i++) {
        int k = prep_image_count(qs[i].image);
        if (qs[i].video && a->video_frames > 0 && a->video_frames < k) k = a->video_frames;
        if (k > eo.max_images) eo.max_images = k;
    }
    llava_engine *e = engine_open(&eo);
    if (!e) {
        fprintf(stderr, "llava generate: %s\n", llava_errmsg());
        return 1;
    }
    note_ignored(e, a->eo.model_dir);
    char *model_id = a->eo.model_id ? xstrdup(a->eo.model_id) : model_name_from_path(a->eo.model_dir);
    batch_run b = {0};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.q = qs;
    b.model_id = model_id;
    b.total = nq;
    for (int i = 0; i < nq; i++) b.todo += !qs[i].answer;
    b.out = fopen(a->answers, "a");
    if (!b.out) {
        fprintf(stderr, "llava generate: %s: %s\n", a->answers, strerror(errno));
        engine_close(e);
        return 1;
    }
    if (kept)
        fprintf(stderr, "llava generate: %s holds %d of the %d answers; %d to go\n", a->answers, kept, nq, b.todo);
    q_ctx *ctxs = xmalloc(sizeof(q_ctx) * (size_t)(nq ? nq : 1));
    b.t0 = now_s();
    pthread_t th;
    pthread_create(&th, NULL, engine_thread, e);
    int window = a->window > 0 ? a->window : 2 * engine_get_info(e)->max_batch;
    for (int i = 0; i < nq; i++) {
        if (qs[i].answer) continue;
        image_u8 im[GEN_MAX_FRAMES];
        int has = 0, want = prep_image_count(qs[i].image), F = want;
        if (qs[i].video && a->video_frames > 0 && a->video_frames < F) want = a->video_frames;
        char err[512] = "";
        for (int k = 0; k < want && !err[0]; k++) {
            char *one = prep_image_path(qs[i].image, qs[i].video ? prep_video_frame(F, want, k) : k);
            char *path = a->image_folder ? path_join(a->image_folder, one) : xstrdup(one);
            if (image_load_file(path, &im[k]) == 0) has++;
            else snprintf(err, sizeof err, "%s", llava_errmsg());
            free(path);
            free(one);
        }
        if (has < want) {
            free_images(im, has);
            fprintf(stderr, "llava generate: question %s: %s (skipped)\n", qs[i].qid, err);
            pthread_mutex_lock(&b.mu);
            b.failed++;
            pthread_mutex_unlock(&b.mu);
            continue;
        }
        engine_message msg = {"user", qs[i].text, strlen(qs[i].text), has};
        engine_chat chat = {&msg, 1, has ? im : NULL, has, qs[i].video};
        pthread_mutex_lock(&b.mu);
        while (b.in_flight >= window) pthread_cond_wait(&b.cv, &b.mu);
        b.in_flight++;
        pthread_mutex_unlock(&b.mu);
        ctxs[i] = (q_ctx){&b, i};
        engine_callbacks cb = {q_text, q_done, &ctxs[i]};
        int id = engine_submit_chat(e, &chat, &a->gp, &cb, err, sizeof err);
        if (id < 0) {
            pthread_mutex_lock(&b.mu);
            b.in_flight--;
            b.failed++;
            pthread_mutex_unlock(&b.mu);
        }
        free_images(im, has);
        if (id < 0) fprintf(stderr, "\nllava generate: question %s: %s (skipped)\n", qs[i].qid, err);
        pthread_mutex_lock(&b.mu);
        progress(&b, 0);
        pthread_mutex_unlock(&b.mu);
    }
    pthread_mutex_lock(&b.mu);
    while (b.in_flight > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&b.cv, &b.mu, &ts);
        progress(&b, 0);
    }
    progress(&b, 1);
    pthread_mutex_unlock(&b.mu);
    engine_shutdown(e);
    pthread_join(th, NULL);
    fclose(b.out);
    // The file in question order, atomically: the earlier run's answers and this run's.
    size_t cap = 1 << 16, n = 0;
    char *all = xmalloc(cap);
    int written = 0;
    for (int i = 0; i < nq; i++) {
        if (!qs[i].answer) continue;
        size_t L = strlen(qs[i].answer);
        while (n + L + 2 > cap) all = xrealloc(all, cap *= 2);
        memcpy(all + n, qs[i].answer, L);
        n += L;
        all[n++] = '\n';
        written++;
    }
    int rc = write_file_atomic(a->answers, all, n) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "llava generate: %s\n", llava_errmsg());
    double t = now_s() - b.t0;
    fprintf(stderr, "llava generate: %d answers in %s (%d new in %.1f s, %.2f questions/s)%s\n", written, a->answers,
            b.answered, t, t > 0 ? b.answered / t : 0.0, b.failed ? "; some questions failed: see above" : "");
    free(all);
    for (int i = 0; i < nq; i++) {
        free(qs[i].qid);
        cJSON_Delete(qs[i].qid_v);
        free(qs[i].image);
        free(qs[i].text);
        free(qs[i].answer);
    }
    free(qs);
    free(ctxs);
    free(model_id);
    engine_close(e);
    return rc ? rc : (b.failed ? 3 : 0);
}

// ---------------------------------------------------------------------------------------------

static const char USAGE[] =
    "usage: llava generate --model DIR --prompt TEXT [--image FILE | --video FRAME ...] [decoding] [--json] [--ids]\n"
    "       llava generate --model DIR --questions Q.jsonl --image-folder DIR --answers A.jsonl [decoding]\n"
    "\n"
    "Answers a question (about an image) with a trained model: LLaVA's prompt, KV-cached batched decoding.\n"
    "\n"
    "  input:    --model DIR (required): a llava-hf folder (`llava train` and `llava demo` write one) or an\n"
    "            original LLaVA folder\n"
    "            --adapter DIR  a LoRA adapter run on it unmerged (PEFT's folder, as `llava train` writes under\n"
    "            OUTPUT/adapter, or one of LLaVA's LoRA checkpoints; default: none)\n"
    "            --prompt TEXT  the question (one answer)          --image FILE  its image (default: none); given\n"
    "            again, more images (up to 8), each \"<image>\\n\" before the question in order\n"
    "            --video FRAME  a frame of the question's video, given again the next frames in order (up to 64;\n"
    "            frames as image files: video files are not decoded); one \"<image>\\n\" stands for them all\n"
    "            (LLaVA-NeXT-Video's layout)   --video-frames N  take N of them uniformly (LLaVA-NeXT's\n"
    "            np.linspace sampling, as `llava prep --video-frames`; default 0: all); also a question file's\n"
    "            \"video\" lists\n"
    "            --questions Q.jsonl --image-folder DIR --answers A.jsonl  a question file in LLaVA's format\n"
    "  model:    --tokenizer PATH (default DIR/tokenizer.model, else DIR/tokenizer.json)\n"
    "            --template NAME|FILE.json (" CONV_TEMPLATE_BUILTINS
    ";\n"
    "            default: the one the model's export records, else vicuna_v1)\n"
    "            --mode legacy|hf431|hf437 (default hf431)  --aspect pad|square (default: the\n"
    "            model's image_aspect_ratio, else pad)  --device cpu|cuda (default cpu)  --threads N (default:\n"
    "            the backend's)  --ignore-unexpected (default off)  --model-id NAME (default: DIR's last part)\n"
    "  decoding: --max-new-tokens N (256; 128 with --questions, as LLaVA's model_vqa_loader)\n"
    "            --temperature T (0: greedy, LLaVA's evaluation)  --top-p P (1: off)  --top-k K (0: off)\n"
    "            --seed S (default: from the clock)  --stop STRING (up to 4; default none)\n"
    "            --no-cache (reference path: a full pass per token, greedy; default off)\n"
    "  engine:   --max-batch N (64)  --max-context N (default: the LM's max_position_embeddings)\n"
    "            --kv-tokens N (default max-batch x max-context)  --window N (questions in flight; default\n"
    "            2 x max-batch)\n"
    "  output:   --json prints {\"text\", \"tokens\", \"prompt_tokens\", \"ttft_ms\", \"tokens_per_s\",\n"
    "            \"finish_reason\"}; --stream prints the answer as it is made; --ids the token ids (default: the\n"
    "            answer's text)\n"
    "  Questions are LLaVA's format (question_id, image, text per line); answers are written as\n"
    "  model_vqa_loader.py writes them, in question order; a rerun skips answered questions.\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2;
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    memset(&a, 0, sizeof a);
    gen_params_default(&a.gp);
    a.gp.max_new_tokens = -1;
    const char *stops[4];
    int n_stop = 0;
    static const char *const FLAGS[] = {"--model",     "--tokenizer",      "--template",     "--mode",
                                        "--aspect",    "--device",         "--model-id",     "--image",
                                        "--prompt",    "--questions",      "--image-folder", "--answers",
                                        "--stop",      "--max-new-tokens", "--temperature",  "--top-p",
                                        "--top-k",     "--seed",           "--max-batch",    "--max-context",
                                        "--kv-tokens", "--threads",        "--window",       "--ids",
                                        "--json",      "--stream",         "--no-cache",     "--ignore-unexpected",
                                        "--adapter",   "--video",          "--video-frames", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (args_is_help(s)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(s, "--ids")) a.print_ids = 1;
        else if (!strcmp(s, "--json")) a.json = 1;
        else if (!strcmp(s, "--stream")) a.stream = 1;
        else if (!strcmp(s, "--no-cache")) a.no_cache = 1;
        else if (!strcmp(s, "--ignore-unexpected")) a.eo.ignore_unexpected = 1;
        else if (i + 1 >= argc) return args_unknown("generate", s, FLAGS, ARGS_COUNT(FLAGS));
        else if (!strcmp(s, "--model")) a.eo.model_dir = argv[++i];
        else if (!strcmp(s, "--adapter")) a.eo.adapter = argv[++i];
        else if (!strcmp(s, "--tokenizer")) a.eo.tokenizer = argv[++i];
        else if (!strcmp(s, "--template")) a.eo.template_name = argv[++i];
        else if (!strcmp(s, "--mode")) a.eo.tokenizer_mode = argv[++i];
        else if (!strcmp(s, "--aspect")) a.eo.aspect = argv[++i];
        else if (!strcmp(s, "--device")) a.eo.device = argv[++i];
        else if (!strcmp(s, "--model-id")) a.eo.model_id = argv[++i];
        else if (!strcmp(s, "--image")) {
            if (a.n_images == GEN_MAX_IMAGES) {
                fprintf(stderr, "llava generate: at most %d --image\n", GEN_MAX_IMAGES);
                return 2;
            }
            a.images[a.n_images++] = argv[++i];
            if (!a.image) a.image = a.images[0];
        } else if (!strcmp(s, "--video")) {
            if (a.n_frames == GEN_MAX_FRAMES) {
                fprintf(stderr, "llava generate: at most %d --video frames\n", GEN_MAX_FRAMES);
                return 2;
            }
            a.frames[a.n_frames++] = argv[++i];
        } else if (!strcmp(s, "--prompt")) a.prompt = argv[++i];
        else if (!strcmp(s, "--questions")) a.questions = argv[++i];
        else if (!strcmp(s, "--image-folder")) a.image_folder = argv[++i];
        else if (!strcmp(s, "--answers")) a.answers = argv[++i];
        else if (!strcmp(s, "--stop")) {
            if (n_stop == 4) {
                fprintf(stderr, "llava generate: at most 4 --stop strings\n");
                return 2;
            }
            stops[n_stop++] = argv[++i];
        } else {
            static const char *const NUMERIC[] = {"--max-new-tokens", "--temperature", "--top-p",       "--top-k",
                                                  "--seed",           "--max-batch",   "--max-context", "--kv-tokens",
                                                  "--threads",        "--window",      "--video-frames"};
            int numeric = 0;
            for (int k = 0; k < ARGS_COUNT(NUMERIC); k++) numeric |= !strcmp(s, NUMERIC[k]);
            if (!numeric) return args_unknown("generate", s, FLAGS, ARGS_COUNT(FLAGS));
            // Numbers: read whole, an error names the flag.
            const char *v = argv[++i];
            char *end = NULL;
            errno = 0;
            double x = strtod(v, &end);
            if (errno || end == v || *end) {
                fprintf(stderr, "llava generate: %s: cannot read \"%s\" as a number\n", s, v);
                return 2;
            }
            if (!strcmp(s, "--max-new-tokens")) a.gp.max_new_tokens = (int)x;
            else if (!strcmp(s, "--temperature")) a.gp.sample.temperature = (float)x;
            else if (!strcmp(s, "--top-p")) a.gp.sample.top_p = (float)x;
            else if (!strcmp(s, "--top-k")) a.gp.sample.top_k = (int)x;
            else if (!strcmp(s, "--seed")) {
                a.gp.seed = (uint64_t)x;
                a.gp.has_seed = 1;
            } else if (!strcmp(s, "--max-batch")) a.eo.max_batch = (int)x;
            else if (!strcmp(s, "--max-context")) a.eo.max_context = (int)x;
            else if (!strcmp(s, "--kv-tokens")) a.eo.kv_tokens = (int)x;
            else if (!strcmp(s, "--threads")) a.eo.threads = (int)x;
            else if (!strcmp(s, "--video-frames")) {
                if (x < 0 || x > 1e6 || x != (int)x) {
                    fprintf(stderr, "llava generate: --video-frames %s: a count of frames (0: all)\n", v);
                    return 2;
                }
                a.video_frames = (int)x;
            } else a.window = (int)x;
        }
    }
    if (!a.eo.model_dir) return usage();
    int file_mode = a.questions || a.answers || a.image_folder;
    if (file_mode ? (!a.questions || !a.answers || a.prompt || a.image || a.n_frames) : !a.prompt) return usage();
    if (a.n_frames && a.n_images) {
        fprintf(stderr, "llava generate: --image and --video: a question takes images or one video's frames\n");
        return 2;
    }
    if (a.gp.max_new_tokens == -1) {  // the default budget, cut to what the context leaves
        a.gp.max_new_tokens = file_mode ? 128 : 256;
        a.gp.clamp_to_context = 1;
    }
    if (file_mode) a.gp.clamp_to_context = 1;  // a long question gets what the context leaves, as in LLaVA
    if (a.gp.max_new_tokens < 1) {
        fprintf(stderr, "llava generate: --max-new-tokens %d must be at least 1\n", a.gp.max_new_tokens);
        return 2;
    }
    a.gp.stop = stops;
    a.gp.n_stop = n_stop;
    if (a.no_cache && (file_mode || a.gp.sample.temperature != 0 || n_stop)) {
        fprintf(stderr, "llava generate: --no-cache answers one --prompt greedily, without --stop\n");
        return 2;
    }
    return file_mode ? answer_file(&a) : answer_one(&a);
}
