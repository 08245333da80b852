/*-------------------------------------------------------------------------
 *
 * password.h
 *		argon2 hashing and verification, PHC strings (password.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_PASSWORD_H
#define US_PASSWORD_H

#include "us_common.h"

/* A parsed argon2 PHC string. */
typedef struct UsPhc
{
	int			type;			/* argon2_type */
	uint32		version;
	uint32		m_cost;			/* KiB */
	uint32		t_cost;
	uint32		lanes;
	uint8	   *salt;
	uint32		saltlen;
	uint8	   *hash;
	uint32		hashlen;
} UsPhc;

extern void us_password_init(void);
extern char *us_password_hash(const char *password, size_t len);
extern bool us_phc_parse(const char *phc, UsPhc *out);
extern const char *us_phc_import_problem(const char *phc);
extern bool us_password_verify(const UsPhc *phc, const char *password, size_t len);
extern bool us_phc_needs_rehash(const UsPhc *phc);
extern void us_password_dummy_work(const char *password, size_t len);
extern void us_forget_password(text *copy);

#define US_SHA256_BYTES	32
extern void us_sha256(const uint8 *prefix, size_t prefixlen, const uint8 *data, size_t len,
					  uint8 *out);

#endif							/* US_PASSWORD_H */
