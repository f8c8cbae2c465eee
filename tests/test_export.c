// The llava-hf export of a model put together the way training puts it together (a vicuna-style
// LM without an image token, a CLIP tower, a fresh projector): the folder is byte-identical to the
// one in tests/data/export/model, which transformers 4.46.3 loaded (tools/reference/check_export.py)
// to compute the logits and loss stored beside it; our forward on our export matches them. The
// export holds the whole CLIP tower, the layers LLaVA never runs included.
// transformers loaded that folder with no missing, unexpected or mismatched key (loading_info.json).
// With LLAVA_UPDATE_GOLDEN=1 the test writes the folder instead (then rerun check_export.py).
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "app/demo.h"
#include "check.h"
#include "common/util.h"
#include "kernels/ops.h"
#include "model/batch_hf.h"
#include "model/io/export.h"
#include "model/io/safetensors.h"
#include "model/llava.h"
#include "train/config.h"
#include "train/trainer.h"

#define GOLDEN "tests/data/export"

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = read_file(a, 64u << 20, &la), *y = read_file(b, 64u << 20, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

int main(void) {
    char *world = check_tmpdir();
    CHECK(demo_make_world(world, 4, 0, 1, NULL) == 0, "%s", llava_errmsg());
    char *preset = path_join(world, "stage1.json");
    run_settings c;
    CHECK(settings_load(preset, NULL, 0, &c) == 0, "%s", llava_errmsg());
    llava_model m;
    CHECK(train_build_model(&c, test_cpu(), &m) == 0, "%s", llava_errmsg());
    settings_free(&c);
    int V = m.cfg.text.vocab_size;
    const char *update = getenv("LLAVA_UPDATE_GOLDEN");
    char *out = (update && *update == '1') ? xstrdup(GOLDEN "/model") : path_join(world, "export");
    CHECK(export_llava_hf(&m, out, DT_F32) == 0, "%s", llava_errmsg());
    llava_model_free(&m);
    if (update && *update == '1') {
        printf("wrote %s; now run tools/reference/check_export.py\n", out);
        free(out);
        return check_done();
    }
    // The whole CLIP tower is in the export, the layer past the feature layer and post_layernorm
    // included (copied from the tower's file; transformers then loads every weight, none "newly
    // initialised").
    {
        char *clip = path_join(world, "clip/model.safetensors"), *ex = path_join(out, "model.safetensors");
        st_file a, b;
        int n_src = 0, n_out = 0;
        if (st_open(&a, clip) == 0 && st_open(&b, ex) == 0) {
            for (int i = 0; i < a.n_tensors; i++) {
                if (strncmp(a.tensors[i].name, "vision_model.", 13) != 0) continue;
                n_src++;
                char *name = xasprintf("vision_tower.%s", a.tensors[i].name);
                const st_tensor *t = st_find(&b, name);
                n_out += t && t->numel == a.tensors[i].numel &&
                         memcmp(t->data, a.tensors[i].data, t->end - t->begin) == 0 && t->dtype == a.tensors[i].dtype;
                free(name);
            }
            st_close(&a);
            st_close(&b);
        }
        CHECK(n_src > 0 && n_out == n_src, "%d of the tower's %d tensors in the export, identical", n_out, n_src);
        free(clip);
        free(ex);
    }
    // Byte-identical to the folder transformers checked.
    char *a = path_join(out, "model.safetensors"), *b = path_join(out, "config.json");
    CHECK(same_file(a, GOLDEN "/model/model.safetensors"), "model.safetensors differs from the checked export");
    CHECK(same_file(b, GOLDEN "/model/config.json"), "config.json differs from the checked export");
    free(a);
    free(b);
    // transformers loaded that folder cleanly: from_pretrained(..., output_loading_info=True) reported
    // no missing, unexpected or mismatched key and no error (check_export.py records it), and the model
    // it built holds exactly as many tensors as the file.
    {
        size_t n;
        char *text = read_file(GOLDEN "/loading_info.json", 1 << 20, &n);
        CHECK(text != NULL, "%s", llava_errmsg());
        cJSON *info = text ? cJSON_Parse(text) : NULL;
        CHECK(info != NULL, GOLDEN "/loading_info.json does not parse");
        const char *lists[] = {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"};
        for (int i = 0; info && i < 4; i++) {
            const cJSON *l = cJSON_GetObjectItem(info, lists[i]);
            CHECK(cJSON_IsArray(l) && cJSON_GetArraySize(l) == 0, "transformers reported %s: %s", lists[i],
                  l ? cJSON_PrintUnformatted(l) : "(absent)");
        }
        st_file f;
        CHECK(st_open(&f, GOLDEN "/model/model.safetensors") == 0, "%s", llava_errmsg());
        const cJSON *nt = info ? cJSON_GetObjectItem(info, "n_model_tensors") : NULL;
        CHECK(cJSON_IsNumber(nt) && nt->valueint == f.n_tensors, "transformers' model holds %d tensors, the file %d",
              nt ? nt->valueint : -1, f.n_tensors);
        printf(
            "export loaded by transformers (loading_info.json): %d missing, %d unexpected, %d mismatched keys; "
            "its model holds %d tensors, the file %d\n",
            cJSON_GetArraySize(cJSON_GetObjectItem(info, "missing_keys")),
            cJSON_GetArraySize(cJSON_GetObjectItem(info, "unexpected_keys")),
            cJSON_GetArraySize(cJSON_GetObjectItem(info, "mismatched_keys")), nt ? nt->valueint : -1, f.n_tensors);
        st_close(&f);
        cJSON_Delete(info);
        free(text);
    }
    // The export reloads; its vocabulary grew by <image> and <pad> to a multiple of 64.
    llava_model e;
    CHECK(llava_model_load(&e, out, test_cpu()) == 0, "%s", llava_errmsg());
    CHECK(e.cfg.text.vocab_size == (V + 2 + 63) / 64 * 64, "vocab %d from %d", e.cfg.text.vocab_size, V);
    CHECK(e.cfg.glue.image_token_index == V, "image token %d", e.cfg.glue.image_token_index);
    // Our logits and loss on transformers' inputs, against transformers' own.
    llava_batch bt;
    int B = 0, S = 0;
    CHECK(llava_batch_from_file(&bt, &e, GOLDEN "/inputs.safetensors", &B, &S) == 0, "%s", llava_errmsg());
    int Vo = e.cfg.text.vocab_size;
    float *logits = xmalloc(sizeof(float) * (size_t)bt.T * Vo);
    float loss = llava_forward_backward(&e, &bt, 0, 1.0f, logits);
    st_file ref;
    CHECK(st_open(&ref, GOLDEN "/hf_outputs.safetensors") == 0, "%s", llava_errmsg());
    const st_tensor *rl = st_find(&ref, "logits"), *rs = st_find(&ref, "loss");
    float ref_loss = 0;
    float *want = xmalloc(sizeof(float) * rl->numel);
    st_tensor_to_f32(&ref, rl, want);
    st_tensor_to_f32(&ref, rs, &ref_loss);
    double maxd = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < bt.cu_seqlens[r + 1] - bt.cu_seqlens[r]; t++)
            for (int v = 0; v < Vo; v++) {
                double d =
                    fabs((double)logits[(size_t)(bt.cu_seqlens[r] + t) * Vo + v] - want[((size_t)r * S + t) * Vo + v]);
                if (d > maxd) maxd = d;
            }
    // fp32 on both sides (different summation orders): the tolerances of the model parity test
    // (measured here: 6e-7 on logits, loss equal to the printed digits).
    CHECK(maxd <= 1e-5, "logits differ from transformers by %.3g", maxd);
    CHECK(fabs(loss - ref_loss) <= 1e-6 * fabs(ref_loss), "loss %.7f vs transformers %.7f", (double)loss,
          (double)ref_loss);
    printf("export vs transformers 4.46.3: logits max |diff| %.2e, loss %.7f vs %.7f\n", maxd, (double)loss,
           (double)ref_loss);
    free(want);
    free(logits);
    st_close(&ref);
    llava_batch_free(&bt);
    llava_model_free(&e);
    free(preset);
    free(out);
    check_rm_rf(world);
    free(world);
    return check_done();
}
