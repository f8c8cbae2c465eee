// llava forward: one forward (and optionally backward) pass of a model folder on given inputs,
// written to a safetensors file. The tool to compare checkpoints and implementations.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/dtype.h"
#include "common/util.h"
#include "kernels/backend.h"
#include "model/batch_hf.h"
#include "model/io/safetensors.h"
#include "model/llava.h"

static const char USAGE[] =
    "usage: llava forward --model DIR --inputs IN.safetensors --out OUT.safetensors [--device cpu|cuda]\n"
    "                     [--adapter DIR] [--grads SET] [--ignore-unexpected]\n"
    "\n"
    "One forward pass (and with --grads a backward pass) of a model folder on the inputs a Hugging Face\n"
    "LlavaForConditionalGeneration takes, written under Hugging Face names: the tool to compare checkpoints and\n"
    "implementations (transformers' model(**inputs) on the same file gives the same logits and loss).\n"
    "\n"
    "  --model DIR          a model folder, llava-hf or original LLaVA layout (config.json + safetensors;\n"
    "                       required)\n"
    "  --inputs IN          the inputs, a safetensors file (required; below)\n"
    "  --out OUT            the outputs, a safetensors file (required; below)\n"
    "  --device DEV         cpu or cuda (default: cpu)\n"
    "  --adapter DIR        a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) run on\n"
    "                       top of the model, unmerged; gradients are then named as PEFT's PeftModel names them\n"
    "                       (grad.base_model.model.<name>) (default: none)\n"
    "  --grads SET          also the gradients of the loss for a set of parts joined by '+': projector (always\n"
    "                       in), lm, with --adapter lora, vision (the tower up to its feature layer, with its\n"
    "                       embeddings) or visionN (its last N layers that run): projector, projector+lm,\n"
    "                       lora+projector, vision+projector+lm, vision1+projector ... (default: none, forward\n"
    "                       only)\n"
    "  --ignore-unexpected  load the model although its weights hold tensors its config.json has no place for\n"
    "                       (skipped; default: off, they are an error naming them)\n"
    "\n"
    "IN.safetensors holds, as LlavaProcessor and a data collator make them (B rows of S positions):\n"
    "  input_ids       I64 (B, S), required. Token ids of the language model's vocabulary; each image stands as\n"
    "                  the model's image token id (config.json's image_token_index: 32000 in llava-hf folders,\n"
    "                  -200 in original LLaVA ones) repeated once per visual token, i.e. the \"<image>\" of a\n"
    "                  prompt already expanded as transformers' LlavaProcessor expands it: 576 copies for\n"
    "                  LLaVA-1.5 (CLIP-L/14 at 336 px, (336/14)^2 patches, the CLS feature dropped), in a row.\n"
    "  attention_mask  I64 (B, S), optional: 1 for a row's tokens, then 0 for its padding (right padding only);\n"
    "                  absent: every position is a token.\n"
    "  labels          I64 (B, S), optional: transformers' convention, not shifted (position t is scored on\n"
    "                  labels[t+1]), -100 = not scored; absent: no loss (it prints nan over 0 targets).\n"
    "  pixel_values    floating point (N, 3, H, W), optional: the N images in the order their image tokens appear\n"
    "                  (row by row), preprocessed and CLIP-normalised (`llava image` writes one image's as\n"
    "                  pixel_values, 3 x S x S); N times the visual tokens per image must equal the image ids\n"
    "                  in input_ids. NaN or infinity is refused.\n"
    "OUT.safetensors gets logits (F32, B x S x vocabulary, zeros at padding positions), loss (F32 scalar, the\n"
    "mean over scored positions) and with --grads grad.<Hugging Face name> (F32) for every trained tensor (the\n"
    "tower's layers past the feature layer never run and have none).\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2;
}

