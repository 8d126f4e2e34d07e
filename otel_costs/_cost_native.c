/*
 * otel_costs._cost_native: the CostSpanProcessor's hot path in C (optional).
 *
 * One call reads an LLM span's token counts, model, provider and server from its attribute
 * dict, prices them with a plan registered from Python and returns the attributes with the cost
 * attributes added: exactly what ``billable_counts``, ``PriceBook._quote`` and
 * ``_publish_quote`` compute, for the common case only. Anything else
 * (an unknown key layout, counts that are not plain ints, a plan not registered, dated prices,
 * a non-default Decimal context, figures too large for 64/128-bit integers) answers ``None``
 * and Python prices the span as before, so the two can never disagree on a result, only on
 * whether this one answers. tests/test_cost_native.py checks both on every bundled model.
 *
 * Exact money: the prices are integers of 1/scale USD per unit; sums are in __int128 (at most
 * 2^100 here), the nanos are rounded half to even like ``to_nanos``, and a part / scale double
 * is computed only where both fit 53 bits, where IEEE division is correctly rounded, as
 * Python's int / int is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef __int128 i128;

#define N_COUNTS 5 /* input, output, cache read, cache write, reasoning */
#define N_COEFFS 6 /* a coefficient per count, and a constant */
#define N_SUMS 5   /* total, input, cache read, cache write and output parts */
#define EXACT_DOUBLE ((int64_t)1 << 53)

/* --- configuration, set once by configure() ------------------------------------------------ */

static PyObject *key_input, *key_output, *key_operation, *key_oi_kind, *key_traceloop_kind;
/* What _publish_quote writes: keys, and the currency and status values. */
static PyObject *key_cost_currency, *key_cost_status, *key_cost_provider, *key_cost_model, *key_cost_source;
static PyObject *key_cost_direct, *key_usage_cost, *key_cost_direct_nanos, *key_cost_input;
static PyObject *key_cost_cache_read, *key_cost_cache_write, *key_cost_output;
static PyObject *value_usd, *value_priced, *value_partial;
static PyObject *part_groups;   /* tuple of 3 tuples of keys: cache read, cache write, reasoning */
static PyObject *model_keys, *provider_keys, *server_keys;
static PyObject *aggregate_operations; /* frozenset of str */
static PyObject *getcontext;           /* decimal.getcontext */
static PyObject *str_prec, *str_emax, *str_emin, *str_clamp, *str_strip;
static long long max_tokens;
static int configured;

/* --- plans -------------------------------------------------------------------------------- */

typedef struct {
    int64_t scale;
    Py_ssize_t n_thresholds;
    int64_t *thresholds;          /* ascending tier starts */
    Py_ssize_t n_checks;
    int64_t *checks;              /* n_checks rows of N_COEFFS: a negative value rejects */
    int64_t *sums;                /* (n_thresholds + 1) levels of N_SUMS rows of N_COEFFS */
    PyObject *provider, *model, *source;
} Plan;

static const char *PLAN_NAME = "otel_costs._cost_native.Plan";

static void plan_free(Plan *plan) {
    if (plan == NULL) return;
    PyMem_Free(plan->thresholds);
    PyMem_Free(plan->checks);
    PyMem_Free(plan->sums);
    Py_XDECREF(plan->provider);
    Py_XDECREF(plan->model);
    Py_XDECREF(plan->source);
    PyMem_Free(plan);
}

static void plan_capsule_destructor(PyObject *capsule) {
    plan_free((Plan *)PyCapsule_GetPointer(capsule, PLAN_NAME));
}

/* Fill out[0..n) from a sequence of ints; 0 and an exception when one does not fit int64. */
static int int64_row(PyObject *sequence, int64_t *out, Py_ssize_t n) {
    PyObject *fast = PySequence_Fast(sequence, "a plan row must be a sequence of ints");
    if (fast == NULL) return 0;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        PyErr_Format(PyExc_ValueError, "a plan row must hold %zd ints", n);
        Py_DECREF(fast);
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyLong_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "plan coefficients must be ints");
            Py_DECREF(fast);
            return 0;
        }
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (overflow || (value == -1 && PyErr_Occurred())) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_OverflowError, "a plan coefficient exceeds 64 bits");
            Py_DECREF(fast);
            return 0;
        }
        out[i] = (int64_t)value;
    }
    Py_DECREF(fast);
    return 1;
}

