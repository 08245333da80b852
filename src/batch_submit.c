/*-------------------------------------------------------------------------
 *
 * batch_submit.c
 *		Storing a submission: the batch's row in batch_jobs, and its items
 *		in batch_items, written the way COPY FROM writes rows.
 *
 * The whole submission is validated first (batch_kinds.c), so a malformed
 * one stores nothing.  Everything is written in the caller's transaction,
 * as the owner of the tables; the workers are woken when it commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "batch.h"
#include "catalog.h"

/* GUC variable, named after its GUC. */
int			user_service_default_concurrency = 4;

static UsStatement us_insert_batch = {
	"INSERT INTO user_service.batch_jobs (kind, concurrency, total, submitted_by)"
	" VALUES ($1, $2, $3, $4) RETURNING id",
	4, {TEXTOID, INT4OID, INT4OID, OIDOID}
};

/* The SQL way of storing a submission's items: see us_store_items. */
static UsStatement us_insert_items = {
	"INSERT INTO user_service.batch_items (batch_id, item, payload)"
	" SELECT $1, e.o::int4, e.v FROM jsonb_array_elements($2) WITH ORDINALITY AS e(v, o)",
	2, {INT8OID, JSONBOID}
};

void
us_batch_submit_init(void)
{
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
}

/*
 * Columns of user_service.batch_items (fixed by the install scripts), and
 * how many items go to the table at a time.
 */
#define Natts_batch_items			11
#define Anum_batch_items_batch_id	1
#define Anum_batch_items_item		2
#define Anum_batch_items_status		3
#define Anum_batch_items_payload	4
#define Anum_batch_items_attempts	5
#define US_ITEMS_PER_INSERT			1000

/*
 * us_items_bulk_ok
 *		Whether the items may bypass INSERT: the table is the install script's
 *		plain table, and nobody added triggers, row-level security or columns
 *		(each of which INSERT honours and the bulk path would not).
 */
static bool
us_items_bulk_ok(Relation rel)
{
	return rel->rd_rel->relkind == RELKIND_RELATION &&
		rel->trigdesc == NULL &&
		!rel->rd_rel->relrowsecurity &&
		RelationGetNumberOfAttributes(rel) == Natts_batch_items &&
		TupleDescAttr(RelationGetDescr(rel), Anum_batch_items_payload - 1)->atttypid == JSONBOID;
}

/*
 * How a submission's items reach the table (us_store_items).
 *
 * Every item of a submission has the same batch_id, the only column of the
 * BRIN index batch_items_batch.  A BRIN summary covers a range of heap
 * blocks, and adding a value that it already covers changes nothing (so
 * with every BRIN operator class: minmax, minmax-multi, inclusion, bloom).
 * So once the first item placed in a heap block has been indexed, the
 * block's other items need no entry in such an index: they go through
 * `rest`, the same result relation without the BRIN indexes on batch_id
 * alone.  That saves a revmap lookup and a summary comparison per item.
 * Heap tuples are written before their index entries, so a concurrent
 * summarization of the range finds them in the heap.
 */
typedef struct UsItemWriter
{
	ResultRelInfo *all;			/* with every index */
	ResultRelInfo *rest;		/* the same without BRIN indexes on batch_id */
	EState	   *estate;
	CommandId	cid;
	BulkInsertState bistate;
	BlockNumber last_block;		/* the heap block of the last item */
} UsItemWriter;

/* Is this a BRIN index on batch_id alone (one value per submission)? */
static bool
us_index_on_batch_id_brin(Relation index, IndexInfo *info)
{
	return index->rd_rel->relam == BRIN_AM_OID &&
		info->ii_NumIndexAttrs == 1 &&
		info->ii_IndexAttrNumbers[0] == Anum_batch_items_batch_id &&
		info->ii_Expressions == NIL &&
		info->ii_Predicate == NIL;
}

