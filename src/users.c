/*-------------------------------------------------------------------------
 *
 * users.c
 *		The SQL-callable user API: create_user, get_user, update_user,
 *		delete_user, list_users, list_users_after, verify_password,
 *		set_password, and the statement trigger that keeps the exact user
 *		count.
 *
 * Reads (get_user, list_users, verify_password's lookup, the duplicate-email
 * pre-checks) scan user_service.users through its indexes directly.  Writes
 * run prepared SPI statements as the table's owner (catalog.c).  Every input
 * is validated before anything is hashed or written, and no message ever
 * carries a password.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/formatting.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "user_service.h"

PG_FUNCTION_INFO_V1(create_user);
PG_FUNCTION_INFO_V1(get_user);
PG_FUNCTION_INFO_V1(update_user);
PG_FUNCTION_INFO_V1(delete_user);
PG_FUNCTION_INFO_V1(list_users);
PG_FUNCTION_INFO_V1(list_users_after);
PG_FUNCTION_INFO_V1(verify_password);
PG_FUNCTION_INFO_V1(set_password);
PG_FUNCTION_INFO_V1(count_users_trigger);

#define US_RETURNING_USER_INFO " RETURNING id, name, email, created_at, updated_at"

/*
 * now() is the transaction's start: a transaction that began before a user
 * was created (a worker's group of items, say) must not stamp it as updated
 * before it was created.  GREATEST compares with the type's default btree
 * operator class, not an operator looked up by name.
 */
#define US_UPDATED_AT "GREATEST(pg_catalog.now(), created_at)"

static UsStatement us_insert_user = {
	"INSERT INTO user_service.users (name, email, password_hash)"
	" VALUES ($1, $2, $3)" US_RETURNING_USER_INFO,
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static UsStatement us_update_user = {
	"UPDATE user_service.users"
	" SET name = COALESCE($2, name), email = COALESCE($3, email),"
	" updated_at = " US_UPDATED_AT
	" WHERE id OPERATOR(pg_catalog.=) $1" US_RETURNING_USER_INFO,
	3, {INT8OID, TEXTOID, TEXTOID}
};

static UsStatement us_delete_user = {
	"DELETE FROM user_service.users WHERE id OPERATOR(pg_catalog.=) $1",
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

/* ---------------------------------------------------------------------
 * Input validation
 * ---------------------------------------------------------------------
 */

static inline bool
us_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\f' || c == '\v';
}

/*
 * us_trimmed
 *		The text without leading and trailing white space, as a C string.
 */
static char *
us_trimmed(text *t)
{
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);

	while (len > 0 && us_is_space(*s))
		s++, len--;
	while (len > 0 && us_is_space(s[len - 1]))
		len--;
	return pnstrdup(s, len);
}

/*
 * us_is_invisible
 *		Unicode code points that show nothing or move text around: C0 and C1
 *		controls, DEL, the white space of categories Zs, Zl and Zp, the
 *		zero-width and bidirectional formatting characters, and the byte
 *		order mark.
 */
static bool
us_is_invisible(pg_wchar c)
{
	return c <= 0x20 || (c >= 0x7f && c <= 0xa0) ||
		c == 0x00ad || c == 0x1680 || c == 0x180e ||
		(c >= 0x2000 && c <= 0x200f) ||
		(c >= 0x2028 && c <= 0x202f) ||
		(c >= 0x205f && c <= 0x206f) ||
		c == 0x3000 || c == 0xfeff;
}

/*
 * us_count_invisible
 *		How many of the characters of s are invisible (above).  Beyond ASCII
 *		only in a UTF-8 database, where characters are Unicode code points;
 *		in other encodings only ASCII white space and controls count.
 */
static int
us_count_invisible(const char *s)
{
	int			n = 0;

	if (GetDatabaseEncoding() != PG_UTF8)
	{
		for (const char *p = s; *p; p++)
			if ((unsigned char) *p <= ' ' || *p == 0x7f)
				n++;
		return n;
	}
	for (const unsigned char *p = (const unsigned char *) s; *p; p += pg_utf_mblen(p))
		if (us_is_invisible(utf8_to_unicode(p)))
			n++;
	return n;
}

/*
 * us_valid_name
 *		Trimmed name: at least one visible character, at most
 *		US_NAME_MAX_CHARS characters.
 */