PyDoc_STRVAR(make_plan_doc,
"make_plan(scale, thresholds, checks, levels, provider, model, source) -> capsule\n\n"
"A price plan for cost_attributes(): ``scale`` (units per USD), the ascending tier ``thresholds``, the\n"
"``checks`` rows (a negative value means a part exceeds its total) and, per tier level, the\n"
"5 sum rows (total, input, cache read, cache write, output), every row 6 int coefficients of\n"
"(input, output, cache read, cache write, reasoning, 1). Raises OverflowError when a figure\n"
"does not fit 64 bits or the scale exceeds 2**53: such a plan stays with Python.");

static PyObject *make_plan(PyObject *self, PyObject *args) {
    PyObject *scale_obj, *thresholds, *checks, *levels, *provider, *model, *source;
    if (!PyArg_ParseTuple(args, "OOOOOOO:make_plan", &scale_obj, &thresholds, &checks, &levels,
                          &provider, &model, &source))
        return NULL;
    if (!PyLong_Check(scale_obj)) {
        PyErr_SetString(PyExc_TypeError, "the plan's scale must be an int");
        return NULL;
    }
    int overflow = 0;
    long long scale = PyLong_AsLongLongAndOverflow(scale_obj, &overflow);
    if (scale == -1 && PyErr_Occurred()) return NULL;
    if (overflow || scale <= 0 || scale > EXACT_DOUBLE) {
        PyErr_SetString(PyExc_OverflowError, "the plan's scale must be an int in 1..2**53");
        return NULL;
    }
    if (!PyTuple_Check(thresholds) || !PyTuple_Check(checks) || !PyTuple_Check(levels)) {
        PyErr_SetString(PyExc_TypeError, "thresholds, checks and levels must be tuples");
        return NULL;
    }
    Py_ssize_t n_thresholds = PyTuple_GET_SIZE(thresholds);
    Py_ssize_t n_checks = PyTuple_GET_SIZE(checks);
    if (PyTuple_GET_SIZE(levels) != n_thresholds + 1) {
        PyErr_SetString(PyExc_ValueError, "a plan needs one level more than it has thresholds");
        return NULL;
    }
    Plan *plan = PyMem_Calloc(1, sizeof(Plan));
    if (plan == NULL) return PyErr_NoMemory();
    plan->scale = scale;
    plan->n_thresholds = n_thresholds;
    plan->n_checks = n_checks;
    plan->thresholds = PyMem_Calloc(n_thresholds + 1, sizeof(int64_t));
    plan->checks = PyMem_Calloc(n_checks * N_COEFFS + 1, sizeof(int64_t));
    plan->sums = PyMem_Calloc((n_thresholds + 1) * N_SUMS * N_COEFFS, sizeof(int64_t));
    if (plan->thresholds == NULL || plan->checks == NULL || plan->sums == NULL) {
        plan_free(plan);
        return PyErr_NoMemory();
    }
    if (!int64_row(thresholds, plan->thresholds, n_thresholds)) goto fail;
    for (Py_ssize_t i = 0; i < n_checks; i++)
        if (!int64_row(PyTuple_GET_ITEM(checks, i), plan->checks + i * N_COEFFS, N_COEFFS)) goto fail;
    for (Py_ssize_t level = 0; level <= n_thresholds; level++) {
        PyObject *rows = PyTuple_GET_ITEM(levels, level);
        if (!PyTuple_Check(rows)) {
            PyErr_SetString(PyExc_TypeError, "each level must be a tuple of 5 rows");
            goto fail;
        }
        if (PyTuple_GET_SIZE(rows) != N_SUMS) {
            PyErr_SetString(PyExc_ValueError, "each level must be a tuple of 5 rows");
            goto fail;
        }
        for (Py_ssize_t row = 0; row < N_SUMS; row++)
            if (!int64_row(PyTuple_GET_ITEM(rows, row), plan->sums + (level * N_SUMS + row) * N_COEFFS, N_COEFFS))
                goto fail;
    }
    Py_INCREF(provider);
    plan->provider = provider;
    Py_INCREF(model);
    plan->model = model;
    Py_INCREF(source);
    plan->source = source;
    PyObject *capsule = PyCapsule_New(plan, PLAN_NAME, plan_capsule_destructor);
    if (capsule == NULL) plan_free(plan);
    return capsule;
fail:
    plan_free(plan);
    return NULL;
}

/* --- reading the span's attributes ---------------------------------------------------------- */

