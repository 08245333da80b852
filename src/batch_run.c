/*-------------------------------------------------------------------------
 *
 * batch_run.c
 *		Claiming and running batch items, for the background workers and
 *		process_batches alike.
 *
 * An item is processed in the transaction that claims it: the claim is a row
 * lock (FOR UPDATE SKIP LOCKED) on the item's chunk (a row of batch_chunks:
 * up to US_GROUP_MAX consecutive items, one for the kinds that hash), the
 * item's operation runs in a subtransaction, and the results of the group
 * are written into the chunk, one new row version, in the same transaction
 * as the operations' effects.  A process that dies mid-group leaves its
 * items pending and unlocked, so they are processed again, once: nothing is
 * lost or applied twice, and no item is ever stuck "running".  (Under a
 * schema older than 1.3 an item is a row of batch_items, claimed and
 * recorded the same way a row at a time.)
 *
 * A batch's concurrency is enforced with transaction-level advisory locks
 * of the extension's own class: slot k of batch b is the lock (b, k), and a
 * group of items may be in flight only under a slot (a group is one item for
 * the kinds that hash, up to US_GROUP_MAX cheap ones otherwise).  Whoever claims (workers,
 * sessions calling process_batches) competes for the same slots, and a
 * crash releases them with the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "catalog.h"

/* Advisory lock class of the concurrency slots (SQL's own use 1 and 2). */
#define US_SLOT_LOCK_CLASS	0x5553

/* GUC variable, named after its GUC. */
static int	user_service_max_attempts = 3;

/*
 * Open batches are read a page at a time, in id order from a position
 * (see us_process_group), on the partial index of open batches: a claim
 * costs the same however many batches are open.
 */
#define US_BATCH_PAGE	16

static UsStatement us_open_batches = {
	"SELECT id, kind, concurrency, total, submitted_by FROM user_service.batch_jobs"
	" WHERE finished_at IS NULL AND cancelled_at IS NULL AND id > $1"
	" ORDER BY id LIMIT $2",
	2, {INT8OID, INT4OID}
};

/*
 * Chunks are claimed in input order, from the chunk after item $2 on: see
 * us_claim_chunk_items.  One whose pending items all wait for a retry is
 * due later.  Run with us_spi_run_in_order: always from the index, in order.
 */
static UsStatement us_claim_chunk = {
	"SELECT ctid, first_item, status, payload, attempts, not_before, user_id, sqlstate, error,"
	"       finished_at, result"
	"  FROM user_service.batch_chunks"
	" WHERE batch_id = $1 AND pending > 0 AND first_item > $2"
	"   AND (due IS NULL OR due <= clock_timestamp())"
	" ORDER BY first_item LIMIT 1 FOR UPDATE SKIP LOCKED",
	2, {INT8OID, INT4OID}
};

/*
 * A chunk's outcomes, written over the row version the claim locked (its
 * ctid, which nothing else can change while we hold the lock): a TID scan.
 */
static UsStatement us_record_chunk = {
	"UPDATE user_service.batch_chunks"
	"   SET pending = $2, due = $3, status = $4, payload = coalesce($5, payload), attempts = $6,"
	"       not_before = $7, user_id = $8, sqlstate = $9, error = $10, finished_at = $11,"
	"       result = $12"
	" WHERE ctid = $1",
	12, {TIDOID, INT4OID, TIMESTAMPTZOID, TEXTARRAYOID, JSONBARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	JSONBARRAYOID}
};

/*
 * Under a schema older than 1.3, an item is a row of batch_items: items
 * are claimed in input order, from item $3 on.
 */
static UsStatement us_claim_items_12 = {
	"SELECT item, payload, attempts, ctid FROM user_service.batch_items"
	" WHERE batch_id = $1 AND status = 'pending' AND item > $3"
	"   AND (not_before IS NULL OR not_before <= clock_timestamp())"
	" ORDER BY item LIMIT $2 FOR UPDATE SKIP LOCKED",
	3, {INT8OID, INT4OID, INT4OID}
};

/*
 * Under a schema older than 1.3, the group's items are found by the row
 * versions the claim locked (their ctids, which nothing else can change
 * while we hold the locks): a TID scan, whatever the planner believes about
 * the table.  Joined on item instead, a plan made from statistics of an
 * empty table would walk every pending item of the batch for each item of
 * the group.
 */
static UsStatement us_record_items_12 = {
	"UPDATE user_service.batch_items i"
	"   SET status = r.status, attempts = i.attempts + 1, user_id = r.user_id,"
	"       sqlstate = r.sqlstate, error = r.error, not_before = r.not_before,"
	"       finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE now() END,"
	"       payload = COALESCE(r.payload, i.payload)"
	"  FROM unnest($1::tid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::timestamptz[],"
	"              $7::jsonb[])"
	"       AS r(tid, status, user_id, sqlstate, error, not_before, payload)"
	" WHERE i.ctid = ANY ($1) AND i.ctid = r.tid",
	7, {TIDARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID}
};

