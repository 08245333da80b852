-- The user API's happy paths and its not-found and duplicate errors.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc

-- create_user trims name and email, keeps the email's case, returns user_info
SELECT id, name, email, created_at = updated_at AS fresh
  FROM user_service.create_user('  Alice  ', ' Alice@Example.COM ', 'correct horse');
SELECT id, name, email FROM user_service.create_user('Bob', 'bob@example.com', 'battery staple');

-- the result type never has the hash
SELECT attname FROM pg_attribute
 WHERE attrelid = 'user_service.user_info'::regclass AND attnum > 0 ORDER BY attnum;

-- get_user
SELECT id, name, email FROM user_service.get_user(1);
SELECT (user_service.get_user(2)).email;
SELECT pg_temp.try('SELECT user_service.get_user(42)');
SELECT pg_temp.try('SELECT user_service.get_user(-1)');

-- duplicate email in any case: 23505, nothing inserted
SELECT pg_temp.try($$SELECT user_service.create_user('Eve', 'ALICE@example.com', 'whatever1')$$);
SELECT pg_temp.try($$SELECT user_service.create_user('Eve', ' alice@EXAMPLE.com', 'whatever1')$$);
SELECT count(*) FROM user_service.users;

-- the unique index itself rejects what bypasses the API
SELECT pg_temp.try($$INSERT INTO user_service.users (name, email, password_hash)
                     VALUES ('x', 'BOB@example.com', 'x')$$);

-- update_user: NULL keeps the value, updated_at moves, created_at does not
SELECT created_at AS bob_created, updated_at AS bob_updated FROM user_service.users WHERE id = 2 \gset
BEGIN;  -- a new transaction gives a later now()
SELECT id, name, email,
       created_at = :'bob_created' AS created_kept,
       updated_at > :'bob_updated' AS updated_bumped
  FROM user_service.update_user(2, name => ' Robert ');
COMMIT;
SELECT id, name, email FROM user_service.update_user(2, email => 'Robert@Example.com');
SELECT id, name, email FROM user_service.update_user(2);
-- an update that changes nothing writes nothing: no new row version, the
-- same updated_at (NULLs, or the very same values)
SELECT xmin AS bob_xmin, updated_at AS bob_updated FROM user_service.users WHERE id = 2 \gset
BEGIN;
SELECT id, name, email, updated_at = :'bob_updated' AS updated_kept
  FROM user_service.update_user(2);
SELECT id, name, email, updated_at = :'bob_updated' AS updated_kept
  FROM user_service.update_user(2, 'Robert', 'Robert@Example.com');
COMMIT;
SELECT xmin = :'bob_xmin' AS no_new_version FROM user_service.users WHERE id = 2;
SELECT id, name, email FROM user_service.update_user(2, 'Bob', 'bob@example.com');
-- changing only the case of one's own email is not a clash
SELECT id, name, email FROM user_service.update_user(2, email => 'BOB@example.com');
-- a clash with another user, and a missing user
SELECT pg_temp.try($$SELECT user_service.update_user(2, email => 'alice@example.com')$$);
SELECT pg_temp.try($$SELECT user_service.update_user(42, name => 'Nobody')$$);
SELECT id, name, email FROM user_service.get_user(2);

-- set_password: the hash changes, the old password stops working
SELECT password_hash AS old_hash FROM user_service.users WHERE id = 2 \gset
SELECT user_service.set_password(2, 'new password');
SELECT password_hash <> :'old_hash' AS hash_changed FROM user_service.users WHERE id = 2;
SELECT user_service.verify_password('bob@example.com', 'battery staple') AS old_pw,
       user_service.verify_password('bob@example.com', 'new password') AS new_pw;
SELECT pg_temp.try($$SELECT user_service.set_password(42, 'new password')$$);

-- delete_user returns the user it deleted (DELETE ... RETURNING)
SELECT id, name, email, created_at = updated_at AS times FROM user_service.delete_user(2);
SELECT pg_temp.try('SELECT user_service.delete_user(2)');
SELECT pg_temp.try('SELECT user_service.get_user(2)');
SELECT id, name FROM user_service.users ORDER BY id;

-- callers written for the void result still work (a statement, PERFORM)
SELECT id AS deleted_id FROM user_service.create_user('Dora', 'dora@example.com', 'battery staple') \gset
DO $$ BEGIN PERFORM user_service.delete_user(currval(pg_get_serial_sequence('user_service.users', 'id'))); END $$;
SELECT count(*) FROM user_service.users WHERE id = :deleted_id;
SELECT pg_get_function_result('user_service.delete_user(bigint)'::regprocedure);

-- the deleted user's email is free again
SELECT name, email FROM user_service.create_user('Bob', 'bob@example.com', 'battery staple');

-- everything rolls back with the caller's transaction
BEGIN;
SELECT name FROM user_service.create_user('Carol', 'carol@example.com', 'carol password');
SELECT id FROM user_service.delete_user(1);
ROLLBACK;
SELECT id, name FROM user_service.users ORDER BY id;

-- A user_info that somebody altered is refused, not filled in from the
-- wrong number of columns.
ALTER TYPE user_service.user_info ADD ATTRIBUTE extra int;
SELECT pg_temp.try('SELECT user_service.get_user(1)');
SELECT pg_temp.try('SELECT user_service.list_users()');
SELECT pg_temp.try($$SELECT user_service.update_user(1, 'Ann')$$);
SELECT name FROM user_service.users WHERE id = 1;
