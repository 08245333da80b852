/*-------------------------------------------------------------------------
 *
 * batch_kinds.c
 *		The kinds of batches: for each, the keys of its items, the API
 *		function whose EXECUTE privilege submitting it needs, the version of
 *		the extension that introduced it, and how an item (or a whole group
 *		of items) is applied.  A new kind is one entry of us_kinds.
 *
 * Items are checked twice: their shape (an object with the kind's keys, each
 * of the right JSON type) when the batch is submitted, so that a malformed
 * submission stores nothing; their values (a valid email, a long enough
 * password) when they are applied, so that a bad value fails its item alone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "batch.h"
#include "catalog.h"
#include "foreign_hash.h"
#include "kind_registry.h"
#include "password.h"
#include "user_ops.h"

typedef enum UsKeyType
{
	US_KEY_STRING,
	US_KEY_ID,
	US_KEY_PHC					/* a password hash to import: a string, or a
								 * Keycloak credential object */
} UsKeyType;

typedef struct UsKeySpec
{
	const char *key;
	UsKeyType	type;
	bool		required;
} UsKeySpec;

/* Carry out one item; returns the id of the user it concerned. */
typedef int64 (*UsApplyItem) (Jsonb *payload);

/*
 * Carry out a group of items at once; applied[i] says whether item i took
 * effect (user_ids[i] is then its user).  The items that did not are run
 * one by one afterwards, for their own errors.  An error rolls the group back.
 */
typedef void (*UsApplyGroup) (Jsonb **payloads, int n, int64 *user_ids, bool *applied);

struct UsKindSpec
{
	const char *name;			/* the kind */
	const char *keys_hint;		/* its keys, for a message */
	bool		hashes;			/* does an item cost an argon2 hash? */
	const char *func;			/* the API function whose EXECUTE it needs */
	int			nargs;			/* that function's arguments */
	Oid			argtypes[3];
	int			since_major;	/* the extension version that has the kind */
	int			since_minor;
	UsKeySpec	keys[4];		/* ends with a NULL key */
	UsApplyItem apply;
	UsApplyGroup apply_group;	/* NULL: items one by one */

	/* a registered kind (the fields above are zero but name) */
	bool		registered;
	bool		missing;		/* not registered (any more) */
	UsRegisteredKind reg;
	FmgrInfo   *flinfo;			/* its handler's, for the group's calls */
};

static int64 us_apply_create(Jsonb *payload);
static int64 us_apply_update(Jsonb *payload);
static int64 us_apply_delete(Jsonb *payload);
static void us_apply_delete_group(Jsonb **payloads, int n, int64 *user_ids, bool *applied);
static void us_apply_import_group(Jsonb **payloads, int n, int64 *user_ids, bool *applied);
static int64 us_apply_set_password(Jsonb *payload);
static int64 us_apply_import(Jsonb *payload);

/*
 * import_user does what create_user does with a hash instead of a password
 * (and no argon2 work): it needs EXECUTE on create_user.
 */
static const UsKindSpec us_kinds[] = {
	{"create_user", "name, email and password",
		true, "create_user", 3, {TEXTOID, TEXTOID, TEXTOID}, 1, 1,
		{{"name", US_KEY_STRING, true}, {"email", US_KEY_STRING, true},
		{"password", US_KEY_STRING, true}},
	us_apply_create, NULL},
	{"update_user", "id, and name and/or email",
		false, "update_user", 3, {INT8OID, TEXTOID, TEXTOID}, 1, 1,
		{{"id", US_KEY_ID, true}, {"name", US_KEY_STRING, false},
		{"email", US_KEY_STRING, false}},
	us_apply_update, NULL},
	{"delete_user", "id",
		false, "delete_user", 1, {INT8OID}, 1, 1,
		{{"id", US_KEY_ID, true}},
	us_apply_delete, us_apply_delete_group},
	{"set_password", "id and password",
		true, "set_password", 2, {INT8OID, TEXTOID}, 1, 1,
		{{"id", US_KEY_ID, true}, {"password", US_KEY_STRING, true}},
	us_apply_set_password, NULL},
	{"import_user", "name, email and password_hash",
		false, "create_user", 3, {TEXTOID, TEXTOID, TEXTOID}, 1, 2,
		{{"name", US_KEY_STRING, true}, {"email", US_KEY_STRING, true},
		{"password_hash", US_KEY_PHC, true}},
	us_apply_import, us_apply_import_group},
};

/* The built-in kind called name, or NULL. */
static const UsKindSpec *
us_builtin_kind(const char *name)
{
	for (int k = 0; k < (int) lengthof(us_kinds); k++)
		if (strcmp(us_kinds[k].name, name) == 0)
			return &us_kinds[k];
	return NULL;
}

