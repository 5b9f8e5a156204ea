/* collectors._native: the collector's hot path in C (optional; the Python code it mirrors is
 * the specification and the fallback).
 *
 *   peek_event_id(data)          == evtx_source.peek_event_id (ASCII records; else None ->
 *                                   the caller uses the regex)
 *   flat_from_evtx_json(data)    == records.from_evtx_json(orjson.loads(data)) for the common
 *                                   shape of the ``evtx`` parser's JSON; None for anything
 *                                   else (the caller then takes the Python path, which also
 *                                   produces the exact error of a malformed record)
 *   build_columns(events, ...)   the column build of batcher.BatchBuilder.build; None when a
 *                                   value is not what the normalizer produces
 *
 * "None = take the Python path" is the whole error model: this module never raises for bad
 * input and never decides what is an error. Equivalence with the Python path is tested over
 * fixtures, generated records and every sample file (tests/collectors/test_native.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------------------------------------
 * interned key strings
 * ---------------------------------------------------------------------------------------- */

static PyObject *K_eid, *K_time_ms, *K_computer, *K_channel, *K_provider, *K_record,
    *K_user_sid, *S_empty;

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

static PyObject *ascii_str(const char *p, Py_ssize_t n) {
    PyObject *s = PyUnicode_New(n, 127);
    if (s == NULL) return NULL;
    memcpy(PyUnicode_DATA(s), p, (size_t)n);
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
static int str_span(scan *s, const char **a, Py_ssize_t *n, int *esc) {
    if (s->p >= s->end || *s->p != '"') return FAIL;
    const char *q = ++s->p;
    int e = 0;
    while (q < s->end) {
        /* 16 (SSE2) or 8 bytes at a time while none is '"', '\\' or a control character */
#ifdef __SSE2__
        {
            const __m128i dq = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\'),
                          c1f = _mm_set1_epi8(0x1F);
            while (s->end - q >= 16) {
                __m128i x = _mm_loadu_si128((const __m128i *)q);
                __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, dq), _mm_cmpeq_epi8(x, bsl)),
                                         _mm_cmpeq_epi8(_mm_min_epu8(x, c1f), x));
                int bits = _mm_movemask_epi8(m);
                if (bits) { q += __builtin_ctz((unsigned)bits); break; }
                q += 16;
            }
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
                goto lone;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) goto lone;
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
    PyObject *r = ascii ? ascii_str(buf, o) : PyUnicode_DecodeUTF8(buf, o, NULL);
    if (buf != stackbuf) PyMem_Free(buf);
    return r;
