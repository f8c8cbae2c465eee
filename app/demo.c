// `llava demo`: the LLaVA-1.5 recipe in miniature on the CPU, with nothing downloaded.
//
// It makes a world of coloured shapes, writes it in LLaVA's JSON format with PNG images (captions
// for stage 1, question-answer conversations for stage 2, a held-out set for evaluation), builds a
// SentencePiece tokenizer for its words, a random frozen CLIP tower and a random LLaMA, then runs
// `llava prep` and `llava train` exactly as a user would on real data: stage 1 trains the projector
// through the frozen LM, stage 2 the projector and the LM from the stage-1 projector. Finally it
// asks the held-out questions (`llava eval --benchmark demo`) twice: with each image, and with a blank one. A model that learned
// to see answers the first well and the second no better than chance.
//
// The LM needs no text pretraining: every answer is one word after a fixed prompt, which stage 2
// teaches from scratch.
#include "demo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "common/util.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/prep.h"
#include "data/sampler.h"
#include "data/template.h"
#include "data/tokenizer.h"
#include "model/io/safetensors.h"
#include "model/llava.h"
#include "train/config.h"
#include "train/trainer.h"

// ---------------------------------------------------------------------------------------------
// The world

static const char *COLORS[] = {"red", "green", "blue", "yellow"};
static const uint8_t RGB[4][3] = {{220, 40, 40}, {40, 190, 60}, {50, 80, 230}, {235, 215, 40}};
static const char *SHAPES[] = {"square", "circle", "triangle"};
static const char *PLACES[] = {"left", "right", "top", "bottom"};
static const char *COUNTS[] = {"one", "two", "three"};
enum { N_COLORS = 4, N_SHAPES = 3, N_PLACES = 4, N_COUNTS = 3 };

typedef struct {
    int n;  // shapes in the image (1..3)
    int color[3], shape[3];
    int place;  // for one shape: where it is
} scene;

static uint32_t rnd(torch_rng *r, uint32_t n) { return torch_rng_next(r) % n; }

// Draws a scene into an S x S image: a grey background and the shapes, each about S/3 across.
static void render(const scene *s, int S, torch_rng *r, image_u8 *im) {
    im->w = im->h = S;
    im->rgb = xmalloc((size_t)S * S * 3);
    for (int i = 0; i < S * S; i++) im->rgb[3 * i] = im->rgb[3 * i + 1] = im->rgb[3 * i + 2] = 90;
    int size = S / 3;
    int rot = (int)rnd(r, 3);  // which of the three places a scene of several shapes leaves empty
    for (int k = 0; k < s->n; k++) {
        int cx, cy;
        if (s->n == 1) {
            // The named side, jittered along the other axis.
            int j = (int)rnd(r, (uint32_t)(S / 4)) - S / 8;
            int near = size / 2 + 2, far = S - size / 2 - 3;
            cx = s->place == 0 ? near : s->place == 1 ? far : S / 2 + j;
            cy = s->place == 2 ? near : s->place == 3 ? far : S / 2 + j;
        } else {
            // Several shapes in distinct cells of a 3 x 3 grid.
            static const int cells[3][2] = {{0, 0}, {2, 1}, {1, 2}};
            cx = size / 2 + cells[(k + rot) % 3][0] * size + 1;
            cy = size / 2 + cells[(k + rot) % 3][1] * size + 1;
        }
        const uint8_t *c = RGB[s->color[k]];
        int h = size / 2;
        for (int y = cy - h; y <= cy + h; y++)
            for (int x = cx - h; x <= cx + h; x++) {
                if (x < 0 || y < 0 || x >= S || y >= S) continue;
                int dx = x - cx, dy = y - cy, in;
                if (s->shape[k] == 0) in = 1;                                // square
                else if (s->shape[k] == 1) in = dx * dx + dy * dy <= h * h;  // circle
                else in = dy >= -h && 2 * abs(dx) <= (dy + h);               // triangle, apex up
                if (in) memcpy(im->rgb + 3 * ((size_t)y * S + x), c, 3);
            }
    }
}

static void random_scene(torch_rng *r, int allow_many, scene *s) {
    memset(s, 0, sizeof *s);
    s->n = allow_many && rnd(r, 2) ? 2 + (int)rnd(r, 2) : 1;
    if (allow_many == 2) s->n = 1 + (int)rnd(r, 3);  // counts balanced for count questions
    for (int k = 0; k < s->n; k++) {
        s->color[k] = (int)rnd(r, N_COLORS);
        s->shape[k] = (int)rnd(r, N_SHAPES);
    }
    s->place = (int)rnd(r, N_PLACES);
}

// ---------------------------------------------------------------------------------------------
// Files: images, LLaVA JSON, tokenizer, models

typedef struct {
    char *buf;
    size_t len, cap;
} text;

static void tput(text *t, const char *s) {
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->buf = xrealloc(t->buf, t->cap);
    }
    memcpy(t->buf + t->len, s, n + 1);
    t->len += n;
}

// image_json: the value of `key` ("image": a quoted path or a list of them; "video": its frames' list) as JSON.
static void sample_json_key(text *t, int first, const char *id, const char *key, const char *image_json,
                            const char *const *turns, int n_turns) {
    char line[512];
    snprintf(line, sizeof line, "%s\n {\"id\": \"%s\", \"%s\": %s, \"conversations\": [", first ? "" : ",", id, key,
             image_json);
    tput(t, line);
    for (int i = 0; i < n_turns; i++) {
        snprintf(line, sizeof line, "%s{\"from\": \"%s\", \"value\": \"%s\"}", i ? ", " : "", i % 2 ? "gpt" : "human",
                 turns[i]);
        tput(t, line);
    }
    tput(t, "]}");
}

