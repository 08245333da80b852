/*-------------------------------------------------------------------------
 *
 * user_list.c
 *		Pages of users with the exact total, from one snapshot:
 *		list_users (numbered pages) and list_users_after (keyset pages).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "user_ops.h"

PG_FUNCTION_INFO_V1(list_users);
PG_FUNCTION_INFO_V1(list_users_after);

/* GUC variable, named after its GUC. */
static int	user_service_max_per_page = 100;

void
us_list_init(void)
{
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
}

/*
 * us_result_desc
 *		The result descriptor of a list function (a record of OUT
 *		parameters), kept at the call site (fn_extra) between calls.
 */
static TupleDesc
us_result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;

	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		desc = BlessTupleDesc(desc);
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = desc;
	}
	return desc;
}

/*
 * us_check_per_page
 *		1 <= per_page <= user_service.max_per_page, or 22023.
 */
static void
us_check_per_page(int32 per_page)
{
	if (per_page < 1 || per_page > user_service_max_per_page)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("per_page must be between 1 and %d", user_service_max_per_page),
				 errhint("The upper limit is set by user_service.max_per_page.")));
}

/*
 * us_list_page
 *		The (total, users) row of list_users and list_users_after: the exact
 *		total, and per_page users in id order from the primary key, either
 *		those with id > after_id (keyset) or those after skipping offset
 *		users.  Both from the caller's snapshot (the functions are STABLE).
 */
static Datum
us_list_page(FunctionCallInfo fcinfo, bool keyset, int64 after_id,
			 int64 offset, int32 per_page)
{
	Snapshot	snapshot = GetActiveSnapshot();
	const UsCatalog *cat = us_catalog();
	TupleDesc	result_desc = us_result_desc(fcinfo);
	TupleDesc	info_desc = us_user_info_desc();
	Oid			elemtype = cat->user_info_typid;
	int16		elemlen;
	bool		elembyval;
	char		elemalign;
	int64		total;
	uint64		delta_rows;
	Datum	   *items = palloc(sizeof(Datum) * per_page);
	int			n = 0;
	Datum		result[2];
	bool		result_nulls[2] = {false, false};

	get_typlenbyvalalign(elemtype, &elemlen, &elembyval, &elemalign);

	total = us_count_users(snapshot, &delta_rows);

	/* past the end: no need to walk the index */
	if (offset < total)
	{
		Relation	rel = table_open(cat->users_relid, AccessShareLock);
		Relation	idx = index_open(cat->users_pkey_relid, AccessShareLock);
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		IndexScanDesc scan = index_beginscan(rel, idx, snapshot, keyset ? 1 : 0, 0);
		ScanKeyData key;
		int64		skipped = 0;

		if (keyset)
		{
			ScanKeyInit(&key, 1, BTGreaterStrategyNumber, F_INT8GT,
						Int64GetDatum(after_id));
			index_rescan(scan, &key, 1, NULL, 0);
		}
		else
			index_rescan(scan, NULL, 0, NULL, 0);

		while (n < per_page &&
			   index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			CHECK_FOR_INTERRUPTS();
			if (skipped < offset)
			{
				skipped++;
				continue;
			}
			slot_getallattrs(slot);
			items[n++] = us_user_info(info_desc, slot->tts_values, slot->tts_isnull);
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, NoLock);
		table_close(rel, NoLock);
	}

	us_fold_user_count_if_long(delta_rows);

	result[0] = Int64GetDatum(total);
	result[1] = PointerGetDatum(construct_array(items, n, elemtype,
												elemlen, elembyval, elemalign));
	return HeapTupleGetDatum(heap_form_tuple(result_desc, result, result_nulls));
}

/*
 * list_users(page int DEFAULT 1, per_page int DEFAULT 20,
 *			  OUT total bigint, OUT users user_info[])
 *
 * Always one row.  A page past the end is an empty array; the offset is
 * computed in 64 bits, so no page number overflows.  The cost grows with
 * the offset (like OFFSET): list_users_after is the constant-cost way.
 */
Datum
list_users(PG_FUNCTION_ARGS)
{
	int32		page;
	int32		per_page;

	us_arg_not_null(fcinfo, 0, "page");
	us_arg_not_null(fcinfo, 1, "per_page");
	page = PG_GETARG_INT32(0);
	per_page = PG_GETARG_INT32(1);
	if (page < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("page must be at least 1")));
	us_check_per_page(per_page);

	PG_RETURN_DATUM(us_list_page(fcinfo, false, 0, (int64) (page - 1) * per_page,
								 per_page));
}

/*
 * list_users_after(after_id bigint DEFAULT 0, per_page int DEFAULT 20,
 *					OUT total bigint, OUT users user_info[])
 *
 * Keyset pagination: the per_page users with id > after_id, and the same
 * exact total.  One index descent, whatever the depth.
 */
Datum
list_users_after(PG_FUNCTION_ARGS)
{
	int32		per_page;

	us_arg_not_null(fcinfo, 0, "after_id");
	us_arg_not_null(fcinfo, 1, "per_page");
	per_page = PG_GETARG_INT32(1);
	us_check_per_page(per_page);

	PG_RETURN_DATUM(us_list_page(fcinfo, true, PG_GETARG_INT64(0), 0, per_page));
}
