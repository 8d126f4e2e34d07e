/* otel_costs._serve_native: the per-span work of ``otel-costs serve`` in one pass, in C.
 *
 * ``stage(raw)`` reads a serialized ExportTraceServiceRequest (untrusted network input: every
 * read is bounds-checked, malformed input raises ValueError), splits its spans by trace and
 * returns, per chunk of one trace, the spans' bytes as they arrived and a packed record per
 * span (ids, own cost, flags). ``rollup(datas, metas, late)`` runs the trace-wide rollup over a
 * trace's chunks and returns the spans with the rollup figures written.
 *
 * The pure-Python path in ``_serve.py`` is the reference: both give the same bytes. Whatever
 * this module does not handle exactly the same way (an unusual but valid encoding, a
 * ``cost.direct`` without ``cost.direct_nanos``, duplicate span ids, parent loops, sums past
 * 2**53 nano-USD) makes it return ``None``, and the caller takes the Python path. It knows no
 * attribute names: ``configure`` hands it the serialized keys and prepared entries, taken from
 * ``_conventions``. Money is integer nano-USD; the doubles are ``nanos / 10**9`` as Python
 * computes them (exact below 2**53, where both operands are exact and IEEE division rounds once).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* --- configuration (set once by configure()) ------------------------------------------------ */

enum { MAX_KEYS = 32 };

typedef struct {
    const char *p;
    Py_ssize_t n;
} Str;

static PyObject *config_tuple = NULL; /* keeps the bytes below alive */
static Str drop_keys[MAX_KEYS];
static int n_drop = 0;
static Str billable_status[MAX_KEYS];
static int n_billable = 0;
static Str incomplete_status[MAX_KEYS];
static int n_incomplete = 0;
static Str key_status, key_direct_nanos, key_direct, key_currency;
static Str children_prefix, total_prefix; /* double entries up to the 8 value bytes */
static Str children_nanos_key, total_nanos_key, unpriced_key;
static Str scope_entry, currency_scope_entry, remote_entry, orphan_entry;
static uint32_t has_is_remote_mask, is_remote_mask;
static Str common_prefix; /* what every configured key starts with */

/* Span meta record, 32 bytes a span. */
enum { META_SIZE = 32 };
enum {
    F_PARENT = 1,    /* parent_span_id is set */
    F_BILLABLE = 2,  /* own_cost: billable */
    F_UNPRICED = 4,  /* own_cost: unpriced */
    F_CURRENCY = 8,  /* carries cost.currency */
    F_DROP = 16,     /* carries figures an earlier rollup wrote */
    F_REMOTE = 32,   /* Span.flags: the parent is remote */
    F_COSTED = 64,   /* own_cost is not (0, False, False) */
};

/* --- wire format ------------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Cur;

/* Result codes of the readers. */
enum { OK = 0, MALFORMED = -1, UNSUPPORTED = -2 };

static inline int read_varint(Cur *c, uint64_t *out) {
    if (c->p < c->end && *c->p < 0x80) { /* one byte: most tags and lengths */
        *out = *c->p++;
        return OK;
    }
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (c->p >= c->end) return MALFORMED;
        uint8_t b = *c->p++;
        if (shift == 63 && b > 1) return UNSUPPORTED; /* past 64 bits: leave it to upb */
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *out = v;
            return OK;
        }
    }
    return MALFORMED; /* more than 10 bytes */
}

/* One field: its number, wire type and payload (for LEN: the bytes; varint: value; fixed: value). */
typedef struct {
    uint32_t number;
    int wire;
    const uint8_t *start; /* where the field (its tag) starts */
    const uint8_t *data;  /* LEN payload */
    Py_ssize_t len;
    uint64_t value; /* varint / fixed value */
} Field;

static inline int next_field(Cur *c, Field *f) {
    f->start = c->p;
    f->data = NULL;
    f->len = 0;
    f->value = 0;
    uint64_t tag;
    int r = read_varint(c, &tag);
    if (r) return r;
    uint64_t number = tag >> 3;
    if (number == 0 || number > 536870911u) return MALFORMED;
    f->number = (uint32_t)number;
    f->wire = (int)(tag & 7);
    switch (f->wire) {
    case 0:
        return read_varint(c, &f->value);
    case 1:
        if (c->end - c->p < 8) return MALFORMED;
        f->value = 0;
        for (int i = 7; i >= 0; i--) f->value = (f->value << 8) | c->p[i];
        c->p += 8;
        return OK;
    case 5:
        if (c->end - c->p < 4) return MALFORMED;
        f->value = (uint64_t)c->p[0] | (uint64_t)c->p[1] << 8 | (uint64_t)c->p[2] << 16 |
                   (uint64_t)c->p[3] << 24;
        c->p += 4;
        return OK;
    case 2: {
        uint64_t len;
        r = read_varint(c, &len);
        if (r) return r;
        if (len > (uint64_t)(c->end - c->p)) return MALFORMED;
        f->data = c->p;
        f->len = (Py_ssize_t)len;
        c->p += len;
        return OK;
    }
    case 3:
    case 4:
        return UNSUPPORTED; /* groups: valid in unknown fields, left to upb */
    default:
        return MALFORMED;
    }
}

static inline int str_eq(const uint8_t *p, Py_ssize_t n, Str s) {
    return n == s.n && memcmp(p, s.p, (size_t)n) == 0;
}

static int in_set(const uint8_t *p, Py_ssize_t n, const Str *set, int count) {
    for (int i = 0; i < count; i++)
        if (str_eq(p, n, set[i])) return 1;
    return 0;
}

/* --- AnyValue / KeyValue ---------------------------------------------------------------------- */

enum { V_NONE, V_STRING, V_BOOL, V_INT, V_DOUBLE, V_BYTES, V_ARRAY, V_KVLIST };

typedef struct {
    int kind;
    const uint8_t *s; /* V_STRING */
    Py_ssize_t n;
    int64_t i; /* V_INT, V_BOOL */
} Value;

