// The generation engine (infer/engine.h) on the golden tiny models (transformers-made weights) with
// the LLaMA tokenizer for text (its eos, 2, is the goldens'; ids below 300 decode to byte pieces and
// a few merges, which exercises the held-back partial characters).
//
//   - greedy tokens equal transformers 4.46.3's generate(do_sample=False) (tiny64/generate.json,
//     tools/reference/make_generate_golden.py) for each golden prompt alone, all together, one at a
//     time (max_batch 1), joining a running batch as others leave (max_batch 2), in reversed order,
//     and with a cache so small that requests wait for blocks;
//   - the same for six prompts of 3 to 46 tokens, three with an image, on tiny64, tiny128 and the
//     grouped-query tinygqa (<cfg>/generate_batch.json, tools/reference/make_generate_batch_golden.py):
//     each alone and all six in one batch give transformers' tokens for each prompt generated alone
//     (16 each). (transformers' own left-padded batch of them is not the reference: 4.46.3 decodes
//     padded LLaVA batches through its legacy path, which attends to the padding; the golden's
//     `new_batched_fixed`, with that path off, equals its single runs, and so do we);
//   - stopping at eos against transformers' generate (<cfg>/generate_eos.json,
//     tools/reference/make_generate_eos_golden.py): with eos set to a token the answers emit, each
//     prompt alone and all six in one batch stop where generate stops, eos included, "stop";
//   - a template's stop_token ends an answer where the unstopped answer has it, as eos does;
//   - the cached engine equals the no-cache path (llava_generate_greedy: a full pass per token),
//     token for token, on prompts with and without an image;
//   - seeded sampling: the same seed gives the same tokens, alone or in a batch; another seed differs;
//   - text: every request's on_text pieces add up to its result text; a stop string ends the answer
//     right before it; eos is not part of the text;
//   - requests the engine must refuse (too long, over the context, image tokens without an image,
//     after shutdown) get ENGINE_BAD_REQUEST / ENGINE_CLOSED and a message; a cancelled request ends
//     FINISH_CANCELLED; the loop on its own thread (engine_run) drains and returns after shutdown;
//   - a video's frames behind one <image>: the one-image prompt with frames x tokens_per_image image tokens, each
//     frame's pixels, cached = no-cache; frames spread over messages or none refused;
//   - afterwards every cache block is free.
#include <cjson/cJSON.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "data/tokenizer.h"
#include "gen_golden.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "model/io/safetensors.h"
#include "model/llava.h"

#define DIR "tests/data/golden/model/tiny64"
#define TOK "tests/data/tokenizer/llama.model"
enum { MAXR = 16, MAXT = 64 };

// What a test keeps of each request.
typedef struct {
    int done, finish, n_tok, prompt_tokens;
    int32_t tok[MAXT];
    char text[1024], streamed[1024];
    size_t text_len, streamed_len;
    char error[256];
} outcome;

typedef struct {
    outcome o[MAXR];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_done;
} board;

static board B;

static void on_text(void *ctx, int id, const char *t, size_t n) {
    outcome *o = &((board *)ctx)->o[id % MAXR];
    if (o->streamed_len + n < sizeof o->streamed) memcpy(o->streamed + o->streamed_len, t, n);
    o->streamed_len += n;
}

static void on_done(void *ctx, const engine_result *r) {
    board *b = ctx;
    outcome *o = &b->o[r->id % MAXR];
    pthread_mutex_lock(&b->mu);
    o->done = 1;
    o->finish = r->finish;
    o->n_tok = r->n_tokens < MAXT ? r->n_tokens : MAXT;
    memcpy(o->tok, r->tokens, sizeof(int32_t) * (size_t)o->n_tok);
    o->text_len = r->text_len;
    if (r->text_len < sizeof o->text) memcpy(o->text, r->text, r->text_len);
    o->prompt_tokens = r->prompt_tokens;
    snprintf(o->error, sizeof o->error, "%s", r->error ? r->error : "");
    b->n_done++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static const engine_callbacks CB = {on_text, on_done, &B};

static void board_reset(void) { memset(B.o, 0, sizeof B.o), B.n_done = 0; }

// The golden prompts and what transformers made.
typedef struct {
    int n_rows, max_new, eos;
    int64_t prompt[3][64];
    int n_prompt[3], image[3];
    int32_t want[3][16];
    int n_want[3];
    float *pix;
    int H;
} golden;

static int golden_load(golden *g) {
    size_t len;
    char *text = read_file(DIR "/generate.json", 1 << 20, &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!root) return llava_fail("%s/generate.json unreadable", DIR);
    g->max_new = cJSON_GetObjectItem(root, "max_new_tokens")->valueint;
    g->eos = cJSON_GetObjectItem(root, "eos")->valueint;
    const cJSON *row;
    g->n_rows = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(root, "rows")) {
        int r = g->n_rows++;
        const cJSON *p = cJSON_GetObjectItem(row, "prompt"), *nw = cJSON_GetObjectItem(row, "new");
        g->n_prompt[r] = cJSON_GetArraySize(p);
        for (int i = 0; i < g->n_prompt[r]; i++) g->prompt[r][i] = (int64_t)cJSON_GetArrayItem(p, i)->valuedouble;
        g->n_want[r] = cJSON_GetArraySize(nw);
        for (int i = 0; i < g->n_want[r]; i++) g->want[r][i] = (int32_t)cJSON_GetArrayItem(nw, i)->valuedouble;
        g->image[r] = cJSON_GetObjectItem(row, "image")->valueint;
    }
    cJSON_Delete(root);
    st_file in;
    if (st_open(&in, DIR "/inputs.safetensors") != 0) return -1;
    const st_tensor *pt = st_find(&in, "pixel_values");
    g->pix = xmalloc(sizeof(float) * pt->numel);
    st_tensor_to_f32(&in, pt, g->pix);
    g->H = (int)pt->shape[2];
    st_close(&in);
    return 0;
}

