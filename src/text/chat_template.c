// chat_template.c — chat rendering for dpo_prep (see chat_template.h).
#include "dpo/chat_template.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/error.h"

static char *sdup(const char *s) {
    size_t n = strlen(s);
    char *d = xmalloc(n + 1, "chat template");
    memcpy(d, s, n + 1);
    return d;
}

static char *scat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *d = xmalloc(na + nb + 1, "chat template");
    memcpy(d, a, na);
    memcpy(d + na, b, nb + 1);
    return d;
}

static void role_set(tmpl_role_t *r, const char *prefix, const char *suffix) {
    free(r->prefix);
    free(r->suffix);
    free(r->lead);
    r->prefix = sdup(prefix);
    r->suffix = sdup(suffix);
    r->lead = sdup("");
    r->set = true;
}

static void role_free(tmpl_role_t *r) {
    free(r->prefix);
    free(r->suffix);
    free(r->lead);
    memset(r, 0, sizeof *r);
}

void chat_template_free(chat_template_t *t) {
    free(t->bos);
    free(t->fold_prefix);
    free(t->fold_suffix);
    free(t->final_suffix);
    role_free(&t->system);
    role_free(&t->user);
    role_free(&t->assistant);
    role_free(&t->other);
    memset(t, 0, sizeof *t);
}

// Every marker a template writes must be one token of the tokenizer; otherwise the
// template would be tokenised as ordinary text and the model would never see it.
static int need_token(const dpo_tokenizer_t *tok, const char *tmpl, const char *token, char *err,
                      size_t err_len) {
    if (token && tokenizer_token_to_id(tok, token) >= 0) return 0;
    dpo_errf(err, err_len,
             "chat template %s needs the token \"%s\", which this tokenizer does not have "
             "(choose another --chat-template)",
             tmpl, token ? token : "(bos/eos not set in tokenizer_config.json)");
    return -1;
}

static int builtin(chat_template_t *t, const char *name, const dpo_tokenizer_t *tok, char *err,
                   size_t err_len) {
    const char *bos = tokenizer_bos_token(tok), *eos = tokenizer_eos_token(tok);
    snprintf(t->name, sizeof t->name, "%s", name);
    if (strcmp(name, "chatml") == 0) {
        if (need_token(tok, name, "<|im_start|>", err, err_len) < 0 ||
            need_token(tok, name, "<|im_end|>", err, err_len) < 0)
            return -1;
        t->bos = sdup("");
        role_set(&t->other, "<|im_start|>{role}\n", "<|im_end|>\n");
        t->final_suffix = sdup("<|im_end|>");
    } else if (strcmp(name, "llama3") == 0) {
        const char *b = bos ? bos : "<|begin_of_text|>";
        if (need_token(tok, name, b, err, err_len) < 0 ||
            need_token(tok, name, "<|start_header_id|>", err, err_len) < 0 ||
            need_token(tok, name, "<|end_header_id|>", err, err_len) < 0 ||
            need_token(tok, name, "<|eot_id|>", err, err_len) < 0)
            return -1;
        t->bos = sdup(b);
        t->trim = true;
        role_set(&t->other, "<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>");
        t->final_suffix = sdup("<|eot_id|>");
    } else if (strcmp(name, "llama2") == 0 || strcmp(name, "mistral") == 0) {
        snprintf(t->name, sizeof t->name, "llama2");
        if (need_token(tok, name, bos, err, err_len) < 0 ||
            need_token(tok, name, eos, err, err_len) < 0)
            return -1;
        // <s>[INST] {system folded in} {user} [/INST] {assistant} </s><s>[INST] ...
        t->bos = sdup("");
        t->trim = true;
        t->fold_system = true;
        t->fold_prefix = sdup("<<SYS>>\n");
        t->fold_suffix = sdup("\n<</SYS>>\n\n");
        char *up = scat(bos, "[INST] "), *as = scat(" ", eos);
        role_set(&t->user, up, " [/INST]");
        role_set(&t->assistant, "", as);
        free(t->assistant.lead);
        t->assistant.lead = sdup(" ");
        t->final_suffix = sdup(as);
        free(up);
        free(as);
    } else if (strcmp(name, "plain") == 0) {
        // Contents back to back: completion-style data where the prompt text already
        // ends where the answer begins. BOS first and EOS last when the tokenizer has them.
        t->bos = sdup(bos && tokenizer_token_to_id(tok, bos) >= 0 ? bos : "");
        role_set(&t->other, "", "");
        t->final_suffix = sdup(eos && tokenizer_token_to_id(tok, eos) >= 0 ? eos : "");
    } else {
        dpo_errf(err, err_len,
                 "unknown chat template \"%s\" (auto, chatml, llama3, llama2, mistral, plain, "
                 "custom)",
                 name);
        return -1;
    }
    return 0;
}

