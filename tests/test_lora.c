// LoRA on the CPU backend against PEFT 0.13.2 + transformers 4.46.3 (tools/reference/make_lora_goldens.py,
// tests/data/golden/lora/): a PEFT adapter folder loaded on the tiny64 golden model gives PEFT's logits, loss
// and the gradients of every adapter and of the projector it saved; merged, it gives PEFT's merge_and_unload
// logits; written back as a PEFT folder it reloads to the same bits. Then what PEFT's goldens cannot show:
// fresh adapters (A within kaiming's bound, B zero) leave the base model's logits bit for bit; dropout keeps
// 1 - p of the elements scaled by 1 / (1 - p), draws the same mask in backward as in forward (the gradient
// matches the finite difference of the dropped loss) and a new one per seed; and adapter configs this
// reader cannot honour are refused by name.
//
// Tolerances are test_model_parity's, which the same fp32 arithmetic on the same model earns: logits max
// |diff| <= 1e-5 (measured 3.6e-6 and 4.0e-6), loss relative <= 1e-6, each gradient ||diff|| / ||g|| <= 5e-6
// (measured 1.0e-6). The merge adds one fp32 rounding of s (B A) per weight (~1e-7 relative): the same
// bounds hold (measured against PEFT's merged logits: below).
#include <math.h>
#include <string.h>

#include "check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "model/batch_hf.h"
#include "model/io/export.h"
#include "model/io/peft.h"
#include "model/io/safetensors.h"
#include "model/llava.h"
#include "model/nf4.h"

#define BASE "tests/data/golden/model/tiny64/model"
#define INPUTS "tests/data/golden/model/tiny64/inputs.safetensors"

static double worst_logit, worst_grad, worst_merged;

static int load(llava_model *m, const char *adapter) {
    llava_load_options o = {.adapter = adapter};
    return llava_model_load_opts(m, BASE, test_cpu(), &o);
}

// Logits (T, V) and loss of one pass (with backward when the model trains something).
static float pass(llava_model *m, int backward, float **logits, llava_batch *b, int *B, int *S) {
    CHECK(llava_batch_from_file(b, m, INPUTS, B, S) == 0, "%s", llava_errmsg());
    *logits = xmalloc(sizeof(float) * (size_t)b->T * m->cfg.text.vocab_size);
    return llava_forward_backward(m, b, backward, 1.0f, *logits);
}

// max |ours - ref| over the real positions of ref (B, S, V).
static double logits_diff(const float *ours, const llava_batch *b, int B, int S, int V, const float *ref) {
    double maxd = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < b->cu_seqlens[r + 1] - b->cu_seqlens[r]; t++)
            for (int v = 0; v < V; v++) {
                double d =
                    fabs((double)ours[(size_t)(b->cu_seqlens[r] + t) * V + v] - ref[((size_t)r * S + t) * V + v]);
                if (d > maxd) maxd = d;
            }
    return maxd;
}

static float *golden_tensor(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_find(f, name);
    CHECK(t != NULL, "golden lacks %s", name);
    if (!t) return NULL;
    float *x = xmalloc(sizeof(float) * (t->numel ? t->numel : 1));
    st_tensor_to_f32(f, t, x);
    if (n) *n = t->numel;
    return x;
}

