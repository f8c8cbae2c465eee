// The generation engine: many requests at once over one model, continuously batched.
//
// A request is a conversation (or ready token ids) and its decoding parameters. Submitting it
// builds the prompt exactly as LLaVA-1.5's evaluation does (the conversation template, "<image>\n"
// before the text of a message that carries an image, tokenizer_image_token, the image
// preprocessed by the model's image_aspect_ratio), checks it against the context, and queues it;
// submit works on the caller's thread, so a bad request is answered at once.
//
// The engine's loop (engine_run*) takes queued requests into the running batch at every step: their
// prompts run once (prefill: one packed pass for all that join, all their images through the vision
// tower together) and fill the paged KV cache (model/llava.h); then every running sequence decodes
// its next token in one pass (attention_decode against its cache). A sequence leaves the batch when
// it ends (eos, a stop string, its token budget, a cancel) and its cache blocks go back to the pool at
// once. Each sequence's answer depends on its own prompt and parameters only, never on what runs
// beside it (on the CPU the arithmetic of a row does not depend on the other rows of a pass).
//
// Threads: engine_submit* and engine_cancel / engine_shutdown may be called from any thread; the
// loop runs on one thread (engine_run for a server, engine_run_until_idle for a command), and the
// callbacks are called on that thread, in order, and must not block for long.
#ifndef LLAVA_INFER_ENGINE_H
#define LLAVA_INFER_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"
#include "data/template.h"
#include "data/tokenizer.h"
#include "infer/sample.h"
#include "model/llava.h"

typedef struct llava_engine llava_engine;

typedef struct {
    const char *model_dir;       // a model folder (config.json + safetensors)
    const char *adapter;         // a LoRA adapter folder run unmerged on model_dir (model/io/peft.h); NULL: none
    const char *tokenizer;       // NULL: model_dir/tokenizer.model
    const char *device;          // "cpu" (NULL) or "cuda"
    const char *template_name;   // NULL: "vicuna_v1" (LLaVA-1.5's conv_mode); or a template JSON file
    const char *tokenizer_mode;  // NULL: the default; "legacy", "hf431", "hf437" (data/tokenizer.h)
    const char *aspect;          // "pad" or "square"; NULL: the model's image_aspect_ratio, else "pad"
    const char *model_id;        // the name answers carry (OpenAI's "model"); NULL: model_dir's last part
    int max_batch;               // sequences decoded together; 0: 64
    int max_context;             // prompt + answer tokens per sequence; 0: the LM's max_position_embeddings
    int max_prefill_tokens;      // prompt tokens per prefill pass; 0: 4096 (at least max_context)
    int kv_tokens;               // tokens the KV cache holds over all sequences; 0: max_batch * max_context
    int block_size;              // tokens per cache block; 0: 16
    int max_images;              // images per request; 0: 1 (LLaVA-1.5 is trained with one)
    int ignore_unexpected;       // load weights that hold tensors the config has no place for
    int threads;                 // CPU threads; 0: the backend's default
} engine_options;

// Decoding parameters of one request.
typedef struct {
    int max_new_tokens;    // the answer's token budget; 0: up to the context
    int clamp_to_context;  // 1: a budget past the context is cut to it; 0: such a request is refused
    sample_params sample;
    uint64_t seed;  // sampling's generator (ignored when greedy)
    int has_seed;   // 0: a seed from the clock and the request's number
    const char *const *stop;
    int n_stop;      // stop strings (at most 4; copied at submit): the answer ends before the first
    int ignore_eos;  // keep going past eos (benchmarks)
} gen_params;

// Greedy, max_new_tokens 256, no stop strings.
void gen_params_default(gen_params *p);

// One message of a conversation. Roles "system" (first only: replaces the template's system
// prompt), "user" and "assistant", alternating user first and ending with user. A message with
// images takes the next n_images of engine_chat.images, placed before its text ("<image>\n").
typedef struct {
    const char *role;
    const char *text;
    size_t text_len;
    int n_images;
} engine_message;

typedef struct {
    const engine_message *messages;
    int n_messages;
    const image_u8 *images;  // decoded RGB, in the order the messages take them
    int n_images;
    // 1: the images are one video's frames, in order (LLaVA-NeXT-Video / OneVision's layout, as `llava prep` reads a
    // sample's "video"): the one user message that carries them all gets a single "<image>\n", which stands for
    // every frame (the frames' features one after another in its place). Not with an AnyRes model.
    int video;
} engine_chat;

typedef enum {
    FINISH_STOP = 0,   // eos, or a stop string
    FINISH_LENGTH,     // max_new_tokens, or the context is full
    FINISH_CANCELLED,  // engine_cancel
    FINISH_ERROR,      // the model failed (result.error says how)
} finish_reason;

const char *finish_reason_name(finish_reason f);  // "stop", "length", "cancelled", "error"

// What on_done receives; valid during the call only.
typedef struct {
    int id;
    finish_reason finish;
    const char *text;  // the whole answer (a stop string and what follows it left out)
    size_t text_len;
    const int32_t *tokens;  // the ids generated (eos included when it came)
    int n_tokens;
    int prompt_tokens;    // the prompt's tokens, image features included
    double ttft_ms;       // submit to first token
    double total_ms;      // submit to the end
    double tokens_per_s;  // decode rate after the first token: (n_tokens - 1) / time from first to last
    const char *error;    // FINISH_ERROR: why
} engine_result;

