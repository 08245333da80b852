/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Keep plaintext passwords out of the server log and pg_stat_activity.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "user_service.h"
