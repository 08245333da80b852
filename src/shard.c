/*-------------------------------------------------------------------------
 *
 * shard.c
 *		A database's place among the shards of a cluster: shard k of N
 *		(configure_shard), and ids that name it.
 *
 * A shard's users get the ids n * N + k, n from the users' own identity
 * sequence, so that id % N = k names the shard of every id and ids are
 * unique across the cluster.  N is a power of two, as PL/Proxy's partition
 * count must be, so id & (N - 1) is the same number.  Without a
 * configuration the database is shard 0 of 1: ids are the sequence's
 * values, as they always were.
 *
 * The configuration is the one row of user_service.shard_config, dumped
 * with the extension's data (pg_extension_config_dump), as is the
 * sequence's position: a restored shard goes on with its own ids, whatever
 * the sequence's INCREMENT (a restore does not keep it, and it plays no part
 * here).  Before it creates a user, a configured shard checks that its data
 * agrees: the greatest id names this shard, and the sequence is past it.
 * Users restored from another shard, or a sequence restored behind its
 * table, make it refuse (55000) before anything is written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "password.h"
#include "shard.h"
#include "user_ops.h"

PG_FUNCTION_INFO_V1(configure_shard);
PG_FUNCTION_INFO_V1(email_hash);
PG_FUNCTION_INFO_V1(email_key);

#define US_MAX_SHARDS	65536

static UsStatement us_shard_state = {
	"SELECT (SELECT max(u.id) FROM user_service.users u),"
	"       CASE WHEN s.is_called THEN s.last_value + 1 ELSE s.last_value END"
	"  FROM user_service.users_id_seq s",
	0
};

static UsStatement us_foreign_id = {
	"SELECT id FROM user_service.users"
	" WHERE id OPERATOR(pg_catalog.%) $1 OPERATOR(pg_catalog.<>) $2"
	" ORDER BY id LIMIT 1",
	2, {INT8OID, INT8OID}
};

static UsStatement us_clear_config = {
	"DELETE FROM user_service.shard_config", 0
};

static UsStatement us_set_config = {
	"INSERT INTO user_service.shard_config (shard, shard_count) VALUES ($1, $2)",
	2, {INT4OID, INT4OID}
};

/*
 * us_shard_check_data
 *		55000 unless the users and the sequence agree with this place (see
 *		above).  Call inside SPI.
 */
static void
us_shard_check_data(int64 count, int64 shard)
{
	bool		isnull;
	int64		max_id;
	int64		next_n;

	us_spi_run(&us_shard_state, NULL, NULL, true, 1);
	max_id = DatumGetInt64(us_spi_value(0, 1, &isnull));
	if (isnull)
		return;					/* no users yet */
	next_n = DatumGetInt64(us_spi_value(0, 2, &isnull));

	if (max_id % count != shard)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this shard's configuration does not match its users"),
				 errdetail("It is shard " INT64_FORMAT " of " INT64_FORMAT ", but user "
						   INT64_FORMAT " has an id of shard " INT64_FORMAT ".",
						   shard, count, max_id, max_id % count),
				 errhint("Users were copied in from another shard, or the shard was restored "
						 "without its configuration: see user_service.configure_shard.")));
	if (next_n > (PG_INT64_MAX - shard) / count || next_n * count + shard <= max_id)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this shard's id sequence does not match its users"),
				 errdetail("The next id would not be above the greatest, " INT64_FORMAT ".",
						   max_id),
				 errhint("The sequence user_service.users_id_seq was restored behind its table: "
						 "setval() it to at least " INT64_FORMAT ".",
						 max_id / count + 1)));
}

/*
 * us_shard_check_place
 *		Before a configured shard (us_shard_config) creates a user: the check
 *		above, as the tables' owner.  The new id is n * count + shard.
 */
void
us_shard_check_place(int64 count, int64 shard)
{
	UsSavedUser saved;

	us_spi_begin(&saved);
	us_shard_check_data(count, shard);
	us_spi_end(&saved);
}

/*
 * us_shard_config
 *		This database's place, read straight from shard_config: false (and
 *		shard 0 of 1) without a configuration or under a schema before 1.3.
 */
