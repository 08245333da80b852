/*-------------------------------------------------------------------------
 *
 * proxy.c
 *		The entry point of every API function of a router (the
 *		user_service_proxy extension): call the function of the same name
 *		and arguments in schema user_service_proxy, which reaches the shards
 *		through PL/Proxy, and give its errors the single-node form.
 *
 * PL/Proxy reports a shard's error with its SQLSTATE but with the message
 * "<function>(<nargs>): [<db>] REMOTE ERROR: <message>", the detail and
 * hint prefixed "Remote detail: " and "Remote hint: ", and a context of its
 * own.  The API's contract is the single node's SQLSTATE and message, so
 * the prefixes go and the context with them (it would show the router's
 * internals); the constraint of a unique violation, which PL/Proxy loses,
 * is named again.  A shard it cannot reach is XX000 "PQconnectStart: ..." from
 * PL/Proxy: it becomes 08001 naming the shard (matched by the host and port
 * libpq names against the partitions' connection strings) with libpq's
 * text as the detail; a connection lost on the way becomes 08006.
 *
 * The errors that pass through here are either a shard's (whose own log
 * hook has already redacted what needed it before sending) or the router's
 * own: both are re-raised in this extension's message domain, so that the
 * router's log hook (redact.c) keeps their text, which is the API's.
 *
 * After a remote error PL/Proxy drops the connection, and says so to the
 * client on the next call (NOTICE "PL/Proxy: dropping stale conn"): noise
 * a single node never sends, so the call runs with client_min_messages
 * raised to warning (as a SET clause of the function would).
 *
 * The call runs in a subtransaction so that, after an error, the catalog
 * can be read to name the shard.  Functions that take a password mark the
 * statement for redaction first, as the single-node functions do.
 *
 *-------------------------------------------------------------------------
 */
#include "us_common.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "batch.h"
#include "catalog.h"
#include "redact.h"

PG_FUNCTION_INFO_V1(proxy_call);
PG_FUNCTION_INFO_V1(proxy_check_batch);

#define US_PROXY_SCHEMA		"user_service_proxy"
#define US_PROXY_CLUSTER	"user_service_cluster"

/* What a call site keeps between calls (fn_extra). */
typedef struct ProxyTarget
{
	FmgrInfo	flinfo;			/* the function in user_service_proxy */
	bool		takes_password;
} ProxyTarget;

static ProxyTarget *
proxy_target(FunctionCallInfo fcinfo)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	ProxyTarget *target = flinfo->fn_extra;
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			nsp;
	Oid			inner;
	char	   *name;

	if (target != NULL)
		return target;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(flinfo->fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", flinfo->fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	name = pstrdup(NameStr(proc->proname));
	nsp = get_namespace_oid(US_PROXY_SCHEMA, true);
	inner = !OidIsValid(nsp) ? InvalidOid :
		GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(name),
						PointerGetDatum(&proc->proargtypes), ObjectIdGetDatum(nsp));
	ReleaseSysCache(tup);
	if (!OidIsValid(inner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function %s has no counterpart in schema %s", name, US_PROXY_SCHEMA),
				 errhint("Reinstall the extension user_service_proxy.")));

	target = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(ProxyTarget));
	fmgr_info_cxt(inner, &target->flinfo, flinfo->fn_mcxt);
	target->takes_password = us_is_password_function(name);
	flinfo->fn_extra = target;
	return target;
}

/* Drop a prefix ending in marker from *s, if it is there. */
static void
strip_through(char **s, const char *marker)
{
	char	   *p;

	if (*s == NULL || (p = strstr(*s, marker)) == NULL)
		return;
	*s = pstrdup(p + strlen(marker));
}

/* Drop a leading prefix from *s, if it is there. */
static void
strip_prefix(char **s, const char *prefix)
{
	if (*s != NULL && strncmp(*s, prefix, strlen(prefix)) == 0)
		*s = pstrdup(*s + strlen(prefix));
}

