// `llava plot OUT_DIR`: metrics.jsonl drawn as an SVG (loss, the eval loss where a line has one, and
// the learning rate against the step)
// that any browser opens. Non-finite losses (skipped steps) are left out of the line and marked.
#include "plot.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "data/image.h"

typedef struct {
    double *step, *loss, *lr, *eval, *tps;  // eval: the eval loss where the line has one (NaN elsewhere)
    int n, cap, n_eval;
} series;

static int read_metrics(const char *path, series *s) {
    size_t len;
    char *text = read_file(path, (size_t)1 << 31, &len);
    if (!text) return -1;
    memset(s, 0, sizeof *s);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;  // a torn last line
        const cJSON *st = cJSON_GetObjectItem(j, "step"), *lo = cJSON_GetObjectItem(j, "loss"),
                    *lr = cJSON_GetObjectItem(j, "lr"), *ev = cJSON_GetObjectItem(j, "eval_loss"),
                    *tp = cJSON_GetObjectItem(j, "tokens_per_s");
        if (cJSON_IsNumber(st)) {
            if (s->n == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 256;
                s->step = xrealloc(s->step, sizeof(double) * (size_t)s->cap);
                s->loss = xrealloc(s->loss, sizeof(double) * (size_t)s->cap);
                s->lr = xrealloc(s->lr, sizeof(double) * (size_t)s->cap);
                s->eval = xrealloc(s->eval, sizeof(double) * (size_t)s->cap);
                s->tps = xrealloc(s->tps, sizeof(double) * (size_t)s->cap);
            }
            s->step[s->n] = st->valuedouble;
            // A skipped step's loss is null.
            s->loss[s->n] = cJSON_IsNumber(lo) ? lo->valuedouble : NAN;
            s->lr[s->n] = cJSON_IsNumber(lr) ? lr->valuedouble : NAN;
            s->eval[s->n] = cJSON_IsNumber(ev) ? ev->valuedouble : NAN;
            s->tps[s->n] = cJSON_IsNumber(tp) ? tp->valuedouble : NAN;
            s->n_eval += cJSON_IsNumber(ev);
            s->n++;
        }
        cJSON_Delete(j);
    }
    free(text);
    if (s->n == 0) return llava_fail("%s: no metrics lines", path);
    return 0;
}

static void range(const double *v, int n, double *lo, double *hi) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            if (v[i] < *lo) *lo = v[i];
            if (v[i] > *hi) *hi = v[i];
        }
    if (!isfinite(*lo)) *lo = 0, *hi = 1;
    if (*hi - *lo < 1e-12) *hi = *lo + (fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1.0);
}

// One panel: a frame, tick labels at min/mid/max, and the polyline.
static void panel(FILE *f, const char *title, const series *s, const double *v, const double *v2, int y0,
                  const char *color) {
    const int x0 = 70, w = 620, h = 200;
    double smin, smax, vmin, vmax;
    range(s->step, s->n, &smin, &smax);
    range(v, s->n, &vmin, &vmax);
    if (v2) {  // the overlay shares the axis
        double lo2, hi2;
        range(v2, s->n, &lo2, &hi2);
        int any = 0;
        for (int i = 0; i < s->n; i++) any |= isfinite(v2[i]);
        if (any) vmin = lo2 < vmin ? lo2 : vmin, vmax = hi2 > vmax ? hi2 : vmax;
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", x0, y0 - 8, title);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", x0, y0, w, h);
    for (int k = 0; k <= 2; k++) {
        double val = vmin + (vmax - vmin) * k / 2.0;
        int y = y0 + h - (int)lround(h * k / 2.0);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n", x0 - 6, y + 4, val);
        double st = smin + (smax - smin) * k / 2.0;
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.0f</text>\n",
                x0 + (int)lround(w * k / 2.0), y0 + h + 16, st);
    }
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    for (int i = 0; i < s->n; i++) {
        if (!isfinite(v[i])) continue;
        double x = x0 + w * (s->step[i] - smin) / (smax - smin), y = y0 + h - h * (v[i] - vmin) / (vmax - vmin);
        fprintf(f, "%.2f,%.2f ", x, y);
    }
    fprintf(f, "\"/>\n");
    if (v2) {  // the eval loss: a dashed line through its points, and the points
        fprintf(f,
                "<polyline fill=\"none\" stroke=\"#2a9d3a\" stroke-width=\"1.5\" stroke-dasharray=\"4,3\" points=\"");
        for (int i = 0; i < s->n; i++)
            if (isfinite(v2[i]))
                fprintf(f, "%.2f,%.2f ", x0 + w * (s->step[i] - smin) / (smax - smin),
                        y0 + h - h * (v2[i] - vmin) / (vmax - vmin));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < s->n; i++)
            if (isfinite(v2[i]))
                fprintf(f, "<circle class=\"eval\" cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"#2a9d3a\"/>\n",
                        x0 + w * (s->step[i] - smin) / (smax - smin), y0 + h - h * (v2[i] - vmin) / (vmax - vmin));
        fprintf(f,
                "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#2a9d3a\" text-anchor=\"end\">eval loss "
                "(dashed)</text>\n",
                x0 + w, y0 - 8);
    }
    for (int i = 0; i < s->n; i++)
        if (!isfinite(v[i]))
            fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#d33\" stroke-dasharray=\"2,2\"/>\n",
                    x0 + w * (s->step[i] - smin) / (smax - smin), y0, x0 + w * (s->step[i] - smin) / (smax - smin),
                    y0 + h);
}