/*
 * us_kind_lookup
 *		The built-in or registered kind called name; NULL when there is none
 *		(a router has no registered kinds).  With lock, a registered kind's
 *		row is locked until the transaction ends (see us_registered_kind).
 */
static const UsKindSpec *
us_kind_lookup(const char *name, bool lock)
{
	const UsKindSpec *builtin = us_builtin_kind(name);
	UsKindSpec *kind;
	UsRegisteredKind reg;

	if (builtin != NULL)
		return builtin;
	if (!OidIsValid(get_extension_oid("user_service", true)) ||
		!us_registered_kind(name, lock, &reg))
		return NULL;
	kind = palloc0(sizeof(UsKindSpec));
	kind->name = pstrdup(name);
	kind->registered = true;
	kind->reg = reg;
	kind->flinfo = palloc0(sizeof(FmgrInfo));
	return kind;
}

/*
 * us_kind_by_name
 *		The kind called name, or 22023; for a submission: a registered kind
 *		stays registered until the transaction ends.
 */
const UsKindSpec *
us_kind_by_name(const char *name)
{
	const UsKindSpec *kind = us_kind_lookup(name, true);

	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown batch kind \"%s\"", name),
				 errhint("The built-in kinds are create_user, update_user, delete_user, set_password and import_user; user_service.batch_kinds lists them all.")));
	return kind;
}

/*
 * us_kind_of_batch
 *		The kind of a stored batch.  One that is no longer registered (its
 *		row deleted, or a restore without it) is a kind whose items fail,
 *		not an error that would stop every claim.
 */
const UsKindSpec *
us_kind_of_batch(const char *name)
{
	const UsKindSpec *kind = us_kind_lookup(name, false);
	UsKindSpec *missing;

	if (kind != NULL)
		return kind;
	missing = palloc0(sizeof(UsKindSpec));
	missing->name = pstrdup(name);
	missing->registered = true;
	missing->missing = true;
	/* (what its items carry is unknown: scrubbed, as secrets) */
	missing->reg.secrets = true;
	return missing;
}

/* Is name the name of a built-in kind? */
bool
us_kind_builtin(const char *name)
{
	return us_builtin_kind(name) != NULL;
}

const char *
us_kind_name(const UsKindSpec *kind)
{
	return kind->name;
}

/* Does an item cost an argon2 hash (and so keep a concurrency slot busy)? */
bool
us_kind_hashes(const UsKindSpec *kind)
{
	return kind->hashes;
}

/* Is it a registered kind (its items run as their submitter)? */
bool
us_kind_registered(const UsKindSpec *kind)
{
	return kind->registered;
}

/*
 * Do its items carry secrets as a whole (a registered kind that says so:
 * its items are scrubbed once finished)?
 */
bool
us_kind_secret_items(const UsKindSpec *kind)
{
	return kind->registered && kind->reg.secrets;
}

/* The concurrency of a batch submitted without one: 0 for the setting's. */
int32
us_kind_default_concurrency(const UsKindSpec *kind)
{
	return kind->registered ? kind->reg.default_concurrency : 0;
}

/*
 * us_kind_check_privilege
 *		A batch of a kind does what the kind's API function does: submitting
 *		one needs EXECUTE on that function (42501 otherwise), so that EXECUTE
 *		on submit_batch alone does not open set_password or delete_user.
 */
void
us_kind_check_privilege(const UsKindSpec *kind)
{
	Oid			funcoid;
	AclResult	aclresult;

	if (kind->registered)
	{
		/* a batch of a registered kind runs its handler */
		Assert(!kind->missing);
		if (!OidIsValid(kind->reg.handler))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("the handler of batch kind \"%s\" was dropped", kind->name)));
		us_check_handler_privileges(kind->reg.handler, GetUserId());
		return;
	}
	funcoid = LookupFuncName(list_make2(makeString("user_service"), makeString((char *) kind->func)),
							 kind->nargs, kind->argtypes, false);
	aclresult = pg_proc_aclcheck(funcoid, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, kind->func);
}

/*
 * us_kind_check_schema
 *		A kind needs the objects of the extension version that introduced it
 *		(batch_jobs' CHECK lists the kinds).  A library newer than the
 *		installed extension gets 55000 with a hint, rather than a check
 *		violation.
 */
