// The model on the CPU backend against Hugging Face transformers (fp32, eager attention) on the
// goldens of tools/reference/make_model_goldens.py: logits, loss and every trainable gradient for
// the projector and projector+lm sets. Then: a packed batch equals its samples run one by one.
//
// Tolerances, set from the accuracy achieved (the "worst" line this test prints): logits max |diff|
// <= 1e-5 (achieved 3.9e-6), loss relative <= 1e-6 (achieved 0), each gradient ||diff|| / ||g|| <= 5e-6
// (achieved 1.4e-6): about 2.5-3.5x headroom. Both sides are fp32 with different summation orders
// (OpenBLAS vs MKL GEMMs, our fp64-accumulated norms); the reference script measured HF's own fp32
// error against fp64 at 3.6e-6 on logits and 1.2e-6 on gradients, so a correct implementation cannot
// be held much tighter. (Later cases came closer: next_max_tiny's logits, through anyres_max's resize, 6.9e-6,
// where transformers' own fp32 is 3.8e-6 from fp64.) What these bounds catch that 10x wider ones did not (measured with
// transformers on these goldens, tools/mutate.sh plants them in our code): the LM's RMSNorm eps fixed
// at 1e-6 instead of the config's 1e-5 moves logits by 3.2e-5 / 2.7e-5 (tiny64 / tiny128) and
// gradients by 2.2e-5 / 1.5e-5; CLIP's LayerNorm eps fixed at 1e-6 moves logits by 2.8e-5 / 2.6e-5
// and gradients by 7.6e-6. A wrong formula shows up at 1e-2 and above.
#include <math.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "model/batch_hf.h"
#include "model/io/export.h"
#include "model/io/safetensors.h"
#include "model/llava.h"

static double worst_logit, worst_loss, worst_grad;

// tests/data/golden/model/<cfg>/<what>
static void golden(const char *cfg, const char *what, char out[256]) {
    snprintf(out, 256, "tests/data/golden/model/%s/%s", cfg, what);
}

// Opens a golden outputs file: its logits (returned, malloc'd) and loss.
static float *read_ref(st_file *ref, const char *path, float *loss) {
    CHECK(st_open(ref, path) == 0, "%s", llava_errmsg());
    const st_tensor *rl = st_find(ref, "logits"), *rloss = st_find(ref, "loss");
    st_tensor_to_f32(ref, rloss, loss);
    float *ref_logits = xmalloc(sizeof(float) * rl->numel);
    st_tensor_to_f32(ref, rl, ref_logits);
    return ref_logits;
}

// The largest |logit difference| at every real (non-padding) position: ours packed, the golden (B, S, V).
static double logit_diff(const llava_batch *b, int B, int S, int V, const float *logits, const float *ref_logits) {
    double maxd = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < b->cu_seqlens[r + 1] - b->cu_seqlens[r]; t++)
            for (int v = 0; v < V; v++) {
                double d = fabs((double)logits[(size_t)(b->cu_seqlens[r] + t) * V + v] -
                                ref_logits[((size_t)r * S + t) * V + v]);
                if (d > maxd) maxd = d;
            }
    return maxd;
}

