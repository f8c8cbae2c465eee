// Templates and label masks of LLaVA-1.5 (see template.h). Sources, at haotian-liu/LLaVA c121f04 (HEAD) and
// 44e0562 (release), identical here except where noted: llava/train/train.py preprocess_multimodal (L308),
// preprocess_v1 (L414), preprocess_plain (L588), DataCollatorForSupervisedDataset (L742); llava/conversation.py
// get_prompt; llava/mm_utils.py tokenizer_image_token.
#include "template.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "strbuf.h"

// ---------------------------------------------------------------------------------------------
// Built-in templates (conv_llava_plain and conv_vicuna_v1 of llava/conversation.py)

static char VICUNA_SYSTEM[] =
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.";

static conv_template BUILTIN[] = {
    {
        .name = "plain",
        .system = "",
        .roles = {"", ""},
        .from = {"human", "gpt"},
        .prefix = "",
        .turn = {"{message}", "{message}\n"},  // "<image>" + caption + sep ("\n")
        .empty_turn = {"{message}", "{message}\n"},
        .plain = 1,
    },
    {
        .name = "vicuna_v1",
        .system = VICUNA_SYSTEM,
        .roles = {"USER", "ASSISTANT"},
        .from = {"human", "gpt"},
        .prefix = "{system} ",                                    // system + sep
        .turn = {"{role}: {message} ", "{role}: {message}</s>"},  // role + ": " + message + [sep, sep2][i % 2]
        .empty_turn = {"{role}:", "{role}:"},
        .round_sep = "</s>",           // sep2
        .answer_sep = " ASSISTANT: ",  // sep + roles[1] + ": "
        .instr_trim = 2,
        .later_round_fix = -1,
    },
};

// LLaVA-NeXT df17966's llava/conversation.py conv_templates and llava/train/train.py preprocess_* of the same names.
static char LLAVA_SYSTEM[] =
    "You are a helpful language and vision assistant. You are able to understand the visual content that the user "
    "provides, and assist the user with a variety of tasks using natural language.";
static char *LLAMA3_UNMASK[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                // preprocess_llama3 lists "\n\n" too, but convert_tokens_to_ids looks the string
                                // up as a token, and the vocabulary spells it "ĊĊ": it resolves to no id.
                                "\n\n"};
static char *QWEN_UNMASK[] = {"<|im_start|>", "<|im_end|>"};  // tokenizer.additional_special_tokens_ids
static int QWEN_UNMASK_IDS[] = {198};                         // hard-coded: "\n" (Ċ) of the Qwen2 vocabulary

