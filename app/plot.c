// `llava plot OUT_DIR`: metrics.jsonl drawn as an SVG (loss, the eval loss where a line has one, and
// the learning rate against the step)
// that any browser opens. Non-finite losses (skipped steps) are left out of the line and marked.
#include "plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

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