// One PEFT case: logits, loss, every gradient PEFT recorded; then the merge.
static void parity(const char *name, int with_projector) {
    char adapter[256], outputs[256];
    snprintf(adapter, sizeof adapter, "tests/data/golden/lora/%s/adapter", name);
    snprintf(outputs, sizeof outputs, "tests/data/golden/lora/%s/outputs.safetensors", name);
    llava_model m;
    CHECK(load(&m, adapter) == 0, "%s: %s", name, llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LORA);
    st_file ref;
    CHECK(st_open(&ref, outputs) == 0, "%s", llava_errmsg());
    float *ref_logits = golden_tensor(&ref, "logits", NULL), *ref_loss = golden_tensor(&ref, "loss", NULL);
    float *merged_logits = golden_tensor(&ref, "merged_logits", NULL);
    llava_batch b;
    int B, S, V = m.cfg.text.vocab_size;
    float *logits;
    float loss = pass(&m, 1, &logits, &b, &B, &S);
    double rel_loss = fabs((double)loss - *ref_loss) / fabs((double)*ref_loss);
    CHECK(rel_loss <= 1e-6, "%s loss %.8f vs PEFT %.8f", name, (double)loss, (double)*ref_loss);
    double dl = logits_diff(logits, &b, B, S, V, ref_logits);
    CHECK(dl <= 1e-5, "%s logits max |diff| %.3g", name, dl);
    if (dl > worst_logit) worst_logit = dl;

    // Every trained tensor (the adapters, and the projector: it trains beside them whether or not the
    // adapter saved it) against PEFT's gradient under the adapter file's name.
    int n_checked = 0, n_lora = 0;
    for (int g = GROUP_PROJECTOR; g < N_GROUPS; g++) {
        if (!m.grads[g]) continue;
        float *host = xmalloc(sizeof(float) * m.pt.group_numel[g]);
        m.ops->download(m.be, BUF_GRAD, host, m.grads[g], m.pt.group_numel[g]);
        for (int i = 0; i < m.pt.n_views; i++) {
            const param_view *v = &m.pt.views[i];
            if (v->group != g || !v->used) continue;
            char *hf = name_from_internal(v->name, LAYOUT_LLAVA_HF_LEGACY, 0);
            char *key = xasprintf("grad.base_model.model.%s", hf);
            free(hf);
            const st_tensor *rg = st_find(&ref, key);
            if (!rg) {  // PEFT trains the projector only when the adapter saves it
                CHECK(g == GROUP_PROJECTOR && !with_projector, "%s: golden lacks %s", name, key);
                free(key);
                continue;
            }
            float *want = golden_tensor(&ref, key, NULL);
            CHECK_EQ_INT(rg->numel, v->numel);
            double e = check_rel_l2(host + v->offset, want, v->numel);
            CHECK(e <= 5e-6, "%s %s: ||diff||/||g|| %.3g", name, key, e);
            if (e > worst_grad) worst_grad = e;
            n_lora += g == GROUP_LORA;
            n_checked++;
            free(want);
            free(key);
        }
        free(host);
    }
    int n_ref = 0;
    for (int i = 0; i < ref.n_tensors; i++) n_ref += strncmp(ref.tensors[i].name, "grad.", 5) == 0;
    CHECK(n_checked == n_ref, "%s: checked %d gradients, PEFT recorded %d", name, n_checked, n_ref);
    CHECK(n_lora > 0, "%s: no adapter gradient checked", name);

    // Merged (export_llava_hf folds s B A into each adapted weight): PEFT's merge_and_unload logits, and
    // ours unmerged.
    char *tmp = check_tmpdir(), *dir = path_join(tmp, "merged");
    CHECK(export_llava_hf(&m, dir, DT_F32) == 0, "%s", llava_errmsg());
    llava_model mm;
    CHECK(llava_model_load(&mm, dir, test_cpu()) == 0, "%s", llava_errmsg());
    CHECK(mm.cfg.lora.r == 0 && mm.pt.group_numel[GROUP_LORA] == 0, "the merged folder carries no adapters");
    llava_batch b2;
    float *logits2;
    pass(&mm, 0, &logits2, &b2, &B, &S);
    double dm = logits_diff(logits2, &b2, B, S, V, merged_logits);
    CHECK(dm <= 1e-5, "%s merged logits vs PEFT's merged: max |diff| %.3g", name, dm);
    double du = 0;
    for (size_t i = 0; i < (size_t)b.T * V; i++) du = fmax(du, fabs((double)logits2[i] - logits[i]));
    CHECK(du <= 1e-5, "%s merged vs unmerged: max |diff| %.3g", name, du);
    worst_merged = fmax(worst_merged, fmax(dm, du));

    // Written back as a PEFT folder: the same configuration, and the same logits bit for bit.
    char *ad = path_join(tmp, "adapter");
    peft_write_options wo = {.base_model = BASE, .with_projector = with_projector, .dtype = DT_F32};
    CHECK(peft_write_adapter(&m, ad, &wo) == 0, "%s", llava_errmsg());
    lora_config back;
    CHECK(peft_read_config(ad, &back) == 0, "%s", llava_errmsg());
    CHECK(back.r == m.cfg.lora.r && back.alpha == m.cfg.lora.alpha && back.rslora == m.cfg.lora.rslora &&
              back.targets == m.cfg.lora.targets,
          "%s: written config r %d alpha %g rslora %d targets %x, read back r %d alpha %g rslora %d targets %x", name,
          m.cfg.lora.r, m.cfg.lora.alpha, m.cfg.lora.rslora, m.cfg.lora.targets, back.r, back.alpha, back.rslora,
          back.targets);
    llava_model rm;
    CHECK(load(&rm, ad) == 0, "%s", llava_errmsg());
    llava_batch b3;
    float *logits3;
    pass(&rm, 0, &logits3, &b3, &B, &S);
    CHECK(memcmp(logits3, logits, sizeof(float) * (size_t)b.T * V) == 0, "%s: the rewritten adapter's logits differ",
          name);
    printf("  %-14s loss %.7f (PEFT %.7f), logits %.2g, %d gradients (%d adapters) worst %.2g, merged %.2g\n", name,
           (double)loss, (double)*ref_loss, dl, n_checked, n_lora, worst_grad, fmax(dm, du));
    llava_model_free(&rm);
    llava_batch_free(&b3);
    free(logits3);
    free(ad);
    llava_model_free(&mm);
    llava_batch_free(&b2);
    free(logits2);
    check_rm_rf(tmp);
    free(dir);
    free(tmp);
    free(logits);
    llava_batch_free(&b);
    free(ref_logits);
    free(ref_loss);
    free(merged_logits);
    st_close(&ref);
    llava_model_free(&m);
}