static conv_template NEXT_BUILTIN[] = {
    {
        // conv_llava_llama_2 (LLAMA_2 style): preprocess_llama_2, as in LLaVA-1.5's code
        .name = "llava_llama_2",
        .system = LLAVA_SYSTEM,
        .roles = {"USER", "ASSISTANT"},
        .from = {"human", "gpt"},
        .prefix = "",
        .first_turn = "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{message} [/INST]",
        .turn = {"<s>[INST] {message} [/INST]", " {message} </s>"},
        .empty_turn = {"", ""},
        .round_sep = "</s>",
        .answer_sep = "[/INST] ",
        .instr_trim = 2,
    },
    {
        // conv_mistral_instruct: LLAMA_2 style with an empty system and sep "" (no "<s>" before later turns)
        .name = "mistral_instruct",
        .system = "",
        .roles = {"USER", "ASSISTANT"},
        .from = {"human", "gpt"},
        .prefix = "",
        .first_turn = "[INST] {message} [/INST]",
        .turn = {"[INST] {message} [/INST]", " {message} </s>"},
        .empty_turn = {"", ""},
        .round_sep = "</s>",
        .answer_sep = "[/INST] ",
        .instr_trim = 2,
        .multimodal_next = 1,
    },
    {
        // conv_llava_llama_3: preprocess_llama3 (the Llama-3-Instruct chat template, one message at a time)
        .name = "llava_llama_3",
        .system = LLAVA_SYSTEM,
        .roles = {"user", "assistant"},
        .from = {"human", "gpt"},
        .prefix = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
        .turn = {"<|start_header_id|>{role}<|end_header_id|>\n\n{message}<|eot_id|>",
                 "<|start_header_id|>{role}<|end_header_id|>\n\n{message}<|eot_id|>"},
        .empty_turn = {"<|start_header_id|>{role}<|end_header_id|>\n\n{message}<|eot_id|>",
                       "<|start_header_id|>{role}<|end_header_id|>\n\n{message}<|eot_id|>"},
        .messages = 1,
        .trim_message = 1,
        .unmask_tokens = LLAMA3_UNMASK,
        .n_unmask_tokens = 5,
        .generation_prompt = "<|start_header_id|>assistant<|end_header_id|>\n\n",
        .stop_token = "<|eot_id|>",
        .multimodal_next = 1,
    },
    {
        // conv_qwen: preprocess_qwen (ChatML, its system message "You are a helpful assistant.")
        .name = "qwen_1_5",
        .system = "You are a helpful assistant.",
        .roles = {"user", "assistant"},
        .from = {"human", "gpt"},
        .prefix = "<|im_start|>system\n{system}<|im_end|>\n",
        .turn = {"<|im_start|>{role}\n{message}<|im_end|>\n", "<|im_start|>{role}\n{message}<|im_end|>\n"},
        .empty_turn = {"<|im_start|>{role}\n{message}<|im_end|>\n", "<|im_start|>{role}\n{message}<|im_end|>\n"},
        .messages = 1,
        .unmask_tokens = QWEN_UNMASK,
        .n_unmask_tokens = 2,
        .unmask_ids = QWEN_UNMASK_IDS,
        .n_unmask_ids = 1,
        .generation_prompt = "<|im_start|>assistant\n",
        .stop_token = "<|im_end|>",
        .multimodal_next = 1,
    },
};

const conv_template *conv_template_builtin(const char *name) {
    if (strcmp(name, "v1") == 0) name = "vicuna_v1";
    for (size_t i = 0; i < sizeof BUILTIN / sizeof BUILTIN[0]; i++)
        if (strcmp(BUILTIN[i].name, name) == 0) return &BUILTIN[i];
    for (size_t i = 0; i < sizeof NEXT_BUILTIN / sizeof NEXT_BUILTIN[0]; i++)
        if (strcmp(NEXT_BUILTIN[i].name, name) == 0) return &NEXT_BUILTIN[i];
    return NULL;
}

void conv_template_free(conv_template *t) {
    if (!t) return;
    free(t->name);
    free(t->system);
    for (int i = 0; i < 2; i++) {
        free(t->roles[i]);
        free(t->from[i]);
        free(t->turn[i]);
        free(t->empty_turn[i]);
    }
    free(t->prefix);
    free(t->first_turn);
    free(t->round_sep);
    free(t->answer_sep);
    for (int i = 0; i < t->n_unmask_tokens; i++) free(t->unmask_tokens[i]);
    free(t->unmask_tokens);
    free(t->unmask_ids);
    free(t->generation_prompt);
    free(t->stop_token);
    free(t);
}

static int jstr(const cJSON *o, const char *key, char **out, int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return llava_fail("template: \"%s\" is missing", key);
        return 0;
    }
    if (!cJSON_IsString(v)) return llava_fail("template: \"%s\" must be a string", key);
    *out = xstrdup(v->valuestring);
    return 0;
}

static int jpair(const cJSON *o, const char *key, char *out[2], int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return llava_fail("template: \"%s\" is missing", key);
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return llava_fail("template: \"%s\" must be an array of two strings", key);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(e)) return llava_fail("template: \"%s\" must be an array of two strings", key);
        out[i] = xstrdup(e->valuestring);
    }
    return 0;
}

static int jint(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return llava_fail("template: \"%s\" must be an integer", key);
    *out = (int)v->valuedouble;
    return 0;
}

