/*-------------------------------------------------------------------------
 *
 * kind_registry.h
 *		Batch kinds registered by users (kind_registry.c): their store, and
 *		calling a kind's handler as the role that submitted the batch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_KIND_REGISTRY_H
#define US_KIND_REGISTRY_H

#include "us_common.h"

typedef struct UsRegisteredKind
{
	Oid			handler;		/* InvalidOid: dropped (DROP ... CASCADE) */
	bool		grouped;		/* jsonb[] -> jsonb[] */
	int32		default_concurrency;	/* 0: none */
	bool		secrets;		/* items carry secrets */
} UsRegisteredKind;

extern bool us_registered_kind(const char *kind, bool lock, UsRegisteredKind *out);
extern void us_check_handler_privileges(Oid handler, Oid roleid);
extern void us_register_kind(const char *kind, Oid handler, int32 default_concurrency,
							 bool secrets);
extern void us_unregister_kind(const char *kind);
extern Datum us_call_handler(const char *kind, Oid handler, FmgrInfo *flinfo, Oid submitter,
							 Datum arg, bool *isnull);

#endif							/* US_KIND_REGISTRY_H */
