// tok_regex.c — Split/Replace patterns. tokenizers compiles its regexes with
// Oniguruma (Ruby syntax, UTF-8); we run them on PCRE2 (UTF + UCP, JIT) after a small
// translation of the constructs whose meaning differs between the two:
//   \s \S   Oniguruma: Unicode White_Space. PCRE2 also matches U+180E, so \s becomes
//           an explicit class ([^...] for \S; \S inside a class is refused).
//   \p{..}  General categories (\p{L}, \p{Lu}, \P{N}, \p{^L}, \pL, long names) and
//   \d \D   \d (= \p{Nd}): tokenizers' Oniguruma has Unicode 16 tables, PCRE2 10.42
//           Unicode 14, so the code points whose category differs (tok_gc_new, 10k
//           characters assigned since) are added to (or, with a lookahead, removed
//           from) each class. Scripts and other properties are refused, as are
//           \p{C} and \p{Cn} (what is unassigned depends on the version).
//   \h \H   Oniguruma: hexadecimal digit (PCRE2: horizontal space).
//   \v      Oniguruma: vertical tab only (PCRE2: any vertical space).
//   \uHHHH  Oniguruma's 4-digit escape -> \x{HHHH}.
//   (?m)    Ruby's "dot matches newline" -> PCRE2's (?s).
//   ^ $     Ruby anchors are per line -> compiled with PCRE2_MULTILINE.
// Word-based escapes (\w \W \b \B), grapheme escapes, POSIX brackets, nested classes
// and class set operations differ in ways we do not reproduce and are refused, so a
// tokenizer using them fails to load instead of tokenising differently.
#include <stdio.h>
#include <stdlib.h>

#include "dpo/error.h"
#include "tok_internal.h"

#define WS_RANGES "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int refuse(char *err, size_t err_len, const char *what, const char *re, size_t n) {
    dpo_errf(err, err_len, "regex construct %s is not supported (pattern \"%.*s\")", what,
             (int)(n > 200 ? 200 : n), re);
    return -1;
}

// ---------------------------------------------------------------- general categories

enum { GC_L = 0x1F, GC_M = 0xE0, GC_N = 0x700, GC_P = 0x3F800, GC_S = 0x3C0000,
       GC_Z = 0x1C00000, GC_C = 0x3E000000 };

// Bit mask over tok_gc_names of a general-category name (short or long, compared
// loosely as Oniguruma does: case, spaces, '-' and '_' ignored), or 0.
static uint32_t gc_mask(const char *name, size_t n) {
    static const struct {
        const char *name;
        uint32_t mask;
    } longn[] = {
        {"letter", GC_L}, {"casedletter", 0x7}, {"lc", 0x7}, {"uppercaseletter", 1 << 0},
        {"lowercaseletter", 1 << 1}, {"titlecaseletter", 1 << 2}, {"modifierletter", 1 << 3},
        {"otherletter", 1 << 4}, {"mark", GC_M}, {"combiningmark", GC_M},
        {"nonspacingmark", 1 << 5}, {"spacingmark", 1 << 6}, {"enclosingmark", 1 << 7},
        {"number", GC_N}, {"decimalnumber", 1 << 8}, {"digit", 1 << 8}, {"letternumber", 1 << 9},
        {"othernumber", 1 << 10}, {"punctuation", GC_P}, {"connectorpunctuation", 1 << 11},
        {"dashpunctuation", 1 << 12}, {"openpunctuation", 1 << 13}, {"closepunctuation", 1 << 14},
        {"initialpunctuation", 1 << 15}, {"finalpunctuation", 1 << 16},
        {"otherpunctuation", 1 << 17}, {"symbol", GC_S}, {"mathsymbol", 1 << 18},
        {"currencysymbol", 1 << 19}, {"modifiersymbol", 1 << 20}, {"othersymbol", 1 << 21},
        {"separator", GC_Z}, {"spaceseparator", 1 << 22}, {"lineseparator", 1 << 23},
        {"paragraphseparator", 1 << 24}, {"other", GC_C}, {"control", 1 << 25},
        {"format", 1 << 26}, {"surrogate", 1 << 27}, {"privateuse", 1 << 28},
        {"unassigned", 1 << 29}};
    char k[64];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c == ' ' || c == '-' || c == '_') continue;
        if (m + 1 >= sizeof k) return 0;
        k[m++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    k[m] = '\0';
    static const char majors[] = "lmnpszc";
    static const uint32_t major_mask[] = {GC_L, GC_M, GC_N, GC_P, GC_S, GC_Z, GC_C};
    if (m == 1)
        for (int i = 0; i < 7; i++)
            if (k[0] == majors[i]) return major_mask[i];
    if (m == 2)
        for (int i = 0; i < TOK_GC_COUNT; i++)
            if ((tok_gc_names[i][0] | 32) == k[0] && (tok_gc_names[i][1] | 32) == k[1]) return 1u << i;
    for (size_t i = 0; i < sizeof longn / sizeof longn[0]; i++)
        if (strcmp(k, longn[i].name) == 0) return longn[i].mask;
    return 0;
}

