// prep_record.c — input record formats of dpo_prep (see prep_record.h).
#include "dpo/prep_record.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/error.h"

static const char *const FORMAT_NAMES[] = {"auto", "nemo", "binary", "legacy", "trl"};

int prep_format_parse(const char *name) {
    if (strcmp(name, "pairs") == 0) return FMT_BINARY;  // dpo_pairs writes prompt/chosen/rejected
    for (int i = 0; i < (int)(sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES); i++)
        if (strcmp(name, FORMAT_NAMES[i]) == 0) return i;
    return -1;
}

const char *prep_format_name(prep_format_t f) { return FORMAT_NAMES[f]; }

prep_format_t prep_detect_format(json_t *rec, const prep_keys_t *keys) {
    if (!json_is_object(rec)) return FMT_AUTO;
    if (json_object_get(rec, "context") && json_object_get(rec, "completions")) return FMT_NEMO;
    if (json_object_get(rec, "chosen_response") && json_object_get(rec, "rejected_response"))
        return FMT_LEGACY;
    bool has_c = json_object_get(rec, keys->chosen), has_r = json_object_get(rec, keys->rejected);
    if (has_c && has_r && json_object_get(rec, keys->prompt)) return FMT_BINARY;
    if (has_c && has_r) return FMT_TRL;
    return FMT_AUTO;
}

static void msgs_clear(prep_msgs_t *v) {
    for (int i = 0; i < v->n; i++) {
        free(v->m[i].role);
        free(v->m[i].content);
    }
    v->n = 0;
}

static void msgs_free(prep_msgs_t *v) {
    msgs_clear(v);
    free(v->m);
    memset(v, 0, sizeof *v);
}

static char *dup_str(const char *s, size_t n) {
    char *d = xmalloc(n + 1, "record text");
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void msgs_push(prep_msgs_t *v, const char *role, char *content) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 8;
        v->m = xrealloc(v->m, (size_t)v->cap * sizeof *v->m, "record messages");
    }
    v->m[v->n].role = dup_str(role, strlen(role));
    v->m[v->n].content = content;
    v->n++;
}

static void msgs_copy(prep_msgs_t *dst, const prep_msgs_t *src, int from, int to) {
    for (int i = from; i < to; i++)
        msgs_push(dst, src->m[i].role, dup_str(src->m[i].content, strlen(src->m[i].content)));
}

// Text of a message's content: a string, or the concatenated "text" of a list of
// parts (OpenAI/HF multimodal form; only text parts are allowed here).
static char *content_text(json_t *c, const char *where, char *err, size_t err_len) {
    // (jansson refuses \u0000 in strings, so the text has no NUL inside.)
    if (json_is_string(c)) return dup_str(json_string_value(c), json_string_length(c));
    if (!json_is_array(c)) {
        dpo_errf(err, err_len, "%s: \"content\" must be a string or a list of text parts", where);
        return NULL;
    }
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(tx) ||
            (ty && (!json_is_string(ty) || strcmp(json_string_value(ty), "text") != 0))) {
            dpo_errf(err, err_len, "%s: content part %zu is not a {\"type\": \"text\", \"text\": ...}",
                     where, i);
            return NULL;
        }
        total += json_string_length(tx);
    }
    char *s = xmalloc(total + 1, "record text");
    size_t at = 0;
    json_array_foreach(c, i, part) {
        json_t *tx = json_object_get(part, "text");
        memcpy(s + at, json_string_value(tx), json_string_length(tx));
        at += json_string_length(tx);
    }
    s[at] = '\0';
    return s;
}

// A list of {"role", "content"} objects.
static int parse_messages(json_t *v, const char *where, prep_msgs_t *out, char *err,
                          size_t err_len) {
    if (!json_is_array(v)) {
        dpo_errf(err, err_len, "%s must be a list of messages", where);
        return -1;
    }
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        char at[160];
        snprintf(at, sizeof at, "%s[%zu]", where, i);
        if (!json_is_object(m)) {
            dpo_errf(err, err_len, "%s: a message must be an object with \"role\" and \"content\"", at);
            return -1;
        }
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role) || json_string_length(role) == 0) {
            dpo_errf(err, err_len, "%s: missing or non-string \"role\"", at);
            return -1;
        }
        if (!content) {
            dpo_errf(err, err_len, "%s: missing \"content\"", at);
            return -1;
        }
        char *text = content_text(content, at, err, err_len);
        if (!text) return -1;
        msgs_push(out, json_string_value(role), text);
    }
    return 0;
}

