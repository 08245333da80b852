/* user_service--1.0--1.1.sql: keyset pages and the batch engine */

\echo Use "ALTER EXTENSION user_service UPDATE TO '1.1'" to load this file. \quit

CREATE FUNCTION user_service.list_users_after(after_id bigint DEFAULT 0, per_page int DEFAULT 20,
                                              OUT total bigint, OUT users user_service.user_info[])
RETURNS record
AS 'MODULE_PATHNAME', 'list_users_after'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION user_service.list_users_after(bigint, int) IS
    'the per_page users with id > after_id (keyset pagination) and the exact total, from one snapshot';
REVOKE EXECUTE ON FUNCTION user_service.list_users_after(bigint, int) FROM PUBLIC;

-- One row per submitted batch.  Nothing here changes while the batch runs
-- (progress goes to batch_progress), so no transaction ever waits on a
-- batch's row but cancel_batch's.  finished_at is a hint for the workers
-- and retention, written once the batch is seen complete; what a batch's
-- state is comes from batch_progress (see the view user_service.batches).
CREATE TABLE user_service.batch_jobs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text        NOT NULL
                 CHECK (kind IN ('create_user', 'update_user', 'delete_user', 'set_password')),
    concurrency  int         NOT NULL CHECK (concurrency >= 1),
    total        int         NOT NULL CHECK (total >= 1),
    submitted_by oid         NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    cancelled_at timestamptz,
    finished_at  timestamptz
);
-- what the workers look for: batches with work left, oldest first
CREATE INDEX batch_jobs_open ON user_service.batch_jobs (id)
    WHERE finished_at IS NULL AND cancelled_at IS NULL;
-- what retention looks for
CREATE INDEX batch_jobs_finished ON user_service.batch_jobs (finished_at)
    WHERE finished_at IS NOT NULL;
COMMENT ON TABLE user_service.batch_jobs IS
    'submitted batches; see the view user_service.batches for their state and counts';

-- Progress, one row per group of items processed (or per cancel), written
-- in the transaction that processes them: counters without a hot row, like
-- user_count_deltas.
CREATE TABLE user_service.batch_progress (
    batch_id  bigint      NOT NULL,
    started   timestamptz,
    at        timestamptz NOT NULL,
    succeeded int         NOT NULL DEFAULT 0,
    failed    int         NOT NULL DEFAULT 0,
    cancelled int         NOT NULL DEFAULT 0
);
CREATE INDEX batch_progress_batch ON user_service.batch_progress (batch_id);
COMMENT ON TABLE user_service.batch_progress IS
    'items finished per batch, one row per group of items: their sums are the batch''s counts';

-- (batch_items and batch_progress have no foreign key to batch_jobs on
-- purpose: only the extension writes them, and a per-row check would cost
-- submit_batch a query per item.  Retention deletes all three together.)

-- One row per item, in input order.  payload is the submitted JSON object;
-- its "password" is removed in the transaction that hashes it or records
-- the item's final failure.  An item being processed stays 'pending' and is
-- row-locked by the transaction processing it: if that transaction dies,
-- the item is simply pending again.
CREATE TABLE user_service.batch_items (
    batch_id    bigint      NOT NULL,
    item        int         NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    payload     jsonb,
    attempts    int         NOT NULL DEFAULT 0,
    not_before  timestamptz,
    user_id     bigint,
    sqlstate    text,
    error       text,
    finished_at timestamptz
);
-- What claiming, recording and cancelling use: the pending items only.
-- (batch_id, item) is unique by construction (submit_batch numbers the
-- items); a unique index on it would be a second b-tree to maintain for
-- every submitted item, for no query's benefit.
CREATE INDEX batch_items_pending ON user_service.batch_items (batch_id, item)
    WHERE status = 'pending';
-- What batch_results and retention use: items are stored in batch order, so
-- a BRIN index finds a batch's pages at almost no cost.
CREATE INDEX batch_items_batch ON user_service.batch_items USING brin (batch_id);
COMMENT ON TABLE user_service.batch_items IS
    'items of the batches; results and errors per item, never a password once finished';

