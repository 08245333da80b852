/*-------------------------------------------------------------------------
 *
 * batches.c
 *		The SQL-callable batch API: submit_batch, batch_status,
 *		batch_results, cancel_batch, wait_batch, process_batches, and the
 *		functions behind the workers and batches views.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "catalog.h"
#include "kind_registry.h"
#include "redact.h"
#include "slots.h"

PG_FUNCTION_INFO_V1(submit_batch);
PG_FUNCTION_INFO_V1(batch_status);
PG_FUNCTION_INFO_V1(batch_results);
PG_FUNCTION_INFO_V1(cancel_batch);
PG_FUNCTION_INFO_V1(wait_batch);
PG_FUNCTION_INFO_V1(process_batches);
PG_FUNCTION_INFO_V1(running_items);
PG_FUNCTION_INFO_V1(worker_info);
PG_FUNCTION_INFO_V1(register_batch_kind);
PG_FUNCTION_INFO_V1(unregister_batch_kind);

/*
 * GUC variable, named after its GUC: the longest one wait_batch call
 * sleeps, in milliseconds, whatever its timeout asks (0: no cap).  Behind a
 * transaction pooler a wait holds a server connection; with a cap, a client
 * polls wait_batch instead and the connection is shared between polls.
 */
static int	user_service_max_batch_wait = 0;

void
us_batches_init(void)
{
	DefineCustomIntVariable("user_service.max_batch_wait",
							"Longest wait of one wait_batch call (0: as long as its timeout).",
							"wait_batch returns false when the cap is reached first; "
							"a pooled client calls it again.",
							&user_service_max_batch_wait,
							0,
							0,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

static UsStatement us_select_status = {
	"SELECT batch_id, kind, state, total, pending, running, succeeded, failed,"
	" cancelled, concurrency, submitted_at, started_at, finished_at"
	" FROM user_service.batches WHERE batch_id = $1",
	1, {INT8OID}
};

static UsStatement us_batch_owner = {
	"SELECT submitted_by FROM user_service.batch_jobs WHERE id = $1",
	1, {INT8OID}
};

/* Is the batch complete: every item finished (from the progress rows)? */
static UsStatement us_batch_done = {
	"SELECT (SELECT coalesce(sum(succeeded + failed + cancelled), 0)"
	"          FROM user_service.batch_progress WHERE batch_id = b.id) >= b.total"
	"  FROM user_service.batch_jobs b WHERE b.id = $1",
	1, {INT8OID}
};

static UsStatement us_select_results = {
	"SELECT item, status, user_id, sqlstate, error, result FROM user_service.batch_items"
	" WHERE batch_id = $1 ORDER BY item",
	1, {INT8OID}
};

/* The same under a schema older than 1.3, whose items have no result. */
static UsStatement us_select_results_12 = {
	"SELECT item, status, user_id, sqlstate, error FROM user_service.batch_items"
	" WHERE batch_id = $1 ORDER BY item",
	1, {INT8OID}
};

/*
 * What a cancel does after cancelling items (the CTE c, a row per changed
 * row with the items it cancelled in n): a progress row with their number,
 * and the batch's cancelled_at; returns the number.
 */
#define US_CANCEL_COUNTS \
	" n AS (SELECT coalesce(sum(c.n), 0)::int4 AS n FROM c)," \
	" g AS (INSERT INTO user_service.batch_progress (batch_id, at, cancelled)" \
	"       SELECT $1, clock_timestamp(), n.n FROM n WHERE n.n > 0)" \
	" UPDATE user_service.batch_jobs b" \
	"    SET cancelled_at = CASE WHEN n.n > 0 THEN coalesce(b.cancelled_at, now()) ELSE b.cancelled_at END" \
	"   FROM n WHERE b.id = $1 RETURNING n.n"

/*
 * Cancel a batch's pending items.  A chunk that a worker holds is waited
 * for, and the update then applies to the version the worker wrote.  Every
 * pending item of a chunk is cancelled at once, so the items this cancel
 * cancelled are the chunk's cancelled items finished now.
 */
static UsStatement us_cancel = {
	"WITH c AS ("
	"  UPDATE user_service.batch_chunks x"
	"     SET (status, payload, finished_at) ="
	"         (SELECT array_agg(CASE WHEN u.s = 'pending' THEN 'cancelled' ELSE u.s END ORDER BY u.o),"
	"                 array_agg(CASE WHEN u.s <> 'pending' THEN u.p WHEN $2 THEN '{}'::jsonb"
	"                                ELSE u.p - '{password,password_hash}'::text[] END ORDER BY u.o),"
	"                 array_agg(CASE WHEN u.s = 'pending' THEN now() ELSE u.f END ORDER BY u.o)"
	"            FROM ROWS FROM (unnest(x.status), unnest(x.payload), unnest(x.finished_at))"
	"                 WITH ORDINALITY AS u(s, p, f, o)),"
	"         pending = 0, due = NULL"
	"   WHERE x.batch_id = $1 AND x.pending > 0"
	"  RETURNING (SELECT count(*) FROM ROWS FROM (unnest(x.status), unnest(x.finished_at)) AS u(s, f)"
	"              WHERE u.s = 'cancelled' AND u.f = now()) AS n),"
	US_CANCEL_COUNTS,
	2, {INT8OID, BOOLOID}
};

/* The same under a schema older than 1.3, an item to a row. */
static UsStatement us_cancel_12 = {
	"WITH c AS ("
	"  UPDATE user_service.batch_items"
	"     SET status = 'cancelled',"
	"         payload = CASE WHEN $2 THEN '{}'::jsonb"
	"                        ELSE payload - '{password,password_hash}'::text[] END,"
	"         finished_at = now()"
	"   WHERE batch_id = $1 AND status = 'pending' RETURNING 1 AS n),"
	US_CANCEL_COUNTS,
	2, {INT8OID, BOOLOID}
};

static UsStatement us_batch_kind = {
	"SELECT kind FROM user_service.batch_jobs WHERE id = $1",
	1, {INT8OID}
};

/* rows of batch_results read at a time */
#define US_RESULTS_PAGE	1000

static Oid	us_batch_submitter(int64 batch_id, bool read_only);
static void us_check_batch_access(Oid caller, Oid submitter, int64 batch_id);

static void
us_batch_not_found(int64 batch_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("batch " INT64_FORMAT " not found", batch_id)));
}

