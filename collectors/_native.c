/* collectors._native: the collector's hot path in C (optional; the Python code each function
 * mirrors is the specification and the fallback).
 *
 *   peek_event_id(data)          evtx_source.peek_event_id_py (ASCII records; None -> the
 *                                regex decides)
 *   flat_from_evtx_json(data)    records.from_evtx_json(orjson.loads(data)) for the common
 *                                shape of the evtx parser's JSON
 *   set_table(table, ids)        the normalizer's table (normalize.native_table)
 *   normalize(rec, eid, t, rid)  the compiled normalizer of normalize._gen_source, on a flat
 *                                record (ASCII values; not the account-attribute ids)
 *   evtx_event(data)             the three above in one pass over the JSON text, without the
 *                                flat record: the event, or the id of a record not consumed
 *   build_columns(events, lay)   batcher.BatchBuilder.build_python's columns
 *   NativeBatcher                batcher.Batcher's Python path (routing, dual keying, columns
 *                                appended per event); add_evtx(block) runs evtx_event and the
 *                                batcher over a block of records
 *
 * "None = take the Python path" is the whole error model: nothing here raises for bad input
 * or decides what is an error; a record the C path declines takes the Python path, which
 * gives the exact result or error. Equivalence with the Python path is tested on fixtures,
 * generated and damaged records and every sample file (tests/collectors/test_native.py).
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE          /* memmem */
#endif
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__GNUC__)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define ALWAYS_INLINE static __forceinline
#else
#define ALWAYS_INLINE static inline
#endif

/* ------------------------------------------------------------------------------------------
 * interned key strings
 * ---------------------------------------------------------------------------------------- */

static PyObject *K_eid, *K_time_ms, *K_computer, *K_channel, *K_provider, *K_record,
    *K_user_sid;

/* EventData keys: a small cache bytes -> interned str, so that the keys of a flat record are
 * the interned strings the normalizer's literals are (dict lookups then hit by identity). */
#define KC_SIZE 4096
typedef struct {
    uint64_t h;
    Py_ssize_t len;
    PyObject *s;
} kc_entry;
static kc_entry kcache[KC_SIZE];

/* a quick hash of a short key: length, first and last 8 bytes (collisions are settled by
 * the memcmp of the lookup) */
static inline uint64_t khash(const char *p, Py_ssize_t n) {
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
    } else {
        for (Py_ssize_t i = 0; i < n; i++) a = a << 8 | (unsigned char)p[i];
    }
    uint64_t h = (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL) ^ (uint64_t)n;
    return h ^ (h >> 29);
}

/* A process-wide cache of short ASCII strings (direct-mapped, the newest wins a slot): values
 * repeat a lot in a domain's events (domains, hosts, accounts, markers), and handing out the
 * same object saves the allocation here and, later, the hashing and comparing of every dict
 * lookup of that value (the batch's string table finds it by identity). */
#define SC_SIZE (1 << 16)
#define SC_MAXLEN 128
static PyObject *scache[SC_SIZE];

static inline uint64_t shash(const char *p, Py_ssize_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, p + i, (size_t)(n - i));
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
        h ^= h >> 29;
    }
    return h;
}

static PyObject *S_empty;

static PyObject *ascii_str(const char *p, Py_ssize_t n) {
    if (n == 0 && S_empty != NULL) {
        Py_INCREF(S_empty);
        return S_empty;
    }
    PyObject **slot = NULL;
    if (n <= SC_MAXLEN) {
        slot = &scache[shash(p, n) & (SC_SIZE - 1)];
        PyObject *o = *slot;
        if (o != NULL && PyUnicode_GET_LENGTH(o) == n &&
            memcmp(PyUnicode_DATA(o), p, (size_t)n) == 0) {
            Py_INCREF(o);
            return o;
        }
    }
    PyObject *s = PyUnicode_New(n, 127);
    if (s == NULL) return NULL;
    memcpy(PyUnicode_DATA(s), p, (size_t)n);
    if (slot != NULL) {
        Py_INCREF(s);
        Py_XSETREF(*slot, s);
    }
    return s;
}

/* ------------------------------------------------------------------------------------------
 * a strict JSON scanner over UTF-8 text (the text of a Python str: valid UTF-8)
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    const char *p;
    const char *end;
    int ascii;      /* the whole text is ASCII: substrings need no UTF-8 decoding */
} scan;

#define FAIL (-1)

static inline void ws(scan *s) {
    if (s->p < s->end && (unsigned char)*s->p > ' ') return;      /* the common case */
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static inline int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* at '"': advance past the closing quote; (*a, *n) = the raw contents; *esc = has a
 * backslash */
ALWAYS_INLINE int str_span(scan *s, const char **a, Py_ssize_t *n,
                                                          int *esc) {
    if (s->p >= s->end || *s->p != '"') return FAIL;
    const char *q = ++s->p;
    int e = 0;
#ifdef __SSE2__
    const __m128i dq = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\'), c1f = _mm_set1_epi8(0x1F);
#endif
    while (q < s->end) {
        /* 16 (SSE2) or 8 bytes at a time up to the next '"', '\\' or control character */
#ifdef __SSE2__
        while (s->end - q >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)q);
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, dq), _mm_cmpeq_epi8(x, bsl)),
                                     _mm_cmpeq_epi8(_mm_min_epu8(x, c1f), x));
            int bits = _mm_movemask_epi8(m);
            if (bits) {
                q += __builtin_ctz((unsigned)bits);
                goto special;
            }
            q += 16;
        }
#endif
        while (s->end - q >= 8) {
            uint64_t w;
            memcpy(&w, q, 8);
            uint64_t qt = w ^ 0x2222222222222222ULL, bs = w ^ 0x5C5C5C5C5C5C5C5CULL;
            uint64_t hit = ((qt - 0x0101010101010101ULL) & ~qt) |
                           ((bs - 0x0101010101010101ULL) & ~bs) |
                           ((w - 0x2020202020202020ULL) & ~w);
            if (hit & 0x8080808080808080ULL) break;
            q += 8;
        }
#ifdef __SSE2__
    special:
#endif
        if (q >= s->end) break;
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            *a = s->p;
            *n = q - s->p;
            *esc = e;
            s->p = q + 1;
            return 0;
        }
        if (c < 0x20) return FAIL;
        if (c == '\\') {
            e = 1;
            if (q + 1 >= s->end) return FAIL;
            char d = q[1];
            if (d == 'u') {
                /* \uXXXX; a surrogate must be a high one followed by a low one */
                if (s->end - q < 6) return FAIL;
                for (int i = 2; i < 6; i++)
                    if (hexv(q[i]) < 0) return FAIL;
                unsigned cp = (unsigned)(hexv(q[2]) << 12 | hexv(q[3]) << 8 | hexv(q[4]) << 4 |
                                         hexv(q[5]));
                q += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return FAIL;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (s->end - q < 6 || q[0] != '\\' || q[1] != 'u') return FAIL;
                    for (int i = 2; i < 6; i++)
                        if (hexv(q[i]) < 0) return FAIL;
                    unsigned lo = (unsigned)(hexv(q[2]) << 12 | hexv(q[3]) << 8 |
                                             hexv(q[4]) << 4 | hexv(q[5]));
                    if (lo < 0xDC00 || lo > 0xDFFF) return FAIL;
                    q += 6;
                }
                continue;
            }
            if (!(d == '"' || d == '\\' || d == '/' || d == 'b' || d == 'f' || d == 'n' ||
                  d == 'r' || d == 't'))
                return FAIL;
            q += 2;
            continue;
        }
        q++;
    }
    return FAIL;
}

static int put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* the contents of a JSON string with escapes, as UTF-8, into buf (never longer than the
 * contents); -1 for a lone surrogate escape */
static Py_ssize_t unescape(const char *a, Py_ssize_t n, char *buf, int *ascii_out) {
    Py_ssize_t o = 0;
    int ascii = 1;
    for (Py_ssize_t i = 0; i < n;) {
        char c = a[i];
        if (c != '\\') {
            if ((unsigned char)c >= 0x80) ascii = 0;
            buf[o++] = c;
            i++;
            continue;
        }
        char d = a[i + 1];
        if (d == 'u') {
            unsigned cp = (unsigned)(hexv(a[i + 2]) << 12 | hexv(a[i + 3]) << 8 |
                                     hexv(a[i + 4]) << 4 | hexv(a[i + 5]));
            i += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 6 <= n && a[i] == '\\' && a[i + 1] == 'u') {
                    unsigned lo = (unsigned)(hexv(a[i + 2]) << 12 | hexv(a[i + 3]) << 8 |
                                             hexv(a[i + 4]) << 4 | hexv(a[i + 5]));
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        i += 6;
                        goto emit;
                    }
                }
                return -1;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
        emit:
            /* a \uXXXX escape takes 6 input bytes and gives at most 4 (8 for a pair): the
             * output never outgrows the input */
            if (cp >= 0x80) ascii = 0;
            o += put_utf8(buf + o, cp);
            continue;
        }
        switch (d) {
        case 'b': buf[o++] = '\b'; break;
        case 'f': buf[o++] = '\f'; break;
        case 'n': buf[o++] = '\n'; break;
        case 'r': buf[o++] = '\r'; break;
        case 't': buf[o++] = '\t'; break;
        default: buf[o++] = d; break;       /* " \ / */
        }
        i += 2;
    }
    *ascii_out = ascii;
    return o;
}

/* the Python str of a string span; NULL without an exception set = not handled here (a lone
 * surrogate escape), NULL with one = memory */
static PyObject *make_str(scan *s, const char *a, Py_ssize_t n, int esc) {
    if (!esc) {
        if (s->ascii) return ascii_str(a, n);
        return PyUnicode_DecodeUTF8(a, n, NULL);
    }
    char stackbuf[512];
    char *buf = n <= (Py_ssize_t)sizeof(stackbuf) ? stackbuf : PyMem_Malloc((size_t)n);
    if (buf == NULL) return PyErr_NoMemory();
    int ascii = 1;
    Py_ssize_t o = unescape(a, n, buf, &ascii);
    PyObject *r = o < 0 ? NULL : ascii ? ascii_str(buf, o) : PyUnicode_DecodeUTF8(buf, o, NULL);
    if (buf != stackbuf) PyMem_Free(buf);
    return r;
}

/* a JSON number: only integers of at most 18 digits are taken (value in *v), anything else
 * (fractions, exponents, "-0", bigger integers) is FAIL -> the Python path decides */
static int num_span(scan *s, long long *v) {
    const char *q = s->p;
    int neg = 0;
    if (q < s->end && *q == '-') { neg = 1; q++; }
    const char *d0 = q;
    while (q < s->end && *q >= '0' && *q <= '9') q++;
    Py_ssize_t nd = q - d0;
    if (nd < 1 || nd > 18 || (*d0 == '0' && (nd > 1 || neg))) return FAIL;
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E')) return FAIL;
    long long x = 0;
    for (const char *c = d0; c < q; c++) x = x * 10 + (*c - '0');
    *v = neg ? -x : x;
    s->p = q;
    return 0;
}

static int lit(scan *s, const char *w, Py_ssize_t n) {
    if (s->end - s->p < n || memcmp(s->p, w, (size_t)n) != 0) return FAIL;
    s->p += n;
    return 0;
}

static int skip_value(scan *s, int depth);

static int skip_container(scan *s, int depth, char close, int obj) {
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) { s->p++; return 0; }
    for (;;) {
        ws(s);
        if (obj) {
            const char *a; Py_ssize_t n; int e;
            if (str_span(s, &a, &n, &e)) return FAIL;
            ws(s);
            if (s->p >= s->end || *s->p != ':') return FAIL;
            s->p++;
            ws(s);
        }
        if (skip_value(s, depth + 1)) return FAIL;
        ws(s);
        if (s->p >= s->end) return FAIL;
        if (*s->p == ',') { s->p++; continue; }
        if (*s->p == close) { s->p++; return 0; }
        return FAIL;
    }
}

static int skip_value(scan *s, int depth) {
    if (depth > 64 || s->p >= s->end) return FAIL;
    const char *a; Py_ssize_t n; int e; long long v;
    switch (*s->p) {
    case '"': return str_span(s, &a, &n, &e);
    case '{': return skip_container(s, depth, '}', 1);
    case '[': return skip_container(s, depth, ']', 0);
    case 't': return lit(s, "true", 4);
    case 'f': return lit(s, "false", 5);
    case 'n': return lit(s, "null", 4);
    default: return num_span(s, &v);
    }
}

/* object iteration: at '{' -> obj_begin; then obj_next gives each key until it returns 1 */
static int obj_begin(scan *s) {
    if (s->p >= s->end || *s->p != '{') return FAIL;
    s->p++;
    ws(s);
    return 0;
}

/* returns 0 with the key span and s->p at the value, 1 at the end of the object, FAIL */
ALWAYS_INLINE int obj_next(scan *s, int *first, const char **k,
                                                          Py_ssize_t *kn, int *kesc) {
    ws(s);
    if (s->p >= s->end) return FAIL;
    if (*first) {
        *first = 0;
        if (*s->p == '}') { s->p++; return 1; }
    } else {
        if (*s->p == '}') { s->p++; return 1; }
        if (*s->p != ',') return FAIL;
        s->p++;
        ws(s);
    }
    if (str_span(s, k, kn, kesc)) return FAIL;
    ws(s);
    if (s->p >= s->end || *s->p != ':') return FAIL;
    s->p++;
    ws(s);
    return 0;
}

#define KEQ(k, kn, kesc, lit) (!(kesc) && (kn) == (Py_ssize_t)sizeof(lit) - 1 && \
                               memcmp((k), lit, sizeof(lit) - 1) == 0)

/* a string value (or null -> *out NULL, *isnull 1); FAIL on any other type */
static int take_str(scan *s, const char **a, Py_ssize_t *n, int *esc, int *isnull) {
    *isnull = 0;
    if (s->p < s->end && *s->p == 'n') { *isnull = 1; return lit(s, "null", 4); }
    return str_span(s, a, n, esc);
}

/* inside an object at '{': find the string under key `want` among its "#attributes" member,
 * e.g. {"#attributes":{"SystemTime":"..."}}; up to two wanted keys */
typedef struct { const char *a; Py_ssize_t n; int esc; int set; int isnull; } sval;

static int attrs2(scan *s, const char *w1, const char *w2, sval *v1, sval *v2) {
    int first = 1, r;
    const char *k; Py_ssize_t kn; int kesc;
    if (obj_begin(s)) return FAIL;
    int seen_attrs = 0;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (KEQ(k, kn, kesc, "#attributes")) {
            if (seen_attrs++) return FAIL;          /* duplicate: leave it to the Python path */
            if (*s->p == 'n') { if (lit(s, "null", 4)) return FAIL; continue; }
            int f2 = 1, r2;
            const char *k2; Py_ssize_t kn2; int kesc2;
            if (obj_begin(s)) return FAIL;
            while ((r2 = obj_next(s, &f2, &k2, &kn2, &kesc2)) == 0) {
                sval *t = NULL;
                if (!kesc2 && (Py_ssize_t)strlen(w1) == kn2 && memcmp(k2, w1, (size_t)kn2) == 0)
                    t = v1;
                else if (w2 && !kesc2 && (Py_ssize_t)strlen(w2) == kn2 &&
                         memcmp(k2, w2, (size_t)kn2) == 0)
                    t = v2;
                if (t) {
                    if (t->set++) return FAIL;
                    if (take_str(s, &t->a, &t->n, &t->esc, &t->isnull)) return FAIL;
                } else if (skip_value(s, 4)) {
                    return FAIL;
                }
            }
            if (r2 == FAIL) return FAIL;
        } else if (skip_value(s, 3)) {
            return FAIL;
        }
    }
    return r == FAIL ? FAIL : 0;
}

/* an int value, or {"#text": int, ...}; `objok` allows the object form */
static int take_int(scan *s, long long *v, int objok) {
    if (s->p < s->end && *s->p == '{' && objok) {
        int first = 1, r, got = 0;
        const char *k; Py_ssize_t kn; int kesc;
        if (obj_begin(s)) return FAIL;
        while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
            if (KEQ(k, kn, kesc, "#text")) {
                if (got++) return FAIL;
                if (num_span(s, v)) return FAIL;
            } else if (skip_value(s, 3)) {
                return FAIL;
            }
        }
        return (r == FAIL || !got) ? FAIL : 0;
    }
    return num_span(s, v);
}

static const int DIM[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

static int dig(const char *p, int n) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        x = x * 10 + (p[i] - '0');
    }
    return x;
}

/* records.parse_time_ms's fast path: "YYYY-MM-DD[T ]HH:MM:SS[.digits]Z" -> ms (the fraction
 * truncated to ms); FAIL for anything else (the Python path decides) */
static int time_ms(const char *p, Py_ssize_t n, long long *out) {
    if (n < 20 || p[n - 1] != 'Z' || p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != ' ')
        || p[13] != ':' || p[16] != ':')
        return FAIL;
    int Y = dig(p, 4), M = dig(p + 5, 2), D = dig(p + 8, 2), h = dig(p + 11, 2),
        mi = dig(p + 14, 2), sec = dig(p + 17, 2);
    if (Y < 1 || M < 1 || M > 12 || D < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
        sec > 59)
        return FAIL;
    int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (D > DIM[M] + (M == 2 && leap)) return FAIL;
    int ms = 0;
    if (p[19] == '.') {
        Py_ssize_t nf = n - 21;         /* digits between '.' and 'Z' */
        if (nf < 1) return FAIL;
        for (Py_ssize_t i = 0; i < nf; i++)
            if (p[20 + i] < '0' || p[20 + i] > '9') return FAIL;
        for (int i = 0; i < 3; i++) ms = ms * 10 + (i < nf ? p[20 + i] - '0' : 0);
    } else if (!(p[19] == 'Z' && n == 20)) {
        return FAIL;
    }
    /* days from civil (H. Hinnant) */
    long long y = Y - (M <= 2);
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = era * 146097 + doe - 719468;
    long long t = ((days * 24 + h) * 60 + mi) * 60 + sec;
    t = t * 1000 + ms;
    if (t < 0 || t > 253402300799999LL) return FAIL;
    *out = t;
    return 0;
}

static PyObject *key_str(scan *s, const char *k, Py_ssize_t kn) {
    uint64_t h = khash(k, kn);
    kc_entry *e = &kcache[h & (KC_SIZE - 1)];
    if (e->s != NULL && e->h == h && e->len == kn &&
        memcmp(PyUnicode_DATA(e->s), k, (size_t)kn) == 0) {
        Py_INCREF(e->s);
        return e->s;
    }
    PyObject *o = s->ascii ? ascii_str(k, kn) : PyUnicode_DecodeUTF8(k, kn, NULL);
    if (o == NULL) return NULL;
    if (!s->ascii) return o;             /* only ASCII keys are cached (DATA is then UTF-8) */
    PyUnicode_InternInPlace(&o);
    Py_XDECREF(e->s);
    Py_INCREF(o);
    e->s = o;
    e->h = h;
    e->len = kn;
    return o;
}

typedef struct {
    long long eid, rid;
    int have_eid, have_rid, seen_sys, seen_ed, seen_ud, seen_prov, seen_tc, seen_sec;
    sval comp, chan, pname, pesn, stime, uid, dummy;
} sysinfo;

static int system_obj(scan *s, sysinfo *y) {
    int first = 1, r;
    const char *k; Py_ssize_t kn; int kesc;
    if (obj_begin(s)) return FAIL;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (KEQ(k, kn, kesc, "EventID")) {
            if (y->have_eid++ || take_int(s, &y->eid, 1)) return FAIL;
        } else if (KEQ(k, kn, kesc, "EventRecordID")) {
            if (y->have_rid++) return FAIL;
            if (*s->p == 'n') { if (lit(s, "null", 4)) return FAIL; y->rid = 0; }
            else if (take_int(s, &y->rid, 0)) return FAIL;
        } else if (KEQ(k, kn, kesc, "Computer")) {
            sval *t = &y->comp;
            if (t->set++ || take_str(s, &t->a, &t->n, &t->esc, &t->isnull)) return FAIL;
        } else if (KEQ(k, kn, kesc, "Channel")) {
            sval *t = &y->chan;
            if (t->set++ || take_str(s, &t->a, &t->n, &t->esc, &t->isnull)) return FAIL;
        } else if (KEQ(k, kn, kesc, "Provider")) {
            if (y->seen_prov++) return FAIL;
            if (*s->p == 'n') { if (lit(s, "null", 4)) return FAIL; }
            else if (attrs2(s, "Name", "EventSourceName", &y->pname, &y->pesn)) return FAIL;
        } else if (KEQ(k, kn, kesc, "TimeCreated")) {
            if (y->seen_tc++ || attrs2(s, "SystemTime", NULL, &y->stime, &y->dummy))
                return FAIL;
        } else if (KEQ(k, kn, kesc, "Security")) {
            if (y->seen_sec++) return FAIL;
            if (*s->p == 'n') { if (lit(s, "null", 4)) return FAIL; }
            else if (attrs2(s, "UserID", NULL, &y->uid, &y->dummy)) return FAIL;
        } else if (skip_value(s, 2)) {
            return FAIL;
        }
    }
    return r == FAIL ? FAIL : 0;
}