static void parity(const char *cfg) {
    char dir[256], inputs[256], outputs[256];
    golden(cfg, "model", dir);
    golden(cfg, "inputs.safetensors", inputs);
    golden(cfg, "outputs.safetensors", outputs);
    llava_model m;
    CHECK(llava_model_load(&m, dir, test_cpu()) == 0, "%s", llava_errmsg());
    st_file ref;
    float ref_loss, *ref_logits = read_ref(&ref, outputs, &ref_loss);
    const st_tensor *rl = st_find(&ref, "logits");
    const char *sets[2] = {"projector", "projector+lm"};
    for (int si = 0; si < 2; si++) {
        llava_model_set_trainable(&m, si == 0 ? TRAIN_PROJECTOR : TRAIN_PROJECTOR_LM);
        llava_model_zero_grads(&m);
        llava_batch b;
        int B, S;
        CHECK(llava_batch_from_file(&b, &m, inputs, &B, &S) == 0, "%s", llava_errmsg());
        int V = m.cfg.text.vocab_size;
        CHECK_EQ_INT(rl->shape[0], B);
        CHECK_EQ_INT(rl->shape[2], V);
        float *logits = xmalloc(sizeof(float) * (size_t)b.T * V);
        float loss = llava_forward_backward(&m, &b, 1, 1.0f, logits);
        double rel_loss = fabs((double)loss - ref_loss) / fabs(ref_loss);
        CHECK(rel_loss <= 1e-6, "%s/%s loss %.8f vs %.8f (rel %.2e)", cfg, sets[si], (double)loss, (double)ref_loss,
              rel_loss);
        if (rel_loss > worst_loss) worst_loss = rel_loss;
        // Logits at every real (non-padding) position.
        double maxd = logit_diff(&b, B, S, V, logits, ref_logits);
        CHECK(maxd <= 1e-5, "%s logits max |diff| %.3g", cfg, maxd);
        if (maxd > worst_logit) worst_logit = maxd;
        // Every trainable parameter's gradient.
        int n_checked = 0;
        double set_worst = 0;
        for (int g = 0; g < N_GROUPS; g++) {
            if (!m.grads[g]) continue;
            float *host = xmalloc(sizeof(float) * m.pt.group_numel[g]);
            m.ops->download(m.be, BUF_GRAD, host, m.grads[g], m.pt.group_numel[g]);
            for (int i = 0; i < m.pt.n_views; i++) {
                const param_view *v = &m.pt.views[i];
                if (v->group != g || !v->used) continue;
                char *hf = name_from_internal(v->name, LAYOUT_LLAVA_HF_LEGACY, 0);
                char key[256];
                snprintf(key, sizeof key, "grad.%s.%s", sets[si], hf);
                free(hf);
                const st_tensor *rg = st_find(&ref, key);
                CHECK(rg != NULL, "golden lacks %s", key);
                if (!rg) continue;
                CHECK_EQ_INT(rg->numel, v->numel);
                float *want = xmalloc(sizeof(float) * rg->numel);
                st_tensor_to_f32(&ref, rg, want);
                double e = check_rel_l2(host + v->offset, want, v->numel);
                CHECK(e <= 5e-6, "%s %s: ||diff||/||g|| %.3g", cfg, key, e);
                if (e > worst_grad) worst_grad = e;
                if (e > set_worst) set_worst = e;
                free(want);
                n_checked++;
            }
            free(host);
        }
        // The golden holds exactly the trainable set's gradients: count them.
        int n_ref = 0;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "grad.%s.", sets[si]);
        for (int i = 0; i < ref.n_tensors; i++) n_ref += strncmp(ref.tensors[i].name, prefix, strlen(prefix)) == 0;
        CHECK(n_checked == n_ref, "%s/%s: checked %d gradients, golden has %d", cfg, sets[si], n_checked, n_ref);
        printf("%-13s %-13s logits max|diff| %.2e, loss rel %.2e, %2d gradients (worst %.2e)\n", cfg, sets[si], maxd,
               rel_loss, n_checked, set_worst);
        free(logits);
        llava_batch_free(&b);
    }
    free(ref_logits);
    st_close(&ref);
    llava_model_free(&m);
}

