// pairs.c — NeMo Gym rollouts → DPO preference pairs (see pairs.h, doc/dpo-pairs.md).
#include "dpo/pairs.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/error.h"

// ---------------------------------------------------------------------------------
// Python numbers
// ---------------------------------------------------------------------------------

pairs_num_t pairs_num_int(long long i) { return (pairs_num_t){.is_int = true, .i = i, .d = (double)i}; }

pairs_num_t pairs_num_real(double d) { return (pairs_num_t){.is_int = false, .i = 0, .d = d}; }

pairs_num_t pairs_num_sub(pairs_num_t a, pairs_num_t b) {
    if (a.is_int && b.is_int) {
        // Python integers do not overflow; a double is the closest we have beyond int64.
        if (!((b.i > 0 && a.i < LLONG_MIN + b.i) || (b.i < 0 && a.i > LLONG_MAX + b.i)))
            return pairs_num_int(a.i - b.i);
    }
    return pairs_num_real(a.d - b.d);
}

void pairs_sum_add(pairs_sum_t *s, pairs_num_t x) {
    if (!s->in_float) {
        if (x.is_int && !((x.i > 0 && s->i > LLONG_MAX - x.i) || (x.i < 0 && s->i < LLONG_MIN - x.i))) {
            s->i += x.i;
            return;
        }
        // The first float term (or an overflow): int + float, uncompensated, as Python.
        s->in_float = true;
        s->f = (double)s->i + x.d;
        s->c = 0.0;
        return;
    }
    if (x.is_int) {  // Python adds an int to the float sum without compensation
        s->f += x.d;
        return;
    }
    double t = s->f + x.d;
    if (fabs(s->f) >= fabs(x.d))
        s->c += (s->f - t) + x.d;
    else
        s->c += (x.d - t) + s->f;
    s->f = t;
}

pairs_num_t pairs_sum_value(const pairs_sum_t *s) {
    if (!s->in_float) return pairs_num_int(s->i);
    double f = s->f;
    // Adding a zero compensation would lose the sign of -0.0; an infinite one, make NaN.
    if (s->c != 0.0 && isfinite(s->c)) f += s->c;
    return pairs_num_real(f);
}

static const unsigned long long p10[] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull,
                                         1000000ull, 10000000ull, 100000000ull, 1000000000ull,
                                         10000000000ull, 100000000000ull, 1000000000000ull,
                                         10000000000000ull, 100000000000000ull,
                                         1000000000000000ull, 10000000000000000ull,
                                         100000000000000000ull};

// Is there an n-significant-digit decimal that reads back as a (> 0)? If so, *m x 10^*e
// is the nearest one. Only two candidates can be: the correctly rounded one and, near
// powers of two where the rounding interval is lopsided, its neighbour across a.
static bool digits_probe(double a, int n, unsigned long long *m, int *e) {
    char s[48];
    snprintf(s, sizeof s, "%.*e", n - 1, a);
    unsigned long long mm = 0;
    char *p = s;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') mm = mm * 10 + (unsigned long long)(*p - '0');
    int ee = atoi(p + 1) - (n - 1);
    double v = strtod(s, NULL);
    if (v == a) {
        *m = mm;
        *e = ee;
        return true;
    }
    if (v < a) {
        mm += 1;
    } else if (mm == p10[n - 1]) {  // 1000 -> 9999 one decade lower
        mm = p10[n] - 1;
        ee -= 1;
    } else {
        mm -= 1;
    }
    snprintf(s, sizeof s, "%llue%d", mm, ee);
    if (strtod(s, NULL) != a) return false;
    *m = mm;
    *e = ee;
    return true;
}

// Shortest decimal digits of a > 0 that read back as a (Python's repr): digits without
// trailing zeros, and decpt, the position of the decimal point (a = 0.DIGITS x 10^decpt).
static void shortest_digits(double a, char *digits, size_t cap, int *decpt) {
    // If n digits can do it, n + 1 can (append a 0): bisect on n. 17 always can.
    unsigned long long m = 0;
    int e = 0, lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (digits_probe(a, mid, &m, &e))
            hi = mid;
        else
            lo = mid + 1;
    }
    digits_probe(a, lo, &m, &e);
    while (m % 10 == 0) {
        m /= 10;
        e++;
    }
    int nd = snprintf(digits, cap, "%llu", m);
    *decpt = nd + e;
}

