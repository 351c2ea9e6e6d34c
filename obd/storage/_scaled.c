/* The compiled core of the SCALED and MODELED book codecs (docs/FORMAT.md, codecs 1, 2).
 *
 * The same bit-level work as obd/storage/scaled.py (the NumPy reference), in C:
 * the decimal grid, price steps, Rice and unary codes, size symbols, back-references,
 * the low bits and (codec 2) the size symbols' canonical Huffman codes, both ways. zstd frames and the msgpack container stay in Python
 * (obd/storage/codec.py), so nothing links libzstd and no NumPy headers are needed:
 * floats come in and go out through the buffer protocol.
 *
 * Bit for bit the reference: integer steps wrap like NumPy's int64, a Python int that
 * NumPy would refuse (OverflowError) is refused here, and every read is bounds-checked,
 * so a corrupt blob raises ValueError and never reads or writes out of bounds.
 * The loops run without the GIL when there is enough work to be worth it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXP 22
#define LIMIT 9007199254740992.0 /* 2**53: integers below it are exact in a float64 */
#define MAX_LEVELS (1 << 23)
#define MAX_VALUE_SYMBOL 211
#define REFS 24
#define REF_MIN 64
#define SIZE_SYMBOLS 256
#define MAX_RICE 52
#define MAX_UNARY 64
#define BID_ZIGZAG 1
#define ASK_ZIGZAG 2
#define SIZE_ZIGZAG 4
#define NOGIL_LEVELS 512 /* levels of work above which the GIL is released */
#define SYMBOLS 236      /* size symbols: obd/storage/sizecode.py */
#define MAX_BITS 15      /* longest size code; a decode table has 2**MAX_BITS entries */
#define FAST_BITS 10     /* ... after one of 2**FAST_BITS (2 KiB, in L1) for codes this short */
#define TABLE_ENTRIES ((1 << FAST_BITS) + (1 << MAX_BITS))

typedef __int128 i128;

static double POW10[MAX_EXP + 1];
static int64_t BASE[512];
static int WIDTH[512];

static void init_tables(void) {
    double p = 1.0;
    for (int k = 0; k <= MAX_EXP; k++) { /* exact: 10**22 < 2**53 * 2**22 */
        POW10[k] = p;
        p *= 10.0;
    }
    for (int s = 0; s <= MAX_VALUE_SYMBOL; s++) {
        int b = s / 4 + 1, top = s % 4;
        int w = b > 3 ? b - 3 : 0;
        BASE[s] = (((int64_t)(4 + top) << w) >> (b < 3 ? 3 - b : 0)) - 1;
        WIDTH[s] = w;
        BASE[SIZE_SYMBOLS + REFS + s] = BASE[s];
        WIDTH[SIZE_SYMBOLS + REFS + s] = w;
    }
    for (int r = 0; r < REFS; r++) {
        BASE[SIZE_SYMBOLS + r] = (int64_t)1 << r;
        WIDTH[SIZE_SYMBOLS + r] = r;
    }
}

static inline int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t wrap_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static inline int64_t wrap_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static inline int64_t zigzag(int64_t v) { return (int64_t)(((uint64_t)v << 1) ^ (uint64_t)(v >> 63)); }
static inline int64_t unzigzag(int64_t v) { return (v >> 1) ^ (int64_t)(0 - ((uint64_t)v & 1)); }
static inline int bit_length(uint64_t u) { return u ? 64 - __builtin_clzll(u) : 0; }