static const float *golden_pix(const golden *g, int r) {
    return g->image[r] >= 0 ? g->pix + (size_t)g->image[r] * 3 * g->H * g->H : NULL;
}

static llava_engine *open_engine_ctx(int max_batch, int kv_tokens, int max_context) {
    engine_options o = {.model_dir = DIR "/model",
                        .tokenizer = TOK,
                        .max_batch = max_batch,
                        .kv_tokens = kv_tokens,
                        .max_context = max_context};
    llava_engine *e = engine_open(&o);
    CHECK(e != NULL, "engine_open: %s", llava_errmsg());
    return e;
}

static llava_engine *open_engine(int max_batch, int kv_tokens) { return open_engine_ctx(max_batch, kv_tokens, 0); }

// Submits the golden rows in `order` and runs until idle; ids[r] receives row r's request id.
static void run_golden(llava_engine *e, const golden *g, const int *order, int n, int *ids) {
    gen_params p;
    gen_params_default(&p);
    p.max_new_tokens = g->max_new;
    char err[256];
    for (int k = 0; k < n; k++) {
        int r = order[k];
        ids[r] = engine_submit_ids(e, g->prompt[r], g->n_prompt[r], golden_pix(g, r), g->image[r] >= 0, &p, &CB, err,
                                   sizeof err);
        CHECK(ids[r] >= 0, "submit row %d: %s", r, err);
    }
    CHECK(engine_run_until_idle(e) == 0, "run");
}

static int same_as_golden(const golden *g, int r, const outcome *o) {
    if (!o->done || o->n_tok != g->n_want[r]) return 0;
    return memcmp(o->tok, g->want[r], sizeof(int32_t) * (size_t)o->n_tok) == 0;
}

static void check_golden(const golden *g, const char *how, int max_batch, int kv_tokens, int ctx, const int *order) {
    llava_engine *e = open_engine_ctx(max_batch, kv_tokens, ctx);
    if (!e) return;
    board_reset();
    int ids[3];
    run_golden(e, g, order, g->n_rows, ids);
    int ok = 0;
    for (int r = 0; r < g->n_rows; r++) {
        const outcome *o = &B.o[ids[r] % MAXR];
        int same = same_as_golden(g, r, o);
        ok += same;
        CHECK(same, "%s: row %d: %d tokens, not transformers' %d (first %d vs %d)", how, r, o->n_tok, g->n_want[r],
              o->n_tok ? o->tok[0] : -1, g->want[r][0]);
        CHECK(o->streamed_len == o->text_len && memcmp(o->streamed, o->text, o->text_len) == 0,
              "%s: row %d: streamed text (%zu bytes) is not the result text (%zu)", how, r, o->streamed_len,
              o->text_len);
        int eos_end = o->n_tok && o->tok[o->n_tok - 1] == g->eos;
        CHECK(o->finish == (eos_end ? FINISH_STOP : FINISH_LENGTH), "%s: row %d finished %s", how, r,
              finish_reason_name(o->finish));
    }
    engine_stats s;
    engine_get_stats(e, &s);
    CHECK(s.kv_blocks_free == s.kv_blocks && s.running == 0 && s.queued == 0, "%s: %d of %d blocks free, %d running",
          how, s.kv_blocks_free, s.kv_blocks, s.running);
    printf("%-44s %d of %d rows identical to transformers (%llu prefill, %llu decode passes)\n", how, ok, g->n_rows,
           (unsigned long long)s.prefill_passes, (unsigned long long)s.decode_passes);
    engine_close(e);
}

