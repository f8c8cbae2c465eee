// llava bench-generate: generation speed through the engine (infer/engine.h) on a model of a given
// shape with random weights (or a model folder): time to first token, decode tokens/s at batch 1
// and at --batch, the memory-bandwidth bound of batch-1 decode (the bytes of weights one token reads,
// over the copy bandwidth measured on the same device), and on request the no-cache path (a full
// pass per token) for the speed-up the KV cache gives. Numbers are printed; nothing is asserted.
//
//   --shape demo   the demo's model (LM hidden 96, 2 layers; CLIP 48 px): the CPU default
//   --shape 7b     LLaVA-1.5 7B (Vicuna-7B, CLIP ViT-L/14-336), --layers truncates the LM: the CUDA default
//   --shape 13b    LLaVA-1.5 13B
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "common/torch_rng.h"
#include "common/util.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "kernels/backend.h"
#include "model/llava.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// LLaVA-1.5's shapes, or the demo's (app/demo.c's models: LM hidden 96, 2 layers; CLIP 48 px).
static void shape_config(const char *shape, model_config *mc) {
    int demo = !strcmp(shape, "demo");
    model_config_llava15(demo ? "7b" : shape, mc);
    if (demo) {
        mc->text.hidden_size = 96, mc->text.intermediate_size = 192, mc->text.num_hidden_layers = 2;
        mc->text.num_attention_heads = mc->text.num_key_value_heads = 4, mc->text.head_dim = 24;
        mc->text.vocab_size = 128;
        mc->vision.hidden_size = 64, mc->vision.intermediate_size = 128, mc->vision.num_hidden_layers = 2;
        mc->vision.num_attention_heads = 2, mc->vision.image_size = 48, mc->vision.patch_size = 8;
        mc->glue.image_seq_length = 36;
    }
}

typedef struct {
    double wall, max_ttft, ttft_sum;
    int n_done, tokens;
} run_stats;

static void on_done(void *ctx, const engine_result *r) {
    run_stats *s = ctx;
    s->n_done++;
    s->tokens += r->n_tokens;
    s->ttft_sum += r->ttft_ms;
    if (r->ttft_ms > s->max_ttft) s->max_ttft = r->ttft_ms;
}

// B text-only prompts of P random tokens, N new tokens each (eos ignored). Decode rate: the tokens
// after each sequence's first over the time after the last first token.
static int run_batch(llava_engine *e, int B, int P, int N, uint64_t seed, run_stats *s) {
    const engine_info *in = engine_get_info(e);
    torch_rng r;
    torch_rng_seed(&r, seed);
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)P);
    memset(s, 0, sizeof *s);
    engine_callbacks cb = {NULL, on_done, s};
    gen_params p;
    gen_params_default(&p);
    p.max_new_tokens = N;
    p.ignore_eos = 1;
    char err[256];
    double t0 = now_s();
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < P; i++) ids[i] = 3 + (int64_t)(torch_rng_next(&r) % (uint32_t)(in->vocab_size - 3));
        if (engine_submit_ids(e, ids, P, NULL, 0, &p, &cb, err, sizeof err) < 0) {
            free(ids);
            return llava_fail("bench-generate: %s", err);
        }
    }
    free(ids);
    engine_run_until_idle(e);
    s->wall = now_s() - t0;
    return s->n_done == B ? 0 : llava_fail("bench-generate: %d of %d requests finished", s->n_done, B);
}

// Copy bandwidth of the device: read + write bytes of ops->copy over a buffer of `mib` MiB.
static double copy_bandwidth_gbs(llava_backend *be, size_t mib) {
    const llava_ops *ops = be->ops;
    size_t n = (mib << 20) / ops->act_bytes;
    void *a = ops->alloc(be, BUF_ACT, n), *b = ops->alloc(be, BUF_ACT, n);
    ops->copy(be, BUF_ACT, b, a, n);  // warm-up
    ops->sync(be);
    int reps = 10;
    double t0 = now_s();
    for (int i = 0; i < reps; i++) ops->copy(be, BUF_ACT, (i & 1) ? a : b, (i & 1) ? b : a, n);
    ops->sync(be);
    double dt = now_s() - t0;
    ops->free(be, a);
    ops->free(be, b);
    return 2.0 * (double)n * (double)ops->act_bytes * reps / dt / 1e9;
}

