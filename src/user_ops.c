/*-------------------------------------------------------------------------
 *
 * user_ops.c
 *		The operations on users, shared by the SQL API (users.c) and the
 *		batch engine: look a user up, create, import, update, delete, set
 *		and verify a password.
 *
 * Reads (lookups, verify_password's, the duplicate-email pre-checks) scan
 * user_service.users through its indexes directly.  Writes run prepared SPI
 * statements as the table's owner (catalog.c).  Every input is validated
 * before anything is hashed or written, and no message ever carries a
 * password.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"

#include "catalog.h"
#include "email_claims.h"
#include "login_throttle.h"
#include "foreign_hash.h"
#include "password.h"
#include "shard.h"
#include "user_ops.h"

#define US_RETURNING_USER_INFO " RETURNING id, name, email, created_at, updated_at"

/*
 * now() is the transaction's start: a transaction that began before a user
 * was created (a worker's group of items, say) must not stamp it as updated
 * before it was created.  GREATEST compares with the type's default btree
 * operator class, not an operator looked up by name.
 */
#define US_UPDATED_AT "GREATEST(pg_catalog.now(), created_at)"

/*
 * The id names the shard: n * shard_count ($4) + shard ($5), n from the
 * identity sequence (shard.c); without a configuration, n itself.
 */
static UsStatement us_insert_user = {
	"INSERT INTO user_service.users (id, name, email, password_hash) OVERRIDING SYSTEM VALUE"
	" VALUES (pg_catalog.nextval('user_service.users_id_seq'::pg_catalog.regclass)"
	"         OPERATOR(pg_catalog.*) $4 OPERATOR(pg_catalog.+) $5, $1, $2, $3)"
	US_RETURNING_USER_INFO,
	5, {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID}
};

/* An update that changes nothing writes nothing (see us_user_update). */
static UsStatement us_update_user = {
	"UPDATE user_service.users"
	" SET name = COALESCE($2, name), email = COALESCE($3, email),"
	" updated_at = " US_UPDATED_AT
	" WHERE id OPERATOR(pg_catalog.=) $1"
	"   AND (name IS DISTINCT FROM COALESCE($2, name) OR email IS DISTINCT FROM COALESCE($3, email))"
	US_RETURNING_USER_INFO,
	3, {INT8OID, TEXTOID, TEXTOID}
};

static UsStatement us_delete_user = {
	"DELETE FROM user_service.users WHERE id OPERATOR(pg_catalog.=) $1"
	US_RETURNING_USER_INFO,
	1, {INT8OID}
};

static UsStatement us_set_password = {
	"UPDATE user_service.users"
	" SET password_hash = $2, updated_at = " US_UPDATED_AT
	" WHERE id OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, TEXTOID}
};

/* Rehash on login: only if nobody changed the hash since we read it. */
static UsStatement us_rehash = {
	"UPDATE user_service.users SET password_hash = $3"
	" WHERE id OPERATOR(pg_catalog.=) $1"
	" AND password_hash OPERATOR(pg_catalog.=) $2",
	3, {INT8OID, TEXTOID, TEXTOID}
};

void
us_user_not_found(int64 id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("user " INT64_FORMAT " not found", id)));
}

/* ---------------------------------------------------------------------
 * Direct reads
 * ---------------------------------------------------------------------
 */

/*
 * us_copy_row
 *		Copy a users row out of a slot into the current memory context.
 */
static void
us_copy_row(TupleTableSlot *slot, Datum *values, bool *nulls)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;

	slot_getallattrs(slot);
	for (int i = 0; i < Natts_users; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		nulls[i] = slot->tts_isnull[i];
		values[i] = nulls[i] ? (Datum) 0 :
			datumCopy(slot->tts_values[i], att->attbyval, att->attlen);
	}
}

/*
 * us_fetch_user
 *		Look one user up through a unique index of user_service.users (the
 *		key is on the index's first column) under the given snapshot, and
 *		copy the row into values/nulls, or (values NULL) form its user_info
 *		straight from the buffer into *info.  False when there is none.
 *		Locks are kept to the end of the transaction, as usual.
 */