// Fresh adapters: A uniform within 1/sqrt(in), B zero, and the model's logits those of its base, bit for bit.
static void fresh(void) {
    model_config cfg;
    CHECK(model_config_load(BASE, &cfg) == 0, "%s", llava_errmsg());
    cfg.lora = (lora_config){.r = 8, .alpha = 16, .targets = (1u << LORA_N_TARGETS) - 1};
    llava_model m, base;
    CHECK(llava_model_create(&m, &cfg, test_cpu()) == 0, "%s", llava_errmsg());
    CHECK(llava_model_add_weights(&m, BASE, (1 << N_GROUPS) - 1 - (1 << GROUP_LORA), NULL) == 0, "%s", llava_errmsg());
    llava_model_init_lora(&m, 42);
    int n_a = 0, n_b = 0, in_bound = 1, b_zero = 1;
    double spread = 0;
    for (int i = 0; i < m.pt.n_views; i++) {
        const param_view *v = &m.pt.views[i];
        if (v->group != GROUP_LORA) continue;
        const float *p = param_ptr(&m.pt, v);
        int is_a = strstr(v->name, ".lora_A.") != NULL;
        float bound = 1.0f / sqrtf((float)v->shape[1]);
        for (size_t k = 0; k < v->numel; k++) {
            if (is_a) in_bound &= fabsf(p[k]) <= bound, spread = fmax(spread, fabsf(p[k]) / bound);
            else b_zero &= p[k] == 0.0f;
        }
        n_a += is_a;
        n_b += !is_a;
    }
    CHECK(n_a == 2 * LORA_N_TARGETS && n_b == n_a, "%d A and %d B views (14 each: 2 layers x 7 modules)", n_a, n_b);
    CHECK(in_bound && spread > 0.95, "A within +-1/sqrt(in) and filling it (max |A| / bound %.3f)", spread);
    CHECK(b_zero, "B starts at zero");
    CHECK(llava_model_finish(&m) == 0, "%s", llava_errmsg());
    CHECK(llava_model_load(&base, BASE, test_cpu()) == 0, "%s", llava_errmsg());
    llava_batch b1, b2;
    int B, S;
    float *l1, *l2;
    pass(&m, 0, &l1, &b1, &B, &S);
    pass(&base, 0, &l2, &b2, &B, &S);
    CHECK(memcmp(l1, l2, sizeof(float) * (size_t)b1.T * m.cfg.text.vocab_size) == 0,
          "fresh adapters change the base model's logits");
    printf("  %-14s 14 A within 1/sqrt(in) (max %.3f of it), 14 B zero, logits the base's bit for bit\n", "fresh",
           spread);
    free(l1);
    free(l2);
    llava_batch_free(&b1);
    llava_batch_free(&b2);
    llava_model_free(&m);
    llava_model_free(&base);
}