/* The oneof of AnyValue: the last field set wins (as in upb). */
static int read_any_value(const uint8_t *p, Py_ssize_t n, Value *v) {
    Cur c = {p, p + n};
    Field f;
    v->kind = V_NONE;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        switch (f.number) {
        case 1: /* string_value */
            if (f.wire != 2) return UNSUPPORTED;
            v->kind = V_STRING;
            v->s = f.data;
            v->n = f.len;
            break;
        case 2: /* bool_value */
            if (f.wire != 0) return UNSUPPORTED;
            v->kind = V_BOOL;
            v->i = f.value != 0;
            break;
        case 3: /* int_value */
            if (f.wire != 0) return UNSUPPORTED;
            v->kind = V_INT;
            v->i = (int64_t)f.value;
            break;
        case 4: /* double_value */
            if (f.wire != 1) return UNSUPPORTED;
            v->kind = V_DOUBLE;
            break;
        case 5: /* array_value */
        case 6: /* kvlist_value */
        case 7: /* bytes_value */
            if (f.wire != 2) return UNSUPPORTED;
            v->kind = f.number == 5 ? V_ARRAY : f.number == 6 ? V_KVLIST : V_BYTES;
            break;
        default:
            break; /* unknown: ignored */
        }
    }
    return OK;
}

/* A KeyValue: its key (the last one) and its value's bytes (NULL: no value; several: merged). */
typedef struct {
    const uint8_t *key;
    Py_ssize_t key_len;
    const uint8_t *value;
    Py_ssize_t value_len;
    int values; /* how many value fields */
} KV;

static inline int read_key_value(const uint8_t *p, Py_ssize_t n, KV *kv) {
    /* The usual encoding, the key then the value, each short: split without the loop. */
    if (n >= 4 && p[0] == 0x0A && p[1] < 0x80) {
        Py_ssize_t k = p[1];
        if (4 + k <= n && p[2 + k] == 0x12 && p[3 + k] < 0x80 && 4 + k + p[3 + k] == n) {
            kv->key = p + 2;
            kv->key_len = k;
            kv->value = p + 4 + k;
            kv->value_len = p[3 + k];
            kv->values = 1;
            return OK;
        }
    }
    Cur c = {p, p + n};
    Field f;
    kv->key = (const uint8_t *)"";
    kv->key_len = 0;
    kv->value = NULL;
    kv->value_len = 0;
    kv->values = 0;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        if (f.number == 1) {
            if (f.wire != 2) return UNSUPPORTED;
            kv->key = f.data;
            kv->key_len = f.len;
        } else if (f.number == 2) {
            if (f.wire != 2) return UNSUPPORTED;
            kv->value = f.data;
            kv->value_len = f.len;
            kv->values++;
        }
    }
    return OK;
}

/* --- one span ------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *data; /* the span's bytes */
    Py_ssize_t len;
    const uint8_t *trace;
    Py_ssize_t trace_len;
    uint8_t meta[META_SIZE];
} SpanRec;

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_i64(uint8_t *p, int64_t v) {
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(u >> (8 * i));
}

static int64_t get_i64(const uint8_t *p) {
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--) u = (u << 8) | p[i];
    return (int64_t)u;
}

/* Reads ids, flags and cost attributes of one span into rec (as own_cost reads them). */
static int read_span(const uint8_t *p, Py_ssize_t n, SpanRec *rec) {
    Cur c = {p, p + n};
    Field f;
    const uint8_t *span_id = NULL, *parent_id = NULL;
    Py_ssize_t span_len = 0, parent_len = 0;
    uint32_t span_flags = 0, flags = 0;
    KV status = {0}, nanos = {0}, direct = {0};
    int has_status = 0, has_nanos = 0, has_direct = 0;
    rec->data = p;
    rec->len = n;
    rec->trace = (const uint8_t *)"";
    rec->trace_len = 0;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        switch (f.number) {
        case 1:
        case 2:
        case 4:
            if (f.wire != 2) return UNSUPPORTED;
            if (f.number == 1) {
                rec->trace = f.data;
                rec->trace_len = f.len;
            } else if (f.number == 2) {
                span_id = f.data;
                span_len = f.len;
            } else {
                parent_id = f.data;
                parent_len = f.len;
            }
            break;
        case 9: {
            if (f.wire != 2) return UNSUPPORTED;
            KV kv;
            r = read_key_value(f.data, f.len, &kv);
            if (r) return r;
            if (kv.key_len < common_prefix.n || (common_prefix.n && kv.key[0] != (uint8_t)common_prefix.p[0]) ||
                memcmp(kv.key, common_prefix.p, (size_t)common_prefix.n))
                break;
            if (in_set(kv.key, kv.key_len, drop_keys, n_drop)) {
                flags |= F_DROP;
            } else if (str_eq(kv.key, kv.key_len, key_status)) {
                status = kv;
                has_status = 1;
            } else if (str_eq(kv.key, kv.key_len, key_direct_nanos)) {
                nanos = kv;
                has_nanos = 1;
            } else if (str_eq(kv.key, kv.key_len, key_direct)) {
                direct = kv;
                has_direct = 1;
            } else if (str_eq(kv.key, kv.key_len, key_currency)) {
                flags |= F_CURRENCY;
            }
            break;
        }
        case 16:
            if (f.wire != 5) return UNSUPPORTED;
            span_flags = (uint32_t)f.value;
            break;
        default:
            break;
        }
    }
    if (span_len != 8 || (parent_len != 0 && parent_len != 8)) return UNSUPPORTED;
    memset(rec->meta, 0, META_SIZE);
    memcpy(rec->meta, span_id, 8);
    if (parent_len) {
        memcpy(rec->meta + 8, parent_id, 8);
        flags |= F_PARENT;
    }
    if ((span_flags & has_is_remote_mask) && (span_flags & is_remote_mask)) flags |= F_REMOTE;
    /* own_cost() */
    Value sv = {V_NONE}, nv = {V_NONE}, dv = {V_NONE};
    int r;
    if (has_status) {
        if (status.values > 1) return UNSUPPORTED; /* merged AnyValues */
        if (status.values && (r = read_any_value(status.value, status.value_len, &sv))) return r;
        if (sv.kind == V_ARRAY || sv.kind == V_KVLIST) return UNSUPPORTED; /* unhashable */
    }
    if (has_nanos) {
        if (nanos.values > 1) return UNSUPPORTED;
        if (nanos.values && (r = read_any_value(nanos.value, nanos.value_len, &nv))) return r;
    }
    int billable = 0, unpriced = 0, present = 0, have_nanos = 0;
    int64_t direct_nanos = 0;
    if (sv.kind == V_STRING) {
        billable = in_set(sv.s, sv.n, billable_status, n_billable);
        unpriced = in_set(sv.s, sv.n, incomplete_status, n_incomplete);
    }
    if (nv.kind != V_NONE) {
        present = 1;
        if (nv.kind == V_INT && nv.i >= 0) {
            have_nanos = 1;
            direct_nanos = nv.i;
        }
    } else if (has_direct) {
        if (direct.values > 1) return UNSUPPORTED;
        if (direct.values && (r = read_any_value(direct.value, direct.value_len, &dv))) return r;
        if (dv.kind == V_INT || dv.kind == V_DOUBLE) return UNSUPPORTED; /* Decimal conversion */
        if (dv.kind != V_NONE) present = 1;                                /* not a number: None */
    }
    if (present) billable = 1;
    if (present && !have_nanos) unpriced = 1;
    if (billable) flags |= F_BILLABLE;
    if (unpriced) flags |= F_UNPRICED;
    if (direct_nanos || billable || unpriced) flags |= F_COSTED;
    put_i64(rec->meta + 16, direct_nanos);
    put_u32(rec->meta + 24, flags);
    return OK;
}