static bool
us_fetch_user(Oid indexrelid, ScanKey key, Snapshot snapshot,
			  Datum *values, bool *nulls, Datum *info)
{
	const UsCatalog *cat = us_catalog();
	TupleDesc	info_desc = values ? NULL : us_user_info_desc();
	Relation	rel = table_open(cat->users_relid, AccessShareLock);
	Relation	idx = index_open(indexrelid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	bool		found;

	/* The collation of the key is the index's own. */
	key->sk_collation = idx->rd_indcollation[0];

	scan = index_beginscan(rel, idx, snapshot, 1, 0);
	index_rescan(scan, key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found && values)
		us_copy_row(slot, values, nulls);
	else if (found)
	{
		slot_getallattrs(slot);
		*info = us_user_info(info_desc, slot->tts_values, slot->tts_isnull);
	}
	index_endscan(scan);

	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return found;
}

static bool
us_fetch_by_id(int64 id, Snapshot snapshot, Datum *values, bool *nulls)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	return us_fetch_user(us_catalog()->users_pkey_relid, &key, snapshot,
						 values, nulls, NULL);
}

static bool
us_fetch_by_email(const char *email, Snapshot snapshot,
				  Datum *values, bool *nulls)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
				CStringGetTextDatum(us_lower_email(email)));
	return us_fetch_user(us_catalog()->users_email_relid, &key, snapshot,
						 values, nulls, NULL);
}

/*
 * us_email_taken
 *		The one error of an email in use, whatever found it (a lookup, a
 *		claim of another shard's user, the unique index in a race).  It
 *		names the schema, table and constraint itself, without opening the
 *		table: us_write_user raises it where no catalog access is allowed.
 */
void
us_email_taken(const char *email)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("a user with email \"%s\" already exists", email),
			 errdetail("Email addresses are unique regardless of case."),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, "user_service"),
			 err_generic_string(PG_DIAG_TABLE_NAME, "users"),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "users_email_key")));
}

/*
 * us_check_email_free
 *		23505 when another user than except_id has this email in any case,
 *		here or (a claim, see email_claims.c) on another shard.  This gives
 *		the common case a clean message and spares the argon2 work; the
 *		unique index still decides races among this database's users.
 *		SnapshotSelf sees what the index would: committed rows and this
 *		transaction's own.  The claim lock is held to the end of the
 *		transaction, so that no claim of the email slips in before our row
 *		(on a shard of more than one, shard_count from us_shard_config:
 *		elsewhere there are no claims).
 */
static void
us_check_email_free(const char *email, int64 except_id, int64 shard_count)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];

	if (us_claims_apply(shard_count))
	{
		char	   *key = us_lower_email(email);
		int64		owner;

		us_claims_lock(key);
		owner = us_claim_owner(key);
		if (owner != 0 && owner != except_id)
			us_email_taken(email);
	}
	if (us_fetch_by_email(email, SnapshotSelf, values, nulls) &&
		DatumGetInt64(values[Anum_users_id - 1]) != except_id)
		us_email_taken(email);
}

/*
 * us_user_claim_email
 *		On the email's home shard: hold the email for user_id, a user of
 *		another shard (see email_claims.c).  23505 when a user here has it
 *		or another user holds it.  True when the claim is new, false when
 *		user_id held it already.
 */
bool
us_user_claim_email(text *email, int64 user_id)
{
	char	   *vemail = us_valid_email(email);
	char	   *key = us_lower_email(vemail);
	Datum		values[Natts_users];
	bool		nulls[Natts_users];
	int64		owner;
	int64		shard_count;
	int64		shard;

	(void) us_shard_config(&shard_count, &shard);
	if (!us_claims_apply(shard_count))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database is not a shard of a cluster"),
				 errhint("Emails are claimed on the shards of a cluster: see user_service.configure_shard.")));
	us_claims_lock(key);
	if (us_fetch_by_email(vemail, SnapshotSelf, values, nulls))
		us_email_taken(vemail);
	owner = us_claim_owner(key);
	if (owner != 0 && owner != user_id)
		us_email_taken(vemail);
	if (owner != 0)
		return false;
	us_claim_insert(key, user_id);
	return true;
}