lone:
    if (buf != stackbuf) PyMem_Free(buf);
    return NULL;
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
static int obj_next(scan *s, int *first, const char **k, Py_ssize_t *kn, int *kesc) {
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

/* EventData of one record straight into the flat record: string -> str, int -> str(int),
 * null -> ""; any other value or key (Data, #attributes, Binary, '_'-prefixed, escaped) is
 * FAIL (the Python path flattens those) */
static int event_data(scan *s, PyObject *rec) {
    int first = 1, r;
    const char *k; Py_ssize_t kn; int kesc;
    if (obj_begin(s)) return FAIL;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (kesc || kn == 0 || k[0] == '_' || k[0] == '#' ||
            (kn == 4 && memcmp(k, "Data", 4) == 0) || (kn == 6 && memcmp(k, "Binary", 6) == 0))
            return FAIL;
        PyObject *v;
        char c = *s->p;
        if (c == '"') {
            const char *a; Py_ssize_t n; int esc;
            if (str_span(s, &a, &n, &esc)) return FAIL;
            v = make_str(s, a, n, esc);
            if (v == NULL) return FAIL;
        } else if (c == 'n') {
            if (lit(s, "null", 4)) return FAIL;
            v = S_empty;
            Py_INCREF(v);
        } else {
            const char *a = s->p;
            long long x;
            if (num_span(s, &x)) return FAIL;
            v = ascii_str(a, s->p - a);         /* str(int): the digits as written */
            if (v == NULL) return FAIL;
        }
        PyObject *key = key_str(s, k, kn);
        if (key == NULL) { Py_DECREF(v); return FAIL; }
        int rr = PyDict_SetItem(rec, key, v);
        Py_DECREF(key);
        Py_DECREF(v);
        if (rr) return FAIL;
    }
    return r == FAIL ? FAIL : 0;
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

static int event_obj(scan *s, sysinfo *y, PyObject *rec) {
    int first = 1, r;
    const char *k; Py_ssize_t kn; int kesc;
    if (obj_begin(s)) return FAIL;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (KEQ(k, kn, kesc, "System")) {
            if (y->seen_sys++ || system_obj(s, y)) return FAIL;
        } else if (KEQ(k, kn, kesc, "EventData")) {
            if (y->seen_ed++) return FAIL;
            if (*s->p == 'n') { if (lit(s, "null", 4)) return FAIL; }
            else if (event_data(s, rec)) return FAIL;
        } else if (KEQ(k, kn, kesc, "UserData")) {
            if (y->seen_ud++ || lit(s, "null", 4)) return FAIL;   /* UserData: Python path */
        } else if (skip_value(s, 1)) {
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

/* One pass over the text. The flat record's seven System keys are put first (as None) so
 * that the dict's key order is the Python path's; EventData keys starting with '_' could
 * collide with them and are left to the Python path. */
static PyObject *flat_from_evtx_json(PyObject *self, PyObject *arg) {
    if (!PyUnicode_CheckExact(arg)) Py_RETURN_NONE;
    Py_ssize_t len;
    const char *txt = PyUnicode_AsUTF8AndSize(arg, &len);
    if (txt == NULL) { PyErr_Clear(); Py_RETURN_NONE; }   /* lone surrogates */
    scan S = {txt, txt + len, PyUnicode_IS_ASCII(arg)};
    scan *s = &S;
    sysinfo Y;
    memset(&Y, 0, sizeof Y);
    const char *k; Py_ssize_t kn; int kesc, r, first = 1, seen_event = 0;
    PyObject *rec = _PyDict_NewPresized(40);
    if (rec == NULL) return NULL;
    PyObject *sys_keys[7] = {K_eid, K_time_ms, K_computer, K_channel, K_provider, K_record,
                             K_user_sid};
    for (int i = 0; i < 7; i++)
        if (PyDict_SetItem(rec, sys_keys[i], Py_None)) goto fail;

    ws(s);
    if (obj_begin(s)) goto fail;
    while ((r = obj_next(s, &first, &k, &kn, &kesc)) == 0) {
        if (KEQ(k, kn, kesc, "Event")) {
            if (seen_event++ || event_obj(s, &Y, rec)) goto fail;
        } else if (skip_value(s, 1)) {
            goto fail;
        }
    }
    ws(s);
    if (r == FAIL || s->p != s->end || !seen_event || !Y.seen_sys || !Y.have_eid ||
        !Y.stime.set || Y.stime.isnull || Y.stime.esc)
        goto fail;
    long long tms;
    if (time_ms(Y.stime.a, Y.stime.n, &tms)) goto fail;
    /* Provider: Name, else EventSourceName, else "" (`a or b or ""`) */
    sval *prov = NULL;
    if (Y.pname.set && !Y.pname.isnull && Y.pname.n > 0) prov = &Y.pname;
    else if (Y.pesn.set && !Y.pesn.isnull && Y.pesn.n > 0) prov = &Y.pesn;
    PyObject *pv;
    if (prov) pv = make_str(s, prov->a, prov->n, prov->esc);
    else { pv = S_empty; Py_INCREF(pv); }
    if (put(rec, K_eid, PyLong_FromLongLong(Y.eid)) || put(rec, K_time_ms, PyLong_FromLongLong(tms))
        || put(rec, K_computer, sval_str(s, &Y.comp)) || put(rec, K_channel, sval_str(s, &Y.chan))
        || put(rec, K_provider, pv) || put(rec, K_record, PyLong_FromLongLong(Y.rid))
        || put(rec, K_user_sid, sval_str(s, &Y.uid)))
        goto fail;
    return rec;
fail:
    Py_DECREF(rec);
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) return NULL;
        PyErr_Clear();
    }
    Py_RETURN_NONE;
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

static PyObject *peek_event_id(PyObject *self, PyObject *arg) {
    if (!PyUnicode_CheckExact(arg) || !PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    const char *t = (const char *)PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    const char *end = t + (n < 2000 ? n : 2000);
    for (const char *p = t; end - p >= 10; p++) {
        p = memchr(p, '"', (size_t)(end - p));
        if (p == NULL || end - p < 10) break;
        if (memcmp(p, "\"EventID\":", 10) != 0) continue;
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
        if (de - d > 18) Py_RETURN_NONE;       /* a big number: the regex decides */
        long long x = 0;
        for (const char *c = d; c < de; c++) x = x * 10 + (*c - '0');
        return PyLong_FromLongLong(x);
    }
    /* no match: -1 (None is "ask the regex") */
    return PyLong_FromLong(-1);
}

/* ------------------------------------------------------------------------------------------
 * build_columns(events, fieldmap, defaults, lo, hi, n_str)
 *   events    list of dicts (normalized events)
 *   fieldmap  {field name: column}: numeric columns 0..k-1, string columns k..k+n_str-1
 *   defaults  tuple of k ints (value of a missing / None numeric field)
 *   lo, hi    tuples of k ints: the range of each numeric column's dtype
 * -> (bytes int64[k][n], bytes uint32[n_str][n], [string table]) or None
 * ---------------------------------------------------------------------------------------- */

static PyObject **slots_buf = NULL;
static size_t slots_cap = 0;

static PyObject *build_columns(PyObject *self, PyObject *args) {
    PyObject *events, *fieldmap, *defaults, *lo, *hi;
    Py_ssize_t n_str;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!n", &PyList_Type, &events, &PyDict_Type, &fieldmap,
                          &PyTuple_Type, &defaults, &PyTuple_Type, &lo, &PyTuple_Type, &hi,
                          &n_str))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(events), k = PyTuple_GET_SIZE(defaults);
    if (PyTuple_GET_SIZE(lo) != k || PyTuple_GET_SIZE(hi) != k || n_str < 0) {
        PyErr_SetString(PyExc_ValueError, "build_columns: defaults, lo and hi differ in size");
        return NULL;
    }
    Py_ssize_t nf = k + n_str;
    size_t need = (size_t)nf * (size_t)n;
    if (need > slots_cap) {
        PyObject **nb = PyMem_Realloc(slots_buf, need * sizeof(PyObject *));
        if (nb == NULL) return PyErr_NoMemory();
        slots_buf = nb;
        slots_cap = need;
    }
    PyObject **slots = slots_buf;
    memset(slots, 0, need * sizeof(PyObject *));
    long long dflt[64], vlo[64], vhi[64];
    if (k > 64) { PyErr_SetString(PyExc_ValueError, "build_columns: > 64 numeric columns"); return NULL; }
    for (Py_ssize_t j = 0; j < k; j++) {
        dflt[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(defaults, j));
        vlo[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(lo, j));
        vhi[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(hi, j));
    }
    if (PyErr_Occurred()) return NULL;

    /* one pass over each event's items: slots[column][row] (borrowed references: the list
     * holds the dicts, the dicts hold the values, and nothing below runs Python code that
     * could change them -- str hashing and dict inserts of exact strs only) */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = PyList_GET_ITEM(events, i);
        if (!PyDict_CheckExact(ev)) Py_RETURN_NONE;
        Py_ssize_t pos = 0;
        PyObject *key, *val;
        while (PyDict_Next(ev, &pos, &key, &val)) {
            if (!PyUnicode_CheckExact(key)) Py_RETURN_NONE;
            PyObject *c = PyDict_GetItemWithError(fieldmap, key);
            if (c == NULL) {
                if (PyErr_Occurred()) return NULL;
                continue;                            /* not a schema field: ignored */
            }
            Py_ssize_t col = PyLong_AsSsize_t(c);
            if (col < 0 || col >= nf) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "build_columns: bad fieldmap column");
                return NULL;
            }
            slots[(size_t)col * n + i] = val;
        }
    }
    PyObject *num = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(k * n * 8));
    PyObject *strc = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n_str * n * 4));
    PyObject *table = PyList_New(0);
    PyObject *intern = PyDict_New();
    PyObject *res = NULL;
    if (!num || !strc || !table || !intern) goto done;
    long long *nb = (long long *)PyBytes_AS_STRING(num);
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject **col = slots + (size_t)j * n;
        long long *o = nb + (size_t)j * n;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = col[i];
            if (v == NULL || v == Py_None) { o[i] = dflt[j]; continue; }
            if (!PyLong_Check(v)) goto fallback;
            int of = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &of);
            if (of || (x == -1 && PyErr_Occurred())) { PyErr_Clear(); goto fallback; }
            if (x < vlo[j] || x > vhi[j]) goto fallback;
            o[i] = x;
        }
    }
    uint32_t *sb = (uint32_t *)PyBytes_AS_STRING(strc);
    {
        PyObject *zero = PyLong_FromLong(0);
        int rr = zero == NULL || PyList_Append(table, S_empty) ||
                 PyDict_SetItem(intern, S_empty, zero);
        Py_XDECREF(zero);
        if (rr) goto done;
    }
    for (Py_ssize_t j = 0; j < n_str; j++) {
        PyObject **col = slots + (size_t)(k + j) * n;
        uint32_t *o = sb + (size_t)j * n;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = col[i];
            if (v == NULL || v == Py_None) { o[i] = 0; continue; }
            if (!PyUnicode_CheckExact(v)) goto fallback;
            if (PyUnicode_GET_LENGTH(v) == 0) { o[i] = 0; continue; }
            PyObject *ix = PyDict_GetItemWithError(intern, v);
            if (ix != NULL) {
                o[i] = (uint32_t)PyLong_AsUnsignedLong(ix);
                continue;
            }
            if (PyErr_Occurred()) goto done;
            Py_ssize_t idx = PyList_GET_SIZE(table);
            PyObject *io = PyLong_FromSsize_t(idx);
            if (io == NULL) goto done;
            int rr = PyDict_SetItem(intern, v, io);
            Py_DECREF(io);
            if (rr || PyList_Append(table, v)) goto done;
            o[i] = (uint32_t)idx;
        }
    }
    res = PyTuple_Pack(3, num, strc, table);
    goto done;
fallback:
    res = Py_None;
    Py_INCREF(res);
done:
    Py_XDECREF(num);
    Py_XDECREF(strc);
    Py_XDECREF(table);
    Py_XDECREF(intern);
    return res;
}

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"flat_from_evtx_json", flat_from_evtx_json, METH_O,
     "records.from_evtx_json(orjson.loads(data)) for the common shape, else None."},
    {"peek_event_id", peek_event_id, METH_O,
     "evtx_source's event-id peek: the id, -1 for no match, None = use the regex."},
    {"build_columns", build_columns, METH_VARARGS,
     "Columns of a list of normalized events: (int64 bytes, uint32 bytes, table) or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
#define IK(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    IK(K_eid, "_eid") IK(K_time_ms, "_time_ms") IK(K_computer, "_computer")
    IK(K_channel, "_channel") IK(K_provider, "_provider") IK(K_record, "_record")
    IK(K_user_sid, "_user_sid") IK(S_empty, "")
#undef IK
    return PyModule_Create(&moddef);
}