static inline uint64_t load_be64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8); /* one unaligned load */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline double load_be_double(const uint8_t *p) {
    uint64_t v = load_be64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* ---------------------------------------------------------------- decode ---------- */

typedef struct {
    int flags, price_exp, size_exp, rice;
    int64_t n_bids, n_asks, tick, lot;
    int tick_too_big, lot_too_big; /* NumPy refuses a multiplier above int64 */
    i128 best_bid, spread;         /* msgpack ints: -2**63 .. 2**64 - 1 */
    const uint8_t *steps, *syms, *bits;
    Py_ssize_t steps_len, syms_len, bits_len;
    const uint16_t *table; /* MODELED: the size code's decode table; NULL: SCALED */
    int64_t offset;
} item_t;

typedef struct {
    int64_t *values, *coded;
    uint8_t *pad, *syms;
    size_t levels, pad_len;
} scratch_t;

static int scratch_fit(scratch_t *s, size_t levels, size_t bits_len) {
    if (levels > s->levels) {
        int64_t *v = realloc(s->values, 2 * (levels ? levels : 1) * sizeof(int64_t));
        if (!v) return -1; /* steps, then sizes */
        s->values = v;
        v = realloc(s->coded, (levels ? levels : 1) * sizeof(int64_t));
        if (!v) return -1;
        s->coded = v;
        uint8_t *b = realloc(s->syms, levels ? levels : 1);
        if (!b) return -1;
        s->syms = b;
        s->levels = levels;
    }
    if (bits_len + 8 > s->pad_len) {
        uint8_t *p = realloc(s->pad, bits_len + 8);
        if (!p) return -1;
        s->pad = p;
        s->pad_len = bits_len + 8;
    }
    return 0;
}

static void scratch_free(scratch_t *s) {
    free(s->values);
    free(s->coded);
    free(s->pad);
    free(s->syms);
}

typedef struct {
    const uint8_t *data;
    uint64_t pos;
} bitreader_t;

static inline int64_t read_bits(bitreader_t *r, int w) {
    /* One unaligned big-endian 64-bit read, as the reference does; two shifts so that
     * width 0 gives 0. The caller checked the stream holds every bit and padded it. */
    uint64_t word = load_be64(r->data + (r->pos >> 3)) << (r->pos & 7);
    r->pos += (uint64_t)w;
    return (int64_t)((word >> (63 - w)) >> 1);
}

/* MODELED: n size symbols, each a canonical Huffman code looked up in the table
 * (symbol | length << 8: first by the next FAST_BITS bits, 0 there for a longer code,
 * then by the next MAX_BITS), from bit 0 of the stream; then the n_steps unary
 * quotients. The reader stops past `limit` bits (the padded copy holds 8 zero bytes
 * more, so every read is in bounds). An error message or NULL. */
static const char *read_codes(bitreader_t *r, uint64_t limit, const uint16_t *table, int64_t n,
                              uint8_t *syms, int64_t n_steps, int64_t *quotients) {
    const uint16_t *full = table + (1 << FAST_BITS);
    uint64_t pos = r->pos, word = 0;
    int left = 0; /* bits of `word` still unread, from its top; refilled below MAX_BITS */
    for (int64_t i = 0; i < n; i++) {
        if (left < MAX_BITS) {
            word = load_be64(r->data + (pos >> 3)) << (pos & 7);
            left = 64 - (int)(pos & 7);
        }
        uint16_t entry = table[word >> (64 - FAST_BITS)];
        if (!entry) entry = full[word >> (64 - MAX_BITS)];
        int length = entry >> 8;
        syms[i] = (uint8_t)entry;
        word <<= length;
        left -= length;
        pos += (uint64_t)length;
        if (pos > limit) return "size code stream too short";
    }
    /* `word` has `left` stream bits from its top and zeros below them: a one bit in
     * it is the end of a quotient; none, and the next bits are loaded. */
    for (int64_t i = 0; i < n_steps; i++) {
        int64_t q = 0;
        while (!word) {
            q += left;
            pos += (uint64_t)left;
            if (pos > limit) return "unary stream too short";
            word = load_be64(r->data + (pos >> 3)) << (pos & 7);
            left = 64 - (int)(pos & 7);
        }
        int used = __builtin_clzll(word) + 1;
        q += used - 1;
        pos += (uint64_t)used;
        word = used < 64 ? word << used : 0;
        left -= used;
        quotients[i] = q;
    }
    r->pos = pos;
    return NULL;
}

/* Decodes one SCALED item into prices[0..n) and sizes[0..n); an error message or NULL. */
static const char *decode_item(const item_t *it, scratch_t *s, double *prices, double *sizes) {
    int64_t n_bids = it->n_bids, n_asks = it->n_asks, n = n_bids + n_asks;
    int64_t n_bid_steps = n_bids > 0 ? n_bids - 1 : 0;
    int64_t n_steps = n_bid_steps + (n_asks > 0 ? n_asks - 1 : 0);
    int rice = it->rice;
    int64_t *values = s->values; /* steps, then sizes */
    const uint8_t *syms = it->syms;
    memcpy(s->pad, it->bits, (size_t)it->bits_len);
    memset(s->pad + it->bits_len, 0, 8);
    bitreader_t bits = {s->pad, 0};
    if (it->table) { /* codes, then quotients, then the low bits as in SCALED */
        const char *error = read_codes(&bits, 8 * (uint64_t)it->bits_len, it->table, n, s->syms,
                                       n_steps, values);
        if (error) return error;
        syms = s->syms;
    } else {
        if (it->syms_len != n) return "symbol stream of the wrong length";
        if (rice < 0 && it->steps_len != n_steps) return "symbol stream of the wrong length";
    }
    uint64_t total = bits.pos;
    for (int64_t i = 0; i < n_steps; i++) total += (uint64_t)(rice >= 0 ? rice : WIDTH[it->steps[i]]);
    for (int64_t i = 0; i < n; i++) total += (uint64_t)WIDTH[SIZE_SYMBOLS + syms[i]];
    if ((uint64_t)it->bits_len != (total + 7) / 8) return "bit stream of the wrong length";

    if (it->table) {
        for (int64_t i = 0; i < n_steps; i++) {
            int64_t low = read_bits(&bits, rice);
            values[i] = wrap_add(low, (int64_t)((uint64_t)values[i] << rice));
        }
    } else if (rice >= 0) {
        /* Unary quotients: exactly n_steps one bits, the last in the last byte. */
        int64_t count = 0, last = -1;
        for (Py_ssize_t j = 0; j < it->steps_len; j++) {
            unsigned byte = it->steps[j];
            while (byte) {
                int b = 7 - (31 - __builtin_clz(byte)); /* MSB first */
                int64_t at = (int64_t)j * 8 + b;
                if (count < n_steps) values[count] = at - last - 1;
                count++;
                last = at;
                byte &= ~(0x80u >> b);
            }
        }
        if (count != n_steps) return "unary stream of the wrong length";
        if (it->steps_len != (n_steps ? (last + 8) / 8 : 0)) return "unary stream of the wrong length";
        for (int64_t i = 0; i < n_steps; i++) {
            int64_t low = read_bits(&bits, rice);
            values[i] = wrap_add(low, (int64_t)((uint64_t)values[i] << rice));
        }
    } else {
        for (int64_t i = 0; i < n_steps; i++) {
            unsigned sym = it->steps[i];
            values[i] = read_bits(&bits, WIDTH[sym]) + BASE[sym];
        }
    }

    /* Sizes: values, or references to the value-coded size D places back. */
    int64_t *sizes_int = values + n_steps, *coded = s->coded, n_coded = 0;
    for (int64_t i = 0; i < n; i++) {
        unsigned sym = syms[i];
        int64_t v = read_bits(&bits, WIDTH[SIZE_SYMBOLS + sym]) + BASE[SIZE_SYMBOLS + sym];
        if (sym < REFS) {
            int64_t source = n_coded - v;
            if (source < 0) return "size reference before the first size";
            sizes_int[i] = coded[source];
        } else {
            coded[n_coded++] = v;
            sizes_int[i] = v;
        }
    }
    if (it->flags & SIZE_ZIGZAG)
        for (int64_t i = 0; i < n; i++) sizes_int[i] = unzigzag(sizes_int[i]);

    /* Prices: each side's best, then its steps away from it, as one running sum. */
    for (int64_t i = 0; i < n_steps; i++) {
        int zig = i < n_bid_steps ? it->flags & BID_ZIGZAG : it->flags & ASK_ZIGZAG;
        values[i] = zig ? unzigzag(values[i]) : wrap_add(values[i], 1);
    }
    if (it->tick > 1 || it->tick_too_big) {
        if (it->tick_too_big) return "tick out of range";
        for (int64_t i = 0; i < n_steps; i++) values[i] = wrap_mul(values[i], it->tick);
    }
    const double price_scale = POW10[it->price_exp], size_scale = POW10[it->size_exp];
    int64_t price = 0;
    if (n_bids) {
        if (it->best_bid < INT64_MIN || it->best_bid > INT64_MAX) return "best bid out of range";
        price = (int64_t)it->best_bid;
        prices[0] = (double)price / price_scale;
        for (int64_t i = 1; i < n_bids; i++) {
            price = wrap_sub(price, values[i - 1]);
            prices[i] = (double)price / price_scale;
        }
    }
    if (n_asks) {
        int64_t sum = 0;
        for (int64_t i = 0; i < n_bid_steps; i++) sum = wrap_add(sum, values[i]);
        i128 worst_bid = n_bids ? it->best_bid - (i128)sum : 0;
        i128 jump = it->best_bid + it->spread - worst_bid;
        if (jump < INT64_MIN || jump > INT64_MAX) return "best ask out of range";
        price = wrap_add(price, (int64_t)jump);
        prices[n_bids] = (double)price / price_scale;
        for (int64_t i = 1; i < n_asks; i++) {
            price = wrap_add(price, values[n_bid_steps + i - 1]);
            prices[n_bids + i] = (double)price / price_scale;
        }
    }
    if (it->lot > 1 || it->lot_too_big) {
        if (it->lot_too_big) return "lot out of range";
        for (int64_t i = 0; i < n; i++) sizes[i] = (double)wrap_mul(sizes_int[i], it->lot) / size_scale;
    } else {
        for (int64_t i = 0; i < n; i++) sizes[i] = (double)sizes_int[i] / size_scale;
    }
    return NULL;
}

/* A msgpack int of the header as an i128; -1 and an exception if it is not an int. */
static int as_i128(PyObject *o, i128 *out) {
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_ValueError, "corrupt SCALED header: not an integer");
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (!overflow) {
        *out = v;
        return 0;
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(o);
        if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
            *out = (i128)u;
            return 0;
        }
        PyErr_Clear();
    }
    PyErr_SetString(PyExc_ValueError, "corrupt SCALED header: integer out of range");
    return -1;
}