// The cached engine against llava_generate_greedy (a full pass per token) on fresh prompts.
static void check_no_cache(const golden *g) {
    llava_model m;
    if (llava_model_load(&m, DIR "/model", test_cpu()) != 0) {
        CHECK(0, "%s", llava_errmsg());
        return;
    }
    llava_backend_set_batch_invariant(test_cpu(), 1);
    llava_engine *e = open_engine(8, 0);
    if (!e) return;
    int tpi = m.tokens_per_image, img = m.cfg.glue.image_token_index, same = 0, total = 0;
    board_reset();
    int ids[4];
    int64_t prompts[4][64];
    int n[4];
    int32_t ref[4][24];
    int n_ref[4];
    for (int q = 0; q < 4; q++) {
        // q 0, 2: an image after a few tokens; 1, 3: text only. Lengths 9 + 16 features, 5, 21, 30.
        int k = 0, text = (int[]){9, 5, 21, 30}[q];
        prompts[q][k++] = 1;
        for (int i = 0; i < text; i++) {
            if (q % 2 == 0 && i == 3)
                for (int f = 0; f < tpi; f++) prompts[q][k++] = img;
            prompts[q][k++] = 3 + (37 * (q + 1) + 11 * i) % 290;
        }
        n[q] = k;
        int64_t out[24];
        const float *pix = q % 2 == 0 ? g->pix : NULL;
        n_ref[q] = llava_generate_greedy(&m, prompts[q], k, pix, q % 2 == 0, g->H, g->H, 24, -1, out);
        for (int i = 0; i < n_ref[q]; i++) ref[q][i] = (int32_t)out[i];
        gen_params p;
        gen_params_default(&p);
        p.max_new_tokens = 24;
        p.ignore_eos = 1;
        char err[256];
        ids[q] = engine_submit_ids(e, prompts[q], k, pix, q % 2 == 0, &p, &CB, err, sizeof err);
        CHECK(ids[q] >= 0, "%s", err);
    }
    engine_run_until_idle(e);
    for (int q = 0; q < 4; q++) {
        const outcome *o = &B.o[ids[q] % MAXR];
        int eq = o->n_tok == n_ref[q] && memcmp(o->tok, ref[q], sizeof(int32_t) * (size_t)n_ref[q]) == 0;
        CHECK(eq, "prompt %d (%d tokens): the cached engine's %d tokens differ from the no-cache path's %d", q, n[q],
              o->n_tok, n_ref[q]);
        same += eq;
        total++;
    }
    printf("KV cache vs no cache (a full pass per token): %d of %d prompts identical, 24 tokens each\n", same, total);
    engine_close(e);
    llava_model_free(&m);
}

// Seeded sampling: reproducible, independent of the batch, different for another seed.
static void check_sampling(const golden *g) {
    gen_params p;
    gen_params_default(&p);
    p.max_new_tokens = 16;
    p.ignore_eos = 1;
    p.sample = (sample_params){0.9f, 40, 0.95f};
    p.has_seed = 1;
    char err[256];
    int32_t first[16];
    int runs = 0, same = 0;
    for (int how = 0; how < 3; how++) {
        llava_engine *e = open_engine(4, 0);
        if (!e) return;
        board_reset();
        gen_params q = p;
        q.seed = how == 2 ? 4321 : 1234;
        if (how == 1)  // with the other rows beside it
            for (int r = 1; r < 3; r++)
                engine_submit_ids(e, g->prompt[r], g->n_prompt[r], golden_pix(g, r), g->image[r] >= 0, &q, &CB, err,
                                  sizeof err);
        int id = engine_submit_ids(e, g->prompt[0], g->n_prompt[0], golden_pix(g, 0), 1, &q, &CB, err, sizeof err);
        engine_run_until_idle(e);
        const outcome *o = &B.o[id % MAXR];
        CHECK(o->n_tok == 16, "sampling run %d: %d tokens", how, o->n_tok);
        if (how == 0) memcpy(first, o->tok, sizeof first);
        else if (how == 1) {
            CHECK(memcmp(first, o->tok, sizeof first) == 0, "seed 1234 in a batch gave other tokens than alone");
            same += memcmp(first, o->tok, sizeof first) == 0;
        } else {
            CHECK(memcmp(first, o->tok, sizeof first) != 0, "seeds 1234 and 4321 gave the same 16 tokens");
        }
        runs++;
        engine_close(e);
    }
    printf("seeded sampling (T 0.9, top-k 40, top-p 0.95): alone and batched %s; another seed differs\n",
           same ? "identical" : "DIFFERENT");
}

// Stop strings: the answer ends right before the stop; streaming holds back its possible start.
static void check_stop(const golden *g) {
    llava_engine *e = open_engine(4, 0);
    if (!e) return;
    gen_params p;
    gen_params_default(&p);
    p.max_new_tokens = 40;
    p.ignore_eos = 1;
    char err[256];
    board_reset();
    int id = engine_submit_ids(e, g->prompt[1], g->n_prompt[1], NULL, 0, &p, &CB, err, sizeof err);
    engine_run_until_idle(e);
    outcome full = B.o[id % MAXR];
    CHECK(full.text_len > 8, "the answer is %zu bytes", full.text_len);
    // A stop string from the middle of the answer: 2 bytes of ASCII if there are any, else 3 bytes.
    size_t at = full.text_len / 2, L = 3;
    for (size_t i = 2; i + 2 < full.text_len; i++)
        if (full.text[i] > 32 && full.text[i] < 127 && full.text[i + 1] > 32 && full.text[i + 1] < 127) {
            at = i;
            L = 2;
            break;
        }
    char stop[4] = {0};
    memcpy(stop, full.text + at, L);
    size_t first = (size_t)((char *)memmem(full.text, full.text_len, stop, L) - full.text);
    const char *stops[] = {"never in any answer \x01", stop};
    p.stop = stops;
    p.n_stop = 2;
    board_reset();
    id = engine_submit_ids(e, g->prompt[1], g->n_prompt[1], NULL, 0, &p, &CB, err, sizeof err);
    engine_run_until_idle(e);
    const outcome *o = &B.o[id % MAXR];
    CHECK(o->finish == FINISH_STOP, "finish %s", finish_reason_name(o->finish));
    CHECK(o->text_len == first && memcmp(o->text, full.text, first) == 0,
          "with stop \"%s\" the answer is %zu bytes; the unstopped answer has it at byte %zu", stop, o->text_len,
          first);
    CHECK(o->streamed_len == o->text_len && memcmp(o->streamed, o->text, o->text_len) == 0,
          "streamed %zu bytes, result %zu", o->streamed_len, o->text_len);
    printf("stop string at byte %zu of a %zu-byte answer: answer cut there, streamed text identical\n", first,
           full.text_len);
    engine_close(e);
}

