/*-------------------------------------------------------------------------
 *
 * jobs.c
 *		Batches: submit_batch, batch_status, batch_results, cancel_batch,
 *		wait_batch, process_batches, and the claim-process-record step that
 *		the background workers (worker.c) and process_batches share.
 *
 * An item is processed in the transaction that claims it: the claim is a row
 * lock (FOR UPDATE SKIP LOCKED), the user operation runs in a
 * subtransaction, and the item's result is written in the same transaction
 * as the operation's effect.  A worker that dies mid-item leaves the item
 * pending and unlocked, so it is processed again, once: nothing is lost or
 * applied twice, and no item is ever stuck "running".
 *
 * A batch's concurrency is enforced with transaction-level advisory locks
 * of the extension's own class: slot k of batch b is the lock (b, k), and an
 * item may be in flight only under a slot.  Whoever claims (workers,
 * sessions calling process_batches) competes for the same slots, and a
 * crash releases them with the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/itemptr.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "user_service.h"

PG_FUNCTION_INFO_V1(submit_batch);
PG_FUNCTION_INFO_V1(batch_status);
PG_FUNCTION_INFO_V1(batch_results);
PG_FUNCTION_INFO_V1(cancel_batch);
PG_FUNCTION_INFO_V1(wait_batch);
PG_FUNCTION_INFO_V1(process_batches);

/* Advisory lock class of the concurrency slots (SQL's own use 1 and 2). */
#define US_SLOT_LOCK_CLASS	0x5553

/* ---------------------------------------------------------------------
 * Kinds of batches and the keys of their items
 * ---------------------------------------------------------------------
 */
typedef enum UsKeyType
{
	US_KEY_STRING,
	US_KEY_ID,
	US_KEY_PHC					/* a string: an argon2 PHC string to import */
} UsKeyType;

typedef struct UsKeySpec
{
	const char *key;
	UsKeyType	type;
	bool		required;
} UsKeySpec;

typedef enum UsKind
{
	US_KIND_CREATE_USER,
	US_KIND_UPDATE_USER,
	US_KIND_DELETE_USER,
	US_KIND_SET_PASSWORD,
	US_KIND_IMPORT_USER
} UsKind;

typedef struct UsKindSpec
{
	const char *name;			/* the kind */
	const char *keys_hint;		/* its keys, for a message */
	bool		hashes;			/* does an item cost an argon2 hash? */
	const char *func;			/* the API function whose EXECUTE it needs */
	int			nargs;			/* that function's arguments */
	Oid			argtypes[3];
	UsKeySpec	keys[4];		/* ends with a NULL key */
} UsKindSpec;

/*
 * import_user does what create_user does with a hash instead of a password
 * (and no argon2 work): it needs EXECUTE on create_user.
 */
static const UsKindSpec us_kinds[] = {
	[US_KIND_CREATE_USER] = {"create_user", "name, email and password",
		true, "create_user", 3, {TEXTOID, TEXTOID, TEXTOID},
		{{"name", US_KEY_STRING, true}, {"email", US_KEY_STRING, true},
		{"password", US_KEY_STRING, true}}},
	[US_KIND_UPDATE_USER] = {"update_user", "id, and name and/or email",
		false, "update_user", 3, {INT8OID, TEXTOID, TEXTOID},
		{{"id", US_KEY_ID, true}, {"name", US_KEY_STRING, false},
		{"email", US_KEY_STRING, false}}},
	[US_KIND_DELETE_USER] = {"delete_user", "id",
		false, "delete_user", 1, {INT8OID},
		{{"id", US_KEY_ID, true}}},
	[US_KIND_SET_PASSWORD] = {"set_password", "id and password",
		true, "set_password", 2, {INT8OID, TEXTOID},
		{{"id", US_KEY_ID, true}, {"password", US_KEY_STRING, true}}},
	[US_KIND_IMPORT_USER] = {"import_user", "name, email and password_hash",
		false, "create_user", 3, {TEXTOID, TEXTOID, TEXTOID},
		{{"name", US_KEY_STRING, true}, {"email", US_KEY_STRING, true},
		{"password_hash", US_KEY_PHC, true}}},
};

#define US_NKINDS lengthof(us_kinds)

/*
 * us_kind_by_name
 *		The kind called name, or 22023.
 */
static UsKind
us_kind_by_name(const char *name)
{
	for (int k = 0; k < (int) US_NKINDS; k++)
		if (strcmp(us_kinds[k].name, name) == 0)
			return (UsKind) k;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown batch kind \"%s\"", name),
			 errhint("The kinds are create_user, update_user, delete_user, set_password and import_user.")));
	pg_unreachable();
}

/*
 * us_check_kind_privilege
 *		A batch of a kind does what the kind's API function does: submitting
 *		one needs EXECUTE on that function (42501 otherwise), so that EXECUTE
 *		on submit_batch alone does not open set_password or delete_user.
 *		(import_user's function is create_user.)
 */