static int as_bytes(PyObject *o, const uint8_t **data, Py_ssize_t *len) {
    if (!PyBytes_Check(o)) {
        PyErr_SetString(PyExc_ValueError, "corrupt SCALED blob: a field is not bytes");
        return -1;
    }
    *data = (const uint8_t *)PyBytes_AS_STRING(o);
    *len = PyBytes_GET_SIZE(o);
    return 0;
}

static PyObject *header_error(PyObject *header) {
    PyObject *head = PyTuple_Check(header) && PyTuple_GET_SIZE(header) >= 10
                         ? PyTuple_GetSlice(header, 0, 10)
                         : (Py_INCREF(header), header);
    if (head) {
        PyErr_Format(PyExc_ValueError, "corrupt SCALED header %R", head);
        Py_DECREF(head);
    }
    return NULL;
}

/* The header's ten integers, checked as docs/FORMAT.md bounds them: a SCALED
 * container has 13 fields, a MODELED one 12 and Rice-coded steps. */
static int read_header(PyObject *header, item_t *it, int modeled) {
    if (!PyTuple_Check(header) || PyTuple_GET_SIZE(header) != (modeled ? 12 : 13)) {
        PyErr_SetString(PyExc_ValueError, modeled ? "corrupt MODELED header: not 12 fields"
                                                  : "corrupt SCALED header: not 13 fields");
        return -1;
    }
    i128 f[10];
    for (int i = 0; i < 10; i++)
        if (as_i128(PyTuple_GET_ITEM(header, i), &f[i]) < 0) return -1;
    if (!(0 <= f[0] && f[0] < 8 && 0 <= f[1] && f[1] <= MAX_LEVELS && 0 <= f[2] &&
          f[2] <= MAX_LEVELS && 0 <= f[3] && f[3] <= MAX_EXP && 0 <= f[4] && f[4] <= MAX_EXP &&
          f[5] >= 1 && f[6] >= 1 && (modeled ? 0 : -1) <= f[9] && f[9] <= MAX_RICE)) {
        header_error(header);
        return -1;
    }
    it->flags = (int)f[0];
    it->n_bids = (int64_t)f[1];
    it->n_asks = (int64_t)f[2];
    it->price_exp = (int)f[3];
    it->size_exp = (int)f[4];
    it->tick_too_big = f[5] > INT64_MAX;
    it->tick = it->tick_too_big ? 0 : (int64_t)f[5];
    it->lot_too_big = f[6] > INT64_MAX;
    it->lot = it->lot_too_big ? 0 : (int64_t)f[6];
    it->best_bid = f[7];
    it->spread = f[8];
    it->rice = (int)f[9];
    return 0;
}

static PyObject *check(PyObject *self, PyObject *header) {
    item_t it;
    if (read_header(header, &it, PyTuple_Check(header) && PyTuple_GET_SIZE(header) == 12) < 0)
        return NULL;
    int64_t n_steps = (it.n_bids > 0 ? it.n_bids - 1 : 0) + (it.n_asks > 0 ? it.n_asks - 1 : 0);
    return Py_BuildValue("(LL)", (long long)(it.n_bids + it.n_asks), (long long)n_steps);
}

static int writable(PyObject *o, Py_buffer *view, Py_ssize_t need) {
    if (PyObject_GetBuffer(o, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len < need * 8) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "output buffer too small");
        return -1;
    }
    return 0;
}

/* A size code's decode table: `table` (bytes from size_table) checked for its length. */
static int as_table(PyObject *o, const uint16_t **table) {
    if (!PyBytes_Check(o) || PyBytes_GET_SIZE(o) != 2 * TABLE_ENTRIES) {
        PyErr_SetString(PyExc_ValueError, "not a size code table");
        return -1;
    }
    *table = (const uint16_t *)PyBytes_AS_STRING(o);
    return 0;
}

/* decode(headers, symbols, steps, tables, offsets, prices, sizes): every SCALED and
 * MODELED item of the batch into the float64 buffers; item i at offsets[i]. headers[i]
 * is the container's tuple (None: neither, skipped). SCALED (tables[i] None): symbols[i]
 * its decompressed size symbols, steps[i] its decompressed step symbols when rice = -1
 * (else None: the unary field). MODELED: tables[i] its size code's size_table,
 * symbols[i] and steps[i] None. */
