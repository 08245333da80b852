/*-------------------------------------------------------------------------
 *
 * slots.h
 *		The shared state of the batch workers (slots.c): their
 *		configuration, one slot per worker in shared memory, and the
 *		wake-ups between sessions and workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_SLOTS_H
#define US_SLOTS_H

#include "us_common.h"

#include "storage/latch.h"

#define US_MAX_WORKERS	64		/* workers of all the databases, at most */
#define US_MAX_DATABASES 16		/* names in user_service.database, at most */
#define US_SLOT_ITEMS	250		/* items a slot can show as running */

/* GUCs */
extern char *user_service_database;
extern int	user_service_workers;

/* What one worker is doing, for the views and batch_results' 'running'. */
typedef struct UsWorkerSlot
{
	pid_t		pid;			/* 0: slot free */
	Oid			dboid;			/* the database it serves (once connected) */
	Latch	   *latch;
	bool		busy;
	int64		batch_id;
	int32		nitems;
	int32		items[US_SLOT_ITEMS];
} UsWorkerSlot;

extern void us_slots_init(void);
extern bool us_slots_ready(void);

/* Which database worker slot index serves (NULL: none); is one served? */
extern const char *us_worker_database(int index);
extern bool us_database_listed(const char *dbname);
extern bool us_database_served(const char *dbname);
extern int	us_workers_wanted(void);

/* For a worker: its own slot. */
extern UsWorkerSlot *us_slot_attach(int index);
extern void us_slot_set_database(UsWorkerSlot *slot, Oid dboid);
extern void us_slot_publish(UsWorkerSlot *slot, int64 batch_id, const int32 *items, int n);
extern void us_slot_clear(UsWorkerSlot *slot);

/* For the launcher: the workers of a previous launcher. */
extern int	us_slots_signal_all(int signo, bool log);

/* For the views: a copy of every slot (US_MAX_WORKERS of them). */
extern bool us_slots_copy(UsWorkerSlot *copy);
extern bool us_item_running(int64 batch_id, int32 item);

/* Wake-ups: at the commit of the current transaction, or now. */
extern void us_wake_workers_at_commit(void);
extern void us_wake_waiters_at_commit(void);
extern void us_wake_waiters(void);
extern void us_wait_for_batches(long timeout_ms);
extern void us_wait_for_batches_done(void);

#endif							/* US_SLOTS_H */
