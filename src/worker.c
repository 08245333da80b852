/*-------------------------------------------------------------------------
 *
 * worker.c
 *		A batch worker: one dynamic background worker started by the
 *		launcher (launcher.c), serving user_service.database.
 *
 * The worker loops: one transaction per group of items (the engine's
 * us_process_group), draining while there is work, sleeping on its latch
 * when idle.  Submitting a batch sets the workers' latches when the
 * submitting transaction commits; nothing polls faster than every few
 * seconds.  An error outside an item (an item's own errors are its result)
 * is logged, its transaction rolled back (its items are pending again), and
 * the worker goes on after a pause, rather than dying and being restarted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/syncrep.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "slots.h"
#include "workers.h"

/* A slot shows every item of a group. */
StaticAssertDecl(US_GROUP_MAX <= US_SLOT_ITEMS, "a worker slot must hold a whole group");

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

static UsWorkerSlot *us_my_slot = NULL;

/*
 * us_group_started
 *		The engine starts a group: show its items in our slot, and what we
 *		do in pg_stat_activity, e.g. "batch 12: item 40 of 1000
 *		(create_user)" (never a value of an item).
 */
static void
us_group_started(void *arg, int64 batch_id, const char *kind,
				 const int32 *items, int n, int32 total)
{
	char		activity[128];

	us_slot_publish(us_my_slot, batch_id, items, n);
	if (n == 1)
		snprintf(activity, sizeof(activity), "batch " INT64_FORMAT ": item %d of %d (%s)",
				 batch_id, items[0], total, kind);
	else
		snprintf(activity, sizeof(activity), "batch " INT64_FORMAT ": items %d to %d of %d (%s)",
				 batch_id, items[0], items[n - 1], total, kind);
	pgstat_report_activity(STATE_RUNNING, activity);
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

	if (us_batches_run_here())
	{
		n = us_process_group(us_group_started, NULL, US_GROUP_MAX, &batch_id, deferred);
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
			us_wake_waiters();
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
 * us_worker_commit_mode
 *		synchronous_commit off, unless a synchronous standby is configured:
 *		then the server's own setting.  Set at the session level, so that the
 *		configuration file's value stays the reset value to go back to.
 */
static void
us_worker_commit_mode(void)
{
	if (SyncRepStandbyNames == NULL || SyncRepStandbyNames[0] == '\0')
		SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION);
	else
		SetConfigOption("synchronous_commit", GetConfigOptionResetString("synchronous_commit"),
						PGC_SUSET, PGC_S_SESSION);
}

/*
 * user_service_worker_main
 *		Serve a database of user_service.database until told to stop.  The
 *		argument is the worker's slot number, bgw_extra the database the
 *		launcher started it for; it leaves (and the launcher starts the right
 *		one) when a reload gives its slot another database, or none.
 */
void
user_service_worker_main(Datum arg)
{
	int			index = DatumGetInt32(arg);
	char	   *dbname;
	const char *wanted;
	TimestampTz last_housekeeping = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	us_my_slot = us_slot_attach(index);
	if (us_my_slot == NULL)
	{
		/* an earlier worker still holds the slot: the launcher retries */
		ereport(LOG,
				(errmsg("user_service worker %d: slot still in use, exiting", index + 1)));
		proc_exit(0);
	}

	dbname = MemoryContextStrdup(TopMemoryContext, MyBgworkerEntry->bgw_extra);
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	us_slot_set_database(us_my_slot, MyDatabaseId);
	pgstat_report_appname("user_service worker");

	/* claims rely on READ COMMITTED, whatever the server's default */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * A group's effects and its results commit together, so a commit lost in
	 * a crash loses both, and the items are simply pending again: nothing is
	 * lost or applied twice either way.  Not waiting for the WAL flush on
	 * every group is then free throughput (one flush per hashed item
	 * otherwise).  Except where a synchronous standby is configured: there
	 * a finished item must survive a failover as the caller saw it (the
	 * user it created, with that id), so the server's synchronous_commit
	 * applies (us_worker_commit_mode, again after each reload).
	 */
	us_worker_commit_mode();

	for (;;)
	{
		bool		deferred = false;
		bool		housekeeping;
		long		sleep_ms;
		TimestampTz now;
		int			n;

		CHECK_FOR_INTERRUPTS();

		/*
		 * Draining skips the latch wait, and with it WL_EXIT_ON_PM_DEATH: look
		 * at the postmaster before every transaction, so that a worker never
		 * outlives it by more than one group (and never keeps its shared
		 * memory from a restarted server).  Work not committed is pending
		 * again after the restart.
		 */
		if (!PostmasterIsAlive())
			proc_exit(1);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			wanted = us_worker_database(index);
			if (wanted == NULL || strcmp(dbname, wanted) != 0)
			{
				ereport(LOG,
						(errmsg("user_service worker %d: no longer serving database \"%s\" (user_service.database is \"%s\", user_service.workers %d), leaving",
								index + 1, dbname, user_service_database, user_service_workers)));
				proc_exit(0);
			}
			us_worker_commit_mode();
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
