/*-------------------------------------------------------------------------
 *
 * foreign_hash.c
 *		Password hashes made by other systems: recognized and checked at
 *		import, verified at login (then replaced by argon2id, user_ops.c).
 *
 * Accepted, each verified by a well-kept library, never by code of ours:
 *   argon2 PHC strings (password.c), also in Django's "argon2$" wrapper;
 *   bcrypt $2a$, $2b$, $2y$ (libxcrypt's crypt_rn: the 72-byte limit and
 *     each prefix's semantics are the library's), also with Spring's
 *     "{bcrypt}" and Django's "bcrypt$" prefixes;
 *   Django's bcrypt_sha256$ (bcrypt of the hex SHA-256 of the password);
 *   PBKDF2-HMAC-SHA1/-SHA256/-SHA512 (OpenSSL's PKCS5_PBKDF2_HMAC) in
 *     Django's form (pbkdf2_sha256$<iterations>$<salt>$<base64 hash>) and in
 *     passlib's PHC form ($pbkdf2-sha256$<iterations>$<ab64 salt>$<ab64
 *     hash>), which is also how a Keycloak credential is stored once
 *     imported;
 *   crypt(3)'s sha256-crypt $5$, sha512-crypt $6$ and yescrypt $y$
 *     (libxcrypt).
 * $2x$ (crypt_blowfish's 8-bit bug) is refused: it cannot be told apart
 * from what the bug produced.
 *
 * What verifying an imported hash may cost is bounded at import, like the
 * argon2 limits: about 2 s of one core here and 256 MiB at the most.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "foreign_hash.h"
#include "hash_cap.h"
#include "password.h"

/* The bounds on an imported hash's cost (each about 1.5 s here). */
#define US_BCRYPT_MAX_COST			14
#define US_PBKDF2_MAX_ITERATIONS	4000000 /* SHA-1 and SHA-256 */
#define US_PBKDF2_SHA512_MAX_ITERATIONS 2000000
#define US_SHACRYPT_MAX_ROUNDS		1000000 /* each round hashes the whole password:
											 * about 3 s with a 511-byte one */
#define US_YESCRYPT_MAX_LOG2_BYTES	28	/* 256 MiB, as for argon2 */

/* bcrypt uses the first 72 bytes of a password, whatever its variant */
#define US_BCRYPT_MAX_BYTES			72

/* Longest string accepted (an argon2 PHC string with password.c's largest salt and tag fits). */
#define US_FOREIGN_MAX_LEN			4096

typedef enum UsFormat
{
	US_FMT_UNKNOWN,
	US_FMT_ARGON2,
	US_FMT_BCRYPT,
	US_FMT_BCRYPT_SHA256,		/* Django */
	US_FMT_PBKDF2_DJANGO,
	US_FMT_PBKDF2_PHC,
	US_FMT_SHA256_CRYPT,
	US_FMT_SHA512_CRYPT,
	US_FMT_YESCRYPT
} UsFormat;

/* A parsed PBKDF2 hash. */
typedef struct UsPbkdf2
{
	const char *name;			/* pbkdf2-sha1, pbkdf2-sha256, pbkdf2-sha512 */
	const EVP_MD *md;
	uint32		iterations;
	uint8	   *salt;
	int			saltlen;
	uint8	   *hash;
	int			hashlen;
} UsPbkdf2;

/* crypt(3)'s alphabet: ./0-9A-Za-z */
static int
us_itoa64_value(char c)
{
	if (c == '.')
		return 0;
	if (c == '/')
		return 1;
	if (c >= '0' && c <= '9')
		return c - '0' + 2;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 12;
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 38;
	return -1;
}

static bool
us_all_itoa64(const char *s, int len)
{
	for (int i = 0; i < len; i++)
		if (us_itoa64_value(s[i]) < 0)
			return false;
	return true;
}

static UsFormat
us_format_of(const char *s)
{
	if (strncmp(s, "$argon2", 7) == 0)
		return US_FMT_ARGON2;
	if (strncmp(s, "$2", 2) == 0)
		return US_FMT_BCRYPT;
	if (strncmp(s, "bcrypt_sha256$", 14) == 0)
		return US_FMT_BCRYPT_SHA256;
	if (strncmp(s, "pbkdf2_sha", 10) == 0)
		return US_FMT_PBKDF2_DJANGO;
	if (strncmp(s, "$pbkdf2", 7) == 0)
		return US_FMT_PBKDF2_PHC;
	if (strncmp(s, "$5$", 3) == 0)
		return US_FMT_SHA256_CRYPT;
	if (strncmp(s, "$6$", 3) == 0)
		return US_FMT_SHA512_CRYPT;
	if (strncmp(s, "$y$", 3) == 0)
		return US_FMT_YESCRYPT;
	return US_FMT_UNKNOWN;
}

