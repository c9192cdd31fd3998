// tok_util.c — byte buffers, UTF-8 validation and repair, Unicode character classes,
// hashing and the string -> int map used by the tokenizer modules.
#include <stdlib.h>
#include <utf8proc.h>

#include "dpo/error.h"
#include "tok_internal.h"

void tok_buf_grow(tok_buf_t *b, size_t extra) {
    size_t need = b->len + extra;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    b->p = xrealloc(b->p, cap, "tokenizer buffer");
    b->cap = cap;
}

void tok_buf_free(tok_buf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void tok_spans_grow(tok_spans_t *sp) {
    sp->cap = sp->cap ? sp->cap * 2 : 64;
    sp->v = xrealloc(sp->v, sp->cap * sizeof *sp->v, "tokenizer spans");
}

int tok_u8enc(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tok_u8prev(const char *s, size_t n) {
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

// Bytes of a well-formed sequence led by byte c: the allowed range of the second
// byte (Unicode Table 3-7); the others are always 80..BF. Returns the length, 0 for a
// byte that cannot lead.
static int lead_info(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return 2;
    if (c < 0xF0) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 3;
    }
    if (c < 0xF5) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

// Length of the well-formed prefix of the sequence at s[0, n) (0 when s[0] cannot
// lead); equals the sequence length when it is complete.
static int valid_part(const unsigned char *s, size_t n, int *want) {
    unsigned char lo, hi;
    int len = lead_info(s[0], &lo, &hi);
    *want = len;
    if (len <= 1) return len;
    int k = 1;
    if ((size_t)k < n && s[1] >= lo && s[1] <= hi) {
        k = 2;
        while (k < len && (size_t)k < n && (s[k] & 0xC0) == 0x80) k++;
    }
    return k;
}

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        // ASCII runs eight bytes at a time.
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, u + i, 8);
            if (v & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int want, got = valid_part(u + i, n - i, &want);
        if (want == 0 || got != want) return i;
        i += (size_t)got;
    }
    return n;
}

size_t tok_utf8_repair(const char *s, size_t n, tok_buf_t *out) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad = 0;
    while (i < n) {
        size_t ok = tok_utf8_valid_prefix(s + i, n - i);
        tok_buf_put(out, s + i, ok);
        i += ok;
        if (i >= n) break;
        int want, got = valid_part(u + i, n - i, &want);
        // One U+FFFD per maximal subpart: a byte that cannot lead, or a lead with the
        // continuation bytes that were still valid.
        tok_buf_put(out, fffd, 3);
        bad++;
        i += got > 0 ? (size_t)got : 1;
    }
    return bad;
}

bool tok_is_white_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Rust regex's Unicode \w: Alphabetic, marks, decimal digits, connector punctuation,
// join controls. Alphabetic is approximated by the letter categories, Nl and the
// circled/squared letters that are Other_Alphabetic symbols.
bool tok_is_word_char(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               cp == '_';
    if (cp == 0x200C || cp == 0x200D) return true;
    if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
        (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189))
        return true;
    // Characters assigned after utf8proc's Unicode version: the category tokenizers
    // (Unicode 16) gives them; tok_gc_names order is Lu Ll Lt Lm Lo Mn Mc Me Nd Nl.
    for (size_t lo = 0, hi = tok_gc_new_len; lo < hi;) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_gc_new[mid].lo) {
            hi = mid;
        } else if (cp > tok_gc_new[mid].hi) {
            lo = mid + 1;
        } else {
            unsigned c = tok_gc_new[mid].cat;
            return c <= 9 || c == 11;  // letters, marks, Nd, Nl, Pc
        }
    }
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0x87c37b91114253d5ull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = rotl64(h ^ (v * 0x87c37b91114253d5ull), 31) * 0x4cf5ad432745937full;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        memcpy(&v, s, n);
        h = rotl64(h ^ (v * 0x87c37b91114253d5ull), 31) * 0x4cf5ad432745937full;
    }
    return fmix64(h);
}

void tok_strmap_init(tok_strmap_t *m, tok_buf_t *arena, size_t expect) {
    memset(m, 0, sizeof *m);
    m->arena = arena;
    size_t size = 16;
    while (size < expect * 2) size *= 2;
    m->slots = xcalloc(size, sizeof *m->slots, "tokenizer map");
    m->mask = size - 1;
}

void tok_strmap_free(tok_strmap_t *m) {
    free(m->slots);
    free(m->e);
    memset(m, 0, sizeof *m);
}

long tok_strmap_find(const tok_strmap_t *m, const char *s, size_t n) {
    uint64_t h = tok_hash(s, n);
    const char *base = m->arena->p;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint32_t k = m->slots[i];
        if (!k) return -1;
        const tok_sm_entry_t *e = &m->e[k - 1];
        if (e->hash == h && e->len == n && memcmp(base + e->off, s, n) == 0) return (long)k - 1;
    }
}

static void strmap_rehash(tok_strmap_t *m) {
    size_t size = (m->mask + 1) * 2;
    free(m->slots);
    m->slots = xcalloc(size, sizeof *m->slots, "tokenizer map");
    m->mask = size - 1;
    for (size_t k = 0; k < m->n; k++) {
        size_t i = m->e[k].hash & m->mask;
        while (m->slots[i]) i = (i + 1) & m->mask;
        m->slots[i] = (uint32_t)(k + 1);
    }
}

size_t tok_strmap_put(tok_strmap_t *m, const char *s, size_t n, int32_t val) {
    long f = tok_strmap_find(m, s, n);
    if (f >= 0) {
        m->e[f].val = val;
        return (size_t)f;
    }
    if ((m->n + 1) * 2 > m->mask + 1) strmap_rehash(m);
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->e = xrealloc(m->e, m->cap * sizeof *m->e, "tokenizer map");
    }
    tok_sm_entry_t *e = &m->e[m->n];
    e->hash = tok_hash(s, n);
    e->off = (uint32_t)m->arena->len;
    e->len = (uint32_t)n;
    e->val = val;
    tok_buf_put(m->arena, s, n);
    tok_buf_putc(m->arena, '\0');  // keys double as C strings
    size_t i = e->hash & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = (uint32_t)(m->n + 1);
    return m->n++;
}

bool tok_uc_in(const tok_uc_range_t *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}
