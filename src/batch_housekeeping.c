/*-------------------------------------------------------------------------
 *
 * batch_housekeeping.c
 *		The end of a batch's life: noting that it finished (and so waking
 *		wait_batch), and deleting it once user_service.batch_retention has
 *		passed.  Housekeeping also folds the user count.
 *
 * A batch's state always comes from its items' progress rows (the view
 * user_service.batches); finished_at is a hint for claiming and retention,
 * written by whoever sees the last item done.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "catalog.h"
#include "slots.h"
#include "user_ops.h"

/* GUC variable, named after its GUC. */
static char *user_service_batch_retention = NULL;

#define US_MAX_RETENTION_YEARS	1000

/*
 * Note a complete batch's finished_at; a row back when it did.  Housekeeping
 * may run in a caller's open transaction (process_batches): a batch row that
 * another transaction has locked to mark it is skipped, never waited for.
 */
static UsStatement us_mark_finished = {
	"UPDATE user_service.batch_jobs b"
	"   SET finished_at = (SELECT max(at) FROM user_service.batch_progress WHERE batch_id = b.id)"
	" WHERE b.id = (SELECT id FROM user_service.batch_jobs"
	"                WHERE id = $1 AND finished_at IS NULL FOR UPDATE SKIP LOCKED)"
	"   AND (SELECT coalesce(sum(succeeded + failed + cancelled), 0)"
	"          FROM user_service.batch_progress WHERE batch_id = b.id) >= b.total"
	" RETURNING true",
	1, {INT8OID}
};

/*
 * Cheap first look: does the batch still have pending items (a row or
 * none)?  Asked in the order of the index of pending items, so that no plan
 * beats reading that index's first entry for the batch.  An EXISTS would
 * leave a generic plan free to scan the whole job table when the statistics
 * saw many pending items, expecting an early match.
 */
static UsStatement us_pending_left = {
	"SELECT first_item FROM user_service.batch_chunks"
	" WHERE batch_id = $1 AND pending > 0 ORDER BY first_item LIMIT 1",
	1, {INT8OID}
};

/* The same under a schema older than 1.3, an item to a row. */
static UsStatement us_pending_left_12 = {
	"SELECT item FROM user_service.batch_items"
	" WHERE batch_id = $1 AND status = 'pending' ORDER BY item LIMIT 1",
	1, {INT8OID}
};

/* The same for every complete open batch (housekeeping), skipping locked ones. */
static UsStatement us_mark_all_finished = {
	"UPDATE user_service.batch_jobs b"
	"   SET finished_at = (SELECT max(at) FROM user_service.batch_progress WHERE batch_id = b.id)"
	" WHERE b.id IN (SELECT c.id FROM user_service.batch_jobs c"
	"                 WHERE c.finished_at IS NULL"
	"                   AND (SELECT coalesce(sum(succeeded + failed + cancelled), 0)"
	"                          FROM user_service.batch_progress WHERE batch_id = c.id) >= c.total"
	"                 FOR UPDATE SKIP LOCKED)",
	0
};

/*
 * Retention: the batches finished longer ago than user_service.batch_retention,
 * then their items and progress rows by batch id.  Those two are planned for
 * the ids at hand (custom plans): the BRIN index finds a few expired batches'
 * pages, where one statement joining the deleted batches to the job table
 * read the whole table every time something expired.
 */
static UsStatement us_purge_jobs = {
	"DELETE FROM user_service.batch_jobs"
	" WHERE id IN (SELECT id FROM user_service.batch_jobs"
	"               WHERE finished_at < now() - $1::interval FOR UPDATE SKIP LOCKED)"
	" RETURNING id",
	1, {TEXTOID}
};

static UsStatement us_purge_items = {
	"DELETE FROM user_service.batch_chunks WHERE batch_id = ANY ($1)",
	1, {INT8ARRAYOID}, NULL, CURSOR_OPT_CUSTOM_PLAN
};

static UsStatement us_purge_items_12 = {
	"DELETE FROM user_service.batch_items WHERE batch_id = ANY ($1)",
	1, {INT8ARRAYOID}, NULL, CURSOR_OPT_CUSTOM_PLAN
};

static UsStatement us_purge_progress = {
	"DELETE FROM user_service.batch_progress WHERE batch_id = ANY ($1)",
	1, {INT8ARRAYOID}, NULL, CURSOR_OPT_CUSTOM_PLAN
};

/*
 * us_check_retention
 *		user_service.batch_retention must read as a non-negative interval
 *		('7 days', '12 hours', '0').  Parsed with the datetime routines that
 *		report errors as codes, since a check hook must not throw.
 */