/*
 * submit_batch(kind text, items jsonb, concurrency int DEFAULT NULL)
 *		RETURNS bigint
 *
 * Validate the whole submission, then store the batch and its items in the
 * caller's transaction; the workers are woken when it commits.  A notice
 * says so when no worker will process it.
 */
Datum
submit_batch(PG_FUNCTION_ARGS)
{
	int64		batch_id;

	us_password_call();
	us_arg_not_null(fcinfo, 0, "kind");
	us_arg_not_null(fcinfo, 1, "items");
	batch_id = us_batch_submit(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_JSONB_P(1),
							   !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2));

	us_wake_workers_at_commit();

	if (!us_slots_ready())
		ereport(NOTICE,
				(errmsg("user_service is not loaded through shared_preload_libraries: no background worker will process batch " INT64_FORMAT,
						batch_id),
				 errhint("Add user_service to shared_preload_libraries and restart the server, or run user_service.process_batches().")));
	else if (user_service_workers == 0)
		ereport(NOTICE,
				(errmsg("user_service.workers is 0: no background worker will process batch " INT64_FORMAT,
						batch_id),
				 errhint("Raise user_service.workers and reload the configuration, or run user_service.process_batches().")));
	else if (!us_database_served(get_database_name(MyDatabaseId)))
		ereport(NOTICE,
				(errmsg("the user_service workers serve \"%s\", not this database: none will process batch " INT64_FORMAT,
						user_service_database, batch_id),
				 errhint("Add it to user_service.database and reload the configuration, or run user_service.process_batches().")));

	PG_RETURN_INT64(batch_id);
}

