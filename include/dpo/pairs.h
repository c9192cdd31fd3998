// pairs.h — NeMo Gym rollouts → DPO preference pairs (the logic of dpo_pairs).
//
// Semantics are those of NeMo Gym's transform_gym_to_dpo.py (doc/dpo-pairs.md):
// prompt = last user message, response = first text of the last message item,
// rewards kept as JSON gave them (an integer stays an integer, as in Python), and
// the output encoded byte for byte as Python's json.dumps would, so a file made by
// the script and one made here compare equal with cmp.
#ifndef DPO_PAIRS_H
#define DPO_PAIRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

// A JSON number the way Python holds it: integers stay integers through subtraction
// and sums (so an integer reward is written back as "1", not "1.0").
typedef struct {
    bool is_int;
    long long i;  // the value when is_int
    double d;     // the value as a double (also set when is_int)
} pairs_num_t;

pairs_num_t pairs_num_int(long long i);
pairs_num_t pairs_num_real(double d);
// a - b with Python's rules: int - int is an int (a double on int64 overflow), else float.
pairs_num_t pairs_num_sub(pairs_num_t a, pairs_num_t b);

// Python's sum() over a sequence of numbers, started from the int 0: exact integer
// sum while every term is an int, then a float sum, compensated (Neumaier) over the
// float terms as Python >= 3.12 does.
typedef struct {
    bool in_float;
    long long i;
    double f, c;
} pairs_sum_t;
void pairs_sum_add(pairs_sum_t *s, pairs_num_t x);
pairs_num_t pairs_sum_value(const pairs_sum_t *s);

// Python's repr(float) (shortest round-trip digits; "1e-05", "0.1", "1e+16", "-0.0";
// non-finite as json.dumps writes them: NaN, Infinity). cap >= 32.
void pairs_format_double(double x, char *buf, size_t cap);
void pairs_format_num(pairs_num_t v, char *buf, size_t cap);

// Growable byte buffer (always NUL-terminated).
typedef struct {
    char *p;
    size_t len, cap;
} pairs_buf_t;
void pairs_buf_put(pairs_buf_t *b, const char *s, size_t n);
void pairs_buf_puts(pairs_buf_t *b, const char *s);
void pairs_buf_free(pairs_buf_t *b);

// Appends v encoded as Python's json.dumps(v) (indent < 0) or json.dumps(v, indent=n):
// ensure_ascii escapes (lowercase \uXXXX, surrogate pairs), ", " and ": " separators,
// keys in insertion order.
void pairs_json_encode(pairs_buf_t *b, const json_t *v, int indent);

typedef enum { PAIRS_CONTEXT_LAST = 0, PAIRS_CONTEXT_FULL = 1 } pairs_context_t;

// What pairing needs of one rollout; the texts are pre-encoded once so a rollout that
// appears in many (stratified) pairs is not encoded again for each.
typedef struct {
    char *prompt;    // JSON text of the prompt: a string, or (context full) a message list
    char *key;       // grouping key: the prompt (last), canonical JSON of the list (full)
    char *response;  // JSON text of the response string
    pairs_num_t reward;
    char reward_text[40];  // the reward as written out (formatted once, used per pair)
    int64_t line;          // input line, for messages
} pairs_rollout_t;

// Extracts a rollout from a parsed record. Returns 0, or -1 with what is wrong in err
// (without the file:line prefix, which the caller knows).
int pairs_rollout_parse(const json_t *rec, pairs_context_t ctx, pairs_rollout_t *out, char *err,
                        size_t err_len);
void pairs_rollout_free(pairs_rollout_t *r);

// Called for each pair in output order; a non-zero return stops the pairing and is
// returned by it.
typedef int (*pairs_emit_fn)(void *user, const pairs_rollout_t *chosen,
                             const pairs_rollout_t *rejected, pairs_num_t gap);

// same_prompt: groups by key in first-appearance order; in each group of >= 2, the
// first rollout with the highest reward against the last with the lowest (what the
// script's stable descending sort yields), when the gap >= min_gap. *n_prompts gets
// the number of groups.
int pairs_same_prompt(const pairs_rollout_t *r, size_t n, double min_gap, size_t *n_prompts,
                      pairs_emit_fn emit, void *user);

// stratified: every rollout with reward >= high against every rollout with reward <= low
// (file order, high-major) when the gap >= min_gap; the chosen one's prompt is used.
int pairs_stratified(const pairs_rollout_t *r, size_t n, double min_gap, double high, double low,
                     pairs_emit_fn emit, void *user);

// One output record, without the newline: {"prompt": ..., "chosen": ..., "rejected": ...,
// "reward_gap": ..., "chosen_reward": ..., "rejected_reward": ...}.
void pairs_format_record(pairs_buf_t *b, const pairs_rollout_t *chosen,
                         const pairs_rollout_t *rejected, pairs_num_t gap);

#endif
