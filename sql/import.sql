-- Version 1.2: the import_user batch kind (users moved over with the argon2
-- hash another system made), the user_service.stats view, and a comment on
-- every object of the extension.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc

-- The items are processed here, by process_batches, not by the workers.
ALTER SYSTEM SET user_service.workers = 0;
SELECT pg_reload_conf();
SELECT pg_temp.wait_for('SELECT count(*) = 0 FROM user_service.workers') AS workers_stopped;
-- (without the NOTICE of every submission that no worker will run it)
SET client_min_messages = warning;

-- Submits one import_user item with this password_hash (a JSON value).
CREATE FUNCTION pg_temp.import_hash(hash jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.try(format('SELECT user_service.submit_batch(%L, %L)', 'import_user',
        jsonb_build_array(jsonb_build_object('name', 'N', 'email', 'n@example.com',
                                             'password_hash', hash))))
$$;

-- Validation at submission: the item's shape, as for the other kinds ...
SELECT s, pg_temp.try(s) FROM (VALUES
    ($$SELECT user_service.submit_batch('import_user', '[{"name": "a", "email": "a@x.com"}]')$$),
    ($$SELECT user_service.submit_batch('import_user', '[{"name": "a", "email": "a@x.com", "password": "secret pw"}]')$$),
    ($$SELECT user_service.submit_batch('import_user', '[{"name": "a", "email": "a@x.com", "password_hash": null}]')$$),
    ($$SELECT user_service.submit_batch('import_user', '[{"name": "a", "email": "a@x.com", "password_hash": 42}]')$$),
    ($$SELECT user_service.submit_batch('import_user', '[{"name": 1, "email": "a@x.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$c2FsdHNhbHQ"}]')$$),
    ($$SELECT user_service.submit_batch('import_user', '[{"email": "a@x.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$c2FsdHNhbHQ"}]')$$)
) AS t(s);

-- ... and the hash itself: an argon2 PHC string within libargon2's limits
-- and the import's cost bounds (22023, naming the item, never quoting the hash)
\set salt 'c2FsdHNhbHQxMjM0'
\set tag 'rZf3CBMdhDXCwltx9WhnTp90rK9CQPc0HaAkC6DFkdM'
SELECT what, pg_temp.import_hash(to_jsonb(h)) FROM (VALUES
    ('empty', ''),
    ('no leading $', 'argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('argon2x', '$argon2x$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('upper case', '$ARGON2ID$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('scrypt', '$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E'),
    ('bcrypt', '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW'),
    ('leading space', ' $argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('v=18', '$argon2id$v=18$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('v=019', '$argon2id$v=019$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('t before m', '$argon2id$v=19$t=1,m=64,p=1$' || :'salt' || '$' || :'tag'),
    ('no t', '$argon2id$v=19$m=64,p=1$' || :'salt' || '$' || :'tag'),
    ('m=064', '$argon2id$v=19$m=064,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('m=-64', '$argon2id$v=19$m=-64,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('m=2^32', '$argon2id$v=19$m=4294967296,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('keyid', '$argon2id$v=19$m=64,t=1,p=1,keyid=abc$' || :'salt' || '$' || :'tag'),
    ('t=0', '$argon2id$v=19$m=64,t=0,p=1$' || :'salt' || '$' || :'tag'),
    ('p=0', '$argon2id$v=19$m=64,t=1,p=0$' || :'salt' || '$' || :'tag'),
    ('p=2^24', '$argon2id$v=19$m=134217728,t=1,p=16777216$' || :'salt' || '$' || :'tag'),
    ('m=7', '$argon2id$v=19$m=7,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('m=15 p=2', '$argon2id$v=19$m=15,t=1,p=2$' || :'salt' || '$' || :'tag'),
    ('m=2^32-1', '$argon2id$v=19$m=4294967295,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('m=256 MiB + 1', '$argon2id$v=19$m=262145,t=1,p=1$' || :'salt' || '$' || :'tag'),
    ('256 MiB, t=5', '$argon2id$v=19$m=262144,t=5,p=1$' || :'salt' || '$' || :'tag'),
    ('libsodium sensitive', '$argon2id$v=19$m=1048576,t=4,p=1$' || :'salt' || '$' || :'tag'),
    ('t=2^32-1', '$argon2id$v=19$m=8,t=4294967295,p=1$' || :'salt' || '$' || :'tag'),
    ('no salt, no hash', '$argon2id$v=19$m=64,t=1,p=1'),
    ('no hash', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt'),
    ('empty salt', '$argon2id$v=19$m=64,t=1,p=1$$' || :'tag'),
    ('empty hash', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$'),
    ('padded salt', '$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA==$' || :'tag'),
    ('padded hash', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag' || '='),
    ('url-safe salt', '$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQxMj-0$' || :'tag'),
    ('non-canonical salt', '$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdB$' || :'tag'),
    ('non-canonical hash', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$rZf3CBMdhDXCwltx9WhnTp90rK9CQPc0HaAkC6DFkdN'),
    ('lone character', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag' || 'AB'),
    ('7-byte salt', '$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbA$' || :'tag'),
    ('3-byte hash', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$YWJj'),
    ('1025-byte salt', '$argon2id$v=19$m=64,t=1,p=1$' || repeat('A', 1367) || '$' || :'tag'),
    ('1025-byte hash', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || repeat('A', 1367)),
    ('2000-byte hash', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || repeat('A', 2668)),
    ('a field more', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag' || '$' || :'tag'),
    ('trailing space', '$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag' || ' ')
) AS t(what, h);
-- the bad item is named; nothing was stored
SELECT pg_temp.try(format($$SELECT user_service.submit_batch('import_user', %L)$$, format($j$[
    {"name": "Ok", "email": "ok@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$%s$%s"},
    {"name": "Bad", "email": "bad@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=0$%s$%s"}
]$j$, :'salt', :'tag', :'salt', :'tag')));
SELECT count(*) AS batches, (SELECT count(*) FROM user_service.batch_items) AS items
  FROM user_service.batch_jobs;
-- the limits themselves are accepted: 8 KiB per lane, 8-byte salt, 4-byte
-- hash, 1024-byte salt and hash, 256 MiB, m * t = 1 GiB
SELECT what, pg_temp.import_hash(to_jsonb(h)) FROM (VALUES
    ('m=16 p=2', '$argon2id$v=19$m=16,t=1,p=2$' || :'salt' || '$' || :'tag'),
    ('8-byte salt, 4-byte hash', '$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$YWJjZA'),
    ('1024-byte salt and hash', '$argon2id$v=19$m=64,t=1,p=1$' || repeat('A', 1366) || '$' || repeat('A', 1366)),
    ('256 MiB, t=4', '$argon2id$v=19$m=262144,t=4,p=1$' || :'salt' || '$' || :'tag'),
    ('Django: 100 MiB, t=2', '$argon2id$v=19$m=102400,t=2,p=8$' || :'salt' || '$' || :'tag'),
    ('m=8, t=2^17', '$argon2id$v=19$m=8,t=131072,p=1$' || :'salt' || '$' || :'tag'),
    ('no version', '$argon2i$m=64,t=1,p=1$' || :'salt' || '$' || :'tag')
) AS t(what, h);
DELETE FROM user_service.batch_chunks;
DELETE FROM user_service.batch_jobs;

-- Hashes made by another implementation (Python's argon2-cffi): argon2id
-- with two lanes, argon2i with an 8-byte salt and a 64-byte tag, argon2d
-- with a 20-byte tag, version 0x10, version 0x10 without "v=" (which is
-- what a missing version means), and one made exactly as this extension
-- makes hashes now.  Their passwords are "import pw <name>".  Name and email
-- follow create_user's rules, with create_user's errors.
SELECT id FROM user_service.create_user('Existing', 'existing@example.com', 'existing password');
SELECT user_service.submit_batch('import_user', $$[
  {"name": "id",  "email": "id@example.com",
   "password_hash": "$argon2id$v=19$m=256,t=1,p=2$wKgI5z9dCKhtaCNbJfWEFQ$WnIiN/SnpThGauAag7RV/PtR4MhZnKBvmpBjrNDPkrw"},
  {"name": "i",   "email": "i@example.com",
   "password_hash": "$argon2i$v=19$m=128,t=2,p=1$sdxZdxhgv0Q$tfLfWodVHrgKXNkr02+THmraadQ9A28KgOPxbMNigRX/Zey7bj0J/ANIE9KZW524OjUQlnCA5ysXAE6xreU31Q"},
  {"name": "d",   "email": "d@example.com",
   "password_hash": "$argon2d$v=19$m=64,t=1,p=1$wKgI5z9dCKhtaCNbJfWEFQ$KNZObrBW6pXS2sQbQzCn2rfg/54"},
  {"name": "v16", "email": "v16@example.com",
   "password_hash": "$argon2id$v=16$m=64,t=1,p=1$wKgI5z9dCKhtaCNbJfWEFQ$6coIYGGmiSKLKaqZeMpPWMreSUxiNIh8c/dajF/h0ow"},
  {"name": "nov", "email": "nov@example.com",
   "password_hash": "$argon2i$m=64,t=1,p=1$wKgI5z9dCKhtaCNbJfWEFQ$tLa/VBf+q8xlQ3Qzvy0DFQQQNxaUspVgFv1Rf9EZOrk"},
  {"name": "current", "email": "  current@example.com ",
   "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$dQJtVBJXPZWUWuk13kXpnQ$XALvuyeUkPUFh1dCHks7uJ4LzYCqkh2JilX94NWYh6I"},
  {"name": "dup", "email": "EXISTING@example.com",
   "password_hash": "$argon2d$v=19$m=64,t=1,p=1$wKgI5z9dCKhtaCNbJfWEFQ$KNZObrBW6pXS2sQbQzCn2rfg/54"},
  {"name": "dup in batch", "email": "Id@Example.com",
   "password_hash": "$argon2d$v=19$m=64,t=1,p=1$wKgI5z9dCKhtaCNbJfWEFQ$KNZObrBW6pXS2sQbQzCn2rfg/54"},
  {"name": "  ", "email": "blank@example.com",
   "password_hash": "$argon2d$v=19$m=64,t=1,p=1$wKgI5z9dCKhtaCNbJfWEFQ$KNZObrBW6pXS2sQbQzCn2rfg/54"},
  {"name": "bad email", "email": "not an email",
   "password_hash": "$argon2d$v=19$m=64,t=1,p=1$wKgI5z9dCKhtaCNbJfWEFQ$KNZObrBW6pXS2sQbQzCn2rfg/54"}
]$$, concurrency => 20) AS b1 \gset
SELECT kind, state, total, pending FROM user_service.batch_status(:b1);
CREATE TEMP TABLE imported AS
    SELECT item, payload->>'password_hash' AS hash FROM user_service.batch_items WHERE batch_id = :b1;
SELECT user_service.process_batches() AS processed;
SELECT state, succeeded, failed FROM user_service.batch_status(:b1);
-- nothing is hashed, so the items go in groups (one here), not one
-- transaction each
SELECT count(*) AS groups FROM user_service.batch_progress WHERE batch_id = :b1;
SELECT r.item, r.status, u.name, r.sqlstate, r.error
  FROM user_service.batch_results(:b1) r LEFT JOIN user_service.users u ON u.id = r.user_id
 ORDER BY r.item;
-- the same errors, word for word, as create_user's
SELECT r.item, r.sqlstate || ': ' || r.error = pg_temp.try(format(
           'SELECT user_service.create_user(%L, %L, %L)',
           i.payload->>'name', i.payload->>'email', 'some password')) AS same_as_create_user
  FROM user_service.batch_results(:b1) r
  JOIN user_service.batch_items i ON i.batch_id = :b1 AND i.item = r.item
 WHERE r.status = 'failed' ORDER BY r.item;
-- the stored hashes are the imported strings; no hash is left in the job table
SELECT u.name, u.email, u.password_hash = i.hash AS stored_as_given
  FROM user_service.batch_results(:b1) r
  JOIN imported i ON i.item = r.item
  JOIN user_service.users u ON u.id = r.user_id
 ORDER BY r.item;
SELECT count(*) FILTER (WHERE payload ? 'password_hash') AS with_hash,
       count(*) FILTER (WHERE payload ? 'email') AS with_email
  FROM user_service.batch_items WHERE batch_id = :b1;

-- verify_password works on them (read-only: no rehash yet) ...
BEGIN READ ONLY;
SELECT name,
       user_service.verify_password(email, 'import pw ' || name) AS right_pw,
       user_service.verify_password(email, 'import pw x') AS wrong_pw
  FROM user_service.users WHERE name <> 'Existing' ORDER BY id;
COMMIT;
SELECT name, substring(password_hash from '^\$[a-z0-9]+(?:\$v=[0-9]+)?\$[^$]+') AS params
  FROM user_service.users WHERE name <> 'Existing' ORDER BY id;
-- ... and a successful verify upgrades them to the current parameters,
-- except the one that already has them
SELECT password_hash AS before_hash FROM user_service.users WHERE name = 'current' \gset
SELECT name, user_service.verify_password(email, 'import pw ' || name) AS verified
  FROM user_service.users WHERE name <> 'Existing' ORDER BY id;
SELECT name,
       password_hash ~ '^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$' AS current,
       user_service.verify_password(email, 'import pw ' || name) AS still_verifies,
       updated_at = created_at AS updated_at_kept
  FROM user_service.users WHERE name <> 'Existing' ORDER BY id;
SELECT password_hash = :'before_hash' AS current_one_kept FROM user_service.users WHERE name = 'current';

-- Checked again when processed: an item restored from a dump taken before
-- the check, say, fails alone with the same message.
SELECT user_service.submit_batch('import_user', format($j$[
    {"name": "Later 1", "email": "later1@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$%s$%s"},
    {"name": "Later 2", "email": "later2@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$%s$%s"}
]$j$, :'salt', :'tag', :'salt', :'tag')::jsonb) AS b2 \gset
UPDATE user_service.batch_chunks
   SET payload[1] = jsonb_set(payload[1], '{password_hash}', '"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$c2FsdA"')
 WHERE batch_id = :b2 AND first_item = 1;
SELECT user_service.process_batches() AS processed;
SELECT item, status, sqlstate, error FROM user_service.batch_results(:b2);

-- A cancelled import removes the hashes from the job table too.
SELECT user_service.submit_batch('import_user', format($j$[
    {"name": "Never", "email": "never@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$%s$%s"}
]$j$, :'salt', :'tag')::jsonb) AS b3 \gset
SELECT user_service.cancel_batch(:b3) AS cancelled;
SELECT count(*) FILTER (WHERE payload ? 'password_hash') AS with_hash
  FROM user_service.batch_items WHERE batch_id = :b3;

-- An import needs EXECUTE on create_user (it creates users, with passwords
-- of the importer's choosing, like create_user).
DROP ROLE IF EXISTS regress_us_importer;
DROP ROLE IF EXISTS regress_us_monitor;
CREATE ROLE regress_us_importer;
GRANT USAGE ON SCHEMA user_service TO regress_us_importer;
GRANT EXECUTE ON FUNCTION user_service.submit_batch(text, jsonb, int) TO regress_us_importer;
SET ROLE regress_us_importer;
SELECT pg_temp.import_hash(to_jsonb('$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'));
RESET ROLE;
GRANT EXECUTE ON FUNCTION user_service.create_user(text, text, text) TO regress_us_importer;
SET ROLE regress_us_importer;
SELECT pg_temp.import_hash(to_jsonb('$argon2id$v=19$m=64,t=1,p=1$' || :'salt' || '$' || :'tag'));
RESET ROLE;
REVOKE ALL ON FUNCTION user_service.submit_batch(text, jsonb, int),
                       user_service.create_user(text, text, text) FROM regress_us_importer;
REVOKE USAGE ON SCHEMA user_service FROM regress_us_importer;
DROP ROLE regress_us_importer;
SELECT user_service.cancel_batch(max(id)) AS cancelled FROM user_service.batch_jobs;

-- user_service.stats: one row that sums up the service.
\x on
SELECT users, batches_pending, batches_running, batches_done, batches_cancelled,
       items_pending, items_running, workers_busy, workers_idle
  FROM user_service.stats;
\x off
SELECT s.users = (user_service.list_users()).total AS exact_users,
       s.batches_done = (SELECT count(*) FROM user_service.batches WHERE state = 'done') AS done_agrees,
       s.batches_cancelled = 2 AS two_cancelled
  FROM user_service.stats s;
-- within one transaction (a fixed now()): a pending batch, then processed
BEGIN;
SELECT items_processed_last_minute AS processed_before FROM user_service.stats \gset
SELECT user_service.submit_batch('import_user', format($j$[
    {"name": "S1", "email": "s1@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$%s$%s"},
    {"name": "S2", "email": "s2@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$%s$%s"},
    {"name": "S3", "email": "S1@example.com", "password_hash": "$argon2id$v=19$m=64,t=1,p=1$%s$%s"}
]$j$, :'salt', :'tag', :'salt', :'tag', :'salt', :'tag')::jsonb) AS b4 \gset
SELECT batches_pending, batches_running, items_pending, items_running,
       items_processed_last_minute - :processed_before AS processed
  FROM user_service.stats;
SELECT user_service.process_batches(1) AS processed;
SELECT batches_pending, batches_running, items_pending,
       items_processed_last_minute - :processed_before AS processed
  FROM user_service.stats;
SELECT user_service.process_batches() AS processed;
SELECT batches_pending, batches_running, items_pending,
       items_processed_last_minute - :processed_before AS processed,
       users = (user_service.list_users()).total AS exact_users
  FROM user_service.stats;
COMMIT;
-- nothing older than a minute counts
UPDATE user_service.batch_progress SET at = at - interval '61 seconds';
SELECT items_processed_last_minute FROM user_service.stats;
-- the workers: none while user_service.workers = 0, idle ones after a reload
SELECT workers_busy, workers_idle FROM user_service.stats;
ALTER SYSTEM RESET user_service.workers;
SELECT pg_reload_conf();
SELECT pg_temp.wait_for('SELECT workers_idle = 2 AND workers_busy = 0 FROM user_service.stats') AS workers_idle;

-- A monitoring role reads it with the grants of the other views.
CREATE ROLE regress_us_monitor;
SET ROLE regress_us_monitor;
SELECT pg_temp.try('SELECT * FROM user_service.stats');
RESET ROLE;
GRANT USAGE ON SCHEMA user_service TO regress_us_monitor;
GRANT SELECT ON user_service.stats TO regress_us_monitor;
GRANT EXECUTE ON FUNCTION user_service.running_items(), user_service.worker_info() TO regress_us_monitor;
SET ROLE regress_us_monitor;
SELECT users > 0 AS readable FROM user_service.stats;
SELECT pg_temp.try('SELECT count(*) FROM user_service.user_count_deltas');
RESET ROLE;
REVOKE ALL ON user_service.stats FROM regress_us_monitor;
REVOKE EXECUTE ON FUNCTION user_service.running_items(), user_service.worker_info() FROM regress_us_monitor;
REVOKE USAGE ON SCHEMA user_service FROM regress_us_monitor;
DROP ROLE regress_us_monitor;

-- Hashes of other systems (src/foreign_hash.c).  These were made by the real
-- producers (Python's bcrypt, passlib, Django's make_password, PHP's
-- password_hash, mkpasswd, hashlib for a Keycloak credential) for the
-- password 'correct horse'; test/t/031 makes fresh ones at run time.
CREATE TEMP TABLE foreign_hashes (what text, hash text);
INSERT INTO foreign_hashes VALUES
    ('bcrypt 2b', '$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G'),
    ('bcrypt 2a', '$2a$10$6eBubc1jCuKbtG9rwLRNQOA67bW5rAQoVwHcz982qkwYY2MqhVmcG'),
    ('php 2y', '$2y$10$9ZutdN2p887wneeOYWGrt.WEem1FiRdwsta7oK5mtf.kYkUpXHeHS'),
    ('spring {bcrypt}', '{bcrypt}' || '$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G'),
    ('django bcrypt', 'bcrypt$$2b$12$3SFsgti.RgxbD6Id0tGPYued1vQtlYSAeZBwthrZwB.zP4Egp74mq'),
    ('django bcrypt_sha256', 'bcrypt_sha256$$2b$12$Qgb.Hz4bHwjU5lmo/XIKROe8fn5K6aLEqGriAvJfF8L0rYqaLMjEq'),
    ('django pbkdf2_sha256', 'pbkdf2_sha256$260000$jTjAv9KVNjC9QdOuyVFbuS$P8ugDeeDbblcKYTgBtyMJRilqJOSi1xU6daF8ZWjL/g='),
    ('django pbkdf2_sha1', 'pbkdf2_sha1$260000$nZEum6N3uPnLCxhpnsJ0XZ$jLZ5aExUOSVx0a6PrcnGLh+RmLU='),
    ('passlib pbkdf2-sha256', '$pbkdf2-sha256$29000$EAJAyHlPCQFg7F0rZUypVQ$wr2rhnYs33O9qEpUheM6bA3KN7bpOHmMKMs.QajC7Tg'),
    ('passlib pbkdf2', '$pbkdf2$131000$iLFWCmHsvfe.lzKG0Po/5w$OS3B21VRYItXT63E31he2zuqZhQ'),
    ('passlib pbkdf2-sha512', '$pbkdf2-sha512$25000$wfg/Z0xp7X2P0VpLifFe6w$6WgohM5jRotWTwRjQ6BVLuOHqAHrWKYx7j5zp2CAsPQyOdGJiT6FfDnbRD03AnVzX7SzcDcSZDiM/dZ.gi/LKQ'),
    ('keycloak pbkdf2-sha256', '{"algorithm": "pbkdf2-sha256", "iterations": 27500, "salt": "MDEyMzQ1Njc4OWFiY2RlZg==", "hash": "H5R9LZ0QvKxHLm1Lg0IeQXdtUAa+9gf2NeOZns+WHBTpnlaWE/+JwnJ/2OXEjNPW5EusP1xxGLqEqjWDbIcGlg=="}'),
    ('sha512-crypt', '$6$muNB.EL02W50VoAh$7YW3JQ719AQjiyl.LffambnHb0OqkmIs6oqgARBKccQIWyMdhlJB6qruu9GNZrEzkaj7Y5aZ2AsciP1nRMGL80'),
    ('sha256-crypt rounds=10000', '$5$rounds=10000$Ef6pGo5u4K4EViCW$C2glhMImfG5hgyxKt2ffjDZZcRFNAsvZdodFkezNtj7'),
    ('yescrypt', '$y$j9T$OPFUT.0.T2oxEucAD3eL/1$N8dfpk7xBZmzfZbZembSQIth2GgAMXkxbbxS5CVJXF2');
SELECT f.what, i.email
  FROM foreign_hashes f,
       LATERAL user_service.import_user('Foreign', replace(f.what, ' ', '-') || '@example.com', f.hash) i
 ORDER BY f.what;
-- stored as given, but for the wrappers that only name the format, and the
-- Keycloak credential, stored in the PHC form
SELECT f.what, user_service.hash_format(u.password_hash) AS format, u.password_hash = f.hash AS as_given,
       CASE WHEN u.password_hash <> f.hash THEN left(u.password_hash, 21) END AS stored_as
  FROM foreign_hashes f JOIN user_service.users u ON u.email = replace(f.what, ' ', '-') || '@example.com'
 ORDER BY f.what;
SELECT format, users FROM user_service.password_formats ORDER BY format;
-- a wrong password is refused, the right one verifies and upgrades the hash
SELECT f.what,
       user_service.verify_password(replace(f.what, ' ', '-') || '@example.com', 'correct horses') AS wrong,
       user_service.verify_password(replace(f.what, ' ', '-') || '@example.com', 'correct horse') AS right
  FROM foreign_hashes f ORDER BY f.what;
SELECT user_service.hash_format(password_hash) AS format, count(*)
  FROM user_service.users WHERE name = 'Foreign' GROUP BY 1;
SELECT count(*) AS still_verify FROM foreign_hashes f
 WHERE user_service.verify_password(replace(f.what, ' ', '-') || '@example.com', 'correct horse');
-- read-only transactions verify without upgrading
SELECT id AS ro_id FROM user_service.import_user('RO', 'ro@example.com', '$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G') \gset
BEGIN READ ONLY;
SELECT user_service.verify_password('ro@example.com', 'correct horse') AS verified_read_only;
COMMIT;
SELECT user_service.hash_format(password_hash) FROM user_service.users WHERE id = :ro_id;

-- what cannot be imported, and why (never quoting the hash), 22023
SELECT what, pg_temp.try(format('SELECT user_service.import_user(%L, %L, %L)', 'X', 'x@example.com', h)) FROM (VALUES
    ('bcrypt 2x', '$2x$10$' || substr('$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G', 8)),
    ('bcrypt cost 15', '$2b$15$' || substr('$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G', 8)),
    ('bcrypt cost 03', '$2b$03$' || substr('$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G', 8)),
    ('bcrypt truncated', left('$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G', 59)),
    ('bcrypt bad character', left('$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G', 59) || '!'),
    ('bcrypt 2c', '$2c$10$' || substr('$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G', 8)),
    ('pbkdf2 5,000,000 iterations', 'pbkdf2_sha256$5000000$' || split_part('pbkdf2_sha256$260000$jTjAv9KVNjC9QdOuyVFbuS$P8ugDeeDbblcKYTgBtyMJRilqJOSi1xU6daF8ZWjL/g=', '$', 3) || '$' || split_part('pbkdf2_sha256$260000$jTjAv9KVNjC9QdOuyVFbuS$P8ugDeeDbblcKYTgBtyMJRilqJOSi1xU6daF8ZWjL/g=', '$', 4)),
    ('pbkdf2-sha512 2,000,001', '$pbkdf2-sha512$2000001$' || split_part('$pbkdf2-sha512$25000$wfg/Z0xp7X2P0VpLifFe6w$6WgohM5jRotWTwRjQ6BVLuOHqAHrWKYx7j5zp2CAsPQyOdGJiT6FfDnbRD03AnVzX7SzcDcSZDiM/dZ.gi/LKQ', '$', 4) || '$' || split_part('$pbkdf2-sha512$25000$wfg/Z0xp7X2P0VpLifFe6w$6WgohM5jRotWTwRjQ6BVLuOHqAHrWKYx7j5zp2CAsPQyOdGJiT6FfDnbRD03AnVzX7SzcDcSZDiM/dZ.gi/LKQ', '$', 5)),
    ('pbkdf2 0 iterations', '$pbkdf2-sha256$0$' || split_part('$pbkdf2-sha256$29000$EAJAyHlPCQFg7F0rZUypVQ$wr2rhnYs33O9qEpUheM6bA3KN7bpOHmMKMs.QajC7Tg', '$', 4) || '$' || split_part('$pbkdf2-sha256$29000$EAJAyHlPCQFg7F0rZUypVQ$wr2rhnYs33O9qEpUheM6bA3KN7bpOHmMKMs.QajC7Tg', '$', 5)),
    ('pbkdf2 md5', 'pbkdf2_md5$1000$salt$' || split_part('pbkdf2_sha256$260000$jTjAv9KVNjC9QdOuyVFbuS$P8ugDeeDbblcKYTgBtyMJRilqJOSi1xU6daF8ZWjL/g=', '$', 4)),
    ('pbkdf2 short django hash', 'pbkdf2_sha256$1000$salt$YWJj'),
    ('pbkdf2 bad base64', '$pbkdf2-sha256$1000$' || split_part('$pbkdf2-sha256$29000$EAJAyHlPCQFg7F0rZUypVQ$wr2rhnYs33O9qEpUheM6bA3KN7bpOHmMKMs.QajC7Tg', '$', 4) || '$@@@@'),
    ('pbkdf2 no hash', 'pbkdf2_sha256$1000$salt'),
    ('sha512-crypt rounds=6000000', '$6$rounds=6000000$' || substr('$6$muNB.EL02W50VoAh$7YW3JQ719AQjiyl.LffambnHb0OqkmIs6oqgARBKccQIWyMdhlJB6qruu9GNZrEzkaj7Y5aZ2AsciP1nRMGL80', 4)),
    ('sha512-crypt short', left('$6$muNB.EL02W50VoAh$7YW3JQ719AQjiyl.LffambnHb0OqkmIs6oqgARBKccQIWyMdhlJB6qruu9GNZrEzkaj7Y5aZ2AsciP1nRMGL80', 50)),
    ('yescrypt 1 GiB', '$y$jFT$' || substr('$y$j9T$OPFUT.0.T2oxEucAD3eL/1$N8dfpk7xBZmzfZbZembSQIth2GgAMXkxbbxS5CVJXF2', 8)),
    ('yescrypt bad parameters', '$y$j!T$' || substr('$y$j9T$OPFUT.0.T2oxEucAD3eL/1$N8dfpk7xBZmzfZbZembSQIth2GgAMXkxbbxS5CVJXF2', 8)),
    ('md5-crypt', '$1$abcdefgh$abcdefghijklmnopqrstuv'),
    ('scrypt', '$7$C6..../....SodiumChloride$kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D'),
    ('plain text', 'correct horse'),
    ('keycloak md5', '{"algorithm": "md5", "iterations": 1, "salt": "c2FsdA==", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('keycloak missing key', '{"algorithm": "pbkdf2-sha256", "iterations": 27500, "salt": "c2FsdA=="}'),
    ('keycloak string iterations', '{"algorithm": "pbkdf2-sha256", "iterations": "27500", "salt": "c2FsdA==", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('keycloak fractional iterations', '{"algorithm": "pbkdf2-sha256", "iterations": 2.5, "salt": "c2FsdA==", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('keycloak 5,000,000', '{"algorithm": "pbkdf2-sha256", "iterations": 5000000, "salt": "c2FsdA==", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('keycloak not base64', '{"algorithm": "pbkdf2", "iterations": 1000, "salt": "%%%", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('keycloak array', '[1, 2]'),
    ('too long', repeat('$', 5000))
) AS t(what, h);
-- a Keycloak credential object inside a batch item; a bad one refuses the
-- whole submission (nothing stored)
SELECT user_service.submit_batch('import_user', jsonb_build_array(
    jsonb_build_object('name', 'K', 'email', 'kc-item@example.com', 'password_hash', '{"algorithm": "pbkdf2-sha256", "iterations": 27500, "salt": "MDEyMzQ1Njc4OWFiY2RlZg==", "hash": "H5R9LZ0QvKxHLm1Lg0IeQXdtUAa+9gf2NeOZns+WHBTpnlaWE/+JwnJ/2OXEjNPW5EusP1xxGLqEqjWDbIcGlg=="}'::jsonb),
    jsonb_build_object('name', 'B', 'email', 'bcrypt-item@example.com', 'password_hash', '$2y$10$9ZutdN2p887wneeOYWGrt.WEem1FiRdwsta7oK5mtf.kYkUpXHeHS')), 1) AS kb \gset
SELECT user_service.wait_batch(:kb, '60 seconds');
SELECT item, status, error FROM user_service.batch_results(:kb);
-- a worker claimed both items at once (concurrency 1: one group) and
-- inserted them with one statement (one transaction id, not one
-- subtransaction per item)
SELECT count(DISTINCT xmin::text) AS inserting_xids
  FROM user_service.users WHERE email IN ('kc-item@example.com', 'bcrypt-item@example.com');
SELECT user_service.hash_format(password_hash), user_service.verify_password(email, 'correct horse')
  FROM user_service.users WHERE email IN ('kc-item@example.com', 'bcrypt-item@example.com') ORDER BY email;
-- in a group, an email taken before or by an earlier item of the group
-- fails that item with create_user's 23505; the others are imported once
-- (concurrency 1: one group, so "earlier" is the items' order)
SELECT user_service.submit_batch('import_user', jsonb_build_array(
    jsonb_build_object('name', 'G1', 'email', 'group-one@example.com', 'password_hash', h),
    jsonb_build_object('name', 'G2', 'email', 'KC-ITEM@example.com', 'password_hash', h),
    jsonb_build_object('name', 'G3', 'email', 'Group-One@example.com', 'password_hash', h),
    jsonb_build_object('name', 'G4', 'email', 'group-four@example.com', 'password_hash', h)), 1)
    AS gb FROM foreign_hashes f(what, h) WHERE what = 'bcrypt 2b' \gset
SELECT user_service.wait_batch(:gb, '60 seconds');
SELECT item, status, sqlstate, error FROM user_service.batch_results(:gb);
SELECT name, email FROM user_service.users WHERE name LIKE 'G_' ORDER BY name;
SELECT pg_temp.try(format('SELECT user_service.submit_batch(%L, %L)', 'import_user', jsonb_build_array(
    jsonb_build_object('name', 'G', 'email', 'good@example.com', 'password_hash', '$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G'),
    jsonb_build_object('name', 'K', 'email', 'kc-bad@example.com', 'password_hash',
                       '{"algorithm": "pbkdf2-sha1", "iterations": 0, "salt": "c2FsdA==", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'::jsonb))));
SELECT count(*) FROM user_service.users WHERE email IN ('good@example.com', 'kc-bad@example.com');
-- what verifying may cost is bounded per digest-long block of a PBKDF2 hash
-- (160 bytes of SHA-1 would be 8 runs of the iterations), and not beyond
-- what libxcrypt computes (sha-crypt rounds below 1000, yescrypt flavors
-- other than j never match); a Keycloak number JSON accepts but numeric
-- does not is a 22023 like the others
SELECT what, pg_temp.try(format('SELECT user_service.import_user(%L, %L, %L)', 'X', 'x@example.com', h)) FROM (VALUES
    ('pbkdf2-sha1, 160-byte hash', '$pbkdf2$4000000$c2FsdHNhbHQ$' || rtrim(translate(encode(decode(repeat('00', 160), 'hex'), 'base64'), E'\n', ''), '=')),
    ('keycloak 64-byte sha256, 2,000,001', '{"algorithm": "pbkdf2-sha256", "iterations": 2000001, "salt": "c2FsdA==", "hash": "' || translate(encode(decode(repeat('00', 64), 'hex'), 'base64'), E'\n', '') || '"}'),
    ('keycloak 1e-200000', '{"algorithm": "pbkdf2-sha256", "iterations": 1e-200000, "salt": "c2FsdA==", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('keycloak cut short', '{"algorithm": "pbkdf2-sha256", "iterations": 27500, "salt": "c2Fsd'),
    ('keycloak nested', '{"algorithm": "pbkdf2-sha256", "iterations": 27500, "salt": {"a": 1}, "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('keycloak key twice', '{"algorithm": "pbkdf2", "algorithm": "pbkdf2", "iterations": 1, "salt": "c2FsdA==", "hash": "c2FsdHNhbHRzYWx0c2FsdA=="}'),
    ('sha256-crypt rounds=999', '$5$rounds=999$saltsalt$' || repeat('a', 43)),
    ('yescrypt flavor A', '$y$ADT$' || substr((SELECT hash FROM foreign_hashes WHERE what = 'yescrypt'), 8))
) AS t(what, h);
SELECT id AS kc64 FROM user_service.import_user('KC64', 'kc64@example.com',
    '{"algorithm": "pbkdf2-sha256", "iterations": 1000, "salt": "MDEyMzQ1Njc4OWFiY2RlZg==", "hash": "cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4NQEC0GVAwWLSUGWbcye1xU+dO7fZFld1DsscNlAN1uxw=="}') \gset
SELECT user_service.verify_password('kc64@example.com', 'correct horse') AS keycloak_64_bytes;
-- bcrypt reads the first 72 bytes of any password, also past libxcrypt's
-- 512 (Python's bcrypt made this one of 600 x)
SELECT id AS long_id FROM user_service.import_user('Long', 'long@example.com',
    '$2b$04$MffW8HTr2/9g.njrxp/oS.805ioeOIwGtC0BwmLSovy4xqI8QoSf.') \gset
SELECT user_service.verify_password('long@example.com', repeat('x', 599) || 'y') AS long_password;

-- NULLs, and a corrupt stored foreign hash is false like a wrong password
SELECT pg_temp.try($$SELECT user_service.import_user(NULL, 'n@example.com', 'x')$$);
SELECT pg_temp.try($$SELECT user_service.import_user('N', 'n@example.com', NULL)$$);
SELECT id AS corrupt_id FROM user_service.import_user('Corrupt', 'corrupt@example.com', '$2b$10$t2Pty7xoWns3W86V4G/4x.6LaQOVDu.v5K7OJdAVsspa1GZHDzA5G') \gset
UPDATE user_service.users SET password_hash = '$2b$31$' || substr(password_hash, 8) WHERE id = :corrupt_id;
SELECT user_service.verify_password('corrupt@example.com', 'correct horse') AS over_limit_in_table;

-- psql explains every object: no member of the extension, index or
-- trigger of its tables, or column of the stats view goes without a comment.
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS without_comment
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'user_service')
   AND d.deptype = 'e'
   AND obj_description(d.objid, d.classid::regclass::name) IS NULL
UNION ALL
SELECT 'index ' || c.oid::regclass
  FROM pg_class c
 WHERE c.relnamespace = 'user_service'::regnamespace AND c.relkind = 'i'
   AND obj_description(c.oid, 'pg_class') IS NULL
UNION ALL
SELECT 'trigger ' || t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'user_service'::regnamespace
   AND obj_description(t.oid, 'pg_trigger') IS NULL
UNION ALL
SELECT 'column stats.' || a.attname
  FROM pg_attribute a
 WHERE a.attrelid = 'user_service.stats'::regclass AND a.attnum > 0
   AND col_description(a.attrelid, a.attnum) IS NULL;
-- and what it looks like
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, col_description(a.attrelid, a.attnum)
  FROM pg_attribute a
 WHERE a.attrelid = 'user_service.stats'::regclass AND a.attnum > 0
 ORDER BY a.attnum;
SELECT obj_description('user_service.stats'::regclass, 'pg_class');
SELECT obj_description('user_service.submit_batch(text, jsonb, int)'::regprocedure, 'pg_proc');
