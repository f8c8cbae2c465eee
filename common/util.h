// Small pieces every room uses: error values, checked allocation, whole-file reads, atomic writes.
#ifndef LLAVA_COMMON_UTIL_H
#define LLAVA_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// Errors are values (ARCHITECTURE.md decision 7): a failing function records one message for its
// thread and returns -1 (or NULL). The caller that decides to give up prints llava_errmsg().
#define LLAVA_ERRMSG_MAX 1024
int llava_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prefixes the current message with more context ("while loading X: <old message>").
int llava_fail_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *llava_errmsg(void);
void llava_clear_error(void);

// A precondition of a function whose callers are code, not input (an op's shapes): checked on every
// build (NDEBUG does not remove it), and a violation is a bug, so it prints where and what, and
// aborts. Input errors are values (above), never this.
#define LLAVA_REQUIRE(cond, ...)                                                                                       \
    do {                                                                                                               \
        if (!(cond)) llava_require_failed(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)
void llava_require_failed(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

// Allocation failures are the one thing we do not turn into values: print and exit.
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Reads a whole file into a NUL-terminated buffer (*len excludes the NUL). Refuses files larger than
// max_bytes so that untrusted inputs cannot exhaust memory.
char *read_file(const char *path, size_t max_bytes, size_t *len);
int file_exists(const char *path);
int dir_exists(const char *path);
int mkdir_p(const char *path);
// Removes a file or a whole directory tree (rm -rf); a missing path is fine. 0 or -1.
int remove_tree(const char *path);
// Joins a directory and a file name with exactly one '/'.
char *path_join(const char *dir, const char *name);
// The directory part of a path ("a/b/c.json" -> "a/b", "c.json" -> ".").
char *path_dirname(const char *path);

// Writes `len` bytes to `path` so that a reader sees either the old file or the whole new one:
// temp file in the same directory, fsync, rename, fsync of the directory.
int write_file_atomic(const char *path, const void *data, size_t len);
int fsync_dir(const char *dir);

// Checked size arithmetic for untrusted shapes: returns -1 on overflow.
int mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out);

// Thousands separators for counts a person reads ("6,738,415,616").
const char *fmt_count(uint64_t n, char buf[32]);
// A duration a person reads: "1h02m", "3m05s", "12s"; "?" for a negative, non-finite or absurd one.
const char *fmt_duration(double seconds, char buf[32]);

// 1 when [s, s+n) is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
int utf8_valid(const uint8_t *s, size_t n);

#ifdef __cplusplus
}
#endif

#endif
