-- list_users: one row, the exact total and one page ordered by id, from one
-- snapshot; the total stays exact under DML that bypasses the API.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc
SET user_service.argon2_memory_kib = 64;
SET user_service.argon2_iterations = 1;

-- Page summary: total, page size, first and last id, ids strictly ascending.
CREATE FUNCTION pg_temp.page(p int, pp int)
RETURNS TABLE (total bigint, n int, first_id bigint, last_id bigint, ordered boolean)
LANGUAGE sql AS $$
    SELECT l.total, cardinality(l.users), l.users[1].id, l.users[cardinality(l.users)].id,
           coalesce((SELECT bool_and(a.id < b.id)
                       FROM unnest(l.users) WITH ORDINALITY a(id, name, email, c, u, i)
                       JOIN unnest(l.users) WITH ORDINALITY b(id, name, email, c, u, i)
                         ON b.i = a.i + 1), true)
      FROM user_service.list_users(p, pp) l
$$;

-- empty: one row, total 0, an empty array (not NULL)
SELECT total, users, users IS NULL AS users_null FROM user_service.list_users();
SELECT count(*) FROM user_service.list_users(5, 10);

SELECT count(*) FROM (
    SELECT user_service.create_user('User ' || i, 'user' || i || '@example.com', 'password' || i)
      FROM generate_series(1, 45) i) s;

SELECT * FROM pg_temp.page(1, 20);
SELECT * FROM pg_temp.page(2, 20);
SELECT * FROM pg_temp.page(3, 20);
SELECT * FROM pg_temp.page(4, 20);
SELECT * FROM pg_temp.page(1, 100);
SELECT * FROM pg_temp.page(45, 1);
SELECT * FROM pg_temp.page(46, 1);
-- huge pages do not overflow
SELECT * FROM pg_temp.page(2147483647, 100);
SELECT total, users FROM user_service.list_users(2147483647, 1);
-- defaults are page 1 of 20
SELECT total, cardinality(users) FROM user_service.list_users();
SELECT total, cardinality(users) FROM user_service.list_users(per_page => 3);
-- the elements are user_info values
SELECT (users[1]).id, (users[1]).name, (users[1]).email,
       (users[1]).created_at = (users[1]).updated_at AS fresh
  FROM user_service.list_users(1, 1);

-- user_service.max_per_page bounds per_page
SET user_service.max_per_page = 5;
SELECT pg_temp.try('SELECT user_service.list_users(1, 6)');
SELECT * FROM pg_temp.page(1, 5);
RESET user_service.max_per_page;

-- gaps in ids
SELECT count(*) FROM (SELECT user_service.delete_user(i) FROM generate_series(2, 40, 2) i) d;
SELECT * FROM pg_temp.page(1, 20);
SELECT * FROM pg_temp.page(2, 20);

-- the total follows the caller's snapshot and transaction
BEGIN;
SELECT name FROM user_service.create_user('Temp', 'temp@example.com', 'password');
SELECT total FROM user_service.list_users();
ROLLBACK;
SELECT total FROM user_service.list_users();

-- direct DML by an administrator: INSERT, DELETE, COPY, TRUNCATE, UPDATE
INSERT INTO user_service.users (name, email, password_hash)
SELECT 'Direct ' || i, 'direct' || i || '@example.com', 'x' FROM generate_series(1, 10) i;
SELECT (SELECT total FROM user_service.list_users()) AS total,
       (SELECT count(*) FROM user_service.users) AS counted;
DELETE FROM user_service.users WHERE name LIKE 'Direct %' AND id % 3 = 0;
SELECT (SELECT total FROM user_service.list_users()) AS total,
       (SELECT count(*) FROM user_service.users) AS counted;
COPY user_service.users (name, email, password_hash) FROM stdin;
Copied 1	copied1@example.com	x
Copied 2	copied2@example.com	x
\.
UPDATE user_service.users SET name = upper(name);
DELETE FROM user_service.users WHERE false;
SELECT (SELECT total FROM user_service.list_users()) AS total,
       (SELECT count(*) FROM user_service.users) AS counted;
BEGIN;
TRUNCATE user_service.users;
SELECT total FROM user_service.list_users();
ROLLBACK;
SELECT (SELECT total FROM user_service.list_users()) AS total,
       (SELECT count(*) FROM user_service.users) AS counted;
TRUNCATE user_service.users;
SELECT total, users FROM user_service.list_users();
SELECT name FROM user_service.create_user('After', 'after@example.com', 'password');
SELECT (SELECT total FROM user_service.list_users()) AS total,
       (SELECT count(*) FROM user_service.users) AS counted;

-- list_users_after: keyset pages, the same total, the same validation
SELECT count(*) FROM (SELECT user_service.create_user('K' || i, 'k' || i || '@example.com', 'password')
                        FROM generate_series(1, 7) i) s;
SELECT min(id) AS k1 FROM user_service.users WHERE name LIKE 'K%' \gset
SELECT total, cardinality(users), users[1].name AS first, users[cardinality(users)].name AS last
  FROM user_service.list_users_after(per_page => 3);