/*
 * us_crypt_setting_ok
 *		libxcrypt implements the hashing method of this setting.  "Legacy"
 *		(sha256-crypt, say) only means it is not recommended for new hashes:
 *		verifying old ones is what it is kept for.
 */
static bool
us_crypt_setting_ok(const char *setting)
{
	int			rc = crypt_checksalt(setting);

	return rc == CRYPT_SALT_OK || rc == CRYPT_SALT_METHOD_LEGACY;
}

/*
 * us_parse_decimal
 *		A decimal number without sign or leading zero, at most max, ending
 *		at stop; advances *s past stop.
 */
static bool
us_parse_decimal(const char **s, char stop, uint64 max, uint64 *out)
{
	const char *p = *s;
	uint64		v = 0;

	if (*p < '0' || *p > '9' || (*p == '0' && p[1] != stop))
		return false;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		v = v * 10 + (*p - '0');
		if (v > max)
			return false;
	}
	if (*p != stop)
		return false;
	*s = p + 1;
	*out = v;
	return true;
}

/*
 * us_bcrypt_problem
 *		Why a bcrypt string ($2?$NN$ + 53 characters) cannot be imported, or
 *		NULL.
 */
static const char *
us_bcrypt_problem(const char *s)
{
	int			cost;

	if (strncmp(s, "$2x$", 4) == 0)
		return "bcrypt's $2x$ variant (hashes of crypt_blowfish's 8-bit bug) cannot be verified faithfully";
	if (strncmp(s, "$2a$", 4) != 0 && strncmp(s, "$2b$", 4) != 0 &&
		strncmp(s, "$2y$", 4) != 0)
		return "a bcrypt hash starts with $2a$, $2b$ or $2y$";
	if (strlen(s) != 60 || s[4] < '0' || s[4] > '9' || s[5] < '0' || s[5] > '9' ||
		s[6] != '$' || !us_all_itoa64(s + 7, 53))
		return "a bcrypt hash is $2b$, a two-digit cost, $ and 53 characters of ./0-9A-Za-z";
	cost = (s[4] - '0') * 10 + (s[5] - '0');
	if (cost < 4 || cost > 31)
		return "a bcrypt cost is between 04 and 31";
	if (cost > US_BCRYPT_MAX_COST)
		return psprintf("the bcrypt cost must be at most %d in an imported hash", US_BCRYPT_MAX_COST);
	if (!us_crypt_setting_ok(s))
		return "libxcrypt does not accept this bcrypt setting";
	return NULL;
}

/*
 * us_shacrypt_problem
 *		$5$ / $6$ [rounds=N$] salt (up to 16 characters) $ hash (43 or 86).
 */
static const char *
us_shacrypt_problem(const char *s, int hashchars)
{
	const char *p = s + 3;
	const char *dollar;

	if (strncmp(p, "rounds=", 7) == 0)
	{
		uint64		rounds;

		p += 7;
		if (!us_parse_decimal(&p, '$', 999999999, &rounds) || rounds < 1000)
			return "the rounds of a sha-crypt hash are a number from 1000 to 999999999";
		if (rounds > US_SHACRYPT_MAX_ROUNDS)
			return psprintf("the rounds of a sha-crypt hash must be at most %d in an imported hash",
							US_SHACRYPT_MAX_ROUNDS);
	}
	dollar = strchr(p, '$');
	if (dollar == NULL || dollar - p > 16 || !us_all_itoa64(p, dollar - p) ||
		(int) strlen(dollar + 1) != hashchars || !us_all_itoa64(dollar + 1, hashchars))
		return psprintf("a sha-crypt hash is %.3s, an optional rounds=N$, a salt of up to 16 characters, $ and %d characters of ./0-9A-Za-z",
						s, hashchars);
	if (!us_crypt_setting_ok(s))
		return "libxcrypt does not accept this sha-crypt setting";
	return NULL;
}

