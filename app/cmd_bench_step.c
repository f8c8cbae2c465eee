// llava bench-step: training steps of a LLaVA-shaped model on synthetic packed batches with
// LLaVA-1.5's length mix; prints tokens/s, samples/s, model TFLOP/s and MFU.
//
// Defaults on CUDA: LLaVA-1.5 7B shapes (LLaMA hidden 4096, 32 heads x 128, MLP 11008, vocab
// 32000; CLIP ViT-L/14-336 with its 23 computed layers; the 2-layer GELU projector) with the LM
// truncated to --layers decoder layers so it fits one GPU, stage 2 (projector + LM train) on the
// 665K mix's lengths, or with --stage 1 the projector alone on caption lengths, 32 per step.
// On the CPU the defaults are a tiny model, to check the harness itself.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/sampler.h"
#include "model/llava.h"
#include "train/optim.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// LLaVA-1.5's 665K mix in lengths (stage 2): 94% image samples (their text 40-500 tokens, plus the
// image's features), 6% text-only conversations of 600-2048 tokens. Stage 1's 558K captions: every
// sample an image and a caption of 20-80 tokens. Samples are added until the micro-batch holds
// `batch` samples.
static void make_batch(llava_batch *b, const llava_model *m, int batch, int max_len, torch_rng *r, int captions) {
    int tpi = m->tokens_per_image, V = m->cfg.text.vocab_size, S = m->cfg.vision.image_size;
    int *len = xmalloc(sizeof(int) * (size_t)batch), *img = xmalloc(sizeof(int) * (size_t)batch);
    int T = 0, n_img = 0;
    for (int i = 0; i < batch; i++) {
        img[i] = captions || torch_rng_next(r) % 100 >= 6;
        len[i] = captions ? 1 + tpi + 20 + (int)(torch_rng_next(r) % 61)
                 : img[i] ? 40 + (int)(torch_rng_next(r) % 461) + tpi
                          : 600 + (int)(torch_rng_next(r) % 1449);
        if (len[i] > max_len) len[i] = max_len;
        if (img[i] && len[i] < tpi + 2) len[i] = tpi + 2;
        T += len[i];
        n_img += img[i];
    }
    memset(b, 0, sizeof *b);
    b->T = T;
    b->n_seq = batch;
    b->cu_seqlens = xmalloc(sizeof(int32_t) * (size_t)(batch + 1));
    b->ids = xmalloc(sizeof(int32_t) * (size_t)T);
    b->targets = xmalloc(sizeof(int32_t) * (size_t)T);
    b->pos = xmalloc(sizeof(int32_t) * (size_t)T);
    b->img_rows = xmalloc(sizeof(int32_t) * (size_t)(n_img * tpi + 1));
    b->n_img = n_img;
    b->img_h = b->img_w = S;
    b->pixels = xmalloc(sizeof(float) * (size_t)(n_img ? n_img : 1) * 3 * S * S);
    for (size_t i = 0; i < (size_t)n_img * 3 * S * S; i++)
        b->pixels[i] = (float)(torch_rng_next(r) % 2001) / 1000.0f - 1.0f;
    int k = 0, rows = 0;
    b->cu_seqlens[0] = 0;
    for (int i = 0; i < batch; i++) {
        for (int t = 0; t < len[i]; t++, k++) {
            int in_image = img[i] && t >= 1 && t < 1 + tpi;  // BOS, then the image, then text
            b->ids[k] = in_image ? -1 : (int32_t)(3 + torch_rng_next(r) % (uint32_t)(V - 3));
            if (in_image) b->img_rows[rows++] = k;
            b->pos[k] = t;
        }
        for (int t = 0; t < len[i]; t++) {
            int s = b->cu_seqlens[i] + t;
            int supervised = t + 1 < len[i] && b->ids[s + 1] >= 0 && t > len[i] / 2;  // answers: the second half
            b->targets[s] = supervised ? b->ids[s + 1] : -100;
            b->n_targets += supervised;
        }
        b->cu_seqlens[i + 1] = k;
    }
    free(len);
    free(img);
}