static void put_cp_range(tok_buf_t *out, uint32_t lo, uint32_t hi) {
    char b[40];
    int n = lo == hi ? snprintf(b, sizeof b, "\\x{%X}", lo) : snprintf(b, sizeof b, "\\x{%X}-\\x{%X}", lo, hi);
    tok_buf_put(out, b, (size_t)n);
}

// The class items of a category mask: \p{..} per category (a whole major class as
// one), then the code points that tokenizers puts in it and PCRE2 does not (`add`),
// or the other way round (`!add`). Returns how many items of the second kind.
static size_t put_gc_items(tok_buf_t *out, uint32_t mask, bool add, bool props) {
    static const uint32_t majors[] = {GC_L, GC_M, GC_N, GC_P, GC_S, GC_Z, GC_C};
    static const char letters[] = "LMNPSZC";
    if (props) {
        for (int g = 0; g < 7; g++) {
            if ((mask & majors[g]) == majors[g]) {
                char b[8] = {'\\', 'p', '{', letters[g], '}', 0};
                tok_buf_put(out, b, 5);
                continue;
            }
            for (int i = 0; i < TOK_GC_COUNT; i++)
                if ((majors[g] >> i & 1) && (mask >> i & 1)) {
                    tok_buf_put(out, "\\p{", 3);
                    tok_buf_put(out, tok_gc_names[i], 2);
                    tok_buf_putc(out, '}');
                }
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < tok_gc_new_len; i++) {
        bool now = mask >> tok_gc_new[i].cat & 1, before = mask >> tok_gc_new[i].old & 1;
        if (add ? (now && !before) : (before && !now)) {
            if (out) put_cp_range(out, tok_gc_new[i].lo, tok_gc_new[i].hi);
            k++;
        }
    }
    return k;
}

// \p{X} / \P{X} / \p{^X} / \pX / \d / \D at re[i] (i at the backslash). Returns the
// number of pattern bytes consumed, or -1.
static long translate_prop(const char *re, size_t n, size_t i, bool cls, tok_buf_t *out,
                           char *err, size_t err_len) {
    char d = re[i + 1];
    bool neg = d == 'P' || d == 'D';
    uint32_t mask;
    size_t used;
    if (d == 'd' || d == 'D') {
        mask = 1u << 8;  // Nd
        used = 2;
    } else {
        const char *name;
        size_t len;
        if (i + 2 < n && re[i + 2] == '{') {
            const char *close = memchr(re + i + 3, '}', n - (i + 3));
            if (!close) return refuse(err, err_len, "\\p{ without '}'", re, n);
            name = re + i + 3;
            len = (size_t)(close - name);
            used = (size_t)(close - (re + i)) + 1;
            if (len && name[0] == '^') {
                neg = !neg;
                name++;
                len--;
            }
        } else if (i + 2 < n) {
            name = re + i + 2;
            len = 1;
            used = 3;
        } else {
            return refuse(err, err_len, "\\p without a name", re, n);
        }
        mask = gc_mask(name, len);
        if (!mask)
            return refuse(err, err_len,
                          "\\p{..} other than a general category (scripts and other properties "
                          "change between Unicode versions)",
                          re, n);
    }
    if (mask >> 29 & 1)
        return refuse(err, err_len, "\\p{C} / \\p{Cn} (unassigned code points depend on the Unicode version)", re, n);
    tok_buf_t tmp = {0};
    size_t n_add = put_gc_items(NULL, mask, true, false), n_rm = put_gc_items(NULL, mask, false, false);
    if (cls) {
        if (neg) {
            // Only a single \P{X} with nothing to patch fits inside a class.
            put_gc_items(&tmp, mask, true, true);
            bool single = memchr(tmp.p + 1, '\\', tmp.len - 1) == NULL;
            if (n_add || n_rm || !single) {
                tok_buf_free(&tmp);
                return refuse(err, err_len, "a negated property inside a character class", re, n);
            }
            tmp.p[1] = 'P';
            tok_buf_put(out, tmp.p, tmp.len);
            tok_buf_free(&tmp);
            return (long)used;
        }
        if (n_rm) return refuse(err, err_len, "a property with changed members inside a class", re, n);
        put_gc_items(out, mask, true, true);
        return (long)used;
    }
    if (!neg) {
        if (n_rm) {
            tok_buf_put(out, "(?:(?![", 7);
            put_gc_items(out, mask, false, false);
            tok_buf_put(out, "])", 2);
        }
        tok_buf_putc(out, '[');
        put_gc_items(out, mask, true, true);
        tok_buf_putc(out, ']');
        if (n_rm) tok_buf_putc(out, ')');
    } else {
        if (n_rm) tok_buf_put(out, "(?:", 3);
        tok_buf_put(out, "[^", 2);
        put_gc_items(out, mask, true, true);
        tok_buf_putc(out, ']');
        if (n_rm) {
            tok_buf_put(out, "|[", 2);
            put_gc_items(out, mask, false, false);
            tok_buf_put(out, "])", 2);
        }
    }
    return (long)used;
}

// ---------------------------------------------------------------- translation

// Oniguruma (Ruby syntax) -> PCRE2, see the file comment.
static int translate(const char *re, size_t n, tok_buf_t *out, char *err, size_t err_len) {
    bool cls = false;
    size_t i = 0;
    while (i < n) {
        char c = re[i];
        if (c == '\\') {
            if (i + 1 >= n) return refuse(err, err_len, "trailing '\\'", re, n);
            char d = re[i + 1];
            switch (d) {
            case 's':
                tok_buf_put(out, cls ? WS_RANGES : "[" WS_RANGES "]",
                            strlen(cls ? WS_RANGES : "[" WS_RANGES "]"));
                i += 2;
                continue;
            case 'S':
                if (cls) return refuse(err, err_len, "\\S inside a character class", re, n);
                tok_buf_put(out, "[^" WS_RANGES "]", strlen("[^" WS_RANGES "]"));
                i += 2;
                continue;
            case 'h':
                tok_buf_put(out, cls ? "0-9a-fA-F" : "[0-9a-fA-F]", cls ? 9 : 11);
                i += 2;
                continue;
            case 'H':
                if (cls) return refuse(err, err_len, "\\H inside a character class", re, n);
                tok_buf_put(out, "[^0-9a-fA-F]", 12);
                i += 2;
                continue;
            case 'v':
                tok_buf_put(out, "\\x0B", 4);
                i += 2;
                continue;
            case 'p': case 'P': case 'd': case 'D': {
                long used = translate_prop(re, n, i, cls, out, err, err_len);
                if (used < 0) return -1;
                i += (size_t)used;
                continue;
            }
            case 'u':
                if (i + 6 <= n && is_hex(re[i + 2]) && is_hex(re[i + 3]) && is_hex(re[i + 4]) &&
                    is_hex(re[i + 5])) {
                    tok_buf_put(out, "\\x{", 3);
                    tok_buf_put(out, re + i + 2, 4);
                    tok_buf_putc(out, '}');
                    i += 6;
                    continue;
                }
                return refuse(err, err_len, "\\u without four hex digits", re, n);
            case 'w': case 'W': case 'b': case 'B': case 'y': case 'Y': case 'O': case 'X':
            case 'Q': case 'E': case 'N': case 'R': case 'K': case 'g': case 'k': case 'G': {
                char what[8] = {'\\', d, 0};
                return refuse(err, err_len, what, re, n);
            }
            default: {
                // Any other escape means the same in both (\p{..}, \x.., \t, \., \d, ...).
                int l = tok_u8len((unsigned char)d);
                tok_buf_put(out, re + i, (size_t)(1 + l));
                i += (size_t)(1 + l);
                continue;
            }
            }
        }
        if (cls) {
            if (c == '[') return refuse(err, err_len, "'[' inside a class (nested class or POSIX bracket)", re, n);
            if (c == '&' && i + 1 < n && re[i + 1] == '&')
                return refuse(err, err_len, "class intersection &&", re, n);
            if (c == ']') cls = false;
            tok_buf_putc(out, c);
            i++;
            continue;
        }
        if (c == '[') {
            cls = true;
            tok_buf_putc(out, c);
            i++;
            if (i < n && re[i] == '^') tok_buf_putc(out, re[i++]);
            if (i < n && re[i] == ']') tok_buf_putc(out, re[i++]);  // literal ']' first
            continue;
        }
        if (c == '(' && i + 1 < n && re[i + 1] == '?') {
            size_t j = i + 2;
            char e = j < n ? re[j] : 0;
            if (e == ':' || e == '=' || e == '!' || e == '>' || e == '#' ||
                (e == '<' && j + 1 < n && (re[j + 1] == '=' || re[j + 1] == '!'))) {
                tok_buf_put(out, re + i, 3);
                i += 3;
                continue;
            }
            // Inline options (?imx-imx) or (?imx-imx:...): only i, x and m (Ruby's
            // dot-all, PCRE2's s).
            tok_buf_put(out, "(?", 2);
            while (j < n && re[j] != ':' && re[j] != ')') {
                char o = re[j];
                if (o == 'i' || o == 'x' || o == '-')
                    tok_buf_putc(out, o);
                else if (o == 'm')
                    tok_buf_putc(out, 's');
                else
                    return refuse(err, err_len, "this (?...) group or option", re, n);
                j++;
            }
            i = j;
            continue;
        }
        int l = tok_u8len((unsigned char)c);
        tok_buf_put(out, re + i, (size_t)l);
        i += (size_t)l;
    }
    if (cls) return refuse(err, err_len, "an unterminated class", re, n);
    return 0;
}

int tok_pattern_init(tok_pattern_t *p, const char *src, size_t n, bool is_regex, char *err,
                     size_t err_len) {
    memset(p, 0, sizeof *p);
    if (n == 0) {
        dpo_errf(err, err_len, "empty pattern");
        return -1;
    }
    if (!is_regex) {
        p->literal = true;
        p->lit = xmalloc(n + 1, "pattern");
        memcpy(p->lit, src, n);
        p->lit[n] = '\0';
        p->lit_len = n;
        return 0;
    }
    tok_buf_t tr = {0};
    if (translate(src, n, &tr, err, err_len) < 0) {
        tok_buf_free(&tr);
        return -1;
    }
    int code;
    PCRE2_SIZE off;
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    p->code = pcre2_compile((PCRE2_SPTR)tr.p, tr.len,
                            PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C,
                            &code, &off, cc);
    pcre2_compile_context_free(cc);
    if (!p->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        dpo_errf(err, err_len, "regex \"%.*s\" does not compile in PCRE2: %s", (int)(n > 200 ? 200 : n),
                 src, (const char *)msg);
        tok_buf_free(&tr);
        return -1;
    }
    tok_buf_free(&tr);
    // The JIT is several times faster; without it (unsupported CPU) the interpreter
    // gives the same matches.
    p->jit = pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE) == 0;
    p->md = pcre2_match_data_create_from_pattern(p->code, NULL);
    return 0;
}