static void
us_item_writer_init(UsItemWriter *w, Relation rel)
{
	ResultRelInfo *all = makeNode(ResultRelInfo);
	ResultRelInfo *rest = makeNode(ResultRelInfo);
	int			n = 0;

	w->estate = CreateExecutorState();
	InitResultRelInfo(all, rel, 0, NULL, 0);
	ExecOpenIndices(all, false);

	*rest = *all;
	rest->ri_IndexRelationDescs = palloc(sizeof(Relation) * all->ri_NumIndices);
	rest->ri_IndexRelationInfo = palloc(sizeof(IndexInfo *) * all->ri_NumIndices);
	for (int i = 0; i < all->ri_NumIndices; i++)
	{
		if (us_index_on_batch_id_brin(all->ri_IndexRelationDescs[i],
									  all->ri_IndexRelationInfo[i]))
			continue;
		rest->ri_IndexRelationDescs[n] = all->ri_IndexRelationDescs[i];
		rest->ri_IndexRelationInfo[n] = all->ri_IndexRelationInfo[i];
		n++;
	}
	rest->ri_NumIndices = n;

	w->all = all;
	w->rest = rest;
	w->cid = GetCurrentCommandId(true);
	w->bistate = GetBulkInsertState();
	w->last_block = InvalidBlockNumber;
}

static void
us_item_writer_end(UsItemWriter *w)
{
	FreeBulkInsertState(w->bistate);
	table_finish_bulk_insert(w->all->ri_RelationDesc, 0);
	ExecCloseIndices(w->all);
	FreeExecutorState(w->estate);
}

/*
 * us_flush_items
 *		Write the buffered items' heap tuples in one go, then their index
 *		entries, and empty the buffer.
 */
static void
us_flush_items(UsItemWriter *w, TupleTableSlot **slots, int n)
{
	table_multi_insert(w->all->ri_RelationDesc, slots, n, w->cid, 0, w->bistate);
	for (int i = 0; i < n; i++)
	{
		BlockNumber block = ItemPointerGetBlockNumber(&slots[i]->tts_tid);

		list_free(ExecInsertIndexTuples(block == w->last_block ? w->rest : w->all,
										slots[i], w->estate,
										false, false, NULL, NIL));
		w->last_block = block;
		ResetPerTupleExprContext(w->estate);
		ExecClearTuple(slots[i]);
	}
}

/*
 * us_store_items
 *		Store a validated submission's items (between us_spi_begin and
 *		us_spi_end: as the table's owner) the way COPY FROM does: the rows
 *		are built here (item number, 'pending', no attempt yet), written a
 *		thousand at a time with table_multi_insert, and indexed with
 *		ExecInsertIndexTuples; CHECK and NOT NULL constraints are still
 *		checked.  This spares INSERT ... SELECT's per-row executor work and
 *		WAL record.  Where the table is not the one the install script made
 *		(see us_items_bulk_ok), the items take the SQL path instead.
 */
