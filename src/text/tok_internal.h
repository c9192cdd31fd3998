// tok_internal.h — what the tokenizer modules share (tokenizer.c loads and runs the
// pipeline; tok_util.c: buffers, UTF-8, hashing; tok_regex.c: Oniguruma-compatible
// patterns on PCRE2; tok_pretok.c: normalisers and pre-tokenisers; tok_added.c: added
// tokens; tok_bpe.c: the BPE model; tok_decode.c: decoders). Not a public header.
#ifndef DPO_TOK_INTERNAL_H
#define DPO_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dpo/tokenizer.h"

// ---------------------------------------------------------------- buffers, UTF-8

typedef struct {
    char *p;
    size_t len, cap;
} tok_buf_t;

void tok_buf_grow(tok_buf_t *b, size_t extra);  // cap >= len + extra
void tok_buf_free(tok_buf_t *b);
static inline void tok_buf_put(tok_buf_t *b, const void *s, size_t n) {
    if (b->len + n > b->cap) tok_buf_grow(b, n);
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}
static inline void tok_buf_putc(tok_buf_t *b, char c) {
    if (b->len + 1 > b->cap) tok_buf_grow(b, 1);
    b->p[b->len++] = c;
}

// Byte length of the character led by b in valid UTF-8.
static inline int tok_u8len(unsigned char b) {
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}
// Decodes the character at s (valid UTF-8); *len gets its byte length.
static inline uint32_t tok_u8dec(const char *s, int *len) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *len = 1; return u[0]; }
    if (u[0] < 0xE0) { *len = 2; return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F); }
    if (u[0] < 0xF0) {
        *len = 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *len = 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
           (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}
int tok_u8enc(uint32_t cp, char out[4]);
// Start of the character that ends at s[n] (n > 0; valid UTF-8).
size_t tok_u8prev(const char *s, size_t n);

// Length of the longest valid UTF-8 prefix of s.
size_t tok_utf8_valid_prefix(const char *s, size_t n);
// Appends s to out with each maximal invalid subpart replaced by U+FFFD (Python's
// errors="replace", Rust's from_utf8_lossy). Returns the number of replacements.
size_t tok_utf8_repair(const char *s, size_t n, tok_buf_t *out);

bool tok_is_white_space(uint32_t cp);  // Unicode White_Space (Rust regex \s)
bool tok_is_word_char(uint32_t cp);    // Rust regex \w

uint64_t tok_hash(const void *p, size_t n);

// Unicode data that differs between tokenizers and our libraries (generated into
// tok_unicode_tables.c by tests/fixtures/gen_unicode_tables.py).
#define TOK_GC_COUNT 30  // general categories, in tok_gc_names order
typedef struct {
    uint32_t lo, hi;
    uint8_t cat, old;  // tok_gc_new: category in tokenizers' Oniguruma / in PCRE2
} tok_uc_range_t;
extern const char *const tok_gc_names[TOK_GC_COUNT];
extern const tok_uc_range_t tok_gc_new[];
extern const size_t tok_gc_new_len;
extern const tok_uc_range_t tok_nfc_inert[];
extern const size_t tok_nfc_inert_len;
// Binary search of a sorted range table.
bool tok_uc_in(const tok_uc_range_t *r, size_t n, uint32_t cp);

// ---------------------------------------------------------------- string -> int map

typedef struct {
    uint64_t hash;
    uint32_t off, len;  // key bytes in *arena
    int32_t val;
} tok_sm_entry_t;

typedef struct {
    tok_buf_t *arena;  // where keys live (offsets stay valid when it grows)
    uint32_t *slots;   // entry index + 1, 0 = empty
    size_t mask;
    tok_sm_entry_t *e;
    size_t n, cap;
} tok_strmap_t;

void tok_strmap_init(tok_strmap_t *m, tok_buf_t *arena, size_t expect);
void tok_strmap_free(tok_strmap_t *m);
// Entry index of key, or -1.
long tok_strmap_find(const tok_strmap_t *m, const char *s, size_t n);
static inline int32_t tok_strmap_get(const tok_strmap_t *m, const char *s, size_t n) {
    long i = tok_strmap_find(m, s, n);
    return i < 0 ? -1 : m->e[i].val;
}
// Sets key -> val (copying the key into the arena when new); returns the entry index.
size_t tok_strmap_put(tok_strmap_t *m, const char *s, size_t n, int32_t val);
static inline const char *tok_strmap_key(const tok_strmap_t *m, size_t i) {
    return m->arena->p + m->e[i].off;
}

// ---------------------------------------------------------------- patterns

// A Split/Replace pattern: a literal string, or a regex in Oniguruma syntax
// translated to PCRE2 (tok_regex.c says what is translated and what is refused).
typedef struct {
    bool literal;
    char *lit;
    size_t lit_len;
    pcre2_code *code;
    bool jit;              // compiled by the JIT
    pcre2_match_data *md;  // for encode (one tokenizer, one thread)
} tok_pattern_t;

// A piece [s, e) of a string; tag is 1/0 for match/non-match, or an added token id
// (-1 when none).
typedef struct {
    uint32_t s, e;
    int32_t tag;
} tok_span_t;

typedef struct {
    tok_span_t *v;
    size_t n, cap;
} tok_spans_t;

void tok_spans_grow(tok_spans_t *sp);
static inline void tok_spans_push(tok_spans_t *sp, size_t s, size_t e, int32_t tag) {
    if (sp->n == sp->cap) tok_spans_grow(sp);
    sp->v[sp->n].s = (uint32_t)s;
    sp->v[sp->n].e = (uint32_t)e;
    sp->v[sp->n].tag = tag;
    sp->n++;
}

// Compiles `src` (a regex when is_regex, else a literal). Returns 0 or -1 with a message.
int tok_pattern_init(tok_pattern_t *p, const char *src, size_t n, bool is_regex, char *err,
                     size_t err_len);
void tok_pattern_free(tok_pattern_t *p);
// tokenizers' Pattern::find_matches: spans covering s[0, n) in order, matches tagged 1,
// following Oniguruma's find_iter for empty matches. md NULL: the pattern's own.
int tok_pattern_find(const tok_pattern_t *p, pcre2_match_data *md, pcre2_match_context *mc,
                     const char *s, size_t n, tok_spans_t *out, char *err, size_t err_len);

// ---------------------------------------------------------------- pipeline parts

enum { TN_NFC, TN_PREPEND, TN_REPLACE };
typedef struct {
    int kind;
    char *str;  // Prepend: the prefix; Replace: the replacement content
    size_t str_len;
    tok_pattern_t pat;  // Replace
} tok_norm_t;

enum { TP_SPLIT, TP_BYTELEVEL, TP_METASPACE };
enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct {
    int kind;
    tok_pattern_t pat;  // Split, or ByteLevel's GPT-2 regex when use_regex
    int behavior;
    bool invert;
    bool add_prefix_space, use_regex;  // ByteLevel
    char repl[4];                      // Metaspace replacement character (UTF-8)
    int repl_len;
    int prepend_scheme;
    bool split;
} tok_pretok_t;

enum { TD_BYTELEVEL, TD_METASPACE, TD_REPLACE, TD_BYTEFALLBACK, TD_FUSE, TD_STRIP };
typedef struct {
    int kind;
    tok_pattern_t pat;  // Replace
    char *content;
    size_t content_len;
    uint32_t cp;               // Strip: the stripped character; Metaspace: the replacement
    size_t start, stop;        // Strip
    int prepend_scheme;        // Metaspace
} tok_decoder_t;

typedef struct {
    uint32_t off, len;    // content, in the arena
    uint32_t noff, nlen;  // what the normalised trie matches (normalised content)
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
    bool has_norm_form;  // normalised content differs from content (decode uses it)
} tok_added_t;

typedef struct {
    int32_t child, sibling, tok;  // tok: index into added[], or -1
    uint8_t byte;
} tok_trie_node_t;

typedef struct {
    tok_trie_node_t *nodes;
    size_t n, cap;
    int32_t root[256];  // node of each first byte, -1 when none
    bool any;
} tok_trie_t;

// Direct-mapped cache of recent words -> ids (no allocation per word); a slot is
// one 64-byte cache line. Longer words or results are not cached.
#define TOK_CACHE_SLOTS (1u << 17)
#define TOK_CACHE_KEY 30
#define TOK_CACHE_IDS 7
typedef struct {
    uint32_t tag;
    uint8_t klen, nids;
    char key[TOK_CACHE_KEY];
    int32_t ids[TOK_CACHE_IDS];
} tok_cache_slot_t;

typedef struct {
    uint64_t key;  // left id << 32 | right id; UINT64_MAX = empty
    uint32_t rank;
    int32_t id;    // merged token
} tok_merge_t;

#define TOK_MAX_PRETOK 8

struct dpo_tokenizer {
    char path[1024];  // tokenizer.json, for messages
    tok_buf_t arena;  // all strings

    // BPE model
    tok_strmap_t vocab;
    size_t vocab_entries;  // tokenizers' get_vocab_size(): distinct strings
    int32_t *id_entry;     // id -> vocab entry index, -1 when unused
    size_t id_entry_len;
    tok_merge_t *merges;
    size_t merge_mask;
    char *unk_token;  // NULL when none
    bool fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix;  // continuing_subword_prefix / end_of_word_suffix, NULL if none
    size_t prefix_len, suffix_len;
    int32_t byte_tok[256];  // "<0xXX>" ids (byte_fallback), -1 when absent
    int32_t bl_sym[256];    // id of each byte's ByteLevel character, -1 when absent
    bool bl_fast;           // every byte has one and there is no prefix/suffix
    int32_t *char_sym;      // BMP code point -> id of that one-character token (or -1)
    size_t bpe_heap_min;    // words with this many symbols or more use the heap merge
    bool sp_split;          // no merge can join a character to a following U+2581 (see tok_bpe.c)

    // added vocabulary
    tok_added_t *added;
    size_t n_added;
    tok_strmap_t added_map;  // content -> index into added[]
    int32_t *added_idx;      // id -> index into added[], -1 (length added_idx_len)
    size_t added_idx_len;
    tok_trie_t trie_raw, trie_norm;

    // pipeline
    tok_norm_t *norms;
    size_t n_norms;
    tok_pretok_t pretoks[TOK_MAX_PRETOK];
    size_t n_pretoks;
    bool bytelevel;  // the last pre-tokenizer is ByteLevel: BPE words are raw bytes
    tok_decoder_t *decs;
    size_t n_decs;
    bool has_decoder;
    const char *model_type;

    // tokenizer_config.json
    char *bos, *eos, *chat_template, *tok_class;
    bool add_bos;
    char identity[80];

    // encode scratch
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    tok_buf_t fix, nb[2];
    int32_t *u32;
    size_t u32_cap;
    tok_spans_t seg[2], nsp;
    struct {
        tok_buf_t buf;
        tok_spans_t sp, out;
    } lvl[TOK_MAX_PRETOK];
    int32_t *sym, *prev, *next, *nid;
    uint32_t *rank;
    struct tok_heap_item { uint64_t key; int32_t id; } *heap;
    size_t sym_cap;
    tok_buf_t mapped, tmp;
    tok_cache_slot_t *cache;
};

// ---------------------------------------------------------------- module entry points

// tok_bpe.c
void tok_bpe_init_tables(dpo_tokenizer_t *t);  // after vocab/merges: bl_sym, byte_tok, char_sym
int tok_merges_insert(dpo_tokenizer_t *t, int32_t a, int32_t b, uint32_t rank, int32_t id);
void tok_merges_alloc(dpo_tokenizer_t *t, size_t n);
// Appends the ids of one pre-tokenised word.
int tok_bpe_word(dpo_tokenizer_t *t, const char *w, size_t n, tok_ids_t *out, char *err,
                 size_t err_len);
// The byte -> character map of ByteLevel, and its inverse (-1 for other characters).
uint32_t tok_bytelevel_char(uint8_t b);
int tok_bytelevel_byte(uint32_t cp);

// tok_added.c
void tok_trie_add(tok_trie_t *tr, const char *s, size_t n, int32_t tok);
void tok_trie_free(tok_trie_t *tr);
// AddedVocabulary::find_matches: spans covering s[0, n), added tokens tagged with their id.
void tok_added_find(const dpo_tokenizer_t *t, const tok_trie_t *tr, const char *s, size_t n,
                    tok_spans_t *out);

// tok_pretok.c
// Runs the normalisers over s[0, n); *res points at the result (s itself or scratch).
int tok_normalize(dpo_tokenizer_t *t, const char *s, size_t n, const char **res, size_t *res_len,
                  char *err, size_t err_len);
// Pre-tokenises from step k on and runs BPE on each piece; `first` says the piece
// starts at offset 0 of the original text (Metaspace prepend_scheme "first").
int tok_pretokenize(dpo_tokenizer_t *t, size_t k, const char *s, size_t n, bool first,
                    tok_ids_t *out, char *err, size_t err_len);

// tok_decode.c
char *tok_decode_tokens(const dpo_tokenizer_t *t, const char **toks, const size_t *lens,
                        size_t n, size_t *out_len, char *err, size_t err_len);

#endif
