/*-------------------------------------------------------------------------
 *
 * workers.h
 *		The background processes of the batch engine: the launcher
 *		(launcher.c) and the workers it starts (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef US_WORKERS_H
#define US_WORKERS_H

#include "us_common.h"

extern void us_register_launcher(void);

PGDLLEXPORT void user_service_launcher_main(Datum arg);
PGDLLEXPORT void user_service_worker_main(Datum arg);

#endif							/* US_WORKERS_H */