/*
 * us_user_info_desc
 *		The descriptor of user_service.user_info, what create_user, get_user
 *		and update_user return.  It is kept for the backend's life and copied
 *		again only when the type changes (the type cache gives every version
 *		of a row type its own identifier).  Asking fmgr for the result type
 *		instead would copy it on every call: a prepared statement's executor
 *		starts afresh each time, and fn_extra with it.
 */
TupleDesc
us_user_info_desc(void)
{
	static TupleDesc desc = NULL;
	static uint64 desc_identifier = 0;
	TypeCacheEntry *tce = lookup_type_cache(us_catalog()->user_info_typid,
											TYPECACHE_TUPDESC);

	if (tce->tupDesc == NULL || tce->tupDesc->natts != Natts_user_info)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("type \"user_service.user_info\" has been altered"),
				 errhint("Reinstall the extension, or restore the type as the install script made it.")));
	if (desc == NULL || desc_identifier != tce->tupDesc_identifier)
	{
		MemoryContext old = MemoryContextSwitchTo(CacheMemoryContext);
		TupleDesc	copy = CreateTupleDescCopy(tce->tupDesc);

		MemoryContextSwitchTo(old);
		if (desc)
			FreeTupleDesc(desc);
		desc = copy;
		desc_identifier = tce->tupDesc_identifier;
	}
	return desc;
}

/*
 * us_user_info
 *		A user_info datum from users-ordered values (drops password_hash).
 */
Datum
us_user_info(TupleDesc desc, const Datum *values, const bool *nulls)
{
	Datum		v[Natts_user_info];
	bool		n[Natts_user_info];
	static const int from[Natts_user_info] = {
		Anum_users_id, Anum_users_name, Anum_users_email,
		Anum_users_created_at, Anum_users_updated_at
	};

	for (int i = 0; i < Natts_user_info; i++)
	{
		v[i] = values[from[i] - 1];
		n[i] = nulls[from[i] - 1];
	}
	return HeapTupleGetDatum(heap_form_tuple(desc, v, n));
}

/* ---------------------------------------------------------------------
 * Writes
 * ---------------------------------------------------------------------
 */

/*
 * us_execute
 *		Run a write statement as the owner of user_service.users.  When
 *		row_values is given, the first returned row (user_info columns) is
 *		copied into it, users-ordered.  Returns the number of rows processed.
 */
static uint64
us_execute(UsStatement *stmt, Datum *args, const char *argnulls,
		   Datum *row_values, bool *row_nulls)
{
	MemoryContext callcxt = CurrentMemoryContext;
	UsSavedUser saved;
	uint64		processed;

	us_spi_begin(&saved);
	us_spi_run(stmt, args, argnulls, false, 0);
	processed = SPI_processed;

	if (row_values != NULL && processed > 0)
	{
		static const int to[Natts_user_info] = {
			Anum_users_id, Anum_users_name, Anum_users_email,
			Anum_users_created_at, Anum_users_updated_at
		};
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(callcxt);

		for (int i = 0; i < Natts_user_info; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			bool		isnull;
			Datum		d = heap_getattr(tup, i + 1, desc, &isnull);

			row_nulls[to[i] - 1] = isnull;
			row_values[to[i] - 1] = isnull ? (Datum) 0 :
				datumCopy(d, att->attbyval, att->attlen);
		}
		MemoryContextSwitchTo(old);
	}

	us_spi_end(&saved);
	return processed;
}

/*
 * us_write_user
 *		us_execute for the INSERT and UPDATE of a user with this email: a
 *		race with another writer of the same email, which the pre-check
 *		could not see and the unique index decides, gets the API's error
 *		(us_email_taken) rather than the index's.  The index's error is
 *		replaced, not caught: nothing but the new error runs after it, and
 *		the (sub)transaction's abort cleans up as it would have.
 */