static UsStatement us_insert_progress = {
	"INSERT INTO user_service.batch_progress (batch_id, started, at, succeeded, failed)"
	" VALUES ($1, now(), clock_timestamp(), $2, $3)",
	3, {INT8OID, INT4OID, INT4OID}
};

void
us_batch_run_init(void)
{
	DefineCustomIntVariable("user_service.max_attempts",
							"Attempts at a batch item that meets transient errors "
							"(serialization failure, deadlock, lock timeout).",
							NULL,
							&user_service_max_attempts,
							3,
							1,
							100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

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
 * us_acquire_slot
 *		Take a free concurrency slot of a batch without waiting; false when
 *		all of them are held.
 */
pg_noinline static bool
us_acquire_slot(int64 batch_id, int32 concurrency, uint32 *slot)
{
	for (uint32 k = 0; k < (uint32) concurrency; k++)
	{
		LOCKTAG		tag;

		us_slot_tag(&tag, batch_id, k);
		if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
		{
			*slot = k;
			return true;
		}
	}
	return false;
}

static void
us_release_slot(int64 batch_id, uint32 slot)
{
	LOCKTAG		tag;

	us_slot_tag(&tag, batch_id, slot);
	LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Where this process's last claims in a few batches ended.  Finished items
 * leave dead entries at the start of the pending index that vacuum cannot
 * remove while an old snapshot is open; claiming from the last position
 * skips them, so claiming stays cheap however long a batch runs.  Items left
 * behind (a retry not yet due, a claim rolled back by a crash) are found by
 * a claim from the start once the rest is taken.  One entry per batch that
 * this process has claimed from, in a hash table kept for the process's
 * life (a fixed ring missed as soon as more batches than it held took
 * turns, and every claim then read all the dead entries again); it starts
 * afresh past US_HINTS_MAX entries, which costs one claim from the start
 * per batch.
 */
#define US_HINTS_MAX	4096

typedef struct UsClaimHint
{
	int64		batch_id;		/* hash key */
	int32		item;
} UsClaimHint;

static HTAB *us_hints = NULL;
static Oid	us_hints_relid = InvalidOid;	/* the table of items they are of */

static UsClaimHint *
us_hint_for(int64 batch_id, bool create)
{
	bool		found;
	UsClaimHint *hint;
	Oid			relid = OidIsValid(us_catalog()->batch_chunks_relid) ?
		us_catalog()->batch_chunks_relid :
		get_relname_relid("batch_items", us_catalog()->namespace_oid);

	/*
	 * Batch ids start again at 1 when the extension is created again: the
	 * hints of the old table's batches would send claims of new batches
	 * past their first items (claimed out of order, in smaller groups).
	 */
	if (us_hints != NULL &&
		(relid != us_hints_relid ||
		 (create && hash_get_num_entries(us_hints) >= US_HINTS_MAX)))
	{
		hash_destroy(us_hints);
		us_hints = NULL;
	}
	us_hints_relid = relid;
	if (us_hints == NULL)
	{
		HASHCTL		info;

		info.keysize = sizeof(int64);
		info.entrysize = sizeof(UsClaimHint);
		info.hcxt = TopMemoryContext;
		us_hints = hash_create("user_service claim hints", 64, &info,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	hint = hash_search(us_hints, &batch_id, create ? HASH_ENTER : HASH_FIND, &found);
	if (create && !found)
		hint->item = 0;
	return hint;
}

/*
 * A claimed group: the items' numbers, payloads and attempts so far, and
 * where they are stored.  From 1.3 the group is (part of) one chunk, whose
 * columns are kept here element by element (cols[c][i] is column c of the
 * chunk's item i) to be written back with the group's outcomes; under an
 * older schema each item is a row, found again by its row version.
 */
enum
{
	US_C_STATUS,
	US_C_PAYLOAD,
	US_C_ATTEMPTS,
	US_C_NOT_BEFORE,
	US_C_USER_ID,
	US_C_SQLSTATE,
	US_C_ERROR,
	US_C_FINISHED_AT,
	US_C_RESULT,
	US_C_NCOLS
};

/* The element types of those columns, in that order. */
static const struct
{
	Oid			type;
	int16		len;
	bool		byval;
	char		align;
}			us_chunk_elem[US_C_NCOLS] = {
	{TEXTOID, -1, false, TYPALIGN_INT},
	{JSONBOID, -1, false, TYPALIGN_INT},
	{INT4OID, sizeof(int32), true, TYPALIGN_INT},
	{TIMESTAMPTZOID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE},
	{INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE},
	{TEXTOID, -1, false, TYPALIGN_INT},
	{TEXTOID, -1, false, TYPALIGN_INT},
	{TIMESTAMPTZOID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE},
	{JSONBOID, -1, false, TYPALIGN_INT},
};

typedef struct UsClaim
{
	int			n;
	int32	   *itemnos;
	Jsonb	  **payloads;
	int32	   *attempts;
	SPITupleTable *rows;		/* what the claim returned */
	/* under a schema older than 1.3 */
	ItemPointerData *tids;		/* each item's row version */
	/* from 1.3 */
	ItemPointerData chunk;		/* the chunk's row version */
	int			len;			/* items in the chunk */
	int		   *pos;			/* claimed item k is the chunk's item pos[k] */
	Datum	   *cols[US_C_NCOLS];
	bool	   *nulls[US_C_NCOLS];
	ArrayType  *payload_array;	/* the chunk's payloads, as read */
} UsClaim;

static bool
us_text_is(Datum d, const char *s)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/*
 * us_claim_from
 *		Run a claim statement whose argument from_arg is the item to claim
 *		after: from the hint, then from the start if that found nothing
 *		(items left behind: retries now due, claims rolled back).  Returns
 *		what it claimed.
 */
static SPITupleTable *
us_claim_from(UsStatement *stmt, Datum *args, int from_arg, int32 from)
{
	args[from_arg] = Int32GetDatum(from);
	us_spi_run_in_order(stmt, args, false, 0);
	if (SPI_processed == 0 && from > 0)
	{
		SPI_freetuptable(SPI_tuptable);
		args[from_arg] = Int32GetDatum(0);
		us_spi_run_in_order(stmt, args, false, 0);
	}
	return SPI_tuptable;
}

/*
 * us_claim_rows_12
 *		Under a schema older than 1.3: claim up to want pending items of a
 *		batch, a row each, from the hint on, then from the start if that
 *		found none.
 */
static int
us_claim_rows_12(int64 batch_id, int want, UsClaim *c)
{
	Datum		args[3];
	UsClaimHint *hint = us_hint_for(batch_id, false);
	int32		from = hint ? hint->item : 0;
	int			n;
	bool		isnull;

	args[0] = Int64GetDatum(batch_id);
	args[1] = Int32GetDatum(want);
	c->rows = us_claim_from(&us_claim_items_12, args, 2, from);
	n = (int) c->rows->numvals;
	c->n = n;
	if (n == 0)
		return 0;

	if (hint == NULL)
		hint = us_hint_for(batch_id, true);
	hint->item = DatumGetInt32(us_spi_value(n - 1, 1, &isnull));

	c->itemnos = palloc(sizeof(int32) * n);
	c->payloads = palloc0(sizeof(Jsonb *) * n);
	c->attempts = palloc(sizeof(int32) * n);
	c->tids = palloc(sizeof(ItemPointerData) * n);
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = c->rows->vals[i];
		TupleDesc	desc = c->rows->tupdesc;
		Datum		payload = SPI_getbinval(tup, desc, 2, &isnull);

		c->payloads[i] = isnull ? NULL : DatumGetJsonbP(payload);
		c->itemnos[i] = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		c->attempts[i] = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		c->tids[i] = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 4, &isnull));
	}
	return n;
}

/*
 * us_claim_chunk_items
 *		Claim the first chunk of a batch with items due (from the hint on,
 *		then from the start if that found none), and take up to want of its
 *		due pending items.
 */
static int
us_claim_chunk_items(int64 batch_id, int want, UsClaim *c)
{
	Datum		args[2];
	UsClaimHint *hint = us_hint_for(batch_id, false);
	int32		from = hint ? hint->item : 0;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int32		first_item;
	TimestampTz now;
	int			due = 0;

	args[0] = Int64GetDatum(batch_id);
	c->rows = us_claim_from(&us_claim_chunk, args, 1, from);
	c->n = 0;
	if (c->rows->numvals == 0)
		return 0;

	tup = c->rows->vals[0];
	desc = c->rows->tupdesc;
	c->chunk = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull));
	first_item = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));

	/* the chunk's columns, element by element; status says how many items */
	c->len = 0;
	for (int col = 0; col < US_C_NCOLS; col++)
	{
		Datum		d = SPI_getbinval(tup, desc, 3 + col, &isnull);
		Datum	   *vals = NULL;
		bool	   *nulls = NULL;
		int			nelems = 0;

		if (!isnull)
		{
			ArrayType  *array = DatumGetArrayTypeP(d);

			deconstruct_array(array, us_chunk_elem[col].type, us_chunk_elem[col].len,
							  us_chunk_elem[col].byval, us_chunk_elem[col].align,
							  &vals, &nulls, &nelems);
			if (col == US_C_PAYLOAD)
				c->payload_array = array;
		}
		if (col == US_C_STATUS)
			c->len = nelems;
		/* a missing or short array is items with nothing in that column */
		c->cols[col] = palloc0(sizeof(Datum) * c->len);
		c->nulls[col] = palloc(sizeof(bool) * c->len);
		for (int i = 0; i < c->len; i++)
		{
			c->nulls[col][i] = i >= nelems || nulls[i];
			if (!c->nulls[col][i])
				c->cols[col][i] = vals[i];
		}
	}

	c->itemnos = palloc(sizeof(int32) * c->len);
	c->payloads = palloc0(sizeof(Jsonb *) * c->len);
	c->attempts = palloc(sizeof(int32) * c->len);
	c->pos = palloc(sizeof(int) * c->len);
	now = GetCurrentTimestamp();
	for (int i = 0; i < c->len; i++)
	{
		if (c->nulls[US_C_STATUS][i] || !us_text_is(c->cols[US_C_STATUS][i], "pending") ||
			(!c->nulls[US_C_NOT_BEFORE][i] &&
			 DatumGetTimestampTz(c->cols[US_C_NOT_BEFORE][i]) > now))
			continue;
		due++;
		if (c->n == want)
			continue;
		c->pos[c->n] = i;
		c->itemnos[c->n] = first_item + i;
		c->payloads[c->n] = c->nulls[US_C_PAYLOAD][i] ? NULL :
			DatumGetJsonbP(c->cols[US_C_PAYLOAD][i]);
		c->attempts[c->n] = c->nulls[US_C_ATTEMPTS][i] ? 0 :
			DatumGetInt32(c->cols[US_C_ATTEMPTS][i]);
		c->n++;
	}

	/*
	 * The next claim starts after this chunk, unless it has due items that
	 * this group leaves (a process_batches asked for fewer).
	 */
	if (hint == NULL)
		hint = us_hint_for(batch_id, true);
	hint->item = due > c->n ? first_item - 1 : first_item;
	return c->n;
}

