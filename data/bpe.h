// Hugging Face tokenizer.json byte-level BPE (Llama-3/3.1, Qwen2/2.5, GPT-2 and their kin): ids identical to
// `tokenizers.Tokenizer.from_file(path).encode(text).ids` of the `tokenizers` library, and its decode
// (docs/tokenizer.md, "Byte-level BPE"; goldens from tools/reference/make_bpe_goldens.py).
//
// What a file may use (anything else is refused at load, naming the feature — never a silent wrong tokenization):
//  - model BPE: vocab, merges as "a b" strings or [a, b] pairs, ignore_merges, byte_fallback, unk_token/fuse_unk;
//    continuing_subword_prefix / end_of_word_suffix null or empty, dropout null or 0;
//  - normalizer: none, NFC, or a Sequence of NFC;
//  - pre_tokenizer: ByteLevel (with its GPT-2 regex or without, add_prefix_space), alone or last in a Sequence after
//    Split pre-tokenizers (behavior Isolated, not inverted) whose Regex is made of the alternatives these models use
//    (the Llama-3, Qwen2 and GPT-2 patterns: contractions, \p{L}, \p{N}, \s, [\r\n], \s+(?!\S), ...);
//  - added_tokens: special or not, lstrip, rstrip, normalized (single_word is refused);
//  - post_processor: none, ByteLevel, TemplateProcessing (its "single" template), or a Sequence of those;
//  - decoder: ByteLevel; truncation and padding null.
// tokenizer_config.json beside tokenizer.json, when present, gives bos_token and eos_token.
//
// The files are untrusted input: every length, id and string is checked. A loaded tokenizer is immutable: any number
// of threads may encode and decode with it at once.
#ifndef LLAVA_DATA_BPE_H
#define LLAVA_DATA_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"  // tok_ids

typedef struct bpe_tokenizer bpe_tokenizer;

// Loads a tokenizer.json (at most 256 MiB) and, when it exists, the tokenizer_config.json in the same folder.
// NULL with llava_errmsg() on any problem.
bpe_tokenizer *bpe_load(const char *path);
// The same from memory; config may be NULL (then bos is the template's one leading special token, if any, and eos
// is -1).
bpe_tokenizer *bpe_load_mem(const char *json, size_t len, const char *config, size_t config_len);
void bpe_free(bpe_tokenizer *t);

// encode(text, add_special_tokens): appends the ids to *out. With add_special the post-processor's template is
// applied (Llama-3's BOS); special-token strings in the text are always matched, as the library does. The text must
// be UTF-8 (the library takes only Unicode strings): -1 with an error otherwise.
int bpe_encode(const bpe_tokenizer *t, const char *text, size_t len, int add_special, tok_ids *out);

// decode(ids, skip_special_tokens): the tokens' bytes joined, invalid UTF-8 replaced by U+FFFD as Rust's
// String::from_utf8_lossy does. Ids that name no token are skipped, as the library does. *out is malloc'ed and
// NUL-terminated (it may contain NULs: use *out_len). Returns 0.
int bpe_decode(const bpe_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *out_len);

// token_to_id: added tokens first, then the model's vocabulary; -1 when absent. The string is the token as
// tokenizer.json spells it (byte-level characters: "Ġthe").
int bpe_token_to_id(const bpe_tokenizer *t, const char *s, size_t len);
// id_to_token: the token as tokenizer.json spells it (not NUL-terminated inside the table: use *len); NULL when the id
// names no token.
const char *bpe_id_to_token(const bpe_tokenizer *t, int id, size_t *len);
// 1 when the id is a special added token (dropped by decode with skip_special).
int bpe_is_special(const bpe_tokenizer *t, int id);
// The id of the model's unk_token; -1 when none.
int bpe_unk_id(const bpe_tokenizer *t);
// The ids of tokenizer_config.json's bos_token and eos_token; -1 when none.
int bpe_bos_id(const bpe_tokenizer *t);
int bpe_eos_id(const bpe_tokenizer *t);
// get_vocab_size(with_added_tokens=True): distinct tokens of the model's vocabulary and the added tokens.
int bpe_vocab_size(const bpe_tokenizer *t);
// One more than the largest id (the size an embedding table needs).
int bpe_id_limit(const bpe_tokenizer *t);

#endif