static const char USAGE[] =
    "usage: llava bench-step [--device cpu|cuda] [--layers L] [--batch B] [--steps N] [--stage 1|2] "
    "[--peak-tflops P] [--lora R]\n"
    "                        [--train-vision all|N] [--pool S]\n"
    "\n"
    "Training steps of a LLaVA-1.5-7B-shaped model (the LM truncated to L layers so it fits one GPU) on synthetic\n"
    "batches with LLaVA-1.5's length mix; prints tokens/s, samples/s, model TFLOP/s and MFU. On the CPU the model\n"
    "is tiny: a check of the harness, not a measurement.\n"
    "\n"
    "  --device DEV      cpu or cuda (default: cuda when a device is there, else cpu)\n"
    "  --layers L        decoder layers of the LM (default: 4 on cuda, 2 on cpu)\n"
    "  --batch B         samples per step (default: LLaVA's per-device batch, 16 in stage 2 and 32 in stage 1, on\n"
    "                    cuda; 4 on cpu)\n"
    "  --steps N         timed steps, after 2 warm-up steps (default 5)\n"
    "  --stage S         2: projector + LM train on the 665K mix's lengths; 1: the projector alone on caption\n"
    "                    lengths (default 2)\n"
    "  --peak-tflops P   the peak MFU is reported against (default: the card's nominal dense bf16 peak, when\n"
    "                    known)\n"
    "  --lora R          stage 2 with LoRA instead: rank-R adapters (alpha 2R, dropout 0.05) on all seven LM\n"
    "                    linears and the projector train, the LM frozen (default 0: off); model FLOPs count the\n"
    "                    frozen LM's forward and input-gradient passes and the adapters' own\n"
    "  --train-vision W  the vision tower trains too: all of it (with its embeddings) or its last N layers that run,\n"
    "                    each recomputed in backward (train.vision_gradient_checkpointing); model FLOPs count their\n"
    "                    backward (default: frozen)\n"
    "  --pool S          average-pool each image's patch grid with stride S before the projector (576 -> 144\n"
    "                    visual tokens at 2 for CLIP-L/336; default: none)\n";