// A template's stop_token (Llama-3's <|eot_id|> beside a base model's eos) ends an answer as eos does: at its first
// occurrence, FINISH_STOP, the token the last one generated and not in the text.
static void check_stop_token(const golden *g) {
    llava_engine *e = open_engine(4, 0);
    if (!e) return;
    gen_params p;
    gen_params_default(&p);
    p.max_new_tokens = 24;
    char err[256];
    board_reset();
    int id = engine_submit_ids(e, g->prompt[1], g->n_prompt[1], NULL, 0, &p, &CB, err, sizeof err);
    engine_run_until_idle(e);
    outcome full = B.o[id % MAXR];
    engine_close(e);
    tokenizer *t = tok_load(TOK);
    // A token of the answer, first seen at position k >= 2, whose piece is letters (and "▁"): the stop token.
    int k = -1;
    for (int i = 2; i < full.n_tok && k < 0 && t; i++) {
        size_t pl = 0;
        const char *pc = tok_id_to_piece(t, full.tok[i], &pl);
        int plain = pc && pl > 0 && tok_piece_type(t, full.tok[i]) == TOK_NORMAL;
        for (size_t c = 0; plain && c < pl; c++) plain = (unsigned char)pc[c] >= 0x80 || isalpha((unsigned char)pc[c]);
        for (int j = 0; plain && j < i; j++) plain = full.tok[j] != full.tok[i];
        if (plain) k = i;
    }
    CHECK(k > 0, "no token of the %d-token answer can be the stop token", full.n_tok);
    if (k > 0) {
        size_t pl = 0;
        const char *pc = tok_id_to_piece(t, full.tok[k], &pl);
        char *piece = xasprintf("%.*s", (int)pl, pc), *dir = check_tmpdir(), *path = path_join(dir, "stop.json");
        cJSON *j = cJSON_Parse(
            "{\"name\": \"stop_test\", \"system\": \"S\", \"roles\": [\"USER\", \"ASSISTANT\"], \"prefix\": \"{system} "
            "\", "
            "\"turn\": [\"{role}: {message} \", \"{role}: {message}</s>\"], \"empty_turn\": [\"{role}:\", "
            "\"{role}:\"], "
            "\"round_sep\": \"</s>\", \"answer_sep\": \" ASSISTANT: \", \"instr_trim\": 2}");
        cJSON_AddStringToObject(j, "stop_token", piece);
        char *js = cJSON_Print(j);
        CHECK(write_file_atomic(path, js, strlen(js)) == 0, "%s", llava_errmsg());
        engine_options o = {.model_dir = DIR "/model", .tokenizer = TOK, .max_batch = 4, .template_name = path};
        e = engine_open(&o);
        CHECK(e != NULL, "engine_open with a stop_token template: %s", llava_errmsg());
        if (e) {
            board_reset();
            id = engine_submit_ids(e, g->prompt[1], g->n_prompt[1], NULL, 0, &p, &CB, err, sizeof err);
            engine_run_until_idle(e);
            const outcome *s = &B.o[id % MAXR];
            char *want = NULL;
            size_t wl = 0;
            tok_decode(t, full.tok, (size_t)k, &want, &wl);
            CHECK(s->finish == FINISH_STOP && s->n_tok == k + 1 && s->tok[k] == full.tok[k] &&
                      !memcmp(s->tok, full.tok, sizeof(int32_t) * (size_t)k),
                  "stop token %d (\"%s\"): %d tokens, finish %s; the answer has it at %d", full.tok[k], piece, s->n_tok,
                  finish_reason_name(s->finish), k);
            CHECK(s->text_len == wl && !memcmp(s->text, want, wl), "the text is the %d tokens before the stop token",
                  k);
            printf("stop token %d (\"%s\") of the template: the answer ends at token %d of %d, finish stop\n",
                   full.tok[k], piece, k + 1, full.n_tok);
            free(want);
            engine_close(e);
        }
        cJSON_Delete(j);
        free(js), free(piece), free(path), free(dir);
    }
    tok_free(t);
}

