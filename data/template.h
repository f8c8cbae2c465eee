// Conversation templates and label masks, token for token as LLaVA-1.5 builds them (spec llava15-recipe.md §2-4):
// preprocess_multimodal's "<image>" normalisation, the conversation string of the template, tokenizer_image_token,
// preprocess_plain (stage 1) and preprocess_v1 (stage 2) masking, and the truncation to model_max_length.
//
// Templates are data (conv_template): the prompt is assembled from format strings and masked by a few numbers, so
// a llama-2 or mistral-instruct style template is a JSON file (conv_template_parse), not new code. docs/tokenizer.md
// lists the fields.
#ifndef LLAVA_DATA_TEMPLATE_H
#define LLAVA_DATA_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#define IGNORE_INDEX (-100)       // labels that do not count in the loss (llava/constants.py)
#define IMAGE_TOKEN_INDEX (-200)  // the input id that stands for an image's features
#define DEFAULT_IMAGE_TOKEN "<image>"

// Format strings expand "{system}", "{role}" and "{message}"; any other text is copied as is.
typedef struct {
    char *name;
    char *system;
    char *roles[2];       // what {role} becomes for the user (0) and the assistant (1): "USER", "ASSISTANT"
    char *from[2];        // the data's "from" values of the two roles: "human", "gpt"
    char *prefix;         // the start of the conversation ("{system} ")
    char *first_turn;     // the first user turn when it differs from turn[0] (llama-2 wraps the system in it); or NULL
    char *turn[2];        // a turn with a message ("{role}: {message} ", "{role}: {message}</s>")
    char *empty_turn[2];  // a turn whose message is "" (Python's `if message:` is false there): "{role}:"
    // Stage-1 style (preprocess_plain): exactly two turns whose roles are not checked; the first must contain
    // "<image>" and is replaced by it; the tokens of the first turn are masked; no length check.
    int plain;
    // preprocess_v1 style masking: the conversation is split into rounds on round_sep, a round's instruction ends
    // with answer_sep, and its length in tokens less instr_trim is masked. later_round_fix is added to both lengths
    // of every round after the first when the tokenizer mode is hf437 (LLaVA HEAD's `-1`, train.py L477-479).
    char *round_sep;
    char *answer_sep;
    int instr_trim;
    int later_round_fix;
    // LLaVA-NeXT's preprocess_llama3 / preprocess_qwen style ("messages": true). `prefix` is the system message's
    // turn and `turn` every other turn (both roles alike); each is rendered and tokenized on its own without special
    // tokens (apply_chat_template of one message), "<image>" splitting out as an added special token when the sample
    // has an image. A turn is masked when its role is roles[0] or "system"; a first turn that is not the user's is
    // dropped; a "from" other than the two passes through as its own role name. Then every id listed in unmask (the
    // strings of unmask_tokens as convert_tokens_to_ids resolves them, and unmask_ids as they are) is supervised
    // wherever it stands. An image inside a supervised turn keeps the added "<image>" token's id as its label.
    int messages;
    int trim_message;      // Python's str.strip() on each message, as the Llama-3 chat template's `| trim`
    char **unmask_tokens;  // e.g. "<|eot_id|>"
    int n_unmask_tokens;
    int *unmask_ids;  // e.g. 198 (preprocess_qwen hard-codes "\n"'s id of the Qwen2 vocabulary)
    int n_unmask_ids;
    char *generation_prompt;  // a turn to be generated (conv_turn value NULL) in a messages template; NULL: ""
    char *stop_token;         // generation also ends at this token (conv_llava_llama_3's stop_token_ids); or NULL
    // preprocess_multimodal's rule: 0 = LLaVA-1.5's (every turn mentioning "<image>" gets it moved to the front);
    // 1 = LLaVA-NeXT's ("multimodal": "next": only a turn with exactly one "<image>" that does not start with it;
    // and "QA_GT_caption_based_noisy" is removed from every turn of an image sample).
    int multimodal_next;
} conv_template;

// Built-in templates: "plain" (stage 1), "vicuna_v1" (stage 2; alias "v1"), and LLaVA-NeXT's conv_templates of the same
// names: "llava_llama_2", "mistral_instruct", "llava_llama_3", "qwen_1_5". NULL for an unknown name.
const conv_template *conv_template_builtin(const char *name);
// Their names, for messages.
#define CONV_TEMPLATE_BUILTINS "plain, vicuna_v1, llava_llama_2, mistral_instruct, llava_llama_3, qwen_1_5"
// A template from JSON (keys as the struct fields; roles/from/turn/empty_turn are arrays of two strings).
// Free with conv_template_free.
conv_template *conv_template_parse(const char *json, size_t len);
conv_template *conv_template_load(const char *path);
void conv_template_free(conv_template *t);

typedef struct {
    const char *from;   // NUL-terminated
    const char *value;  // UTF-8; NULL: the turn the model is to generate (inference prompts)
    size_t value_len;
} conv_turn;

typedef struct {
    const tokenizer *tok;
    tok_mode mode;
    const conv_template *tmpl;
    int model_max_length;  // 2048 in LLaVA-1.5's scripts; 0 = no limit
    int strict;            // a length mismatch fails the sample instead of masking it
} prep_config;

enum {
    PREP_TRUNCATED = 1,  // cut at model_max_length (text-only: at tokenization; with an image: at collation)
    PREP_MISMATCH = 2,   // LLaVA's "tokenization mismatch": every label was set to IGNORE_INDEX
    PREP_VIDEO = 4,      // a video: its one <image> stands for all its frames (the sample's image paths), in order
};

typedef struct {
    tok_ids ids;             // input_ids: IMAGE_TOKEN_INDEX where an image goes
    tok_ids labels;          // same length: the id where supervised, IGNORE_INDEX elsewhere
    int flags;               // PREP_TRUNCATED | PREP_MISMATCH | PREP_VIDEO
    int cur_len, total_len;  // LLaVA's counters of the length check (rounds templates)
    size_t full_len;         // the length before truncation
    char *prompt;            // the conversation string that was tokenized
    size_t prompt_len;
} prep_result;

// One sample, as LLaVA's LazySupervisedDataset.__getitem__ and the collator's truncation produce it. `has_image`
// is LLaVA's `'image' in sample`. Returns 0, or -1 with an error that names the sample (a malformed conversation,
// or a length mismatch under `strict`); *r is then empty. Free *r with prep_result_free.
int prep_sample(const prep_config *c, const char *id, const conv_turn *turns, size_t n_turns, int has_image,
                prep_result *r);
void prep_result_free(prep_result *r);

// tokenizer_image_token (llava/mm_utils.py): each "<image>"-separated chunk is tokenized on its own, and one
// IMAGE_TOKEN_INDEX goes between chunks. Appends to *out.
int tok_encode_with_images(const tokenizer *t, tok_mode mode, const char *text, size_t len, tok_ids *out);

// Python's str.strip() on UTF-8 (Unicode whitespace as str.isspace() defines it). Returns the kept span.
const char *py_strip(const char *s, size_t n, size_t *out_len);

// Counts over a dataset, with the id of every masked (mismatched) sample.
typedef struct {
    size_t samples, truncated, mismatched;
    char **mismatch_ids;
    size_t n_ids, cap_ids;
} prep_stats;
void prep_stats_add(prep_stats *s, const char *id, const prep_result *r);
void prep_stats_free(prep_stats *s);

#endif