bool
us_shard_config(int64 *count, int64 *shard)
{
	Oid			relid = us_catalog()->shard_config_relid;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	bool		configured;

	*count = 1;
	*shard = 0;
	if (!OidIsValid(relid))
		return false;

	rel = table_open(relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	configured = table_scan_getnextslot(scan, ForwardScanDirection, slot);
	if (configured)
	{
		bool		isnull;

		*shard = DatumGetInt32(slot_getattr(slot, 1, &isnull));
		*count = DatumGetInt32(slot_getattr(slot, 2, &isnull));
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return configured;
}

/*
 * configure_shard(shard int, shard_count int) RETURNS void
 *		Make this database shard `shard` of `shard_count` (a power of two, at
 *		most 65536).  Superuser only.  Refused when a user's id names
 *		another shard: a database can take its place in a cluster while it
 *		is empty, or keep the place its ids name.  Writers of users wait
 *		while it checks.
 */
Datum
configure_shard(PG_FUNCTION_ARGS)
{
	int32		shard;
	int32		count;
	UsSavedUser saved;
	Datum		args[2];

	us_arg_not_null(fcinfo, 0, "shard");
	us_arg_not_null(fcinfo, 1, "shard_count");
	shard = PG_GETARG_INT32(0);
	count = PG_GETARG_INT32(1);

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may configure a shard")));
	if (count < 1 || count > US_MAX_SHARDS || (count & (count - 1)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shard_count must be a power of two between 1 and %d", US_MAX_SHARDS)));
	if (shard < 0 || shard >= count)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shard must be between 0 and shard_count - 1")));

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("configure_shard must run in a READ COMMITTED transaction"),
				 errdetail("It checks every user committed before it locked the table.")));

	us_spi_begin(&saved);
	LockRelationOid(us_catalog()->users_relid, ShareRowExclusiveLock);
	args[0] = Int64GetDatum(count);
	args[1] = Int64GetDatum(shard);
	/* read-write: a snapshot taken now, after the lock, sees every user */
	us_spi_run(&us_foreign_id, args, NULL, false, 1);
	if (SPI_processed > 0)
	{
		bool		isnull;
		int64		id = DatumGetInt64(us_spi_value(0, 1, &isnull));

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the users of this database do not all have ids of shard %d of %d",
						shard, count),
				 errdetail("User " INT64_FORMAT " has an id of shard " INT64_FORMAT ".",
						   id, id % count),
				 errhint("Configure a shard while it has no users.")));
	}
	us_spi_run(&us_clear_config, NULL, NULL, false, 0);
	args[0] = Int32GetDatum(shard);
	args[1] = Int32GetDatum(count);
	us_spi_run(&us_set_config, args, NULL, false, 0);
	us_spi_end(&saved);
	PG_RETURN_VOID();
}

/*
 * email_hash(email text) RETURNS int
 *		The email's routing hash: the first four bytes, big-endian, as a
 *		signed int, of SHA-256 of the email as the extension compares it
 *		(trimmed of ASCII white space, NFC, lower-cased) in UTF-8.  Its low
 *		bits pick the email's home shard (email_hash & (N - 1), which is
 *		what PL/Proxy's RUN ON does with an int).  A contract, unlike
 *		PostgreSQL's hashtext: in SQL it is
 *		  ('x' || left(encode(sha256(convert_to(lower(normalize(
 *		      btrim(email, E' \t\n\r\f\v'), NFC)), 'UTF8')), 'hex'), 8))::bit(32)::int
 *		(normalize only in a UTF-8 database).  lower() follows the database's
 *		LC_CTYPE, so the servers of a cluster must agree on it.
 */
Datum
email_hash(PG_FUNCTION_ARGS)
{
	char	   *key;
	char	   *utf8;
	uint8		digest[US_SHA256_BYTES];
	uint32		h;

	us_arg_not_null(fcinfo, 0, "email");
	key = us_email_key(PG_GETARG_TEXT_PP(0));
	utf8 = pg_server_to_any(key, strlen(key), PG_UTF8);

	us_sha256(NULL, 0, (const uint8 *) utf8, strlen(utf8), digest);

	h = ((uint32) digest[0] << 24) | ((uint32) digest[1] << 16) |
		((uint32) digest[2] << 8) | (uint32) digest[3];
	PG_RETURN_INT32((int32) h);
}

/*
 * email_key(email text) RETURNS text
 *		An email as the extension compares emails (trimmed, NFC,
 *		lower-cased): equal keys are the same address.
 */
Datum
email_key(PG_FUNCTION_ARGS)
{
	us_arg_not_null(fcinfo, 0, "email");
	PG_RETURN_TEXT_P(cstring_to_text(us_email_key(PG_GETARG_TEXT_PP(0))));
}
