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
#include <sodium.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "user_service.h"

PG_MODULE_MAGIC;

/* GUC variables, named after their GUCs. */
int			user_service_argon2_memory_kib = 19456;
int			user_service_argon2_iterations = 2;
int			user_service_argon2_parallelism = 1;
int			user_service_max_per_page = 100;
char	   *user_service_database = NULL;
int			user_service_workers = 2;
int			user_service_default_concurrency = 4;
int			user_service_max_attempts = 3;
char	   *user_service_batch_retention = NULL;

bool		us_preloaded = false;

void		_PG_init(void);

/*
 * us_check_retention
 *		user_service.batch_retention must read as a non-negative interval
 *		('7 days', '12 hours', '0').  Parsed with the datetime routines that
 *		report errors as codes, since a check hook must not throw.
 */
static bool
us_check_retention(char **newval, void **extra, GucSource source)
{
	char		workbuf[MAXDATELEN + 1];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm;
	Interval	span;

	if (strlen(*newval) > MAXDATELEN ||
		ParseDateTime(*newval, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nf) != 0 ||
		DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm) != 0 ||
		dtype != DTK_DELTA ||
		itmin2interval(&itm, &span) != 0)
	{
		GUC_check_errdetail("\"%s\" is not an interval such as \"7 days\".", *newval);
		return false;
	}
	if (span.time < 0 || span.day < 0 || span.month < 0)
	{
		GUC_check_errdetail("The retention must not be negative.");
		return false;
	}
	return true;
}

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

	DefineCustomStringVariable("user_service.database",
							   "Database the batch workers serve.",
							   "On a change, the workers reconnect.",
							   &user_service_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("user_service.workers",
							"Number of batch workers.",
							"Takes effect on a configuration reload. Each worker is a "
							"background worker: see max_worker_processes.",
							&user_service_workers,
							2,
							0,
							US_MAX_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("user_service.default_concurrency",
							"Items of one batch that may be processed at once, when "
							"submit_batch is given no concurrency.",
							NULL,
							&user_service_default_concurrency,
							4,
							1,
							1000000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("user_service.max_attempts",
							"Attempts at a batch item that meets transient errors "
							"(serialization failure, deadlock, lock timeout).",
							NULL,
							&user_service_max_attempts,
							3,
							1,
							100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("user_service.batch_retention",
							   "How long finished batches are kept before the workers delete them.",
							   NULL,
							   &user_service_batch_retention,
							   "7 days",
							   PGC_SIGHUP,
							   0,
							   us_check_retention, NULL, NULL);

	DefineCustomBoolVariable("user_service.redact_log",
							 "Replace string literals and parameter values by *** in server "
							 "log records of statements that carry a password.",
							 "Also leaves out their STATEMENT line. See src/redact.c for "
							 "what is covered.",
							 &user_service_redact_log,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("user_service");

	us_redact_init();

	/* libsodium computes the common argon2id hashes (see password.c) */
	us_sodium_ready = sodium_init() >= 0;

	us_shmem_init_hooks();
	if (process_shared_preload_libraries_in_progress)
	{
		us_preloaded = true;
		us_register_launcher();
	}
}
