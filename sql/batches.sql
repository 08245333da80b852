-- The batch engine: submission validation, processing by the workers,
-- per-item results and errors, cancel, wait, views, retention, and
-- process_batches when no worker runs.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc

SELECT pg_temp.wait_for('SELECT count(*) = 2 FROM user_service.workers') AS two_workers;

-- Validation: the whole submission is checked first; any error stores nothing.
SELECT s, pg_temp.try(s) FROM (VALUES
    ($$SELECT user_service.submit_batch(NULL, '[]')$$),
    ($$SELECT user_service.submit_batch('create_user', NULL)$$),
    ($$SELECT user_service.submit_batch('drop_user', '[{"id": 1}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '{"id": 1}')$$),
    ($$SELECT user_service.submit_batch('delete_user', '"x"')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1}, 2]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1}, [{"id": 2}]]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1}, {}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": "1"}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1.5}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1e30}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": null}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1, "name": "x"}]')$$),
    ($$SELECT user_service.submit_batch('create_user', '[{"name": "a", "email": "a@x.com"}]')$$),
    ($$SELECT user_service.submit_batch('create_user', '[{"name": "a", "email": "a@x.com", "password": 12345678}]')$$),
    ($$SELECT user_service.submit_batch('create_user', '[{"name": "a", "email": "a@x.com", "pasword": "x"}]')$$),
    ($$SELECT user_service.submit_batch('update_user', '[{"name": "a"}]')$$),
    ($$SELECT user_service.submit_batch('update_user', '[{"id": 1, "email": ["a@x.com"]}]')$$),
    ($$SELECT user_service.submit_batch('set_password', '[{"id": 1}]')$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1}]', 0)$$),
    ($$SELECT user_service.submit_batch('delete_user', '[{"id": 1}]', -5)$$)
) AS t(s);
SELECT count(*) AS batches, (SELECT count(*) FROM user_service.batch_items) AS items
  FROM user_service.batch_jobs;

-- A rolled-back submission leaves no trace.
BEGIN;
SELECT user_service.submit_batch('delete_user', '[{"id": 1}]') IS NOT NULL AS submitted;
ROLLBACK;
SELECT count(*) AS batches FROM user_service.batch_jobs;

-- Items are stored in bulk, the way COPY does, a chunk of up to 250
-- consecutive items to a row of batch_chunks (one item to a chunk for the
-- kinds that hash): every item is in the table with its number, its payload
-- and nothing else, every chunk in the index of chunks with pending items
-- (amcheck compares the indexes with every row), inside the submitting
-- transaction.
CREATE EXTENSION IF NOT EXISTS amcheck;
BEGIN;
SELECT user_service.submit_batch('delete_user',
    (SELECT jsonb_agg(jsonb_build_object('id', 1000000 + i)) FROM generate_series(1, 2550) i)) AS bulk \gset
SELECT count(*), count(DISTINCT item), min(item), max(item),
       bool_and(status = 'pending' AND attempts = 0 AND payload = jsonb_build_object('id', 1000000 + item)
                AND not_before IS NULL AND user_id IS NULL AND sqlstate IS NULL AND error IS NULL
                AND finished_at IS NULL AND result IS NULL) AS as_inserted
  FROM user_service.batch_items WHERE batch_id = :bulk;
SELECT count(*) AS chunks, min(first_item), max(first_item), sum(pending) AS pending,
       bool_and(pending = cardinality(status) AND pending = cardinality(payload)
                AND pending = cardinality(attempts) AND due IS NULL) AS whole,
       string_agg(DISTINCT cardinality(status)::text, ',') AS sizes
  FROM user_service.batch_chunks WHERE batch_id = :bulk;
SELECT bt_index_check('user_service.batch_chunks_pending', true);
SELECT bt_index_check('user_service.batch_chunks_pkey', true);
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT count(*) AS found_through_the_index FROM user_service.batch_chunks
 WHERE batch_id = :bulk AND pending > 0 AND first_item > 2000;
SELECT user_service.submit_batch('set_password',
    '[{"id": 1, "password": "p1 p1 p1 p1"}, {"id": 2, "password": "p2 p2 p2 p2"}]') AS hashing \gset
SELECT first_item, cardinality(status) AS items FROM user_service.batch_chunks
 WHERE batch_id = :hashing ORDER BY first_item;
ROLLBACK;
DROP EXTENSION amcheck;

