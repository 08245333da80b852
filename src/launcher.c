/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher of the batch workers.
 *
 * With shared_preload_libraries, _PG_init registers one static background
 * worker, the launcher.  The launcher starts user_service.workers dynamic
 * workers (worker.c) for each database of user_service.database, and on a
 * configuration reload starts or stops workers to match; it also restarts a worker that died, backing off when one keeps
 * dying young.  The dynamic workers are registered BGW_NEVER_RESTART: the
 * launcher is their supervisor, and after a crash-restart of the server the
 * launcher itself is restarted and starts fresh ones, never duplicates.
 *
 * The postmaster signals the launcher whenever one of its workers starts or
 * stops (bgw_notify_pid), and a reload signals it too, so it sleeps on its
 * latch otherwise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "utils/fmgroids.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "slots.h"
#include "workers.h"

/* A worker that lived shorter than this died young: back off more. */
#define US_YOUNG_MS			10000
#define US_BACKOFF_MIN_MS	1000
#define US_BACKOFF_MAX_MS	60000
/* Retry after running out of background worker slots. */
#define US_NO_SLOT_RETRY_MS	60000

/* What the launcher knows of one of its workers. */
typedef struct UsLaunchedWorker
{
	BackgroundWorkerHandle *handle; /* NULL: not running */
	char		dbname[NAMEDATALEN];	/* the database it was started for */
	TimestampTz started_at;
	TimestampTz retry_at;		/* do not start it before */
	int			backoff_ms;
	bool		stopping;		/* we asked it to stop */
} UsLaunchedWorker;

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
	/* a connection to the shared catalogs only: it looks up the database */
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
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
 *		Register dynamic worker number i for database dbname, reporting to
 *		the launcher.
 */
static bool
us_start_worker(int i, const char *dbname, BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;
	MemoryContext old;
	bool		started;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "user_service", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "user_service_worker_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "user_service worker %d", i + 1);
	strlcpy(bgw.bgw_type, "user_service worker", BGW_MAXLEN);
	bgw.bgw_main_arg = Int32GetDatum(i);
	strlcpy(bgw.bgw_extra, dbname, BGW_EXTRALEN);
	bgw.bgw_notify_pid = MyProcPid;
	/* the handle lives as long as the worker */
	old = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&bgw, handle);
	MemoryContextSwitchTo(old);
	return started;
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
		if (us_slots_signal_all(SIGTERM, tries == 0) == 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * us_worker_stopped
 *		Worker i has stopped: when we stopped it, or it left because a reload
 *		gave its slot another database (reconfigured), it may start again at
 *		once; when it died, wait longer each time it died young.
 */
static void
us_worker_stopped(UsLaunchedWorker *w, int i, TimestampTz now, bool reconfigured)
{
	pfree(w->handle);
	w->handle = NULL;
	if (w->stopping || reconfigured)
	{
		w->stopping = false;
		w->backoff_ms = 0;
		w->retry_at = 0;
		return;
	}
	if (TimestampDifferenceExceeds(w->started_at, now, US_YOUNG_MS))
		w->backoff_ms = US_BACKOFF_MIN_MS;
	else
		w->backoff_ms = Min(Max(w->backoff_ms * 2, US_BACKOFF_MIN_MS), US_BACKOFF_MAX_MS);
	w->retry_at = TimestampTzPlusMilliseconds(now, w->backoff_ms);
	ereport(LOG,
			(errmsg("user_service worker %d exited; starting it again in %d ms",
					i + 1, w->backoff_ms)));
}

/*
 * us_worker_start_due
 *		Start worker i for database dbname if its time has come.
 *		*out_of_slots remembers that the server had no background worker
 *		slot, to warn once.
 */
static void
us_worker_start_due(UsLaunchedWorker *w, int i, const char *dbname, TimestampTz now,
					bool *out_of_slots)
{
	if (now < w->retry_at)
		return;
	if (us_start_worker(i, dbname, &w->handle))
	{
		strlcpy(w->dbname, dbname, NAMEDATALEN);
		w->started_at = now;
		if (*out_of_slots)
			ereport(LOG, (errmsg("user_service workers can be started again")));
		*out_of_slots = false;
		return;
	}
	if (!*out_of_slots)
		ereport(WARNING,
				(errmsg("could not start user_service worker %d of %d (database \"%s\"): no background worker slot is free",
						i + 1, Min(us_workers_wanted(), US_MAX_WORKERS), dbname),
				 errhint("Raise max_worker_processes (now %d) or lower user_service.workers.",
						 max_worker_processes)));
	*out_of_slots = true;
	w->handle = NULL;
	w->retry_at = TimestampTzPlusMilliseconds(now, US_NO_SLOT_RETRY_MS);
}

/* how often the launcher looks again for a database that does not exist */
#define US_NO_DATABASE_RETRY_MS	5000

/*
 * us_database_exists
 *		Does database dbname exist?  pg_database is a shared catalog, which
 *		the launcher's connection reaches; it is read with a heap scan (as
 *		the logical replication launcher reads pg_subscription): a process
 *		without a database cannot build the relcache entry of a catalog index
 *		(get_database_oid's way) before the shared init file exists, in a
 *		fresh cluster.
 */
static bool
us_database_exists(const char *dbname)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		exists;
	MemoryContext cxt = CurrentMemoryContext;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(dbname));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tup = systable_getnext(scan);

	/*
	 * One that refuses connections, or that an interrupted DROP DATABASE
	 * left invalid (datconnlimit -2), is as good as missing: a worker would
	 * fail to connect, again and again.
	 */
	exists = HeapTupleIsValid(tup) &&
		((Form_pg_database) GETSTRUCT(tup))->datallowconn &&
		((Form_pg_database) GETSTRUCT(tup))->datconnlimit != -2;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return exists;
}

