// tokenizer.h — a Hugging Face `tokenizer.json` reader and encoder that gives the
// same ids as the `tokenizers` library (add_special_tokens=False) for byte-level
// BPE (GPT-2, Llama 3, Qwen2/2.5/3) and SentencePiece-style BPE with byte fallback
// (Llama 2, Mistral). Used by dpo_prep (chat rendering + tokenisation) and by the
// `dpo_prep tokenize` conformance filter.
//
// Encoding pipeline, as in tokenizers: split the text on added tokens, then for
// each remaining segment normalise (NFC, Prepend, Replace, ...), pre-tokenise
// (Split regex through PCRE2, ByteLevel, Metaspace), and run BPE on each piece.
#ifndef DPO_TOKENIZER_H
#define DPO_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dpo_tokenizer dpo_tokenizer_t;

// A growable id buffer (callers reuse one across calls to avoid allocations).
typedef struct {
    int32_t *ids;
    size_t len, cap;
} tok_ids_t;

void tok_ids_clear(tok_ids_t *v);
void tok_ids_push(tok_ids_t *v, int32_t id);
void tok_ids_free(tok_ids_t *v);

// Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (bos/eos
// tokens, add_bos_token, chat_template). Returns NULL with a message naming the
// file and what is unsupported or malformed.
dpo_tokenizer_t *tokenizer_load(const char *dir, char *err, size_t err_len);
void tokenizer_free(dpo_tokenizer_t *t);

// Appends the ids of `text` (len bytes of UTF-8) to `out`. Added and special tokens
// written inside the text are recognised, as tokenizers does; no BOS/EOS or other
// post-processor tokens are added. Invalid UTF-8 is decoded the way Python's
// bytes.decode("utf-8", "replace") does (each maximal invalid subpart becomes
// U+FFFD) and counted in *n_invalid when non-NULL. Returns 0, or -1 with a message.
// Not for concurrent calls on one tokenizer (it keeps a word cache): one per thread.
int tokenizer_encode(dpo_tokenizer_t *t, const char *text, size_t len, tok_ids_t *out,
                     size_t *n_invalid, char *err, size_t err_len);

// Decodes ids to text as tokenizers' decode(skip_special_tokens=False) does (the
// tokenizer.json decoder: ByteLevel, or Replace/ByteFallback/Fuse/Strip). Returns a
// malloc'd NUL-terminated string (its byte length in *len when non-NULL), or NULL
// with a message for an id outside the vocabulary.
char *tokenizer_decode(const dpo_tokenizer_t *t, const int32_t *ids, size_t n, size_t *len,
                       char *err, size_t err_len);

// Token string <-> id for the model vocabulary and added tokens; -1 / NULL if absent.
int32_t tokenizer_token_to_id(const dpo_tokenizer_t *t, const char *token);
const char *tokenizer_id_to_token(const dpo_tokenizer_t *t, int32_t id);

// Largest id + 1 over the model vocabulary and the added tokens.
int tokenizer_vocab_size(const dpo_tokenizer_t *t);

// From tokenizer_config.json (NULL / false when absent). bos/eos accept both the
// string form and the {"content": ...} form.
const char *tokenizer_bos_token(const dpo_tokenizer_t *t);
const char *tokenizer_eos_token(const dpo_tokenizer_t *t);
bool tokenizer_add_bos_token(const dpo_tokenizer_t *t);
const char *tokenizer_chat_template(const dpo_tokenizer_t *t);
// tokenizer_class from tokenizer_config.json, or NULL.
const char *tokenizer_class(const dpo_tokenizer_t *t);

// Identity written into datasets and checked against models: "<model type>:" plus
// the SHA-256 of tokenizer.json's bytes, e.g. "bpe:3f2a...".
const char *tokenizer_identity(const dpo_tokenizer_t *t);

#endif
