// The generation engine (engine.h): requests queued by any thread, one loop that prefills the new
// ones and decodes all running ones a token per step over a paged KV cache.
//
// Memory. The cache is a pool of blocks (model/llava.h). A request is taken into the batch only when
// the blocks its whole budget (prompt + max new tokens) could need are not promised to requests
// already running, so a running sequence never waits for memory and nothing is ever evicted; the
// blocks themselves are taken as the sequence grows and given back the moment it ends, so the
// promise of a request that stops early is released early too. Requests are taken in arrival order.
//
// One step:
//   1. take queued requests while a slot, their promised blocks and the prefill budget allow;
//   2. prefill them in one packed pass (their images through the vision tower together) and choose
//      each one's first token from its last prompt position's logits;
//   3. one decode pass over every running sequence: each feeds its last token and chooses the next.
// After each chosen token a sequence may end (eos, a stop string, its budget, the context, a cancel);
// its text grows by what has become final (engine.h's on_text rules).
#include "engine.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dtype.h"
#include "common/util.h"
#include "data/strbuf.h"
#include "data/template.h"
#include "data/tokenizer.h"
#include "kernels/backend.h"
#include "model/batch_hf.h"
#include "model/io/export.h"
#include "model/llava.h"

enum { MAX_STOP = 4 };

typedef struct req {
    int id;
    gen_params p;
    char *stop[MAX_STOP];
    size_t stop_len[MAX_STOP];
    engine_callbacks cb;
    int64_t *prompt;  // hf form: image_token_index repeated per feature
    int n_prompt;
    float *pixels;  // (n_img, 3, S, S)
    int n_img;
    int64_t *sizes;  // AnyRes: each image's (height, width); its n_img tiles are the images' tiles in order
    int n_images;
    int video;     // 1: its n_img images are one video's frames (the model's video_pool_mode pools them)
    int budget;    // new tokens at most
    int promised;  // cache blocks promised to it while it runs
    int slot;      // its KV slot while running, else -1
    int32_t *gen;  // the tokens chosen so far
    int n_gen;
    sample_rng rng;
    char *text;  // the decoded answer so far (eos and control pieces leave nothing)
    size_t text_len, emitted;
    int cancel;  // set by engine_cancel (under the lock)
    double t_submit, t_first, t_last;
    struct req *next;  // in the queue
} req;

struct llava_engine {
    llava_backend *be;
    int own_be;
    llava_model m;
    int model_loaded;
    tokenizer *tok;
    conv_template *tmpl_owned;
    const conv_template *tmpl;
    image_aspect aspect;
    tok_mode mode;
    llava_kv kv;
    int kv_ready;
    engine_info info;
    char *model_id, *device_desc;
    int max_prefill, block_size;
    int eos, image_id;
    int stop_id;  // the template's end-of-turn token when it is not the tokenizer's eos (Llama-3's <|eot_id|>), or -1
    // The queue and what any thread may read: under mu.
    pthread_mutex_t mu;
    pthread_cond_t cv;
    req *queue_head, *queue_tail;
    req **running;  // the engine thread's; its membership also read under mu by engine_cancel
    int n_running, n_queued;
    int next_id, closed;
    int promised;  // blocks promised to running requests
    int kv_free;   // the pool's free blocks after the last step (the pool itself is the loop's)
    engine_stats stats;
    float *logits, *work;  // (max_batch, V) and 3 V
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

const char *finish_reason_name(finish_reason f) {
    switch (f) {
    case FINISH_STOP: return "stop";
    case FINISH_LENGTH: return "length";
    case FINISH_CANCELLED: return "cancelled";
    default: return "error";
    }
}

void gen_params_default(gen_params *p) {
    memset(p, 0, sizeof *p);
    p->max_new_tokens = 256;
    p->sample.temperature = 0.0f;
    p->sample.top_k = 0;
    p->sample.top_p = 1.0f;
}

// ---------------------------------------------------------------------------------------------
// Opening

static const char *last_part(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t i = n;
    while (i > 0 && path[i - 1] != '/') i--;
    static __thread char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(n - i), path + i);
    return buf;
}