/* --- stage() ------------------------------------------------------------------------------- */

typedef struct {
    SpanRec *items;
    Py_ssize_t n, cap;
} SpanVec;

static int vec_push(SpanVec *v, SpanRec **out) {
    if (v->n == v->cap) {
        Py_ssize_t cap = v->cap ? 2 * v->cap : 256;
        SpanRec *items = PyMem_Realloc(v->items, (size_t)cap * sizeof(SpanRec));
        if (!items) return -1;
        v->items = items;
        v->cap = cap;
    }
    *out = &v->items[v->n++];
    return 0;
}

static uint64_t hash_bytes(const uint8_t *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ull;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    PyObject *groups; /* list of (resource, resource schema url, scope, scope schema url) */
    PyObject *chunks; /* list of (trace id, group index, [span bytes], meta, has root) */
    PyObject *raw;
    Py_ssize_t recent[8][4][2]; /* offsets/lengths of the last groups, to reuse their index */
    Py_ssize_t recent_index[8];
    int n_recent;
    SpanVec spans;
} Stage;

static PyObject *slice(Stage *st, const uint8_t *p, Py_ssize_t n) {
    (void)st;
    return PyBytes_FromStringAndSize((const char *)p, n);
}

/* Group index of (resource, rs schema, scope, ss schema), reusing a recent equal one. */
static Py_ssize_t group_index(Stage *st, const uint8_t *parts[4], const Py_ssize_t lens[4]) {
    const uint8_t *base = (const uint8_t *)PyBytes_AS_STRING(st->raw);
    for (int g = 0; g < st->n_recent; g++) {
        int same = 1;
        for (int k = 0; k < 4 && same; k++) {
            Py_ssize_t off = st->recent[g][k][0], len = st->recent[g][k][1];
            same = len == lens[k] && memcmp(base + off, parts[k], (size_t)len) == 0;
        }
        if (same) return st->recent_index[g];
    }
    PyObject *tuple = PyTuple_New(4);
    if (!tuple) return -1;
    for (int k = 0; k < 4; k++) {
        PyObject *b = slice(st, parts[k], lens[k]);
        if (!b) {
            Py_DECREF(tuple);
            return -1;
        }
        PyTuple_SET_ITEM(tuple, k, b);
    }
    Py_ssize_t index = PyList_GET_SIZE(st->groups);
    if (PyList_Append(st->groups, tuple) < 0) {
        Py_DECREF(tuple);
        return -1;
    }
    Py_DECREF(tuple);
    int slot = st->n_recent < 8 ? st->n_recent++ : (int)(index % 8);
    for (int k = 0; k < 4; k++) {
        st->recent[slot][k][0] = parts[k] - base;
        st->recent[slot][k][1] = lens[k];
    }
    st->recent_index[slot] = index;
    return index;
}

/* One chunk of spans (indices into st->spans) of one trace. */
static int emit_chunk(Stage *st, Py_ssize_t group, const Py_ssize_t *at, Py_ssize_t count) {
    SpanRec *first = &st->spans.items[at[0]];
    PyObject *data = PyList_New(count);
    PyObject *meta = PyBytes_FromStringAndSize(NULL, count * META_SIZE);
    PyObject *trace = slice(st, first->trace, first->trace_len);
    PyObject *tuple = NULL;
    if (!data || !meta || !trace) goto fail;
    uint8_t *m = (uint8_t *)PyBytes_AS_STRING(meta);
    int root = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        SpanRec *rec = &st->spans.items[at[i]];
        PyObject *b = slice(st, rec->data, rec->len);
        if (!b) goto fail;
        PyList_SET_ITEM(data, i, b);
        memcpy(m + i * META_SIZE, rec->meta, META_SIZE);
        if (!(get_u32(rec->meta + 24) & F_PARENT)) root = 1;
    }
    tuple = Py_BuildValue("(NnNNO)", trace, group, data, meta, root ? Py_True : Py_False);
    if (!tuple) return -1; /* Py_BuildValue with N steals even on failure */
    int r = PyList_Append(st->chunks, tuple);
    Py_DECREF(tuple);
    return r;
