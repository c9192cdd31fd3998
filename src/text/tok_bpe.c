// tok_bpe.c — the BPE model of tokenizers: initial symbols (with
// continuing_subword_prefix / end_of_word_suffix, byte_fallback, unk and fuse_unk),
// merges by rank through a hash keyed by the (left id, right id) pair, and a
// direct-mapped cache of recent words.
//
// Merging follows tokenizers' Word::merge_all: always the pair of lowest rank, the
// leftmost one among equals. Short words use a linear scan over a rank array (fewer
// memory touches); long ones (a whole SentencePiece-style line is one word) a heap.
#include <stdio.h>
#include <stdlib.h>

#include "dpo/error.h"
#include "tok_internal.h"

// ---------------------------------------------------------------- ByteLevel map

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the 68
// others (0x00-0x20, 0x7F-0xA0, 0xAD) become U+0100.. in byte order.
uint32_t tok_bytelevel_char(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    return 256u + 33 + 34;  // 0xAD
}

int tok_bytelevel_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 256 || cp > 256 + 67) return -1;
    uint32_t k = cp - 256;
    if (k <= 0x20) return (int)k;
    if (k < 33 + 34) return (int)(0x7F + (k - 33));
    return 0xAD;
}

// ---------------------------------------------------------------- merge map

static inline size_t merge_slot(uint64_t key, size_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & mask;
}

void tok_merges_alloc(dpo_tokenizer_t *t, size_t n) {
    size_t size = 64;
    while (size < n * 2) size *= 2;
    t->merges = xmalloc(size * sizeof *t->merges, "merge table");
    for (size_t i = 0; i < size; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = size - 1;
}

int tok_merges_insert(dpo_tokenizer_t *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = merge_slot(key, t->merge_mask);; i = (i + 1) & t->merge_mask) {
        tok_merge_t *m = &t->merges[i];
        // A repeated pair keeps its last rank, as tokenizers' HashMap collect does.
        if (m->key == UINT64_MAX || m->key == key) {
            m->key = key;
            m->rank = rank;
            m->id = id;
            return 0;
        }
    }
}

static inline const tok_merge_t *merge_get(const dpo_tokenizer_t *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = merge_slot(key, t->merge_mask);; i = (i + 1) & t->merge_mask) {
        const tok_merge_t *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
    }
}

// ---------------------------------------------------------------- tables

void tok_bpe_init_tables(dpo_tokenizer_t *t) {
    char buf[8];
    bool all = true;
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        t->byte_tok[b] = tok_strmap_get(&t->vocab, buf, 6);
        int l = tok_u8enc(tok_bytelevel_char((uint8_t)b), buf);
        t->bl_sym[b] = tok_strmap_get(&t->vocab, buf, (size_t)l);
        if (t->bl_sym[b] < 0) all = false;
    }
    t->bl_fast = all && !t->prefix && !t->suffix;
    t->char_sym = xmalloc(0x10000 * sizeof *t->char_sym, "character table");
    for (size_t i = 0; i < 0x10000; i++) t->char_sym[i] = -1;
    for (size_t i = 0; i < t->vocab.n; i++) {
        const tok_sm_entry_t *e = &t->vocab.e[i];
        const char *s = t->arena.p + e->off;
        if (e->len == 0 || e->len > 3 || (size_t)tok_u8len((unsigned char)s[0]) != e->len) continue;
        int l;
        uint32_t cp = tok_u8dec(s, &l);
        if (cp < 0x10000) t->char_sym[cp] = e->val;
    }
    if (!t->bpe_heap_min) t->bpe_heap_min = 64;

    // SentencePiece-style words are whole lines. When every U+2581 inside a vocabulary
    // token follows another U+2581, no merge can join a character to a following
    // U+2581 (a merge needs its result in the vocabulary), so the line may be cut
    // before each U+2581 that follows another character and the pieces merged (and
    // cached) separately with the same result. The byte-fallback and unk state is
    // per character and flushed by U+2581, which must itself be in the vocabulary.
    static const char meta[3] = {(char)0xE2, (char)0x96, (char)0x81};
    t->sp_split = !t->prefix && !t->suffix && !t->ignore_merges &&
                  tok_strmap_get(&t->vocab, meta, 3) >= 0;
    for (size_t i = 0; t->sp_split && i < t->vocab.n; i++) {
        const char *s = t->arena.p + t->vocab.e[i].off;
        size_t n = t->vocab.e[i].len;
        for (size_t p = 1; p + 3 <= n; p++)
            if (memcmp(s + p, meta, 3) == 0 && (p < 3 || memcmp(s + p - 3, meta, 3) != 0)) {
                t->sp_split = false;
                break;
            }
    }
}

