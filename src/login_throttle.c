/*-------------------------------------------------------------------------
 *
 * login_throttle.c
 *		Per-account throttling of failed logins, in shared memory.
 *
 * After user_service.login_max_failures failed verify_password calls for
 * one email within user_service.login_failure_window, verify_password
 * answers false for that email, even with the right password, until
 * user_service.login_lockout has passed; a success resets the email's
 * count.  An attempt is let through (us_login_begin) only while the
 * failures and the attempts in flight are below the limit, so concurrent
 * attempts get no more guesses than consecutive ones.  Emails that have no user are counted and locked exactly the same
 * way, so neither the answers nor their timing tell whether an account
 * exists.
 *
 * The counts live in a fixed-size hash table in shared memory
 * (user_service.login_throttle_entries), keyed by a keyed hash of the
 * email as the extension compares it (trimmed, NFC, lower-cased): SHA-256
 * of a random secret drawn at server start and the email, cut to 16
 * bytes.  So the table holds no email (people type passwords into the
 * email field), and nobody can aim collisions at another account.  Failed
 * attempts write nothing to disk or WAL: brute force cannot be turned into
 * a write amplifier, and the throttle works the same on hot standbys.  The
 * price: counts are per server (a primary and its standbys count apart)
 * and start from zero when the server restarts.
 *
 * When the table is full, an insert first drops every entry whose window
 * and lockout are over and every one that holds a single failure, and if
 * none is, the one idle longest that is not locked (or else the one whose
 * lockout ends first).  Flooding it with
 * fresh emails to push out an account's entry costs the attacker a full
 * table of failed hashes (65,536 by default, minutes of the server's
 * hashing) for each login_max_failures guesses.
 *
 * Without shared_preload_libraries there is no shared memory: nothing is
 * throttled, and login_throttle() says so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "port.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "login_throttle.h"
#include "password.h"

/* GUC variables, named after their GUCs. */
static int	user_service_login_max_failures = 10;
static int	user_service_login_failure_window = 900;	/* seconds */
static int	user_service_login_lockout = 900;	/* seconds */
static int	user_service_login_throttle_entries = 65536;

#define US_THROTTLE_SECRET_BYTES	32

typedef struct UsThrottleKey
{
	uint8		bytes[US_THROTTLE_KEY_BYTES];
} UsThrottleKey;

typedef struct UsThrottleEntry
{
	UsThrottleKey key;			/* hash key: must be first */
	int32		failures;		/* within the window that began at first_failure */
	int32		inflight;		/* attempts let through and not finished yet */
	TimestampTz first_failure;
	TimestampTz last_failure;
	TimestampTz locked_until;	/* 0: not locked */
} UsThrottleEntry;

typedef struct UsThrottleShared
{
	LWLock	   *lock;
	uint8		secret[US_THROTTLE_SECRET_BYTES];
} UsThrottleShared;

static UsThrottleShared *us_throttle = NULL;
static HTAB *us_throttle_table = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
us_throttle_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(UsThrottleShared)));
	RequestAddinShmemSpace(hash_estimate_size(user_service_login_throttle_entries,
											  sizeof(UsThrottleEntry)));
	RequestNamedLWLockTranche("user_service login throttle", 1);
}