int plot_metrics(const char *out_dir, const char *svg_path, int *n_points) {
    char *mp = path_join(out_dir, "metrics.jsonl");
    series s;
    int rc = read_metrics(mp, &s);
    free(mp);
    if (rc != 0) return -1;
    char *tmp = xasprintf("%s.tmp", svg_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(tmp);
        free(s.step), free(s.loss), free(s.lr), free(s.eval), free(s.tps);
        return llava_fail("%s: cannot create", svg_path);
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"540\" font-family=\"sans-serif\">\n");
    fprintf(f, "<rect width=\"720\" height=\"540\" fill=\"white\"/>\n");
    panel(f, "training loss", &s, s.loss, s.n_eval ? s.eval : NULL, 40, "#1f6fd1");
    panel(f, "learning rate", &s, s.lr, NULL, 300, "#d1801f");
    fprintf(f, "<text x=\"380\" y=\"530\" font-size=\"12\" text-anchor=\"middle\">optimizer step (%d logged)</text>\n",
            s.n);
    fprintf(f, "</svg>\n");
    rc = fclose(f) == 0 ? 0 : llava_fail("%s: write failed", svg_path);
    if (rc == 0 && rename(tmp, svg_path) != 0) rc = llava_fail("%s: rename failed", svg_path);
    if (n_points) *n_points = s.n;
    free(tmp);
    free(s.step);
    free(s.loss);
    free(s.lr);
    free(s.eval);
    free(s.tps);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Several runs overlaid: one colour per run, four panels (loss with the eval loss dashed, learning
// rate, tokens/s), the steps of every run on one axis.

static const char *RUN_COLORS[] = {"#1f6fd1", "#d1401f", "#2a9d3a", "#8a3ad1",
                                   "#d19a1f", "#1fb5c4", "#c41f8a", "#555555"};

static void series_free(series *s) { free(s->step), free(s->loss), free(s->lr), free(s->eval), free(s->tps); }

// The range of one quantity over every run (finite values only).
static void range_all(const series *runs, int n_runs, size_t off, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int r = 0; r < n_runs; r++) {
        const double *v = *(double *const *)((const char *)&runs[r] + off);
        double a, b;
        range(v, runs[r].n, &a, &b);
        int any = 0;
        for (int i = 0; i < runs[r].n; i++) any |= isfinite(v[i]);
        if (!any) continue;
        if (a < *lo) *lo = a;
        if (b > *hi) *hi = b;
    }
    if (!isfinite(*lo)) *lo = 0, *hi = 1;
    if (*hi - *lo < 1e-12) *hi = *lo + (fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1.0);
}

static void overlay_panel(FILE *f, const char *title, const series *runs, int n_runs, size_t off, size_t off2, int y0,
                          double smin, double smax) {
    const int x0 = 70, w = 620, h = 160;
    double vmin, vmax;
    range_all(runs, n_runs, off, &vmin, &vmax);
    if (off2) {
        double a, b;
        range_all(runs, n_runs, off2, &a, &b);
        int any = 0;
        for (int r = 0; r < n_runs; r++)
            for (int i = 0; i < runs[r].n; i++) any |= isfinite((*(double *const *)((const char *)&runs[r] + off2))[i]);
        if (any) vmin = a < vmin ? a : vmin, vmax = b > vmax ? b : vmax;
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", x0, y0 - 8, title);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", x0, y0, w, h);
    for (int k = 0; k <= 2; k++) {
        int y = y0 + h - (int)lround(h * k / 2.0);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n", x0 - 6, y + 4,
                vmin + (vmax - vmin) * k / 2.0);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.0f</text>\n",
                x0 + (int)lround(w * k / 2.0), y0 + h + 16, smin + (smax - smin) * k / 2.0);
    }
    for (int pass = 0; pass < (off2 ? 2 : 1); pass++)
        for (int r = 0; r < n_runs; r++) {
            const double *v = *(double *const *)((const char *)&runs[r] + (pass ? off2 : off));
            fprintf(f, "<polyline class=\"run%d%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"", r,
                    pass ? " eval" : "", RUN_COLORS[r % 8], pass ? " stroke-dasharray=\"4,3\"" : "");
            for (int i = 0; i < runs[r].n; i++)
                if (isfinite(v[i]))
                    fprintf(f, "%.2f,%.2f ", x0 + w * (runs[r].step[i] - smin) / (smax - smin),
                            y0 + h - h * (v[i] - vmin) / (vmax - vmin));
            fprintf(f, "\"/>\n");
        }
}

