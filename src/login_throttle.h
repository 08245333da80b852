/*-------------------------------------------------------------------------
 *
 * login_throttle.h
 *		Per-account throttling of failed logins (login_throttle.c).  The
 *		email is given as the extension compares emails: trimmed, NFC,
 *		lower-cased.
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_LOGIN_THROTTLE_H
#define US_LOGIN_THROTTLE_H

#include "us_common.h"

#include "datatype/timestamp.h"

#define US_THROTTLE_KEY_BYTES	16

extern void us_login_throttle_init(void);
extern bool us_login_state_available(void);
extern bool us_login_begin(const char *email);
extern bool us_login_end(bool succeeded);
extern void us_login_abandon(void);
extern bool us_login_reset(const char *email);
extern bool us_login_state(const char *email, int32 *failures,
						   TimestampTz *window_start, TimestampTz *locked_until);

#endif							/* US_LOGIN_THROTTLE_H */
