/*-------------------------------------------------------------------------
 *
 * batch.h
 *		The batch engine: the kinds of batches (batch_kinds.c), storing a
 *		submission (batch_submit.c), claiming and running items
 *		(batch_run.c), and finishing and purging batches
 *		(batch_housekeeping.c).  Called by the SQL functions (batches.c) and
 *		the workers (worker.c); it never calls either.
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_BATCH_H
#define US_BATCH_H

#include "us_common.h"

#include "utils/jsonb.h"

#define US_GROUP_MAX	250		/* items claimed per transaction, at most */

/* batch_kinds.c */
typedef struct UsKindSpec UsKindSpec;

/*
 * What applying an item gave: the user it concerned (built-in kinds) or
 * the result its handler returned (registered kinds).
 */
typedef struct UsApplied
{
	int64		user_id;
	bool		has_user_id;
	Jsonb	   *result;
} UsApplied;

extern const UsKindSpec *us_kind_by_name(const char *name);
extern const UsKindSpec *us_kind_of_batch(const char *name);
extern bool us_kind_builtin(const char *name);
extern const char *us_kind_name(const UsKindSpec *kind);
extern bool us_kind_hashes(const UsKindSpec *kind);
extern bool us_kind_registered(const UsKindSpec *kind);
extern bool us_kind_secret_items(const UsKindSpec *kind);
extern int32 us_kind_default_concurrency(const UsKindSpec *kind);
extern void us_kind_check_privilege(const UsKindSpec *kind);
extern void us_kind_check_schema(const UsKindSpec *kind);
extern void us_kind_check_item(const UsKindSpec *kind, JsonbValue *item, int itemno);
extern void us_kind_apply(const UsKindSpec *kind, Oid submitter, Jsonb *payload,
						  UsApplied *out);
extern bool us_kind_groups(const UsKindSpec *kind);
extern void us_kind_apply_group(const UsKindSpec *kind, Oid submitter, Jsonb **payloads,
								int n, UsApplied *out, bool *applied);

/* batch_submit.c */
extern int	user_service_default_concurrency;
extern void us_batch_submit_init(void);
extern const UsKindSpec *us_batch_check(const char *kind_name, Jsonb *items,
									   bool has_concurrency, int32 *concurrency,
									   bool schema);
extern int64 us_batch_submit(const char *kind_name, Jsonb *items, bool has_concurrency,
							 int32 concurrency);

/* batch_run.c */
extern void us_batch_run_init(void);

/*
 * Told when a group of items starts, with the items' numbers: the workers
 * show it in their slot and in pg_stat_activity.
 */
typedef void (*UsGroupStarted) (void *arg, int64 batch_id, const char *kind,
								const int32 *items, int n, int32 total);

extern int	us_process_group(UsGroupStarted started, void *arg, int max_items,
							 int64 *check_batch, bool *work_deferred);
extern void us_check_not_own_batch(int64 batch_id, const char *what);

/* batches.c */
extern void us_batches_init(void);

/* batch_housekeeping.c */
extern void us_batch_housekeeping_init(void);
extern bool us_batches_run_here(void);
extern bool us_batch_note_finished(int64 batch_id);
extern bool us_mark_batch_finished(int64 batch_id);
extern int64 us_purge_batches(void);

#endif							/* US_BATCH_H */