/* The outcome of one item. */
typedef struct UsItemResult
{
	int32		item;
	const char *status;			/* succeeded, failed, or pending (retry) */
	int64		user_id;
	bool		has_user_id;
	char	   *sqlstate;
	char	   *error;
	TimestampTz not_before;		/* retry time, when pending */
	Jsonb	   *scrubbed;		/* the payload to keep, when it had secrets */
	Jsonb	   *result;			/* what a registered kind's handler returned */
} UsItemResult;

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
 *		group) rolls back.  Only one that PostgreSQL's interrupt processing
 *		raised, though: a 57014 that a registered kind's handler raises
 *		itself is its item's error (thrown on, it would roll the group back
 *		at every try, for ever, without counting an attempt).
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

	if (edata != NULL && edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
		edata->funcname != NULL && strcmp(edata->funcname, "ProcessInterrupts") == 0)
		ReThrowError(edata);
	return edata;
}

typedef struct UsApplyArg
{
	const UsKindSpec *kind;
	Oid			submitter;
	Jsonb	   *payload;
	UsApplied	out;
} UsApplyArg;

static void
us_apply_item_cb(void *arg)
{
	UsApplyArg *a = (UsApplyArg *) arg;

	us_kind_apply(a->kind, a->submitter, a->payload, &a->out);
}

