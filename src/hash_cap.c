/*-------------------------------------------------------------------------
 *
 * hash_cap.c
 *		A server-wide cap on concurrent password hashing.
 *
 * Every argon2 computation (a new hash, a verification, the dummy work for
 * an unknown email), in a backend or a batch worker, holds one of
 * user_service.max_concurrent_hashes places while it runs.  A storm of 500
 * logins then queues instead of asking for 500 x 19 MiB at once, and
 * hashes no slower: the work is CPU-bound, and more of it at once than
 * there are cores only adds memory and context switches.  The default
 * (-1) is the number of CPUs; 0 turns the cap off.
 *
 * The places are an atomic counter in shared memory; whoever finds none
 * free sleeps on a condition variable, which a finishing hash signals.  The
 * sleep honours cancels and statement_timeout (ConditionVariableTimedSleep
 * checks for interrupts on every wake-up), and wakes by itself every
 * 100 ms, so that a wake-up meant for a waiter that was cancelled meanwhile,
 * or a raised cap, is never missed for long.  Nothing between taking a
 * place and giving it back can throw (the argon2 libraries report errors
 * by return code, and signals only set flags), so no cleanup is needed on
 * error paths; a process that dies holding one takes the postmaster's
 * crash restart, which resets shared memory.
 *
 * Without shared_preload_libraries there is no shared memory and no cap.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

#include "hash_cap.h"

/* GUC variable, named after its GUC. */
static int	user_service_max_concurrent_hashes = -1;

typedef struct UsHashCap
{
	pg_atomic_uint32 running;	/* hashes computing now */
	ConditionVariable freed;	/* signalled when one finishes */
} UsHashCap;

static UsHashCap *us_hash_cap = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
us_hash_cap_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(UsHashCap)));
}

static void
us_hash_cap_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	us_hash_cap = ShmemInitStruct("user_service hash cap", sizeof(UsHashCap), &found);
	if (!found)
	{
		pg_atomic_init_u32(&us_hash_cap->running, 0);
		ConditionVariableInit(&us_hash_cap->freed);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * us_hash_cap_init
 *		From _PG_init: the GUC, and the shared counter when preloaded.
 */
void
us_hash_cap_init(void)
{
	DefineCustomIntVariable("user_service.max_concurrent_hashes",
							"Most argon2 computations running at once on this server, "
							"in backends and batch workers together.",
							"Others wait their turn (cancels and statement_timeout apply). "
							"-1: the number of CPUs; 0: no cap. Needs shared_preload_libraries.",
							&user_service_max_concurrent_hashes,
							-1,
							-1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = us_hash_cap_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = us_hash_cap_shmem_startup;
	}
}

/*
 * us_hash_cap_limit
 *		The cap in force: 0 for none.
 */
static int
us_hash_cap_limit(void)
{
	if (us_hash_cap == NULL)
		return 0;
	if (user_service_max_concurrent_hashes < 0)
	{
		/* asked once per process: sysconf reads /sys each time */
		static int	ncpu = 0;

		if (ncpu == 0)
		{
			long		n = sysconf(_SC_NPROCESSORS_ONLN);

			ncpu = n >= 1 ? (int) Min(n, 10000) : 1;
		}
		return ncpu;
	}
	return user_service_max_concurrent_hashes;
}

/* take a place if one is free */
static bool
us_hash_try_take(uint32 cap)
{
	uint32		now = pg_atomic_read_u32(&us_hash_cap->running);

	while (now < cap)
	{
		if (pg_atomic_compare_exchange_u32(&us_hash_cap->running, &now, now + 1))
			return true;
	}
	return false;
}

/*
 * us_hash_begin
 *		Wait for a place to hash; true when one was taken (then the caller
 *		must call us_hash_end when the computation returns).  Raises the
 *		cancel or timeout error if one comes while waiting.
 */
bool
us_hash_begin(void)
{
	int			cap = us_hash_cap_limit();

	if (cap == 0)
		return false;
	if (us_hash_try_take((uint32) cap))
		return true;

	ConditionVariablePrepareToSleep(&us_hash_cap->freed);
	for (;;)
	{
		cap = us_hash_cap_limit();
		if (cap == 0)
		{
			ConditionVariableCancelSleep();
			return false;
		}
		if (us_hash_try_take((uint32) cap))
			break;
		ConditionVariableTimedSleep(&us_hash_cap->freed, 100, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return true;
}

/*
 * us_hash_end
 *		Give the place back and wake one waiter.
 */
void
us_hash_end(void)
{
	pg_atomic_fetch_sub_u32(&us_hash_cap->running, 1);
	ConditionVariableSignal(&us_hash_cap->freed);
}