static int put(PyObject *d, PyObject *k, PyObject *v) {
    if (v == NULL) return FAIL;
    int r = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return r;
}

/* a scalar sval -> str ("" for null / absent) */
static PyObject *sval_str(scan *s, sval *v) {
    if (!v->set || v->isnull) { Py_INCREF(S_empty); return S_empty; }
    return make_str(s, v->a, v->n, v->esc);
}


/* ------------------------------------------------------------------------------------------
 * peek_event_id: evtx_source._EID_RE on the first 2000 characters of an ASCII record
 *   "EventID":\s*(?:\{[^}]*\}\s*,\s*"#text":\s*|\{"#text":\s*)?(\d+)
 * ---------------------------------------------------------------------------------------- */

static inline int rx_ws(char c) {           /* str.isspace() on ASCII */
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static const char *rx_digits(const char *p, const char *end) {
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9') q++;
    return q > p ? q : NULL;
}

static const char *rx_text(const char *p, const char *end) {   /* "#text":\s* */
    if (end - p < 8 || memcmp(p, "\"#text\":", 8) != 0) return NULL;
    p += 8;
    while (p < end && rx_ws(*p)) p++;
    return p;
}

/* the id, -1 for no match, -2 for a number the regex must read (> 18 digits) */
static long long peek_c(const char *t, Py_ssize_t n) {
    const char *end = t + (n < 2000 ? n : 2000);
    for (const char *p = t; end - p >= 10; p++) {
#ifdef __GLIBC__
        p = memmem(p, (size_t)(end - p), "\"EventID\":", 10);
        if (p == NULL) break;
#else
        p = memchr(p, '"', (size_t)(end - p));
        if (p == NULL || end - p < 10) break;
        if (memcmp(p, "\"EventID\":", 10) != 0) continue;
#endif
        const char *q = p + 10;
        while (q < end && rx_ws(*q)) q++;
        const char *d = NULL, *de = NULL;
        /* the optional group is tried first (greedy ?), then the bare digits */
        if (q < end && *q == '{') {
            const char *c = memchr(q + 1, '}', (size_t)(end - q - 1));
            if (c != NULL) {                     /* \{[^}]*\}\s*,\s*"#text":\s* */
                const char *x = c + 1;
                while (x < end && rx_ws(*x)) x++;
                if (x < end && *x == ',') {
                    x++;
                    while (x < end && rx_ws(*x)) x++;
                    const char *y = rx_text(x, end);
                    if (y && (de = rx_digits(y, end))) d = y;
                }
            }
            if (d == NULL) {                     /* \{"#text":\s* */
                const char *y = rx_text(q + 1, end);
                if (y && (de = rx_digits(y, end))) d = y;
            }
        } else if ((de = rx_digits(q, end))) {
            d = q;
        }
        if (d == NULL) continue;
        if (de - d > 18) return -2;
        long long x = 0;
        for (const char *c = d; c < de; c++) x = x * 10 + (*c - '0');
        return x;
    }
    return -1;
}

static PyObject *peek_event_id(PyObject *self, PyObject *arg) {
    if (!PyUnicode_CheckExact(arg) || !PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    long long x = peek_c((const char *)PyUnicode_DATA(arg), PyUnicode_GET_LENGTH(arg));
    if (x == -2) Py_RETURN_NONE;                 /* a big number: the regex decides */
    return PyLong_FromLongLong(x);               /* -1: no match */
}

/* ------------------------------------------------------------------------------------------
 * Column building (batcher.BatchBuilder.build_python in C) and the partition-aware batcher
 * (batcher.Batcher's Python path) on top of it.
 *
 * A colbuf takes events one at a time while they are still in the cache (values go straight
 * into the columns, strings into the batch's table); finishing renumbers the table in the
 * order the Python build gives (first occurrence, column by column), so the wire bytes are
 * identical. An event with a value the normalizer never produces (a float, an out-of-range
 * int, a non-str string) taints the buffer: it then hands back its events and the Python
 * build decides (value or error).
 * ---------------------------------------------------------------------------------------- */

#define MAXK 32
#define PC_SIZE 256

typedef struct {
    PyObject *fieldmap;
    Py_ssize_t k, n_str;
    long long dflt[MAXK], lo[MAXK], hi[MAXK];
    int size[MAXK];
    PyObject *pc_key[PC_SIZE];     /* field-name pointer cache (strong refs: no reuse) */
    int pc_col[PC_SIZE];
} layout_t;

static int layout_init(layout_t *L, PyObject *t) {
    memset(L, 0, sizeof *L);
    PyObject *fm, *d, *lo, *hi, *sz;
    Py_ssize_t ns;
    if (!PyArg_ParseTuple(t, "O!O!O!O!O!n", &PyDict_Type, &fm, &PyTuple_Type, &d, &PyTuple_Type,
                          &lo, &PyTuple_Type, &hi, &PyTuple_Type, &sz, &ns))
        return -1;
    Py_ssize_t k = PyTuple_GET_SIZE(d);
    if (k > MAXK || PyTuple_GET_SIZE(lo) != k || PyTuple_GET_SIZE(hi) != k ||
        PyTuple_GET_SIZE(sz) != k || ns < 0) {
        PyErr_SetString(PyExc_ValueError, "layout: defaults, lo, hi and sizes differ in size");
        return -1;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        L->dflt[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(d, j));
        L->lo[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(lo, j));
        L->hi[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(hi, j));
        L->size[j] = (int)PyLong_AsLong(PyTuple_GET_ITEM(sz, j));
        if (!PyErr_Occurred() && L->size[j] != 4 && L->size[j] != 8)
            PyErr_SetString(PyExc_ValueError, "layout: column sizes are 4 or 8");
    }
    if (PyErr_Occurred()) return -1;
    Py_INCREF(fm);
    L->fieldmap = fm;
    L->k = k;
    L->n_str = ns;
    return 0;
}

static void layout_clear(layout_t *L) {
    Py_CLEAR(L->fieldmap);
    for (int i = 0; i < PC_SIZE; i++) Py_CLEAR(L->pc_key[i]);
}

/* column of a field name, -1 for a key that is not a schema field, -2 on error */
static inline int layout_col(layout_t *L, PyObject *key) {
    size_t h = ((uintptr_t)key >> 4) & (PC_SIZE - 1);
    if (L->pc_key[h] == key) return L->pc_col[h];
    PyObject *c = PyDict_GetItemWithError(L->fieldmap, key);
    int col;
    if (c == NULL) {
        if (PyErr_Occurred()) return -2;
        col = -1;
    } else {
        Py_ssize_t x = PyLong_AsSsize_t(c);
        if (x < 0 || x >= L->k + L->n_str) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "layout: bad column");
            return -2;
        }
        col = (int)x;
    }
    Py_INCREF(key);
    Py_XSETREF(L->pc_key[h], key);
    L->pc_col[h] = col;
    return col;
}

typedef struct {
    Py_ssize_t n, cap;
    long long *num;           /* [k][cap] */
    uint32_t *sc;             /* [n_str][cap] */
    PyObject *intern, *table, *events;
    int tainted;
    Py_ssize_t count;         /* events in the batch (rows appended directly included) */
    Py_ssize_t n_direct;      /* rows appended without an event dict (colbuf_append_row) */
    long long last_seq;
} colbuf;

static void colbuf_free(colbuf *b) {
    PyMem_Free(b->num);
    PyMem_Free(b->sc);
    b->num = NULL;
    b->sc = NULL;
    b->n = b->cap = 0;
    Py_CLEAR(b->intern);
    Py_CLEAR(b->table);
    Py_CLEAR(b->events);
}

static int colbuf_fresh(colbuf *b) {        /* empty table/list objects for a new batch */
    Py_CLEAR(b->intern);
    Py_CLEAR(b->table);
    Py_CLEAR(b->events);
    b->n = 0;
    b->tainted = 0;
    b->count = 0;
    b->n_direct = 0;
    b->intern = PyDict_New();
    b->table = PyList_New(0);
    b->events = PyList_New(0);
    if (!b->intern || !b->table || !b->events) return -1;
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) return -1;
    int r = PyDict_SetItem(b->intern, S_empty, zero) || PyList_Append(b->table, S_empty);
    Py_DECREF(zero);
    return r ? -1 : 0;
}

static int colbuf_grow(colbuf *b, layout_t *L) {
    Py_ssize_t cap = b->cap ? b->cap * 2 : 1024;
    long long *num = PyMem_Malloc((size_t)(L->k ? L->k : 1) * (size_t)cap * sizeof(long long));
    uint32_t *sc = PyMem_Malloc((size_t)(L->n_str ? L->n_str : 1) * (size_t)cap * 4);
    if (num == NULL || sc == NULL) {
        PyMem_Free(num);
        PyMem_Free(sc);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t j = 0; j < L->k && b->n; j++)
        memcpy(num + j * cap, b->num + j * b->cap, (size_t)b->n * sizeof(long long));
    for (Py_ssize_t j = 0; j < L->n_str && b->n; j++)
        memcpy(sc + j * cap, b->sc + j * b->cap, (size_t)b->n * 4);
    PyMem_Free(b->num);
    PyMem_Free(b->sc);
    b->num = num;
    b->sc = sc;
    b->cap = cap;
    return 0;
}

/* the batch's table index of a non-empty str (added at the end when new) */
static int intern(colbuf *b, PyObject *v, uint32_t *out) {
    PyObject *ix = PyDict_GetItemWithError(b->intern, v);
    if (ix != NULL) {
        *out = (uint32_t)PyLong_AsUnsignedLong(ix);
        return 0;
    }
    if (PyErr_Occurred()) return -1;
    Py_ssize_t t = PyList_GET_SIZE(b->table);
    PyObject *io = PyLong_FromSsize_t(t);
    if (io == NULL) return -1;
    int rr = PyDict_SetItem(b->intern, v, io);
    Py_DECREF(io);
    if (rr || PyList_Append(b->table, v)) return -1;
    *out = (uint32_t)t;
    return 0;
}

static int taint(colbuf *b) {
    if (b->n_direct) {
        /* rows appended straight from records have no event dict for the Python build;
         * events of the normalizer never come here (tests: test_native.py) */
        PyErr_SetString(PyExc_ValueError, "an event with a value the wire columns cannot hold "
                        "(a float, an out-of-range int, a non-str string) in a batch built "
                        "from EVTX records in C: normalize events before batching them");
        return -1;
    }
    b->tainted = 1;
    return 0;
}

static int colbuf_append(colbuf *b, layout_t *L, PyObject *ev) {
    if (b->events == NULL && colbuf_fresh(b)) return -1;
    if (PyList_Append(b->events, ev)) return -1;
    b->count++;
    if (b->tainted) return 0;
    if (!PyDict_CheckExact(ev)) return taint(b);
    if (b->n == b->cap && colbuf_grow(b, L)) return -1;
    Py_ssize_t i = b->n, cap = b->cap;
    for (Py_ssize_t j = 0; j < L->k; j++) b->num[j * cap + i] = L->dflt[j];
    for (Py_ssize_t j = 0; j < L->n_str; j++) b->sc[j * cap + i] = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *v;
    while (PyDict_Next(ev, &pos, &key, &v)) {
        int col = layout_col(L, key);
        if (col == -1) continue;
        if (col == -2) return -1;
        if (col < L->k) {
            if (v == Py_None) continue;
            if (!PyLong_Check(v)) return taint(b);
            int of = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &of);
            if (of || (x == -1 && PyErr_Occurred())) { PyErr_Clear(); return taint(b); }
            if (x < L->lo[col] || x > L->hi[col]) return taint(b);
            b->num[col * cap + i] = x;
        } else {
            if (v == Py_None) continue;
            if (!PyUnicode_CheckExact(v)) return taint(b);
            if (PyUnicode_GET_LENGTH(v) == 0) continue;
            if (intern(b, v, &b->sc[(col - L->k) * cap + i])) return -1;
        }
    }
    b->n++;
    return 0;
}

/* a row of a record straight from C (sink_t below): values the C normalizer produced */
typedef struct {
    PyObject *dict;             /* the event dict, or NULL: the row */
    layout_t *L;
    long long num[MAXK];
    PyObject *str[96];          /* owned; NULL = empty */
} sink_t;

/* what the event holds under f (borrowed; NULL: nothing, or an error in dict mode) */
static PyObject *sink_get(sink_t *k, PyObject *f) {
    if (k->dict != NULL) return PyDict_GetItemWithError(k->dict, f);
    int col = layout_col(k->L, f);
    if (col < k->L->k) return NULL;
    return k->str[col - k->L->k];
}

static void sink_row(sink_t *k, layout_t *L) {
    k->dict = NULL;
    k->L = L;
    for (Py_ssize_t j = 0; j < L->k; j++) k->num[j] = L->dflt[j];
    for (Py_ssize_t j = 0; j < L->n_str; j++) k->str[j] = NULL;
}

static void sink_clear(sink_t *k) {
    if (k->dict == NULL)
        for (Py_ssize_t j = 0; j < k->L->n_str; j++) Py_CLEAR(k->str[j]);
}

static int colbuf_append_row(colbuf *b, layout_t *L, sink_t *row) {
    if (b->events == NULL && colbuf_fresh(b)) return -1;
    if (b->tainted) {
        PyErr_SetString(PyExc_ValueError, "a batch holding an event only the Python build "
                        "takes cannot take rows built in C");
        return -1;
    }
    if (b->n == b->cap && colbuf_grow(b, L)) return -1;
    Py_ssize_t i = b->n, cap = b->cap;
    for (Py_ssize_t j = 0; j < L->k; j++) {
        long long x = row->num[j];
        if (x < L->lo[j] || x > L->hi[j]) {
            PyErr_SetString(PyExc_ValueError, "a row value out of its column's range");
            return -1;
        }
        b->num[j * cap + i] = x;
    }
    for (Py_ssize_t j = 0; j < L->n_str; j++) {
        PyObject *v = row->str[j];
        b->sc[j * cap + i] = 0;
        if (v != NULL && PyUnicode_GET_LENGTH(v) && intern(b, v, &b->sc[j * cap + i]))
            return -1;
    }
    b->n++;
    b->count++;
    b->n_direct++;
    return 0;
}

/* the batch of a colbuf: ((k column bytes), string-column bytes, table) -- or, tainted,
 * ("events", [events]); the colbuf starts a new batch */
/* what the wire encoding of an emitted batch needs from the batcher */
typedef struct {
    int kind;
    Py_ssize_t partition;
    PyObject *hcache, *key_hash;    /* str -> stream.schema.key_hash(str), and the function */
} wctx;

/* stream.schema.key_hash(s) through a cache (cleared above 500k strings, like the Python
 * path's); the batcher's partitions and the wire's string hashes both come from here */
static int cached_key_hash(PyObject *hcache, PyObject *key_hash, PyObject *s, uint64_t *out) {
    if (PyUnicode_CheckExact(s) && PyUnicode_GET_LENGTH(s) == 0) { *out = 0; return 0; }
    PyObject *h = PyDict_GetItemWithError(hcache, s);
    if (h == NULL) {
        if (PyErr_Occurred()) return -1;
        h = PyObject_CallOneArg(key_hash, s);
        if (h == NULL) return -1;
        if (PyDict_GET_SIZE(hcache) > 500000) PyDict_Clear(hcache);
        int r = PyDict_SetItem(hcache, s, h);
        Py_DECREF(h);
        if (r) return -1;
    }
    *out = PyLong_AsUnsignedLongLong(h);
    return (*out == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

static int width_for(uint64_t span) {              /* stream.wire._width_for */
    return span == 0 ? 0 : span < (1ULL << 8) ? 1 : span < (1ULL << 16) ? 2
         : span < (1ULL << 32) ? 4 : 8;
}

#define PAD8(x) (((x) + 7) & ~(Py_ssize_t)7)

/* stream.wire._encode2 of the batch (same bytes): columns num[k] (stride cap), renumbered
 * string indices sc[n_str][n], table; Py_None when a string needs the Python encoder (a lone
 * surrogate: "surrogatepass") */
static PyObject *wire_v2(wctx *w, layout_t *L, Py_ssize_t n, const long long *num,
                         Py_ssize_t cap, const uint32_t *sc, PyObject *table) {
#if !PY_LITTLE_ENDIAN
    Py_RETURN_NONE;
#endif
    Py_ssize_t ns = PyList_GET_SIZE(table), k = L->k + L->n_str, blob = 0, maxlen = 0;
    long long lo[MAXK + 96];
    int wd[MAXK + 96], present[MAXK + 96], npres = 0;
    uint32_t num_bits = 0, str_bits = 0;
    if (k > MAXK + 96) Py_RETURN_NONE;
    for (Py_ssize_t j = 0; j < L->k && n; j++) {
        const long long *c = num + j * cap;
        long long mn = c[0], mx = c[0];
        for (Py_ssize_t i = 1; i < n; i++) {
            if (c[i] < mn) mn = c[i];
            if (c[i] > mx) mx = c[i];
        }
        if (mn == mx && mn == L->dflt[j]) continue;
        num_bits |= 1u << j;
        int wj = width_for((uint64_t)mx - (uint64_t)mn);
        if (wj && mn > 0 && width_for((uint64_t)mx) == wj) mn = 0;
        present[npres] = (int)j;
        lo[npres] = mn;
        wd[npres++] = wj;
    }
    for (Py_ssize_t j = 0; j < L->n_str && n; j++) {
        const uint32_t *c = sc + j * n;
        uint32_t mn = c[0], mx = c[0];
        for (Py_ssize_t i = 1; i < n; i++) {
            if (c[i] < mn) mn = c[i];
            if (c[i] > mx) mx = c[i];
        }
        if (mx == 0) continue;
        str_bits |= 1u << j;
        int wj = width_for((uint64_t)mx - mn);
        long long base = mn;
        if (wj && mn > 0 && width_for(mx) == wj) base = 0;
        present[npres] = (int)(L->k + j);
        lo[npres] = base;
        wd[npres++] = wj;
    }
    const char **sp = PyMem_Malloc((size_t)(ns ? ns : 1) * sizeof(char *));
    Py_ssize_t *sl = PyMem_Malloc((size_t)(ns ? ns : 1) * sizeof(Py_ssize_t));
    uint64_t *hs = PyMem_Malloc((size_t)(ns ? ns : 1) * 8);
    PyObject *res = NULL;
    if (!sp || !sl || !hs) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t t = 0; t < ns; t++) {
        PyObject *str = PyList_GET_ITEM(table, t);
        sp[t] = PyUnicode_AsUTF8AndSize(str, &sl[t]);
        if (sp[t] == NULL) {                       /* surrogates: the Python encoder */
            PyErr_Clear();
            res = Py_None;
            Py_INCREF(res);
            goto done;
        }
        if (cached_key_hash(w->hcache, w->key_hash, str, &hs[t])) goto done;
        blob += sl[t];
        if (sl[t] > maxlen) maxlen = sl[t];
    }
    int lw = maxlen < (1 << 8) ? 1 : maxlen < (1 << 16) ? 2 : 4;
    Py_ssize_t rowbytes = 0;
    for (int c = 0; c < npres; c++) rowbytes += wd[c];
    Py_ssize_t size = 40 + 8 * npres + PAD8(npres) + 8 * ns + PAD8(n * rowbytes)
                      + PAD8(ns * lw) + blob;
    res = PyBytes_FromStringAndSize(NULL, size);
    if (res == NULL) goto done;
    char *o = PyBytes_AS_STRING(res);
    memset(o, 0, (size_t)size);
    /* header <4sBBHHHIIIiB3sII */
    uint16_t h16[3] = {(uint16_t)L->k, (uint16_t)L->n_str, 0};
    uint32_t h32[3] = {(uint32_t)n, (uint32_t)ns, (uint32_t)blob};
    int32_t part = (int32_t)w->partition;
    memcpy(o, "ITDB", 4);
    o[4] = 2;
    o[5] = (char)w->kind;
    memcpy(o + 6, h16, 6);
    memcpy(o + 12, h32, 12);
    memcpy(o + 24, &part, 4);
    o[28] = (char)lw;
    memcpy(o + 32, &num_bits, 4);
    memcpy(o + 36, &str_bits, 4);
    char *q = o + 40;
    for (int c = 0; c < npres; c++, q += 8) memcpy(q, &lo[c], 8);
    for (int c = 0; c < npres; c++) q[c] = (char)wd[c];
    q += PAD8(npres);
    memcpy(q, hs, (size_t)ns * 8);
    q += 8 * ns;
    char *d0 = q;
    for (int wdt = 8; wdt >= 1; wdt >>= 1)         /* widest first, as wire.py writes them */
        for (int c = 0; c < npres; c++) {
            if (wd[c] != wdt) continue;
            int j = present[c];
            uint64_t base = (uint64_t)lo[c];
            if (j < L->k) {
                const long long *col = num + j * cap;
                for (Py_ssize_t i = 0; i < n; i++, q += wdt) {
                    uint64_t v = (uint64_t)col[i] - base;
                    memcpy(q, &v, (size_t)wdt);
                }
            } else {
                const uint32_t *col = sc + (j - L->k) * n;
                for (Py_ssize_t i = 0; i < n; i++, q += wdt) {
                    uint64_t v = (uint64_t)col[i] - base;
                    memcpy(q, &v, (size_t)wdt);
                }
            }
        }
    q = d0 + PAD8(n * rowbytes);
    for (Py_ssize_t t = 0; t < ns; t++, q += lw) {
        uint32_t ln = (uint32_t)sl[t];
        memcpy(q, &ln, (size_t)lw);
    }
    q = d0 + PAD8(n * rowbytes) + PAD8(ns * lw);
    for (Py_ssize_t t = 0; t < ns; t++) {
        memcpy(q, sp[t], (size_t)sl[t]);
        q += sl[t];
    }
done:
    PyMem_Free(sp);
    PyMem_Free(sl);
    PyMem_Free(hs);
    return res;
}

/* the batch of a colbuf: ((k column bytes), string-column bytes, table) -- with a wctx, the
 * wire bytes (stream.wire.encode v2) instead; tainted: ("events", [events]). The colbuf
 * starts a new batch. */
static PyObject *colbuf_finish(colbuf *b, layout_t *L, wctx *w) {
    PyObject *res = NULL;
    if (b->events == NULL && colbuf_fresh(b)) return NULL;
    if (b->tainted) {
        res = Py_BuildValue("(sO)", "events", b->events);
        if (res == NULL || colbuf_fresh(b)) { Py_XDECREF(res); return NULL; }
        return res;
    }
    Py_ssize_t n = b->n, cap = b->cap, nt = PyList_GET_SIZE(b->table);
    /* renumber the table: first occurrence, column by column (the Python build's order) */
    uint32_t *map = PyMem_Malloc((size_t)nt * 4);
    PyObject *cols = NULL, *strc = PyBytes_FromStringAndSize(NULL, L->n_str * n * 4);
    PyObject *table = PyList_New(nt);
    if (!map || !strc || !table) goto done;
    for (Py_ssize_t t = 0; t < nt; t++) map[t] = UINT32_MAX;
    map[0] = 0;
    uint32_t next = 1;
    uint32_t *o = (uint32_t *)PyBytes_AS_STRING(strc);
    for (Py_ssize_t j = 0; j < L->n_str; j++) {
        const uint32_t *c = b->sc + j * cap;
        uint32_t *oc = o + j * n;
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t x = c[i];
            if (map[x] == UINT32_MAX) map[x] = next++;
            oc[i] = map[x];
        }
    }
    for (Py_ssize_t t = 0; t < nt; t++) {
        PyObject *s = PyList_GET_ITEM(b->table, t);
        Py_INCREF(s);
        PyList_SET_ITEM(table, map[t], s);     /* every entry is used once: a permutation */
    }
    if (w != NULL) {
        res = wire_v2(w, L, n, b->num, cap, o, table);
        if (res == NULL) goto done;
        if (res != Py_None) goto fresh;
        Py_CLEAR(res);                          /* the Python encoder: the columns below */
    }
    cols = PyTuple_New(L->k);
    if (cols == NULL) goto done;
    for (Py_ssize_t j = 0; j < L->k; j++) {
        PyObject *cb = PyBytes_FromStringAndSize(NULL, n * L->size[j]);
        if (cb == NULL) goto done;
        const long long *c = b->num + j * cap;
        if (L->size[j] == 8) {
            memcpy(PyBytes_AS_STRING(cb), c, (size_t)n * 8);
        } else {
            uint32_t *d = (uint32_t *)PyBytes_AS_STRING(cb);
            for (Py_ssize_t i = 0; i < n; i++) d[i] = (uint32_t)c[i];   /* range-checked */
        }
        PyTuple_SET_ITEM(cols, j, cb);
    }
    res = PyTuple_Pack(3, cols, strc, table);
fresh:
    if (res != NULL && colbuf_fresh(b)) Py_CLEAR(res);
done:
    PyMem_Free(map);
    Py_XDECREF(cols);
    Py_XDECREF(strc);
    Py_XDECREF(table);
    if (res == NULL && !PyErr_Occurred()) PyErr_NoMemory();
    return res;
}

