/*
 * secret.h - wiping memory that held a secret (a password, a SASL
 * response, a cookie or Authorization header).
 *
 * Every wipe goes through secret_wipe, so that the sanitizer build checks
 * its size: OPENSSL_cleanse runs inside libcrypto, which AddressSanitizer
 * does not instrument, and a wipe past the end of a block went unreported
 * there (the IMAP SASL overflow of main at 278b31b). Under ASan a plain
 * memset of the same range runs first and is checked; release builds call
 * OPENSSL_cleanse alone, which the compiler cannot optimise away.
 */
#ifndef GATEHOUSE_SECRET_H
#define GATEHOUSE_SECRET_H

#include <stddef.h>
#include <string.h>

#include <openssl/crypto.h>

/* ASan's flag: GCC defines the macro, clang answers __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define SECRET__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECRET__ASAN 1
#endif
#endif

/* Overwrite p[0 .. n) with zeros; n must be within p's block. */
static inline void secret_wipe(void *p, size_t n)
{
#ifdef SECRET__ASAN
	memset(p, 0, n);
#endif
	OPENSSL_cleanse(p, n);
}

#endif