/*
 * batch_status(batch_id bigint) RETURNS batch_info
 *		One row of the view user_service.batches, which holds the one
 *		definition of a batch's state and counts.
 */
Datum
batch_status(PG_FUNCTION_ARGS)
{
	int64		batch_id;
	UsSavedUser saved;
	Datum		args[1];
	TupleDesc	desc;
	Datum		values[13];
	bool		nulls[13];
	MemoryContext callcxt = CurrentMemoryContext;

	us_arg_not_null(fcinfo, 0, "batch_id");
	batch_id = PG_GETARG_INT64(0);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE ||
		desc->natts != lengthof(values))
		elog(ERROR, "batch_status must return user_service.batch_info");
	desc = BlessTupleDesc(desc);

	args[0] = Int64GetDatum(batch_id);
	us_spi_begin(&saved);
	us_check_batch_access(saved.userid, us_batch_submitter(batch_id, false), batch_id);
	us_spi_run(&us_select_status, args, NULL, false, 1);
	if (SPI_processed == 0)
		us_batch_not_found(batch_id);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		d = us_spi_value(0, i + 1, &nulls[i]);
		MemoryContext old = MemoryContextSwitchTo(callcxt);

		values[i] = nulls[i] ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
		MemoryContextSwitchTo(old);
	}
	us_spi_end(&saved);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * us_batch_submitter
 *		Who submitted the batch (P0002 when there is none); call inside SPI.
 *		read_only: in the active snapshot as it is (else SPI's usual
 *		snapshot for a statement of the transaction).
 */
static Oid
us_batch_submitter(int64 batch_id, bool read_only)
{
	Datum		args[1] = {Int64GetDatum(batch_id)};
	bool		isnull;

	us_spi_run(&us_batch_owner, args, NULL, read_only, 1);
	if (SPI_processed == 0)
		us_batch_not_found(batch_id);
	return DatumGetObjectId(us_spi_value(0, 1, &isnull));
}

/*
 * us_check_batch_access
 *		A batch (its status, its results, which name emails, waiting for it
 *		and cancelling it) belongs to the role that submitted it, and to the
 *		owner of the extension's tables (administrators); 42501 for anyone
 *		else.
 */
static void
us_check_batch_access(Oid caller, Oid submitter, int64 batch_id)
{
	if (!has_privs_of_role(caller, submitter) &&
		!has_privs_of_role(caller, us_catalog()->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for batch " INT64_FORMAT, batch_id),
				 errdetail("Only the role that submitted a batch, and the owner of the user_service tables, may see it, wait for it or cancel it.")));
}

/*
 * batch_results(batch_id bigint)
 *		RETURNS TABLE (item int, status text, user_id bigint, sqlstate text, error text,
 *					   result jsonb)
 *
 * Pending items that a worker is processing right now show as 'running'.
 */