/* Borrowed value of key in attributes, NULL when absent or None (as the Python readers skip
 * None); sets *error on a failed lookup. */
static PyObject *get(PyObject *attributes, PyObject *key, int *error) {
    PyObject *value = PyDict_GetItemWithError(attributes, key);
    if (value == NULL && PyErr_Occurred()) *error = 1;
    return value == Py_None ? NULL : value;
}

/* A plain int in 0..max_tokens into *out: 1; anything else: 0 (Python decides). */
static int count(PyObject *value, long long *out) {
    if (value == NULL || !PyLong_CheckExact(value)) return 0;
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || n < 0 || n > max_tokens) return 0;
    *out = n;
    return 1;
}

/* value.strip() (new reference): the value itself when it is a str with nothing to strip,
 * which is what str.strip() returns then; the method otherwise. */
static PyObject *strip(PyObject *value) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (PyUnicode_CheckExact(value) && n > 0) {
        int kind = PyUnicode_KIND(value);
        const void *data = PyUnicode_DATA(value);
        if (!Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, 0)) &&
            !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, n - 1))) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_CallMethodNoArgs(value, str_strip);
}

/* _first_string: the first of keys whose value is a str that is not blank, stripped (new
 * reference), or Py_None (new reference) when there is none; NULL on error. */
static PyObject *first_string(PyObject *attributes, PyObject *keys) {
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyDict_GetItemWithError(attributes, PyTuple_GET_ITEM(keys, i));
        if (value == NULL) {
            if (PyErr_Occurred()) return NULL;
            continue;
        }
        if (!PyUnicode_Check(value)) continue;
        PyObject *text = strip(value);
        if (text == NULL) return NULL;
        if (PyUnicode_Check(text) && PyUnicode_GET_LENGTH(text) > 0) return text;
        Py_DECREF(text);
    }
    Py_RETURN_NONE;
}

/* --- quote -------------------------------------------------------------------------------- */

/* Whether the thread's Decimal context is one in which Python's Decimal pricing is exact
 * (what PriceBook._quote checks): 1 yes, 0 no, -1 error. */
