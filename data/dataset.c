// Reader of the HDF5 files `llava prep` writes (layout in prep.h). The file is checked as untrusted input:
// every dataset's rank and size, the offsets' order and range, and the pixel rows are validated before use.
#include "dataset.h"

#include <hdf5.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "prep.h"
#include "prep_h5.h"

// HDF5 (a serial build) must not be entered by two threads at once.
static pthread_mutex_t h5_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    hid_t file, pixels;
    char *id_chars, *img_chars;  // the strings, NUL-separated; sample_ids / image_paths point into them
    int64_t n_pixels;
} impl;

// Reads a whole 1-D dataset of `type` (elem bytes each); *count its length. NULL (with an error) when it is
// missing or not 1-D, unless `optional` and missing (then NULL with *count = 0 and no error).
static void *read_1d(hid_t file, const char *path, const char *name, hid_t type, size_t elem, uint64_t *count,
                     int optional) {
    *count = 0;
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        if (!optional) llava_fail("%s: no dataset \"%s\" (not written by llava prep?)", path, name);
        return NULL;
    }
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) {
        llava_fail("%s: cannot open dataset \"%s\"", path, name);
        return NULL;
    }
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[1] = {0};
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank == 1) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    void *buf = NULL;
    uint64_t bytes;
    if (rank != 1) llava_fail("%s: dataset \"%s\" is not one-dimensional", path, name);
    else if (mul_overflow_u64(dims[0], elem, &bytes) || bytes > ((uint64_t)1 << 40))
        llava_fail("%s: dataset \"%s\" is too large (%llu elements)", path, name, (unsigned long long)dims[0]);
    else {
        buf = xmalloc((size_t)bytes + elem);
        if (dims[0] > 0 && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            llava_fail("%s: cannot read dataset \"%s\"", path, name);
            free(buf);
            buf = NULL;
        } else {
            *count = dims[0];
        }
    }
    H5Dclose(ds);
    return buf;
}

// A root attribute as a string (malloc'd), or NULL when absent or not a string.
static char *attr_str(hid_t file, const char *name) {
    if (H5Aexists(file, name) <= 0) return NULL;
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *out = NULL;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        size_t n = H5Tget_size(t);
        if (n > 0 && n < ((size_t)1 << 20)) {
            hid_t mt = H5Tcopy(t);
            out = xcalloc(1, n + 1);
            if (mt < 0 || H5Aread(a, mt, out) < 0) {
                free(out);
                out = NULL;
            }
            if (mt >= 0) H5Tclose(mt);
        }
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return out;
}

static int attr_int(hid_t file, const char *name, int64_t *out) {
    if (H5Aexists(file, name) <= 0) return -1;
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_INT64, out) >= 0) rc = 0;
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

// Splits chars by offsets (n+1, checked) into n NUL-terminated strings inside one block; an empty string
// becomes NULL when empty_null. The block goes to *block.
static char **split_strings(const char *path, const char *what, const uint8_t *chars, uint64_t n_chars,
                            const int64_t *off, uint64_t n_off, int64_t n, int empty_null, char **block) {
    if (n_off != (uint64_t)n + 1 || off[0] != 0 || (uint64_t)off[n] != n_chars) {
        llava_fail("%s: the %s offsets do not match the samples", path, what);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (off[i + 1] < off[i]) {
            llava_fail("%s: the %s offsets decrease at sample %lld", path, what, (long long)i);
            return NULL;
        }
    }
    char *b = xmalloc((size_t)n_chars + (size_t)n + 1);
    char **v = xcalloc((size_t)n + 1, sizeof *v);
    size_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t l = (size_t)(off[i + 1] - off[i]);
        if (memchr(chars + off[i], 0, l)) {
            free(b);
            free(v);
            llava_fail("%s: %s %lld holds a NUL byte", path, what, (long long)i);
            return NULL;
        }
        memcpy(b + at, chars + off[i], l);
        b[at + l] = 0;
        v[i] = empty_null && l == 0 ? NULL : b + at;
        at += l + 1;
    }
    *block = b;
    return v;
}

