/*-------------------------------------------------------------------------
 *
 * batch_submit.c
 *		Storing a submission: the batch's row in batch_jobs, and its items
 *		in batch_chunks, written the way COPY FROM writes rows.
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
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/array.h"
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
 * Columns of user_service.batch_chunks (fixed by the install script), and
 * how many chunks go to the table at a time.
 */
#define Natts_batch_chunks			13
#define Anum_batch_chunks_batch_id	1
#define Anum_batch_chunks_first_item 2
#define Anum_batch_chunks_pending	3
#define Anum_batch_chunks_due		4
#define Anum_batch_chunks_status	5
#define Anum_batch_chunks_payload	6
#define Anum_batch_chunks_attempts	7
#define US_CHUNKS_PER_INSERT		1000
#define US_ITEMS_PER_FLUSH			10000

/* The SQL way of storing a submission's chunks: see us_store_items. */
static UsStatement us_insert_chunks = {
	"INSERT INTO user_service.batch_chunks (batch_id, first_item, pending, status, payload, attempts)"
	" SELECT $1, min(e.o)::int4, count(*)::int4, array_agg('pending'::text), array_agg(e.v ORDER BY e.o),"
	"        array_agg(0)"
	"   FROM jsonb_array_elements($2) WITH ORDINALITY AS e(v, o)"
	"  GROUP BY (e.o - 1) / $3",
	3, {INT8OID, JSONBOID, INT4OID}
};

/* The same for a schema older than 1.3, which keeps an item to a row. */
static UsStatement us_insert_items_12 = {
	"INSERT INTO user_service.batch_items (batch_id, item, payload)"
	" SELECT $1, e.o::int4, e.v FROM jsonb_array_elements($2) WITH ORDINALITY AS e(v, o)",
	2, {INT8OID, JSONBOID}
};

/*
 * us_chunks_bulk_ok
 *		Whether the chunks may bypass INSERT: the table is the install
 *		script's plain table, and nobody added triggers, row-level security
 *		or columns (each of which INSERT honours and the bulk path would not).
 */
static bool
us_chunks_bulk_ok(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	return rel->rd_rel->relkind == RELKIND_RELATION &&
		rel->trigdesc == NULL &&
		!rel->rd_rel->relrowsecurity &&
		RelationGetNumberOfAttributes(rel) == Natts_batch_chunks &&
		TupleDescAttr(desc, Anum_batch_chunks_status - 1)->atttypid == TEXTARRAYOID &&
		TupleDescAttr(desc, Anum_batch_chunks_payload - 1)->atttypid == JSONBARRAYOID &&
		TupleDescAttr(desc, Anum_batch_chunks_attempts - 1)->atttypid == INT4ARRAYOID;
}

/*
 * Writes chunk rows the way COPY FROM does: heap tuples a batch at a time
 * (table_multi_insert), then their index entries.
 */
typedef struct UsChunkWriter
{
	ResultRelInfo *rri;
	EState	   *estate;
	CommandId	cid;
	BulkInsertState bistate;
} UsChunkWriter;

static void
us_chunk_writer_init(UsChunkWriter *w, Relation rel)
{
	w->rri = makeNode(ResultRelInfo);
	w->estate = CreateExecutorState();
	InitResultRelInfo(w->rri, rel, 0, NULL, 0);
	ExecOpenIndices(w->rri, false);
	w->cid = GetCurrentCommandId(true);
	w->bistate = GetBulkInsertState();
}

static void
us_chunk_writer_end(UsChunkWriter *w)
{
	FreeBulkInsertState(w->bistate);
	table_finish_bulk_insert(w->rri->ri_RelationDesc, 0);
	ExecCloseIndices(w->rri);
	FreeExecutorState(w->estate);
}

static void
us_flush_chunks(UsChunkWriter *w, TupleTableSlot **slots, int n)
{
	table_multi_insert(w->rri->ri_RelationDesc, slots, n, w->cid, 0, w->bistate);
	for (int i = 0; i < n; i++)
	{
		list_free(ExecInsertIndexTuples(w->rri, slots[i], w->estate,
										false, false, NULL, NIL));
		ResetPerTupleExprContext(w->estate);
		ExecClearTuple(slots[i]);
	}
}

/*
 * us_store_items
 *		Store a validated submission's items (between us_spi_begin and
 *		us_spi_end: as the table's owner), chunk_size consecutive items to a
 *		row of batch_chunks, every item pending with no attempt yet.  The
 *		rows are built here and written as COPY FROM writes them
 *		(table_multi_insert, ExecInsertIndexTuples; CHECK and NOT NULL
 *		constraints still checked), which spares INSERT ... SELECT's
 *		per-row executor work and WAL record.  Where the table is not the
 *		one the install script made (see us_chunks_bulk_ok), the chunks take
 *		the SQL path instead; under a schema older than 1.3, the items go to
 *		its batch_items, a row each.
 */