/*
 * us_process_item
 *		Run one item in a subtransaction and note its outcome: an error rolls
 *		back the item's effects alone, and the rest of the group goes on.
 */
static void
us_process_item(const UsKindSpec *kind, Oid submitter, Jsonb *payload, int32 attempts,
				UsItemResult *r)
{
	UsApplyArg	a = {kind, submitter, payload, {0}};
	ErrorData  *edata;

	/* only an edited job table has a pending item without a payload */
	if (payload == NULL)
	{
		r->has_user_id = false;
		r->sqlstate = pstrdup(unpack_sql_state(ERRCODE_DATA_CORRUPTED));
		r->error = pstrdup("the item has no payload");
		r->status = "failed";
		return;
	}
	edata = us_run_in_subxact(us_apply_item_cb, &a);

	if (edata == NULL)
	{
		r->user_id = a.out.user_id;
		r->has_user_id = a.out.has_user_id;
		r->result = a.out.result;
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

typedef struct UsGroupArg
{
	const UsKindSpec *kind;
	Oid			submitter;
	Jsonb	  **payloads;
	int			n;
	UsApplied  *out;
	bool	   *applied;
} UsGroupArg;

static void
us_apply_group_cb(void *arg)
{
	UsGroupArg *a = (UsGroupArg *) arg;

	us_kind_apply_group(a->kind, a->submitter, a->payloads, a->n, a->out, a->applied);
}

/*
 * us_process_group_at_once
 *		The fast path of a kind that applies a group of items at once (one
 *		DELETE for a group of delete_user items), in one subtransaction.
 *		Items it applied succeed; the others are run one by one after it,
 *		each for its own outcome (P0002 for a user already gone, say).  Any
 *		error rolls the group back, and every item is then run one by one.
 */
static void
us_process_group_at_once(const UsKindSpec *kind, Oid submitter, Jsonb **payloads,
						 const int32 *attempts, UsItemResult *res, int n)
{
	UsGroupArg	a = {kind, submitter, payloads, n, palloc0(sizeof(UsApplied) * n),
	palloc0(sizeof(bool) * n)};
	ErrorData  *edata = us_run_in_subxact(us_apply_group_cb, &a);

	if (edata != NULL)
	{
		FreeErrorData(edata);
		memset(a.applied, 0, sizeof(bool) * n);
	}
	for (int i = 0; i < n; i++)
	{
		if (a.applied[i])
		{
			res[i].status = "succeeded";
			res[i].user_id = a.out[i].user_id;
			res[i].has_user_id = a.out[i].has_user_id;
			res[i].result = a.out[i].result;
			continue;
		}
		CHECK_FOR_INTERRUPTS();
		us_process_item(kind, submitter, payloads[i], attempts[i], &res[i]);
	}
}

/*
 * us_record_rows_12
 *		Under a schema older than 1.3: write the group's outcomes to its
 *		items' rows.
 */
static void
us_record_rows_12(UsClaim *c, UsItemResult *res)
{
	int			n = c->n;
	Datum	   *tids = palloc(sizeof(Datum) * n);
	Datum	   *status = palloc(sizeof(Datum) * n);
	Datum	   *user_ids = palloc(sizeof(Datum) * n);
	Datum	   *sqlstates = palloc(sizeof(Datum) * n);
	Datum	   *errors = palloc(sizeof(Datum) * n);
	Datum	   *not_before = palloc(sizeof(Datum) * n);
	bool	   *user_nulls = palloc(sizeof(bool) * n);
	bool	   *err_nulls = palloc(sizeof(bool) * n);
	bool	   *nb_nulls = palloc(sizeof(bool) * n);
	Datum	   *scrubbed = palloc(sizeof(Datum) * n);
	bool	   *scrubbed_nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Datum		args[7];

	for (int i = 0; i < n; i++)
	{
		scrubbed[i] = JsonbPGetDatum(res[i].scrubbed);
		scrubbed_nulls[i] = res[i].scrubbed == NULL;
		tids[i] = PointerGetDatum(&c->tids[i]);
		status[i] = CStringGetTextDatum(res[i].status);
		user_ids[i] = Int64GetDatum(res[i].user_id);
		user_nulls[i] = !res[i].has_user_id;
		sqlstates[i] = res[i].sqlstate ? CStringGetTextDatum(res[i].sqlstate) : (Datum) 0;
		errors[i] = res[i].error ? CStringGetTextDatum(res[i].error) : (Datum) 0;
		err_nulls[i] = res[i].error == NULL;
		not_before[i] = TimestampTzGetDatum(res[i].not_before);
		nb_nulls[i] = strcmp(res[i].status, "pending") != 0;
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
	args[6] = PointerGetDatum(construct_md_array(scrubbed, scrubbed_nulls, 1, dims, lbs,
												 JSONBOID, -1, false, TYPALIGN_INT));
	us_spi_run(&us_record_items_12, args, NULL, false, 0);
}

/* Column col of a chunk as an array, or NULL when no item has a value. */
static Datum
us_chunk_array(UsClaim *c, int col, bool *isnull)
{
	int			dims[1] = {c->len};
	int			lbs[1] = {1};

	*isnull = true;
	for (int i = 0; i < c->len && *isnull; i++)
		*isnull = c->nulls[col][i];
	if (*isnull)
		return (Datum) 0;
	return PointerGetDatum(construct_md_array(c->cols[col], c->nulls[col], 1, dims, lbs,
											  us_chunk_elem[col].type, us_chunk_elem[col].len,
											  us_chunk_elem[col].byval,
											  us_chunk_elem[col].align));
}

/*
 * us_record_chunk_items
 *		Write the group's outcomes into its chunk: one new row version for
 *		the whole group, with the chunk's count of pending items and when
 *		the first of them is due.  Returns the payloads written (when some
 *		were scrubbed), for the caller to zero.
 */
static ArrayType *
us_record_chunk_items(UsClaim *c, UsItemResult *res)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz clock = GetCurrentTimestamp();
	bool		scrubbed = false;
	bool		due_now = false;
	TimestampTz due = 0;
	int32		pending = 0;
	Datum		args[12];
	char		nulls[12];
	ArrayType  *payloads = NULL;

	for (int k = 0; k < c->n; k++)
	{
		int			i = c->pos[k];
		UsItemResult *r = &res[k];
		bool		retry = strcmp(r->status, "pending") == 0;

#define US_SET(col, isnull, value) \
		(c->nulls[col][i] = (isnull), c->cols[col][i] = (isnull) ? (Datum) 0 : (value))
		US_SET(US_C_STATUS, false, CStringGetTextDatum(r->status));
		US_SET(US_C_ATTEMPTS, false, Int32GetDatum(c->attempts[k] + 1));
		US_SET(US_C_NOT_BEFORE, !retry, TimestampTzGetDatum(r->not_before));
		US_SET(US_C_USER_ID, !r->has_user_id, Int64GetDatum(r->user_id));
		US_SET(US_C_SQLSTATE, r->sqlstate == NULL, CStringGetTextDatum(r->sqlstate ? r->sqlstate : ""));
		US_SET(US_C_ERROR, r->error == NULL, CStringGetTextDatum(r->error ? r->error : ""));
		US_SET(US_C_FINISHED_AT, retry, TimestampTzGetDatum(now));
		US_SET(US_C_RESULT, r->result == NULL, JsonbPGetDatum(r->result));
#undef US_SET
		if (r->scrubbed != NULL)
		{
			c->cols[US_C_PAYLOAD][i] = JsonbPGetDatum(r->scrubbed);
			scrubbed = true;
		}
	}

	for (int i = 0; i < c->len; i++)
	{
		TimestampTz nb;

		if (c->nulls[US_C_STATUS][i] || !us_text_is(c->cols[US_C_STATUS][i], "pending"))
			continue;
		pending++;
		if (c->nulls[US_C_NOT_BEFORE][i] ||
			(nb = DatumGetTimestampTz(c->cols[US_C_NOT_BEFORE][i])) <= clock)
			due_now = true;
		else if (due == 0 || nb < due)
			due = nb;
	}

	memset(nulls, ' ', sizeof(nulls));
	args[0] = PointerGetDatum(&c->chunk);
	args[1] = Int32GetDatum(pending);
	args[2] = TimestampTzGetDatum(due);
	if (pending == 0 || due_now)
		nulls[2] = 'n';
	for (int col = 0; col < US_C_NCOLS; col++)
	{
		bool		isnull;
		int			arg = 3 + col;	/* $4 on, in the order of the columns */

		if (col == US_C_PAYLOAD && !scrubbed)
		{
			nulls[arg] = 'n';	/* kept as it is */
			continue;
		}
		args[arg] = us_chunk_array(c, col, &isnull);
		if (isnull)
			nulls[arg] = 'n';
		if (col == US_C_PAYLOAD && !isnull)
			payloads = DatumGetArrayTypeP(args[arg]);
	}
	us_spi_run(&us_record_chunk, args, nulls, false, 0);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the chunk of items %d to %d changed while its group ran",
						c->itemnos[0], c->itemnos[c->n - 1]),
				 errdetail("Its items' outcomes could not be recorded; the group is rolled back.")));
	return payloads;
}

