-- The demonstration run by test/demo.sh.
\pset footer off
\set VERBOSITY default
CREATE EXTENSION IF NOT EXISTS user_service;
TRUNCATE user_service.users;
TRUNCATE user_service.batch_jobs CASCADE;

\echo
\echo '-- create three users (argon2id hashing happens inside the server)'
SELECT id, name, email FROM user_service.create_user('Ada Lovelace', 'ada@example.com', 'analytical engine');
SELECT id, name, email FROM user_service.create_user('Alan Turing', 'alan@example.com', 'universal machine');
SELECT id, name, email FROM user_service.create_user('Grace Hopper', 'grace@example.com', 'first compiler');

\echo '-- the stored hash is a standard PHC string'
SELECT id, password_hash FROM user_service.users ORDER BY id LIMIT 1;

\echo '-- a page of users and the exact total, in one call'
SELECT total, cardinality(users) AS on_this_page FROM user_service.list_users(1, 2);
SELECT u.id, u.name, u.email FROM user_service.list_users(1, 2) l, unnest(l.users) u;

\echo '-- verify passwords (the email matches in any case)'
SELECT user_service.verify_password('ADA@example.com', 'analytical engine') AS right_password,
       user_service.verify_password('ada@example.com', 'difference engine') AS wrong_password,
       user_service.verify_password('nobody@example.com', 'analytical engine') AS unknown_user;

\echo '-- update and get'
SELECT id, name, email FROM user_service.update_user(2, name => 'Alan M. Turing');
SELECT id, name, email FROM user_service.get_user(2);

\echo '-- clean errors: a missing user (P0002) and a duplicate email in another case (23505)'
SELECT * FROM user_service.get_user(42);
SELECT * FROM user_service.create_user('Imposter', 'GRACE@Example.com', 'password123');

\echo
\echo '-- a batch of 1,000 create_user items, hashed by the background workers'
SELECT user_service.submit_batch('create_user',
         (SELECT jsonb_agg(jsonb_build_object('name', 'Batch user ' || i,
                                              'email', 'batch' || i || '@example.com',
                                              'password', 'batch password ' || i))
            FROM generate_series(1, 1000) i),
         concurrency => 2) AS batch \gset
SELECT set_config('demo.batch', :'batch', false) IS NOT NULL AS submitted;
DO $$
DECLARE
    s record;
BEGIN
    LOOP
        SELECT * INTO s FROM user_service.batch_status(current_setting('demo.batch')::bigint);
        RAISE NOTICE 'batch %: % (% of % done, % running, % failed)',
            s.batch_id, s.state, s.succeeded + s.failed, s.total, s.running, s.failed;
        EXIT WHEN s.state IN ('done', 'cancelled');
        PERFORM user_service.wait_batch(s.batch_id, '1 second');
    END LOOP;
END $$;
SELECT batch_id, kind, state, total, succeeded, failed, percent_done,
       finished_at - started_at AS took
  FROM user_service.batches WHERE batch_id = :batch;
SELECT status, count(*) FROM user_service.batch_results(:batch) GROUP BY status;
SELECT total AS users_now FROM user_service.list_users();
SELECT pid, state FROM user_service.workers;

\echo '-- the one-row overview an administrator watches (user_service.stats)'
SELECT * FROM user_service.stats;