static void sample_json_raw(text *t, int first, const char *id, const char *image_json, const char *const *turns,
                            int n_turns) {
    sample_json_key(t, first, id, "image", image_json, turns, n_turns);
}

static void sample_json(text *t, int first, const char *id, const char *image, const char *const *turns, int n_turns) {
    char quoted[160];
    snprintf(quoted, sizeof quoted, "\"%s\"", image);
    sample_json_raw(t, first, id, quoted, turns, n_turns);
}

// Two-image questions (llava demo --multi-image): the colour of the shape in the first or the second of two one-shape
// images of different colours, the images given as LLaVA-NeXT's multi-image list with an <image> for each, both
// before the question (the question file's text is the question alone: the engine puts "<image>\n" per image first).
static const char *const PAIR_WHICH[2] = {"first", "second"};
#define PAIR_PROMPT "<image>\\n<image>\\n"  // as the engine lays out a question's images
#define PAIR_QUESTION "What color is the shape in the %s image?"

// Videos (llava demo --video): four frames, each one shape, the first and the last of different colours; the
// question asks the colour at the start or at the end. Stage 2 and the evaluation take 2 of the 4 frames uniformly
// (data.video_frames 2, --video-frames 2: numpy.linspace(0, 3, 2) keeps frames 0 and 3), so the frames between never
// count; one <image> stands for the frames (LLaVA-NeXT-Video's layout), before the question.
#define VIDEO_FRAMES 4
#define VIDEO_TAKEN 2
static const char *const VIDEO_WHEN[2] = {"start", "end"};
#define VIDEO_QUESTION "What color is the shape at the %s of the video?"

typedef enum { Q_COLOR = 0, Q_SHAPE, Q_PLACE, Q_COUNT, N_QTYPES } qtype;
static const char *QUESTIONS[N_QTYPES] = {"What color is the shape?", "What is the shape?", "Where is the shape?",
                                          "How many shapes are there?"};
static const int N_OPTIONS[N_QTYPES] = {N_COLORS, N_SHAPES, N_PLACES, N_COUNTS};
static const char *QTYPE_NAMES[N_QTYPES] = {"color", "shape", "position", "count"};

static const char *answer(const scene *s, qtype q) {
    switch (q) {
    case Q_COLOR: return COLORS[s->color[0]];
    case Q_SHAPE: return SHAPES[s->shape[0]];
    case Q_PLACE: return PLACES[s->place];
    default: return COUNTS[s->n - 1];
    }
}

