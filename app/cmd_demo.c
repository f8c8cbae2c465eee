// llava demo [--out DIR] [--fast] [--check]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "demo.h"
#include "kernels/backend.h"

static const char USAGE[] =
    "usage: llava demo [--out DIR] [--fast] [--check] [--device cpu|cuda] [--lm llama|llama3|qwen2|mistral]\n"
    "                  [--vision clip|siglip] [--train-vision all|N] [--multi-image] [--video] [--anyres]\n"
    "\n"
    "The whole recipe in miniature, nothing downloaded: writes a world of coloured shapes (images, captions,\n"
    "questions), a tokenizer and random LM and CLIP models, trains stage 1 (projector) and stage 2 (projector +\n"
    "LM), and answers held-out questions with and without their images.\n"
    "\n"
    "  --out DIR       where everything goes (default: demo-run); DIR/checkpoints/stage2/model is the trained\n"
    "                  model, an export `llava generate --model` and transformers load\n"
    "  --fast          the CI variant: 2400 training images instead of 4800 (default: off)\n"
    "  --check         exit 1 unless accuracy_with_image >= 0.90 and accuracy_blind <= chance + 0.10\n"
    "                  (default: off, the numbers are printed)\n"
    "  --device DEV    cpu or cuda (default: cpu; cuda without a GPU exits 77, skipped)\n"
    "  --lm FAMILY     the language model's architecture, at the demo's size: llama (default, vicuna's), llama3\n"
    "                  (rope theta 500000 with Llama-3.1's rope scaling, grouped queries), qwen2 (q/k/v biases,\n"
    "                  grouped queries, tied head) or mistral (grouped queries, a sliding window of 64)\n"
    "  --vision TOWER  clip (default) or siglip: a SigLIP-shaped tower (no class token, GELU's tanh form) with\n"
    "                  SigLIP's image processor (resize to S x S, mean and std 0.5)\n"
    "  --train-vision WHICH\n"
    "                  stage 2 trains the vision tower too (train.trainable vision, mm_vision_tower_lr a fifth of\n"
    "                  the LM's): all of it, or its last N layers that run (default: frozen, as LLaVA-1.5)\n"
    "  --multi-image   also questions about two images (LLaVA-NeXT's multi-image samples: an \"image\" list, an\n"
    "                  <image> for each): the colour of the shape in the first or the second; with --check those\n"
    "                  alone must reach 0.90 too (default: off)\n"
    "  --video         also questions about videos (LLaVA-NeXT-Video's samples: a \"video\" list of 4 frames, one\n"
    "                  <image> for them): the colour of the shape at the start or at the end; stage 2 and the\n"
    "                  evaluation take 2 of the 4 frames (data.video_frames 2, --video-frames 2); with --check those\n"
    "                  alone must reach 0.90 too (default: off; not with --anyres)\n"
    "  --anyres        both stages with LLaVA-NeXT's AnyRes (data.image_aspect_ratio anyres: each 48-pixel image as\n"
    "                  3 tiles, 78 features with image_newline; default: off)\n";

int cmd_demo(int argc, char **argv) {
    static const char *const FLAGS[] = {"--out",          "--fast",        "--check",  "--device", "--lm",  "--vision",
                                        "--train-vision", "--multi-image", "--anyres", "--video",  "--help"};
    demo_options o = {.out_dir = "demo-run"};
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) o.out_dir = argv[++i];
        else if (strcmp(argv[i], "--fast") == 0) o.fast = 1;
        else if (strcmp(argv[i], "--check") == 0) o.check = 1;
        else if (strcmp(argv[i], "--multi-image") == 0) o.multi_image = 1;
        else if (strcmp(argv[i], "--anyres") == 0) o.anyres = 1;
        else if (strcmp(argv[i], "--video") == 0) o.video = 1;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) o.device = argv[++i];
        else if (strcmp(argv[i], "--lm") == 0 && i + 1 < argc) o.lm = argv[++i];
        else if (strcmp(argv[i], "--vision") == 0 && i + 1 < argc) o.vision = argv[++i];
        else if (strcmp(argv[i], "--train-vision") == 0 && i + 1 < argc) {
            const char *w = argv[++i];
            char *end;
            long n = strtol(w, &end, 10);
            if (strcmp(w, "all") != 0 && (*end || n < 1 || n > 64)) {
                fprintf(stderr, "llava demo: --train-vision %s: all, or a number of layers from 1\n", w);
                return 2;
            }
            o.train_vision = strcmp(w, "all") == 0 ? -1 : (int)n;
        } else return args_unknown("demo", argv[i], FLAGS, ARGS_COUNT(FLAGS));
    }
    if (o.lm && strcmp(o.lm, "llama") && strcmp(o.lm, "llama3") && strcmp(o.lm, "qwen2") && strcmp(o.lm, "mistral")) {
        fprintf(stderr, "llava demo: --lm %s: llama, llama3, qwen2 or mistral\n", o.lm);
        return 2;
    }
    if (o.vision && strcmp(o.vision, "clip") && strcmp(o.vision, "siglip")) {
        fprintf(stderr, "llava demo: --vision %s: clip or siglip\n", o.vision);
        return 2;
    }
    if (o.video && o.anyres) {
        fprintf(stderr, "llava demo: --video with --anyres: AnyRes tiles images, not video frames\n");
        return 2;
    }
    char why[256];
    if (o.device && strcmp(o.device, "cuda") == 0 && !llava_backend_available("cuda", why, sizeof why)) {
        printf("skipped: %s\n", why);
        return 77;  // what ctest reports as skipped
    }
    if (demo_run(&o) != 0) {
        fprintf(stderr, "llava demo: %s\n", llava_errmsg());
        return 1;
    }
    return 0;
}