/* build_columns(events, layout): one batch from a list of events (BatchBuilder.build) */
static PyObject *build_columns(PyObject *self, PyObject *args) {
    PyObject *events, *lt;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &events, &PyTuple_Type, &lt)) return NULL;
    layout_t L;
    if (layout_init(&L, lt)) return NULL;
    colbuf b;
    memset(&b, 0, sizeof b);
    PyObject *res = NULL;
    if (colbuf_fresh(&b) == 0) {
        Py_ssize_t n = PyList_GET_SIZE(events), i;
        for (i = 0; i < n; i++)
            if (colbuf_append(&b, &L, PyList_GET_ITEM(events, i))) break;
        if (i == n) res = colbuf_finish(&b, &L, NULL);
    }
    colbuf_free(&b);
    layout_clear(&L);
    return res;
}

/* -- the batcher ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    Py_ssize_t partitions, max_events, pending;
    int dual_key, wire;          /* wire: emit wire bytes (else the column tuple) */
    long long time_offset;       /* ms added to the time of every row built in C (replay's
                                  * --rebase-time; the Python path adds it to event dicts) */
    PyObject *source_ids, *key_hash, *hcache;
    unsigned char src_bits[8192];  /* source_ids below 65536 as a bitmap (the row path) */
    layout_t L;
    colbuf *bufs;                 /* [2 * partitions]: by account, then by source */
} NBatcher;

static PyObject *S_account, *S_computer, *S_src_ip, *S_src_host, *S_event_id;

static void nb_dealloc(NBatcher *self) {
    if (self->bufs) {
        for (Py_ssize_t i = 0; i < 2 * self->partitions; i++) colbuf_free(&self->bufs[i]);
        PyMem_Free(self->bufs);
    }
    layout_clear(&self->L);
    Py_XDECREF(self->source_ids);
    Py_XDECREF(self->key_hash);
    Py_XDECREF(self->hcache);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int nb_init(NBatcher *self, PyObject *args, PyObject *kw) {
    PyObject *src, *kh, *lt;
    int dual;
    Py_ssize_t parts, maxev;
    if (!PyArg_ParseTuple(args, "nnpOOO!", &parts, &maxev, &dual, &src, &kh, &PyTuple_Type, &lt))
        return -1;
    if (parts < 1 || parts > 1 << 16) {
        PyErr_SetString(PyExc_ValueError, "partitions must be 1..65536");
        return -1;
    }
    if (self->bufs != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NativeBatcher is initialised once");
        return -1;
    }
    if (layout_init(&self->L, lt)) return -1;
    self->bufs = PyMem_Calloc((size_t)(2 * parts), sizeof(colbuf));
    self->hcache = PyDict_New();
    if (self->bufs == NULL || self->hcache == NULL) { PyErr_NoMemory(); return -1; }
    self->partitions = parts;
    self->max_events = maxev;
    self->dual_key = dual;
    Py_INCREF(src);
    self->source_ids = src;
    memset(self->src_bits, 0, sizeof self->src_bits);
    PyObject *it = PyObject_GetIter(src), *x;
    if (it == NULL) return -1;
    while ((x = PyIter_Next(it)) != NULL) {
        long v = PyLong_Check(x) ? PyLong_AsLong(x) : -1;
        Py_DECREF(x);
        if (v == -1 && PyErr_Occurred()) PyErr_Clear();
        if (v >= 0 && v < 65536) self->src_bits[v >> 3] |= (unsigned char)(1 << (v & 7));
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return -1;
    Py_INCREF(kh);
    self->key_hash = kh;
    return 0;
}

/* ev.get(name), borrowed; NULL for a missing key (never an error for exact dicts) */
static inline PyObject *dget(PyObject *ev, PyObject *name) {
    PyObject *v = PyDict_GetItemWithError(ev, name);
    if (v == NULL) PyErr_Clear();
    return v;
}

static int truthy(PyObject *v) {
    if (v == NULL || v == Py_None) return 0;
    if (PyUnicode_CheckExact(v)) return PyUnicode_GET_LENGTH(v) > 0;
    return PyObject_IsTrue(v);
}

/* key_hash(s) % partitions */
static Py_ssize_t nb_part(NBatcher *self, PyObject *s) {
    uint64_t x;
    if (cached_key_hash(self->hcache, self->key_hash, s, &x)) return -1;
    return (Py_ssize_t)(x % (uint64_t)self->partitions);
}

static PyObject *nb_emit(NBatcher *self, Py_ssize_t kind, Py_ssize_t p) {
    colbuf *b = &self->bufs[kind * self->partitions + p];
    Py_ssize_t n = b->events ? b->count : 0;
    long long last = b->last_seq;
    wctx w = {(int)kind, p, self->hcache, self->key_hash};
    PyObject *payload = colbuf_finish(b, &self->L, self->wire ? &w : NULL);
    if (payload == NULL) return NULL;
    self->pending -= n;
    b->last_seq = 0;
    PyObject *r = Py_BuildValue("(nnLnN)", kind, p, last, n, payload);
    return r;
}

static int nb_put(NBatcher *self, Py_ssize_t kind, Py_ssize_t p, PyObject *ev, sink_t *row,
                  long long seq, PyObject **out) {
    colbuf *b = &self->bufs[kind * self->partitions + p];
    if (ev != NULL ? colbuf_append(b, &self->L, ev) : colbuf_append_row(b, &self->L, row))
        return -1;
    b->last_seq = seq;
    self->pending++;
    if (b->count >= self->max_events) {
        PyObject *m = nb_emit(self, kind, p);
        if (m == NULL) return -1;
        if (*out == NULL && (*out = PyList_New(0)) == NULL) { Py_DECREF(m); return -1; }
        int r = PyList_Append(*out, m);
        Py_DECREF(m);
        if (r) return -1;
    }
    return 0;
}

/* route one event and append it (batches that became full are appended to *out) */
/* route an event (ev, or a row of the C path) to its batches: the account key (account,
 * else computer) and, when dual, the source key (src_ip, else src_host, else computer);
 * each key given is the value to hash, NULL when it is empty */
static int nb_route(NBatcher *self, PyObject *ev, sink_t *row, long long seq, PyObject **out,
                    PyObject *acc, PyObject *comp, PyObject *ip, PyObject *host, int dual) {
    Py_ssize_t p = nb_part(self, acc ? acc : comp ? comp : S_empty);
    if (p < 0 || nb_put(self, 0, p, ev, row, seq, out)) return -1;
    if (!dual) return 0;
    Py_ssize_t ps = nb_part(self, ip ? ip : host ? host : comp ? comp : S_empty);
    return (ps < 0 || nb_put(self, 1, ps, ev, row, seq, out)) ? -1 : 0;
}

/* an event dict: account_key_string / source_key_string and Batcher.add's dual rule on its
 * values as Python reads them (None and "" hash to 0; a truthy non-str reaches key_hash) */
static int nb_add_core(NBatcher *self, PyObject *ev, long long seq, PyObject **out) {
    PyObject *acc = dget(ev, S_account), *comp = dget(ev, S_computer);
    PyObject *ip = dget(ev, S_src_ip), *host = dget(ev, S_src_host);
    int dual = 0;
    if (self->dual_key) {
        dual = truthy(ip) || truthy(host);
        if (!dual) {
            PyObject *e = dget(ev, S_event_id);
            if (e != NULL) {
                dual = PySet_Contains(self->source_ids, e);
                if (dual < 0) return -1;                /* unhashable: as `in` raises */
            }
        }
    }
    if (PyErr_Occurred()) return -1;
    return nb_route(self, ev, NULL, seq, out, truthy(acc) ? acc : NULL,
                    (comp != NULL && comp != Py_None) ? comp : NULL,
                    truthy(ip) ? ip : NULL, truthy(host) ? host : NULL, dual);
}

/* a row of the C path (its strings are str or NULL, its ints in range) */
static inline PyObject *row_str(sink_t *row, PyObject *f) {
    PyObject *v = sink_get(row, f);
    return (v != NULL && PyUnicode_GET_LENGTH(v)) ? v : NULL;
}

static PyObject *F_time_ms;              /* (defined with the normalizer's field names) */

static int nb_add_row(NBatcher *self, sink_t *row, long long seq, PyObject **out) {
    if (self->time_offset) {
        int col = layout_col(&self->L, F_time_ms);
        if (col >= 0 && col < self->L.k) row->num[col] += self->time_offset;
    }
    PyObject *ip = row_str(row, S_src_ip), *host = row_str(row, S_src_host);
    int dual = 0;
    if (self->dual_key) {
        dual = ip != NULL || host != NULL;
        if (!dual) {
            int col = layout_col(&self->L, S_event_id);
            long long e = (col >= 0 && col < self->L.k) ? row->num[col] : -1;
            dual = e >= 0 && e < 65536 && (self->src_bits[e >> 3] >> (e & 7)) & 1;
        }
    }
    return nb_route(self, NULL, row, seq, out, row_str(row, S_account),
                    row_str(row, S_computer), ip, host, dual);
}

/* add(ev, seq) -> None, or the list of batches that became full */
static PyObject *nb_add(NBatcher *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(ev, seq)");
        return NULL;
    }
    PyObject *ev = args[0];
    long long seq = PyLong_AsLongLong(args[1]);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    if (!PyDict_Check(ev)) {
        PyErr_SetString(PyExc_TypeError, "NativeBatcher.add: an event dict");
        return NULL;
    }
    PyObject *out = NULL;
    if (nb_add_core(self, ev, seq, &out)) {
        Py_XDECREF(out);
        return NULL;
    }
    if (out == NULL) Py_RETURN_NONE;
    return out;
}

/* flush() -> every non-empty batch, by (kind, partition) */
static PyObject *nb_flush(NBatcher *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t kind = 0; kind < 2; kind++)
        for (Py_ssize_t p = 0; p < self->partitions; p++) {
            colbuf *b = &self->bufs[kind * self->partitions + p];
            if (b->events == NULL || b->count == 0) continue;
            PyObject *m = nb_emit(self, kind, p);
            if (m == NULL || PyList_Append(out, m)) { Py_XDECREF(m); Py_DECREF(out); return NULL; }
            Py_DECREF(m);
        }
    return out;
}

static PyObject *nb_add_evtx(NBatcher *self, PyObject *args);
static PyObject *nb_add_chunk(NBatcher *self, PyObject *args);

