/*-------------------------------------------------------------------------
 *
 * slots.c
 *		The shared state of the batch workers: their configuration
 *		(user_service.workers and user_service.database), one slot per
 *		worker in shared memory, and the wake-ups between sessions and
 *		workers.
 *
 * user_service.database names one database or several (a list, for a
 * server holding several partitions of a sharded cluster): each gets
 * user_service.workers workers, slot index d * workers + k serving the d-th
 * name, at most US_MAX_WORKERS in all.
 *
 * A slot holds a worker's pid and latch and the batch and items it is
 * processing: the views read it, batch_results shows those items as
 * 'running', and submitting a batch sets every worker's latch when the
 * submitting transaction commits.  The end of a batch broadcasts a condition
 * variable that wait_batch sleeps on.
 *
 * Without shared_preload_libraries there is no shared memory: the views are
 * empty, nothing is running, and waiting falls back to the latch with a
 * timeout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "slots.h"

/* GUC variables, named after their GUCs. */
char	   *user_service_database = NULL;
int			user_service_workers = 2;

typedef struct UsShared
{
	LWLock	   *lock;			/* protects the slots */
	ConditionVariable batch_done;	/* broadcast when batches finish */
	UsWorkerSlot slots[US_MAX_WORKERS];
} UsShared;

static UsShared *us_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* What this backend's transaction asks for at commit. */
static bool us_wake_workers_pending = false;
static bool us_wake_waiters_pending = false;

/* The calling worker's slot (us_slot_attach). */
static UsWorkerSlot *us_my_slot = NULL;

static void
us_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(UsShared)));
	RequestNamedLWLockTranche("user_service", 1);
}

static void
us_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	us_shared = ShmemInitStruct("user_service", sizeof(UsShared), &found);
	if (!found)
	{
		memset(us_shared, 0, sizeof(UsShared));
		us_shared->lock = &(GetNamedLWLockTranche("user_service"))->lock;
		ConditionVariableInit(&us_shared->batch_done);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * us_xact_callback
 *		After a commit, wake the workers (a batch was submitted) and the
 *		waiters (a batch was finished or cancelled), as the transaction asked.
 */
static void
us_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && us_shared != NULL)
	{
		if (us_wake_workers_pending)
		{
			/* the workers of this database (or not connected yet) */
			LWLockAcquire(us_shared->lock, LW_SHARED);
			for (int i = 0; i < US_MAX_WORKERS; i++)
				if (us_shared->slots[i].pid != 0 &&
					(us_shared->slots[i].dboid == MyDatabaseId ||
					 us_shared->slots[i].dboid == InvalidOid))
					SetLatch(us_shared->slots[i].latch);
			LWLockRelease(us_shared->lock);
		}
		if (us_wake_waiters_pending)
			ConditionVariableBroadcast(&us_shared->batch_done);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		us_wake_workers_pending = false;
		us_wake_waiters_pending = false;
	}
}

/*
 * us_database_list
 *		The names in value (user_service.database), in order; false when it
 *		is no list of at most US_MAX_DATABASES distinct names.
 */
static bool
us_database_list(const char *value, List **names)
{
	char	   *copy = pstrdup(value);
	ListCell   *lc;

	*names = NIL;
	if (!SplitGUCList(copy, ',', names))
	{
		/* one name that is no identifier ("my db"), as before lists */
		if (strchr(value, ',') != NULL || strchr(value, '"') != NULL)
			return false;
		*names = list_make1(pstrdup(value));
	}
	if (list_length(*names) > US_MAX_DATABASES)
		return false;
	foreach(lc, *names)
	{
		const char *name = lfirst(lc);

		if (name[0] == '\0' || strlen(name) >= NAMEDATALEN)
			return false;
		for (ListCell *other = list_head(*names); other != lc; other = lnext(*names, other))
			if (strcmp(lfirst(other), name) == 0)
				return false;
	}
	return true;
}

static bool
us_check_database(char **newval, void **extra, GucSource source)
{
	List	   *names;

	if (!us_database_list(*newval, &names) || names == NIL)
	{
		GUC_check_errdetail("user_service.database is a database name, or a comma-separated list of at most %d distinct ones.",
							US_MAX_DATABASES);
		return false;
	}
	return true;
}

/*
 * us_database_names
 *		The databases of user_service.database, parsed once for each value
 *		the setting takes (the launcher asks for every slot at every round,
 *		each submit_batch asks too).  The check hook has refused any value
 *		that is no list; NIL all the same if one got through.
 */