static int open_locked(llava_dataset *d, const char *path) {
    prep_h5_quiet();
    impl *im = xcalloc(1, sizeof *im);
    im->pixels = -1;
    d->impl = im;
    if (!file_exists(path)) return llava_fail("%s: no such file", path);
    if (H5Fis_hdf5(path) <= 0) return llava_fail("%s: not an HDF5 file", path);
    im->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (im->file < 0) return llava_fail("%s: cannot open the HDF5 file", path);
    hid_t f = im->file;
    char *format = attr_str(f, "format");
    int64_t version = 0;
    int ok = format && strcmp(format, PREP_FORMAT) == 0;
    free(format);
    if (!ok)
        return llava_fail("%s: not a dataset written by llava prep (no \"format\" attribute \"%s\")", path,
                          PREP_FORMAT);
    if (attr_int(f, "format_version", &version) || version != PREP_FORMAT_VERSION)
        return llava_fail("%s: format version %lld, this build reads %d", path, (long long)version,
                          PREP_FORMAT_VERSION);

    uint64_t n_off, n_ids, n_lab, n_mod, n_flags, n_src, n_idc, n_ido, n_imc, n_imo;
    d->offsets = read_1d(f, path, "offsets", H5T_NATIVE_INT64, 8, &n_off, 0);
    if (!d->offsets) return -1;
    if (n_off < 1 || d->offsets[0] != 0) return llava_fail("%s: \"offsets\" must start at 0", path);
    int64_t n = (int64_t)n_off - 1;
    d->n = n;
    for (int64_t i = 0; i < n; i++)
        if (d->offsets[i + 1] < d->offsets[i])
            return llava_fail("%s: \"offsets\" decrease at sample %lld", path, (long long)i);
    d->input_ids = read_1d(f, path, "input_ids", H5T_NATIVE_INT32, 4, &n_ids, 0);
    if (!d->input_ids) return -1;
    d->labels = read_1d(f, path, "labels", H5T_NATIVE_INT32, 4, &n_lab, 0);
    if (!d->labels) return -1;
    if (n_ids != (uint64_t)d->offsets[n] || n_lab != n_ids)
        return llava_fail("%s: %llu input ids and %llu labels for offsets that end at %lld", path,
                          (unsigned long long)n_ids, (unsigned long long)n_lab, (long long)d->offsets[n]);
    d->modality_len = read_1d(f, path, "modality_lengths", H5T_NATIVE_INT32, 4, &n_mod, 0);
    if (!d->modality_len) return -1;
    d->flags = read_1d(f, path, "flags", H5T_NATIVE_UINT8, 1, &n_flags, 0);
    if (!d->flags) return -1;
    d->source_index = read_1d(f, path, "source_index", H5T_NATIVE_INT64, 8, &n_src, 0);
    if (!d->source_index) return -1;
    if (n_mod != (uint64_t)n || n_flags != (uint64_t)n || n_src != (uint64_t)n)
        return llava_fail("%s: the per-sample datasets disagree on the number of samples (%lld)", path, (long long)n);

    uint8_t *idc = read_1d(f, path, "sample_id_chars", H5T_NATIVE_UINT8, 1, &n_idc, 0);
    int64_t *ido = idc ? read_1d(f, path, "sample_id_offsets", H5T_NATIVE_INT64, 8, &n_ido, 0) : NULL;
    if (ido) d->sample_ids = split_strings(path, "sample id", idc, n_idc, ido, n_ido, n, 0, &im->id_chars);
    free(idc);
    free(ido);
    if (!d->sample_ids) return -1;
    uint8_t *imc = read_1d(f, path, "image_path_chars", H5T_NATIVE_UINT8, 1, &n_imc, 0);
    int64_t *imo = imc ? read_1d(f, path, "image_path_offsets", H5T_NATIVE_INT64, 8, &n_imo, 0) : NULL;
    if (imo) d->image_paths = split_strings(path, "image path", imc, n_imc, imo, n_imo, n, 1, &im->img_chars);
    free(imc);
    free(imo);
    if (!d->image_paths) return -1;

    int64_t v;
    d->template_name = attr_str(f, "template");
    d->tokenizer_mode = attr_str(f, "tokenizer_mode");
    d->aspect = attr_str(f, "aspect");
    d->image_folder = attr_str(f, "image_folder");
    if (d->image_folder && !d->image_folder[0]) {
        free(d->image_folder);
        d->image_folder = NULL;
    }
    d->tokenizer_path = attr_str(f, "tokenizer");
    d->tokenizer_md5 = attr_str(f, "tokenizer_md5");
    d->source = attr_str(f, "source");
    d->source_md5 = attr_str(f, "source_md5");
    d->template_source = attr_str(f, "template_source");
    d->source_bytes = attr_int(f, "source_bytes", &v) == 0 ? v : -1;
    d->records = attr_int(f, "records", &v) == 0 ? v : -1;
    if (attr_int(f, "model_max_length", &v) == 0) d->model_max_length = (int)v;
    if (attr_int(f, "video_frames", &v) == 0) d->video_frames = (int)v;
    if (attr_int(f, "image_size", &v) == 0) d->prep_image_size = (int)v;
    if (attr_int(f, "checked_images", &v) == 0) d->checked_images = (int)v;

    if (H5Lexists(f, "pixels", H5P_DEFAULT) > 0) {
        uint64_t n_pi;
        d->pixel_index = read_1d(f, path, "pixel_index", H5T_NATIVE_INT32, 4, &n_pi, 0);
        if (!d->pixel_index) return -1;
        if (n_pi != (uint64_t)n)
            return llava_fail("%s: \"pixel_index\" has %llu rows for %lld samples", path, (unsigned long long)n_pi,
                              (long long)n);
        hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
        if (dapl >= 0)
            H5Pset_chunk_cache(dapl, 0, 0, 1.0);  // one whole chunk per read, straight into the caller's buffer
        im->pixels = H5Dopen2(f, "pixels", dapl >= 0 ? dapl : H5P_DEFAULT);
        if (dapl >= 0) H5Pclose(dapl);
        if (im->pixels < 0) return llava_fail("%s: cannot open dataset \"pixels\"", path);
        hid_t sp = H5Dget_space(im->pixels);
        hid_t t = H5Dget_type(im->pixels);
        hsize_t dims[4] = {0};
        int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (rank == 4) H5Sget_simple_extent_dims(sp, dims, NULL);
        int u8 = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1;
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
        if (rank != 4 || !u8 || dims[1] != dims[2] || dims[3] != 3 || dims[1] == 0 || dims[1] > 4096)
            return llava_fail("%s: \"pixels\" is not (n, S, S, 3) uint8", path);
        d->image_size = (int)dims[1];
        im->n_pixels = (int64_t)dims[0];
        for (int64_t i = 0; i < n; i++)
            if (d->pixel_index[i] < -1 || d->pixel_index[i] >= im->n_pixels)
                return llava_fail("%s: sample %lld's pixel row %d is out of range (%lld rows)", path, (long long)i,
                                  d->pixel_index[i], (long long)im->n_pixels);
    }
    return 0;
}