static void
us_store_items(int64 batch_id, Jsonb *items, int count, int chunk_size)
{
	Oid			relid = us_catalog()->batch_chunks_relid;
	Relation	rel;
	UsChunkWriter w;
	TupleTableSlot *slots[US_CHUNKS_PER_INSERT];
	MemoryContext chunkcxt;
	MemoryContext oldcxt;
	Datum		pending;
	Datum	   *values;
	Datum	   *statuses;
	Datum	   *zeros;
	int			nslots = 0;
	int			nbuffered = 0;
	int			items_buffered = 0;

	if (!OidIsValid(relid))
	{
		Datum		args[2] = {Int64GetDatum(batch_id), JsonbPGetDatum(items)};

		us_spi_run(&us_insert_items_12, args, NULL, false, 0);
		return;
	}
	rel = table_open(relid, RowExclusiveLock);
	if (!us_chunks_bulk_ok(rel))
	{
		Datum		args[3] = {Int64GetDatum(batch_id), JsonbPGetDatum(items),
		Int32GetDatum(chunk_size)};

		table_close(rel, NoLock);
		us_spi_run(&us_insert_chunks, args, NULL, false, 0);
		return;
	}

	us_chunk_writer_init(&w, rel);
	pending = CStringGetTextDatum("pending");
	values = palloc(sizeof(Datum) * chunk_size);
	statuses = palloc(sizeof(Datum) * chunk_size);
	zeros = palloc(sizeof(Datum) * chunk_size);
	for (int i = 0; i < chunk_size; i++)
	{
		statuses[i] = pending;
		zeros[i] = Int32GetDatum(0);
	}
	chunkcxt = AllocSetContextCreate(CurrentMemoryContext, "user_service chunks",
									 ALLOCSET_DEFAULT_SIZES);

	for (int first = 0; first < count; first += chunk_size)
	{
		int			n = Min(chunk_size, count - first);
		TupleTableSlot *slot;

		if (nbuffered == nslots)
			slots[nslots++] = table_slot_create(rel, NULL);
		slot = slots[nbuffered++];

		oldcxt = MemoryContextSwitchTo(chunkcxt);
		for (int i = 0; i < n; i++)
		{
			JsonbValue *item = getIthJsonbValueFromContainer(&items->root, first + i);

			values[i] = JsonbPGetDatum(JsonbValueToJsonb(item));
		}
		slot->tts_values[Anum_batch_chunks_batch_id - 1] = Int64GetDatum(batch_id);
		slot->tts_values[Anum_batch_chunks_first_item - 1] = Int32GetDatum(first + 1);
		slot->tts_values[Anum_batch_chunks_pending - 1] = Int32GetDatum(n);
		slot->tts_values[Anum_batch_chunks_status - 1] =
			PointerGetDatum(construct_array(statuses, n, TEXTOID, -1, false, TYPALIGN_INT));
		slot->tts_values[Anum_batch_chunks_payload - 1] =
			PointerGetDatum(construct_array(values, n, JSONBOID, -1, false, TYPALIGN_INT));
		slot->tts_values[Anum_batch_chunks_attempts - 1] =
			PointerGetDatum(construct_array(zeros, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
		/* due, and the columns after attempts (the items' outcomes): none yet */
		for (int a = 0; a < Natts_batch_chunks; a++)
			slot->tts_isnull[a] = a == Anum_batch_chunks_due - 1 ||
				a >= Anum_batch_chunks_attempts;
		MemoryContextSwitchTo(oldcxt);
		ExecStoreVirtualTuple(slot);
		items_buffered += n;

		if (rel->rd_att->constr)
			ExecConstraints(w.rri, slot, w.estate);

		if (nbuffered == US_CHUNKS_PER_INSERT || items_buffered >= US_ITEMS_PER_FLUSH ||
			first + n >= count)
		{
			CHECK_FOR_INTERRUPTS();
			us_flush_chunks(&w, slots, nbuffered);
			nbuffered = 0;
			items_buffered = 0;
			MemoryContextReset(chunkcxt);
		}
	}

	for (int i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(chunkcxt);
	us_chunk_writer_end(&w);
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
	/*
	 * A chunk to an item for the kinds that hash (a claim is then one hash)
	 * and for registered kinds whose items are secrets: a single payload
	 * stays small and inline, where 250 would be compressed and
	 * moved out of line, through buffers that the worker cannot zero.
	 */
	us_store_items(batch_id, items, count,
				   us_kind_hashes(kind) || (us_kind_registered(kind) && us_kind_secret_items(kind)) ?
				   1 : US_GROUP_MAX);
	us_spi_end(&saved);
	return batch_id;
}
