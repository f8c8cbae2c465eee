#include "names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/config.h"

const char *layout_name(weight_layout l) {
    switch (l) {
    case LAYOUT_LLAVA_HF_LEGACY: return "llava-hf (legacy names)";
    case LAYOUT_LLAVA_HF: return "llava-hf (transformers >= 4.52 names)";
    case LAYOUT_LLAVA_ORIGINAL: return "original LLaVA";
    case LAYOUT_LLAMA: return "LLaMA / Vicuna";
    case LAYOUT_CLIP: return "CLIP";
    case LAYOUT_UNKNOWN: return "unknown";
    }
    return "?";
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int ends(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

// Prefix rules, most specific first. Each maps an external prefix to an internal one.
static const struct {
    const char *ext;
    const char *internal;
    weight_layout layout;
} RULES[] = {
    {"language_model.model.", "lm.model.", LAYOUT_LLAVA_HF_LEGACY},
    {"language_model.lm_head.", "lm.lm_head.", LAYOUT_LLAVA_HF_LEGACY},
    {"vision_tower.vision_model.", "vision.", LAYOUT_LLAVA_HF_LEGACY},
    {"multi_modal_projector.", "projector.", LAYOUT_LLAVA_HF_LEGACY},
    {"model.language_model.", "lm.model.", LAYOUT_LLAVA_HF},
    {"model.vision_tower.vision_model.", "vision.", LAYOUT_LLAVA_HF},
    {"model.multi_modal_projector.", "projector.", LAYOUT_LLAVA_HF},
    {"model.vision_tower.vision_tower.vision_model.", "vision.", LAYOUT_LLAVA_ORIGINAL},
    {"vision_model.", "vision.", LAYOUT_CLIP},
    {"model.", "lm.model.", LAYOUT_UNKNOWN},      // vicuna or original LLaVA
    {"lm_head.", "lm.lm_head.", LAYOUT_UNKNOWN},  // vicuna, original LLaVA or new llava-hf
};

name_status name_to_internal(const char *ext, char **internal, weight_layout *layout) {
    if (layout) *layout = LAYOUT_UNKNOWN;
    *internal = NULL;
    // Buffers that some checkpoints carry and no model reads.
    if (ends(ext, ".inv_freq") || ends(ext, ".position_ids")) return NAME_IGNORED;
    // CLIPModel's text tower and heads: LLaVA uses the vision tower alone.
    if (starts(ext, "text_model.") || starts(ext, "visual_projection.") || starts(ext, "text_projection.") ||
        strcmp(ext, "logit_scale") == 0 || strcmp(ext, "logit_bias") == 0) {
        if (layout) *layout = LAYOUT_CLIP;
        return NAME_IGNORED;
    }
    // LLaVA-NeXT's AnyRes newline: top-level in llava-hf's legacy layout, under "model." in the new one.
    if (strcmp(ext, "image_newline") == 0 || strcmp(ext, "model.image_newline") == 0) {
        *internal = xstrdup("projector.image_newline");
        if (layout) *layout = ext[0] == 'i' ? LAYOUT_LLAVA_HF_LEGACY : LAYOUT_LLAVA_HF;
        return NAME_MAPPED;
    }
    // PEFT's files name every tensor after the wrapped model's, behind "base_model.model."
    // (adapter_model.safetensors, LLaVA's non_lora_trainables.bin).
    if (starts(ext, "base_model.model.")) return name_to_internal(ext + strlen("base_model.model."), internal, layout);
    // Original LLaVA projector, also as saved alone in mm_projector.bin / non_lora_trainables.bin,
    // where names carry prefixes such as "base_model.model.model." before "mm_projector.". LLaVA's
    // own loader keys on the text after "mm_projector." and so do we.
    // nn.Sequential numbers its modules: Linear layers at 0, 2, 4, ... with the GELUs between.
    const char *mm = strstr(ext, "mm_projector.");
    if (mm && (mm == ext || mm[-1] == '.')) {
        const char *rest = mm + strlen("mm_projector.");
        int idx = 0, used = 0;
        const char *param = rest;  // a single-Linear projector has no index
        if (rest[0] >= '0' && rest[0] <= '9') {
            if (sscanf(rest, "%d.%n", &idx, &used) != 1 || used == 0 || idx % 2 || idx / 2 >= PROJ_MAX_DEPTH)
                return NAME_UNKNOWN;
            param = rest + used;
        }
        if (strcmp(param, "weight") != 0 && strcmp(param, "bias") != 0) return NAME_UNKNOWN;
        *internal = xasprintf("projector.linear_%d.%s", idx / 2 + 1, param);
        if (layout) *layout = LAYOUT_LLAVA_ORIGINAL;
        return NAME_MAPPED;
    }
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++) {
        if (!starts(ext, RULES[i].ext)) continue;
        const char *rest = ext + strlen(RULES[i].ext);
        if (!rest[0]) return NAME_UNKNOWN;
        if (strcmp(RULES[i].internal, "vision.") == 0 && starts(rest, "head.")) {  // SigLIP's pooling head: unused
            if (layout) *layout = RULES[i].layout;
            return NAME_IGNORED;
        }
        int k = 0, used = 0;
        if (strcmp(RULES[i].internal, "projector.") == 0 &&
            !(sscanf(rest, "linear_%d.%n", &k, &used) == 1 && used > 0 && k >= 1 && k <= PROJ_MAX_DEPTH))
            return NAME_UNKNOWN;
        *internal = xasprintf("%s%s", RULES[i].internal, rest);
        if (layout) *layout = RULES[i].layout;
        return NAME_MAPPED;
    }
    return NAME_UNKNOWN;
}

int name_group_of(const char *internal) {
    if (strstr(internal, ".lora_A.") || strstr(internal, ".lora_B.") || strstr(internal, ".lora_magnitude_vector"))
        return NAME_GROUP_LORA;
    if (starts(internal, "vision.")) return NAME_GROUP_VISION;
    if (starts(internal, "projector.")) return NAME_GROUP_PROJECTOR;
    if (starts(internal, "lm.")) return NAME_GROUP_LM;
    return -1;
}

char *name_from_internal(const char *internal, weight_layout layout, int linear_projector) {
    int g = name_group_of(internal);
    if (g < 0) return NULL;
    if (g == NAME_GROUP_LORA) g = NAME_GROUP_LM;  // named after the LM module they adapt
    const char *rest = strchr(internal, '.') + 1;
    if (strcmp(internal, "projector.image_newline") == 0)  // LLaVA-NeXT's: a model parameter, not the projector's
        return layout == LAYOUT_LLAVA_HF ? xstrdup("model.image_newline") : xstrdup("image_newline");
    switch (layout) {
    case LAYOUT_LLAVA_HF_LEGACY:
        if (g == NAME_GROUP_VISION) return xasprintf("vision_tower.vision_model.%s", rest);
        if (g == NAME_GROUP_PROJECTOR) return xasprintf("multi_modal_projector.%s", rest);
        if (starts(rest, "model.")) return xasprintf("language_model.%s", rest);
        return xasprintf("language_model.%s", rest);  // lm_head.*
    case LAYOUT_LLAVA_HF:
        if (g == NAME_GROUP_VISION) return xasprintf("model.vision_tower.vision_model.%s", rest);
        if (g == NAME_GROUP_PROJECTOR) return xasprintf("model.multi_modal_projector.%s", rest);
        if (starts(rest, "model.")) return xasprintf("model.language_model.%s", rest + strlen("model."));
        return xstrdup(rest);  // lm_head.*
    case LAYOUT_LLAVA_ORIGINAL:
        if (g == NAME_GROUP_VISION) return xasprintf("model.vision_tower.vision_tower.vision_model.%s", rest);
        if (g == NAME_GROUP_PROJECTOR) {
            const char *param = strchr(rest, '.') + 1;
            if (linear_projector) return xasprintf("model.mm_projector.%s", param);
            int k = 1;
            sscanf(rest, "linear_%d.", &k);
            return xasprintf("model.mm_projector.%d.%s", 2 * (k - 1), param);
        }
        return xstrdup(rest);
    case LAYOUT_LLAMA: return g == NAME_GROUP_LM ? xstrdup(rest) : NULL;
    case LAYOUT_CLIP: return g == NAME_GROUP_VISION ? xasprintf("vision_model.%s", rest) : NULL;
    case LAYOUT_UNKNOWN: return NULL;
    }
    return NULL;
}