// dropout_scale's mask: the keep rate and the kept values' scale.
static void dropout_op(void) {
    llava_backend *be = test_cpu();
    const size_t n = 1000000;
    float *x = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    const float p = 0.05f;
    be->ops->dropout_scale(be, y, x, n, 1.0f, p, 1234);
    size_t kept = 0, off_scale = 0;
    for (size_t i = 0; i < n; i++) {
        kept += y[i] != 0.0f;
        off_scale += y[i] != 0.0f && y[i] != 1.0f / (1.0f - p);
    }
    // 1e6 Bernoulli(0.95) draws: sd 2.2e-4 of the rate; 1e-3 is 4.6 sd.
    double rate = (double)kept / n;
    CHECK(fabs(rate - 0.95) < 1e-3, "keep rate %.5f (0.95 expected)", rate);
    CHECK(off_scale == 0, "%zu kept elements not scaled by 1/(1-p)", off_scale);
    be->ops->dropout_scale(be, x, x, n, 1.0f, p, 1235);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += (x[i] != 0.0f) == (y[i] != 0.0f);
    // Independent masks agree where both keep or both drop: 0.95^2 + 0.05^2 = 0.905 of the elements.
    CHECK(fabs((double)same / n - 0.905) < 2e-3, "another seed's mask agrees on %.4f (0.905 expected)",
          (double)same / n);
    printf("  %-14s keep rate %.5f at p 0.05, kept values 1/(1-p) exactly, a new seed agrees on %.4f\n", "dropout op",
           rate, (double)same / n);
    free(x);
    free(y);
}

