/*-------------------------------------------------------------------------
 *
 * redact.h
 *		Keeping plaintext passwords out of the server log and
 *		pg_stat_activity (redact.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_REDACT_H
#define US_REDACT_H

#include "us_common.h"

extern void us_redact_init(void);
extern void us_password_call(void);
extern bool us_is_password_function(const char *name);

#endif							/* US_REDACT_H */
