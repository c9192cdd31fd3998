// tok_pretok.c — normalisers (NFC, Prepend, Replace) and pre-tokenisers (Split,
// ByteLevel, Metaspace) as tokenizers applies them to one segment of text.
#include <stdlib.h>
#include <utf8proc.h>

#include "dpo/error.h"
#include "tok_internal.h"

// ---------------------------------------------------------------- NFC

// Characters that are unchanged by NFC whatever surrounds them and that nothing
// before them can combine with (combining class 0, NFC_QC=Yes, never the second
// character of a composition): normalisation never crosses them, so only the
// stretches between them go through utf8proc. Deliberately conservative.
static inline bool nfc_safe(uint32_t cp) {
    if (cp < 0x300) return true;
    if (cp < 0x3000) return false;
    return cp <= 0x3029 || (cp >= 0x3041 && cp <= 0x3096) || (cp >= 0x30A1 && cp <= 0x30FA) ||
           (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
           (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xFF01 && cp <= 0xFF60) ||
           (cp >= 0x1F300 && cp <= 0x1FAFF);
}

// Characters tokenizers' NFC tables (older Unicode) know nothing about: to it they
// are starters nothing combines with, so they too end a normalisation window.
static inline bool nfc_inert(uint32_t cp) {
    if (tok_uc_in(tok_nfc_inert, tok_nfc_inert_len, cp)) return true;
    size_t lo = 0, hi = tok_gc_new_len;  // assigned after Unicode 14
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_gc_new[mid].lo)
            hi = mid;
        else if (cp > tok_gc_new[mid].hi)
            lo = mid + 1;
        else
            return tok_gc_new[mid].old == TOK_GC_COUNT - 1;  // was Cn
    }
    return false;
}