static void
us_check_kind_privilege(UsKind kind)
{
	const UsKindSpec *k = &us_kinds[kind];
	Oid			funcoid;
	AclResult	aclresult;

	funcoid = LookupFuncName(list_make2(makeString("user_service"), makeString((char *) k->func)),
							 k->nargs, k->argtypes, false);
	aclresult = pg_proc_aclcheck(funcoid, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, k->func);
}

/*
 * us_check_schema_for_kind
 *		import_user needs the objects of version 1.2 (batch_jobs' CHECK
 *		accepts the kind from 1.2 on).  A library already at 1.2 under an
 *		extension still at 1.0 or 1.1 gets 55000 with a hint, rather than a
 *		check violation.
 */
static void
us_check_schema_for_kind(UsKind kind)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	if (kind != US_KIND_IMPORT_USER)
		return;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("user_service"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (version != NULL && (strcmp(version, "1.0") == 0 || strcmp(version, "1.1") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch kind \"%s\" needs user_service 1.2, but version %s is installed",
						us_kinds[kind].name, version),
				 errhint("Run ALTER EXTENSION user_service UPDATE.")));
}

/*
 * us_numeric_to_id
 *		A JSON number that is a whole number within bigint, as int64.
 */
static bool
us_numeric_to_id(Numeric num, int64 *out)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	char	   *end;
	const char *p = (*s == '-') ? s + 1 : s;

	if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
		return false;
	errno = 0;
	*out = strtoi64(s, &end, 10);
	return errno == 0 && *end == '\0';
}

/*
 * us_check_item
 *		Validate the shape of item number itemno (from 1) of a submission:
 *		an object with the kind's keys, each of the right JSON type, and no
 *		others.  JSON null counts as absent for an optional key.  Values
 *		themselves (a valid email, a long enough password) are checked when
 *		the item is processed, and a bad one fails that item alone; the one
 *		exception is an imported password hash, which must be an acceptable
 *		argon2 PHC string here already (a wrong one is a wrong export, not a
 *		bad user: better stop before anything is stored).
 */
static void
us_check_item(UsKind kind, JsonbValue *item, int itemno)
{
	const UsKeySpec *keys = us_kinds[kind].keys;
	bool		seen[lengthof(us_kinds[0].keys)] = {false};
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (item->type != jbvBinary || !JsonContainerIsObject(item->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("item %d is not a JSON object", itemno)));

	it = JsonbIteratorInit(item->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		int			k;

		if (tok != WJB_KEY)
			continue;
		for (k = 0; keys[k].key != NULL; k++)
			if (strlen(keys[k].key) == (size_t) v.val.string.len &&
				memcmp(keys[k].key, v.val.string.val, v.val.string.len) == 0)
				break;
		if (keys[k].key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("item %d has an unknown key \"%.*s\"", itemno,
							/* at most 64 bytes, never half a character */
							pg_mbcliplen(v.val.string.val, v.val.string.len, 64),
							v.val.string.val),
					 errhint("A %s item takes the keys %s.", us_kinds[kind].name,
							 us_kinds[kind].keys_hint)));

		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (v.type == jbvNull && !keys[k].required)
			continue;
		if ((keys[k].type == US_KEY_STRING || keys[k].type == US_KEY_PHC) &&
			v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("item %d: \"%s\" must be a string", itemno, keys[k].key)));
		if (keys[k].type == US_KEY_PHC)
		{
			char	   *phc = pnstrdup(v.val.string.val, v.val.string.len);
			const char *problem = us_phc_import_problem(phc);

			if (problem != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("item %d: \"%s\" is not an argon2 hash that can be imported: %s",
								itemno, keys[k].key, problem)));
			pfree(phc);
		}
		if (keys[k].type == US_KEY_ID)
		{
			int64		id;

			if (v.type != jbvNumeric || !us_numeric_to_id(v.val.numeric, &id))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("item %d: \"%s\" must be an integer within bigint",
								itemno, keys[k].key)));
		}
		seen[k] = true;
	}

	for (int k = 0; keys[k].key != NULL; k++)
		if (keys[k].required && !seen[k])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("item %d is missing the key \"%s\"", itemno, keys[k].key)));
}

/* ---------------------------------------------------------------------
 * SQL run by this file (tables schema-qualified, pg_catalog alone on the
 * search_path: see us_spi_run)
 * ---------------------------------------------------------------------
 */
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
	"SELECT item, status, user_id, sqlstate, error FROM user_service.batch_items"
	" WHERE batch_id = $1 ORDER BY item",
	1, {INT8OID}
};

static UsStatement us_cancel = {
	"WITH c AS ("
	"  UPDATE user_service.batch_items"
	"     SET status = 'cancelled', payload = payload - '{password,password_hash}'::text[],"
	"         finished_at = now()"
	"   WHERE batch_id = $1 AND status = 'pending' RETURNING 1),"
	" n AS (SELECT count(*)::int4 AS n FROM c),"
	" g AS (INSERT INTO user_service.batch_progress (batch_id, at, cancelled)"
	"       SELECT $1, clock_timestamp(), n.n FROM n WHERE n.n > 0)"
	" UPDATE user_service.batch_jobs b"
	"    SET cancelled_at = CASE WHEN n.n > 0 THEN coalesce(b.cancelled_at, now()) ELSE b.cancelled_at END"
	"   FROM n WHERE b.id = $1 RETURNING n.n",
	1, {INT8OID}
};

