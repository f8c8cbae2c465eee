// The HTTP side of `llava serve` (libmicrohttpd): routes, authentication, request bodies, and the
// wait for the engine's answer, plain or streamed as server-sent events.
//
// Threads: libmicrohttpd runs one thread per connection. A chat request is read, parsed and
// submitted on its connection's thread (the engine builds the prompt and preprocesses the images
// there too), which then waits on a condition variable that the engine's callbacks signal from the
// engine's thread: a plain request waits in the request handler and answers at the end; a streamed
// one answers at once with a body whose reader (MHD_create_response_from_callback) waits for each
// piece of text and writes it as an SSE event. While waiting, the thread looks at the socket every
// 200 ms: a client that hung up (POLLRDHUP) has its request cancelled (engine_cancel), as has one whose
// stream can no longer be written.
//
// The engine is reached through serve_engine, so that tests can put a scripted engine behind the
// same HTTP code (tests/test_serve_http.c); cmd_serve.c puts infer/engine.h behind it.
#ifndef LLAVA_APP_SERVE_HTTP_H
#define LLAVA_APP_SERVE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "infer/engine.h"

typedef struct {
    void *self;
    // engine_submit_chat's contract: an id >= 0, or an engine_status < 0 with `err`. The callbacks
    // may come from another thread, before submit_chat returns too.
    int (*submit_chat)(void *self, const engine_chat *c, const gen_params *p, const engine_callbacks *cb, char *err,
                       size_t errcap);
    void (*cancel)(void *self, int id);
    void (*stats)(void *self, engine_stats *s);
} serve_engine;

typedef struct {
    const char *host;           // an address to listen on (numeric IPv4 or IPv6, or a name); NULL: 127.0.0.1
    int port;                   // 0: a free port (serve_port says which)
    const char *api_key;        // NULL: none; else every /v1 route needs "Authorization: Bearer KEY"
    const char *allow_dir;      // --allow-local-files: image paths and file:// URLs inside it are read
    size_t max_body_bytes;      // a larger request body is a 413
    size_t max_image_bytes;     // a larger image (encoded) is a 413
    uint64_t max_image_pixels;  // a decoded image with more pixels is a 400 (0: Pillow's limit)
    const engine_info *info;    // model_id, max_images and what /health shows
    serve_engine engine;
    FILE *log;  // one line per request (method, path, status, tokens, ms); NULL: none
} serve_options;

typedef struct serve_server serve_server;

// Listens and answers until serve_stop. NULL with llava_errmsg() (the address is taken, bad host,
// --allow-local-files is not a directory).
serve_server *serve_start(const serve_options *o);
int serve_port(const serve_server *s);
// Requests begun and not yet answered to the end.
int serve_in_flight(serve_server *s);
// Stops accepting connections (new ones are refused); requests already begun go on, and their
// answers say "Connection: close".
void serve_quiesce(serve_server *s);
// The engine's loop has ended: requests still waiting for an answer get a 500 (or an error event)
// instead of waiting for ever. Call it only when the engine returned without finishing them.
void serve_engine_gone(serve_server *s);
// Waits until no request is in flight: 0, or -1 when timeout_s passed first.
int serve_drain(serve_server *s, double timeout_s);
// Closes every connection and frees the server.
void serve_stop(serve_server *s);

#endif
