/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Keep plaintext passwords out of the server log and pg_stat_activity.
 *
 * A password reaches the server inside the text of a statement (a literal),
 * or as a bound parameter.  PostgreSQL then copies it into log lines it
 * writes itself: "statement: ..." (log_statement), "duration: ..."
 * (log_min_duration_statement), "parameters: $1 = '...'" details
 * (log_parameter_max_length), the STATEMENT line of an error
 * (log_min_error_statement), portal contexts with parameters
 * (log_parameter_max_length_on_error), and error messages that quote the
 * input they could not parse (a malformed jsonb literal).
 *
 * Every record passes through emit_log_hook before it is written.  When
 * user_service.redact_log is on and the record is "sensitive", the hook
 * replaces the string literals and parameter values in it by '***':
 *
 * - a record is sensitive when the current statement has called one of
 *   the functions that take a password (which covers duration and error
 *   lines of calls through a wrapper function), or when its statement
 *   (debug_query_string), its detail, context or internal query, or (for
 *   statement log lines) its message names one of them; then everything
 *   below applies.  When they only contain the word password (a wrapper
 *   function's name, a batch item's key), everything applies but to the
 *   primary message, which is what a client shows its user: an unrelated
 *   statement keeps its error text;
 * - only in databases that have the extension (and where that is not
 *   known yet: a session's first statement, the postmaster);
 * - statement log lines and "parameters:"/"prepare:" details are scanned
 *   as SQL: literals ('...', E'...', $tag$...$tag$) become '***',
 *   identifiers and comments are kept;
 * - messages, details and hints raised by this extension are kept as they
 *   are (they never contain a password: see the message conventions in
 *   user_ops.c); those raised by PostgreSQL itself have everything between
 *   their first and last quote replaced, since they may quote the input;
 * - the STATEMENT line of an error is suppressed (errhidestmt): the
 *   statement cannot be rewritten there.
 *
 * What the hook writes to edata also reaches the client (the hook runs
 * before the message is sent), which is why the extension's own messages,
 * whose texts are part of the API, are never touched.
 *
 * pg_stat_activity shows the statement text: a function that takes a
 * password replaces it, before it hashes, by the same redacted text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "mb/pg_wchar.h"
#include "parser/parser.h"
#include "port/atomics.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redact.h"

/* GUC variable, named after its GUC. */
static bool user_service_redact_log = true;

static emit_log_hook_type prev_emit_log_hook = NULL;

/* statement start time of the last statement that called a password function */
static TimestampTz password_statement_start = 0;

/*
 * What marks a record as carrying a password.  The names of the functions
 * that take one make it fully sensitive; the word "password" alone (a
 * wrapper function's name, a batch item's key) makes it sensitive except
 * for its primary message, which is what a client shows its user (a
 * statement like SELECT * FROM password_resets must keep "relation
 * "password_resets" does not exist").
 */
static const char *const password_functions[] = {
	"verify_password",
	"set_password",
	"create_user",
	"submit_batch",
	"import_user",
};
static const char *const password_words[] = {
	"password",
};

/* A single-byte lower-casing search, enough for ASCII keywords. */
static bool
has_word_of(const char *s, const char *const *words, size_t nwords)
{
	if (s == NULL)
		return false;
	for (const char *p = s; *p; p++)
	{
		for (size_t i = 0; i < nwords; i++)
		{
			const char *w = words[i];
			int			j = 0;

			while (w[j] && p[j] && pg_ascii_tolower((unsigned char) p[j]) == w[j])
				j++;
			if (w[j] == '\0')
				return true;
		}
	}
	return false;
}

/* Is this the name of one of the functions that take a password? */
bool
us_is_password_function(const char *name)
{
	for (size_t i = 0; i < lengthof(password_functions); i++)
		if (strcmp(name, password_functions[i]) == 0)
			return true;
	return false;
}

static bool
names_password_function(const char *s)
{
	return has_word_of(s, password_functions, lengthof(password_functions));
}

static bool
has_password_word(const char *s)
{
	return has_word_of(s, password_words, lengthof(password_words));
}

/*
 * Does this backend's database have the extension?  -1 while unknown (the
 * first statement of a session, the postmaster, a process without a
 * database): redacted as if it had.  Learnt where catalog lookups are safe,
 * after each statement's parse analysis (a syscache lookup of the schema),
 * never in the log hook, which may run in a failing transaction.
 */
static int	us_database_has_extension = -1;
static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;

static void
us_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
	/* once found, kept (a DROP EXTENSION leaves it redacting, the safe way) */
	if (us_database_has_extension != 1 && IsTransactionState() && OidIsValid(MyDatabaseId))
		us_database_has_extension =
			OidIsValid(get_namespace_oid("user_service", true)) ? 1 : 0;
}