static PyMethodDef nb_methods[] = {
    {"add_evtx", (PyCFunction)nb_add_evtx, METH_VARARGS,
     "add_evtx(datas, start, seq, read_ids, unknown_ids) -> (stop, seq, normalized, unknown, "
     "batches|None): evtx JSON records from datas[start:] straight to events and into the "
     "batches, until the end or the first record the C path declines (stop = its index: "
     "the caller takes it through the Python path, then calls again from stop + 1); "
     "read_ids / unknown_ids (dicts: event id -> count) are incremented"},
    {"add_chunk", (PyCFunction)nb_add_chunk, METH_VARARGS,
     "add_chunk(chunk, i, hi, seq, read_ids, unknown_ids) -> (stop, seq, read, normalized, "
     "unknown, batches|None): records i..hi-1 of an EVTX chunk (binary XML read in place) "
     "straight to events and batches, until hi or the first record the reader declines "
     "(stop = its index: the caller takes it from the crate, then calls again from stop + 1)"},
    {"add", (PyCFunction)(void (*)(void))nb_add, METH_FASTCALL,
     "add(ev, seq): None, or [(kind, partition, last_seq, n, payload)] of full batches"},
    {"flush", (PyCFunction)nb_flush, METH_NOARGS, "every non-empty batch"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef nb_members[] = {
    {"max_events", T_PYSSIZET, offsetof(NBatcher, max_events), 0, "events per batch"},
    {"pending", T_PYSSIZET, offsetof(NBatcher, pending), READONLY, "events not emitted yet"},
    {"wire", T_INT, offsetof(NBatcher, wire), 0,
     "emit the batches' wire bytes (stream.wire v2) instead of their columns"},
    {"partitions", T_PYSSIZET, offsetof(NBatcher, partitions), READONLY, "partitions"},
    {"time_offset", T_LONGLONG, offsetof(NBatcher, time_offset), 0,
     "ms added to the time of the rows add_evtx / add_chunk build (not to add()'s events)"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject NBatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collectors._native.NativeBatcher",
    .tp_basicsize = sizeof(NBatcher),
    .tp_dealloc = (destructor)nb_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "NativeBatcher(partitions, max_events, dual_key, source_ids, key_hash, layout):"
              " batcher.Batcher's Python path in C (same batches, same order)",
    .tp_methods = nb_methods,
    .tp_members = nb_members,
    .tp_init = (initproc)nb_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------
 * normalize: the per-event-id functions of collectors/normalize.py (_gen_source), table-driven
 * from EVENT_TABLE (set_table, called once by normalize.py). ASCII strings only: a record
 * whose consumed strings are not all plain ASCII str objects is declined (None), as are the
 * ids whose spec the C side does not model (account attribute folding).
 * ---------------------------------------------------------------------------------------- */

#define FK_PLAIN 0
#define FK_IP 1
#define FK_HOST 2
#define FK_LOWER 3

#define SP_NULL_SUBJECT 1     /* 4624: SubjectUserSid S-1-0-0 */
#define SP_VALUE_LOWER 2      /* 4781: value lower case, always set */
#define SP_TGS 4              /* 4769: service ending in $, TransmittedServices */
#define SP_VALUE_DELETED 8    /* 5136: OperationType */
#define SP_USER_SID 16        /* 7045: account_sid from the System UserID */
#define SP_HAS_SRC_IP 32      /* the spec maps src_ip */
#define SP_ACCOUNT_ATTRS 64   /* 4720/4722/4738/4741/4742: Normalizer._account_attrs */
#define SP_SUBJECT_ANON 128   /* 4738/4742: SubjectUserSid S-1-5-7 */

typedef struct { PyObject *name, *dom, *sid; } nspec;         /* keys (NULL = none) */
typedef struct { PyObject *field, *key; int kind; } fspec;
typedef struct { PyObject *field, *key; long long dflt; int is_unsigned; } ispec;

typedef struct {
    int used;
    PyObject *action, *proto;           /* proto NULL: the authentication-package rule */
    int has_acc, has_tgt;
    nspec acc, tgt;
    int n_fields, n_ints, n_extra, special, failure;   /* failure: 0 none, 1 always, 2 Status */
    int chan_rule;                      /* which normalize.channel_ok rule (chan_ok below) */
    fspec fields[12];
    ispec ints[8];
    PyObject *extra[12];
    int want_all;                       /* the key table was full: render every value */
    uint64_t want[4];                   /* the EventData keys it reads (bits of wkeys ids) */
} espec;

/* Every EventData key some event id's normalizer reads, numbered (append-only: the ids in
 * templates compiled earlier stay valid); the binary-XML reader renders only the values an
 * event id reads (espec.want), the flat record (chunk_flat) every value. */
#define WK_MAX 256
#define WK_SLOTS 1024
static struct { const char *k; Py_ssize_t n; } wkeys[WK_MAX];
static int n_wkeys;
static short wk_slot[WK_SLOTS];         /* key id + 1; 0 = empty */


static int wk_find(const char *k, Py_ssize_t n, int add) {
    size_t i = shash(k, n) & (WK_SLOTS - 1);
    while (wk_slot[i]) {
        int id = wk_slot[i] - 1;
        if (wkeys[id].n == n && memcmp(wkeys[id].k, k, (size_t)n) == 0) return id;
        i = (i + 1) & (WK_SLOTS - 1);
    }
    if (!add || n_wkeys >= WK_MAX) return -1;
    wkeys[n_wkeys].k = k;
    wkeys[n_wkeys].n = n;
    wk_slot[i] = (short)(++n_wkeys);
    return n_wkeys - 1;
}

/* key (an interned ASCII str the table keeps alive) into e's wanted set */
static void wk_want(espec *e, PyObject *key) {
    if (key == NULL) return;
    int id = wk_find((const char *)PyUnicode_DATA(key), PyUnicode_GET_LENGTH(key), 1);
    if (id < 0) e->want_all = 1;
    else e->want[id >> 6] |= (uint64_t)1 << (id & 63);
}

#define MAX_EID 8192
static espec *etable = NULL;            /* indexed by event id (< MAX_EID) */
static unsigned char consumed[MAX_EID]; /* normalize.NORMALIZED_EVENT_IDS */

static PyObject *F_time_ms, *F_record_id, *F_event_id, *F_computer, *F_channel, *F_provider,
    *F_action, *F_protocol, *F_account, *F_account_domain, *F_account_sid, *F_target_account,
    *F_target_sid, *F_src_ip, *F_service, *F_value, *F_flags, *F_extra, *F_object,
    *F_properties, *R_uac, *R_spn, *R_sam, *R_props[5], *R_user_sid,
    *R_subject_sid, *R_transmitted, *R_operation, *R_status, *R_authpkg, *R_logonproc,
    *P_kerberos, *P_ntlm, *P_negotiate;

typedef struct { const char *p; Py_ssize_t n; PyObject *obj; } span;   /* obj: whole value */

#define DECLINE 1

static inline int a_space(char c) {     /* str.isspace() on ASCII */
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static inline char a_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }
static inline char a_upper(char c) { return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c; }

static int ieq(const char *p, Py_ssize_t n, const char *w) {    /* ASCII case-insensitive */
    Py_ssize_t m = (Py_ssize_t)strlen(w);
    if (m != n) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (a_lower(p[i]) != w[i]) return 0;
    return 1;
}

/* What the normalizer reads a record through: a flat record (dict), or the spans of an
 * evtx JSON record scanned in place (evtx_event: no dict, no str per raw value). */
typedef struct {
    uint64_t h;
    const char *k, *v;
    Py_ssize_t kn, vn;
    int ascii;
} rv_entry;

#define RV_MAX 120
#define RV_SLOTS 256
typedef struct {
    PyObject *dict;
    int n;
    rv_entry e[RV_MAX];
    unsigned char slot[RV_SLOTS];       /* entry index + 1; 0 = empty */
} recview;

/* add a key (the last of duplicate keys wins, as in a dict); FAIL when full */
static int rv_put(recview *rv, const char *k, Py_ssize_t kn, const char *v, Py_ssize_t vn,
                  int ascii) {
    uint64_t h = shash(k, kn);
    size_t i = h & (RV_SLOTS - 1);
    while (rv->slot[i]) {
        rv_entry *e = &rv->e[rv->slot[i] - 1];
        if (e->h == h && e->kn == kn && memcmp(e->k, k, (size_t)kn) == 0) {
            e->v = v;
            e->vn = vn;
            e->ascii = ascii;
            return 0;
        }
        i = (i + 1) & (RV_SLOTS - 1);
    }
    if (rv->n >= RV_MAX) return FAIL;
    rv_entry *e = &rv->e[rv->n++];
    e->h = h;
    e->k = k;
    e->kn = kn;
    e->v = v;
    e->vn = vn;
    e->ascii = ascii;
    rv->slot[i] = (unsigned char)rv->n;
    return 0;
}

/* shash of a key object (the table's and the module's key strings), remembered by identity;
 * an entry holds a reference, so its address is never another object's */
static struct { PyObject *k; uint64_t h; } khc[512];

static inline uint64_t key_shash(PyObject *key, const char *k, Py_ssize_t kn) {
    size_t i = ((uintptr_t)key >> 4) & 511;
    if (khc[i].k == key) return khc[i].h;
    uint64_t h = shash(k, kn);
    Py_INCREF(key);
    Py_XSETREF(khc[i].k, key);
    khc[i].h = h;
    return h;
}

/* rec.get(key): 0 with *present and the ASCII value (p, n; obj = the str of a dict value),
 * DECLINE for a value that is not an ASCII str (or None), -1 on error */
static int rv_raw(recview *rv, PyObject *key, const char **p, Py_ssize_t *n, PyObject **obj,
                  int *present) {
    *p = "";
    *n = 0;
    *obj = NULL;
    *present = 0;
    if (key == NULL) return 0;
    if (rv->dict != NULL) {
        PyObject *v = PyDict_GetItemWithError(rv->dict, key);
        if (v == NULL) return PyErr_Occurred() ? -1 : 0;
        *present = 1;
        if (v == Py_None) return 0;
        if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v)) return DECLINE;
        *p = (const char *)PyUnicode_DATA(v);
        *n = PyUnicode_GET_LENGTH(v);
        *obj = v;
        return 0;
    }
    const char *k = (const char *)PyUnicode_DATA(key);     /* table keys are ASCII */
    Py_ssize_t kn = PyUnicode_GET_LENGTH(key);
    uint64_t h = key_shash(key, k, kn);
    size_t i = h & (RV_SLOTS - 1);
    while (rv->slot[i]) {
        rv_entry *e = &rv->e[rv->slot[i] - 1];
        if (e->h == h && e->kn == kn && memcmp(e->k, k, (size_t)kn) == 0) {
            *present = 1;
            if (e->ascii != 1) return DECLINE;
            *p = e->v;
            *n = e->vn;
            return 0;
        }
        i = (i + 1) & (RV_SLOTS - 1);
    }
    return 0;
}

/* rec.get(key) stripped, "" for the empty markers (normalize._fs) */
static int fs(recview *rv, PyObject *key, span *out) {
    const char *p;
    Py_ssize_t n0;
    PyObject *v;
    int present;
    out->p = "";
    out->n = 0;
    out->obj = NULL;
    int rc = rv_raw(rv, key, &p, &n0, &v, &present);
    if (rc || n0 == 0) return rc;
    Py_ssize_t a = 0, b = n0, n;
    while (a < b && a_space(p[a])) a++;
    while (b > a && a_space(p[b - 1])) b--;
    n = b - a;
    if (n <= 6 && (n == 0 || ieq(p + a, n, "-") || ieq(p + a, n, "%%1793") ||
                   ieq(p + a, n, "null") || ieq(p + a, n, "none") || ieq(p + a, n, "n/a")))
        return 0;
    out->p = p + a;
    out->n = n;
    out->obj = (v != NULL && a == 0 && b == n0) ? v : NULL;
    return 0;
}

/* a str from a span with a case map (0 none, 1 lower, 2 upper); reuses the value when
 * nothing changes */
static PyObject *span_str(const span *s, int cmap) {
    if (s->n == 0) { Py_INCREF(S_empty); return S_empty; }
    int same = s->obj != NULL;
    if (same && cmap) {
        for (Py_ssize_t i = 0; i < s->n; i++) {
            char c = s->p[i];
            if (cmap == 1 ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')) { same = 0; break; }
        }
    }
    if (same) { Py_INCREF(s->obj); return s->obj; }
    if (!cmap || s->n > SC_MAXLEN) {
        if (!cmap) return ascii_str(s->p, s->n);
        PyObject *o = PyUnicode_New(s->n, 127);
        if (o == NULL) return NULL;
        char *d = (char *)PyUnicode_DATA(o);
        for (Py_ssize_t i = 0; i < s->n; i++)
            d[i] = cmap == 1 ? a_lower(s->p[i]) : a_upper(s->p[i]);
        return o;
    }
    char d[SC_MAXLEN];
    for (Py_ssize_t i = 0; i < s->n; i++)
        d[i] = cmap == 1 ? a_lower(s->p[i]) : a_upper(s->p[i]);
    return ascii_str(d, s->n);
}


/* normalize.norm_account(name, domain, computer) on stripped ASCII spans; the result is
 * written to buf (lower case), its length returned */
static Py_ssize_t norm_account_c(const span *name, const span *dom, const char *comp,
                                 Py_ssize_t compn, char *buf) {
    if (name->n == 0) return 0;
    const char *n = name->p, *d = dom->p;
    Py_ssize_t nn = name->n, dn = dom->n;
    const char *bs = memchr(n, '\\', (size_t)nn);
    if (bs != NULL) {
        d = n;
        dn = bs - n;
        n = bs + 1;
        nn = name->n - dn - 1;
    } else {
        const char *at = memchr(n, '@', (size_t)nn);
        if (at != NULL) {
            if (dn == 0) { d = at + 1; dn = nn - (at - n) - 1; }
            nn = at - n;
        }
    }
    Py_ssize_t o = 0;
    if (dn > 0) {
        /* _dom_label: strip, lower, first label */
        Py_ssize_t a = 0, b = dn;
        while (a < b && a_space(d[a])) a++;
        while (b > a && a_space(d[b - 1])) b--;
        for (Py_ssize_t i = a; i < b && d[i] != '.'; i++) buf[o++] = a_lower(d[i]);
    } else {
        /* _computer_domain: the second label of a name with more than two */
        const char *dot1 = memchr(comp, '.', (size_t)compn);
        if (dot1 != NULL) {
            const char *rest = dot1 + 1;
            const char *dot2 = memchr(rest, '.', (size_t)(comp + compn - rest));
            if (dot2 != NULL)
                for (const char *c = rest; c < dot2; c++) buf[o++] = a_lower(*c);
        }
    }
    if (o > 0) buf[o++] = '\\';
    for (Py_ssize_t i = 0; i < nn; i++) buf[o++] = a_lower(n[i]);
    return o;
}


/* normalize._pint on an ASCII span: (value, ok); big values are reduced mod 2^64 with an
 * overflow flag (enough for `& 0xFFFFFFFF` and for the int32 range check) */
typedef struct { int ok, neg, big; uint64_t mag; } pint_t;

static pint_t pint_c(const span *s) {
    pint_t r = {0, 0, 0, 0};
    const char *p = s->p;
    Py_ssize_t n = s->n, i = 0;
    if (n == 0) return r;
    int hex = n >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    if (hex) {
        i = 2;
        if (i >= n) return r;
        for (; i < n; i++) {
            int h = hexv(p[i]);
            if (h < 0) return r;                    /* '_' and signs: declined by caller */
            if (r.mag >> 60) r.big = 1;
            r.mag = r.mag << 4 | (uint64_t)h;
        }
        r.ok = 1;
        return r;
    }
    if (p[0] == '+' || p[0] == '-') { r.neg = p[0] == '-'; i = 1; }
    if (i >= n) return r;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return r;
        uint64_t m = r.mag * 10 + (uint64_t)(p[i] - '0');
        if (r.mag > 1844674407370955161ULL || m < r.mag * 10) r.big = 1;
        r.mag = m;
    }
    r.ok = 1;
    return r;
}

static int has_underscore(const span *s) { return memchr(s->p, '_', (size_t)s->n) != NULL; }

static int contains(const char *p, Py_ssize_t n, const char *w) {   /* w lower case */
    Py_ssize_t m = (Py_ssize_t)strlen(w);
    for (Py_ssize_t i = 0; i + m <= n; i++) {
        Py_ssize_t j = 0;
        while (j < m && a_lower(p[i + j]) == w[j]) j++;
        if (j == m) return 1;
    }
    return 0;
}

/* orjson.dumps of {str: str} (ASCII) appended to buf; returns the new length or -1 */
static Py_ssize_t json_str(char *buf, Py_ssize_t o, Py_ssize_t cap, const char *p, Py_ssize_t n) {
    static const char hx[] = "0123456789abcdef";
    if (o + 2 + 6 * n > cap) return -1;
    buf[o++] = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') { buf[o++] = '\\'; buf[o++] = (char)c; }
        else if (c >= 0x20) buf[o++] = (char)c;
        else if (c == '\b') { buf[o++] = '\\'; buf[o++] = 'b'; }
        else if (c == '\t') { buf[o++] = '\\'; buf[o++] = 't'; }
        else if (c == '\n') { buf[o++] = '\\'; buf[o++] = 'n'; }
        else if (c == '\f') { buf[o++] = '\\'; buf[o++] = 'f'; }
        else if (c == '\r') { buf[o++] = '\\'; buf[o++] = 'r'; }
        else {
            buf[o++] = '\\'; buf[o++] = 'u'; buf[o++] = '0'; buf[o++] = '0';
            buf[o++] = hx[c >> 4]; buf[o++] = hx[c & 15];
        }
    }
    buf[o++] = '"';
    return o;
}

/* the event of one record (normalize._gen_source's function for its id), 0 with *out set,
 * DECLINE, or -1 on error; eid/tms/rid are the ints the event carries */
/* the sink's ops: the event dict (normalize, evtx_event), or a row of columns
 * (NativeBatcher.add_evtx: no dict) */
static int sink_obj(sink_t *k, PyObject *f, PyObject *v) {      /* v borrowed */
    if (k->dict != NULL) return PyDict_SetItem(k->dict, f, v) ? -1 : 0;
    int col = layout_col(k->L, f);
    if (col == -2) return -1;
    if (col < 0) return 0;                      /* not a column: the build ignores it */
    if (col < k->L->k) {
        long long x = PyLong_AsLongLong(v);
        if (x == -1 && PyErr_Occurred()) return -1;
        k->num[col] = x;
        return 0;
    }
    Py_INCREF(v);
    Py_XSETREF(k->str[col - k->L->k], v);
    return 0;
}

static int sink_int(sink_t *k, PyObject *f, long long x) {
    if (k->dict != NULL) {
        PyObject *o = PyLong_FromLongLong(x);
        if (o == NULL) return -1;
        int r = PyDict_SetItem(k->dict, f, o);
        Py_DECREF(o);
        return r ? -1 : 0;
    }
    int col = layout_col(k->L, f);
    if (col == -2) return -1;
    if (col >= 0 && col < k->L->k) k->num[col] = x;
    return 0;
}

static int sink_span(sink_t *k, PyObject *f, const span *sp, int cmap) {
    PyObject *v = span_str(sp, cmap);
    if (v == NULL) return -1;
    int r = sink_obj(k, f, v);
    Py_DECREF(v);
    return r;
}

static int sink_buf(sink_t *k, PyObject *f, const char *b, Py_ssize_t n) {
    PyObject *v = ascii_str(b, n);
    if (v == NULL) return -1;
    int r = sink_obj(k, f, v);
    Py_DECREF(v);
    return r;
}

/* the event of one record (normalize._gen_source's function for its id) into the sink: 0,
 * DECLINE, or -1 on error */
static int normalize_core(recview *rv, espec *sp, sink_t *ev, long long eid, long long tms,
                          long long rid) {
    span comp, s1, s2, s3;
    char nbuf[1024], cbuf[512];
    int rc, present;
    PyObject *ch = NULL, *pv = NULL, *chs = NULL;
    const char *rp;
    Py_ssize_t rn;
#define TRY(x) do { rc = (x); if (rc) goto out; } while (0)

    TRY(fs(rv, K_computer, &comp));
    /* computer: _fs(...).lower().lstrip('\\') */
    Py_ssize_t cn = 0;
    {
        Py_ssize_t a = 0;
        while (a < comp.n && comp.p[a] == '\\') a++;
        if (comp.n - a > (Py_ssize_t)sizeof(cbuf)) { rc = DECLINE; goto out; }
        for (Py_ssize_t i = a; i < comp.n; i++) cbuf[cn++] = a_lower(comp.p[i]);
    }
    span chan = {"", 0, NULL};
    if (rv->dict != NULL) {
        /* str(ch).lower() / str(pv): only ASCII str channels and str providers here */
        ch = PyDict_GetItemWithError(rv->dict, K_channel);
        pv = PyDict_GetItemWithError(rv->dict, K_provider);
        if (PyErr_Occurred()) return -1;
        if (ch != NULL && !(PyUnicode_CheckExact(ch) && PyUnicode_IS_ASCII(ch))) return DECLINE;
        if (pv != NULL && !PyUnicode_CheckExact(pv)) return DECLINE;
        if (ch != NULL) {
            chan.p = PyUnicode_DATA(ch);
            chan.n = PyUnicode_GET_LENGTH(ch);
            chan.obj = ch;
        }
        if (pv != NULL) Py_INCREF(pv);
    } else {
        TRY(rv_raw(rv, K_channel, &chan.p, &chan.n, &chs, &present));
        TRY(rv_raw(rv, K_provider, &rp, &rn, &chs, &present));
        pv = ascii_str(rp, rn);
        if (pv == NULL) return -1;
    }

    TRY(sink_int(ev, F_time_ms, tms));
    TRY(sink_int(ev, F_record_id, rid));
    TRY(sink_int(ev, F_event_id, eid));
    TRY(sink_buf(ev, F_computer, cbuf, cn));
    TRY(sink_span(ev, F_channel, &chan, 1));
    TRY(sink_obj(ev, F_provider, pv != NULL ? pv : S_empty));
    TRY(sink_obj(ev, F_action, sp->action));
    if (sp->proto != NULL) {
        TRY(sink_obj(ev, F_protocol, sp->proto));
    } else {                                    /* _proto_auth */
        TRY(fs(rv, R_authpkg, &s1));
        if (s1.n == 0) TRY(fs(rv, R_logonproc, &s1));
        PyObject *pr = NULL;
        if (contains(s1.p, s1.n, "kerberos")) pr = P_kerberos;
        else if (contains(s1.p, s1.n, "ntlm")) pr = P_ntlm;
        else if (contains(s1.p, s1.n, "negotiate")) pr = P_negotiate;
        if (pr != NULL) TRY(sink_obj(ev, F_protocol, pr));
        else TRY(sink_span(ev, F_protocol, &s1, 1));
    }
    long flags = 0;
    if (sp->has_acc) {
        TRY(fs(rv, sp->acc.name, &s1));
        TRY(fs(rv, sp->acc.dom, &s2));
        if (s1.n + s2.n + cn + 2 > (Py_ssize_t)sizeof(nbuf)) { rc = DECLINE; goto out; }
        TRY(sink_buf(ev, F_account, nbuf, norm_account_c(&s1, &s2, cbuf, cn, nbuf)));
        if (sp->acc.dom) TRY(sink_span(ev, F_account_domain, &s2, 0));
        int anon_sid = 0;
        if (sp->acc.sid) {
            TRY(fs(rv, sp->acc.sid, &s3));
            TRY(sink_span(ev, F_account_sid, &s3, 2));
            anon_sid = ieq(s3.p, s3.n, "s-1-5-7");
        }
        if (s1.n && s1.p[s1.n - 1] == '$') flags |= 1;                       /* machine */
        if (ieq(s1.p, s1.n, "anonymous logon") || ieq(s1.p, s1.n, "anonymous") || anon_sid)
            flags |= 4;                                                       /* anonymous */
    } else if (sp->special & SP_USER_SID) {
        TRY(fs(rv, K_user_sid, &s3));
        TRY(sink_span(ev, F_account_sid, &s3, 2));
    }
    if (sp->has_tgt) {
        TRY(fs(rv, sp->tgt.name, &s1));
        TRY(fs(rv, sp->tgt.dom, &s2));
        if (s1.n + s2.n + cn + 2 > (Py_ssize_t)sizeof(nbuf)) { rc = DECLINE; goto out; }
        TRY(sink_buf(ev, F_target_account, nbuf, norm_account_c(&s1, &s2, cbuf, cn, nbuf)));
        if (sp->tgt.sid) {
            TRY(fs(rv, sp->tgt.sid, &s3));
            TRY(sink_span(ev, F_target_sid, &s3, 2));
        }
        if (s1.n && s1.p[s1.n - 1] == '$') flags |= 8;                       /* target machine */
    }
    for (int i = 0; i < sp->n_fields; i++) {
        fspec *f = &sp->fields[i];
        TRY(fs(rv, f->key, &s1));
        if (s1.n == 0) continue;
        if (f->kind == FK_IP) {
            if (s1.n >= 7 && ieq(s1.p, 7, "::ffff:")) {
                s1.p += 7; s1.n -= 7; s1.obj = NULL;
                if (s1.n == 0) {                        /* "::ffff:" -> "" is still set */
                    TRY(sink_obj(ev, f->field, S_empty));
                    continue;
                }
            }
            TRY(sink_span(ev, f->field, &s1, 1));
        } else if (f->kind == FK_HOST) {
            while (s1.n && s1.p[0] == '\\') { s1.p++; s1.n--; s1.obj = NULL; }
            if (s1.n == 0) { TRY(sink_obj(ev, f->field, S_empty)); continue; }
            TRY(sink_span(ev, f->field, &s1, 1));
        } else {
            TRY(sink_span(ev, f->field, &s1, f->kind == FK_LOWER ? 1 : 0));
        }
    }
    for (int i = 0; i < sp->n_ints; i++) {
        ispec *f = &sp->ints[i];
        PyObject *unused;
        TRY(rv_raw(rv, f->key, &rp, &rn, &unused, &present));
        if (!present) continue;
        TRY(fs(rv, f->key, &s1));
        long long val = f->dflt;
        if (s1.n) {
            if (has_underscore(&s1)) { rc = DECLINE; goto out; }
            pint_t p = pint_c(&s1);
            if (p.ok) {
                if (f->is_unsigned) {
                    uint64_t m = p.neg ? (uint64_t)0 - p.mag : p.mag;
                    val = (long long)(m & 0xFFFFFFFFULL);
                } else if (!p.big && (p.neg ? p.mag <= 0x80000000ULL : p.mag <= 0x7FFFFFFFULL)) {
                    val = p.neg ? -(long long)p.mag : (long long)p.mag;
                }
            }
        }
        TRY(sink_int(ev, f->field, val));
    }
    if (sp->special & SP_ACCOUNT_ATTRS) {
        /* value = UserAccountControl, service = ServicePrincipalNames, object =
         * SamAccountName (lower), properties = "K=v;..." of the non-empty ones */
        TRY(fs(rv, R_uac, &s1));
        if (s1.n) TRY(sink_span(ev, F_value, &s1, 0));
        TRY(fs(rv, R_spn, &s1));
        if (s1.n) TRY(sink_span(ev, F_service, &s1, 0));
        TRY(fs(rv, R_sam, &s1));
        if (s1.n) TRY(sink_span(ev, F_object, &s1, 1));
        char pbuf[4096];
        Py_ssize_t pn = 0;
        for (int i = 0; i < 5; i++) {
            TRY(fs(rv, R_props[i], &s1));
            if (s1.n == 0) continue;
            Py_ssize_t kl = PyUnicode_GET_LENGTH(R_props[i]);
            if (pn + kl + s1.n + 2 > (Py_ssize_t)sizeof(pbuf)) { rc = DECLINE; goto out; }
            if (pn) pbuf[pn++] = ';';
            memcpy(pbuf + pn, PyUnicode_DATA(R_props[i]), (size_t)kl);
            pn += kl;
            pbuf[pn++] = '=';
            memcpy(pbuf + pn, s1.p, (size_t)s1.n);
            pn += s1.n;
        }
        if (pn) TRY(sink_buf(ev, F_properties, pbuf, pn));
    }
    if (sp->special & SP_NULL_SUBJECT) {
        TRY(fs(rv, R_subject_sid, &s1));
        if (ieq(s1.p, s1.n, "s-1-0-0")) flags |= 32;
    }
    if (sp->special & SP_SUBJECT_ANON) {
        TRY(fs(rv, R_subject_sid, &s1));
        if (ieq(s1.p, s1.n, "s-1-5-7")) flags |= 4;
    }
    if (sp->special & SP_VALUE_LOWER) {
        PyObject *v = sink_get(ev, F_value);
        if (v == NULL) {
            if (PyErr_Occurred()) { rc = -1; goto out; }
            TRY(sink_obj(ev, F_value, S_empty));
        } else {
            span s = {PyUnicode_DATA(v), PyUnicode_GET_LENGTH(v), v};
            TRY(sink_span(ev, F_value, &s, 1));
        }
    }
    if (sp->special & SP_TGS) {
        PyObject *v = sink_get(ev, F_service);
        if (v == NULL && PyErr_Occurred()) { rc = -1; goto out; }
        if (v != NULL && PyUnicode_GET_LENGTH(v) &&
            ((const char *)PyUnicode_DATA(v))[PyUnicode_GET_LENGTH(v) - 1] == '$')
            flags |= 8;
        TRY(fs(rv, R_transmitted, &s1));
        if (s1.n) flags |= 64;
    }
    if (sp->special & SP_VALUE_DELETED) {
        TRY(fs(rv, R_operation, &s1));
        if (contains(s1.p, s1.n, "%%14675") || contains(s1.p, s1.n, "value deleted"))
            flags |= 128;
    }
    if (sp->failure == 1) {
        flags |= 2;
    } else if (sp->failure == 2) {
        TRY(fs(rv, R_status, &s1));
        if (s1.n) {
            if (has_underscore(&s1)) { rc = DECLINE; goto out; }
            pint_t p = pint_c(&s1);
            if (p.ok && (p.mag != 0 || p.big)) flags |= 2;
        }
    }
    if (sp->special & SP_HAS_SRC_IP) {
        PyObject *v = sink_get(ev, F_src_ip);
        if (v == NULL && PyErr_Occurred()) { rc = -1; goto out; }
        const char *ip = v ? (const char *)PyUnicode_DATA(v) : "";
        Py_ssize_t ipn = v ? PyUnicode_GET_LENGTH(v) : 0;
        int loop4 = ipn == 9 && memcmp(ip, "127.0.0.1", 9) == 0;
        int loop6 = ipn == 3 && memcmp(ip, "::1", 3) == 0;
        if (ipn == 0 || loop4 || loop6 || (ipn == 9 && memcmp(ip, "localhost", 9) == 0) ||
            (ipn >= 4 && memcmp(ip, "127.", 4) == 0)) {
            flags |= 16;
            if (loop4 || loop6) TRY(sink_obj(ev, F_src_ip, S_empty));
        }
    }
    TRY(sink_int(ev, F_flags, flags));
    if (sp->n_extra) {
        char xbuf[8192];
        Py_ssize_t o = 0;
        int any = 0;
        xbuf[o++] = '{';
        for (int i = 0; i < sp->n_extra; i++) {
            TRY(fs(rv, sp->extra[i], &s1));
            if (s1.n == 0) continue;
            if (any) xbuf[o++] = ',';
            any = 1;
            const char *k = PyUnicode_DATA(sp->extra[i]);
            o = json_str(xbuf, o, (Py_ssize_t)sizeof(xbuf) - 2, k, PyUnicode_GET_LENGTH(sp->extra[i]));
            if (o < 0) { rc = DECLINE; goto out; }
            xbuf[o++] = ':';
            o = json_str(xbuf, o, (Py_ssize_t)sizeof(xbuf) - 2, s1.p, s1.n);
            if (o < 0) { rc = DECLINE; goto out; }
        }
        xbuf[o++] = '}';
        if (any) TRY(sink_buf(ev, F_extra, xbuf, o > 4000 ? 4000 : o));
    }
    Py_XDECREF(pv);
    return 0;
out:
#undef TRY
    Py_XDECREF(pv);
    return rc;
}

static PyObject *normalize_c(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "normalize(rec, eid, time_ms, record_id)");
        return NULL;
    }
    PyObject *rec = args[0];
    if (etable == NULL || !PyDict_CheckExact(rec)) Py_RETURN_NONE;
    long eid = PyLong_AsLong(args[1]);
    if (eid == -1 && PyErr_Occurred()) { PyErr_Clear(); Py_RETURN_NONE; }
    if (eid < 0 || eid >= MAX_EID || !etable[eid].used) Py_RETURN_NONE;
    long long tms = PyLong_AsLongLong(args[2]), rid = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) { PyErr_Clear(); Py_RETURN_NONE; }
    recview rv;
    rv.dict = rec;
    rv.n = 0;
    sink_t ev;
    ev.dict = _PyDict_NewPresized(24);
    if (ev.dict == NULL) return NULL;
    int rc = normalize_core(&rv, &etable[eid], &ev, eid, tms, rid);
    if (rc == 0) return ev.dict;
    Py_DECREF(ev.dict);
    if (rc < 0 && PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError)) return NULL;
    PyErr_Clear();
    Py_RETURN_NONE;
}