/*
 * Note a complete batch's finished_at (a hint for claiming and retention;
 * the state itself comes from the progress rows).  Returns a row when it
 * did, so that exactly one of the racing finishers wakes the waiters.
 */
static UsStatement us_mark_finished = {
	"UPDATE user_service.batch_jobs b"
	"   SET finished_at = (SELECT max(at) FROM user_service.batch_progress WHERE batch_id = b.id)"
	" WHERE b.id = $1 AND b.finished_at IS NULL"
	"   AND (SELECT coalesce(sum(succeeded + failed + cancelled), 0)"
	"          FROM user_service.batch_progress WHERE batch_id = b.id) >= b.total"
	" RETURNING true",
	1, {INT8OID}
};

/*
 * Cheap first look: does the batch still have pending items (a row or
 * none)?  Asked in the order of the index of pending items, so that no plan
 * beats reading that index's first entry for the batch.  (As an EXISTS, a
 * generic plan made from statistics that saw many pending items chose to
 * scan the whole job table, expecting an early match.)
 */
static UsStatement us_pending_left = {
	"SELECT item FROM user_service.batch_items"
	" WHERE batch_id = $1 AND status = 'pending' ORDER BY item LIMIT 1",
	1, {INT8OID}
};

/* The same for every open batch (housekeeping). */
static UsStatement us_mark_all_finished = {
	"UPDATE user_service.batch_jobs b"
	"   SET finished_at = (SELECT max(at) FROM user_service.batch_progress WHERE batch_id = b.id)"
	" WHERE b.finished_at IS NULL"
	"   AND (SELECT coalesce(sum(succeeded + failed + cancelled), 0)"
	"          FROM user_service.batch_progress WHERE batch_id = b.id) >= b.total",
	0
};

static UsStatement us_open_batches = {
	"SELECT id, kind, concurrency, total FROM user_service.batch_jobs"
	" WHERE finished_at IS NULL AND cancelled_at IS NULL ORDER BY id",
	0
};

/*
 * Items are claimed in input order, from item $3 on: see us_claim.
 */
static UsStatement us_claim_items = {
	"SELECT item, payload, attempts, ctid FROM user_service.batch_items"
	" WHERE batch_id = $1 AND status = 'pending' AND item > $3"
	"   AND (not_before IS NULL OR not_before <= clock_timestamp())"
	" ORDER BY item LIMIT $2 FOR UPDATE SKIP LOCKED",
	3, {INT8OID, INT4OID, INT4OID}
};

/*
 * The group's items are found by the row versions the claim locked (their
 * ctids, which nothing else can change while we hold the locks): a TID scan,
 * whatever the planner believes about the table.  (Joined on item, a plan
 * made while the statistics still saw an empty table walked every pending
 * item of the batch for each item of the group.)
 */
static UsStatement us_record_items = {
	"UPDATE user_service.batch_items i"
	"   SET status = r.status, attempts = i.attempts + 1, user_id = r.user_id,"
	"       sqlstate = r.sqlstate, error = r.error, not_before = r.not_before,"
	"       finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE now() END,"
	"       payload = CASE WHEN r.status = 'pending' THEN i.payload"
	"                      ELSE i.payload - '{password,password_hash}'::text[] END"
	"  FROM unnest($1::tid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::timestamptz[])"
	"       AS r(tid, status, user_id, sqlstate, error, not_before)"
	" WHERE i.ctid = ANY ($1) AND i.ctid = r.tid",
	6, {TIDARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID}
};

static UsStatement us_insert_progress = {
	"INSERT INTO user_service.batch_progress (batch_id, started, at, succeeded, failed)"
	" VALUES ($1, now(), clock_timestamp(), $2, $3)",
	3, {INT8OID, INT4OID, INT4OID}
};

/*
 * Retention: the batches finished longer ago than user_service.batch_retention,
 * then their items and progress rows by batch id.  Those two are planned for
 * the ids at hand (custom plans): the BRIN index finds a few expired batches'
 * pages, where one statement joining the deleted batches to the job table
 * read the whole table every time something expired.
 */
static UsStatement us_purge_jobs = {
	"DELETE FROM user_service.batch_jobs"
	" WHERE finished_at < now() - $1::interval RETURNING id",
	1, {TEXTOID}
};

static UsStatement us_purge_items = {
	"DELETE FROM user_service.batch_items WHERE batch_id = ANY ($1)",
	1, {INT8ARRAYOID}, NULL, CURSOR_OPT_CUSTOM_PLAN
};

static UsStatement us_purge_progress = {
	"DELETE FROM user_service.batch_progress WHERE batch_id = ANY ($1)",
	1, {INT8ARRAYOID}, NULL, CURSOR_OPT_CUSTOM_PLAN
};

static Datum
us_spi_value(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static void
us_batch_not_found(int64 batch_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("batch " INT64_FORMAT " not found", batch_id)));
}

