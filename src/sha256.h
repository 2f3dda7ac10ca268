/* sha256.h - SHA-256 (FIPS 180-4), for hashing agent API keys before they are stored. */
#ifndef ROUTER_SHA256_H
#define ROUTER_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);
/* Lower-case hex of the digest: 64 characters and a NUL. */
void sha256_hex(const void *data, size_t len, char out[2 * SHA256_LEN + 1]);

#endif