// "unmask_tokens": [strings], "unmask_ids": [integers]
static int junmask(const cJSON *o, conv_template *t) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "unmask_tokens");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v)) return llava_fail("template: \"unmask_tokens\" must be an array of strings");
        int n = cJSON_GetArraySize(v);
        t->unmask_tokens = xcalloc((size_t)n + 1, sizeof *t->unmask_tokens);
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsString(e)) return llava_fail("template: \"unmask_tokens\" must be an array of strings");
            t->unmask_tokens[t->n_unmask_tokens++] = xstrdup(e->valuestring);
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "unmask_ids");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v)) return llava_fail("template: \"unmask_ids\" must be an array of token ids");
        int n = cJSON_GetArraySize(v);
        t->unmask_ids = xcalloc((size_t)n + 1, sizeof *t->unmask_ids);
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 2147483647.0 ||
                e->valuedouble != (double)(int)e->valuedouble)
                return llava_fail("template: \"unmask_ids\" must be an array of token ids");
            t->unmask_ids[t->n_unmask_ids++] = (int)e->valuedouble;
        }
    }
    return 0;
}

// "multimodal": "llava" (default) or "next"
static int jmultimodal(const cJSON *o, conv_template *t) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "multimodal");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "llava") == 0) return 0;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "next") == 0) {
        t->multimodal_next = 1;
        return 0;
    }
    return llava_fail("template: \"multimodal\" must be \"llava\" or \"next\"");
}

conv_template *conv_template_parse(const char *json, size_t len) {
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        llava_fail("template: not a JSON object");
        return NULL;
    }
    conv_template *t = xcalloc(1, sizeof *t);
    int rc = jstr(o, "name", &t->name, 1) || jstr(o, "system", &t->system, 0) || jpair(o, "roles", t->roles, 0) ||
             jpair(o, "from", t->from, 0) || jstr(o, "prefix", &t->prefix, 0) ||
             jstr(o, "first_turn", &t->first_turn, 0) || jpair(o, "turn", t->turn, 1) ||
             jpair(o, "empty_turn", t->empty_turn, 0) || jint(o, "plain", &t->plain) ||
             jstr(o, "round_sep", &t->round_sep, 0) || jstr(o, "answer_sep", &t->answer_sep, 0) ||
             jint(o, "instr_trim", &t->instr_trim) || jint(o, "later_round_fix", &t->later_round_fix) ||
             jint(o, "messages", &t->messages) || jint(o, "trim_message", &t->trim_message) || junmask(o, t) ||
             jstr(o, "generation_prompt", &t->generation_prompt, 0) || jstr(o, "stop_token", &t->stop_token, 0) ||
             jmultimodal(o, t);
    cJSON_Delete(o);
    if (rc) {
        conv_template_free(t);
        return NULL;
    }
    if (!t->system) t->system = xstrdup("");
    if (!t->prefix) t->prefix = xstrdup("");
    for (int i = 0; i < 2; i++) {
        if (!t->roles[i]) t->roles[i] = xstrdup("");
        if (!t->from[i]) t->from[i] = xstrdup(i == 0 ? "human" : "gpt");
        if (!t->empty_turn[i]) t->empty_turn[i] = xstrdup(t->turn[i]);
    }
    if (t->plain && t->messages) {
        conv_template_free(t);
        llava_fail("template: \"plain\" and \"messages\" are two styles; choose one");
        return NULL;
    }
    if (!t->plain && !t->messages && (!t->round_sep || !*t->round_sep || !t->answer_sep || !*t->answer_sep)) {
        conv_template_free(t);
        llava_fail("template: a rounds template needs non-empty \"round_sep\" and \"answer_sep\"");
        return NULL;
    }
    return t;
}

conv_template *conv_template_load(const char *path) {
    size_t len;
    char *s = read_file(path, 1 << 20, &len);
    if (!s) return NULL;
    conv_template *t = conv_template_parse(s, len);
    free(s);
    if (!t) llava_fail_ctx("%s", path);
    return t;
}

// ---------------------------------------------------------------------------------------------
// Strings

static const char *find(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0 || nn > hn) return NULL;
    return memmem(h, hn, nd, nn);
}

// Expands {system}, {role} and {message}.
static void expand(strbuf *o, const char *fmt, const char *system, const char *role, const char *msg, size_t msg_len) {
    for (const char *p = fmt; *p;) {
        if (*p == '{') {
            if (strncmp(p, "{system}", 8) == 0) {
                sb_puts(o, system);
                p += 8;
                continue;
            }
            if (strncmp(p, "{role}", 6) == 0) {
                sb_puts(o, role);
                p += 6;
                continue;
            }
            if (strncmp(p, "{message}", 9) == 0) {
                sb_put(o, msg, msg_len);
                p += 9;
                continue;
            }
        }
        sb_put(o, p, 1);
        p++;
    }
}