// A training pass with dropout: the same seed gives the same loss, another seed another; and the
// adapters' gradient is the derivative of the dropped loss (the backward redraws the forward's masks):
// the central difference along the normalised gradient, with step h = 1e-2, equals |g|. Its error:
// truncation ~h^2 |L'''| / |g| and fp32 loss rounding ~5e-7 / (2h) ~3e-5 relative; measured 3.9e-6: bound 1e-4.
// Masks that differ between forward and backward (or a backward without them) miss by ~p = 0.3.
static void dropout_pass(void) {
    llava_model m;
    CHECK(load(&m, "tests/data/golden/lora/r4/adapter") == 0, "%s", llava_errmsg());
    m.cfg.lora.dropout = 0.3;
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LORA);
    llava_batch b;
    int B, S;
    CHECK(llava_batch_from_file(&b, &m, INPUTS, &B, &S) == 0, "%s", llava_errmsg());
    m.lora_pass_seed = 7;
    llava_model_zero_grads(&m);
    float l1 = llava_forward_backward(&m, &b, 1, 1.0f, NULL);
    size_t n = m.pt.group_numel[GROUP_LORA];
    float *g = xmalloc(sizeof(float) * n), *p0 = xmalloc(sizeof(float) * n), *p = xmalloc(sizeof(float) * n);
    m.ops->download(m.be, BUF_GRAD, g, m.grads[GROUP_LORA], n);
    m.ops->download(m.be, BUF_PARAM, p0, m.params[GROUP_LORA], n);
    float l1b = llava_forward_backward(&m, &b, 1, 1.0f, NULL);
    float l0 = llava_forward_backward(&m, &b, 0, 1.0f, NULL);  // no backward: no dropout
    m.lora_pass_seed = 8;
    float l2 = llava_forward_backward(&m, &b, 1, 1.0f, NULL);
    CHECK(l1 == l1b, "the same seed gives %.8f then %.8f", (double)l1, (double)l1b);
    CHECK(l1 != l2 && l1 != l0, "dropout changes nothing: seed 7 %.8f, seed 8 %.8f, none %.8f", (double)l1, (double)l2,
          (double)l0);
    double gn = 0;
    for (size_t i = 0; i < n; i++) gn += (double)g[i] * g[i];
    gn = sqrt(gn);
    const double h = 1e-2;
    double lp[2];
    m.lora_pass_seed = 7;
    for (int sgn = 0; sgn < 2; sgn++) {
        for (size_t i = 0; i < n; i++) p[i] = p0[i] + (float)((sgn ? -h : h) * g[i] / gn);
        m.ops->upload(m.be, BUF_PARAM, m.params[GROUP_LORA], p, n);
        lp[sgn] = llava_forward_backward(&m, &b, 1, 1.0f, NULL);
    }
    double fd = (lp[0] - lp[1]) / (2 * h), rel = fabs(fd - gn) / gn;
    CHECK(rel <= 1e-4, "directional derivative %.6g vs |g| %.6g (rel %.2e)", fd, gn, rel);
    printf(
        "  %-14s p 0.3: loss %.6f (seed 7), %.6f (seed 8), %.6f (none); d/dt L(p + t g/|g|) %.6f vs |g| %.6f "
        "(rel %.1e)\n",
        "dropout pass", (double)l1, (double)l2, (double)l0, fd, gn, rel);
    free(g);
    free(p0);
    free(p);
    llava_batch_free(&b);
    llava_model_free(&m);
}

// LLaVA's own LoRA checkpoint layout (adapter_model.bin + non_lora_trainables.bin, LlavaLlamaForCausalLM's
// names, a list of target modules; tools/reference/make_lora_llava_layout.py re-saves the r4 golden so): the
// same model as PEFT's folder, bit for bit.
static void llava_layout(void) {
    llava_model a, b;
    CHECK(load(&a, "tests/data/golden/lora/r4/adapter") == 0, "%s", llava_errmsg());
    CHECK(load(&b, "tests/data/golden/lora/r4_llava") == 0, "%s", llava_errmsg());
    llava_batch ba, bb;
    int B, S;
    float *la, *lb;
    pass(&a, 0, &la, &ba, &B, &S);
    pass(&b, 0, &lb, &bb, &B, &S);
    CHECK(memcmp(la, lb, sizeof(float) * (size_t)ba.T * a.cfg.text.vocab_size) == 0,
          "LLaVA's layout gives other logits than PEFT's");
    printf("  %-14s adapter_model.bin + non_lora_trainables.bin: PEFT's folder's logits bit for bit\n", "LLaVA layout");
    free(la);
    free(lb);
    llava_batch_free(&ba);
    llava_batch_free(&bb);
    llava_model_free(&a);
    llava_model_free(&b);
}

