/*-------------------------------------------------------------------------
 *
 * user_service.h
 *		Declarations shared by the files of the user_service extension.
 *
 * user_service.c	module magic, _PG_init, GUCs
 * catalog.c		locating the extension's relations, running as their owner
 * password.c		argon2 hashing and verification, PHC strings
 * users.c			the SQL-callable user API and the user-count trigger
 * jobs.c			batches: submission, status, claiming and processing items
 * worker.c			shared memory, the launcher and the background workers
 *
 *-------------------------------------------------------------------------
 */
#ifndef USER_SERVICE_H
#define USER_SERVICE_H

#include "postgres.h"

/*
 * Our ereports carry their own message domain (as plpgsql's do), so that the
 * log hook in redact.c can tell them from PostgreSQL's.  Every source file
 * includes this header.
 */
#define US_TEXTDOMAIN	"user_service"
#undef TEXTDOMAIN
#define TEXTDOMAIN US_TEXTDOMAIN

#include "executor/spi.h"
#include "fmgr.h"

/* GUCs (user_service.c) */
extern int	user_service_argon2_memory_kib;
extern int	user_service_argon2_iterations;
extern int	user_service_argon2_parallelism;
extern int	user_service_max_per_page;
extern char *user_service_database;
extern int	user_service_workers;
extern int	user_service_default_concurrency;
extern int	user_service_max_attempts;
extern char *user_service_batch_retention;

/* Set in _PG_init when loaded through shared_preload_libraries. */
extern bool us_preloaded;

/* Input limits of the API (issue-pinned). */
#define US_NAME_MAX_CHARS		200
#define US_EMAIL_MAX_CHARS		254
#define US_PASSWORD_MIN_BYTES	8
#define US_PASSWORD_MAX_BYTES	1024

/*
 * The extension's relations and types, looked up by name once per backend and
 * forgotten on any relcache invalidation of them (catalog.c).
 */
typedef struct UsCatalog
{
	Oid			namespace_oid;
	Oid			users_relid;
	Oid			users_pkey_relid;	/* unique index on id */
	Oid			users_email_relid;	/* unique index on lower(email) */
	Oid			count_deltas_relid;
	Oid			user_info_typid;
	Oid			owner;			/* owner of user_service.users */
} UsCatalog;

/* Attribute numbers of user_service.users (fixed by the install script). */
#define Anum_users_id				1
#define Anum_users_name				2
#define Anum_users_email			3
#define Anum_users_password_hash	4
#define Anum_users_created_at		5
#define Anum_users_updated_at		6
#define Natts_users					6

/* Attribute count of user_service.user_info. */
#define Natts_user_info				5

/* catalog.c */
extern const UsCatalog *us_catalog(void);
extern Oid	us_lookup_rel(const char *name, Oid nsp);
extern void us_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *argname);

typedef struct UsSavedUser
{
	Oid			userid;
	int			sec_context;
} UsSavedUser;
extern void us_spi_begin(UsSavedUser *saved);
extern void us_spi_end(const UsSavedUser *saved);

/*
 * An SQL statement run through SPI, prepared on first use and kept for the
 * backend's life.  It is analysed and run with pg_catalog alone on the
 * search_path (see us_spi_run), and names its tables schema-qualified.
 */
#define US_MAX_ARGS 8
typedef struct UsStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[US_MAX_ARGS];
	SPIPlanPtr	plan;
	int			cursor_options; /* CURSOR_OPT_CUSTOM_PLAN: always plan for
								 * the values at hand */
} UsStatement;

extern int	us_spi_run(UsStatement *stmt, Datum *args, const char *nulls,
					   bool read_only, long tcount);

/* password.c */
extern bool us_sodium_ready;
typedef struct UsPhc
{
	int			type;			/* argon2_type */
	uint32		version;
	uint32		m_cost;			/* KiB */
	uint32		t_cost;
	uint32		lanes;
	uint8	   *salt;
	uint32		saltlen;
	uint8	   *hash;
	uint32		hashlen;
} UsPhc;

extern char *us_password_hash(const char *password, size_t len);
extern bool us_phc_parse(const char *phc, UsPhc *out);
extern bool us_password_verify(const UsPhc *phc, const char *password, size_t len);
extern bool us_phc_is_current(const UsPhc *phc);
extern void us_password_dummy_work(const char *password, size_t len);

/* users.c: the operations, shared by the SQL API and the batch engine */
extern void us_user_create(text *name, text *email, text *password,
						   Datum *values, bool *nulls);
extern void us_user_update(int64 id, text *name, text *email,
						   Datum *values, bool *nulls);
extern void us_user_delete(int64 id);
extern void us_user_delete_many(const int64 *ids, int n, bool *found);
extern void us_user_set_password(int64 id, text *password);
extern void us_compact_user_count(void);

/* jobs.c */
#define US_GROUP_MAX	100		/* items claimed per transaction, at most */
#define US_MAX_WORKERS	32		/* upper bound of user_service.workers */

typedef struct UsWorkerSlot UsWorkerSlot;
extern int	us_process_group(UsWorkerSlot *slot, int max_items,
							 int64 *check_batch, bool *work_deferred);
extern bool us_mark_batch_finished(int64 batch_id);
extern bool us_batch_tables_exist(void);
extern int64 us_purge_batches(void);

/* worker.c */
extern void us_shmem_init_hooks(void);
extern void us_register_launcher(void);
extern void us_wake_workers_at_commit(void);
extern void us_wake_waiters_at_commit(void);
extern void us_slot_publish(UsWorkerSlot *slot, int64 batch_id, const int32 *items, int n);
extern void us_slot_clear(UsWorkerSlot *slot);
extern bool us_item_running(int64 batch_id, int32 item);
extern void us_wait_for_batches(long timeout_ms);
extern void us_wait_for_batches_done(void);

/* redact.c */
extern bool user_service_redact_log;
extern void us_redact_init(void);
extern void us_password_call(void);

/* 1.2: importing users with argon2 hashes made elsewhere */
extern const char *us_phc_import_problem(const char *phc);	/* password.c */
extern void us_user_import(text *name, text *email, const char *password_hash,
						   Datum *values, bool *nulls);	/* users.c */

#endif							/* USER_SERVICE_H */
