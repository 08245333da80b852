/*-------------------------------------------------------------------------
 *
 * password.c
 *		argon2 password hashing and verification with libargon2, stored as
 *		PHC strings: $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<tag>
 *		with salt and tag in unpadded standard base64, the format every
 *		argon2 library reads and writes.
 *
 * All work happens in the calling process's thread: libargon2's high-level
 * calls start one thread per lane, which a backend does not want, so hashes
 * are computed through argon2_ctx() with threads = 1 (same result, lanes
 * computed in turn) and the PHC string is written and parsed here.
 *
 * argon2id 1.3 with one lane and a 16-byte salt (every hash this extension
 * makes with the default parallelism) is computed by libsodium instead, whose
 * core picks SIMD code at run time and was measured about 1.2x faster than
 * Debian's reference libargon2 (test/bench/run.sh).  Same algorithm, same
 * bytes: each library verifies the other's hashes (sql/passwords.sql,
 * test/t/001_argon2_interop.pl).
 * Verification takes every parameter from the stored string, so changing the
 * GUCs never invalidates existing hashes.  The parser is strict (libargon2's
 * limits, canonical base64, nothing else in the string), and gives a reason
 * when it refuses: the import_user batch kind reports it for hashes made by
 * other systems, which must also stay within a bound on what verifying them
 * costs (us_phc_import_problem).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <argon2.h>
#include <sodium.h>

#include <limits.h>

#include "common/base64.h"
#include "common/cryptohash.h"
#include "port.h"
#include "utils/guc.h"

#include "hash_cap.h"
#include "password.h"

#define US_SALT_BYTES	16
#define US_TAG_BYTES	32

/*
 * Largest salt and tag accepted in a stored string.  libargon2 allows more,
 * but no implementation writes anything near this, and it bounds the work
 * of parsing a hostile string.
 */
#define US_PHC_MAX_BYTES	1024

/*
 * Most an imported hash may cost to verify: memory (KiB) and block
 * computations (m * t, about 3 s here).  See us_phc_import_problem.
 */
#define US_IMPORT_MAX_MEMORY_KIB	262144	/* 256 MiB */
#define US_IMPORT_MAX_BLOCKS		1048576 /* e.g. 256 MiB x 4 passes */

/* GUC variables, named after their GUCs. */
static int	user_service_argon2_memory_kib = 19456;
static int	user_service_argon2_iterations = 2;
static int	user_service_argon2_parallelism = 1;

/* sodium_init() succeeded (us_password_init) */
static bool us_sodium_ready = false;

/*
 * us_password_init
 *		From _PG_init: the parameters of new hashes, and libsodium.  They are
 *		superuser-only: they decide how much memory and CPU every login
 *		costs.  Their ranges are libargon2's own limits (as far as an int GUC
 *		reaches); the one limit that ties two of them (memory >= 8 KiB per
 *		lane) is checked when hashing.
 */
