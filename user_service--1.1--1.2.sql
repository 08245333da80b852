/* user_service--1.1--1.2.sql: import_user batch kind, stats view */

-- complain if script is sourced in psql, rather than through ALTER EXTENSION
\echo Use "ALTER EXTENSION user_service UPDATE TO '1.2'" to load this file. \quit

-- A fifth kind of batch: users imported from another system with the argon2
-- hash it made ({"name", "email", "password_hash"}), so that they keep their
-- passwords; a successful verify_password rehashes with the current
-- parameters.
ALTER TABLE user_service.batch_jobs
    DROP CONSTRAINT batch_jobs_kind_check,
    ADD CONSTRAINT batch_jobs_kind_check
        CHECK (kind IN ('create_user', 'update_user', 'delete_user', 'set_password', 'import_user'));
COMMENT ON FUNCTION user_service.submit_batch(text, jsonb, int) IS
    'queue a batch of create_user, update_user, delete_user, set_password or import_user items; returns its id';

-- What user_service.stats reads for "items processed in the last minute":
-- the progress rows of the last minute, not all those retained.
CREATE INDEX batch_progress_at ON user_service.batch_progress (at);

-- One row that sums up the service: for psql (\watch) and monitoring.
CREATE VIEW user_service.stats AS
SELECT (SELECT coalesce(sum(d.delta), 0) FROM user_service.user_count_deltas d)::bigint AS users,
       b.batches_pending,
       b.batches_running,
       b.batches_done,
       b.batches_cancelled,
       b.items_pending,
       b.items_running,
       (SELECT coalesce(sum(g.succeeded + g.failed), 0)
          FROM user_service.batch_progress g
         WHERE g.at > now() - interval '1 minute')::bigint AS items_processed_last_minute,
       w.workers_busy,
       w.workers_idle
  FROM (SELECT count(*) FILTER (WHERE state = 'pending') AS batches_pending,
               count(*) FILTER (WHERE state = 'running') AS batches_running,
               count(*) FILTER (WHERE state = 'done') AS batches_done,
               count(*) FILTER (WHERE state = 'cancelled') AS batches_cancelled,
               coalesce(sum(pending), 0)::bigint AS items_pending,
               coalesce(sum(running), 0)::bigint AS items_running
          FROM user_service.batches) b,
       (SELECT count(*) FILTER (WHERE state = 'busy')::int AS workers_busy,
               count(*) FILTER (WHERE state = 'idle')::int AS workers_idle
          FROM user_service.worker_info()) w;
COMMENT ON VIEW user_service.stats IS
    'one row: users, batches by state, items pending, running and processed in the last minute, workers busy and idle';
COMMENT ON COLUMN user_service.stats.users IS 'the exact number of users (as list_users counts them)';
COMMENT ON COLUMN user_service.stats.batches_pending IS 'batches of which no item has started';
COMMENT ON COLUMN user_service.stats.batches_running IS 'batches started and not finished';
COMMENT ON COLUMN user_service.stats.batches_done IS 'finished batches still retained (see user_service.batch_retention)';
COMMENT ON COLUMN user_service.stats.batches_cancelled IS 'cancelled batches still retained';
COMMENT ON COLUMN user_service.stats.items_pending IS
    'items neither finished nor being processed (including those waiting for a retry)';
COMMENT ON COLUMN user_service.stats.items_running IS 'items being processed by the workers right now';
COMMENT ON COLUMN user_service.stats.items_processed_last_minute IS
    'items that succeeded or failed in the last minute (cancelled ones do not count)';
COMMENT ON COLUMN user_service.stats.workers_busy IS 'background workers processing items';
COMMENT ON COLUMN user_service.stats.workers_idle IS 'background workers waiting for work';
REVOKE ALL ON user_service.stats FROM PUBLIC;

-- Every object explains itself in psql (\d+, \di+, \ds+): what 1.0 and 1.1
-- left without a comment.
COMMENT ON SEQUENCE user_service.users_id_seq IS 'ids of user_service.users';
COMMENT ON SEQUENCE user_service.batch_jobs_id_seq IS 'ids of user_service.batch_jobs';
COMMENT ON INDEX user_service.users_pkey IS 'users by id: get_user and the pages of list_users';
COMMENT ON TRIGGER count_inserts ON user_service.users IS
    'adds the number of inserted users to user_count_deltas';
COMMENT ON TRIGGER count_deletes ON user_service.users IS
    'subtracts the number of deleted users from user_count_deltas';
COMMENT ON TRIGGER count_truncates ON user_service.users IS
    'cancels the total in user_count_deltas';
COMMENT ON INDEX user_service.batch_jobs_pkey IS 'batches by id';
COMMENT ON INDEX user_service.batch_jobs_open IS
    'batches with work left, oldest first: what the workers look for';
COMMENT ON INDEX user_service.batch_jobs_finished IS
    'finished batches by finish time: what retention looks for';
COMMENT ON INDEX user_service.batch_progress_batch IS 'progress rows of a batch';
COMMENT ON INDEX user_service.batch_progress_at IS
    'progress rows by time: the items processed in the last minute of user_service.stats';
COMMENT ON INDEX user_service.batch_items_pending IS
    'pending items in batch order: what claiming, recording and cancelling use';
COMMENT ON INDEX user_service.batch_items_batch IS
    'the pages of a batch''s items (BRIN: items are stored in batch order)';