// Writes n images and, per image, a caption sample (stage 1) and a question sample (stage 2 and
// evaluation). Training conversations ask every question that has one answer about the image, in
// a random order (one shape: colour, shape, position and count; several: the count). Held-out
// samples ask one question each, the types in rotation and every answer equally likely, so a
// blind model can do no better than chance. qtypes receives each held-out sample's question type.
// With pairs > 0 also that many two-image samples (training: both questions; held out: one question each, with its
// images and with two blank ones, category "two-images") over the split's one-shape images; with videos > 0 that many
// video samples (VIDEO_QUESTION; the same way, category "video").
static int write_split(const char *dir, const char *name, int n, int S, uint64_t seed, int held_out, int *qtypes,
                       int pairs, int videos) {
    torch_rng r;
    torch_rng_seed(&r, seed);
    int *single_color = xmalloc(sizeof(int) * (size_t)(n ? n : 1));  // -1: not a one-shape image
    char *img_dir = path_join(dir, "images");
    if (mkdir_p(img_dir) != 0) return -1;
    text cap = {0}, qa = {0}, ques = {0};
    tput(&ques, "");
    tput(&cap, "[");
    tput(&qa, "[");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        qtype q = (qtype)(i % N_QTYPES);
        scene s;
        random_scene(&r, held_out ? (q == Q_COUNT ? 2 : 0) : 1, &s);
        image_u8 im;
        render(&s, S, &r, &im);
        char rel[64], id[64];
        snprintf(rel, sizeof rel, "%s_%05d.png", name, i);
        snprintf(id, sizeof id, "%s-%05d", name, i);
        char *path = path_join(img_dir, rel);
        rc = image_write_png(path, &im);
        free(path);
        image_free(&im);
        char relpath[80], caption[160], human[N_QTYPES][160];
        snprintf(relpath, sizeof relpath, "images/%s", rel);
        single_color[i] = s.n == 1 ? s.color[0] : -1;
        if (s.n == 1)
            snprintf(caption, sizeof caption, "a %s %s on the %s", COLORS[s.color[0]], SHAPES[s.shape[0]],
                     PLACES[s.place]);
        else
            snprintf(caption, sizeof caption, "%s shapes, one is a %s %s", COUNTS[s.n - 1], COLORS[s.color[0]],
                     SHAPES[s.shape[0]]);
        const char *ct[2] = {"Describe the image.\\n<image>", caption};
        sample_json(&cap, i == 0, id, relpath, ct, 2);
        const char *turns[2 * N_QTYPES];
        int nt = 0;
        if (held_out) {
            // The same question in LLaVA's question-file format (`llava eval --benchmark demo`),
            // once with its image and once with the blank one.
            char ql[512];
            for (int blind = 0; blind < 2; blind++) {
                snprintf(ql, sizeof ql,
                         "{\"question_id\": \"%s%s\", \"image\": \"%s\", \"text\": \"%s\", \"answer\": \"%s\", "
                         "\"category\": \"%s\"%s}\n",
                         id, blind ? "-blind" : "", blind ? "images/blank.png" : relpath, QUESTIONS[q], answer(&s, q),
                         QTYPE_NAMES[q], blind ? ", \"blind\": true" : "");
                tput(&ques, ql);
            }
            qtypes[i] = q;
            snprintf(human[0], sizeof human[0], "<image>\\n%s", QUESTIONS[q]);
            turns[nt++] = human[0];
            turns[nt++] = answer(&s, q);
        } else {
            // One-shape images are half the set; asking their count only half the time makes the
            // count answers one, two and three equally common.
            int order[N_QTYPES] = {0, 1, 2, 3}, k = s.n == 1 ? N_QTYPES - (int)rnd(&r, 2) : 1;
            if (s.n > 1) order[0] = Q_COUNT;
            for (int a = k - 1; a > 0; a--) {  // shuffle the questions
                int b = (int)rnd(&r, (uint32_t)a + 1), tmp = order[a];
                order[a] = order[b];
                order[b] = tmp;
            }
            for (int a = 0; a < k; a++) {
                snprintf(human[a], sizeof human[a], "%s%s", a == 0 ? "<image>\\n" : "", QUESTIONS[order[a]]);
                turns[nt++] = human[a];
                turns[nt++] = answer(&s, (qtype)order[a]);
            }
        }
        sample_json(&qa, i == 0, id, relpath, turns, nt);
    }
    // Pairs: each one-shape image i in turn with the next one-shape image of another colour (a separate draw keeps
    // the single-image samples above as they are without pairs).
    torch_rng pr;
    torch_rng_seed(&pr, seed + 1000);
    for (int p = 0, i = 0, tries = 0; p < pairs && rc == 0 && tries < 4 * n; tries++, i = (i + 1) % n) {
        if (single_color[i] < 0) continue;
        int j = (i + 1 + (int)rnd(&pr, (uint32_t)n)) % n;
        while (j != i && (single_color[j] < 0 || single_color[j] == single_color[i])) j = (j + 1) % n;
        if (j == i) continue;
        char id[64], images[160], q1[128], q2[128], h1[192];
        snprintf(id, sizeof id, "%s-pair-%05d", name, p);
        snprintf(images, sizeof images, "[\"images/%s_%05d.png\", \"images/%s_%05d.png\"]", name, i, name, j);
        int which = (int)rnd(&pr, 2);
        int col[2] = {single_color[i], single_color[j]};
        snprintf(q1, sizeof q1, PAIR_QUESTION, PAIR_WHICH[which]);
        snprintf(q2, sizeof q2, PAIR_QUESTION, PAIR_WHICH[!which]);
        snprintf(h1, sizeof h1, PAIR_PROMPT "%s", q1);
        if (held_out) {
            char ql[640];
            for (int blind = 0; blind < 2; blind++) {
                snprintf(ql, sizeof ql,
                         "{\"question_id\": \"%s%s\", \"image\": %s, \"text\": \"%s\", \"answer\": \"%s\", "
                         "\"category\": \"two-images\"%s}\n",
                         id, blind ? "-blind" : "", blind ? "[\"images/blank.png\", \"images/blank.png\"]" : images, q1,
                         COLORS[col[which]], blind ? ", \"blind\": true" : "");
                tput(&ques, ql);
            }
            const char *turns[2] = {h1, COLORS[col[which]]};
            sample_json_raw(&qa, 0, id, images, turns, 2);
        } else {
            const char *turns[4] = {h1, COLORS[col[which]], q2, COLORS[col[!which]]};
            sample_json_raw(&qa, 0, id, images, turns, 4);
        }
        p++;
    }
    // Videos: frames drawn from the split's one-shape images, the first and the last of different colours (a draw of
    // their own, so the samples above stay as they are).
    torch_rng vr;
    torch_rng_seed(&vr, seed + 2000);
    int n_single = 0;
    for (int i = 0; i < n; i++) n_single += single_color[i] >= 0;
    for (int v = 0, tries = 0; v < videos && rc == 0 && n_single > 1 && tries < 100 * videos; tries++) {
        int fr[VIDEO_FRAMES];
        for (int f = 0; f < VIDEO_FRAMES; f++) {
            int i = (int)rnd(&vr, (uint32_t)n);
            while (single_color[i] < 0) i = (i + 1) % n;
            fr[f] = i;
        }
        int c0 = single_color[fr[0]], c1 = single_color[fr[VIDEO_FRAMES - 1]];
        if (c0 == c1) continue;
        char id[64], frames[320], q1[128], q2[128], h1[192];
        snprintf(id, sizeof id, "%s-video-%05d", name, v);
        size_t at = 0;
        at += (size_t)snprintf(frames + at, sizeof frames - at, "[");
        for (int f = 0; f < VIDEO_FRAMES; f++)
            at += (size_t)snprintf(frames + at, sizeof frames - at, "%s\"images/%s_%05d.png\"", f ? ", " : "", name,
                                   fr[f]);
        snprintf(frames + at, sizeof frames - at, "]");
        int which = (int)rnd(&vr, 2);
        int col[2] = {c0, c1};
        snprintf(q1, sizeof q1, VIDEO_QUESTION, VIDEO_WHEN[which]);
        snprintf(q2, sizeof q2, VIDEO_QUESTION, VIDEO_WHEN[!which]);
        snprintf(h1, sizeof h1, "<image>\\n%s", q1);
        if (held_out) {
            char ql[900], blank[200];
            at = (size_t)snprintf(blank, sizeof blank, "[");
            for (int f = 0; f < VIDEO_FRAMES; f++)
                at += (size_t)snprintf(blank + at, sizeof blank - at, "%s\"images/blank.png\"", f ? ", " : "");
            snprintf(blank + at, sizeof blank - at, "]");
            for (int blind = 0; blind < 2; blind++) {
                snprintf(ql, sizeof ql,
                         "{\"question_id\": \"%s%s\", \"video\": %s, \"text\": \"%s\", \"answer\": \"%s\", "
                         "\"category\": \"video\"%s}\n",
                         id, blind ? "-blind" : "", blind ? blank : frames, q1, COLORS[col[which]],
                         blind ? ", \"blind\": true" : "");
                tput(&ques, ql);
            }
            const char *turns[2] = {h1, COLORS[col[which]]};
            sample_json_key(&qa, 0, id, "video", frames, turns, 2);
        } else {
            const char *turns[4] = {h1, COLORS[col[which]], q2, COLORS[col[!which]]};
            sample_json_key(&qa, 0, id, "video", frames, turns, 4);
        }
        v++;
    }
    free(single_color);
    tput(&cap, "\n]\n");
    tput(&qa, "\n]\n");
    char fn[64];
    snprintf(fn, sizeof fn, "%s_captions.json", name);
    char *p = path_join(dir, fn);
    if (rc == 0) rc = write_file_atomic(p, cap.buf, cap.len);
    free(p);
    snprintf(fn, sizeof fn, "%s_qa.json", name);
    p = path_join(dir, fn);
    if (rc == 0) rc = write_file_atomic(p, qa.buf, qa.len);
    free(p);
    if (rc == 0 && held_out) {  // the blind questions' image, and the question file
        image_u8 blank = {.w = S, .h = S, .rgb = xcalloc((size_t)S * S * 3, 1)};
        p = path_join(img_dir, "blank.png");
        rc = image_write_png(p, &blank);
        free(p);
        image_free(&blank);
        p = path_join(dir, "eval_questions.jsonl");
        if (rc == 0) rc = write_file_atomic(p, ques.buf, ques.len);
        free(p);
    }
    free(cap.buf);
    free(qa.buf);
    free(ques.buf);
    free(img_dir);
    return rc;
}