fail:
    Py_XDECREF(data);
    Py_XDECREF(meta);
    Py_XDECREF(trace);
    return -1;
}

/* Emits the spans of one ScopeSpans (st->spans[from:]) as one chunk per trace, in order. */
static int emit_scope(Stage *st, Py_ssize_t group, Py_ssize_t from) {
    Py_ssize_t n = st->spans.n - from;
    SpanRec *items = st->spans.items + from;
    int same = 1;
    for (Py_ssize_t i = 1; i < n && same; i++)
        same = items[i].trace_len == items[0].trace_len &&
               memcmp(items[i].trace, items[0].trace, (size_t)items[0].trace_len) == 0;
    Py_ssize_t *order = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t));
    if (!order) {
        PyErr_NoMemory();
        return -1;
    }
    int r = 0;
    if (same) {
        for (Py_ssize_t i = 0; i < n; i++) order[i] = from + i;
        r = emit_chunk(st, group, order, n);
        PyMem_Free(order);
        return r;
    }
    /* Several traces: a hash table of trace -> first span, spans linked in arrival order. */
    Py_ssize_t size = 16;
    while (size < 2 * n) size *= 2;
    Py_ssize_t *table = PyMem_Malloc((size_t)size * sizeof(Py_ssize_t));
    Py_ssize_t *next = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t));
    Py_ssize_t *last = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t));
    Py_ssize_t *firsts = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t));
    if (!table || !next || !last || !firsts) {
        PyErr_NoMemory();
        r = -1;
        goto done;
    }
    for (Py_ssize_t i = 0; i < size; i++) table[i] = -1;
    Py_ssize_t traces = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        next[i] = -1;
        Py_ssize_t slot = (Py_ssize_t)(hash_bytes(items[i].trace, items[i].trace_len) & (uint64_t)(size - 1));
        for (;;) {
            Py_ssize_t head = table[slot];
            if (head < 0) {
                table[slot] = i;
                last[i] = i;
                firsts[traces++] = i;
                break;
            }
            if (items[head].trace_len == items[i].trace_len &&
                memcmp(items[head].trace, items[i].trace, (size_t)items[i].trace_len) == 0) {
                next[last[head]] = i;
                last[head] = i;
                break;
            }
            slot = (slot + 1) & (size - 1);
        }
    }
    for (Py_ssize_t t = 0; t < traces && r == 0; t++) {
        Py_ssize_t count = 0;
        for (Py_ssize_t i = firsts[t]; i >= 0; i = next[i]) order[count++] = from + i;
        r = emit_chunk(st, group, order, count);
    }
done:
    PyMem_Free(order);
    PyMem_Free(table);
    PyMem_Free(next);
    PyMem_Free(last);
    PyMem_Free(firsts);
    return r;
}

static int stage_scope(Stage *st, const uint8_t *p, Py_ssize_t n, const uint8_t *resource,
                       Py_ssize_t resource_len, const uint8_t *rs_schema, Py_ssize_t rs_schema_len) {
    Cur c = {p, p + n};
    Field f;
    const uint8_t *scope = p, *schema = p;
    Py_ssize_t scope_len = 0, schema_len = 0;
    int scopes = 0;
    Py_ssize_t from = st->spans.n;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        if (f.number == 1 || f.number == 2 || f.number == 3) {
            if (f.wire != 2) return UNSUPPORTED;
            if (f.number == 1) {
                if (scopes++) return UNSUPPORTED; /* a message twice: merged by upb */
                scope = f.data;
                scope_len = f.len;
            } else if (f.number == 3) {
                schema = f.data;
                schema_len = f.len;
            } else {
                SpanRec *rec;
                if (vec_push(&st->spans, &rec) < 0) {
                    PyErr_NoMemory();
                    return MALFORMED - 100;
                }
                r = read_span(f.data, f.len, rec);
                if (r) return r;
            }
        }
    }
    if (st->spans.n == from) return OK; /* no spans: no group */
    const uint8_t *parts[4] = {resource, rs_schema, scope, schema};
    Py_ssize_t lens[4] = {resource_len, rs_schema_len, scope_len, schema_len};
    Py_ssize_t group = group_index(st, parts, lens);
    if (group < 0 || emit_scope(st, group, from) < 0) return MALFORMED - 100;
    st->spans.n = from; /* the records are copied into the chunks */
    return OK;
}

static int stage_resource(Stage *st, const uint8_t *p, Py_ssize_t n) {
    /* The resource and schema URL may follow the scope spans: find them first. */
    Cur c = {p, p + n};
    Field f;
    const uint8_t *resource = p, *schema = p;
    Py_ssize_t resource_len = 0, schema_len = 0;
    int resources = 0;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        if (f.number == 1 || f.number == 2 || f.number == 3) {
            if (f.wire != 2) return UNSUPPORTED;
            if (f.number == 1) {
                if (resources++) return UNSUPPORTED;
                resource = f.data;
                resource_len = f.len;
            } else if (f.number == 3) {
                schema = f.data;
                schema_len = f.len;
            }
        }
    }
    c.p = p;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        if (f.number == 2) {
            r = stage_scope(st, f.data, f.len, resource, resource_len, schema, schema_len);
            if (r) return r;
        }
    }
    return OK;
}

static PyObject *py_stage(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "stage() takes the serialized request as bytes");
        return NULL;
    }
    if (!config_tuple) {
        PyErr_SetString(PyExc_RuntimeError, "otel_costs._serve_native.configure() was not called");
        return NULL;
    }
    Stage st = {0};
    st.raw = arg;
    st.groups = PyList_New(0);
    st.chunks = PyList_New(0);
    PyObject *result = NULL;
    if (!st.groups || !st.chunks) goto out;
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(arg);
    Cur c = {p, p + PyBytes_GET_SIZE(arg)};
    Field f;
    int r = OK;
    while (c.p < c.end && r == OK) {
        r = next_field(&c, &f);
        if (r == OK && f.number == 1) {
            if (f.wire != 2)
                r = UNSUPPORTED;
            else
                r = stage_resource(&st, f.data, f.len);
        }
    }
    if (r == MALFORMED) {
        PyErr_SetString(PyExc_ValueError, "malformed protobuf: not a valid ExportTraceServiceRequest");
    } else if (r == UNSUPPORTED) {
        result = Py_NewRef(Py_None);
    } else if (r == OK) {
        result = PyTuple_Pack(2, st.groups, st.chunks);
    } /* else a Python error is set */
