// HDF5 writer of `llava prep` (see prep_h5.h for why each setting is what it is).
#include "prep_h5.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "prep.h"

// A growing 1-D dataset written one whole chunk at a time.
typedef struct {
    const char *name;
    hid_t ds, type;
    size_t elem, chunk;  // bytes per element, elements per chunk
    uint8_t *buf;
    size_t nbuf;
    uint64_t written;
} column;

enum { C_IDS, C_LABELS, C_OFFSETS, C_MODLEN, C_FLAGS, C_SOURCE, C_IDCH, C_IDOFF, C_IMGCH, C_IMGOFF, C_PIXIDX, N_COLS };

struct prep_writer {
    hid_t file;
    column col[N_COLS];
    int n_cols;
    int image_size;
    hid_t pix;  // /pixels, or -1
    uint64_t n_pix;
    int64_t tokens, id_bytes, img_bytes;
    int failed;
};

void prep_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static hid_t make_dcpl(int rank, const hsize_t *chunk, int compress, size_t elem) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0) return -1;
    // Explicit zero fill, written when a chunk is allocated, so no chunk ever holds stale memory.
    static const uint8_t zero[8] = {0};
    hid_t t = elem == 1 ? H5T_NATIVE_UINT8 : elem == 4 ? H5T_NATIVE_INT32 : H5T_NATIVE_INT64;
    if (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0 ||
        H5Pset_fill_value(dcpl, t, zero) < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC) < 0 ||
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR) < 0) {
        H5Pclose(dcpl);
        return -1;
    }
    if (compress > 0 && ((elem > 1 && H5Pset_shuffle(dcpl) < 0) || H5Pset_deflate(dcpl, (unsigned)compress) < 0)) {
        H5Pclose(dcpl);
        return -1;
    }
    return dcpl;
}

static int col_create(prep_writer *w, column *c, const char *name, hid_t type, size_t elem, size_t chunk,
                      int compress) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->type = type;
    c->elem = elem;
    c->chunk = chunk;
    c->ds = -1;
    hsize_t dims[1] = {0}, maxd[1] = {H5S_UNLIMITED}, ch[1] = {chunk};
    hid_t space = H5Screate_simple(1, dims, maxd);
    hid_t dcpl = make_dcpl(1, ch, compress, elem);
    if (space >= 0 && dcpl >= 0) c->ds = H5Dcreate2(w->file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (c->ds < 0) return llava_fail("HDF5: cannot create dataset %s", name);
    c->buf = xmalloc(chunk * elem);
    return 0;
}

// Writes the staged elements at the end of the dataset.
static int col_flush(column *c) {
    if (c->nbuf == 0) return 0;
    hsize_t start[1] = {c->written}, count[1] = {c->nbuf}, size[1] = {c->written + c->nbuf};
    if (H5Dset_extent(c->ds, size) < 0) return llava_fail("HDF5: cannot extend %s", c->name);
    hid_t fs = H5Dget_space(c->ds);
    hid_t ms = H5Screate_simple(1, count, NULL);
    int rc = 0;
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dwrite(c->ds, c->type, ms, fs, H5P_DEFAULT, c->buf) < 0)
        rc = llava_fail("HDF5: cannot write %s (disk full?)", c->name);
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    c->written += c->nbuf;
    c->nbuf = 0;
    return rc;
}

static int col_append(column *c, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        size_t take = c->chunk - c->nbuf < n ? c->chunk - c->nbuf : n;
        memcpy(c->buf + c->nbuf * c->elem, p, take * c->elem);
        c->nbuf += take;
        p += take * c->elem;
        n -= take;
        if (c->nbuf == c->chunk && col_flush(c)) return -1;
    }
    return 0;
}

static void col_close(column *c) {
    if (c->ds >= 0) H5Dclose(c->ds);
    c->ds = -1;
    free(c->buf);
    c->buf = NULL;
}