static int lookup_str(config_t *cf, const char *path, const char *key, const char **out,
                      char *err, size_t err_len) {
    config_setting_t *s = config_lookup(cf, key);
    if (!s) return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        dpo_errf(err, err_len, "%s:%d: %s must be a string", path, config_setting_source_line(s),
                 key);
        return -1;
    }
    *out = config_setting_get_string(s);
    return 0;
}

static int load_custom(chat_template_t *t, const char *path, char *err, size_t err_len) {
    config_t cf;
    config_init(&cf);
    int rc = -1;
    if (!config_read_file(&cf, path)) {
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
            dpo_errf(err, err_len, "%s: cannot read the chat template file", path);
        else
            dpo_errf(err, err_len, "%s:%d: %s", path, config_error_line(&cf),
                     config_error_text(&cf));
        goto out;
    }
    if (!config_lookup(&cf, "chat_template")) {
        dpo_errf(err, err_len, "%s: no \"chat_template\" group", path);
        goto out;
    }
    snprintf(t->name, sizeof t->name, "custom");
    const char *bos = "", *final = NULL;
    if (lookup_str(&cf, path, "chat_template.bos", &bos, err, err_len) < 0 ||
        lookup_str(&cf, path, "chat_template.final_suffix", &final, err, err_len) < 0)
        goto out;
    config_setting_t *tr = config_lookup(&cf, "chat_template.trim");
    if (tr) {
        if (config_setting_type(tr) != CONFIG_TYPE_BOOL) {
            dpo_errf(err, err_len, "%s:%d: chat_template.trim must be true or false", path,
                     config_setting_source_line(tr));
            goto out;
        }
        t->trim = config_setting_get_bool(tr);
    }
    t->bos = sdup(bos);
    const char *roles[] = {"system", "user", "assistant", "other"};
    tmpl_role_t *slots[] = {&t->system, &t->user, &t->assistant, &t->other};
    for (int i = 0; i < 4; i++) {
        char kp[64], ks[64];
        snprintf(kp, sizeof kp, "chat_template.%s.prefix", roles[i]);
        snprintf(ks, sizeof ks, "chat_template.%s.suffix", roles[i]);
        const char *p = NULL, *s = NULL;
        if (lookup_str(&cf, path, kp, &p, err, err_len) < 0 ||
            lookup_str(&cf, path, ks, &s, err, err_len) < 0)
            goto out;
        char kl[64];
        snprintf(kl, sizeof kl, "chat_template.%s.lead", roles[i]);
        const char *l = NULL;
        if (lookup_str(&cf, path, kl, &l, err, err_len) < 0) goto out;
        if (p || s || l) {
            role_set(slots[i], p ? p : "", s ? s : "");
            free(slots[i]->lead);
            slots[i]->lead = sdup(l ? l : "");
        }
    }
    if (!t->assistant.set && !t->other.set) {
        dpo_errf(err, err_len, "%s: chat_template needs an \"assistant\" (or \"other\") group",
                 path);
        goto out;
    }
    if (!final) {
        // Default: the assistant suffix without trailing whitespace (the newline after
        // an end-of-turn marker separates turns; it is not part of the answer).
        const tmpl_role_t *a = t->assistant.set ? &t->assistant : &t->other;
        size_t n = strlen(a->suffix);
        while (n && (a->suffix[n - 1] == '\n' || a->suffix[n - 1] == ' ')) n--;
        t->final_suffix = xmalloc(n + 1, "chat template");
        memcpy(t->final_suffix, a->suffix, n);
        t->final_suffix[n] = '\0';
    } else {
        t->final_suffix = sdup(final);
    }
    rc = 0;
out:
    config_destroy(&cf);
    return rc;
}

int chat_template_init(chat_template_t *t, const char *name, const char *custom_file,
                       const dpo_tokenizer_t *tok, char *picked, size_t picked_len, char *err,
                       size_t err_len) {
    memset(t, 0, sizeof *t);
    int rc;
    if (strcmp(name, "custom") == 0) {
        if (!custom_file) {
            dpo_errf(err, err_len, "--chat-template custom needs --template-file FILE");
            return -1;
        }
        rc = load_custom(t, custom_file, err, err_len);
        if (rc == 0) snprintf(picked, picked_len, "custom (from %s)", custom_file);
    } else if (strcmp(name, "auto") == 0) {
        const char *ct = tokenizer_chat_template(tok);
        const char *pick = "plain", *why = "tokenizer_config.json has no chat_template";
        if (ct) {
            why = "no known markers in tokenizer_config.json's chat_template";
            if (strstr(ct, "<|im_start|>")) pick = "chatml", why = "its chat_template uses <|im_start|>";
            else if (strstr(ct, "<|start_header_id|>"))
                pick = "llama3", why = "its chat_template uses <|start_header_id|>";
            else if (strstr(ct, "[INST]")) pick = "llama2", why = "its chat_template uses [INST]";
        }
        rc = builtin(t, pick, tok, err, err_len);
        if (rc == 0) snprintf(picked, picked_len, "%s (auto: %s)", pick, why);
    } else {
        rc = builtin(t, name, tok, err, err_len);
        if (rc == 0) snprintf(picked, picked_len, "%s", t->name);
    }
    if (rc < 0) chat_template_free(t);
    return rc;
}

