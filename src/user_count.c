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
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "catalog.h"
#include "user_ops.h"

PG_FUNCTION_INFO_V1(count_users_trigger);

/*
 * us_count_users
 *		Exact number of users in the snapshot: the sum of
 *		user_service.user_count_deltas.
 */
int64
us_count_users(Snapshot snapshot)
{
	Relation	rel = table_open(us_catalog()->count_deltas_relid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	int64		total = 0;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, 1, &isnull);

		if (!isnull)
			total += DatumGetInt64(d);
	}
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
 * us_compact_user_count
 *		Fold the rows of user_count_deltas into one (the workers do this when
 *		idle), so that list_users sums few rows.  The sum never changes, so
 *		concurrent readers and writers are unaffected.  Call inside SPI.
 */
void
us_compact_user_count(void)
{
	bool		isnull;

	us_spi_run(&us_count_deltas, NULL, NULL, true, 0);
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									1, &isnull)) > 1)
		us_spi_run(&us_fold_deltas, NULL, NULL, false, 0);
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

		delta = -us_count_users(latest);
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