void pairs_format_double(double x, char *buf, size_t cap) {
    if (isnan(x)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, cap, "%s", x > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char d[24];
    int decpt = 1;
    double a = fabs(x);
    if (a == 0.0)
        snprintf(d, sizeof d, "0");
    else
        shortest_digits(a, d, sizeof d, &decpt);
    int nd = (int)strlen(d);
    // Python's repr: positional for 1e-4 <= |x| < 1e16, else exponent with >= 2 digits.
    char t[64];
    int k = 0;
    if (signbit(x)) t[k++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {  // 0.000ddd
            t[k++] = '0';
            t[k++] = '.';
            for (int z = 0; z < -decpt; z++) t[k++] = '0';
            memcpy(t + k, d, (size_t)nd);
            k += nd;
        } else if (decpt >= nd) {  // ddd000.0
            memcpy(t + k, d, (size_t)nd);
            k += nd;
            for (int z = 0; z < decpt - nd; z++) t[k++] = '0';
            t[k++] = '.';
            t[k++] = '0';
        } else {  // dd.ddd
            memcpy(t + k, d, (size_t)decpt);
            k += decpt;
            t[k++] = '.';
            memcpy(t + k, d + decpt, (size_t)(nd - decpt));
            k += nd - decpt;
        }
        t[k] = 0;
    } else {
        int ex = decpt - 1;
        snprintf(t + k, sizeof t - (size_t)k, "%c%s%se%c%02d", d[0], nd > 1 ? "." : "", d + 1,
                 ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    }
    snprintf(buf, cap, "%s", t);
}

void pairs_format_num(pairs_num_t v, char *buf, size_t cap) {
    if (v.is_int)
        snprintf(buf, cap, "%lld", v.i);
    else
        pairs_format_double(v.d, buf, cap);
}

// ---------------------------------------------------------------------------------
// Python-compatible JSON encoding
// ---------------------------------------------------------------------------------

void pairs_buf_put(pairs_buf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) dpo_fatal("out of memory growing a %zu-byte text buffer", cap);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void pairs_buf_puts(pairs_buf_t *b, const char *s) { pairs_buf_put(b, s, strlen(s)); }

void pairs_buf_free(pairs_buf_t *b) {
    free(b->p);
    *b = (pairs_buf_t){0};
}

static void put_u16(pairs_buf_t *b, unsigned cp) {
    char e[8];
    snprintf(e, sizeof e, "\\u%04x", cp);
    pairs_buf_put(b, e, 6);
}

// json.dumps(s) with ensure_ascii: printable ASCII as is (but " and \), the short
// escapes, everything else as \uXXXX. jansson has validated the UTF-8 already.
static void encode_string(pairs_buf_t *b, const char *s, size_t n) {
    pairs_buf_put(b, "\"", 1);
    size_t run = 0;  // start of the pending run of plain characters
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        pairs_buf_put(b, s + run, i - run);
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) {
            pairs_buf_put(b, esc, 2);
            i++;
        } else if (c < 0x80) {  // other control characters and DEL
            put_u16(b, c);
            i++;
        } else {
            int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            unsigned cp = c & (len == 4 ? 0x07u : len == 3 ? 0x0fu : 0x1fu);
            for (int k = 1; k < len && i + (size_t)k < n; k++)
                cp = (cp << 6) | ((unsigned char)s[i + (size_t)k] & 0x3fu);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                put_u16(b, 0xd800 | (cp >> 10));
                put_u16(b, 0xdc00 | (cp & 0x3ff));
            } else {
                put_u16(b, cp);
            }
            i += (size_t)len;
        }
        run = i < n ? i : n;
    }
    pairs_buf_put(b, s + run, n - run);
    pairs_buf_put(b, "\"", 1);
}

static void newline_indent(pairs_buf_t *b, int indent, int level) {
    pairs_buf_put(b, "\n", 1);
    for (int k = 0; k < indent * level; k++) pairs_buf_put(b, " ", 1);
}