/*
 * The databases found missing, so that each is logged once when it goes
 * missing and once when it is created.
 */
static char us_missing[US_MAX_DATABASES][NAMEDATALEN];
static int	us_nmissing = 0;

/*
 * us_database_missing
 *		Is database dbname missing?  Logs when that changes.
 */
static bool
us_database_missing(const char *dbname)
{
	bool		exists = us_database_exists(dbname);
	int			i;

	for (i = 0; i < us_nmissing; i++)
		if (strcmp(us_missing[i], dbname) == 0)
			break;
	if (!exists && i == us_nmissing && us_nmissing < US_MAX_DATABASES)
	{
		ereport(LOG,
				(errmsg("user_service.database \"%s\" does not exist: its user_service workers start once it is created",
						dbname)));
		strlcpy(us_missing[us_nmissing++], dbname, NAMEDATALEN);
	}
	else if (exists && i < us_nmissing)
	{
		ereport(LOG,
				(errmsg("user_service.database \"%s\" exists now: starting its user_service workers",
						dbname)));
		memmove(us_missing[i], us_missing[i + 1], (us_nmissing - i - 1) * NAMEDATALEN);
		us_nmissing--;
	}
	return !exists;
}

/*
 * user_service_launcher_main
 *		Keep user_service.workers workers running for each database of
 *		user_service.database.  While a database does not exist, start none
 *		for it (a worker would fail to connect and be started again,
 *		forever): say so once, look again every few seconds, and start them
 *		once it is created.
 */
void
user_service_launcher_main(Datum arg)
{
	UsLaunchedWorker workers[US_MAX_WORKERS];
	bool		out_of_slots = false;
	const char *looked[US_MAX_DATABASES];
	bool		missing[US_MAX_DATABASES];
	int			nlooked;
	bool		warned_unserved = false;

	memset(workers, 0, sizeof(workers));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	/*
	 * SIGUSR1 keeps the handler of a background worker with a connection,
	 * procsignal_sigusr1_handler: it sets the latch when the postmaster
	 * tells of a worker starting or stopping, and it answers the
	 * ProcSignalBarriers that DROP DATABASE waits for (a handler of ours
	 * made every DROP DATABASE of the server wait forever).
	 */
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
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
		nlooked = 0;
		for (int m = us_nmissing - 1; m >= 0; m--)
			if (!us_database_listed(us_missing[m]))
			{
				memmove(us_missing[m], us_missing[m + 1], (us_nmissing - m - 1) * NAMEDATALEN);
				us_nmissing--;
			}
		if (us_workers_wanted() > US_MAX_WORKERS && !warned_unserved)
		{
			ereport(WARNING,
					(errmsg("user_service.workers and user_service.database ask for %d workers: %d run, shared by the databases in turn",
							us_workers_wanted(), US_MAX_WORKERS),
					 errhint("Lower user_service.workers or list fewer databases in user_service.database.")));
			warned_unserved = true;
		}
		else if (us_workers_wanted() <= US_MAX_WORKERS)
			warned_unserved = false;
		for (int i = 0; i < US_MAX_WORKERS; i++)
		{
			UsLaunchedWorker *w = &workers[i];
			const char *dbname = us_worker_database(i);
			int			d;

			if (w->handle != NULL)
			{
				pid_t		pid;

				if (GetBackgroundWorkerPid(w->handle, &pid) == BGWH_STOPPED)
					us_worker_stopped(w, i, now,
									  dbname == NULL || strcmp(dbname, w->dbname) != 0);
				else if ((dbname == NULL || strcmp(dbname, w->dbname) != 0) && !w->stopping)
				{
					TerminateBackgroundWorker(w->handle);
					w->stopping = true;
				}
			}
			if (w->handle != NULL || dbname == NULL)
				continue;

			/*
			 * Once a round for each database with a worker to start (the
			 * GUC's check keeps the names within US_MAX_DATABASES).
			 */
			for (d = 0; d < nlooked; d++)
				if (strcmp(looked[d], dbname) == 0)
					break;
			if (d == nlooked && d < US_MAX_DATABASES)
			{
				looked[d] = dbname;
				missing[d] = us_database_missing(dbname);
				nlooked++;
			}
			if (d < nlooked && missing[d])
				timeout = Min(timeout, US_NO_DATABASE_RETRY_MS);
			else
			{
				us_worker_start_due(w, i, dbname, now, &out_of_slots);
				if (w->handle == NULL)
					timeout = Min(timeout, Max(TimestampDifferenceMilliseconds(now, w->retry_at), 10));
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
