/*-------------------------------------------------------------------------
 *
 * user_service.h
 *		Declarations shared by the files of the user_service extension.
 *
 * user_service.c	module magic, _PG_init, GUCs
 * catalog.c		locating the extension's relations, running as their owner
 * password.c		argon2 hashing and verification, PHC strings
 * users.c			the SQL-callable user API and the user-count trigger
 *
 *-------------------------------------------------------------------------
 */
#ifndef USER_SERVICE_H
#define USER_SERVICE_H

#include "postgres.h"

#include "executor/spi.h"

/* GUCs (user_service.c) */
extern int	user_service_argon2_memory_kib;
extern int	user_service_argon2_iterations;
extern int	user_service_argon2_parallelism;
extern int	user_service_max_per_page;

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

typedef struct UsSavedUser
{
	Oid			userid;
	int			sec_context;
} UsSavedUser;
extern void us_become_owner(const UsCatalog *cat, UsSavedUser *saved);
extern void us_restore_user(const UsSavedUser *saved);
extern SPIPlanPtr us_prepare_plan(const char *sql, int nargs, const Oid *argtypes);

/* password.c */
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

#endif							/* USER_SERVICE_H */
