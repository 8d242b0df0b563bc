/* sha256: the content fingerprint of context entries (FIPS 180-4), kept in
 * tree so the daemon needs no crypto library for a checksum. */
#ifndef ORCHFS_SHA256_H
#define ORCHFS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32

struct sha256_ctx {
	uint32_t state[8];
	uint64_t total;          /* bytes hashed so far */
	uint8_t block[64];       /* partial input block */
	size_t fill;             /* bytes used in block */
};

void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t len);
/* Finishes the hash; c must be re-initialised before it is used again. */
void sha256_final(struct sha256_ctx *c, uint8_t digest[SHA256_DIGEST_LEN]);
/* Lower-case hex of a digest, NUL-terminated. */
void sha256_digest_hex(const uint8_t digest[SHA256_DIGEST_LEN], char out[65]);
/* One-shot: the hex digest of data. */
void sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA256 (RFC 2104) of msg under key. */
void hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
		 uint8_t out[SHA256_DIGEST_LEN]);

#endif
