/*-------------------------------------------------------------------------
 *
 * shard.h
 *		A database's place among the shards of a cluster (shard.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_SHARD_H
#define US_SHARD_H

#include "us_common.h"

extern void us_shard_check(void);

#endif							/* US_SHARD_H */