#define REDACTED "***"

/*
 * The hook runs while a message is being reported, possibly an
 * out-of-memory error, and must not throw: every allocation here is
 * MCXT_ALLOC_NO_OOM, and a field that cannot be redacted for want of memory
 * is overwritten in place instead.  Replaced fields are freed: errfinish
 * frees the fields of a LOG record, and ErrorContext is not reset between
 * records that are not errors.
 */
typedef struct RedactBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} RedactBuf;

static bool
buf_init(RedactBuf *buf, size_t srclen)
{
	/* a literal of at least two bytes becomes five ('***'), so 3x is ample */
	if (srclen > (MaxAllocSize - 16) / 3)
		return false;			/* too long to copy: overwritten in place */
	buf->cap = srclen * 3 + 16;
	buf->len = 0;
	buf->data = palloc_extended(buf->cap, MCXT_ALLOC_NO_OOM);
	if (buf->data)
		buf->data[0] = '\0';
	return buf->data != NULL;
}

static void
buf_put(RedactBuf *buf, const char *s, size_t n)
{
	if (buf->len + n + 1 > buf->cap)
		n = buf->cap - buf->len - 1;
	memcpy(buf->data + buf->len, s, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
}

/* the length of a dollar-quote delimiter ($$ or $tag$) at p, or 0 */
static int
dollar_tag_len(const char *p)
{
	int			n = 1;

	if (p[0] != '$')
		return 0;
	if (p[1] == '$')
		return 2;
	/* a tag starts like an identifier, so "$1" is a parameter, not a quote */
	if (!(isalpha((unsigned char) p[1]) || p[1] == '_' || IS_HIGHBIT_SET(p[1])))
		return 0;
	while (isalnum((unsigned char) p[n]) || p[n] == '_' || IS_HIGHBIT_SET(p[n]))
		n++;
	return p[n] == '$' ? n + 1 : 0;
}

static bool
is_ident_char(char c)
{
	return isalnum((unsigned char) c) || c == '_' || IS_HIGHBIT_SET(c);
}

/*
 * redact_sql_into
 *		Copy n bytes of SQL text with every string literal replaced by '***'.
 *
 * Comments and (when keep_identifiers) double-quoted identifiers are copied
 * whole, so that a quote inside them does not start a literal.  Text that
 * quotes SQL inside double quotes (a context line: SQL statement "...")
 * is scanned with keep_identifiers false.  An unterminated literal runs to
 * the end of the text (a truncated parameter value, say).
 *
 * With sql_escapes, backslashes escape in E'...' literals, and in all of
 * them when standard_conforming_strings is off.  Without, never: PostgreSQL
 * writes parameter values ('...' with '' doubled) that way, whatever the
 * session's setting.
 */
static void
redact_sql_into(RedactBuf *buf, const char *src, size_t n, bool keep_identifiers,
				bool sql_escapes)
{
	const char *p = src;
	const char *stop = src + n;

	while (p < stop)
	{
		const char *start = p;
		int			tag;

		if (p[0] == '-' && p + 1 < stop && p[1] == '-')
		{
			while (p < stop && *p != '\n')
				p++;
			buf_put(buf, start, p - start);
		}
		else if (p[0] == '/' && p + 1 < stop && p[1] == '*')
		{
			int			depth = 1;

			p += 2;
			while (p < stop && depth > 0)
			{
				if (p + 1 < stop && p[0] == '/' && p[1] == '*')
					depth++, p += 2;
				else if (p + 1 < stop && p[0] == '*' && p[1] == '/')
					depth--, p += 2;
				else
					p++;
			}
			buf_put(buf, start, p - start);
		}
		else if (*p == '"' && keep_identifiers)
		{
			p++;
			while (p < stop && !(p[0] == '"' && (p + 1 == stop || p[1] != '"')))
				p += (p[0] == '"') ? 2 : 1;
			if (p < stop)
				p++;
			buf_put(buf, start, Min(p, stop) - start);
		}
		else if (*p == '\'')
		{
			/* E'...' and, with standard_conforming_strings off, '...' take backslashes */
			bool		backslash = sql_escapes &&
				(!standard_conforming_strings ||
				 (p > src && (p[-1] == 'E' || p[-1] == 'e') &&
				  (p - 1 == src || !is_ident_char(p[-2]))));

			p++;
			while (p < stop)
			{
				if (backslash && p[0] == '\\' && p + 1 < stop)
					p += 2;
				else if (p[0] == '\'' && p + 1 < stop && p[1] == '\'')
					p += 2;
				else if (p[0] == '\'')
					break;
				else
					p++;
			}
			if (p < stop)
				p++;
			buf_put(buf, "'" REDACTED "'", strlen(REDACTED) + 2);
		}
		else if ((tag = dollar_tag_len(p)) > 0 && !(p > src && is_ident_char(p[-1])))
		{
			const char *end = p + tag;

			while (end + tag <= stop && strncmp(end, p, tag) != 0)
				end++;
			p = (end + tag <= stop) ? end + tag : stop;
			buf_put(buf, "'" REDACTED "'", strlen(REDACTED) + 2);
		}
		else
			buf_put(buf, p++, 1);
	}
}

static char *
redact_sql(const char *src, bool keep_identifiers, bool sql_escapes)
{
	RedactBuf	buf;
	size_t		n = strlen(src);

	if (!buf_init(&buf, n))
		return NULL;
	redact_sql_into(&buf, src, n, keep_identifiers, sql_escapes);
	return buf.data;
}

/*
 * redact_quoted
 *		Replace everything between the first and the last double quote, and
 *		between the first and the last single quote, of a message PostgreSQL
 *		wrote about the input (Token "..." is invalid).  Greedy, so that a
 *		quote inside the quoted input cannot end the redaction early.
 *		Returns src itself when nothing is quoted.
 */
static char *
redact_quoted(const char *src)
{
	RedactBuf	buf;
	const char *first = NULL;
	const char *last = NULL;

	for (const char *p = src; *p; p++)
	{
		if (*p == '"' || *p == '\'')
		{
			if (first == NULL)
				first = p;
			last = p;
		}
	}
	if (first == NULL || first == last)
		return unconstify(char *, src);
	if (!buf_init(&buf, strlen(src)))
		return NULL;
	buf_put(&buf, src, first - src + 1);
	buf_put(&buf, REDACTED, strlen(REDACTED));
	buf_put(&buf, last, strlen(last));
	return buf.data;
}

/*
 * redact_context
 *		A leading "JSON data, line N: <input>" line (the innermost callback's)
 *		loses the input.  The rest is scanned as SQL in one piece, since a
 *		literal or a parameter value may span lines: SQL statement "...",
 *		portal "..." with parameters: $1 = '...'.  Double quotes are not
 *		identifiers there (they delimit the statement).  With
 *		standard_conforming_strings off, a statement's '\'' and a parameter
 *		value's trailing backslash cannot both be read right, so everything
 *		from the first quote to the last goes.
 */
static char *
redact_context(const char *src)
{
	RedactBuf	buf;
	const char *rest = src;
	const char *eol;

	if (!buf_init(&buf, strlen(src)))
		return NULL;
	while (strncmp(rest, "JSON data, line ", 16) == 0 &&
		   strchr(rest, ':') != NULL &&
		   ((eol = strchr(rest, '\n')) == NULL || strchr(rest, ':') < eol))
	{
		buf_put(&buf, rest, strchr(rest, ':') - rest + 1);
		buf_put(&buf, " " REDACTED, strlen(REDACTED) + 1);
		if (eol == NULL)
			return buf.data;
		buf_put(&buf, "\n", 1);
		rest = eol + 1;
	}
	if (!standard_conforming_strings)
	{
		char	   *r = redact_quoted(rest);

		if (r == NULL)
			return NULL;
		buf_put(&buf, r, strlen(r));
	}
	else
		redact_sql_into(&buf, rest, strlen(rest), false, true);
	return buf.data;
}

/*
 * Put the redacted text r in place of *field.  r is the field itself when
 * nothing changed, NULL when it could not be computed for want of memory:
 * then the field is overwritten in place.
 */
static void
replace_field(char **field, char *r)
{
	if (*field == NULL || r == *field)
		return;
	if (r != NULL)
	{
		/* what it held may be a password: not left in freed memory */
		explicit_bzero(*field, strlen(*field));
		pfree(*field);
		*field = r;
	}
	else
		strlcpy(*field, REDACTED, strlen(*field) + 1);
}

/*
 * The postmaster's detail on a crashed process quotes that process's
 * pg_stat_activity text: a statement, or a worker's "batch 12: item 40
 * (create_user)".  It is scanned as SQL, and alone it makes only itself
 * sensitive, so that the message still names the process.
 */
static bool
is_crash_detail(const char *detail)
{
	return strncmp(detail, "Failed process was running: ", 28) == 0;
}

/* Is this one of the lines PostgreSQL writes to log a statement? */
static bool
is_statement_log(const ErrorData *edata)
{
	const char *id = edata->message_id;

	return id != NULL && edata->elevel == LOG &&
		(strncmp(id, "statement: ", 11) == 0 ||
		 strncmp(id, "duration: ", 10) == 0 ||
		 strncmp(id, "execute ", 8) == 0 ||
		 strncmp(id, "bind ", 5) == 0 ||
		 strncmp(id, "parse ", 6) == 0);
}

static bool
is_sql_detail(const char *detail)
{
	return strncmp(detail, "parameters: ", 12) == 0 ||
		strncmp(detail, "prepare: ", 9) == 0 ||
		is_crash_detail(detail);
}

/* parameter values never take backslash escapes; statements may */
static char *
redact_detail_sql(const char *detail)
{
	return redact_sql(detail, true, strncmp(detail, "parameters: ", 12) != 0);
}

/*
 * redact_record
 *		Redact the fields of a sensitive record in place; its primary message
 *		only when with_message (the record names a password function).
 *
 * Messages of this extension are kept whole (they are part of the API and
 * never contain a password); so are PostgreSQL's integrity-constraint
 * messages (class 23: constraint names and key values of columns that never
 * hold a plaintext password).  Other messages of PostgreSQL may quote the
 * input they failed on.
 */
static void
redact_record(ErrorData *edata, bool with_message)
{
	bool		keep_text = (edata->domain != NULL &&
							 strcmp(edata->domain, US_TEXTDOMAIN) == 0) ||
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION;

	if (edata->message && is_statement_log(edata))
		replace_field(&edata->message, redact_sql(edata->message, true, true));
	else if (edata->message && !keep_text && with_message)
		replace_field(&edata->message, redact_quoted(edata->message));
	if (edata->hint && !keep_text)
		replace_field(&edata->hint, redact_quoted(edata->hint));
	if (edata->detail && is_sql_detail(edata->detail))
		replace_field(&edata->detail, redact_detail_sql(edata->detail));
	else if (edata->detail && !keep_text)
		replace_field(&edata->detail, redact_quoted(edata->detail));
	if (edata->detail_log && is_sql_detail(edata->detail_log))
		replace_field(&edata->detail_log, redact_detail_sql(edata->detail_log));
	else if (edata->detail_log && !keep_text)
		replace_field(&edata->detail_log, redact_quoted(edata->detail_log));
	if (edata->context)
		replace_field(&edata->context, redact_context(edata->context));
	if (edata->internalquery)
		replace_field(&edata->internalquery, redact_sql(edata->internalquery, true, true));
	/* the statement itself cannot be rewritten: leave it out */
	edata->hide_stmt = true;
}

/*
 * Does the record name one of the password functions (names) or the word
 * password (words) where it shows SQL or input?
 */
static bool
record_mentions(const ErrorData *edata, bool (*mentions) (const char *))
{
	bool		crash_detail = edata->detail && is_crash_detail(edata->detail);

	return mentions(debug_query_string) ||
		(is_statement_log(edata) && mentions(edata->message)) ||
		(!crash_detail && mentions(edata->detail)) ||
		mentions(edata->detail_log) ||
		mentions(edata->context) ||
		mentions(edata->internalquery);
}

static void
us_emit_log_hook(ErrorData *edata)
{
	if (user_service_redact_log && edata->output_to_server)
	{
		bool		in_password_call = password_statement_start != 0 &&
			password_statement_start == GetCurrentStatementStartTimestamp();

		if (in_password_call ||
			(us_database_has_extension != 0 && record_mentions(edata, names_password_function)))
			redact_record(edata, true);
		else if (us_database_has_extension != 0 && record_mentions(edata, has_password_word))
			redact_record(edata, false);
		else if (edata->detail && is_crash_detail(edata->detail) &&
				 names_password_function(edata->detail))
			replace_field(&edata->detail, redact_detail_sql(edata->detail));
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * us_redact_init
 *		From _PG_init: the GUC, and the log hook.
 */
void
us_redact_init(void)
{
	DefineCustomBoolVariable("user_service.redact_log",
							 "Replace string literals and parameter values by *** in server "
							 "log records of statements that carry a password.",
							 "Also leaves out their STATEMENT line. See src/redact.c for "
							 "what is covered.",
							 &user_service_redact_log,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = us_emit_log_hook;
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = us_post_parse_analyze;
}

/*
 * us_password_call
 *		Called first thing by every function that takes a plaintext password:
 *		mark the current statement as one that carries a password (for the log
 *		hook), and, once per statement, replace its text in pg_stat_activity by
 *		the text with its literals redacted, before any hashing starts.  Not
 *		tied to redact_log: pg_stat_activity is readable by other roles.
 */
void
us_password_call(void)
{
	TimestampTz stmt_start = GetCurrentStatementStartTimestamp();

	if (password_statement_start == stmt_start)
		return;
	password_statement_start = stmt_start;

	if (debug_query_string != NULL && MyBEEntry != NULL &&
		(strchr(debug_query_string, '\'') || strchr(debug_query_string, '$')))
	{
		uint64		query_id = pgstat_get_my_query_id();
		/* pg_stat_activity keeps track_activity_query_size bytes: clip first */
		int			len = pg_mbcliplen(debug_query_string, strlen(debug_query_string),
									   pgstat_track_activity_query_size - 1);
		char	   *clipped = pnstrdup(debug_query_string, len);
		char	   *redacted = redact_sql(clipped, true, true);

		/*
		 * The shared buffer still holds the statement as PostgreSQL put it
		 * there; pgstat_report_activity writes the shorter text and its NUL
		 * only, which would leave the tail (a password near the end) behind.
		 */
		if (pgstat_track_activities && MyBEEntry->st_activity_raw != NULL)
		{
			PGSTAT_BEGIN_WRITE_ACTIVITY(MyBEEntry);
			explicit_bzero(MyBEEntry->st_activity_raw, pgstat_track_activity_query_size);
			PGSTAT_END_WRITE_ACTIVITY(MyBEEntry);
		}
		pgstat_report_activity(STATE_RUNNING, redacted ? redacted : REDACTED);
		pgstat_report_query_id(query_id, true);
		if (redacted)
			pfree(redacted);
		explicit_bzero(clipped, len);
		pfree(clipped);
	}
}
