// Sample order against tools/reference/make_sampler_goldens.py: torch.randperm reproduced, LLaVA's
// modality-length-grouped sampler against a Python re-statement (itself checked against LLaVA's own
// functions at c121f04, a cross-check the goldens record and this test asserts), and accelerate 0.21's BatchSamplerShard dealing batches to ranks with its
// tail padding, over two epochs.
#include <cjson/cJSON.h>
#include <string.h>

#include "app/demo.h"
#include "check.h"
#include "common/util.h"
#include "data/sampler.h"

static int64_t *ints(const cJSON *arr, int64_t *n) {
    *n = cJSON_GetArraySize(arr);
    int64_t *v = xmalloc(sizeof(int64_t) * (size_t)(*n ? *n : 1));
    int64_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next) v[i++] = (int64_t)e->valuedouble;
    return v;
}

static void check_case(const cJSON *c) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    sampler_config sc = {0};
    sc.n = (int64_t)cJSON_GetObjectItem(c, "n")->valuedouble;
    sc.batch = cJSON_GetObjectItem(c, "batch")->valueint;
    sc.virtual_ranks = cJSON_GetObjectItem(c, "ranks")->valueint;
    sc.seed = (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble;
    sc.inner_seed = (uint64_t)cJSON_GetObjectItem(c, "inner_seed")->valuedouble;
    sc.inner_skip = cJSON_GetObjectItem(c, "inner_skip")->valueint;
    sc.single_generator = cJSON_IsTrue(cJSON_GetObjectItem(c, "single_process"));
    const cJSON *lens = cJSON_GetObjectItem(c, "lengths");
    int32_t *ml = NULL;
    if (cJSON_IsArray(lens)) {
        int64_t n;
        int64_t *l = ints(lens, &n);
        ml = xmalloc(sizeof(int32_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) ml[i] = (int32_t)l[i];
        free(l);
        sc.modality_len = ml;
    }
    int64_t *order = xmalloc(sizeof(int64_t) * (size_t)sc.n);
    int64_t *got = xmalloc(sizeof(int64_t) * (size_t)sc.batch);
    int epoch = 0;
    const cJSON *rb_epochs = cJSON_GetObjectItem(c, "rank_batches")->child;
    for (const cJSON *o = cJSON_GetObjectItem(c, "orders")->child; o;
         o = o->next, epoch++, rb_epochs = rb_epochs->next) {
        CHECK(sampler_epoch_order(&sc, epoch, order) == 0, "%s: %s", name, llava_errmsg());
        int64_t n;
        int64_t *want = ints(o, &n);
        int64_t first_diff = -1;
        for (int64_t i = 0; i < n && first_diff < 0; i++)
            if (order[i] != want[i]) first_diff = i;
        CHECK(n == sc.n && first_diff < 0, "%s epoch %d: order differs at %lld", name, epoch, (long long)first_diff);
        free(want);
        // Every virtual rank's batches, tail included.
        int r = 0;
        for (const cJSON *rank = rb_epochs->child; rank; rank = rank->next, r++) {
            int64_t steps = cJSON_GetArraySize(rank);
            CHECK_EQ_INT(steps, sampler_batches_per_rank(&sc));
            int64_t s = 0;
            for (const cJSON *b = rank->child; b; b = b->next, s++) {
                int64_t bn;
                int64_t *wb = ints(b, &bn);
                int k = sampler_rank_batch(&sc, order, s, r, got);
                CHECK(k == bn && memcmp(got, wb, sizeof(int64_t) * (size_t)bn) == 0, "%s epoch %d rank %d batch %lld",
                      name, epoch, r, (long long)s);
                free(wb);
            }
        }
    }
    free(order);
    free(got);
    free(ml);
}

int main(void) {
    size_t len;
    char *text = read_file("tests/data/sampler/orders.json", 16 << 20, &len);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(root != NULL, "golden");
    if (!root) return check_done();
    int n_cases = 0, n_grouped = 0, n_single = 0;
    for (const cJSON *c = cJSON_GetObjectItem(root, "cases")->child; c; c = c->next, n_cases++) {
        check_case(c);
        int single = cJSON_IsTrue(cJSON_GetObjectItem(c, "single_process"));
        n_single += single;
        n_grouped += !single && cJSON_IsArray(cJSON_GetObjectItem(c, "lengths"));
    }
    // 7 cases of the distributed order, 2 of a single-process launch (LLaVA's own function with the
    // global generator as such a launch has it: seed 42, one int64 draw per epoch first).
    CHECK(n_cases == 9 && n_single == 2, "9 cases (2 single-process), saw %d (%d)", n_cases, n_single);
    // The goldens were written only after the re-statement gave LLaVA's own orders: the record of
    // that cross-check names LLaVA's commit and covers every grouped case, with two seeds each.
    const cJSON *x = cJSON_GetObjectItem(root, "llava_crosscheck");
    const cJSON *commit = cJSON_GetObjectItem(x, "llava_commit"), *xc = cJSON_GetObjectItem(x, "cases");
    const cJSON *nc = cJSON_GetObjectItem(x, "orders_compared"), *ni = cJSON_GetObjectItem(x, "orders_identical");
    CHECK(cJSON_IsString(commit) && strcmp(commit->valuestring, "c121f0432da27facab705978f83c4ada465e46fd") == 0,
          "the goldens record the cross-check against LLaVA c121f04");
    CHECK(cJSON_GetArraySize(xc) == n_grouped && cJSON_IsNumber(nc) && nc->valueint == 2 * n_grouped &&
              cJSON_IsNumber(ni) && ni->valueint == nc->valueint,
          "LLaVA's own sampler gave every grouped case's order (%d cases, %d of %d orders identical)",
          cJSON_GetArraySize(xc), ni ? ni->valueint : -1, nc ? nc->valueint : -1);
    int n_orders = 0;
    for (const cJSON *c = cJSON_GetObjectItem(root, "cases")->child; c; c = c->next)
        n_orders += cJSON_GetArraySize(cJSON_GetObjectItem(c, "orders"));
    printf(
        "sampler: %d cases, %d epoch orders and every rank's batches as the goldens; LLaVA %.7s's own grouped "
        "sampler gave %d of %d of their grouped orders (%d cases, recorded with the goldens)\n",
        n_cases, n_orders, cJSON_IsString(commit) ? commit->valuestring : "(none)", ni ? ni->valueint : -1,
        nc ? nc->valueint : -1, cJSON_GetArraySize(xc));
    cJSON_Delete(root);

    // LLaVA launched as one process on the demo's first 480 conversations, batches of 8 (issue
    // "step for step with LLaVA's own trainer": LLaVA's run gave this first batch): the modality
    // lengths as LLaVA counts them (words of every turn; all have images), the order of
    // data.sampler_order llava-single-process.
    {
        char *w = check_tmpdir();
        CHECK(demo_make_world(w, 480, 0, 1, NULL) == 0, "%s", llava_errmsg());
        char *qa = path_join(w, "data/train_qa.json");
        size_t qlen;
        char *qt = read_file(qa, 1 << 26, &qlen);
        cJSON *arr = qt ? cJSON_Parse(qt) : NULL;
        int32_t ml[480];
        int n = 0;
        for (const cJSON *smp = arr ? arr->child : NULL; smp && n < 480; smp = smp->next, n++) {
            int words = 0;
            for (const cJSON *t = cJSON_GetObjectItem(smp, "conversations")->child; t; t = t->next)
                for (const char *q = cJSON_GetObjectItem(t, "value")->valuestring; *q;) {
                    while (*q == ' ' || *q == '\n' || *q == '\t') q++;
                    if (!*q) break;
                    words++;
                    while (*q && *q != ' ' && *q != '\n' && *q != '\t') q++;
                }
            ml[n] = cJSON_GetObjectItem(smp, "image") ? words : -words;
        }
        CHECK(n == 480, "the demo's first 480 conversations (%d)", n);
        sampler_config dc = {.n = 480,
                             .modality_len = ml,
                             .batch = 8,
                             .virtual_ranks = 1,
                             .seed = 0,
                             .inner_seed = 42,
                             .inner_skip = 2,
                             .single_generator = 1};
        int64_t order[480], first[8];
        CHECK(sampler_epoch_order(&dc, 0, order) == 0, "%s", llava_errmsg());
        CHECK(sampler_rank_batch(&dc, order, 0, 0, first) == 8, "a first batch of 8");
        const int64_t llava_first[8] = {316, 148, 320, 380, 207, 378, 429, 208};
        CHECK(memcmp(first, llava_first, sizeof first) == 0,
              "single-process first batch %lld %lld %lld %lld %lld %lld %lld %lld, LLaVA's 316 148 320 380 207 378 429 "
              "208",
              (long long)first[0], (long long)first[1], (long long)first[2], (long long)first[3], (long long)first[4],
              (long long)first[5], (long long)first[6], (long long)first[7]);
        printf("single-process order: the demo's first batch equals LLaVA's (316 148 320 380 207 378 429 208)\n");
        cJSON_Delete(arr);
        free(qt), free(qa);
        check_rm_rf(w);
        free(w);
    }

    // torch.randperm with torch's default seed (what accelerate 0.21 gives LLaVA's stage-1 sampler):
    // the first draws of a 1000-permutation, as torch 2.5.1 prints them.
    torch_rng r;
    torch_rng_seed(&r, TORCH_DEFAULT_SEED);
    int64_t p[1000];
    torch_randperm(&r, 1000, p);
    int64_t want[6] = {710, 930, 691, 853, 973, 409};
    CHECK(memcmp(p, want, sizeof want) == 0, "randperm(1000) starts %lld %lld %lld", (long long)p[0], (long long)p[1],
          (long long)p[2]);
    // A zero modality length is refused, as LLaVA asserts.
    int32_t bad[4] = {3, -2, 0, 5};
    int64_t out[4];
    sampler_config sc = {.n = 4, .modality_len = bad, .batch = 1, .virtual_ranks = 2, .seed = 1, .inner_seed = 42};
    CHECK(sampler_epoch_order(&sc, 0, out) != 0, "zero length accepted");
    CHECK_ERR_HAS("modality length 0");
    // LLaVA-1.5's stage-2 arithmetic from spec §7.1: 624,610 image and 40,688 text samples on 8
    // ranks x 16 give 4,879 + 317 full single-modality megabatches of 128, then one mixed megabatch
    // of 98 + 112 = 210 samples sorted by index.
    int64_t N = 665298;
    int32_t *ml = xmalloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++)
        ml[i] = (i % 16 == 5 && i / 16 < 40688) ? -(int32_t)(1 + i % 300) : (int32_t)(1 + i % 500);
    int64_t n_text = 0;
    for (int64_t i = 0; i < N; i++) n_text += ml[i] < 0;
    CHECK_EQ_INT(n_text, 40688);
    sampler_config big = {
        .n = N, .modality_len = ml, .batch = 16, .virtual_ranks = 8, .seed = TORCH_DEFAULT_SEED, .inner_seed = 42};
    int64_t *order = xmalloc(sizeof(int64_t) * (size_t)N);
    CHECK(sampler_epoch_order(&big, 0, order) == 0, "%s", llava_errmsg());
    int64_t mixed = 0;
    for (int64_t m = 0; m < 4879 + 317; m++) {
        int n_t = 0;
        for (int64_t i = 0; i < 128; i++) n_t += ml[order[m * 128 + i]] < 0;
        mixed += n_t != 0 && n_t != 128;
    }
    CHECK(mixed == 0, "%lld full megabatches mix modalities", (long long)mixed);
    int64_t tail = (4879 + 317) * 128, tail_text = 0, sorted = 1;
    CHECK_EQ_INT(N - tail, 210);
    for (int64_t i = tail; i < N; i++) {
        tail_text += ml[order[i]] < 0;
        if (i > tail && order[i] < order[i - 1]) sorted = 0;
    }
    CHECK(tail_text == 112 && sorted, "final megabatch: %lld text samples, sorted %d", (long long)tail_text,
          (int)sorted);
    CHECK_EQ_INT(sampler_batches_per_rank(&big), 5198);  // the 5,198 steps of spec §1.3
    free(order);
    free(ml);
    return check_done();
}
