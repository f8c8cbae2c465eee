// The Python str operations the official VQA-family scorers use, re-stated on code points for the
// two interpreters they run on: Python 3.10 (LLaVA's m4c_evaluator.py, convert_gqa_for_eval.py) and
// Python 2.7 (GT-Vision-Lab/VQA's vqaEval.py). The character tables are read off both interpreters
// (eval/pyunicode_tables.h, tools/reference/eval/make_pyunicode_tables.py). Also the room's one
// writer of Python's json.dumps text (strings with ensure_ascii, ints, floats, values read from
// JSON), used by every scorer that writes a file the official scripts would have written.
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "data/strbuf.h"

typedef enum { PYU3, PYU2 } pyu_version;

// A string as Python holds it: code points.
typedef struct {
    uint32_t *c;
    size_t n, cap;
} pyustr;

// UTF-8 to code points (a byte that is not UTF-8 becomes U+FFFD) and back.
void pyustr_set(pyustr *s, const char *utf8);
char *pyustr_utf8(const pyustr *s);
void pyustr_push(pyustr *s, uint32_t c);
void pyustr_free(pyustr *s);

int pyu_isspace(pyu_version v, uint32_t c);   // str.isspace(): split() and strip() without arguments
int pyu_re_digit(pyu_version v, uint32_t c);  // re's \d (Python 2: a pattern compiled without re.UNICODE)

void pyu_lower(pyu_version v, pyustr *s);  // str.lower(), in place (Python 3: U+0130 and Final_Sigma too)
void pyu_strip(pyu_version v, pyustr *s);  // str.strip()
// str.replace(old, new) for one code point old and a new of 0 or 1 code point (new = 0: removed).
void pyu_replace_char(pyustr *s, uint32_t old, uint32_t new_c);
int pyu_contains(const pyustr *s, const uint32_t *needle, size_t n);  // `needle in s`

// The Python 3 spelling of str.lower() on UTF-8, and of str.rstrip(chars) for ASCII chars.
char *pyu_lower3_utf8(const char *s);
char *pyu_rstrip_ascii(const char *s, const char *chars);

// json.dump's text for a str (ensure_ascii: "\u00e9", surrogate pairs above U+FFFF) and for an
// integral number, appended to b.
void pyu_json_string(strbuf *b, const char *utf8);
void pyu_json_int(strbuf *b, double v);
// json.dumps's text for a float (Python's repr: the shortest decimal that reads back, "8.0", "0.0001",
// "1e+16", "1e-05"; NaN, Infinity), and for a value read from a JSON file: whole numbers as ints
// (what they were in the file, as far as cJSON can tell), others as floats, ", " and ": " between
// items as json.dumps writes them without indent.
void pyu_json_float(strbuf *b, double x);
void pyu_json_value(strbuf *b, const cJSON *v);

// Python 2.7's round(x, n): the correctly rounded decimal, halfway cases away from zero.
double pyu_round2_py2(double x, int n);
