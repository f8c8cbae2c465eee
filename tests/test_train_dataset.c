// train_open_dataset (train/build.c): a LLaVA JSON data_path is prepared into output_dir/dataset.h5, and that file
// is used again only while it was prepared from what the run asks: the same JSON (path, size, md5), tokenizer
// (md5), template, tokenizer mode, image aspect, model_max_length and image folder. Anything else prepares it
// again (into a temporary file, renamed over it); a data_path that does not exist is refused by name; an HDF5
// file given as data_path is used as it is, its template, mode and aspect checked. What prep recorded is in the
// llava_dataset (for the checkpoint's state.json).
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"
#include "data/dataset.h"
#include "data/prep.h"
#include "train/config.h"
#include "train/settings.h"
#include "train/trainer.h"

#define PREP_DIR "tests/data/prep/"
#define TINY "tests/data/tokenizer/tiny.model"
#define LLAMA "tests/data/tokenizer/llama.model"

static char *dir, *out_dir, *h5;

static char *tmp_path(const char *name) { return xasprintf("%s/%s", dir, name); }

// Opens the dataset of a run with these overrides (after data.image_folder, data.template=vicuna_v1,
// model.tokenizer=tiny, data.model_max_length=96 and the output folder). Returns train_open_dataset's result.
static int open_with(llava_dataset *ds, const char *data, const char *const *sets, int n) {
    train_config c;
    cfg_init_defaults(&c);
    char *a = xasprintf("data.data_path=%s", data), *o = xasprintf("checkpoint.output_dir=%s", out_dir);
    const char *base[] = {a,
                          o,
                          "data.image_folder=" PREP_DIR "images",
                          "data.template=vicuna_v1",
                          "model.tokenizer=" TINY,
                          "data.model_max_length=96"};
    int rc = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0] && rc == 0; i++) rc = cfg_set(&c, base[i]);
    for (int i = 0; i < n && rc == 0; i++) rc = cfg_set(&c, sets[i]);
    run_settings s;
    if (rc == 0) rc = settings_from_config(&c, &s);
    cfg_free(&c);
    free(a);
    free(o);
    if (rc) return rc;
    rc = train_open_dataset(&s, ds);
    settings_free(&s);
    return rc;
}