// The vision tower trainable (tools/reference/make_vision_train_goldens.py): every gradient set the case's
// vision_grads.safetensors holds ("vision+projector", "vision1+projector", "vision+projector+lm"), with and without
// recomputing the tower's layers (bitwise the same), against transformers. Bounds as parity()'s: the reference's own
// fp32 error against fp64 is at most 1.4e-6 on these tensors. The key biases are not in the golden (their gradient is
// zero in exact arithmetic: a key bias moves every score of a query alike); ours must be fp32 noise, below 1e-6.
static void vision_parity(const char *cfg) {
    char dir[256], inputs[256], outputs[256];
    golden(cfg, "model", dir);
    golden(cfg, "inputs.safetensors", inputs);
    golden(cfg, "vision_grads.safetensors", outputs);
    st_file ref;
    float ref_loss, *ref_logits = read_ref(&ref, outputs, &ref_loss);
    // The sets, in the file's order.
    char sets[8][64];
    int n_sets = 0;
    for (int i = 0; i < ref.n_tensors && n_sets < 8; i++) {
        const char *nm = ref.tensors[i].name, *dot = strncmp(nm, "grad.", 5) == 0 ? strchr(nm + 5, '.') : NULL;
        if (!dot) continue;  // a set's name has no dot: grad.<set>.<hf name>
        int len = (int)(dot - (nm + 5));
        char set[64];
        snprintf(set, sizeof set, "%.*s", len, nm + 5);
        int seen = 0;
        for (int k = 0; k < n_sets; k++) seen |= strcmp(sets[k], set) == 0;
        if (!seen && strstr(set, "vision")) snprintf(sets[n_sets++], 64, "%s", set);
    }
    CHECK(n_sets >= 2, "%s: %d gradient sets with the tower in vision_grads.safetensors", cfg, n_sets);
    for (int si = 0; si < n_sets; si++) {
        trainable_set ts;
        int vlast;
        CHECK(llava_parse_grad_set(sets[si], &ts, &vlast) == 0, "%s", llava_errmsg());
        float *first_grads[N_GROUPS] = {0};
        for (int ck = 0; ck < 2; ck++) {
            llava_model m;
            CHECK(llava_model_load(&m, dir, test_cpu()) == 0, "%s", llava_errmsg());
            llava_model_set_trainable(&m, ts);
            int n = llava_model_set_vision_trainable(&m, vlast);
            CHECK(n == (vlast < 0 ? m.vision_layers : vlast), "%s/%s: %d tower layers train", cfg, sets[si], n);
            m.checkpoint_vision = ck;
            m.checkpoint_layers = ck;
            llava_model_zero_grads(&m);
            llava_batch b;
            int B, S;
            CHECK(llava_batch_from_file(&b, &m, inputs, &B, &S) == 0, "%s", llava_errmsg());
            int V = m.cfg.text.vocab_size;
            float *logits = xmalloc(sizeof(float) * (size_t)b.T * V);
            float loss = llava_forward_backward(&m, &b, 1, 1.0f, logits);
            double rel_loss = fabs((double)loss - ref_loss) / fabs(ref_loss);
            double maxd = logit_diff(&b, B, S, V, logits, ref_logits);
            CHECK(rel_loss <= 1e-6 && maxd <= 1e-5, "%s/%s loss rel %.2e, logits %.2e", cfg, sets[si], rel_loss, maxd);
            int n_checked = 0, n_key_bias = 0;
            double worst = 0, key_bias = 0;
            for (int g = 0; g < N_GROUPS; g++) {
                if (!m.grads[g]) continue;
                float *host = xmalloc(sizeof(float) * m.pt.group_numel[g]);
                m.ops->download(m.be, BUF_GRAD, host, m.grads[g], m.pt.group_numel[g]);
                if (ck == 0) {
                    first_grads[g] = host;
                } else {
                    CHECK(memcmp(host, first_grads[g], sizeof(float) * m.pt.group_numel[g]) == 0,
                          "%s/%s: %s gradients differ when the layers are recomputed", cfg, sets[si], GROUP_NAMES[g]);
                    free(host);
                    continue;
                }
                for (int i = 0; i < m.pt.n_views; i++) {
                    const param_view *v = &m.pt.views[i];
                    if (v->group != g || !v->used || llava_model_is_frozen(&m, v)) continue;
                    char *hf = name_from_internal(v->name, LAYOUT_LLAVA_HF_LEGACY, 0);
                    char key[1024];
                    snprintf(key, sizeof key, "grad.%s.%s", sets[si], hf);
                    int is_key_bias = strstr(hf, "vision_tower.") && strstr(hf, "k_proj.bias");
                    free(hf);
                    const float *got = host + v->offset;
                    if (is_key_bias) {
                        for (size_t k = 0; k < v->numel; k++)
                            if (fabs(got[k]) > key_bias) key_bias = fabs(got[k]);
                        n_key_bias++;
                        continue;
                    }
                    const st_tensor *rg = st_find(&ref, key);
                    CHECK(rg != NULL, "golden lacks %s", key);
                    if (!rg) continue;
                    CHECK_EQ_INT(rg->numel, v->numel);
                    float *want = xmalloc(sizeof(float) * rg->numel);
                    st_tensor_to_f32(&ref, rg, want);
                    double e = check_rel_l2(got, want, v->numel);
                    CHECK(e <= 5e-6, "%s %s: ||diff||/||g|| %.3g", cfg, key, e);
                    if (e > worst) worst = e;
                    free(want);
                    n_checked++;
                }
            }
            if (ck == 0) {
                CHECK(key_bias <= 1e-6, "%s/%s: the key biases' gradient %.3g (zero in exact arithmetic)", cfg,
                      sets[si], key_bias);
                int n_ref = 0;
                char prefix[640];
                snprintf(prefix, sizeof prefix, "grad.%s.", sets[si]);
                for (int i = 0; i < ref.n_tensors; i++)
                    n_ref += strncmp(ref.tensors[i].name, prefix, strlen(prefix)) == 0;
                CHECK(n_checked == n_ref, "%s/%s: checked %d gradients, golden has %d", cfg, sets[si], n_checked,
                      n_ref);
                if (worst > worst_grad) worst_grad = worst;
                if (maxd > worst_logit) worst_logit = maxd;
                printf("%-14s %-20s logits %.2e, loss rel %.2e, %2d gradients (worst %.2e), key biases |g| <= %.1e\n",
                       cfg, sets[si], maxd, rel_loss, n_checked, worst, key_bias);
            }
            free(logits);
            llava_batch_free(&b);
            llava_model_free(&m);
        }
        for (int g = 0; g < N_GROUPS; g++) free(first_grads[g]);
    }
    free(ref_logits);
    st_close(&ref);
}