static PyObject *decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "decode takes 7 arguments");
        return NULL;
    }
    PyObject *headers = args[0], *symbols = args[1], *steps = args[2], *tables = args[3];
    if (!PyList_Check(headers) || !PyList_Check(symbols) || !PyList_Check(steps) ||
        !PyList_Check(tables)) {
        PyErr_SetString(PyExc_TypeError, "headers, symbols, steps and tables must be lists");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(headers);
    if (PyList_GET_SIZE(symbols) != count || PyList_GET_SIZE(steps) != count ||
        PyList_GET_SIZE(tables) != count) {
        PyErr_SetString(PyExc_ValueError, "headers, symbols, steps and tables differ in length");
        return NULL;
    }
    Py_buffer offsets = {0}, prices = {0}, sizes = {0};
    if (PyObject_GetBuffer(args[4], &offsets, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (offsets.len < count * 8) {
        PyBuffer_Release(&offsets);
        PyErr_SetString(PyExc_ValueError, "offsets buffer too small");
        return NULL;
    }
    if (writable(args[5], &prices, 0) < 0) {
        PyBuffer_Release(&offsets);
        return NULL;
    }
    if (writable(args[6], &sizes, 0) < 0) {
        PyBuffer_Release(&offsets);
        PyBuffer_Release(&prices);
        return NULL;
    }
    Py_ssize_t capacity = (prices.len < sizes.len ? prices.len : sizes.len) / 8;
    item_t *items = PyMem_Calloc((size_t)(count ? count : 1), sizeof(item_t));
    PyObject *kept = PyList_New(0); /* what the items point into, alive without the GIL */
    PyObject *result = NULL;
    scratch_t scratch = {0};
    size_t max_levels = 0, max_bits = 0, work = 0;
    Py_ssize_t used = 0;
    if (!items || !kept) goto done;
    const int64_t *offset = (const int64_t *)offsets.buf;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *header = PyList_GET_ITEM(headers, i);
        if (header == Py_None) continue;
        item_t *it = &items[used];
        PyObject *table = PyList_GET_ITEM(tables, i), *step = PyList_GET_ITEM(steps, i);
        PyObject *symbol = PyList_GET_ITEM(symbols, i);
        if (table != Py_None) {
            if (read_header(header, it, 1) < 0 || as_table(table, &it->table) < 0) goto done;
            if (as_bytes(PyTuple_GET_ITEM(header, 10), &it->bits, &it->bits_len) < 0) goto done;
            if (PyList_Append(kept, table) < 0) goto done;
        } else {
            if (read_header(header, it, 0) < 0) goto done;
            if (as_bytes(PyTuple_GET_ITEM(header, 12), &it->bits, &it->bits_len) < 0) goto done;
            if (as_bytes(symbol, &it->syms, &it->syms_len) < 0) goto done;
            if (as_bytes(step == Py_None ? PyTuple_GET_ITEM(header, 10) : step, &it->steps,
                         &it->steps_len) < 0)
                goto done;
            if ((it->rice < 0) != (step != Py_None)) {
                PyErr_SetString(PyExc_ValueError, "step symbols given for a Rice-coded book");
                goto done;
            }
        }
        int64_t n = it->n_bids + it->n_asks;
        it->offset = offset[i];
        if (it->offset < 0 || it->offset > capacity - n) {
            PyErr_SetString(PyExc_ValueError, "output buffer too small");
            goto done;
        }
        if (PyList_Append(kept, header) < 0 || PyList_Append(kept, symbol) < 0 ||
            PyList_Append(kept, step) < 0)
            goto done;
        if ((size_t)n > max_levels) max_levels = (size_t)n;
        if ((size_t)it->bits_len > max_bits) max_bits = (size_t)it->bits_len;
        work += (size_t)n;
        used++;
    }
    if (scratch_fit(&scratch, max_levels, max_bits) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    const char *error = NULL;
    Py_ssize_t failed = 0;
    double *price_out = (double *)prices.buf, *size_out = (double *)sizes.buf;
    PyThreadState *state = work >= NOGIL_LEVELS ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t i = 0; i < used && !error; i++) {
        error = decode_item(&items[i], &scratch, price_out + items[i].offset,
                            size_out + items[i].offset);
        failed = i;
    }
    if (state) PyEval_RestoreThread(state);
    if (error) {
        PyErr_Format(PyExc_ValueError, "%s (book %zd of the batch)", error, failed);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    scratch_free(&scratch);
    Py_XDECREF(kept);
    PyMem_Free(items);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&prices);
    PyBuffer_Release(&sizes);
    return result;
}

/* ---------------------------------------------------------------- size codes ------ */

/* The SYMBOLS code lengths of a size model, each 1..MAX_BITS; with `complete`, also a
 * complete prefix code (Kraft sum exactly 1), as obd/storage/sizecode.py checks. */
static int as_lengths(PyObject *o, const uint8_t **lengths, int complete) {
    Py_ssize_t len;
    if (!PyBytes_Check(o) || as_bytes(o, lengths, &len) < 0 || len != SYMBOLS) {
        PyErr_Format(PyExc_ValueError, "size code lengths must be %d bytes", SYMBOLS);
        return -1;
    }
    uint64_t kraft = 0;
    for (int s = 0; s < SYMBOLS; s++) {
        if ((*lengths)[s] < 1 || (*lengths)[s] > MAX_BITS) {
            PyErr_Format(PyExc_ValueError, "a code length outside 1..%d", MAX_BITS);
            return -1;
        }
        kraft += (uint64_t)1 << (MAX_BITS - (*lengths)[s]);
    }
    if (complete && kraft != (uint64_t)1 << MAX_BITS) {
        PyErr_SetString(PyExc_ValueError, "code lengths that are not a complete prefix code");
        return -1;
    }
    return 0;
}

/* Canonical codes (DEFLATE's): same-length codes consecutive in symbol order. */
static void canonical_codes(const uint8_t *lengths, uint32_t *codes) {
    uint32_t per_length[MAX_BITS + 1] = {0}, next[MAX_BITS + 1];
    for (int s = 0; s < SYMBOLS; s++) per_length[lengths[s]]++;
    uint32_t code = 0;
    per_length[0] = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        code = (code + per_length[len - 1]) << 1;
        next[len] = code;
    }
    for (int s = 0; s < SYMBOLS; s++) codes[s] = next[lengths[s]]++;
}

/* size_table(lengths) -> bytes: the decode table of a size code, native uint16 entries
 * (symbol | length << 8): 2**FAST_BITS indexed by the next FAST_BITS bits (0 where the
 * code is longer), then 2**MAX_BITS indexed by the next MAX_BITS bits. */
static PyObject *size_table(PyObject *self, PyObject *arg) {
    const uint8_t *lengths;
    if (as_lengths(arg, &lengths, 1) < 0) return NULL;
    uint32_t codes[SYMBOLS];
    canonical_codes(lengths, codes);
    PyObject *out = PyBytes_FromStringAndSize(NULL, 2 * TABLE_ENTRIES);
    if (!out) return NULL;
    uint16_t *fast = (uint16_t *)PyBytes_AS_STRING(out), *full = fast + (1 << FAST_BITS);
    for (int s = 0; s < SYMBOLS; s++) {
        int shift = MAX_BITS - lengths[s];
        uint32_t first = codes[s] << shift, end = (codes[s] + 1) << shift;
        for (uint32_t k = first; k < end; k++) full[k] = (uint16_t)(s | lengths[s] << 8);
    }
    /* complete: every entry of `full` was written exactly once */
    for (int k = 0; k < 1 << FAST_BITS; k++) {
        uint16_t entry = full[k << (MAX_BITS - FAST_BITS)];
        fast[k] = (entry >> 8) <= FAST_BITS ? entry : 0;
    }
    return out;
}