/* normalize.channel_ok, by rule (ASCII) */
static int chan_ok(int rule, const char *ch, Py_ssize_t chn, const char *pv, Py_ssize_t pvn) {
    switch (rule) {
    case 1: return ieq(ch, chn, "system") || contains(pv, pvn, "eventlog");
    case 2: return ieq(ch, chn, "system") || contains(pv, pvn, "service control manager");
    case 3: return ieq(ch, chn, "system") || contains(pv, pvn, "netlogon");
    case 4: return ieq(ch, chn, "microsoft-windows-ntlm/operational") || chn == 0 ||
                   contains(pv, pvn, "ntlm");
    case 5: return ieq(ch, chn, "directory service") || chn == 0 ||
                   contains(pv, pvn, "activedirectory");
    default: return ieq(ch, chn, "security") ||
                    ieq(pv, pvn, "microsoft-windows-security-auditing") || (chn == 0 && pvn == 0);
    }
}

static char *scratch = NULL;            /* unescaped values of the record being read */
static Py_ssize_t scratch_cap = 0;

/* a string value's span for the view: unescaped into the scratch when it has escapes */
static int sv_span(scan *s, const char *a, Py_ssize_t n, int esc, char **sp, const char **v,
                   Py_ssize_t *vn, int *ascii) {
    if (!esc) {
        *v = a;
        *vn = n;
        *ascii = s->ascii;
        return 0;
    }
    Py_ssize_t o = unescape(a, n, *sp, ascii);
    if (o < 0) return FAIL;
    *v = *sp;
    *vn = o;
    *sp += o;
    return 0;
}

/* EventData into the view: string -> its text, int -> its digits (str(int)), null -> "";
 * any other value or key (Data, #attributes, Binary, '_'-prefixed, escaped) is FAIL (the
 * Python path flattens those) */
static int event_data(scan *s, recview *rv, char **sp) {
    int first = 1, r;
    const char *k; Py_ssize_t kn; int kesc;
    if (obj_begin(s)) return FAIL;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (kesc || kn == 0 || k[0] == '_' || k[0] == '#' ||
            (kn == 4 && memcmp(k, "Data", 4) == 0) || (kn == 6 && memcmp(k, "Binary", 6) == 0))
            return FAIL;
        const char *v;
        Py_ssize_t vn;
        int ascii = 1;
        char c = *s->p;
        if (c == '"') {
            const char *a; Py_ssize_t n; int esc;
            if (str_span(s, &a, &n, &esc) || sv_span(s, a, n, esc, sp, &v, &vn, &ascii))
                return FAIL;
        } else if (c == 'n') {
            if (lit(s, "null", 4)) return FAIL;
            v = "";
            vn = 0;
        } else {
            const char *a = s->p;
            long long x;
            if (num_span(s, &x)) return FAIL;
            v = a;
            vn = s->p - a;
        }
        if (rv_put(rv, k, kn, v, vn, ascii)) return FAIL;
    }
    return r == FAIL ? FAIL : 0;
}

static int event_obj(scan *s, sysinfo *y, recview *rv, char **sp) {
    int first = 1, r;
    const char *k; Py_ssize_t kn; int kesc;
    if (obj_begin(s)) return FAIL;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (KEQ(k, kn, kesc, "System")) {
            if (y->seen_sys++ || system_obj(s, y)) return FAIL;
        } else if (KEQ(k, kn, kesc, "EventData")) {
            if (y->seen_ed++) return FAIL;
            if (*s->p == 'n') { if (lit(s, "null", 4)) return FAIL; }
            else if (event_data(s, rv, sp)) return FAIL;
        } else if (KEQ(k, kn, kesc, "UserData")) {
            if (y->seen_ud++ || lit(s, "null", 4)) return FAIL;
        } else if (skip_value(s, 1)) {
            return FAIL;
        }
    }
    return r == FAIL ? FAIL : 0;
}

static int sys_put(scan *s, recview *rv, PyObject *key, sval *v, char **sp) {
    const char *p = "";
    Py_ssize_t n = 0;
    int ascii = 1;
    if (v != NULL && v->set && !v->isnull && sv_span(s, v->a, v->n, v->esc, sp, &p, &n, &ascii))
        return FAIL;
    return rv_put(rv, (const char *)PyUnicode_DATA(key), PyUnicode_GET_LENGTH(key), p, n, ascii);
}

static int scratch_reserve(Py_ssize_t len) {
    if (len <= scratch_cap) return 0;
    char *nb = PyMem_Realloc(scratch, (size_t)len + 64);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    scratch = nb;
    scratch_cap = len + 64;
    return 0;
}

/* One pass over a record's JSON text: the System fields into *Y, the EventData entries into
 * the view (in order; a duplicate key keeps its place and takes the last value, as a dict
 * does), the event time into *tms. FAIL for anything the Python path must decide: invalid
 * JSON, a missing or duplicated section, UserData, an unusual value, a bad time. */
static int scan_record(scan *s, sysinfo *Y, recview *rv, char **sp, long long *tms) {
    const char *k; Py_ssize_t kn; int kesc, r, first = 1, seen_event = 0;
    memset(Y, 0, sizeof *Y);
    rv->dict = NULL;
    rv->n = 0;
    memset(rv->slot, 0, sizeof rv->slot);
    ws(s);
    if (obj_begin(s)) return FAIL;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (KEQ(k, kn, kesc, "Event")) {
            if (seen_event++ || event_obj(s, Y, rv, sp)) return FAIL;
        } else if (skip_value(s, 1)) {
            return FAIL;
        }
    }
    ws(s);
    if (r == FAIL || s->p != s->end || !seen_event || !Y->seen_sys || !Y->have_eid ||
        !Y->stime.set || Y->stime.isnull || Y->stime.esc)
        return FAIL;
    return time_ms(Y->stime.a, Y->stime.n, tms);
}

/* Provider: Name, else EventSourceName, else "" (`a or b or ""`) */
static sval *provider(sysinfo *Y) {
    if (Y->pname.set && !Y->pname.isnull && Y->pname.n > 0) return &Y->pname;
    if (Y->pesn.set && !Y->pesn.isnull && Y->pesn.n > 0) return &Y->pesn;
    return NULL;
}

/* records.from_evtx_json(orjson.loads(data)) for the common shape (the scan of
 * scan_record), else None. The System keys come first, as from_evtx_json puts them. */
static PyObject *flat_from_evtx_json(PyObject *self, PyObject *arg) {
    if (!PyUnicode_CheckExact(arg)) Py_RETURN_NONE;
    Py_ssize_t len;
    const char *txt = PyUnicode_AsUTF8AndSize(arg, &len);
    if (txt == NULL) { PyErr_Clear(); Py_RETURN_NONE; }   /* lone surrogates */
    if (scratch_reserve(len)) return NULL;
    char *sp = scratch;
    scan S = {txt, txt + len, PyUnicode_IS_ASCII(arg)};
    scan *s = &S;
    sysinfo Y;
    recview rv;
    long long tms;
    if (scan_record(s, &Y, &rv, &sp, &tms)) Py_RETURN_NONE;
    sval *prov = provider(&Y);
    PyObject *pv;
    if (prov) pv = make_str(s, prov->a, prov->n, prov->esc);
    else { pv = S_empty; Py_INCREF(pv); }
    PyObject *rec = _PyDict_NewPresized(rv.n + 7);
    if (rec == NULL) { Py_XDECREF(pv); return NULL; }
    if (put(rec, K_eid, PyLong_FromLongLong(Y.eid)) || put(rec, K_time_ms, PyLong_FromLongLong(tms))
        || put(rec, K_computer, sval_str(s, &Y.comp)) || put(rec, K_channel, sval_str(s, &Y.chan))
        || put(rec, K_provider, pv) || put(rec, K_record, PyLong_FromLongLong(Y.rid))
        || put(rec, K_user_sid, sval_str(s, &Y.uid)))
        goto fail;
    for (int i = 0; i < rv.n; i++) {
        rv_entry *e = &rv.e[i];
        PyObject *key = key_str(s, e->k, e->kn);
        if (key == NULL) goto fail;
        PyObject *v = e->ascii ? ascii_str(e->v, e->vn) : PyUnicode_DecodeUTF8(e->v, e->vn, NULL);
        int r = put(rec, key, v);
        Py_DECREF(key);
        if (r) goto fail;
    }
    return rec;
fail:
    Py_DECREF(rec);
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) return NULL;
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

/* a record's view (its System keys in) to its event: the channel guard, then the id's
 * normalizer into the sink; 0 (*eid set), DECLINE_REC (the Python path decides), -1 (out of
 * memory) */
#define DECLINE_REC 2
static int view_event(recview *rv, long long id, long long tms, long long rid, sink_t *sk,
                      long long *eid) {
    espec *e = &etable[id];
    const char *cp, *pp;
    Py_ssize_t cn, pn;
    PyObject *o;
    int present;
    if (rv_raw(rv, K_channel, &cp, &cn, &o, &present) ||
        rv_raw(rv, K_provider, &pp, &pn, &o, &present) || !chan_ok(e->chan_rule, cp, cn, pp, pn))
        return DECLINE_REC;
    int rc = normalize_core(rv, e, sk, id, tms, rid);
    if (rc == 0) {
        *eid = id;
        return 0;
    }
    if (rc < 0 && PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError)) return -1;
    PyErr_Clear();
    return DECLINE_REC;
}

/* peek + flat_from_evtx_json + normalize in one pass, without the flat record, into the
 * sink: 0 (an event), 1 (*eid: an id the product does not consume), DECLINE_REC (the
 * Python path decides), -1 (error) */
static int evtx_record(PyObject *arg, sink_t *sk, long long *eid) {
    if (etable == NULL || !PyUnicode_CheckExact(arg) || !PyUnicode_IS_ASCII(arg))
        return DECLINE_REC;
    const char *t = (const char *)PyUnicode_DATA(arg);
    Py_ssize_t len = PyUnicode_GET_LENGTH(arg);
    long long pe = peek_c(t, len);
    if (pe < 0) return DECLINE_REC;
    if (pe >= MAX_EID || !consumed[pe]) {
        *eid = pe;
        return 1;
    }
    if (scratch_reserve(len)) return -1;
    char *sp = scratch;
    scan S = {t, t + len, 1};
    scan *s = &S;
    sysinfo Y;
    recview rv;
    long long tms;
    if (scan_record(s, &Y, &rv, &sp, &tms)) return DECLINE_REC;
    if (Y.eid < 0 || Y.eid >= MAX_EID || !etable[Y.eid].used) return DECLINE_REC;
    /* the flat record's System keys (EventData keys starting with '_' were left to the
     * Python path, so nothing overrides them) */
    if (sys_put(s, &rv, K_computer, &Y.comp, &sp) || sys_put(s, &rv, K_channel, &Y.chan, &sp) ||
        sys_put(s, &rv, K_provider, provider(&Y), &sp) || sys_put(s, &rv, K_user_sid, &Y.uid, &sp))
        return DECLINE_REC;
    return view_event(&rv, Y.eid, tms, Y.rid, sk, eid);
}

static PyObject *evtx_event(PyObject *self, PyObject *arg) {
    sink_t ev;
    long long eid = 0;
    ev.dict = _PyDict_NewPresized(24);
    if (ev.dict == NULL) return NULL;
    int rc = evtx_record(arg, &ev, &eid);
    if (rc == 0) return ev.dict;
    Py_DECREF(ev.dict);
    if (rc < 0) return NULL;
    if (rc == 1) return PyLong_FromLongLong(eid);
    Py_RETURN_NONE;
}

/* the event-id counters of a block, merged into the caller's dicts at the end */
typedef struct { long long id[64]; long cnt[64]; int n; } idcount;

static int idc_flush(idcount *c, PyObject *d) {
    for (int i = 0; i < c->n; i++) {
        PyObject *k = PyLong_FromLongLong(c->id[i]);
        if (k == NULL) return -1;
        PyObject *old = PyDict_GetItemWithError(d, k);
        long base = 0;
        if (old != NULL) base = PyLong_AsLong(old);
        PyObject *v = (PyErr_Occurred()) ? NULL : PyLong_FromLong(base + c->cnt[i]);
        int r = v == NULL || PyDict_SetItem(d, k, v);
        Py_DECREF(k);
        Py_XDECREF(v);
        if (r) return -1;
    }
    c->n = 0;
    return 0;
}

static inline int idc_add(idcount *c, long long id, PyObject *d) {
    for (int i = 0; i < c->n; i++)
        if (c->id[i] == id) { c->cnt[i]++; return 0; }
    if (c->n == 64 && idc_flush(c, d)) return -1;
    c->id[c->n] = id;
    c->cnt[c->n++] = 1;
    return 0;
}

/* what a run of records (add_evtx, add_chunk) puts into the batches and counts */
typedef struct {
    long long seq;
    long n_read, n_norm, n_unk;
    idcount rc, uc;
    PyObject *read_ids, *unk_ids, *out;
} nb_run;

/* one record's outcome (r from evtx_record / bx_record: 0 its event in row, 1 an id the
 * product does not consume, DECLINE_REC, -1 error): 0 go on, 1 stop (declined), -1 error */
static int nb_take(NBatcher *self, nb_run *a, sink_t *row, int r, long long id) {
    if (r != 0) sink_clear(row);
    if (r < 0) return -1;
    if (r == DECLINE_REC) return 1;
    a->n_read++;
    if (r == 1) {                                       /* an id the product does not use */
        if (idc_add(&a->rc, id, a->read_ids) || idc_add(&a->uc, id, a->unk_ids)) return -1;
        a->n_unk++;
        return 0;
    }
    a->seq++;
    int bad = idc_add(&a->rc, id, a->read_ids) || nb_add_row(self, row, a->seq, &a->out);
    sink_clear(row);
    if (bad) return -1;
    a->n_norm++;
    return 0;
}

/* the end of a run: the id counters merged; NULL (and the batches dropped) on error */
static int nb_run_end(nb_run *a, int ok) {
    if (ok && idc_flush(&a->rc, a->read_ids) == 0 && idc_flush(&a->uc, a->unk_ids) == 0)
        return 0;
    Py_CLEAR(a->out);
    return -1;
}

static PyObject *nb_add_evtx(NBatcher *self, PyObject *args) {
    PyObject *datas;
    Py_ssize_t start;
    nb_run a = {0};
    if (!PyArg_ParseTuple(args, "O!nLO!O!", &PyList_Type, &datas, &start, &a.seq, &PyDict_Type,
                          &a.read_ids, &PyDict_Type, &a.unk_ids))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(datas), i;
    sink_t row;
    int t = 0;
    for (i = start < 0 ? 0 : start; i < n; i++) {
        long long id = 0;
        sink_row(&row, &self->L);
        int r = evtx_record(PyList_GET_ITEM(datas, i), &row, &id);
        t = nb_take(self, &a, &row, r, id);
        if (t) break;
    }
    if (nb_run_end(&a, t >= 0)) return NULL;
    PyObject *res = Py_BuildValue("(nLllO)", i, a.seq, a.n_norm, a.n_unk,
                                  a.out ? a.out : Py_None);
    Py_XDECREF(a.out);
    return res;
}