/*
 * us_record_results
 *		Write the group's outcomes to its items, and its counts as one
 *		progress row (inserted: concurrent groups never wait on each other).
 */
static ArrayType *
us_record_results(int64 batch_id, UsClaim *c, UsItemResult *res)
{
	int32		succeeded = 0;
	int32		failed = 0;
	Datum		args[3];
	ArrayType  *written = NULL;

	if (c->pos != NULL)
		written = us_record_chunk_items(c, res);
	else
		us_record_rows_12(c, res);

	for (int i = 0; i < c->n; i++)
	{
		if (strcmp(res[i].status, "succeeded") == 0)
			succeeded++;
		else if (strcmp(res[i].status, "pending") != 0)
			failed++;
	}
	args[0] = Int64GetDatum(batch_id);
	args[1] = Int32GetDatum(succeeded);
	args[2] = Int32GetDatum(failed);
	us_spi_run(&us_insert_progress, args, NULL, false, 0);
	return written;
}

/*
 * The batch this process served last: the next claim looks at the batches
 * after it first, then wraps around to the oldest.  Every process so takes
 * turns between the open batches (a one-item batch never waits for a big
 * one to drain), and reads a page of them, not all, per claim.
 */
static int64 us_last_batch = 0;

/*
 * The batch whose group this process is running (0: none), for the batch
 * API called from inside an item (a registered kind's handler).
 */