/*
 * Columns of user_service.batch_items (fixed by the install scripts), and
 * how many items go to the table at a time.
 */
#define Natts_batch_items			10
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

/* ---------------------------------------------------------------------
 * The SQL API
 * ---------------------------------------------------------------------
 */

/*
 * submit_batch(kind text, items jsonb, concurrency int DEFAULT NULL)
 *		RETURNS bigint
 *
 * Validate the whole submission, then store the batch and its items in the
 * caller's transaction; the workers are woken when it commits.
 */
Datum
submit_batch(PG_FUNCTION_ARGS)
{
	UsKind		kind;
	Jsonb	   *items;
	int32		concurrency;
	int			count;
	UsSavedUser saved;
	Datum		args[4];
	bool		isnull;
	int64		batch_id;

	us_password_call();
	us_arg_not_null(fcinfo, 0, "kind");
	us_arg_not_null(fcinfo, 1, "items");
	kind = us_kind_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	us_check_kind_privilege(kind);
	us_check_schema_for_kind(kind);
	concurrency = PG_ARGISNULL(2) ? user_service_default_concurrency : PG_GETARG_INT32(2);
	if (concurrency < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency must be at least 1")));

	items = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(items) || JB_ROOT_IS_SCALAR(items) || JB_ROOT_COUNT(items) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("items must be a non-empty JSON array")));
	count = JB_ROOT_COUNT(items);
	for (int i = 0; i < count; i++)
	{
		JsonbValue *item = getIthJsonbValueFromContainer(&items->root, i);

		us_check_item(kind, item, i + 1);
		pfree(item);
	}

	args[0] = CStringGetTextDatum(us_kinds[kind].name);
	args[1] = Int32GetDatum(concurrency);
	args[2] = Int32GetDatum(count);
	args[3] = ObjectIdGetDatum(GetUserId());

	us_spi_begin(&saved);
	us_spi_run(&us_insert_batch, args, NULL, false, 0);
	batch_id = DatumGetInt64(us_spi_value(0, 1, &isnull));
	us_store_items(batch_id, items, count);
	us_spi_end(&saved);

	us_wake_workers_at_commit();

	if (!us_preloaded)
		ereport(NOTICE,
				(errmsg("user_service is not loaded through shared_preload_libraries: no background worker will process batch " INT64_FORMAT,
						batch_id),
				 errhint("Add user_service to shared_preload_libraries and restart the server, or run user_service.process_batches().")));
	else if (user_service_workers == 0)
		ereport(NOTICE,
				(errmsg("user_service.workers is 0: no background worker will process batch " INT64_FORMAT,
						batch_id),
				 errhint("Raise user_service.workers and reload the configuration, or run user_service.process_batches().")));
	else if (strcmp(get_database_name(MyDatabaseId), user_service_database) != 0)
		ereport(NOTICE,
				(errmsg("the user_service workers serve database \"%s\", not this one: none will process batch " INT64_FORMAT,
						user_service_database, batch_id),
				 errhint("Set user_service.database and reload the configuration, or run user_service.process_batches().")));

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
 */
static Oid
us_batch_submitter(int64 batch_id)
{
	Datum		args[1] = {Int64GetDatum(batch_id)};
	bool		isnull;

	us_spi_run(&us_batch_owner, args, NULL, false, 1);
	if (SPI_processed == 0)
		us_batch_not_found(batch_id);
	return DatumGetObjectId(us_spi_value(0, 1, &isnull));
}

/*
 * us_check_batch_access
 *		A batch's results (which name emails) and its cancellation belong to
 *		the role that submitted it, and to the owner of the extension's
 *		tables (administrators); 42501 for anyone else.
 */
static void
us_check_batch_access(Oid caller, Oid submitter, int64 batch_id)
{
	if (!has_privs_of_role(caller, submitter) &&
		!has_privs_of_role(caller, us_catalog()->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for batch " INT64_FORMAT, batch_id),
				 errdetail("Only the role that submitted a batch, and the owner of the user_service tables, may read its results or cancel it.")));
}