static uint64
us_write_user(UsStatement *stmt, Datum *args, const char *argnulls,
			  Datum *row_values, bool *row_nulls, const char *email)
{
	MemoryContext cxt = CurrentMemoryContext;
	uint64		n = 0;

	PG_TRY();
	{
		n = us_execute(stmt, args, argnulls, row_values, row_nulls);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (email != NULL && edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION &&
			edata->constraint_name != NULL &&
			strcmp(edata->constraint_name, "users_email_key") == 0)
		{
			FlushErrorState();
			us_email_taken(email);
		}
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return n;
}

/*
 * us_user_insert
 *		Validate and insert a user, with a password to hash or a hash made
 *		elsewhere (exactly one of the two); the new row (users-ordered) goes
 *		to values/nulls.  The password is checked before the email's
 *		uniqueness, and hashed only when everything else passed.
 */
static void
us_user_insert(text *name, text *email, text *password, const char *hash,
			   Datum *values, bool *nulls)
{
	char	   *vname = us_valid_name(name);
	char	   *vemail = us_valid_email(email);
	Datum		args[5];
	int64		shard_count;
	int64		shard;
	bool		configured;

	if (password)
		us_check_password(password);
	/* shard_config read once: for the claims and for the new id */
	configured = us_shard_config(&shard_count, &shard);
	us_check_email_free(vemail, 0, shard_count);
	if (configured)
		us_shard_check_place(shard_count, shard);
	if (password)
		hash = us_password_hash(VARDATA_ANY(password), VARSIZE_ANY_EXHDR(password));

	args[0] = CStringGetTextDatum(vname);
	args[1] = CStringGetTextDatum(vemail);
	args[2] = CStringGetTextDatum(hash);
	args[3] = Int64GetDatum(shard_count);
	args[4] = Int64GetDatum(shard);
	if (us_write_user(&us_insert_user, args, NULL, values, nulls, vemail) != 1)
		elog(ERROR, "insert into user_service.users returned no row");
}

/*
 * us_user_create
 *		Validate, hash and insert a user.  Arguments must not be NULL.
 */
void
us_user_create(text *name, text *email, text *password, Datum *values, bool *nulls)
{
	us_user_insert(name, email, password, NULL, values, nulls);
}

/*
 * us_user_import
 *		Insert a user with a password hash made elsewhere (the import_user
 *		batch kind, which has checked the hash), name and email validated
 *		exactly as by us_user_create.
 */
void
us_user_import(text *name, text *email, const char *password_hash,
			   Datum *values, bool *nulls)
{
	us_user_insert(name, email, NULL, password_hash, values, nulls);
}

static UsStatement us_insert_users = {
	"INSERT INTO user_service.users (id, name, email, password_hash) OVERRIDING SYSTEM VALUE"
	" SELECT pg_catalog.nextval('user_service.users_id_seq'::pg_catalog.regclass)"
	"        OPERATOR(pg_catalog.*) $4 OPERATOR(pg_catalog.+) $5, u.name, u.email, u.hash"
	"   FROM unnest($1::pg_catalog.text[], $2::pg_catalog.text[], $3::pg_catalog.text[])"
	"        WITH ORDINALITY AS u(name, email, hash, n)"
	"  ORDER BY u.n"
	" ON CONFLICT ((pg_catalog.lower(email))) DO NOTHING"
	" RETURNING id, email",
	5, {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8OID, INT8OID}
};

/*
 * us_user_import_many
 *		Insert users with imported hashes in one statement (the batch
 *		engine's fast path for groups of import_user items), validated as
 *		us_user_import validates them (an invalid name or email raises, and
 *		the engine runs the group's items one by one).  applied[i] says that
 *		user i was inserted, with id ids[i]; a user whose email is taken, in
 *		the table or by an earlier user of the group, is left out (its item,
 *		run alone, gets the 23505).  On a shard of more than one every user
 *		needs the email claims' check: none is applied here.
 */
void
us_user_import_many(text **names, text **emails, const char **hashes, int n,
					int64 *ids, bool *applied)
{
	Datum	   *vnames = palloc(sizeof(Datum) * n);
	Datum	   *vemails = palloc(sizeof(Datum) * n);
	char	  **cemails = palloc(sizeof(char *) * n);
	Datum	   *vhashes = palloc(sizeof(Datum) * n);
	Datum		args[5];
	int64		shard_count;
	int64		shard;
	UsSavedUser saved;

	memset(applied, 0, sizeof(bool) * n);
	if (us_shard_config(&shard_count, &shard))
	{
		if (shard_count > 1)
			return;
		us_shard_check_place(shard_count, shard);
	}
	for (int i = 0; i < n; i++)
	{
		vnames[i] = CStringGetTextDatum(us_valid_name(names[i]));
		cemails[i] = us_valid_email(emails[i]);
		vemails[i] = CStringGetTextDatum(cemails[i]);
		vhashes[i] = CStringGetTextDatum(hashes[i]);
	}
	args[0] = PointerGetDatum(construct_array(vnames, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(vemails, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(vhashes, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[3] = Int64GetDatum(shard_count);
	args[4] = Int64GetDatum(shard);

	us_spi_begin(&saved);
	us_spi_run(&us_insert_users, args, NULL, false, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc, 1, &isnull));
		char	   *email = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);

		/* the inserted emails are distinct: the first item with it */
		for (int i = 0; i < n; i++)
			if (!applied[i] && strcmp(cemails[i], email) == 0)
			{
				applied[i] = true;
				ids[i] = id;
				break;
			}
	}
	us_spi_end(&saved);
}

/*
 * us_user_update
 *		Change name and/or email (NULL keeps the value), bump updated_at; the
 *		updated row goes to values/nulls.  P0002 when the user is missing.
 *		An update to the same values changes nothing, updated_at included.
 */
void
us_user_update(int64 id, text *name, text *email, Datum *values, bool *nulls)
{
	Datum		args[3];
	char		argnulls[3] = {' ', 'n', 'n'};
	char	   *vemail = NULL;

	args[0] = Int64GetDatum(id);
	if (name != NULL)
	{
		args[1] = CStringGetTextDatum(us_valid_name(name));
		argnulls[1] = ' ';
	}
	if (email != NULL)
	{
		int64		shard_count;
		int64		shard;

		vemail = us_valid_email(email);
		(void) us_shard_config(&shard_count, &shard);
		us_check_email_free(vemail, id, shard_count);
		args[2] = CStringGetTextDatum(vemail);
		argnulls[2] = ' ';
	}

	/*
	 * No row: the user is missing, or the update would change nothing (the
	 * same name and email, or both NULL), which writes no row version and
	 * keeps updated_at; the user is returned as it is.
	 */
	if (us_write_user(&us_update_user, args, argnulls, values, nulls, vemail) == 0 &&
		!us_fetch_by_id(id, SnapshotSelf, values, nulls))
		us_user_not_found(id);
}

/*
 * us_user_delete
 *		Delete a user; P0002 when missing.  When values is given, the deleted
 *		row (users-ordered, without the hash) is copied into values/nulls.
 */
void
us_user_delete(int64 id, Datum *values, bool *nulls)
{
	Datum		args[1] = {Int64GetDatum(id)};

	if (us_execute(&us_delete_user, args, NULL, values, nulls) == 0)
		us_user_not_found(id);
}

static UsStatement us_delete_users = {
	"DELETE FROM user_service.users WHERE id = ANY ($1) RETURNING id",
	1, {INT8ARRAYOID}
};

/*
 * us_user_delete_many
 *		Delete the users with these ids in one statement (the batch engine's
 *		fast path for groups of delete_user items).  found[i] says that ids[i]
 *		was deleted; of two equal ids only the first counts, as if the items
 *		had run one after the other.
 */
void
us_user_delete_many(const int64 *ids, int n, bool *found)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	Datum		args[1];
	UsSavedUser saved;

	for (int i = 0; i < n; i++)
	{
		elems[i] = Int64GetDatum(ids[i]);
		found[i] = false;
	}
	args[0] = PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));

	us_spi_begin(&saved);
	us_spi_run(&us_delete_users, args, NULL, false, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc, 1, &isnull));

		for (int i = 0; i < n; i++)
			if (ids[i] == id && !found[i])
			{
				found[i] = true;
				break;
			}
	}
	us_spi_end(&saved);
}