// QLoRA: the LM's linears held as NF4 and dequantised as each runs give, bit for bit, the logits and
// adapter gradients of the same model whose weights were replaced on the host by bitsandbytes' round
// trip (bf16, quantize_4bit, dequantize_4bit to bf16: model/nf4.h, checked against bitsandbytes'
// goldens by test_nf4); and the NF4 group takes no parameter buffer.
static void qlora(void) {
    const char *ad = "tests/data/golden/lora/r4/adapter";
    model_config cfg;
    CHECK(model_config_load(BASE, &cfg) == 0 && peft_read_config(ad, &cfg.lora) == 0, "%s", llava_errmsg());
    cfg.lora.bits = 4;
    cfg.lora.quant_bf16 = 1;
    llava_model q, ref;
    CHECK(llava_model_create(&q, &cfg, test_cpu()) == 0, "%s", llava_errmsg());
    CHECK(llava_model_add_weights(&q, BASE, (1 << N_GROUPS) - 1 - (1 << GROUP_LORA), NULL) == 0, "%s", llava_errmsg());
    CHECK(llava_model_add_adapter(&q, ad) == 0 && llava_model_finish(&q) == 0, "%s", llava_errmsg());
    CHECK(q.pt.group_numel[GROUP_LM_NF4] > 0 && !q.params[GROUP_LM_NF4], "the NF4 group has a parameter buffer");
    CHECK(load(&ref, ad) == 0, "%s", llava_errmsg());
    // The reference: every decoder-layer linear through the round trip, in place.
    size_t n_lm = ref.pt.group_numel[GROUP_LM];
    float *host = xmalloc(sizeof(float) * n_lm);
    ref.ops->download(ref.be, BUF_PARAM, host, ref.params[GROUP_LM], n_lm);
    int n_q = 0;
    for (int l = 0; l < ref.pt.w.n_lm; l++) {
        const lm_layer_params *c = &ref.pt.w.lm[l];
        for (int i = 0; i < LORA_N_TARGETS; i++) {
            const param_view *v = lm_linear_weight(c, i);
            float *w = host + v->offset;
            for (size_t k = 0; k < v->numel; k++) w[k] = bf16_to_f32(f32_to_bf16(w[k]));
            nf4_tensor t;
            CHECK(nf4_quantize(w, v->numel, &t) == 0, "%s", llava_errmsg());
            CHECK(nf4_dequantize_as(&t, DT_BF16, w) == 0, "%s", llava_errmsg());
            nf4_free(&t);
            n_q++;
        }
    }
    ref.ops->upload(ref.be, BUF_PARAM, ref.params[GROUP_LM], host, n_lm);
    free(host);
    llava_model_set_trainable(&q, TRAIN_PROJECTOR_LORA);
    llava_model_set_trainable(&ref, TRAIN_PROJECTOR_LORA);
    llava_batch b1, b2;
    int B, S;
    float *l1, *l2;
    float loss1 = pass(&q, 1, &l1, &b1, &B, &S), loss2 = pass(&ref, 1, &l2, &b2, &B, &S);
    size_t nl = q.pt.group_numel[GROUP_LORA];
    float *g1 = xmalloc(sizeof(float) * nl), *g2 = xmalloc(sizeof(float) * nl);
    q.ops->download(q.be, BUF_GRAD, g1, q.grads[GROUP_LORA], nl);
    ref.ops->download(ref.be, BUF_GRAD, g2, ref.grads[GROUP_LORA], nl);
    CHECK(loss1 == loss2 && memcmp(l1, l2, sizeof(float) * (size_t)b1.T * q.cfg.text.vocab_size) == 0,
          "QLoRA: loss %.8f vs the round trip's %.8f, or other logits", (double)loss1, (double)loss2);
    CHECK(memcmp(g1, g2, sizeof(float) * nl) == 0, "QLoRA: the adapters' gradients differ from the round trip's");
    printf(
        "  %-14s %d linears in NF4: loss %.7f, logits and adapter gradients those of the bitsandbytes round "
        "trip bit for bit\n",
        "QLoRA", n_q, (double)loss1);
    free(g1);
    free(g2);
    free(l1);
    free(l2);
    llava_batch_free(&b1);
    llava_batch_free(&b2);
    llava_model_free(&q);
    llava_model_free(&ref);
}