// Every word the demo's conversations use, space-separated: the template's system prompt and roles, the captions'
// and questions' words.
static void demo_corpus(text *corpus, const conv_template *tmpl, int multi_image) {  // multi_image: DEMO_* bits
    tput(corpus, tmpl->system);
    tput(corpus, " "), tput(corpus, tmpl->roles[0]), tput(corpus, " "), tput(corpus, tmpl->roles[1]);
    if (tmpl->messages) tput(corpus, " system");
    if (tmpl->first_turn) tput(corpus, " [INST] [/INST]");  // the llama-2 style's markers
    tput(corpus, " Describe the image. a on the shapes, one is ");
    for (int i = 0; i < N_QTYPES; i++) tput(corpus, " "), tput(corpus, QUESTIONS[i]);
    if (multi_image & DEMO_PAIRS) tput(corpus, " in first second image?");
    if (multi_image & DEMO_VIDEO) tput(corpus, " at start end of video?");
    const char *const *lists[4] = {COLORS, SHAPES, PLACES, COUNTS};
    int sizes[4] = {N_COLORS, N_SHAPES, N_PLACES, N_COUNTS};
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < sizes[l]; i++) tput(corpus, " "), tput(corpus, lists[l][i]);
}

// Each family trains with its template (LLaVA-NeXT's for Llama-3, Qwen2 and Mistral; vicuna_v1 for LLaMA, as
// LLaVA-1.5) and its kind of tokenizer: a tokenizer.json for Llama-3 and Qwen2, a SentencePiece model otherwise.
static const char *demo_template(const char *lm) {
    if (!lm) return "vicuna_v1";
    return !strcmp(lm, "llama3")    ? "llava_llama_3"
           : !strcmp(lm, "qwen2")   ? "qwen_1_5"
           : !strcmp(lm, "mistral") ? "mistral_instruct"
                                    : "vicuna_v1";
}

static int demo_bpe(const char *lm) { return lm && (!strcmp(lm, "llama3") || !strcmp(lm, "qwen2")); }

static char *demo_tokenizer_path(const char *out, const char *lm) {
    return demo_bpe(lm) ? path_join(out, "tokenizer/tokenizer.json") : path_join(out, "tokenizer.model");
}