prep_writer *prep_writer_create(const char *path, int image_size, int compress) {
    prep_h5_quiet();
    prep_writer *w = xcalloc(1, sizeof *w);
    w->pix = -1;
    w->image_size = image_size;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    w->file = -1;
    if (fcpl >= 0 && fapl >= 0 && H5Pset_obj_track_times(fcpl, 0) >= 0 &&
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) >= 0)
        w->file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (fapl >= 0) H5Pclose(fapl);
    if (w->file < 0) {
        llava_fail("%s: cannot create the HDF5 file", path);
        free(w);
        return NULL;
    }
    const size_t TOK_CHUNK = (size_t)1 << 16, ROW_CHUNK = (size_t)1 << 14, CH_CHUNK = (size_t)1 << 16;
    struct {
        const char *name;
        hid_t type;
        size_t elem, chunk;
    } spec[N_COLS] = {
        [C_IDS] = {"input_ids", H5T_NATIVE_INT32, 4, TOK_CHUNK},
        [C_LABELS] = {"labels", H5T_NATIVE_INT32, 4, TOK_CHUNK},
        [C_OFFSETS] = {"offsets", H5T_NATIVE_INT64, 8, ROW_CHUNK},
        [C_MODLEN] = {"modality_lengths", H5T_NATIVE_INT32, 4, ROW_CHUNK},
        [C_FLAGS] = {"flags", H5T_NATIVE_UINT8, 1, ROW_CHUNK},
        [C_SOURCE] = {"source_index", H5T_NATIVE_INT64, 8, ROW_CHUNK},
        [C_IDCH] = {"sample_id_chars", H5T_NATIVE_UINT8, 1, CH_CHUNK},
        [C_IDOFF] = {"sample_id_offsets", H5T_NATIVE_INT64, 8, ROW_CHUNK},
        [C_IMGCH] = {"image_path_chars", H5T_NATIVE_UINT8, 1, CH_CHUNK},
        [C_IMGOFF] = {"image_path_offsets", H5T_NATIVE_INT64, 8, ROW_CHUNK},
        [C_PIXIDX] = {"pixel_index", H5T_NATIVE_INT32, 4, ROW_CHUNK},
    };
    w->n_cols = image_size > 0 ? N_COLS : C_PIXIDX;
    for (int i = 0; i < w->n_cols; i++) {
        if (col_create(w, &w->col[i], spec[i].name, spec[i].type, spec[i].elem, spec[i].chunk, compress)) {
            w->n_cols = i;
            prep_writer_abort(w);
            return NULL;
        }
    }
    int64_t zero = 0;
    col_append(&w->col[C_OFFSETS], &zero, 1);
    col_append(&w->col[C_IDOFF], &zero, 1);
    col_append(&w->col[C_IMGOFF], &zero, 1);
    if (image_size > 0) {
        // One image per chunk: a loader reads one row with one chunk read; photos barely compress, so raw.
        hsize_t S = (hsize_t)image_size;
        hsize_t dims[4] = {0, S, S, 3}, maxd[4] = {H5S_UNLIMITED, S, S, 3}, ch[4] = {1, S, S, 3};
        hid_t space = H5Screate_simple(4, dims, maxd);
        hid_t dcpl = make_dcpl(4, ch, 0, 1);
        hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
        // No chunk cache: every write is a whole chunk and goes straight to the file.
        if (dapl >= 0) H5Pset_chunk_cache(dapl, 0, 0, 1.0);
        if (space >= 0 && dcpl >= 0 && dapl >= 0)
            w->pix = H5Dcreate2(w->file, "pixels", H5T_NATIVE_UINT8, space, H5P_DEFAULT, dcpl, dapl);
        if (space >= 0) H5Sclose(space);
        if (dcpl >= 0) H5Pclose(dcpl);
        if (dapl >= 0) H5Pclose(dapl);
        if (w->pix < 0) {
            llava_fail("HDF5: cannot create dataset pixels");
            prep_writer_abort(w);
            return NULL;
        }
    }
    return w;
}

