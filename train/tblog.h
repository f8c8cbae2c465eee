// TensorBoard event files (log.report_to "tensorboard"), written without TensorFlow: the TFRecord
// framing of each record (little-endian uint64 length, masked CRC-32C of those 8 bytes, the data,
// masked CRC-32C of the data; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8) around a tf.Event
// protobuf encoded by hand:
//
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
//
// as proto3 serialises them (fields in number order, zero values left out), so the bytes equal
// what protobuf's own serialiser gives for the same Event (tools/reference/make_tensorboard_golden.py
// checks that with the tensorboard package). A file starts with the record file_version
// "brain.Event:2"; each logged step is then one Event holding every scalar of the step.
//
// The trainer writes into <output_dir>/runs/ (tblog_open), one new file per launch; TensorBoard
// reads every event file of a folder as one run and merges them by step. A resumed run first cuts
// the events past its checkpoint's step out of the earlier files (tblog_truncate), as it does with
// metrics.jsonl, so the steps logged after the last checkpoint of a killed run are not shown twice.
#ifndef LLAVA_TRAIN_TBLOG_H
#define LLAVA_TRAIN_TBLOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct tblog tblog;

// Creates `dir` if needed and a new file events.out.tfevents.<unix time>.<host> in it (".1", ".2",
// ... appended when that name is taken), starting with the file_version record. wall_time < 0:
// now; host NULL: gethostname(). NULL with llava_errmsg() on failure.
tblog *tblog_open(const char *dir, double wall_time, const char *host);
const char *tblog_path(const tblog *w);
// One Event at `step` holding the n scalars tags[i] = (float)values[i], written and flushed
// (fflush: to the kernel, not fsync). wall_time < 0: now. 0, or -1 with llava_errmsg().
int tblog_scalars(tblog *w, int64_t step, double wall_time, const char *const *tags, const double *values, int n);
// The same for metrics under their metrics.jsonl names (tblog_tag maps them); a value that is not
// finite (null in metrics.jsonl: a skipped step's loss) is left out. An Event is written even when
// every value is left out, so that each logged step shows in the file.
int tblog_metrics(tblog *w, int64_t step, double wall_time, const char *const *keys, const double *values, int n);
// The TensorBoard tag of a metrics.jsonl key, by the HF Trainer's rule (its TensorBoardCallback's
// rewrite_logs): "eval_X" -> "eval/X", anything else "train/X"; our "lr" is HF's "learning_rate".
// Writes at most cap bytes (NUL included).
void tblog_tag(const char *key, char *tag, size_t cap);
// fsync of the file (before a checkpoint, as metrics.jsonl). 0 or -1.
int tblog_sync(tblog *w);
// Flushes, closes and frees; 0, or -1 when the last writes failed. NULL is fine.
int tblog_close(tblog *w);

// For a run resumed at `step`: rewrites each event file of `dir` (events.out.tfevents.*) without
// its Events past `step`, and without a torn or corrupt tail (a record whose length or CRC does not
// check, and all after it: what a killed writer leaves). A file left with no scalars is removed. A
// missing folder is fine. Files are replaced atomically; one that needs no change is not written.
// 0, or -1 with llava_errmsg().
int tblog_truncate(const char *dir, int64_t step);

// The encoding, for tests: the masked CRC-32C of TFRecord, and one framed record of `n` bytes of
// `data` (n + 16 bytes, written to `out`).
uint32_t tblog_masked_crc(const void *data, size_t n);
void tblog_frame(const void *data, size_t n, uint8_t *out);

#endif