// A tokenizer.json for the Llama-3 or Qwen2 demo: every corpus word whole, with and without its leading space,
// and the family's special tokens.
static int write_bpe_tokenizer(const char *out, const char *lm, int multi_image) {
    text corpus = {0};
    demo_corpus(&corpus, conv_template_builtin(demo_template(lm)), multi_image);
    int cap = 1024, n = 0;
    char **words = xmalloc(sizeof(char *) * (size_t)cap);
    char *copy = xstrdup(corpus.buf);
    for (char *w = strtok(copy, " "); w && n + 2 <= cap; w = strtok(NULL, " ")) {
        size_t len = strlen(w);
        while (len > 1 && strchr(".,?'", w[len - 1])) w[--len] = 0;
        words[n++] = xstrdup(w);
        words[n++] = xasprintf(" %s", w);
    }
    free(copy);
    free(corpus.buf);
    static const char *const LLAMA3[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                         "<|end_header_id|>", "<|eot_id|>"};
    static const char *const QWEN2[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    int llama3 = !strcmp(lm, "llama3");
    char *dir = path_join(out, "tokenizer");
    int rc = mkdir_p(dir);
    if (rc == 0)
        rc = llama3
                 ? tok_write_bpe_json(dir, (const char *const *)words, n, LLAMA3, 5, "<|begin_of_text|>", "<|eot_id|>")
                 : tok_write_bpe_json(dir, (const char *const *)words, n, QWEN2, 3, NULL, "<|im_end|>");
    free(dir);
    for (int i = 0; i < n; i++) free(words[i]);
    free(words);
    return rc;
}

// The tokenizer: specials, the 256 byte pieces, every character of the corpus, and every word as
// "▁word" and "word" with all their prefixes, scored so that BPE merges each word whole.
static int write_tokenizer(const char *path, const char *tmpl, int multi_image) {
    text corpus = {0};
    demo_corpus(&corpus, conv_template_builtin(tmpl), multi_image);
    int cap = 4096, n = 0;
    char **pieces = xmalloc(sizeof(char *) * (size_t)cap);
    float *scores = xmalloc(sizeof(float) * (size_t)cap);
    int *types = xmalloc(sizeof(int) * (size_t)cap);
    const char *special[3] = {"<unk>", "<s>", "</s>"};
    int special_type[3] = {TOK_UNKNOWN, TOK_CONTROL, TOK_CONTROL};
    for (int i = 0; i < 3; i++) pieces[n] = xstrdup(special[i]), scores[n] = 0, types[n++] = special_type[i];
    for (int b = 0; b < 256; b++) pieces[n] = xasprintf("<0x%02X>", b), scores[n] = 0, types[n++] = TOK_BYTE;
#define ADD_PIECE(str, score)                                                                                          \
    do {                                                                                                               \
        int dup = 0;                                                                                                   \
        for (int q = 259; q < n && !dup; q++) dup = !strcmp(pieces[q], str);                                           \
        if (!dup && n < cap) {                                                                                         \
            pieces[n] = xstrdup(str);                                                                                  \
            scores[n] = (score);                                                                                       \
            types[n++] = TOK_NORMAL;                                                                                   \
        }                                                                                                              \
    } while (0)
    // Single characters (and "▁") first: the alphabet BPE starts from.
    ADD_PIECE("\xe2\x96\x81", -1000.0f);
    for (const char *c = corpus.buf; *c; c++) {
        if (*c == ' ') continue;
        char one[2] = {*c, 0};
        ADD_PIECE(one, -1000.0f);
    }
    // Words and their prefixes; longer prefixes score higher so merges grow left to right.
    char *copy = xstrdup(corpus.buf);
    for (char *w = strtok(copy, " "); w; w = strtok(NULL, " ")) {
        // Split trailing punctuation off, as the pieces "." "," "?" exist on their own.
        size_t len = strlen(w);
        while (len > 1 && strchr(".,?'", w[len - 1])) w[--len] = 0;
        char buf[96];
        for (size_t k = 2; k <= len && k < 60; k++) {
            snprintf(buf, sizeof buf, "%.*s", (int)k, w);
            ADD_PIECE(buf, -(float)(100 - k));
            snprintf(buf, sizeof buf, "\xe2\x96\x81%.*s", (int)k - 1, w);
            ADD_PIECE(buf, -(float)(100 - k));
        }
        snprintf(buf, sizeof buf, "\xe2\x96\x81%s", w);
        ADD_PIECE(buf, -(float)(100 - len - 1));
    }
#undef ADD_PIECE
    free(copy);
    free(corpus.buf);
    int rc = tok_write_model(path, (const char *const *)pieces, scores, types, n);
    for (int i = 0; i < n; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    return rc;
}

// A folder with config.json and random weights for every tensor the config implies: linear and
// embedding weights N(0, std^2), norms 1, biases and the rest 0.
static int write_random_model(const char *dir, const char *config_json, weight_layout layout, float std,
                              uint64_t seed) {
    if (mkdir_p(dir) != 0) return -1;
    char *cp = path_join(dir, "config.json");
    int rc = write_file_atomic(cp, config_json, strlen(config_json));
    free(cp);
    model_config mc;
    if (rc == 0) rc = model_config_parse(config_json, strlen(config_json), dir, &mc);
    param_table pt;
    if (rc == 0) rc = param_table_build(&mc, &pt);
    if (rc != 0) return -1;
    param_alloc(&pt);
    param_init_random(&pt, std, seed);
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < pt.n_views && rc == 0; i++) {
        const param_view *v = &pt.views[i];
        char *name = name_from_internal(v->name, layout, 0);
        rc = st_writer_add_f32(&w, name, DT_F32, v->ndim, v->shape, param_ptr(&pt, v));  // copies the name
        free(name);
    }
    char *wp = path_join(dir, "model.safetensors");
    if (rc == 0) rc = st_writer_save(&w, wp);
    free(wp);
    st_writer_free(&w);
    param_table_free(&pt);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Evaluation: `llava eval --benchmark demo` on the held-out questions (data/eval_questions.jsonl),
// each with its image and with a blank one; greedy answers, scored by exact word (eval/bench_demo.c).

static int evaluate(const char *device, const char *out, const char *data, const char *tok, const char *tmpl,
                    const char *model, double *acc_img, double *acc_blind, double *pair_acc, double *video_acc) {
    char *res = path_join(out, "eval");
    char taken[16];
    snprintf(taken, sizeof taken, "%d", VIDEO_TAKEN);
    const char *argv[] = {"eval", "--model",  model,  "--benchmark",    "demo", "--data",
                          data,   "--out",    res,    "--tokenizer",    tok,    "--template",
                          tmpl,   "--device", device, "--video-frames", taken,  NULL};
    fflush(stdout);
    int rc = cmd_eval((int)(sizeof argv / sizeof argv[0]) - 1, (char **)argv);
    char *sp = path_join(res, "scores.json");
    size_t len = 0;
    char *js = rc == 0 ? read_file(sp, 1 << 20, &len) : NULL;
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "accuracy_with_image"),
                *b = cJSON_GetObjectItemCaseSensitive(j, "accuracy_blind");
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(j, "per_category");
    if (rc == 0 && !(cJSON_IsNumber(a) && cJSON_IsNumber(b))) rc = llava_fail("demo: %s holds no accuracies", sp);
    if (rc == 0) {
        *acc_img = a->valuedouble, *acc_blind = b->valuedouble;
        for (int q = 0; q < N_QTYPES; q++) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(per, QTYPE_NAMES[q]);
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "questions"),
                        *wi = cJSON_GetObjectItemCaseSensitive(c, "with_image"),
                        *bl = cJSON_GetObjectItemCaseSensitive(c, "blind");
            if (cJSON_IsNumber(n) && cJSON_IsNumber(wi) && cJSON_IsNumber(bl))
                printf("demo:   %-8s questions: %3d, with image %.2f, blind %.2f, chance %.2f\n", QTYPE_NAMES[q],
                       n->valueint, wi->valuedouble, bl->valuedouble, 1.0 / N_OPTIONS[q]);
        }
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(per, "two-images");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "questions"),
                    *wi = cJSON_GetObjectItemCaseSensitive(c, "with_image"),
                    *bl = cJSON_GetObjectItemCaseSensitive(c, "blind");
        if (cJSON_IsNumber(n) && cJSON_IsNumber(wi) && cJSON_IsNumber(bl)) {
            printf("demo:   two images questions: %3d, with both images %.2f, blind %.2f, chance %.2f\n", n->valueint,
                   wi->valuedouble, bl->valuedouble, 1.0 / N_COLORS);
            if (pair_acc) *pair_acc = wi->valuedouble;
        }
        c = cJSON_GetObjectItemCaseSensitive(per, "video");
        n = cJSON_GetObjectItemCaseSensitive(c, "questions"), wi = cJSON_GetObjectItemCaseSensitive(c, "with_image"),
        bl = cJSON_GetObjectItemCaseSensitive(c, "blind");
        if (cJSON_IsNumber(n) && cJSON_IsNumber(wi) && cJSON_IsNumber(bl)) {
            printf("demo:   video questions: %3d, with the frames %.2f, blind %.2f, chance %.2f\n", n->valueint,
                   wi->valuedouble, bl->valuedouble, 1.0 / N_COLORS);
            if (video_acc) *video_acc = wi->valuedouble;
        }
    } else if (rc != 0 && !llava_errmsg()[0]) {
        rc = llava_fail("demo: llava eval --benchmark demo failed (see above)");
    }
    cJSON_Delete(j);
    free(js);
    free(sp);
    free(res);
    return rc ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------