// Everything after the model and tokenizer are in place: template, aspect, limits, the activation
// plan, the cache. 0, or -1 with llava_errmsg().
static int engine_setup(llava_engine *e, const engine_options *o) {
    e->mode = TOK_MODE_DEFAULT;
    if (o->tokenizer_mode && tok_mode_parse(o->tokenizer_mode, &e->mode) != 0)
        return llava_fail("engine: tokenizer mode \"%s\" (legacy, hf431, hf437)", o->tokenizer_mode);
    // No template named: the one the model was trained with, as its export records it, else LLaVA-1.5's.
    char *recorded = !o->template_name && o->model_dir ? export_recorded_template(o->model_dir) : NULL;
    const char *tn = o->template_name ? o->template_name : recorded ? recorded : "vicuna_v1";
    e->tmpl = conv_template_builtin(tn);
    if (!e->tmpl) {
        e->tmpl_owned = conv_template_load(tn);
        if (!e->tmpl_owned) {
            llava_fail_ctx(
                "engine: template \"%s\" is neither built in (" CONV_TEMPLATE_BUILTINS ") nor a readable file", tn);
            free(recorded);
            return -1;
        }
        e->tmpl = e->tmpl_owned;
    }
    free(recorded);
    if (o->aspect && strcmp(o->aspect, "pad") != 0 && strcmp(o->aspect, "square") != 0)
        return llava_fail("engine: aspect \"%s\" (pad or square)", o->aspect);
    const char *asp = o->aspect                             ? o->aspect
                      : e->m.cfg.glue.image_aspect_ratio[0] ? e->m.cfg.glue.image_aspect_ratio
                                                            : "pad";
    e->aspect = strcmp(asp, "pad") == 0 ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE;

    const llama_config *tc = &e->m.cfg.text;
    engine_info *in = &e->info;
    in->max_batch = o->max_batch > 0 ? o->max_batch : 64;
    in->max_context = o->max_context > 0 ? o->max_context : tc->max_position_embeddings;
    if (in->max_context < 2) return llava_fail("engine: a context of %d tokens", in->max_context);
    in->max_images = o->max_images > 0 ? o->max_images : 1;
    in->tokens_per_image = e->m.tokens_per_image;
    in->unexpected_ignored = e->m.n_unexpected_ignored;
    in->image_size = e->m.cfg.vision.image_size;
    in->vocab_size = tc->vocab_size;
    e->eos = e->tok ? tok_eos_id(e->tok) : tc->eos_token_id;
    in->eos = e->eos;
    e->stop_id = -1;
    if (e->tok && e->tmpl->stop_token) {
        const char *st = e->tmpl->stop_token;
        int id = tok_piece_to_id(e->tok, st, strlen(st));
        size_t pl = 0;
        const char *p = id >= 0 ? tok_id_to_piece(e->tok, id, &pl) : NULL;
        if (p && pl == strlen(st) && memcmp(p, st, pl) == 0 && id != e->eos) e->stop_id = id;
    }
    e->image_id = e->m.cfg.glue.image_token_index;
    e->model_id = xstrdup(o->model_id ? o->model_id : o->model_dir ? last_part(o->model_dir) : "model");
    in->model_id = e->model_id;
    llava_backend_info bi;
    llava_backend_describe(e->be, &bi);
    e->device_desc = xasprintf("%s (%s)", bi.name, bi.device);
    in->device = e->device_desc;
    e->max_prefill = o->max_prefill_tokens > 0 ? o->max_prefill_tokens : 4096;
    if (e->max_prefill < in->max_context) e->max_prefill = in->max_context;
    e->block_size = o->block_size > 0 ? o->block_size : 16;

    // The activations of the largest prefill pass, planned once (a decode pass is smaller: one token
    // per sequence).
    int tpi = e->m.tokens_per_image, max_img = in->max_batch * in->max_images;
    if (e->m.cfg.glue.anyres) {  // AnyRes: every image at its most tiles
        image_anyres_config ac = {.size = e->m.cfg.vision.image_size, .pinpoints = e->m.cfg.glue.pinpoints};
        max_img *= image_anyres_max_tiles(&ac);
    }
    if (tpi > 0 && max_img > e->max_prefill / tpi) max_img = e->max_prefill / tpi;
    act_shape shape = {e->max_prefill, in->max_batch, max_img, 0, 0, 1, 0, 0};
    if (llava_model_reserve(&e->m, &shape) != 0) return -1;

    // The cache: every running sequence at full length by default, at least one whole context.
    size_t per_token = llava_kv_token_bytes(&e->m);
    size_t tokens = o->kv_tokens > 0 ? (size_t)o->kv_tokens : (size_t)in->max_batch * (size_t)in->max_context;
    if (o->kv_tokens <= 0) {
        // Without an explicit size: at most 90% of the device memory still free (CUDA), or 8 GiB (CPU).
        size_t budget = (size_t)8 << 30;
        if (!strcmp(bi.name, "cuda") && bi.memory_free) budget = (size_t)((double)bi.memory_free * 0.9);
        if (tokens * per_token > budget) tokens = budget / per_token;
    }
    if (tokens < (size_t)in->max_context) tokens = (size_t)in->max_context;
    int n_blocks = (int)((tokens + (size_t)e->block_size - 1) / (size_t)e->block_size);
    if (llava_kv_init(&e->kv, &e->m, n_blocks, e->block_size, in->max_batch, in->max_context) != 0) return -1;
    e->kv_ready = 1;
    in->kv_tokens = (size_t)n_blocks * (size_t)e->block_size;
    e->kv_free = n_blocks;

    e->running = xcalloc((size_t)in->max_batch, sizeof(req *));
    e->logits = xmalloc(sizeof(float) * (size_t)in->max_batch * (size_t)tc->vocab_size);
    e->work = xmalloc(sizeof(float) * 3 * (size_t)tc->vocab_size);
    return 0;
}