/* size_symbols(header, table) -> bytes: the n size symbols of a MODELED container. */
static PyObject *size_symbols(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "size_symbols takes 2 arguments");
        return NULL;
    }
    item_t it;
    const uint16_t *table;
    if (read_header(args[0], &it, 1) < 0 || as_table(args[1], &table) < 0) return NULL;
    if (as_bytes(PyTuple_GET_ITEM(args[0], 10), &it.bits, &it.bits_len) < 0) return NULL;
    int64_t n = it.n_bids + it.n_asks;
    uint8_t *pad = PyMem_Malloc((size_t)it.bits_len + 8);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (!pad || !out) {
        PyMem_Free(pad);
        Py_XDECREF(out);
        return PyErr_NoMemory();
    }
    memcpy(pad, it.bits, (size_t)it.bits_len);
    memset(pad + it.bits_len, 0, 8);
    bitreader_t reader = {pad, 0};
    const char *error = read_codes(&reader, 8 * (uint64_t)it.bits_len, table, n,
                                   (uint8_t *)PyBytes_AS_STRING(out), 0, NULL);
    PyMem_Free(pad);
    if (error) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- encode ---------- */

/* Smallest exponent >= least putting every value on n / 10**k; -1 if none. */
static int exponent_of(const double *values, const int64_t *at, int64_t count, int least) {
    int k = least;
    for (int64_t j = 0; j < count; j++) {
        double x = values[at ? at[j] : j];
        for (;;) {
            if (k > MAX_EXP || !(fabs(x * POW10[k]) < LIMIT)) return -1;
            if (rint(x * POW10[k]) / POW10[k] == x) break;
            k++;
        }
    }
    return k;
}

/* Fits row `values` on exponent k: 1 if every value does (ints filled), else 0 and the
 * misfits' indexes in `misfits`, in order. */
static int64_t fit(const double *values, int64_t n, int k, int64_t *ints, int64_t *misfits) {
    double scale = POW10[k];
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = rint(values[i] * scale);
        if (r / scale == values[i])
            ints[i] = (int64_t)r;
        else
            misfits[bad++] = i;
    }
    return bad;
}

typedef struct {
    int flags, price_exp, size_exp, rice;
    int64_t tick, lot, best_bid, spread;
    uint8_t *steps, *syms, *bits, *modeled; /* modeled: codec 2's bit stream, or NULL */
    size_t steps_len, syms_len, bits_len, modeled_len;
} encoded_t;

static void encoded_free(encoded_t *e) {
    free(e->steps);
    free(e->syms);
    free(e->bits);
    free(e->modeled);
}

/* The value symbol of u = v + 1 (v >= 0) and its low-bit count; -1 if u >= 2**53. */
static inline int value_symbol(int64_t v, int *width) {
    uint64_t u = (uint64_t)v + 1;
    if (u >= (1ull << 53)) return -1;
    int b = bit_length(u);
    int top = b >= 3 ? (int)(u >> (b - 3)) & 3 : (int)(u << (3 - b)) & 3;
    *width = b > 3 ? b - 3 : 0;
    return 4 * (b - 1) + top;
}

static int64_t gcd64(int64_t a, int64_t b) {
    uint64_t x = a < 0 ? -(uint64_t)a : (uint64_t)a, y = b < 0 ? -(uint64_t)b : (uint64_t)b;
    while (y) {
        uint64_t t = x % y;
        x = y;
        y = t;
    }
    return (int64_t)x;
}

typedef struct {
    uint8_t *out;
    size_t at;
    uint64_t acc;
    int pending;
} bitwriter_t;

static inline void put_bits(bitwriter_t *w, uint64_t v, int width) {
    if (!width) return;
    w->acc = (w->acc << width) | (v & ((width == 64 ? 0 : (1ull << width)) - 1));
    w->pending += width;
    while (w->pending >= 8) {
        w->pending -= 8;
        w->out[w->at++] = (uint8_t)(w->acc >> w->pending);
    }
    w->acc &= (1ull << w->pending) - 1;
}

static inline void flush_bits(bitwriter_t *w) {
    if (w->pending) w->out[w->at++] = (uint8_t)(w->acc << (8 - w->pending));
    w->pending = 0;
}

/* The first `count` bits of a packed stream, 32 at a time. */
static void append_bits(bitwriter_t *w, const uint8_t *src, uint64_t count) {
    uint64_t at = 0;
    for (; at + 32 <= count; at += 32) {
        const uint8_t *p = src + at / 8;
        put_bits(w, (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3], 32);
    }
    int rest = (int)(count - at), bytes = (rest + 7) / 8;
    uint64_t v = 0;
    for (int j = 0; j < bytes; j++) v = v << 8 | src[at / 8 + (uint64_t)j];
    put_bits(w, v >> (8 * bytes - rest), rest);
}

/* Open addressing: size -> value-coded sizes before its first occurrence. */
typedef struct {
    int64_t *keys, *before;
    uint8_t *used;
    size_t mask;
} table_t;

/* 0: encoded; 1: no SCALED form (RAW then); -1: out of memory. With `lengths` (a size
 * code), also codec 2's bit stream when the steps are Rice-coded. */
