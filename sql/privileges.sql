-- Privileges: nothing for PUBLIC; an application role with the README's
-- grants uses the whole API without any right on the tables; the caller's
-- search_path and objects in public or pg_temp cannot subvert the API.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_us_app;
DROP ROLE IF EXISTS regress_us_nobody;
RESET client_min_messages;
SET user_service.argon2_memory_kib = 256;

CREATE ROLE regress_us_app;
CREATE ROLE regress_us_nobody;

-- PUBLIC has nothing
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'user_service'::regnamespace
   AND has_function_privilege('regress_us_nobody', p.oid, 'EXECUTE');
SELECT c.relname, has_table_privilege('regress_us_nobody', c.oid, 'SELECT,INSERT,UPDATE,DELETE') AS any_right
  FROM pg_class c
 WHERE c.relnamespace = 'user_service'::regnamespace AND c.relkind IN ('r', 'S', 'v')
 ORDER BY c.relname;
SELECT has_schema_privilege('regress_us_nobody', 'user_service', 'USAGE') AS schema_usage;

-- the README's grants for an application role
GRANT USAGE ON SCHEMA user_service TO regress_us_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO regress_us_app;
-- and for a monitoring role: the views
GRANT USAGE ON SCHEMA user_service TO regress_us_nobody;
GRANT SELECT ON user_service.batches, user_service.workers TO regress_us_nobody;
GRANT EXECUTE ON FUNCTION user_service.running_items(), user_service.worker_info() TO regress_us_nobody;
SET ROLE regress_us_nobody;
SELECT count(*) >= 0 AS can_watch FROM user_service.batches;
SELECT count(*) >= 0 AS can_watch FROM user_service.workers;
RESET ROLE;
REVOKE SELECT ON user_service.batches, user_service.workers FROM regress_us_nobody;
REVOKE EXECUTE ON FUNCTION user_service.running_items(), user_service.worker_info() FROM regress_us_nobody;
REVOKE USAGE ON SCHEMA user_service FROM regress_us_nobody;

-- EXECUTE on submit_batch alone does not open the other functions: a batch of
-- a kind needs EXECUTE on the function of that kind
GRANT USAGE ON SCHEMA user_service TO regress_us_nobody;
GRANT EXECUTE ON FUNCTION user_service.submit_batch(text, jsonb, int),
                          user_service.create_user(text, text, text) TO regress_us_nobody;
SET ROLE regress_us_nobody;
BEGIN;
SELECT s, pg_temp.try(s) FROM (VALUES
    ($$SELECT user_service.submit_batch('set_password', '[{"id": 1, "password": "taken over"}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1}]')$$),
    ($$SELECT user_service.submit_batch('create_user', '[{"name": "a", "email": "a@example.com", "password": "password"}]') > 0$$)
) AS t(s);
ROLLBACK;
RESET ROLE;
REVOKE ALL ON FUNCTION user_service.submit_batch(text, jsonb, int),
                       user_service.create_user(text, text, text) FROM regress_us_nobody;
REVOKE USAGE ON SCHEMA user_service FROM regress_us_nobody;

-- a role without them can do nothing
SET ROLE regress_us_nobody;
SELECT s, pg_temp.try(s) FROM (VALUES
    ($$SELECT user_service.create_user('N', 'n@example.com', 'password1')$$),
    ('SELECT user_service.list_users()'),
    ('SELECT * FROM user_service.users')
) AS t(s);
RESET ROLE;
GRANT USAGE ON SCHEMA user_service TO regress_us_nobody;
SET ROLE regress_us_nobody;
SELECT pg_temp.try('SELECT user_service.get_user(1)');
SELECT pg_temp.try('SELECT email FROM user_service.users');
RESET ROLE;
REVOKE USAGE ON SCHEMA user_service FROM regress_us_nobody;

