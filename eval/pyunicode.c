// Python's str semantics on code points (eval/pyunicode.h).
#include "pyunicode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

typedef struct {
    uint32_t lo, hi;
    int stride;
    int32_t delta;
} py_case_run;
typedef struct {
    uint32_t lo, hi;
} py_range;

#include "pyunicode_tables.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int in_ranges(const py_range *r, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static uint32_t lower_simple(const py_case_run *r, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return (c - r[mid].lo) % (uint32_t)r[mid].stride == 0 ? (uint32_t)((int64_t)c + r[mid].delta) : c;
    }
    return c;
}

void pyustr_push(pyustr *s, uint32_t c) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 32;
        s->c = xrealloc(s->c, s->cap * sizeof *s->c);
    }
    s->c[s->n++] = c;
}

void pyustr_free(pyustr *s) {
    free(s->c);
    s->c = NULL;
    s->n = s->cap = 0;
}

void pyustr_set(pyustr *s, const char *u) {
    s->n = 0;
    const unsigned char *p = (const unsigned char *)u;
    while (*p) {
        uint32_t c = *p;
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || strnlen((const char *)p, (size_t)len) < (size_t)len || !utf8_valid(p, (size_t)len)) {
            pyustr_push(s, 0xFFFD);
            p++;
            continue;
        }
        if (len == 2) c = ((c & 0x1F) << 6) | (p[1] & 0x3F);
        else if (len == 3) c = ((c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        else if (len == 4)
            c = ((c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
        pyustr_push(s, c);
        p += len;
    }
}

static void put_utf8(strbuf *b, uint32_t c) {
    char t[4];
    size_t n;
    if (c < 0x80) t[0] = (char)c, n = 1;
    else if (c < 0x800) t[0] = (char)(0xC0 | (c >> 6)), t[1] = (char)(0x80 | (c & 0x3F)), n = 2;
    else if (c < 0x10000)
        t[0] = (char)(0xE0 | (c >> 12)), t[1] = (char)(0x80 | ((c >> 6) & 0x3F)), t[2] = (char)(0x80 | (c & 0x3F)),
        n = 3;
    else
        t[0] = (char)(0xF0 | (c >> 18)), t[1] = (char)(0x80 | ((c >> 12) & 0x3F)),
        t[2] = (char)(0x80 | ((c >> 6) & 0x3F)), t[3] = (char)(0x80 | (c & 0x3F)), n = 4;
    sb_put(b, t, n);
}

char *pyustr_utf8(const pyustr *s) {
    strbuf b = {0};
    sb_put(&b, "", 0);
    for (size_t i = 0; i < s->n; i++) put_utf8(&b, s->c[i]);
    return b.p;
}

int pyu_isspace(pyu_version v, uint32_t c) {
    return v == PYU3 ? in_ranges(PY3_SPACE, COUNT(PY3_SPACE), c) : in_ranges(PY2_SPACE, COUNT(PY2_SPACE), c);
}

int pyu_re_digit(pyu_version v, uint32_t c) {
    return v == PYU3 ? in_ranges(PY3_DECIMAL, COUNT(PY3_DECIMAL), c) : (c >= '0' && c <= '9');
}

// Python 3's capital sigma: final (U+03C2) when a cased character precedes it and none follows,
// case-ignorable characters skipped both ways; else U+03C3.
static uint32_t pyu_sigma3(const pyustr *s, size_t i) {
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > 0) {
        c = s->c[--j];
        if (!in_ranges(PY3_CASE_IGNORABLE, COUNT(PY3_CASE_IGNORABLE), c)) {
            found = 1;
            break;
        }
    }
    int final = found && in_ranges(PY3_CASED, COUNT(PY3_CASED), c);
    if (final) {
        for (j = i + 1; j < s->n; j++) {
            c = s->c[j];
            if (!in_ranges(PY3_CASE_IGNORABLE, COUNT(PY3_CASE_IGNORABLE), c)) break;
        }
        final = j == s->n || !in_ranges(PY3_CASED, COUNT(PY3_CASED), c);
    }
    return final ? 0x3C2 : 0x3C3;
}

void pyu_lower(pyu_version v, pyustr *s) {
    if (v == PYU2) {
        for (size_t i = 0; i < s->n; i++) s->c[i] = lower_simple(PY2_LOWER, COUNT(PY2_LOWER), s->c[i]);
        return;
    }
    pyustr o = {0};
    for (size_t i = 0; i < s->n; i++) {
        uint32_t c = s->c[i];
        if (c == 0x130) {
            pyustr_push(&o, 'i');
            pyustr_push(&o, 0x307);
        } else if (c == 0x3A3) {
            pyustr_push(&o, pyu_sigma3(s, i));  // the context is the original string
        } else {
            pyustr_push(&o, lower_simple(PY3_LOWER, COUNT(PY3_LOWER), c));
        }
    }
    pyustr_free(s);
    *s = o;
}

void pyu_strip(pyu_version v, pyustr *s) {
    size_t a = 0, b = s->n;
    while (a < b && pyu_isspace(v, s->c[a])) a++;
    while (b > a && pyu_isspace(v, s->c[b - 1])) b--;
    if (a > 0 && b > a) memmove(s->c, s->c + a, (b - a) * sizeof *s->c);
    s->n = b - a;
}

void pyu_replace_char(pyustr *s, uint32_t old, uint32_t new_c) {
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->c[i] != old) s->c[k++] = s->c[i];
        else if (new_c) s->c[k++] = new_c;
    }
    s->n = k;
}