static int64 us_running_batch = 0;

/*
 * us_scrubbed_payload
 *		A finished item's payload without its password (and imported hash),
 *		or NULL when it has neither (it is kept as it is); an empty object
 *		for a registered kind whose items are secrets.  Computed here from
 *		the copy that us_forget_claimed zeroes, so that the statement
 *		recording the results never reads the old payload.
 */
static Jsonb *
us_scrubbed_payload(const UsKindSpec *kind, Jsonb *payload)
{
	Datum		keys[2];

	if (us_kind_secret_items(kind))
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));

	if (getKeyJsonValueFromContainer(&payload->root, "password", 8, NULL) == NULL &&
		getKeyJsonValueFromContainer(&payload->root, "password_hash", 13, NULL) == NULL)
		return NULL;
	keys[0] = CStringGetTextDatum("password");
	keys[1] = CStringGetTextDatum("password_hash");
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_delete_array, JsonbPGetDatum(payload),
											  PointerGetDatum(construct_array(keys, 2, TEXTOID, -1,
																			  false, TYPALIGN_INT))));
}

/*
 * us_forget_claimed
 *		Zero the claimed rows and the payloads taken out of them (a payload
 *		is a copy when its row holds it with a short header, compressed or
 *		out of line; a chunk's payloads are one array, read and written
 *		whole): what they held of passwords must not linger in freed memory
 *		once the items are done.
 */