void
us_password_init(void)
{
	DefineCustomIntVariable("user_service.argon2_memory_kib",
							"Memory cost of new argon2id password hashes.",
							"Stored hashes keep the parameters they were made with; "
							"a successful verify rehashes weaker ones (never stronger) with the current ones.",
							&user_service_argon2_memory_kib,
							19456,
							ARGON2_MIN_MEMORY,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("user_service.argon2_iterations",
							"Time cost (passes over memory) of new argon2id password hashes.",
							NULL,
							&user_service_argon2_iterations,
							2,
							ARGON2_MIN_TIME,
							INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("user_service.argon2_parallelism",
							"Parallelism (lanes) of new argon2id password hashes.",
							"The lanes are computed one after the other in the calling "
							"process; the parameter only changes the hash.",
							&user_service_argon2_parallelism,
							1,
							ARGON2_MIN_LANES,
							ARGON2_MAX_LANES,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	us_sodium_ready = sodium_init() >= 0;
}

/* libsodium's failure (its only one: memory), apart from libargon2's codes */
#define US_SODIUM_FAILED	INT_MIN

/*
 * us_argon2_compute
 *		Compute an argon2 tag in this thread, with libsodium when it can
 *		(argon2id 1.3, one lane, 16-byte salt), else libargon2.  Returns
 *		ARGON2_OK, libargon2's error code, or US_SODIUM_FAILED.  Never throws
 *		(us_argon2 holds a place of the hashing cap around it).
 */
static int
us_argon2_compute(argon2_type type, uint32 version, uint32 m_cost, uint32 t_cost,
				  uint32 lanes, const char *password, size_t pwdlen,
				  const uint8 *salt, uint32 saltlen, uint8 *out, uint32 outlen)
{
	argon2_context ctx;

	if (us_sodium_ready && type == Argon2_id && version == ARGON2_VERSION_13 &&
		lanes == 1 && saltlen == crypto_pwhash_argon2id_SALTBYTES &&
		outlen >= crypto_pwhash_argon2id_BYTES_MIN &&
		t_cost >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
		(uint64) m_cost * 1024 >= crypto_pwhash_argon2id_MEMLIMIT_MIN)
		return crypto_pwhash_argon2id(out, outlen, password, pwdlen, salt,
									  t_cost, (size_t) m_cost * 1024,
									  crypto_pwhash_argon2id_ALG_ARGON2ID13) == 0 ? ARGON2_OK : US_SODIUM_FAILED;

	memset(&ctx, 0, sizeof(ctx));
	ctx.out = out;
	ctx.outlen = outlen;
	ctx.pwd = (uint8_t *) password;
	ctx.pwdlen = (uint32_t) pwdlen;
	ctx.salt = (uint8_t *) salt;
	ctx.saltlen = saltlen;
	ctx.t_cost = t_cost;
	ctx.m_cost = m_cost;
	ctx.lanes = lanes;
	ctx.threads = 1;
	ctx.version = version;
	ctx.flags = ARGON2_DEFAULT_FLAGS;

	return argon2_ctx(&ctx, type);
}

/*
 * us_argon2
 *		us_argon2_compute under the server's cap on concurrent hashing
 *		(hash_cap.c: may wait, honouring cancels); errors carry the library's
 *		message.
 */
static void
us_argon2(argon2_type type, uint32 version, uint32 m_cost, uint32 t_cost,
		  uint32 lanes, const char *password, size_t pwdlen,
		  const uint8 *salt, uint32 saltlen, uint8 *out, uint32 outlen)
{
	bool		capped = us_hash_begin();
	int			rc;

	rc = us_argon2_compute(type, version, m_cost, t_cost, lanes, password, pwdlen,
						   salt, saltlen, out, outlen);
	if (capped)
		us_hash_end();

	if (rc == US_SODIUM_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("argon2 hashing failed"),
				 errdetail("libsodium could not hash with %u KiB of memory.", m_cost)));
	if (rc != ARGON2_OK)
		ereport(ERROR,
				(errcode(rc == ARGON2_MEMORY_ALLOCATION_ERROR ?
						 ERRCODE_OUT_OF_MEMORY : ERRCODE_INTERNAL_ERROR),
				 errmsg("argon2 hashing failed"),
				 errdetail("libargon2: %s.", argon2_error_message(rc))));
}

/*
 * us_current_params
 *		The GUC parameters for new hashes, checked against the one libargon2
 *		limit that ties two of them (55000: the server's configuration, not
 *		the caller's input, is at fault).
 */
static void
us_current_params(uint32 *m_cost, uint32 *t_cost, uint32 *lanes)
{
	*m_cost = (uint32) user_service_argon2_memory_kib;
	*t_cost = (uint32) user_service_argon2_iterations;
	*lanes = (uint32) user_service_argon2_parallelism;

	if ((uint64) *m_cost < (uint64) ARGON2_SYNC_POINTS * 2 * *lanes)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("user_service.argon2_memory_kib must be at least 8 times user_service.argon2_parallelism"),
				 errdetail("argon2_memory_kib is %u and argon2_parallelism is %u.",
						   *m_cost, *lanes)));
}

/*
 * us_b64_append
 *		Append unpadded base64 of data to buf (PHC strings carry no '=').
 */
static char *
us_b64_append(char *buf, const uint8 *data, int len)
{
	int			n = pg_b64_encode((const char *) data, len, buf, pg_b64_enc_len(len));

	if (n < 0)
		elog(ERROR, "base64 encoding failed");
	while (n > 0 && buf[n - 1] == '=')
		n--;
	buf[n] = '\0';
	return buf + n;
}

/*
 * us_password_hash
 *		Hash a password with argon2id and the current parameters, with a fresh
 *		16-byte salt from pg_strong_random.  Returns a palloc'd PHC string.
 */
