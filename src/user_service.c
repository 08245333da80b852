/*-------------------------------------------------------------------------
 *
 * user_service.c
 *		Module magic, load-time initialisation and configuration parameters
 *		of the user_service extension.
 *
 * The library works when loaded on demand (the first call of an API
 * function), so the user API never needs shared_preload_libraries.  The
 * background workers of the batch engine are registered only when the
 * library is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <argon2.h>
#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "user_service.h"

PG_MODULE_MAGIC;

/* GUC variables, named after their GUCs. */
int			user_service_argon2_memory_kib = 19456;
int			user_service_argon2_iterations = 2;
int			user_service_argon2_parallelism = 1;
int			user_service_max_per_page = 100;

void		_PG_init(void);

/*
 * _PG_init
 *		Define the GUCs.  The argon2 parameters are superuser-only: they decide
 *		how much memory and CPU every login costs.  Their ranges are
 *		libargon2's own limits (as far as an int GUC reaches); the one limit
 *		that ties two of them (memory >= 8 KiB per lane) is checked when hashing.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("user_service.argon2_memory_kib",
							"Memory cost of new argon2id password hashes.",
							"Stored hashes keep the parameters they were made with; "
							"a successful verify rehashes them with the current ones.",
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

	DefineCustomIntVariable("user_service.max_per_page",
							"Largest per_page accepted by user_service.list_users.",
							NULL,
							&user_service_max_per_page,
							100,
							1,
							100000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("user_service");
}