static void encode(pairs_buf_t *b, const json_t *v, int indent, int level) {
    char num[40];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (json_object_size(v) == 0) {
            pairs_buf_put(b, "{}", 2);
            break;
        }
        pairs_buf_put(b, "{", 1);
        int first = 1;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (!first) pairs_buf_put(b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) newline_indent(b, indent, level + 1);
            first = 0;
            encode_string(b, k, strlen(k));
            pairs_buf_put(b, ": ", 2);
            encode(b, x, indent, level + 1);
        }
        if (indent >= 0) newline_indent(b, indent, level);
        pairs_buf_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (n == 0) {
            pairs_buf_put(b, "[]", 2);
            break;
        }
        pairs_buf_put(b, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) pairs_buf_put(b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) newline_indent(b, indent, level + 1);
            encode(b, json_array_get(v, i), indent, level + 1);
        }
        if (indent >= 0) newline_indent(b, indent, level);
        pairs_buf_put(b, "]", 1);
        break;
    }
    case JSON_STRING: encode_string(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        pairs_buf_puts(b, num);
        break;
    case JSON_REAL:
        pairs_format_double(json_real_value(v), num, sizeof num);
        pairs_buf_puts(b, num);
        break;
    case JSON_TRUE: pairs_buf_put(b, "true", 4); break;
    case JSON_FALSE: pairs_buf_put(b, "false", 5); break;
    case JSON_NULL: pairs_buf_put(b, "null", 4); break;
    }
}

void pairs_json_encode(pairs_buf_t *b, const json_t *v, int indent) { encode(b, v, indent, 0); }

// ---------------------------------------------------------------------------------
// One rollout
// ---------------------------------------------------------------------------------

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static char *take(pairs_buf_t *b) {
    if (!b->p) pairs_buf_put(b, "", 0);
    char *p = b->p;
    *b = (pairs_buf_t){0};
    return p;
}

static char *encode_new(const json_t *v) {
    pairs_buf_t b = {0};
    pairs_json_encode(&b, v, -1);
    return take(&b);
}

static char *encode_text(const char *s, size_t n) {
    pairs_buf_t b = {0};
    encode_string(&b, s, n);
    return take(&b);
}