/* take_records(it, n, start_record, datas, rids) -> (status, exception): up to n records of
 * the evtx parser's records_json() iterator, those with a record id above start_record
 * appended (JSON text, id); status 0 = n taken, 1 = the iterator ended, 2 = it raised (the
 * exception is returned; the iteration may go on, as iter_evtx_records does) */
static PyObject *S_event_record_id, *S_data, *S_zero;

static PyObject *take_records(PyObject *self, PyObject *args) {
    PyObject *it, *datas, *rids;
    Py_ssize_t n;
    long long start;
    if (!PyArg_ParseTuple(args, "OnLO!O!", &it, &n, &start, &PyList_Type, &datas, &PyList_Type,
                          &rids))
        return NULL;
    iternextfunc next = Py_TYPE(it)->tp_iternext;
    if (next == NULL) {
        PyErr_SetString(PyExc_TypeError, "take_records: an iterator");
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *r = next(it);
        if (r == NULL) {
            if (!PyErr_Occurred()) return Py_BuildValue("(iO)", 1, Py_None);
            if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
                PyErr_Clear();
                return Py_BuildValue("(iO)", 1, Py_None);
            }
            if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;  /* KeyboardInterrupt */
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyErr_NormalizeException(&t, &v, &tb);
            PyObject *res = Py_BuildValue("(iO)", 2, v ? v : Py_None);
            Py_XDECREF(t);
            Py_XDECREF(v);
            Py_XDECREF(tb);
            return res;
        }
        PyObject *rid = PyDict_Check(r) ? PyDict_GetItemWithError(r, S_event_record_id) : NULL;
        PyObject *data = PyDict_Check(r) ? PyDict_GetItemWithError(r, S_data) : NULL;
        if (data == NULL || (rid != NULL && !PyLong_Check(rid))) {
            Py_DECREF(r);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "take_records: a record without data");
            return NULL;
        }
        long long x = 0;
        if (rid != NULL) {
            x = PyLong_AsLongLong(rid);
            if (x == -1 && PyErr_Occurred()) { Py_DECREF(r); return NULL; }
        }
        if (x > start) {
            PyObject *xo = rid != NULL ? rid : S_zero;
            int bad = PyList_Append(datas, data) || PyList_Append(rids, xo);
            if (bad) { Py_DECREF(r); return NULL; }
        }
        Py_DECREF(r);
    }
    return Py_BuildValue("(iO)", 0, Py_None);
}

/* ------------------------------------------------------------------------------------------
 * EVTX chunks read in place: binary XML straight to the normalizer's view
 *
 * The evtx crate renders every record to JSON, which the block path then scans back; on a
 * domain controller's Security log that rendering and re-reading is most of the collector's
 * time. This reader takes a 64 KiB chunk as it is on disk: the chunk's record layout is
 * checked first (chunk_records: anything unusual and the whole chunk takes the crate), each
 * record's template instance is evaluated against its template, compiled once per chunk
 * into the few fields the product reads (System: EventID, EventRecordID, Computer, Channel,
 * Provider, TimeCreated, Security; EventData: the Data[@Name] values), and the values are
 * rendered to the text the crate's JSON gives (after records.from_evtx_json: ints in
 * decimal, HexInt 0x.. lower case, GUIDs upper case, SIDs S-1-.., Bool True/False). Anything
 * else -- UserData, unnamed Data, a value type not listed, a value that is not ASCII where
 * the normalizer reads it -- declines the record, and the caller takes that record from the
 * crate (the chunk parsed by it on its own), so the output is the crate path's, record for
 * record (tests/collectors/test_binxml.py holds the two side by side).
 * ---------------------------------------------------------------------------------------- */

#define CH_SIZE 65536
#define BX_MAXVALS 256
#define BX_MAXT 256
#define BX_MAXOPS 16384
#define BX_ARENA (96 * 1024)
#define BX_DEPTH 32

static inline uint32_t rd16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static inline uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

enum { OP_EID = 1, OP_RID, OP_COMP, OP_CHAN, OP_PNAME, OP_PESN, OP_STIME, OP_UID, OP_DATA,
       OP_NEST, OP_SYS, OP_ED, OP_BIN };
#define SRC_EMPTY (-2)
#define SRC_LIT (-1)

typedef struct {
    int kind, idx;              /* idx: a substitution, SRC_LIT, SRC_EMPTY */
    const char *key, *lit;      /* key: Data[@Name]; lit: a literal's text */
    int kn, litn, lascii;
    int single;                 /* a lone unnamed Data; OP_NEST: the context */
    int unnamed;                /* an unnamed Data: its key is the record's next DataN */
    int keyid;                  /* OP_DATA / OP_BIN: the wkeys id (-1: no normalizer reads
                                 * it; -2: unnamed, always rendered) */
} bx_op;

typedef struct {
    uint32_t off;
    int ctx, ok, nops;
    bx_op *ops;
} bx_tmpl;

/* the compiled templates of the chunk being read (chunk_get below empties them when another
 * chunk comes) */
static struct {
    int nt, nops;
    size_t an;
    bx_tmpl t[BX_MAXT];
    bx_op ops[BX_MAXOPS];
    char arena[BX_ARENA];
} *bxc = NULL;

/* a name reference at p (4-byte chunk offset; the name follows inline when the offset points
 * just past it): its UTF-16 text; *after = where the next token starts; FAIL if out of bounds */
static int bx_name(const unsigned char *c, uint32_t p, uint32_t lim, const unsigned char **nm,
                   uint32_t *nlen, uint32_t *after) {
    if (p + 4 > lim) return FAIL;
    uint32_t off = rd32(c + p);
    if (off > CH_SIZE - 8) return FAIL;
    uint32_t n = rd16(c + off + 6);
    if ((uint64_t)off + 8 + 2 * (uint64_t)n + 2 > CH_SIZE) return FAIL;
    *nm = c + off + 8;
    *nlen = n;
    if (off == p + 4) {
        *after = off + 8 + 2 * n + 2;
        if (*after > lim) return FAIL;
    } else {
        *after = p + 4;
    }
    return 0;
}

static int u16eq(const unsigned char *nm, uint32_t n, const char *w) {
    uint32_t m = (uint32_t)strlen(w);
    if (m != n) return 0;
    for (uint32_t i = 0; i < n; i++)
        if (nm[2 * i] != (unsigned char)w[i] || nm[2 * i + 1] != 0) return 0;
    return 1;
}

/* UTF-16 text into the arena as ASCII; *ascii = -1 when a character is not (the text is then
 * '?'-filled: such a literal declines the record where it is read) */
static const char *bx_arena_text(const unsigned char *u, uint32_t n, int *ascii) {
    if (bxc->an + n + 1 > BX_ARENA) return NULL;
    char *d = bxc->arena + bxc->an;
    *ascii = 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ch = rd16(u + 2 * i);
        if (ch == 0 || ch >= 0x80) { *ascii = -1; ch = '?'; }
        d[i] = (char)ch;
    }
    bxc->an += n + 1;
    d[n] = 0;
    return d;
}

enum { E_TOP, E_EVENT, E_SYS, E_EID, E_RID, E_COMP, E_CHAN, E_PROV, E_TC, E_SEC, E_ED, E_DATA,
       E_IGN, E_BIN, E_UD, E_UDW, E_UDV };
enum { A_NONE, A_IGN, A_PNAME, A_PESN, A_STIME, A_UID, A_NAME };
#define CTX_OUTER 0
#define CTX_NESTED 1            /* a BinXml value in Event: EventData or UserData */
#define CTX_UD 2                /* a BinXml value in UserData: its wrapper element */

typedef struct {
    int kind, nsrc, idx, has_key;
    const char *lit, *key;
    int litn, lascii, kn;
} bx_frame;

static bx_op *bx_emit(bx_tmpl *t, int kind) {
    if (bxc->nops >= BX_MAXOPS) return NULL;
    bx_op *o = &bxc->ops[bxc->nops++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->idx = SRC_EMPTY;
    t->nops++;
    return o;
}

static void bx_src(bx_op *o, bx_frame *f) {
    o->idx = f->nsrc ? f->idx : SRC_EMPTY;
    o->lit = f->lit;
    o->litn = f->litn;
    o->lascii = f->lascii;
}

/* the element a start tag opens, from its parent and its name; -1: the template declines */
static int bx_child(int parent, int ctx, const unsigned char *nm, uint32_t n) {
    switch (parent) {
    case E_TOP:
        if (ctx == CTX_OUTER) return u16eq(nm, n, "Event") ? E_EVENT : -1;
        if (ctx == CTX_UD) return E_UDW;
        if (u16eq(nm, n, "UserData")) return E_UD;
        return u16eq(nm, n, "EventData") ? E_ED : -1;
    case E_EVENT:
        if (u16eq(nm, n, "System")) return E_SYS;
        if (u16eq(nm, n, "EventData")) return E_ED;
        if (u16eq(nm, n, "UserData")) return E_UD;
        return E_IGN;
    case E_SYS:
        if (u16eq(nm, n, "EventID")) return E_EID;
        if (u16eq(nm, n, "EventRecordID")) return E_RID;
        if (u16eq(nm, n, "Computer")) return E_COMP;
        if (u16eq(nm, n, "Channel")) return E_CHAN;
        if (u16eq(nm, n, "Provider")) return E_PROV;
        if (u16eq(nm, n, "TimeCreated")) return E_TC;
        if (u16eq(nm, n, "Security")) return E_SEC;
        return E_IGN;
    case E_ED:
        if (u16eq(nm, n, "Data")) return E_DATA;
        if (u16eq(nm, n, "Binary")) return E_BIN;
        return -1;
    case E_PROV: case E_TC: case E_SEC: case E_IGN:
        return E_IGN;
    case E_UD: return E_UDW;            /* UserData/<wrapper>: flattened into its children */
    case E_UDW: return E_UDV;           /* UserData/<wrapper>/<name>: the key "name" */
    default:
        return -1;                  /* an element inside a value element (Data, EventID...) */
    }
}

static int bx_attr(int elem, const unsigned char *nm, uint32_t n) {
    switch (elem) {
    case E_PROV:
        if (u16eq(nm, n, "Name")) return A_PNAME;
        if (u16eq(nm, n, "EventSourceName")) return A_PESN;
        return A_IGN;
    case E_TC: return u16eq(nm, n, "SystemTime") ? A_STIME : A_IGN;
    case E_SEC: return u16eq(nm, n, "UserID") ? A_UID : A_IGN;
    case E_DATA: return u16eq(nm, n, "Name") ? A_NAME : -1;
    case E_ED: case E_TOP: case E_BIN: case E_UDV: return -1;
    default: return A_IGN;
    }
}

static int bx_compile_walk(bx_tmpl *t, const unsigned char *c, uint32_t off) {
    if (off > CH_SIZE - 24) return FAIL;
    uint32_t p = off + 24, end = p + rd32(c + off + 20);
    if (end > CH_SIZE || end < p) return FAIL;
    bx_frame st[BX_DEPTH];
    int d = 0, in_start = 0, attr = A_NONE, attr_vals = 0, first = 1, data0 = -1;
    int named = 0, unnamed = 0;
    bx_op *first_unnamed = NULL;
    st[0].kind = E_TOP;
    while (p < end) {
        unsigned tk = c[p], tok = tk & 0xBF;
        if (first && tok != 0x0F) return FAIL;
        if (tok == 0x0F) {                                  /* fragment header */
            if (!first || p + 4 > end) return FAIL;
            first = 0;
            p += 4;
            continue;
        }
        if (tok == 0x00) {                                  /* end of the fragment */
            if (d != 0 || (named && unnamed)) return FAIL;
            if (unnamed == 1) first_unnamed->single = 1;
            return 0;
        }
        if (tok == 0x01) {                                  /* open start element */
            const unsigned char *nm;
            uint32_t n, after;
            if (p + 7 > end || bx_name(c, p + 7, end, &nm, &n, &after)) return FAIL;
            p = after + ((tk & 0x40) ? 4 : 0);
            if (p > end || d + 1 >= BX_DEPTH || in_start) return FAIL;
            int k = bx_child(st[d].kind, t->ctx, nm, n);
            if (k < 0) return FAIL;
            bx_frame *f = &st[++d];
            memset(f, 0, sizeof *f);
            f->kind = k;
            in_start = 1;
            attr = A_NONE;
            if (k == E_SYS && !bx_emit(t, OP_SYS)) return FAIL;
            if ((k == E_ED || k == E_UD) && !bx_emit(t, OP_ED)) return FAIL;
            if (k == E_UDV) {
                int ka;
                const char *key = bx_arena_text(nm, n, &ka);
                if (key == NULL || ka != 1 || n == 0 || key[0] == '_' || key[0] == '#' ||
                    (n == 4 && memcmp(key, "Data", 4) == 0) ||
                    (n == 6 && memcmp(key, "Binary", 6) == 0))
                    return FAIL;
                f->has_key = 1;
                f->key = key;
                f->kn = (int)n;
            }
            continue;
        }
        if (tok == 0x06) {                                  /* attribute */
            const unsigned char *nm;
            uint32_t n, after;
            if (!in_start || bx_name(c, p + 1, end, &nm, &n, &after)) return FAIL;
            p = after;
            attr = bx_attr(st[d].kind, nm, n);
            if (attr < 0) return FAIL;
            attr_vals = 0;
            continue;
        }
        if (tok == 0x02 || tok == 0x03 || tok == 0x04) {    /* close start / empty / end */
            p++;
            if (tok == 0x02) {
                if (!in_start) return FAIL;
                in_start = 0;
                attr = A_NONE;
                continue;
            }
            if (tok == 0x03 ? !in_start : in_start) return FAIL;
            in_start = 0;
            attr = A_NONE;
            if (d == 0) return FAIL;
            bx_frame *f = &st[d--];
            int kind = 0;
            switch (f->kind) {
            case E_EID: kind = OP_EID; break;
            case E_RID: kind = OP_RID; break;
            case E_COMP: kind = OP_COMP; break;
            case E_CHAN: kind = OP_CHAN; break;
            case E_DATA: case E_UDV: kind = OP_DATA; break;
            case E_BIN: kind = OP_BIN; break;
            }
            if (kind) {
                bx_op *o = bx_emit(t, kind);
                if (o == NULL) return FAIL;
                bx_src(o, f);
                if (kind == OP_BIN) {           /* EventData/Binary: the "Binary" key */
                    o->key = "Binary";
                    o->kn = 6;
                }
                if (kind == OP_DATA && !f->has_key) {
                    /* unnamed Data: Data0, Data1... (from_evtx_json's list, string arrays
                     * spliced in: the keys are numbered per record), never mixed with named
                     * ones; a lone one is the crate's scalar */
                    o->unnamed = 1;
                    o->keyid = -2;
                    if (++unnamed == 1) first_unnamed = o;
                    continue;
                } else if (kind == OP_DATA && f->kind == E_DATA) {
                    named++;
                }
                if (kind == OP_DATA || kind == OP_BIN) {
                    if (kind == OP_DATA) {
                        o->key = f->key;
                        o->kn = f->kn;
                    }
                    o->keyid = wk_find(o->key, o->kn, 0);
                    if (data0 < 0) data0 = (int)(o - bxc->ops);
                    for (bx_op *q = bxc->ops + data0; q < o; q++)   /* a repeated Name */
                        if (q->kind == OP_DATA && q->kn == o->kn &&
                            memcmp(q->key, o->key, (size_t)o->kn) == 0)
                            return FAIL;
                }
            }
            continue;
        }
        /* a value: literal text or a substitution */
        int idx = SRC_LIT, vascii = 1, litn = 0;
        const char *lit = NULL;
        if (tok == 0x05) {
            if (p + 4 > end || c[p + 1] != 0x01) return FAIL;
            uint32_t n = rd16(c + p + 2);
            if (p + 4 + 2 * n > end) return FAIL;
            lit = bx_arena_text(c + p + 4, n, &vascii);
            if (lit == NULL) return FAIL;
            litn = (int)n;
            p += 4 + 2 * n;
        } else if (tok == 0x0D || tok == 0x0E) {
            if (p + 4 > end) return FAIL;
            idx = (int)rd16(c + p + 1);
            if (idx >= BX_MAXVALS) return FAIL;
            p += 4;
        } else {
            return FAIL;        /* CDATA, character/entity references, PIs, nested templates */
        }
        if (in_start) {                                     /* an attribute's value */
            if (attr == A_NONE) return FAIL;
            if (attr == A_IGN) continue;
            if (attr_vals++) return FAIL;
            if (attr == A_NAME) {
                bx_frame *f = &st[d];
                if (idx != SRC_LIT || vascii != 1 || litn == 0 || lit[0] == '_' || lit[0] == '#' ||
                    (litn == 4 && memcmp(lit, "Data", 4) == 0) ||
                    (litn == 6 && memcmp(lit, "Binary", 6) == 0))
                    return FAIL;
                f->has_key = 1;
                f->key = lit;
                f->kn = litn;
                continue;
            }
            int kind = attr == A_PNAME ? OP_PNAME : attr == A_PESN ? OP_PESN :
                       attr == A_STIME ? OP_STIME : OP_UID;
            bx_op *o = bx_emit(t, kind);
            if (o == NULL) return FAIL;
            bx_frame tmp = {0};
            tmp.nsrc = 1;
            tmp.idx = idx;
            tmp.lit = lit;
            tmp.litn = litn;
            tmp.lascii = vascii;
            bx_src(o, &tmp);
            continue;
        }
        bx_frame *f = &st[d];                               /* element content */
        switch (f->kind) {
        case E_EID: case E_RID: case E_COMP: case E_CHAN: case E_DATA: case E_BIN: case E_UDV:
            if (f->nsrc++) return FAIL;
            f->idx = idx;
            f->lit = lit;
            f->litn = litn;
            f->lascii = vascii;
            break;
        case E_EVENT: case E_UD:
            if (idx != SRC_LIT) {               /* a BinXml value: its fragment's content */
                bx_op *o = bx_emit(t, OP_NEST);
                if (o == NULL) return FAIL;
                o->idx = idx;
                o->single = f->kind == E_UD ? CTX_UD : CTX_NESTED;
            } else if (f->kind == E_UD) {
                return FAIL;
            }
            break;
        case E_TOP: case E_ED: case E_UDW:
            return FAIL;
        default:
            break;
        }
    }
    return FAIL;                                            /* no end-of-fragment token */
}

static bx_tmpl *bx_template(const unsigned char *c, uint32_t off, int ctx) {
    for (int i = 0; i < bxc->nt; i++)
        if (bxc->t[i].off == off && bxc->t[i].ctx == ctx) return &bxc->t[i];
    if (bxc->nt >= BX_MAXT) return NULL;
    bx_tmpl *t = &bxc->t[bxc->nt++];
    t->off = off;
    t->ctx = ctx;
    t->nops = 0;
    t->ops = bxc->ops + bxc->nops;
    t->ok = bx_compile_walk(t, c, off) == 0;
    if (!t->ok) {
        bxc->nops = (int)(t->ops - bxc->ops);   /* the ops of a declined template are dropped */
        t->nops = 0;
    }
    return t;
}

typedef struct {
    int n;
    unsigned char vt[BX_MAXVALS];
    uint32_t vp[BX_MAXVALS], vs[BX_MAXVALS];
} bx_vals;

/* a template instance's header and values at p (a 0x0C token) within [p, lim): *def = its
 * template's offset; FAIL when it does not fit */
static int bx_inst_vals(const unsigned char *c, uint32_t p, uint32_t lim, bx_vals *v,
                        uint32_t *def) {
    if (p + 10 > lim || c[p] != 0x0C) return FAIL;
    uint32_t q = p + 10;
    *def = rd32(c + p + 6);
    if (*def == q) {                                /* the definition follows inline */
        if (q + 24 > lim) return FAIL;
        uint64_t e = (uint64_t)q + 24 + rd32(c + q + 20);
        if (e > lim) return FAIL;
        q = (uint32_t)e;
    }
    if (*def > CH_SIZE - 24 || q + 4 > lim) return FAIL;
    uint32_t n = rd32(c + q);
    if (n > BX_MAXVALS || (uint64_t)q + 4 + 4 * (uint64_t)n > lim) return FAIL;
    uint32_t dsc = q + 4, at = q + 4 + 4 * n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t sz = rd16(c + dsc + 4 * i);
        v->vt[i] = c[dsc + 4 * i + 2];
        v->vp[i] = at;
        v->vs[i] = sz;
        at += sz;
        if (at > lim) return FAIL;
    }
    v->n = (int)n;
    return 0;
}

/* Every value of an instance (and of the instances nested in it) is one the crate reads:
 * a type the reader knows with its exact size, UTF-16 of an even size, a FILETIME before the
 * year 10000. Anything else declines the whole record (even for an id the product does not
 * consume), so that the crate decides it: its error goes to the dead-letter topic as on the
 * crate's path. */