/* The value of one keyword of a libpq connection string, or NULL. */
static char *
conninfo_value(const char *conninfo, const char *keyword)
{
	const char *p = conninfo;
	size_t		klen = strlen(keyword);

	while (*p)
	{
		const char *k;
		size_t		n;
		StringInfoData v;

		while (isspace((unsigned char) *p))
			p++;
		k = p;
		while (*p && *p != '=' && !isspace((unsigned char) *p))
			p++;
		n = p - k;
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '=')
			return NULL;		/* not a keyword/value string (a URI) */
		p++;
		while (isspace((unsigned char) *p))
			p++;
		initStringInfo(&v);
		if (*p == '\'')
		{
			for (p++; *p && *p != '\''; p++)
			{
				if (*p == '\\' && p[1])
					p++;
				appendStringInfoChar(&v, *p);
			}
			if (*p)
				p++;
		}
		else
			while (*p && !isspace((unsigned char) *p))
			{
				if (*p == '\\' && p[1])
					p++;
				appendStringInfoChar(&v, *p++);
			}
		if (n == klen && strncmp(k, keyword, klen) == 0)
			return v.data;
		pfree(v.data);
	}
	return NULL;
}

/*
 * Does libpq's message about a failed connection name the server of this
 * connection string?  libpq says 'on socket "<dir>/.s.PGSQL.<port>"' or
 * 'at "<host>" (<addr>), port <port>'.
 */
static bool
message_names_server(const char *message, const char *conninfo)
{
	char	   *host = conninfo_value(conninfo, "host");
	char	   *port = conninfo_value(conninfo, "port");
	char		buf[1024];

	if (port == NULL)
		port = "5432";
	if (host == NULL)
		host = conninfo_value(conninfo, "hostaddr");
	if (host == NULL || host[0] == '\0')
		return false;
	if (host[0] == '/' || host[0] == '@')
	{
		snprintf(buf, sizeof(buf), "socket \"%s/.s.PGSQL.%s\"", host, port);
		return strstr(message, buf) != NULL;
	}
	snprintf(buf, sizeof(buf), "\"%s\"", host);
	if (strstr(message, buf) == NULL)
		return false;
	snprintf(buf, sizeof(buf), "port %s ", port);
	return strstr(message, buf) != NULL;
}

/* The partition of the cluster whose server libpq's message names, or -1. */
static int
unreachable_partition(const char *message)
{
	ForeignServer *server = GetForeignServerByName(US_PROXY_CLUSTER, true);
	ListCell   *lc;
	int			found = -1;

	if (server == NULL)
		return -1;
	foreach(lc, server->options)
	{
		DefElem    *opt = lfirst(lc);
		char	   *end;
		long		p;

		if (opt->defname[0] != 'p' || !isdigit((unsigned char) opt->defname[1]))
			continue;
		p = strtol(opt->defname + 1, &end, 10);
		if (*end != '\0' || !message_names_server(message, defGetString(opt)))
			continue;
		if (found >= 0)
			return -1;			/* two partitions on one server: ambiguous */
		found = (int) p;
	}
	return found;
}

/*
 * Rewrite a caught error into the single-node form (see the header).
 * Runs outside the failed subtransaction, so it may read the catalog.
 */