static int encode_core(const double *prices_f, const double *sizes_f, int64_t n_bids, int64_t n_asks,
                       const uint8_t *lengths, encoded_t *e) {
    int64_t n = n_bids + n_asks;
    int result = -1;
    int64_t *buffer = malloc((size_t)(4 * (n ? n : 1)) * sizeof(int64_t));
    int *widths = malloc((size_t)(2 * (n ? n : 1)) * sizeof(int));
    table_t table = {0};
    memset(e, 0, sizeof(*e));
    if (!buffer || !widths) goto out;
    int64_t *prices = buffer, *sizes = buffer + n, *misfits = buffer + 2 * n, *steps = buffer + 3 * n;
    int *step_widths = widths, *size_widths = widths + n;

    /* The decimal grid: smallest exponents putting every value on n / 10**exp. */
    if (n) {
        double top_price = 0, top_size = 0;
        for (int64_t i = 0; i < n; i++) {
            uint64_t pb, sb;
            memcpy(&pb, &prices_f[i], 8);
            memcpy(&sb, &sizes_f[i], 8);
            if (pb == 0x8000000000000000ull || sb == 0x8000000000000000ull) goto none;
        }
        for (int64_t i = 0; i < n; i++) {
            double p = fabs(prices_f[i]), s = fabs(sizes_f[i]);
            if (!(p < LIMIT) || !(s < LIMIT)) goto none; /* NaN too */
            if (p > top_price) top_price = p;
            if (s > top_size) top_size = s;
        }
        int64_t ends[4] = {0, n_bids > 1 ? n_bids - 1 : 0, n_bids % n, n - 1};
        int pe = exponent_of(prices_f, ends, 4, 0), se = exponent_of(sizes_f, ends, 4, 0);
        for (;;) {
            if (pe < 0 || se < 0) goto none;
            if (top_price * POW10[pe] >= LIMIT || top_size * POW10[se] >= LIMIT) goto none;
            int64_t bad_prices = fit(prices_f, n, pe, prices, misfits);
            if (bad_prices) {
                pe = exponent_of(prices_f, misfits, bad_prices, pe + 1);
            }
            int64_t bad_sizes = fit(sizes_f, n, se, sizes, misfits);
            if (bad_sizes) se = exponent_of(sizes_f, misfits, bad_sizes, se + 1);
            if (!bad_prices && !bad_sizes) break;
        }
        e->price_exp = pe;
        e->size_exp = se;
    }

    /* Price steps away from each side's best, in ticks. */
    int64_t n_bid_steps = n_bids > 0 ? n_bids - 1 : 0;
    int64_t n_steps = n_bid_steps + (n_asks > 0 ? n_asks - 1 : 0);
    for (int64_t i = 0; i < n_bid_steps; i++) steps[i] = prices[i] - prices[i + 1];
    for (int64_t i = 0; i + 1 < n_asks; i++)
        steps[n_bid_steps + i] = prices[n_bids + i + 1] - prices[n_bids + i];
    int64_t tick = 0;
    for (int64_t i = 0; i < n_steps; i++) tick = gcd64(tick, steps[i]);
    if (!n_steps) tick = 1;
    if (tick > 1)
        for (int64_t i = 0; i < n_steps; i++) steps[i] /= tick;
    int bids_away = 1, asks_away = 1;
    for (int64_t i = 0; i < n_steps; i++)
        if (steps[i] <= 0) *(i < n_bid_steps ? &bids_away : &asks_away) = 0;
    e->flags = (bids_away ? 0 : BID_ZIGZAG) | (asks_away ? 0 : ASK_ZIGZAG);
    for (int64_t i = 0; i < n_steps; i++) {
        int away = i < n_bid_steps ? bids_away : asks_away;
        steps[i] = away ? steps[i] - 1 : zigzag(steps[i]);
    }
    e->tick = tick ? tick : 1;

    /* Sizes in lots (the gcd), zigzag if any is negative. */
    int64_t lot = 0, least = 0;
    for (int64_t i = 0; i < n; i++) lot = gcd64(lot, sizes[i]);
    if (lot > 1)
        for (int64_t i = 0; i < n; i++) sizes[i] /= lot;
    e->lot = lot > 1 ? lot : 1;
    for (int64_t i = 0; i < n; i++)
        if (sizes[i] < least) least = sizes[i];
    if (least < 0) {
        e->flags |= SIZE_ZIGZAG;
        for (int64_t i = 0; i < n; i++) sizes[i] = zigzag(sizes[i]);
    }

    /* Rice parameter: floor(log2(mean step)), with NumPy's wrapping int64 sum. */
    int rice = 0;
    if (n_steps) {
        int64_t sum = 0, top = 0;
        for (int64_t i = 0; i < n_steps; i++) {
            sum = wrap_add(sum, steps[i]);
            if (steps[i] > top) top = steps[i];
        }
        int64_t mean = sum / n_steps;
        if ((sum % n_steps != 0) && ((sum < 0) != (n_steps < 0))) mean -= 1; /* floor */
        uint64_t magnitude = mean < 0 ? -(uint64_t)mean : (uint64_t)mean;
        int k = bit_length(magnitude) - 1;
        rice = k > 0 ? k : 0;
        if (rice > MAX_RICE || (top >> rice) > MAX_UNARY) rice = -1;
    }
    e->rice = rice;

    /* Size symbols, repeated sizes as back-references. */
    uint8_t *syms = e->syms = malloc((size_t)(n ? n : 1));
    if (!syms) goto out;
    e->syms_len = (size_t)n;
    int any_large = 0;
    for (int64_t i = 0; i < n; i++) {
        int s = value_symbol(sizes[i], &size_widths[i]);
        if (s < 0) goto none;
        syms[i] = (uint8_t)(s + REFS);
        if (sizes[i] >= REF_MIN) any_large = 1;
    }
    int64_t *low = misfits; /* the value whose low bits each size sends */
    for (int64_t i = 0; i < n; i++) low[i] = sizes[i] + 1;
    if (any_large) {
        size_t cap = 16;
        while (cap < (size_t)n * 2) cap <<= 1;
        table.keys = malloc(cap * sizeof(int64_t));
        table.before = malloc(cap * sizeof(int64_t));
        table.used = calloc(cap, 1);
        table.mask = cap - 1;
        if (!table.keys || !table.before || !table.used) goto out;
        int64_t coded = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t v = sizes[i];
            if (v >= REF_MIN) {
                size_t h = (size_t)(((uint64_t)v * 0x9E3779B97F4A7C15ull) >> 20) & table.mask;
                while (table.used[h] && table.keys[h] != v) h = (h + 1) & table.mask;
                if (table.used[h]) {
                    int64_t distance = coded - table.before[h];
                    int bits = bit_length((uint64_t)distance) - 1;
                    syms[i] = (uint8_t)bits;
                    size_widths[i] = bits;
                    low[i] = distance;
                    continue;
                }
                table.used[h] = 1;
                table.keys[h] = v;
                table.before[h] = coded;
            }
            coded++;
        }
    }

    /* Price steps: unary quotients, or symbols when a step is far off. */
    uint64_t total_bits = 0, unary_bits = 0;
    if (rice >= 0) {
        for (int64_t i = 0; i < n_steps; i++) unary_bits += (uint64_t)(steps[i] >> rice) + 1;
        e->steps_len = (size_t)((unary_bits + 7) / 8);
        e->steps = calloc(e->steps_len ? e->steps_len : 1, 1);
        if (!e->steps) goto out;
        uint64_t at = 0;
        for (int64_t i = 0; i < n_steps; i++) {
            at += (uint64_t)(steps[i] >> rice);
            e->steps[at >> 3] |= (uint8_t)(0x80u >> (at & 7));
            at++;
        }
        total_bits += (uint64_t)rice * (uint64_t)n_steps;
    } else {
        e->steps_len = (size_t)n_steps;
        e->steps = malloc(e->steps_len ? e->steps_len : 1);
        if (!e->steps) goto out;
        for (int64_t i = 0; i < n_steps; i++) {
            int s = value_symbol(steps[i], &step_widths[i]);
            if (s < 0) goto none;
            e->steps[i] = (uint8_t)s;
            total_bits += (uint64_t)step_widths[i];
        }
    }
    for (int64_t i = 0; i < n; i++) total_bits += (uint64_t)size_widths[i];

    /* The low bits: steps', then sizes'. */
    e->bits_len = (size_t)((total_bits + 7) / 8);
    e->bits = malloc(e->bits_len ? e->bits_len : 1);
    if (!e->bits) goto out;
    bitwriter_t w = {e->bits, 0, 0, 0};
    for (int64_t i = 0; i < n_steps; i++) {
        if (rice >= 0)
            put_bits(&w, (uint64_t)steps[i], rice);
        else
            put_bits(&w, (uint64_t)steps[i] + 1, step_widths[i]);
    }
    for (int64_t i = 0; i < n; i++) put_bits(&w, (uint64_t)low[i], size_widths[i]);
    flush_bits(&w);

    /* MODELED: the size codes, the unary quotients, then the same low bits. */
    if (lengths && rice >= 0) {
        uint32_t codes[SYMBOLS];
        canonical_codes(lengths, codes);
        uint64_t modeled_bits = unary_bits + total_bits;
        for (int64_t i = 0; i < n; i++) modeled_bits += lengths[syms[i]];
        e->modeled_len = (size_t)((modeled_bits + 7) / 8);
        e->modeled = malloc(e->modeled_len ? e->modeled_len : 1);
        if (!e->modeled) goto out;
        bitwriter_t m = {e->modeled, 0, 0, 0};
        for (int64_t i = 0; i < n; i++) put_bits(&m, codes[syms[i]], lengths[syms[i]]);
        for (int64_t i = 0; i < n_steps; i++) {
            int64_t q = steps[i] >> rice; /* <= MAX_UNARY */
            for (; q >= 32; q -= 32) put_bits(&m, 0, 32);
            put_bits(&m, 1, (int)q + 1);
        }
        append_bits(&m, e->bits, total_bits); /* SCALED's low bits, as they are */
        flush_bits(&m);
    }

    e->best_bid = n_bids ? prices[0] : 0;
    e->spread = n_asks ? prices[n_bids] - e->best_bid : 0;
    result = 0;
    goto out;