/*
 * us_yescrypt_problem
 *		$y$ <flavor><N><r> $ salt $ hash (43).  The parameters are the
 *		single-character forms of yescrypt's encoding (flavor, log2 N - 1,
 *		r - 1), which is what crypt(3) tools write; memory is 128 * r * N
 *		bytes.  Longer parameter strings (p, t, a ROM) are refused.
 */
static const char *
us_yescrypt_problem(const char *s)
{
	const char *p = s + 3;
	const char *salt_end;
	int			n_log2,
				r;
	int			r_log2 = 0;

	if (strlen(p) < 4 || p[3] != '$')
		return "yescrypt hashes with parameters beyond flavor, N and r are not accepted";
	n_log2 = us_itoa64_value(p[1]) + 1;
	r = us_itoa64_value(p[2]) + 1;
	/* j: yescrypt's default flavor, what crypt(3) tools write */
	if (p[0] != 'j' || n_log2 < 2 || n_log2 > 47 || r < 1 || r > 47)
		return "the parameters of this yescrypt hash are not the flavor j, N and r of crypt(3)";
	while ((1 << r_log2) < r)
		r_log2++;
	if (7 + r_log2 + n_log2 > US_YESCRYPT_MAX_LOG2_BYTES)
		return "a yescrypt hash must use at most 256 MiB (128 * r * N bytes) in an imported hash";
	p += 4;
	salt_end = strchr(p, '$');
	if (salt_end == NULL || salt_end == p || salt_end - p > 86 ||
		!us_all_itoa64(p, salt_end - p) || strlen(salt_end + 1) != 43 ||
		!us_all_itoa64(salt_end + 1, 43))
		return "a yescrypt hash is $y$, its parameters, $, a salt, $ and 43 characters of ./0-9A-Za-z";
	if (!us_crypt_setting_ok(s))
		return "libxcrypt does not accept this yescrypt setting";
	return NULL;
}

/*
 * us_b64_decode
 *		Standard base64 (padded or not; passlib's "ab64" when ab64, which
 *		writes . for +), at most maxlen bytes; NULL when it is not.
 */
static uint8 *
us_b64_decode(const char *s, int len, bool ab64, int maxlen, int *outlen)
{
	char	   *buf = palloc(len + 4);
	uint8	   *out;
	int			n;

	for (int i = 0; i < len; i++)
		buf[i] = (ab64 && s[i] == '.') ? '+' : (!ab64 || s[i] != '+') ? s[i] : '!';
	while (len % 4 != 0)
		buf[len++] = '=';
	out = palloc(pg_b64_dec_len(len) + 1);
	n = len == 0 ? -1 : pg_b64_decode(buf, len, (char *) out, pg_b64_dec_len(len));
	pfree(buf);
	if (n <= 0 || n > maxlen)
	{
		pfree(out);
		return NULL;
	}
	*outlen = n;
	return out;
}

static const EVP_MD *
us_pbkdf2_md(const char *name, int len, const char **canonical)
{
	if (len == 4 && strncmp(name, "sha1", 4) == 0)
	{
		*canonical = "pbkdf2-sha1";
		return EVP_sha1();
	}
	if (len == 6 && strncmp(name, "sha256", 6) == 0)
	{
		*canonical = "pbkdf2-sha256";
		return EVP_sha256();
	}
	if (len == 6 && strncmp(name, "sha512", 6) == 0)
	{
		*canonical = "pbkdf2-sha512";
		return EVP_sha512();
	}
	return NULL;
}

static const char *
us_pbkdf2_bounds(UsPbkdf2 *out)
{
	uint32		max = out->md == EVP_sha512() ?
		US_PBKDF2_SHA512_MAX_ITERATIONS : US_PBKDF2_MAX_ITERATIONS;
	int			blocks = (out->hashlen + EVP_MD_size(out->md) - 1) / EVP_MD_size(out->md);

	/* PBKDF2 runs all its iterations once for each digest-long block */
	if ((uint64) out->iterations * blocks > max)
		return psprintf("a %s hash must have at most %u iterations for each %d bytes of its length in an imported hash",
						out->name, max, EVP_MD_size(out->md));
	if (out->hashlen < 16)
		return "a PBKDF2 hash must be at least 16 bytes long";
	return NULL;
}