static List *
us_database_names(void)
{
	static MemoryContext cxt = NULL;
	static char *parsed = NULL;		/* the value names was made from */
	static List *names = NIL;
	MemoryContext old;

	if (parsed != NULL && strcmp(parsed, user_service_database) == 0)
		return names;
	if (cxt == NULL)
		cxt = AllocSetContextCreate(TopMemoryContext, "user_service databases",
									ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(cxt);
	old = MemoryContextSwitchTo(cxt);
	parsed = pstrdup(user_service_database);
	if (!us_database_list(parsed, &names))
		names = NIL;
	MemoryContextSwitchTo(old);
	return names;
}

/*
 * us_worker_database
 *		The database that worker slot index serves under the current
 *		settings, or NULL when that slot has no worker.  Slots go round the
 *		databases (slot i serves the (i mod n)-th of n), so that when
 *		background worker processes run short, each database has one worker
 *		before any has two.  Valid until the setting changes.
 */
const char *
us_worker_database(int index)
{
	List	   *names = us_database_names();

	if (index < 0 || index >= Min(us_workers_wanted(), US_MAX_WORKERS))
		return NULL;
	return (const char *) list_nth(names, index % list_length(names));
}

/* Is this database listed in user_service.database? */
bool
us_database_listed(const char *dbname)
{
	ListCell   *lc;

	foreach(lc, us_database_names())
		if (strcmp(lfirst(lc), dbname) == 0)
			return true;
	return false;
}

/*
 * Does some worker slot serve this database?  Slots go round the databases,
 * and there are more slots than databases: every listed one has a slot.
 */
StaticAssertDecl(US_MAX_DATABASES <= US_MAX_WORKERS, "every listed database must have a slot");

bool
us_database_served(const char *dbname)
{
	return user_service_workers > 0 && us_database_listed(dbname);
}

/*
 * How many workers the settings ask for, in all (more than US_MAX_WORKERS:
 * then that many run, and the databases share them in turn).
 */
int
us_workers_wanted(void)
{
	return list_length(us_database_names()) * Max(user_service_workers, 0);
}

/*
 * us_slots_init
 *		From _PG_init: the workers' GUCs; shared memory when preloaded; the
 *		commit callback always (it does nothing without shared memory).
 */
void
us_slots_init(void)
{
	DefineCustomStringVariable("user_service.database",
							   "Database the batch workers serve, or a comma-separated list of databases.",
							   "Each database gets user_service.workers workers. On a change, the workers reconnect.",
							   &user_service_database,
							   "postgres",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   us_check_database, NULL, NULL);

	DefineCustomIntVariable("user_service.workers",
							"Number of batch workers of each database in user_service.database.",
							"Takes effect on a configuration reload. Each worker is a "
							"background worker: see max_worker_processes.",
							&user_service_workers,
							2,
							0,
							32,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = us_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = us_shmem_startup;
	}
	RegisterXactCallback(us_xact_callback, NULL);
}

/* Is there shared memory (was the library loaded by shared_preload_libraries)? */
bool
us_slots_ready(void)
{
	return us_shared != NULL;
}

/* ---------------------------------------------------------------------
 * Wake-ups
 * ---------------------------------------------------------------------
 */
void
us_wake_workers_at_commit(void)
{
	us_wake_workers_pending = true;
}

void
us_wake_waiters_at_commit(void)
{
	us_wake_waiters_pending = true;
}

/* Wake the waiters now (a worker, after the commit that finished a batch). */
void
us_wake_waiters(void)
{
	if (us_shared != NULL)
		ConditionVariableBroadcast(&us_shared->batch_done);
}

/*
 * us_wait_for_batches
 *		Sleep until some batch finishes or timeout_ms passes.  The first call
 *		returns at once (it only starts listening), so callers check their
 *		condition in a loop; us_wait_for_batches_done ends the listening.
 */
void
us_wait_for_batches(long timeout_ms)
{
	if (us_shared != NULL)
		(void) ConditionVariableTimedSleep(&us_shared->batch_done, timeout_ms,
										   PG_WAIT_EXTENSION);
	else
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

void
us_wait_for_batches_done(void)
{
	if (us_shared != NULL)
		ConditionVariableCancelSleep();
}

/* ---------------------------------------------------------------------
 * A worker's own slot
 * ---------------------------------------------------------------------
 */

/* on_shmem_exit: free the slot, whatever way the worker leaves */
static void
us_slot_detach(int code, Datum arg)
{
	LWLockAcquire(us_shared->lock, LW_EXCLUSIVE);
	if (us_my_slot->pid == MyProcPid)
	{
		us_my_slot->pid = 0;
		us_my_slot->latch = NULL;
		us_my_slot->busy = false;
		us_my_slot->nitems = 0;
	}
	LWLockRelease(us_shared->lock);
}

/*
 * us_slot_attach
 *		Take slot index for this process, freed again when it exits.  NULL
 *		when another process still holds it.
 */
UsWorkerSlot *
us_slot_attach(int index)
{
	UsWorkerSlot *slot;
	bool		taken;

	if (index < 0 || index >= US_MAX_WORKERS || us_shared == NULL)
		elog(ERROR, "user_service worker started with a bad slot number %d", index);
	slot = &us_shared->slots[index];
	LWLockAcquire(us_shared->lock, LW_EXCLUSIVE);
	taken = slot->pid != 0;
	if (!taken)
	{
		slot->pid = MyProcPid;
		slot->dboid = InvalidOid;
		slot->latch = MyLatch;
		slot->busy = false;
		slot->nitems = 0;
	}
	LWLockRelease(us_shared->lock);
	if (taken)
		return NULL;
	us_my_slot = slot;
	on_shmem_exit(us_slot_detach, (Datum) 0);
	return slot;
}

/* The worker is connected to its database. */
void
us_slot_set_database(UsWorkerSlot *slot, Oid dboid)
{
	LWLockAcquire(us_shared->lock, LW_EXCLUSIVE);
	slot->dboid = dboid;
	LWLockRelease(us_shared->lock);
}

void
us_slot_publish(UsWorkerSlot *slot, int64 batch_id, const int32 *items, int n)
{
	Assert(n <= US_SLOT_ITEMS);
	LWLockAcquire(us_shared->lock, LW_EXCLUSIVE);
	slot->busy = true;
	slot->batch_id = batch_id;
	slot->nitems = n;
	memcpy(slot->items, items, sizeof(int32) * n);
	LWLockRelease(us_shared->lock);
}

void
us_slot_clear(UsWorkerSlot *slot)
{
	if (!slot->busy)
		return;
	LWLockAcquire(us_shared->lock, LW_EXCLUSIVE);
	slot->busy = false;
	slot->batch_id = 0;
	slot->nitems = 0;
	LWLockRelease(us_shared->lock);
}

/* ---------------------------------------------------------------------
 * Every slot
 * ---------------------------------------------------------------------
 */

/*
 * us_slots_signal_all
 *		Send signo to every process holding a slot (logging each when asked);
 *		returns how many there were.
 */
int
us_slots_signal_all(int signo, bool log)
{
	int			alive = 0;

	LWLockAcquire(us_shared->lock, LW_SHARED);
	for (int i = 0; i < US_MAX_WORKERS; i++)
	{
		pid_t		pid = us_shared->slots[i].pid;

		if (pid == 0)
			continue;
		alive++;
		if (log)
			ereport(LOG,
					(errmsg("user_service launcher: stopping worker %d (PID %d) left by a previous launcher",
							i + 1, (int) pid)));
		(void) kill(pid, signo);
	}
	LWLockRelease(us_shared->lock);
	return alive;
}

/*
 * us_slots_copy
 *		Copy every slot, consistently; false (nothing copied) without shared
 *		memory.
 */
bool
us_slots_copy(UsWorkerSlot *copy)
{
	if (us_shared == NULL)
		return false;
	LWLockAcquire(us_shared->lock, LW_SHARED);
	memcpy(copy, us_shared->slots, sizeof(us_shared->slots));
	LWLockRelease(us_shared->lock);
	return true;
}

/*
 * us_item_running
 *		Is a worker processing this item (of a batch of this database) right
 *		now?
 */
bool
us_item_running(int64 batch_id, int32 item)
{
	bool		running = false;

	if (us_shared == NULL)
		return false;
	LWLockAcquire(us_shared->lock, LW_SHARED);
	for (int i = 0; i < US_MAX_WORKERS && !running; i++)
	{
		UsWorkerSlot *s = &us_shared->slots[i];

		if (s->pid != 0 && s->busy && s->dboid == MyDatabaseId && s->batch_id == batch_id)
			for (int j = 0; j < s->nitems; j++)
				if (s->items[j] == item)
					running = true;
	}
	LWLockRelease(us_shared->lock);
	return running;
}
