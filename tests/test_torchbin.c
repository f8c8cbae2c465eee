// PyTorch checkpoints (model/io/torchbin.h) against files written by torch 2.5.1's torch.save, each
// beside the same tensors written by the safetensors library (tools/reference/
// make_torchbin_goldens.py): the two readers must give the same dtypes, shapes and bytes. Also:
// views sharing one storage, a state_dict with _metadata, refused inputs (a transposed tensor, a
// pickle naming os.system, deflated entries, every truncation), a sharded fp16 model folder with
// its pytorch_model.bin.index.json, and that folder loaded as a model.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "kernels/ops.h"
#include "model/io/safetensors.h"
#include "model/io/torchbin.h"
#include "model/llava.h"
#include "train/config.h"
#include "train/trainer.h"

#define D "tests/data/torchbin/"

// Every tensor of the safetensors file is in the checkpoint with the same dtype, shape and bytes.
static void same_as_safetensors(const char *bin, const char *st, int extra) {
    st_file a, b;
    int ra = st_open(&a, bin), rb = st_open(&b, st);
    CHECK(ra == 0 && rb == 0, "%s / %s: %s", bin, st, llava_errmsg());
    if (ra || rb) return;
    CHECK(a.n_tensors == b.n_tensors + extra, "%s: %d tensors, the safetensors file %d", bin, a.n_tensors, b.n_tensors);
    int same = 0;
    for (int i = 0; i < b.n_tensors; i++) {
        const st_tensor *tb = &b.tensors[i], *ta = st_find(&a, tb->name);
        int ok = ta && ta->dtype == tb->dtype && ta->ndim == tb->ndim && ta->numel == tb->numel &&
                 ta->end - ta->begin == tb->end - tb->begin &&
                 (tb->end == tb->begin || memcmp(ta->data, tb->data, tb->end - tb->begin) == 0);
        for (int d = 0; ok && d < tb->ndim; d++) ok = ta->shape[d] == tb->shape[d];
        CHECK(ok, "%s: tensor \"%s\" differs from the safetensors copy", bin, tb->name);
        same += ok;
    }
    printf("%s: %d of %d tensors identical to %s\n", bin, same, b.n_tensors, st);
    st_close(&a);
    st_close(&b);
}

static void test_small(void) {
    same_as_safetensors(D "small.bin", D "small.safetensors", 0);
    same_as_safetensors(D "small_zip64.bin", D "small.safetensors", 0);  // ZIP64 records (Info-ZIP -fz)
    st_file f;
    if (st_open(&f, D "small.bin") != 0) return;
    const st_tensor *whole = st_find(&f, "k.view_whole"), *row = st_find(&f, "l.view_row3"),
                    *s = st_find(&f, "f.scalar");
    CHECK(whole && row && row->data == whole->data + 3 * 8 * 4 && row->ndim == 1 && row->shape[0] == 8,
          "a view at an offset into a shared storage");
    CHECK(s && s->ndim == 0 && s->numel == 1 && s->dtype == DT_F32 && *(const float *)s->data == 1.5f, "0-d tensor");
    const st_tensor *p = st_find(&f, "m.param");
    CHECK(p && p->dtype == DT_F32 && p->ndim == 1 && p->shape[0] == 6, "an nn.Parameter is its tensor");
    st_close(&f);
    same_as_safetensors(D "state_dict.bin", D "state_dict.safetensors", 0);
}

static void test_refused(void) {
    st_file f;
    CHECK(st_open(&f, D "transposed.bin") != 0, "a transposed tensor was accepted");
    CHECK_ERR_HAS("\"w\" is not contiguous");
    CHECK(st_open(&f, D "evil.bin") != 0, "a pickle calling os.system was accepted");
    CHECK_ERR_HAS("system, which a checkpoint of tensors does not need: refused");
    CHECK_ERR_HAS("evil.bin");
    CHECK(st_open(&f, D "compressed.bin") != 0, "deflated entries were accepted");
    CHECK_ERR_HAS("is compressed");
    CHECK(st_open(&f, D "small.bin") == 0 && f.n_tensors == 13, "st_open on a .bin: %s", llava_errmsg());
    st_close(&f);

    // Every truncation fails cleanly (under ASan in the fuzz build; here: an error, no crash).
    size_t len;
    char *buf = read_file(D "small.bin", 1 << 20, &len);
    CHECK(buf != NULL, "read small.bin");
    int refused = 0, tried = 0;
    for (size_t n = 0; buf && n < len; n += 7, tried++) {
        if (tb_parse_buffer("cut.bin", (const uint8_t *)buf, n, &f) == 0) st_close(&f);
        else refused++;
    }
    CHECK(refused == tried, "%d of %d truncations refused", refused, tried);
    // One flipped byte in data.pkl's opcodes: an error or a valid table, never a crash.
    for (size_t k = 30; buf && k < 400; k++) {
        char save = buf[k];
        buf[k] = (char)(buf[k] ^ 0x5a);
        if (tb_parse_buffer("flip.bin", (const uint8_t *)buf, len, &f) == 0) st_close(&f);
        buf[k] = save;
    }
    free(buf);
    printf("refused: transposed, os.system, deflated, %d truncations\n", tried);
}