// <cfg>/generate_batch.json: six prompts, transformers' tokens for each generated alone.
static void check_batch_golden(const char *cfg) {
    gen_golden gg;
    if (gen_golden_load(cfg, &gg) != 0) {
        CHECK(0, "%s", llava_errmsg());
        return;
    }
    cJSON *root = gg.root;
    int max_new = cJSON_GetObjectItem(root, "max_new_tokens")->valueint;
    const cJSON *prompts = cJSON_GetObjectItem(root, "prompts");
    int np = cJSON_GetArraySize(prompts);
    char dir[256];
    snprintf(dir, sizeof dir, "tests/data/golden/model/%s/model", cfg);
    int shortest = 1 << 30, longest = 0, with_image = 0;
    for (int k = 0; k < np; k++) {
        const cJSON *pr = cJSON_GetArrayItem(prompts, k);
        int n = cJSON_GetArraySize(cJSON_GetObjectItem(pr, "ids"));
        shortest = n < shortest ? n : shortest;
        longest = n > longest ? n : longest;
        with_image += gen_golden_pixels(&gg, pr) != NULL;
    }
    printf("%-8s %d prompts of %d-%d tokens, %d with an image\n", cfg, np, shortest, longest, with_image);
    for (int together = 0; together < 2; together++) {
        engine_options o = {.model_dir = dir, .tokenizer = TOK, .max_batch = together ? 8 : 1};
        llava_engine *e = engine_open(&o);
        CHECK(e != NULL, "%s: %s", cfg, llava_errmsg());
        if (!e) break;
        board_reset();
        gen_params p;
        gen_params_default(&p);
        p.max_new_tokens = max_new;
        int ids[8];
        char err[256];
        for (int k = 0; k < np && k < 8; k++) {
            const cJSON *pr = cJSON_GetArrayItem(prompts, k), *iv = cJSON_GetObjectItem(pr, "ids");
            int n = cJSON_GetArraySize(iv);
            const float *pix = gen_golden_pixels(&gg, pr);
            int64_t tok[128];
            for (int i = 0; i < n && i < 128; i++) tok[i] = (int64_t)cJSON_GetArrayItem(iv, i)->valuedouble;
            ids[k] = engine_submit_ids(e, tok, n, pix, pix != NULL, &p, &CB, err, sizeof err);
            CHECK(ids[k] >= 0, "%s prompt %d: %s", cfg, k, err);
        }
        engine_run_until_idle(e);
        int same = 0;
        for (int k = 0; k < np && k < 8; k++) {
            const cJSON *want = cJSON_GetObjectItem(cJSON_GetArrayItem(prompts, k), "new_single");
            const outcome *out = &B.o[ids[k] % MAXR];
            int eq = out->n_tok == cJSON_GetArraySize(want);
            for (int i = 0; eq && i < out->n_tok; i++)
                eq = out->tok[i] == (int)cJSON_GetArrayItem(want, i)->valuedouble;
            CHECK(eq, "%s prompt %d (%s): %d tokens differ from transformers' %d", cfg, k,
                  together ? "in one batch" : "alone", out->n_tok, cJSON_GetArraySize(want));
            same += eq;
        }
        printf("%-8s six prompts %-12s %d of %d identical to transformers' (16 tokens each)\n", cfg,
               together ? "in one batch" : "each alone", same, np);
        engine_close(e);
    }
    gen_golden_free(&gg);
}

