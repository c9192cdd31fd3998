// tok_added.c — added tokens: a byte trie per matching set and tokenizers'
// AddedVocabulary::find_matches (leftmost-longest, then single_word / lstrip / rstrip).
#include <stdlib.h>

#include "dpo/error.h"
#include "tok_internal.h"

static int32_t trie_node(tok_trie_t *tr, uint8_t byte) {
    if (tr->n == tr->cap) {
        tr->cap = tr->cap ? tr->cap * 2 : 256;
        tr->nodes = xrealloc(tr->nodes, tr->cap * sizeof *tr->nodes, "added-token trie");
    }
    tok_trie_node_t *nd = &tr->nodes[tr->n];
    nd->child = nd->sibling = nd->tok = -1;
    nd->byte = byte;
    return (int32_t)tr->n++;
}

void tok_trie_add(tok_trie_t *tr, const char *s, size_t n, int32_t tok) {
    if (!tr->any) {
        for (int i = 0; i < 256; i++) tr->root[i] = -1;
        tr->any = true;
    }
    const uint8_t *u = (const uint8_t *)s;
    int32_t cur = tr->root[u[0]];
    if (cur < 0) {
        cur = trie_node(tr, u[0]);
        tr->root[u[0]] = cur;
    }
    for (size_t i = 1; i < n; i++) {
        int32_t c = tr->nodes[cur].child;
        while (c >= 0 && tr->nodes[c].byte != u[i]) c = tr->nodes[c].sibling;
        if (c < 0) {
            c = trie_node(tr, u[i]);
            tr->nodes[c].sibling = tr->nodes[cur].child;
            tr->nodes[cur].child = c;
        }
        cur = c;
    }
    tr->nodes[cur].tok = tok;  // a repeated pattern keeps the last token
}

void tok_trie_free(tok_trie_t *tr) {
    free(tr->nodes);
    memset(tr, 0, sizeof *tr);
}

// Leftmost-longest match starting at or after `from`.
static bool trie_next(const tok_trie_t *tr, const uint8_t *s, size_t n, size_t from, size_t *ms,
                      size_t *me, int32_t *tok) {
    for (size_t i = from; i < n; i++) {
        int32_t cur = tr->root[s[i]];
        if (cur < 0) continue;
        int32_t best = -1;
        size_t best_end = 0, j = i + 1;
        for (;;) {
            if (tr->nodes[cur].tok >= 0) {
                best = tr->nodes[cur].tok;
                best_end = j;
            }
            if (j >= n) break;
            int32_t c = tr->nodes[cur].child;
            while (c >= 0 && tr->nodes[c].byte != s[j]) c = tr->nodes[c].sibling;
            if (c < 0) break;
            cur = c;
            j++;
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            *tok = best;
            return true;
        }
    }
    return false;
}

static bool ends_with_word(const char *s, size_t n) {
    if (n == 0) return false;
    int l;
    return tok_is_word_char(tok_u8dec(s + tok_u8prev(s, n), &l));
}

static bool starts_with_word(const char *s, size_t n) {
    if (n == 0) return false;
    int l;
    return tok_is_word_char(tok_u8dec(s, &l));
}

// Start of the white space that ends s[0, n) (n when none).
static size_t space_leftmost_at_end(const char *s, size_t n) {
    size_t i = n;
    while (i > 0) {
        size_t p = tok_u8prev(s, i);
        int l;
        if (!tok_is_white_space(tok_u8dec(s + p, &l))) break;
        i = p;
    }
    return i;
}

// Length of the white space that starts s[0, n).
static size_t space_rightmost_at_start(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int l;
        if (!tok_is_white_space(tok_u8dec(s + i, &l))) break;
        i += (size_t)l;
    }
    return i;
}

void tok_added_find(const dpo_tokenizer_t *t, const tok_trie_t *tr, const char *s, size_t n,
                    tok_spans_t *out) {
    size_t start_offset = 0, from = 0, ms, me;
    int32_t ti;
    while (from < n && trie_next(tr, (const uint8_t *)s, n, from, &ms, &me, &ti)) {
        from = me;  // the automaton goes on after the match it found
        const tok_added_t *a = &t->added[ti];
        size_t start = ms, stop = me;
        if (a->single_word) {
            bool start_space = start == 0 || !ends_with_word(s, start);
            bool stop_space = stop == n || !starts_with_word(s + stop, n - stop);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = space_leftmost_at_end(s, start);
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) stop += space_rightmost_at_start(s + stop, n - stop);
        if (start > stop) start = stop;  // only reachable with odd overlapping tokens
        if (start_offset < start) tok_spans_push(out, start_offset, start, -1);
        tok_spans_push(out, start, stop, a->id);
        start_offset = stop;
    }
    if (start_offset != n) tok_spans_push(out, start_offset, n, -1);
}