// Python str.isspace() for one code point.
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Decodes the code point at s (valid UTF-8), or returns 0 with *len = 1 for a byte that is not.
static uint32_t cp_at(const uint8_t *s, size_t n, size_t *len) {
    size_t l = s[0] < 0x80                    ? 1
               : s[0] >= 0xc2 && s[0] <= 0xdf ? 2
               : s[0] >= 0xe0 && s[0] <= 0xef ? 3
               : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                              : 0;
    if (l == 0 || l > n || !utf8_valid(s, l)) {
        *len = 1;
        return 0xffffffffu;
    }
    *len = l;
    if (l == 1) return s[0];
    uint32_t c = s[0] & (0xff >> (l + 1));
    for (size_t i = 1; i < l; i++) c = (c << 6) | (s[i] & 0x3f);
    return c;
}

const char *py_strip(const char *s, size_t n, size_t *out_len) {
    const uint8_t *u = (const uint8_t *)s;
    size_t a = 0, b = n;
    while (a < b) {
        size_t l;
        uint32_t c = cp_at(u + a, b - a, &l);
        if (!py_isspace(c)) break;
        a += l;
    }
    while (b > a) {
        // step back to the start of the last character
        size_t k = b - 1;
        while (k > a && (u[k] & 0xc0) == 0x80 && b - k < 4) k--;
        size_t l;
        uint32_t c = cp_at(u + k, b - k, &l);
        if (k + l != b) {  // not one valid character: a stray byte, never whitespace
            break;
        }
        if (!py_isspace(c)) break;
        b = k;
    }
    *out_len = b - a;
    return s + a;
}

// ---------------------------------------------------------------------------------------------
// Tokenization with images

int tok_encode_with_images(const tokenizer *t, tok_mode mode, const char *text, size_t len, tok_ids *out) {
    static const char IMG[] = DEFAULT_IMAGE_TOKEN;
    const size_t il = sizeof IMG - 1;
    tok_ids chunk = {0};
    const char *p = text, *end = text + len;
    int first = 1, offset = 0;
    for (;;) {
        const char *q = find(p, (size_t)(end - p), IMG, il);
        size_t cl = q ? (size_t)(q - p) : (size_t)(end - p);
        chunk.n = 0;
        if (tok_encode(t, mode, p, cl, &chunk)) {
            tok_ids_free(&chunk);
            return -1;
        }
        if (first) {
            // "if prompt_chunks[0][0] == bos: keep it once and drop the first id of every chunk"
            if (chunk.n > 0 && chunk.v[0] == tok_bos_id(t)) {
                offset = 1;
                tok_ids_push(out, chunk.v[0]);
            }
        } else {
            tok_ids_push(out, IMAGE_TOKEN_INDEX);
        }
        for (size_t k = (size_t)offset; k < chunk.n; k++) tok_ids_push(out, chunk.v[k]);
        first = 0;
        if (!q) break;
        p = q + il;
    }
    tok_ids_free(&chunk);
    return 0;
}

// len(tokenizer_image_token(s)) or len(tokenizer(s).input_ids)
static int count_tokens(const prep_config *c, int has_image, const char *s, size_t n, long *count) {
    tok_ids v = {0};
    int rc = has_image ? tok_encode_with_images(c->tok, c->mode, s, n, &v) : tok_encode(c->tok, c->mode, s, n, &v);
    *count = (long)v.n;
    tok_ids_free(&v);
    return rc;
}

// target[start:stop] = IGNORE_INDEX with Python's slice semantics (negative indices count from the end).
static void mask_slice(tok_ids *labels, long start, long stop) {
    long n = (long)labels->n;
    if (start < 0) start = start + n < 0 ? 0 : start + n;
    if (start > n) start = n;
    if (stop < 0) stop = stop + n < 0 ? 0 : stop + n;
    if (stop > n) stop = n;
    for (long i = start; i < stop; i++) labels->v[i] = IGNORE_INDEX;
}