static const char USAGE[] =
    "usage: llava bench-generate [--device cpu|cuda] [--shape demo|7b|13b | --model DIR] [--layers L] [--batch B]\n"
    "                            [--prompt-tokens P] [--new-tokens N] [--no-cache-tokens K] [--threads T] [--json]\n"
    "\n"
    "Generation speed through the engine on a model of a given shape with random weights (or a model folder):\n"
    "time to first token, decode tokens/s at batch 1 and at --batch, the memory-bandwidth bound of batch-1\n"
    "decode, and the speed-up the KV cache gives over a full pass per token. Numbers are printed; nothing is\n"
    "asserted.\n"
    "\n"
    "  --device DEV         cpu or cuda (default: cuda when a device is there, else cpu)\n"
    "  --shape S            demo (the demo's model), 7b or 13b (LLaVA-1.5; default: 7b on cuda, demo on cpu)\n"
    "  --model DIR          a model folder instead of a shape (default: none)\n"
    "  --layers L           truncate the shape's LM to L layers (default 0: all)\n"
    "  --batch B            sequences decoded together in the batched run (default: 64 on cuda, 8 on cpu)\n"
    "  --prompt-tokens P    prompt length (default: 600 on cuda, LLaVA's image prompt; 512 on cpu)\n"
    "  --new-tokens N       tokens generated per sequence (default: 128 on cuda, 32 on cpu)\n"
    "  --no-cache-tokens K  tokens of the no-cache path, at most 64 (default: 0 on cuda, 4 on cpu; 0: not run)\n"
    "  --threads T          CPU threads (default 0: the backend's)\n"
    "  --json               also one JSON line of the numbers (default: off)\n";

