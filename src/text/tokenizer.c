// tokenizer.c — loads a Hugging Face tokenizer.json (and tokenizer_config.json) and
// runs tokenizers' encode pipeline: split on added tokens, normalise, split on the
// normalised added tokens, pre-tokenise, BPE (see tokenizer.h, doc/tokenizers.md).
// Anything the file asks for that we do not reproduce exactly is refused at load.
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/error.h"
#include "dpo/sha256.h"
#include "tok_internal.h"

// GPT-2's pre-tokenizer regex, used by ByteLevel when use_regex is true.
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------- id buffers

void tok_ids_clear(tok_ids_t *v) { v->len = 0; }

void tok_ids_push(tok_ids_t *v, int32_t id) {
    if (v->len == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 256;
        v->ids = xrealloc(v->ids, v->cap * sizeof *v->ids, "token ids");
    }
    v->ids[v->len++] = id;
}

void tok_ids_free(tok_ids_t *v) {
    free(v->ids);
    memset(v, 0, sizeof *v);
}

// ---------------------------------------------------------------- helpers

// Reads a whole file. Returns NULL with *missing set when it does not exist.
static char *read_file(const char *path, size_t *len, bool *missing, char *err, size_t err_len) {
    *missing = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        dpo_errf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap, "file");
    for (;;) {
        if (n == cap) buf = xrealloc(buf, cap *= 2, "file");
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        dpo_errf(err, err_len, "%s: read error", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static char *dupn(const char *s, size_t n) {
    char *d = xmalloc(n + 1, "string");
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static const char *type_of(const json_t *o) {
    return json_is_object(o) ? json_string_value(json_object_get(o, "type")) : NULL;
}

// Optional boolean member: true/false, or `dflt` when absent or null; -1 if mistyped.
static int get_bool(const json_t *o, const char *key, bool dflt) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return dflt;
    if (!json_is_boolean(v)) return -1;
    return json_is_true(v);
}

// A tokenizers pattern: {"String": s} or {"Regex": r}.
static int parse_pattern(dpo_tokenizer_t *t, const json_t *pat, const char *where, tok_pattern_t *p,
                         char *err, size_t err_len) {
    json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
    json_t *v = s ? s : r;
    if (!json_is_object(pat) || !json_is_string(v)) {
        dpo_errf(err, err_len, "%s: %s: pattern must be {\"String\": ...} or {\"Regex\": ...}",
                 t->path, where);
        return -1;
    }
    char msg[512];
    if (tok_pattern_init(p, json_string_value(v), json_string_length(v), r != NULL, msg,
                         sizeof msg) < 0) {
        dpo_errf(err, err_len, "%s: %s: %s", t->path, where, msg);
        return -1;
    }
    return 0;
}

// One character given as a JSON string (Metaspace replacement, Strip content).
static int get_char(dpo_tokenizer_t *t, const json_t *o, const char *key, const char *where,
                    uint32_t *cp, char *err, size_t err_len) {
    json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    int l = 0;
    if (!s || json_string_length(v) == 0 ||
        (tok_u8dec(s, &l), (size_t)l != json_string_length(v))) {
        dpo_errf(err, err_len, "%s: %s: \"%s\" must be a single character", t->path, where, key);
        return -1;
    }
    *cp = tok_u8dec(s, &l);
    return 0;
}

static int get_prepend_scheme(dpo_tokenizer_t *t, const json_t *o, const char *where, int *scheme,
                              char *err, size_t err_len) {
    json_t *ps = json_object_get(o, "prepend_scheme");
    *scheme = PREPEND_ALWAYS;
    if (ps && !json_is_null(ps)) {
        const char *s = json_string_value(ps);
        if (s && strcmp(s, "always") == 0)
            *scheme = PREPEND_ALWAYS;
        else if (s && strcmp(s, "first") == 0)
            *scheme = PREPEND_FIRST;
        else if (s && strcmp(s, "never") == 0)
            *scheme = PREPEND_NEVER;
        else {
            dpo_errf(err, err_len, "%s: %s: unknown prepend_scheme", t->path, where);
            return -1;
        }
    }
    // The legacy add_prefix_space=false means "never" and must agree with the scheme.
    int aps = get_bool(o, "add_prefix_space", true);
    if (aps == 0) {
        if (*scheme != PREPEND_NEVER) {
            dpo_errf(err, err_len, "%s: %s: add_prefix_space does not match declared prepend_scheme",
                     t->path, where);
            return -1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------- normalizer

static int parse_normalizer(dpo_tokenizer_t *t, const json_t *n, char *err, size_t err_len) {
    if (!n || json_is_null(n)) return 0;
    const char *type = type_of(n);
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) {
            dpo_errf(err, err_len, "%s: normalizer Sequence without a \"normalizers\" list", t->path);
            return -1;
        }
        for (size_t i = 0; i < json_array_size(list); i++)
            if (parse_normalizer(t, json_array_get(list, i), err, err_len) < 0) return -1;
        return 0;
    }
    t->norms = xrealloc(t->norms, (t->n_norms + 1) * sizeof *t->norms, "normalizers");
    tok_norm_t *nm = &t->norms[t->n_norms];
    memset(nm, 0, sizeof *nm);
    if (type && strcmp(type, "NFC") == 0) {
        nm->kind = TN_NFC;
    } else if (type && strcmp(type, "Prepend") == 0) {
        json_t *p = json_object_get(n, "prepend");
        if (!json_is_string(p)) {
            dpo_errf(err, err_len, "%s: Prepend normalizer without a \"prepend\" string", t->path);
            return -1;
        }
        nm->kind = TN_PREPEND;
        nm->str = dupn(json_string_value(p), json_string_length(p));
        nm->str_len = json_string_length(p);
    } else if (type && strcmp(type, "Replace") == 0) {
        json_t *c = json_object_get(n, "content");
        if (!json_is_string(c)) {
            dpo_errf(err, err_len, "%s: Replace normalizer without a \"content\" string", t->path);
            return -1;
        }
        nm->kind = TN_REPLACE;
        nm->str = dupn(json_string_value(c), json_string_length(c));
        nm->str_len = json_string_length(c);
        t->n_norms++;  // counted now so that tokenizer_free releases it on failure
        if (parse_pattern(t, json_object_get(n, "pattern"), "Replace normalizer", &nm->pat, err,
                          err_len) < 0)
            return -1;
        // tokenizers' NormalizedString::replace mishandles empty matches (an empty
        // match at the start of the text is inserted twice): refuse such patterns.
        uint32_t minlen = 1;
        if (nm->pat.code) pcre2_pattern_info(nm->pat.code, PCRE2_INFO_MINLENGTH, &minlen);
        if (minlen == 0) {
            dpo_errf(err, err_len, "%s: unsupported Replace normalizer: its regex can match the "
                     "empty string", t->path);
            return -1;
        }
        return 0;
    } else {
        dpo_errf(err, err_len,
                 "%s: unsupported normalizer '%s' (supported: NFC, Prepend, Replace, Sequence)",
                 t->path, type ? type : "(no type)");
        return -1;
    }
    t->n_norms++;
    return 0;
}

// ---------------------------------------------------------------- pre-tokenizer

static int parse_pretok(dpo_tokenizer_t *t, const json_t *p, char *err, size_t err_len) {
    if (!p || json_is_null(p)) return 0;
    const char *type = type_of(p);
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list)) {
            dpo_errf(err, err_len, "%s: pre_tokenizer Sequence without a \"pretokenizers\" list",
                     t->path);
            return -1;
        }
        for (size_t i = 0; i < json_array_size(list); i++)
            if (parse_pretok(t, json_array_get(list, i), err, err_len) < 0) return -1;
        return 0;
    }
    if (t->n_pretoks == TOK_MAX_PRETOK) {
        dpo_errf(err, err_len, "%s: more than %d pre-tokenizers", t->path, TOK_MAX_PRETOK);
        return -1;
    }
    if (t->bytelevel) {
        // Our BPE reads the raw bytes of ByteLevel's pieces; a step after it would
        // see mapped characters instead.
        dpo_errf(err, err_len, "%s: unsupported pre_tokenizer: ByteLevel must be the last one",
                 t->path);
        return -1;
    }
    tok_pretok_t *pt = &t->pretoks[t->n_pretoks];
    memset(pt, 0, sizeof *pt);
    if (type && strcmp(type, "Split") == 0) {
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        const char *b = json_string_value(json_object_get(p, "behavior"));
        int beh = -1;
        for (int i = 0; b && i < 5; i++)
            if (strcmp(b, names[i]) == 0) beh = i;
        int inv = get_bool(p, "invert", false);
        if (beh < 0 || inv < 0) {
            dpo_errf(err, err_len, "%s: Split pre-tokenizer: bad \"behavior\" or \"invert\"", t->path);
            return -1;
        }
        pt->kind = TP_SPLIT;
        pt->behavior = beh;
        pt->invert = inv;
        t->n_pretoks++;
        return parse_pattern(t, json_object_get(p, "pattern"), "Split pre-tokenizer", &pt->pat, err,
                             err_len);
    }
    if (type && strcmp(type, "ByteLevel") == 0) {
        int aps = get_bool(p, "add_prefix_space", true), ur = get_bool(p, "use_regex", true);
        if (aps < 0 || ur < 0) {
            dpo_errf(err, err_len, "%s: ByteLevel pre-tokenizer: bad flags", t->path);
            return -1;
        }
        pt->kind = TP_BYTELEVEL;
        pt->add_prefix_space = aps;
        pt->use_regex = ur;
        t->bytelevel = true;
        t->n_pretoks++;
        if (ur) {
            char msg[256];
            if (tok_pattern_init(&pt->pat, GPT2_REGEX, strlen(GPT2_REGEX), true, msg, sizeof msg) < 0) {
                dpo_errf(err, err_len, "%s: ByteLevel regex: %s", t->path, msg);
                return -1;
            }
        }
        return 0;
    }
    if (type && strcmp(type, "Metaspace") == 0) {
        uint32_t cp;
        int split = get_bool(p, "split", true);
        if (get_char(t, p, "replacement", "Metaspace pre-tokenizer", &cp, err, err_len) < 0 ||
            get_prepend_scheme(t, p, "Metaspace pre-tokenizer", &pt->prepend_scheme, err, err_len) < 0)
            return -1;
        if (split < 0) {
            dpo_errf(err, err_len, "%s: Metaspace pre-tokenizer: bad \"split\"", t->path);
            return -1;
        }
        pt->kind = TP_METASPACE;
        pt->repl_len = tok_u8enc(cp, pt->repl);
        pt->split = split;
        t->n_pretoks++;
        return 0;
    }
    dpo_errf(err, err_len,
             "%s: unsupported pre_tokenizer '%s' (supported: Split, ByteLevel, Metaspace, Sequence)",
             t->path, type ? type : "(no type)");
    return -1;
}