static int run_stage(const char *preset, const char *const *sets, int n_sets) {
    train_config c;
    cfg_init_defaults(&c);
    int rc = cfg_load(&c, preset);
    for (int i = 0; i < n_sets && rc == 0; i++) rc = cfg_set(&c, sets[i]);
    if (rc == 0) rc = cfg_validate(&c);
    train_options opt = {.quiet = !isatty(2)};  // the progress line on a terminal, nothing in a log
    if (rc == 0) rc = train_run(&c, &opt);
    cfg_free(&c);
    return rc;
}

int demo_make_world(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes) {
    return demo_make_world_on(out, n_train, n_eval, stage2_epochs, qtypes, "cpu");
}

int demo_make_world_on(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes, const char *device) {
    return demo_make_world_lm(out, n_train, n_eval, stage2_epochs, qtypes, device, NULL);
}

// The families' own keys in the demo LM's config.json: Llama-3.1 (theta 500000 and llama3 rope
// scaling with an original length of 256, the demo's model_max_length: the lowest frequencies divided,
// one blended; grouped queries), Qwen2 (q/k/v biases, grouped queries, tied head) and Mistral (grouped
// queries, a sliding window of 64 that the longer samples and prompts exceed; the CPU backend only).
// *head: model_type and architectures; *shape: the keys that take num_attention_heads' place.
static int lm_family_keys(const char *lm, const char **head, const char **shape) {
    *head = "\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"]";
    *shape = "\"num_attention_heads\": 4, ";
    if (!lm || !strcmp(lm, "llama")) return 0;
    if (!strcmp(lm, "llama3")) {
        *shape =
            "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rope_theta\": 500000.0, "
            "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
            "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 256}, ";
        return 0;
    }
    if (!strcmp(lm, "qwen2")) {
        *head = "\"model_type\": \"qwen2\", \"architectures\": [\"Qwen2ForCausalLM\"]";
        *shape =
            "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rope_theta\": 1000000.0, "
            "\"tie_word_embeddings\": true, \"use_sliding_window\": false, ";
        return 0;
    }
    if (!strcmp(lm, "mistral")) {
        *head = "\"model_type\": \"mistral\", \"architectures\": [\"MistralForCausalLM\"]";
        *shape = "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"sliding_window\": 64, ";
        return 0;
    }
    return -1;
}

int demo_make_world_lm(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes, const char *device,
                       const char *lm_family) {
    return demo_make_world_ex(out, n_train, n_eval, stage2_epochs, qtypes, device, lm_family, NULL, 0, 0);
}