typedef struct {
    // Text the answer grew by (complete UTF-8; text that could still become a stop string is held
    // back until it cannot). The concatenation of every call is result.text.
    void (*on_text)(void *ctx, int id, const char *text, size_t len);
    // The end of the request, once, after its last on_text.
    void (*on_done)(void *ctx, const engine_result *r);
    void *ctx;
} engine_callbacks;

// What submit says about a request it did not take.
typedef enum {
    ENGINE_OK = 0,
    ENGINE_BAD_REQUEST = -1,  // the request itself (too long, too many images, a bad parameter): 400
    ENGINE_CLOSED = -2,       // the engine is shutting down: 503
    ENGINE_FAILED = -3,       // anything else (the tokenizer, the image): 500
} engine_status;

// Loads the model and tokenizer and plans the cache. NULL, with llava_errmsg(), when it cannot.
llava_engine *engine_open(const engine_options *o);
// The same over a model already built (benchmarks: random weights of a given shape), which the
// engine takes over (*m is emptied; its backend stays the caller's to close after engine_close),
// and a tokenizer it takes too, or NULL: answers are then tokens without text. o->model_dir,
// tokenizer, device and ignore_unexpected are not used.
llava_engine *engine_open_model(const engine_options *o, llava_model *m, tokenizer *tok);
void engine_close(llava_engine *e);

typedef struct {
    const char *model_id;
    const char *device;  // the backend's description
    int max_context;     // prompt + answer tokens per sequence
    int max_batch;
    int max_images;
    int tokens_per_image;  // image features per image
    int image_size;
    int vocab_size;
    int eos;
    size_t kv_tokens;        // the cache's capacity in tokens
    int unexpected_ignored;  // tensors of the weights skipped under ignore_unexpected
} engine_info;
const engine_info *engine_get_info(const llava_engine *e);

// Queues a conversation. Returns the request's id (>= 0), or an engine_status < 0 with `err`
// (NUL-terminated, at most errcap bytes) saying why.
int engine_submit_chat(llava_engine *e, const engine_chat *c, const gen_params *p, const engine_callbacks *cb,
                       char *err, size_t errcap);
// Queues a prompt of token ids in which each image's place is tokens_per_image copies of the model's
// image token (as transformers' processor writes it), with its images' normalized pixels (n_img, 3,
// image_size, image_size), or NULL.
int engine_submit_ids(llava_engine *e, const int64_t *ids, int n, const float *pixels, int n_img, const gen_params *p,
                      const engine_callbacks *cb, char *err, size_t errcap);
// The prompt of a chat as the engine builds it, without an engine: the template's turns (the system
// message replacing the template's, "<image>\n" before a message's text per image, an empty
// assistant turn last), its text in r->prompt and its ids in r->ids (IMAGE_TOKEN_INDEX at each image's
// place), tokenized as `mode` says. Free with prep_result_free. An engine_status.
int engine_prompt_ids(const tokenizer *tok, tok_mode mode, const conv_template *tmpl, const engine_chat *c,
                      prep_result *r, char *err, size_t errcap);
// The prompt engine_submit_chat would build, as text (for --verbose and tests). Free with free().
char *engine_chat_prompt(llava_engine *e, const engine_chat *c, char *err, size_t errcap);
// The same prompt as the engine queues it: ids with each image's place as tokens_per_image image
// tokens (*n of them) and the images preprocessed (n_images, 3, image_size, image_size), or NULL
// without images. Free both with free(). An engine_status.
int engine_chat_inputs(llava_engine *e, const engine_chat *c, int64_t **ids, int *n, float **pixels, char *err,
                       size_t errcap);
// The engine's model and tokenizer, for the no-cache reference path run beside it (`llava generate
// --no-cache`); not to be used while the engine's loop runs.
llava_model *engine_model(llava_engine *e);
const tokenizer *engine_tokenizer(const llava_engine *e);

// Ends a request early (a client went away): it finishes with FINISH_CANCELLED at the next step.
void engine_cancel(llava_engine *e, int id);

// The loop on the calling thread. engine_run waits for requests and returns once engine_shutdown was
// called and every request taken has finished (0), or -1 when the model failed for good.
// engine_run_until_idle returns when nothing is queued or running.
int engine_run(llava_engine *e);
int engine_run_until_idle(llava_engine *e);
// From any thread (a signal handler's thread included, not the handler itself): submit refuses new
// requests from now on (ENGINE_CLOSED); running and queued ones finish.
void engine_shutdown(llava_engine *e);

// Counters since the engine opened (a snapshot, from any thread).
typedef struct {
    uint64_t requests_done, prompt_tokens, generated_tokens, prefill_passes, decode_passes;
    int running, queued;
    int kv_blocks, kv_blocks_free;  // the cache's pool, and what of it no sequence holds
} engine_stats;
void engine_get_stats(llava_engine *e, engine_stats *s);

#endif