// ---------------------------------------------------------------- merging

static void ensure_sym(dpo_tokenizer_t *t, size_t n) {
    if (n <= t->sym_cap) return;
    size_t cap = t->sym_cap ? t->sym_cap : 256;
    while (cap < n) cap *= 2;
    t->sym = xrealloc(t->sym, cap * sizeof *t->sym, "bpe");
    t->prev = xrealloc(t->prev, cap * sizeof *t->prev, "bpe");
    t->next = xrealloc(t->next, cap * sizeof *t->next, "bpe");
    t->nid = xrealloc(t->nid, cap * sizeof *t->nid, "bpe");
    t->rank = xrealloc(t->rank, cap * sizeof *t->rank, "bpe");
    t->heap = xrealloc(t->heap, 3 * cap * sizeof *t->heap, "bpe");
    t->sym_cap = cap;
}

static inline void pair_info(const dpo_tokenizer_t *t, int32_t a, int32_t b, uint32_t *rank,
                             int32_t *nid) {
    const tok_merge_t *m = merge_get(t, a, b);
    *rank = m ? m->rank : UINT32_MAX;
    *nid = m ? m->id : -1;
}

static size_t merge_small(dpo_tokenizer_t *t, size_t n) {
    int32_t *sym = t->sym, *nid = t->nid;
    uint32_t *rank = t->rank;
    for (size_t i = 0; i + 1 < n; i++) pair_info(t, sym[i], sym[i + 1], &rank[i], &nid[i]);
    while (n > 1) {
        uint32_t best = UINT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] < best) {
                best = rank[i];
                bi = i;
            }
        if (best == UINT32_MAX) break;
        sym[bi] = nid[bi];
        // Drop symbol bi+1 and pair bi+1 (pairs after it shift down by one).
        memmove(sym + bi + 1, sym + bi + 2, (n - bi - 2) * sizeof *sym);
        if (n >= bi + 3) {
            memmove(rank + bi + 1, rank + bi + 2, (n - bi - 3) * sizeof *rank);
            memmove(nid + bi + 1, nid + bi + 2, (n - bi - 3) * sizeof *nid);
        }
        n--;
        if (bi > 0) pair_info(t, sym[bi - 1], sym[bi], &rank[bi - 1], &nid[bi - 1]);
        if (bi + 1 < n) pair_info(t, sym[bi], sym[bi + 1], &rank[bi], &nid[bi]);
    }
    return n;
}

typedef struct tok_heap_item heap_item_t;

static void heap_push(heap_item_t *h, size_t *hn, uint64_t key, int32_t id) {
    size_t i = (*hn)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= key) break;
        h[i] = h[p];
        i = p;
    }
    h[i].key = key;
    h[i].id = id;
}

static heap_item_t heap_pop(heap_item_t *h, size_t *hn) {
    heap_item_t top = h[0], last = h[--(*hn)];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1].key < h[c].key) c++;
        if (last.key <= h[c].key) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