static char *
us_valid_name(text *t)
{
	char	   *name = us_trimmed(t);

	if (name[0] == '\0' || us_count_invisible(name) == pg_mbstrlen(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name must not be empty")));
	if (pg_mbstrlen(name) > US_NAME_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name must be at most %d characters", US_NAME_MAX_CHARS)));
	return name;
}

/*
 * us_email_well_formed
 *		Exactly one '@', a non-empty local part, a domain that has a dot
 *		(neither first nor last, never two in a row), and no white space,
 *		control or invisible formatting character anywhere.
 */
static bool
us_email_well_formed(const char *email)
{
	const char *at = strchr(email, '@');
	const char *domain;
	size_t		dlen;

	if (us_count_invisible(email) > 0)
		return false;

	if (at == NULL || at == email || strchr(at + 1, '@') != NULL)
		return false;

	domain = at + 1;
	dlen = strlen(domain);
	return dlen >= 3 &&
		strchr(domain, '.') != NULL &&
		domain[0] != '.' && domain[dlen - 1] != '.' &&
		strstr(domain, "..") == NULL;
}

/*
 * us_valid_email
 *		Trimmed email address, checked by the rules above and for length.
 */
static char *
us_valid_email(text *t)
{
	char	   *email = us_trimmed(t);

	if (pg_mbstrlen(email) > US_EMAIL_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email must be at most %d characters", US_EMAIL_MAX_CHARS)));
	if (!us_email_well_formed(email))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid email address"),
				 errdetail("An email address needs exactly one \"@\", a non-empty local part, "
						   "and a domain containing a dot, without spaces.")));
	return email;
}

/*
 * us_check_password
 *		Length rule for new passwords, in bytes.  The message never shows the
 *		password.
 */
static void
us_check_password(text *t)
{
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len < US_PASSWORD_MIN_BYTES || len > US_PASSWORD_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password must be between %d and %d bytes long",
						US_PASSWORD_MIN_BYTES, US_PASSWORD_MAX_BYTES)));
}

/*
 * us_lower_email
 *		The key of users_email_key for an email: lower() under the column's
 *		collation (the database default), exactly as the index computes it.
 */
static char *
us_lower_email(const char *email)
{
	return str_tolower(email, strlen(email), DEFAULT_COLLATION_OID);
}

static void
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

static Datum us_user_info(TupleDesc desc, const Datum *values, const bool *nulls);
static TupleDesc us_user_info_desc(void);

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
 * us_check_email_free
 *		23505 when another user than except_id has this email in any case.
 *		This gives the common case a clean message and spares the argon2 work;
 *		the unique index still decides races.  SnapshotSelf sees what the
 *		index would: committed rows and this transaction's own.
 */
static void
us_check_email_free(const char *email, int64 except_id)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];

	if (us_fetch_by_email(email, SnapshotSelf, values, nulls) &&
		DatumGetInt64(values[Anum_users_id - 1]) != except_id)
	{
		/* already locked by the lookup */
		Relation	rel = table_open(us_catalog()->users_relid, NoLock);

		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("a user with email \"%s\" already exists", email),
				 errdetail("Email addresses are unique regardless of case."),
				 errtableconstraint(rel, "users_email_key")));
	}
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
static TupleDesc
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
static Datum
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

/*
 * us_count_users
 *		Exact number of users in the snapshot: the sum of
 *		user_service.user_count_deltas.
 */
static int64
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

/* ---------------------------------------------------------------------
 * The SQL API
 * ---------------------------------------------------------------------
 */

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
	Datum		args[3];

	if (password)
		us_check_password(password);
	us_check_email_free(vemail, 0);
	if (password)
		hash = us_password_hash(VARDATA_ANY(password), VARSIZE_ANY_EXHDR(password));

	args[0] = CStringGetTextDatum(vname);
	args[1] = CStringGetTextDatum(vemail);
	args[2] = CStringGetTextDatum(hash);
	if (us_execute(&us_insert_user, args, NULL, values, nulls) != 1)
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

/*
 * us_user_update
 *		Change name and/or email (NULL keeps the value), bump updated_at; the
 *		updated row goes to values/nulls.  P0002 when the user is missing.
 */
void
us_user_update(int64 id, text *name, text *email, Datum *values, bool *nulls)
{
	Datum		args[3];
	char		argnulls[3] = {' ', 'n', 'n'};

	args[0] = Int64GetDatum(id);
	if (name != NULL)
	{
		args[1] = CStringGetTextDatum(us_valid_name(name));
		argnulls[1] = ' ';
	}
	if (email != NULL)
	{
		char	   *vemail = us_valid_email(email);

		us_check_email_free(vemail, id);
		args[2] = CStringGetTextDatum(vemail);
		argnulls[2] = ' ';
	}

	if (us_execute(&us_update_user, args, argnulls, values, nulls) == 0)
		us_user_not_found(id);
}

/*
 * us_user_delete
 *		Delete a user; P0002 when missing.
 */
void
us_user_delete(int64 id)
{
	Datum		args[1] = {Int64GetDatum(id)};

	if (us_execute(&us_delete_user, args, NULL, NULL, NULL) == 0)
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
 * create_user(name text, email text, password text) RETURNS user_info
 */
Datum
create_user(PG_FUNCTION_ARGS)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];

	us_password_call();
	us_arg_not_null(fcinfo, 0, "name");
	us_arg_not_null(fcinfo, 1, "email");
	us_arg_not_null(fcinfo, 2, "password");
	us_user_create(PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1), PG_GETARG_TEXT_PP(2),
				   values, nulls);
	PG_RETURN_DATUM(us_user_info(us_user_info_desc(), values, nulls));
}

