/*-------------------------------------------------------------------------
 *
 * catalog.h
 *		The extension's relations, found by OID, and SQL run through SPI as
 *		their owner (catalog.c).  The lowest layer: everything else may use
 *		it, it uses nothing of the extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_CATALOG_H
#define US_CATALOG_H

#include "us_common.h"

#include "executor/spi.h"

/*
 * The extension's relations and types, looked up by name once per backend and
 * forgotten on any relcache invalidation of them.
 */
typedef struct UsCatalog
{
	Oid			namespace_oid;
	Oid			users_relid;
	Oid			users_pkey_relid;	/* unique index on id */
	Oid			users_email_relid;	/* unique index on lower(email) */
	Oid			count_deltas_relid;
	Oid			shard_config_relid; /* InvalidOid before 1.3 */
	Oid			email_claims_relid; /* InvalidOid before 1.3 */
	Oid			email_claims_pkey_relid;
	Oid			registered_kinds_relid; /* InvalidOid before 1.3 */
	Oid			batch_chunks_relid; /* InvalidOid before 1.3 */
	Oid			user_info_typid;
	Oid			owner;			/* owner of user_service.users */
} UsCatalog;

/* Attribute numbers of user_service.users (fixed by the install script). */
#define Anum_users_id				1
#define Anum_users_name				2
#define Anum_users_email			3
#define Anum_users_password_hash	4
#define Anum_users_created_at		5
#define Anum_users_updated_at		6
#define Natts_users					6

/* Attribute count of user_service.user_info. */
#define Natts_user_info				5

extern const UsCatalog *us_catalog(void);
extern Oid	us_lookup_rel(const char *name, Oid nsp);
extern bool us_rel_subscribed(Oid relid);
extern void us_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *argname);

typedef struct UsSavedUser
{
	Oid			userid;
	int			sec_context;
} UsSavedUser;
extern void us_spi_begin(UsSavedUser *saved);
extern void us_spi_end(const UsSavedUser *saved);

/*
 * An SQL statement run through SPI, prepared on first use and kept for the
 * backend's life.  It is analysed and run with pg_catalog alone on the
 * search_path (see us_spi_run), and names its tables schema-qualified.
 */
#define US_MAX_ARGS 12
typedef struct UsStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[US_MAX_ARGS];
	SPIPlanPtr	plan;
	int			cursor_options; /* CURSOR_OPT_CUSTOM_PLAN: always plan for
								 * the values at hand */
} UsStatement;

extern int	us_spi_run(UsStatement *stmt, Datum *args, const char *nulls,
					   bool read_only, long tcount);
extern int	us_spi_run_in_order(UsStatement *stmt, Datum *args, bool read_only,
								long tcount);
extern Portal us_spi_cursor(UsStatement *stmt, Datum *args, const char *nulls,
							bool read_only);
extern Datum us_spi_value(uint64 row, int col, bool *isnull);

#endif							/* US_CATALOG_H */