static int default_decimal_context(void) {
    PyObject *context = PyObject_CallNoArgs(getcontext);
    if (context == NULL) return -1;
    PyObject *names[4] = {str_prec, str_emax, str_emin, str_clamp};
    long long values[4];
    for (int i = 0; i < 4; i++) {
        PyObject *value = PyObject_GetAttr(context, names[i]);
        if (value == NULL) {
            Py_DECREF(context);
            return -1;
        }
        values[i] = PyLong_AsLongLong(value);
        Py_DECREF(value);
        if (values[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(context);
            return -1;
        }
    }
    Py_DECREF(context);
    return values[0] >= 28 && values[1] >= 999999 && values[2] <= -999999 && values[3] == 0;
}

static i128 linear(const int64_t *row, const long long *counts) {
    i128 sum = row[N_COUNTS];
    for (int k = 0; k < N_COUNTS; k++) sum += (i128)row[k] * counts[k];
    return sum;
}

/* 10**28 (10**19 * 10**9, a constant): PriceBook._quote's bound below which every Decimal step
 * is exact. */
#define EXACT_LIMIT ((i128)10000000000000000000ULL * (i128)1000000000ULL)

typedef struct {
    long long nanos;
    double parts[4]; /* input, cache read, cache write, output, USD */
    Plan *plan;
    PyObject *capsule; /* a reference held while plan is used: Python code run meanwhile (a
                          str subclass's __eq__, the garbage collector, another thread) may
                          drop the plan from the table */
} Quote;

static int price(Plan *plan, const long long *counts, Quote *out);

/* billable_counts + PriceBook._quote: 1 and *out filled (out->capsule is then a new reference
 * to release), 0 where Python must decide, -1 on error. */
static int compute(PyObject *plans, PyObject *attributes, PyObject *start, Quote *out) {
    int error = 0;
    long long counts[N_COUNTS] = {0, 0, 0, 0, 0};
    /* The current GenAI names only: other layouts go through billable_counts. */
    if (!count(get(attributes, key_input, &error), &counts[0]) ||
        !count(get(attributes, key_output, &error), &counts[1]))
        return error ? -1 : 0;
    for (int group = 0; group < 3; group++) {
        PyObject *keys = PyTuple_GET_ITEM(part_groups, group);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); i++) {
            PyObject *value = get(attributes, PyTuple_GET_ITEM(keys, i), &error);
            if (error) return -1;
            if (value != NULL) {
                if (!count(value, &counts[2 + group])) return 0;
                break;
            }
        }
    }
    /* plausible_counts: parts within their totals. */
    if (counts[2] + counts[3] > counts[0] || counts[4] > counts[1]) return 0;
    PyObject *operation = get(attributes, key_operation, &error);
    if (error) return -1;
    if (operation != NULL && PyUnicode_Check(operation)) {
        int aggregate = PySet_Contains(aggregate_operations, operation);
        if (aggregate != 0) return aggregate < 0 ? -1 : 0;
    }
    if (get(attributes, key_oi_kind, &error) != NULL || get(attributes, key_traceloop_kind, &error) != NULL)
        return 0;
    if (error) return -1;
    /* The span's start: only checked, as a plan without dated prices does not depend on it. */
    if (start != Py_None) {
        if (!PyLong_CheckExact(start)) return 0;
        int overflow = 0;
        long long start_ns = PyLong_AsLongLongAndOverflow(start, &overflow);
        if (start_ns == -1 && PyErr_Occurred()) return -1;
        if (overflow || start_ns == LLONG_MIN) return 0;
    }

    PyObject *model = first_string(attributes, model_keys);
    PyObject *provider = model ? first_string(attributes, provider_keys) : NULL;
    PyObject *server = provider ? first_string(attributes, server_keys) : NULL;
    PyObject *key = server ? PyTuple_Pack(3, provider, server, model) : NULL;
    Py_XDECREF(model);
    Py_XDECREF(provider);
    Py_XDECREF(server);
    if (key == NULL) return -1;
    PyObject *capsule = PyDict_GetItemWithError(plans, key);
    Py_DECREF(key);
    if (capsule == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyCapsule_IsValid(capsule, PLAN_NAME)) {
        PyErr_SetString(PyExc_TypeError, "plans must hold make_plan() capsules");
        return -1;
    }
    Py_INCREF(capsule);
    Plan *plan = (Plan *)PyCapsule_GetPointer(capsule, PLAN_NAME);
    int exact = default_decimal_context();
    if (exact <= 0) {
        Py_DECREF(capsule);
        return exact;
    }
    int found = price(plan, counts, out);
    if (found == 1) {
        out->capsule = capsule;
    } else {
        Py_DECREF(capsule);
    }
    return found;
}

/* The plan's figures for counts: 1 and *out filled, 0 where Python must decide. */
static int price(Plan *plan, const long long *counts, Quote *out) {
    for (Py_ssize_t i = 0; i < plan->n_checks; i++)
        if (linear(plan->checks + i * N_COEFFS, counts) < 0) return 0; /* price() flags it */
    /* The tier level: how many tier starts the input count exceeds (bisect_left). */
    Py_ssize_t level = 0;
    while (level < plan->n_thresholds && plan->thresholds[level] < counts[0]) level++;
    const int64_t *rows = plan->sums + level * N_SUMS * N_COEFFS;
    i128 sums[N_SUMS];
    for (int row = 0; row < N_SUMS; row++) sums[row] = linear(rows + row * N_COEFFS, counts);
    i128 total = sums[0];
    if (total < 0 || total >= EXACT_LIMIT) return 0;
    /* total * 1e9 / scale, rounded half to even (as to_nanos rounds the Decimal). */
    i128 scaled = total * (i128)1000000000;
    i128 nanos = scaled / plan->scale, remainder = scaled % plan->scale;
    if (2 * remainder > plan->scale || (2 * remainder == plan->scale && (nanos & 1))) nanos += 1;
    /* Below 2**53 nanos / 1e9 is one correctly rounded division, as Python's int / int. */
    if (nanos > (i128)EXACT_DOUBLE) return 0;
    for (int i = 0; i < 4; i++) {
        i128 part = sums[1 + i];
        if (part < -(i128)EXACT_DOUBLE || part > (i128)EXACT_DOUBLE) return 0;
        /* Both operands exact in a double: the quotient is correctly rounded, like int / int.
         * A zero part is +0.0, as Python's 0 / scale is. */
        out->parts[i] = part == 0 ? 0.0 : (double)(int64_t)part / (double)plan->scale;
    }
    out->nanos = (long long)nanos;
    out->plan = plan;
    return 1;
}