/*
 * us_pbkdf2_parse
 *		Django's pbkdf2_<digest>$<iterations>$<salt>$<base64 hash> (the salt
 *		used as its UTF-8 bytes) or passlib's $pbkdf2[-<digest>]$<iterations>
 *		$<ab64 salt>$<ab64 hash> (pbkdf2 alone is SHA-1).  NULL, or why not.
 */
static const char *
us_pbkdf2_parse(const char *s, UsPbkdf2 *out)
{
	bool		django = s[0] != '$';
	const char *p = s + 7;		/* past "pbkdf2_" or "$pbkdf2" */
	const char *digest = "sha1";
	int			digestlen = 4;
	const char *dollar;
	uint64		iterations;
	const char *salt;
	int			saltlen;

	if (django)
	{
		dollar = strchr(p, '$');
		if (dollar == NULL)
			return "a Django PBKDF2 hash is pbkdf2_<digest>$<iterations>$<salt>$<hash>";
		digest = p;
		digestlen = dollar - p;
		p = dollar + 1;
	}
	else if (*p == '-')
	{
		dollar = strchr(p + 1, '$');
		if (dollar == NULL)
			return "a PHC PBKDF2 hash is $pbkdf2-<digest>$<iterations>$<salt>$<hash>";
		digest = p + 1;
		digestlen = dollar - (p + 1);
		p = dollar + 1;
	}
	else if (*p == '$')
		p++;
	else
		return "unknown PBKDF2 form";

	out->md = us_pbkdf2_md(digest, digestlen, &out->name);
	if (out->md == NULL)
		return "PBKDF2 is accepted with SHA-1, SHA-256 or SHA-512";
	if (!us_parse_decimal(&p, '$', PG_INT32_MAX, &iterations) || iterations == 0)
		return "the iterations of a PBKDF2 hash are a positive number";
	out->iterations = (uint32) iterations;

	salt = p;
	dollar = strchr(p, '$');
	if (dollar == NULL || dollar == p)
		return "a PBKDF2 hash has a salt and a hash after its iterations";
	saltlen = dollar - salt;
	if (django)
	{
		out->salt = (uint8 *) pnstrdup(salt, saltlen);
		out->saltlen = saltlen;
	}
	else if ((out->salt = us_b64_decode(salt, saltlen, true, 256, &out->saltlen)) == NULL)
		return "the salt of a PHC PBKDF2 hash is not base64";
	p = dollar + 1;
	if (strchr(p, '$') != NULL ||
		(out->hash = us_b64_decode(p, strlen(p), !django, EVP_MD_size(out->md) * 8,
								   &out->hashlen)) == NULL)
		return "the hash of a PBKDF2 hash is not base64";
	if (django && out->hashlen != EVP_MD_size(out->md))
		return "a Django PBKDF2 hash is as long as its digest";
	return us_pbkdf2_bounds(out);
}

/*
 * us_ab64
 *		Bytes in passlib's ab64 (base64 with . for + and no padding).
 */
static char *
us_ab64(const uint8 *data, int len)
{
	char	   *out = palloc(pg_b64_enc_len(len) + 1);
	int			n = pg_b64_encode((const char *) data, len, out, pg_b64_enc_len(len));

	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (char *c = out; *c; c++)
		if (*c == '+')
			*c = '.';
	return out;
}

/* What the parse of a Keycloak credential found (us_keycloak_*). */
typedef struct UsKeycloak
{
	int			depth;			/* of objects and arrays */
	int			field;			/* the top-level key being read, -1: none */
	bool		bad;			/* anything else than the four scalars */
	char	   *values[4];		/* algorithm, iterations, salt, hash */
	JsonTokenType types[4];
} UsKeycloak;

static const char *const us_keycloak_keys[] = {"algorithm", "iterations", "salt", "hash"};

static void
us_keycloak_object_start(void *state)
{
	UsKeycloak *kc = state;

	if (kc->depth++ > 0)
		kc->bad = true;
}

static void
us_keycloak_object_end(void *state)
{
	((UsKeycloak *) state)->depth--;
}

static void
us_keycloak_array_start(void *state)
{
	((UsKeycloak *) state)->bad = true;
}

