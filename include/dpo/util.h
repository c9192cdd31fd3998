// util.h — small file-system and time helpers shared by the I/O modules and the
// trainer.
#ifndef DPO_UTIL_H
#define DPO_UTIL_H

#include <stddef.h>

// mkdir -p: creates dir and its parents. Returns 0, or -1 with a message in err.
int util_mkdir_p(const char *dir, char *err, size_t err_len);
// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ".
void util_iso_time(char *buf, size_t n);

// One "--key VALUE" or "--key=VALUE" option at argv[*i]: copies "--key" into key
// and points *val at the value (advancing *i past a separate value). Returns 0,
// -1 when the key does not fit (an unknown option), -2 when the value is missing.
int util_option(int argc, char **argv, int *i, char *key, size_t key_len, char **val);

// A growable NUL-terminated byte string.
typedef struct {
    char *s;
    size_t len, cap;
} dstr_t;

void dstr_clear(dstr_t *b);
void dstr_append(dstr_t *b, const char *s, size_t n);
void dstr_puts(dstr_t *b, const char *s);
void dstr_free(dstr_t *b);

#endif