/* dict[key] = value, stealing the reference to value; 0 on error. */
static int put(PyObject *dict, PyObject *key, PyObject *value) {
    if (value == NULL) return 0;
    int status = PyDict_SetItem(dict, key, value);
    Py_DECREF(value);
    return status == 0;
}

static int truthy_str(PyObject *value) {
    return value != Py_None && PyUnicode_Check(value) && PyUnicode_GET_LENGTH(value) > 0;
}

static PyObject *publish(PyObject *attributes, const Quote *quote);

PyDoc_STRVAR(cost_attributes_doc,
"cost_attributes(plans, attributes, start_ns) -> dict | None\n\n"
"A copy of ``attributes`` (a plain dict of span attributes) with the cost attributes added, as\n"
"``_publish_quote(copy, PriceBook._quote(*billable_counts(attributes), start_ns), partial)``\n"
"writes them, for int counts and a (provider, server, model) registered in ``plans`` (a dict\n"
"of make_plan() capsules). None wherever Python must decide.");

static PyObject *cost_attributes(PyObject *self, PyObject *args) {
    PyObject *plans, *attributes, *start;
    if (!PyArg_ParseTuple(args, "O!O!O:cost_attributes", &PyDict_Type, &plans, &PyDict_Type, &attributes,
                          &start))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "call configure() first");
        return NULL;
    }
    /* A dict subclass could show other items to the copy than to the lookups. */
    if (!PyDict_CheckExact(attributes)) Py_RETURN_NONE;
    Quote quote;
    int found = compute(plans, attributes, start, &quote);
    if (found <= 0) {
        if (found < 0) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *result = publish(attributes, &quote);
    Py_DECREF(quote.capsule);
    return result;
}

/* A copy of attributes with the cost attributes of quote, as _publish_quote writes them. */
static PyObject *publish(PyObject *attributes, const Quote *quote) {
    int error = 0;
    PyObject *status = get(attributes, key_cost_status, &error);
    if (error) return NULL;
    int partial = status != NULL ? PyObject_RichCompareBool(status, value_partial, Py_EQ) : 0;
    if (partial < 0) return NULL;
    PyObject *own = PyDict_Copy(attributes);
    if (own == NULL) return NULL;
    const Plan *plan = quote->plan;
    PyObject *usd = PyFloat_FromDouble((double)quote->nanos / 1e9);
    if (usd == NULL) goto fail;
    /* The keys and order of _publish_quote. */
    if (PyDict_SetItem(own, key_cost_currency, value_usd) < 0 ||
        PyDict_SetItem(own, key_cost_status, partial ? value_partial : value_priced) < 0 ||
        (truthy_str(plan->provider) && PyDict_SetItem(own, key_cost_provider, plan->provider) < 0) ||
        (truthy_str(plan->model) && PyDict_SetItem(own, key_cost_model, plan->model) < 0) ||
        (truthy_str(plan->source) && PyDict_SetItem(own, key_cost_source, plan->source) < 0) ||
        PyDict_SetItem(own, key_cost_direct, usd) < 0 || PyDict_SetItem(own, key_usage_cost, usd) < 0 ||
        !put(own, key_cost_direct_nanos, PyLong_FromLongLong(quote->nanos)) ||
        !put(own, key_cost_input, PyFloat_FromDouble(quote->parts[0])) ||
        !put(own, key_cost_cache_read, PyFloat_FromDouble(quote->parts[1])) ||
        !put(own, key_cost_cache_write, PyFloat_FromDouble(quote->parts[2])) ||
        !put(own, key_cost_output, PyFloat_FromDouble(quote->parts[3]))) {
        Py_DECREF(usd);
        goto fail;
    }
    Py_DECREF(usd);
    return own;
fail:
    Py_DECREF(own);
    return NULL;
}

/* --- configure ----------------------------------------------------------------------------- */

static int set_str(PyObject **slot, PyObject *names, const char *name) {
    PyObject *value = PyDict_GetItemString(names, name);
    if (value == NULL || !PyUnicode_Check(value)) {
        PyErr_Format(PyExc_KeyError, "configure() needs the str %s", name);
        return 0;
    }
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 1;
}

static int set_keys(PyObject **slot, PyObject *names, const char *name) {
    PyObject *value = PyDict_GetItemString(names, name);
    if (value == NULL || !PyTuple_Check(value)) {
        PyErr_Format(PyExc_KeyError, "configure() needs the tuple %s", name);
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(value); i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(value, i))) {
            PyErr_Format(PyExc_TypeError, "%s must hold only str keys", name);
            return 0;
        }
    }
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 1;
}