SELECT total, cardinality(users), users[1].name AS first, users[cardinality(users)].name AS last
  FROM user_service.list_users_after(:k1 + 2, 3);
SELECT total, cardinality(users), users[1].name AS first
  FROM user_service.list_users_after(:k1 + 5);
SELECT total, users FROM user_service.list_users_after(9223372036854775807);
SELECT total, cardinality(users) FROM user_service.list_users_after(-9223372036854775808);
SELECT s, pg_temp.try(s) FROM (VALUES
    ('SELECT user_service.list_users_after(NULL)'),
    ('SELECT user_service.list_users_after(0, NULL)'),
    ('SELECT user_service.list_users_after(0, 0)'),
    ('SELECT user_service.list_users_after(0, 101)')
) AS t(s);
-- walking all pages with keyset visits every user once, in order
WITH RECURSIVE walk(after_id, seen) AS (
    SELECT 0::bigint, 0::bigint
    UNION ALL
    SELECT (l.users[cardinality(l.users)]).id, w.seen + cardinality(l.users)
      FROM walk w, user_service.list_users_after(w.after_id, 2) l
     WHERE cardinality(l.users) > 0)
SELECT max(seen) AS walked, (SELECT count(*) FROM user_service.users) AS counted FROM walk;

-- Rows forms: one row per user in id order, each with the exact total; the
-- same page as list_users / list_users_after, from one call (one snapshot)
SELECT count(*) AS users, count(DISTINCT total) AS totals, min(total) = (SELECT count(*) FROM user_service.users) AS exact
  FROM user_service.list_users_rows(1, 4);
SELECT array_agg(r.id ORDER BY r.id) = array_agg(r.id) AS in_id_order,
       array_agg(r.id) = (SELECT array_agg(u.id) FROM user_service.list_users(2, 3) l, unnest(l.users) u) AS same_page
  FROM user_service.list_users_rows(2, 3) r;
SELECT r.name, r.total = (SELECT count(*) FROM user_service.users) AS exact
  FROM user_service.list_users_after_rows(:k1 + 2, 3) r;
-- the columns a driver reads
SELECT pg_get_function_result('user_service.list_users_rows(int, int)'::regprocedure);
SELECT pg_get_function_arguments('user_service.list_users_rows(int, int)'::regprocedure);
SELECT pg_get_function_arguments('user_service.list_users_after_rows(bigint, int)'::regprocedure);
-- past the end: no rows at all (never a row of NULLs); default arguments
SELECT count(*) FROM user_service.list_users_rows(2147483647, 100);
SELECT count(*) FROM user_service.list_users_after_rows(9223372036854775807);
SELECT count(*) = least(20, (SELECT count(*) FROM user_service.users)) AS defaults
  FROM user_service.list_users_rows();
SELECT count(*) = least(20, (SELECT count(*) FROM user_service.users)) AS defaults
  FROM user_service.list_users_after_rows();
-- the same checks and errors as list_users
SELECT s, pg_temp.try(s) FROM (VALUES
    ('SELECT * FROM user_service.list_users_rows(0, 2)'),
    ('SELECT * FROM user_service.list_users_rows(NULL, 2)'),
    ('SELECT * FROM user_service.list_users_rows(1, 101)'),
    ('SELECT * FROM user_service.list_users_after_rows(0, NULL)'),
    ('SELECT * FROM user_service.list_users_after_rows(NULL)'),
    ('SELECT user_service.list_users_json(1, 0)'),
    ('SELECT user_service.list_users_after_json(NULL, 2)')
) AS t(s);

-- jsonb forms: {"total": n, "users": [...]}, the total on an empty page too
SELECT jsonb_typeof(j->'total') AS total_type, (j->>'total')::bigint = (SELECT count(*) FROM user_service.users) AS exact,
       jsonb_array_length(j->'users') AS n,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(j->'users'->0) k) AS keys,
       jsonb_typeof(j->'users'->0->'id') AS id_type
  FROM user_service.list_users_json(1, 3) j;
SELECT (j->'users'->0->>'id')::bigint = (SELECT min(id) FROM user_service.users) AS first_id,
       (j->'users'->0->>'created_at')::timestamptz = (SELECT created_at FROM user_service.users ORDER BY id LIMIT 1) AS same_time
  FROM user_service.list_users_json(1, 3) j;
SELECT (j->>'total')::bigint = (SELECT count(*) FROM user_service.users) AS exact, j->'users' AS users
  FROM user_service.list_users_json(2147483647, 100) j;
SELECT (j->>'total')::bigint = (SELECT count(*) FROM user_service.users) AS exact, j->'users' AS users
  FROM user_service.list_users_after_json(9223372036854775807) j;
SELECT array(SELECT (e->>'name') FROM jsonb_array_elements(j->'users') e) AS names
  FROM user_service.list_users_after_json(:k1 + 2, 3) j;
-- an empty table: no rows, and the jsonb form says 0
BEGIN;
DELETE FROM user_service.users;
SELECT count(*) FROM user_service.list_users_rows();
SELECT user_service.list_users_json();
ROLLBACK;