static int bx_check(const unsigned char *c, const bx_vals *v, int depth) {
    for (int i = 0; i < v->n; i++) {
        const unsigned char *p = c + v->vp[i];
        uint32_t sz = v->vs[i];
        switch (v->vt[i]) {
        case 0x00: if (sz) return FAIL; break;
        case 0x01: case 0x81: if (sz & 1) return FAIL; break;
        case 0x03: case 0x04: if (sz != 1) return FAIL; break;
        case 0x05: case 0x06: if (sz != 2) return FAIL; break;
        case 0x07: case 0x08: case 0x0D: case 0x14: if (sz != 4) return FAIL; break;
        case 0x09: case 0x0A: case 0x15: if (sz != 8) return FAIL; break;
        case 0x11: if (sz != 8 || rd64(p) >= 2650467744000000000ULL) return FAIL; break;
        case 0x0E: break;
        case 0x0F: if (sz != 16) return FAIL; break;
        case 0x13: if (sz < 8 || sz != 8 + 4 * (uint32_t)p[1]) return FAIL; break;
        case 0x21: {
            bx_vals nv;
            uint32_t def;
            if (depth || sz < 4 || p[0] != 0x0F ||
                bx_inst_vals(c, v->vp[i] + 4, v->vp[i] + sz, &nv, &def) ||
                bx_check(c, &nv, depth + 1))
                return FAIL;
            break;
        }
        default: return FAIL;
        }
    }
    return 0;
}

/* the template instance at p within [p, lim): its compiled template (NULL: decline) and its
 * values (checked with bx_check when `check`: the outer instance, nested ones with it) */
static bx_tmpl *bx_instance(const unsigned char *c, uint32_t p, uint32_t lim, int ctx,
                            bx_vals *v, int check) {
    uint32_t def;
    if (bx_inst_vals(c, p, lim, v, &def) || (check && bx_check(c, v, 0))) return NULL;
    bx_tmpl *t = bx_template(c, def, ctx);
    return (t == NULL || !t->ok) ? NULL : t;
}

/* what a record reads into: the System fields (the view gets the EventData values) */
typedef struct { const char *p; Py_ssize_t n; int ascii, set; } bx_sv;
typedef struct {
    long long eid, rid, tms;
    int have_eid, have_rid, have_tms, n_sys, n_ed;
    bx_sv comp, chan, pname, pesn, uid;
} bx_sys;

#define BX_UNCONSUMED 1
#define BX_DECLINE 2

static char *u64dec(char *o, uint64_t x) {
    char b[24];
    int n = 0;
    do { b[n++] = (char)('0' + x % 10); x /= 10; } while (x);
    while (n) *o++ = b[--n];
    return o;
}

static char *u64hex(char *o, uint64_t x, int width, int upper) {
    const char *dg = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char b[20];
    int n = 0;
    do { b[n++] = dg[x & 15]; x >>= 4; } while (x);
    while (n < width) b[n++] = '0';
    while (n) *o++ = b[--n];
    return o;
}

/* a value rendered as from_evtx_json flattens the crate's JSON of it, at *sp (room checked
 * by the caller: at most 4 * size + 48 bytes); BX_DECLINE for a type not rendered here */
static int bx_render(const unsigned char *p, uint32_t sz, int type, char **sp, const char **v,
                     Py_ssize_t *vn, int *ascii) {
    char *o = *sp, *s = o;
    *ascii = 1;
    switch (type) {
    case 0x00:                                          /* null */
        break;
    case 0x01: {            /* UTF-16 string: ASCII (1), else UTF-8 (0). As the crate reads
                             * it: the text ends at the first NUL, a lone surrogate is
                             * dropped */
        if (sz & 1) return BX_DECLINE;
        uint32_t n = sz / 2, i = 0;
#ifdef __SSE2__
        /* 8 units at a time while they are all ASCII and none is NUL */
        const __m128i hib = _mm_set1_epi16((short)0xFF80), zero = _mm_setzero_si128();
        for (; i + 8 <= n; i += 8) {
            __m128i x = _mm_loadu_si128((const __m128i *)(p + 2 * i));
            __m128i ok = _mm_andnot_si128(_mm_cmpeq_epi16(x, zero),
                                          _mm_cmpeq_epi16(_mm_and_si128(x, hib), zero));
            if (_mm_movemask_epi8(ok) != 0xFFFF) break;
            _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(x, x));
            o += 8;
        }
#endif
        for (; i < n; i++) {
            uint32_t ch = rd16(p + 2 * i);
            if (ch < 0x80) {
                if (ch == 0) break;
                *o++ = (char)ch;
                continue;
            }
            if (*ascii == 1) *ascii = 0;
            if (ch < 0x800) {
                *o++ = (char)(0xC0 | ch >> 6);
                *o++ = (char)(0x80 | (ch & 0x3F));
            } else if (ch >= 0xD800 && ch < 0xE000) {
                uint32_t lo = i + 1 < n ? rd16(p + 2 * i + 2) : 0;
                if (ch >= 0xDC00 || lo < 0xDC00 || lo >= 0xE000)
                    continue;                   /* a lone surrogate: dropped */
                uint32_t cp = 0x10000 + ((ch - 0xD800) << 10) + (lo - 0xDC00);
                *o++ = (char)(0xF0 | cp >> 18);
                *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
                *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
                i++;
            } else {
                *o++ = (char)(0xE0 | ch >> 12);
                *o++ = (char)(0x80 | (ch >> 6 & 0x3F));
                *o++ = (char)(0x80 | (ch & 0x3F));
            }
        }
        break;
    }
    case 0x03: if (sz != 1) return BX_DECLINE;
        { int8_t x = (int8_t)p[0]; if (x < 0) { *o++ = '-'; o = u64dec(o, (uint64_t)(-(int)x)); }
          else o = u64dec(o, (uint64_t)x); } break;
    case 0x04: if (sz != 1) return BX_DECLINE; o = u64dec(o, p[0]); break;
    case 0x05: if (sz != 2) return BX_DECLINE;
        { int16_t x = (int16_t)rd16(p); if (x < 0) { *o++ = '-'; o = u64dec(o, (uint64_t)(-(int)x)); }
          else o = u64dec(o, (uint64_t)x); } break;
    case 0x06: if (sz != 2) return BX_DECLINE; o = u64dec(o, rd16(p)); break;
    case 0x07: if (sz != 4) return BX_DECLINE;
        { int32_t x = (int32_t)rd32(p); if (x < 0) { *o++ = '-'; o = u64dec(o, (uint64_t)(-(int64_t)x)); }
          else o = u64dec(o, (uint64_t)x); } break;
    case 0x08: if (sz != 4) return BX_DECLINE; o = u64dec(o, rd32(p)); break;
    case 0x09: if (sz != 8) return BX_DECLINE;
        { int64_t x = (int64_t)rd64(p); if (x < 0) { *o++ = '-'; o = u64dec(o, (uint64_t)0 - (uint64_t)x); }
          else o = u64dec(o, (uint64_t)x); } break;
    case 0x0A: if (sz != 8) return BX_DECLINE; o = u64dec(o, rd64(p)); break;
    case 0x0D:                                          /* Bool: str(True) / str(False) */
        if (sz != 4 || rd32(p) > 1) return BX_DECLINE;
        if (rd32(p)) { memcpy(o, "True", 4); o += 4; } else { memcpy(o, "False", 5); o += 5; }
        break;
    case 0x0F:                                          /* GUID, upper case, no braces */
        if (sz != 16) return BX_DECLINE;
        o = u64hex(o, rd32(p), 8, 1); *o++ = '-';
        o = u64hex(o, rd16(p + 4), 4, 1); *o++ = '-';
        o = u64hex(o, rd16(p + 6), 4, 1); *o++ = '-';
        for (int i = 8; i < 16; i++) {
            if (i == 10) *o++ = '-';
            o = u64hex(o, p[i], 2, 1);
        }
        break;
    case 0x13: {                                        /* SID */
        if (sz < 8) return BX_DECLINE;
        uint32_t cnt = p[1];
        if (sz != 8 + 4 * cnt || p[2] || p[3]) return BX_DECLINE;   /* authority < 2^32 */
        uint64_t auth = rd32(p + 4);
        auth = (auth & 0xFF) << 24 | (auth & 0xFF00) << 8 | (auth >> 8 & 0xFF00) | auth >> 24;
        *o++ = 'S'; *o++ = '-';
        o = u64dec(o, p[0]);
        *o++ = '-';
        o = u64dec(o, auth);
        for (uint32_t i = 0; i < cnt; i++) { *o++ = '-'; o = u64dec(o, rd32(p + 8 + 4 * i)); }
        break;
    }
    case 0x11: {                    /* FileTime: YYYY-MM-DDTHH:MM:SS.ffffffZ (microseconds) */
        if (sz != 8) return BX_DECLINE;
        uint64_t ft = rd64(p), us = ft / 10;
        uint64_t secs = us / 1000000, frac = us % 1000000;
        long long days = (long long)(secs / 86400), rem = (long long)(secs % 86400);
        days -= 134774;                                     /* 1601-01-01 -> 1970-01-01 */
        /* civil from days (H. Hinnant) */
        long long z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
        long long doe = z - era * 146097;
        long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        long long y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        long long mp = (5 * doy + 2) / 153, dd = doy - (153 * mp + 2) / 5 + 1;
        long long mm = mp < 10 ? mp + 3 : mp - 9;
        y += mm <= 2;
        if (y < 1601 || y > 9999) return BX_DECLINE;
        o += sprintf(o, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06lluZ", y, mm, dd,
                     rem / 3600, rem / 60 % 60, rem % 60, (unsigned long long)frac);
        break;
    }
    case 0x14: if (sz != 4) return BX_DECLINE; *o++ = '0'; *o++ = 'x'; o = u64hex(o, rd32(p), 1, 0); break;
    case 0x15: if (sz != 8) return BX_DECLINE; *o++ = '0'; *o++ = 'x'; o = u64hex(o, rd64(p), 1, 0); break;
    default:
        return BX_DECLINE;
    }
    *v = s;
    *vn = o - s;
    *sp = o;
    return 0;
}

typedef struct {
    const unsigned char *c;
    char *sp, *send;            /* the scratch being filled */
    bx_sys *y;
    recview *rv;
    int eid_only;               /* stop at the event id when the product does not consume it */
    int dk;                     /* the next unnamed Data's number */
} bx_run;

/* an op's value as text: a literal, empty, or a substitution rendered */
static int bx_value(bx_run *r, const bx_op *o, const bx_vals *v, const char **p, Py_ssize_t *n,
                    int *ascii) {
    if (o->idx == SRC_EMPTY) { *p = ""; *n = 0; *ascii = 1; return 0; }
    if (o->idx == SRC_LIT) { *p = o->lit; *n = o->litn; *ascii = o->lascii; return 0; }
    if (o->idx >= v->n) return BX_DECLINE;
    uint32_t sz = v->vs[o->idx];
    if (r->send - r->sp < 4 * (Py_ssize_t)sz + 48) return BX_DECLINE;
    return bx_render(r->c + v->vp[o->idx], sz, v->vt[o->idx], &r->sp, p, n, ascii);
}

/* an integer op (EventID, EventRecordID): an unsigned/signed int value; null -> 0 */
static int bx_int(bx_run *r, const bx_op *o, const bx_vals *v, long long *out, int nullok) {
    if (o->idx < 0 || o->idx >= v->n) return BX_DECLINE;
    const unsigned char *p = r->c + v->vp[o->idx];
    uint32_t sz = v->vs[o->idx];
    switch (v->vt[o->idx]) {
    case 0x00: if (!nullok) return BX_DECLINE; *out = 0; return 0;
    case 0x04: if (sz != 1) return BX_DECLINE; *out = p[0]; return 0;
    case 0x06: if (sz != 2) return BX_DECLINE; *out = rd16(p); return 0;
    case 0x08: if (sz != 4) return BX_DECLINE; *out = rd32(p); return 0;
    case 0x0A: {
        if (sz != 8) return BX_DECLINE;
        uint64_t x = rd64(p);
        if (x > (uint64_t)LLONG_MAX) return BX_DECLINE;
        *out = (long long)x;
        return 0;
    }
    default: return BX_DECLINE;
    }
}

/* "Data0".."Data63": the keys of a lone unnamed Data holding a string array */
static char dkeys[64][8];

static int bx_dput(bx_run *r, const char *v, Py_ssize_t vn, int ascii) {
    int k = r->dk++;
    if (k >= 64) return BX_DECLINE;
    if (dkeys[k][0] == 0) sprintf(dkeys[k], "Data%d", k);
    return rv_put(r->rv, dkeys[k], (Py_ssize_t)strlen(dkeys[k]), v, vn, ascii) ? BX_DECLINE : 0;
}

/* a string array (0x81: NUL-terminated UTF-16 strings) of unnamed Data: one key per string
 * (from_evtx_json's Data list) */
static int bx_strings(bx_run *r, const bx_op *o, const bx_vals *v) {
    const unsigned char *p = r->c + v->vp[o->idx];
    uint32_t sz = v->vs[o->idx];
    if (!o->unnamed || sz == 0 || sz & 1 || rd16(p + sz - 2) != 0 ||
        r->send - r->sp < 4 * (Py_ssize_t)sz + 48)
        return BX_DECLINE;      /* a named Data's array: the crate keeps its last string */
    uint32_t a = 0;
    for (uint32_t i = 0; i < sz; i += 2) {
        if (rd16(p + i) != 0) continue;
        const char *t;
        Py_ssize_t tn;
        int ascii;
        if (bx_render(p + a, i - a, 0x01, &r->sp, &t, &tn, &ascii) || bx_dput(r, t, tn, ascii))
            return BX_DECLINE;
        a = i + 2;
    }
    return 0;
}

/* reading events: a value no normalizer of this event id reads is left unrendered */
static inline int bx_unread(const bx_run *r, const bx_op *o) {
    if (!r->eid_only || !r->y->have_eid || o->keyid == -2) return 0;
    const espec *e = &etable[r->y->eid];
    if (e->want_all) return 0;
    return o->keyid < 0 || !(e->want[o->keyid >> 6] >> (o->keyid & 63) & 1);
}

static int bx_sysval(bx_run *r, const bx_op *o, const bx_vals *v, bx_sv *sv) {
    if (sv->set++) return BX_DECLINE;
    return bx_value(r, o, v, &sv->p, &sv->n, &sv->ascii);
}

static int bx_ops(bx_run *r, const bx_tmpl *t, const bx_vals *v, int depth) {
    bx_sys *y = r->y;
    int rc;
    for (int i = 0; i < t->nops; i++) {
        const bx_op *o = &t->ops[i];
        switch (o->kind) {
        case OP_SYS: y->n_sys++; break;
        case OP_ED: y->n_ed++; break;
        case OP_EID:
            if (y->have_eid++ || (rc = bx_int(r, o, v, &y->eid, 0))) return BX_DECLINE;
            if (r->eid_only && (y->eid >= MAX_EID || !consumed[y->eid])) return BX_UNCONSUMED;
            break;
        case OP_RID:
            if (y->have_rid++ || bx_int(r, o, v, &y->rid, 1)) return BX_DECLINE;
            break;
        case OP_STIME: {
            if (y->have_tms++ || o->idx < 0 || o->idx >= v->n || v->vt[o->idx] != 0x11 ||
                v->vs[o->idx] != 8)
                return BX_DECLINE;
            uint64_t ft = rd64(r->c + v->vp[o->idx]) / 10000;       /* ms since 1601 */
            if (ft < 11644473600000ULL || ft - 11644473600000ULL > 253402300799999ULL)
                return BX_DECLINE;
            y->tms = (long long)(ft - 11644473600000ULL);
            break;
        }
        case OP_COMP: if (bx_sysval(r, o, v, &y->comp)) return BX_DECLINE; break;
        case OP_CHAN: if (bx_sysval(r, o, v, &y->chan)) return BX_DECLINE; break;
        case OP_PNAME: if (bx_sysval(r, o, v, &y->pname)) return BX_DECLINE; break;
        case OP_PESN: if (bx_sysval(r, o, v, &y->pesn)) return BX_DECLINE; break;
        case OP_UID: if (bx_sysval(r, o, v, &y->uid)) return BX_DECLINE; break;
        case OP_DATA: {
            const char *p;
            Py_ssize_t n;
            int ascii;
            if (bx_unread(r, o)) break;
            if (o->idx >= 0 && o->idx < v->n && v->vt[o->idx] == 0x81) {
                if (bx_strings(r, o, v)) return BX_DECLINE;
                break;
            }
            if (o->single && o->idx == SRC_EMPTY) return BX_DECLINE;
            if (bx_value(r, o, v, &p, &n, &ascii)) return BX_DECLINE;
            /* a lone unnamed Data: a null value is Data0 = "" (as the crate gives it); an
             * empty string, not seen, is left to the crate */
            if (o->single && n == 0 && v->vt[o->idx] != 0x00) return BX_DECLINE;
            if (o->unnamed ? bx_dput(r, p, n, ascii) : rv_put(r->rv, o->key, o->kn, p, n, ascii))
                return BX_DECLINE;
            break;
        }
        case OP_BIN: {
            /* from_evtx_json keeps a Binary that the crate renders as a string (hex, upper
             * case) and drops a null one */
            if (bx_unread(r, o)) break;
            if (o->idx < 0 || o->idx >= v->n) return BX_DECLINE;
            uint32_t sz = v->vs[o->idx];
            if (v->vt[o->idx] == 0x00) break;
            if (v->vt[o->idx] != 0x0E || sz == 0 || r->send - r->sp < 2 * (Py_ssize_t)sz + 8)
                return BX_DECLINE;
            const unsigned char *b = r->c + v->vp[o->idx];
            char *s0 = r->sp;
            for (uint32_t k = 0; k < sz; k++) r->sp = u64hex(r->sp, b[k], 2, 1);
            if (rv_put(r->rv, o->key, o->kn, s0, r->sp - s0, 1)) return BX_DECLINE;
            break;
        }
        case OP_NEST: {
            if (o->idx >= v->n) return BX_DECLINE;
            int vt = v->vt[o->idx];
            if (vt == 0x00) break;
            uint32_t at = v->vp[o->idx], lim = at + v->vs[o->idx];
            if (vt != 0x21 || depth || at + 4 > lim || r->c[at] != 0x0F) return BX_DECLINE;
            bx_vals nv;
            bx_tmpl *nt = bx_instance(r->c, at + 4, lim, o->single, &nv, 0);
            if (nt == NULL) return BX_DECLINE;
            if ((rc = bx_ops(r, nt, &nv, depth + 1))) return rc;
            break;
        }
        }
    }
    return 0;
}

/* the record at off (size bytes, its layout checked by chunk_records) into *y and the view;
 * 0, BX_UNCONSUMED (y->eid: an id the product does not consume), BX_DECLINE, -1 (error) */
static int bx_read(const unsigned char *c, uint32_t off, uint32_t size, bx_sys *y, recview *rv,
                   int eid_only) {
    memset(y, 0, sizeof *y);
    rv->dict = NULL;
    rv->n = 0;
    memset(rv->slot, 0, sizeof rv->slot);
    uint32_t p = off + 24, lim = off + size - 4;
    if (p + 4 > lim || c[p] != 0x0F) return BX_DECLINE;
    if (scratch_reserve(8 * (Py_ssize_t)size + 4096)) return -1;
    bx_run r = {c, scratch, scratch + scratch_cap, y, rv, eid_only};
    bx_vals v;
    bx_tmpl *t = bx_instance(c, p + 4, lim, CTX_OUTER, &v, 1);
    if (t == NULL) return BX_DECLINE;
    int rc = bx_ops(&r, t, &v, 0);
    if (rc) return rc;
    if (y->n_sys != 1 || y->have_eid != 1 || y->have_tms != 1 || y->n_ed > 1)
        return BX_DECLINE;
    if (eid_only && (y->eid >= MAX_EID || !consumed[y->eid])) return BX_UNCONSUMED;
    return 0;
}

static const bx_sv *bx_provider(const bx_sys *y) {
    if (y->pname.set && y->pname.n > 0) return &y->pname;
    if (y->pesn.set && y->pesn.n > 0) return &y->pesn;
    return NULL;
}

static int bx_sysput(recview *rv, PyObject *key, const bx_sv *v) {
    const char *p = "";
    Py_ssize_t n = 0;
    int ascii = 1;
    if (v != NULL && v->set) { p = v->p; n = v->n; ascii = v->ascii; }
    return rv_put(rv, (const char *)PyUnicode_DATA(key), PyUnicode_GET_LENGTH(key), p, n, ascii);
}

/* a record of a chunk to its event, in the sink: as evtx_record (0 / 1 / DECLINE_REC / -1) */
static int bx_record(const unsigned char *c, uint32_t off, uint32_t size, sink_t *sk,
                     long long *eid) {
    if (etable == NULL) return DECLINE_REC;
    bx_sys Y;
    recview rv;
    int rc = bx_read(c, off, size, &Y, &rv, 1);
    if (rc < 0) return -1;
    if (rc == BX_UNCONSUMED) { *eid = Y.eid; return 1; }
    if (rc || !etable[Y.eid].used) return DECLINE_REC;
    if (bx_sysput(&rv, K_computer, &Y.comp) || bx_sysput(&rv, K_channel, &Y.chan) ||
        bx_sysput(&rv, K_provider, bx_provider(&Y)) || bx_sysput(&rv, K_user_sid, &Y.uid))
        return DECLINE_REC;
    return view_event(&rv, Y.eid, Y.tms, Y.rid, sk, eid);
}