static void
rewrite_error(ErrorData *edata)
{
	bool		remote = edata->message && strstr(edata->message, "REMOTE ERROR: ") != NULL;

	if (remote)
	{
		strip_through(&edata->message, "REMOTE ERROR: ");
		strip_prefix(&edata->detail, "Remote detail: ");
		strip_prefix(&edata->hint, "Remote hint: ");

		/*
		 * PL/Proxy drops the constraint fields; the API's only unique
		 * violation is users_email_key's, which drivers report by name.
		 */
		if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && edata->constraint_name == NULL)
		{
			edata->schema_name = pstrdup("user_service");
			edata->table_name = pstrdup("users");
			edata->constraint_name = pstrdup("users_email_key");
		}
	}
	else if (edata->sqlerrcode == ERRCODE_INTERNAL_ERROR && edata->message &&
			 strncmp(edata->message, "PL/Proxy function ", 18) == 0)
	{
		/* PL/Proxy's own: "PL/Proxy function f(n): [db] <what>" */
		char	   *what = edata->message;
		bool		connect;
		int			partition;

		strip_through(&what, "] ");
		connect = strncmp(what, "PQconnectStart", 14) == 0 ||
			strncmp(what, "PQconnectPoll", 13) == 0;
		if (connect || strstr(what, "connection") != NULL)
		{
			strip_prefix(&what, "PQconnectStart: ");
			strip_prefix(&what, "PQconnectPoll: ");
			partition = unreachable_partition(what);
			edata->sqlerrcode = connect ?
				ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION :
				ERRCODE_CONNECTION_FAILURE;
			if (partition >= 0)
				edata->message = psprintf(connect ?
										  "could not connect to shard %d of cluster \"%s\"" :
										  "lost the connection to shard %d of cluster \"%s\"",
										  partition, US_PROXY_CLUSTER);
			else
				edata->message = psprintf(connect ?
										  "could not connect to a shard of cluster \"%s\"" :
										  "lost the connection to a shard of cluster \"%s\"",
										  US_PROXY_CLUSTER);
			edata->detail = pstrdup(what);
			edata->hint = pstrdup("The shard's server is down or unreachable: retry when it is back.");
		}
	}
	edata->context = NULL;
	edata->internalquery = NULL;
	edata->internalpos = 0;
	edata->domain = US_TEXTDOMAIN;
	edata->context_domain = US_TEXTDOMAIN;
	edata->filename = __FILE__;
	edata->lineno = __LINE__;
	edata->funcname = "proxy_call";
}

/*
 * proxy_call: the C body of every API function of a router.
 */
Datum
proxy_call(PG_FUNCTION_ARGS)
{
	ProxyTarget *target = proxy_target(fcinfo);
	MemoryContext callcxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	Datum		result = (Datum) 0;
	int			nestlevel;

	if (target->takes_password)
		us_password_call();

	InitFunctionCallInfoData(*inner, &target->flinfo, fcinfo->nargs,
							 fcinfo->fncollation, fcinfo->context, fcinfo->resultinfo);
	for (int i = 0; i < fcinfo->nargs; i++)
		inner->args[i] = fcinfo->args[i];

	nestlevel = NewGUCNestLevel();
	if (client_min_messages < WARNING)
		(void) set_config_option("client_min_messages", "warning", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(callcxt);
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callcxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(callcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callcxt);
		CurrentResourceOwner = owner;
		AtEOXact_GUC(false, nestlevel);
		rewrite_error(edata);
		ReThrowError(edata);
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nestlevel);

	fcinfo->isnull = inner->isnull;
	return result;
}

/*
 * proxy_check_batch(kind text, items jsonb, concurrency int) RETURNS int
 *		On a router: check a whole submission as a single node's
 *		submit_batch does, with its errors (item numbers as submitted), so
 *		that no shard stores anything of a bad one; returns the number of
 *		items.  The shards check their extension's support of the kind when
 *		they store their parts.
 */
Datum
proxy_check_batch(PG_FUNCTION_ARGS)
{
	Jsonb	   *items;
	int32		concurrency = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);

	us_arg_not_null(fcinfo, 0, "kind");
	us_arg_not_null(fcinfo, 1, "items");
	items = PG_GETARG_JSONB_P(1);
	(void) us_batch_check(text_to_cstring(PG_GETARG_TEXT_PP(0)), items,
						  !PG_ARGISNULL(2), &concurrency, false);
	PG_RETURN_INT32(JB_ROOT_COUNT(items));
}