static int write_pixels(prep_writer *w, const uint8_t *px) {
    hsize_t S = (hsize_t)w->image_size;
    hsize_t size[4] = {w->n_pix + 1, S, S, 3}, start[4] = {w->n_pix, 0, 0, 0}, count[4] = {1, S, S, 3};
    if (H5Dset_extent(w->pix, size) < 0) return llava_fail("HDF5: cannot extend pixels");
    hid_t fs = H5Dget_space(w->pix);
    hid_t ms = H5Screate_simple(4, count, NULL);
    int rc = 0;
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dwrite(w->pix, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, px) < 0)
        rc = llava_fail("HDF5: cannot write pixels (disk full?)");
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    w->n_pix++;
    return rc;
}

int prep_writer_add(prep_writer *w, const prep_writer_sample *s) {
    if (w->failed) return -1;
    column *c = w->col;
    size_t idl = strlen(s->id), iml = s->image ? strlen(s->image) : 0;
    w->tokens += (int64_t)s->n_tokens;
    w->id_bytes += (int64_t)idl;
    w->img_bytes += (int64_t)iml;
    int64_t src = s->source_index;
    int rc = col_append(&c[C_IDS], s->ids, s->n_tokens) || col_append(&c[C_LABELS], s->labels, s->n_tokens) ||
             col_append(&c[C_OFFSETS], &w->tokens, 1) || col_append(&c[C_MODLEN], &s->modality_len, 1) ||
             col_append(&c[C_FLAGS], &s->flags, 1) || col_append(&c[C_SOURCE], &src, 1) ||
             col_append(&c[C_IDCH], s->id, idl) || col_append(&c[C_IDOFF], &w->id_bytes, 1) ||
             col_append(&c[C_IMGCH], s->image ? s->image : "", iml) || col_append(&c[C_IMGOFF], &w->img_bytes, 1);
    if (!rc && w->image_size > 0) {
        int32_t row = s->pixels ? (int32_t)w->n_pix : -1;
        rc = col_append(&c[C_PIXIDX], &row, 1);
        if (!rc && s->pixels) rc = write_pixels(w, s->pixels);
    }
    if (rc) w->failed = 1;
    return rc ? -1 : 0;
}

static int write_attr(prep_writer *w, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t acpl = H5Pcreate(H5P_ATTRIBUTE_CREATE);
    hid_t a = space >= 0 && acpl >= 0 ? H5Acreate2(w->file, name, type, space, acpl, H5P_DEFAULT) : -1;
    int rc = a >= 0 && H5Awrite(a, type, value) >= 0 ? 0 : llava_fail("HDF5: cannot write attribute %s", name);
    if (a >= 0) H5Aclose(a);
    if (acpl >= 0) H5Pclose(acpl);
    if (space >= 0) H5Sclose(space);
    return rc;
}

int prep_writer_attr_str(prep_writer *w, const char *name, const char *value) {
    if (!value) value = "";
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(value) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return llava_fail("HDF5: cannot make the type of attribute %s", name);
    }
    int rc = write_attr(w, name, t, value);
    H5Tclose(t);
    return rc;
}

int prep_writer_attr_int(prep_writer *w, const char *name, int64_t value) {
    return write_attr(w, name, H5T_NATIVE_INT64, &value);
}

int prep_writer_close(prep_writer *w) {
    int rc = w->failed ? -1 : 0;
    for (int i = 0; i < w->n_cols && rc == 0; i++) rc = col_flush(&w->col[i]);
    for (int i = 0; i < w->n_cols; i++) col_close(&w->col[i]);
    if (w->pix >= 0) H5Dclose(w->pix);
    if (H5Fclose(w->file) < 0 && rc == 0) rc = llava_fail("HDF5: cannot close the file (disk full?)");
    free(w);
    return rc;
}

void prep_writer_abort(prep_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_cols; i++) col_close(&w->col[i]);
    if (w->pix >= 0) H5Dclose(w->pix);
    if (w->file >= 0) H5Fclose(w->file);
    free(w);
}