SELECT pg_catalog.pg_extension_config_dump('user_service.batch_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('user_service.batch_jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('user_service.batch_items', '');
SELECT pg_catalog.pg_extension_config_dump('user_service.batch_progress', '');

CREATE FUNCTION user_service.submit_batch(kind text, items jsonb, concurrency int DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'submit_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.submit_batch(text, jsonb, int) IS
    'queue a batch of create_user, update_user, delete_user or set_password items; returns its id';

-- What batch_status returns (a type, since its first column is named like
-- the function's argument).
CREATE TYPE user_service.batch_info AS (
    batch_id     bigint,
    kind         text,
    state        text,
    total        int,
    pending      int,
    running      int,
    succeeded    int,
    failed       int,
    cancelled    int,
    concurrency  int,
    submitted_at timestamptz,
    started_at   timestamptz,
    finished_at  timestamptz
);
COMMENT ON TYPE user_service.batch_info IS 'state and counts of a batch, as batch_status returns them';

CREATE FUNCTION user_service.batch_status(batch_id bigint)
RETURNS user_service.batch_info
AS 'MODULE_PATHNAME', 'batch_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.batch_status(bigint) IS
    'state and counts of one batch; P0002 when there is none';

CREATE FUNCTION user_service.batch_results(batch_id bigint)
RETURNS TABLE (item int, status text, user_id bigint, sqlstate text, error text)
AS 'MODULE_PATHNAME', 'batch_results'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.batch_results(bigint) IS
    'one row per item of a batch, in input order, with its result or error';

CREATE FUNCTION user_service.cancel_batch(batch_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'cancel_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.cancel_batch(bigint) IS
    'cancel the items of a batch that have not started; returns how many';

CREATE FUNCTION user_service.wait_batch(batch_id bigint, timeout interval DEFAULT '1 minute')
RETURNS boolean
AS 'MODULE_PATHNAME', 'wait_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.wait_batch(bigint, interval) IS
    'wait until a batch is done or cancelled (true) or the timeout passes (false)';

CREATE FUNCTION user_service.process_batches(max_items int DEFAULT 1000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'process_batches'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.process_batches(int) IS
    'process up to max_items pending items in this session and transaction, as a worker would';

CREATE FUNCTION user_service.running_items(OUT batch_id bigint, OUT running int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'running_items'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.running_items() IS
    'items the background workers are processing right now, per batch';

CREATE FUNCTION user_service.worker_info(OUT pid int, OUT state text, OUT batch_id bigint,
                                         OUT item int, OUT items int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'worker_info'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION user_service.worker_info() IS
    'one row per running background worker';

CREATE VIEW user_service.batches AS
SELECT b.id AS batch_id,
       b.kind,
       CASE WHEN p.done AND b.cancelled_at IS NOT NULL THEN 'cancelled'
            WHEN p.done THEN 'done'
            WHEN p.started IS NOT NULL OR r.running > 0 THEN 'running'
            ELSE 'pending' END AS state,
       b.total,
       GREATEST(b.total - p.succeeded - p.failed - p.cancelled - coalesce(r.running, 0), 0) AS pending,
       coalesce(r.running, 0) AS running,
       p.succeeded,
       p.failed,
       p.cancelled,
       round(100.0 * (p.succeeded + p.failed + p.cancelled) / b.total, 1) AS percent_done,
       b.concurrency,
       b.submitted_at,
       p.started AS started_at,
       CASE WHEN p.done THEN p.last END AS finished_at
  FROM user_service.batch_jobs b
 CROSS JOIN LATERAL (
       SELECT coalesce(sum(g.succeeded), 0)::int AS succeeded,
              coalesce(sum(g.failed), 0)::int AS failed,
              coalesce(sum(g.cancelled), 0)::int AS cancelled,
              min(g.started) AS started,
              max(g.at) AS last,
              coalesce(sum(g.succeeded + g.failed + g.cancelled), 0) >= b.total AS done
         FROM user_service.batch_progress g
        WHERE g.batch_id = b.id) p
  -- a finished batch has nothing running, even in the instant between a
  -- worker's commit and its clearing of its shared-memory slot
  LEFT JOIN user_service.running_items() r ON r.batch_id = b.id AND NOT p.done
 ORDER BY b.id DESC;
COMMENT ON VIEW user_service.batches IS
    'every batch with its counts and percent done, newest first (try \watch)';

CREATE VIEW user_service.workers AS
SELECT pid, state, batch_id, item, items FROM user_service.worker_info();
COMMENT ON VIEW user_service.workers IS
    'the running background workers: pid, idle or busy, current batch and item';

REVOKE ALL ON user_service.batch_jobs, user_service.batch_items, user_service.batch_progress,
              user_service.batches, user_service.workers FROM PUBLIC;
REVOKE ALL ON SEQUENCE user_service.batch_jobs_id_seq FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    user_service.submit_batch(text, jsonb, int),
    user_service.batch_status(bigint),
    user_service.batch_results(bigint),
    user_service.cancel_batch(bigint),
    user_service.wait_batch(bigint, interval),
    user_service.process_batches(int),
    user_service.running_items(),
    user_service.worker_info()
FROM PUBLIC;
