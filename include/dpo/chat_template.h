// chat_template.h — renders preference records into the text that is tokenised:
// the masked part (everything up to and including the assistant header of the final
// turn) and the trained completion (the final assistant content plus the end-of-turn
// marker). Built-in: chatml (Qwen), llama3, llama2 ([INST], also Mistral), plain;
// `auto` reads the markers of tokenizer_config.json's chat_template; custom per-role
// prefixes/suffixes come from a libconfig file (doc/data-prep.md).
#ifndef DPO_CHAT_TEMPLATE_H
#define DPO_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "dpo/prep_record.h"
#include "dpo/tokenizer.h"
#include "dpo/util.h"

typedef struct {
    char *prefix, *suffix;  // prefix may contain "{role}"
    char *lead;             // right before the content, and part of a trained
                            // completion (llama2's " " before the answer, so that
                            // SentencePiece sees "▁answer" as one piece)
    bool set;
} tmpl_role_t;

typedef struct {
    char name[32];         // chatml | llama3 | llama2 | plain | custom
    char *bos;             // text at the very start ("" for none)
    bool trim;             // strip surrounding whitespace from contents (llama3, llama2)
    bool fold_system;      // llama2: the system text goes inside the first user turn
    char *fold_prefix, *fold_suffix;  // around the folded system text
    tmpl_role_t system, user, assistant, other;  // `other`: any further role
    char *final_suffix;    // ends the trained completion (end-of-turn / EOS text)
} chat_template_t;

// name: chatml, llama3, llama2, mistral (= llama2), plain, auto, or custom (then
// `custom_file` is a libconfig file with a `chat_template` group). Checks that the
// template's markers are tokens of `tok`. `picked` receives a one-line note of what
// was chosen and why. Returns 0, or -1 with a message.
int chat_template_init(chat_template_t *t, const char *name, const char *custom_file,
                       const dpo_tokenizer_t *tok, char *picked, size_t picked_len, char *err,
                       size_t err_len);
void chat_template_free(chat_template_t *t);

// Renders one side of a pair. masked = bos + prompt messages + all completion
// messages but the last + the assistant prefix; completion = the last (assistant)
// message's content + final_suffix. Returns 0, or -1 with a message (e.g. a role
// the template cannot express).
int chat_template_render(const chat_template_t *t, const prep_msgs_t *prompt,
                         const prep_msgs_t *completion, dstr_t *masked, dstr_t *completion_text,
                         char *err, size_t err_len);

#endif
