/*-------------------------------------------------------------------------
 *
 * kind_registry.c
 *		Batch kinds registered by users: any function that takes one item
 *		(jsonb) and returns its result (jsonb), or takes a group of items
 *		(jsonb[]) and returns their results in order (jsonb[]).
 *
 * A registered kind is a row of user_service.registered_kinds and a
 * function user_service_kinds.<kind> whose body calls the handler.  That
 * function is never run: it is what records the handler as a dependency
 * (DROP FUNCTION of the handler is refused while the kind is registered;
 * with CASCADE it goes, and the kind's items then fail with an error that
 * says so), and pg_dump dumps it after the handler.  The handler is found
 * from it, so the kind follows its handler through dumps and restores.
 *
 * An item runs as the role that submitted its batch, in a
 * security-restricted operation with search_path pg_catalog, pg_temp: a
 * batch can do nothing its submitter could not do directly, and objects
 * planted in schemas on someone's search_path capture nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/catalog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "kind_registry.h"

/* A registered kind, and its handler: what its function depends on. */
#define US_FIND_KIND_SQL \
	"SELECT k.grouped, k.default_concurrency, k.secrets, d.refobjid" \
	"  FROM user_service.registered_kinds k" \
	"  LEFT JOIN pg_catalog.pg_proc w" \
	"         ON w.proname = k.kind AND w.pronamespace = 'user_service_kinds'::regnamespace" \
	"  LEFT JOIN pg_catalog.pg_depend d" \
	"         ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = w.oid" \
	"        AND d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'n'" \
	" WHERE k.kind = $1"

static UsStatement us_find_kind = {US_FIND_KIND_SQL, 1, {TEXTOID}};

/*
 * The same, locking the kind's row until the end of the transaction: a
 * submission holds it FOR KEY SHARE until it commits, so that the kind
 * cannot be unregistered (and registered again with another handler) under
 * a batch that is not committed yet; unregistering takes it FOR UPDATE,
 * waiting for those submissions, and then sees their batches.
 */
static UsStatement us_find_kind_share = {US_FIND_KIND_SQL " FOR KEY SHARE OF k", 1, {TEXTOID}};

static UsStatement us_lock_kind = {
	"SELECT FROM user_service.registered_kinds WHERE kind = $1 FOR UPDATE",
	1, {TEXTOID}
};

static UsStatement us_insert_kind = {
	"INSERT INTO user_service.registered_kinds (kind, grouped, default_concurrency, secrets)"
	" VALUES ($1, $2, $3, $4) ON CONFLICT (kind) DO NOTHING",
	4, {TEXTOID, BOOLOID, INT4OID, BOOLOID}
};

/* A kind whose handler is gone gets the new one's settings (see below). */
static UsStatement us_reattach_kind = {
	"UPDATE user_service.registered_kinds"
	"   SET grouped = $2, default_concurrency = $3, secrets = $4"
	" WHERE kind = $1",
	4, {TEXTOID, BOOLOID, INT4OID, BOOLOID}
};

static UsStatement us_delete_kind = {
	"DELETE FROM user_service.registered_kinds WHERE kind = $1",
	1, {TEXTOID}
};

/* Batches of the kind with items still to run (on the pending index). */
static UsStatement us_kind_busy = {
	"SELECT EXISTS (SELECT FROM user_service.batch_jobs b"
	"                WHERE b.kind = $1 AND b.finished_at IS NULL AND b.cancelled_at IS NULL"
	"                  AND EXISTS (SELECT FROM user_service.batch_chunks c"
	"                               WHERE c.batch_id = b.id AND c.pending > 0))",
	1, {TEXTOID}
};

/*
 * us_registered_kind
 *		The registered kind called kind, into *out; false when there is none
 *		(or the installed extension predates registered kinds).  With lock,
 *		its row stays locked FOR KEY SHARE until the transaction ends.
 */
