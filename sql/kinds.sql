-- Registered batch kinds: any function (jsonb -> jsonb, or jsonb[] ->
-- jsonb[]) as a batch kind, run by the workers as the role that submitted the
-- batch, with a pinned search_path, in a security-restricted operation.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS regress_low CASCADE;
DROP ROLE IF EXISTS regress_us_low;
DROP ROLE IF EXISTS regress_us_other;
RESET client_min_messages;

-- Waits for a batch; its results, errors and handler results.
CREATE FUNCTION pg_temp.results(b bigint)
RETURNS TABLE (item int, status text, sqlstate text, error text, result jsonb)
LANGUAGE sql AS $$
    SELECT r.item, r.status, r.sqlstate, r.error, r.result
      FROM (SELECT user_service.wait_batch(b, '60 s')) w, user_service.batch_results(b) r
$$;

-- Two roles with the README's application grants; regress_us_low has a
-- schema of its own, and a table it may write.
CREATE ROLE regress_us_low;
CREATE ROLE regress_us_other;
GRANT USAGE ON SCHEMA user_service TO regress_us_low, regress_us_other;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA user_service TO regress_us_low, regress_us_other;
GRANT SELECT ON user_service.batches, user_service.batch_kinds TO regress_us_low, regress_us_other;
CREATE SCHEMA regress_low AUTHORIZATION regress_us_low;
GRANT USAGE ON SCHEMA regress_low TO regress_us_other;

