/*-------------------------------------------------------------------------
 *
 * catalog.c
 *		Locating the extension's relations, and running as their owner.
 *
 * The API functions reach user_service.users by OID: no name lookup, so the
 * caller's search_path and objects in public or pg_temp cannot redirect them,
 * and no per-call permission check, so application roles need EXECUTE on the
 * functions and nothing on the tables.  Reads scan the indexes directly.
 * Writes go through SPI (so indexes, constraints and triggers are handled
 * by the executor) with the user id switched to the table's owner for the
 * duration of the statement, the way REFRESH MATERIALIZED VIEW does, and with
 * pg_catalog alone on the search_path while they are analysed and run.  This
 * is what SECURITY DEFINER with a pinned search_path would give, without a
 * GUC save and restore on every call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_subscription_rel.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "catalog.h"

static UsCatalog us_cat;
static bool us_cat_valid = false;
static bool us_cat_callback_registered = false;

/*
 * us_catalog_invalidate
 *		Relcache callback: forget the cached OIDs when one of the extension's
 *		relations changes (dropped, renamed, re-owned) or on a full reset.
 */
static void
us_catalog_invalidate(Datum arg, Oid relid)
{
	if (!us_cat_valid)
		return;
	/* under a schema older than 1.3, any new relation may be one of 1.3's */
	if (relid == InvalidOid || !OidIsValid(us_cat.shard_config_relid) ||
		!OidIsValid(us_cat.registered_kinds_relid) ||
		!OidIsValid(us_cat.batch_chunks_relid) ||
		relid == us_cat.registered_kinds_relid ||
		relid == us_cat.batch_chunks_relid ||
		relid == us_cat.shard_config_relid ||
		relid == us_cat.email_claims_relid ||
		relid == us_cat.email_claims_pkey_relid ||
		relid == us_cat.users_relid ||
		relid == us_cat.users_pkey_relid ||
		relid == us_cat.users_email_relid ||
		relid == us_cat.count_deltas_relid)
		us_cat_valid = false;
}

/*
 * us_lookup_rel
 *		OID of a relation of the extension's schema, or a 55000 error saying
 *		the extension is missing or damaged.
 */
Oid
us_lookup_rel(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"user_service.%s\" does not exist", name),
				 errhint("Run CREATE EXTENSION user_service, or ALTER EXTENSION user_service UPDATE.")));
	return relid;
}

/*
 * us_catalog
 *		The OIDs of the extension's objects in this database, looked up on the
 *		first call and after invalidations.
 */
const UsCatalog *
us_catalog(void)
{
	HeapTuple	tup;
	UsCatalog	cat;

	if (us_cat_valid)
		return &us_cat;

	if (!us_cat_callback_registered)
	{
		CacheRegisterRelcacheCallback(us_catalog_invalidate, (Datum) 0);
		us_cat_callback_registered = true;
	}

	cat.namespace_oid = get_namespace_oid("user_service", true);
	if (!OidIsValid(cat.namespace_oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("schema \"user_service\" does not exist"),
				 errhint("Run CREATE EXTENSION user_service.")));

	cat.users_relid = us_lookup_rel("users", cat.namespace_oid);
	cat.users_pkey_relid = us_lookup_rel("users_pkey", cat.namespace_oid);
	cat.users_email_relid = us_lookup_rel("users_email_key", cat.namespace_oid);
	cat.count_deltas_relid = us_lookup_rel("user_count_deltas", cat.namespace_oid);
	/* 1.3 on: InvalidOid under an older schema */
	cat.shard_config_relid = get_relname_relid("shard_config", cat.namespace_oid);
	cat.email_claims_relid = get_relname_relid("email_claims", cat.namespace_oid);
	cat.email_claims_pkey_relid = get_relname_relid("email_claims_pkey", cat.namespace_oid);
	cat.registered_kinds_relid = get_relname_relid("registered_kinds", cat.namespace_oid);
	cat.batch_chunks_relid = get_relname_relid("batch_chunks", cat.namespace_oid);
	cat.user_info_typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										  CStringGetDatum("user_info"),
										  ObjectIdGetDatum(cat.namespace_oid));
	if (!OidIsValid(cat.user_info_typid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("type \"user_service.user_info\" does not exist"),
				 errhint("Run CREATE EXTENSION user_service, or ALTER EXTENSION user_service UPDATE.")));

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(cat.users_relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", cat.users_relid);
	cat.owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	us_cat = cat;
	us_cat_valid = true;
	return &us_cat;
}

/*
 * us_arg_not_null
 *		22004 when argument argno of an API function is NULL (the functions
 *		are not STRICT: a NULL is an error, not a NULL result).
 */
