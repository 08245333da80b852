/*-------------------------------------------------------------------------
 *
 * cluster.c
 *		SQL functions a router (the user_service_proxy extension) calls on
 *		its shards to keep emails unique across them: claim an email on its
 *		home shard for a user of another shard, release it, find who holds
 *		it.  See email_claims.c for what a claim is.
 *
 *-------------------------------------------------------------------------
 */
#include "us_common.h"

#include "utils/builtins.h"

#include "catalog.h"
#include "email_claims.h"
#include "user_ops.h"

PG_FUNCTION_INFO_V1(claim_email);
PG_FUNCTION_INFO_V1(release_email_claim);
PG_FUNCTION_INFO_V1(email_claim);

/*
 * claim_email(email text, user_id bigint) RETURNS boolean
 *		Hold an email whose home is this shard for user_id, a user of
 *		another shard.  22023 for an invalid email, 23505 (the message of
 *		create_user) when it is taken here; true when the claim is new,
 *		false when user_id held it already.
 */
Datum
claim_email(PG_FUNCTION_ARGS)
{
	us_arg_not_null(fcinfo, 0, "email");
	us_arg_not_null(fcinfo, 1, "user_id");
	PG_RETURN_BOOL(us_user_claim_email(PG_GETARG_TEXT_PP(0), PG_GETARG_INT64(1)));
}

/*
 * release_email_claim(email text, user_id bigint) RETURNS boolean
 *		Drop user_id's claim on an email; false when it held none.
 */
Datum
release_email_claim(PG_FUNCTION_ARGS)
{
	us_arg_not_null(fcinfo, 0, "email");
	us_arg_not_null(fcinfo, 1, "user_id");
	PG_RETURN_BOOL(us_claim_delete(us_email_key(PG_GETARG_TEXT_PP(0)), PG_GETARG_INT64(1)));
}

/*
 * email_claim(email text) RETURNS bigint
 *		The user (of another shard) holding this email, or NULL.
 */
Datum
email_claim(PG_FUNCTION_ARGS)
{
	int64		owner;

	us_arg_not_null(fcinfo, 0, "email");
	owner = us_claim_owner(us_email_key(PG_GETARG_TEXT_PP(0)));
	if (owner == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(owner);
}
