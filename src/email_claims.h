/*-------------------------------------------------------------------------
 *
 * email_claims.h
 *		Emails whose home is this shard held by users of other shards
 *		(email_claims.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_EMAIL_CLAIMS_H
#define US_EMAIL_CLAIMS_H

#include "us_common.h"

extern bool us_claims_apply(int64 shard_count);
extern void us_claims_lock(const char *key);
extern int64 us_claim_owner(const char *key);
extern void us_claim_insert(const char *key, int64 user_id);
extern bool us_claim_delete(const char *key, int64 user_id);

#endif							/* US_EMAIL_CLAIMS_H */