static void
us_keycloak_field_start(void *state, char *fname, bool isnull)
{
	UsKeycloak *kc = state;

	kc->field = -1;
	if (kc->depth != 1)
		return;
	for (int i = 0; i < 4; i++)
		if (strcmp(fname, us_keycloak_keys[i]) == 0)
			kc->field = i;
	if (kc->field < 0 || kc->values[kc->field] != NULL)
		kc->bad = true;			/* an unknown key, or one twice */
}

static void
us_keycloak_scalar(void *state, char *token, JsonTokenType tokentype)
{
	UsKeycloak *kc = state;

	if (kc->depth != 1 || kc->field < 0)
	{
		kc->bad = true;			/* a scalar alone, not an object */
		return;
	}
	kc->values[kc->field] = token;
	kc->types[kc->field] = tokentype;
	kc->field = -1;
}

/*
 * us_keycloak_hash
 *		A Keycloak credential as an import carries it, {"algorithm":
 *		"pbkdf2-sha256", "iterations": 27500, "salt": "<base64>", "hash":
 *		"<base64>"} (from the export's credentialData and secretData), as the
 *		PHC string stored for it; or why not.  Read with PostgreSQL's JSON
 *		parser, which reports rather than raises: nothing of it can reach an
 *		error message.
 */
static const char *
us_keycloak_hash(const char *json, char **stored)
{
	UsKeycloak	kc = {0};
	JsonSemAction sem = {0};
	UsPbkdf2	pb;
	const char *p;
	uint64		iterations;
	const char *problem;

	kc.field = -1;
	sem.semstate = &kc;
	sem.object_start = us_keycloak_object_start;
	sem.object_end = us_keycloak_object_end;
	sem.array_start = us_keycloak_array_start;
	sem.object_field_start = us_keycloak_field_start;
	sem.scalar = us_keycloak_scalar;
	if (pg_parse_json(makeJsonLexContextCstringLen(unconstify(char *, json), strlen(json),
												   GetDatabaseEncoding(), true),
					  &sem) != JSON_SUCCESS)
		return "a Keycloak credential is a JSON object";
	if (kc.bad || kc.values[0] == NULL || kc.values[1] == NULL || kc.values[2] == NULL ||
		kc.values[3] == NULL)
		return "a Keycloak credential is an object with exactly the keys algorithm, iterations, salt and hash";
	if (kc.types[0] != JSON_TOKEN_STRING || kc.types[1] != JSON_TOKEN_NUMBER ||
		kc.types[2] != JSON_TOKEN_STRING || kc.types[3] != JSON_TOKEN_STRING)
		return "in a Keycloak credential, iterations is a number and algorithm, salt and hash are strings";

	if (strcmp(kc.values[0], "pbkdf2") == 0)
		pb.md = us_pbkdf2_md("sha1", 4, &pb.name);
	else if (strncmp(kc.values[0], "pbkdf2-", 7) == 0)
		pb.md = us_pbkdf2_md(kc.values[0] + 7, strlen(kc.values[0] + 7), &pb.name);
	else
		pb.md = NULL;
	if (pb.md == NULL)
		return "a Keycloak credential's algorithm is pbkdf2, pbkdf2-sha256 or pbkdf2-sha512";

	p = kc.values[1];
	if (!us_parse_decimal(&p, '\0', PG_INT32_MAX, &iterations) || iterations == 0)
		return "a Keycloak credential's iterations are a positive integer";
	pb.iterations = (uint32) iterations;
	pb.salt = us_b64_decode(kc.values[2], strlen(kc.values[2]), false, 256, &pb.saltlen);
	pb.hash = us_b64_decode(kc.values[3], strlen(kc.values[3]), false,
							EVP_MD_size(pb.md) * 8, &pb.hashlen);
	if (pb.salt == NULL || pb.hash == NULL)
		return "a Keycloak credential's salt and hash are base64";
	if ((problem = us_pbkdf2_bounds(&pb)) != NULL)
		return problem;
	*stored = psprintf("$%s$%u$%s$%s", pb.md == EVP_sha1() ? "pbkdf2" : pb.name,
					   pb.iterations, us_ab64(pb.salt, pb.saltlen), us_ab64(pb.hash, pb.hashlen));
	return NULL;
}

/*
 * us_import_problem
 *		Why a password hash from another system cannot be imported (a
 *		sentence that never quotes it), or NULL with the string to store in
 *		*stored: the hash itself, without the wrappers that only name the
 *		format (Spring's "{bcrypt}", Django's "bcrypt$" and "argon2$"), or the
 *		PHC form of a Keycloak credential.
 */