static llava_engine *engine_new(void) {
    llava_engine *e = xcalloc(1, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    return e;
}

llava_engine *engine_open(const engine_options *o) {
    if (!o || !o->model_dir) {
        llava_fail("engine: no model folder");
        return NULL;
    }
    llava_engine *e = engine_new();
    const char *device = o->device ? o->device : "cpu";
    if (o->threads > 0) llava_cpu_set_threads(o->threads);
    e->be = llava_backend_open(device, NULL);
    e->own_be = 1;
    if (!e->be) {
        llava_fail_ctx("engine: device %s", device);
        goto fail;
    }
    // A sequence's answer must not depend on what it is batched with (kernels/backend.h).
    llava_backend_set_batch_invariant(e->be, 1);
    llava_load_options lo = {.ignore_unexpected = o->ignore_unexpected, .adapter = o->adapter};
    if (llava_model_load_opts(&e->m, o->model_dir, e->be, &lo) != 0) goto fail;
    e->model_loaded = 1;
    char *tok_path = o->tokenizer ? xstrdup(o->tokenizer) : tok_default_path(o->model_dir);
    e->tok = tok_load(tok_path);
    free(tok_path);
    if (!e->tok || engine_setup(e, o) != 0) goto fail;
    return e;
fail:
    engine_close(e);
    return NULL;
}

llava_engine *engine_open_model(const engine_options *o, llava_model *m, tokenizer *tok) {
    llava_engine *e = engine_new();
    e->be = m->be;
    e->m = *m;
    memset(m, 0, sizeof *m);
    e->model_loaded = 1;
    e->tok = tok;
    llava_backend_set_batch_invariant(e->be, 1);
    if (engine_setup(e, o) != 0) {
        engine_close(e);
        return NULL;
    }
    return e;
}

static void req_free(req *r) {
    if (!r) return;
    for (int i = 0; i < MAX_STOP; i++) free(r->stop[i]);
    free(r->prompt);
    free(r->pixels);
    free(r->sizes);
    free(r->gen);
    free(r->text);
    free(r);
}

void engine_close(llava_engine *e) {
    if (!e) return;
    for (req *r = e->queue_head, *n; r; r = n) {
        n = r->next;
        req_free(r);
    }
    for (int i = 0; i < e->n_running; i++) req_free(e->running[i]);
    if (e->kv_ready) llava_kv_free(&e->kv, &e->m);
    if (e->model_loaded) llava_model_free(&e->m);
    if (e->be && e->own_be) llava_backend_close(e->be);
    if (e->tok) tok_free(e->tok);
    if (e->tmpl_owned) conv_template_free(e->tmpl_owned);
    free(e->running);
    free(e->logits);
    free(e->work);
    free(e->model_id);
    free(e->device_desc);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

const engine_info *engine_get_info(const llava_engine *e) { return &e->info; }

// ---------------------------------------------------------------------------------------------
// Submitting

static int bad(char *err, size_t cap, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int bad(char *err, size_t cap, int status, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return status;
}

// Checks a request's parameters and makes its record; the prompt and pixels are the caller's to
// hand over (taken on success).
static int req_make(llava_engine *e, int64_t *ids, int n, float *pixels, int n_img, int video, const gen_params *p,
                    const engine_callbacks *cb, char *err, size_t cap, req **out) {
    const engine_info *in = &e->info;
    if (n < 1) return bad(err, cap, ENGINE_BAD_REQUEST, "the prompt is empty");
    if (n_img > in->max_images && !e->m.cfg.glue.anyres)  // AnyRes: n_img counts tiles (images checked before)
        return bad(err, cap, ENGINE_BAD_REQUEST, "%d images in one request; this server takes at most %d", n_img,
                   in->max_images);
    if (sample_params_check(&p->sample) != 0) return bad(err, cap, ENGINE_BAD_REQUEST, "%s", llava_errmsg());
    if (p->max_new_tokens < 0)
        return bad(err, cap, ENGINE_BAD_REQUEST, "max_tokens %d must be positive", p->max_new_tokens);
    if (n >= in->max_context)
        return bad(err, cap, ENGINE_BAD_REQUEST,
                   "the prompt is %d tokens (image features included); the context holds %d, answer included", n,
                   in->max_context);
    int room = in->max_context - n;
    if (p->max_new_tokens > room && !p->clamp_to_context)
        return bad(err, cap, ENGINE_BAD_REQUEST,
                   "max_tokens %d with a prompt of %d tokens exceeds the context of %d tokens (at most %d here)",
                   p->max_new_tokens, n, in->max_context, room);
    if (p->n_stop < 0 || p->n_stop > MAX_STOP)
        return bad(err, cap, ENGINE_BAD_REQUEST, "%d stop strings (at most %d)", p->n_stop, MAX_STOP);
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return bad(err, cap, ENGINE_BAD_REQUEST, "stop string %d is empty", i);
    int V = in->vocab_size;
    int feats = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] == e->image_id) feats++;
        else if (ids[i] < 0 || ids[i] >= V)
            return bad(err, cap, ENGINE_BAD_REQUEST, "prompt token %d is %lld, outside the vocabulary of %d", i,
                       (long long)ids[i], V);
    }
    int per = video ? e->m.tokens_per_video_frame : in->tokens_per_image;
    if (!e->m.cfg.glue.anyres && feats != n_img * per)
        return bad(err, cap, ENGINE_BAD_REQUEST, "the prompt holds %d image tokens for %d %s of %d features", feats,
                   n_img, video ? "video frames" : "images", per);
    req *r = xcalloc(1, sizeof *r);
    r->p = *p;
    r->p.stop = NULL;
    for (int i = 0; i < p->n_stop; i++) {
        r->stop[i] = xstrdup(p->stop[i]);
        r->stop_len[i] = strlen(p->stop[i]);
    }
    if (cb) r->cb = *cb;
    r->prompt = ids;
    r->n_prompt = n;
    r->pixels = pixels;
    r->n_img = n_img;
    r->video = video;
    r->budget = p->max_new_tokens && p->max_new_tokens < room ? p->max_new_tokens : room;
    r->promised = llava_kv_blocks_for(&e->kv, n + r->budget);
    r->slot = -1;
    r->gen = xmalloc(sizeof(int32_t) * (size_t)r->budget);
    r->text = xcalloc(1, 1);
    r->t_submit = now_ms();
    *out = r;
    return ENGINE_OK;
}

static int enqueue(llava_engine *e, req *r, char *err, size_t cap) {
    pthread_mutex_lock(&e->mu);
    if (e->closed) {
        pthread_mutex_unlock(&e->mu);
        r->prompt = NULL;  // the caller's still
        r->pixels = NULL;
        return bad(err, cap, ENGINE_CLOSED, "the server is shutting down");
    }
    r->id = e->next_id++;
    uint64_t seed =
        r->p.has_seed ? r->p.seed : ((uint64_t)(now_ms() * 1e3) ^ ((uint64_t)r->id * 0x9e3779b97f4a7c15ull));
    sample_rng_seed(&r->rng, seed);
    if (e->queue_tail) e->queue_tail->next = r;
    else e->queue_head = r;
    e->queue_tail = r;
    e->n_queued++;
    int id = r->id;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return id;
}

// Checks and queues a prompt whose ids and pixels the engine takes over (freed here on refusal).
static int submit_owned(llava_engine *e, int64_t *ids, int n, float *pix, int n_img, int video, const gen_params *p,
                        const engine_callbacks *cb, char *err, size_t errcap) {
    req *r = NULL;
    int st = req_make(e, ids, n, pix, n_img, video, p, cb, err, errcap, &r);
    if (st == ENGINE_OK) {
        st = enqueue(e, r, err, errcap);
        if (st >= 0) return st;
        req_free(r);  // enqueue handed the prompt back
    }
    free(ids);
    free(pix);
    return st;
}

int engine_submit_ids(llava_engine *e, const int64_t *ids, int n, const float *pixels, int n_img, const gen_params *p,
                      const engine_callbacks *cb, char *err, size_t errcap) {
    if (n < 0 || n_img < 0 || (n_img && !pixels)) return bad(err, errcap, ENGINE_BAD_REQUEST, "a malformed prompt");
    int64_t *own = xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (n) memcpy(own, ids, sizeof(int64_t) * (size_t)n);
    size_t np = (size_t)n_img * 3 * (size_t)e->info.image_size * (size_t)e->info.image_size;
    float *pix = NULL;
    if (n_img) {
        size_t nbad = 0, at = f32_first_nonfinite(pixels, np, &nbad);
        if (nbad) {
            free(own);
            return bad(err, errcap, ENGINE_BAD_REQUEST, "%zu pixel values are not finite (first at %zu)", nbad, at);
        }
        pix = xmalloc(sizeof(float) * np);
        memcpy(pix, pixels, sizeof(float) * np);
    }
    return submit_owned(e, own, n, pix, n_img, 0, p, cb, err, errcap);
}

