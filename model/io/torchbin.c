#include "torchbin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/util.h"

// ---------------------------------------------------------------------------------------------
// Little-endian reads (bounds are checked by the callers)

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

int tb_is_zip(const uint8_t *buf, size_t len) { return len >= 4 && rd32(buf) == 0x04034b50u; }

// ---------------------------------------------------------------------------------------------
// Zip: the central directory, stored (uncompressed) entries only

typedef struct {
    const char *name;
    size_t name_len;
    uint64_t off, size;  // the entry's data in the file
} zentry;

static int zip_read(const char *path, const uint8_t *b, size_t len, zentry **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (len < 22) return llava_fail("torch checkpoint: %s: too short for a zip file", path);
    size_t eocd = 0;
    int found = 0;
    for (size_t i = len - 22, lim = len > 22 + 65535 ? len - 22 - 65535 : 0;; i--) {
        if (rd32(b + i) == 0x06054b50u) {
            eocd = i;
            found = 1;
            break;
        }
        if (i == lim) break;
    }
    if (!found) return llava_fail("torch checkpoint: %s: no zip end-of-directory record (truncated?)", path);
    uint64_t n = rd16(b + eocd + 10), cd_size = rd32(b + eocd + 12), cd_off = rd32(b + eocd + 16);
    if (n == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {  // ZIP64
        if (eocd < 20 || rd32(b + eocd - 20) != 0x07064b50u)
            return llava_fail("torch checkpoint: %s: ZIP64 locator missing", path);
        uint64_t z = rd64(b + eocd - 20 + 8);
        if (z > len || len - z < 56 || rd32(b + z) != 0x06064b50u)
            return llava_fail("torch checkpoint: %s: ZIP64 end-of-directory record missing", path);
        n = rd64(b + z + 32);
        cd_size = rd64(b + z + 40);
        cd_off = rd64(b + z + 48);
    }
    if (cd_off > len || cd_size > len - cd_off || n > cd_size / 46)
        return llava_fail("torch checkpoint: %s: central directory out of the file", path);
    zentry *es = xcalloc((size_t)(n ? n : 1), sizeof(zentry));
    const uint8_t *p = b + cd_off, *end = b + cd_off + cd_size;
    for (uint64_t k = 0; k < n; k++) {
        if (end - p < 46 || rd32(p) != 0x02014b50u) {
            free(es);
            return llava_fail("torch checkpoint: %s: central directory entry %llu is damaged", path,
                              (unsigned long long)k);
        }
        uint16_t method = rd16(p + 10), nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
        uint64_t csize = rd32(p + 20), usize = rd32(p + 24), lho = rd32(p + 42);
        if ((size_t)(end - p) < 46u + nlen + xlen + clen) {
            free(es);
            return llava_fail("torch checkpoint: %s: central directory entry %llu is damaged", path,
                              (unsigned long long)k);
        }
        const uint8_t *x = p + 46 + nlen, *xe = x + xlen;
        while (xe - x >= 4) {  // the ZIP64 extra field: 8-byte values for the fields that overflowed
            uint16_t id = rd16(x), sz = rd16(x + 2);
            const uint8_t *v = x + 4, *ve = v + sz;
            if (ve > xe) break;
            if (id == 1) {
                if (usize == 0xFFFFFFFFu && ve - v >= 8) usize = rd64(v), v += 8;
                if (csize == 0xFFFFFFFFu && ve - v >= 8) csize = rd64(v), v += 8;
                if (lho == 0xFFFFFFFFu && ve - v >= 8) lho = rd64(v), v += 8;
            }
            x = ve;
        }
        es[k].name = (const char *)(p + 46);
        es[k].name_len = nlen;
        if (method != 0 || csize != usize) {
            int r = llava_fail(
                "torch checkpoint: %s: entry \"%.*s\" is compressed (method %u); torch.save stores "
                "entries uncompressed",
                path, (int)nlen, (const char *)(p + 46), method);
            free(es);
            return r;
        }
        if (lho > len || len - lho < 30 || rd32(b + lho) != 0x04034b50u) {
            int r = llava_fail("torch checkpoint: %s: entry \"%.*s\": local header out of the file", path, (int)nlen,
                               (const char *)(p + 46));
            free(es);
            return r;
        }
        uint64_t data = lho + 30 + rd16(b + lho + 26) + rd16(b + lho + 28);
        if (data > len || usize > len - data) {
            int r = llava_fail("torch checkpoint: %s: entry \"%.*s\" runs past the end of the file (truncated?)", path,
                               (int)nlen, (const char *)(p + 46));
            free(es);
            return r;
        }
        es[k].off = data;
        es[k].size = usize;
        p += 46 + nlen + xlen + clen;
    }
    *out = es;
    *n_out = (int)n;
    return 0;
}

static const zentry *zip_find(const zentry *es, int n, const char *prefix, size_t plen, const char *rest) {
    size_t rlen = strlen(rest);
    for (int i = 0; i < n; i++)
        if (es[i].name_len == plen + rlen && memcmp(es[i].name, prefix, plen) == 0 &&
            memcmp(es[i].name + plen, rest, rlen) == 0)
            return &es[i];
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// Values the pickle builds

enum { V_MARK, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR };

typedef struct val val;
struct val {
    int kind;
    int64_t i;    // INT, BOOL
    double f;     // FLOAT
    char *s;      // STR, GLOBAL ("module.name"), STORAGE (its key)
    val **items;  // TUPLE, LIST; DICT: key, value, key, value, ...
    int n, cap;
    dtype_t dtype;   // STORAGE
    uint64_t numel;  // STORAGE: elements
    val *storage;    // TENSOR
    int64_t offset;  // TENSOR: elements into the storage
    int ndim;
    int64_t shape[ST_MAX_DIMS], stride[ST_MAX_DIMS];
};

typedef struct {
    const char *path;
    val **all;  // every value made, freed together
    int n_all, cap_all;
    val **stack;
    int sp, cap_stack;
    val **memo;
    size_t n_memo;
} vm;

static val MARK_VAL = {.kind = V_MARK};

#define VM_MAX_STACK 1000000
#define VM_MAX_MEMO 10000000u
#define VM_MAX_ITEMS 100000000

static val *mk(vm *m, int kind) {
    if (m->n_all == m->cap_all) {
        m->cap_all = m->cap_all ? 2 * m->cap_all : 256;
        m->all = xrealloc(m->all, sizeof(val *) * (size_t)m->cap_all);
    }
    val *v = xcalloc(1, sizeof(val));
    v->kind = kind;
    m->all[m->n_all++] = v;
    return v;
}

static int push_item(val *c, val *x) {
    if (c->n >= VM_MAX_ITEMS) return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->items = xrealloc(c->items, sizeof(val *) * (size_t)c->cap);
    }
    c->items[c->n++] = x;
    return 0;
}

static int push(vm *m, val *v) {
    if (m->sp >= VM_MAX_STACK) return llava_fail("torch checkpoint: %s: pickle stack too deep", m->path);
    if (m->sp == m->cap_stack) {
        m->cap_stack = m->cap_stack ? 2 * m->cap_stack : 256;
        m->stack = xrealloc(m->stack, sizeof(val *) * (size_t)m->cap_stack);
    }
    m->stack[m->sp++] = v;
    return 0;
}

static void vm_free(vm *m) {
    for (int i = 0; i < m->n_all; i++) {
        free(m->all[i]->s);
        free(m->all[i]->items);
        free(m->all[i]);
    }
    free(m->all);
    free(m->stack);
    free(m->memo);
}

static const char *kind_name(int k) {
    static const char *names[] = {"mark",  "None", "bool", "int",   "float",   "str",
                                  "tuple", "list", "dict", "class", "storage", "tensor"};
    return k >= 0 && k <= V_TENSOR ? names[k] : "?";
}

static dtype_t storage_dtype(const char *global) {
    static const struct {
        const char *name;
        dtype_t dt;
    } map[] = {{"torch.FloatStorage", DT_F32},  {"torch.HalfStorage", DT_F16}, {"torch.BFloat16Storage", DT_BF16},
               {"torch.DoubleStorage", DT_F64}, {"torch.LongStorage", DT_I64}, {"torch.IntStorage", DT_I32},
               {"torch.ShortStorage", DT_I16},  {"torch.CharStorage", DT_I8},  {"torch.ByteStorage", DT_U8},
               {"torch.BoolStorage", DT_BOOL}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(global, map[i].name) == 0) return map[i].dt;
    return DT_INVALID;
}

// Pops everything above the topmost mark into a new container of `kind`.
static val *pop_mark(vm *m, int kind) {
    int k = m->sp - 1;
    while (k >= 0 && m->stack[k] != &MARK_VAL) k--;
    if (k < 0) return NULL;
    val *c = mk(m, kind);
    for (int i = k + 1; i < m->sp; i++) push_item(c, m->stack[i]);
    m->sp = k;
    return c;
}

static int int_arg(const val *v, int64_t *out) {
    if (!v || (v->kind != V_INT && v->kind != V_BOOL)) return -1;
    *out = v->i;
    return 0;
}

static int int_tuple(const val *v, int64_t *out, int *n) {
    if (!v || v->kind != V_TUPLE || v->n > ST_MAX_DIMS) return -1;
    for (int i = 0; i < v->n; i++)
        if (int_arg(v->items[i], &out[i]) != 0) return -1;
    *n = v->n;
    return 0;
}

// REDUCE: the callables a tensor checkpoint needs, built here; anything else is refused.
static val *reduce(vm *m, const val *fn, const val *args) {
    if (fn->kind != V_GLOBAL || args->kind != V_TUPLE) {
        llava_fail("torch checkpoint: %s: pickle calls a %s, not a known class", m->path, kind_name(fn->kind));
        return NULL;
    }
    if (strcmp(fn->s, "collections.OrderedDict") == 0) {
        if (args->n != 0) {
            llava_fail("torch checkpoint: %s: OrderedDict built from arguments", m->path);
            return NULL;
        }
        return mk(m, V_DICT);
    }
    if (strcmp(fn->s, "torch._utils._rebuild_tensor_v2") == 0 || strcmp(fn->s, "torch._utils._rebuild_tensor") == 0) {
        // (storage, storage_offset, size, stride, ...)
        val *t = mk(m, V_TENSOR);
        int ns = 0, nst = 0;
        if (args->n < 4 || args->items[0]->kind != V_STORAGE || int_arg(args->items[1], &t->offset) != 0 ||
            int_tuple(args->items[2], t->shape, &ns) != 0 || int_tuple(args->items[3], t->stride, &nst) != 0 ||
            ns != nst) {
            llava_fail("torch checkpoint: %s: a tensor with arguments this reader does not understand", m->path);
            return NULL;
        }
        t->storage = args->items[0];
        t->ndim = ns;
        return t;
    }
    if (strcmp(fn->s, "torch._utils._rebuild_parameter") == 0 ||
        strcmp(fn->s, "torch._utils._rebuild_parameter_with_state") == 0) {
        if (args->n < 1 || args->items[0]->kind != V_TENSOR) {
            llava_fail("torch checkpoint: %s: a parameter that holds no tensor", m->path);
            return NULL;
        }
        return args->items[0];
    }
    llava_fail(
        "torch checkpoint: %s: the pickle calls %s, which a checkpoint of tensors does not need: refused "
        "(nothing was run)",
        m->path, fn->s);
    return NULL;
}

#define NEED(k)                                                                                                        \
    do {                                                                                                               \
        if ((size_t)(end - p) < (size_t)(k)) {                                                                         \
            llava_fail("torch checkpoint: %s: data.pkl ends inside an instruction", m->path);                          \
            return NULL;                                                                                               \
        }                                                                                                              \
    } while (0)
#define POP(v)                                                                                                         \
    do {                                                                                                               \
        if (m->sp == 0 || m->stack[m->sp - 1] == &MARK_VAL) {                                                          \
            llava_fail("torch checkpoint: %s: data.pkl pops an empty stack (opcode 0x%02x at byte %zu)", m->path, op,  \
                       at);                                                                                            \
            return NULL;                                                                                               \
        }                                                                                                              \
        (v) = m->stack[--m->sp];                                                                                       \
    } while (0)
#define PUSH(v)                                                                                                        \
    do {                                                                                                               \
        if (push(m, (v)) != 0) return NULL;                                                                            \
    } while (0)

static val *mk_str(vm *m, int kind, const uint8_t *s, size_t n) {
    val *v = mk(m, kind);
    v->s = xmalloc(n + 1);
    memcpy(v->s, s, n);
    v->s[n] = 0;
    return v;
}

static int memo_put(vm *m, uint64_t k, val *v) {
    if (k >= VM_MAX_MEMO)
        return llava_fail("torch checkpoint: %s: pickle memo index %llu too large", m->path, (unsigned long long)k);
    if (k >= m->n_memo) {
        size_t nn = m->n_memo ? m->n_memo : 64;
        while (nn <= k) nn *= 2;
        m->memo = xrealloc(m->memo, sizeof(val *) * nn);
        memset(m->memo + m->n_memo, 0, sizeof(val *) * (nn - m->n_memo));
        m->n_memo = nn;
    }
    m->memo[k] = v;
    return 0;
}

// Runs data.pkl; returns the object STOP hands back.
static val *run(vm *m, const uint8_t *p, size_t len) {
    const uint8_t *start = p, *end = p + len;
    while (p < end) {
        size_t at = (size_t)(p - start);
        uint8_t op = *p++;
        val *a, *b, *c;
        switch (op) {
        case 0x80:  // PROTO
            NEED(1);
            if (p[0] > 5) {
                llava_fail("torch checkpoint: %s: pickle protocol %u", m->path, p[0]);
                return NULL;
            }
            p++;
            break;
        case 0x95:  // FRAME
            NEED(8);
            p += 8;
            break;
        case '}': PUSH(mk(m, V_DICT)); break;
        case ']': PUSH(mk(m, V_LIST)); break;
        case ')': PUSH(mk(m, V_TUPLE)); break;
        case '(': PUSH(&MARK_VAL); break;
        case 'N': PUSH(mk(m, V_NONE)); break;
        case 0x88:
        case 0x89:
            a = mk(m, V_BOOL);
            a->i = op == 0x88;
            PUSH(a);
            break;
        case 'K':
            NEED(1);
            a = mk(m, V_INT);
            a->i = p[0];
            p += 1;
            PUSH(a);
            break;
        case 'M':
            NEED(2);
            a = mk(m, V_INT);
            a->i = rd16(p);
            p += 2;
            PUSH(a);
            break;
        case 'J':
            NEED(4);
            a = mk(m, V_INT);
            a->i = (int32_t)rd32(p);
            p += 4;
            PUSH(a);
            break;
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
            NEED(1);
            uint8_t n = p[0];
            NEED(1u + n);
            if (n > 8) {
                llava_fail("torch checkpoint: %s: integer of %u bytes", m->path, n);
                return NULL;
            }
            uint64_t u = 0;
            for (int i = 0; i < n; i++) u |= (uint64_t)p[1 + i] << (8 * i);
            if (n && n < 8 && (p[n] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
            a = mk(m, V_INT);
            a->i = (int64_t)u;
            p += 1 + n;
            PUSH(a);
            break;
        }
        case 'G': {  // BINFLOAT, big-endian
            NEED(8);
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = u << 8 | p[i];
            a = mk(m, V_FLOAT);
            memcpy(&a->f, &u, sizeof a->f);
            p += 8;
            PUSH(a);
            break;
        }
        case 'X':     // BINUNICODE
        case 'T':     // BINSTRING
        case 'B':     // BINBYTES
        case 0x8c:    // SHORT_BINUNICODE
        case 'U':     // SHORT_BINSTRING
        case 'C':     // SHORT_BINBYTES
        case 0x8d: {  // BINUNICODE8
            size_t w = op == 0x8c || op == 'U' || op == 'C' ? 1 : op == 0x8d ? 8 : 4;
            NEED(w);
            uint64_t n = w == 1 ? p[0] : w == 4 ? rd32(p) : rd64(p);
            p += w;
            NEED(n);
            PUSH(mk_str(m, V_STR, p, (size_t)n));
            p += n;
            break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
            const uint8_t *nl1 = memchr(p, '\n', (size_t)(end - p));
            const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
            if (!nl2) {
                llava_fail("torch checkpoint: %s: unterminated GLOBAL", m->path);
                return NULL;
            }
            a = mk_str(m, V_GLOBAL, p, (size_t)(nl2 - p));
            a->s[nl1 - p] = '.';
            p = nl2 + 1;
            PUSH(a);
            break;
        }
        case 0x93:  // STACK_GLOBAL
            POP(b);
            POP(a);
            if (a->kind != V_STR || b->kind != V_STR) {
                llava_fail("torch checkpoint: %s: STACK_GLOBAL of non-strings", m->path);
                return NULL;
            }
            c = mk(m, V_GLOBAL);
            c->s = xasprintf("%s.%s", a->s, b->s);
            PUSH(c);
            break;
        case 'q':
            NEED(1);
            if (m->sp == 0 || memo_put(m, p[0], m->stack[m->sp - 1]) != 0) return NULL;
            p += 1;
            break;
        case 'r':
            NEED(4);
            if (m->sp == 0 || memo_put(m, rd32(p), m->stack[m->sp - 1]) != 0) return NULL;
            p += 4;
            break;
        case 0x94: {  // MEMOIZE
            size_t k = 0;
            while (k < m->n_memo && m->memo[k]) k++;
            if (m->sp == 0 || memo_put(m, k, m->stack[m->sp - 1]) != 0) return NULL;
            break;
        }
        case 'h':
        case 'j': {
            NEED(op == 'h' ? 1 : 4);
            uint64_t k = op == 'h' ? p[0] : rd32(p);
            p += op == 'h' ? 1 : 4;
            if (k >= m->n_memo || !m->memo[k]) {
                llava_fail("torch checkpoint: %s: pickle reads memo %llu, never stored", m->path,
                           (unsigned long long)k);
                return NULL;
            }
            PUSH(m->memo[k]);
            break;
        }
        case 't':
        case 'l':
            a = pop_mark(m, op == 't' ? V_TUPLE : V_LIST);
            if (!a) {
                llava_fail("torch checkpoint: %s: TUPLE without a mark", m->path);
                return NULL;
            }
            PUSH(a);
            break;
        case 0x85:
        case 0x86:
        case 0x87: {
            int n = op - 0x84;
            val *t = mk(m, V_TUPLE), *xs[3];
            for (int i = n - 1; i >= 0; i--) POP(xs[i]);
            for (int i = 0; i < n; i++) push_item(t, xs[i]);
            PUSH(t);
            break;
        }
        case 'R':
            POP(b);
            POP(a);
            c = reduce(m, a, b);
            if (!c) return NULL;
            PUSH(c);
            break;
        case 'Q': {  // BINPERSID: ('storage', storage class, key, location, numel)
            POP(a);
            if (a->kind != V_TUPLE || a->n < 5 || a->items[0]->kind != V_STR ||
                strcmp(a->items[0]->s, "storage") != 0 || a->items[1]->kind != V_GLOBAL || a->items[2]->kind != V_STR ||
                a->items[4]->kind != V_INT || a->items[4]->i < 0) {
                llava_fail("torch checkpoint: %s: a persistent id that is not a storage", m->path);
                return NULL;
            }
            c = mk(m, V_STORAGE);
            c->dtype = storage_dtype(a->items[1]->s);
            if (c->dtype == DT_INVALID) {
                llava_fail("torch checkpoint: %s: storage type %s is not supported", m->path, a->items[1]->s);
                return NULL;
            }
            c->s = xstrdup(a->items[2]->s);
            c->numel = (uint64_t)a->items[4]->i;
            PUSH(c);
            break;
        }
        case 's':
            POP(b);
            POP(a);
            if (m->sp == 0 || m->stack[m->sp - 1]->kind != V_DICT) {
                llava_fail("torch checkpoint: %s: SETITEM on a %s", m->path,
                           m->sp ? kind_name(m->stack[m->sp - 1]->kind) : "nothing");
                return NULL;
            }
            push_item(m->stack[m->sp - 1], a);
            push_item(m->stack[m->sp - 1], b);
            break;
        case 'u':
        case 'e': {
            val *items = pop_mark(m, V_LIST);
            if (!items || m->sp == 0 || m->stack[m->sp - 1]->kind != (op == 'u' ? V_DICT : V_LIST) ||
                (op == 'u' && items->n % 2)) {
                llava_fail("torch checkpoint: %s: %s on the wrong kind of object", m->path,
                           op == 'u' ? "SETITEMS" : "APPENDS");
                return NULL;
            }
            for (int i = 0; i < items->n; i++) push_item(m->stack[m->sp - 1], items->items[i]);
            break;
        }
        case 'a':
            POP(a);
            if (m->sp == 0 || m->stack[m->sp - 1]->kind != V_LIST) {
                llava_fail("torch checkpoint: %s: APPEND on a non-list", m->path);
                return NULL;
            }
            push_item(m->stack[m->sp - 1], a);
            break;
        case 'b':  // BUILD: a state_dict's _metadata on its OrderedDict; nothing a tensor needs
            POP(a);
            if (m->sp == 0 || m->stack[m->sp - 1]->kind != V_DICT) {
                llava_fail("torch checkpoint: %s: BUILD on a %s", m->path,
                           m->sp ? kind_name(m->stack[m->sp - 1]->kind) : "nothing");
                return NULL;
            }
            break;
        case '0':  // POP
            POP(a);
            break;
        case '.':  // STOP
            POP(a);
            return a;
        default:
            llava_fail("torch checkpoint: %s: pickle opcode 0x%02x at byte %zu is not one torch.save writes", m->path,
                       op, at);
            return NULL;
        }
    }
    llava_fail("torch checkpoint: %s: data.pkl has no STOP", m->path);
    return NULL;
}

// ---------------------------------------------------------------------------------------------

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

int tb_parse_buffer(const char *path, const uint8_t *buf, size_t len, st_file *out) {
    memset(out, 0, sizeof *out);
    if (!tb_is_zip(buf, len)) {
        if (len >= 2 && buf[0] == 0x80)
            return llava_fail(
                "torch checkpoint: %s: the legacy format of PyTorch before 1.6; re-save it with a newer "
                "torch or convert it to safetensors",
                path);
        return llava_fail("torch checkpoint: %s: not a zip file", path);
    }
    zentry *es;
    int ne;
    if (zip_read(path, buf, len, &es, &ne) != 0) return -1;
    const zentry *pkl = NULL;
    size_t plen = 0;
    for (int i = 0; i < ne; i++) {
        const char *s = es[i].name;
        size_t n = es[i].name_len;
        if (n >= 9 && memcmp(s + n - 9, "/data.pkl", 9) == 0 && memchr(s, '/', n - 9) == NULL) {
            if (pkl) {
                free(es);
                return llava_fail("torch checkpoint: %s: two data.pkl entries", path);
            }
            pkl = &es[i];
            plen = n - 8;  // the prefix with its '/'
        }
    }
    if (!pkl) {
        free(es);
        return llava_fail("torch checkpoint: %s: no <name>/data.pkl entry (not written by torch.save?)", path);
    }
    const zentry *bo = zip_find(es, ne, pkl->name, plen, "byteorder");
    if (bo && !(bo->size == 6 && memcmp(buf + bo->off, "little", 6) == 0)) {
        free(es);
        return llava_fail("torch checkpoint: %s: byte order is not little-endian", path);
    }
    vm m = {.path = path};
    val *root = run(&m, buf + pkl->off, (size_t)pkl->size);
    int rc = 0;
    if (!root) rc = -1;
    else if (root->kind != V_DICT)
        rc = llava_fail("torch checkpoint: %s: holds a %s, not a dict of tensors", path, kind_name(root->kind));
    int nt = root && rc == 0 ? root->n / 2 : 0;
    st_tensor *ts = xcalloc((size_t)(nt ? nt : 1), sizeof(st_tensor));
    int made = 0;
    for (int k = 0; k < nt && rc == 0; k++) {
        const val *key = root->items[2 * k], *t = root->items[2 * k + 1];
        if (key->kind != V_STR || !key->s[0]) {
            rc = llava_fail("torch checkpoint: %s: entry %d has a %s for a name", path, k, kind_name(key->kind));
            break;
        }
        if (t->kind != V_TENSOR) {
            rc = llava_fail("torch checkpoint: %s: \"%s\" is a %s, not a tensor", path, key->s, kind_name(t->kind));
            break;
        }
        const val *sg = t->storage;
        size_t es_bytes = dtype_bits(sg->dtype) / 8;
        char rest[600];
        snprintf(rest, sizeof rest, "data/%s", sg->s);
        const zentry *de = zip_find(es, ne, pkl->name, plen, rest);
        if (!de) {
            rc = llava_fail("torch checkpoint: %s: tensor \"%s\": storage %s is not in the archive", path, key->s,
                            sg->s);
            break;
        }
        uint64_t sbytes;
        if (mul_overflow_u64(sg->numel, es_bytes, &sbytes) || sbytes != de->size) {
            rc =
                llava_fail("torch checkpoint: %s: tensor \"%s\": storage %s holds %llu bytes, not %llu elements of %zu",
                           path, key->s, sg->s, (unsigned long long)de->size, (unsigned long long)sg->numel, es_bytes);
            break;
        }
        uint64_t numel = 1;
        int bad = t->offset < 0;
        for (int d = 0; d < t->ndim && !bad; d++)
            bad = t->shape[d] < 0 || mul_overflow_u64(numel, (uint64_t)t->shape[d], &numel);
        if (bad) {
            rc = llava_fail("torch checkpoint: %s: tensor \"%s\": bad shape or offset", path, key->s);
            break;
        }
        // Contiguous (row-major) strides; a dimension of size 1 may carry any stride.
        int64_t want = 1;
        for (int d = t->ndim - 1; d >= 0 && !bad; d--) {
            if (t->shape[d] != 1 && t->stride[d] != want) bad = 1;
            want *= t->shape[d] ? t->shape[d] : 1;
        }
        if (bad && numel > 0) {
            rc = llava_fail(
                "torch checkpoint: %s: tensor \"%s\" is not contiguous (a transposed or strided view); save "
                "it with .contiguous()",
                path, key->s);
            break;
        }
        if ((uint64_t)t->offset > sg->numel || numel > sg->numel - (uint64_t)t->offset) {
            rc = llava_fail("torch checkpoint: %s: tensor \"%s\" runs past the end of its storage", path, key->s);
            break;
        }
        st_tensor *o = &ts[made++];
        o->name = xstrdup(key->s);
        o->dtype = sg->dtype;
        o->ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) o->shape[d] = t->shape[d];
        o->numel = numel;
        o->begin = de->off + (uint64_t)t->offset * es_bytes;
        o->end = o->begin + numel * es_bytes;
        o->data = buf + o->begin;
    }
    vm_free(&m);
    free(es);
    if (rc == 0 && made > 1) {
        qsort(ts, (size_t)made, sizeof(st_tensor), cmp_tensor);
        for (int i = 1; i < made && rc == 0; i++)
            if (strcmp(ts[i - 1].name, ts[i].name) == 0)
                rc = llava_fail("torch checkpoint: %s: tensor \"%s\" twice", path, ts[i].name);
    }
    if (rc != 0) {
        for (int i = 0; i < made; i++) free(ts[i].name);
        free(ts);
        return -1;
    }
    out->tensors = ts;
    out->n_tensors = made;
    return 0;
}
