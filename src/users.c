/*-------------------------------------------------------------------------
 *
 * users.c
 *		The SQL-callable user API: create_user, get_user, update_user,
 *		delete_user, set_password, verify_password, and the login
 *		throttle's login_throttle and reset_login_throttle.  Each checks its
 *		arguments for NULL (22004) and calls the operation (user_ops.c,
 *		login_throttle.c).  The list functions are in user_list.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "foreign_hash.h"
#include "login_throttle.h"
#include "redact.h"
#include "user_ops.h"

PG_FUNCTION_INFO_V1(create_user);
PG_FUNCTION_INFO_V1(get_user);
PG_FUNCTION_INFO_V1(update_user);
PG_FUNCTION_INFO_V1(delete_user);
PG_FUNCTION_INFO_V1(set_password);
PG_FUNCTION_INFO_V1(verify_password);
PG_FUNCTION_INFO_V1(login_throttle);
PG_FUNCTION_INFO_V1(reset_login_throttle);
PG_FUNCTION_INFO_V1(import_user);
PG_FUNCTION_INFO_V1(hash_format);

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
 * import_user(name text, email text, password_hash text) RETURNS user_info
 *		create_user with a hash another system made (foreign_hash.c says
 *		which): stored as it is, verified in its format at login and replaced
 *		by argon2id at the first success.  22023 names why a hash cannot be
 *		imported, never quoting it.
 */
Datum
import_user(PG_FUNCTION_ARGS)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];
	char	   *stored;
	const char *problem;

	us_password_call();
	us_arg_not_null(fcinfo, 0, "name");
	us_arg_not_null(fcinfo, 1, "email");
	us_arg_not_null(fcinfo, 2, "password_hash");
	problem = us_import_problem(text_to_cstring(PG_GETARG_TEXT_PP(2)), &stored);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password_hash cannot be imported: %s", problem)));
	us_user_import(PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1), stored, values, nulls);
	PG_RETURN_DATUM(us_user_info(us_user_info_desc(), values, nulls));
}

/*
 * hash_format(password_hash text) RETURNS text
 *		The format of a stored password hash (argon2id, bcrypt,
 *		pbkdf2-sha256, sha512-crypt, ..., unknown): the view password_formats
 *		counts the users still carrying another system's hash.
 */
Datum
hash_format(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(us_hash_format_name(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/*
 * get_user(id bigint) RETURNS user_info
 */
Datum
get_user(PG_FUNCTION_ARGS)
{
	int64		id;
	Datum		info;

	us_arg_not_null(fcinfo, 0, "id");
	id = PG_GETARG_INT64(0);
	if (!us_user_get(id, &info))
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
 * delete_user(id bigint) RETURNS user_info
 *		The deleted user, as DELETE ... RETURNING gives it.  A schema from
 *		before 1.3 declares RETURNS void: then nothing is returned.
 */
Datum
delete_user(PG_FUNCTION_ARGS)
{
	Datum		values[Natts_users];
	bool		nulls[Natts_users];

	us_arg_not_null(fcinfo, 0, "id");
	us_user_delete(PG_GETARG_INT64(0), values, nulls);
	if (get_func_rettype(fcinfo->flinfo->fn_oid) == VOIDOID)
		PG_RETURN_VOID();
	PG_RETURN_DATUM(us_user_info(us_user_info_desc(), values, nulls));
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
 *		False for anything that cannot match; the same argon2 work for an
 *		unknown email as for a wrong password (us_user_verify).
 */
Datum
verify_password(PG_FUNCTION_ARGS)
{
	us_password_call();
	us_arg_not_null(fcinfo, 0, "email");
	us_arg_not_null(fcinfo, 1, "password");
	/* the email as it came (maybe toasted): us_user_verify looks at its size first */
	PG_RETURN_BOOL(us_user_verify(PG_GETARG_DATUM(0), PG_GETARG_TEXT_PP(1)));
}

static void
us_throttle_needs_preload(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("login throttling needs user_service in shared_preload_libraries"),
			 errdetail("Its counts are kept in shared memory; without it nothing is throttled.")));
}

/*
 * login_throttle(email text, OUT failures int, OUT window_start timestamptz,
 *				  OUT locked_until timestamptz) RETURNS record
 *		What the throttle holds for an email, known or not: failures counted
 *		in the current window, since when, and until when it is locked out
 *		(NULL when it is not).
 */
Datum
login_throttle(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int32		failures;
	TimestampTz window_start;
	TimestampTz locked_until;

	us_arg_not_null(fcinfo, 0, "email");
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "login_throttle must return a record");
	if (!us_login_state(us_email_key(PG_GETARG_TEXT_PP(0)), &failures,
						&window_start, &locked_until))
		us_throttle_needs_preload();

	values[0] = Int32GetDatum(failures);
	values[1] = TimestampTzGetDatum(window_start);
	nulls[1] = window_start == 0;
	values[2] = TimestampTzGetDatum(locked_until);
	nulls[2] = locked_until == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * reset_login_throttle(email text) RETURNS boolean
 *		Forget an email's failures and lockout; true when there were any.
 */
Datum
reset_login_throttle(PG_FUNCTION_ARGS)
{
	us_arg_not_null(fcinfo, 0, "email");
	if (!us_login_state_available())
		us_throttle_needs_preload();
	PG_RETURN_BOOL(us_login_reset(us_email_key(PG_GETARG_TEXT_PP(0))));
}
