// llava generate: a question (and an image) through a trained model, greedy answer printed. The
// prompt is built exactly as LLaVA-1.5's evaluation builds it: the conversation template with the
// question as the user's turn and an empty assistant turn ("... USER: <image>\nQUESTION
// ASSISTANT:"), tokenized with tokenizer_image_token; the image preprocessed as in training.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common/util.h"
#include "data/image.h"
#include "data/template.h"
#include "data/tokenizer.h"
#include "infer/generate.h"
#include "kernels/backend.h"
#include "model/llava.h"

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *image = NULL, *prompt = NULL, *tmpl_name = "vicuna_v1";
    const char *aspect = "pad", *device = "cpu", *mode_name = NULL;
    int max_new = 256, print_ids = 0;
    llava_load_options lo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--ids")) print_ids = 1;
        else if (!strcmp(a, "--ignore-unexpected")) lo.ignore_unexpected = 1;
        else if (i + 1 >= argc) goto usage;
        else if (!strcmp(a, "--model")) model = argv[++i];
        else if (!strcmp(a, "--tokenizer")) tok_path = argv[++i];
        else if (!strcmp(a, "--image")) image = argv[++i];
        else if (!strcmp(a, "--prompt")) prompt = argv[++i];
        else if (!strcmp(a, "--template")) tmpl_name = argv[++i];
        else if (!strcmp(a, "--aspect")) aspect = argv[++i];
        else if (!strcmp(a, "--device")) device = argv[++i];
        else if (!strcmp(a, "--mode")) mode_name = argv[++i];
        else if (!strcmp(a, "--max-new-tokens")) max_new = atoi(argv[++i]);
        else goto usage;
    }
    if (!model || !prompt || max_new < 1) goto usage;
    tok_mode mode = TOK_MODE_DEFAULT;
    if (mode_name && tok_mode_parse(mode_name, &mode)) goto usage;
    const conv_template *tmpl = conv_template_builtin(tmpl_name);
    if (!tmpl) {
        fprintf(stderr, "llava generate: unknown template \"%s\" (plain, vicuna_v1)\n", tmpl_name);
        return 2;
    }
    llava_backend *be = llava_backend_open(!strcmp(device, "cuda") ? "cuda" : "cpu", NULL);
    if (!be) {
        fprintf(stderr, "llava generate: --device %s: %s\n", device, llava_errmsg());
        return 1;
    }
    char *own_tok = tok_path ? NULL : path_join(model, "tokenizer.model");
    tokenizer *tok = tok_load(tok_path ? tok_path : own_tok);
    llava_model m;
    int loaded = 0, rc = 1;
    float *pix = NULL;
    int64_t *ids = NULL, *out = NULL;
    char *question = NULL;
    prep_result r;
    memset(&r, 0, sizeof r);
    if (!tok) goto fail;
    if (llava_model_load_opts(&m, model, be, &lo) != 0) goto fail;
    loaded = 1;
    if (m.n_unexpected_ignored)
        fprintf(stderr, "llava generate: %s: %d tensors of the weights are not in the model's config (ignored)\n",
                model, m.n_unexpected_ignored);
    int S = m.cfg.vision.image_size;
    if (image) {
        image_u8 im;
        if (image_load_file(image, &im) != 0) goto fail;
        pix = xmalloc(sizeof(float) * 3 * (size_t)S * (size_t)S);
        uint8_t *u8 = xmalloc((size_t)S * (size_t)S * 3);
        int e = image_preprocess(&im, S, !strcmp(aspect, "square") ? IMAGE_ASPECT_SQUARE : IMAGE_ASPECT_PAD, u8, pix);
        free(u8);
        image_free(&im);
        if (e != 0) goto fail;
    }
    // The question as the user's turn, "<image>\n" first when there is an image (LLaVA's eval).
    question = image ? xasprintf("%s\n%s", DEFAULT_IMAGE_TOKEN, prompt) : xstrdup(prompt);
    conv_turn turns[2] = {{tmpl->from[0], question, strlen(question)}, {tmpl->from[1], "", 0}};
    prep_config pc = {.tok = tok, .mode = mode, .tmpl = tmpl, .model_max_length = 0, .strict = 0};
    if (prep_sample(&pc, "prompt", turns, 2, image != NULL, &r) != 0) goto fail;
    // The image's place becomes one image token per feature, as transformers' processor writes it.
    int tpi = m.tokens_per_image, n = 0, marks = 0;
    for (size_t i = 0; i < r.ids.n; i++) marks += r.ids.v[i] == IMAGE_TOKEN_INDEX;
    if (marks != (image ? 1 : 0)) {
        llava_fail("the prompt holds %d image places for %d image%s (write no \"%s\" in --prompt: --image puts it)",
                   marks, image ? 1 : 0, image ? "" : "s", DEFAULT_IMAGE_TOKEN);
        goto fail;
    }
    ids = xmalloc(sizeof(int64_t) * (r.ids.n + (size_t)tpi));
    for (size_t i = 0; i < r.ids.n; i++) {
        if (r.ids.v[i] == IMAGE_TOKEN_INDEX)
            for (int k = 0; k < tpi; k++) ids[n++] = m.cfg.glue.image_token_index;
        else ids[n++] = r.ids.v[i];
    }
    out = xmalloc(sizeof(int64_t) * (size_t)max_new);
    int eos = tok_eos_id(tok);
    int got = llava_generate_greedy(&m, ids, n, pix, image ? 1 : 0, S, S, max_new, eos, out);
    if (got < 0) goto fail;
    int keep = got > 0 && out[got - 1] == eos ? got - 1 : got;
    int32_t *o32 = xmalloc(sizeof(int32_t) * (size_t)(keep ? keep : 1));
    for (int i = 0; i < keep; i++) o32[i] = (int32_t)out[i];
    char *text = NULL;
    size_t tl = 0;
    if (tok_decode(tok, o32, (size_t)keep, &text, &tl) != 0) {
        free(o32);
        goto fail;
    }
    printf("%.*s\n", (int)tl, text);
    if (print_ids) {
        printf("ids:");
        for (int i = 0; i < got; i++) printf(" %lld", (long long)out[i]);
        printf("\n");
    }
    free(text);
    free(o32);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "llava generate: %s\n", llava_errmsg());
    prep_result_free(&r);
    free(question);
    free(ids);
    free(out);
    free(pix);
    if (loaded) llava_model_free(&m);
    llava_backend_close(be);
    if (tok) tok_free(tok);
    free(own_tok);
    return rc;
usage:
    fprintf(stderr,
            "usage: llava generate --model DIR --prompt TEXT [--image FILE] [--tokenizer PATH] [--template "
            "vicuna_v1|plain] [--aspect pad|square] [--max-new-tokens N] [--device cpu|cuda] [--mode "
            "legacy|hf431|hf437] [--ids] [--ignore-unexpected]\n"
            "  --ignore-unexpected  load the model although its weights hold tensors its config.json has no place\n"
            "                       for (skipped; without it they are an error naming them)\n");
    return 2;
}