static ino_t inode(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static int no_tmp_left(void) {
    char *cmd = xasprintf("ls -a '%s' | grep -q tmp", out_dir);
    int found = system(cmd) == 0;
    free(cmd);
    return !found;
}

static char *md5_of(const char *path) {
    char hex[33];
    return prep_file_md5(path, hex, NULL) == 0 ? xstrdup(hex) : xstrdup("?");
}

// Opens with the overrides; checks the number of samples and whether dataset.h5 was prepared again (a new
// inode: prep renames a new file over it) or used as it was.
static void expect(const char *what, const char *data, const char *const *sets, int n, int64_t samples,
                   int reprepared) {
    ino_t before = inode(h5);
    llava_dataset ds;
    int rc = open_with(&ds, data, sets, n);
    CHECK(rc == 0, "%s: %s", what, llava_errmsg());
    if (rc) return;
    CHECK(ds.n == samples, "%s: %lld samples, expected %lld", what, (long long)ds.n, (long long)samples);
    ino_t after = inode(h5);
    CHECK((after != before) == reprepared, "%s: dataset.h5 %s", what,
          reprepared ? "was used as it was (stale)" : "was prepared again (it was fresh)");
    CHECK(no_tmp_left(), "%s: a temporary file is left in %s", what, out_dir);
    dataset_close(&ds);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *b = read_file(from, 1 << 24, &n);
    CHECK(b && write_file_atomic(to, b, n) == 0, "copy %s: %s", from, llava_errmsg());
    free(b);
}

int main(void) {
    dir = check_tmpdir();
    out_dir = tmp_path("run");
    h5 = tmp_path("run/dataset.h5");
    mkdir_p(out_dir);
    char *a = tmp_path("a.json"), *b = tmp_path("b.json"), *gone = tmp_path("gone.json");
    copy_file(PREP_DIR "data.json", a);
    // b: the first three records of data.json
    static const char three[] =
        "[{\"id\": \"x1\", \"image\": \"coco/000000000001.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
        "\"<image>\\nWhat?\"}, {\"from\": \"gpt\", \"value\": \"A.\"}]},\n"
        "{\"id\": \"x2\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hi?\"}, {\"from\": \"gpt\", "
        "\"value\": "
        "\"Yo.\"}]},\n"
        "{\"id\": \"x3\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hey?\"}, {\"from\": \"gpt\", "
        "\"value\": \"Ho.\"}]}]\n";
    write_file_atomic(b, three, strlen(three));

    // The first run prepares; what prep recorded is in the dataset.
    expect("first run", a, NULL, 0, 8, 1);
    llava_dataset ds;
    if (open_with(&ds, a, NULL, 0) == 0) {
        char *ma = md5_of(a), *mt = md5_of(TINY);
        struct stat st;
        stat(a, &st);
        CHECK_EQ_STR(ds.source, a);
        CHECK_EQ_INT(ds.source_bytes, st.st_size);
        CHECK_EQ_STR(ds.source_md5, ma);
        CHECK_EQ_STR(ds.tokenizer_md5, mt);
        CHECK_EQ_STR(ds.template_name, "vicuna_v1");
        CHECK_EQ_STR(ds.template_source, "vicuna_v1");
        CHECK_EQ_STR(ds.tokenizer_mode, "hf431");
        CHECK_EQ_STR(ds.aspect, "square");
        CHECK_EQ_INT(ds.model_max_length, 96);
        CHECK_EQ_STR(ds.image_folder, PREP_DIR "images");
        CHECK_EQ_STR(ds.path, h5);
        CHECK_EQ_INT(ds.records, 19);
        free(ma);
        free(mt);
        dataset_close(&ds);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    expect("same inputs", a, NULL, 0, 8, 0);

    // Another JSON: prepared again (it trained on a.json's samples before).
    expect("another data_path", b, NULL, 0, 3, 1);
    expect("back to a", a, NULL, 0, 8, 1);
    // The same path, edited in place to the same size: its md5 tells.
    {
        size_t n;
        char *t = read_file(a, 1 << 20, &n);
        char *p = strstr(t, "\"665k-vqa\", \"image\"");  // the record's image becomes text-only: ("image" -> "imagf")
        memcpy(p + 13, "imagf", 5);
        write_file_atomic(a, t, n);
        free(t);
        expect("a edited, same size", a, NULL, 0, 8, 1);
        llava_dataset d2;
        if (open_with(&d2, a, NULL, 0) == 0) {
            CHECK(d2.image_paths[1] == NULL, "the edited record is text-only now");
            dataset_close(&d2);
        }
    }
    // Each setting prep depends on.
    const char *mml[] = {"data.model_max_length=64"};
    expect("model_max_length", a, mml, 1, 8, 1);
    expect("model_max_length again", a, mml, 1, 8, 0);
    const char *mode[] = {"data.tokenizer_mode=legacy"};
    expect("tokenizer mode", a, mode, 1, 8, 1);
    const char *tmpl[] = {"data.template=plain"};
    expect("template", a, tmpl, 1, 3, 1);  // 665k-vqa, text-only now, has an <image> plain would tokenize
    const char *aspect[] = {"data.image_aspect_ratio=pad"};
    expect("aspect", a, aspect, 1, 8, 1);
    expect("aspect back", a, NULL, 0, 8, 1);
    char *tok_copy = tmp_path("tok.model"), *tok_set = xasprintf("model.tokenizer=%s", tok_copy);
    copy_file(TINY, tok_copy);
    const char *same_tok[] = {tok_set};
    expect("the same tokenizer elsewhere", a, same_tok, 1, 8, 0);
    const char *other_tok[] = {"model.tokenizer=" LLAMA};
    expect("another tokenizer", a, other_tok, 1, 8, 1);
    char *folder_copy = tmp_path("images"), *folder_set = xasprintf("data.image_folder=%s", folder_copy);
    char *cp = xasprintf("cp -r %simages '%s'", PREP_DIR, folder_copy);
    CHECK(system(cp) == 0, "%s", cp);
    const char *folder[] = {folder_set};
    expect("image folder", a, folder, 1, 8, 1);

    // A data_path that does not exist is refused by name, whatever dataset.h5 holds.
    ino_t before = inode(h5);
    CHECK(open_with(&ds, gone, NULL, 0) == -1, "a missing data_path was accepted");
    char *want = xasprintf("data.data_path %s: no such file", gone);
    CHECK_ERR_HAS(want);
    free(want);
    CHECK(inode(h5) == before, "dataset.h5 changed");
    CHECK(open_with(&ds, "no-such-dir/x.h5", NULL, 0) == -1, "a missing HDF5 data_path was accepted");
    CHECK_ERR_HAS("data.data_path no-such-dir/x.h5: no such file");

    // An HDF5 file given as data_path is used as it is (even though a.json changed since), template checked.
    char *direct = tmp_path("direct.h5");
    prep_options po;
    prep_options_default(&po);
    po.data_path = b;
    po.image_folder = PREP_DIR "images";
    po.tokenizer_path = TINY;
    po.template_name = "vicuna_v1";
    po.model_max_length = 96;
    po.out_path = direct;
    CHECK(prep_run(&po, NULL) == 0, "%s", llava_errmsg());
    copy_file(PREP_DIR "data.json", b);  // its source changes: irrelevant for a file given directly
    if (open_with(&ds, direct, NULL, 0) == 0) {
        CHECK_EQ_INT(ds.n, 3);
        CHECK_EQ_STR(ds.path, direct);
        dataset_close(&ds);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    CHECK(open_with(&ds, direct, tmpl, 1) == -1, "a vicuna_v1 file accepted for plain");
    CHECK_ERR_HAS("was prepared with template vicuna_v1");

    free(direct);
    free(cp);
    free(folder_copy);
    free(folder_set);
    free(tok_copy);
    free(tok_set);
    free(a);
    free(b);
    free(gone);
    free(h5);
    free(out_dir);
    check_rm_rf(dir);
    free(dir);
    return check_done();
}
