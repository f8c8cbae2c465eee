// The OpenAI chat API of `llava serve`, without the network: a request body (JSON) becomes the
// engine's conversation, images and decoding parameters, or an error in OpenAI's shape with its HTTP
// status; answers become chat.completion objects and server-sent chat.completion.chunk events.
//
// Everything here is pure (no sockets, no engine): tests/test_serve_api.c checks each mapping and
// each class of bad request.
#ifndef LLAVA_APP_SERVE_API_H
#define LLAVA_APP_SERVE_API_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"
#include "data/strbuf.h"
#include "infer/engine.h"

#define SERVE_MAX_STOP 4

// An error as OpenAI's API returns it: {"error": {"message", "type", "param", "code"}}.
typedef struct {
    int status;        // HTTP status: 400, 401, 404, 405, 413, 500, 503
    const char *type;  // "invalid_request_error", "authentication_error", "not_found_error", "server_error", ...
    char param[128];   // the request field at fault ("messages[1].content[0].image_url"); "" is null
    char code[64];     // a machine-readable reason ("invalid_api_key", "image_too_large"); "" is null
    char message[1024];
} serve_error;

void serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                     ...) __attribute__((format(printf, 6, 7)));
// The error's JSON body (NUL-terminated; free()).
char *serve_error_json(const serve_error *e);

// What a request may carry, from the server's options and the engine.
typedef struct {
    const char *allow_dir;      // the realpath of --allow-local-files DIR; NULL: local files are refused
    size_t max_image_bytes;     // encoded bytes per image (a data: URL's decoded bytes, or a file's size)
    uint64_t max_image_pixels;  // decoded pixels per image (0: Pillow's limit, IMAGE_MAX_PIXELS_DEFAULT)
    int max_images;             // images per request (the engine's)
} serve_limits;

// A chat request as the engine takes it. Everything it points to is its own.
typedef struct {
    engine_message *messages;
    int n_messages;
    char **texts;  // each message's text (messages[i].text)
    image_u8 *images;
    int n_images;
    gen_params params;  // params.stop points into `stop`
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    int stream;         // "stream": true
    int include_usage;  // "stream_options": {"include_usage": true}
    char *model;        // what the client asked for (answers carry the engine's id); NULL when absent
} serve_chat_request;

// Reads a POST /v1/chat/completions body. 0, or -1 with *err filled (status 400 or 413); *out is
// then empty. The mapping (the OpenAI names on the left):
//   messages            system (or developer) first only, then user / assistant alternating from user,
//                       ending with user; content a string or an array of {"type":"text","text"} and
//                       {"type":"image_url","image_url":{"url"} | "url"} parts (texts joined with "\n",
//                       the message's images placed before them by the engine); images in user
//                       messages only, at most limits->max_images in all
//   max_completion_tokens (or max_tokens)   params.max_new_tokens (absent: up to the context)
//   temperature         sample.temperature, 0..2, default 1 (0: greedy)
//   top_p               sample.top_p, 0..1 (0: greedy), default 1;  top_k (extension) sample.top_k >= 0
//   seed                params.seed;  stop: a string or up to 4;  n: 1 only
//   ignore_eos          (extension) params.ignore_eos
// Unknown fields are ignored; a known field with the wrong type or range is a 400 naming it. Fields
// that ask for what the server does not do (logprobs, tools, penalties, a JSON response format) are
// a 400 when they ask for it and ignored when they hold their neutral value.
int serve_parse_chat(const char *body, size_t len, const serve_limits *lim, serve_chat_request *out, serve_error *err);
void serve_chat_request_free(serve_chat_request *r);

// The image an image_url part names: a data: URL (base64, decoded in memory), or with
// lim->allow_dir a file:// URL or a path (relative paths from allow_dir) whose realpath lies inside
// allow_dir. Remote URLs are refused. `param` names the field in errors.
int serve_load_image(const char *url, const serve_limits *lim, const char *param, image_u8 *out, serve_error *err);

// data:[<media type>][;base64],<data>: the media type (may be empty) and the data part. 0, or -1 when
// `url` is not a data URL with ";base64" (it says which in *why).
int serve_parse_data_url(const char *url, size_t len, const char **media, size_t *media_len, const char **data,
                         size_t *data_len, const char **why);

// Where an answer goes: the fields every chat.completion(.chunk) repeats.
typedef struct {
    const char *id;     // "chatcmpl-..."
    long long created;  // Unix seconds
    const char *model;
} serve_answer_meta;

// OpenAI's finish_reason for the engine's: "stop", "length" (cancelled and failed requests have no
// OpenAI name and read "stop"; a failed one is reported as an error instead).
const char *serve_finish_name(finish_reason f);

// The chat.completion object (NUL-terminated JSON; free()).
char *serve_completion_json(const serve_answer_meta *m, const char *text, size_t text_len, finish_reason finish,
                            int prompt_tokens, int completion_tokens);

// Server-sent events of a streamed answer, appended to `out` ("data: {...}\n\n"):
//   the role chunk (delta {"role":"assistant","content":""}), first;
//   a content chunk per piece of text (delta {"content": TEXT});
//   the finish chunk (empty delta, finish_reason);
//   with include_usage, the usage chunk (no choices, the usage), and "usage": null in every other chunk;
//   an error event ({"error": {...}}) when the answer failed after the stream began;
//   "data: [DONE]".
void serve_sse_role(strbuf *out, const serve_answer_meta *m, int include_usage);
void serve_sse_text(strbuf *out, const serve_answer_meta *m, int include_usage, const char *text, size_t len);
void serve_sse_finish(strbuf *out, const serve_answer_meta *m, int include_usage, finish_reason finish);
void serve_sse_usage(strbuf *out, const serve_answer_meta *m, int prompt_tokens, int completion_tokens);
void serve_sse_error(strbuf *out, const serve_error *e);
void serve_sse_done(strbuf *out);

// The body of GET /v1/models and GET /v1/models/ID.
char *serve_models_json(const char *model_id, long long created);
char *serve_model_json(const char *model_id, long long created);

// The error of a refused submit (ENGINE_BAD_REQUEST: 400, ENGINE_CLOSED: 503, else 500).
void serve_error_from_engine(serve_error *e, int status, const char *msg);

#endif