int pyu_contains(const pyustr *s, const uint32_t *needle, size_t n) {
    if (n == 0) return 1;
    for (size_t i = 0; i + n <= s->n; i++)
        if (memcmp(s->c + i, needle, n * sizeof *needle) == 0) return 1;
    return 0;
}

char *pyu_lower3_utf8(const char *u) {
    pyustr s = {0};
    pyustr_set(&s, u);
    pyu_lower(PYU3, &s);
    char *o = pyustr_utf8(&s);
    pyustr_free(&s);
    return o;
}

char *pyu_rstrip_ascii(const char *u, const char *chars) {
    size_t n = strlen(u);
    while (n > 0 && strchr(chars, u[n - 1]) && u[n - 1]) n--;
    char *o = xmalloc(n + 1);
    memcpy(o, u, n);
    o[n] = 0;
    return o;
}

void pyu_json_string(strbuf *b, const char *u) {
    pyustr s = {0};
    pyustr_set(&s, u);
    sb_puts(b, "\"");
    char t[16];
    for (size_t i = 0; i < s.n; i++) {
        uint32_t c = s.c[i];
        switch (c) {
        case '"': sb_puts(b, "\\\""); continue;
        case '\\': sb_puts(b, "\\\\"); continue;
        case '\n': sb_puts(b, "\\n"); continue;
        case '\r': sb_puts(b, "\\r"); continue;
        case '\t': sb_puts(b, "\\t"); continue;
        case '\b': sb_puts(b, "\\b"); continue;
        case '\f': sb_puts(b, "\\f"); continue;
        default: break;
        }
        if (c >= 0x20 && c <= 0x7E) {
            char ch = (char)c;
            sb_put(b, &ch, 1);
        } else if (c < 0x10000) {
            snprintf(t, sizeof t, "\\u%04x", (unsigned)c);
            sb_puts(b, t);
        } else {
            uint32_t v = c - 0x10000;
            snprintf(t, sizeof t, "\\u%04x\\u%04x", (unsigned)(0xD800 | (v >> 10)), (unsigned)(0xDC00 | (v & 0x3FF)));
            sb_puts(b, t);
        }
    }
    sb_puts(b, "\"");
    pyustr_free(&s);
}