out:
    Py_XDECREF(st.groups);
    Py_XDECREF(st.chunks);
    PyMem_Free(st.spans.items);
    return result;
}

/* --- rollup() ------------------------------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    Py_ssize_t n, cap;
} Out;

static inline int out_put(Out *o, const void *p, Py_ssize_t n) {
    if (n <= 0) return 0;
    if (o->n + n > o->cap) {
        Py_ssize_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + n) cap *= 2;
        uint8_t *q = PyMem_Realloc(o->p, (size_t)cap);
        if (!q) return -1;
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->n, p, (size_t)n);
    o->n += n;
    return 0;
}

static int varint_bytes(uint64_t v, uint8_t *buf) {
    int n = 0;
    while (v >= 0x80) {
        buf[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    buf[n++] = (uint8_t)v;
    return n;
}

static int out_varint(Out *o, uint64_t v) {
    uint8_t buf[10];
    return out_put(o, buf, varint_bytes(v, buf));
}

/* A Span.attributes entry of key = v (int64, v >= 0 here), as encode_attributes writes it. */
static int out_int_entry(Out *o, Str key, uint64_t v) {
    uint8_t value[10], klen[10], kvlen[10], alen[10];
    int nv = varint_bytes(v, value);
    int nk = varint_bytes((uint64_t)key.n, klen);
    int na = varint_bytes((uint64_t)(1 + nv), alen);
    uint64_t kv = 1 + (uint64_t)nk + (uint64_t)key.n + 1 + (uint64_t)na + 1 + (uint64_t)nv;
    int nkv = varint_bytes(kv, kvlen);
    if (key.n > 200) { /* not one of ours: piece by piece */
        uint8_t tag = 0x4A, ktag = 0x0A, vtag = 0x12, itag = 0x18;
        return out_put(o, &tag, 1) || out_put(o, kvlen, nkv) || out_put(o, &ktag, 1) || out_put(o, klen, nk) ||
               out_put(o, key.p, key.n) || out_put(o, &vtag, 1) || out_put(o, alen, na) ||
               out_put(o, &itag, 1) || out_put(o, value, nv);
    }
    uint8_t buf[256];
    int at = 0;
    buf[at++] = 0x4A;
    memcpy(buf + at, kvlen, (size_t)nkv);
    at += nkv;
    buf[at++] = 0x0A;
    memcpy(buf + at, klen, (size_t)nk);
    at += nk;
    memcpy(buf + at, key.p, (size_t)key.n);
    at += (int)key.n;
    buf[at++] = 0x12;
    memcpy(buf + at, alen, (size_t)na);
    at += na;
    buf[at++] = 0x18;
    memcpy(buf + at, value, (size_t)nv);
    at += nv;
    return out_put(o, buf, at);
}

static int out_double_entry(Out *o, Str prefix, int64_t nanos) {
    double usd = (double)nanos / 1e9;
    uint64_t bits;
    memcpy(&bits, &usd, 8);
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(bits >> (8 * i));
    return out_put(o, prefix.p, prefix.n) || out_put(o, b, 8);
}

/* The span without the attributes an earlier rollup wrote, as upb writes a view message back:
 * the kept attribute entries first, then every other field as it was, in order. */
static int out_without_stale(Out *o, const uint8_t *p, Py_ssize_t n) {
    Cur c = {p, p + n};
    Field f;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        if (f.number == 9 && f.wire == 2) {
            KV kv;
            r = read_key_value(f.data, f.len, &kv);
            if (r) return r;
            if (in_set(kv.key, kv.key_len, drop_keys, n_drop)) continue;
            uint8_t tag = 0x4A;
            if (out_put(o, &tag, 1) || out_varint(o, (uint64_t)f.len) || out_put(o, f.data, f.len))
                return MALFORMED - 100;
        } else if (f.number == 9) {
            return UNSUPPORTED;
        }
    }
    c.p = p;
    while (c.p < c.end) {
        int r = next_field(&c, &f);
        if (r) return r;
        if (f.number != 9 && out_put(o, f.start, c.p - f.start)) return MALFORMED - 100;
    }
    return OK;
}

typedef struct {
    uint64_t id;
    int64_t direct;
    uint64_t parent_id;
    uint32_t flags;
    Py_ssize_t parent; /* index, or n: no parent among the trace's spans */
    int64_t children;  /* sum of the descendants' direct nanos */
    int64_t unpriced;  /* unpriced spans in the subtree, itself included */
    int billable;      /* some span in the subtree is billable */
    Py_ssize_t pending; /* children not yet summed (topological order) */
} Node;