Datum
batch_results(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		batch_id;
	UsSavedUser saved;
	Datum		args[1];
	Datum		running;
	Portal		portal;
	int			ncols;

	us_arg_not_null(fcinfo, 0, "batch_id");
	batch_id = PG_GETARG_INT64(0);
	InitMaterializedSRF(fcinfo, 0);
	running = CStringGetTextDatum("running");
	/* 6 columns from 1.3 on (result), 5 before */
	ncols = rsinfo->setDesc->natts;
	if (ncols != 5 && ncols != 6)
		elog(ERROR, "batch_results returns %d columns", ncols);

	args[0] = Int64GetDatum(batch_id);
	us_spi_begin(&saved);
	us_check_batch_access(saved.userid, us_batch_submitter(batch_id, false), batch_id);

	/*
	 * A page of rows at a time into the tuplestore, which keeps work_mem in
	 * memory and the rest on disk: a batch of millions of items costs no
	 * more memory than a small one.
	 */
	portal = us_spi_cursor(ncols == 6 ? &us_select_results : &us_select_results_12,
						   args, NULL, false);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, US_RESULTS_PAGE);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			Datum		values[6];
			bool		nulls[6];
			text	   *status;

			for (int c = 0; c < ncols; c++)
				values[c] = us_spi_value(r, c + 1, &nulls[c]);
			status = DatumGetTextPP(values[1]);
			if (VARSIZE_ANY_EXHDR(status) == strlen("pending") &&
				memcmp(VARDATA_ANY(status), "pending", strlen("pending")) == 0 &&
				us_item_running(batch_id, DatumGetInt32(values[0])))
				values[1] = running;
			/* the tuplestore copies the values */
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	us_spi_end(&saved);
	return (Datum) 0;
}

/*
 * cancel_batch(batch_id bigint) RETURNS bigint
 *		Cancel the items that have not started.  Items being processed are
 *		row-locked: the UPDATE waits for them to finish (they are then no
 *		longer pending), so running items complete and are not counted.
 *		Once it has waited, every item is final: the batch is complete.
 */
Datum
cancel_batch(PG_FUNCTION_ARGS)
{
	int64		batch_id;
	UsSavedUser saved;
	Datum		args[2];
	bool		isnull;
	int32		n;

	us_arg_not_null(fcinfo, 0, "batch_id");
	batch_id = PG_GETARG_INT64(0);
	us_check_not_own_batch(batch_id, "cancel");

	args[0] = Int64GetDatum(batch_id);
	us_spi_begin(&saved);
	us_check_batch_access(saved.userid, us_batch_submitter(batch_id, false), batch_id);
	/* the items of a kind whose items are secrets keep nothing */
	us_spi_run(&us_batch_kind, args, NULL, false, 0);
	args[1] = BoolGetDatum(SPI_processed > 0 &&
						   us_kind_secret_items(us_kind_of_batch(TextDatumGetCString(us_spi_value(0, 1, &isnull)))));
	us_spi_run(OidIsValid(us_catalog()->batch_chunks_relid) ? &us_cancel : &us_cancel_12,
			   args, NULL, false, 0);
	if (SPI_processed == 0)
		us_batch_not_found(batch_id);
	n = DatumGetInt32(us_spi_value(0, 1, &isnull));
	(void) us_batch_note_finished(batch_id);
	us_spi_end(&saved);

	us_wake_waiters_at_commit();
	PG_RETURN_INT64(n);
}

/*
 * us_batch_finished
 *		Is the batch finished, as committed now (a fresh snapshot, so this
 *		works in any isolation level)?  P0002 when there is no such batch.
 */
static bool
us_batch_finished(int64 batch_id)
{
	UsSavedUser saved;
	Datum		args[1] = {Int64GetDatum(batch_id)};
	bool		isnull;
	bool		finished;
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

	PushActiveSnapshot(snap);
	us_spi_begin(&saved);
	us_spi_run(&us_batch_done, args, NULL, true, 1);
	if (SPI_processed == 0)
		us_batch_not_found(batch_id);
	finished = DatumGetBool(us_spi_value(0, 1, &isnull));
	us_spi_end(&saved);
	PopActiveSnapshot();
	UnregisterSnapshot(snap);
	return finished;
}

/*
 * wait_batch(batch_id bigint, timeout interval DEFAULT '1 minute')
 *		RETURNS boolean
 *
 * True when the batch is finished, false when the timeout (or
 * user_service.max_batch_wait, when that is set and shorter) ran out.
 * Sleeps on a condition variable that is broadcast whenever a batch
 * finishes (or, without shared_preload_libraries, on the latch with a 1 s
 * timeout), so it neither spins nor misses the end; cancel requests
 * interrupt it.
 */
