/*-------------------------------------------------------------------------
 *
 * email_claims.c
 *		Emails whose home is this shard, held by users of other shards.
 *
 * In a cluster every email has a home shard (email_hash & (N - 1)): new
 * users are created there, so the home's unique index keeps emails unique.
 * A user keeps its shard for life (its id names it), so a user who changes
 * its email to one whose home is another shard leaves its row where it is,
 * and the router first claims the new email on its home shard: a row in
 * user_service.email_claims (email key, user id).  From then on the home
 * refuses that email to its own users (create, update, import) exactly as
 * if one of them had it.
 *
 * A claim and a local use of the same email are made one at a time: both
 * take a transaction-level advisory lock on the email key's hash (the
 * two-int form, first key US_CLAIM_LOCK_SPACE) and then look at both the
 * users and the claims with SnapshotSelf, which sees what committed before
 * the lock was granted.  The unique indexes of users and email_claims
 * still decide races among users and among claims.  All this only on a
 * configured shard of more than one: a single database has no claims.
 *
 * The router's protocol and its failure cases are in the proxy extension
 * (user_service_proxy.sql) and docs/scaling.md.
 *
 *-------------------------------------------------------------------------
 */
#include "us_common.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "email_claims.h"

/* "us": the first key of the advisory locks taken here */
#define US_CLAIM_LOCK_SPACE		0x7573

static UsStatement us_insert_claim = {
	"INSERT INTO user_service.email_claims (email_key, user_id) VALUES ($1, $2)",
	2, {TEXTOID, INT8OID}
};

static UsStatement us_delete_claim = {
	"DELETE FROM user_service.email_claims"
	" WHERE email_key OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, INT8OID}
};

/*
 * us_claims_apply
 *		Whether emails can be claimed in a database with this shard count
 *		(us_shard_config): on a shard of more than one.  A single database
 *		never has claims, and its creates and updates take no claim lock.
 */
bool
us_claims_apply(int64 shard_count)
{
	return shard_count > 1 && OidIsValid(us_catalog()->email_claims_relid);
}

/*
 * us_claims_lock
 *		Take the claim lock of an email key to the end of the transaction.
 */
void
us_claims_lock(const char *key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, US_CLAIM_LOCK_SPACE,
						 hash_bytes((const unsigned char *) key, strlen(key)), 2);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * us_claim_owner
 *		The user that holds a claim on this email key, or 0.  SnapshotSelf:
 *		committed claims and this transaction's own.
 */
int64
us_claim_owner(const char *key)
{
	const UsCatalog *cat = us_catalog();
	Relation	rel;
	Relation	idx;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData skey;
	int64		owner = 0;

	if (!OidIsValid(cat->email_claims_relid) || !OidIsValid(cat->email_claims_pkey_relid))
		return 0;
	rel = table_open(cat->email_claims_relid, AccessShareLock);
	idx = index_open(cat->email_claims_pkey_relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(key));
	skey.sk_collation = idx->rd_indcollation[0];
	scan = index_beginscan(rel, idx, SnapshotSelf, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;

		owner = DatumGetInt64(slot_getattr(slot, 2, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return owner;
}

/* us_claim_insert: record a claim (the caller holds its lock and checked) */
void
us_claim_insert(const char *key, int64 user_id)
{
	UsSavedUser saved;
	Datum		args[2];

	args[0] = CStringGetTextDatum(key);
	args[1] = Int64GetDatum(user_id);
	us_spi_begin(&saved);
	us_spi_run(&us_insert_claim, args, NULL, false, 0);
	us_spi_end(&saved);
}

/* us_claim_delete: drop this user's claim on this key; false when none */
bool
us_claim_delete(const char *key, int64 user_id)
{
	UsSavedUser saved;
	Datum		args[2];
	uint64		n;

	if (!OidIsValid(us_catalog()->email_claims_relid))
		return false;
	args[0] = CStringGetTextDatum(key);
	args[1] = Int64GetDatum(user_id);
	us_spi_begin(&saved);
	us_spi_run(&us_delete_claim, args, NULL, false, 0);
	n = SPI_processed;
	us_spi_end(&saved);
	return n > 0;
}