static uint64_t load_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t mix64(uint64_t x) { /* every input bit reaches the low bits */
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

/* Returns 0 (figures in nodes), UNSUPPORTED (duplicates, loops, overflow) or -100 (memory). */
static int figures(Node *nodes, Py_ssize_t n) {
    Py_ssize_t size = 16;
    while (size < 2 * n) size *= 2;
    Py_ssize_t *table = PyMem_Malloc((size_t)size * sizeof(Py_ssize_t));
    Py_ssize_t *queue = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Py_ssize_t));
    int r = OK;
    if (!table || !queue) {
        r = MALFORMED - 100;
        goto done;
    }
    for (Py_ssize_t i = 0; i < size; i++) table[i] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t slot = (Py_ssize_t)(mix64(nodes[i].id) & (uint64_t)(size - 1));
        while (table[slot] >= 0) {
            if (nodes[table[slot]].id == nodes[i].id) {
                r = UNSUPPORTED; /* a repeated span id: rollup() flags it */
                goto done;
            }
            slot = (slot + 1) & (size - 1);
        }
        table[slot] = i;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Node *node = &nodes[i];
        node->parent = n;
        if (node->flags & F_PARENT) {
            Py_ssize_t slot = (Py_ssize_t)(mix64(node->parent_id) & (uint64_t)(size - 1));
            while (table[slot] >= 0) {
                if (nodes[table[slot]].id == node->parent_id) {
                    node->parent = table[slot];
                    break;
                }
                slot = (slot + 1) & (size - 1);
            }
        }
        node->children = 0;
        node->unpriced = (node->flags & F_UNPRICED) ? 1 : 0;
        node->billable = (node->flags & F_BILLABLE) != 0;
        node->pending = 0;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (nodes[i].parent != n) nodes[nodes[i].parent].pending++;
    /* Leaves first: each node adds its subtree to its parent once all its children did. */
    Py_ssize_t head = 0, tail = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (nodes[i].pending == 0) queue[tail++] = i;
    while (head < tail) {
        Node *node = &nodes[queue[head++]];
        if (node->parent == n) continue;
        Node *up = &nodes[node->parent];
        int64_t subtree;
        if (__builtin_add_overflow(node->direct, node->children, &subtree) ||
            __builtin_add_overflow(up->children, subtree, &up->children)) {
            r = UNSUPPORTED; /* past int64: Python raises and forwards the trace as it arrived */
            goto done;
        }
        up->unpriced += node->unpriced;
        if (node->billable) up->billable = 1;
        if (--up->pending == 0) queue[tail++] = node->parent;
    }
    if (tail != n) r = UNSUPPORTED; /* parent links loop */
done:
    PyMem_Free(table);
    PyMem_Free(queue);
    return r;
}

static const int64_t EXACT_DOUBLE = (int64_t)1 << 53;

static PyObject *py_rollup(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *datas, *metas, *late;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyList_Type, &datas, &PyList_Type, &metas, &late)) return NULL;
    if (!config_tuple) {
        PyErr_SetString(PyExc_RuntimeError, "otel_costs._serve_native.configure() was not called");
        return NULL;
    }
    if (late != Py_None && !PyBytes_Check(late)) {
        PyErr_SetString(PyExc_TypeError, "late must be bytes or None");
        return NULL;
    }
    Py_ssize_t chunks = PyList_GET_SIZE(datas);
    if (PyList_GET_SIZE(metas) != chunks) {
        PyErr_SetString(PyExc_ValueError, "one meta record string per chunk");
        return NULL;
    }
    Py_ssize_t n = 0;
    for (Py_ssize_t k = 0; k < chunks; k++) {
        PyObject *data = PyList_GET_ITEM(datas, k), *meta = PyList_GET_ITEM(metas, k);
        if (!PyList_Check(data) || !PyBytes_Check(meta) ||
            PyBytes_GET_SIZE(meta) != PyList_GET_SIZE(data) * META_SIZE) {
            PyErr_SetString(PyExc_ValueError, "each chunk needs a list of spans and 32 meta bytes a span");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(data); i++)
            if (!PyBytes_Check(PyList_GET_ITEM(data, i))) {
                PyErr_SetString(PyExc_TypeError, "spans must be bytes");
                return NULL;
            }
        n += PyList_GET_SIZE(data);
    }
    Node *nodes = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Node));
    if (!nodes) return PyErr_NoMemory();
    Py_ssize_t at = 0;
    int any_costed = 0, any_drop = 0, any_orphan = 0;
    for (Py_ssize_t k = 0; k < chunks; k++) {
        const uint8_t *m = (const uint8_t *)PyBytes_AS_STRING(PyList_GET_ITEM(metas, k));
        Py_ssize_t count = PyList_GET_SIZE(PyList_GET_ITEM(datas, k));
        for (Py_ssize_t i = 0; i < count; i++, at++, m += META_SIZE) {
            nodes[at].id = load_u64(m);
            nodes[at].parent_id = load_u64(m + 8);
            nodes[at].direct = get_i64(m + 16);
            nodes[at].flags = get_u32(m + 24);
            if (nodes[at].direct < 0) nodes[at].direct = 0; /* not from stage() */
            if (nodes[at].flags & F_COSTED) any_costed = 1;
            if (nodes[at].flags & F_DROP) any_drop = 1;
        }
    }
    PyObject *result = NULL;
    int r = figures(nodes, n);
    if (r == UNSUPPORTED) {
        result = Py_NewRef(Py_None);
        goto out;
    }
    if (r) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n && !any_orphan; i++)
        any_orphan = nodes[i].parent == n && (nodes[i].flags & F_PARENT);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (nodes[i].billable && (nodes[i].children >= EXACT_DOUBLE || nodes[i].direct >= EXACT_DOUBLE ||
                                  nodes[i].children + nodes[i].direct >= EXACT_DOUBLE)) {
            result = Py_NewRef(Py_None); /* doubles past 2**53: Python converts those exactly */
            goto out;
        }
    }
    int changed = any_drop || any_orphan || late != Py_None;
    if (!changed && any_costed)
        for (Py_ssize_t i = 0; i < n && !changed; i++) changed = nodes[i].billable;
    result = PyList_New(chunks);
    if (!result) goto out;
    Out o = {0};
    at = 0;
    for (Py_ssize_t k = 0; k < chunks; k++) {
        PyObject *data = PyList_GET_ITEM(datas, k);
        Py_ssize_t count = PyList_GET_SIZE(data);
        if (!changed) {
            PyList_SET_ITEM(result, k, Py_NewRef(data));
            continue;
        }
        PyObject *list = PyList_New(count);
        if (!list) goto fail;
        PyList_SET_ITEM(result, k, list);
        for (Py_ssize_t i = 0; i < count; i++, at++) {
            PyObject *span = PyList_GET_ITEM(data, i);
            Node *node = &nodes[at];
            int kind = node->parent == n && (node->flags & F_PARENT);
            if (!(node->flags & F_DROP) && !node->billable && !kind && late == Py_None) {
                PyList_SET_ITEM(list, i, Py_NewRef(span));
                continue;
            }
            o.n = 0;
            const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(span);
            Py_ssize_t len = PyBytes_GET_SIZE(span);
            if (node->flags & F_DROP) {
                r = out_without_stale(&o, p, len);
                if (r == MALFORMED) {
                    PyErr_SetString(PyExc_ValueError, "malformed span");
                    goto fail;
                }
                if (r == UNSUPPORTED) {
                    Py_CLEAR(result);
                    result = Py_NewRef(Py_None);
                    goto done;
                }
                if (r) goto nomem;
            } else if (out_put(&o, p, len)) {
                goto nomem;
            }
            if (node->billable) {
                int64_t total = node->direct + node->children;
                if (out_double_entry(&o, children_prefix, node->children) ||
                    out_double_entry(&o, total_prefix, total) ||
                    out_int_entry(&o, children_nanos_key, (uint64_t)node->children) ||
                    out_int_entry(&o, total_nanos_key, (uint64_t)total))
                    goto nomem;
                Str tail = (node->flags & F_CURRENCY) ? scope_entry : currency_scope_entry;
                if (out_put(&o, tail.p, tail.n)) goto nomem;
                if (node->unpriced && out_int_entry(&o, unpriced_key, (uint64_t)node->unpriced)) goto nomem;
            }
            if (kind) {
                Str entry = (node->flags & F_REMOTE) ? remote_entry : orphan_entry;
                if (out_put(&o, entry.p, entry.n)) goto nomem;
            }
            if (late != Py_None && out_put(&o, PyBytes_AS_STRING(late), PyBytes_GET_SIZE(late))) goto nomem;
            PyObject *b = PyBytes_FromStringAndSize((const char *)o.p, o.n);
            if (!b) goto fail;
            PyList_SET_ITEM(list, i, b);
        }
    }