static bool
us_check_retention(char **newval, void **extra, GucSource source)
{
	char		workbuf[MAXDATELEN + 1];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm;
	Interval	span;

	if (strlen(*newval) > MAXDATELEN ||
		ParseDateTime(*newval, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nf) != 0 ||
		DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm) != 0 ||
		dtype != DTK_DELTA ||
		itmin2interval(&itm, &span) != 0)
	{
		GUC_check_errdetail("\"%s\" is not an interval such as \"7 days\".", *newval);
		return false;
	}
	if (span.time < 0 || span.day < 0 || span.month < 0)
	{
		GUC_check_errdetail("The retention must not be negative.");
		return false;
	}

	/*
	 * now() minus the retention must stay a timestamp: a bound far inside
	 * the range, so that no housekeeping run can fail on it.
	 */
	if (span.month / MONTHS_PER_YEAR + span.day / DAYS_PER_YEAR +
		span.time / (USECS_PER_DAY * DAYS_PER_YEAR) > US_MAX_RETENTION_YEARS)
	{
		GUC_check_errdetail("The retention must be at most %d years.", US_MAX_RETENTION_YEARS);
		return false;
	}
	return true;
}

void
us_batch_housekeeping_init(void)
{
	DefineCustomStringVariable("user_service.batch_retention",
							   "How long finished batches are kept before the workers delete them.",
							   NULL,
							   &user_service_batch_retention,
							   "7 days",
							   PGC_SIGHUP,
							   0,
							   us_check_retention, NULL, NULL);
}

/*
 * us_batch_note_finished
 *		If the batch is complete, note its finished_at; true when this call
 *		did, so that exactly one of racing finishers wakes the waiters.  Call
 *		inside SPI.
 */
bool
us_batch_note_finished(int64 batch_id)
{
	Datum		args[1] = {Int64GetDatum(batch_id)};

	us_spi_run(&us_mark_finished, args, NULL, false, 0);
	return SPI_processed > 0;
}

/*
 * us_batches_run_here
 *		Is the extension, at a version with the batch engine, installed in
 *		this database, and are its batches this database's own?  For the
 *		workers, which wait quietly until it is.  A database that subscribes
 *		to batch_chunks or batch_jobs (a logical replica, or a partition
 *		being moved here)
 *		holds the publisher's batches: its workers leave them alone, or items
 *		would be applied on both sides.
 */
bool
us_batches_run_here(void)
{
	Oid			nsp;
	Oid			items;

	if (!OidIsValid(get_extension_oid("user_service", true)))
		return false;
	nsp = get_namespace_oid("user_service", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("batch_jobs", nsp)))
		return false;
	items = get_relname_relid("batch_chunks", nsp);
	if (!OidIsValid(items))
		items = get_relname_relid("batch_items", nsp);	/* before 1.3 */
	/*
	 * batch_jobs too: a subscriber updated to 1.3 subscribes to batch_chunks
	 * only once its subscription is refreshed, while its items, moved into
	 * chunks by the update, are still the publisher's.
	 */
	return !us_rel_subscribed(items) &&
		!us_rel_subscribed(get_relname_relid("batch_jobs", nsp));
}

/*
 * us_mark_batch_finished
 *		If the batch is complete, note its finished_at; true when this call
 *		did (the caller then wakes the waiters).  Workers call it in a new
 *		transaction after each group's commit: of two groups finishing a
 *		batch at once, the one that commits last sees both.
 */
bool
us_mark_batch_finished(int64 batch_id)
{
	UsSavedUser saved;
	Datum		args[1] = {Int64GetDatum(batch_id)};
	bool		marked;

	us_spi_begin(&saved);
	us_spi_run_in_order(OidIsValid(us_catalog()->batch_chunks_relid) ?
						&us_pending_left : &us_pending_left_12, args, true, 1);
	if (SPI_processed > 0)
		marked = false;			/* others are still at it, or retries are due */
	else
		marked = us_batch_note_finished(batch_id);
	us_spi_end(&saved);
	return marked;
}

/*
 * us_purge_batches
 *		Note finished_at of complete batches (some were completed by
 *		process_batches, which cannot), delete the batches finished longer
 *		than user_service.batch_retention ago (their items and progress go
 *		with them), and fold the user count.  Returns how many it deleted.
 */
int64
us_purge_batches(void)
{
	UsSavedUser saved;
	Datum		args[1] = {CStringGetTextDatum(user_service_batch_retention)};
	int64		n;
	bool		isnull;

	us_spi_begin(&saved);
	us_spi_run(&us_mark_all_finished, NULL, NULL, false, 0);

	/*
	 * Their waiters sleep until a broadcast: one batch noted here may be the
	 * one a worker found complete in this very transaction, and that
	 * worker's own note after the commit then finds it noted already.
	 */
	if (SPI_processed > 0)
		us_wake_waiters_at_commit();
	us_spi_run(&us_purge_jobs, args, NULL, false, 0);
	n = (int64) SPI_processed;
	if (n > 0)
	{
		Datum	   *ids = palloc(sizeof(Datum) * n);
		Datum		idarray[1];

		for (int64 i = 0; i < n; i++)
			ids[i] = us_spi_value(i, 1, &isnull);
		idarray[0] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
													 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		us_spi_run(OidIsValid(us_catalog()->batch_chunks_relid) ?
				   &us_purge_items : &us_purge_items_12, idarray, NULL, false, 0);
		us_spi_run(&us_purge_progress, idarray, NULL, false, 0);
	}
	us_compact_user_count();
	us_spi_end(&saved);
	return n;
}
