// sha256.h — SHA-256 (FIPS 180-4), used for the tokenizer identity written into
// datasets (tokenizer_identity) so a model can check it was given matching data.
#ifndef DPO_SHA256_H
#define DPO_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t nbytes;   // message length so far
    uint8_t buf[64];   // partial block
    size_t nbuf;
} sha256_ctx_t;

void sha256_init(sha256_ctx_t *c);
void sha256_update(sha256_ctx_t *c, const void *data, size_t n);
void sha256_final(sha256_ctx_t *c, uint8_t digest[32]);

// One-shot digest as 64 lowercase hex digits plus NUL.
void sha256_hex(const void *data, size_t n, char hex[65]);

#endif