/*
 * us_user_set_password
 *		Hash and store a new password; P0002 when the user is missing (checked
 *		before hashing, to spare the argon2 work).
 */
void
us_user_set_password(int64 id, text *password)
{
	Datum		args[2];
	Datum		values[Natts_users];
	bool		nulls[Natts_users];

	us_check_password(password);
	if (!us_fetch_by_id(id, SnapshotSelf, values, nulls))
		us_user_not_found(id);

	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(us_password_hash(VARDATA_ANY(password),
												   VARSIZE_ANY_EXHDR(password)));
	if (us_execute(&us_set_password, args, NULL, NULL, NULL) == 0)
		us_user_not_found(id);
}

/*
 * us_user_get
 *		The user_info of user id in the active snapshot, formed straight
 *		from the buffer into *info; false when there is none.
 */
bool
us_user_get(int64 id, Datum *info)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	return us_fetch_user(us_catalog()->users_pkey_relid, &key, GetActiveSnapshot(),
						 NULL, NULL, info);
}

/*
 * us_user_verify
 *		Does the password match the stored hash of the user with this email?
 *
 * An email that matches no user costs the same argon2 work as a wrong
 * password, so the answer's timing does not tell whether the user exists.
 * An email longer than any stored one (over US_EMAIL_MAX_CHARS characters,
 * or over US_EMAIL_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN bytes before trimming,
 * which is told from its size without reading it) gets the same dummy work
 * and false: a 100 MB email costs no more than a short one.
 * An email that the login throttle has locked out (login_throttle.c) gets
 * false at once, known or not, without lookup or hashing; every other
 * failure, known email or not, is counted there, and a success resets the
 * count.  After a successful verify of a hash made with other parameters
 * than the current GUCs (when that is an upgrade), or of another system's
 * hash (foreign_hash.c), the hash is replaced by a current one, except where
 * the transaction cannot write (read-only, hot standby).
 */