int cmd_bench_step(int argc, char **argv) {
    static const char *const FLAGS[] = {"--device",      "--layers", "--steps",        "--batch", "--stage",
                                        "--peak-tflops", "--lora",   "--train-vision", "--pool",  "--help"};
    char why[256];
    const char *device = NULL;
    int layers = -1, steps = 5, batch = -1, stage = 2, warmup = 2, lora = 0, train_vision = 0, pool = 0;
    double peak = 0;
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        }
        int known = 0;
        for (int k = 0; k < ARGS_COUNT(FLAGS); k++) known |= !strcmp(argv[i], FLAGS[k]);
        if (!known || i + 1 >= argc) return args_unknown("bench-step", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        if (!strcmp(argv[i], "--device")) device = argv[++i];
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stage")) stage = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--lora")) lora = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--train-vision")) {
            i++;
            train_vision = !strcmp(argv[i], "all") ? -1 : atoi(argv[i]);
            if (!train_vision) {
                fprintf(stderr, "llava bench-step: --train-vision %s: all, or a number of layers from 1\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--pool")) pool = atoi(argv[++i]);
        else peak = atof(argv[++i]);
    }
    if (!device) device = llava_backend_available("cuda", why, sizeof why) ? "cuda" : "cpu";
    llava_backend *be = llava_backend_open(!strcmp(device, "cuda") ? "cuda" : "cpu", NULL);
    if (!be) {
        printf("bench-step: %s\n", llava_errmsg());
        return 0;
    }
    const llava_ops *ops = be->ops;
    llava_backend_info info;
    llava_backend_describe(be, &info);
    if (peak <= 0) peak = info.peak_bf16_tflops;  // the card's nominal dense bf16 peak, when known
    int gpu = !strcmp(device, "cuda");
    model_config mc;
    model_config_llava15("7b", &mc);
    if (!gpu) {  // a tiny model: the harness, not a measurement
        mc.text.hidden_size = 128, mc.text.intermediate_size = 344, mc.text.num_attention_heads = 4;
        mc.text.num_key_value_heads = 4, mc.text.head_dim = 32, mc.text.vocab_size = 1000;
        mc.vision.hidden_size = 64, mc.vision.intermediate_size = 128, mc.vision.num_hidden_layers = 3;
        mc.vision.num_attention_heads = 2, mc.vision.image_size = 56;
    }
    mc.text.num_hidden_layers = layers > 0 ? layers : (gpu ? 4 : 2);
    if (lora > 0) {
        if (stage != 2) {
            fprintf(stderr, "llava bench-step: --lora is a stage-2 run\n");
            llava_backend_close(be);
            return 2;
        }
        mc.lora = (lora_config){.r = lora, .alpha = 2.0 * lora, .targets = (1u << LORA_N_TARGETS) - 1, .dropout = 0.05};
    }
    if (pool > 0) mc.glue.pool_mode = POOL_AVERAGE, mc.glue.pool_stride = pool;
    if (batch <= 0) batch = gpu ? (stage == 1 ? 32 : 16) : 4;  // LLaVA's per-device batches
    setvbuf(stdout, NULL, _IOLBF, 0);  // each line out at once, also when a time limit stops the run
    double t_setup = now_s();
    llava_model m;
    if (llava_model_create(&m, &mc, be) != 0) goto fail;
    llava_model_init_random_fast(&m, 0.02f, 1);
    if (llava_model_finish(&m) != 0) goto fail;
    llava_model_set_trainable(&m, stage == 1 ? TRAIN_PROJECTOR : lora ? TRAIN_PROJECTOR_LORA : TRAIN_PROJECTOR_LM);
    int vt = train_vision ? llava_model_set_vision_trainable(&m, train_vision) : 0;
    if (vt < 0) goto fail;
    m.checkpoint_vision = 1;
    optim_state os;
    optim_init(&os, &m);
    optim_config oc = {.lr = 1e-5,
                       .projector_lr = NAN,
                       .beta1 = 0.9,
                       .beta2 = 0.999,
                       .eps = 1e-8,
                       .schedule = SCHED_CONSTANT,
                       .total_steps = steps + warmup};
    torch_rng r;
    torch_rng_seed(&r, 7);
    const llama_config *t = &mc.text;
    const clip_vision_config *v = &mc.vision;
    double d = t->hidden_size, I = t->intermediate_size, L = t->num_hidden_layers, Vv = t->vocab_size;
    double per_tok_lm = 2.0 * (L * (4.0 * d * d + 3.0 * d * I) + d * Vv);  // forward matmul FLOPs per token
    // LoRA: A (r, in) and B (out, r) of the seven linears, 2 r (in + out) per token forward (q, k, v, o:
    // d + d each; gate, up: d + I; down: I + d), counted x3 for forward and backward as the LM's are
    double per_tok_lora = lora ? 3.0 * 2.0 * L * lora * (8.0 * d + 3.0 * (d + I)) : 0;
    double dv = v->hidden_size, Lv = llava_vision_layers_used(&mc), Nv = (v->image_size / v->patch_size);
    Nv = Nv * Nv + 1;
    double layer_img = 2.0 * Nv * (4.0 * dv * dv + 2.0 * dv * v->intermediate_size) + 4.0 * Nv * Nv * dv,
           patch_img = 2.0 * Nv * 3.0 * v->patch_size * v->patch_size * dv;
    double per_img = Lv * layer_img + patch_img + 2.0 * (mc.text.hidden_size * m.tokens_per_image) * (dv + d);
    // a trained tower: its layers' backward (two forwards each), and the patch embedding's weight gradient
    per_img += 2.0 * vt * layer_img + (vt == (int)Lv ? patch_img : 0);
    ops->sync(be);
    printf(
        "bench-step: %s (%s), LM %d layers of LLaVA-7B shape%s, CLIP %g layers (%d trained), %d visual tokens per "
        "image, stage %d%s, %d samples per step (model and optimizer set up in %.1f s)\n",
        ops->name, info.device, t->num_hidden_layers, gpu ? "" : " (tiny: CPU harness check)", Lv, vt,
        m.tokens_per_image, stage, lora ? " with LoRA" : "", batch, now_s() - t_setup);
    double total_time = 0, total_tokens = 0, total_flops = 0;
    int total_samples = 0;
    for (int s = 0; s < warmup + steps; s++) {
        llava_batch b;
        make_batch(&b, &m, batch, 2048, &r, stage == 1);
        double attn = 0;
        for (int q = 0; q < b.n_seq; q++) {
            double n = b.cu_seqlens[q + 1] - b.cu_seqlens[q];
            attn += 2.0 * n * n * d * L;  // causal QK^T and PV, forward
        }
        // Training: the LM's backward costs two forwards (one when its weights are frozen), the
        // vision tower runs forward only unless it trains (per_img).
        double lm_mult = stage == 1 || lora ? 2.0 : 3.0;
        double flops = lm_mult * (per_tok_lm * b.T + attn) + per_tok_lora * b.T + per_img * b.n_img;
        m.lora_pass_seed = (uint64_t)s + 1;
        ops->sync(be);
        double t0 = now_s();
        llava_model_zero_grads(&m);
        float loss = llava_forward_backward(&m, &b, 1, 1.0f, NULL);
        optim_step(&os, &m, &oc, 1.0f, s + 1);
        ops->sync(be);
        double dt = now_s() - t0;
        printf("  step %d: %d tokens, %d images, loss %.4f, %.1f ms%s\n", s + 1, b.T, b.n_img, (double)loss, dt * 1e3,
               s < warmup ? " (warm-up)" : "");
        if (s >= warmup) {
            total_time += dt;
            total_tokens += b.T;
            total_flops += flops;
            total_samples += batch;
        }
        llava_batch_free(&b);
    }
    double tflops = total_flops / total_time / 1e12;
    printf("bench-step: %.0f tokens/s, %.1f samples/s, %.1f model TFLOP/s", total_tokens / total_time,
           total_samples / total_time, tflops);
    if (peak > 0) printf(", MFU %.1f%% of %.0f TFLOP/s", 100.0 * tflops / peak, peak);
    printf("\n");
    optim_free(&os, &m);
    llava_model_free(&m);
    llava_backend_close(be);
    return 0;
fail:
    fprintf(stderr, "llava bench-step: %s\n", llava_errmsg());
    llava_backend_close(be);
    return 1;
}