// ---------------------------------------------------------------------------------------------
// One sample

void prep_result_free(prep_result *r) {
    tok_ids_free(&r->ids);
    tok_ids_free(&r->labels);
    free(r->prompt);
    memset(r, 0, sizeof *r);
}

static int role_of(const conv_template *t, const char *from) {
    for (int i = 0; i < 2; i++)
        if (strcmp(t->from[i], from) == 0) return i;
    return -1;
}

// Every occurrence of `what` deleted (Python's str.replace(what, "")).
static void remove_all(strbuf *b, const char *what) {
    size_t wl = strlen(what), w = 0;
    if (!find(b->p, b->n, what, wl)) return;
    for (size_t i = 0; i < b->n;) {
        if (i + wl <= b->n && memcmp(b->p + i, what, wl) == 0) {
            i += wl;
            continue;
        }
        b->p[w++] = b->p[i++];
    }
    b->n = w;
    b->p[w] = 0;
}

// tokenizer(text, add_special_tokens=False).input_ids, with "<image>" split out as the added special token `img`
// when the sample has an image (the text between is tokenized piece by piece, as the added-token split does).
static int encode_message(const prep_config *c, int has_image, int img, const char *s, size_t n, tok_ids *out) {
    static const char IMG[] = DEFAULT_IMAGE_TOKEN;
    const size_t il = sizeof IMG - 1;
    for (const char *p = s, *end = s + n;;) {
        const char *q = has_image ? find(p, (size_t)(end - p), IMG, il) : NULL;
        size_t cl = q ? (size_t)(q - p) : (size_t)(end - p);
        if (cl && tok_encode_nospecial(c->tok, c->mode, p, cl, out)) return -1;
        if (!q) return 0;
        tok_ids_push(out, img);
        p = q + il;
    }
}

// LLaVA-NeXT's preprocess_llama3 / preprocess_qwen (template.h, "messages"), and the tokens of a prompt to generate
// from when the last turn's value is NULL.
static int prep_messages(const prep_config *c, const char *id, const conv_turn *turns, const strbuf *val,
                         size_t n_turns, int has_image, strbuf *prompt, prep_result *r) {
    const conv_template *tp = c->tmpl;
    const tokenizer *t = c->tok;
    if (n_turns == 0) return llava_fail("sample %s: no turns", id);
    int first = role_of(tp, turns[0].from);
    if (first < 0)
        return llava_fail("sample %s: turn 0 is from \"%s\", neither \"%s\" nor \"%s\"", id, turns[0].from, tp->from[0],
                          tp->from[1]);
    // The id "<image>" has: tokenizer.add_tokens(["<image>"], special_tokens=True) with an image (a token already
    // there keeps its id; a new one comes after the vocabulary), else convert_tokens_to_ids (the unknown id, or none).
    int img = tok_piece_to_id(t, DEFAULT_IMAGE_TOKEN, strlen(DEFAULT_IMAGE_TOKEN));
    size_t pl = 0;
    const char *piece = img >= 0 ? tok_id_to_piece(t, img, &pl) : NULL;
    int exact = piece && pl == strlen(DEFAULT_IMAGE_TOKEN) && memcmp(piece, DEFAULT_IMAGE_TOKEN, pl) == 0;
    if (has_image && !exact) img = tok_len(t);
    int *unmask = xmalloc(sizeof(int) * (size_t)(tp->n_unmask_tokens + tp->n_unmask_ids + 1));
    int nu = 0;
    for (int k = 0; k < tp->n_unmask_tokens; k++) {
        int u = tok_piece_to_id(t, tp->unmask_tokens[k], strlen(tp->unmask_tokens[k]));
        if (u >= 0) unmask[nu++] = u;
    }
    for (int k = 0; k < tp->n_unmask_ids; k++) unmask[nu++] = tp->unmask_ids[k];
    strbuf part = {0};
    sb_put(&part, "", 0);
    int rc = 0;
    // The system message: apply_chat_template([{"role": "system", "content": system}]), all masked.
    size_t sl = strlen(tp->system);
    const char *sys = tp->trim_message ? py_strip(tp->system, sl, &sl) : tp->system;
    char *sysz = xasprintf("%.*s", (int)sl, sys);
    expand(&part, tp->prefix, sysz, "system", "", 0);
    free(sysz);
    size_t before = r->ids.n;
    if (encode_message(c, has_image, img, part.p, part.n, &r->ids)) rc = -1;
    for (size_t k = before; k < r->ids.n; k++) tok_ids_push(&r->labels, IGNORE_INDEX);
    sb_put(prompt, part.p, part.n);
    for (size_t j = (first == 0 ? 0 : 1); j < n_turns && rc == 0; j++) {
        part.n = 0;
        sb_put(&part, "", 0);
        if (!turns[j].value) {  // the turn to generate: the generation prompt, and nothing after it
            if (tp->generation_prompt) sb_puts(&part, tp->generation_prompt);
            rc = encode_message(c, has_image, img, part.p, part.n, &r->ids);
            for (size_t k = r->labels.n; k < r->ids.n; k++) tok_ids_push(&r->labels, IGNORE_INDEX);
            sb_put(prompt, part.p, part.n);
            break;
        }
        int role = role_of(tp, turns[j].from);
        const char *name = role >= 0 ? tp->roles[role] : turns[j].from;
        int masked = strcmp(name, tp->roles[0]) == 0 || strcmp(name, "system") == 0;
        const char *m = val[j].p ? val[j].p : "";
        size_t ml = val[j].n;
        if (tp->trim_message) m = py_strip(m, ml, &ml);
        expand(&part, tp->turn[masked ? 0 : 1], "", name, m, ml);
        before = r->ids.n;
        rc = encode_message(c, has_image, img, part.p, part.n, &r->ids);
        for (size_t k = before; k < r->ids.n; k++) tok_ids_push(&r->labels, masked ? IGNORE_INDEX : r->ids.v[k]);
        sb_put(prompt, part.p, part.n);
    }
    free(part.p);
    if (rc == 0)
        for (size_t k = 0; k < r->ids.n; k++) {
            for (int u = 0; u < nu; u++)
                if (r->ids.v[k] == unmask[u]) r->labels.v[k] = r->ids.v[k];
            if (r->ids.v[k] == img) r->ids.v[k] = IMAGE_TOKEN_INDEX;
        }
    free(unmask);
    r->full_len = r->ids.n;
    if (rc) llava_fail_ctx("sample %s", id);
    return rc;
}

