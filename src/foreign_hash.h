/*-------------------------------------------------------------------------
 *
 * foreign_hash.h
 *		Password hashes made by other systems: import checks, verification
 *		(foreign_hash.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_FOREIGN_HASH_H
#define US_FOREIGN_HASH_H

#include "us_common.h"

extern const char *us_import_problem(const char *given, char **stored);
extern const char *us_hash_format_name(const char *stored);
extern bool us_foreign_verify(const char *stored, const char *password, size_t len,
							  bool *recognized);

#endif							/* US_FOREIGN_HASH_H */