static void test_sharded_model(void) {
    st_set s;
    int rc = st_set_open(&s, D "tiny64");
    CHECK(rc == 0, "sharded folder: %s", llava_errmsg());
    CHECK(st_dir_has_weights(D "tiny64") == 1, "a folder of .bin shards has weights");
    st_file g;
    CHECK(st_open(&g, "tests/data/golden/model/tiny64/model/model.safetensors") == 0, "%s", llava_errmsg());
    if (rc == 0) {
        CHECK(s.n_files == 2 && s.n_entries == g.n_tensors, "%d files, %d tensors (golden %d)", s.n_files, s.n_entries,
              g.n_tensors);
        size_t bad = 0, total = 0;
        for (int i = 0; i < g.n_tensors; i++) {
            const st_tensor *t = &g.tensors[i], *h = st_set_find(&s, t->name, NULL);
            if (!h || h->dtype != DT_F16 || h->numel != t->numel) {
                bad++;
                continue;
            }
            float *ref = xmalloc(sizeof(float) * (t->numel ? t->numel : 1));
            uint16_t *r16 = xmalloc(2 * (t->numel ? t->numel : 1));
            st_tensor_to_f32(&g, t, ref);
            convert_from_f32(DT_F16, ref, r16, t->numel);  // torch's .half(): round to nearest even
            for (uint64_t k = 0; k < t->numel; k++) bad += memcmp(&((const uint16_t *)h->data)[k], &r16[k], 2) != 0;
            total += t->numel;
            free(ref), free(r16);
        }
        CHECK(bad == 0, "%zu of %zu fp16 values differ from the golden model rounded to fp16", bad, total);
        printf("tiny64 as 2 fp16 shards: %zu values, %zu differ from the golden weights rounded to fp16\n", total, bad);
        st_set_close(&s);
    }
    st_close(&g);

    // The folder loads as a model (config.json + the .bin shards).
    llava_model m;
    rc = llava_model_load(&m, D "tiny64", test_cpu());
    CHECK(rc == 0, "llava_model_load on .bin shards: %s", llava_errmsg());
    if (rc == 0) llava_model_free(&m);
}

// LLaVA's stage-1 output (mm_projector.bin: original names, bf16) as the start of stage 2.
static void test_projector_adapter(void) {
    train_config cfg;
    cfg_init_defaults(&cfg);
    CHECK(cfg_set(&cfg, "model.init=tests/data/golden/model/tiny64/model") == 0 &&
              cfg_set(&cfg, "model.pretrain_mm_mlp_adapter=" D "mm_projector.bin") == 0,
          "%s", llava_errmsg());
    run_settings c;
    CHECK(settings_from_config(&cfg, &c) == 0, "%s", llava_errmsg());
    cfg_free(&cfg);
    llava_model m;
    int rc = train_build_model(&c, test_cpu(), &m);
    settings_free(&c);
    CHECK(rc == 0, "model with the projector from mm_projector.bin: %s", llava_errmsg());
    st_file g;
    if (rc == 0 && st_open(&g, "tests/data/golden/model/tiny64/model/model.safetensors") == 0) {
        const char *names[] = {"multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_1.bias",
                               "multi_modal_projector.linear_2.weight", "multi_modal_projector.linear_2.bias"};
        const char *ours[] = {"projector.linear_1.weight", "projector.linear_1.bias", "projector.linear_2.weight",
                              "projector.linear_2.bias"};
        size_t bad = 0, total = 0;
        for (int i = 0; i < 4; i++) {
            const st_tensor *t = st_find(&g, names[i]);
            const param_view *v = param_find(&m.pt, ours[i]);
            CHECK(t && v && v->numel == t->numel, "%s", names[i]);
            if (!t || !v || v->numel != t->numel) continue;
            float *ref = xmalloc(sizeof(float) * t->numel), *got = xmalloc(sizeof(float) * t->numel);
            uint16_t *b16 = xmalloc(2 * t->numel);
            st_tensor_to_f32(&g, t, ref);
            convert_from_f32(DT_BF16, ref, b16, t->numel);  // torch's .to(bfloat16): round to nearest even
            convert_to_f32(DT_BF16, b16, ref, t->numel);
            m.ops->download(m.be, BUF_PARAM, got, (const float *)m.params[GROUP_PROJECTOR] + v->offset, t->numel);
            for (uint64_t k = 0; k < t->numel; k++) bad += memcmp(&got[k], &ref[k], sizeof(float)) != 0;
            total += t->numel;
            free(ref), free(got), free(b16);
        }
        CHECK(total > 0 && bad == 0, "projector from mm_projector.bin: %zu of %zu values differ", bad, total);
        printf("mm_projector.bin (bf16, LLaVA's names) as the stage-2 start: %zu values, %zu differ\n", total, bad);
        st_close(&g);
    }
    if (rc == 0) llava_model_free(&m);
}

int main(void) {
    test_small();
    test_refused();
    test_sharded_model();
    test_projector_adapter();
    return check_done();
}