int prep_sample(const prep_config *c, const char *id, const conv_turn *turns, size_t n_turns, int has_image,
                prep_result *r) {
    const conv_template *tp = c->tmpl;
    static const char IMG[] = DEFAULT_IMAGE_TOKEN;
    const size_t il = sizeof IMG - 1;
    memset(r, 0, sizeof *r);
    if (!id) id = "?";
    // preprocess_multimodal (image samples only): in every turn that mentions "<image>", remove each one, strip,
    // put "<image>\n" in front, strip again. LLaVA-NeXT's rule instead: only in a turn with exactly one "<image>"
    // that does not start with it; and "QA_GT_caption_based_noisy" removed from every turn.
    strbuf *val = xcalloc(n_turns ? n_turns : 1, sizeof *val);
    for (size_t i = 0; i < n_turns; i++) {
        const char *v = turns[i].value ? turns[i].value : "";
        size_t vn = turns[i].value ? turns[i].value_len : 0;
        int move = has_image && find(v, vn, IMG, il);
        if (move && tp->multimodal_next) {
            size_t count = 0;
            for (const char *p = v, *q; (q = find(p, (size_t)(v + vn - p), IMG, il)); p = q + il) count++;
            move = count == 1 && memcmp(v, IMG, il) != 0;
        }
        if (move) {
            strbuf tmp = {0};
            sb_put(&tmp, "", 0);
            for (const char *p = v, *end = v + vn;;) {
                const char *q = find(p, (size_t)(end - p), IMG, il);
                sb_put(&tmp, p, q ? (size_t)(q - p) : (size_t)(end - p));
                if (!q) break;
                p = q + il;
            }
            size_t sl;
            const char *s = py_strip(tmp.p, tmp.n, &sl);
            strbuf t2 = {0};
            sb_put(&t2, IMG, il);
            sb_put(&t2, "\n", 1);
            sb_put(&t2, s, sl);
            s = py_strip(t2.p, t2.n, &sl);
            sb_put(&val[i], s, sl);
            free(tmp.p);
            free(t2.p);
        } else {
            sb_put(&val[i], v, vn);
        }
        if (has_image && tp->multimodal_next) remove_all(&val[i], "QA_GT_caption_based_noisy");
    }
    int rc = 0;
    strbuf prompt = {0};
    sb_put(&prompt, "", 0);
    long first_len = 0;  // plain: the tokens of the first turn
    if (tp->messages) {
        if (prep_messages(c, id, turns, val, n_turns, has_image, &prompt, r)) goto fail_named;
    } else if (tp->plain) {
        // preprocess_plain: two turns; the first must mention "<image>" and is replaced by it.
        if (n_turns != 2) {
            rc = llava_fail("sample %s: the %s template needs exactly 2 turns, not %zu", id, tp->name, n_turns);
            goto done;
        }
        if (!find(val[0].p, val[0].n, IMG, il)) {
            rc = llava_fail("sample %s: the first turn has no %s", id, IMG);
            goto done;
        }
        expand(&prompt, tp->prefix, tp->system, "", "", 0);
        size_t before = prompt.n;
        expand(&prompt, tp->turn[0], tp->system, tp->roles[0], IMG, il);
        if (count_tokens(c, 1, prompt.p + before, prompt.n - before, &first_len)) goto fail;
        expand(&prompt, val[1].n ? tp->turn[1] : tp->empty_turn[1], tp->system, tp->roles[1], val[1].p, val[1].n);
        if (tok_encode_with_images(c->tok, c->mode, prompt.p, prompt.n, &r->ids)) goto fail;
        r->full_len = r->ids.n;
        for (size_t k = 0; k < r->ids.n; k++) tok_ids_push(&r->labels, r->ids.v[k]);
        mask_slice(&r->labels, 0, first_len);
    } else {
        // preprocess_v1: drop a first turn that is not the user's, then insist on strict alternation.
        size_t start = 0;
        if (n_turns == 0) {
            rc = llava_fail("sample %s: no turns", id);
            goto done;
        }
        if (role_of(tp, turns[0].from) < 0) {
            rc = llava_fail("sample %s: turn 0 is from \"%s\", neither \"%s\" nor \"%s\"", id, turns[0].from,
                            tp->from[0], tp->from[1]);
            goto done;
        }
        if (role_of(tp, turns[0].from) != 0) start = 1;
        expand(&prompt, tp->prefix, tp->system, "", "", 0);
        for (size_t j = start; j < n_turns; j++) {
            int role = role_of(tp, turns[j].from);
            if (role < 0) {
                rc = llava_fail("sample %s: turn %zu is from \"%s\", neither \"%s\" nor \"%s\"", id, j, turns[j].from,
                                tp->from[0], tp->from[1]);
                goto done;
            }
            if (role != (int)((j - start) % 2)) {
                rc = llava_fail(
                    "sample %s: turn %zu is from \"%s\" where the conversation needs \"%s\" (turns must alternate)", id,
                    j, turns[j].from, tp->from[(j - start) % 2]);
                goto done;
            }
            const char *fmt = val[j].n ? tp->turn[role] : tp->empty_turn[role];
            if (j == start && tp->first_turn) {
                if (!val[j].n) {  // llama-2's get_prompt: assert message, "first message should not be none"
                    rc = llava_fail("sample %s: the first message is empty (the %s template needs one)", id, tp->name);
                    goto done;
                }
                fmt = tp->first_turn;
            }
            expand(&prompt, fmt, tp->system, tp->roles[role], val[j].p, val[j].n);
        }
        if (has_image) {
            if (tok_encode_with_images(c->tok, c->mode, prompt.p, prompt.n, &r->ids)) goto fail;
            r->full_len = r->ids.n;
        } else {
            if (tok_encode(c->tok, c->mode, prompt.p, prompt.n, &r->ids)) goto fail;
            r->full_len = r->ids.n;
            if (c->model_max_length > 0 && r->ids.n > (size_t)c->model_max_length) {  // truncation=True
                r->ids.n = (size_t)c->model_max_length;
                r->flags |= PREP_TRUNCATED;
            }
        }
        for (size_t k = 0; k < r->ids.n; k++) tok_ids_push(&r->labels, r->ids.v[k]);
        // total_len counts the ids that are not the pad id (pad_token = unk_token; -200 counts).
        int pad = tok_pad_id(c->tok);
        long total = 0;
        for (size_t k = 0; k < r->ids.n; k++) total += r->ids.v[k] != pad;
        long cur = 1;
        mask_slice(&r->labels, 0, cur);
        const char *rs = tp->round_sep, *as = tp->answer_sep;
        size_t rsl = strlen(rs), asl = strlen(as);
        strbuf part = {0};
        for (const char *p = prompt.p, *end = prompt.p + prompt.n;;) {
            const char *q = find(p, (size_t)(end - p), rs, rsl);
            size_t rl = q ? (size_t)(q - p) : (size_t)(end - p);
            if (rl == 0) break;  // `if rou == "": break`
            // parts = rou.split(sep); if len(parts) != 2: break
            const char *a = find(p, rl, as, asl);
            if (!a || find(a + asl, rl - (size_t)(a - p) - asl, as, asl)) break;
            part.n = 0;
            sb_put(&part, p, (size_t)(a - p) + asl);  // parts[0] + sep
            long round_len, instr_len;
            if (count_tokens(c, has_image, p, rl, &round_len) ||
                count_tokens(c, has_image, part.p, part.n, &instr_len)) {
                free(part.p);
                goto fail;
            }
            instr_len -= tp->instr_trim;
            if (p != prompt.p && c->mode == TOK_HF437) {  // i != 0 and not tokenizer.legacy and tokenizers >= 0.14
                round_len += tp->later_round_fix;
                instr_len += tp->later_round_fix;
            }
            mask_slice(&r->labels, cur, cur + instr_len);
            cur += round_len;
            if (!q) break;
            p = q + rsl;
        }
        free(part.p);
        mask_slice(&r->labels, cur, (long)r->labels.n);  // target[cur_len:] = IGNORE_INDEX
        r->cur_len = (int)cur;
        r->total_len = (int)total;
        if ((c->model_max_length <= 0 || cur < c->model_max_length) && cur != total) {
            if (c->strict) {
                rc = llava_fail(
                    "sample %s: tokenization mismatch: %ld vs. %ld (the rounds do not add up to the "
                    "conversation; LLaVA would train on it with every label masked)",
                    id, cur, total);
                goto done;
            }
            mask_slice(&r->labels, 0, (long)r->labels.n);
            r->flags |= PREP_MISMATCH;
        }
    }
    // DataCollatorForSupervisedDataset: input_ids[:, :model_max_length], labels likewise.
    if (c->model_max_length > 0 && r->ids.n > (size_t)c->model_max_length) {
        r->ids.n = r->labels.n = (size_t)c->model_max_length;
        r->flags |= PREP_TRUNCATED;
    }
    r->prompt = prompt.p;
    r->prompt_len = prompt.n;
    prompt.p = NULL;
    goto done;
fail:
    llava_fail_ctx("sample %s", id);
fail_named:
    rc = -1;
done:
    for (size_t i = 0; i < n_turns; i++) free(val[i].p);
    free(val);
    free(prompt.p);
    if (rc) prep_result_free(r);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Counts

void prep_stats_add(prep_stats *s, const char *id, const prep_result *r) {
    s->samples++;
    if (r->flags & PREP_TRUNCATED) s->truncated++;
    if (r->flags & PREP_MISMATCH) {
        s->mismatched++;
        if (s->n_ids == s->cap_ids) {
            s->cap_ids = s->cap_ids ? s->cap_ids * 2 : 16;
            s->mismatch_ids = xrealloc(s->mismatch_ids, s->cap_ids * sizeof *s->mismatch_ids);
        }
        s->mismatch_ids[s->n_ids++] = xstrdup(id ? id : "?");
    }
}

void prep_stats_free(prep_stats *s) {
    for (size_t i = 0; i < s->n_ids; i++) free(s->mismatch_ids[i]);
    free(s->mismatch_ids);
    memset(s, 0, sizeof *s);
}
