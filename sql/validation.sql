-- Every input rule: a violation raises the documented SQLSTATE and changes
-- nothing.  No message shows a password.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc
SET user_service.argon2_memory_kib = 1024;

SELECT id FROM user_service.create_user('Alice', 'alice@example.com', 'correct horse');

-- NULL where a value is required: 22004
SELECT s, pg_temp.try(s) FROM (VALUES
    ($$SELECT user_service.create_user(NULL, 'n1@example.com', 'password1')$$),
    ($$SELECT user_service.create_user('N', NULL, 'password1')$$),
    ($$SELECT user_service.create_user('N', 'n1@example.com', NULL)$$),
    ($$SELECT user_service.get_user(NULL)$$),
    ($$SELECT user_service.update_user(NULL, 'x')$$),
    ($$SELECT user_service.delete_user(NULL)$$),
    ($$SELECT user_service.set_password(NULL, 'password1')$$),
    ($$SELECT user_service.set_password(1, NULL)$$),
    ($$SELECT user_service.verify_password(NULL, 'password1')$$),
    ($$SELECT user_service.verify_password('alice@example.com', NULL)$$),
    ($$SELECT user_service.list_users(NULL)$$),
    ($$SELECT user_service.list_users(1, NULL)$$)
) AS t(s);

-- names: non-empty after trimming, at most 200 characters (multibyte counts as one)
CREATE FUNCTION pg_temp.show(v text) RETURNS text LANGUAGE sql AS
    $$SELECT CASE WHEN length(v) > 30 THEN left(v, 8) || '... (' || length(v) || ' chars)' ELSE v END$$;
SELECT pg_temp.show(n), pg_temp.try(format($$SELECT user_service.create_user(%L, 'n2@example.com', 'password1')$$, n)) AS result
  FROM (VALUES (''), ('   '), (E'\t\n '), (repeat('x', 201)), (repeat('é', 201))) AS t(n);
SELECT name = repeat('é', 200) AS multibyte_200_ok
  FROM user_service.create_user(repeat('é', 200), 'n3@example.com', 'password1');

-- Unicode white space, controls and invisible formatting characters (UTF-8
-- database): a name of nothing else is empty, an email must have none
SELECT to_hex(ascii(c)) AS code_point,
       pg_temp.try(format($$SELECT user_service.create_user(%L, 'n4@example.com', 'password1')$$, repeat(c, 3))) AS as_name,
       pg_temp.try(format($$SELECT user_service.create_user('N', %L, 'password1')$$, 'a' || c || 'b@example.com')) AS in_email
  FROM (VALUES (U&'\0085'), (U&'\00A0'), (U&'\00AD'), (U&'\200B'), (U&'\2028'), (U&'\202E'),
               (U&'\2066'), (U&'\3000'), (U&'\FEFF')) AS t(c);
SELECT name = U&'Ada\00A0Lovelace' AS visible_name_with_nbsp_ok
  FROM user_service.create_user(U&'Ada\00A0Lovelace', 'n5@example.com', 'password1');

-- emails: at most 254 characters, one @, non-empty local part, dotted domain, no spaces
SELECT pg_temp.show(e), pg_temp.try(format($$SELECT user_service.create_user('N', %L, 'password1')$$, e)) AS result
  FROM (VALUES (''), ('   '), ('plainaddress'), ('@example.com'), ('a@@example.com'),
               ('a@b@example.com'), ('a@example'), ('a@.com'), ('a@example.'),
               ('a@exa..mple.com'), ('a b@example.com'), ('a@exa mple.com'),
               (E'a\t@example.com'), ('a@'), ('a@x.c' || repeat('o', 250))) AS t(e);
SELECT length(email) AS len
  FROM user_service.create_user('Long', repeat('l', 242) || '@example.com', 'password1');

-- passwords: 8 to 1024 bytes (bytes, not characters)
SELECT l, pg_temp.try(format($$SELECT user_service.create_user('N', 'n4@example.com', %L)$$, p)) AS result
  FROM (VALUES (0, ''), (7, 'seven77'), (1025, repeat('p', 1025)),
               (1026, repeat('é', 513))) AS t(l, p);
SELECT pg_temp.try($$SELECT user_service.set_password(1, 'short')$$);
SELECT pg_temp.try(format($$SELECT user_service.set_password(1, %L)$$, repeat('p', 1025)));
SELECT email FROM user_service.create_user('Eight', 'eight@example.com', '12345678');
SELECT email FROM user_service.create_user('Max', 'max@example.com', repeat('p', 1024));
-- four 2-byte characters are 8 bytes
SELECT email FROM user_service.create_user('Bytes', 'bytes@example.com', 'éééé');

-- update_user validates what it is given
SELECT pg_temp.try($$SELECT user_service.update_user(1, name => '  ')$$);
SELECT pg_temp.try($$SELECT user_service.update_user(1, email => 'not an email')$$);

-- list_users: page >= 1, 1 <= per_page <= user_service.max_per_page
SELECT s, pg_temp.try(s) FROM (VALUES
    ('SELECT user_service.list_users(0)'),
    ('SELECT user_service.list_users(-2147483648)'),
    ('SELECT user_service.list_users(1, 0)'),
    ('SELECT user_service.list_users(1, -1)'),
    ('SELECT user_service.list_users(1, 101)'),
    ('SELECT user_service.list_users(1, 100)')
) AS t(s);

-- none of the failures above changed anything
SELECT id, pg_temp.show(name), pg_temp.show(email) FROM user_service.users ORDER BY id;
SELECT (user_service.list_users()).total;

-- no message carries a password (the one under test is unique)
SELECT pg_temp.try($$SELECT user_service.create_user('', 'x@example.com', 'SECRET-pw-1')$$) LIKE '%SECRET%' AS leaked;
SELECT pg_temp.try($$SELECT user_service.create_user('N', 'alice@example.com', 'SECRET-pw-1')$$) LIKE '%SECRET%' AS leaked;
