// The batched-generation goldens of the tiny models, <cfg>/generate_batch.json and the pixel values
// beside it (tools/reference/make_generate_batch_golden.py; layout in tests/data/golden/model/README.md),
// as the generation tests read them.
#ifndef LLAVA_TESTS_GEN_GOLDEN_H
#define LLAVA_TESTS_GEN_GOLDEN_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/io/safetensors.h"

typedef struct {
    cJSON *root;       // the JSON: "prompts" (ids, image, new_single, step_logits, ...), "max_new_tokens", ...
    float *pix;        // pixel_values (n, 3, S, S)
    size_t per_image;  // 3 S S
    int S;
} gen_golden;

// 0, or -1 with llava_errmsg() naming the file.
static inline int gen_golden_load(const char *cfg, gen_golden *g) {
    memset(g, 0, sizeof *g);
    char path[256];
    snprintf(path, sizeof path, "tests/data/golden/model/%s/generate_batch.json", cfg);
    size_t len;
    char *text = read_file(path, 1 << 22, &len);
    g->root = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!g->root) return llava_fail("%s: missing or not JSON", path);
    snprintf(path, sizeof path, "tests/data/golden/model/%s/generate_batch.safetensors", cfg);
    st_file in;
    if (st_open(&in, path) != 0) {
        cJSON_Delete(g->root);
        return -1;
    }
    const st_tensor *pt = st_find(&in, "pixel_values");
    if (!pt || pt->ndim != 4) {
        st_close(&in);
        cJSON_Delete(g->root);
        return llava_fail("%s: no pixel_values (n, 3, S, S)", path);
    }
    g->pix = xmalloc(sizeof(float) * pt->numel);
    st_tensor_to_f32(&in, pt, g->pix);
    g->S = (int)pt->shape[2];
    g->per_image = (size_t)3 * (size_t)g->S * (size_t)g->S;
    st_close(&in);
    return 0;
}

// Prompt k's pixels, or NULL for a text-only prompt.
static inline const float *gen_golden_pixels(const gen_golden *g, const cJSON *prompt) {
    int img = cJSON_GetObjectItem(prompt, "image")->valueint;
    return img >= 0 ? g->pix + g->per_image * (size_t)img : NULL;
}

static inline void gen_golden_free(gen_golden *g) {
    cJSON_Delete(g->root);
    free(g->pix);
}

#endif