// tokenizers' Word::merge_all: a queue ordered by (rank, position), stale entries
// skipped when the pair at that position no longer yields the same token.
static size_t merge_heap(dpo_tokenizer_t *t, size_t n) {
    int32_t *sym = t->sym, *prev = t->prev, *next = t->next;
    heap_item_t *h = t->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const tok_merge_t *m = merge_get(t, sym[i], sym[i + 1]);
        if (m) heap_push(h, &hn, (uint64_t)m->rank << 32 | i, m->id);
    }
    while (hn) {
        heap_item_t top = heap_pop(h, &hn);
        size_t pos = (size_t)(top.key & 0xFFFFFFFFu);
        if (sym[pos] < 0) continue;
        int32_t nx = next[pos];
        if (nx < 0) continue;
        const tok_merge_t *m = merge_get(t, sym[pos], sym[nx]);
        if (!m || m->id != top.id) continue;
        sym[pos] = top.id;
        sym[nx] = -1;
        next[pos] = next[nx];
        if (next[nx] >= 0) prev[next[nx]] = (int32_t)pos;
        if (prev[pos] >= 0) {
            m = merge_get(t, sym[prev[pos]], sym[pos]);
            if (m) heap_push(h, &hn, (uint64_t)m->rank << 32 | (uint32_t)prev[pos], m->id);
        }
        if (next[pos] >= 0) {
            m = merge_get(t, sym[pos], sym[next[pos]]);
            if (m) heap_push(h, &hn, (uint64_t)m->rank << 32 | pos, m->id);
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    return k;
}

static size_t merge_all(dpo_tokenizer_t *t, size_t n) {
    if (n < 2) return n;
    return n < t->bpe_heap_min ? merge_small(t, n) : merge_heap(t, n);
}

// ---------------------------------------------------------------- initial symbols

// tokenizers' BPE::merge_word up to merge_all: one symbol per character.
static long initial_chars(dpo_tokenizer_t *t, const char *s, size_t n, char *err, size_t err_len) {
    ensure_sym(t, n * (1 + t->prefix_len + t->suffix_len) + t->suffix_len + 8);
    int32_t *sym = t->sym;
    bool plain = !t->prefix && !t->suffix, pending = false;
    int32_t unk_id = -1;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l;
        uint32_t cp = tok_u8dec(s + i, &l);
        const char *q = s + i;
        size_t ql = (size_t)l;
        int32_t id;
        if (plain) {
            id = cp < 0x10000 ? t->char_sym[cp] : tok_strmap_get(&t->vocab, q, ql);
        } else {
            t->tmp.len = 0;
            if (i > 0 && t->prefix) tok_buf_put(&t->tmp, t->prefix, t->prefix_len);
            tok_buf_put(&t->tmp, q, ql);
            if (i + ql >= n && t->suffix) tok_buf_put(&t->tmp, t->suffix, t->suffix_len);
            q = t->tmp.p;
            ql = t->tmp.len;
            id = tok_strmap_get(&t->vocab, q, ql);
        }
        i += (size_t)l;
        if (id >= 0) {
            if (pending) sym[k++] = unk_id;
            pending = false;
            sym[k++] = id;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t j = 0; j < ql; j++)
                if (t->byte_tok[(uint8_t)q[j]] < 0) all = false;
            if (all) {
                // As in tokenizers, a pending unk is not flushed here.
                for (size_t j = 0; j < ql; j++) sym[k++] = t->byte_tok[(uint8_t)q[j]];
                continue;
            }
        }
        if (t->unk_token) {
            if (unk_id < 0) unk_id = tok_strmap_get(&t->vocab, t->unk_token, strlen(t->unk_token));
            if (unk_id < 0) {
                dpo_errf(err, err_len, "%s: the unk token '%s' is not in the vocabulary", t->path,
                         t->unk_token);
                return -1;
            }
            if (pending && !t->fuse_unk) sym[k++] = unk_id;
            pending = true;
        }
        // Without an unk token the character is dropped, as tokenizers does.
    }
    if (pending) sym[k++] = unk_id;
    return (long)k;
}

