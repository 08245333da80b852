/*-------------------------------------------------------------------------
 *
 * worker.c
 *		Shared memory, the launcher and the background workers of the batch
 *		engine.
 *
 * With shared_preload_libraries, _PG_init registers one static background
 * worker, the launcher.  The launcher starts user_service.workers dynamic
 * workers, and on a configuration reload starts or stops workers to match;
 * it also restarts a worker that died, backing off when one keeps dying young.
 * (The dynamic workers are registered BGW_NEVER_RESTART on purpose: the
 * launcher is their supervisor, and after a crash-restart of the server the
 * launcher itself is restarted and starts fresh ones, never duplicates.)
 *
 * Each worker connects to user_service.database and loops: one transaction
 * per group of items (jobs.c), draining while there is work, sleeping on its
 * latch when idle.  Submitting a batch sets the workers' latches when the
 * submitting transaction commits; the end of a batch broadcasts a condition
 * variable that wait_batch sleeps on.  Nothing polls faster than every few
 * seconds.
 *
 * Shared memory holds one slot per worker (pid, latch, the batch and items
 * it is processing) for the views, batch_results' 'running', and wake-ups.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/elog.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "user_service.h"

PG_FUNCTION_INFO_V1(running_items);
PG_FUNCTION_INFO_V1(worker_info);

PGDLLEXPORT void user_service_launcher_main(Datum arg);
PGDLLEXPORT void user_service_worker_main(Datum arg);

/* How long an idle worker sleeps when nothing wakes it. */
#define US_IDLE_MS				10000
/* ... when an open batch had items it could not take yet (slots taken,
 * items held by others, retries due later). */
#define US_DEFERRED_MS			250
/* ... on a hot standby, waiting for promotion. */
#define US_STANDBY_MS			5000
/* ... after an error outside any item. */
#define US_ERROR_MS				5000
/* Housekeeping (retention, user count folding) at most this often. */
#define US_HOUSEKEEPING_MS		10000

struct UsWorkerSlot
{
	pid_t		pid;			/* 0: slot free */
	Latch	   *latch;
	bool		busy;
	int64		batch_id;
	int32		nitems;
	int32		items[US_GROUP_MAX];
};

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

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */
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
			LWLockAcquire(us_shared->lock, LW_SHARED);
			for (int i = 0; i < US_MAX_WORKERS; i++)
				if (us_shared->slots[i].pid != 0)
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
 * us_shmem_init_hooks
 *		From _PG_init: shared memory when preloaded, the commit callback
 *		always (it does nothing without shared memory).
 */
void
us_shmem_init_hooks(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = us_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = us_shmem_startup;
	}
	RegisterXactCallback(us_xact_callback, NULL);
}

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
 * Worker slots
 * ---------------------------------------------------------------------
 */