/*
 * get_user(id bigint) RETURNS user_info
 */
Datum
get_user(PG_FUNCTION_ARGS)
{
	int64		id;
	ScanKeyData key;
	Datum		info;

	us_arg_not_null(fcinfo, 0, "id");
	id = PG_GETARG_INT64(0);

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	if (!us_fetch_user(us_catalog()->users_pkey_relid, &key, GetActiveSnapshot(),
					   NULL, NULL, &info))
		us_user_not_found(id);

	PG_RETURN_DATUM(info);
}

/*
 * update_user(id bigint, name text DEFAULT NULL, email text DEFAULT NULL)
 *		RETURNS user_info
 */
Datum
update_user(PG_FUNCTION_ARGS)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];

	us_arg_not_null(fcinfo, 0, "id");
	us_user_update(PG_GETARG_INT64(0),
				   PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
				   PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2),
				   values, nulls);
	PG_RETURN_DATUM(us_user_info(us_user_info_desc(), values, nulls));
}

/*
 * delete_user(id bigint) RETURNS void
 */
Datum
delete_user(PG_FUNCTION_ARGS)
{
	us_arg_not_null(fcinfo, 0, "id");
	us_user_delete(PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}

/*
 * set_password(id bigint, password text) RETURNS void
 */
Datum
set_password(PG_FUNCTION_ARGS)
{
	us_password_call();
	us_arg_not_null(fcinfo, 0, "id");
	us_arg_not_null(fcinfo, 1, "password");
	us_user_set_password(PG_GETARG_INT64(0), PG_GETARG_TEXT_PP(1));
	PG_RETURN_VOID();
}

/*
 * verify_password(email text, password text) RETURNS boolean
 *
 * An email that matches no user costs the same argon2 work as a wrong
 * password, so the answer's timing does not tell whether the user exists.
 * After a successful verify of a hash made with other parameters than the
 * current GUCs, the hash is replaced by a current one, except where the
 * transaction cannot write (read-only, hot standby).
 */
Datum
verify_password(PG_FUNCTION_ARGS)
{
	text	   *password;
	const char *pwd;
	size_t		pwdlen;
	char	   *email;
	char	   *stored;
	Datum		values[Natts_users];
	bool		nulls[Natts_users];
	UsPhc		phc;
	bool		ok;

	us_password_call();
	us_arg_not_null(fcinfo, 0, "email");
	us_arg_not_null(fcinfo, 1, "password");
	email = us_trimmed(PG_GETARG_TEXT_PP(0));
	password = PG_GETARG_TEXT_PP(1);
	pwd = VARDATA_ANY(password);
	pwdlen = VARSIZE_ANY_EXHDR(password);

	if (!us_fetch_by_email(email, GetActiveSnapshot(), values, nulls))
	{
		us_password_dummy_work(pwd, pwdlen);
		PG_RETURN_BOOL(false);
	}

	stored = TextDatumGetCString(values[Anum_users_password_hash - 1]);
	if (!us_phc_parse(stored, &phc))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("password hash of user " INT64_FORMAT " is not an argon2 PHC string",
						DatumGetInt64(values[Anum_users_id - 1]))));

	ok = us_password_verify(&phc, pwd, pwdlen);

	if (ok && !us_phc_is_current(&phc) && !RecoveryInProgress() && !XactReadOnly)
	{
		Datum		args[3];

		args[0] = values[Anum_users_id - 1];
		args[1] = values[Anum_users_password_hash - 1];
		args[2] = CStringGetTextDatum(us_password_hash(pwd, pwdlen));
		us_execute(&us_rehash, args, NULL, NULL, NULL);
	}

	PG_RETURN_BOOL(ok);
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
	Datum	   *items = palloc(sizeof(Datum) * per_page);
	int			n = 0;
	Datum		result[2];
	bool		result_nulls[2] = {false, false};

	get_typlenbyvalalign(elemtype, &elemlen, &elembyval, &elemalign);

	total = us_count_users(snapshot);

	/* past the end: no need to walk the index */
	if (offset < total)
	{
		Relation	rel = table_open(cat->users_relid, AccessShareLock);
		Relation	idx = index_open(cat->users_pkey_relid, AccessShareLock);
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		IndexScanDesc scan = index_beginscan(rel, idx, snapshot, keyset ? 1 : 0, 0);
		ScanKeyData key;
		int64		skipped = 0;
		Datum		values[Natts_users];
		bool		nulls[Natts_users];

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
			us_copy_row(slot, values, nulls);
			items[n++] = us_user_info(info_desc, values, nulls);
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, NoLock);
		table_close(rel, NoLock);
	}

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