static void
us_forget_claimed(UsClaim *c, ArrayType *written)
{
	if (c->payload_array != NULL)
		explicit_bzero(c->payload_array, VARSIZE(c->payload_array));
	else
		for (int i = 0; i < c->n; i++)
			if (c->payloads[i] != NULL)
				explicit_bzero(c->payloads[i], VARSIZE(c->payloads[i]));
	if (written != NULL)
		explicit_bzero(written, VARSIZE(written));
	for (uint64 i = 0; c->rows != NULL && i < c->rows->numvals; i++)
		explicit_bzero(c->rows->vals[i]->t_data, c->rows->vals[i]->t_len);
}

/*
 * us_try_batch
 *		Claim and process a group of one batch (a row of us_open_batches),
 *		as us_process_group describes.  Returns how many items it processed.
 */
static int
us_try_batch(HeapTuple row, TupleDesc desc, UsGroupStarted started, void *arg,
			 int max_items, int64 *check_batch, bool *work_deferred)
{
	bool		isnull;
	int64		batch_id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	const UsKindSpec *kind = us_kind_of_batch(TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull)));
	int32		concurrency = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
	int32		total = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
	Oid			submitter = DatumGetObjectId(SPI_getbinval(row, desc, 5, &isnull));
	int			want = us_kind_hashes(kind) ? 1 : Min(max_items, US_GROUP_MAX);
	uint32		slot;
	UsItemResult *res;
	UsClaim		c = {0};
	ArrayType  *volatile written = NULL;
	int			n;
	Oid			temp_nsp;
	Oid			temp_toast_nsp;

	/*
	 * A registered kind's items run their submitter's code, with pg_temp on
	 * the search_path (it cannot be left out): a session with temporary
	 * objects, which could capture the handler's unqualified names, leaves
	 * them to the workers and other sessions.
	 */
	GetTempNamespaceState(&temp_nsp, &temp_toast_nsp);
	if (us_kind_registered(kind) && OidIsValid(temp_nsp))
	{
		*work_deferred = true;
		return 0;
	}

	/*
	 * A group holds one slot: concurrency bounds the transactions working
	 * on a batch at once.  For a kind that hashes a group is one item, so
	 * it bounds the hashes in flight; cheap items (microseconds each) go
	 * up to US_GROUP_MAX to a group, so that a batch at the default
	 * concurrency is not held to a few items per transaction.
	 */
	if (!us_acquire_slot(batch_id, concurrency, &slot))
	{
		*work_deferred = true;
		return 0;
	}

	n = OidIsValid(us_catalog()->batch_chunks_relid) ?
		us_claim_chunk_items(batch_id, want, &c) : us_claim_rows_12(batch_id, want, &c);
	if (n == 0)
	{
		us_release_slot(batch_id, slot);
		us_forget_claimed(&c, NULL);
		SPI_freetuptable(c.rows);
		/* nothing to take: the batch may be complete, have a look */
		if (*check_batch == 0)
			*check_batch = batch_id;
		*work_deferred = true;
		return 0;
	}

	res = palloc0(sizeof(UsItemResult) * n);
	for (int i = 0; i < n; i++)
		res[i].item = c.itemnos[i];

	if (started != NULL)
		started(arg, batch_id, us_kind_name(kind), c.itemnos, n, total);

	/*
	 * The next claim looks after this batch first, even if this group's
	 * transaction fails: a batch whose group keeps failing must not keep
	 * this process from the others.
	 */
	us_last_batch = batch_id;
	us_running_batch = batch_id;

	PG_TRY();
	{
		bool		whole = true;

		for (int i = 0; i < n; i++)
			whole &= c.payloads[i] != NULL;
		if (n > 1 && whole && us_kind_groups(kind))
			us_process_group_at_once(kind, submitter, c.payloads, c.attempts, res, n);
		else
		{
			for (int i = 0; i < n; i++)
			{
				CHECK_FOR_INTERRUPTS();
				us_process_item(kind, submitter, c.payloads[i], c.attempts[i], &res[i]);
			}
		}
		for (int i = 0; i < n; i++)
			if (strcmp(res[i].status, "pending") != 0 && c.payloads[i] != NULL)
				res[i].scrubbed = us_scrubbed_payload(kind, c.payloads[i]);
		written = us_record_results(batch_id, &c, res);
	}
	PG_FINALLY();
	{
		us_running_batch = 0;
		/* the items' passwords: in the claimed rows and their detoasted copies */
		us_forget_claimed(&c, written);
	}
	PG_END_TRY();
	/* a pass over many batches must not pile up their claims */
	SPI_freetuptable(c.rows);
	us_release_slot(batch_id, slot);

	/*
	 * The group may have been the batch's last when its items hash (each is
	 * a transaction of its own anyway) or when the claim found fewer items
	 * than it could take; otherwise there are pending items left, and the
	 * completion check can be spared.
	 */
	if (us_kind_hashes(kind) || n < want)
		*check_batch = batch_id;
	return n;
}