// The conversation as the template's turns: the system message (first only) replaces the template's
// system prompt; "<image>\n" goes before the text of each message per image it carries.
static int chat_turns(const conv_template *tmpl, const engine_chat *c, conv_template *tm, conv_turn **turns_out,
                      int *n_out, char ***texts_out, char *err, size_t cap) {
    *tm = *tmpl;
    int first = 0, n_img = 0;
    if (c->n_messages > 0 && strcmp(c->messages[0].role, "system") == 0) {
        if (c->messages[0].n_images) return bad(err, cap, ENGINE_BAD_REQUEST, "a system message carries no image");
        first = 1;
    }
    int n = c->n_messages - first;
    if (n < 1) return bad(err, cap, ENGINE_BAD_REQUEST, "no user message");
    conv_turn *turns = xcalloc((size_t)n + 1, sizeof *turns);
    char **texts = xcalloc((size_t)n + 2, sizeof *texts);
    for (int i = 0; i < n; i++) {
        const engine_message *msg = &c->messages[first + i];
        const char *want = i % 2 == 0 ? "user" : "assistant";
        int st = ENGINE_OK;
        if (strcmp(msg->role, want) != 0)
            st = bad(err, cap, ENGINE_BAD_REQUEST,
                     "message %d is \"%s\"; after an optional system message the roles alternate user, assistant, "
                     "..., ending with user",
                     first + i, msg->role);
        else if (msg->n_images < 0 || (msg->n_images && strcmp(msg->role, "user") != 0))
            st = bad(err, cap, ENGINE_BAD_REQUEST, "message %d: only user messages carry images", first + i);
        else if (memmem(msg->text, msg->text_len, DEFAULT_IMAGE_TOKEN, strlen(DEFAULT_IMAGE_TOKEN)))
            st = bad(err, cap, ENGINE_BAD_REQUEST,
                     "message %d: the text holds \"%s\"; send images as image parts, not as this marker", first + i,
                     DEFAULT_IMAGE_TOKEN);
        else if (c->video && msg->n_images && msg->n_images != c->n_images)
            st = bad(err, cap, ENGINE_BAD_REQUEST,
                     "message %d carries %d of the video's %d frames: one user message carries them all", first + i,
                     msg->n_images, c->n_images);
        if (st != ENGINE_OK) {
            for (int k = 0; k < i; k++) free(texts[k]);
            free(texts);
            free(turns);
            return st;
        }
        strbuf sb = {0};
        int places = c->video && msg->n_images ? 1 : msg->n_images;  // a video: one <image> for its frames
        for (int k = 0; k < places; k++) sb_put(&sb, DEFAULT_IMAGE_TOKEN "\n", strlen(DEFAULT_IMAGE_TOKEN) + 1);
        sb_put(&sb, msg->text, msg->text_len);
        sb_put(&sb, "", 0);
        texts[i] = sb.p ? sb.p : xstrdup("");
        turns[i].from = tm->from[i % 2];
        turns[i].value = texts[i];
        turns[i].value_len = sb.p ? sb.n : 0;
        n_img += msg->n_images;
    }
    if (n % 2 == 0) {
        for (int k = 0; k < n; k++) free(texts[k]);
        free(texts);
        free(turns);
        return bad(err, cap, ENGINE_BAD_REQUEST, "the last message must be the user's");
    }
    if (n_img != c->n_images) {
        for (int k = 0; k < n; k++) free(texts[k]);
        free(texts);
        free(turns);
        return bad(err, cap, ENGINE_BAD_REQUEST, "the messages carry %d images, %d were given", n_img, c->n_images);
    }
    turns[n].from = tm->from[1];  // the assistant's turn to generate: the model continues from "ASSISTANT:"
    turns[n].value = NULL;
    turns[n].value_len = 0;
    if (first) {
        texts[n] = strndup(c->messages[0].text, c->messages[0].text_len);
        tm->system = texts[n];
    }
    *turns_out = turns;
    *n_out = n + 1;
    *texts_out = texts;
    return ENGINE_OK;
}

static void turns_free(conv_turn *turns, char **texts, int n) {
    for (int k = 0; k <= n; k++) free(texts[k]);
    free(texts);
    free(turns);
}

// The template's prompt for a chat, tokenized (IMAGE_TOKEN_INDEX at the image places).
int engine_prompt_ids(const tokenizer *tok, tok_mode mode, const conv_template *tmpl, const engine_chat *c,
                      prep_result *r, char *err, size_t cap) {
    conv_template tm;
    conv_turn *turns = NULL;
    char **texts = NULL;
    int nt = 0;
    int st = chat_turns(tmpl, c, &tm, &turns, &nt, &texts, err, cap);
    if (st != ENGINE_OK) return st;
    // Several images: LLaVA-NeXT's multimodal rule, as prep gives multi-image training samples (LLaVA-1.5's would
    // pull every "<image>" of a turn to its front and keep one).
    if (c->n_images > 1 || c->video) tm.multimodal_next = 1;
    prep_config pc = {.tok = tok, .mode = mode, .tmpl = &tm, .model_max_length = 0, .strict = 0};
    memset(r, 0, sizeof *r);
    int rc = prep_sample(&pc, "request", turns, (size_t)nt, c->n_images > 0, r);
    turns_free(turns, texts, nt - 1);
    if (rc != 0) return bad(err, cap, ENGINE_BAD_REQUEST, "%s", llava_errmsg());
    return ENGINE_OK;
}

static int chat_prompt(llava_engine *e, const engine_chat *c, prep_result *r, char *err, size_t cap) {
    return engine_prompt_ids(e->tok, e->mode, e->tmpl, c, r, err, cap);
}

