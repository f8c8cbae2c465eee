// Model configuration read from Hugging Face config.json files, with each class's defaults applied
// for missing keys (HF writes configs as a diff against the class defaults).
#ifndef LLAVA_MODEL_CONFIG_H
#define LLAVA_MODEL_CONFIG_H

#include <stddef.h>

#include "data/image.h"

// LlamaConfig (vicuna v1.5 is a LlamaForCausalLM).
typedef struct {
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int head_dim;
    int max_position_embeddings;
    float rms_norm_eps;
    double rope_theta;
    char hidden_act[24];
    int tie_word_embeddings;
    int attention_bias;
    int mlp_bias;
    int bos_token_id, eos_token_id, pad_token_id;  // -1 when the config has none
    int has_rope_scaling;                          // rope_scaling is not null
    // rope_scaling {"rope_type": "llama3", ...} (Llama-3.1): the only kind the model computes
    int rope_llama3;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max;
    char model_type[16];  // "llama", "mistral", "qwen2"
    int qkv_bias;         // Qwen2: q, k and v have biases, o does not
    int sliding_window;   // Mistral: a key is seen by the queries within this many positions; 0: no window
} llama_config;

// CLIPVisionConfig, or SiglipVisionConfig (siglip = 1): SigLIP's tower has no class token and no pre-layernorm,
// a bias on its patch embedding, position embeddings for the patches only, and GELU's tanh approximation.
typedef struct {
    int siglip;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_channels;
    int image_size;
    int patch_size;
    int projection_dim;
    char hidden_act[24];
    float layer_norm_eps;
    // A tower run at another image_size than it was trained for (mm_vision_image_size): the side of the patch grid
    // its stored position embeddings are for, interpolated to image_size's grid at load as transformers'
    // interpolate_pos_encoding does (bicubic); 0: they are for image_size.
    int pos_grid;
} clip_vision_config;

// Runs the tower at `size` pixels (a multiple of its patch): its position embeddings are interpolated at load.
// 0, or -1 with an error.
int vision_run_at(clip_vision_config *v, int size);

// The projector: `projector_depth` Linear layers with an exact GELU between each two (LLaVA's build_vision_projector:
// "linear" = 1, "mlp2x_gelu" = 2 (LLaVA-1.5), "mlp{N}x_gelu" = N), or 0: "identity" (the features as they are; the
// tower's width must be the LM's).
enum { PROJ_MAX_DEPTH = 16 };

// Visual-token reduction between the tower's selected features (a G x G patch grid) and the projector:
// average / max pooling with kernel and stride s (floor: (G / s)^2 tokens), or a bilinear resize to ceil(G / s)
// squared (align_corners false), as LLaVA-NeXT's get_2dPool (which pools after the projector, for video frames).
typedef enum { POOL_NONE = 0, POOL_AVERAGE, POOL_MAX, POOL_BILINEAR } spatial_pool_mode;

// The LLaVA glue: which vision layer feeds the projector, the projector's shape, the image token.
typedef struct {
    int image_token_index;          // llava-hf: 32000; original LLaVA splices at -200 instead
    char projector_hidden_act[24];  // "gelu" (exact erf)
    int projector_depth;            // Linear layers; 0: identity
    int projector_bias;
    spatial_pool_mode pool_mode;  // mm_spatial_pool_mode
    int pool_stride;              // mm_spatial_pool_stride
    // Video frames only (transformers' LlavaNextVideoForConditionalGeneration: spatial_pool_mode /
    // spatial_pool_stride): each video frame's selected G x G patch features pooled (average or max, kernel and stride
    // s, floor: (G / s)^2 tokens) before the projector; images are not pooled. LLaVA-NeXT's own code pools after the
    // projector (get_2dPool); we follow transformers. Excludes pool_mode, keep_tokens and AnyRes.
    spatial_pool_mode video_pool_mode;
    int video_pool_stride;
    int video_token_index;  // LlavaNextVideo's video_token_index (inputs with video tokens); -1: none
    // mm_vision_keep_tokens: keep the K patches the CLS query attends to most in the feature layer (mean over
    // heads; ties to the lower index), in their order; 0: all.
    int keep_tokens;
    int vision_feature_layer;  // -2 for LLaVA-1.5: hidden_states[-2]
    int drop_cls;              // select strategy "default" / select feature "patch"
    int image_seq_length;      // 576 for 336 px / patch 14
    int pad_token_id;          // top-level pad id (llava-hf: 32001), -1 when absent
    // Original LLaVA's image_aspect_ratio ("pad" for LLaVA-1.5, "square", ...), "" when the config has
    // none (llava-hf configs: the processor decides).
    char image_aspect_ratio[16];
    // LLaVA-NeXT's AnyRes (model_type llava_next): each image is its base tile and a grid of tiles through the tower,
    // their features unpadded and laid out with image_newline after each row (data/image.h
    // image_anyres_feature_rows); pinpoints: image_grid_pinpoints, (height, width) each as transformers reads them,
    // and its max_num_patches the anyres_max_N cap (vision_aspect_ratio or image_aspect_ratio "anyres_max_N";
    // 0: none), each image's unpadded features resized bilinear to at most about N tiles' worth.
    int anyres;
    image_pinpoints pinpoints;
} llava_glue_config;