bool
us_registered_kind(const char *kind, bool lock, UsRegisteredKind *out)
{
	UsSavedUser saved;
	Datum		args[1];
	bool		isnull;
	bool		found;

	if (!OidIsValid(us_catalog()->registered_kinds_relid))
		return false;

	args[0] = CStringGetTextDatum(kind);
	us_spi_begin(&saved);
	us_spi_run(lock ? &us_find_kind_share : &us_find_kind, args, NULL, !lock, 1);
	found = SPI_processed > 0;
	if (found)
	{
		Datum		d;

		out->grouped = DatumGetBool(us_spi_value(0, 1, &isnull));
		d = us_spi_value(0, 2, &isnull);
		out->default_concurrency = isnull ? 0 : DatumGetInt32(d);
		out->secrets = DatumGetBool(us_spi_value(0, 3, &isnull));
		d = us_spi_value(0, 4, &isnull);
		out->handler = isnull ? InvalidOid : DatumGetObjectId(d);
	}
	us_spi_end(&saved);
	return found;
}

/*
 * us_check_handler
 *		Whether the function can be a kind's handler; sets *grouped.
 */
static void
us_check_handler(Oid handler, bool *grouped)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", handler)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	*grouped = proc->pronargs == 1 && proc->proargtypes.values[0] == JSONBARRAYOID;
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset && proc->pronargs == 1 &&
		((proc->proargtypes.values[0] == JSONBOID && proc->prorettype == JSONBOID) ||
		 (*grouped && proc->prorettype == JSONBARRAYOID));
	ReleaseSysCache(tup);
	/* (no dependency is recorded on a pinned object: nothing would find it) */
	if (ok && IsPinnedObject(ProcedureRelationId, handler))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("built-in function %s cannot be a batch kind's handler",
						format_procedure(handler)),
				 errhint("Write a function of your own that calls it.")));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function %s cannot be a batch kind's handler",
						format_procedure(handler)),
				 errdetail("A handler is a function that takes jsonb and returns jsonb, or takes jsonb[] and returns jsonb[].")));
}

/* A statement on a kind's function (DDL), as the extension's owner. */
static void
us_kind_ddl(const char *sql)
{
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "SPI_execute failed: %s", sql);
}

/*
 * us_register_kind
 *		Register a kind (its name checked by the caller): 42501 unless the
 *		caller owns the handler or is a superuser, 42710 when the name is
 *		taken by a kind that has its handler (one that lost it gets this
 *		one, from a superuser or the extension's owner).
 */
void
us_register_kind(const char *kind, Oid handler, int32 default_concurrency, bool secrets)
{
	UsSavedUser saved;
	bool		grouped;
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	const char *argtype;

	if (!OidIsValid(us_catalog()->registered_kinds_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("registered batch kinds need user_service 1.3"),
				 errhint("Run ALTER EXTENSION user_service UPDATE.")));
	us_check_handler(handler, &grouped);
	if (!superuser() && !pg_proc_ownercheck(handler, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_FUNCTION, get_func_name(handler));
	argtype = grouped ? "pg_catalog.jsonb[]" : "pg_catalog.jsonb";

	args[0] = CStringGetTextDatum(kind);
	args[1] = BoolGetDatum(grouped);
	args[2] = Int32GetDatum(default_concurrency);
	nulls[2] = default_concurrency > 0 ? ' ' : 'n';
	args[3] = BoolGetDatum(secrets);

	us_spi_begin(&saved);
	us_spi_run(&us_insert_kind, args, nulls, false, 0);
	if (SPI_processed == 0)
	{
		UsRegisteredKind reg;

		/*
		 * Registered, but without its handler: dropped with CASCADE, or
		 * the row came without the kind's function (a logical replica, a
		 * partition moved to another server, a data-only restore).  The
		 * new handler takes its place; the kind's batches go on with it.
		 */
		if (!us_registered_kind(kind, true, &reg) || OidIsValid(reg.handler))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("batch kind \"%s\" is already registered", kind)));
		/* its pending items, anybody's, would run the new handler */
		if (!superuser_arg(saved.userid) && !has_privs_of_role(saved.userid, us_catalog()->owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("batch kind \"%s\" has lost its handler: only a superuser or the extension's owner may give it another",
							kind)));
		us_spi_run(&us_reattach_kind, args, nulls, false, 0);
	}
	us_kind_ddl(psprintf("CREATE FUNCTION user_service_kinds.%s(item %s) RETURNS %s"
						 " LANGUAGE sql BEGIN ATOMIC SELECT %s.%s(item); END",
						 quote_identifier(kind), argtype, argtype,
						 quote_identifier(get_namespace_name(get_func_namespace(handler))),
						 quote_identifier(get_func_name(handler))));
	us_kind_ddl(psprintf("REVOKE ALL ON FUNCTION user_service_kinds.%s(%s) FROM PUBLIC",
						 quote_identifier(kind), argtype));
	us_kind_ddl(psprintf("COMMENT ON FUNCTION user_service_kinds.%s(%s) IS"
						 " 'calls the handler of batch kind %s'",
						 quote_identifier(kind), argtype, kind));
	us_spi_end(&saved);
}

