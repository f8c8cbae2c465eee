#include <stdio.h>

#include "commands.h"

// The demo grows with the project: each stage below runs once the piece behind it lands.
int cmd_demo(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("llava demo: the LLaVA-1.5 recipe in miniature on the CPU, with nothing downloaded.\n"
           "When complete it will:\n"
           "  1. generate a synthetic image dataset (coloured shapes at positions) in LLaVA's JSON format,\n"
           "  2. build tiny CLIP / projector / LLaMA models from an embedded config,\n"
           "  3. run stage 1 (projector only, plain template) and stage 2 (projector + LM, vicuna_v1),\n"
           "  4. save checkpoints, resume, and plot the loss curve.\n"
           "Built so far: safetensors I/O, Hugging Face config and weight-name mapping, training presets.\n"
           "Try: llava inspect <model folder>   llava config configs/llava15-7b-stage1.json\n");
    return 0;
}