char *engine_chat_prompt(llava_engine *e, const engine_chat *c, char *err, size_t errcap) {
    prep_result r;
    if (chat_prompt(e, c, &r, err, errcap) != ENGINE_OK) return NULL;
    char *s = strndup(r.prompt, r.prompt_len);
    prep_result_free(&r);
    return s;
}

// The prompt's ids and pixels; with AnyRes each image's tiles (*n_tiles in all) and its (height, width) in *sizes_out
// (NULL without AnyRes).
static int chat_inputs(llava_engine *e, const engine_chat *c, int64_t **ids_out, int *n_out, float **pixels_out,
                       int *n_tiles, int64_t **sizes_out, char *err, size_t errcap);

int engine_chat_inputs(llava_engine *e, const engine_chat *c, int64_t **ids_out, int *n_out, float **pixels_out,
                       char *err, size_t errcap) {
    if (e->m.cfg.glue.anyres)
        return bad(err, errcap, ENGINE_BAD_REQUEST, "an AnyRes model's prompt needs its images' tiles and sizes");
    int n_tiles;
    int64_t *sizes;
    return chat_inputs(e, c, ids_out, n_out, pixels_out, &n_tiles, &sizes, err, errcap);
}

static int chat_inputs(llava_engine *e, const engine_chat *c, int64_t **ids_out, int *n_out, float **pixels_out,
                       int *n_tiles, int64_t **sizes_out, char *err, size_t errcap) {
    *sizes_out = NULL;
    *n_tiles = c->n_images;
    if (c->n_images > e->info.max_images)
        return bad(err, errcap, ENGINE_BAD_REQUEST, "%d images in one request; this server takes at most %d",
                   c->n_images, e->info.max_images);
    if (c->video && c->n_images < 1) return bad(err, errcap, ENGINE_BAD_REQUEST, "a video without frames");
    if (c->video && e->m.cfg.glue.anyres)
        return bad(err, errcap, ENGINE_BAD_REQUEST,
                   "a video with an AnyRes model: LLaVA-NeXT's AnyRes tiles images, not video frames (not supported)");
    prep_result r;
    int st = chat_prompt(e, c, &r, err, errcap);
    if (st != ENGINE_OK) return st;
    // Each image's place becomes one image token per feature, as transformers' processor writes it (AnyRes: the
    // image's merged features, its tiles through LlavaNextImageProcessor's steps).
    int tpi = e->info.tokens_per_image, marks = 0, anyres = e->m.cfg.glue.anyres;
    for (size_t i = 0; i < r.ids.n; i++) marks += r.ids.v[i] == IMAGE_TOKEN_INDEX;
    // A video's frames: tokens_per_video_frame each (the model's video_pool_mode; else tokens_per_image).
    int want = c->video ? 1 : c->n_images, per_mark = c->video ? c->n_images * e->m.tokens_per_video_frame : tpi;
    if (marks != want) {
        prep_result_free(&r);
        return bad(err, errcap, ENGINE_BAD_REQUEST, "the prompt holds %d image places for %d %s", marks, c->n_images,
                   c->video ? "frames of one video" : "images");
    }
    int S = e->info.image_size;
    size_t plane = 3 * (size_t)S * (size_t)S;
    if (anyres) {
        image_anyres_config ac = {.size = S, .pinpoints = e->m.cfg.glue.pinpoints, .flavor = IMAGE_ANYRES_HF};
        int grid = S / e->m.cfg.vision.patch_size, max_t = image_anyres_max_tiles(&ac), tiles = 0;
        int *nf = xmalloc(sizeof(int) * (size_t)(c->n_images + 1));
        int64_t *sizes = xmalloc(sizeof(int64_t) * (size_t)(2 * c->n_images + 1));
        float *pix = xmalloc(sizeof(float) * plane * (size_t)max_t * (size_t)(c->n_images ? c->n_images : 1));
        size_t n = r.ids.n;
        for (int i = 0; i < c->n_images; i++) {
            image_anyres_plan plan;
            if (image_anyres_preprocess(&c->images[i], &ac, &plan, NULL, pix + plane * (size_t)tiles) != 0 ||
                (nf[i] = image_anyres_feature_rows(plan.orig_h, plan.orig_w, &ac.pinpoints, ac.flavor, S, grid, NULL)) <
                    0) {
                free(nf), free(sizes), free(pix);
                prep_result_free(&r);
                return bad(err, errcap, ENGINE_BAD_REQUEST, "image %d: %s", i, llava_errmsg());
            }
            tiles += plan.n_tiles;
            sizes[2 * i] = plan.orig_h, sizes[2 * i + 1] = plan.orig_w;
            n += (size_t)nf[i] - 1;
        }
        int64_t *ids = xmalloc(sizeof(int64_t) * (n ? n : 1));
        size_t k = 0;
        for (size_t i = 0, j = 0; i < r.ids.n; i++) {
            if (r.ids.v[i] == IMAGE_TOKEN_INDEX)
                for (int f = 0; f < nf[j]; f++) ids[k++] = e->image_id;
            else ids[k++] = r.ids.v[i];
            j += r.ids.v[i] == IMAGE_TOKEN_INDEX;
        }
        prep_result_free(&r);
        free(nf);
        *ids_out = ids;
        *n_out = (int)n;
        *pixels_out = pix;
        *n_tiles = tiles;
        *sizes_out = sizes;
        return ENGINE_OK;
    }
    size_t n = r.ids.n + (size_t)marks * (size_t)(per_mark - 1);
    int64_t *ids = xmalloc(sizeof(int64_t) * (n ? n : 1));
    size_t k = 0;
    for (size_t i = 0; i < r.ids.n; i++) {
        if (r.ids.v[i] == IMAGE_TOKEN_INDEX)
            for (int f = 0; f < per_mark; f++) ids[k++] = e->image_id;
        else ids[k++] = r.ids.v[i];
    }
    prep_result_free(&r);
    float *pix = c->n_images ? xmalloc(sizeof(float) * plane * (size_t)c->n_images) : NULL;
    uint8_t *u8 = c->n_images ? xmalloc(plane) : NULL;
    image_processor proc = e->m.cfg.vision.siglip ? IMAGE_PROC_SIGLIP : IMAGE_PROC_CLIP;
    for (int i = 0; i < c->n_images; i++)
        if (image_preprocess_proc(&c->images[i], S, e->aspect, proc, u8, pix + plane * (size_t)i) != 0) {
            free(u8);
            free(pix);
            free(ids);
            return bad(err, errcap, ENGINE_BAD_REQUEST, "image %d: %s", i, llava_errmsg());
        }
    free(u8);
    *ids_out = ids;
    *n_out = (int)n;
    *pixels_out = pix;
    return ENGINE_OK;
}