/*
 * batch_results(batch_id bigint)
 *		RETURNS TABLE (item int, status text, user_id bigint, sqlstate text, error text)
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

	us_arg_not_null(fcinfo, 0, "batch_id");
	batch_id = PG_GETARG_INT64(0);
	InitMaterializedSRF(fcinfo, 0);

	args[0] = Int64GetDatum(batch_id);
	us_spi_begin(&saved);
	us_check_batch_access(saved.userid, us_batch_submitter(batch_id), batch_id);
	us_spi_run(&us_select_results, args, NULL, false, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		values[5];
		bool		nulls[5];

		for (int c = 0; c < 5; c++)
			values[c] = us_spi_value(r, c + 1, &nulls[c]);
		if (strcmp(TextDatumGetCString(values[1]), "pending") == 0 &&
			us_item_running(batch_id, DatumGetInt32(values[0])))
			values[1] = CStringGetTextDatum("running");
		/* the tuplestore copies the values */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
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
	Datum		args[1];
	bool		isnull;
	int32		n;

	us_arg_not_null(fcinfo, 0, "batch_id");
	batch_id = PG_GETARG_INT64(0);

	args[0] = Int64GetDatum(batch_id);
	us_spi_begin(&saved);
	us_check_batch_access(saved.userid, us_batch_submitter(batch_id), batch_id);
	us_spi_run(&us_cancel, args, NULL, false, 0);
	if (SPI_processed == 0)
		us_batch_not_found(batch_id);
	n = DatumGetInt32(us_spi_value(0, 1, &isnull));
	us_spi_run(&us_mark_finished, args, NULL, false, 0);
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
	deadline = GetCurrentTimestamp() + usecs;

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
 *		schedule driving the work, e.g. pg_cron).  Returns how many items it
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

	while (done < max_items)
	{
		int64		batch_id;
		bool		deferred;
		int			n = us_process_group(NULL, max_items - done, &batch_id, &deferred);

		if (n == 0)
			break;
		done += n;
	}
	/* some batch may be complete when this commits: let waiters look */
	if (done > 0)
		us_wake_waiters_at_commit();
	PG_RETURN_INT64(done);
}

/* ---------------------------------------------------------------------
 * Claiming and processing
 * ---------------------------------------------------------------------
 */

/*
 * us_slot_tag
 *		The advisory lock of concurrency slot k of a batch.  Batch ids share
 *		slots modulo 2^32, which only matters past four billion batches.
 */
static void
us_slot_tag(LOCKTAG *tag, int64 batch_id, uint32 k)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) batch_id, k, US_SLOT_LOCK_CLASS);
}

/*
 * us_acquire_slots
 *		Take up to want free concurrency slots of a batch without waiting;
 *		returns how many, their numbers in slots[].
 */
static int
us_acquire_slots(int64 batch_id, int32 concurrency, int want, uint32 *slots)
{
	int			got = 0;

	for (uint32 k = 0; k < (uint32) concurrency && got < want; k++)
	{
		LOCKTAG		tag;

		us_slot_tag(&tag, batch_id, k);
		if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
			slots[got++] = k;
	}
	return got;
}

static void
us_release_slots(int64 batch_id, const uint32 *slots, int from, int to)
{
	for (int i = from; i < to; i++)
	{
		LOCKTAG		tag;

		us_slot_tag(&tag, batch_id, slots[i]);
		LockRelease(&tag, ExclusiveLock, false);
	}
}

/*
 * Where this process's last claim in a batch ended.  Finished items leave
 * dead entries at the start of the pending index that vacuum cannot remove
 * while an old snapshot is open; claiming from the last position skips
 * them, so claiming stays cheap however long a batch runs.  Items left
 * behind (a retry not yet due, a claim rolled back by a crash) are found by
 * a claim from the start once the rest is taken.
 */
static int64 us_hint_batch = 0;
static int32 us_hint_item = 0;

/*
 * us_claim
 *		Claim up to want pending items of a batch, from the hint on, then
 *		from the start if that found none.  Leaves them in SPI_tuptable.
 */
static int
us_claim(int64 batch_id, int want)
{
	Datum		args[3];
	int32		from = (batch_id == us_hint_batch) ? us_hint_item : 0;
	int			n;

	args[0] = Int64GetDatum(batch_id);
	args[1] = Int32GetDatum(want);
	args[2] = Int32GetDatum(from);
	us_spi_run(&us_claim_items, args, NULL, false, 0);
	n = (int) SPI_processed;
	if (n == 0 && from > 0)
	{
		args[2] = Int32GetDatum(0);
		us_spi_run(&us_claim_items, args, NULL, false, 0);
		n = (int) SPI_processed;
	}
	if (n > 0)
	{
		bool		isnull;

		us_hint_batch = batch_id;
		us_hint_item = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[n - 1],
												   SPI_tuptable->tupdesc, 1, &isnull));
	}
	return n;
}

/* The outcome of one item. */
typedef struct UsItemResult
{
	int32		item;
	ItemPointerData tid;		/* the claimed row version */
	const char *status;			/* succeeded, failed, or pending (retry) */
	int64		user_id;
	bool		has_user_id;
	char	   *sqlstate;
	char	   *error;
	TimestampTz not_before;		/* retry time, when pending */
} UsItemResult;

/*
 * us_item_text
 *		A string value of an item, as text; NULL when absent or JSON null.
 */
static text *
us_item_text(Jsonb *payload, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&payload->root, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must be a string", key)));
	return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
}

static text *
us_item_required_text(Jsonb *payload, const char *key)
{
	text	   *t = us_item_text(payload, key);

	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", key)));
	return t;
}

static int64
us_item_id(Jsonb *payload)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&payload->root, "id", 2, NULL);
	int64		id;

	if (v == NULL || v->type != jbvNumeric || !us_numeric_to_id(v->val.numeric, &id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"id\" must be an integer within bigint")));
	return id;
}

/*
 * us_apply_item
 *		Carry out one item; returns the id of the user it concerned.
 */