static int nfc_window(dpo_tokenizer_t *t, const char *s, size_t n, tok_buf_t *dst, char *err,
                      size_t err_len) {
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    for (;;) {
        utf8proc_ssize_t m =
            utf8proc_decompose_custom((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, t->u32,
                                      (utf8proc_ssize_t)t->u32_cap, opt, NULL, NULL);
        if (m < 0) {
            dpo_errf(err, err_len, "NFC: %s", utf8proc_errmsg(m));
            return -1;
        }
        if ((size_t)m > t->u32_cap) {
            t->u32_cap = (size_t)m + 64;
            t->u32 = xrealloc(t->u32, t->u32_cap * sizeof *t->u32, "NFC buffer");
            continue;
        }
        m = utf8proc_normalize_utf32(t->u32, m, opt);
        if (m < 0) {
            dpo_errf(err, err_len, "NFC: %s", utf8proc_errmsg(m));
            return -1;
        }
        tok_buf_grow(dst, 4 * (size_t)m);
        for (utf8proc_ssize_t i = 0; i < m; i++)
            dst->len += (size_t)tok_u8enc((uint32_t)t->u32[i], dst->p + dst->len);
        return 0;
    }
}

// Returns 1 with dst filled when NFC changes anything it might, 0 when s is known NFC.
static int nfc(dpo_tokenizer_t *t, const char *s, size_t n, tok_buf_t *dst, char *err,
               size_t err_len) {
    // No byte >= 0xCC means every character is below U+0300.
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++;
    if (i == n) return 0;
    dst->len = 0;
    size_t copied = 0, last_safe = 0;
    i = 0;
    while (i < n) {
        int l;
        uint32_t cp = tok_u8dec(s + i, &l);
        if (nfc_safe(cp)) {  // may combine with what follows: a window starts here
            last_safe = i;
            i += (size_t)l;
            continue;
        }
        if (nfc_inert(cp)) {  // combines with nothing: a window starts after it
            i += (size_t)l;
            last_safe = i;
            continue;
        }
        size_t ws = last_safe > copied ? last_safe : copied, j = i + (size_t)l;
        while (j < n) {
            int l2;
            uint32_t c2 = tok_u8dec(s + j, &l2);
            if (nfc_safe(c2) || nfc_inert(c2)) break;
            j += (size_t)l2;
        }
        tok_buf_put(dst, s + copied, ws - copied);
        if (nfc_window(t, s + ws, j - ws, dst, err, err_len) < 0) return -1;
        copied = i = j;
    }
    tok_buf_put(dst, s + copied, n - copied);
    return 1;
}

// ---------------------------------------------------------------- normalisers

int tok_normalize(dpo_tokenizer_t *t, const char *s, size_t n, const char **res, size_t *res_len,
                  char *err, size_t err_len) {
    const char *cur = s;
    size_t cn = n;
    int which = 0;
    for (size_t k = 0; k < t->n_norms; k++) {
        const tok_norm_t *nm = &t->norms[k];
        tok_buf_t *dst = &t->nb[which];
        switch (nm->kind) {
        case TN_NFC: {
            int r = nfc(t, cur, cn, dst, err, err_len);
            if (r < 0) return -1;
            if (r == 0) continue;
            break;
        }
        case TN_PREPEND:
            if (cn == 0) continue;
            dst->len = 0;
            tok_buf_put(dst, nm->str, nm->str_len);
            tok_buf_put(dst, cur, cn);
            break;
        case TN_REPLACE: {
            tok_spans_t *sp = &t->nsp;
            sp->n = 0;
            if (tok_pattern_find(&nm->pat, NULL, t->mctx, cur, cn, sp, err, err_len) < 0) return -1;
            bool any = false;
            for (size_t i = 0; i < sp->n; i++) any |= sp->v[i].tag != 0;
            if (!any) continue;
            dst->len = 0;
            for (size_t i = 0; i < sp->n; i++) {
                if (sp->v[i].tag)
                    tok_buf_put(dst, nm->str, nm->str_len);
                else
                    tok_buf_put(dst, cur + sp->v[i].s, sp->v[i].e - sp->v[i].s);
            }
            break;
        }
        }
        cur = dst->p ? dst->p : "";
        cn = dst->len;
        which ^= 1;
    }
    *res = cur;
    *res_len = cn;
    return 0;
}

// ---------------------------------------------------------------- pre-tokenisers

// NormalizedString::split: turns (offsets, is_match) into the pieces to keep (tag 1)
// or drop (tag 0) for one SplitDelimiterBehavior, exactly as tokenizers folds them.
static void apply_behavior(const tok_spans_t *in, int beh, tok_spans_t *o) {
    bool prev = false;
    switch (beh) {
    case BEH_ISOLATED:
    case BEH_REMOVED:
        for (size_t i = 0; i < in->n; i++)
            tok_spans_push(o, in->v[i].s, in->v[i].e, beh == BEH_REMOVED ? !in->v[i].tag : 1);
        break;
    case BEH_CONTIGUOUS:
        for (size_t i = 0; i < in->n; i++) {
            bool m = in->v[i].tag != 0;
            if (m == prev && o->n)
                o->v[o->n - 1].e = in->v[i].e;
            else
                tok_spans_push(o, in->v[i].s, in->v[i].e, 1);
            prev = m;
        }
        break;
    case BEH_MERGED_PREV:
        for (size_t i = 0; i < in->n; i++) {
            bool m = in->v[i].tag != 0;
            if (m && !prev && o->n)
                o->v[o->n - 1].e = in->v[i].e;
            else
                tok_spans_push(o, in->v[i].s, in->v[i].e, 1);
            prev = m;
        }
        break;
    case BEH_MERGED_NEXT:
        for (size_t i = in->n; i-- > 0;) {
            bool m = in->v[i].tag != 0;
            if (m && !prev && o->n)
                o->v[o->n - 1].s = in->v[i].s;
            else
                tok_spans_push(o, in->v[i].s, in->v[i].e, 1);
            prev = m;
        }
        for (size_t a = 0, b = o->n; a + 1 < b; a++, b--) {
            tok_span_t x = o->v[a];
            o->v[a] = o->v[b - 1];
            o->v[b - 1] = x;
        }
        break;
    }
}

static int run_pieces(dpo_tokenizer_t *t, size_t k, const char *s, const tok_spans_t *o, bool first,
                      tok_ids_t *out, char *err, size_t err_len) {
    for (size_t i = 0; i < o->n; i++) {
        const tok_span_t *p = &o->v[i];
        if (!p->tag || p->e <= p->s) continue;
        if (tok_pretokenize(t, k + 1, s + p->s, p->e - p->s, first && p->s == 0, out, err,
                            err_len) < 0)
            return -1;
    }
    return 0;
}

int tok_pretokenize(dpo_tokenizer_t *t, size_t k, const char *s, size_t n, bool first,
                    tok_ids_t *out, char *err, size_t err_len) {
    if (n == 0) return 0;
    if (k == t->n_pretoks) return tok_bpe_word(t, s, n, out, err, err_len);
    const tok_pretok_t *pt = &t->pretoks[k];
    tok_spans_t *sp = &t->lvl[k].sp, *o = &t->lvl[k].out;
    tok_buf_t *buf = &t->lvl[k].buf;
    sp->n = o->n = 0;
    switch (pt->kind) {
    case TP_SPLIT:
        if (tok_pattern_find(&pt->pat, NULL, t->mctx, s, n, sp, err, err_len) < 0) return -1;
        if (pt->invert)
            for (size_t i = 0; i < sp->n; i++) sp->v[i].tag = !sp->v[i].tag;
        apply_behavior(sp, pt->behavior, o);
        return run_pieces(t, k, s, o, first, out, err, err_len);
    case TP_BYTELEVEL:
        if (pt->add_prefix_space && s[0] != ' ') {
            buf->len = 0;
            tok_buf_putc(buf, ' ');
            tok_buf_put(buf, s, n);
            s = buf->p;
            n = buf->len;
        }
        if (!pt->use_regex) return tok_pretokenize(t, k + 1, s, n, first, out, err, err_len);
        if (tok_pattern_find(&pt->pat, NULL, t->mctx, s, n, sp, err, err_len) < 0) return -1;
        apply_behavior(sp, BEH_ISOLATED, o);
        return run_pieces(t, k, s, o, first, out, err, err_len);
    case TP_METASPACE: {
        size_t rl = (size_t)pt->repl_len;
        bool starts = s[0] == ' ' || (n >= rl && memcmp(s, pt->repl, rl) == 0);
        bool prepend = pt->prepend_scheme == PREPEND_ALWAYS ||
                       (pt->prepend_scheme == PREPEND_FIRST && first);
        buf->len = 0;
        if (prepend && !starts) tok_buf_put(buf, pt->repl, rl);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ')
                tok_buf_put(buf, pt->repl, rl);
            else
                tok_buf_putc(buf, s[i]);
        }
        const char *q = buf->p;
        size_t m = buf->len;
        if (!pt->split) return tok_pretokenize(t, k + 1, q, m, first, out, err, err_len);
        // Split on the replacement character, each one merged with what follows.
        size_t last = 0;
        for (size_t i = 0; i < m;) {
            if (i + rl <= m && memcmp(q + i, pt->repl, rl) == 0) {
                if (last < i) tok_spans_push(sp, last, i, 0);
                tok_spans_push(sp, i, i + rl, 1);
                i += rl;
                last = i;
            } else {
                i += (size_t)tok_u8len((unsigned char)q[i]);
            }
        }
        if (last < m) tok_spans_push(sp, last, m, 0);
        apply_behavior(sp, BEH_MERGED_NEXT, o);
        return run_pieces(t, k, q, o, first, out, err, err_len);
    }
    }
    return 0;
}
