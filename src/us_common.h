/*-------------------------------------------------------------------------
 *
 * us_common.h
 *		What every file of the user_service extension needs first: the
 *		message domain of its errors.
 *
 * The code is in layers; a file includes the headers of the layers below
 * its own, never above:
 *
 *	 user_service.c		_PG_init, which calls each subsystem's init
 *	 launcher.c worker.c	the background processes (workers.h)
 *	 users.c user_list.c batches.c cluster.c
 *						the SQL-callable functions (cluster.c: what a
 *						router calls on its shards)
 *	 proxy.c			the API functions of a router (user_service_proxy),
 *						which reach the shards through PL/Proxy
 *	 batch_kinds.c batch_submit.c batch_run.c batch_housekeeping.c
 *						the batch engine (batch.h)
 *	 kind_registry.c	batch kinds registered by users, and calling their
 *						handlers as the submitter (kind_registry.h)
 *	 user_ops.c validation.c user_count.c
 *						operations on users (user_ops.h)
 *	 shard.c			the database's place among shards (shard.h)
 *	 email_claims.c		emails of this shard's home held by users of other
 *						shards (email_claims.h)
 *	 login_throttle.c	failed-login counts in shared memory
 *						(login_throttle.h)
 *	 password.c			argon2 and PHC strings (password.h)
 *	 hash_cap.c			the cap on concurrent hashing (hash_cap.h)
 *	 redact.c			log and pg_stat_activity redaction (redact.h)
 *	 catalog.c			the extension's relations, SPI as their owner
 *						(catalog.h)
 *	 slots.c			shared memory of the workers (slots.h)
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_COMMON_H
#define US_COMMON_H

#include "postgres.h"

/*
 * Our ereports carry their own message domain (as plpgsql's do), so that the
 * log hook in redact.c can tell them from PostgreSQL's.  Every source file
 * includes this header before any other of its own.
 */
#define US_TEXTDOMAIN	"user_service"
#undef TEXTDOMAIN
#define TEXTDOMAIN US_TEXTDOMAIN

#include "fmgr.h"

#endif							/* US_COMMON_H */
