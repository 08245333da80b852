/*-------------------------------------------------------------------------
 *
 * user_service.c
 *		Module magic and load-time initialisation of the user_service
 *		extension.
 *
 * The library works when loaded on demand (the first call of an API
 * function), so the user API never needs shared_preload_libraries.  The
 * background workers of the batch engine are registered only when the
 * library is preloaded.  Each subsystem defines its own GUCs in its init.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "batch.h"
#include "hash_cap.h"
#include "login_throttle.h"
#include "password.h"
#include "redact.h"
#include "slots.h"
#include "user_ops.h"
#include "workers.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	us_password_init();
	us_hash_cap_init();
	us_login_throttle_init();
	us_list_init();
	us_slots_init();
	us_batch_submit_init();
	us_batch_run_init();
	us_batch_housekeeping_init();
	us_batches_init();
	us_redact_init();
	MarkGUCPrefixReserved("user_service");

	if (process_shared_preload_libraries_in_progress)
		us_register_launcher();
}