int demo_make_world_ex(const char *out, int n_train, int n_eval, int stage2_epochs, int *qtypes, const char *device,
                       const char *lm_family, const char *vision, int train_vision, int multi_image) {
    const int S = DEMO_IMAGE_SIZE, PATCH = 8;
    int siglip = vision && !strcmp(vision, "siglip");
    if (vision && !siglip && strcmp(vision, "clip")) return llava_fail("demo: --vision %s: clip or siglip", vision);
    const char *head, *shape;
    if (lm_family_keys(lm_family, &head, &shape) != 0)
        return llava_fail("demo: --lm %s: llama, llama3, qwen2 or mistral", lm_family);
    if (mkdir_p(out) != 0) return -1;
    char *data = path_join(out, "data");
    int rc =
        write_split(data, "train", n_train, S, 11, 0, NULL, multi_image & DEMO_PAIRS ? DEMO_TRAIN_PAIRS(n_train) : 0,
                    multi_image & DEMO_VIDEO ? DEMO_TRAIN_VIDEOS(n_train) : 0);
    if (rc == 0 && n_eval > 0)
        rc = write_split(data, "eval", n_eval, S, 12, 1, qtypes, multi_image & DEMO_PAIRS ? DEMO_EVAL_PAIRS(n_eval) : 0,
                         multi_image & DEMO_VIDEO ? DEMO_EVAL_VIDEOS(n_eval) : 0);
    char *tok = demo_tokenizer_path(out, lm_family), *lm = path_join(out, "lm"), *clip = path_join(out, "clip");
    const char *tmpl = demo_template(lm_family);
    if (rc == 0)
        rc = demo_bpe(lm_family) ? write_bpe_tokenizer(out, lm_family, multi_image)
                                 : write_tokenizer(tok, tmpl, multi_image);
    tokenizer *t = rc == 0 ? tok_load(tok) : NULL;
    if (!t) rc = -1;
    int V = t ? tok_n_pieces(t) : 0;
    tok_free(t);
    char lm_cfg[1024], clip_cfg[512];
    snprintf(lm_cfg, sizeof lm_cfg,
             "{%s, \"vocab_size\": %d, "
             "\"hidden_size\": 96, "
             "\"intermediate_size\": 192, \"num_hidden_layers\": 2, %s"
             "\"max_position_embeddings\": 256, "
             "\"rms_norm_eps\": 1e-5, \"pad_token_id\": 0}",
             head, V, shape);
    // A SigLIP tower: no class token, GELU's tanh form, its own image processor (the loader and the engine follow the
    // model's config); "patch" features are then every patch.
    snprintf(clip_cfg, sizeof clip_cfg,
             "{\"model_type\": \"%s\", \"hidden_size\": 64, \"intermediate_size\": 128, "
             "\"num_hidden_layers\": 2, "
             "\"num_attention_heads\": 2, \"image_size\": %d, \"patch_size\": %d}",
             siglip ? "siglip_vision_model" : "clip_vision_model", S, PATCH);
    if (rc == 0) rc = write_random_model(lm, lm_cfg, LAYOUT_LLAMA, 0.02f, 21);
    if (rc == 0) rc = write_random_model(clip, clip_cfg, LAYOUT_CLIP, 0.05f, 22);
    // The two stages, with presets written like the LLaVA-1.5 ones. Qwen2's template supervises ChatML's markers and
    // every "\n" token besides the answers (preprocess_qwen's unmask list); the tiny model needs three times the
    // stage-2 epochs to reach the demo's bars with it (1.00 at 12 epochs, 0.88 at 8, 0.54 at 4 on the fast demo).
    int e2 = lm_family && !strcmp(lm_family, "qwen2") ? 3 * stage2_epochs : stage2_epochs;
    char *s1 = path_join(out, "stage1.json"), *s2 = path_join(out, "stage2.json");
    char *ck1 = path_join(out, "checkpoints/stage1"), *ck2 = path_join(out, "checkpoints/stage2");
    char buf[4096];
    snprintf(
        buf, sizeof buf,
        "{\"model\": {\"llm\": \"%s\", \"vision_tower\": \"%s\", \"tokenizer\": \"%s\"},\n"
        " \"data\": {\"data_path\": \"%s/train_captions.json\", \"image_folder\": \"%s\", \"template\": \"plain\",\n"
        "          \"image_aspect_ratio\": \"square\", \"model_max_length\": 256, \"dataloader_num_workers\": 1},\n"
        " \"train\": {\"stage\": 1, \"trainable\": [\"projector\"], \"device\": \"%s\", "
        "\"per_device_train_batch_size\": 16,\n"
        "           \"learning_rate\": 2e-3, \"num_train_epochs\": 1, \"warmup_ratio\": 0.03,\n"
        "           \"gradient_checkpointing\": false},\n"
        " \"checkpoint\": {\"output_dir\": \"%s\", \"save_steps\": 1000000, \"save_total_limit\": 1}}\n",
        lm, clip, tok, data, data, device, ck1);
    if (rc == 0) rc = write_file_atomic(s1, buf, strlen(buf));
    // A trained tower (LLaVA-NeXT's unfreeze_mm_vision_tower) takes a fifth of the LM's peak rate, as NeXT's recipes
    // give mm_vision_tower_lr 2e-6 beside 1e-5.
    char vis[160] = "";
    if (train_vision)
        snprintf(vis, sizeof vis,
                 "\"vision\", \"projector\", \"lm\"], \"vision_unfreeze_last\": %d, \"mm_vision_tower_lr\": 2e-4",
                 train_vision > 0 ? train_vision : 0);
    snprintf(buf, sizeof buf,
             "{\"base\": \"stage1.json\",\n"
             " \"model\": {\"pretrain_mm_mlp_adapter\": \"%s/mm_projector.safetensors\"},\n"
             " \"data\": {\"data_path\": \"%s/train_qa.json\", \"template\": \"%s\", \"image_aspect_ratio\": "
             "\"pad\"},\n"
             " \"train\": {\"stage\": 2, \"trainable\": [%s, \"learning_rate\": 1e-3, "
             "\"num_train_epochs\": %d},\n"
             " \"checkpoint\": {\"output_dir\": \"%s\"}}\n",
             ck1, data, tmpl, train_vision ? vis : "\"projector\", \"lm\"]", e2, ck2);
    if (rc == 0) rc = write_file_atomic(s2, buf, strlen(buf));
    free(data);
    free(tok);
    free(lm);
    free(clip);
    free(s1);
    free(s2);
    free(ck1);
    free(ck2);
    return rc;
}