PyDoc_STRVAR(configure_doc,
"configure(names: dict) -> None\n\n"
"The attribute names and rules quote() reads with (set once by otel_costs.pricing._book).");

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *names;
    if (!PyArg_ParseTuple(args, "O!:configure", &PyDict_Type, &names)) return NULL;
    if (!set_str(&key_input, names, "input") || !set_str(&key_output, names, "output") ||
        !set_str(&key_operation, names, "operation") || !set_str(&key_oi_kind, names, "oi_kind") ||
        !set_str(&key_traceloop_kind, names, "traceloop_kind") ||
        !set_keys(&model_keys, names, "model_keys") || !set_keys(&provider_keys, names, "provider_keys") ||
        !set_keys(&server_keys, names, "server_keys") ||
        !set_str(&key_cost_currency, names, "cost.currency") || !set_str(&key_cost_status, names, "cost.status") ||
        !set_str(&key_cost_provider, names, "cost.provider") || !set_str(&key_cost_model, names, "cost.model") ||
        !set_str(&key_cost_source, names, "cost.price_source") || !set_str(&key_cost_direct, names, "cost.direct") ||
        !set_str(&key_usage_cost, names, "gen_ai.usage.cost") ||
        !set_str(&key_cost_direct_nanos, names, "cost.direct_nanos") ||
        !set_str(&key_cost_input, names, "cost.input") || !set_str(&key_cost_cache_read, names, "cost.cache_read") ||
        !set_str(&key_cost_cache_write, names, "cost.cache_write") ||
        !set_str(&key_cost_output, names, "cost.output") || !set_str(&value_usd, names, "USD") ||
        !set_str(&value_priced, names, "priced") || !set_str(&value_partial, names, "partial"))
        return NULL;
    PyObject *groups = PyDict_GetItemString(names, "part_groups");
    if (groups == NULL || !PyTuple_Check(groups) || PyTuple_GET_SIZE(groups) != 3) {
        PyErr_SetString(PyExc_KeyError, "configure() needs part_groups, a tuple of 3 tuples of keys");
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        PyObject *group = PyTuple_GET_ITEM(groups, i);
        if (!PyTuple_Check(group)) {
            PyErr_SetString(PyExc_TypeError, "each part group must be a tuple of keys");
            return NULL;
        }
    }
    Py_INCREF(groups);
    Py_XSETREF(part_groups, groups);
    PyObject *operations = PyDict_GetItemString(names, "aggregate_operations");
    if (operations == NULL || !PyFrozenSet_Check(operations)) {
        PyErr_SetString(PyExc_KeyError, "configure() needs aggregate_operations, a frozenset");
        return NULL;
    }
    Py_INCREF(operations);
    Py_XSETREF(aggregate_operations, operations);
    PyObject *limit = PyDict_GetItemString(names, "max_tokens");
    if (limit == NULL || !PyLong_Check(limit)) {
        PyErr_SetString(PyExc_KeyError, "configure() needs max_tokens, an int");
        return NULL;
    }
    max_tokens = PyLong_AsLongLong(limit);
    if (max_tokens == -1 && PyErr_Occurred()) return NULL;
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, configure_doc},
    {"make_plan", make_plan, METH_VARARGS, make_plan_doc},
    {"cost_attributes", cost_attributes, METH_VARARGS, cost_attributes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "otel_costs._cost_native",
    "The CostSpanProcessor's pricing hot path in C; see otel_costs/_cost_native.c.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__cost_native(void) {
    PyObject *decimal = PyImport_ImportModule("decimal");
    if (decimal == NULL) return NULL;
    getcontext = PyObject_GetAttrString(decimal, "getcontext");
    Py_DECREF(decimal);
    if (getcontext == NULL) return NULL;
    str_prec = PyUnicode_InternFromString("prec");
    str_emax = PyUnicode_InternFromString("Emax");
    str_emin = PyUnicode_InternFromString("Emin");
    str_clamp = PyUnicode_InternFromString("clamp");
    str_strip = PyUnicode_InternFromString("strip");
    if (str_prec == NULL || str_emax == NULL || str_emin == NULL || str_clamp == NULL || str_strip == NULL)
        return NULL;
    return PyModule_Create(&module);
}