void
us_kind_check_schema(const UsKindSpec *kind)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;
	int			major;
	int			minor;

	if (kind->registered || (kind->since_major == 1 && kind->since_minor <= 1))
		return;					/* every version with batches has it */

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

	if (version == NULL || sscanf(version, "%d.%d", &major, &minor) != 2)
		return;
	if (major < kind->since_major ||
		(major == kind->since_major && minor < kind->since_minor))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch kind \"%s\" needs user_service %d.%d, but version %s is installed",
						kind->name, kind->since_major, kind->since_minor, version),
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
 * us_item_hash_text
 *		The password_hash of an import_user item as text: a string, or the
 *		JSON text of an object (a Keycloak credential); NULL for anything
 *		else.
 */
static char *
us_item_hash_text(JsonbValue *v)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
		return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	return NULL;
}

/*
 * us_kind_check_item
 *		Validate the shape of item number itemno (from 1) of a submission:
 *		an object with the kind's keys, each of the right JSON type, and no
 *		others.  JSON null counts as absent for an optional key.  The one
 *		value checked here is an imported password hash, which must be one
 *		that can be imported already (a wrong one is a wrong export, not a
 *		bad user: better stop before anything is stored).
 */
void
us_kind_check_item(const UsKindSpec *kind, JsonbValue *item, int itemno)
{
	const UsKeySpec *keys = kind->keys;
	bool		seen[lengthof(us_kinds[0].keys)] = {false};
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (item->type != jbvBinary || !JsonContainerIsObject(item->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("item %d is not a JSON object", itemno)));
	if (kind->registered)
		return;					/* any object: its handler judges it */

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
					 errhint("A %s item takes the keys %s.", kind->name,
							 kind->keys_hint)));

		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (v.type == jbvNull && !keys[k].required)
			continue;
		if (keys[k].type == US_KEY_STRING && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("item %d: \"%s\" must be a string", itemno, keys[k].key)));
		if (keys[k].type == US_KEY_PHC)
		{
			char	   *hash = us_item_hash_text(&v);
			char	   *stored;
			const char *problem;

			if (hash == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("item %d: \"%s\" must be a string or a Keycloak credential object",
								itemno, keys[k].key)));
			problem = us_import_problem(hash, &stored);
			if (problem != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("item %d: \"%s\" cannot be imported: %s",
								itemno, keys[k].key, problem)));
			pfree(hash);
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
 * Applying items
 * ---------------------------------------------------------------------
 */

/*
 * us_registered_apply
 *		Run a registered kind's handler on n items as submitter: a call per
 *		item, or, for a grouped handler, one call with all of them, which
 *		must give one result per item, in order.
 */
static void
us_registered_apply(const UsKindSpec *kind, Oid submitter, Jsonb **payloads, int n,
					UsApplied *out)
{
	Datum		result;
	bool		isnull;
	Datum	   *items;
	ArrayType  *results;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems = -1;

	if (kind->missing)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("batch kind \"%s\" is not registered", kind->name)));
	if (!kind->reg.grouped)
	{
		for (int i = 0; i < n; i++)
		{
			CHECK_FOR_INTERRUPTS();
			result = us_call_handler(kind->name, kind->reg.handler, kind->flinfo,
									 submitter, JsonbPGetDatum(payloads[i]), &isnull);
			out[i].result = isnull ? NULL : DatumGetJsonbPCopy(result);
		}
		return;
	}

	items = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		items[i] = JsonbPGetDatum(payloads[i]);
	result = us_call_handler(kind->name, kind->reg.handler, kind->flinfo,
							 submitter,
							 PointerGetDatum(construct_array(items, n, JSONBOID, -1, false,
															 TYPALIGN_INT)),
							 &isnull);
	if (!isnull)
	{
		results = DatumGetArrayTypeP(result);
		if (ARR_NDIM(results) <= 1)
			deconstruct_array(results, JSONBOID, -1, false, TYPALIGN_INT,
							  &elems, &elem_nulls, &nelems);
	}
	if (nelems != n)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg_plural("the handler of batch kind \"%s\" returned %d results for a group of %d item",
							   "the handler of batch kind \"%s\" returned %d results for a group of %d items",
							   n, kind->name, Max(nelems, 0), n),
				 errdetail("A grouped handler returns an array with one result per item, in order.")));
	for (int i = 0; i < n; i++)
		out[i].result = elem_nulls[i] ? NULL : DatumGetJsonbPCopy(elems[i]);
}

/*
 * us_kind_apply
 *		Apply one item of a batch that submitter submitted: out gets its user
 *		(built-in kinds) or its result (registered kinds).
 */
void
us_kind_apply(const UsKindSpec *kind, Oid submitter, Jsonb *payload, UsApplied *out)
{
	if (kind->registered)
	{
		us_registered_apply(kind, submitter, &payload, 1, out);
		return;
	}
	out->user_id = kind->apply(payload);
	out->has_user_id = true;
}