// <cfg>/generate_eos.json (tools/reference/make_generate_eos_golden.py): the same six prompts with the
// eos id set to a token the greedy answers do emit (the 5th new token of an image prompt), where
// transformers' generate stops each row at its first eos (and pads it in a batch). The engine's eos
// is the model's when it has no tokenizer (a tokenizer's would be 2), so the test loads the model,
// sets its eos_token_id and opens the engine over it without a tokenizer. Each prompt alone and all
// six in one batch: the tokens equal transformers' up to and including eos (its batched row, whose
// padding follows the eos, cut there, equals them too), a row that emitted eos finishes "stop" and
// the others "length" after 16. Planted in a scratch copy of infer/engine.c, each fails it: eos not
// checked (every stopping row runs on to 16 tokens, "length"); the eos left out of the tokens (one
// short); stopping one token after eos; eos finishing "length". No other check here saw any of
// them: no answer of the other goldens emits eos 2.
static void check_eos_golden(const char *cfg) {
    gen_golden gg;
    if (gen_golden_load(cfg, &gg) != 0) {
        CHECK(0, "%s", llava_errmsg());
        return;
    }
    char path[256], dir[256];
    snprintf(path, sizeof path, "tests/data/golden/model/%s/generate_eos.json", cfg);
    snprintf(dir, sizeof dir, "tests/data/golden/model/%s/model", cfg);
    size_t len;
    char *text = read_file(path, 1 << 20, &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    CHECK(root != NULL, "%s: missing or not JSON", path);
    if (!root) {
        gen_golden_free(&gg);
        return;
    }
    int eos = cJSON_GetObjectItem(root, "eos")->valueint,
        max_new = cJSON_GetObjectItem(root, "max_new_tokens")->valueint;
    const cJSON *rows = cJSON_GetObjectItem(root, "prompts"), *prompts = cJSON_GetObjectItem(gg.root, "prompts");
    int np = cJSON_GetArraySize(rows), n_stop = 0;
    CHECK(np == cJSON_GetArraySize(prompts) && np <= 8, "%s: %d rows for %d prompts", cfg, np,
          cJSON_GetArraySize(prompts));
    if (np > 8) np = 8;
    for (int together = 0; together < 2; together++) {
        llava_backend *be = llava_backend_open("cpu", NULL);
        llava_model m;
        if (!be || llava_model_load(&m, dir, be) != 0) {
            CHECK(0, "%s: %s", cfg, llava_errmsg());
            if (be) llava_backend_close(be);
            break;
        }
        CHECK(m.cfg.text.eos_token_id != eos, "%s: the model's own eos is already %d", cfg, eos);
        m.cfg.text.eos_token_id = eos;
        engine_options o = {.max_batch = together ? 8 : 1};
        llava_engine *e = engine_open_model(&o, &m, NULL);
        CHECK(e != NULL && engine_get_info(e)->eos == eos, "%s: engine over the model with eos %d: %s", cfg, eos,
              e ? "another eos" : llava_errmsg());
        if (!e) {
            llava_model_free(&m);
            llava_backend_close(be);
            break;
        }
        board_reset();
        gen_params p;
        gen_params_default(&p);
        p.max_new_tokens = max_new;
        int ids[8];
        char err[256];
        for (int k = 0; k < np; k++) {
            const cJSON *pr = cJSON_GetArrayItem(prompts, k), *iv = cJSON_GetObjectItem(pr, "ids");
            int n = cJSON_GetArraySize(iv);
            const float *pix = gen_golden_pixels(&gg, pr);
            int64_t tok[128];
            for (int i = 0; i < n && i < 128; i++) tok[i] = (int64_t)cJSON_GetArrayItem(iv, i)->valuedouble;
            ids[k] = engine_submit_ids(e, tok, n, pix, pix != NULL, &p, &CB, err, sizeof err);
            CHECK(ids[k] >= 0, "%s prompt %d: %s", cfg, k, err);
        }
        engine_run_until_idle(e);
        int same = 0;
        n_stop = 0;
        for (int k = 0; k < np; k++) {
            const cJSON *row = cJSON_GetArrayItem(rows, k), *want = cJSON_GetObjectItem(row, "new_single"),
                        *hf_row = cJSON_GetObjectItem(row, "batched_row");
            int stops = cJSON_IsTrue(cJSON_GetObjectItem(row, "stops_at_eos")), n_want = cJSON_GetArraySize(want);
            const outcome *out = &B.o[ids[k] % MAXR];
            int eq = out->done && out->n_tok == n_want;
            for (int i = 0; eq && i < out->n_tok; i++)
                eq = out->tok[i] == (int)cJSON_GetArrayItem(want, i)->valuedouble &&
                     out->tok[i] == (int)cJSON_GetArrayItem(hf_row, i)->valuedouble;
            int ends_eos = out->n_tok > 0 && out->tok[out->n_tok - 1] == eos;
            CHECK(eq, "%s eos %d, prompt %d (%s): %d tokens (last %d), transformers' %d (last %d)", cfg, eos, k,
                  together ? "in one batch" : "alone", out->n_tok, out->n_tok ? out->tok[out->n_tok - 1] : -1, n_want,
                  n_want ? (int)cJSON_GetArrayItem(want, n_want - 1)->valuedouble : -1);
            CHECK(stops == ends_eos && (stops ? n_want <= max_new : n_want == max_new),
                  "%s prompt %d: the golden row stops at eos: %d, here %d", cfg, k, stops, ends_eos);
            CHECK(out->finish == (stops ? FINISH_STOP : FINISH_LENGTH),
                  "%s eos %d, prompt %d (%s): finished %s, not %s", cfg, eos, k, together ? "in one batch" : "alone",
                  finish_reason_name(out->finish), stops ? "stop" : "length");
            same += eq && out->finish == (stops ? FINISH_STOP : FINISH_LENGTH);
            n_stop += stops;
        }
        printf("%-8s eos %-3d %-12s %d of %d prompts as transformers' generate (%d stop at eos)\n", cfg, eos,
               together ? "in one batch" : "each alone", same, np, n_stop);
        engine_close(e);
        llava_backend_close(be);
    }
    CHECK(n_stop > 0, "%s: no prompt stops at eos", cfg);
    cJSON_Delete(root);
    gen_golden_free(&gg);
}

static void *run_thread(void *arg) {
    static int rc;
    rc = engine_run(arg);
    return &rc;
}

// Refusals, cancel, and the server-style loop on its own thread.
static void check_requests(const golden *g) {
    llava_engine *e = open_engine(4, 0);
    if (!e) return;
    const engine_info *in = engine_get_info(e);
    CHECK(in->max_context == 128 && in->tokens_per_image == 16, "context %d, %d features per image", in->max_context,
          in->tokens_per_image);
    gen_params p;
    gen_params_default(&p);
    char err[256];
    int64_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = 5;
    CHECK(engine_submit_ids(e, ids, 128, NULL, 0, &p, &CB, err, sizeof err) == ENGINE_BAD_REQUEST, "128 tokens taken");
    CHECK(strstr(err, "the prompt is 128 tokens") != NULL, "%s", err);
    p.max_new_tokens = 100;
    CHECK(engine_submit_ids(e, ids, 40, NULL, 0, &p, &CB, err, sizeof err) == ENGINE_BAD_REQUEST, "over the context");
    CHECK(
        strstr(err, "max_tokens 100 with a prompt of 40 tokens exceeds the context of 128 tokens (at most 88") != NULL,
        "%s", err);
    p.max_new_tokens = 8;
    CHECK(engine_submit_ids(e, g->prompt[0], g->n_prompt[0], NULL, 0, &p, &CB, err, sizeof err) == ENGINE_BAD_REQUEST,
          "image tokens without an image taken");
    CHECK(strstr(err, "16 image tokens for 0 images") != NULL, "%s", err);
    p.sample.top_p = 0;
    CHECK(engine_submit_ids(e, ids, 4, NULL, 0, &p, &CB, err, sizeof err) == ENGINE_BAD_REQUEST, "top_p 0 taken");
    p.sample.top_p = 1;

    // The loop on its own thread: a long request cancelled, a short one answered, then shutdown.
    board_reset();
    pthread_t th;
    pthread_create(&th, NULL, run_thread, e);
    p.max_new_tokens = 80;
    p.ignore_eos = 1;
    int long_id = engine_submit_ids(e, ids, 20, NULL, 0, &p, &CB, err, sizeof err);
    p.max_new_tokens = 5;
    int short_id = engine_submit_ids(e, g->prompt[1], g->n_prompt[1], NULL, 0, &p, &CB, err, sizeof err);
    pthread_mutex_lock(&B.mu);
    while (!B.o[short_id % MAXR].done) pthread_cond_wait(&B.cv, &B.mu);
    pthread_mutex_unlock(&B.mu);
    engine_cancel(e, long_id);
    engine_shutdown(e);
    CHECK(engine_submit_ids(e, ids, 4, NULL, 0, &p, &CB, err, sizeof err) == ENGINE_CLOSED, "taken after shutdown");
    void *ret;
    pthread_join(th, &ret);
    CHECK(*(int *)ret == 0, "engine_run returned %d", *(int *)ret);
    const outcome *lo = &B.o[long_id % MAXR], *so = &B.o[short_id % MAXR];
    CHECK(lo->done && lo->finish == FINISH_CANCELLED && lo->n_tok < 80, "cancelled request: done %d, %s, %d tokens",
          lo->done, finish_reason_name(lo->finish), lo->n_tok);
    CHECK(so->done && so->finish == FINISH_LENGTH && so->n_tok == 5 && memcmp(so->tok, g->want[1], 5 * 4) == 0,
          "the short request: %s, %d tokens", finish_reason_name(so->finish), so->n_tok);
    engine_stats s;
    engine_get_stats(e, &s);
    CHECK(s.kv_blocks_free == s.kv_blocks, "%d of %d blocks free after shutdown", s.kv_blocks_free, s.kv_blocks);
    printf("refusals answered; cancel after %d tokens; engine_run drained and returned\n", lo->n_tok);
    engine_close(e);
}

// A video (engine_chat.video): its frames behind one "<image>\n". The prompt's text is a one-image chat's; its ids are
// that chat's with the one image's tokens_per_image image tokens become frames x tokens_per_image, one run in the same
// place; its pixels are each frame's own, in order; the cached answer on those inputs equals the no-cache path's.
// Refused: frames spread over two messages, a video without frames.
static void check_video(void) {
    enum { F = 3 };
    engine_options o = {.model_dir = DIR "/model", .tokenizer = TOK, .max_batch = 2, .max_images = F};
    llava_engine *e = engine_open(&o);
    CHECK(e != NULL, "engine_open: %s", llava_errmsg());
    if (!e) return;
    image_u8 fr[F];
    for (int f = 0; f < F; f++) {  // three different frames, 20 x 30
        fr[f] = (image_u8){.w = 30, .h = 20, .rgb = xmalloc(20 * 30 * 3)};
        for (int i = 0; i < 20 * 30 * 3; i++) fr[f].rgb[i] = (uint8_t)((i * (7 + 5 * f) + 40 * f) % 251);
    }
    const char *q = "What changed?";
    engine_message vm = {"user", q, strlen(q), F}, om = {"user", q, strlen(q), 1};
    engine_chat video = {&vm, 1, fr, F, 1}, one = {&om, 1, fr, 1, 0};
    char err[256];
    char *pv = engine_chat_prompt(e, &video, err, sizeof err), *po = engine_chat_prompt(e, &one, err, sizeof err);
    CHECK(pv && po && strcmp(pv, po) == 0, "a video's prompt text differs from a one-image chat's:\n%s\n%s", pv, po);
    int64_t *iv = NULL, *io = NULL;
    float *xv = NULL, *xo = NULL;
    int nv = 0, no = 0, tpi = engine_get_info(e)->tokens_per_image, img = -1;
    CHECK(engine_chat_inputs(e, &video, &iv, &nv, &xv, err, sizeof err) == ENGINE_OK, "video inputs: %s", err);
    CHECK(engine_chat_inputs(e, &one, &io, &no, &xo, err, sizeof err) == ENGINE_OK, "one-image inputs: %s", err);
    int at = -1, run = 0, same = iv && io && nv == no + (F - 1) * tpi;
    for (int i = 0; same && i < no; i++) {
        if (at < 0 && i + tpi <= no && io[i] == io[i + tpi - 1] && (i == 0 || io[i - 1] != io[i])) {
            int k = 0;
            while (k < tpi && io[i + k] == io[i]) k++;
            if (k == tpi) at = i, img = (int)io[i];
        }
        int j = at >= 0 && i >= at + tpi ? i + (F - 1) * tpi : i;  // past the image: shifted by the extra frames
        if (at >= 0 && i >= at && i < at + tpi) continue;
        same &= iv[j] == io[i];
    }
    for (int i = at; same && at >= 0 && i < at + F * tpi; i++) run += iv[i] == img;
    CHECK(same && at >= 0 && run == F * tpi, "video ids: %d tokens (one image: %d), image run %d of %d at %d", nv, no,
          run, F * tpi, at);
    int S = engine_get_info(e)->image_size, pix_same = xv != NULL;
    size_t plane = 3 * (size_t)S * S;
    for (int f = 0; f < F && pix_same; f++) {  // each frame alone, as a one-image chat
        engine_chat alone = {&om, 1, &fr[f], 1, 0};
        int64_t *ia = NULL;
        float *xa = NULL;
        int na = 0;
        pix_same = engine_chat_inputs(e, &alone, &ia, &na, &xa, err, sizeof err) == ENGINE_OK &&
                   memcmp(xa, xv + plane * (size_t)f, sizeof(float) * plane) == 0;
        free(ia), free(xa);
    }
    CHECK(pix_same, "the video's pixels are not its frames' own, in order");
    // The cached engine against the no-cache path on the video's inputs (its text ids folded into the tiny model's
    // vocabulary of 300: the LLaMA tokenizer's are larger).
    for (int i = 0; iv && i < nv; i++)
        if (iv[i] != img) iv[i] = 3 + iv[i] % 290;
    board_reset();
    gen_params p;
    gen_params_default(&p);
    p.max_new_tokens = 8;
    p.ignore_eos = 1;
    int id = iv ? engine_submit_ids(e, iv, nv, xv, F, &p, &CB, err, sizeof err) : -1;
    CHECK(id >= 0, "video submit: %s", err);
    engine_run_until_idle(e);
    int64_t out[8];
    int n_ref = iv ? llava_generate_greedy(engine_model(e), iv, nv, xv, F, S, S, 8, -1, out) : -1;
    const outcome *oc = id >= 0 ? &B.o[id % MAXR] : NULL;
    int eq = oc && oc->done && oc->n_tok == n_ref && n_ref == 8;
    for (int i = 0; eq && i < n_ref; i++) eq &= oc->tok[i] == (int32_t)out[i];
    CHECK(eq, "the video's cached answer (%d tokens) differs from the no-cache path's (%d)", oc ? oc->n_tok : -1,
          n_ref);
    // Refusals.
    engine_message split[3] = {{"user", q, strlen(q), 2}, {"assistant", "x", 1, 0}, {"user", q, strlen(q), 1}};
    engine_chat spread = {split, 3, fr, F, 1}, none = {&om, 1, NULL, 0, 1};
    om.n_images = 0;
    CHECK(engine_submit_chat(e, &spread, &p, &CB, err, sizeof err) == ENGINE_BAD_REQUEST &&
              strstr(err, "message 0 carries 2 of the video's 3 frames") != NULL,
          "frames over two messages: %s", err);
    CHECK(engine_submit_chat(e, &none, &p, &CB, err, sizeof err) == ENGINE_BAD_REQUEST &&
              strstr(err, "a video without frames") != NULL,
          "a video without frames: %s", err);
    printf(
        "a video of %d frames: the one-image prompt with %d image tokens in one run, each frame's pixels, the "
        "no-cache path's %d tokens; spread frames and no frames refused\n",
        F, run, n_ref);
    free(pv), free(po), free(iv), free(io), free(xv), free(xo);
    for (int f = 0; f < F; f++) image_free(&fr[f]);
    engine_close(e);
}

int main(void) {
    pthread_mutex_init(&B.mu, NULL);
    pthread_cond_init(&B.cv, NULL);
    golden g;
    if (golden_load(&g) != 0) {
        CHECK(0, "%s", llava_errmsg());
        return check_done();
    }
    int fwd[3] = {0, 1, 2}, rev[3] = {2, 1, 0};
    check_golden(&g, "each alone (max_batch 1)", 1, 0, 0, fwd);
    check_golden(&g, "all in one batch", 8, 0, 0, fwd);
    check_golden(&g, "all in one batch, reversed", 8, 0, 0, rev);
    check_golden(&g, "joining as others leave (max_batch 2)", 2, 0, 0, rev);
    // A cache of 48 tokens (3 blocks of 16) and a context of 48: a request promises blocks for its
    // prompt and 12 new tokens (3 for rows 0 and 2, 2 for row 1), so each waits for the blocks of
    // the one before it.
    check_golden(&g, "waiting for cache blocks (48 tokens)", 8, 48, 48, fwd);
    check_batch_golden("tiny64");
    check_batch_golden("tiny128");
    check_batch_golden("tinygqa");
    check_eos_golden("tiny64");
    check_eos_golden("tiny128");
    check_eos_golden("tinygqa");
    check_no_cache(&g);
    check_sampling(&g);
    check_stop(&g);
    check_stop_token(&g);
    check_requests(&g);
    check_video();
    free(g.pix);
    return check_done();
}
