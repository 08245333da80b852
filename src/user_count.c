/*-------------------------------------------------------------------------
 *
 * user_count.c
 *		The exact number of users: a statement trigger on user_service.users
 *		appends each statement's net change to user_count_deltas, whose sum
 *		is the count in any snapshot; housekeeping folds its rows into one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "catalog.h"
#include "user_ops.h"

PG_FUNCTION_INFO_V1(count_users_trigger);

/*
 * us_count_users
 *		Exact number of users in the snapshot: the sum of
 *		user_service.user_count_deltas.  *rows (when not NULL) says how many
 *		rows it summed.
 */
int64
us_count_users(Snapshot snapshot, uint64 *rows)
{
	Relation	rel = table_open(us_catalog()->count_deltas_relid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	int64		total = 0;
	uint64		n = 0;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, 1, &isnull);

		if (!isnull)
			total += DatumGetInt64(d);
		n++;
	}
	if (rows)
		*rows = n;
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	return total;
}

static UsStatement us_count_deltas = {
	"SELECT count(*) FROM user_service.user_count_deltas", 0
};

static UsStatement us_fold_deltas = {
	"WITH d AS (DELETE FROM user_service.user_count_deltas RETURNING delta)"
	" INSERT INTO user_service.user_count_deltas (delta)"
	" SELECT s FROM (SELECT sum(delta)::bigint AS s FROM d) t WHERE s <> 0",
	0
};

/*
 * us_fold_deltas_now
 *		Fold the rows of user_count_deltas into one, unless another session
 *		is folding: the lock is taken without waiting and held to the end of
 *		the transaction, so that folds never wait on each other's row locks
 *		(and a reader never waits for a fold).  The sum never changes, so
 *		concurrent readers and writers are unaffected.  Never where the table
 *		is subscribed to: the publisher's folds arrive as deletes of the rows
 *		it folded and an insert of their sum, and a local fold would have
 *		deleted those rows already (the sum would then count twice).  Call
 *		inside SPI.
 */
static void
us_fold_deltas_now(void)
{
	if (us_rel_subscribed(us_catalog()->count_deltas_relid))
		return;
	if (ConditionalLockRelationOid(us_catalog()->count_deltas_relid,
								   ShareUpdateExclusiveLock))
		us_spi_run(&us_fold_deltas, NULL, NULL, false, 0);
}

/*
 * us_compact_user_count
 *		Fold user_count_deltas when it has more than one row (housekeeping:
 *		the workers when idle, process_batches when out of work), so that
 *		list_users sums few rows.  Call inside SPI.
 */
void
us_compact_user_count(void)
{
	bool		isnull;

	us_spi_run(&us_count_deltas, NULL, NULL, true, 0);
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									1, &isnull)) > 1)
		us_fold_deltas_now();
}

/*
 * us_fold_user_count_if_long
 *		Fold user_count_deltas when reading it summed more than
 *		US_FOLD_ROWS rows (list_users calls this), so that the count stays
 *		cheap without the workers' housekeeping too: without preloading, with
 *		no workers, in a database the workers do not serve.  Only where it
 *		can write: not on a standby, in a read-only or parallel operation, or
 *		under a transaction snapshot (REPEATABLE READ would fail on rows that
 *		another fold deleted meanwhile).
 */
void
us_fold_user_count_if_long(uint64 rows)
{
	UsSavedUser saved;

	if (rows <= US_FOLD_ROWS || RecoveryInProgress() || XactReadOnly ||
		IsInParallelMode() || IsolationUsesXactSnapshot())
		return;
	us_spi_begin(&saved);
	us_fold_deltas_now();
	us_spi_end(&saved);
}

static UsStatement us_clear_deltas = {
	"DELETE FROM user_service.user_count_deltas", 0
};

static UsStatement us_insert_count = {
	"INSERT INTO user_service.user_count_deltas (delta)"
	" SELECT count(*) FROM user_service.users RETURNING delta",
	0
};

/*
 * recount_users() RETURNS bigint
 *		Replace the rows of user_count_deltas by the number of users, counted:
 *		for when the statement triggers did not run (a data-only restore with
 *		--disable-triggers, rows written under session_replication_role =
 *		replica).  SHARE on users waits for every transaction writing users
 *		(their deltas are visible once they are done) and holds off new ones;
 *		EXCLUSIVE on user_count_deltas holds off the folds.  READ COMMITTED
 *		only: each statement must see what committed before the locks were
 *		granted.  Refused where user_count_deltas is subscribed to (the
 *		publisher's rows are the count there).
 */
PG_FUNCTION_INFO_V1(recount_users);
Datum
recount_users(PG_FUNCTION_ARGS)
{
	const UsCatalog *cat = us_catalog();
	UsSavedUser saved;
	bool		isnull;
	int64		total;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("recount_users must run in a READ COMMITTED transaction"),
				 errdetail("It counts what committed before it locked the users.")));
	if (us_rel_subscribed(cat->count_deltas_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the user count of this database is replicated from another server"),
				 errdetail("user_service.user_count_deltas belongs to a subscription here."),
				 errhint("Run recount_users on the publisher.")));

	us_spi_begin(&saved);
	LockRelationOid(cat->users_relid, ShareLock);
	LockRelationOid(cat->count_deltas_relid, ExclusiveLock);
	us_spi_run(&us_clear_deltas, NULL, NULL, false, 0);
	us_spi_run(&us_insert_count, NULL, NULL, false, 0);
	total = DatumGetInt64(us_spi_value(0, 1, &isnull));
	us_spi_end(&saved);
	PG_RETURN_INT64(total);
}

/*
 * count_users_trigger
 *		AFTER ... FOR EACH STATEMENT trigger on user_service.users: append the
 *		statement's net change of the number of users to user_count_deltas.
 *		INSERT and DELETE count their transition tables.  TRUNCATE cancels the
 *		whole sum, read with a fresh snapshot: its exclusive lock has waited
 *		for every transaction that changed users, so all their deltas are
 *		visible then.  The row is inserted directly (the table has neither
 *		indexes nor triggers), so whoever changes users needs no right on it.
 */
Datum
count_users_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const UsCatalog *cat;
	Relation	rel;
	int64		delta;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("count_users_trigger must be fired AFTER ... FOR EACH STATEMENT")));

	cat = us_catalog();
	if (RelationGetRelid(trigdata->tg_relation) != cat->users_relid)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("count_users_trigger may only be fired for user_service.users")));

	rel = table_open(cat->count_deltas_relid, RowExclusiveLock);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && trigdata->tg_newtable)
		delta = tuplestore_tuple_count(trigdata->tg_newtable);
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) && trigdata->tg_oldtable)
		delta = -tuplestore_tuple_count(trigdata->tg_oldtable);
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		Snapshot	latest = RegisterSnapshot(GetLatestSnapshot());

		delta = -us_count_users(latest, NULL);
		UnregisterSnapshot(latest);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("count_users_trigger needs a transition table for INSERT and DELETE")));

	if (delta != 0)
	{
		Datum		value = Int64GetDatum(delta);
		bool		isnull = false;
		HeapTuple	tup = heap_form_tuple(RelationGetDescr(rel), &value, &isnull);

		simple_heap_insert(rel, tup);
		heap_freetuple(tup);
	}
	table_close(rel, NoLock);

	return PointerGetDatum(NULL);
}