char *
us_password_hash(const char *password, size_t len)
{
	uint32		m_cost,
				t_cost,
				lanes;
	uint8		salt[US_SALT_BYTES];
	uint8		tag[US_TAG_BYTES];
	char	   *result;
	char	   *p;

	us_current_params(&m_cost, &t_cost, &lanes);

	if (!pg_strong_random(salt, sizeof(salt)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random salt")));

	us_argon2(Argon2_id, ARGON2_VERSION_13, m_cost, t_cost, lanes,
			  password, len, salt, sizeof(salt), tag, sizeof(tag));

	result = palloc(128 + pg_b64_enc_len(sizeof(salt)) + pg_b64_enc_len(sizeof(tag)));
	p = result + sprintf(result, "$argon2id$v=%d$m=%u,t=%u,p=%u$",
						 ARGON2_VERSION_13, m_cost, t_cost, lanes);
	p = us_b64_append(p, salt, sizeof(salt));
	*p++ = '$';
	us_b64_append(p, tag, sizeof(tag));

	explicit_bzero(tag, sizeof(tag));
	return result;
}

/*
 * us_parse_uint32
 *		Parse a decimal number without sign or leading zeros at *s, ending at
 *		the character stop; advance *s past stop.
 */
static bool
us_parse_uint32(const char **s, char stop, uint32 *out)
{
	const char *p = *s;
	uint64		v = 0;

	if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
		return false;
	while (*p >= '0' && *p <= '9')
	{
		v = v * 10 + (*p - '0');
		if (v > PG_UINT32_MAX)
			return false;
		p++;
	}
	if (*p != stop)
		return false;
	*out = (uint32) v;
	*s = p + 1;
	return true;
}

/*
 * us_parse_param
 *		Parse "<name><number><stop>" at *s (name includes the '='); advance
 *		*s past stop.
 */
static bool
us_parse_param(const char **s, const char *name, char stop, uint32 *out)
{
	size_t		len = strlen(name);

	if (strncmp(*s, name, len) != 0)
		return false;
	*s += len;
	return us_parse_uint32(s, stop, out);
}

/*
 * us_b64_value
 *		The 6-bit value of a character of the standard base64 alphabet, or -1.
 */
static int
us_b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * us_b64_field
 *		Decode one field of canonical unpadded standard base64, len characters,
 *		into a palloc'd buffer.  Canonical, as libargon2's own decoder wants
 *		it: no '=', no length that leaves a lone character, and the unused
 *		low bits of the last character zero (so one byte string has one
 *		encoding).
 */
static bool
us_b64_field(const char *s, int len, uint8 **out, uint32 *outlen)
{
	char	   *padded;
	int			last;
	int			n;

	if (len <= 0 || len % 4 == 1)
		return false;
	for (int i = 0; i < len; i++)
		if (us_b64_value(s[i]) < 0)
			return false;
	last = us_b64_value(s[len - 1]);
	if ((len % 4 == 2 && (last & 0x0F) != 0) ||
		(len % 4 == 3 && (last & 0x03) != 0))
		return false;

	/* src/common's decoder wants padding: put it back. */
	padded = palloc(len + 3);
	memcpy(padded, s, len);
	while (len % 4 != 0)
		padded[len++] = '=';

	*out = palloc(pg_b64_dec_len(len));
	n = pg_b64_decode(padded, len, (char *) *out, pg_b64_dec_len(len));
	pfree(padded);
	if (n <= 0)
		return false;
	*outlen = (uint32) n;
	return true;
}

/*
 * us_phc_decode
 *		Parse an argon2i/argon2d/argon2id PHC string,
 *		$argon2<type>[$v=<16|19>]$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>,
 *		and check its parameters against libargon2's limits.  Returns NULL
 *		when it is one, else what is wrong, as a phrase for a message (never
 *		quoting the string: it is a secret of sorts).
 */
static const char *
us_phc_decode(const char *phc, UsPhc *out)
{
	const char *s = phc;
	const char *dollar;
	int			len;

	memset(out, 0, sizeof(*out));

	if (strncmp(s, "$argon2id$", 10) == 0)
	{
		out->type = Argon2_id;
		s += 10;
	}
	else if (strncmp(s, "$argon2i$", 9) == 0)
	{
		out->type = Argon2_i;
		s += 9;
	}
	else if (strncmp(s, "$argon2d$", 9) == 0)
	{
		out->type = Argon2_d;
		s += 9;
	}
	else
		return "it does not start with $argon2id$, $argon2i$ or $argon2d$";

	/* "v=" is optional; without it the string is version 1.0 (0x10). */
	out->version = ARGON2_VERSION_10;
	if (strncmp(s, "v=", 2) == 0)
	{
		s += 2;
		if (!us_parse_uint32(&s, '$', &out->version) ||
			(out->version != ARGON2_VERSION_10 && out->version != ARGON2_VERSION_13))
			return "the version must be v=16 or v=19";
	}

	if (!us_parse_param(&s, "m=", ',', &out->m_cost) ||
		!us_parse_param(&s, "t=", ',', &out->t_cost) ||
		!us_parse_param(&s, "p=", '$', &out->lanes))
		return "the parameters must be m=<KiB>,t=<passes>,p=<lanes>, in this order, "
			"as decimal numbers below 2^32 without leading zeros";

	/* libargon2's limits */
	if (out->t_cost < ARGON2_MIN_TIME)
		return "t must be at least 1";
	if (out->lanes < ARGON2_MIN_LANES || out->lanes > ARGON2_MAX_LANES)
		return "p must be between 1 and 16777215";
	if ((uint64) out->m_cost < (uint64) ARGON2_SYNC_POINTS * 2 * out->lanes)
		return "m must be at least 8 times p (8 KiB per lane)";

	dollar = strchr(s, '$');
	if (dollar == NULL)
		return "a salt and a hash must follow the parameters, each after a \"$\"";
	len = (int) (dollar - s);
	if (len > pg_b64_enc_len(US_PHC_MAX_BYTES))
		return "the salt must be at most 1024 bytes";
	if (!us_b64_field(s, len, &out->salt, &out->saltlen))
		return "the salt is not canonical unpadded base64";
	if (out->saltlen > US_PHC_MAX_BYTES)
		return "the salt must be at most 1024 bytes";
	if (out->saltlen < ARGON2_MIN_SALT_LENGTH)
		return "the salt must be at least 8 bytes";

	s = dollar + 1;
	if (strchr(s, '$') != NULL)
		return "nothing may follow the hash";
	len = (int) strlen(s);
	if (len > pg_b64_enc_len(US_PHC_MAX_BYTES))
		return "the hash must be at most 1024 bytes";
	if (!us_b64_field(s, len, &out->hash, &out->hashlen))
		return "the hash is not canonical unpadded base64";
	if (out->hashlen > US_PHC_MAX_BYTES)
		return "the hash must be at most 1024 bytes";
	if (out->hashlen < ARGON2_MIN_OUTLEN)
		return "the hash must be at least 4 bytes";

	return NULL;
}

/*
 * us_phc_parse
 *		Parse an argon2i/argon2d/argon2id PHC string and check its parameters
 *		against libargon2's limits.  False when it is not one.
 */
bool
us_phc_parse(const char *phc, UsPhc *out)
{
	return us_phc_decode(phc, out) == NULL;
}

/*
 * us_phc_import_problem
 *		NULL when phc is a PHC string that the import_user batch kind may
 *		store; else what is wrong with it, a phrase for a message.
 *
 * Besides being a PHC string that libargon2 accepts, an imported hash must
 * not cost more than US_IMPORT_MAX_MEMORY_KIB of memory and
 * US_IMPORT_MAX_BLOCKS block computations (m * t) to verify.  Every
 * verify_password of the account pays that until a successful one rehashes
 * it with the current parameters, and failed attempts never do: without a
 * bound, one imported string with m=4294967295 would make each login
 * attempt ask for 4 TiB.  The bounds admit what real systems use: the
 * defaults of argon2-cffi and RFC 9106's second recommendation (64 MiB,
 * t=3), PHP (64 MiB, t=4), Django (100 MiB, t=2), libsodium up to its
 * "moderate" level (256 MiB, t=3); not libsodium's "sensitive" level or
 * RFC 9106's first recommendation (1 and 2 GiB), which would make every
 * failed login attempt on such an account cost seconds and gigabytes.
 */
const char *
us_phc_import_problem(const char *phc)
{
	UsPhc		parsed;
	const char *problem = us_phc_decode(phc, &parsed);

	if (problem != NULL)
		return problem;
	if (parsed.m_cost > US_IMPORT_MAX_MEMORY_KIB)
		return psprintf("m must be at most %d (256 MiB) in an imported hash",
						US_IMPORT_MAX_MEMORY_KIB);
	if ((uint64) parsed.m_cost * parsed.t_cost > US_IMPORT_MAX_BLOCKS)
		return psprintf("m * t must be at most %d (256 MiB with t=4) in an imported hash",
						US_IMPORT_MAX_BLOCKS);
	pfree(parsed.salt);
	pfree(parsed.hash);
	return NULL;
}

/*
 * us_password_verify
 *		Does the password produce the stored tag?  Compared in constant time.
 */
bool
us_password_verify(const UsPhc *phc, const char *password, size_t len)
{
	uint8	   *tag = palloc(phc->hashlen);
	uint8		diff = 0;

	us_argon2((argon2_type) phc->type, phc->version, phc->m_cost, phc->t_cost,
			  phc->lanes, password, len, phc->salt, phc->saltlen,
			  tag, phc->hashlen);

	for (uint32 i = 0; i < phc->hashlen; i++)
		diff |= tag[i] ^ phc->hash[i];

	explicit_bzero(tag, phc->hashlen);
	pfree(tag);
	return diff == 0;
}

/*
 * us_phc_needs_rehash
 *		Should a successful verify replace this hash by one made with the
 *		current parameters?  Only when that is an upgrade: the stored hash is
 *		weaker in something (not argon2id, an older version, less memory,
 *		fewer passes, a shorter salt or tag) and costs no more memory and no
 *		more memory times passes than a current one (the work an attacker
 *		pays per guess).  A hash imported from a system with stronger
 *		settings (m=65536, t=4, say) is kept, and so is one made before the
 *		settings were lowered.  The number of lanes changes how the work is
 *		split, not how much there is; a salt or tag longer than ours is no
 *		stronger for it.
 */
bool
us_phc_needs_rehash(const UsPhc *phc)
{
	uint32		m_cost,
				t_cost,
				lanes;
	bool		weaker;
	bool		costlier;

	us_current_params(&m_cost, &t_cost, &lanes);
	weaker = phc->type != Argon2_id ||
		phc->version < ARGON2_VERSION_13 ||
		phc->m_cost < m_cost ||
		phc->t_cost < t_cost ||
		phc->saltlen < US_SALT_BYTES ||
		phc->hashlen < US_TAG_BYTES;
	costlier = phc->m_cost > m_cost ||
		(uint64) phc->m_cost * phc->t_cost > (uint64) m_cost * t_cost;
	return weaker && !costlier;
}

/*
 * us_password_dummy_work
 *		The argon2 work of verifying against a current hash, for an email
 *		that has no user: the caller cannot tell the two cases apart by time.
 */
void
us_password_dummy_work(const char *password, size_t len)
{
	uint32		m_cost,
				t_cost,
				lanes;
	uint8		salt[US_SALT_BYTES] = {0};
	uint8		tag[US_TAG_BYTES];

	us_current_params(&m_cost, &t_cost, &lanes);
	us_argon2(Argon2_id, ARGON2_VERSION_13, m_cost, t_cost, lanes,
			  password, len, salt, sizeof(salt), tag, sizeof(tag));
	explicit_bzero(tag, sizeof(tag));
}

/*
 * us_forget_password
 *		Zero a copy of a password that this extension made (a text taken out
 *		of a batch item), so that it does not linger in freed memory.  Never
 *		for the caller's arguments: they may be a cached plan's constants.
 */
void
us_forget_password(text *copy)
{
	if (copy != NULL)
		explicit_bzero(copy, VARSIZE_ANY(copy));
}

/*
 * us_sha256
 *		SHA-256 of prefix (may be empty) followed by data, with PostgreSQL's
 *		cryptohash (OpenSSL), into out[US_SHA256_BYTES]: the login
 *		throttle's keys and email_hash.
 */
void
us_sha256(const uint8 *prefix, size_t prefixlen, const uint8 *data, size_t len, uint8 *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL ||
		pg_cryptohash_init(ctx) < 0 ||
		(prefixlen > 0 && pg_cryptohash_update(ctx, prefix, prefixlen) < 0) ||
		pg_cryptohash_update(ctx, data, len) < 0 ||
		pg_cryptohash_final(ctx, out, US_SHA256_BYTES) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("SHA-256 failed")));
	pg_cryptohash_free(ctx);
}
