// llava serve: an OpenAI-compatible HTTP server (POST /v1/chat/completions, GET /v1/models,
// GET /health) over the generation engine (infer/engine.h).
//
// Threads: the main thread loads the model, starts the engine's thread (engine_run: every decode
// step of every running request) and the HTTP server (serve_http.c: one thread per connection),
// then waits for SIGTERM or SIGINT (blocked in every thread, taken with sigtimedwait, so no handler
// runs asynchronously). On the signal: the listening socket closes (new connections are refused),
// engine_shutdown refuses new requests (503) while running and queued ones finish, their answers
// are delivered (30 s at most), and the process exits 0. A second signal exits at once (128 + signal).
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "infer/engine.h"
#include "serve_http.h"

#define DRAIN_TIMEOUT_S 30.0

static void usage(FILE *f) {
    fprintf(f,
            "usage: llava serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [options]\n"
            "  an OpenAI-compatible server: POST /v1/chat/completions (plain or streamed), GET /v1/models,\n"
            "  GET /health; many requests at once, continuously batched by the engine\n"
            "\n"
            "  --model DIR              the model folder (config.json + safetensors)\n"
            "  --host ADDR              address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface)\n"
            "  --port N                 port (default 8000; 0: a free port, printed at start)\n"
            "  --api-key KEY            every /v1 route needs \"Authorization: Bearer KEY\" (default: the\n"
            "                           LLAVA_API_KEY environment variable; unset: no key)\n"
            "  --model-id NAME          the model's name in answers and /v1/models (default: DIR's last part)\n"
            "  --allow-local-files DIR  read image_url paths and file:// URLs that lie inside DIR (default: only\n"
            "                           data: URLs are read)\n"
            "  --max-body-bytes N       largest request body (default 32M; suffixes K, M, G)\n"
            "  --max-image-bytes N      largest image, encoded (default 20M)\n"
            "  --max-image-pixels N     largest image, decoded (default 32M pixels)\n"
            "\n"
            "  engine:\n"
            "  --tokenizer PATH         default DIR/tokenizer.model, else DIR/tokenizer.json\n"
            "  --adapter DIR            a LoRA adapter run on the model unmerged (default: none)\n"
            "  --device cpu|cuda        default cpu\n"
            "  --template NAME|FILE     conversation template (default: the one the model's export records, else\n"
            "                           vicuna_v1, LLaVA-1.5's)\n"
            "  --mode legacy|hf431|hf437  the tokenizer's rules (default: data/tokenizer.h's)\n"
            "  --aspect pad|square      image preprocessing (default: the model's image_aspect_ratio, else pad)\n"
            "  --max-batch N            sequences decoded together (default 64)\n"
            "  --max-context N          prompt + answer tokens per request (default: the LM's context)\n"
            "  --max-images N           images per request (default 1)\n"
            "  --kv-tokens N            tokens the KV cache holds over all requests (default max-batch x max-context)\n"
            "  --threads N              CPU threads (default: the backend's)\n"
            "  --ignore-unexpected      load weights that hold tensors the config has no place for\n"
            "  --quiet                  no line per request on stderr\n");
}

static int parse_count(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s) return -1;
    long long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1LL << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1LL << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1LL << 30, end++;
    if (*end) return -1;
    if (v > hi / mul || v * mul < lo || v * mul > hi) return -1;
    *out = v * mul;
    return 0;
}

typedef struct {
    llava_engine *e;
    atomic_int finished;
    int rc;
} engine_thread;

static void *engine_main(void *arg) {
    engine_thread *t = arg;
    t->rc = engine_run(t->e);
    if (t->rc != 0) fprintf(stderr, "llava serve: the engine stopped: %s\n", llava_errmsg());
    atomic_store(&t->finished, 1);
    return NULL;
}

static int submit(void *self, const engine_chat *c, const gen_params *p, const engine_callbacks *cb, char *err,
                  size_t cap) {
    return engine_submit_chat(self, c, p, cb, err, cap);
}
static void cancel(void *self, int id) { engine_cancel(self, id); }
static void stats(void *self, engine_stats *s) { engine_get_stats(self, s); }