// ---------------------------------------------------------------------------------------------
// PNG: the same overlay drawn into pixels (lines, frames, a 3x5 pixel font scaled 2x for the
// labels), written with libpng. Characters the font lacks print as '?'.

typedef struct {
    int w, h;
    uint8_t *px;
} canvas;

static void put_px(canvas *c, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + 3 * ((size_t)y * c->w + x), rgb, 3);
}

static void hex_rgb(const char *hex, uint8_t rgb[3]) {
    unsigned v = (unsigned)strtoul(hex + 1, NULL, 16);
    rgb[0] = (uint8_t)(v >> 16), rgb[1] = (uint8_t)(v >> 8), rgb[2] = (uint8_t)v;
}

// A line 2 pixels wide (Bresenham); with `dash`, 4 pixels on and 3 off along the longer axis.
static void draw_line(canvas *c, double x0, double y0, double x1, double y1, const uint8_t rgb[3], int dash) {
    int ax = (int)lround(x0), ay = (int)lround(y0), bx = (int)lround(x1), by = (int)lround(y1);
    int dx = abs(bx - ax), dy = -abs(by - ay), sx = ax < bx ? 1 : -1, sy = ay < by ? 1 : -1, err = dx + dy, k = 0;
    for (;;) {
        if (!dash || k % 7 < 4) {
            put_px(c, ax, ay, rgb);
            put_px(c, ax + (dx > -dy ? 0 : 1), ay + (dx > -dy ? 1 : 0), rgb);
        }
        k++;
        if (ax == bx && ay == by) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, ax += sx;
        if (e2 <= dx) err += dx, ay += sy;
    }
}

// 3x5 glyphs, rows top to bottom, 3 bits each (4 = left column).
static const struct {
    char ch;
    uint8_t rows[5];
} GLYPHS[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'a', {2, 5, 7, 5, 5}}, {'b', {6, 5, 6, 5, 6}},
    {'c', {3, 4, 4, 4, 3}}, {'d', {6, 5, 5, 5, 6}}, {'e', {7, 4, 6, 4, 7}}, {'f', {7, 4, 6, 4, 4}},
    {'g', {3, 4, 5, 5, 3}}, {'h', {5, 5, 7, 5, 5}}, {'i', {7, 2, 2, 2, 7}}, {'j', {1, 1, 1, 5, 2}},
    {'k', {5, 5, 6, 5, 5}}, {'l', {4, 4, 4, 4, 7}}, {'m', {5, 7, 7, 5, 5}}, {'n', {6, 5, 5, 5, 5}},
    {'o', {2, 5, 5, 5, 2}}, {'p', {6, 5, 6, 4, 4}}, {'q', {2, 5, 5, 6, 3}}, {'r', {6, 5, 6, 5, 5}},
    {'s', {3, 4, 2, 1, 6}}, {'t', {7, 2, 2, 2, 2}}, {'u', {5, 5, 5, 5, 7}}, {'v', {5, 5, 5, 5, 2}},
    {'w', {5, 5, 7, 7, 5}}, {'x', {5, 5, 2, 5, 5}}, {'y', {5, 5, 2, 2, 2}}, {'z', {7, 1, 2, 4, 7}},
    {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}}, {'+', {0, 2, 7, 2, 0}}, {'(', {1, 2, 2, 2, 1}},
    {')', {4, 2, 2, 2, 4}}, {'/', {1, 1, 2, 4, 4}}, {':', {0, 2, 0, 2, 0}}, {'_', {0, 0, 0, 0, 7}},
    {',', {0, 0, 0, 2, 4}}, {'%', {5, 1, 2, 4, 5}}, {'?', {7, 1, 2, 0, 2}}, {' ', {0, 0, 0, 0, 0}},
};