// ---------------------------------------------------------------- decoder

static int parse_decoder(dpo_tokenizer_t *t, const json_t *d, char *err, size_t err_len) {
    if (!d || json_is_null(d)) return 0;
    t->has_decoder = true;
    const char *type = type_of(d);
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(d, "decoders");
        if (!json_is_array(list)) {
            dpo_errf(err, err_len, "%s: decoder Sequence without a \"decoders\" list", t->path);
            return -1;
        }
        for (size_t i = 0; i < json_array_size(list); i++)
            if (parse_decoder(t, json_array_get(list, i), err, err_len) < 0) return -1;
        return 0;
    }
    t->decs = xrealloc(t->decs, (t->n_decs + 1) * sizeof *t->decs, "decoders");
    tok_decoder_t *dc = &t->decs[t->n_decs];
    memset(dc, 0, sizeof *dc);
    t->n_decs++;
    if (type && strcmp(type, "ByteLevel") == 0) {
        dc->kind = TD_BYTELEVEL;
    } else if (type && strcmp(type, "ByteFallback") == 0) {
        dc->kind = TD_BYTEFALLBACK;
    } else if (type && strcmp(type, "Fuse") == 0) {
        dc->kind = TD_FUSE;
    } else if (type && strcmp(type, "Metaspace") == 0) {
        dc->kind = TD_METASPACE;
        if (get_char(t, d, "replacement", "Metaspace decoder", &dc->cp, err, err_len) < 0 ||
            get_prepend_scheme(t, d, "Metaspace decoder", &dc->prepend_scheme, err, err_len) < 0)
            return -1;
    } else if (type && strcmp(type, "Replace") == 0) {
        json_t *c = json_object_get(d, "content");
        if (!json_is_string(c)) {
            dpo_errf(err, err_len, "%s: Replace decoder without a \"content\" string", t->path);
            return -1;
        }
        dc->kind = TD_REPLACE;
        dc->content = dupn(json_string_value(c), json_string_length(c));
        dc->content_len = json_string_length(c);
        return parse_pattern(t, json_object_get(d, "pattern"), "Replace decoder", &dc->pat, err,
                             err_len);
    } else if (type && strcmp(type, "Strip") == 0) {
        json_t *a = json_object_get(d, "start"), *b = json_object_get(d, "stop");
        if (get_char(t, d, "content", "Strip decoder", &dc->cp, err, err_len) < 0) return -1;
        if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 ||
            json_integer_value(b) < 0) {
            dpo_errf(err, err_len, "%s: Strip decoder: bad \"start\"/\"stop\"", t->path);
            return -1;
        }
        dc->kind = TD_STRIP;
        dc->start = (size_t)json_integer_value(a);
        dc->stop = (size_t)json_integer_value(b);
    } else {
        dpo_errf(err, err_len,
                 "%s: unsupported decoder '%s' (supported: ByteLevel, Metaspace, Replace, "
                 "ByteFallback, Fuse, Strip, Sequence)",
                 t->path, type ? type : "(no type)");
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- model

static int opt_string(dpo_tokenizer_t *t, const json_t *m, const char *key, char **out,
                      size_t *len, char *err, size_t err_len) {
    json_t *v = json_object_get(m, key);
    *out = NULL;
    if (len) *len = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        dpo_errf(err, err_len, "%s: model.%s must be a string or null", t->path, key);
        return -1;
    }
    if (json_string_length(v) == 0) return 0;  // "" behaves as no prefix/suffix
    *out = dupn(json_string_value(v), json_string_length(v));
    if (len) *len = json_string_length(v);
    return 0;
}