-- The bulk path keeps the table's constraints, and where somebody added a
-- trigger to the table, chunks take INSERT's path so that it fires.
BEGIN;
ALTER TABLE user_service.batch_chunks ADD CONSTRAINT two_items_at_most CHECK (pending <= 2) NOT VALID;
SELECT pg_temp.try($$SELECT user_service.submit_batch('delete_user', '[{"id": 1}, {"id": 2}, {"id": 3}]')$$);
ROLLBACK;
CREATE TABLE public.items_seen (batch_id bigint, first_item int, items int);
CREATE FUNCTION public.item_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.items_seen VALUES (NEW.batch_id, NEW.first_item, cardinality(NEW.payload));
    RETURN NULL;
END $$;
BEGIN;
CREATE TRIGGER item_seen AFTER INSERT ON user_service.batch_chunks
    FOR EACH ROW EXECUTE FUNCTION public.item_seen();
SELECT user_service.submit_batch('delete_user',
    (SELECT jsonb_agg(jsonb_build_object('id', i)) FROM generate_series(1, 505) i)) AS seen \gset
SELECT string_agg(first_item || ':' || items, ',' ORDER BY first_item) AS chunks_the_trigger_saw
  FROM public.items_seen WHERE batch_id = :seen;
SELECT count(*), min(item), max(item), bool_and(payload = jsonb_build_object('id', item)) AS in_order
  FROM user_service.batch_items WHERE batch_id = :seen;
ROLLBACK;
DROP TABLE public.items_seen;
DROP FUNCTION public.item_seen();
SELECT count(*) AS batches, (SELECT count(*) FROM user_service.batch_items) AS items
  FROM user_service.batch_jobs;

-- create_user: processed by the workers, one result per item in input order.
SELECT user_service.submit_batch('create_user', $$[
    {"name": "Ada", "email": "ada@example.com", "password": "password ada"},
    {"name": "Alan", "email": "alan@example.com", "password": "password alan"},
    {"name": "Ada again", "email": "ADA@example.com", "password": "password ada 2"},
    {"name": "Bad", "email": "not an email", "password": "password bad"},
    {"name": "Short", "email": "short@example.com", "password": "short"},
    {"name": "Grace", "email": "grace@example.com", "password": "password grace"}
]$$, concurrency => 1) AS b1 \gset
SELECT user_service.wait_batch(:b1, '60 seconds') AS done;
SELECT kind, state, total, pending, running, succeeded, failed, cancelled, concurrency,
       started_at IS NOT NULL AS started, finished_at >= started_at AS finished
  FROM user_service.batch_status(:b1);