void pyu_json_int(strbuf *b, double v) {
    char t[32];
    snprintf(t, sizeof t, "%.0f", v);
    sb_puts(b, t);
}

// Python's repr of a float as json.dumps writes it: the shortest decimal that reads back, fixed
// notation for exponents -4 to 15 ("8.0", "0.0001"), else "1e+16" / "1e-05"; NaN, Infinity.
void pyu_json_float(strbuf *b, double x) {
    if (isnan(x) || isinf(x)) {
        sb_puts(b, isnan(x) ? "NaN" : x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    char s[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(s, sizeof s, "%.*e", p - 1, x);
        if (strtod(s, NULL) == x) break;
    }
    // s: [-]d[.ddd]e(+|-)XX
    char digits[24];
    int nd = 0, neg = s[0] == '-';
    const char *q = s + neg;
    for (; *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int decpt = atoi(q + 1) + 1;  // x = 0.digits * 10^decpt
    if (neg) sb_puts(b, "-");
    char t[48];
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            sb_puts(b, "0.");
            for (int i = 0; i < -decpt; i++) sb_puts(b, "0");
            sb_puts(b, digits);
        } else if (decpt >= nd) {
            sb_puts(b, digits);
            for (int i = nd; i < decpt; i++) sb_puts(b, "0");
            sb_puts(b, ".0");
        } else {
            sb_put(b, digits, (size_t)decpt);
            sb_puts(b, ".");
            sb_puts(b, digits + decpt);
        }
    } else {
        snprintf(t, sizeof t, "%c%s%se%c%02d", digits[0], nd > 1 ? "." : "", digits + 1, decpt - 1 < 0 ? '-' : '+',
                 abs(decpt - 1));
        sb_puts(b, t);
    }
}

// json.dumps of a value read from a JSON file: numbers that are whole as Python's ints (what they
// were in the file, as far as cJSON can tell), others as floats; strings as pyu_json_string.
void pyu_json_value(strbuf *b, const cJSON *v) {
    if (cJSON_IsString(v)) pyu_json_string(b, v->valuestring);
    else if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if (isfinite(x) && x == floor(x) && fabs(x) < 1e17) pyu_json_int(b, x);
        else pyu_json_float(b, x);
    } else if (cJSON_IsTrue(v)) sb_puts(b, "true");
    else if (cJSON_IsFalse(v)) sb_puts(b, "false");
    else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        sb_puts(b, obj ? "{" : "[");
        for (const cJSON *e = v->child; e; e = e->next) {
            if (e != v->child) sb_puts(b, ", ");
            if (obj) {
                pyu_json_string(b, e->string);
                sb_puts(b, ": ");
            }
            pyu_json_value(b, e);
        }
        sb_puts(b, obj ? "}" : "]");
    } else sb_puts(b, "null");
}

double pyu_round2_py2(double x, int n) {
    if (!isfinite(x)) return x;
    // The exact decimal expansion of x (a double's binary fraction ends within 1100 digits), rounded
    // by hand at n decimals, halfway away from zero, then read back as Python reads its digits.
    char buf[1600];
    snprintf(buf, sizeof buf, "%.1100f", fabs(x));
    char *dot = strchr(buf, '.');
    size_t keep = (size_t)(dot - buf) + 1 + (size_t)n;  // digits through the n-th decimal
    int up = buf[keep] >= '5';
    buf[keep] = 0;
    if (up) {
        ptrdiff_t i = (ptrdiff_t)keep - 1;
        for (; i >= 0; i--) {
            if (buf[i] == '.') continue;
            if (buf[i] == '9') buf[i] = '0';
            else {
                buf[i]++;
                break;
            }
        }
        if (i < 0) {  // 9.99 -> 10.00
            memmove(buf + 1, buf, keep + 1);
            buf[0] = '1';
        }
    }
    double r = strtod(buf, NULL);
    return x < 0 ? -r : r;
}
