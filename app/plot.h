// `llava plot`: a run's metrics.jsonl as an SVG picture of loss and learning rate.
#ifndef LLAVA_APP_PLOT_H
#define LLAVA_APP_PLOT_H

// Reads out_dir/metrics.jsonl and writes svg_path. *n_points (may be NULL) gets the lines plotted.
int plot_metrics(const char *out_dir, const char *svg_path, int *n_points);
// Several runs' metrics.jsonl overlaid in one SVG, one colour per run (labels[r] in the legend):
// training loss with the eval loss dashed, learning rate, tokens/s, against the step. A path ending in
// ".png" gets the same picture as pixels (PNG).
int plot_runs(const char *const *dirs, const char *const *labels, int n_runs, const char *svg_path);

#endif