// A string (wrapped as one message of `role`) or a list of messages.
static int parse_turns(json_t *v, const char *key, const char *role, prep_msgs_t *out, char *err,
                       size_t err_len) {
    if (!v) {
        dpo_errf(err, err_len, "missing key \"%s\"", key);
        return -1;
    }
    if (json_is_string(v)) {
        char *text = content_text(v, key, err, err_len);
        if (!text) return -1;
        msgs_push(out, role, text);
        return 0;
    }
    if (!json_is_array(v)) {
        dpo_errf(err, err_len, "\"%s\" must be a string or a list of messages, not %s", key,
                 json_is_object(v) ? "an object" : json_is_number(v) ? "a number" : "null/bool");
        return -1;
    }
    return parse_messages(v, key, out, err, err_len);
}

static bool same_msg(const prep_msg_t *a, const prep_msg_t *b) {
    return strcmp(a->role, b->role) == 0 && strcmp(a->content, b->content) == 0;
}

static int parse_nemo(json_t *rec, prep_record_t *r, char *err, size_t err_len) {
    json_t *ctx = json_object_get(rec, "context"), *comps = json_object_get(rec, "completions");
    if (!ctx) return dpo_errf(err, err_len, "missing key \"context\""), -1;
    if (parse_messages(ctx, "context", &r->prompt, err, err_len) < 0) return -1;
    if (!json_is_array(comps)) {
        dpo_errf(err, err_len, "\"completions\" must be a list of {\"rank\", \"completion\"}");
        return -1;
    }
    if (json_array_size(comps) != 2) {
        dpo_errf(err, err_len, "\"completions\" has %zu entries; DPO needs exactly 2",
                 json_array_size(comps));
        return -1;
    }
    json_int_t rank[2];
    prep_msgs_t tmp[2] = {{0}};
    int rc = -1;
    for (int k = 0; k < 2; k++) {
        json_t *c = json_array_get(comps, (size_t)k);
        json_t *rk = json_is_object(c) ? json_object_get(c, "rank") : NULL;
        char where[64];
        snprintf(where, sizeof where, "completions[%d].completion", k);
        if (!json_is_integer(rk)) {
            dpo_errf(err, err_len, "completions[%d]: missing or non-integer \"rank\"", k);
            goto out;
        }
        rank[k] = json_integer_value(rk);
        json_t *msgs = json_object_get(c, "completion");
        if (!msgs) {
            dpo_errf(err, err_len, "completions[%d]: missing \"completion\"", k);
            goto out;
        }
        if (parse_messages(msgs, where, &tmp[k], err, err_len) < 0) goto out;
    }
    if (rank[0] == rank[1]) {
        dpo_errf(err, err_len, "both completions have rank %lld (a tie: no preference)",
                 (long long)rank[0]);
        goto out;
    }
    int best = rank[0] < rank[1] ? 0 : 1;  // the lower rank is preferred
    r->chosen = tmp[best];
    r->rejected = tmp[1 - best];
    memset(tmp, 0, sizeof tmp);
    rc = 0;
out:
    msgs_free(&tmp[0]);
    msgs_free(&tmp[1]);
    return rc;
}