// llava demo --anyres: LLaVA-NeXT's tiles for both stages. The demo's 48-pixel images go to a 1 x 2 grid (the
// first of the tied pinpoints): 3 tiles through the tower and 36 + 6 x 7 = 78 features in the stream per image.
// Stage 2 takes twice the epochs: on the fast world the position questions reach 0.50 in 4 and 0.98 in 8.
static const char *const ANYRES_SETS[] = {"data.image_aspect_ratio=anyres",
                                          "data.image_grid_pinpoints=[[48,96],[96,48],[96,96]]",
                                          "train.num_train_epochs=8"};

// llava demo --video: stage 2 takes VIDEO_TAKEN (2) of each video's frames.
static const char *const VIDEO_SETS[] = {"data.video_frames=2"};
_Static_assert(VIDEO_TAKEN == 2, "VIDEO_SETS names VIDEO_TAKEN's value");

int demo_run(const demo_options *o) {
    if (o->video && o->anyres) return llava_fail("demo: --video with --anyres: AnyRes tiles images, not video frames");
    double t0 = (double)clock();
    // Tiny GEMMs run fastest single-threaded, and one thread makes the result the same on any machine.
    llava_cpu_set_threads(1);
    const char *out = o->out_dir;
    int n_train = o->fast ? 2400 : 4800, n_eval = 200;
    int *qtypes = xmalloc(sizeof(int) * (size_t)n_eval);
    printf("demo: writing %d training and %d held-out images with captions and questions to %s\n", n_train, n_eval,
           out);
    fflush(stdout);
    const char *device = o->device ? o->device : "cpu";
    char why[256];
    if (!llava_backend_available(device, why, sizeof why)) {
        free(qtypes);
        return llava_fail("demo: --device %s: %s", device, why);
    }
    int rc = demo_make_world_ex(out, n_train, n_eval, 4, qtypes, device, o->lm, o->vision, o->train_vision,
                                (o->multi_image ? DEMO_PAIRS : 0) | (o->video ? DEMO_VIDEO : 0));
    char *data = path_join(out, "data"), *tok = demo_tokenizer_path(out, o->lm);
    char *s1 = path_join(out, "stage1.json"), *s2 = path_join(out, "stage2.json");
    char *ck2 = path_join(out, "checkpoints/stage2");
    if (rc == 0) {  // the demo's own runs start afresh: an earlier demo's checkpoints and answers go
        // (`llava eval` keeps the answers it finds, as a resumed evaluation should)
        const char *old[] = {"checkpoints", "eval"};
        for (int i = 0; i < 2 && rc == 0; i++) {
            char *p = path_join(out, old[i]);
            rc = remove_tree(p) == 0 ? 0 : llava_fail("demo: cannot clear %s", p);
            free(p);
        }
    }
    if (rc == 0) {
        printf("demo: stage 1 (projector only, plain template, square images)\n");
        fflush(stdout);
        rc = run_stage(s1, o->anyres ? ANYRES_SETS : NULL, o->anyres ? 2 : 0);  // stage 1: its own epochs
    }
    if (rc == 0) {
        printf("demo: stage 2 (projector + language model, %s template, %s images)\n", demo_template(o->lm),
               o->anyres ? "AnyRes" : "padded");
        fflush(stdout);
        rc = run_stage(s2, o->anyres ? ANYRES_SETS : o->video ? VIDEO_SETS : NULL, o->anyres ? 3 : o->video ? 1 : 0);
    }
    // The held-out questions through `llava eval`.
    double a = 0, b = 0, chance = 0;
    int n_pairs = o->multi_image ? DEMO_EVAL_PAIRS(n_eval) : 0, n_videos = o->video ? DEMO_EVAL_VIDEOS(n_eval) : 0;
    int n_q = n_eval + n_pairs + n_videos;
    for (int i = 0; i < n_eval; i++) chance += 1.0 / N_OPTIONS[qtypes[i]] / n_q;
    chance += (double)(n_pairs + n_videos) / N_COLORS / n_q;  // a two-image or video question asks a colour
    char *model = path_join(ck2, "model");
    double pa = -1, va = -1;
    if (rc == 0) rc = evaluate(device, out, data, tok, demo_template(o->lm), model, &a, &b, &pa, &va);
    if (rc == 0) {
        printf("demo: %d held-out questions; chance is %.2f; %.0f s of CPU time\n", n_q, chance,
               ((double)clock() - t0) / CLOCKS_PER_SEC);
        printf("demo: accuracy_with_image=%.3f accuracy_blind=%.3f\n", a, b);
        if (o->check && !(a >= 0.90 && b <= chance + 0.10))
            rc = llava_fail("demo: targets missed (want accuracy_with_image >= 0.90 and accuracy_blind <= %.2f)",
                            chance + 0.10);
        // With two-image questions, those alone must reach the bar too (the other questions cannot carry them).
        if (rc == 0 && o->check && o->multi_image && !(pa >= 0.90))
            rc = llava_fail("demo: the two-image questions' accuracy %.3f is under 0.90", pa);
        if (rc == 0 && o->check && o->video && !(va >= 0.90))
            rc = llava_fail("demo: the video questions' accuracy %.3f is under 0.90", va);
    }
    free(qtypes);
    free(data);
    free(tok);
    free(s1);
    free(s2);
    free(ck2);
    free(model);
    return rc;
}