static int add_merge(dpo_tokenizer_t *t, const char *a, size_t al, const char *b, size_t bl,
                     uint32_t rank, char *err, size_t err_len) {
    int32_t ia = tok_strmap_get(&t->vocab, a, al), ib = tok_strmap_get(&t->vocab, b, bl);
    if (ia < 0 || ib < 0 || bl < t->prefix_len) {
        dpo_errf(err, err_len, "%s: merge %u (\"%.*s\" \"%.*s\"): token not in the vocabulary",
                 t->path, rank, (int)al, a, (int)bl, b);
        return -1;
    }
    // The merged token is a + b without b's continuing_subword_prefix.
    t->tmp.len = 0;
    tok_buf_put(&t->tmp, a, al);
    tok_buf_put(&t->tmp, b + t->prefix_len, bl - t->prefix_len);
    int32_t id = tok_strmap_get(&t->vocab, t->tmp.p, t->tmp.len);
    if (id < 0) {
        dpo_errf(err, err_len, "%s: merge %u: \"%.*s\" is not in the vocabulary", t->path, rank,
                 (int)t->tmp.len, t->tmp.p);
        return -1;
    }
    return tok_merges_insert(t, ia, ib, rank, id);
}

static int parse_model(dpo_tokenizer_t *t, const json_t *m, char *err, size_t err_len) {
    if (!json_is_object(m)) {
        dpo_errf(err, err_len, "%s: missing \"model\"", t->path);
        return -1;
    }
    const char *type = type_of(m);
    if (!type || strcmp(type, "BPE") != 0) {
        dpo_errf(err, err_len, "%s: unsupported model type '%s' (only BPE is supported)", t->path,
                 type ? type : "(no type)");
        return -1;
    }
    t->model_type = "bpe";
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0) {
        dpo_errf(err, err_len, "%s: BPE dropout is not supported (it makes encoding random)", t->path);
        return -1;
    }
    if (opt_string(t, m, "unk_token", &t->unk_token, NULL, err, err_len) < 0 ||
        opt_string(t, m, "continuing_subword_prefix", &t->prefix, &t->prefix_len, err, err_len) < 0 ||
        opt_string(t, m, "end_of_word_suffix", &t->suffix, &t->suffix_len, err, err_len) < 0)
        return -1;
    int fu = get_bool(m, "fuse_unk", false), bf = get_bool(m, "byte_fallback", false),
        im = get_bool(m, "ignore_merges", false);
    if (fu < 0 || bf < 0 || im < 0) {
        dpo_errf(err, err_len, "%s: model flags must be booleans", t->path);
        return -1;
    }
    t->fuse_unk = fu;
    t->byte_fallback = bf;
    t->ignore_merges = im;

    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (!json_is_object(vocab) || !json_is_array(merges)) {
        dpo_errf(err, err_len, "%s: BPE model needs a \"vocab\" object and a \"merges\" list", t->path);
        return -1;
    }
    tok_strmap_init(&t->vocab, &t->arena, json_object_size(vocab));
    int64_t max_id = -1;
    const char *key;
    size_t key_len;
    json_t *val;
    json_object_keylen_foreach((json_t *)vocab, key, key_len, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= INT32_MAX) {
            dpo_errf(err, err_len, "%s: vocab entry \"%.*s\" has no valid id", t->path, (int)key_len,
                     key);
            return -1;
        }
        int64_t id = json_integer_value(val);
        tok_strmap_put(&t->vocab, key, key_len, (int32_t)id);
        if (id > max_id) max_id = id;
    }
    t->vocab_entries = t->vocab.n;
    t->id_entry_len = (size_t)(max_id + 1);
    t->id_entry = xmalloc((t->id_entry_len + 1) * sizeof *t->id_entry, "vocab");
    for (size_t i = 0; i < t->id_entry_len; i++) t->id_entry[i] = -1;
    for (size_t i = 0; i < t->vocab.n; i++)
        if (t->id_entry[t->vocab.e[i].val] < 0) t->id_entry[t->vocab.e[i].val] = (int32_t)i;

    tok_merges_alloc(t, json_array_size(merges));
    uint32_t rank = 0;
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *mg = json_array_get(merges, i);
        if (json_is_string(mg)) {
            // Legacy "a b" form: exactly one space; "#version" lines are skipped.
            const char *s = json_string_value(mg);
            size_t n = json_string_length(mg);
            if (n >= 8 && memcmp(s, "#version", 8) == 0) continue;
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                dpo_errf(err, err_len, "%s: merge %u \"%.*s\" is not two tokens separated by a space",
                         t->path, rank + 1, (int)n, s);
                return -1;
            }
            if (add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp + 1 - s), rank, err,
                          err_len) < 0)
                return -1;
        } else if (json_is_array(mg) && json_array_size(mg) == 2 &&
                   json_is_string(json_array_get(mg, 0)) && json_is_string(json_array_get(mg, 1))) {
            json_t *a = json_array_get(mg, 0), *b = json_array_get(mg, 1);
            if (add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                          json_string_length(b), rank, err, err_len) < 0)
                return -1;
        } else {
            dpo_errf(err, err_len, "%s: merge %u is neither \"a b\" nor [\"a\", \"b\"]", t->path,
                     rank + 1);
            return -1;
        }
        rank++;
    }
    tok_bpe_init_tables(t);
    return 0;
}