bool
us_user_verify(Datum email_datum, text *password)
{
	const char *pwd;
	size_t		pwdlen;
	char	   *email;
	char	   *key;
	char	   *stored;
	Datum		values[Natts_users];
	bool		nulls[Natts_users];
	UsPhc		phc;
	volatile bool ok = false;
	volatile bool foreign = false;

	pwd = VARDATA_ANY(password);
	pwdlen = VARSIZE_ANY_EXHDR(password);

	if (toast_raw_datum_size(email_datum) - VARHDRSZ >
		US_EMAIL_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN)
	{
		us_password_dummy_work(pwd, pwdlen);
		return false;
	}
	email = us_nfc(us_trimmed(DatumGetTextPP(email_datum)));
	if (pg_mbstrlen(email) > US_EMAIL_MAX_CHARS)
	{
		us_password_dummy_work(pwd, pwdlen);
		return false;
	}

	/* locked out: no lookup, no hashing, whether the user exists or not */
	key = us_lower_email(email);
	if (!us_login_begin(key))
		return false;

	PG_TRY();
	{
		if (!us_fetch_by_email(email, GetActiveSnapshot(), values, nulls))
		{
			us_password_dummy_work(pwd, pwdlen);
			ok = false;
		}
		else
		{
			bool		recognized;

			stored = TextDatumGetCString(values[Anum_users_password_hash - 1]);
			if (us_phc_parse(stored, &phc))
				ok = us_password_verify(&phc, pwd, pwdlen);
			else if ((ok = us_foreign_verify(stored, pwd, pwdlen, &recognized)) ||
					 recognized)
				foreign = true;
			else
			{
				/*
				 * The DBA hears of it in the server log; the caller, who may
				 * not be the user, gets what a wrong password gets (an error
				 * would tell that the email has an account).
				 */
				ereport(LOG_SERVER_ONLY,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("the password hash of user " INT64_FORMAT " is in no format that can be verified",
								DatumGetInt64(values[Anum_users_id - 1])),
						 errdetail("verify_password answered false; set_password gives the user a new one.")));
				us_password_dummy_work(pwd, pwdlen);
				ok = false;
			}
		}
	}
	PG_CATCH();
	{
		us_login_abandon();
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* false also when a concurrent burst locked the email meanwhile */
	if (!us_login_end(ok))
		return false;

	/* another system's hash is replaced at its first success */
	if ((foreign || us_phc_needs_rehash(&phc)) && !RecoveryInProgress() && !XactReadOnly)
	{
		Datum		args[3];

		args[0] = values[Anum_users_id - 1];
		args[1] = values[Anum_users_password_hash - 1];
		args[2] = CStringGetTextDatum(us_password_hash(pwd, pwdlen));
		us_execute(&us_rehash, args, NULL, NULL, NULL);
	}

	return true;
}