const char *
us_import_problem(const char *given, char **stored)
{
	const char *s = given;
	UsPbkdf2	pb;

	if (strlen(s) > US_FOREIGN_MAX_LEN)
		return psprintf("a password hash is at most %d bytes long", US_FOREIGN_MAX_LEN);
	if (s[0] == '{' && strncmp(s, "{bcrypt}", 8) != 0)
		return us_keycloak_hash(s, stored);
	if (strncmp(s, "{bcrypt}", 8) == 0)
		s += 8;
	else if (strncmp(s, "bcrypt$$2", 9) == 0)
		s += 7;
	else if (strncmp(s, "argon2$argon2", 13) == 0)
		s += 6;
	*stored = pstrdup(s);

	switch (us_format_of(s))
	{
		case US_FMT_ARGON2:
			return us_phc_import_problem(s);
		case US_FMT_BCRYPT:
			return us_bcrypt_problem(s);
		case US_FMT_BCRYPT_SHA256:
			return us_bcrypt_problem(s + 14);
		case US_FMT_PBKDF2_DJANGO:
		case US_FMT_PBKDF2_PHC:
			return us_pbkdf2_parse(s, &pb);
		case US_FMT_SHA256_CRYPT:
			return us_shacrypt_problem(s, 43);
		case US_FMT_SHA512_CRYPT:
			return us_shacrypt_problem(s, 86);
		case US_FMT_YESCRYPT:
			return us_yescrypt_problem(s);
		case US_FMT_UNKNOWN:
			break;
	}
	return "not a known password hash format (argon2, bcrypt, PBKDF2 in Django's or the PHC form, Django's bcrypt_sha256, sha256-crypt, sha512-crypt, yescrypt, or a Keycloak credential)";
}

/*
 * us_hash_format_name
 *		The format of a stored hash, for the DBA's count of users still
 *		carrying another system's hash: argon2id (argon2i, argon2d), bcrypt,
 *		bcrypt-sha256, pbkdf2-sha1/-sha256/-sha512, sha256-crypt,
 *		sha512-crypt, yescrypt, or unknown.
 */
const char *
us_hash_format_name(const char *stored)
{
	switch (us_format_of(stored))
	{
		case US_FMT_ARGON2:
			if (strncmp(stored, "$argon2id$", 10) == 0)
				return "argon2id";
			if (strncmp(stored, "$argon2i$", 9) == 0)
				return "argon2i";
			if (strncmp(stored, "$argon2d$", 9) == 0)
				return "argon2d";
			break;
		case US_FMT_BCRYPT:
			return "bcrypt";
		case US_FMT_BCRYPT_SHA256:
			return "bcrypt-sha256";
		case US_FMT_PBKDF2_DJANGO:
			if (strncmp(stored, "pbkdf2_sha1$", 12) == 0)
				return "pbkdf2-sha1";
			if (strncmp(stored, "pbkdf2_sha256$", 14) == 0)
				return "pbkdf2-sha256";
			if (strncmp(stored, "pbkdf2_sha512$", 14) == 0)
				return "pbkdf2-sha512";
			break;
		case US_FMT_PBKDF2_PHC:
			if (strncmp(stored, "$pbkdf2$", 8) == 0)
				return "pbkdf2-sha1";
			if (strncmp(stored, "$pbkdf2-sha256$", 15) == 0)
				return "pbkdf2-sha256";
			if (strncmp(stored, "$pbkdf2-sha512$", 15) == 0)
				return "pbkdf2-sha512";
			break;
		case US_FMT_SHA256_CRYPT:
			return "sha256-crypt";
		case US_FMT_SHA512_CRYPT:
			return "sha512-crypt";
		case US_FMT_YESCRYPT:
			return "yescrypt";
		case US_FMT_UNKNOWN:
			break;
	}
	return "unknown";
}

/*
 * us_crypt_matches
 *		crypt(3) of the password (its first maxlen bytes) with the stored
 *		string as setting gives the stored string again (compared in constant
 *		time).  Under the hashing cap, taken before the password is copied:
 *		a cancel while waiting for it leaves no copy behind.
 */