-- (concurrency 1: the items ran one after the other, in order, so item 3
-- meets item 1's committed row)
SELECT r.item, r.status, u.name, r.sqlstate, r.error
  FROM user_service.batch_results(:b1) r LEFT JOIN user_service.users u ON u.id = r.user_id
 ORDER BY r.item;
SELECT user_service.verify_password('ada@example.com', 'password ada') AS ada,
       user_service.verify_password('grace@example.com', 'password grace') AS grace;
-- no password is left in the job table; the rest of each item is
SELECT count(*) FILTER (WHERE payload ? 'password') AS with_password,
       count(*) FILTER (WHERE payload ? 'email') AS with_email
  FROM user_service.batch_items WHERE batch_id = :b1;

-- update_user, set_password, delete_user, with missing users failing alone
SELECT id AS ada_id FROM user_service.users WHERE email = 'ada@example.com' \gset
SELECT id AS alan_id FROM user_service.users WHERE email = 'alan@example.com' \gset
SELECT user_service.submit_batch('update_user', format($$[
    {"id": %s, "name": "Ada Lovelace"},
    {"id": %s, "email": "turing@example.com", "name": null},
    {"id": 999999, "name": "Nobody"},
    {"id": %s, "email": "grace@example.com"}
]$$, :ada_id, :alan_id, :alan_id)::jsonb) AS b2 \gset
SELECT user_service.wait_batch(:b2) AS done;
SELECT item, status, user_id IS NOT NULL AS has_user, sqlstate, error
  FROM user_service.batch_results(:b2);
SELECT name, email FROM user_service.users ORDER BY id;

SELECT user_service.submit_batch('set_password', format($$[
    {"id": %s, "password": "new password ada"},
    {"id": 999999, "password": "new password x"},
    {"id": %s, "password": "tiny"}
]$$, :ada_id, :alan_id)::jsonb) AS b3 \gset
SELECT user_service.wait_batch(:b3) AS done;
SELECT item, status, sqlstate, error FROM user_service.batch_results(:b3);
SELECT user_service.verify_password('ada@example.com', 'new password ada') AS new_ada,
       user_service.verify_password('turing@example.com', 'password alan') AS alan_unchanged;
SELECT count(*) AS with_password FROM user_service.batch_items WHERE payload ? 'password';

SELECT user_service.submit_batch('delete_user', format('[{"id": %s}, {"id": 999999}, {"id": %s}]',
                                                       :alan_id, :alan_id)::jsonb, 1) AS b4 \gset
SELECT user_service.wait_batch(:b4) AS done;
SELECT item, status, sqlstate, error FROM user_service.batch_results(:b4);
SELECT (user_service.list_users()).total AS users_left;

-- unknown batches
SELECT s, pg_temp.try(s) FROM (VALUES
    ('SELECT user_service.batch_status(424242)'),
    ('SELECT user_service.batch_results(424242)'),
    ('SELECT user_service.cancel_batch(424242)'),
    ('SELECT user_service.wait_batch(424242)'),
    ('SELECT user_service.batch_status(NULL)'),
    ($$SELECT user_service.wait_batch(1, NULL)$$),
    ($$SELECT user_service.wait_batch(1, '-1 second')$$)
) AS t(s);

-- wait_batch times out on a batch that cannot progress (not committed yet),
-- and cancel_batch cancels what has not started; passwords go with it
BEGIN;
SELECT user_service.submit_batch('create_user', $$[
    {"name": "C1", "email": "c1@example.com", "password": "password c1"},
    {"name": "C2", "email": "c2@example.com", "password": "password c2"}
]$$) AS b5 \gset
SELECT user_service.wait_batch(:b5, '50 milliseconds') AS done_in_time;
-- user_service.max_batch_wait caps one call, whatever its timeout asks (a
-- pooled client polls): an hour's wait returns false after 100 ms
SHOW user_service.max_batch_wait;
SET LOCAL user_service.max_batch_wait = '100ms';
SELECT user_service.wait_batch(:b5, '1 hour') AS done_within_cap;
SELECT state, pending FROM user_service.batch_status(:b5);
SELECT user_service.cancel_batch(:b5) AS cancelled;
COMMIT;
SELECT state, total, pending, succeeded, failed, cancelled, finished_at IS NOT NULL AS finished
  FROM user_service.batch_status(:b5);
SELECT item, status FROM user_service.batch_results(:b5);
SELECT count(*) AS with_password FROM user_service.batch_items WHERE batch_id = :b5 AND payload ? 'password';
SELECT user_service.wait_batch(:b5, '0') AS finished_now;
-- cancelling a finished batch cancels nothing and keeps its state
SELECT user_service.cancel_batch(:b1) AS cancelled;
SELECT state FROM user_service.batch_status(:b1);

-- the batches view: newest first, with percent done
SELECT batch_id = :b5 AS newest, kind, state, total, succeeded, failed, cancelled, percent_done
  FROM user_service.batches LIMIT 1;
SELECT kind, state, total, pending, running, succeeded, failed, cancelled, percent_done
  FROM user_service.batches ORDER BY batch_id;
SELECT pg_temp.wait_for($$SELECT bool_and(state = 'idle') FROM user_service.workers$$) AS idle;
SELECT state, batch_id, item FROM user_service.workers;

-- The primary key finds a batch's chunks.
BEGIN;
SELECT user_service.submit_batch('delete_user',
    (SELECT jsonb_agg(jsonb_build_object('id', 2000000 + i)) FROM generate_series(1, 1000) i)) AS grown \gset
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM user_service.batch_items WHERE batch_id = :grown;
SELECT count(*) AS found_through_the_key FROM user_service.batch_items WHERE batch_id = :grown;
ROLLBACK;

-- the concurrency of a batch defaults to user_service.default_concurrency
SET user_service.default_concurrency = 7;
SELECT concurrency FROM user_service.batch_status(
    user_service.submit_batch('delete_user', '[{"id": 424242}]'));
RESET user_service.default_concurrency;

-- configuration: the engine's GUCs are set in the server configuration
SELECT pg_temp.try($$SET user_service.workers = 3$$);
SELECT pg_temp.try($$SET user_service.batch_retention = '1 day'$$);
ALTER SYSTEM SET user_service.batch_retention = 'soon';
ALTER SYSTEM SET user_service.batch_retention = '-1 day';
ALTER SYSTEM SET user_service.batch_retention = '10000 years';
ALTER SYSTEM SET user_service.workers = 33;
SHOW user_service.batch_retention;
SHOW user_service.workers;
SHOW user_service.max_attempts;
SHOW user_service.default_concurrency;

-- retention: the workers delete batches finished longer ago than it
ALTER SYSTEM SET user_service.batch_retention = '0';
SELECT pg_reload_conf();
SELECT pg_temp.wait_for('SELECT NOT EXISTS (SELECT FROM user_service.batch_jobs WHERE finished_at IS NOT NULL)') AS purged;
SELECT count(*) AS items_left FROM user_service.batch_items;
ALTER SYSTEM RESET user_service.batch_retention;

-- without workers (user_service.workers = 0 on reload), submit_batch says so
-- and process_batches does the work in the calling session
ALTER SYSTEM SET user_service.workers = 0;
SELECT pg_reload_conf();
SELECT pg_temp.wait_for('SELECT count(*) = 0 FROM user_service.workers') AS workers_stopped;
SELECT user_service.submit_batch('create_user', $$[
    {"name": "P1", "email": "p1@example.com", "password": "password p1"},
    {"name": "P2", "email": "p2@example.com", "password": "password p2"},
    {"name": "P3", "email": "P1@example.com", "password": "password p3"}
]$$) AS b6 \gset
SELECT state, pending FROM user_service.batch_status(:b6);
SELECT pg_temp.try('SELECT user_service.process_batches(0)');
SELECT user_service.process_batches(2) AS processed;
SELECT state, pending, succeeded, failed FROM user_service.batch_status(:b6);
SELECT user_service.process_batches() AS processed;
SELECT user_service.process_batches() AS processed;
SELECT item, status, sqlstate FROM user_service.batch_results(:b6);
-- a group of delete_user items is deleted in one statement (the fast path),
-- with the outcomes of running the items one after the other
SELECT id AS p1_id FROM user_service.users WHERE email = 'p1@example.com' \gset
SELECT user_service.submit_batch('delete_user', format('[{"id": %s}, {"id": 999999}, {"id": %s}]',
                                                       :p1_id, :p1_id)::jsonb, 10) AS b8 \gset
SELECT user_service.process_batches() AS processed;
SELECT item, status, user_id IS NOT NULL AS has_user, sqlstate, replace(error, :'p1_id', 'N') AS error
  FROM user_service.batch_results(:b8);
-- a cancel or a statement timeout stops process_batches: the group rolls
-- back and its items are pending again (not failed, not retried later)
SELECT user_service.submit_batch('create_user', $$[
    {"name": "T1", "email": "t1@example.com", "password": "password t1"}
]$$) AS b7 \gset
\set VERBOSITY terse
SET statement_timeout = '5ms';
SELECT user_service.process_batches();
RESET statement_timeout;
\set VERBOSITY default
SELECT item, status, attempts, sqlstate FROM user_service.batch_items WHERE batch_id = :b7;
-- checking the items of a big submission honours a timeout: it stops
-- before it reaches the bad last item
CREATE TEMP TABLE big_submission AS
SELECT jsonb_agg(jsonb_build_object('id', i)) || '[{"id": "x"}]'::jsonb AS items
  FROM generate_series(1, 500000) i;
\set VERBOSITY terse
SET statement_timeout = '10ms';
SELECT user_service.submit_batch('delete_user', (SELECT items FROM big_submission));
RESET statement_timeout;
\set VERBOSITY default
DROP TABLE big_submission;
SELECT user_service.process_batches() AS processed;
SELECT item, status, attempts FROM user_service.batch_items WHERE batch_id = :b7;
-- A pending item without a payload (only an edited job table has one) fails
-- with XX001; the rest of its chunk goes on.
SELECT user_service.submit_batch('delete_user', '[{"id": 999990}, {"id": 999991}, {"id": 999992}]') AS b9 \gset
UPDATE user_service.batch_chunks SET payload[2] = NULL WHERE batch_id = :b9;
SELECT user_service.process_batches() AS processed;
SELECT item, status, sqlstate, error FROM user_service.batch_results(:b9);
SELECT state, succeeded, failed FROM user_service.batch_status(:b9);
ALTER SYSTEM RESET user_service.workers;
SELECT pg_reload_conf();
SELECT pg_temp.wait_for('SELECT count(*) = 2 FROM user_service.workers') AS workers_back;