/* The records of a chunk whose layout the reader takes: from 512 up to the free-space offset,
 * each with its signature, a size that fits and the size copy at its end, the last one the
 * header's last record (where the crate stops) and at the header's last-record offset.
 * Fills offs/sizes/rids (up to CH_SIZE / 28 records); returns the count, or -1 (the chunk is
 * left to the crate). */
#define CH_MAXREC (CH_SIZE / 28)
static int chunk_layout(const unsigned char *c, Py_ssize_t len, uint32_t *offs, uint32_t *sizes,
                        uint64_t *rids) {
    if (len != CH_SIZE || memcmp(c, "ElfChnk\0", 8) != 0) return -1;
    uint64_t last_id = rd64(c + 32);
    uint32_t last_off = rd32(c + 44), free = rd32(c + 48);
    if (free < 512 || free > CH_SIZE) return -1;
    uint32_t off = 512;
    int n = 0;
    while (off < free) {
        if (off + 28 > free || rd32(c + off) != 0x00002A2A) return -1;
        uint32_t sz = rd32(c + off + 4);
        if (sz < 28 || sz > free - off || rd32(c + off + sz - 4) != sz) return -1;
        uint64_t rid = rd64(c + off + 8);
        if (n >= CH_MAXREC) return -1;
        offs[n] = off;
        sizes[n] = sz;
        rids[n] = rid;
        n++;
        off += sz;
        if (rid == last_id) break;
    }
    if (n == 0 || rids[n - 1] != last_id || offs[n - 1] != last_off) return -1;
    return n;
}

/* a chunk's layout, cached for the chunk object last asked about (held); its templates are
 * in bxc */
static struct {
    PyObject *chunk;
    int n;
    uint32_t offs[CH_MAXREC], sizes[CH_MAXREC];
    uint64_t rids[CH_MAXREC];
} *chl = NULL;

static int chunk_get(PyObject *chunk) {
    if (!PyBytes_CheckExact(chunk)) {
        PyErr_SetString(PyExc_TypeError, "a chunk is a bytes object");
        return -2;
    }
    if (chl == NULL) {
        chl = PyMem_Calloc(1, sizeof *chl);
        bxc = PyMem_Calloc(1, sizeof *bxc);
        if (chl == NULL || bxc == NULL) {
            PyMem_Free(chl);
            PyMem_Free(bxc);
            chl = NULL;
            bxc = NULL;
            PyErr_NoMemory();
            return -2;
        }
    }
    if (chl->chunk != chunk) {
        Py_INCREF(chunk);
        Py_XSETREF(chl->chunk, chunk);
        chl->n = chunk_layout((const unsigned char *)PyBytes_AS_STRING(chunk),
                              PyBytes_GET_SIZE(chunk), chl->offs, chl->sizes, chl->rids);
        bxc->nt = bxc->nops = 0;
        bxc->an = 0;
    }
    return chl->n;
}

/* chunk_records(chunk, start_record) -> None (the crate reads the chunk) or (n, lo, rids):
 * n records, lo = the index of the first one above start_record, rids their record ids */
static PyObject *chunk_records(PyObject *self, PyObject *args) {
    PyObject *chunk;
    long long start;
    if (!PyArg_ParseTuple(args, "OL", &chunk, &start)) return NULL;
    int n = chunk_get(chunk);
    if (n == -2) return NULL;
    if (n < 0) Py_RETURN_NONE;
    PyObject *rids = PyList_New(n);
    if (rids == NULL) return NULL;
    int lo = n;
    for (int i = 0; i < n; i++) {
        PyObject *x = PyLong_FromUnsignedLongLong(chl->rids[i]);
        if (x == NULL) { Py_DECREF(rids); return NULL; }
        PyList_SET_ITEM(rids, i, x);
        if (lo == n && chl->rids[i] > (unsigned long long)(start < 0 ? 0 : start)) lo = i;
    }
    /* record ids grow within a chunk: the ones above start_record are a suffix */
    for (int i = lo; i < n; i++)
        if (chl->rids[i] <= (unsigned long long)(start < 0 ? 0 : start)) {
            Py_DECREF(rids);
            Py_RETURN_NONE;
        }
    return Py_BuildValue("(iiN)", n, lo, rids);
}

/* (chunk, i): 1 with the chunk's bytes and i, 0 when there is no record i (or the reader does
 * not take the chunk), -1 on error */
static int chunk_index_args(PyObject *args, const unsigned char **c, int *i) {
    PyObject *chunk;
    if (!PyArg_ParseTuple(args, "Oi", &chunk, i)) return -1;
    int n = chunk_get(chunk);
    if (n == -2) return -1;
    if (*i < 0 || *i >= n) return 0;
    *c = (const unsigned char *)PyBytes_AS_STRING(chunk);
    return 1;
}

/* chunk_flat(chunk, i) -> the flat record (records.from_evtx_json) of record i, None when
 * declined (tests: the reader against the crate, record by record) */
static PyObject *chunk_flat(PyObject *self, PyObject *args) {
    const unsigned char *c;
    int i, a = chunk_index_args(args, &c, &i);
    if (a < 0) return NULL;
    if (a == 0) Py_RETURN_NONE;
    bx_sys Y;
    recview rv;
    int rc = bx_read(c, chl->offs[i], chl->sizes[i], &Y, &rv, 0);
    if (rc < 0) return NULL;
    if (rc) Py_RETURN_NONE;
    const bx_sv *prov = bx_provider(&Y);
    const bx_sv *sv[4] = {&Y.comp, &Y.chan, prov, &Y.uid};
    for (int k = 0; k < 4; k++)
        if (sv[k] != NULL && sv[k]->set && sv[k]->ascii < 0) Py_RETURN_NONE;
    for (int k = 0; k < rv.n; k++)
        if (rv.e[k].ascii < 0) Py_RETURN_NONE;
    PyObject *rec = _PyDict_NewPresized(rv.n + 7);
    if (rec == NULL) return NULL;
    PyObject *keys[4] = {K_computer, K_channel, K_provider, K_user_sid};
    if (put(rec, K_eid, PyLong_FromLongLong(Y.eid)) ||
        put(rec, K_time_ms, PyLong_FromLongLong(Y.tms)))
        goto fail;
    for (int k = 0; k < 4; k++) {
        const bx_sv *s = sv[k];
        PyObject *val = (s == NULL || !s->set) ? (Py_INCREF(S_empty), S_empty) :
                        s->ascii ? ascii_str(s->p, s->n) : PyUnicode_DecodeUTF8(s->p, s->n, NULL);
        if (put(rec, keys[k], val)) goto fail;
        if (k == 2 && put(rec, K_record, PyLong_FromLongLong(Y.rid))) goto fail;
    }
    scan S = {NULL, NULL, 1};
    for (int k = 0; k < rv.n; k++) {
        rv_entry *e = &rv.e[k];
        PyObject *key = key_str(&S, e->k, e->kn);
        if (key == NULL) goto fail;
        int r = put(rec, key, e->ascii ? ascii_str(e->v, e->vn)
                                       : PyUnicode_DecodeUTF8(e->v, e->vn, NULL));
        Py_DECREF(key);
        if (r) goto fail;
    }
    return rec;
fail:
    Py_DECREF(rec);
    return NULL;
}

/* chunk_read(chunk) -> (read, declined): every record of the chunk read into the view (the
 * System fields and every EventData value rendered), nothing built -- the reader's own
 * ceiling, for `itdr bench collect` */
static PyObject *chunk_read(PyObject *self, PyObject *chunk) {
    int n = chunk_get(chunk);
    if (n == -2) return NULL;
    if (n < 0) Py_RETURN_NONE;
    const unsigned char *c = (const unsigned char *)PyBytes_AS_STRING(chunk);
    long ok = 0, declined = 0;
    for (int i = 0; i < n; i++) {
        bx_sys Y;
        recview rv;
        int rc = bx_read(c, chl->offs[i], chl->sizes[i], &Y, &rv, 0);
        if (rc < 0) return NULL;
        if (rc) declined++;
        else ok++;
    }
    return Py_BuildValue("(ll)", ok, declined);
}

/* chunk_event(chunk, i) -> record i's event dict, its event id (an int: not consumed), or
 * None (declined) -- evtx_event for a chunk's record */
static PyObject *chunk_event(PyObject *self, PyObject *args) {
    const unsigned char *c;
    int i, a = chunk_index_args(args, &c, &i);
    if (a < 0) return NULL;
    if (a == 0) Py_RETURN_NONE;
    sink_t ev;
    long long eid = 0;
    ev.dict = _PyDict_NewPresized(24);
    if (ev.dict == NULL) return NULL;
    int rc = bx_record(c, chl->offs[i], chl->sizes[i], &ev, &eid);
    if (rc == 0) return ev.dict;
    Py_DECREF(ev.dict);
    if (rc < 0) return NULL;
    if (rc == 1) return PyLong_FromLongLong(eid);
    Py_RETURN_NONE;
}

/* NativeBatcher.add_chunk(chunk, i, hi, seq, read_ids, unknown_ids) -> (stop, seq, read,
 * normalized, unknown, batches|None): records i..hi-1 of a chunk (chunk_records said it is
 * read here), as add_evtx does for JSON records */
static PyObject *nb_add_chunk(NBatcher *self, PyObject *args) {
    PyObject *chunk;
    int i, hi;
    nb_run a = {0};
    if (!PyArg_ParseTuple(args, "OiiLO!O!", &chunk, &i, &hi, &a.seq, &PyDict_Type, &a.read_ids,
                          &PyDict_Type, &a.unk_ids))
        return NULL;
    int n = chunk_get(chunk);
    if (n == -2) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "add_chunk: a chunk the reader does not take");
        return NULL;
    }
    if (hi > n) hi = n;
    if (i < 0) i = 0;
    const unsigned char *c = (const unsigned char *)PyBytes_AS_STRING(chunk);
    sink_t row;
    int t = 0;
    for (; i < hi; i++) {
        long long id = 0;
        sink_row(&row, &self->L);
        int r = bx_record(c, chl->offs[i], chl->sizes[i], &row, &id);
        t = nb_take(self, &a, &row, r, id);
        if (t) break;
    }
    if (nb_run_end(&a, t >= 0)) return NULL;
    PyObject *res = Py_BuildValue("(iLlllO)", i, a.seq, a.n_read, a.n_norm, a.n_unk,
                                  a.out ? a.out : Py_None);
    Py_XDECREF(a.out);
    return res;
}

static int key_or_null(PyObject *o, PyObject **out) {
    if (o == Py_None) { *out = NULL; return 0; }
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_ASCII(o)) {
        PyErr_SetString(PyExc_TypeError, "set_table: keys must be ASCII str or None");
        return -1;
    }
    Py_INCREF(o);
    PyUnicode_InternInPlace(&o);
    *out = o;
    return 0;
}

static int nspec_from(PyObject *t, nspec *n) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
        PyErr_SetString(PyExc_TypeError, "set_table: (name, domain, sid) expected");
        return -1;
    }
    return key_or_null(PyTuple_GET_ITEM(t, 0), &n->name) ||
           key_or_null(PyTuple_GET_ITEM(t, 1), &n->dom) ||
           key_or_null(PyTuple_GET_ITEM(t, 2), &n->sid);
}

/* set_table({eid: (action, proto|None, acc|None, tgt|None, ((field, key, kind), ...),
 *                  ((field, key, default, unsigned), ...), special, failure, (extra keys))})
 * Called once at import; the table lives for the process (set again: replaced, the old one
 * is leaked on purpose -- it is a few KB and never set twice outside tests). */
static PyObject *set_table(PyObject *self, PyObject *args) {
    PyObject *arg, *ids;
    if (!PyArg_ParseTuple(args, "O!O", &PyDict_Type, &arg, &ids)) return NULL;
    unsigned char cons[MAX_EID];
    memset(cons, 0, sizeof cons);
    PyObject *it = PyObject_GetIter(ids), *x;
    if (it == NULL) return NULL;
    while ((x = PyIter_Next(it)) != NULL) {
        long e = PyLong_AsLong(x);
        Py_DECREF(x);
        if (e < 0 || e >= MAX_EID) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "set_table: event id");
            break;
        }
        cons[e] = 1;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    espec *t = PyMem_Calloc(MAX_EID, sizeof(espec));
    if (t == NULL) return PyErr_NoMemory();
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(arg, &pos, &k, &v)) {
        long eid = PyLong_AsLong(k);
        if (eid < 0 || eid >= MAX_EID || !PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 10) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "set_table: bad entry");
            goto fail;
        }
        espec *e = &t[eid];
        PyObject *fields = PyTuple_GET_ITEM(v, 4), *ints = PyTuple_GET_ITEM(v, 5),
                 *extra = PyTuple_GET_ITEM(v, 8);
        if (!PyTuple_Check(fields) || !PyTuple_Check(ints) || !PyTuple_Check(extra) ||
            PyTuple_GET_SIZE(fields) > 12 || PyTuple_GET_SIZE(ints) > 8 ||
            PyTuple_GET_SIZE(extra) > 12) {
            PyErr_SetString(PyExc_ValueError, "set_table: fields/ints/extra too long");
            goto fail;
        }
        if (key_or_null(PyTuple_GET_ITEM(v, 0), &e->action) ||
            key_or_null(PyTuple_GET_ITEM(v, 1), &e->proto))
            goto fail;
        if (PyTuple_GET_ITEM(v, 2) != Py_None) {
            e->has_acc = 1;
            if (nspec_from(PyTuple_GET_ITEM(v, 2), &e->acc)) goto fail;
        }
        if (PyTuple_GET_ITEM(v, 3) != Py_None) {
            e->has_tgt = 1;
            if (nspec_from(PyTuple_GET_ITEM(v, 3), &e->tgt)) goto fail;
        }
        e->n_fields = (int)PyTuple_GET_SIZE(fields);
        for (int i = 0; i < e->n_fields; i++) {
            PyObject *f = PyTuple_GET_ITEM(fields, i);
            if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) != 3 ||
                key_or_null(PyTuple_GET_ITEM(f, 0), &e->fields[i].field) ||
                key_or_null(PyTuple_GET_ITEM(f, 1), &e->fields[i].key))
                goto bad;
            e->fields[i].kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(f, 2));
        }
        e->n_ints = (int)PyTuple_GET_SIZE(ints);
        for (int i = 0; i < e->n_ints; i++) {
            PyObject *f = PyTuple_GET_ITEM(ints, i);
            if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) != 4 ||
                key_or_null(PyTuple_GET_ITEM(f, 0), &e->ints[i].field) ||
                key_or_null(PyTuple_GET_ITEM(f, 1), &e->ints[i].key))
                goto bad;
            e->ints[i].dflt = PyLong_AsLongLong(PyTuple_GET_ITEM(f, 2));
            e->ints[i].is_unsigned = PyObject_IsTrue(PyTuple_GET_ITEM(f, 3));
        }
        e->n_extra = (int)PyTuple_GET_SIZE(extra);
        for (int i = 0; i < e->n_extra; i++)
            if (key_or_null(PyTuple_GET_ITEM(extra, i), &e->extra[i])) goto fail;
        e->special = (int)PyLong_AsLong(PyTuple_GET_ITEM(v, 6));
        e->failure = (int)PyLong_AsLong(PyTuple_GET_ITEM(v, 7));
        e->chan_rule = (int)PyLong_AsLong(PyTuple_GET_ITEM(v, 9));
        if (PyErr_Occurred()) goto fail;
        e->used = 1;
        {
            PyObject *always[] = {R_authpkg, R_logonproc, R_uac, R_spn, R_sam, R_props[0],
                                  R_props[1], R_props[2], R_props[3], R_props[4],
                                  R_subject_sid, R_transmitted, R_operation, R_status};
            nspec *ns[2] = {e->has_acc ? &e->acc : NULL, e->has_tgt ? &e->tgt : NULL};
            for (size_t j = 0; j < sizeof always / sizeof always[0]; j++) wk_want(e, always[j]);
            for (int j = 0; j < 2; j++)
                if (ns[j]) { wk_want(e, ns[j]->name); wk_want(e, ns[j]->dom); wk_want(e, ns[j]->sid); }
            for (int j = 0; j < e->n_fields; j++) wk_want(e, e->fields[j].key);
            for (int j = 0; j < e->n_ints; j++) wk_want(e, e->ints[j].key);
            for (int j = 0; j < e->n_extra; j++) wk_want(e, e->extra[j]);
        }
        continue;
    bad:
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "set_table: bad field spec");
        goto fail;
    }
    etable = t;
    memcpy(consumed, cons, sizeof cons);
    Py_RETURN_NONE;
fail:
    PyMem_Free(t);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"flat_from_evtx_json", flat_from_evtx_json, METH_O,
     "records.from_evtx_json(orjson.loads(data)) for the common shape, else None."},
    {"peek_event_id", peek_event_id, METH_O,
     "evtx_source's event-id peek: the id, -1 for no match, None = use the regex."},
    {"normalize", (PyCFunction)(void (*)(void))normalize_c, METH_FASTCALL,
     "The compiled normalizer of one flat record (normalize._gen_source), or None."},
    {"set_table", set_table, METH_VARARGS,
     "set_table(table, consumed_ids): load the normalizer (normalize.native_table())."},
    {"take_records", take_records, METH_VARARGS,
     "take_records(it, n, start_record, datas, rids) -> (status, exception): drain up to n "
     "records of the evtx parser's iterator into the lists."},
    {"evtx_event", evtx_event, METH_O,
     "One evtx JSON record straight to its event: the event dict, the id (an int) of a record "
     "the normalizer does not consume, or None (take the Python path)."},
    {"chunk_records", chunk_records, METH_VARARGS,
     "chunk_records(chunk, start_record) -> (n, lo, rids) when the chunk's layout is one the "
     "binary-XML reader takes (lo: the first record above start_record), else None."},
    {"chunk_read", chunk_read, METH_O,
     "chunk_read(chunk) -> (read, declined): every record read, nothing built (the bench's "
     "reader ceiling); None when the reader does not take the chunk."},
    {"chunk_flat", chunk_flat, METH_VARARGS,
     "chunk_flat(chunk, i) -> record i's flat record (records.from_evtx_json), or None."},
    {"chunk_event", chunk_event, METH_VARARGS,
     "chunk_event(chunk, i) -> record i's event dict, its event id when not consumed, or "
     "None (declined)."},
    {"build_columns", build_columns, METH_VARARGS,
     "build_columns(events, layout): ((column bytes...), string-column bytes, table), or "
     "(\"events\", events) when a value needs the Python build."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
#define IK(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    IK(K_eid, "_eid") IK(K_time_ms, "_time_ms") IK(K_computer, "_computer")
    IK(K_channel, "_channel") IK(K_provider, "_provider") IK(K_record, "_record")
    IK(K_user_sid, "_user_sid") IK(S_empty, "")
    IK(F_time_ms, "time_ms") IK(F_record_id, "record_id") IK(F_event_id, "event_id")
    IK(F_computer, "computer") IK(F_channel, "channel") IK(F_provider, "provider")
    IK(F_action, "action") IK(F_protocol, "protocol") IK(F_account, "account")
    IK(F_account_domain, "account_domain") IK(F_account_sid, "account_sid")
    IK(F_target_account, "target_account") IK(F_target_sid, "target_sid")
    IK(F_src_ip, "src_ip") IK(F_service, "service") IK(F_value, "value") IK(F_flags, "flags")
    IK(F_extra, "extra") IK(F_object, "object") IK(F_properties, "properties")
    IK(R_uac, "UserAccountControl") IK(R_spn, "ServicePrincipalNames") IK(R_sam, "SamAccountName")
    IK(R_props[0], "SidHistory") IK(R_props[1], "AllowedToDelegateTo")
    IK(R_props[2], "PasswordLastSet") IK(R_props[3], "UserPrincipalName")
    IK(R_props[4], "DnsHostName") IK(R_user_sid, "_user_sid") IK(R_subject_sid, "SubjectUserSid")
    IK(R_transmitted, "TransmittedServices") IK(R_operation, "OperationType")
    IK(R_status, "Status") IK(R_authpkg, "AuthenticationPackageName")
    IK(R_logonproc, "LogonProcessName") IK(P_kerberos, "kerberos") IK(P_ntlm, "ntlm")
    IK(P_negotiate, "negotiate") IK(S_account, "account") IK(S_computer, "computer")
    IK(S_src_ip, "src_ip") IK(S_src_host, "src_host") IK(S_event_id, "event_id")
    IK(S_event_record_id, "event_record_id") IK(S_data, "data")
    if ((S_zero = PyLong_FromLong(0)) == NULL) return NULL;
#undef IK
    if (PyType_Ready(&NBatcherType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL) return NULL;
    Py_INCREF(&NBatcherType);
    if (PyModule_AddObject(m, "NativeBatcher", (PyObject *)&NBatcherType) < 0) {
        Py_DECREF(&NBatcherType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