SET ROLE regress_us_low;
CREATE TABLE regress_low.summary (id bigint PRIMARY KEY, how text, who name);
-- one item: a row of summary, as the role running it
CREATE FUNCTION regress_low.summarize(item jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress_low.summary VALUES ((item->>'id')::bigint, 'one', current_user);
    RETURN jsonb_build_object('id', item->'id', 'who', current_user);
END $$;
-- a group of items: one INSERT
CREATE FUNCTION regress_low.summarize_many(items jsonb[]) RETURNS jsonb[]
LANGUAGE sql AS $$
    INSERT INTO regress_low.summary
    SELECT (i->>'id')::bigint, 'many', current_user FROM unnest(items) i;
    SELECT array_agg(jsonb_build_object('id', i->'id') ORDER BY n)
      FROM unnest(items) WITH ORDINALITY AS u(i, n);
$$;
SELECT user_service.register_batch_kind('summarize', 'regress_low.summarize(jsonb)');
SELECT user_service.register_batch_kind('summarize_many', 'regress_low.summarize_many(jsonb[])', 8);
SELECT kind, builtin, handler, owner, grouped, default_concurrency, secrets
  FROM user_service.batch_kinds ORDER BY builtin DESC, kind;

-- items run as their submitter, each with its result; an error is the item's
-- (concurrency 1: which of the two items with id 1 fails is then known)
SELECT user_service.submit_batch('summarize', '[{"id": 1}, {"id": 2}, {"id": 1}]', 1) AS b \gset
SELECT * FROM pg_temp.results(:b);
SELECT user_service.submit_batch('summarize_many',
    (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series(10, 15) i)) AS b \gset
SELECT * FROM pg_temp.results(:b);
-- a group with a failing item: the group is rolled back, its items run alone
SELECT user_service.submit_batch('summarize_many', '[{"id": 20}, {"id": 10}, {"id": 21}]') AS b \gset
SELECT * FROM pg_temp.results(:b);
SELECT how, who, count(*) FROM regress_low.summary GROUP BY 1, 2 ORDER BY 1;
-- the kind's default concurrency, unless the submission gives one
SELECT concurrency FROM user_service.batches WHERE batch_id = :b;
SELECT user_service.submit_batch('summarize_many', '[{"id": 30}]', 3) AS b \gset
SELECT concurrency FROM user_service.batches WHERE batch_id = :b;
RESET ROLE;

-- Registration errors
SELECT s, pg_temp.try(s) FROM (VALUES
    ($$SELECT user_service.register_batch_kind(NULL, 'regress_low.summarize(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind('x', NULL)$$),
    ($$SELECT user_service.register_batch_kind('Has Space', 'regress_low.summarize(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind('', 'regress_low.summarize(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind(repeat('a', 49), 'regress_low.summarize(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind('delete_user', 'regress_low.summarize(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind('summarize', 'regress_low.summarize(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind('bad', 'pg_catalog.jsonb_typeof(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind('bad', 'pg_catalog.jsonb_array_elements(jsonb)')$$),
    ($$SELECT user_service.register_batch_kind('bad', 'regress_low.summarize(jsonb)', 0)$$),
    ($$SELECT user_service.register_batch_kind('bad', 'regress_low.summarize(jsonb)', NULL, NULL)$$),
    ($$SELECT user_service.unregister_batch_kind('nothing_here')$$),
    ($$SELECT user_service.unregister_batch_kind('create_user')$$),
    ($$SELECT user_service.submit_batch('nothing_here', '[{}]')$$),
    ($$SELECT user_service.submit_batch('summarize', '[1]')$$),
    ($$SELECT user_service.submit_batch('summarize', '{}')$$)
) AS t(s);

-- The handler cannot be dropped while its kind is registered
SELECT pg_temp.try('DROP FUNCTION regress_low.summarize(jsonb)');

-- Privileges.  Only the handler's owner (or a superuser) registers it.
SET ROLE regress_us_other;
SELECT pg_temp.try($$SELECT user_service.register_batch_kind('stolen', 'regress_low.summarize(jsonb)')$$);
SELECT pg_temp.try($$SELECT user_service.unregister_batch_kind('summarize')$$);
-- Submitting needs EXECUTE on the handler
RESET ROLE;
REVOKE EXECUTE ON FUNCTION regress_low.summarize(jsonb) FROM PUBLIC;
SET ROLE regress_us_other;
SELECT pg_temp.try($$SELECT user_service.submit_batch('summarize', '[{"id": 100}]')$$);
RESET ROLE;

-- A low role's items run as that role: reading password hashes, writing the
-- job tables, taking another role, are refused (42501) and change nothing.
SET ROLE regress_us_low;
CREATE FUNCTION regress_low.escalate(item jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    CASE item->>'try'
    WHEN 'read hashes' THEN
        RETURN to_jsonb((SELECT array_agg(password_hash) FROM user_service.users));
    WHEN 'write jobs' THEN
        UPDATE user_service.batch_chunks SET pending = 0;
    WHEN 'new batch row' THEN
        INSERT INTO user_service.batch_jobs (kind, concurrency, total, submitted_by)
        VALUES ('delete_user', 1, 1, 10);
    WHEN 'set role' THEN
        SET ROLE postgres;
    WHEN 'delete users' THEN
        DELETE FROM user_service.users;
    END CASE;
    RETURN jsonb_build_object('done', item->>'try');
END $$;
SELECT user_service.register_batch_kind('escalate', 'regress_low.escalate(jsonb)');
SELECT user_service.submit_batch('escalate', '[{"try": "read hashes"}, {"try": "write jobs"},
    {"try": "new batch row"}, {"try": "set role"}, {"try": "delete users"}]') AS b \gset
SELECT * FROM pg_temp.results(:b);
RESET ROLE;
SELECT count(*) AS batch_jobs_by_escalation FROM user_service.batch_jobs WHERE submitted_by = 10;

-- A superuser's batch of the low role's kind runs with the superuser's
-- rights (as any function does): submitting someone's kind runs their code.
SELECT user_service.create_user('Kept', 'kept@example.com', 'a long password') IS NOT NULL AS created;
SELECT user_service.submit_batch('escalate', '[{"try": "read hashes"}]') AS b \gset
SELECT item, status, sqlstate, jsonb_typeof(result) AS result FROM pg_temp.results(:b);

-- Objects planted in public do not capture the handler's unqualified names:
-- its search_path is pg_catalog, pg_temp.
SET ROLE regress_us_low;
CREATE FUNCTION regress_low.unqualified(item jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notes VALUES (item->>'secret');
    RETURN NULL;
END $$;
SELECT user_service.register_batch_kind('unqualified', 'regress_low.unqualified(jsonb)');
RESET ROLE;
CREATE TABLE public.notes (secret text);
GRANT INSERT ON public.notes TO PUBLIC;
SET ROLE regress_us_low;
SELECT user_service.submit_batch('unqualified', '[{"secret": "s3cret"}]') AS b \gset
SELECT * FROM pg_temp.results(:b);
RESET ROLE;
SELECT count(*) AS captured_in_public FROM public.notes;
-- This session has a temporary schema (pg_temp.try): process_batches leaves
-- registered kinds' items to the workers, so a pg_temp.notes captures nothing.
CREATE TEMP TABLE notes (secret text);
BEGIN;
SET LOCAL ROLE regress_us_low;
SELECT user_service.submit_batch('unqualified', '[{"secret": "s3cret"}]') AS b \gset
SELECT user_service.process_batches() AS processed_here;
COMMIT;
SELECT status, sqlstate FROM pg_temp.results(:b);
SELECT count(*) AS captured_in_pg_temp FROM pg_temp.notes;
DROP TABLE public.notes;

-- Errors, retries: a transient error (40001) is tried again, up to
-- user_service.max_attempts; the handler's own SQLSTATE and message are kept.
SET ROLE regress_us_low;
CREATE TABLE regress_low.tries (id int PRIMARY KEY, n int);
CREATE FUNCTION regress_low.flaky(item jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    -- the try is counted in another transaction's eyes only when it commits:
    -- count with a sequence of our own instead
    n := nextval('regress_low.flaky_tries');
    IF (item->>'fail') = 'always' THEN
        RAISE EXCEPTION 'no luck for %', item->>'id' USING ERRCODE = 'serialization_failure';
    ELSIF (item->>'fail') = 'custom' THEN
        RAISE EXCEPTION 'item % is wrong', item->>'id' USING ERRCODE = 'P0001', HINT = 'a hint';
    ELSIF (item->>'fail') = 'once' AND n % 2 = 1 THEN
        RAISE EXCEPTION 'retry me' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN jsonb_build_object('tries', n);
END $$;
CREATE SEQUENCE regress_low.flaky_tries;
SELECT user_service.register_batch_kind('flaky', 'regress_low.flaky(jsonb)');
SELECT user_service.submit_batch('flaky', '[{"id": 1, "fail": "always"}, {"id": 2, "fail": "custom"}]', 1) AS b \gset
SELECT item, status, sqlstate, error FROM pg_temp.results(:b);
SELECT setval('regress_low.flaky_tries', 2) > 0 AS reset;
SELECT user_service.submit_batch('flaky', '[{"id": 3, "fail": "once"}]', 1) AS b \gset
SELECT item, status, sqlstate, error, result FROM pg_temp.results(:b);
RESET ROLE;
SELECT item, attempts FROM user_service.batch_items WHERE batch_id = :b;
SELECT item, attempts FROM user_service.batch_items WHERE batch_id = :b - 1 ORDER BY item;

-- What a handler SETs goes with its call: here the second item of one group
-- (concurrency 1) sees the pinned search_path and a writable transaction,
-- and later batches still run (kept, default_transaction_read_only = on
-- stopped the worker's every later claim).
SET ROLE regress_us_low;
CREATE FUNCTION regress_low.settings(item jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF item->>'do' = 'set' THEN
        PERFORM set_config('search_path', 'regress_low, pg_catalog', false);
        PERFORM set_config('default_transaction_read_only', 'on', false);
    END IF;
    RETURN jsonb_build_object('search_path', current_setting('search_path'),
                              'read_only', current_setting('default_transaction_read_only'));
END $$;
SELECT user_service.register_batch_kind('settings', 'regress_low.settings(jsonb)');
SELECT user_service.submit_batch('settings', '[{"do": "set"}, {"do": "look"}]', 1) AS b \gset
SELECT item, status, result FROM pg_temp.results(:b);
SELECT user_service.submit_batch('settings', '[{"do": "look"}, {"do": "look"}, {"do": "look"}]') AS b \gset
SELECT item, status, result FROM pg_temp.results(:b);

-- A handler that raises query_canceled itself fails its item (a real cancel
-- rolls the group back; this one, taken for one, came back at every try)
CREATE FUNCTION regress_low.cancels(item jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF item ? 'bad' THEN
        RAISE EXCEPTION 'not a real cancel' USING ERRCODE = 'query_canceled';
    END IF;
    RETURN item;
END $$;
SELECT user_service.register_batch_kind('cancels', 'regress_low.cancels(jsonb)');
SELECT user_service.submit_batch('cancels', '[{"a": 1}, {"bad": 1}, {"a": 3}]', 1) AS b \gset
SELECT * FROM pg_temp.results(:b);

-- An item may not cancel, wait for or process its own batch: each fails its
-- item (55000) and the rest goes on (a cancel of its own batch changed the
-- chunk the group records into, and the group came back at every try)
CREATE FUNCTION regress_low.selfish(item jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    b bigint := (SELECT max(batch_id) FROM user_service.batches WHERE kind = 'selfish');
BEGIN
    CASE item->>'do'
        WHEN 'cancel' THEN PERFORM user_service.cancel_batch(b);
        WHEN 'wait' THEN PERFORM user_service.wait_batch(b, '1 s');
        WHEN 'process' THEN PERFORM user_service.process_batches();
        ELSE NULL;
    END CASE;
    RETURN item;
END $$;
SELECT user_service.register_batch_kind('selfish', 'regress_low.selfish(jsonb)');
SELECT user_service.submit_batch('selfish',
    '[{"do": "cancel"}, {"do": "wait"}, {"do": "process"}, {"do": "nothing"}]', 1) AS b \gset
SELECT * FROM pg_temp.results(:b);
SELECT state, succeeded, failed, cancelled FROM user_service.batches WHERE batch_id = :b;
RESET ROLE;

-- Submitting (and running) needs USAGE on the handler's schema too
REVOKE USAGE ON SCHEMA regress_low FROM regress_us_other;
SET ROLE regress_us_other;
SELECT pg_temp.try($$SELECT user_service.submit_batch('summarize_many', '[{"id": 500}]')$$);
RESET ROLE;
GRANT USAGE ON SCHEMA regress_low TO regress_us_other;
-- A built-in function records no dependency: it cannot be a handler
SELECT pg_temp.try($$SELECT user_service.register_batch_kind('strip', 'pg_catalog.jsonb_strip_nulls(jsonb)')$$);

-- A grouped handler that returns the wrong number of results fails its items
-- (concurrency 1: one group of three, then each alone)
SET ROLE regress_us_low;
CREATE FUNCTION regress_low.short(items jsonb[]) RETURNS jsonb[]
LANGUAGE sql AS $$ SELECT ARRAY['{}'::jsonb, '{}'::jsonb] $$;
CREATE FUNCTION regress_low.nothing(item jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
SELECT user_service.register_batch_kind('short', 'regress_low.short(jsonb[])');
SELECT user_service.register_batch_kind('nothing', 'regress_low.nothing(jsonb)');
SELECT user_service.submit_batch('short', '[{"a": 1}, {"a": 2}, {"a": 3}]', 1) AS b \gset
SELECT * FROM pg_temp.results(:b);
-- a NULL result is a success without a result
SELECT user_service.submit_batch('nothing', '[{"a": 1}]') AS b \gset
SELECT * FROM pg_temp.results(:b);

-- Cancel, unregister while busy, secrets
CREATE FUNCTION regress_low.keep_secret(item jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('length', length(item->>'token')) $$;
SELECT user_service.register_batch_kind('keep_secret', 'regress_low.keep_secret(jsonb)', secrets => true);
BEGIN;
SELECT user_service.submit_batch('keep_secret', '[{"token": "tok-1"}, {"token": "tok-2"}]') AS b \gset
SELECT pg_temp.try($$SELECT user_service.unregister_batch_kind('keep_secret')$$);
SELECT user_service.cancel_batch(:b) AS cancelled;
COMMIT;
SELECT * FROM pg_temp.results(:b);
SELECT user_service.submit_batch('keep_secret', '[{"token": "tok-3"}]') AS b2 \gset
SELECT * FROM pg_temp.results(:b2);
RESET ROLE;
-- what is kept of a secret kind's items: nothing; they are stored a chunk
-- to an item (small payloads, kept inline)
SELECT batch_id = :b2 AS processed, payload FROM user_service.batch_items
 WHERE batch_id IN (:b, :b2) ORDER BY batch_id, item;
SELECT batch_id = :b2 AS processed, first_item, cardinality(payload) AS items FROM user_service.batch_chunks
 WHERE batch_id IN (:b, :b2) ORDER BY batch_id, first_item;
SELECT kind, secrets FROM user_service.batch_kinds WHERE kind = 'keep_secret';

-- A handler dropped with CASCADE: its pending items fail, saying so
BEGIN;
SET LOCAL ROLE regress_us_low;
SELECT user_service.submit_batch('nothing', '[{"a": 1}, {"a": 2}]') AS b \gset
DROP FUNCTION regress_low.nothing(jsonb) CASCADE;
COMMIT;
SELECT * FROM pg_temp.results(:b);
SELECT kind, handler FROM user_service.batch_kinds WHERE kind = 'nothing';
SELECT pg_temp.try($$SELECT user_service.submit_batch('nothing', '[{}]')$$);
SET ROLE regress_us_low;
SELECT pg_temp.try($$SELECT user_service.unregister_batch_kind('nothing')$$);
RESET ROLE;
SELECT user_service.unregister_batch_kind('nothing');

-- A kind whose handler is gone takes a new one when a superuser registers
-- it again (how a logical replica or a moved partition, which get the row
-- without the function, get their kinds back); nobody else may, since the
-- kind's pending items, anybody's, would run it
SET ROLE regress_us_low;
CREATE FUNCTION regress_low.again(item jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('first', item) $$;
SELECT user_service.register_batch_kind('again', 'regress_low.again(jsonb)');
DROP FUNCTION regress_low.again(jsonb) CASCADE;
CREATE FUNCTION regress_low.again2(items jsonb[]) RETURNS jsonb[]
LANGUAGE sql AS $$ SELECT array_agg(jsonb_build_object('second', i)) FROM unnest(items) i $$;
SELECT pg_temp.try($$SELECT user_service.register_batch_kind('again', 'regress_low.again2(jsonb[])', 2)$$);
RESET ROLE;
SELECT user_service.register_batch_kind('again', 'regress_low.again2(jsonb[])', 2);
SET ROLE regress_us_low;
SELECT kind, handler, grouped, default_concurrency FROM user_service.batch_kinds WHERE kind = 'again';
SELECT user_service.submit_batch('again', '[{"a": 1}]') AS b \gset
SELECT * FROM pg_temp.results(:b);
SELECT pg_temp.try($$SELECT user_service.register_batch_kind('again', 'regress_low.again2(jsonb[])')$$);
RESET ROLE;

-- Unregistering: the owner may; the kind's function goes with it
SET ROLE regress_us_low;
SELECT user_service.unregister_batch_kind('short');
SELECT pg_temp.try($$SELECT user_service.submit_batch('short', '[{}]')$$);
RESET ROLE;
SELECT p.oid::regprocedure AS kind_functions FROM pg_proc p
 WHERE p.pronamespace = 'user_service_kinds'::regnamespace ORDER BY p.proname;

SET client_min_messages = warning;
DROP SCHEMA regress_low CASCADE;
DROP EXTENSION user_service CASCADE;
RESET client_min_messages;
DROP OWNED BY regress_us_low, regress_us_other;
DROP ROLE regress_us_low;
DROP ROLE regress_us_other;