// The next SIGTERM/SIGINT within ms milliseconds, or 0.
static int next_signal(const sigset_t *set, long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

int cmd_serve(int argc, char **argv) {
    engine_options eo;
    memset(&eo, 0, sizeof eo);
    const char *host = "127.0.0.1", *api_key = getenv("LLAVA_API_KEY"), *allow_dir = NULL;
    long long port = 8000, max_body = 32LL << 20, max_image = 20LL << 20, max_pixels = 32LL << 20, v = 0;
    int quiet = 0;
    static const char *const FLAGS[] = {"--model",
                                        "--tokenizer",
                                        "--adapter",
                                        "--device",
                                        "--template",
                                        "--mode",
                                        "--aspect",
                                        "--model-id",
                                        "--host",
                                        "--api-key",
                                        "--allow-local-files",
                                        "--port",
                                        "--max-batch",
                                        "--max-context",
                                        "--max-images",
                                        "--kv-tokens",
                                        "--threads",
                                        "--max-body-bytes",
                                        "--max-image-bytes",
                                        "--max-image-pixels",
                                        "--ignore-unexpected",
                                        "--quiet",
                                        "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (args_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--ignore-unexpected")) {
            eo.ignore_unexpected = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (i + 1 >= argc) return args_unknown("serve", a, FLAGS, ARGS_COUNT(FLAGS));
        const char *val = argv[++i];
        int bad = 0;
#define COUNT(lo, hi) (bad = parse_count(val, lo, hi, &v) != 0, v)
        if (!strcmp(a, "--model")) eo.model_dir = val;
        else if (!strcmp(a, "--tokenizer")) eo.tokenizer = val;
        else if (!strcmp(a, "--adapter")) eo.adapter = val;
        else if (!strcmp(a, "--device")) eo.device = val;
        else if (!strcmp(a, "--template")) eo.template_name = val;
        else if (!strcmp(a, "--mode")) eo.tokenizer_mode = val;
        else if (!strcmp(a, "--aspect")) eo.aspect = val;
        else if (!strcmp(a, "--model-id")) eo.model_id = val;
        else if (!strcmp(a, "--host")) host = val;
        else if (!strcmp(a, "--api-key")) api_key = val;
        else if (!strcmp(a, "--allow-local-files")) allow_dir = val;
        else if (!strcmp(a, "--port")) port = COUNT(0, 65535);
        else if (!strcmp(a, "--max-batch")) eo.max_batch = (int)COUNT(1, 1 << 20);
        else if (!strcmp(a, "--max-context")) eo.max_context = (int)COUNT(1, 1 << 30);
        else if (!strcmp(a, "--max-images")) eo.max_images = (int)COUNT(1, 1 << 10);
        else if (!strcmp(a, "--kv-tokens")) eo.kv_tokens = (int)COUNT(1, 1 << 30);
        else if (!strcmp(a, "--threads")) eo.threads = (int)COUNT(0, 4096);
        else if (!strcmp(a, "--max-body-bytes")) max_body = COUNT(1, 1LL << 40);
        else if (!strcmp(a, "--max-image-bytes")) max_image = COUNT(1, 1LL << 40);
        else if (!strcmp(a, "--max-image-pixels")) max_pixels = COUNT(1, 1LL << 40);
        else return args_unknown("serve", a, FLAGS, ARGS_COUNT(FLAGS));
#undef COUNT
        if (bad) {
            fprintf(stderr, "llava serve: %s: cannot read \"%s\" as a count in range\n", a, val);
            return 2;
        }
    }
    if (!eo.model_dir) {
        fprintf(stderr, "llava serve: --model DIR is required\n");
        usage(stderr);
        return 2;
    }
    if (api_key && !*api_key) api_key = NULL;
    if (eo.device && strcmp(eo.device, "cpu") != 0 && strcmp(eo.device, "cuda") != 0) {
        fprintf(stderr, "llava serve: --device %s: cpu or cuda\n", eo.device);
        return 2;
    }
    if (eo.aspect && strcmp(eo.aspect, "pad") != 0 && strcmp(eo.aspect, "square") != 0) {
        fprintf(stderr, "llava serve: --aspect %s: pad or square\n", eo.aspect);
        return 2;
    }
    if (allow_dir && !dir_exists(allow_dir)) {
        fprintf(stderr, "llava serve: --allow-local-files %s: not a directory\n", allow_dir);
        return 2;
    }

    // SIGTERM and SIGINT are taken by the main thread with sigtimedwait: blocked here, before any
    // thread starts, so that every thread inherits the mask. A peer that hangs up must not kill us.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    llava_engine *e = engine_open(&eo);
    if (!e) {
        fprintf(stderr, "llava serve: %s\n", llava_errmsg());
        return 1;
    }
    const engine_info *info = engine_get_info(e);
    if (info->unexpected_ignored)
        fprintf(stderr, "llava serve: %s: %d tensors of the weights are not in the model's config (ignored)\n",
                eo.model_dir, info->unexpected_ignored);
    engine_thread et = {.e = e};
    atomic_init(&et.finished, 0);
    pthread_t th;
    if (pthread_create(&th, NULL, engine_main, &et) != 0) {
        fprintf(stderr, "llava serve: cannot start the engine's thread\n");
        engine_close(e);
        return 1;
    }
    serve_options so = {
        .host = host,
        .port = (int)port,
        .api_key = api_key,
        .allow_dir = allow_dir,
        .max_body_bytes = (size_t)max_body,
        .max_image_bytes = (size_t)max_image,
        .max_image_pixels = (uint64_t)max_pixels,
        .info = info,
        .engine = {e, submit, cancel, stats},
        .log = quiet ? NULL : stderr,
    };
    serve_server *srv = serve_start(&so);
    if (!srv) {
        fprintf(stderr, "llava serve: %s\n", llava_errmsg());
        engine_shutdown(e);
        pthread_join(th, NULL);
        engine_close(e);
        return 1;
    }
    int v6 = strchr(host, ':') != NULL;
    printf("llava serve: listening on http://%s%s%s:%d (model %s)\n", v6 ? "[" : "", host, v6 ? "]" : "",
           serve_port(srv), info->model_id);
    fflush(stdout);
    fprintf(stderr, "llava serve: %s, max_batch %d, max_context %d, max_images %d, kv cache %zu tokens%s\n",
            info->device ? info->device : "", info->max_batch, info->max_context, info->max_images, info->kv_tokens,
            api_key ? ", API key required" : "");

    int sig = 0;
    while (!sig && !atomic_load(&et.finished)) sig = next_signal(&sigs, 200);
    if (sig)
        fprintf(stderr, "llava serve: %s: accepting no more connections; finishing %d request%s\n", strsignal(sig),
                serve_in_flight(srv), serve_in_flight(srv) == 1 ? "" : "s");
    serve_quiesce(srv);
    engine_shutdown(e);
    while (!atomic_load(&et.finished)) {
        int again = next_signal(&sigs, 200);
        if (again) {
            fprintf(stderr, "llava serve: %s again: exiting now\n", strsignal(again));
            _exit(128 + again);
        }
    }
    pthread_join(th, NULL);
    if (et.rc != 0) serve_engine_gone(srv);
    // The answers of the requests that ran are written out (a client that does not read gets
    // DRAIN_TIMEOUT_S).
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (serve_drain(srv, 0.2) != 0) {
        int again = next_signal(&sigs, 0);
        if (again) {
            fprintf(stderr, "llava serve: %s again: exiting now\n", strsignal(again));
            _exit(128 + again);
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) > DRAIN_TIMEOUT_S) {
            fprintf(stderr, "llava serve: %d answer%s not delivered after %.0f s: closing\n", serve_in_flight(srv),
                    serve_in_flight(srv) == 1 ? "" : "s", DRAIN_TIMEOUT_S);
            break;
        }
    }
    serve_stop(srv);
    engine_close(e);
    fprintf(stderr, "llava serve: stopped\n");
    return et.rc == 0 ? 0 : 1;
}