// LoRA adapters on the language model's linears, PEFT's LoraConfig (adapter_config.json): each
// adapted linear W (O, I) gains A (r, I) and B (O, r), and computes x W^T + scaling * (drop(x) A^T) B^T.
// r == 0: the model has no adapters.
enum { LORA_Q = 0, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_N_TARGETS };
extern const char *const LORA_TARGET_NAMES[LORA_N_TARGETS];  // "q_proj" ... "down_proj", PEFT's module names

typedef struct {
    int r;             // rank; 0: no adapters
    double alpha;      // lora_alpha
    int rslora;        // use_rslora: scaling alpha / sqrt(r) instead of alpha / r
    unsigned targets;  // bit LORA_* per adapted module, in every decoder layer
    double dropout;    // lora_dropout, on the adapter's input in training passes only
    // QLoRA: 4 stores the frozen decoder layers' linears in NF4 with double quantisation (model/nf4.h,
    // GROUP_LM_NF4), dequantised into one scratch weight as each linear runs; 16 (or 0): as loaded.
    int bits;
    int quant_bf16;  // with bits 4: the weights rounded to bf16 before quantisation and dequantised to
                     // bf16, as bitsandbytes treats a model loaded in bf16
    int dora;        // PEFT's use_dora: a magnitude per output row (lora_magnitude_vector); run folded
                     // into the base weights at load (llava_model_load_opts), not trained
} lora_config;

// LLaVA's projector names: "linear" (1), "mlp{N}x_gelu" (N in 1..PROJ_MAX_DEPTH), "identity" (0). 0 or -1.
int llava_projector_parse(const char *s, int *depth);
// The name of a depth ("mlp2x_gelu"); buf of at least 24 bytes.
const char *llava_projector_name(int depth, char *buf);
// "none", "average", "max", "bilinear". 0 or -1.
int llava_pool_parse(const char *s, spatial_pool_mode *mode);
const char *llava_pool_name(spatial_pool_mode mode);

// alpha / r, or alpha / sqrt(r) with rslora, rounded to fp32 as the adapter's arithmetic uses it.
float lora_scaling(const lora_config *l);
// The target bit of a module name ("q_proj", ...), or -1.
int lora_target_of(const char *module);

typedef enum {
    HF_LLAMA = 0,       // LlamaForCausalLM (vicuna)
    HF_CLIP,            // CLIPModel (vision_config inside)
    HF_CLIP_VISION,     // CLIPVisionModel
    HF_LLAVA_HF,        // LlavaForConditionalGeneration (llava-hf)
    HF_LLAVA_ORIGINAL,  // haotian-liu LlavaLlamaForCausalLM (model_type llava / llava_llama)
} hf_kind;

typedef struct {
    hf_kind kind;
    char model_type[32];
    char architecture[64];
    int has_text, has_vision, has_projector;
    llama_config text;
    clip_vision_config vision;
    llava_glue_config glue;
    int vision_from_name;         // original LLaVA: vision config taken from the mm_vision_tower name
    char vision_tower_name[256];  // original LLaVA's mm_vision_tower
    lora_config lora;             // adapters the model carries (not part of config.json: set by the caller)
} model_config;

void llama_config_defaults(llama_config *c);
void clip_vision_config_defaults(clip_vision_config *c);
// LlavaConfig's vision config when none is given: CLIP ViT-L/14 at 336 px.
void clip_vision_config_llava_default(clip_vision_config *c);
// SiglipVisionConfig's defaults (transformers 4.46: siglip-base-patch16-224's shape).
void siglip_vision_config_defaults(clip_vision_config *c);
// 1 when the tower has a class token (CLIP), 0 for SigLIP.
static inline int vision_has_cls(const clip_vision_config *c) { return !c->siglip; }

// LLaVA-1.5's shapes without a file ("7b": Vicuna-7B, "13b": Vicuna-13B, each with CLIP ViT-L/14-336
// and the 2-layer GELU projector), original-LLaVA layout: what the benchmarks build random models
// of. 0, or -1 with an error for another name.
int model_config_llava15(const char *size, model_config *mc);

// Parses a config.json. `path` names the file in messages.
int model_config_parse(const char *text, size_t len, const char *path, model_config *out);
// `path` is a config.json file or a folder holding one.
int model_config_load(const char *path, model_config *out);

const char *hf_kind_name(hf_kind k);

// The vision layer count actually computed: hidden_states[L] is the output of layer L-1, and a
// negative index counts from the end of the 25 (for 24 layers) hidden states.
int llava_vision_layers_used(const model_config *mc);
// Visual tokens per image: the feature grid (and CLS unless dropped), after pooling or keeping K.
int llava_tokens_per_image(const model_config *mc);
// Visual tokens per video frame: llava_tokens_per_image's, or (G / s)^2 under video_pool_mode.
int llava_tokens_per_video_frame(const model_config *mc);
// The glue against the tower and the LM: pooling and keeping need the CLS dropped (a patch grid), exclude each
// other, a stride >= 1, K within the grid; identity needs the tower's width to be the LM's. 0, or -1 naming the key.
int llava_glue_check(const model_config *mc);
// N of "anyres_max_N" (LLaVA-NeXT's image_aspect_ratio, LlavaOnevision's vision_aspect_ratio; N >= 1, digits only,
// at most 10^6); 0 for a string without that prefix; -1 for the prefix with anything else after it.
int llava_anyres_max_parse(const char *s);

#endif
