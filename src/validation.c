/*-------------------------------------------------------------------------
 *
 * validation.c
 *		The input rules of the user API: names, email addresses, passwords.
 *		Each check raises 22023 with a message that never shows a password.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/unicode_norm.h"
#include "mb/pg_wchar.h"
#include "utils/formatting.h"

#include "user_ops.h"

static inline bool
us_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\f' || c == '\v';
}

/*
 * us_trimmed
 *		The text without leading and trailing white space, as a C string.
 */
char *
us_trimmed(text *t)
{
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);

	while (len > 0 && us_is_space(*s))
		s++, len--;
	while (len > 0 && us_is_space(s[len - 1]))
		len--;
	return pnstrdup(s, len);
}

/*
 * us_nfc
 *		s in Unicode Normalization Form C, which is how emails are stored and
 *		looked up: "jos\u00e9" typed composed or decomposed is one address, as
 *		PostgreSQL's normalize(email, NFC) would make it.  Only in a UTF-8
 *		database (PostgreSQL normalizes nothing in other encodings); ASCII
 *		is NFC already.  Returns s itself when it is normalized, or longer
 *		than any email can be.
 */
char *
us_nfc(char *s)
{
	const char *p;
	size_t		len;
	pg_wchar   *in;
	pg_wchar   *out;
	char	   *result;
	char	   *q;
	int			n;

	if (GetDatabaseEncoding() != PG_UTF8)
		return s;
	/* longer than any email: the caller refuses it on its length anyway */
	if (strlen(s) > US_EMAIL_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN)
		return s;
	for (p = s; *p; p++)
		if (IS_HIGHBIT_SET(*p))
			break;
	if (*p == '\0')
		return s;

	len = strlen(s);
	in = palloc((len + 1) * sizeof(pg_wchar));
	n = pg_mb2wchar_with_len(s, in, (int) len);
	in[n] = 0;
	if (unicode_is_normalized_quickcheck(UNICODE_NFC, in) == UNICODE_NORM_QC_YES)
	{
		pfree(in);
		return s;
	}
	out = unicode_normalize(UNICODE_NFC, in);
	pfree(in);
	for (n = 0; out[n]; n++)
		;
	result = q = palloc(n * MAX_MULTIBYTE_CHAR_LEN + 1);
	for (int i = 0; i < n; i++)
	{
		unicode_to_utf8(out[i], (unsigned char *) q);
		q += pg_utf_mblen((const unsigned char *) q);
	}
	*q = '\0';
	pfree(out);
	return result;
}

/*
 * us_is_invisible
 *		Unicode code points that show nothing or move text around: C0 and C1
 *		controls, DEL, the white space of categories Zs, Zl and Zp, the
 *		zero-width and bidirectional formatting characters, and the byte
 *		order mark.
 */
static bool
us_is_invisible(pg_wchar c)
{
	return c <= 0x20 || (c >= 0x7f && c <= 0xa0) ||
		c == 0x00ad || c == 0x1680 || c == 0x180e ||
		(c >= 0x2000 && c <= 0x200f) ||
		(c >= 0x2028 && c <= 0x202f) ||
		(c >= 0x205f && c <= 0x206f) ||
		c == 0x3000 || c == 0xfeff;
}

/*
 * us_count_invisible
 *		How many of the characters of s are invisible (above).  Beyond ASCII
 *		only in a UTF-8 database, where characters are Unicode code points;
 *		in other encodings only ASCII white space and controls count.
 */
static int
us_count_invisible(const char *s)
{
	int			n = 0;

	if (GetDatabaseEncoding() != PG_UTF8)
	{
		for (const char *p = s; *p; p++)
			if ((unsigned char) *p <= ' ' || *p == 0x7f)
				n++;
		return n;
	}
	for (const unsigned char *p = (const unsigned char *) s; *p; p += pg_utf_mblen(p))
		if (us_is_invisible(utf8_to_unicode(p)))
			n++;
	return n;
}

/*
 * us_valid_name
 *		Trimmed name: at least one visible character, at most
 *		US_NAME_MAX_CHARS characters.
 */
char *
us_valid_name(text *t)
{
	char	   *name = us_trimmed(t);

	if (name[0] == '\0' || us_count_invisible(name) == pg_mbstrlen(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name must not be empty")));
	if (pg_mbstrlen(name) > US_NAME_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name must be at most %d characters", US_NAME_MAX_CHARS)));
	return name;
}

/*
 * us_email_well_formed
 *		Exactly one '@', a non-empty local part, a domain that has a dot
 *		(neither first nor last, never two in a row), and no white space,
 *		control or invisible formatting character anywhere.
 */
static bool
us_email_well_formed(const char *email)
{
	const char *at = strchr(email, '@');
	const char *domain;
	size_t		dlen;

	if (us_count_invisible(email) > 0)
		return false;

	if (at == NULL || at == email || strchr(at + 1, '@') != NULL)
		return false;

	domain = at + 1;
	dlen = strlen(domain);
	return dlen >= 3 &&
		strchr(domain, '.') != NULL &&
		domain[0] != '.' && domain[dlen - 1] != '.' &&
		strstr(domain, "..") == NULL;
}

/*
 * us_valid_email
 *		Trimmed email address in NFC (us_nfc), checked by the rules above
 *		and for length.
 */
char *
us_valid_email(text *t)
{
	char	   *email = us_nfc(us_trimmed(t));

	if (pg_mbstrlen(email) > US_EMAIL_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email must be at most %d characters", US_EMAIL_MAX_CHARS)));
	if (!us_email_well_formed(email))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid email address"),
				 errdetail("An email address needs exactly one \"@\", a non-empty local part, "
						   "and a domain containing a dot, without spaces.")));
	return email;
}

/*
 * us_check_password
 *		Length rule for new passwords, in bytes.  The message never shows the
 *		password.
 */
void
us_check_password(text *t)
{
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len < US_PASSWORD_MIN_BYTES || len > US_PASSWORD_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password must be between %d and %d bytes long",
						US_PASSWORD_MIN_BYTES, US_PASSWORD_MAX_BYTES)));
}

/*
 * us_lower_email
 *		The key of users_email_key for an email: lower() under the column's
 *		collation (the database default), exactly as the index computes it.
 */
char *
us_lower_email(const char *email)
{
	return str_tolower(email, strlen(email), DEFAULT_COLLATION_OID);
}

/*
 * us_email_key
 *		An email as the extension compares emails: trimmed, in NFC,
 *		lower-cased (the login throttle's key).
 */
char *
us_email_key(text *t)
{
	return us_lower_email(us_nfc(us_trimmed(t)));
}