static void
us_throttle_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	us_throttle = ShmemInitStruct("user_service login throttle", sizeof(UsThrottleShared), &found);
	if (!found)
	{
		us_throttle->lock = &(GetNamedLWLockTranche("user_service login throttle"))->lock;
		if (!pg_strong_random(us_throttle->secret, sizeof(us_throttle->secret)))
			ereport(FATAL,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate the secret of the login throttle")));
	}
	info.keysize = sizeof(UsThrottleKey);
	info.entrysize = sizeof(UsThrottleEntry);
	us_throttle_table = ShmemInitHash("user_service login throttle table",
									  user_service_login_throttle_entries,
									  user_service_login_throttle_entries,
									  &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * us_login_throttle_init
 *		From _PG_init: the GUCs, and the shared table when preloaded.
 */
void
us_login_throttle_init(void)
{
	DefineCustomIntVariable("user_service.login_max_failures",
							"Failed verify_password calls for one email, within "
							"user_service.login_failure_window, that lock it out.",
							"0 turns login throttling off.",
							&user_service_login_max_failures,
							10, 0, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("user_service.login_failure_window",
							"Time within which failed logins of one email are counted together.",
							NULL,
							&user_service_login_failure_window,
							900, 1, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("user_service.login_lockout",
							"How long verify_password answers false for a locked-out email.",
							NULL,
							&user_service_login_lockout,
							900, 1, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	/* the table's size is fixed at server start: only when preloading */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("user_service.login_throttle_entries",
								"Emails the login throttle can track at once (shared memory, "
								"about 100 bytes each).",
								NULL,
								&user_service_login_throttle_entries,
								65536, 128, 16777216,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = us_throttle_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = us_throttle_shmem_startup;
	}
}

/*
 * us_login_state_available
 *		Is there a table (was the library preloaded)?
 */
bool
us_login_state_available(void)
{
	return us_throttle_table != NULL;
}

/*
 * us_login_throttle_active
 *		Is there a throttle (shared memory, and login_max_failures > 0)?
 */
static bool
us_login_throttle_active(void)
{
	return us_throttle_table != NULL && user_service_login_max_failures > 0;
}

/* the table key of an email (as the extension compares emails) */
static void
us_throttle_key(const char *email, UsThrottleKey *key)
{
	uint8		digest[US_SHA256_BYTES];

	us_sha256(us_throttle->secret, sizeof(us_throttle->secret),
			  (const uint8 *) email, strlen(email), digest);
	memcpy(key->bytes, digest, sizeof(key->bytes));
	explicit_bzero(digest, sizeof(digest));
}

/* the window began so long ago that its failures no longer count */
static bool
us_window_over(const UsThrottleEntry *e, TimestampTz now)
{
	return now >= e->first_failure +
		(TimestampTz) user_service_login_failure_window * USECS_PER_SEC;
}

static bool
us_entry_expired(const UsThrottleEntry *e, TimestampTz now)
{
	return e->inflight == 0 && e->locked_until <= now && us_window_over(e, now);
}

/*
 * us_throttle_make_room
 *		The table is full: drop the entries that are over, and those that
 *		hold a single failure and nothing in flight (a flood of fresh emails
 *		is mostly those: one scan then frees most of the table); if that
 *		drops none, one victim (the one idle longest that is not locked,
 *		else the one whose lockout ends first).  Under the exclusive lock.
 */
static void
us_throttle_make_room(TimestampTz now)
{
	HASH_SEQ_STATUS status;
	UsThrottleEntry *e;
	UsThrottleEntry *victim = NULL;
	bool		dropped = false;

	hash_seq_init(&status, us_throttle_table);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (us_entry_expired(e, now) ||
			(e->inflight == 0 && e->locked_until <= now && e->failures <= 1))
		{
			hash_search(us_throttle_table, &e->key, HASH_REMOVE, NULL);
			dropped = true;
		}
		else if (!dropped && e->inflight == 0 &&
				 (victim == NULL ||
				  (e->locked_until <= now &&
				   (victim->locked_until > now || e->last_failure < victim->last_failure)) ||
				  (e->locked_until > now && victim->locked_until > now &&
				   e->locked_until < victim->locked_until)))
			victim = e;
	}
	if (!dropped && victim != NULL)
		hash_search(us_throttle_table, &victim->key, HASH_REMOVE, NULL);
}

/* The attempt this backend has let through and not finished (one at most). */
static bool us_pending = false;
static UsThrottleKey us_pending_key;

/*
 * us_login_abandon
 *		The attempt let through ended in an error, or the process exits: let
 *		it go, uncounted (it gave no answer).
 */
void
us_login_abandon(void)
{
	UsThrottleEntry *e;

	if (!us_pending)
		return;
	us_pending = false;
	LWLockAcquire(us_throttle->lock, LW_EXCLUSIVE);
	e = hash_search(us_throttle_table, &us_pending_key, HASH_FIND, NULL);
	if (e != NULL && e->inflight > 0)
		e->inflight--;
	LWLockRelease(us_throttle->lock);
}

static void
us_login_at_exit(int code, Datum arg)
{
	us_login_abandon();
}

/*
 * us_login_begin
 *		May this attempt go ahead?  False when the email is locked out, or
 *		when the attempts already let through would reach the limit if they
 *		all failed: a burst of concurrent attempts gets login_max_failures
 *		guesses, not one per connection.  When true, the attempt is in flight
 *		until us_login_end (or us_login_abandon, on error).
 */
bool
us_login_begin(const char *email)
{
	static bool exit_hook = false;
	UsThrottleEntry *e;
	bool		found;
	bool		go = true;
	TimestampTz now;

	if (!us_login_throttle_active())
		return true;
	if (!exit_hook)
	{
		before_shmem_exit(us_login_at_exit, (Datum) 0);
		exit_hook = true;
	}
	us_login_abandon();		/* one left behind: not expected */
	us_throttle_key(email, &us_pending_key);
	now = GetCurrentTimestamp();

	LWLockAcquire(us_throttle->lock, LW_EXCLUSIVE);
	e = hash_search(us_throttle_table, &us_pending_key, HASH_ENTER_NULL, &found);
	if (e == NULL)
	{
		us_throttle_make_room(now);
		e = hash_search(us_throttle_table, &us_pending_key, HASH_ENTER_NULL, &found);
	}
	if (e != NULL)
	{
		if (!found)
		{
			e->failures = 0;
			e->inflight = 0;
			e->locked_until = 0;
			e->first_failure = now;
			e->last_failure = now;
		}
		else if (us_window_over(e, now))
		{
			e->failures = 0;
			e->first_failure = now;
		}
		if (e->locked_until > now ||
			e->failures + e->inflight >= user_service_login_max_failures)
			go = false;
		else
		{
			e->inflight++;
			us_pending = true;
		}
	}
	LWLockRelease(us_throttle->lock);
	return go;
}

/*
 * us_login_end
 *		The attempt let through by us_login_begin is over: count a failure
 *		(locking the email out when it reaches the limit), or on success
 *		forget the email's failures, unless other attempts locked it out
 *		meanwhile.  Returns the answer to give: succeeded, and not locked.
 */
bool
us_login_end(bool succeeded)
{
	UsThrottleEntry *e;
	TimestampTz now;
	bool		answer = succeeded;

	if (!us_pending)
		return succeeded;
	us_pending = false;
	now = GetCurrentTimestamp();

	LWLockAcquire(us_throttle->lock, LW_EXCLUSIVE);
	e = hash_search(us_throttle_table, &us_pending_key, HASH_FIND, NULL);
	if (e != NULL)
	{
		if (e->inflight > 0)
			e->inflight--;
		if (e->locked_until > now)
			answer = false;
		else if (succeeded)
		{
			if (e->inflight == 0)
				hash_search(us_throttle_table, &us_pending_key, HASH_REMOVE, NULL);
			else
				e->failures = 0;
		}
		else
		{
			if (us_window_over(e, now))
			{
				e->failures = 0;
				e->first_failure = now;
			}
			e->last_failure = now;
			if (++e->failures >= user_service_login_max_failures)
			{
				e->locked_until = now + (TimestampTz) user_service_login_lockout * USECS_PER_SEC;
				e->failures = 0;
				e->first_failure = e->locked_until;
			}
		}
	}
	LWLockRelease(us_throttle->lock);
	return answer;
}

/*
 * us_login_reset
 *		Forget the email's failures and lockout (reset_login_throttle).
 *		True when there was something to forget.
 */
bool
us_login_reset(const char *email)
{
	UsThrottleKey key;
	bool		found;

	if (us_throttle_table == NULL)
		return false;
	us_throttle_key(email, &key);
	LWLockAcquire(us_throttle->lock, LW_SHARED);
	found = hash_search(us_throttle_table, &key, HASH_FIND, NULL) != NULL;
	LWLockRelease(us_throttle->lock);
	if (!found)
		return false;			/* the common case: never failed */
	LWLockAcquire(us_throttle->lock, LW_EXCLUSIVE);
	found = hash_search(us_throttle_table, &key, HASH_REMOVE, NULL) != NULL;
	LWLockRelease(us_throttle->lock);
	return found;
}

/*
 * us_login_state
 *		What the throttle holds for the email: failures counted in the current
 *		window (0 when it is over), when that window began, and until when
 *		the email is locked out (0 when it is not).  False without shared
 *		memory.
 */
bool
us_login_state(const char *email, int32 *failures, TimestampTz *window_start,
			   TimestampTz *locked_until)
{
	UsThrottleKey key;
	UsThrottleEntry *e;
	TimestampTz now = GetCurrentTimestamp();

	*failures = 0;
	*window_start = 0;
	*locked_until = 0;
	if (us_throttle_table == NULL)
		return false;
	us_throttle_key(email, &key);
	LWLockAcquire(us_throttle->lock, LW_SHARED);
	e = hash_search(us_throttle_table, &key, HASH_FIND, NULL);
	if (e != NULL)
	{
		if (!us_window_over(e, now) && e->first_failure <= now)
		{
			*failures = e->failures;
			*window_start = e->first_failure;
		}
		if (e->locked_until > now)
			*locked_until = e->locked_until;
	}
	LWLockRelease(us_throttle->lock);
	return true;
}