Datum
wait_batch(PG_FUNCTION_ARGS)
{
	int64		batch_id;
	Interval   *timeout;
	double		seconds;
	int64		usecs;
	TimestampTz deadline;

	us_arg_not_null(fcinfo, 0, "batch_id");
	us_arg_not_null(fcinfo, 1, "timeout");
	batch_id = PG_GETARG_INT64(0);
	timeout = PG_GETARG_INTERVAL_P(1);
	us_check_not_own_batch(batch_id, "wait for");

	/*
	 * Months and days as 30 and 24 hours, like EXTRACT(epoch ...), in
	 * floating point so that no interval overflows; waits are capped at 100
	 * years.
	 */
	seconds = timeout->time / (double) USECS_PER_SEC +
		((double) timeout->month * DAYS_PER_MONTH + timeout->day) * SECS_PER_DAY;
	if (seconds < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	usecs = (int64) (Min(seconds, 100.0 * 365 * SECS_PER_DAY) * USECS_PER_SEC);
	if (user_service_max_batch_wait > 0)
		usecs = Min(usecs, (int64) user_service_max_batch_wait * 1000);
	deadline = GetCurrentTimestamp() + usecs;

	/* as committed now, like the waiting below */
	{
		UsSavedUser saved;
		Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

		PushActiveSnapshot(snap);
		us_spi_begin(&saved);
		us_check_batch_access(saved.userid, us_batch_submitter(batch_id, true), batch_id);
		us_spi_end(&saved);
		PopActiveSnapshot();
		UnregisterSnapshot(snap);
	}

	for (;;)
	{
		long		remaining_ms;

		if (us_batch_finished(batch_id))
		{
			us_wait_for_batches_done();
			PG_RETURN_BOOL(true);
		}
		remaining_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining_ms <= 0)
		{
			us_wait_for_batches_done();
			PG_RETURN_BOOL(false);
		}
		us_wait_for_batches(Min(remaining_ms, 1000));
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * process_batches(max_items int DEFAULT 1000) RETURNS bigint
 *		Process up to max_items pending items in this session, inside the
 *		caller's transaction, under the same concurrency slots as the workers.
 *		For servers without the workers (no shared_preload_libraries, or a
 *		schedule driving the work, e.g. pg_cron).  When it runs out of work it
 *		also does the workers' housekeeping.  Returns how many items it
 *		processed.
 */
Datum
process_batches(PG_FUNCTION_ARGS)
{
	int32		max_items;
	int64		done = 0;

	us_arg_not_null(fcinfo, 0, "max_items");
	max_items = PG_GETARG_INT32(0);
	if (max_items < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_items must be at least 1")));
	if (!us_batches_run_here())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the batches of this database are replicated from another server"),
				 errdetail("user_service.batch_chunks belongs to a subscription here."),
				 errhint("Process them on the publisher, or drop the subscription first.")));

	while (done < max_items)
	{
		int64		batch_id;
		bool		deferred;
		int			n = us_process_group(NULL, NULL, max_items - done, &batch_id, &deferred);

		if (n == 0)
			break;
		done += n;
	}

	/*
	 * Out of work: the housekeeping the workers do when idle (finish, purge
	 * past the retention, fold the user count), so that a server driven by
	 * process_batches alone keeps its tables small too.  It skips rows others
	 * hold (never waits: the caller's transaction may stay open, and holds up
	 * nobody), and is left out where it cannot write or would meet
	 * serialization failures (REPEATABLE READ and SERIALIZABLE).
	 */
	if (done < max_items && !XactReadOnly && !RecoveryInProgress() &&
		!IsolationUsesXactSnapshot())
		us_purge_batches();

	/* some batch may be complete when this commits: let waiters look */
	if (done > 0)
		us_wake_waiters_at_commit();
	PG_RETURN_INT64(done);
}

/*
 * running_items(OUT batch_id bigint, OUT running int) RETURNS SETOF record
 *		Per batch, how many items the workers are processing now.
 */
Datum
running_items(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	UsWorkerSlot copy[US_MAX_WORKERS];
	int64		batch[US_MAX_WORKERS];
	int32		count[US_MAX_WORKERS];
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (!us_slots_copy(copy))
		return (Datum) 0;

	for (int i = 0; i < US_MAX_WORKERS; i++)
	{
		UsWorkerSlot *s = &copy[i];
		int			j;

		if (s->pid == 0 || !s->busy || s->dboid != MyDatabaseId)
			continue;
		for (j = 0; j < n && batch[j] != s->batch_id; j++)
			;
		if (j == n)
		{
			batch[n] = s->batch_id;
			count[n++] = 0;
		}
		count[j] += s->nitems;
	}

	for (int j = 0; j < n; j++)
	{
		Datum		values[2] = {Int64GetDatum(batch[j]), Int32GetDatum(count[j])};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * worker_info(OUT pid int, OUT state text, OUT batch_id bigint, OUT item int,
 *			   OUT items int) RETURNS SETOF record
 *		One row per running worker; item is the first of the group it is
 *		processing, items how many the group has.
 */
Datum
worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	UsWorkerSlot copy[US_MAX_WORKERS];

	InitMaterializedSRF(fcinfo, 0);
	if (!us_slots_copy(copy))
		return (Datum) 0;

	for (int i = 0; i < US_MAX_WORKERS; i++)
	{
		UsWorkerSlot *s = &copy[i];
		Datum		values[5];
		bool		nulls[5] = {false, false, !s->busy, !s->busy, !s->busy};

		if (s->pid == 0)
			continue;
		values[0] = Int32GetDatum(s->pid);
		values[1] = CStringGetTextDatum(s->busy ? "busy" : "idle");
		values[2] = Int64GetDatum(s->batch_id);
		values[3] = Int32GetDatum(s->busy ? s->items[0] : 0);
		values[4] = Int32GetDatum(s->nitems);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * us_kind_name_arg
 *		The kind argument of (un)register_batch_kind: 22004 when NULL, 22023
 *		when it is not a kind's name.
 */
static char *
us_kind_name_arg(FunctionCallInfo fcinfo)
{
	char	   *kind;
	size_t		len;

	us_arg_not_null(fcinfo, 0, "kind");
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	len = strlen(kind);
	if (len == 0 || len > 48 || !(kind[0] >= 'a' && kind[0] <= 'z') ||
		strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid batch kind name"),
				 errdetail("A kind's name is a lower-case letter followed by at most 47 lower-case letters, digits and underscores.")));
	return kind;
}

/*
 * register_batch_kind(kind text, handler regprocedure,
 *					   default_concurrency int DEFAULT NULL,
 *					   secrets boolean DEFAULT false) RETURNS void
 *		Make a function a batch kind (kind_registry.c).
 */
Datum
register_batch_kind(PG_FUNCTION_ARGS)
{
	char	   *kind = us_kind_name_arg(fcinfo);
	int32		default_concurrency = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);

	us_arg_not_null(fcinfo, 1, "handler");
	us_arg_not_null(fcinfo, 3, "secrets");
	if (us_kind_builtin(kind))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("batch kind \"%s\" is built in", kind)));
	if (!PG_ARGISNULL(2) && default_concurrency < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("default_concurrency must be at least 1")));
	us_register_kind(kind, PG_GETARG_OID(1), default_concurrency, PG_GETARG_BOOL(3));
	PG_RETURN_VOID();
}

/*
 * unregister_batch_kind(kind text) RETURNS void
 */
Datum
unregister_batch_kind(PG_FUNCTION_ARGS)
{
	char	   *kind = us_kind_name_arg(fcinfo);

	if (us_kind_builtin(kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch kind \"%s\" is built in", kind)));
	us_unregister_kind(kind);
	PG_RETURN_VOID();
}
