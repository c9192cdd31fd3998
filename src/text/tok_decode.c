// tok_decode.c — tokenizers' decoders (ByteLevel, Metaspace, Replace, ByteFallback,
// Fuse, Strip, Sequence) over the list of token strings, then joined.
#include <stdlib.h>

#include "dpo/error.h"
#include "tok_internal.h"

typedef struct {
    tok_buf_t data;
    size_t *off, *len;
    size_t n, cap;
} slist_t;

static void sl_begin(slist_t *l) {  // starts a new entry at the end of data
    tok_buf_grow(&l->data, 1);         // so that data.p is never NULL
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->off = xrealloc(l->off, l->cap * sizeof *l->off, "decode");
        l->len = xrealloc(l->len, l->cap * sizeof *l->len, "decode");
    }
    l->off[l->n] = l->data.len;
    l->len[l->n] = 0;
    l->n++;
}
static void sl_end(slist_t *l) { l->len[l->n - 1] = l->data.len - l->off[l->n - 1]; }
static void sl_push(slist_t *l, const char *s, size_t n) {
    sl_begin(l);
    tok_buf_put(&l->data, s, n);
    sl_end(l);
}
static void sl_free(slist_t *l) {
    tok_buf_free(&l->data);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}
#define SL_STR(l, i) ((l)->data.p + (l)->off[i])

static const char FFFD[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

static int byte_token(const char *s, size_t n) {  // "<0xAB>" -> 0xAB, else -1
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static void flush_bytes(slist_t *o, tok_buf_t *bytes) {
    if (!bytes->len) return;
    if (tok_utf8_valid_prefix(bytes->p, bytes->len) == bytes->len) {
        sl_push(o, bytes->p, bytes->len);
    } else {
        for (size_t i = 0; i < bytes->len; i++) sl_push(o, FFFD, 3);  // one per byte
    }
    bytes->len = 0;
}

static int step(const tok_decoder_t *d, const slist_t *in, slist_t *o, char *err, size_t err_len) {
    switch (d->kind) {
    case TD_BYTELEVEL: {
        tok_buf_t raw = {0};
        for (size_t i = 0; i < in->n; i++) {
            const char *s = SL_STR(in, i);
            size_t n = in->len[i], start = raw.len;
            bool all = true;
            for (size_t j = 0; j < n;) {
                int l, b = tok_bytelevel_byte(tok_u8dec(s + j, &l));
                if (b < 0) {
                    all = false;
                    break;
                }
                tok_buf_putc(&raw, (char)b);
                j += (size_t)l;
            }
            if (!all) {  // a token outside the byte alphabet is kept as its UTF-8
                raw.len = start;
                tok_buf_put(&raw, s, n);
            }
        }
        sl_begin(o);
        tok_utf8_repair(raw.p ? raw.p : "", raw.len, &o->data);
        sl_end(o);
        tok_buf_free(&raw);
        return 0;
    }
    case TD_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = SL_STR(in, i);
            size_t n = in->len[i];
            sl_begin(o);
            for (size_t j = 0; j < n;) {
                int l;
                uint32_t cp = tok_u8dec(s + j, &l);
                if (cp == d->cp) {
                    if (!(i == 0 && d->prepend_scheme != PREPEND_NEVER)) tok_buf_putc(&o->data, ' ');
                } else {
                    tok_buf_put(&o->data, s + j, (size_t)l);
                }
                j += (size_t)l;
            }
            sl_end(o);
        }
        return 0;
    case TD_REPLACE: {
        pcre2_match_data *md =
            d->pat.code ? pcre2_match_data_create_from_pattern(d->pat.code, NULL) : NULL;
        tok_spans_t sp = {0};
        int rc = 0;
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const char *s = SL_STR(in, i);
            sp.n = 0;
            rc = tok_pattern_find(&d->pat, md, NULL, s, in->len[i], &sp, err, err_len);
            sl_begin(o);
            for (size_t j = 0; j < sp.n; j++) {
                if (sp.v[j].tag)
                    tok_buf_put(&o->data, d->content, d->content_len);
                else
                    tok_buf_put(&o->data, s + sp.v[j].s, sp.v[j].e - sp.v[j].s);
            }
            sl_end(o);
        }
        free(sp.v);
        if (md) pcre2_match_data_free(md);
        return rc;
    }
    case TD_BYTEFALLBACK: {
        tok_buf_t bytes = {0};
        for (size_t i = 0; i < in->n; i++) {
            int b = byte_token(SL_STR(in, i), in->len[i]);
            if (b >= 0) {
                tok_buf_putc(&bytes, (char)b);
                continue;
            }
            flush_bytes(o, &bytes);
            sl_push(o, SL_STR(in, i), in->len[i]);
        }
        flush_bytes(o, &bytes);
        tok_buf_free(&bytes);
        return 0;
    }
    case TD_FUSE:
        sl_begin(o);
        for (size_t i = 0; i < in->n; i++) tok_buf_put(&o->data, SL_STR(in, i), in->len[i]);
        sl_end(o);
        return 0;
    case TD_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = SL_STR(in, i);
            size_t n = in->len[i], a = 0, b = n;
            // Up to `start` leading and `stop` trailing copies of the character.
            for (size_t k = 0; k < d->start && a < n; k++) {
                int l;
                if (tok_u8dec(s + a, &l) != d->cp) break;
                a += (size_t)l;
            }
            for (size_t k = 0; k < d->stop && b > 0; k++) {
                size_t p = tok_u8prev(s, b);
                int l;
                if (tok_u8dec(s + p, &l) != d->cp) break;
                b = p;
            }
            sl_push(o, s + a, b > a ? b - a : 0);
        }
        return 0;
    }
    return 0;
}

char *tok_decode_tokens(const dpo_tokenizer_t *t, const char **toks, const size_t *lens, size_t n,
                        size_t *out_len, char *err, size_t err_len) {
    slist_t cur = {0};
    for (size_t i = 0; i < n; i++) sl_push(&cur, toks[i], lens[i]);
    tok_buf_t res = {0};
    if (!t->has_decoder) {
        for (size_t i = 0; i < cur.n; i++) {  // tokenizers joins with spaces
            if (i) tok_buf_putc(&res, ' ');
            tok_buf_put(&res, SL_STR(&cur, i), cur.len[i]);
        }
    } else {
        for (size_t k = 0; k < t->n_decs; k++) {
            slist_t next = {0};
            if (step(&t->decs[k], &cur, &next, err, err_len) < 0) {
                sl_free(&next);
                sl_free(&cur);
                return NULL;
            }
            sl_free(&cur);
            cur = next;
        }
        for (size_t i = 0; i < cur.n; i++) tok_buf_put(&res, SL_STR(&cur, i), cur.len[i]);
    }
    sl_free(&cur);
    tok_buf_putc(&res, '\0');
    if (out_len) *out_len = res.len - 1;
    return res.p;
}