/*
 * Can the kind apply a group of items at once (us_kind_apply_group)?  A
 * registered kind always can: a handler of one item is called for each item
 * of the group in one subtransaction (its language's cache, a SQL
 * function's plan, then serves the whole group), and when one fails the
 * group is rolled back and its items run one by one.
 */
bool
us_kind_groups(const UsKindSpec *kind)
{
	return kind->apply_group != NULL || kind->registered;
}

/*
 * us_kind_apply_group
 *		Apply a group of items at once: applied[i] says whether item i took
 *		effect, out[i] what it gave.  Only for a kind that groups.
 */
void
us_kind_apply_group(const UsKindSpec *kind, Oid submitter, Jsonb **payloads, int n,
					UsApplied *out, bool *applied)
{
	int64	   *user_ids;

	Assert(us_kind_groups(kind));
	if (kind->registered)
	{
		us_registered_apply(kind, submitter, payloads, n, out);
		memset(applied, true, sizeof(bool) * n);
		return;
	}
	user_ids = palloc(sizeof(int64) * n);
	kind->apply_group(payloads, n, user_ids, applied);
	for (int i = 0; i < n; i++)
	{
		out[i].user_id = user_ids[i];
		out[i].has_user_id = applied[i];
	}
}

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

static int64
us_apply_create(Jsonb *payload)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];

	text	   *name = us_item_required_text(payload, "name");
	text	   *email = us_item_required_text(payload, "email");
	text	   *password = us_item_required_text(payload, "password");

	PG_TRY();
	{
		us_user_create(name, email, password, values, nulls);
	}
	PG_FINALLY();
	{
		us_forget_password(password);
	}
	PG_END_TRY();
	return DatumGetInt64(values[Anum_users_id - 1]);
}

static int64
us_apply_update(Jsonb *payload)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];
	int64		id = us_item_id(payload);

	us_user_update(id, us_item_text(payload, "name"),
				   us_item_text(payload, "email"), values, nulls);
	return id;
}

static int64
us_apply_delete(Jsonb *payload)
{
	int64		id = us_item_id(payload);

	us_user_delete(id, NULL, NULL);
	return id;
}

/*
 * us_apply_delete_group
 *		A group of delete_user items as one DELETE.  Of two equal ids only
 *		the first is applied, as if the items had run one after the other.
 */
static void
us_apply_delete_group(Jsonb **payloads, int n, int64 *user_ids, bool *applied)
{
	for (int i = 0; i < n; i++)
		user_ids[i] = us_item_id(payloads[i]);
	us_user_delete_many(user_ids, n, applied);
}

static int64
us_apply_set_password(Jsonb *payload)
{
	int64		id = us_item_id(payload);
	text	   *password = us_item_required_text(payload, "password");

	PG_TRY();
	{
		us_user_set_password(id, password);
	}
	PG_FINALLY();
	{
		us_forget_password(password);
	}
	PG_END_TRY();
	return id;
}

/*
 * us_import_item
 *		An import_user item's name, email and the hash to store; raises as
 *		the item would (a missing key, a hash that cannot be imported).
 */
static void
us_import_item(Jsonb *payload, text **name, text **email, char **stored)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&payload->root, "password_hash",
												 strlen("password_hash"), NULL);
	char	   *hash = v != NULL ? us_item_hash_text(v) : NULL;
	const char *problem;

	*name = us_item_required_text(payload, "name");
	*email = us_item_required_text(payload, "email");
	if (hash == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"password_hash\" must be a string or a Keycloak credential object")));
	/* checked at submission too; items may come from a restore */
	problem = us_import_problem(hash, stored);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"password_hash\" cannot be imported: %s", problem)));
}

/*
 * us_apply_import_group
 *		A group of import_user items as one INSERT (us_user_import_many);
 *		an item whose email is taken is left to run alone.
 */
static void
us_apply_import_group(Jsonb **payloads, int n, int64 *user_ids, bool *applied)
{
	text	  **names = palloc(sizeof(text *) * n);
	text	  **emails = palloc(sizeof(text *) * n);
	char	  **hashes = palloc(sizeof(char *) * n);

	for (int i = 0; i < n; i++)
		us_import_item(payloads[i], &names[i], &emails[i], &hashes[i]);
	us_user_import_many(names, emails, (const char **) hashes, n, user_ids, applied);
}

static int64
us_apply_import(Jsonb *payload)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];
	text	   *name;
	text	   *email;
	char	   *stored;

	us_import_item(payload, &name, &email, &stored);
	us_user_import(name, email, stored, values, nulls);
	return DatumGetInt64(values[Anum_users_id - 1]);
}