done:
    PyMem_Free(o.p);
out:
    PyMem_Free(nodes);
    return result;
nomem:
    PyErr_NoMemory();
fail:
    Py_CLEAR(result);
    goto done;
}

/* --- encode_request() ------------------------------------------------------------------- */

static int vlen(Py_ssize_t n) {
    uint8_t buf[10];
    return varint_bytes((uint64_t)n, buf);
}

static Py_ssize_t field_size(Py_ssize_t n) { return 1 + vlen(n) + n; }

static int bad_shape(void) {
    PyErr_SetString(PyExc_TypeError,
                    "encode_request() takes [(resource, [(scope, [[span bytes]], scope schema url)], "
                    "resource schema url)]");
    return -1;
}

/* A ScopeSpans' body size; -1 with an error set when the shape is wrong. */
static Py_ssize_t scope_size(PyObject *scope) {
    if (!PyTuple_Check(scope) || PyTuple_GET_SIZE(scope) != 3) return bad_shape();
    PyObject *sbytes = PyTuple_GET_ITEM(scope, 0), *pieces = PyTuple_GET_ITEM(scope, 1),
             *schema = PyTuple_GET_ITEM(scope, 2);
    if (!PyBytes_Check(sbytes) || !PyList_Check(pieces) || !PyBytes_Check(schema)) return bad_shape();
    Py_ssize_t size = field_size(PyBytes_GET_SIZE(sbytes));
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(pieces); k++) {
        PyObject *piece = PyList_GET_ITEM(pieces, k);
        if (!PyList_Check(piece)) return bad_shape();
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(piece); i++) {
            PyObject *span = PyList_GET_ITEM(piece, i);
            if (!PyBytes_Check(span)) return bad_shape();
            size += field_size(PyBytes_GET_SIZE(span));
        }
    }
    if (PyBytes_GET_SIZE(schema)) size += field_size(PyBytes_GET_SIZE(schema));
    return size;
}

/* A ResourceSpans' body size. */
static Py_ssize_t resource_size(PyObject *resource) {
    if (!PyTuple_Check(resource) || PyTuple_GET_SIZE(resource) != 3) return bad_shape();
    PyObject *rbytes = PyTuple_GET_ITEM(resource, 0), *scopes = PyTuple_GET_ITEM(resource, 1),
             *schema = PyTuple_GET_ITEM(resource, 2);
    if (!PyBytes_Check(rbytes) || !PyList_Check(scopes) || !PyBytes_Check(schema)) return bad_shape();
    Py_ssize_t size = field_size(PyBytes_GET_SIZE(rbytes));
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(scopes); k++) {
        Py_ssize_t body = scope_size(PyList_GET_ITEM(scopes, k));
        if (body < 0) return -1;
        size += field_size(body);
    }
    if (PyBytes_GET_SIZE(schema)) size += field_size(PyBytes_GET_SIZE(schema));
    return size;
}

static uint8_t *put_field(uint8_t *w, uint8_t tag, const void *p, Py_ssize_t n) {
    *w++ = tag;
    w += varint_bytes((uint64_t)n, w);
    if (n) memcpy(w, p, (size_t)n);
    return w + n;
}

static uint8_t *put_header(uint8_t *w, uint8_t tag, Py_ssize_t n) {
    *w++ = tag;
    return w + varint_bytes((uint64_t)n, w);
}

/* encode_request(resources): a serialized ExportTraceServiceRequest in one allocation, as
 * _encode writes it (every resource and scope field written, empty schema URLs left out). */
