// llava: one executable, many subcommands. `llava help` lists them.
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

static int cmd_help(int argc, char **argv);

static const llava_command COMMANDS[] = {
    {"help", cmd_help, "[COMMAND]", "list the commands, or show one command's usage"},
    {"inspect", cmd_inspect, "PATH...",
     "describe a model folder, config.json or safetensors file: architecture, parameter counts, dtypes, "
     "missing/unexpected tensors"},
    {"config", cmd_config, "[PRESET.json] [--set key=value ...] [--keys]",
     "print a training preset fully resolved (defaults, base presets, overrides), or every key"},
    {"forward", cmd_forward,
     "--model DIR --inputs IN.safetensors --out OUT.safetensors [--device cpu|cuda] [--adapter DIR] "
     "[--grads projector|projector+lm|lora+projector]",
     "one forward (and backward) pass: logits, loss and gradients under Hugging Face names"},
    {"tokenize", cmd_tokenize,
     "--tokenizer PATH [--mode legacy|hf431|hf437] [--sp] [--pieces] [--decode] [--template NAME [--data FILE]] "
     "[--bench FILE]",
     "token ids (or pieces) of JSON Lines strings on stdin, as LLaVA-1.5's tokenizer makes them; label masks with "
     "--template"},
    {"image", cmd_image,
     "[--aspect square|pad] [--size S] IN --out OUT.safetensors [--with-decoded] | --bench N FILE...",
     "decode an image (JPEG/PNG/GIF by content) and preprocess it as LLaVA-1.5 does: pixels_u8 and pixel_values"},
    {"prep", cmd_prep,
     "--data FILE.json --image-folder DIR --tokenizer tokenizer.model --template plain|vicuna_v1 --out DATA.h5 [...]",
     "LLaVA JSON + images -> HDF5 of token ids, labels, modality lengths and images, with a report of every bad "
     "sample"},
    {"data", cmd_data,
     "check --data FILE.json ... | stats DATA.json|DATA.h5 [...] | convert --from F IN --out OUT | convert --to F IN "
     "--out OUT",
     "dataset tools: prep's report without writing, length statistics and histograms, ShareGPT/OpenAI conversion"},
    {"show", cmd_show, "DATA.h5 [--index I | --id ID] [--json] [--tokenizer PATH]",
     "print a prepared sample as LLaVA's preprocess returns it, supervised spans marked"},
    {"train", cmd_train, "CONFIG.json [--set key=value ...] [--resume]",
     "train: stage 1 (projector), stage 2 (projector + LM) or your own freezing policy; checkpoints, resume, "
     "metrics.jsonl"},
    {"generate", cmd_generate,
     "--model DIR (--prompt TEXT [--image FILE] | --questions Q.jsonl --image-folder DIR --answers A.jsonl) "
     "[--temperature T --top-p P --top-k K --seed S --max-new-tokens N --stop S] [--json]",
     "answer questions (about images) with a trained model: LLaVA's prompt, KV-cached batched decoding"},
    {"eval", cmd_eval,
     "--model DIR --benchmark B --data DIR --out RESULTS [--limit N] | score --benchmark B --answers A.jsonl --data "
     "DIR | list",
     "LLaVA-1.5's benchmarks: answers and scores as LLaVA's scripts make them, beside the published numbers"},
    {"export", cmd_export, "--format gguf --model DIR --out DIR [--type f16|bf16|q8_0|f32] [--tokenizer PATH]",
     "a trained model as the GGUF files llama.cpp runs (language model + mmproj)"},
    {"merge", cmd_merge, "--adapter DIR --out DIR (--base DIR | --config RUN.json [--set key=value ...]) [--dtype T]",
     "fold a LoRA adapter into its base model: a llava-hf folder that loads without the adapter"},
    {"sweep", cmd_sweep, "SWEEP.json [--dry-run] [--keep-going] [--quiet]",
     "train (and evaluate) the variants of a preset one after another: a table of loss, tokens/s, memory and "
     "scores per variant, resumable"},
    {"plan", cmd_plan, "CONFIG.json [--world N] [--gpu-gib G] [--acts] [--set key=value ...]",
     "memory per rank of a training run (parameters, gradients, optimizer state, activations), bytes per kind"},
    {"plot", cmd_plot, "OUT_DIR [--out FILE.svg]",
     "draw a run's metrics.jsonl (loss and learning rate) as an SVG picture"},
    {"bench-kernels", cmd_bench_kernels, "[--reps N] [--only SUBSTRING] [--no-attention]",
     "time every CUDA kernel at LLaVA-1.5-7B shapes against the device's measured peaks"},
    {"bench-step", cmd_bench_step,
     "[--device cpu|cuda] [--layers L] [--batch B] [--steps N] [--stage 1|2] [--peak-tflops P]",
     "training steps of a LLaVA-7B-shaped model (LM truncated) on LLaVA's length mix: tokens/s, TFLOP/s, MFU"},
    {"bench-generate", cmd_bench_generate,
     "[--device cpu|cuda] [--shape demo|7b|13b | --model DIR] [--layers L] [--batch B] [--prompt-tokens P] "
     "[--new-tokens N] [--no-cache-tokens K] [--json]",
     "generation speed: time to first token, decode tokens/s at batch 1 and B, the bandwidth bound, the KV cache's "
     "speed-up"},
    {"serve", cmd_serve, "--model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--allow-local-files DIR] [...]",
     "an OpenAI-compatible HTTP server (chat completions, streamed or not, with images) over the generation engine"},
    {"demo", cmd_demo, "[--out DIR] [--fast] [--check] [--device cpu|cuda]",
     "the whole recipe in miniature on the CPU, nothing downloaded"},
};
static const int N_COMMANDS = (int)(sizeof COMMANDS / sizeof COMMANDS[0]);

static void usage(FILE *f) {
    fprintf(f, "llava.c: LLaVA-1.5 training and fine-tuning in C\n\nusage: llava COMMAND [ARGS]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n`llava COMMAND --help` (or `llava help COMMAND`) lists a command's flags with their defaults.\n");
}

static int cmd_help(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    // `llava help COMMAND` is `llava COMMAND --help`: every command prints its own usage.
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(COMMANDS[i].name, argv[1]) == 0) {
            if (COMMANDS[i].run == cmd_help) {
                usage(stdout);
                return 0;
            }
            char *help_argv[] = {argv[1], "--help", NULL};
            return COMMANDS[i].run(2, help_argv);
        }
    }
    fprintf(stderr, "llava: no command \"%s\"\n", argv[1]);
    return 2;
}

int main(int argc, char **argv) {
    // The CPU backend allocates each step's activations afresh; keeping freed memory in the heap
    // (instead of returning every large block to the kernel) saves a page fault per touched page.
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) return cmd_help(1, argv);
    // `llava COMMAND --help`: every command prints its own usage (a flag list with the defaults).
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, argv[1]) == 0) {
            return COMMANDS[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "llava: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