void
us_slot_publish(UsWorkerSlot *slot, int64 batch_id, const int32 *items, int n)
{
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

/*
 * us_item_running
 *		Is a worker processing this item right now?
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

		if (s->pid != 0 && s->busy && s->batch_id == batch_id)
			for (int j = 0; j < s->nitems; j++)
				if (s->items[j] == item)
					running = true;
	}
	LWLockRelease(us_shared->lock);
	return running;
}

/*
 * running_items(OUT batch_id bigint, OUT running int) RETURNS SETOF record
 *		Per batch, how many items the workers are processing now.
 */
Datum
running_items(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		batch[US_MAX_WORKERS];
	int32		count[US_MAX_WORKERS];
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (us_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(us_shared->lock, LW_SHARED);
	for (int i = 0; i < US_MAX_WORKERS; i++)
	{
		UsWorkerSlot *s = &us_shared->slots[i];
		int			j;

		if (s->pid == 0 || !s->busy)
			continue;
		for (j = 0; j < n && batch[j] != s->batch_id; j++)
			;
		if (j == n)
		{
			batch[n] = s->batch_id;
			count[n++] = 0;
		}
		count[j] += s->nitems;
	}
	LWLockRelease(us_shared->lock);

	for (int j = 0; j < n; j++)
	{
		Datum		values[2] = {Int64GetDatum(batch[j]), Int32GetDatum(count[j])};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * worker_info(OUT pid int, OUT state text, OUT batch_id bigint, OUT item int,
 *			   OUT items int) RETURNS SETOF record
 *		One row per running worker; item is the first of the group it is
 *		processing, items how many the group has.
 */
Datum
worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	UsWorkerSlot copy[US_MAX_WORKERS];

	InitMaterializedSRF(fcinfo, 0);
	if (us_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(us_shared->lock, LW_SHARED);
	memcpy(copy, us_shared->slots, sizeof(copy));
	LWLockRelease(us_shared->lock);

	for (int i = 0; i < US_MAX_WORKERS; i++)
	{
		UsWorkerSlot *s = &copy[i];
		Datum		values[5];
		bool		nulls[5] = {false, false, !s->busy, !s->busy, !s->busy};

		if (s->pid == 0)
			continue;
		values[0] = Int32GetDatum(s->pid);
		values[1] = CStringGetTextDatum(s->busy ? "busy" : "idle");
		values[2] = Int64GetDatum(s->batch_id);
		values[3] = Int32GetDatum(s->busy ? s->items[0] : 0);
		values[4] = Int32GetDatum(s->nitems);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

/*
 * us_register_launcher
 *		From _PG_init under shared_preload_libraries.  It starts once the
 *		server accepts writes: a hot standby runs no worker at all.
 */
void
us_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "user_service", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "user_service_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "user_service launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "user_service launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/*
 * us_start_worker
 *		Register dynamic worker number i, reporting to the launcher.
 */
static bool
us_start_worker(int i, BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "user_service", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "user_service_worker_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "user_service worker %d", i + 1);
	strlcpy(bgw.bgw_type, "user_service worker", BGW_MAXLEN);
	bgw.bgw_main_arg = Int32GetDatum(i);
	bgw.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&bgw, handle);
}

/*
 * us_launcher_sigusr1
 *		The postmaster sends SIGUSR1 when a worker of ours starts or stops
 *		(bgw_notify_pid).  The launcher has no database connection, so the
 *		default handler would not set its latch: do it here.
 */
static void
us_launcher_sigusr1(SIGNAL_ARGS)
{
	int			save_errno = errno;

	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * us_stop_orphans
 *		A launcher that restarts (it was terminated, or failed) finds the
 *		workers of its predecessor still running, and holds no handle on them.
 *		Stop them, and wait (10 s at most) for their slots to be free, so that
 *		the workers it starts are the only ones.
 */
static void
us_stop_orphans(void)
{
	for (int tries = 0; tries < 100; tries++)
	{
		int			alive = 0;

		LWLockAcquire(us_shared->lock, LW_SHARED);
		for (int i = 0; i < US_MAX_WORKERS; i++)
		{
			pid_t		pid = us_shared->slots[i].pid;

			if (pid != 0)
			{
				alive++;
				if (tries == 0)
					ereport(LOG,
							(errmsg("user_service launcher: stopping worker %d (PID %d) left by a previous launcher",
									i + 1, (int) pid)));
				(void) kill(pid, SIGTERM);
			}
		}
		LWLockRelease(us_shared->lock);
		if (alive == 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * user_service_launcher_main
 *		Keep user_service.workers workers running.  The postmaster signals
 *		the launcher whenever one of its workers starts or stops, and a
 *		reload signals it too, so it sleeps on its latch otherwise.
 */
void
user_service_launcher_main(Datum arg)
{
	BackgroundWorkerHandle *handles[US_MAX_WORKERS] = {NULL};
	TimestampTz started_at[US_MAX_WORKERS] = {0};
	TimestampTz retry_at[US_MAX_WORKERS] = {0};
	int			backoff_ms[US_MAX_WORKERS] = {0};
	bool		stopping[US_MAX_WORKERS] = {false};
	bool		out_of_slots = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGUSR1, us_launcher_sigusr1);
	BackgroundWorkerUnblockSignals();

	ereport(LOG, (errmsg("user_service launcher started")));
	us_stop_orphans();

	for (;;)
	{
		TimestampTz now;
		long		timeout = 60000;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		for (int i = 0; i < US_MAX_WORKERS; i++)
		{
			bool		wanted = i < user_service_workers;

			if (handles[i] != NULL)
			{
				pid_t		pid;

				if (GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
				{
					pfree(handles[i]);
					handles[i] = NULL;
					if (stopping[i])
					{
						/* stopped by us: no backoff when it is wanted again */
						stopping[i] = false;
						backoff_ms[i] = 0;
						retry_at[i] = 0;
					}
					else
					{
						/* died: wait longer each time it died young, up to a minute */
						if (TimestampDifferenceExceeds(started_at[i], now, 10000))
							backoff_ms[i] = 1000;
						else
							backoff_ms[i] = Min(Max(backoff_ms[i] * 2, 1000), 60000);
						retry_at[i] = TimestampTzPlusMilliseconds(now, backoff_ms[i]);
						ereport(LOG,
								(errmsg("user_service worker %d exited; starting it again in %d ms",
										i + 1, backoff_ms[i])));
					}
				}
				else if (!wanted && !stopping[i])
				{
					TerminateBackgroundWorker(handles[i]);
					stopping[i] = true;
				}
			}

			if (handles[i] == NULL && wanted)
			{
				if (now >= retry_at[i])
				{
					if (us_start_worker(i, &handles[i]))
					{
						started_at[i] = now;
						if (out_of_slots)
							ereport(LOG, (errmsg("user_service workers can be started again")));
						out_of_slots = false;
					}
					else
					{
						if (!out_of_slots)
							ereport(WARNING,
									(errmsg("could not start user_service worker %d of %d: no background worker slot is free",
											i + 1, user_service_workers),
									 errhint("Raise max_worker_processes (now %d) or lower user_service.workers.",
											 max_worker_processes)));
						out_of_slots = true;
						handles[i] = NULL;
						retry_at[i] = TimestampTzPlusMilliseconds(now, 60000);
					}
				}
				if (handles[i] == NULL)
					timeout = Min(timeout, Max(TimestampDifferenceMilliseconds(now, retry_at[i]), 10));
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * The workers
 * ---------------------------------------------------------------------
 */
static UsWorkerSlot *us_my_slot = NULL;

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
 * us_worker_transaction
 *		One transaction of work: a group of items, or, when there is none and
 *		it is due, housekeeping.  After a group, a second short transaction
 *		looks whether the group completed its batch (only after the commit
 *		can it see the other workers' groups), and if so wakes the waiters.
 *		Returns how many items it processed.
 */
static int
us_worker_transaction(bool housekeeping, bool *deferred)
{
	int			n = 0;
	int64		batch_id = 0;

	*deferred = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());

	if (us_batch_tables_exist())
	{
		n = us_process_group(us_my_slot, US_GROUP_MAX, &batch_id, deferred);
		if (n == 0 && housekeeping)
		{
			int64		purged;

			pgstat_report_activity(STATE_RUNNING, "housekeeping");
			purged = us_purge_batches();
			if (purged > 0)
				elog(DEBUG1, "user_service: purged " INT64_FORMAT " finished batches", purged);
		}
	}

	PopActiveSnapshot();
	CommitTransactionCommand();
	us_slot_clear(us_my_slot);

	if (batch_id != 0)
	{
		bool		finished;

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		finished = us_mark_batch_finished(batch_id);
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (finished)
			ConditionVariableBroadcast(&us_shared->batch_done);
	}

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/*
 * us_worker_step
 *		us_worker_transaction, surviving its errors: log, roll back, and
 *		return -1 (the caller pauses before it tries again).
 */
static int
us_worker_step(bool housekeeping, bool *deferred)
{
	volatile int n = 0;

	PG_TRY();
	{
		n = us_worker_transaction(housekeeping, deferred);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		MemoryContextSwitchTo(TopMemoryContext);
		us_slot_clear(us_my_slot);
		pgstat_report_activity(STATE_IDLE, NULL);
		n = -1;
	}
	PG_END_TRY();
	return n;
}

/*
 * user_service_worker_main
 *		A worker: serve user_service.database until told to stop.  An error
 *		outside an item (an item's own errors are its result) is logged, its
 *		transaction rolled back (its items are pending again), and the worker
 *		goes on after a pause, rather than dying and being restarted.
 */
void
user_service_worker_main(Datum arg)
{
	int			index = DatumGetInt32(arg);
	char	   *dbname;
	TimestampTz last_housekeeping = 0;
	bool		taken;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (index < 0 || index >= US_MAX_WORKERS || us_shared == NULL)
		elog(ERROR, "user_service worker started with a bad slot number %d", index);
	us_my_slot = &us_shared->slots[index];
	LWLockAcquire(us_shared->lock, LW_EXCLUSIVE);
	taken = us_my_slot->pid != 0;
	if (!taken)
	{
		us_my_slot->pid = MyProcPid;
		us_my_slot->latch = MyLatch;
		us_my_slot->busy = false;
		us_my_slot->nitems = 0;
	}
	LWLockRelease(us_shared->lock);
	if (taken)
	{
		/* an earlier worker still holds the slot: the launcher retries */
		ereport(LOG,
				(errmsg("user_service worker %d: slot still in use, exiting", index + 1)));
		proc_exit(0);
	}
	on_shmem_exit(us_slot_detach, (Datum) 0);

	dbname = MemoryContextStrdup(TopMemoryContext, user_service_database);
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("user_service worker");

	/* claims rely on READ COMMITTED, whatever the server's default */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * A group's effects and its results commit together, so a commit lost in
	 * a crash loses both, and the items are simply pending again: nothing is
	 * lost or applied twice either way.  Not waiting for the WAL flush on
	 * every group is then free throughput (one flush per hashed item
	 * otherwise).
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	for (;;)
	{
		bool		deferred = false;
		bool		housekeeping;
		long		sleep_ms;
		TimestampTz now;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(dbname, user_service_database) != 0)
			{
				ereport(LOG,
						(errmsg("user_service worker %d: user_service.database changed from \"%s\" to \"%s\", restarting",
								index + 1, dbname, user_service_database)));
				proc_exit(0);
			}
			last_housekeeping = 0;	/* retention may have changed */
		}

		if (RecoveryInProgress())
			sleep_ms = US_STANDBY_MS;
		else
		{
			now = GetCurrentTimestamp();
			housekeeping = TimestampDifferenceExceeds(last_housekeeping, now, US_HOUSEKEEPING_MS);
			n = us_worker_step(housekeeping, &deferred);
			if (n > 0)
				continue;		/* drain while there is work */
			if (housekeeping)
				last_housekeeping = now;
			sleep_ms = n < 0 ? US_ERROR_MS : deferred ? US_DEFERRED_MS : US_IDLE_MS;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