/*
 * us_unregister_kind
 *		Remove a registered kind: 42704 when there is none, 42501 unless the
 *		caller owns its handler (the extension, when the handler was
 *		dropped) or is a superuser, 55006 while a batch of it has items to
 *		run.
 */
void
us_unregister_kind(const char *kind)
{
	UsRegisteredKind reg;
	UsSavedUser saved;
	Datum		args[1];
	bool		isnull;

	if (!us_registered_kind(kind, false, &reg))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("batch kind \"%s\" is not registered", kind)));
	if (!superuser() &&
		!(OidIsValid(reg.handler) ? pg_proc_ownercheck(reg.handler, GetUserId()) :
		  has_privs_of_role(GetUserId(), us_catalog()->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of the handler of batch kind \"%s\"", kind)));

	args[0] = CStringGetTextDatum(kind);
	us_spi_begin(&saved);
	/* wait for submissions of the kind in progress: their batches count */
	us_spi_run(&us_lock_kind, args, NULL, false, 0);
	us_spi_run(&us_kind_busy, args, NULL, false, 0);
	if (DatumGetBool(us_spi_value(0, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("batch kind \"%s\" has unfinished batches", kind),
				 errhint("Wait for them (wait_batch) or cancel them (cancel_batch) first.")));
	us_spi_run(&us_delete_kind, args, NULL, false, 0);
	/* a handler dropped with CASCADE took the kind's function with it */
	if (OidIsValid(reg.handler))
		us_kind_ddl(psprintf("DROP FUNCTION user_service_kinds.%s(%s)", quote_identifier(kind),
							 reg.grouped ? "pg_catalog.jsonb[]" : "pg_catalog.jsonb"));
	us_spi_end(&saved);
}

/*
 * us_check_handler_privileges
 *		What calling the handler by its name needs: USAGE on its schema and
 *		EXECUTE on it (42501 otherwise).
 */
void
us_check_handler_privileges(Oid handler, Oid roleid)
{
	Oid			nsp = get_func_namespace(handler);
	AclResult	aclresult;

	aclresult = pg_namespace_aclcheck(nsp, roleid, ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_SCHEMA, get_namespace_name(nsp));
	aclresult = pg_proc_aclcheck(handler, roleid, ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(handler));
}

/*
 * us_call_handler
 *		Call a kind's handler with arg (an item, or an array of them) as
 *		submitter, in a security-restricted operation with search_path
 *		pg_catalog, pg_temp, and return its result.  An error (of the handler,
 *		or 42501 when the submitter may no longer execute it) is thrown: the
 *		caller's subtransaction restores the user and the settings.  flinfo
 *		is the caller's, zeroed before the first call: calls with the same
 *		one keep what the handler's language caches between calls (a SQL
 *		function's plan, within one subtransaction).
 */
Datum
us_call_handler(const char *kind, Oid handler, FmgrInfo *flinfo, Oid submitter, Datum arg,
				bool *isnull)
{
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	Datum		result;

	if (!OidIsValid(handler))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the handler of batch kind \"%s\" was dropped", kind),
				 errhint("Register the kind again (unregister_batch_kind, register_batch_kind) and submit the items again.")));
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(submitter)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that submitted the batch no longer exists")));
	us_check_handler_privileges(handler, submitter);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(submitter, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	if (flinfo->fn_oid != handler)
		fmgr_info(handler, flinfo);
	InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	*isnull = fcinfo->isnull;

	/*
	 * Pop with isCommit false: whatever the handler SET (search_path,
	 * default_transaction_read_only, ...) goes with it, as after a
	 * security-restricted operation of PostgreSQL's own.  Kept, it would
	 * stay for the rest of the worker's life, or of the session of whoever
	 * ran process_batches, with the submitter's choice of values.
	 */
	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
	return result;
}