// TRL implicit prompt: the prompt is the longest shared prefix of the two lists,
// cut so that each side keeps at least its final message.
static int parse_trl(json_t *rec, const prep_keys_t *keys, prep_record_t *r, char *err,
                     size_t err_len) {
    prep_msgs_t c = {0}, j = {0};
    int rc = -1;
    json_t *cv = json_object_get(rec, keys->chosen), *rv = json_object_get(rec, keys->rejected);
    if (!json_is_array(cv) || !json_is_array(rv)) {
        dpo_errf(err, err_len,
                 "\"%s\" and \"%s\" without \"%s\" must be message lists (TRL's implicit-prompt "
                 "form)",
                 keys->chosen, keys->rejected, keys->prompt);
        goto out;
    }
    if (parse_messages(cv, keys->chosen, &c, err, err_len) < 0 ||
        parse_messages(rv, keys->rejected, &j, err, err_len) < 0)
        goto out;
    int shared = 0;
    while (shared < c.n - 1 && shared < j.n - 1 && same_msg(&c.m[shared], &j.m[shared])) shared++;
    if (shared == 0) {
        dpo_errf(err, err_len, "\"%s\" and \"%s\" share no prompt messages", keys->chosen,
                 keys->rejected);
        goto out;
    }
    msgs_copy(&r->prompt, &c, 0, shared);
    msgs_copy(&r->chosen, &c, shared, c.n);
    msgs_copy(&r->rejected, &j, shared, j.n);
    rc = 0;
out:
    msgs_free(&c);
    msgs_free(&j);
    return rc;
}

// Each completion must end with the assistant turn that is trained on, with text.
static int check_completion(const prep_msgs_t *v, const char *side, char *err, size_t err_len) {
    if (v->n == 0) return dpo_errf(err, err_len, "%s completion has no messages", side), -1;
    const prep_msg_t *last = &v->m[v->n - 1];
    if (strcmp(last->role, "assistant") != 0) {
        dpo_errf(err, err_len, "%s completion ends with a \"%s\" message; it must end with an "
                 "\"assistant\" message", side, last->role);
        return -1;
    }
    if (last->content[0] == '\0') return dpo_errf(err, err_len, "%s completion is empty", side), -1;
    return 0;
}

int prep_parse_record(json_t *rec, prep_format_t fmt, const prep_keys_t *keys, prep_record_t *r,
                      char *err, size_t err_len) {
    msgs_clear(&r->prompt);
    msgs_clear(&r->chosen);
    msgs_clear(&r->rejected);
    if (!json_is_object(rec)) return dpo_errf(err, err_len, "a record must be a JSON object"), -1;
    int rc = -1;
    switch (fmt) {
    case FMT_NEMO: rc = parse_nemo(rec, r, err, err_len); break;
    case FMT_LEGACY:
        if (!json_is_string(json_object_get(rec, "prompt")))
            return dpo_errf(err, err_len, "missing or non-string \"prompt\""), -1;
        if (!json_is_string(json_object_get(rec, "chosen_response")) ||
            !json_is_string(json_object_get(rec, "rejected_response")))
            return dpo_errf(err, err_len,
                            "\"chosen_response\" and \"rejected_response\" must be strings"),
                   -1;
        rc = parse_turns(json_object_get(rec, "prompt"), "prompt", "user", &r->prompt, err,
                         err_len);
        if (rc == 0)
            rc = parse_turns(json_object_get(rec, "chosen_response"), "chosen_response",
                             "assistant", &r->chosen, err, err_len);
        if (rc == 0)
            rc = parse_turns(json_object_get(rec, "rejected_response"), "rejected_response",
                             "assistant", &r->rejected, err, err_len);
        break;
    case FMT_BINARY:
        rc = parse_turns(json_object_get(rec, keys->prompt), keys->prompt, "user", &r->prompt, err,
                         err_len);
        if (rc == 0)
            rc = parse_turns(json_object_get(rec, keys->chosen), keys->chosen, "assistant",
                             &r->chosen, err, err_len);
        if (rc == 0)
            rc = parse_turns(json_object_get(rec, keys->rejected), keys->rejected, "assistant",
                             &r->rejected, err, err_len);
        break;
    case FMT_TRL: rc = parse_trl(rec, keys, r, err, err_len); break;
    case FMT_AUTO:
        dpo_errf(err, err_len,
                 "record matches no input format (expected context+completions, %s+%s+%s, "
                 "prompt+chosen_response+rejected_response, or %s+%s message lists)",
                 keys->prompt, keys->chosen, keys->rejected, keys->chosen, keys->rejected);
        return -1;
    }
    if (rc < 0) return -1;
    if (check_completion(&r->chosen, "chosen", err, err_len) < 0 ||
        check_completion(&r->rejected, "rejected", err, err_len) < 0)
        return -1;
    return 0;
}

void prep_record_free(prep_record_t *r) {
    msgs_free(&r->prompt);
    msgs_free(&r->chosen);
    msgs_free(&r->rejected);
}