none:
    result = 1;
out:
    if (result != 0) encoded_free(e);
    free(table.keys);
    free(table.before);
    free(table.used);
    free(buffer);
    free(widths);
    return result;
}

static Py_ssize_t array_header(Py_ssize_t n) { return n < 16 ? 1 : n < 65536 ? 3 : 5; }

/* encode(source, n_bids, n_asks, is_msgpack[, lengths]) -> (flags, price_exp, size_exp,
 * tick, lot, best_bid, spread, rice, steps, symbols, bits[, modeled]) | None (no SCALED
 * form) | False (source is msgpack but not all float pairs: the caller builds a float64
 * grid and asks again). source: msgspec's encoding of (bids, asks), or float64
 * [prices..., sizes...]. With a size code's lengths (not None), `modeled` is codec 2's
 * bit stream, None when the steps are not Rice-coded. */
static PyObject *encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "encode takes 4 or 5 arguments");
        return NULL;
    }
    const uint8_t *lengths = NULL;
    if (nargs == 5 && args[4] != Py_None && as_lengths(args[4], &lengths, 0) < 0) return NULL;
    Py_ssize_t n_bids = PyLong_AsSsize_t(args[1]), n_asks = PyLong_AsSsize_t(args[2]);
    if ((n_bids == -1 || n_asks == -1) && PyErr_Occurred()) return NULL;
    if (n_bids < 0 || n_asks < 0 || n_bids > MAX_LEVELS || n_asks > MAX_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "a book side has a bad number of levels");
        return NULL;
    }
    int is_msgpack = PyObject_IsTrue(args[3]);
    if (is_msgpack < 0) return NULL;
    Py_buffer source;
    if (PyObject_GetBuffer(args[0], &source, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    Py_ssize_t n = n_bids + n_asks;
    double *grid = PyMem_Malloc((size_t)(2 * (n ? n : 1)) * sizeof(double));
    PyObject *result = NULL;
    if (!grid) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *data = (const uint8_t *)source.buf;
    if (is_msgpack) {
        /* Every level the 19 bytes fixarray(2), float64, float64 (msgpack is
         * self-delimiting, so the tags at every 19th byte prove the layout). */
        Py_ssize_t bids_at = 1 + array_header(n_bids), bids_end = bids_at + 19 * n_bids;
        Py_ssize_t asks_at = bids_end + array_header(n_asks);
        if (source.len != asks_at + 19 * n_asks) {
            result = Py_NewRef(Py_False);
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            const uint8_t *level = data + (i < n_bids ? bids_at + 19 * i : asks_at + 19 * (i - n_bids));
            if (level[0] != 0x92 || level[1] != 0xCB || level[10] != 0xCB) {
                result = Py_NewRef(Py_False);
                goto done;
            }
            grid[i] = load_be_double(level + 2);
            grid[n + i] = load_be_double(level + 11);
        }
    } else {
        if (source.len != 16 * n) {
            PyErr_SetString(PyExc_ValueError, "grid buffer of the wrong length");
            goto done;
        }
        memcpy(grid, data, (size_t)(16 * n));
    }
    encoded_t e;
    int status;
    if (n >= NOGIL_LEVELS) {
        Py_BEGIN_ALLOW_THREADS
        status = encode_core(grid, grid + n, n_bids, n_asks, lengths, &e);
        Py_END_ALLOW_THREADS
    } else {
        status = encode_core(grid, grid + n, n_bids, n_asks, lengths, &e);
    }
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (status > 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = Py_BuildValue("(iiiLLLLiy#y#y#)", e.flags, e.price_exp, e.size_exp, (long long)e.tick,
                           (long long)e.lot, (long long)e.best_bid, (long long)e.spread, e.rice,
                           (const char *)e.steps, (Py_ssize_t)e.steps_len, (const char *)e.syms,
                           (Py_ssize_t)e.syms_len, (const char *)e.bits, (Py_ssize_t)e.bits_len);
    if (result && lengths) {
        PyObject *modeled = e.modeled ? PyBytes_FromStringAndSize((const char *)e.modeled,
                                                                  (Py_ssize_t)e.modeled_len)
                                      : Py_NewRef(Py_None);
        PyObject *longer = modeled ? PyTuple_New(12) : NULL;
        if (longer) {
            for (int i = 0; i < 11; i++) PyTuple_SET_ITEM(longer, i, Py_NewRef(PyTuple_GET_ITEM(result, i)));
            PyTuple_SET_ITEM(longer, 11, modeled);
        } else {
            Py_XDECREF(modeled);
        }
        Py_SETREF(result, longer);
    }
    encoded_free(&e);
done:
    PyMem_Free(grid);
    PyBuffer_Release(&source);
    return result;
}

/* ---------------------------------------------------------------- tuples ---------- */

static PyObject *side(const double *prices, const double *sizes, Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *price = PyFloat_FromDouble(prices[i]), *size = PyFloat_FromDouble(sizes[i]);
        PyObject *level = price && size ? PyTuple_New(2) : NULL;
        if (!level) {
            Py_XDECREF(price);
            Py_XDECREF(size);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(level, 0, price);
        PyTuple_SET_ITEM(level, 1, size);
        PyObject_GC_UnTrack(level); /* two floats: never part of a cycle */
        PyList_SET_ITEM(list, i, level);
    }
    return list;
}

/* msgpack of one side: an array header, then fixarray(2), float64, float64 a level:
 * the bytes msgspec writes for a list of (price, size) float tuples. */
static PyObject *packed_side(const double *prices, const double *sizes, Py_ssize_t n) {
    Py_ssize_t head = n < 16 ? 1 : n < 65536 ? 3 : 5;
    PyObject *out = PyBytes_FromStringAndSize(NULL, head + 19 * n);
    if (!out) return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    if (n < 16) {
        *p++ = (uint8_t)(0x90 | n);
    } else if (n < 65536) {
        *p++ = 0xdc;
        *p++ = (uint8_t)(n >> 8);
        *p++ = (uint8_t)n;
    } else {
        *p++ = 0xdd;
        for (int shift = 24; shift >= 0; shift -= 8) *p++ = (uint8_t)((uint64_t)n >> shift);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *values[2] = {&prices[i], &sizes[i]};
        *p++ = 0x92;
        for (int k = 0; k < 2; k++) {
            uint64_t bits;
            memcpy(&bits, values[k], 8);
            *p++ = 0xcb;
            for (int shift = 56; shift >= 0; shift -= 8) *p++ = (uint8_t)(bits >> shift);
        }
    }
    return out;
}

typedef PyObject *(*side_maker)(const double *prices, const double *sizes, Py_ssize_t n);

/* [(bids, asks), ...] of a batch (prices, sizes, offsets, n_bids), each side made by
 * `make`; book i is [offsets[i], offsets[i + 1]), its first n_bids[i] levels bids. */
static PyObject *each_book(const char *name, PyObject *const *args, Py_ssize_t nargs,
                           side_maker make) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "%s takes 4 arguments", name);
        return NULL;
    }
    Py_buffer view[4];
    int got = 0;
    PyObject *result = NULL;
    for (; got < 4; got++)
        if (PyObject_GetBuffer(args[got], &view[got], PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_ssize_t count = view[3].len / 8, levels = view[0].len / 8;
    if (view[1].len / 8 != levels || view[2].len / 8 != count + 1) {
        PyErr_Format(PyExc_ValueError, "%s: buffers of mismatched lengths", name);
        goto done;
    }
    const double *prices = view[0].buf, *sizes = view[1].buf;
    const int64_t *offsets = view[2].buf, *n_bids = view[3].buf;
    result = PyList_New(count);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t start = offsets[i], end = offsets[i + 1], split = start + n_bids[i];
        if (start < 0 || start > split || split > end || end > levels) {
            PyErr_Format(PyExc_ValueError, "%s: offsets out of range", name);
            Py_CLEAR(result);
            goto done;
        }
        PyObject *bids = make(prices + start, sizes + start, split - start);
        PyObject *asks = bids ? make(prices + split, sizes + split, end - split) : NULL;
        PyObject *book = asks ? PyTuple_Pack(2, bids, asks) : NULL;
        Py_XDECREF(bids);
        Py_XDECREF(asks);
        if (!book) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, book);
    }