// Text at (x, y) = its top left, 2x scale (8 pixels per character); align 0 left, 1 centre, 2 right.
static void draw_text(canvas *c, int x, int y, const char *text, int align, const uint8_t rgb[3]) {
    int n = (int)strlen(text);
    if (align == 1) x -= n * 4;
    if (align == 2) x -= n * 8;
    if (x < 1) x = 1;  // a long tick label starts at the edge rather than off it
    for (int i = 0; i < n; i++) {
        char ch = (char)tolower((unsigned char)text[i]);
        const uint8_t *rows = GLYPHS[46].rows;  // '?'
        for (size_t g = 0; g < sizeof GLYPHS / sizeof GLYPHS[0]; g++)
            if (GLYPHS[g].ch == ch) rows = GLYPHS[g].rows;
        for (int r = 0; r < 5; r++)
            for (int b = 0; b < 3; b++)
                if (rows[r] >> (2 - b) & 1)
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) put_px(c, x + i * 8 + b * 2 + dx, y + r * 2 + dy, rgb);
    }
}

static void raster_panel(canvas *c, const char *title, const series *runs, int n_runs, size_t off, size_t off2, int y0,
                         double smin, double smax) {
    const int x0 = 70, w = 620, h = 160;
    static const uint8_t BLACK[3] = {0, 0, 0}, GREY[3] = {136, 136, 136};
    double vmin, vmax;
    range_all(runs, n_runs, off, &vmin, &vmax);
    if (off2) {
        double a, b;
        int any = 0;
        range_all(runs, n_runs, off2, &a, &b);
        for (int r = 0; r < n_runs; r++)
            for (int i = 0; i < runs[r].n; i++) any |= isfinite((*(double *const *)((const char *)&runs[r] + off2))[i]);
        if (any) vmin = a < vmin ? a : vmin, vmax = b > vmax ? b : vmax;
    }
    draw_text(c, x0, y0 - 16, title, 0, BLACK);
    draw_line(c, x0, y0, x0 + w, y0, GREY, 0), draw_line(c, x0, y0 + h, x0 + w, y0 + h, GREY, 0);
    draw_line(c, x0, y0, x0, y0 + h, GREY, 0), draw_line(c, x0 + w, y0, x0 + w, y0 + h, GREY, 0);
    char lab[32];
    for (int k = 0; k <= 2; k++) {
        int y = y0 + h - (int)lround(h * k / 2.0);
        snprintf(lab, sizeof lab, "%.4g", vmin + (vmax - vmin) * k / 2.0);
        draw_text(c, x0 - 6, y - 5, lab, 2, BLACK);
        snprintf(lab, sizeof lab, "%.0f", smin + (smax - smin) * k / 2.0);
        draw_text(c, x0 + (int)lround(w * k / 2.0), y0 + h + 6, lab, 1, BLACK);
    }
    for (int pass = 0; pass < (off2 ? 2 : 1); pass++)
        for (int r = 0; r < n_runs; r++) {
            const double *v = *(double *const *)((const char *)&runs[r] + (pass ? off2 : off));
            uint8_t rgb[3];
            hex_rgb(RUN_COLORS[r % 8], rgb);
            double px = NAN, py = NAN;
            for (int i = 0; i < runs[r].n; i++) {
                if (!isfinite(v[i])) continue;
                double x = x0 + w * (runs[r].step[i] - smin) / (smax - smin),
                       y = y0 + h - h * (v[i] - vmin) / (vmax - vmin);
                if (isfinite(px)) draw_line(c, px, py, x, y, rgb, pass);
                else put_px(c, (int)lround(x), (int)lround(y), rgb);
                px = x, py = y;
            }
        }
}