// ---------------------------------------------------------------- added tokens

static long added_by_id(const dpo_tokenizer_t *t, int32_t id) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return (long)i;
    return -1;
}

// AddedVocabulary::add_tokens as run when tokenizers deserialises a tokenizer.json:
// ids come from the vocabulary or are appended after it (the file's ids are only
// "expected" ids); a repeated content keeps its first id and takes the later flags.
static int parse_added(dpo_tokenizer_t *t, const json_t *list, char *err, size_t err_len) {
    if (!list || json_is_null(list)) return 0;
    if (!json_is_array(list)) {
        dpo_errf(err, err_len, "%s: \"added_tokens\" must be a list", t->path);
        return -1;
    }
    size_t n = json_array_size(list);
    t->added = xcalloc(n + 1, sizeof *t->added, "added tokens");
    tok_strmap_init(&t->added_map, &t->arena, n);
    int32_t next_id = (int32_t)t->vocab_entries;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(list, i), *c = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_string(c)) {
            dpo_errf(err, err_len, "%s: added_tokens[%zu] has no \"content\" string", t->path, i);
            return -1;
        }
        tok_added_t tk = {0};
        int sp = get_bool(a, "special", false);
        int sw = get_bool(a, "single_word", false), ls = get_bool(a, "lstrip", false),
            rs = get_bool(a, "rstrip", false), nz = get_bool(a, "normalized", sp != 1);
        if (sp < 0 || sw < 0 || ls < 0 || rs < 0 || nz < 0) {
            dpo_errf(err, err_len, "%s: added_tokens[%zu]: flags must be booleans", t->path, i);
            return -1;
        }
        tk.special = sp;
        tk.single_word = sw;
        tk.lstrip = ls;
        tk.rstrip = rs;
        tk.normalized = nz;
        const char *s = json_string_value(c);
        size_t sl = json_string_length(c);
        if (sl == 0) continue;
        long ex = tok_strmap_find(&t->added_map, s, sl);
        if (ex >= 0) {
            // The same token again (content and flags) changes nothing.
            const tok_added_t *o = &t->added[t->added_map.e[ex].val];
            if (o->len == sl && memcmp(t->arena.p + o->off, s, sl) == 0 &&
                o->special == tk.special && o->single_word == tk.single_word &&
                o->lstrip == tk.lstrip && o->rstrip == tk.rstrip && o->normalized == tk.normalized)
                continue;
        }
        int32_t id = ex >= 0 ? t->added[t->added_map.e[ex].val].id : tok_strmap_get(&t->vocab, s, sl);
        if (id < 0) id = next_id++;
        size_t ei = tok_strmap_put(&t->added_map, s, sl, 0);
        tk.off = t->added_map.e[ei].off;
        tk.len = (uint32_t)sl;
        tk.noff = tk.off;
        tk.nlen = tk.len;
        tk.id = id;
        long slot = added_by_id(t, id);
        if (slot >= 0) {  // the normalised form cached for this id survives
            tk.has_norm_form = t->added[slot].has_norm_form;
            if (tk.has_norm_form) {
                tk.noff = t->added[slot].noff;
                tk.nlen = t->added[slot].nlen;
            }
        } else {
            slot = (long)t->n_added++;
        }
        if (tk.normalized && t->n_norms) {
            const char *ns;
            size_t nl;
            if (tok_normalize(t, s, sl, &ns, &nl, err, err_len) < 0) return -1;
            if (nl != sl || memcmp(ns, s, sl) != 0) {
                tk.noff = (uint32_t)t->arena.len;
                tk.nlen = (uint32_t)nl;
                tk.has_norm_form = true;
                tok_buf_put(&t->arena, ns, nl);
                tok_buf_putc(&t->arena, '\0');
            }
        }
        t->added[slot] = tk;
        t->added_map.e[ei].val = (int32_t)slot;
    }
    for (size_t i = 0; i < t->n_added; i++)
        if ((size_t)t->added[i].id + 1 > t->added_idx_len) t->added_idx_len = (size_t)t->added[i].id + 1;
    t->added_idx = xmalloc((t->added_idx_len + 1) * sizeof *t->added_idx, "added tokens");
    for (size_t i = 0; i < t->added_idx_len; i++) t->added_idx[i] = -1;
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added_t *a = &t->added[i];
        t->added_idx[a->id] = (int32_t)i;
        if (a->normalized) {
            if (a->nlen) tok_trie_add(&t->trie_norm, t->arena.p + a->noff, a->nlen, (int32_t)i);
        } else {
            tok_trie_add(&t->trie_raw, t->arena.p + a->off, a->len, (int32_t)i);
        }
    }
    return 0;
}