done:
    for (int i = 0; i < got; i++) PyBuffer_Release(&view[i]);
    return result;
}

/* books(prices, sizes, offsets, n_bids) -> [(bids, asks), ...]: each book's levels as
 * lists of (price, size) float tuples. */
static PyObject *books(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return each_book("books", args, nargs, side);
}

/* msgpack(prices, sizes, offsets, n_bids) -> [(bids, asks), ...] of msgpack bytes. */
static PyObject *msgpack(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return each_book("msgpack", args, nargs, packed_side);
}

static PyMethodDef methods[] = {
    {"msgpack", (PyCFunction)(void (*)(void))msgpack, METH_FASTCALL,
     "msgpack(prices, sizes, offsets, n_bids) -> [(bids, asks), ...] as msgpack bytes."},
    {"books", (PyCFunction)(void (*)(void))books, METH_FASTCALL,
     "books(prices, sizes, offsets, n_bids) -> [(bids, asks), ...] as lists of float tuples."},
    {"check", (PyCFunction)check, METH_O,
     "check(header) -> (n, n_steps): ValueError unless the 13-tuple's header is in bounds."},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL,
     "decode(headers, symbols, steps, tables, offsets, prices, sizes): a batch into float64."},
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL,
     "encode(source, n_bids, n_asks, is_msgpack[, lengths]): the SCALED fields of one book."},
    {"size_table", (PyCFunction)size_table, METH_O,
     "size_table(lengths) -> bytes: the decode table of a size code."},
    {"size_symbols", (PyCFunction)(void (*)(void))size_symbols, METH_FASTCALL,
     "size_symbols(header, table) -> bytes: the size symbols of a MODELED container."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scaled",
                                    "Compiled core of the SCALED and MODELED book codecs.", -1, methods};

PyMODINIT_FUNC PyInit__scaled(void) {
    init_tables();
    return PyModule_Create(&module);
}