void
us_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/*
 * us_become_owner
 *		Run as the owner of user_service.users until us_restore_user, in a
 *		security-restricted operation (no SET ROLE, no temporary objects).  An
 *		error in between is safe: (sub)transaction abort restores the user.
 */
static void
us_become_owner(const UsCatalog *cat, UsSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(cat->owner,
						   saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
us_restore_user(const UsSavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/*
 * us_spi_begin / us_spi_end
 *		Connect to SPI as the owner of the extension's tables, and back.
 *		saved->userid is the caller's user id meanwhile.
 */
void
us_spi_begin(UsSavedUser *saved)
{
	us_become_owner(us_catalog(), saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
us_spi_end(const UsSavedUser *saved)
{
	SPI_finish();
	us_restore_user(saved);
}

/*
 * us_spi_plan
 *		Prepare the statement and keep its plan, on first use.
 */
static void
us_spi_plan(UsStatement *stmt)
{
	SPIPlanPtr	plan;

	if (stmt->plan != NULL)
		return;
	plan = SPI_prepare_cursor(stmt->sql, stmt->nargs, stmt->argtypes,
							  stmt->cursor_options);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 stmt->sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	stmt->plan = plan;
}

/*
 * us_spi_run
 *		Run a statement through SPI (between SPI_connect and SPI_finish),
 *		preparing and keeping its plan on first use.  Analysis and execution
 *		happen with pg_catalog alone on the search_path: unqualified
 *		operators and functions resolve there and nowhere else, whatever the
 *		caller's search_path, and the plan cache never replans because the
 *		caller's search_path changed.  An error in between is safe: the
 *		(sub)transaction abort pops the override.  Returns SPI's result code.
 */
int
us_spi_run(UsStatement *stmt, Datum *args, const char *nulls,
		   bool read_only, long tcount)
{
	OverrideSearchPath path = {NIL, true, false, 0};
	int			rc;

	PushOverrideSearchPath(&path);
	us_spi_plan(stmt);
	rc = SPI_execute_plan(stmt->plan, args, nulls, read_only, tcount);
	PopOverrideSearchPath();

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s",
			 stmt->sql, SPI_result_code_string(rc));
	return rc;
}

/*
 * us_spi_run_in_order
 *		us_spi_run for a statement that must read an index in its order
 *		(ORDER BY the index's columns, LIMIT), whatever the statistics and
 *		cost settings say: sorts and bitmap scans are disabled while it is
 *		planned and run, and nothing else.  Statistics taken while a table
 *		held finished batches make a big batch look like a few rows, and a
 *		generic plan then read all of its pending chunks through a bitmap
 *		and sorted them, at every call (a 500,000-item batch took 5 s
 *		instead of 1).  An error in between is safe: the (sub)transaction
 *		abort restores the settings.
 */
int
us_spi_run_in_order(UsStatement *stmt, Datum *args, bool read_only, long tcount)
{
	int			nest = NewGUCNestLevel();
	int			rc;

	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = us_spi_run(stmt, args, NULL, read_only, tcount);
	AtEOXact_GUC(true, nest);
	return rc;
}

/*
 * us_spi_cursor
 *		Open a cursor on a statement (as us_spi_run would run it), for
 *		results too big to hold at once: read them with SPI_cursor_fetch,
 *		then SPI_cursor_close.
 */
Portal
us_spi_cursor(UsStatement *stmt, Datum *args, const char *nulls, bool read_only)
{
	OverrideSearchPath path = {NIL, true, false, 0};
	Portal		portal;

	PushOverrideSearchPath(&path);
	us_spi_plan(stmt);
	portal = SPI_cursor_open(NULL, stmt->plan, args, nulls, read_only);
	PopOverrideSearchPath();
	if (portal == NULL)
		elog(ERROR, "SPI_cursor_open failed for \"%s\": %s",
			 stmt->sql, SPI_result_code_string(SPI_result));
	return portal;
}

/*
 * us_spi_value
 *		Column col (from 1) of row row of the last SPI result.
 */
Datum
us_spi_value(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/*
 * us_rel_subscribed
 *		Is the relation a table of a logical replication subscription in this
 *		database (enabled or not)?  Then the publisher writes it: the batch
 *		engine does not run here (its items are the publisher's), and the
 *		user count is not folded here (the publisher's folds arrive).
 */
bool
us_rel_subscribed(Oid relid)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	bool		found;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(SubscriptionRelRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_subscription_rel_srrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, SubscriptionRelSrrelidSrsubidIndexId, true,
							  NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}