int dataset_open(llava_dataset *d, const char *path) {
    memset(d, 0, sizeof *d);
    d->path = xstrdup(path);
    pthread_mutex_lock(&h5_mu);
    int rc = open_locked(d, path);
    pthread_mutex_unlock(&h5_mu);
    if (rc) {
        char msg[LLAVA_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", llava_errmsg());
        dataset_close(d);
        llava_fail("%s", msg);
    }
    return rc;
}

int dataset_read_pixels(const llava_dataset *d, int64_t i, uint8_t *out) {
    const impl *im = d->impl;
    if (i < 0 || i >= d->n)
        return llava_fail("dataset: sample %lld out of range (%lld samples)", (long long)i, (long long)d->n);
    if (!im || im->pixels < 0 || !d->pixel_index || d->pixel_index[i] < 0)
        return llava_fail("dataset: sample %lld has no stored pixels", (long long)i);
    hsize_t S = (hsize_t)d->image_size;
    hsize_t start[4] = {(hsize_t)d->pixel_index[i], 0, 0, 0}, count[4] = {1, S, S, 3};
    pthread_mutex_lock(&h5_mu);
    hid_t fs = H5Dget_space(im->pixels);
    hid_t ms = H5Screate_simple(4, count, NULL);
    int rc = 0;
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(im->pixels, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, out) < 0)
        rc = llava_fail("dataset: cannot read the pixels of sample %lld", (long long)i);
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    pthread_mutex_unlock(&h5_mu);
    return rc;
}

int64_t dataset_find_id(const llava_dataset *d, const char *id) {
    for (int64_t i = 0; i < d->n; i++)
        if (d->sample_ids && d->sample_ids[i] && strcmp(d->sample_ids[i], id) == 0) return i;
    return -1;
}

int dataset_is_prep_file(const char *path) {
    pthread_mutex_lock(&h5_mu);
    prep_h5_quiet();
    int yes = 0;
    if (file_exists(path) && H5Fis_hdf5(path) > 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            char *format = attr_str(f, "format");
            yes = format && strcmp(format, PREP_FORMAT) == 0;
            free(format);
            H5Fclose(f);
        }
    }
    pthread_mutex_unlock(&h5_mu);
    return yes;
}

void dataset_close(llava_dataset *d) {
    impl *im = d->impl;
    if (im) {
        pthread_mutex_lock(&h5_mu);
        if (im->pixels >= 0) H5Dclose(im->pixels);
        if (im->file > 0) H5Fclose(im->file);
        pthread_mutex_unlock(&h5_mu);
        free(im->id_chars);
        free(im->img_chars);
        free(im);
    }
    free(d->offsets);
    free(d->input_ids);
    free(d->labels);
    free(d->modality_len);
    free(d->sample_ids);
    free(d->image_paths);
    free(d->flags);
    free(d->pixel_index);
    free(d->source_index);
    free(d->image_folder);
    free(d->template_name);
    free(d->tokenizer_mode);
    free(d->aspect);
    free(d->tokenizer_path);
    free(d->tokenizer_md5);
    free(d->source);
    free(d->path);
    free(d->source_md5);
    free(d->template_source);
    memset(d, 0, sizeof *d);
}