// Writes logits (B, S, V) with zeros at padding positions, the loss and the gradients.
static int write_outputs(const llava_model *m, const llava_batch *b, int B, int S, const float *logits_packed,
                         float loss, const char *out) {
    int V = m->cfg.text.vocab_size;
    float *logits = xcalloc((size_t)B * S * V, sizeof(float));
    for (int r = 0; r < B; r++) {
        int start = b->cu_seqlens[r], len = b->cu_seqlens[r + 1] - start;
        memcpy(logits + (size_t)r * S * V, logits_packed + (size_t)start * V, sizeof(float) * (size_t)len * V);
    }
    st_writer w;
    st_writer_init(&w);
    int64_t lshape[3] = {B, S, V};
    int rc = st_writer_add(&w, "logits", DT_F32, 3, lshape, logits);
    if (rc == 0) rc = st_writer_add(&w, "loss", DT_F32, 0, NULL, &loss);
    float *host[N_GROUPS] = {0};
    for (int g = 0; g < N_GROUPS && rc == 0; g++) {
        if (!m->grads[g]) continue;
        host[g] = xmalloc(sizeof(float) * m->pt.group_numel[g]);
        m->ops->download(m->be, BUF_GRAD, host[g], m->grads[g], m->pt.group_numel[g]);
        for (int i = 0; i < m->pt.n_views && rc == 0; i++) {
            const param_view *v = &m->pt.views[i];
            if (v->group != g || !v->used || llava_model_is_frozen(m, v)) continue;
            weight_layout lay = m->layout == LAYOUT_UNKNOWN ? LAYOUT_LLAVA_HF_LEGACY : m->layout;
            char *hf = name_from_internal(v->name, lay, m->pt.linear_projector);
            char *key = xasprintf("grad.%s%s", m->cfg.lora.r > 0 ? "base_model.model." : "", hf ? hf : v->name);
            free(hf);
            rc = st_writer_add(&w, key, DT_F32, v->ndim, v->shape, host[g] + v->offset);  // copies the name
            free(key);
        }
    }
    st_writer_meta(&w, "format", "pt");
    if (rc == 0) rc = st_writer_save(&w, out);
    st_writer_free(&w);
    for (int g = 0; g < N_GROUPS; g++) free(host[g]);
    free(logits);
    return rc;
}

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *inputs = NULL, *out = NULL, *device = "cpu", *grads = NULL;
    llava_load_options lo = {0};
    static const char *const FLAGS[] = {
        "--model", "--inputs", "--out", "--device", "--grads", "--adapter", "--ignore-unexpected", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (args_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--ignore-unexpected") == 0) lo.ignore_unexpected = 1;
        else if (strcmp(a, "--model") == 0 && v) model = argv[++i];
        else if (strcmp(a, "--inputs") == 0 && v) inputs = argv[++i];
        else if (strcmp(a, "--out") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--device") == 0 && v) device = argv[++i];
        else if (strcmp(a, "--grads") == 0 && v) grads = argv[++i];
        else if (strcmp(a, "--adapter") == 0 && v) lo.adapter = argv[++i];
        else return args_unknown("forward", a, FLAGS, ARGS_COUNT(FLAGS));
    }
    if (!model || !inputs || !out) {
        fprintf(stderr, "llava forward: --model, --inputs and --out are required\n");
        return usage();
    }
    trainable_set t = TRAIN_NONE;
    int vision_last = 0;
    if (grads && llava_parse_grad_set(grads, &t, &vision_last) != 0) {
        fprintf(stderr, "llava forward: --grads: %s\n", llava_errmsg());
        return 2;
    }
    if ((t == TRAIN_PROJECTOR_LORA) != (lo.adapter != NULL) && t != TRAIN_NONE) {
        fprintf(stderr, "llava forward: --grads %s %s\n", grads,
                lo.adapter ? "trains no adapter: with --adapter, --grads lora+projector"
                           : "needs the adapter it trains (--adapter DIR)");
        return 2;
    }
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0) {
        fprintf(stderr, "llava forward: --device %s: cpu or cuda\n", device);
        return 2;
    }
    llava_backend *be = llava_backend_open(device, NULL);
    if (!be) {
        fprintf(stderr, "llava forward: --device %s: %s\n", device, llava_errmsg());
        return 1;
    }
    llava_model m;
    if (llava_model_load_opts(&m, model, be, &lo) != 0) {
        fprintf(stderr, "llava forward: %s\n", llava_errmsg());
        llava_backend_close(be);
        return 1;
    }
    if (m.n_unexpected_ignored)
        fprintf(stderr, "llava forward: %s: %d tensors of the weights are not in the model's config (ignored)\n", model,
                m.n_unexpected_ignored);
    llava_model_set_trainable(&m, t);
    if (vision_last && llava_model_set_vision_trainable(&m, vision_last) < 0) {
        fprintf(stderr, "llava forward: --grads %s: %s\n", grads, llava_errmsg());
        llava_model_free(&m);
        llava_backend_close(be);
        return 1;
    }
    llava_batch b;
    int B = 0, S = 0;
    if (llava_batch_from_file(&b, &m, inputs, &B, &S) != 0) {
        fprintf(stderr, "llava forward: %s: %s\n", inputs, llava_errmsg());
        llava_model_free(&m);
        llava_backend_close(be);
        return 1;
    }
    float *logits = xmalloc(sizeof(float) * (size_t)b.T * m.cfg.text.vocab_size);
    llava_model_losses_reset(&m);
    int rc = llava_pass(&m, &b, t != TRAIN_NONE, 1.0f, logits) != 0;
    float loss = NAN;
    if (!rc) {
        float *losses = xmalloc(sizeof(float) * (size_t)b.T);
        llava_model_losses_read(&m, losses);
        loss = (float)llava_pass_loss(losses, &b);
        free(losses);
    }
    if (rc) {
        fprintf(stderr, "llava forward: %s\n", llava_errmsg());
    } else if (!isfinite(loss) && b.n_targets > 0) {
        // The loader and the batch refuse NaN and infinite weights and pixels: this one is the pass's own.
        fprintf(stderr,
                "llava forward: the loss is %s over %d targets although the weights and inputs are finite (the "
                "forward pass overflowed)\n",
                f32_nonfinite_name(loss), b.n_targets);
        rc = 1;
    } else if (write_outputs(&m, &b, B, S, logits, loss, out) != 0) {
        fprintf(stderr, "llava forward: %s\n", llava_errmsg());
        rc = 1;
    } else {
        printf("loss %.7f over %d targets, %d tokens, %d images -> %s\n", (double)loss, b.n_targets, b.T, b.n_img, out);
    }
    free(logits);
    llava_batch_free(&b);
    llava_model_free(&m);
    llava_backend_close(be);
    return rc;
}