int engine_submit_chat(llava_engine *e, const engine_chat *c, const gen_params *p, const engine_callbacks *cb,
                       char *err, size_t errcap) {
    int64_t *ids;
    float *pix;
    int n, n_tiles;
    int64_t *sizes;
    int st = chat_inputs(e, c, &ids, &n, &pix, &n_tiles, &sizes, err, errcap);
    if (st != ENGINE_OK) return st;
    if (!sizes) return submit_owned(e, ids, n, pix, c->n_images, c->video != 0, p, cb, err, errcap);
    // AnyRes: the request's tiles go through the tower, its sizes lay their features out at prefill.
    req *r;
    st = req_make(e, ids, n, pix, n_tiles, 0, p, cb, err, errcap, &r);
    if (st == ENGINE_OK) {
        r->sizes = sizes;
        r->n_images = c->n_images;
        st = enqueue(e, r, err, errcap);
        if (st >= 0) return st;
        req_free(r);  // enqueue handed the prompt and pixels back (the sizes went with the request)
        sizes = NULL;
    }
    free(ids), free(pix), free(sizes);
    return st;
}

llava_model *engine_model(llava_engine *e) { return &e->m; }

const tokenizer *engine_tokenizer(const llava_engine *e) { return e->tok; }

void engine_cancel(llava_engine *e, int id) {
    pthread_mutex_lock(&e->mu);
    for (req *r = e->queue_head; r; r = r->next)
        if (r->id == id) r->cancel = 1;
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i]->id == id) e->running[i]->cancel = 1;
    pthread_mutex_unlock(&e->mu);
}