/*
 * us_check_not_own_batch
 *		Raise 55000 when called from an item of batch_id: cancelling its own
 *		batch would change the chunk the group then records into (the group
 *		would fail and come back at every try), and the batch cannot finish
 *		while its item waits for it.  what names the call, for the message.
 */
void
us_check_not_own_batch(int64 batch_id, const char *what)
{
	if (us_running_batch != 0 && us_running_batch == batch_id)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a batch item cannot %s its own batch", what)));
}

/*
 * us_process_group
 *		One unit of work, in the current transaction: take the next open
 *		batch (in turn, after the one this process served last) that has a
 *		free concurrency slot and a pending item, claim up to max_items of its
 *		items (one for kinds that hash, since each hash keeps a slot busy),
 *		process them, record the results.  Returns how many items it
 *		processed (0: nothing to do), and in *check_batch a batch that may
 *		now be complete (else 0): the one it processed, or one where it found
 *		nothing to take; *work_deferred says that some open batch had pending
 *		items it could not take now (no free slot, items held by others, or
 *		waiting for a retry), so the caller should look again soon.  started
 *		(when not NULL) is told of the group before it runs.
 */
int
us_process_group(UsGroupStarted started, void *arg, int max_items,
				 int64 *check_batch, bool *work_deferred)
{
	UsSavedUser saved;
	int64		start = us_last_batch;
	int64		after = start;
	bool		wrapped = false;
	int			processed = 0;

	*check_batch = 0;
	*work_deferred = false;

	/*
	 * Not from inside an item: the nested pass would claim this group's
	 * chunk again (this transaction holds its lock), and the group could
	 * not record its outcomes over what the nested pass wrote.
	 */
	if (us_running_batch != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch items cannot process batches")));

	us_spi_begin(&saved);
	while (processed == 0)
	{
		Datum		args[2] = {Int64GetDatum(after), Int32GetDatum(US_BATCH_PAGE)};
		SPITupleTable *page;
		uint64		nrows;
		bool		passed_start = false;

		us_spi_run(&us_open_batches, args, NULL, false, 0);
		page = SPI_tuptable;
		nrows = SPI_processed;

		for (uint64 b = 0; b < nrows && processed == 0; b++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(page->vals[b], page->tupdesc, 1, &isnull));

			/* after wrapping around, stop where the first pass began */
			if (wrapped && id > start)
			{
				passed_start = true;
				break;
			}
			after = id;
			processed = us_try_batch(page->vals[b], page->tupdesc, started, arg,
									 max_items, check_batch, work_deferred);
		}
		if (processed > 0 || passed_start)
			break;
		if (nrows < US_BATCH_PAGE)
		{
			/* the end of the open batches: once from the oldest, if not yet */
			if (wrapped || start == 0)
				break;
			wrapped = true;
			after = 0;
		}
		SPI_freetuptable(page);
	}
	us_spi_end(&saved);
	return processed;
}