static int64
us_apply_item(UsKind kind, Jsonb *payload)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];
	int64		id;

	switch (kind)
	{
		case US_KIND_CREATE_USER:
			us_user_create(us_item_required_text(payload, "name"),
						   us_item_required_text(payload, "email"),
						   us_item_required_text(payload, "password"),
						   values, nulls);
			return DatumGetInt64(values[Anum_users_id - 1]);
		case US_KIND_UPDATE_USER:
			id = us_item_id(payload);
			us_user_update(id, us_item_text(payload, "name"),
						   us_item_text(payload, "email"), values, nulls);
			return id;
		case US_KIND_DELETE_USER:
			id = us_item_id(payload);
			us_user_delete(id);
			return id;
		case US_KIND_SET_PASSWORD:
			id = us_item_id(payload);
			us_user_set_password(id, us_item_required_text(payload, "password"));
			return id;
		case US_KIND_IMPORT_USER:
			{
				text	   *name = us_item_required_text(payload, "name");
				text	   *email = us_item_required_text(payload, "email");
				char	   *phc = text_to_cstring(us_item_required_text(payload, "password_hash"));
				const char *problem = us_phc_import_problem(phc);

				/* checked at submission too; items may come from a restore */
				if (problem != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("\"password_hash\" is not an argon2 hash that can be imported: %s",
									problem)));
				us_user_import(name, email, phc, values, nulls);
				return DatumGetInt64(values[Anum_users_id - 1]);
			}
	}
	pg_unreachable();
}

/*
 * us_transient
 *		Errors worth another attempt: the same item may well succeed later.
 */
static bool
us_transient(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * us_run_in_subxact
 *		Run fn(arg) in a subtransaction.  Returns NULL when it succeeded;
 *		otherwise the subtransaction is rolled back (the work of fn alone)
 *		and its error returned.  A cancel request or statement timeout is not
 *		the work's fault: it is thrown on, and the whole transaction (the
 *		group) rolls back.
 */
static ErrorData *
us_run_in_subxact(void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;

	if (edata != NULL && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);
	return edata;
}

typedef struct UsApplyArg
{
	UsKind		kind;
	Jsonb	   *payload;
	int64		user_id;
} UsApplyArg;

static void
us_apply_item_cb(void *arg)
{
	UsApplyArg *a = (UsApplyArg *) arg;

	a->user_id = us_apply_item(a->kind, a->payload);
}

/*
 * us_process_item
 *		Run one item in a subtransaction and note its outcome: an error rolls
 *		back the item's effects alone, and the rest of the group goes on.
 */
static void
us_process_item(UsKind kind, Jsonb *payload, int32 attempts, UsItemResult *r)
{
	UsApplyArg	a = {kind, payload, 0};
	ErrorData  *edata = us_run_in_subxact(us_apply_item_cb, &a);

	if (edata == NULL)
	{
		r->user_id = a.user_id;
		r->has_user_id = true;
		r->status = "succeeded";
		return;
	}

	r->has_user_id = false;
	r->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	r->error = pstrdup(edata->message);
	if (us_transient(edata->sqlerrcode) && attempts + 1 < user_service_max_attempts)
	{
		/* back off 100 ms, 200 ms, 400 ms, ... at most 10 s */
		int64		delay_ms = Min((int64) 100 << Min(attempts, 7), 10000);

		r->status = "pending";
		r->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	}
	else
		r->status = "failed";
	FreeErrorData(edata);
}

typedef struct UsDeleteArg
{
	SPITupleTable *claimed;
	int			n;
	int64	   *ids;
	bool	   *found;
} UsDeleteArg;

static void
us_delete_group_cb(void *arg)
{
	UsDeleteArg *a = (UsDeleteArg *) arg;

	for (int i = 0; i < a->n; i++)
	{
		bool		isnull;

		a->ids[i] = us_item_id(DatumGetJsonbP(SPI_getbinval(a->claimed->vals[i],
															a->claimed->tupdesc,
															2, &isnull)));
	}
	us_user_delete_many(a->ids, a->n, a->found);
}

/*
 * us_delete_group
 *		The fast path of a group of delete_user items: one DELETE for all, in
 *		one subtransaction.  An id that was not deleted fails its item with
 *		P0002, as delete_user would.  Any error rolls the group back and
 *		returns false: the caller then runs the items one by one, each with
 *		its own outcome.
 */
static bool
us_delete_group(SPITupleTable *claimed, UsItemResult *res, int n)
{
	UsDeleteArg a = {claimed, n, palloc(sizeof(int64) * n), palloc(sizeof(bool) * n)};
	ErrorData  *edata = us_run_in_subxact(us_delete_group_cb, &a);

	if (edata != NULL)
	{
		FreeErrorData(edata);
		return false;
	}
	for (int i = 0; i < n; i++)
	{
		res[i].user_id = a.ids[i];
		if (a.found[i])
		{
			res[i].status = "succeeded";
			res[i].has_user_id = true;
		}
		else
		{
			res[i].status = "failed";
			res[i].sqlstate = pstrdup(unpack_sql_state(ERRCODE_NO_DATA_FOUND));
			res[i].error = psprintf("user " INT64_FORMAT " not found", a.ids[i]);
		}
	}
	return true;
}