void engine_shutdown(llava_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->closed = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void engine_get_stats(llava_engine *e, engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->stats;
    s->running = e->n_running;
    s->queued = e->n_queued;
    s->kv_blocks = e->kv.n_blocks;
    s->kv_blocks_free = e->kv_free;
    pthread_mutex_unlock(&e->mu);
}

// ---------------------------------------------------------------------------------------------
// Text: what a sequence's tokens decode to, and what of it is final

// Bytes at the end of s that start a stop string without completing it (held back: the next token
// may complete it).
static size_t stop_prefix_tail(const req *r, const char *s, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < r->p.n_stop; i++) {
        size_t L = r->stop_len[i];
        for (size_t k = L - 1; k > hold; k--)  // the longest proper prefix of stop i that ends s
            if (k <= n && memcmp(s + n - k, r->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

// The answer's text from its tokens (eos left out). A trailing run of byte pieces that does not yet
// make a whole character decodes to U+FFFD; it is held back until the character completes.
static int req_decode(llava_engine *e, req *r, size_t *final_len) {
    *final_len = 0;
    if (!e->tok) return 0;  // a model without a tokenizer (benchmarks): tokens only
    int n = r->n_gen;
    if (n && (r->gen[n - 1] == e->eos || r->gen[n - 1] == e->stop_id) && !r->p.ignore_eos) n--;
    char *text = NULL;
    size_t len = 0;
    if (tok_decode(e->tok, r->gen, (size_t)n, &text, &len) != 0) return -1;
    free(r->text);
    r->text = text;
    r->text_len = len;
    size_t fin = len;
    if (tok_bpe(e->tok)) {
        // Byte-level tokens: a character cut between tokens decodes to U+FFFD until its last byte comes; the
        // replacement characters at the end are held back (the finish sends whatever remains).
        while (fin >= 3 && memcmp(text + fin - 3, "\xEF\xBF\xBD", 3) == 0) fin -= 3;
    } else if (n && tok_piece_type(e->tok, r->gen[n - 1]) == TOK_BYTE) {
        int k = n;
        while (k > 0 && tok_piece_type(e->tok, r->gen[k - 1]) == TOK_BYTE) k--;
        char *head = NULL;
        size_t hl = 0;
        if (tok_decode(e->tok, r->gen, (size_t)k, &head, &hl) != 0) return -1;
        free(head);
        // The byte run is final once it decodes without a replacement character at its end.
        if (len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0) fin = hl < len ? hl : len;
    }
    *final_len = fin;
    return 0;
}

// Finishes a request: the rest of its text, on_done, its cache slot and promise released.
static void req_finish(llava_engine *e, req *r, finish_reason why, const char *error) {
    if (why != FINISH_ERROR && r->text_len > r->emitted && r->cb.on_text)
        r->cb.on_text(r->cb.ctx, r->id, r->text + r->emitted, r->text_len - r->emitted);
    double t = now_ms();
    engine_result res = {
        .id = r->id,
        .finish = why,
        .text = r->text,
        .text_len = r->text_len,
        .tokens = r->gen,
        .n_tokens = r->n_gen,
        .prompt_tokens = r->n_prompt,
        .ttft_ms = r->n_gen ? r->t_first - r->t_submit : 0,
        .total_ms = t - r->t_submit,
        .tokens_per_s = r->n_gen > 1 && r->t_last > r->t_first ? (r->n_gen - 1) * 1e3 / (r->t_last - r->t_first) : 0,
        .error = error,
    };
    if (r->cb.on_done) r->cb.on_done(r->cb.ctx, &res);
    if (r->slot >= 0) llava_kv_close(&e->kv, r->slot);
    pthread_mutex_lock(&e->mu);
    e->promised -= r->slot >= 0 ? r->promised : 0;
    e->stats.requests_done++;
    e->stats.prompt_tokens += (uint64_t)r->n_prompt;
    e->stats.generated_tokens += (uint64_t)r->n_gen;
    pthread_mutex_unlock(&e->mu);
    req_free(r);
}

// A chosen token joins the answer. Returns 1 when the answer ended (why set), else 0.
static int req_take(llava_engine *e, req *r, int tok, finish_reason *why) {
    double t = now_ms();
    if (!r->n_gen) r->t_first = t;
    r->t_last = t;
    r->gen[r->n_gen++] = tok;
    size_t fin = 0;
    if (req_decode(e, r, &fin) != 0) {
        *why = FINISH_ERROR;
        return 1;
    }
    // A stop string ends the answer before it; the search starts where a stop could begin that the
    // text emitted so far did not already rule out.
    for (int i = 0; i < r->p.n_stop; i++) {
        size_t from = r->emitted > r->stop_len[i] ? r->emitted - r->stop_len[i] : 0;
        const char *hit =
            r->text_len >= from ? memmem(r->text + from, r->text_len - from, r->stop[i], r->stop_len[i]) : NULL;
        if (hit) {
            r->text_len = (size_t)(hit - r->text);
            if (r->text_len < r->emitted) r->text_len = r->emitted;  // emitted text is never taken back
            *why = FINISH_STOP;
            return 1;
        }
    }
    if ((tok == e->eos || (tok == e->stop_id && tok >= 0)) && !r->p.ignore_eos) {
        *why = FINISH_STOP;
        return 1;
    }
    if (r->n_gen >= r->budget || r->n_prompt + r->n_gen >= e->info.max_context) {
        *why = FINISH_LENGTH;
        return 1;
    }
    size_t safe = fin - stop_prefix_tail(r, r->text, fin);
    if (safe > r->emitted) {
        if (r->cb.on_text) r->cb.on_text(r->cb.ctx, r->id, r->text + r->emitted, safe - r->emitted);
        r->emitted = safe;
    }
    return 0;
}

// The next token of a sequence from its logits row.
static int choose(llava_engine *e, req *r, const float *row, int *tok, char *err, size_t cap) {
    int V = e->info.vocab_size;
    size_t nbad = 0, at = f32_first_nonfinite(row, (size_t)V, &nbad);
    if (nbad) {
        snprintf(err, cap,
                 "step %d: %zu of the %d logits are not finite (%s for token %zu): the forward pass overflowed",
                 r->n_gen + 1, nbad, V, f32_nonfinite_name(row[at]), at);
        return -1;
    }
    *tok = sample_next(row, V, &r->p.sample, &r->rng, e->work);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The loop

// Removes running sequence i (order kept: the batch's order is arrival order).
static void running_remove(llava_engine *e, int i) {
    pthread_mutex_lock(&e->mu);
    memmove(e->running + i, e->running + i + 1, sizeof(req *) * (size_t)(e->n_running - i - 1));
    e->n_running--;
    pthread_mutex_unlock(&e->mu);
}

// Ends every running sequence with an error (the model failed on their pass).
static void fail_running(llava_engine *e, int from, const char *why) {
    while (e->n_running > from) {
        req *r = e->running[from];
        running_remove(e, from);
        req_finish(e, r, FINISH_ERROR, why);
    }
}

// Prefill of the requests taken this step (running[from..]).
static void prefill(llava_engine *e, int from) {
    int n = e->n_running - from;
    if (n <= 0) return;
    int S = 0, n_img = 0, n_images = 0;
    for (int i = from; i < e->n_running; i++) {
        req *r = e->running[i];
        S = r->n_prompt > S ? r->n_prompt : S;
        n_img += r->n_img;
        n_images += r->n_images;
    }
    int64_t *sizes = e->m.cfg.glue.anyres ? xmalloc(sizeof(int64_t) * (size_t)(2 * n_images + 1)) : NULL;
    int64_t *ids = xcalloc((size_t)n * (size_t)S, sizeof(int64_t)),
            *mask = xcalloc((size_t)n * (size_t)S, sizeof(int64_t));
    int isz = e->info.image_size;
    size_t plane = 3 * (size_t)isz * (size_t)isz;
    float *pix = n_img ? xmalloc(sizeof(float) * plane * (size_t)n_img) : NULL;
    uint8_t *frames = n_img ? xcalloc((size_t)n_img, 1) : NULL;  // which images are video frames
    int *slots = xmalloc(sizeof(int) * (size_t)n), k = 0, n_sz = 0;
    for (int i = 0; i < n; i++) {
        req *r = e->running[from + i];
        memcpy(ids + (size_t)i * S, r->prompt, sizeof(int64_t) * (size_t)r->n_prompt);
        for (int t = 0; t < r->n_prompt; t++) mask[(size_t)i * S + t] = 1;
        if (r->n_img) memcpy(pix + plane * (size_t)k, r->pixels, sizeof(float) * plane * (size_t)r->n_img);
        if (r->n_img && r->video) memset(frames + k, 1, (size_t)r->n_img);
        k += r->n_img;
        if (sizes && r->n_images) memcpy(sizes + 2 * n_sz, r->sizes, sizeof(int64_t) * 2 * (size_t)r->n_images);
        n_sz += r->n_images;
        slots[i] = r->slot;
    }
    llava_batch b;
    char err[512];
    int rc = sizes ? llava_batch_from_hf_anyres(&b, &e->m, ids, mask, NULL, n, S, pix, n_images, sizes)
                   : llava_batch_from_hf_frames(&b, &e->m, ids, mask, NULL, n, S, pix, n_img, isz, isz, frames);
    free(sizes);
    free(frames);
    free(ids);
    free(mask);
    free(pix);
    if (rc == 0) {
        rc = llava_infer_pass(&e->m, &e->kv, &b, slots, e->logits);
        llava_batch_free(&b);
    }
    free(slots);
    if (rc != 0) {
        snprintf(err, sizeof err, "prefill: %s", llava_errmsg());
        fail_running(e, from, err);
        return;
    }
    pthread_mutex_lock(&e->mu);
    e->stats.prefill_passes++;
    pthread_mutex_unlock(&e->mu);
    const float *rows = e->logits;
    int V = e->info.vocab_size;
    req **batch = xmalloc(sizeof(req *) * (size_t)n);
    memcpy(batch, e->running + from, sizeof(req *) * (size_t)n);
    for (int i = 0; i < n; i++) {
        req *r = batch[i];
        free(r->pixels);  // the cache holds what the image gave
        r->pixels = NULL;
        int tok;
        finish_reason why;
        if (choose(e, r, rows + (size_t)i * V, &tok, err, sizeof err) != 0) {
            int at = 0;
            while (e->running[at] != r) at++;
            running_remove(e, at);
            req_finish(e, r, FINISH_ERROR, err);
        } else if (req_take(e, r, tok, &why)) {
            int at = 0;
            while (e->running[at] != r) at++;
            running_remove(e, at);
            req_finish(e, r, why, why == FINISH_ERROR ? llava_errmsg() : NULL);
        }
    }
    free(batch);
}

// One decode pass over every running sequence: each feeds its last token.
static void decode(llava_engine *e) {
    int n = e->n_running;
    if (n == 0) return;
    llava_batch b;
    memset(&b, 0, sizeof b);
    b.T = n;
    b.n_seq = n;
    b.cu_seqlens = xmalloc(sizeof(int32_t) * (size_t)(n + 1));
    b.ids = xmalloc(sizeof(int32_t) * (size_t)n);
    b.targets = xmalloc(sizeof(int32_t) * (size_t)n);
    b.pos = xmalloc(sizeof(int32_t) * (size_t)n);
    int *slots = xmalloc(sizeof(int) * (size_t)n);
    char err[512];
    int rc = 0;
    for (int i = 0; i < n; i++) {
        req *r = e->running[i];
        b.cu_seqlens[i] = i;
        b.ids[i] = r->gen[r->n_gen - 1];
        b.targets[i] = -100;
        b.pos[i] = e->kv.len[r->slot];
        slots[i] = r->slot;
        if (rc == 0 && llava_kv_grow(&e->kv, r->slot, e->kv.len[r->slot] + 1) != 0) rc = -1;
    }
    b.cu_seqlens[n] = n;
    if (rc == 0) rc = llava_infer_pass(&e->m, &e->kv, &b, slots, e->logits);
    llava_batch_free(&b);
    free(slots);
    if (rc != 0) {
        snprintf(err, sizeof err, "decode: %s", llava_errmsg());
        fail_running(e, 0, err);
        return;
    }
    pthread_mutex_lock(&e->mu);
    e->stats.decode_passes++;
    pthread_mutex_unlock(&e->mu);
    int V = e->info.vocab_size;
    req **batch = xmalloc(sizeof(req *) * (size_t)n);
    memcpy(batch, e->running, sizeof(req *) * (size_t)n);
    for (int i = 0; i < n; i++) {
        req *r = batch[i];
        int tok;
        finish_reason why;
        int end = 0;
        const char *msg = NULL;
        if (choose(e, r, e->logits + (size_t)i * V, &tok, err, sizeof err) != 0) {
            end = 1;
            why = FINISH_ERROR;
            msg = err;
        } else if (req_take(e, r, tok, &why)) {
            end = 1;
            msg = why == FINISH_ERROR ? llava_errmsg() : NULL;
        }
        if (end) {
            int at = 0;
            while (e->running[at] != r) at++;
            running_remove(e, at);
            req_finish(e, r, why, msg);
        }
    }
    free(batch);
}

// One step: cancels, admissions, their prefill, one decode pass.
static void step(llava_engine *e) {
    // Cancelled requests end first, queued or running.
    pthread_mutex_lock(&e->mu);
    req *cancelled = NULL, **pp = &e->queue_head, *prev = NULL;
    while (*pp) {
        req *r = *pp;
        if (r->cancel) {
            *pp = r->next;
            if (e->queue_tail == r) e->queue_tail = prev;
            e->n_queued--;
            r->next = cancelled;
            cancelled = r;
        } else {
            prev = r;
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&e->mu);
    while (cancelled) {
        req *r = cancelled;
        cancelled = r->next;
        req_finish(e, r, FINISH_CANCELLED, NULL);
    }
    for (int i = 0; i < e->n_running;) {
        req *r = e->running[i];
        pthread_mutex_lock(&e->mu);
        int c = r->cancel;
        pthread_mutex_unlock(&e->mu);
        if (c) {
            running_remove(e, i);
            req_finish(e, r, FINISH_CANCELLED, NULL);
        } else i++;
    }
    // Take queued requests in arrival order while a slot, their promised blocks and the prefill
    // budget allow (the first always fits the prefill budget: max_prefill >= max_context).
    int from = e->n_running, tokens = 0;
    pthread_mutex_lock(&e->mu);
    while (e->queue_head && e->n_running < e->info.max_batch) {
        req *r = e->queue_head;
        if (e->promised + r->promised > e->kv.n_blocks) break;
        if (tokens && tokens + r->n_prompt > e->max_prefill) break;
        int slot = llava_kv_open(&e->kv);
        if (slot < 0) break;
        if (llava_kv_grow(&e->kv, slot, r->n_prompt) != 0) {
            llava_kv_close(&e->kv, slot);
            break;
        }
        r->slot = slot;
        e->promised += r->promised;
        tokens += r->n_prompt;
        e->queue_head = r->next;
        if (!e->queue_head) e->queue_tail = NULL;
        r->next = NULL;
        e->n_queued--;
        e->running[e->n_running++] = r;
    }
    pthread_mutex_unlock(&e->mu);
    prefill(e, from);
    // The sequences that just joined decode in this step too: their first token is chosen, their
    // second comes from this pass.
    decode(e);
    pthread_mutex_lock(&e->mu);
    e->kv_free = e->kv.n_free;
    pthread_mutex_unlock(&e->mu);
}

int engine_run_until_idle(llava_engine *e) {
    for (;;) {
        pthread_mutex_lock(&e->mu);
        int idle = !e->queue_head && e->n_running == 0;
        pthread_mutex_unlock(&e->mu);
        if (idle) return 0;
        step(e);
    }
}

int engine_run(llava_engine *e) {
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->queue_head && e->n_running == 0 && !e->closed) pthread_cond_wait(&e->cv, &e->mu);
        int done = e->closed && !e->queue_head && e->n_running == 0;
        pthread_mutex_unlock(&e->mu);
        if (done) return 0;
        step(e);
    }
}
