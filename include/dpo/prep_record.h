// prep_record.h — one preference record of dpo_prep's input, whatever its format:
// a shared prompt (list of messages) and two completions (lists of messages ending
// with the assistant turn that is trained on).
//
// Formats (doc/data-prep.md), detected per file from its first record or forced:
//   nemo    {"context": [msg...], "completions": [{"rank": r, "completion": [msg...]} x2]}
//           (NeMo RL PreferenceDataset; the lower rank is chosen)
//   binary  {"prompt": str|[msg...], "chosen": str|[msg...], "rejected": str|[msg...]}
//           (BinaryPreferenceDataset, TRL's explicit-prompt form, and dpo_pairs' output;
//           key names configurable)
//   legacy  {"prompt": str, "chosen_response": str, "rejected_response": str}
//   trl     {"chosen": [msg...], "rejected": [msg...]} sharing a prefix (TRL's implicit
//           prompt; the prompt is the longest shared prefix of messages)
// A message is {"role": str, "content": str | [{"type": "text", "text": str}...]}.
#ifndef DPO_PREP_RECORD_H
#define DPO_PREP_RECORD_H

#include <stddef.h>

#include <jansson.h>

typedef enum { FMT_AUTO = 0, FMT_NEMO, FMT_BINARY, FMT_LEGACY, FMT_TRL } prep_format_t;

typedef struct {
    const char *prompt, *chosen, *rejected;  // key names of the binary format
} prep_keys_t;

typedef struct {
    char *role, *content;  // owned, NUL-terminated UTF-8
} prep_msg_t;

typedef struct {
    prep_msg_t *m;
    int n, cap;
} prep_msgs_t;

typedef struct {
    prep_msgs_t prompt, chosen, rejected;
} prep_record_t;

// "auto", "nemo", "binary", "pairs" (= binary), "legacy", "trl"; -1 if unknown.
int prep_format_parse(const char *name);
const char *prep_format_name(prep_format_t f);

// Which format a record's keys say it is; FMT_AUTO when none fits.
prep_format_t prep_detect_format(json_t *rec, const prep_keys_t *keys);

// Fills `r` (reset first; reuse one record across calls). Returns 0, or -1 with a
// message saying what is wrong (the caller adds file:line).
int prep_parse_record(json_t *rec, prep_format_t fmt, const prep_keys_t *keys, prep_record_t *r,
                      char *err, size_t err_len);
void prep_record_free(prep_record_t *r);

#endif