/*
 * us_record_results
 *		Write the group's outcomes to its items, and its counts as one
 *		progress row (inserted: concurrent groups never wait on each other).
 */
static void
us_record_results(int64 batch_id, UsItemResult *res, int n)
{
	Datum	   *tids = palloc(sizeof(Datum) * n);
	Datum	   *status = palloc(sizeof(Datum) * n);
	Datum	   *user_ids = palloc(sizeof(Datum) * n);
	Datum	   *sqlstates = palloc(sizeof(Datum) * n);
	Datum	   *errors = palloc(sizeof(Datum) * n);
	Datum	   *not_before = palloc(sizeof(Datum) * n);
	bool	   *user_nulls = palloc(sizeof(bool) * n);
	bool	   *err_nulls = palloc(sizeof(bool) * n);
	bool	   *nb_nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int32		succeeded = 0;
	int32		failed = 0;
	Datum		args[6];

	for (int i = 0; i < n; i++)
	{
		bool		pending = strcmp(res[i].status, "pending") == 0;

		tids[i] = PointerGetDatum(&res[i].tid);
		status[i] = CStringGetTextDatum(res[i].status);
		user_ids[i] = Int64GetDatum(res[i].user_id);
		user_nulls[i] = !res[i].has_user_id;
		sqlstates[i] = res[i].sqlstate ? CStringGetTextDatum(res[i].sqlstate) : (Datum) 0;
		errors[i] = res[i].error ? CStringGetTextDatum(res[i].error) : (Datum) 0;
		err_nulls[i] = res[i].error == NULL;
		not_before[i] = TimestampTzGetDatum(res[i].not_before);
		nb_nulls[i] = !pending;
		if (strcmp(res[i].status, "succeeded") == 0)
			succeeded++;
		else if (!pending)
			failed++;
	}

	args[0] = PointerGetDatum(construct_array(tids, n, TIDOID, sizeof(ItemPointerData),
											  false, TYPALIGN_SHORT));
	args[1] = PointerGetDatum(construct_array(status, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(user_ids, user_nulls, 1, dims, lbs,
												 INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_md_array(sqlstates, err_nulls, 1, dims, lbs,
												 TEXTOID, -1, false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_md_array(errors, err_nulls, 1, dims, lbs,
												 TEXTOID, -1, false, TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_md_array(not_before, nb_nulls, 1, dims, lbs,
												 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	us_spi_run(&us_record_items, args, NULL, false, 0);

	args[0] = Int64GetDatum(batch_id);
	args[1] = Int32GetDatum(succeeded);
	args[2] = Int32GetDatum(failed);
	us_spi_run(&us_insert_progress, args, NULL, false, 0);
}

/*
 * us_process_group
 *		One unit of work, in the current transaction: take the oldest open
 *		batch that has a free concurrency slot and a pending item, claim up to
 *		max_items of its items (one for kinds that hash, since each hash
 *		keeps a slot busy), process them, record the results.  Returns how
 *		many items it processed (0: nothing to do), and in *check_batch
 *		a batch that may now be complete (else 0): the one it processed, or
 *		one where it found nothing to take; *work_deferred says that some
 *		open batch had
 *		pending items it could not take now (no free slot, items held by
 *		others, or waiting for a retry), so the caller should look again soon.
 *		slot is the calling worker's shared-memory slot (NULL for
 *		process_batches), where the group is published while it runs.
 */
int
us_process_group(UsWorkerSlot *slot, int max_items,
				 int64 *check_batch, bool *work_deferred)
{
	UsSavedUser saved;
	SPITupleTable *batches;
	uint64		nbatches;
	int			processed = 0;

	*check_batch = 0;
	*work_deferred = false;

	us_spi_begin(&saved);
	us_spi_run(&us_open_batches, NULL, NULL, false, 0);
	batches = SPI_tuptable;
	nbatches = SPI_processed;

	for (uint64 b = 0; b < nbatches && processed == 0; b++)
	{
		bool		isnull;
		int64		batch_id = DatumGetInt64(SPI_getbinval(batches->vals[b], batches->tupdesc, 1, &isnull));
		UsKind		kind = us_kind_by_name(TextDatumGetCString(SPI_getbinval(batches->vals[b], batches->tupdesc, 2, &isnull)));
		int32		concurrency = DatumGetInt32(SPI_getbinval(batches->vals[b], batches->tupdesc, 3, &isnull));
		int32		total = DatumGetInt32(SPI_getbinval(batches->vals[b], batches->tupdesc, 4, &isnull));
		int			want = us_kinds[kind].hashes ? 1 : Min(max_items, US_GROUP_MAX);
		uint32		slots[US_GROUP_MAX];
		int			nslots;
		UsItemResult *res;
		int32	   *itemnos;
		SPITupleTable *claimed;
		int			n;

		want = Min(want, concurrency);
		nslots = us_acquire_slots(batch_id, concurrency, want, slots);
		if (nslots == 0)
		{
			*work_deferred = true;
			continue;
		}

		n = us_claim(batch_id, nslots);
		claimed = SPI_tuptable;
		/* slots beyond what was claimed go back at once */
		us_release_slots(batch_id, slots, n, nslots);
		if (n == 0)
		{
			/* nothing to take: the batch may be complete, have a look */
			if (*check_batch == 0)
				*check_batch = batch_id;
			*work_deferred = true;
			continue;
		}

		res = palloc0(sizeof(UsItemResult) * n);
		itemnos = palloc(sizeof(int32) * n);
		for (int i = 0; i < n; i++)
		{
			itemnos[i] = DatumGetInt32(SPI_getbinval(claimed->vals[i], claimed->tupdesc, 1, &isnull));
			res[i].item = itemnos[i];
			res[i].tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(claimed->vals[i], claimed->tupdesc, 4, &isnull));
		}

		if (slot != NULL)
		{
			char		activity[128];

			us_slot_publish(slot, batch_id, itemnos, n);
			/* e.g. "batch 12: item 40 of 1000 (create_user)": never a value */
			if (n == 1)
				snprintf(activity, sizeof(activity), "batch " INT64_FORMAT ": item %d of %d (%s)",
						 batch_id, itemnos[0], total, us_kinds[kind].name);
			else
				snprintf(activity, sizeof(activity), "batch " INT64_FORMAT ": items %d to %d of %d (%s)",
						 batch_id, itemnos[0], itemnos[n - 1], total, us_kinds[kind].name);
			pgstat_report_activity(STATE_RUNNING, activity);
		}

		if (kind != US_KIND_DELETE_USER || n == 1 || !us_delete_group(claimed, res, n))
		{
			for (int i = 0; i < n; i++)
			{
				Jsonb	   *payload = DatumGetJsonbP(SPI_getbinval(claimed->vals[i], claimed->tupdesc, 2, &isnull));
				int32		attempts = DatumGetInt32(SPI_getbinval(claimed->vals[i], claimed->tupdesc, 3, &isnull));

				CHECK_FOR_INTERRUPTS();
				us_process_item(kind, payload, attempts, &res[i]);
			}
		}

		us_record_results(batch_id, res, n);
		us_release_slots(batch_id, slots, 0, n);

		/*
		 * The group may have been the batch's last when its items hash (each
		 * is a transaction of its own anyway) or when the claim found fewer
		 * items than it could take; otherwise there are pending items left,
		 * and the completion check can be spared.
		 */
		if (us_kinds[kind].hashes || n < nslots)
			*check_batch = batch_id;
		processed = n;
	}

	us_spi_end(&saved);
	return processed;
}

/*
 * us_batch_tables_exist
 *		Is the extension, at a version with the batch engine, installed in
 *		this database?  For the workers, which wait quietly until it is.
 */
bool
us_batch_tables_exist(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("user_service", true)))
		return false;
	nsp = get_namespace_oid("user_service", true);
	return OidIsValid(nsp) && OidIsValid(get_relname_relid("batch_jobs", nsp));
}

/*
 * us_mark_batch_finished
 *		If the batch is complete, note its finished_at; true when this call
 *		did (the caller then wakes the waiters).  Workers call it in a new
 *		transaction after each group's commit: of two groups finishing a
 *		batch at once, the one that commits last sees both.
 */
bool
us_mark_batch_finished(int64 batch_id)
{
	UsSavedUser saved;
	Datum		args[1] = {Int64GetDatum(batch_id)};
	bool		marked;

	us_spi_begin(&saved);
	us_spi_run(&us_pending_left, args, NULL, true, 1);
	if (SPI_processed > 0)
		marked = false;			/* others are still at it, or retries are due */
	else
	{
		us_spi_run(&us_mark_finished, args, NULL, false, 0);
		marked = SPI_processed > 0;
	}
	us_spi_end(&saved);
	return marked;
}

/*
 * us_purge_batches
 *		Note finished_at of complete batches (some were completed by
 *		process_batches, which cannot), delete the batches finished longer
 *		than user_service.batch_retention ago (their items and progress go
 *		with them), and fold the user count.  Returns how many it deleted.
 */
int64
us_purge_batches(void)
{
	UsSavedUser saved;
	Datum		args[1] = {CStringGetTextDatum(user_service_batch_retention)};
	int64		n;
	bool		isnull;

	us_spi_begin(&saved);
	us_spi_run(&us_mark_all_finished, NULL, NULL, false, 0);
	us_spi_run(&us_purge_jobs, args, NULL, false, 0);
	n = (int64) SPI_processed;
	if (n > 0)
	{
		Datum	   *ids = palloc(sizeof(Datum) * n);
		Datum		idarray[1];

		for (int64 i = 0; i < n; i++)
			ids[i] = us_spi_value(i, 1, &isnull);
		idarray[0] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
													 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		us_spi_run(&us_purge_items, idarray, NULL, false, 0);
		us_spi_run(&us_purge_progress, idarray, NULL, false, 0);
	}
	us_compact_user_count();
	us_spi_end(&saved);
	return n;
}