// DoRA (r4_dora: PEFT's use_dora on the r4 config), folded into the base weights at load: PEFT's
// unmerged logits and its merge_and_unload logits, within the parity bound (measured 5.2e-6 and
// 4.8e-6: the fold is PEFT's merge, whose rounding differs from its unmerged path's).
static void dora(void) {
    llava_model m;
    CHECK(load(&m, "tests/data/golden/lora/r4_dora/adapter") == 0, "%s", llava_errmsg());
    st_file ref;
    CHECK(st_open(&ref, "tests/data/golden/lora/r4_dora/outputs.safetensors") == 0, "%s", llava_errmsg());
    float *want = golden_tensor(&ref, "logits", NULL), *merged = golden_tensor(&ref, "merged_logits", NULL);
    llava_batch b;
    int B, S;
    float *logits;
    pass(&m, 0, &logits, &b, &B, &S);
    double d1 = logits_diff(logits, &b, B, S, m.cfg.text.vocab_size, want),
           d2 = logits_diff(logits, &b, B, S, m.cfg.text.vocab_size, merged);
    CHECK(d1 <= 1e-5 && d2 <= 1e-5, "DoRA: logits %.3g from PEFT's, %.3g from its merge", d1, d2);
    printf("  %-14s folded at load: logits within %.2g of PEFT's, %.2g of merge_and_unload's\n", "DoRA", d1, d2);
    free(logits);
    free(want);
    free(merged);
    llava_batch_free(&b);
    st_close(&ref);
    llava_model_free(&m);
}

// adapter_config.json that cannot be honoured is refused, naming why.
static void refusals(void) {
    char *tmp = check_tmpdir(), *cfg = path_join(tmp, "adapter_config.json");
    struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\"]}", "IA3"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \".*vision_tower.*\\\\.q_proj\"}",
         "vision tower"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"fc1\"]}", "fc1"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}", "target_modules is missing"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"rank_pattern\": {\"q_proj\": 8}, "
         "\"target_modules\": [\"q_proj\"]}",
         "rank_pattern"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \"mlp\\\\.foo\"}", "none of"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(write_file_atomic(cfg, cases[i].json, strlen(cases[i].json)) == 0, "%s", llava_errmsg());
        lora_config l;
        CHECK(peft_read_config(tmp, &l) != 0, "accepted %s", cases[i].json);
        CHECK_ERR_HAS(cases[i].needle);
    }
    // A list as LLaVA's find_all_linear_names gives it, and a pattern as LLaVA-NeXT's scripts write it.
    const char *ok[] = {
        "{\"peft_type\": \"LORA\", \"r\": 128, \"lora_alpha\": 256, \"target_modules\": [\"down_proj\", \"up_proj\", "
        "\"q_proj\", \"v_proj\", \"gate_proj\", \"k_proj\", \"o_proj\"]}",
        "{\"peft_type\": \"LORA\", \"r\": 16, \"lora_alpha\": 32, \"target_modules\": "
        "\".*language_model.*\\\\.(q_proj|v_proj)\"}",
    };
    unsigned want[] = {(1u << LORA_N_TARGETS) - 1, 1u << LORA_Q | 1u << LORA_V};
    for (int i = 0; i < 2; i++) {
        CHECK(write_file_atomic(cfg, ok[i], strlen(ok[i])) == 0, "%s", llava_errmsg());
        lora_config l;
        CHECK(peft_read_config(tmp, &l) == 0, "%s", llava_errmsg());
        CHECK(l.targets == want[i], "targets %x, %x expected", l.targets, want[i]);
    }
    // A folder with the config and no safetensors weights: the loader says what it found.
    CHECK(write_file_atomic(cfg, ok[0], strlen(ok[0])) == 0, "%s", llava_errmsg());
    llava_model m;
    CHECK(load(&m, tmp) != 0, "an adapter folder without weights loads");
    CHECK_ERR_HAS("adapter_model.safetensors");
    printf("  %-14s 6 configs refused by name, LLaVA's list and LLaVA-NeXT's pattern read\n", "refusals");
    check_rm_rf(tmp);
    free(cfg);
    free(tmp);
}

int main(void) {
    parity("r4", 1);
    parity("r8_rslora_qv", 0);
    llava_layout();
    qlora();
    dora();
    fresh();
    dropout_op();
    dropout_pass();
    refusals();
    printf("  worst: logits %.2g, gradients %.2g, merged %.2g\n", worst_logit, worst_grad, worst_merged);
    return check_done();
}