// ---------------------------------------------------------------- tokenizer_config.json

static char *config_token(const json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? dupn(json_string_value(v), json_string_length(v)) : NULL;
}

static int load_config(dpo_tokenizer_t *t, const char *dir, char *err, size_t err_len) {
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    size_t n;
    bool missing;
    char msg[512];
    char *buf = read_file(path, &n, &missing, msg, sizeof msg);
    if (buf) {
        json_error_t je;
        // model_max_length is often 1e30, beyond json_int_t.
        json_t *c = json_loadb(buf, n, JSON_DECODE_INT_AS_REAL, &je);
        free(buf);
        if (!json_is_object(c)) {
            dpo_errf(err, err_len, "%s: invalid JSON (line %d, column %d): %s", path, je.line,
                     je.column, c ? "not an object" : je.text);
            json_decref(c);
            return -1;
        }
        t->bos = config_token(json_object_get(c, "bos_token"));
        t->eos = config_token(json_object_get(c, "eos_token"));
        t->add_bos = json_is_true(json_object_get(c, "add_bos_token"));
        json_t *cls = json_object_get(c, "tokenizer_class");
        if (json_is_string(cls)) t->tok_class = dupn(json_string_value(cls), json_string_length(cls));
        json_t *ct = json_object_get(c, "chat_template");
        if (json_is_string(ct)) {
            t->chat_template = dupn(json_string_value(ct), json_string_length(ct));
        } else if (json_is_array(ct)) {  // named templates: the "default" one
            for (size_t i = 0; i < json_array_size(ct); i++) {
                json_t *e = json_array_get(ct, i), *tm = json_object_get(e, "template");
                const char *name = json_string_value(json_object_get(e, "name"));
                if (name && strcmp(name, "default") == 0 && json_is_string(tm))
                    t->chat_template = dupn(json_string_value(tm), json_string_length(tm));
            }
        }
        json_decref(c);
    } else if (!missing) {
        dpo_errf(err, err_len, "%s", msg);
        return -1;
    }
    if (!t->chat_template) {  // newer checkpoints keep it in its own file
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        buf = read_file(path, &n, &missing, msg, sizeof msg);
        if (buf) {
            t->chat_template = dupn(buf, n);
            free(buf);
        } else if (!missing) {
            dpo_errf(err, err_len, "%s", msg);
            return -1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------- load / free

dpo_tokenizer_t *tokenizer_load(const char *dir, char *err, size_t err_len) {
    dpo_tokenizer_t *t = xcalloc(1, sizeof *t, "tokenizer");
    snprintf(t->path, sizeof t->path, "%s/tokenizer.json", dir);
    t->mctx = pcre2_match_context_create(NULL);
    t->jstack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
    if (t->mctx && t->jstack) pcre2_jit_stack_assign(t->mctx, NULL, t->jstack);
    // Slots are cache lines: align them so that a lookup touches one line.
    t->cache = aligned_alloc(64, TOK_CACHE_SLOTS * sizeof *t->cache);
    if (!t->cache) dpo_fatal("out of memory (word cache)");
    memset(t->cache, 0, TOK_CACHE_SLOTS * sizeof *t->cache);

    size_t n;
    bool missing;
    char *buf = read_file(t->path, &n, &missing, err, err_len);
    if (!buf) {
        tokenizer_free(t);
        return NULL;
    }
    char hex[65];
    sha256_hex(buf, n, hex);
    json_error_t je;
    json_t *root = json_loadb(buf, n, 0, &je);
    free(buf);
    if (!json_is_object(root)) {
        dpo_errf(err, err_len, "%s: invalid JSON (line %d, column %d): %s", t->path, je.line,
                 je.column, root ? "not an object" : je.text);
        json_decref(root);
        tokenizer_free(t);
        return NULL;
    }
    json_t *ver = json_object_get(root, "version");
    if (ver && (!json_is_string(ver) || strcmp(json_string_value(ver), "1.0") != 0)) {
        dpo_errf(err, err_len, "%s: unknown tokenizer version (expected \"1.0\")", t->path);
        goto fail;
    }
    // The normaliser comes first: added tokens with normalized=true are matched in
    // their normalised form.
    if (parse_model(t, json_object_get(root, "model"), err, err_len) < 0 ||
        parse_normalizer(t, json_object_get(root, "normalizer"), err, err_len) < 0 ||
        parse_pretok(t, json_object_get(root, "pre_tokenizer"), err, err_len) < 0 ||
        parse_decoder(t, json_object_get(root, "decoder"), err, err_len) < 0 ||
        parse_added(t, json_object_get(root, "added_tokens"), err, err_len) < 0)
        goto fail;
    // post_processor only adds special tokens (BOS/EOS templates), which encode never
    // does here, and ByteLevel's offset trimming; truncation and padding shape
    // batches. None of them changes the ids of tokenizer_encode.
    json_decref(root);
    snprintf(t->identity, sizeof t->identity, "%s:%s", t->model_type, hex);
    if (load_config(t, dir, err, err_len) < 0) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
fail:
    json_decref(root);
    tokenizer_free(t);
    return NULL;
}

void tokenizer_free(dpo_tokenizer_t *t) {
    if (!t) return;
    tok_buf_free(&t->arena);
    tok_strmap_free(&t->vocab);
    free(t->id_entry);
    free(t->merges);
    free(t->unk_token);
    free(t->prefix);
    free(t->suffix);
    free(t->char_sym);
    free(t->added);
    free(t->added_idx);
    tok_strmap_free(&t->added_map);
    tok_trie_free(&t->trie_raw);
    tok_trie_free(&t->trie_norm);
    for (size_t i = 0; i < t->n_norms; i++) {
        free(t->norms[i].str);
        tok_pattern_free(&t->norms[i].pat);
    }
    free(t->norms);
    for (size_t i = 0; i < t->n_pretoks; i++) tok_pattern_free(&t->pretoks[i].pat);
    for (size_t i = 0; i < t->n_decs; i++) {
        free(t->decs[i].content);
        tok_pattern_free(&t->decs[i].pat);
    }
    free(t->decs);
    free(t->bos);
    free(t->eos);
    free(t->chat_template);
    free(t->tok_class);
    if (t->mctx) pcre2_match_context_free(t->mctx);
    if (t->jstack) pcre2_jit_stack_free(t->jstack);
    tok_buf_free(&t->fix);
    tok_buf_free(&t->nb[0]);
    tok_buf_free(&t->nb[1]);
    free(t->u32);
    free(t->seg[0].v);
    free(t->seg[1].v);
    free(t->nsp.v);
    for (int i = 0; i < TOK_MAX_PRETOK; i++) {
        tok_buf_free(&t->lvl[i].buf);
        free(t->lvl[i].sp.v);
        free(t->lvl[i].out.v);
    }
    free(t->sym);
    free(t->prev);
    free(t->next);
    free(t->nid);
    free(t->rank);
    free(t->heap);
    tok_buf_free(&t->mapped);
    tok_buf_free(&t->tmp);
    free(t->cache);
    free(t);
}

// ---------------------------------------------------------------- encode

// One stretch of text between raw added tokens: normalise, split on the normalised
// added tokens, pre-tokenise and BPE.
static int encode_segment(dpo_tokenizer_t *t, const char *s, size_t n, bool at_origin,
                          tok_ids_t *out, char *err, size_t err_len) {
    const char *q = s;
    size_t m = n;
    if (t->n_norms && tok_normalize(t, s, n, &q, &m, err, err_len) < 0) return -1;
    if (m == 0) return 0;
    if (!t->trie_norm.any) return tok_pretokenize(t, 0, q, m, at_origin, out, err, err_len);
    tok_spans_t *sp = &t->seg[1];
    sp->n = 0;
    tok_added_find(t, &t->trie_norm, q, m, sp);
    for (size_t i = 0; i < sp->n; i++) {
        const tok_span_t *p = &sp->v[i];
        if (p->e <= p->s) continue;
        if (p->tag >= 0)
            tok_ids_push(out, p->tag);
        else if (tok_pretokenize(t, 0, q + p->s, p->e - p->s, at_origin && p->s == 0, out, err,
                                 err_len) < 0)
            return -1;
    }
    return 0;
}

int tokenizer_encode(dpo_tokenizer_t *t, const char *text, size_t len, tok_ids_t *out,
                     size_t *n_invalid, char *err, size_t err_len) {
    const char *s = len ? text : "";
    size_t n = len, bad = 0;
    if (tok_utf8_valid_prefix(s, n) != n) {
        t->fix.len = 0;
        bad = tok_utf8_repair(s, n, &t->fix);
        s = t->fix.p;
        n = t->fix.len;
    }
    if (n_invalid) *n_invalid = bad;
    if (!t->trie_raw.any) return encode_segment(t, s, n, true, out, err, err_len);
    tok_spans_t *sp = &t->seg[0];
    sp->n = 0;
    tok_added_find(t, &t->trie_raw, s, n, sp);
    for (size_t i = 0; i < sp->n; i++) {
        const tok_span_t *p = &sp->v[i];
        if (p->e <= p->s) continue;
        if (p->tag >= 0)
            tok_ids_push(out, p->tag);
        else if (encode_segment(t, s + p->s, p->e - p->s, p->s == 0, out, err, err_len) < 0)
            return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- decode, lookups

static long added_index_of_id(const dpo_tokenizer_t *t, int32_t id) {
    return id >= 0 && (size_t)id < t->added_idx_len ? t->added_idx[id] : -1;
}

char *tokenizer_decode(const dpo_tokenizer_t *t, const int32_t *ids, size_t n, size_t *len,
                       char *err, size_t err_len) {
    const char **toks = xmalloc((n + 1) * sizeof *toks, "decode");
    size_t *lens = xmalloc((n + 1) * sizeof *lens, "decode");
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        long a = added_index_of_id(t, id);
        if (a >= 0) {
            // tokenizers hands the decoder the normalised form of normalized tokens.
            const tok_added_t *ad = &t->added[a];
            toks[i] = t->arena.p + (ad->has_norm_form ? ad->noff : ad->off);
            lens[i] = ad->has_norm_form ? ad->nlen : ad->len;
        } else if (id >= 0 && (size_t)id < t->id_entry_len && t->id_entry[id] >= 0) {
            const tok_sm_entry_t *e = &t->vocab.e[t->id_entry[id]];
            toks[i] = t->arena.p + e->off;
            lens[i] = e->len;
        } else {
            dpo_errf(err, err_len, "token id %d is not in the vocabulary (size %d)", id,
                     tokenizer_vocab_size(t));
            free(toks);
            free(lens);
            return NULL;
        }
    }
    char *res = tok_decode_tokens(t, toks, lens, n, len, err, err_len);
    free(toks);
    free(lens);
    return res;
}

int32_t tokenizer_token_to_id(const dpo_tokenizer_t *t, const char *token) {
    size_t n = strlen(token);
    if (t->n_added) {
        long i = tok_strmap_find(&t->added_map, token, n);
        if (i >= 0) return t->added[t->added_map.e[i].val].id;
    }
    return tok_strmap_get(&t->vocab, token, n);
}

const char *tokenizer_id_to_token(const dpo_tokenizer_t *t, int32_t id) {
    if (id < 0) return NULL;
    long a = added_index_of_id(t, id);
    if (a >= 0) return t->arena.p + t->added[a].off;
    if ((size_t)id < t->id_entry_len && t->id_entry[id] >= 0)
        return t->arena.p + t->vocab.e[t->id_entry[id]].off;
    return NULL;
}

int tokenizer_vocab_size(const dpo_tokenizer_t *t) {
    int32_t max = (int32_t)t->id_entry_len - 1;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > max) max = t->added[i].id;
    return (int)max + 1;
}

const char *tokenizer_bos_token(const dpo_tokenizer_t *t) { return t->bos; }
const char *tokenizer_eos_token(const dpo_tokenizer_t *t) { return t->eos; }
bool tokenizer_add_bos_token(const dpo_tokenizer_t *t) { return t->add_bos; }
const char *tokenizer_chat_template(const dpo_tokenizer_t *t) { return t->chat_template; }
const char *tokenizer_class(const dpo_tokenizer_t *t) { return t->tok_class; }
const char *tokenizer_identity(const dpo_tokenizer_t *t) { return t->identity; }