static void
us_store_items(int64 batch_id, Jsonb *items, int count)
{
	Oid			relid = us_lookup_rel("batch_items", us_catalog()->namespace_oid);
	Relation	rel;
	UsItemWriter w;
	TupleTableSlot *slots[US_ITEMS_PER_INSERT];
	MemoryContext itemcxt;
	MemoryContext oldcxt;
	Datum		pending;
	int			nslots = 0;
	int			nbuffered = 0;

	rel = table_open(relid, RowExclusiveLock);
	if (!us_items_bulk_ok(rel))
	{
		Datum		args[2] = {Int64GetDatum(batch_id), JsonbPGetDatum(items)};

		table_close(rel, NoLock);
		us_spi_run(&us_insert_items, args, NULL, false, 0);
		return;
	}

	us_item_writer_init(&w, rel);
	pending = CStringGetTextDatum("pending");
	itemcxt = AllocSetContextCreate(CurrentMemoryContext, "user_service items",
									ALLOCSET_DEFAULT_SIZES);

	for (int i = 0; i < count; i++)
	{
		TupleTableSlot *slot;
		JsonbValue *item;

		if (nbuffered == nslots)
			slots[nslots++] = table_slot_create(rel, NULL);
		slot = slots[nbuffered++];

		oldcxt = MemoryContextSwitchTo(itemcxt);
		item = getIthJsonbValueFromContainer(&items->root, i);
		slot->tts_values[Anum_batch_items_batch_id - 1] = Int64GetDatum(batch_id);
		slot->tts_values[Anum_batch_items_item - 1] = Int32GetDatum(i + 1);
		slot->tts_values[Anum_batch_items_status - 1] = pending;
		slot->tts_values[Anum_batch_items_payload - 1] =
			JsonbPGetDatum(JsonbValueToJsonb(item));
		slot->tts_values[Anum_batch_items_attempts - 1] = Int32GetDatum(0);
		/* the columns after attempts hold an item's outcome: none yet */
		for (int a = 0; a < Natts_batch_items; a++)
			slot->tts_isnull[a] = a >= Anum_batch_items_attempts;
		MemoryContextSwitchTo(oldcxt);
		ExecStoreVirtualTuple(slot);

		if (rel->rd_att->constr)
			ExecConstraints(w.all, slot, w.estate);

		if (nbuffered == US_ITEMS_PER_INSERT || i == count - 1)
		{
			CHECK_FOR_INTERRUPTS();
			us_flush_items(&w, slots, nbuffered);
			nbuffered = 0;
			MemoryContextReset(itemcxt);
		}
	}

	for (int i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(itemcxt);
	us_item_writer_end(&w);
	table_close(rel, NoLock);

	/* What SPI does after a write: later commands see the rows. */
	CommandCounterIncrement();
}

/*
 * us_batch_check
 *		Check a submission as us_batch_submit does (the kind, the submitter's
 *		right to it, with schema the installed extension's support of it, the
 *		concurrency, every item), storing nothing; returns the kind.  A
 *		router (proxy.c) runs it, without schema, before it splits a
 *		submission over its shards.  Without has_concurrency,
 *		user_service.default_concurrency applies.
 */
const UsKindSpec *
us_batch_check(const char *kind_name, Jsonb *items, bool has_concurrency,
			   int32 *concurrency, bool schema)
{
	const UsKindSpec *kind = us_kind_by_name(kind_name);
	int			count;

	us_kind_check_privilege(kind);
	if (schema)
		us_kind_check_schema(kind);
	if (!has_concurrency)
		*concurrency = us_kind_default_concurrency(kind) > 0 ?
			us_kind_default_concurrency(kind) : user_service_default_concurrency;
	if (*concurrency < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency must be at least 1")));

	if (!JB_ROOT_IS_ARRAY(items) || JB_ROOT_IS_SCALAR(items) || JB_ROOT_COUNT(items) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("items must be a non-empty JSON array")));
	count = JB_ROOT_COUNT(items);
	for (int i = 0; i < count; i++)
	{
		JsonbValue *item;

		/* millions of items take seconds: honour cancels and timeouts */
		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		item = getIthJsonbValueFromContainer(&items->root, i);
		us_kind_check_item(kind, item, i + 1);
		pfree(item);
	}
	return kind;
}

/*
 * us_batch_submit
 *		Check a submission (us_batch_check) and store it; returns the new
 *		batch's id.
 */
int64
us_batch_submit(const char *kind_name, Jsonb *items, bool has_concurrency,
				int32 concurrency)
{
	const UsKindSpec *kind = us_batch_check(kind_name, items, has_concurrency,
											&concurrency, true);
	int			count = JB_ROOT_COUNT(items);
	UsSavedUser saved;
	Datum		args[4];
	bool		isnull;
	int64		batch_id;

	args[0] = CStringGetTextDatum(us_kind_name(kind));
	args[1] = Int32GetDatum(concurrency);
	args[2] = Int32GetDatum(count);
	args[3] = ObjectIdGetDatum(GetUserId());

	us_spi_begin(&saved);
	us_spi_run(&us_insert_batch, args, NULL, false, 0);
	batch_id = DatumGetInt64(us_spi_value(0, 1, &isnull));
	us_store_items(batch_id, items, count);
	us_spi_end(&saved);
	return batch_id;
}