-- the application role uses the whole API ...
SET ROLE regress_us_app;
SELECT id, name, email FROM user_service.create_user('App', 'app@example.com', 'app password');
SELECT id, name, email FROM user_service.get_user(1);
SELECT id, name, email FROM user_service.update_user(1, name => 'App User');
SELECT total, cardinality(users) FROM user_service.list_users();
SELECT id, name, total FROM user_service.list_users_rows();
SELECT id, name, total FROM user_service.list_users_after_rows();
SELECT user_service.list_users_json() ->> 'total' AS total;
SELECT user_service.list_users_after_json() ->> 'total' AS total;
-- the caps an administrator sets stay out of its reach
SELECT pg_temp.try($$SET user_service.max_batch_wait = 0$$);
SELECT user_service.set_password(1, 'new app password');
SELECT user_service.verify_password('app@example.com', 'new app password');
SELECT id FROM user_service.create_user('Gone', 'gone@example.com', 'gone password');
SELECT id, name FROM user_service.delete_user(2);
-- ... the batch API too (the items run as the workers, whoever submits) ...
BEGIN;
SELECT user_service.submit_batch('delete_user', '[{"id": 424242}]') AS app_batch \gset
SELECT kind, total FROM user_service.batch_status(:app_batch);
SELECT item, status FROM user_service.batch_results(:app_batch);
SELECT user_service.cancel_batch(:app_batch);
COMMIT;
SELECT user_service.wait_batch(:app_batch, '1 second');
-- ... and another role's batch is not its business
RESET ROLE;
BEGIN;
SELECT user_service.submit_batch('delete_user', '[{"id": 424242}]') AS admin_batch \gset
SET ROLE regress_us_app;
SELECT pg_temp.try(format('SELECT user_service.batch_results(%s)', :admin_batch));
SELECT pg_temp.try(format('SELECT user_service.cancel_batch(%s)', :admin_batch));
SELECT pg_temp.try(format('SELECT user_service.batch_status(%s)', :admin_batch));
SELECT pg_temp.try(format($$SELECT user_service.wait_batch(%s, '1 second')$$, :admin_batch));
RESET ROLE;
SELECT state FROM user_service.batch_status(:admin_batch);
ROLLBACK;
SET ROLE regress_us_app;
-- ... but cannot read or change hashes, or anything else, directly
SELECT s, pg_temp.try(s) FROM (VALUES
    ('SELECT password_hash FROM user_service.users'),
    ('SELECT id FROM user_service.users'),
    ($$UPDATE user_service.users SET password_hash = 'x'$$),
    ($$INSERT INTO user_service.users (name, email, password_hash) VALUES ('a', 'a@b.c', 'x')$$),
    ('DELETE FROM user_service.users'),
    ('TRUNCATE user_service.users'),
    ('SELECT * FROM user_service.user_count_deltas'),
    ('INSERT INTO user_service.user_count_deltas VALUES (1000)'),
    ('SELECT payload FROM user_service.batch_items'),
    ('UPDATE user_service.batch_jobs SET total = 1'),
    ('SELECT * FROM user_service.batches'),
    ('SELECT * FROM user_service.workers'),
    ('SELECT user_service.count_users_trigger()'),
    ('SET user_service.argon2_memory_kib = 8'),
    ('SET user_service.redact_log = off'),
    ('ALTER FUNCTION user_service.verify_password(text, text) SECURITY DEFINER'),
    ($$CREATE TRIGGER t AFTER INSERT ON user_service.users
      FOR EACH STATEMENT EXECUTE FUNCTION user_service.count_users_trigger()$$),
    ($$CREATE FUNCTION user_service.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'$$)
) AS t(s);
RESET ROLE;

-- Hijack attempts: functions, operators and tables named like the ones the
-- API's SQL uses, in public and in pg_temp, first on the search_path.  Had
-- the API resolved any of them, it would fail with "hijacked".  The batch
-- item runs in a worker, whose search_path has public on it.
CREATE FUNCTION public.hijack() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'hijacked'; END$$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'hijacked'; END$$;
CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'hijacked'; END$$;
CREATE FUNCTION public.evil_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'hijacked'; END$$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.evil_eq);
CREATE FUNCTION public.evil_text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'hijacked'; END$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.evil_text_eq);
CREATE TABLE public.users (id bigint, name text, email text, password_hash text,
                           created_at timestamptz, updated_at timestamptz);
CREATE TRIGGER hijack BEFORE INSERT OR UPDATE OR DELETE ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.hijack();
CREATE TEMP TABLE users (id bigint, name text, email text, password_hash text,
                         created_at timestamptz, updated_at timestamptz);
CREATE TRIGGER hijack BEFORE INSERT OR UPDATE OR DELETE ON pg_temp.users
    FOR EACH ROW EXECUTE FUNCTION public.hijack();
GRANT ALL ON public.users TO regress_us_app;

SET ROLE regress_us_app;
SET search_path = pg_temp, public, pg_catalog, user_service;
SELECT id, name, email FROM user_service.create_user('Mallory', 'mallory@example.com', 'mallory password');
SELECT id, name, email FROM user_service.update_user(3, email => 'MALLORY@example.com');
SELECT user_service.set_password(3, 'another password');
SELECT user_service.verify_password('mallory@example.com', 'another password');
SELECT total FROM user_service.list_users();
SELECT id, name FROM user_service.get_user(3);
SELECT id FROM user_service.delete_user(3);
SELECT user_service.submit_batch('create_user',
    '[{"name": "Trudy", "email": "trudy@example.com", "password": "trudy password"}]') AS hijack_batch \gset
SELECT user_service.wait_batch(:hijack_batch, '60 seconds') AS done;
SELECT item, status, error FROM user_service.batch_results(:hijack_batch);
RESET ROLE;
RESET search_path;
SELECT count(*) AS hijacked_rows FROM public.users;

-- superusers and the owner still see everything
SELECT id, name, email, password_hash LIKE '$argon2id$%' AS hashed FROM user_service.users ORDER BY id;

DROP TABLE public.users, pg_temp.users;
DROP OPERATOR public.= (bigint, bigint);
DROP OPERATOR public.= (text, text);
DROP FUNCTION public.hijack(), public.now(), public.lower(text),
              public.evil_eq(bigint, bigint), public.evil_text_eq(text, text);
DROP EXTENSION user_service;
-- the schema outlives the extension (CREATE EXTENSION made it, it is not a
-- member); DROP OWNED removes the grants on it
DROP OWNED BY regress_us_app, regress_us_nobody;
DROP ROLE regress_us_app;
DROP ROLE regress_us_nobody;
