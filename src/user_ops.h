/*-------------------------------------------------------------------------
 *
 * user_ops.h
 *		Operations on users, shared by the SQL API and the batch engine:
 *		input rules (validation.c), reads and writes of user_service.users
 *		(user_ops.c), and the exact user count (user_count.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_USER_OPS_H
#define US_USER_OPS_H

#include "us_common.h"

#include "access/tupdesc.h"
#include "utils/snapshot.h"

/* Input limits of the API. */
#define US_NAME_MAX_CHARS		200
#define US_EMAIL_MAX_CHARS		254
#define US_PASSWORD_MIN_BYTES	8
#define US_PASSWORD_MAX_BYTES	1024

/* validation.c: each returns the value to store, or raises 22023 */
extern char *us_trimmed(text *t);
extern char *us_nfc(char *s);
extern char *us_valid_name(text *t);
extern char *us_valid_email(text *t);
extern void us_check_password(text *t);
extern char *us_lower_email(const char *email);
extern char *us_email_key(text *t);

/*
 * user_ops.c.  A row comes back users-ordered in values/nulls
 * (Natts_users entries, see catalog.h).
 */
extern void us_user_not_found(int64 id) pg_attribute_noreturn();
extern void us_email_taken(const char *email) pg_attribute_noreturn();
extern bool us_user_claim_email(text *email, int64 user_id);
extern TupleDesc us_user_info_desc(void);
extern Datum us_user_info(TupleDesc desc, const Datum *values, const bool *nulls);
extern bool us_user_get(int64 id, Datum *info);
extern void us_user_create(text *name, text *email, text *password,
						   Datum *values, bool *nulls);
extern void us_user_import(text *name, text *email, const char *password_hash,
						   Datum *values, bool *nulls);
extern void us_user_update(int64 id, text *name, text *email,
						   Datum *values, bool *nulls);
extern void us_user_delete(int64 id, Datum *values, bool *nulls);
extern void us_user_delete_many(const int64 *ids, int n, bool *found);
extern void us_user_import_many(text **names, text **emails, const char **hashes, int n,
								int64 *ids, bool *applied);
extern void us_user_set_password(int64 id, text *password);
extern bool us_user_verify(Datum email, text *password);

/* user_count.c */
#define US_FOLD_ROWS	1000	/* list_users folds the count past this */
extern int64 us_count_users(Snapshot snapshot, uint64 *rows);
extern void us_compact_user_count(void);
extern void us_fold_user_count_if_long(uint64 rows);

/* user_list.c */
extern void us_list_init(void);

#endif							/* US_USER_OPS_H */
