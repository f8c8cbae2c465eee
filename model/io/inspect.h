// `llava inspect`: what a model folder, config file or safetensors file holds.
#ifndef LLAVA_INSPECT_H
#define LLAVA_INSPECT_H

#include <stdint.h>
#include <stdio.h>

#include "model/config.h"
#include "model/params.h"

typedef struct {
    int has_config;
    model_config config;
    uint64_t count_all[N_GROUPS];   // every tensor of the format (whole vision tower)
    uint64_t count_used[N_GROUPS];  // what LLaVA computes (vision layers up to the feature layer)
    int has_weights;
    int n_files, n_tensors;
    uint64_t weight_bytes;
    int dtype_count[DT_COUNT];
    weight_layout layout;
    int n_missing, n_unexpected, n_mismatched;
} inspect_result;

// Inspects `path` (folder, config.json, *.safetensors or *.index.json), printing a report to `out`
// (which may be NULL). Returns 0, or -1 when nothing could be read (error in llava_errmsg()).
int inspect_path(const char *path, FILE *out, inspect_result *res);

#endif
