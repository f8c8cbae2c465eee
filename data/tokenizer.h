// SentencePiece BPE tokenizer read straight from `tokenizer.model`, with the Hugging Face slow LlamaTokenizer
// behaviour LLaVA-1.5 trained with on top (docs/tokenizer.md; spec llava15-recipe.md §4.6, model-and-formats.md §5).
//
// Two layers:
//  - tok_sp_encode / tok_decode: what sentencepiece's Python package returns for sp.encode(text) and sp.decode(ids)
//    (normalizer with the identity rule, score-ordered BPE merges, byte fallback, unknown handling).
//  - tok_encode: what `LlamaTokenizer(...)(text).input_ids` returns: BOS added, the special strings "<s>", "</s>",
//    "<unk>" split out of the text, and one of three rules for the text that follows a special token (tok_mode).
//
// The model file is untrusted input: every protobuf length, field and value is checked, and a model this code
// cannot reproduce exactly (not BPE, a normalization character map, whitespace-as-suffix) is refused, not guessed at.
// A loaded tokenizer is immutable: any number of threads may encode with it at once.
#ifndef LLAVA_DATA_TOKENIZER_H
#define LLAVA_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

// How the HF slow tokenizer treats the text after a special token such as "</s>" (spec §4.6).
typedef enum {
    TOK_LEGACY = 0,  // legacy=True (any transformers version): every chunk gets SentencePiece's dummy "▁"
    TOK_HF431 = 1,   // transformers 4.31.0, legacy=False: the release environment of the LLaVA-1.5 checkpoints
    TOK_HF437 = 2,   // transformers 4.37.2 + tokenizers 0.15.1, legacy=False: LLaVA HEAD
} tok_mode;
// The released LLaVA-1.5 checkpoints were trained under transformers 4.31 with Vicuna's legacy=false.
#define TOK_MODE_DEFAULT TOK_HF431

const char *tok_mode_name(tok_mode m);
// Accepts "legacy", "hf431" (alias "release"), "hf437" (alias "head"). Returns -1 with an error otherwise.
int tok_mode_parse(const char *s, tok_mode *out);

// SentencePiece piece types (sentencepiece_model.proto).
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

// A growable array of token ids. Zero-initialise; free with tok_ids_free.
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids;
void tok_ids_push(tok_ids *a, int32_t id);
void tok_ids_free(tok_ids *a);

typedef struct tokenizer tokenizer;
typedef struct bpe_tokenizer bpe_tokenizer;

// Loads a SentencePiece model file (at most 64 MiB), or a Hugging Face tokenizer.json (byte-level BPE, data/bpe.h;
// with the tokenizer_config.json beside it when tok_load reads it from a path). NULL with llava_errmsg() on any problem.
//
// A tokenizer.json answers the functions below as the `tokenizers` library and transformers' fast tokenizers do:
// tok_encode is encode(text) with the file's post-processor (add_special_tokens=True) whatever the mode (the modes are
// SentencePiece's HF rules), tok_sp_encode is encode(text, add_special_tokens=False), tok_decode is
// decode(ids, skip_special_tokens=True), tok_piece_to_id is convert_tokens_to_ids (the unknown id, or -1), special
// added tokens have type TOK_CONTROL and the rest TOK_NORMAL, scores are 0, and the pad id is the unknown token's.
tokenizer *tok_load(const char *path);
tokenizer *tok_load_mem(const void *data, size_t len);
void tok_free(tokenizer *t);
// The tokenizer of a model folder: DIR/tokenizer.model when it exists, else DIR/tokenizer.json when that exists, else
// DIR/tokenizer.model (for the error that names it). Malloc'ed.
char *tok_default_path(const char *dir);
// The byte-level BPE tokenizer inside, or NULL for a SentencePiece one.
const bpe_tokenizer *tok_bpe(const tokenizer *t);
// len(tokenizer): the pieces of a SentencePiece model; a tokenizer.json's vocabulary with its added tokens.
int tok_len(const tokenizer *t);

int tok_n_pieces(const tokenizer *t);
// The piece string of an id (not NUL-terminated inside the vocabulary: use *len); NULL when out of range.
const char *tok_id_to_piece(const tokenizer *t, int id, size_t *len);
int tok_piece_type(const tokenizer *t, int id);  // TOK_NORMAL..TOK_BYTE, or 0 when out of range
float tok_piece_score(const tokenizer *t, int id);
// sentencepiece's PieceToId: control/unknown/byte pieces first, then the others; the unknown id when absent.
int tok_piece_to_id(const tokenizer *t, const char *s, size_t len);
int tok_unk_id(const tokenizer *t);
// The ids the HF tokenizer uses for "<s>", "</s>" and "<unk>" (the model's bos/eos/unk piece strings).
int tok_bos_id(const tokenizer *t);
int tok_eos_id(const tokenizer *t);
// LLaVA sets pad_token = unk_token: the id of "<unk>".
int tok_pad_id(const tokenizer *t);

// sp.encode(text): appends the ids to *out. `text` is any bytes (invalid UTF-8 is handled like sentencepiece:
// each bad byte becomes U+FFFD). Returns 0, or -1 with an error.
int tok_sp_encode(const tokenizer *t, const char *text, size_t len, tok_ids *out);

// LlamaTokenizer(text).input_ids in the given mode: BOS, then the text's ids. Appends to *out.
int tok_encode(const tokenizer *t, tok_mode mode, const char *text, size_t len, tok_ids *out);

// tokenizer(text, add_special_tokens=False).input_ids: tok_encode without its BOS; a tokenizer.json's encode without
// its post-processor. Appends to *out.
int tok_encode_nospecial(const tokenizer *t, tok_mode mode, const char *text, size_t len, tok_ids *out);

// sp.decode(ids): byte pieces reassembled into UTF-8 (a byte that cannot start or continue a valid character
// becomes U+FFFD), control pieces dropped, the unknown piece shown as " ⁇ ", the dummy-prefix space removed.
// *out is NUL-terminated (and may contain NULs: use *out_len). Returns -1 for an id out of range.
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len);

#endif
