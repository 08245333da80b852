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

extern bool us_shard_config(int64 *count, int64 *shard);
extern void us_shard_check_place(int64 count, int64 shard);

#endif							/* US_SHARD_H */