static void append_trimmed(dstr_t *b, const char *s, bool trim) {
    size_t n = strlen(s);
    if (trim) {
        while (n && strchr(" \t\r\n", *s)) s++, n--;
        while (n && strchr(" \t\r\n", s[n - 1])) n--;
    }
    dstr_append(b, s, n);
}

// The prefix with "{role}" replaced by the role's name.
static void append_prefix(dstr_t *b, const char *prefix, const char *role) {
    const char *at;
    while ((at = strstr(prefix, "{role}")) != NULL) {
        dstr_append(b, prefix, (size_t)(at - prefix));
        dstr_puts(b, role);
        prefix = at + 6;
    }
    dstr_puts(b, prefix);
}

static const tmpl_role_t *role_of(const chat_template_t *t, const char *role) {
    const tmpl_role_t *r = NULL;
    if (strcmp(role, "system") == 0) r = &t->system;
    else if (strcmp(role, "user") == 0) r = &t->user;
    else if (strcmp(role, "assistant") == 0) r = &t->assistant;
    if (r && r->set) return r;
    return t->other.set ? &t->other : NULL;
}

// Appends messages [0, n) and, when `open_assistant`, the assistant prefix.
static int render_turns(const chat_template_t *t, const prep_msg_t *const *m, int n,
                        dstr_t *out, char *err, size_t err_len) {
    const char *pending_system = NULL;
    for (int i = 0; i < n; i++) {
        const char *role = m[i]->role;
        if (t->fold_system && strcmp(role, "system") == 0) {
            if (i != 0) {
                dpo_errf(err, err_len, "template %s allows a system message only first", t->name);
                return -1;
            }
            pending_system = m[i]->content;
            continue;
        }
        const tmpl_role_t *r = role_of(t, role);
        if (!r) {
            dpo_errf(err, err_len, "template %s has no format for role \"%s\"", t->name, role);
            return -1;
        }
        append_prefix(out, r->prefix, role);
        if (pending_system) {
            if (strcmp(role, "user") != 0) {
                dpo_errf(err, err_len, "template %s needs a user message after the system message",
                         t->name);
                return -1;
            }
            dstr_t folded = {0};
            dstr_puts(&folded, t->fold_prefix);
            dstr_puts(&folded, pending_system);
            dstr_puts(&folded, t->fold_suffix);
            dstr_puts(&folded, m[i]->content);
            dstr_puts(out, r->lead);
            append_trimmed(out, folded.s, t->trim);
            dstr_free(&folded);
            pending_system = NULL;
        } else {
            dstr_puts(out, r->lead);
            append_trimmed(out, m[i]->content, t->trim);
        }
        dstr_puts(out, r->suffix);
    }
    if (pending_system) {
        dpo_errf(err, err_len, "template %s needs a user message after the system message", t->name);
        return -1;
    }
    return 0;
}

// No doubled EOS: content that already ends with the end-of-turn marker (e.g. an
// answer stored with its "</s>") loses that copy before the template adds its own.
static void cut_marker(dstr_t *b, const char *final_suffix) {
    const char *core = final_suffix;
    while (*core == ' ' || *core == '\n') core++;
    size_t nc = strlen(core);
    while (nc && (core[nc - 1] == ' ' || core[nc - 1] == '\n')) nc--;
    if (nc == 0 || b->len < nc || memcmp(b->s + b->len - nc, core, nc) != 0) return;
    b->len -= nc;
    while (b->len && (b->s[b->len - 1] == ' ' || b->s[b->len - 1] == '\n')) b->len--;
    b->s[b->len] = '\0';
}

int chat_template_render(const chat_template_t *t, const prep_msgs_t *prompt,
                         const prep_msgs_t *completion, dstr_t *masked, dstr_t *completion_text,
                         char *err, size_t err_len) {
    dstr_clear(masked);
    dstr_clear(completion_text);
    int n = prompt->n + completion->n - 1;  // every message but the trained one
    const prep_msg_t **all = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *all, "chat messages");
    for (int i = 0; i < prompt->n; i++) all[i] = &prompt->m[i];
    for (int i = 0; i + 1 < completion->n; i++) all[prompt->n + i] = &completion->m[i];
    dstr_puts(masked, t->bos);
    int rc = render_turns(t, all, n, masked, err, err_len);
    free(all);
    if (rc < 0) return -1;
    const prep_msg_t *last = &completion->m[completion->n - 1];
    const tmpl_role_t *r = role_of(t, last->role);
    if (!r) {
        dpo_errf(err, err_len, "template %s has no format for role \"%s\"", t->name, last->role);
        return -1;
    }
    append_prefix(masked, r->prefix, last->role);
    dstr_puts(completion_text, r->lead);
    append_trimmed(completion_text, last->content, t->trim);
    cut_marker(completion_text, t->final_suffix);
    dstr_puts(completion_text, t->final_suffix);
    return 0;
}
