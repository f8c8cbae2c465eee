// `llava demo`: the whole recipe in miniature on the CPU (see demo.c).
#ifndef LLAVA_APP_DEMO_H
#define LLAVA_APP_DEMO_H

typedef struct {
    const char *out_dir;
    int fast;            // the CI variant: less data, fewer epochs
    int check;           // fail unless the accuracy targets are met
    const char *device;  // "cpu" (default) or "cuda"
    const char *lm;      // the language model's family: "llama" (default: vicuna-like), "llama3", "qwen2", "mistral"
    const char *vision;  // the vision tower: "clip" (default) or "siglip"
    int train_vision;    // stage 2 trains the tower too: 0 no (default), -1 all of it, N its last N layers
    int multi_image;     // also two-image questions (LLaVA-NeXT's multi-image samples), trained and held out
    int video;           // also video questions (LLaVA-NeXT-Video's frame lists), trained and held out
    int anyres;          // both stages with LLaVA-NeXT's AnyRes (data.image_aspect_ratio anyres)
} demo_options;

// Two-image samples with --multi-image: a quarter of the training images' count, half the held-out count.
#define DEMO_TRAIN_PAIRS(n_train) (n_train)
#define DEMO_EVAL_PAIRS(n_eval) ((n_eval) / 2)
// Video samples with --video: half the training images' count, half the held-out count.
#define DEMO_TRAIN_VIDEOS(n_train) ((n_train) / 2)
#define DEMO_EVAL_VIDEOS(n_eval) ((n_eval) / 2)
// demo_make_world_ex's multi_image bits.
#define DEMO_PAIRS 1
#define DEMO_VIDEO 2

int demo_run(const demo_options *o);

#define DEMO_IMAGE_SIZE 48
// Writes the demo's world into out: data/ (train_captions.json, train_qa.json, and with n_eval > 0
// eval_qa.json, PNG images), tokenizer.model, lm/ and clip/ (random models), stage1.json and
// stage2.json (presets with output under out/checkpoints/). qtypes (n_eval) receives each held-out
// question's type. Tests build small training setups with it.
int demo_make_world(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes);
// The same with the presets' train.device set to `device`.
int demo_make_world_on(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes, const char *device);
// The same with a language model of family `lm` (demo_options.lm; NULL: llama), shaped as the demo's.
int demo_make_world_lm(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes, const char *device,
                       const char *lm);
// The same with a vision tower of kind `vision` ("clip", the default for NULL, or "siglip"), stage 2 training the
// tower as demo_options.train_vision says, and with multi_image's bits the two-image samples and questions
// (DEMO_PAIRS) and the video samples and questions (DEMO_VIDEO).
int demo_make_world_ex(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes, const char *device,
                       const char *lm, const char *vision, int train_vision, int multi_image);

// Writes a SentencePiece BPE model file (identity normalizer, dummy prefix, byte fallback, unk/bos/eos
// at 0/1/2): the demo builds its tokenizer with it (demo_tokenizer.c). Returns 0, or -1 with an error.
int tok_write_model(const char *path, const char *const *pieces, const float *scores, const int *types, int n);
// Writes DIR/tokenizer.json, a byte-level BPE (GPT-2's byte alphabet as ids 0..255, then every word as one token,
// ignore_merges, no merges; the specials as added tokens; BOS through the post-processor when bos is given) and
// DIR/tokenizer_config.json (bos_token, eos_token). Words are raw text (" word" gets the "Ġ" form). 0, or -1.
int tok_write_bpe_json(const char *dir, const char *const *words, int n_words, const char *const *specials,
                       int n_specials, const char *bos, const char *eos);

#endif