void tok_pattern_free(tok_pattern_t *p) {
    free(p->lit);
    if (p->md) pcre2_match_data_free(p->md);
    if (p->code) pcre2_code_free(p->code);
    memset(p, 0, sizeof *p);
}

static const char *find_lit(const char *s, size_t n, const char *lit, size_t m) {
    if (m > n) return NULL;
    const char *end = s + (n - m);
    for (const char *q = s; q <= end;) {
        q = memchr(q, lit[0], (size_t)(end - q) + 1);
        if (!q) return NULL;
        if (memcmp(q, lit, m) == 0) return q;
        q++;
    }
    return NULL;
}

int tok_pattern_find(const tok_pattern_t *p, pcre2_match_data *md, pcre2_match_context *mc,
                     const char *s, size_t n, tok_spans_t *out, char *err, size_t err_len) {
    if (n == 0) {
        tok_spans_push(out, 0, 0, 0);
        return 0;
    }
    if (!md) md = p->md;
    size_t prev = 0, last_end = 0, last_match_end = 0;
    bool have_last = false;
    while (last_end <= n) {
        size_t ms, me;
        if (p->literal) {
            const char *q = find_lit(s + last_end, n - last_end, p->lit, p->lit_len);
            if (!q) break;
            ms = (size_t)(q - s);
            me = ms + p->lit_len;
        } else {
            // pcre2_jit_match skips the checks pcre2_match repeats on every call.
            int rc = p->jit ? pcre2_jit_match(p->code, (PCRE2_SPTR)s, n, last_end, PCRE2_NO_UTF_CHECK, md, mc)
                            : pcre2_match(p->code, (PCRE2_SPTR)s, n, last_end, PCRE2_NO_UTF_CHECK, md, mc);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(rc, msg, sizeof msg);
                dpo_errf(err, err_len, "regex match failed: %s", (const char *)msg);
                return -1;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
        }
        // Oniguruma's find_iter: an empty match right where the last match ended is
        // skipped by searching again one character further.
        if (ms == me && have_last && last_match_end == me) {
            last_end += last_end < n ? (size_t)tok_u8len((unsigned char)s[last_end]) : 1;
            continue;
        }
        last_end = me;
        last_match_end = me;
        have_last = true;
        if (prev != ms) tok_spans_push(out, prev, ms, 0);
        tok_spans_push(out, ms, me, 1);
        prev = me;
    }
    if (prev != n) tok_spans_push(out, prev, n, 0);
    return 0;
}
