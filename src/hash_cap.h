/*-------------------------------------------------------------------------
 *
 * hash_cap.h
 *		The server-wide cap on concurrent password hashing (hash_cap.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_HASH_CAP_H
#define US_HASH_CAP_H

#include "us_common.h"

extern void us_hash_cap_init(void);
extern bool us_hash_begin(void);
extern void us_hash_end(void);

#endif							/* US_HASH_CAP_H */