static int raster_runs(const series *runs, const char *const *labels, int n_runs, double smin, double smax,
                       const char *png_path) {
    int H = 40 + 3 * 210 + 30 + 18 * n_runs;
    canvas c = {720, H, xmalloc((size_t)720 * H * 3)};
    memset(c.px, 255, (size_t)720 * H * 3);
    raster_panel(&c, "training loss (eval loss dashed)", runs, n_runs, offsetof(series, loss), offsetof(series, eval),
                 40, smin, smax);
    raster_panel(&c, "learning rate", runs, n_runs, offsetof(series, lr), 0, 250, smin, smax);
    raster_panel(&c, "tokens/s", runs, n_runs, offsetof(series, tps), 0, 460, smin, smax);
    static const uint8_t BLACK[3] = {0, 0, 0};
    for (int r = 0; r < n_runs; r++) {
        int y = 40 + 3 * 210 + 10 + 18 * r;
        uint8_t rgb[3];
        hex_rgb(RUN_COLORS[r % 8], rgb);
        for (int dy = -4; dy < 0; dy++)
            for (int dx = 0; dx < 14; dx++) put_px(&c, 70 + dx, y + dy, rgb);
        char lab[160];
        snprintf(lab, sizeof lab, "%.120s (%d steps)", labels[r], runs[r].n);
        draw_text(&c, 90, y - 8, lab, 0, BLACK);
    }
    image_u8 im = {c.w, c.h, c.px};
    char *tmp = xasprintf("%s.tmp", png_path);
    int rc = image_write_png(tmp, &im);
    if (rc == 0 && rename(tmp, png_path) != 0) rc = llava_fail("%s: rename failed", png_path);
    free(tmp);
    free(c.px);
    return rc;
}

int plot_runs(const char *const *dirs, const char *const *labels, int n_runs, const char *svg_path) {
    if (n_runs < 1) return llava_fail("plot: no run folders");
    series *runs = xcalloc((size_t)n_runs, sizeof(series));
    int rc = 0;
    for (int r = 0; r < n_runs && rc == 0; r++) {
        char *mp = path_join(dirs[r], "metrics.jsonl");
        rc = read_metrics(mp, &runs[r]);
        free(mp);
    }
    double smin = INFINITY, smax = -INFINITY;
    for (int r = 0; r < n_runs && rc == 0; r++)
        for (int i = 0; i < runs[r].n; i++) {
            if (runs[r].step[i] < smin) smin = runs[r].step[i];
            if (runs[r].step[i] > smax) smax = runs[r].step[i];
        }
    if (rc == 0 && !(smax > smin)) smax = smin + 1;
    size_t pl = strlen(svg_path);
    if (rc == 0 && pl > 4 && strcasecmp(svg_path + pl - 4, ".png") == 0) {  // pixels instead of SVG
        rc = raster_runs(runs, labels, n_runs, smin, smax, svg_path);
        for (int r = 0; r < n_runs; r++) series_free(&runs[r]);
        free(runs);
        return rc;
    }
    FILE *f = NULL;
    char *tmp = xasprintf("%s.tmp", svg_path);
    if (rc == 0 && !(f = fopen(tmp, "w"))) rc = llava_fail("%s: cannot create", svg_path);
    if (rc == 0) {
        int H = 40 + 3 * 210 + 30 + 18 * n_runs;
        fprintf(f,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"%d\" font-family=\"sans-serif\">\n",
                H);
        fprintf(f, "<rect width=\"720\" height=\"%d\" fill=\"white\"/>\n", H);
        overlay_panel(f, "training loss (eval loss dashed)", runs, n_runs, offsetof(series, loss),
                      offsetof(series, eval), 40, smin, smax);
        overlay_panel(f, "learning rate", runs, n_runs, offsetof(series, lr), 0, 250, smin, smax);
        overlay_panel(f, "tokens/s", runs, n_runs, offsetof(series, tps), 0, 460, smin, smax);
        for (int r = 0; r < n_runs; r++) {
            int y = 40 + 3 * 210 + 10 + 18 * r;
            fprintf(f, "<rect x=\"70\" y=\"%d\" width=\"14\" height=\"4\" fill=\"%s\"/>\n", y - 4, RUN_COLORS[r % 8]);
            fprintf(f, "<text class=\"legend\" x=\"90\" y=\"%d\" font-size=\"12\">", y);
            for (const char *c = labels[r]; *c; c++) {  // the label, escaped for XML
                if (*c == '<') fputs("&lt;", f);
                else if (*c == '>') fputs("&gt;", f);
                else if (*c == '&') fputs("&amp;", f);
                else fputc(*c, f);
            }
            fprintf(f, " (%d steps)</text>\n", runs[r].n);
        }
        fprintf(f, "</svg>\n");
        rc = fclose(f) == 0 ? 0 : llava_fail("%s: write failed", svg_path);
        if (rc == 0 && rename(tmp, svg_path) != 0) rc = llava_fail("%s: rename failed", svg_path);
    }
    free(tmp);
    for (int r = 0; r < n_runs; r++) series_free(&runs[r]);
    free(runs);
    return rc;
}