static PyObject *py_encode_request(PyObject *self, PyObject *resources) {
    (void)self;
    if (!PyList_Check(resources)) {
        bad_shape();
        return NULL;
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(resources); r++) {
        Py_ssize_t body = resource_size(PyList_GET_ITEM(resources, r));
        if (body < 0) return NULL;
        total += field_size(body);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (!out) return NULL;
    uint8_t *w = (uint8_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(resources); r++) {
        PyObject *resource = PyList_GET_ITEM(resources, r);
        PyObject *rbytes = PyTuple_GET_ITEM(resource, 0), *scopes = PyTuple_GET_ITEM(resource, 1),
                 *rschema = PyTuple_GET_ITEM(resource, 2);
        w = put_header(w, 0x0A, resource_size(resource));
        w = put_field(w, 0x0A, PyBytes_AS_STRING(rbytes), PyBytes_GET_SIZE(rbytes));
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(scopes); k++) {
            PyObject *scope = PyList_GET_ITEM(scopes, k);
            PyObject *sbytes = PyTuple_GET_ITEM(scope, 0), *pieces = PyTuple_GET_ITEM(scope, 1),
                     *sschema = PyTuple_GET_ITEM(scope, 2);
            w = put_header(w, 0x12, scope_size(scope));
            w = put_field(w, 0x0A, PyBytes_AS_STRING(sbytes), PyBytes_GET_SIZE(sbytes));
            for (Py_ssize_t j = 0; j < PyList_GET_SIZE(pieces); j++) {
                PyObject *piece = PyList_GET_ITEM(pieces, j);
                for (Py_ssize_t i = 0; i < PyList_GET_SIZE(piece); i++) {
                    PyObject *span = PyList_GET_ITEM(piece, i);
                    w = put_field(w, 0x12, PyBytes_AS_STRING(span), PyBytes_GET_SIZE(span));
                }
            }
            if (PyBytes_GET_SIZE(sschema))
                w = put_field(w, 0x1A, PyBytes_AS_STRING(sschema), PyBytes_GET_SIZE(sschema));
        }
        if (PyBytes_GET_SIZE(rschema))
            w = put_field(w, 0x1A, PyBytes_AS_STRING(rschema), PyBytes_GET_SIZE(rschema));
    }
    if (w != (uint8_t *)PyBytes_AS_STRING(out) + total) { /* cannot happen: sizes were computed above */
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "encode_request: size mismatch");
        return NULL;
    }
    return out;
}

/* --- configure() ---------------------------------------------------------------------------- */

static int take_str(PyObject *item, Str *s) {
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "configure() takes bytes");
        return -1;
    }
    s->p = PyBytes_AS_STRING(item);
    s->n = PyBytes_GET_SIZE(item);
    return 0;
}

static int take_set(PyObject *item, Str *set, int *count) {
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) > MAX_KEYS) {
        PyErr_SetString(PyExc_TypeError, "configure() takes tuples of at most 32 keys");
        return -1;
    }
    *count = (int)PyTuple_GET_SIZE(item);
    for (int i = 0; i < *count; i++)
        if (take_str(PyTuple_GET_ITEM(item, i), &set[i]) < 0) return -1;
    return 0;
}

static PyObject *py_configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *drop, *billable, *incomplete;
    PyObject *status, *nanos, *direct, *currency, *cpre, *tpre, *cnk, *tnk, *uk, *scope, *cscope, *remote,
        *orphan;
    unsigned int has_mask, is_mask;
    if (!PyArg_ParseTuple(args, "O!O!O!SSSSSSSSSSSSSII", &PyTuple_Type, &drop, &PyTuple_Type, &billable,
                          &PyTuple_Type, &incomplete, &status, &nanos, &direct, &currency, &cpre, &tpre, &cnk,
                          &tnk, &uk, &scope, &cscope, &remote, &orphan, &has_mask, &is_mask))
        return NULL;
    Str d[MAX_KEYS], b[MAX_KEYS], inc[MAX_KEYS];
    int nd, nb, ni;
    if (take_set(drop, d, &nd) < 0 || take_set(billable, b, &nb) < 0 || take_set(incomplete, inc, &ni) < 0)
        return NULL;
    Py_XSETREF(config_tuple, Py_NewRef(args));
    memcpy(drop_keys, d, sizeof d);
    n_drop = nd;
    memcpy(billable_status, b, sizeof b);
    n_billable = nb;
    memcpy(incomplete_status, inc, sizeof inc);
    n_incomplete = ni;
    take_str(status, &key_status);
    take_str(nanos, &key_direct_nanos);
    take_str(direct, &key_direct);
    take_str(currency, &key_currency);
    take_str(cpre, &children_prefix);
    take_str(tpre, &total_prefix);
    take_str(cnk, &children_nanos_key);
    take_str(tnk, &total_nanos_key);
    take_str(uk, &unpriced_key);
    take_str(scope, &scope_entry);
    take_str(cscope, &currency_scope_entry);
    take_str(remote, &remote_entry);
    take_str(orphan, &orphan_entry);
    has_is_remote_mask = has_mask;
    is_remote_mask = is_mask;
    /* The longest prefix every key shares: a cheap first test per attribute. */
    Str keys[MAX_KEYS + 4];
    int nk = 0;
    for (int i = 0; i < nd; i++) keys[nk++] = d[i];
    keys[nk++] = key_status;
    keys[nk++] = key_direct_nanos;
    keys[nk++] = key_direct;
    keys[nk++] = key_currency;
    Py_ssize_t len = keys[0].n;
    for (int i = 1; i < nk; i++) {
        Py_ssize_t j = 0;
        while (j < len && j < keys[i].n && keys[i].p[j] == keys[0].p[j]) j++;
        len = j;
    }
    common_prefix.p = keys[0].p;
    common_prefix.n = len;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", py_configure, METH_VARARGS, "Set the serialized keys and prepared entries (once)."},
    {"stage", py_stage, METH_O,
     "stage(raw) -> (groups, chunks) | None: a serialized request's spans split by trace."},
    {"encode_request", py_encode_request, METH_O,
     "encode_request(resources) -> bytes: a serialized ExportTraceServiceRequest in one allocation."},
    {"rollup", py_rollup, METH_VARARGS,
     "rollup(datas, metas, late) -> list[list[bytes]] | None: a trace's spans with rollup figures."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "otel_costs._serve_native",
    "The per-span work of otel-costs serve in C (optional; _serve.py is the reference).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__serve_native(void) { return PyModule_Create(&module); }