int cmd_bench_generate(int argc, char **argv) {
    static const char *const FLAGS[] = {"--device",  "--shape",         "--model",      "--layers",
                                        "--batch",   "--prompt-tokens", "--new-tokens", "--no-cache-tokens",
                                        "--threads", "--json",          "--help"};
    char why[256];
    int have_cuda = llava_backend_available("cuda", why, sizeof why);
    const char *device = have_cuda ? "cuda" : "cpu", *shape = NULL, *model_dir = NULL;
    int layers = 0, batch = -1, P = -1, N = -1, nocache = -1, json = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) return args_unknown("bench-generate", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        if (!strcmp(argv[i], "--device")) device = argv[++i];
        else if (!strcmp(argv[i], "--shape")) shape = argv[++i];
        else if (!strcmp(argv[i], "--model")) model_dir = argv[++i];
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt-tokens")) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--new-tokens")) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-cache-tokens")) nocache = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else return args_unknown("bench-generate", argv[i], FLAGS, ARGS_COUNT(FLAGS));
    }
    int gpu = !strcmp(device, "cuda");
    if (!shape) shape = gpu ? "7b" : "demo";
    if (strcmp(shape, "demo") && strcmp(shape, "7b") && strcmp(shape, "13b")) {
        fprintf(stderr, "llava bench-generate: --shape %s: demo, 7b or 13b\n", shape);
        return 2;
    }
    if (batch <= 0) batch = gpu ? 64 : 8;
    if (P <= 0) P = gpu ? 600 : 512;  // LLaVA's image prompt (576 features + text); the CPU length
    if (N <= 0) N = gpu ? 128 : 32;
    if (nocache < 0) nocache = gpu ? 0 : 4;
    if (threads > 0) llava_cpu_set_threads(threads);
    setvbuf(stdout, NULL, _IOLBF, 0);
    llava_backend *be = llava_backend_open(gpu ? "cuda" : "cpu", NULL);
    if (!be) {
        fprintf(stderr, "llava bench-generate: %s\n", llava_errmsg());
        return 1;
    }
    llava_backend_set_batch_invariant(be, 1);  // as the engine runs
    llava_backend_info info;
    llava_backend_describe(be, &info);
    llava_model m;
    memset(&m, 0, sizeof m);  // emptied again when the engine takes it over
    double t_setup = now_s();
    if (model_dir) {
        if (llava_model_load(&m, model_dir, be) != 0) goto fail;
    } else {
        model_config mc;
        shape_config(shape, &mc);
        if (layers > 0) mc.text.num_hidden_layers = layers;
        if (llava_model_create(&m, &mc, be) != 0) goto fail;
        llava_model_init_random_fast(&m, 0.02f, 1);
        if (llava_model_finish(&m) != 0) goto fail;
    }
    const llama_config tcv = m.cfg.text;  // a copy: the engine takes the model over below
    const llama_config *tc = &tcv;
    // The weights one decoded token reads: the LM's, less the embedding table (one row is read) unless
    // it is also the head.
    size_t lm_numel = m.pt.group_numel[GROUP_LM];
    size_t embed = (size_t)tc->vocab_size * (size_t)tc->hidden_size;
    double weight_bytes = (double)(lm_numel - (tc->tie_word_embeddings ? 0 : embed)) * (double)m.ops->act_bytes;
    printf("bench-generate: %s (%s); model %s: LM %d layers, hidden %d, vocab %d (set up in %.1f s)\n", info.name,
           info.device, model_dir ? model_dir : shape, tc->num_hidden_layers, tc->hidden_size, tc->vocab_size,
           now_s() - t_setup);

    // The no-cache path first (it needs the model the engine takes over): K tokens, a full pass each.
    double nocache_tps = 0;
    if (nocache > 0) {
        int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)P), out[64];
        for (int i = 0; i < P; i++) ids[i] = 3 + (i * 7919) % (tc->vocab_size - 3);
        int K = nocache > 64 ? 64 : nocache;
        llava_generate_greedy(&m, ids, P, NULL, 0, 0, 0, 1, -1, out);  // warm-up (plans the activations)
        double t0 = now_s();
        int got = llava_generate_greedy(&m, ids, P, NULL, 0, 0, 0, K, -1, out);
        double dt = now_s() - t0;
        free(ids);
        if (got != K) goto fail;
        nocache_tps = K / dt;
        printf("  no cache (a full pass per token, prompt %d): %.2f tokens/s\n", P, nocache_tps);
    }
    double bw = copy_bandwidth_gbs(be, gpu ? 1024 : 256);
    engine_options eo = {.max_batch = batch,
                         .max_context = P + N + 16,
                         // prefill passes of up to 8192 tokens (whole prompts), as serving engines batch them
                         .max_prefill_tokens = P * batch < 8192 ? P * batch : (P > 8192 ? P : 8192),
                         .kv_tokens = batch * (P + N + 16),
                         .model_id = shape};
    llava_engine *e = engine_open_model(&eo, &m, NULL);
    if (!e) goto fail;
    run_stats w, one, many;
    // Warm-up (first use of every buffer and kernel), then batch 1, then the batch.
    if (run_batch(e, 1, P, 4, 1, &w) != 0 || run_batch(e, 1, P, N, 2, &one) != 0 ||
        (batch > 1 && run_batch(e, batch, P, N, 3, &many) != 0)) {
        engine_close(e);
        goto fail;
    }
    double ttft = one.max_ttft;
    double dec1 = (N - 1) / (one.wall - one.max_ttft / 1e3);
    double decB = batch > 1 ? (double)batch * (N - 1) / (many.wall - many.max_ttft / 1e3) : dec1;
    double bound = bw * 1e9 / weight_bytes;
    printf("  time to first token (prefill of %d tokens, batch 1): %.2f ms\n", P, ttft);
    printf("  decode, batch 1: %.2f tokens/s (%d new tokens)\n", dec1, N);
    if (batch > 1)
        printf("  decode, batch %d: %.2f tokens/s in all (%.2f per sequence; mean time to first token %.1f ms)\n",
               batch, decB, decB / batch, many.ttft_sum / batch);
    printf("  weights read per token %.3f GB; copy bandwidth %.1f GB/s; batch-1 bound %.2f tokens/s; reached %.1f%%\n",
           weight_bytes / 1e9, bw, bound, 100.0 * dec1 / bound);
    if (nocache_tps > 0)
        printf("  KV cache speed-up at batch 1, prompt %d: %.1fx the no-cache path\n", P, dec1 / nocache_tps);
    // JSON: ttft_ms and decode_tokens_per_s are those of the --batch run (the decode rate summed over
    // its sequences, the time to first token their mean); batch1_* and fraction_of_bound are batch 1's.
    double ttftB = batch > 1 ? many.ttft_sum / batch : ttft;
    if (json)
        printf(
            "{\"device\": \"%s\", \"shape\": \"%s\", \"layers\": %d, \"batch\": %d, \"prompt_tokens\": %d, "
            "\"new_tokens\": %d, \"ttft_ms\": %.3f, \"decode_tokens_per_s\": %.3f, \"batch1_ttft_ms\": %.3f, "
            "\"batch1_decode_tokens_per_s\": %.3f, \"weight_bytes\": %.0f, \"copy_bandwidth_gbs\": %.2f, "
            "\"bound_tokens_per_s\": %.3f, \"fraction_of_bound\": %.4f, \"nocache_tokens_per_s\": %.4f, "
            "\"cache_speedup\": %.2f}\n",
            info.device, model_dir ? "model" : shape, tc->num_hidden_layers, batch, P, N, ttftB, decB, ttft, dec1,
            weight_bytes, bw, bound, dec1 / bound, nocache_tps, nocache_tps > 0 ? dec1 / nocache_tps : 0.0);
    engine_close(e);
    llava_backend_close(be);
    return 0;
fail:
    fprintf(stderr, "llava bench-generate: %s\n", llava_errmsg());
    if (m.be) llava_model_free(&m);
    llava_backend_close(be);
    return 1;
}