static bool
us_crypt_matches(const char *password, size_t len, size_t maxlen, const char *setting)
{
	struct crypt_data *data = palloc0(sizeof(struct crypt_data));
	char	   *phrase = palloc(Min(len, maxlen) + 1);
	size_t		settinglen = strlen(setting);
	bool		capped = us_hash_begin();
	char	   *out;
	bool		ok;

	memcpy(phrase, password, Min(len, maxlen));
	phrase[Min(len, maxlen)] = '\0';
	out = crypt_rn(phrase, setting, data, sizeof(struct crypt_data));
	ok = out != NULL && strlen(out) == settinglen && CRYPTO_memcmp(out, setting, settinglen) == 0;
	if (capped)
		us_hash_end();
	explicit_bzero(phrase, Min(len, maxlen));
	explicit_bzero(data, sizeof(struct crypt_data));
	pfree(phrase);
	pfree(data);
	return ok;
}

/*
 * us_foreign_verify
 *		Does the password match a stored hash of another system's format?
 *		*recognized says whether the stored string is one (checked as at
 *		import, bounds included: a string written into the table by hand is
 *		no more trusted than an import).
 */
bool
us_foreign_verify(const char *stored, const char *password, size_t len, bool *recognized)
{
	UsFormat	format = us_format_of(stored);
	volatile bool ok = false;

	*recognized = false;
	switch (format)
	{
		case US_FMT_BCRYPT:
		case US_FMT_SHA256_CRYPT:
		case US_FMT_SHA512_CRYPT:
		case US_FMT_YESCRYPT:
			if ((format == US_FMT_BCRYPT ? us_bcrypt_problem(stored) :
				 format == US_FMT_YESCRYPT ? us_yescrypt_problem(stored) :
				 us_shacrypt_problem(stored, format == US_FMT_SHA256_CRYPT ? 43 : 86)) != NULL)
				return false;
			*recognized = true;
			if (format == US_FMT_BCRYPT)	/* bcrypt reads 72 bytes at most */
				return us_crypt_matches(password, len, US_BCRYPT_MAX_BYTES, stored);
			if (len >= CRYPT_MAX_PASSPHRASE_SIZE)
			{
				/*
				 * Longer than libxcrypt takes: it cannot match, but the
				 * answer takes what a wrong password for an unknown email
				 * takes, not a few microseconds.
				 */
				us_password_dummy_work(password, len);
				return false;
			}
			return us_crypt_matches(password, len, len, stored);

		case US_FMT_BCRYPT_SHA256:
			{
				/* Django: bcrypt of the SHA-256 of the password, in hex */
				uint8		digest[US_SHA256_BYTES];
				char		hex[US_SHA256_BYTES * 2];

				if (us_bcrypt_problem(stored + 14) != NULL)
					return false;
				*recognized = true;
				/* on the stack, zeroed on every way out */
				us_sha256(NULL, 0, (const uint8 *) password, len, digest);
				hex_encode((const char *) digest, sizeof(digest), hex);
				explicit_bzero(digest, sizeof(digest));
				PG_TRY();
				{
					ok = us_crypt_matches(hex, sizeof(hex), sizeof(hex), stored + 14);
				}
				PG_FINALLY();
				{
					explicit_bzero(hex, sizeof(hex));
				}
				PG_END_TRY();
				return ok;
			}

		case US_FMT_PBKDF2_DJANGO:
		case US_FMT_PBKDF2_PHC:
			{
				UsPbkdf2	pb;
				uint8	   *out;
				bool		capped;
				int			rc;

				if (us_pbkdf2_parse(stored, &pb) != NULL)
					return false;
				*recognized = true;
				out = palloc(pb.hashlen);
				capped = us_hash_begin();
				rc = PKCS5_PBKDF2_HMAC(password, (int) len, pb.salt, pb.saltlen,
									   (int) pb.iterations, pb.md, pb.hashlen, out);
				if (capped)
					us_hash_end();
				if (rc != 1)
					ereport(ERROR,
							(errcode(ERRCODE_INTERNAL_ERROR),
							 errmsg("PBKDF2 computation failed")));
				ok = CRYPTO_memcmp(out, pb.hash, pb.hashlen) == 0;
				explicit_bzero(out, pb.hashlen);
				pfree(out);
				return ok;
			}

		case US_FMT_ARGON2:
		case US_FMT_UNKNOWN:
			break;
	}
	return false;
}