static bool is_str(const json_t *v, const char *s) {
    return v && json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

// The prompt (script: extract_prompt) and the grouping key. A string input is the
// Responses API's shorthand for one user message.
static int parse_prompt(const json_t *input, pairs_context_t ctx, pairs_rollout_t *out, char *err,
                        size_t err_len) {
    if (json_is_string(input)) {
        if (ctx == PAIRS_CONTEXT_LAST) {
            out->prompt = encode_text(json_string_value(input), json_string_length(input));
            out->key = out->prompt;
            return 0;
        }
        json_t *msgs = json_pack("[{s:s,s:O}]", "role", "user", "content", input);
        out->prompt = encode_new(msgs);
        out->key = json_dumps(msgs, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(msgs);
        if (!out->key) dpo_fatal("out of memory encoding a prompt");
        return 0;
    }
    if (!json_is_array(input)) {
        dpo_errf(err, err_len,
                 "\"responses_create_params.input\" must be an array of messages or a string, "
                 "not %s", type_name(input));
        return -1;
    }
    size_t n = json_array_size(input), last_user = n;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(input, i);
        if (!json_is_object(m)) {
            dpo_errf(err, err_len, "\"responses_create_params.input[%zu]\" must be an object, not %s",
                     i, type_name(m));
            return -1;
        }
        if (is_str(json_object_get(m, "role"), "user")) last_user = i;
    }
    if (ctx == PAIRS_CONTEXT_LAST) {
        const json_t *c = last_user < n ? json_object_get(json_array_get(input, last_user), "content")
                                        : NULL;
        if (c && !json_is_string(c)) {
            dpo_errf(err, err_len,
                     "\"responses_create_params.input[%zu].content\" (the last user message) "
                     "must be a string, not %s (--context full keeps structured content)",
                     last_user, type_name(c));
            return -1;
        }
        // No user message, or one without content: "" as in the script.
        out->prompt = c ? encode_text(json_string_value(c), json_string_length(c)) : encode_text("", 0);
        out->key = out->prompt;
        return 0;
    }
    // Full context: the messages up to and including the last user message (none: []).
    json_t *msgs = json_array();
    for (size_t i = 0; last_user < n && i <= last_user; i++)
        json_array_append(msgs, json_array_get(input, i));
    out->prompt = encode_new(msgs);
    // Key order inside a message must not split a group: sort keys for the key.
    out->key = json_dumps(msgs, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(msgs);
    if (!out->key) dpo_fatal("out of memory encoding a prompt");
    return 0;
}

// The response (script: extract_response_text): the last message item whose content
// is a non-empty list (its first part's "text", "" when absent) or a string; items of
// other types, and messages with empty or other content, are passed over.
static int parse_response(const json_t *output, pairs_rollout_t *out, char *err, size_t err_len) {
    if (!json_is_array(output)) {
        dpo_errf(err, err_len, "\"output\" must be an array, not %s", type_name(output));
        return -1;
    }
    size_t n = json_array_size(output);
    for (size_t i = 0; i < n; i++) {
        const json_t *it = json_array_get(output, i);
        if (!json_is_object(it)) {
            dpo_errf(err, err_len, "\"output[%zu]\" must be an object, not %s", i, type_name(it));
            return -1;
        }
    }
    for (size_t i = n; i-- > 0;) {
        const json_t *it = json_array_get(output, i);
        if (!is_str(json_object_get(it, "type"), "message")) continue;
        const json_t *c = json_object_get(it, "content");
        if (json_is_string(c)) {
            out->response = encode_text(json_string_value(c), json_string_length(c));
            return 0;
        }
        if (!json_is_array(c) || json_array_size(c) == 0) continue;
        const json_t *part = json_array_get(c, 0);
        if (!json_is_object(part)) {
            dpo_errf(err, err_len, "\"output[%zu].content[0]\" must be an object, not %s", i,
                     type_name(part));
            return -1;
        }
        const json_t *t = json_object_get(part, "text");
        if (t && !json_is_string(t)) {
            dpo_errf(err, err_len, "\"output[%zu].content[0].text\" must be a string, not %s", i,
                     type_name(t));
            return -1;
        }
        out->response = t ? encode_text(json_string_value(t), json_string_length(t)) : encode_text("", 0);
        return 0;
    }
    out->response = encode_text("", 0);
    return 0;
}

void pairs_rollout_free(pairs_rollout_t *r) {
    if (r->key != r->prompt) free(r->key);
    free(r->prompt);
    free(r->response);
    *r = (pairs_rollout_t){0};
}

int pairs_rollout_parse(const json_t *rec, pairs_context_t ctx, pairs_rollout_t *out, char *err,
                        size_t err_len) {
    *out = (pairs_rollout_t){0};
    if (!json_is_object(rec)) {
        dpo_errf(err, err_len, "a rollout must be a JSON object, not %s", type_name(rec));
        return -1;
    }
    const json_t *params = json_object_get(rec, "responses_create_params");
    if (!params) {
        dpo_errf(err, err_len, "missing \"responses_create_params\"");
        return -1;
    }
    if (!json_is_object(params)) {
        dpo_errf(err, err_len, "\"responses_create_params\" must be an object, not %s",
                 type_name(params));
        return -1;
    }
    const json_t *input = json_object_get(params, "input");
    if (!input) {
        dpo_errf(err, err_len, "missing \"responses_create_params.input\"");
        return -1;
    }
    const json_t *output = json_object_get(rec, "output");
    if (!output) {
        dpo_errf(err, err_len, "missing \"output\"");
        return -1;
    }
    // A missing reward is 0.0, as the script's r.get("reward", 0.0); a present one
    // must be a number (booleans and null are refused, not read as 1/0).
    const json_t *rw = json_object_get(rec, "reward");
    if (!rw)
        out->reward = pairs_num_real(0.0);
    else if (json_is_integer(rw))
        out->reward = pairs_num_int((long long)json_integer_value(rw));
    else if (json_is_real(rw))
        out->reward = pairs_num_real(json_real_value(rw));
    else {
        if (json_is_string(rw))
            dpo_errf(err, err_len, "\"reward\" must be a number, not a string (\"%.40s\")",
                     json_string_value(rw));
        else
            dpo_errf(err, err_len, "\"reward\" must be a number, not %s", type_name(rw));
        return -1;
    }
    pairs_format_num(out->reward, out->reward_text, sizeof out->reward_text);
    if (parse_prompt(input, ctx, out, err, err_len) != 0 ||
        parse_response(output, out, err, err_len) != 0) {
        pairs_rollout_free(out);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------
// Pairing
// ---------------------------------------------------------------------------------

void pairs_format_record(pairs_buf_t *b, const pairs_rollout_t *chosen,
                         const pairs_rollout_t *rejected, pairs_num_t gap) {
    char num[40];
    pairs_buf_puts(b, "{\"prompt\": ");
    pairs_buf_puts(b, chosen->prompt);
    pairs_buf_puts(b, ", \"chosen\": ");
    pairs_buf_puts(b, chosen->response);
    pairs_buf_puts(b, ", \"rejected\": ");
    pairs_buf_puts(b, rejected->response);
    pairs_buf_puts(b, ", \"reward_gap\": ");
    pairs_format_num(gap, num, sizeof num);
    pairs_buf_puts(b, num);
    pairs_buf_puts(b, ", \"chosen_reward\": ");
    pairs_buf_puts(b, chosen->reward_text);
    pairs_buf_puts(b, ", \"rejected_reward\": ");
    pairs_buf_puts(b, rejected->reward_text);
    pairs_buf_puts(b, "}");
}

typedef struct {
    size_t first, best, worst, count;
} group_t;

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

int pairs_same_prompt(const pairs_rollout_t *r, size_t n, double min_gap, size_t *n_prompts,
                      pairs_emit_fn emit, void *user) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    size_t *slot = xcalloc(cap, sizeof *slot, "prompt hash table");  // group index + 1
    group_t *g = xmalloc(n * sizeof *g, "prompt groups");
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)hash_str(r[i].key) & (cap - 1);
        while (slot[h] && strcmp(r[g[slot[h] - 1].first].key, r[i].key) != 0) h = (h + 1) & (cap - 1);
        if (!slot[h]) {
            g[ng] = (group_t){.first = i, .best = i, .worst = i, .count = 1};
            slot[h] = ++ng;
            continue;
        }
        group_t *gr = &g[slot[h] - 1];
        gr->count++;
        // Descending stable sort: the best is the first maximum, the worst (the last
        // element) the last minimum.
        if (r[i].reward.d > r[gr->best].reward.d) gr->best = i;
        if (r[i].reward.d <= r[gr->worst].reward.d) gr->worst = i;
    }
    free(slot);
    *n_prompts = ng;
    int rc = 0;
    for (size_t k = 0; k < ng && rc == 0; k++) {
        if (g[k].count < 2) continue;
        pairs_num_t gap = pairs_num_sub(r[g[k].best].reward, r[g[k].worst].reward);
        if (gap.d >= min_gap) rc = emit(user, &r[g[k].best], &r[g[k].worst], gap);
    }
    free(g);
    return rc;
}

int pairs_stratified(const pairs_rollout_t *r, size_t n, double min_gap, double high, double low,
                     pairs_emit_fn emit, void *user) {
    size_t *hi = xmalloc(n * sizeof *hi, "high-reward rollouts");
    size_t *lo = xmalloc(n * sizeof *lo, "low-reward rollouts");
    size_t nh = 0, nl = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].reward.d >= high) hi[nh++] = i;
        if (r[i].reward.d <= low) lo[nl++] = i;
    }
    int rc = 0;
    for (size_t a = 0; a < nh && rc == 0; a++)
        for (size_t b = 0; b < nl && rc == 0; b++) {
            pairs_num_t gap = pairs_num_sub(r[hi[a]].reward, r[lo[b]].reward);
            if (gap.d >= min_gap) rc = emit(user, &r[hi[a]], &r[lo[b]], gap);
        }
    free(hi);
    free(lo);
    return rc;
}