static long bpe_compute(dpo_tokenizer_t *t, const char *w, size_t n, char *err, size_t err_len) {
    long k;
    if (t->bytelevel) {
        if (t->ignore_merges || !t->bl_fast) {
            t->mapped.len = 0;
            tok_buf_grow(&t->mapped, 2 * n);
            for (size_t i = 0; i < n; i++)
                t->mapped.len += (size_t)tok_u8enc(tok_bytelevel_char((uint8_t)w[i]),
                                                   t->mapped.p + t->mapped.len);
        }
        if (t->ignore_merges) {
            int32_t id = tok_strmap_get(&t->vocab, t->mapped.p, t->mapped.len);
            if (id >= 0) {
                ensure_sym(t, 1);
                t->sym[0] = id;
                return 1;
            }
        }
        if (t->bl_fast) {
            ensure_sym(t, n);
            for (size_t i = 0; i < n; i++) t->sym[i] = t->bl_sym[(uint8_t)w[i]];
            k = (long)n;
        } else {
            k = initial_chars(t, t->mapped.p, t->mapped.len, err, err_len);
        }
    } else {
        if (t->ignore_merges) {
            int32_t id = tok_strmap_get(&t->vocab, w, n);
            if (id >= 0) {
                ensure_sym(t, 1);
                t->sym[0] = id;
                return 1;
            }
        }
        k = initial_chars(t, w, n, err, err_len);
    }
    if (k < 0) return -1;
    return (long)merge_all(t, (size_t)k);
}

static int bpe_cached(dpo_tokenizer_t *t, const char *w, size_t n, tok_ids_t *out, char *err,
                      size_t err_len) {
    tok_cache_slot_t *slot = NULL;
    uint32_t tag = 0;
    if (n <= TOK_CACHE_KEY && t->cache) {
        uint64_t h = tok_hash(w, n);
        slot = &t->cache[h & (TOK_CACHE_SLOTS - 1)];
        tag = (uint32_t)(h >> 32);
        if (slot->klen == n && slot->tag == tag && memcmp(slot->key, w, n) == 0) {
            for (size_t i = 0; i < slot->nids; i++) tok_ids_push(out, slot->ids[i]);
            return 0;
        }
    }
    long k = bpe_compute(t, w, n, err, err_len);
    if (k < 0) return -1;
    if (out->len + (size_t)k > out->cap) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->len + (size_t)k) cap *= 2;
        out->ids = xrealloc(out->ids, cap * sizeof *out->ids, "token ids");
        out->cap = cap;
    }
    memcpy(out->ids + out->len, t->sym, (size_t)k * sizeof *t->sym);
    out->len += (size_t)k;
    if (slot && k <= TOK_CACHE_IDS) {
        slot->klen = (uint8_t)n;
        slot->tag = tag;
        slot->nids = (uint8_t)k;
        memcpy(slot->key, w, n);
        memcpy(slot->ids, t->sym, (size_t)k * sizeof *t->sym);
    }
    return 0;
}

int tok_bpe_word(dpo_tokenizer_t *t, const char *w, size_t n, tok_ids_t *out, char *err,
                 size_t err_len) {
    if (n == 0) return 0;
    if (!t->sp_split || t->bytelevel) return bpe_cached(t, w, n, out, err, err_len);
    size_t start = 0;
    for (size_t p = 1; p + 3 <= n; p++) {
        if (w[p] != (char)0xE2 || w[p + 1] != (char)0x96 || w[p + 2] != (char)0x81) continue;
        if (p >= 3 && w[p - 3] == (char)0xE2 && w[p - 2] == (char)0x96 && w[p - 1] == (char)0x81)
            continue;
        if (bpe_cached(t, w + start, p - start, out, err, err_len) < 0) return -1;
        start = p;
    }
    return bpe_cached(t, w + start, n - start, out, err, err_len);
}