// A packed batch of several samples (a text-only one among them) gives the same logits, loss and
// gradients as the samples run one by one: per-sample gradients weighted by their target counts
// sum to the batch's (the batch loss is the mean over all its targets).
static void packing(const char *cfg) {
    char dir[256], inputs[256];
    golden(cfg, "model", dir);
    golden(cfg, "inputs.safetensors", inputs);
    llava_model m;
    CHECK(llava_model_load(&m, dir, test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    llava_batch all;
    int B, S;
    CHECK(llava_batch_from_file(&all, &m, inputs, &B, &S) == 0, "%s", llava_errmsg());
    int V = m.cfg.text.vocab_size;
    float *logits_all = xmalloc(sizeof(float) * (size_t)all.T * V);
    llava_model_zero_grads(&m);
    float loss_all = llava_forward_backward(&m, &all, 1, 1.0f, logits_all);
    size_t nP = m.pt.group_numel[GROUP_PROJECTOR], nL = m.pt.group_numel[GROUP_LM];
    float *g_all_p = xmalloc(sizeof(float) * nP), *g_all_l = xmalloc(sizeof(float) * nL);
    m.ops->download(m.be, BUF_GRAD, g_all_p, m.grads[GROUP_PROJECTOR], nP);
    m.ops->download(m.be, BUF_GRAD, g_all_l, m.grads[GROUP_LM], nL);

    // One sample at a time, accumulating gradients scaled by n_i / N into the same buffers.
    llava_model_zero_grads(&m);
    double loss_sum = 0, max_logit_diff = 0;
    int text_only_seen = 0;
    const int tpi = m.tokens_per_image, Hp = all.img_h, Wp = all.img_w;
    int img = 0;
    for (int r = 0; r < B; r++) {
        llava_batch one = {0};
        int start = all.cu_seqlens[r], T = all.cu_seqlens[r + 1] - start;
        int n_img = 0;
        for (int t = 0; t < T; t++) n_img += all.ids[start + t] < 0;
        n_img /= tpi;
        text_only_seen |= n_img == 0;
        one.T = T;
        one.n_seq = 1;
        int32_t cu[2] = {0, T};
        one.cu_seqlens = cu;
        one.ids = all.ids + start;
        one.targets = all.targets + start;
        one.pos = all.pos + start;
        one.n_img = n_img;
        one.img_h = Hp;
        one.img_w = Wp;
        one.pixels = all.pixels ? all.pixels + (size_t)img * 3 * Hp * Wp : NULL;
        int32_t *rows = xmalloc(sizeof(int32_t) * (size_t)(n_img * tpi + 1));
        for (int i = 0; i < n_img * tpi; i++) rows[i] = all.img_rows[img * tpi + i] - start;
        one.img_rows = rows;
        for (int t = 0; t < T; t++) one.n_targets += one.targets[t] >= 0;
        float *lg = xmalloc(sizeof(float) * (size_t)T * V);
        float w = (float)one.n_targets / (float)all.n_targets;
        float l = llava_forward_backward(&m, &one, 1, w, lg);
        loss_sum += (double)l * one.n_targets;
        for (size_t i = 0; i < (size_t)T * V; i++) {
            double dlt = fabs((double)lg[i] - logits_all[(size_t)start * V + i]);
            if (dlt > max_logit_diff) max_logit_diff = dlt;
        }
        img += n_img;
        free(lg);
        free(rows);
    }
    CHECK(text_only_seen, "%s: the golden batch has a text-only sample", cfg);
    // Same code path, different GEMM shapes: only summation order differs (fp32 rounding).
    CHECK(max_logit_diff <= 1e-5, "%s packed vs one-by-one logits differ by %.3g", cfg, max_logit_diff);
    double loss_one = loss_sum / all.n_targets;
    CHECK(fabs(loss_one - loss_all) <= 1e-6 * fabs(loss_all), "%s loss %.8f packed vs %.8f one by one", cfg,
          (double)loss_all, loss_one);
    float *g_p = xmalloc(sizeof(float) * nP), *g_l = xmalloc(sizeof(float) * nL);
    m.ops->download(m.be, BUF_GRAD, g_p, m.grads[GROUP_PROJECTOR], nP);
    m.ops->download(m.be, BUF_GRAD, g_l, m.grads[GROUP_LM], nL);
    double ep = check_rel_l2(g_p, g_all_p, nP), el = check_rel_l2(g_l, g_all_l, nL);
    CHECK(ep <= 1e-5 && el <= 1e-5, "%s packed vs one-by-one gradients: projector %.3g, lm %.3g", cfg, ep, el);
    printf("%s packing: logits %.2e, loss rel %.2e, grads projector %.2e lm %.2e\n", cfg, max_logit_diff,
           fabs(loss_one - loss_all) / fabs(loss_all), ep, el);
    free(g_p);
    free(g_l);
    free(g_all_p);
    free(g_all_l);
    free(logits_all);
    llava_batch_free(&all);
    llava_model_free(&m);
}

// Activation checkpointing recomputes each decoder layer in backward with the same ops on the same
// inputs: the loss and every gradient are bit-identical to keeping the activations.
static void checkpointing(const char *cfg) {
    char dir[256], inputs[256];
    golden(cfg, "model", dir);
    golden(cfg, "inputs.safetensors", inputs);
    llava_model m;
    CHECK(llava_model_load(&m, dir, test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    llava_batch b;
    CHECK(llava_batch_from_file(&b, &m, inputs, NULL, NULL) == 0, "%s", llava_errmsg());
    float loss[2];
    float *g[2][N_GROUPS] = {{0}};
    for (int ck = 0; ck < 2; ck++) {
        m.checkpoint_layers = ck;
        llava_model_zero_grads(&m);
        loss[ck] = llava_forward_backward(&m, &b, 1, 1.0f, NULL);
        for (int gi = 0; gi < N_GROUPS; gi++) {
            if (!m.grads[gi]) continue;
            g[ck][gi] = xmalloc(sizeof(float) * m.pt.group_numel[gi]);
            m.ops->download(m.be, BUF_GRAD, g[ck][gi], m.grads[gi], m.pt.group_numel[gi]);
        }
    }
    CHECK(memcmp(&loss[0], &loss[1], sizeof(float)) == 0, "%s: loss %.9g vs %.9g with checkpointing", cfg,
          (double)loss[0], (double)loss[1]);
    for (int gi = 0; gi < N_GROUPS; gi++) {
        if (!g[0][gi]) continue;
        CHECK(memcmp(g[0][gi], g[1][gi], sizeof(float) * m.pt.group_numel[gi]) == 0,
              "%s: %s gradients differ with checkpointing", cfg, GROUP_NAMES[gi]);
        free(g[0][gi]);
        free(g[1][gi]);
    }
    llava_batch_free(&b);
    llava_model_free(&m);
}

// A family's llava-hf export (its text_config keys: model_type, rope_scaling, sliding_window, the tied
// head) reloads to the same logits bit for bit. LLAVA_KEEP_EXPORT=DIR keeps the folders (DIR/<cfg>)
// for a look with transformers.
static void export_roundtrip(const char *cfg) {
    char dir[256], inputs[256];
    golden(cfg, "model", dir);
    golden(cfg, "inputs.safetensors", inputs);
    const char *keep = getenv("LLAVA_KEEP_EXPORT");
    char *tmp = keep ? NULL : check_tmpdir(), *out = path_join(keep ? keep : tmp, cfg);
    llava_model a, b;
    CHECK(llava_model_load(&a, dir, test_cpu()) == 0, "%s", llava_errmsg());
    CHECK(export_llava_hf(&a, out, DT_F32) == 0, "%s", llava_errmsg());
    CHECK(llava_model_load(&b, out, test_cpu()) == 0, "%s: %s", cfg, llava_errmsg());
    llava_batch ba, bb;
    CHECK(llava_batch_from_file(&ba, &a, inputs, NULL, NULL) == 0 &&
              llava_batch_from_file(&bb, &b, inputs, NULL, NULL) == 0,
          "%s", llava_errmsg());
    size_t n = (size_t)ba.T * a.cfg.text.vocab_size;
    float *la = xmalloc(sizeof(float) * n), *lb = xmalloc(sizeof(float) * n);
    llava_forward_backward(&a, &ba, 0, 1.0f, la);
    llava_forward_backward(&b, &bb, 0, 1.0f, lb);
    CHECK(b.cfg.text.vocab_size == a.cfg.text.vocab_size && memcmp(la, lb, sizeof(float) * n) == 0 &&
              !strcmp(b.cfg.text.model_type, a.cfg.text.model_type) &&
              b.cfg.text.rope_llama3 == a.cfg.text.rope_llama3 &&
              b.cfg.text.sliding_window == a.cfg.text.sliding_window && b.cfg.text.qkv_bias == a.cfg.text.qkv_bias &&
              b.cfg.text.tie_word_embeddings == a.cfg.text.tie_word_embeddings &&
              b.cfg.glue.projector_depth == a.cfg.glue.projector_depth &&
              b.cfg.glue.pool_mode == a.cfg.glue.pool_mode && b.cfg.glue.keep_tokens == a.cfg.glue.keep_tokens &&
              (b.cfg.glue.pool_mode == POOL_NONE || b.cfg.glue.pool_stride == a.cfg.glue.pool_stride),
          "%s: the export reloads to another model", cfg);
    printf("%s export: reloads as %s (%s) with the same logits bit for bit\n", cfg, b.cfg.text.model_type,
           b.cfg.model_type);
    free(la);
    free(lb);
    llava_batch_free(&ba);
    llava_batch_free(&bb);
    llava_model_free(&a);
    llava_model_free(&b);
    if (tmp) check_rm_rf(tmp);
    free(tmp);
    free(out);
}

// The interpolated position embeddings themselves against transformers' interpolate_pos_encoding (fp32 bicubic).
static void interp_check(const char *cfg) {
    char dir[256], outputs[256];
    golden(cfg, "model", dir);
    golden(cfg, "outputs.safetensors", outputs);
    llava_model m;
    st_file ref;
    CHECK(llava_model_load(&m, dir, test_cpu()) == 0 && st_open(&ref, outputs) == 0, "%s", llava_errmsg());
    const st_tensor *t = st_find(&ref, "interp.position_embedding");
    const param_view *v = m.pt.w.pos_emb;
    CHECK(t && v && t->numel == v->numel, "%s: interpolated position embeddings present, %zu values", cfg,
          v ? v->numel : 0);
    if (t && v && t->numel == v->numel) {
        float *want = xmalloc(sizeof(float) * t->numel);
        st_tensor_to_f32(&ref, t, want);
        float *got = xmalloc(sizeof(float) * v->numel);  // the weights live on the backend
        m.ops->download(m.be, BUF_PARAM, got, (const char *)m.params[v->group] + v->offset * m.ops->act_bytes,
                        v->numel);
        double maxd = 0;
        for (size_t i = 0; i < v->numel; i++) maxd = fmax(maxd, fabs((double)got[i] - want[i]));
        CHECK(maxd <= 1e-6, "%s: interpolated position embeddings differ by %.3g", cfg, maxd);
        printf("%s: position embeddings %d -> %lld rows as interpolate_pos_encoding, max |diff| %.2e\n", cfg,
               m.pt.pos_from_grid * m.pt.pos_from_grid + 1, (long long)v->shape[0], maxd);
        free(want);
        free(got);
    }
    st_close(&ref);
    llava_model_free(&m);
}

// Images and pooled video frames in one batch (video_pool_runs' runs): the golden's video 0 given as three plain
// images (25 tokens each, not pooled) in one row and video 1 as a video (4 tokens per frame) in another. The video row
// gives the golden's logits (transformers' row 2); the image row gives what it gives alone, with no frame in its batch.
static void video_mixed(void) {
    char dir[256], inputs[256], outputs[256];
    golden("next_video_avg", "model", dir);
    golden("next_video_avg", "inputs.safetensors", inputs);
    golden("next_video_avg", "outputs.safetensors", outputs);
    llava_model m;
    CHECK(llava_model_load(&m, dir, test_cpu()) == 0, "%s", llava_errmsg());
    st_file in, ref;
    float ref_loss, *ref_logits = read_ref(&ref, outputs, &ref_loss);
    CHECK(st_open(&in, inputs) == 0, "%s", llava_errmsg());
    const st_tensor *ti = st_find(&in, "input_ids"), *tm = st_find(&in, "attention_mask"),
                    *tp = st_find(&in, "pixel_values_videos");
    int S = (int)ti->shape[1], V = m.cfg.text.vocab_size, tpi = m.tokens_per_image, vid = m.cfg.glue.video_token_index,
        img = m.cfg.glue.image_token_index, frames = (int)(tp->shape[0] * tp->shape[1]);
    const int64_t *ids = (const int64_t *)ti->data, *mask = (const int64_t *)tm->data;
    float *pix = xmalloc(sizeof(float) * tp->numel);
    st_tensor_to_f32(&in, tp, pix);
    int len0 = 0, len2 = 0;
    for (int t = 0; t < S; t++) len0 += mask[t] != 0, len2 += mask[2 * S + t] != 0;
    int lenA = len0 - 3 * m.tokens_per_video_frame + 3 * tpi, SB = lenA > len2 ? lenA : len2;
    int64_t *ids2 = xcalloc((size_t)2 * SB, sizeof(int64_t)), *mask2 = xcalloc((size_t)2 * SB, sizeof(int64_t));
    for (int t = 0, k = 0, first = 1; t < len0; t++) {
        if (ids[t] != vid) ids2[k++] = ids[t];
        else if (first)
            for (first = 0; k < t + 3 * tpi;) ids2[k++] = img;
    }
    for (int t = 0; t < len2; t++) ids2[SB + t] = ids[2 * S + t] == vid ? img : ids[2 * S + t];
    for (int t = 0; t < lenA; t++) mask2[t] = 1;
    for (int t = 0; t < len2; t++) mask2[SB + t] = 1;
    uint8_t flags[6] = {0, 0, 0, 1, 1, 1};
    CHECK_EQ_INT(frames, 6);
    llava_batch b, a;
    CHECK(llava_batch_from_hf_frames(&b, &m, ids2, mask2, NULL, 2, SB, pix, 6, 20, 20, flags) == 0, "%s",
          llava_errmsg());
    CHECK(llava_batch_from_hf_frames(&a, &m, ids2, mask2, NULL, 1, SB, pix, 3, 20, 20, NULL) == 0, "%s",
          llava_errmsg());
    CHECK_EQ_INT(llava_batch_features(&m, &b), 3 * tpi + 3 * m.tokens_per_video_frame);
    float *lb = xmalloc(sizeof(float) * (size_t)b.T * V), *la = xmalloc(sizeof(float) * (size_t)a.T * V);
    llava_model_set_trainable(&m, TRAIN_PROJECTOR);
    llava_forward_backward(&m, &b, 0, 1.0f, lb);
    llava_forward_backward(&m, &a, 0, 1.0f, la);
    double dv = 0, di = 0;
    for (int t = 0; t < len2; t++)
        for (int v = 0; v < V; v++) {
            double d =
                fabs((double)lb[(size_t)(b.cu_seqlens[1] + t) * V + v] - ref_logits[((size_t)2 * S + t) * V + v]);
            if (d > dv) dv = d;
        }
    for (int t = 0; t < lenA; t++)
        for (int v = 0; v < V; v++) {
            double d = fabs((double)lb[(size_t)t * V + v] - la[(size_t)t * V + v]);
            if (d > di) di = d;
        }
    CHECK(dv <= 1e-5, "mixed batch: the video row's logits are %.3g from transformers'", dv);
    CHECK(di <= 1e-5, "mixed batch: the image row's logits are %.3g from the row alone", di);
    printf(
        "video_mixed    images and pooled frames in one batch: video row vs transformers %.2e, image row vs alone "
        "%.2e\n",
        dv, di);
    free(lb), free(la), free(ids2), free(mask2), free(pix), free(ref_logits);
    llava_batch_free(&b);
    llava_batch_free(&a);
    st_close(&in);
    st_close(&ref);
    llava_model_free(&m);
}

int main(void) {
    checkpointing("tiny64");
    parity("tiny64");
    parity("tiny128");
    // The other language-model families (tools/reference/make_lm_family_goldens.py): Qwen2 (q/k/v
    // biases, grouped queries, tied head), Llama-3.1 (rope_theta 500000 with llama3 rope scaling,
    // positions past its original length), Mistral (a sliding window of 8 that binds).
    parity("tinyqwen2");
    parity("tinyllama3");
    parity("tinymistral");
    // Research variants (tools/reference/make_ablation_goldens.py: transformers' tower and LM with the projector and
    // the reduction stated after LLaVA's build_vision_projector and LLaVA-NeXT's get_2dPool, model_type llava_c):
    // mlp3x_gelu, identity, a linear projector after max pooling, average pooling, bilinear resize, CLS-attention
    // pruning (7 of 25).
    const char *variants[] = {"abl_mlp3x", "abl_identity", "abl_avgpool", "abl_maxpool", "abl_bilinear", "abl_prune"};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) parity(variants[i]);
    // A SigLIP tower (tools/reference/make_siglip_goldens.py): no class token, no pre-layernorm, a biased patch
    // embedding, GELU's tanh form; "full" at the last layer (llava-onevision's configs), and "default" at -2, where
    // transformers' Llava drops the first patch although SigLIP has no class token.
    parity("siglip_full");
    parity("siglip_default");
    // A tower run at another resolution (tools/reference/make_interp_goldens.py): its position embeddings
    // interpolated at load as transformers' interpolate_pos_encoding (bicubic) computes them, up (4x4 -> 6x6) and
    // down (6x6 -> 4x4).
    parity("interp_up");
    parity("interp_down");
    // LLaVA-NeXT's AnyRes (tools/reference/make_llava_next_goldens.py: transformers' LlavaNextForConditionalGeneration):
    // two images of other sizes, a 2x2 and a 2x1 grid of tiles, each unpadded one way, the newline after each row.
    parity("next_tiny");
    // anyres_max_3 (tools/reference/make_llava_next_max_goldens.py: LlavaNext with transformers' LlavaOnevision
    // pack_image_features): a 2x3 grid's kept 4x6 map resized bilinear to 2x4 before its newlines, beside an image
    // under the cap; the resize's backward into the projector (and through it the LM's gradients).
    parity("next_max_tiny");
    // Video frames pooled before the projector, images not (tools/reference/make_llava_next_video_goldens.py:
    // transformers' LlavaNextVideoForConditionalGeneration, spatial_pool_mode average / max at stride 2): two videos of
    // three frames, each frame's 5x5 grid pooled to 2x2 (floor), beside a text-only row; pixel_values_videos and
    // video_token_index as the model takes them.
    parity("next_video_avg");
    parity("next_video_max");
    video_mixed();
    interp_check("interp_up");
    interp_check("interp_down");
    // The tower trainable: CLIP (whole, or its last used layer; with the LM too), under average, max and bilinear
    // reduction and CLS-attention pruning, SigLIP at both feature layers, and video frames pooled (average, max: the
    // gradient back through each frame's pooling into the tower).
    const char *vision_cases[] = {"tiny64",      "abl_avgpool",    "abl_maxpool",    "abl_bilinear",  "abl_prune",
                                  "siglip_full", "siglip_default", "next_video_avg", "next_video_max"};
    for (size_t i = 0; i < sizeof vision_cases / sizeof vision_cases[0]; i++) vision_parity(vision_cases[i]);
    printf("worst vs transformers: logits max|diff| %.3g, loss rel %.3g, gradient ||diff||/||g|| %.3g\n", worst_logit,
           worst_loss, worst_grad);
    printf("bounds: logits max|diff| 1e-5, loss rel 1e-6, gradient ||diff||/||g|| 5e-6\n");
    packing("tiny64");
    packing("tiny128");
    export_roundtrip("tinyqwen2");
    export_roundtrip("tinyllama3");
    export_roundtrip("tinymistral");
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) export_roundtrip(variants[i]);
    export_roundtrip("siglip_full");
    export_roundtrip("interp_up");
    return check_done();
}
