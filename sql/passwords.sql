-- argon2id hashing: PHC strings, parameters from the GUCs, verification
-- from the stored parameters, hashes from another implementation, rehash on
-- login.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/setup.inc

CREATE FUNCTION pg_temp.params(uid bigint) RETURNS text LANGUAGE sql AS $$
    SELECT substring(password_hash from '^\$[a-z0-9]+\$v=[0-9]+\$[^$]+')
      FROM user_service.users WHERE id = uid
$$;

SHOW user_service.argon2_memory_kib;
SHOW user_service.argon2_iterations;
SHOW user_service.argon2_parallelism;

-- default parameters, 16-byte salt, 32-byte tag, unpadded base64
SELECT id FROM user_service.create_user('Alice', 'alice@example.com', 'correct horse');
SELECT password_hash ~ '^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$' AS phc
  FROM user_service.users WHERE id = 1;
-- salted: the same password twice gives two hashes
SELECT id FROM user_service.create_user('Twin', 'twin@example.com', 'correct horse');
SELECT count(DISTINCT password_hash) FROM user_service.users;

SELECT user_service.verify_password('alice@example.com', 'correct horse') AS right_pw,
       user_service.verify_password(' ALICE@Example.Com ', 'correct horse') AS any_case,
       user_service.verify_password('alice@example.com', 'correct horsE') AS wrong_pw,
       user_service.verify_password('alice@example.com', '') AS empty_pw,
       user_service.verify_password('nobody@example.com', 'correct horse') AS unknown,
       user_service.verify_password('not an email', 'correct horse') AS malformed;
-- an email longer than any stored one (over 254 characters): the dummy work
-- and false, however long (its size is read, not its text)
SELECT user_service.verify_password(repeat('a', 243) || '@example.com', 'correct horse') AS chars_255,
       user_service.verify_password(repeat('é', 243) || '@example.com', 'correct horse') AS multibyte_255,
       user_service.verify_password(repeat(' ', 300) || 'alice@example.com', 'correct horse') AS padded,
       user_service.verify_password(repeat('a', 300000000) || '@example.com', 'correct horse') AS mb_300;

-- the GUCs shape new hashes; memory takes units
SET user_service.argon2_memory_kib = '2MB';
SET user_service.argon2_iterations = 1;
SET user_service.argon2_parallelism = 2;
SELECT id FROM user_service.create_user('Carol', 'carol@example.com', 'carol password');
SELECT pg_temp.params(3);
-- old hashes still verify (parameters come from the stored string) ...
SELECT user_service.verify_password('carol@example.com', 'carol password') AS carol;
SELECT pg_temp.params(1);
-- ... a wrong password changes nothing ...
SELECT user_service.verify_password('alice@example.com', 'wrong password') AS wrong;
SELECT pg_temp.params(1);
-- ... a read-only transaction verifies without rehashing ...
BEGIN READ ONLY;
SELECT user_service.verify_password('alice@example.com', 'correct horse') AS read_only;
COMMIT;
SELECT pg_temp.params(1);
-- ... a hash that costs more memory than the current parameters is never
-- downgraded ...
SELECT user_service.verify_password('alice@example.com', 'correct horse') AS kept;
SELECT pg_temp.params(1);
-- ... nor one weaker in memory but costlier in memory times passes
-- (m=19456,t=2 against 32 MiB, t=1) ...
SET user_service.argon2_memory_kib = '32MB';
SELECT user_service.verify_password('alice@example.com', 'correct horse') AS mixed_kept;
SELECT pg_temp.params(1);
-- ... and a successful verify upgrades a weaker one to the current parameters
SET user_service.argon2_iterations = 2;
SELECT password_hash AS alice_hash FROM user_service.users WHERE id = 1 \gset
SELECT user_service.verify_password('alice@example.com', 'correct horse') AS rehashed;
SELECT pg_temp.params(1);
SELECT updated_at = created_at AS rehash_keeps_updated_at FROM user_service.users WHERE id = 1;
SELECT user_service.verify_password('alice@example.com', 'correct horse') AS still_valid;
SELECT password_hash <> :'alice_hash' AS changed FROM user_service.users WHERE id = 1;
RESET user_service.argon2_memory_kib;
RESET user_service.argon2_iterations;
RESET user_service.argon2_parallelism;

-- Hashes made by another implementation (the argon2 command-line tool, on
-- libargon2): argon2i, argon2d, argon2id, version 0x10 and 0x13, p > 1, a
-- 64-byte tag.  The first is the example of libargon2's README ("password",
-- "somesalt").  "Ref p1" (argon2id 1.3, one lane, 16-byte salt) is one that
-- this extension verifies with libsodium: libargon2's hash, libsodium's
-- check.  (The other way round is in test/t/001_argon2_interop.pl.)
INSERT INTO user_service.users (name, email, password_hash) VALUES
 ('Ref i',   'ref-i@example.com',   '$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG'),
 ('Ref id',  'ref-id@example.com',  '$argon2id$v=19$m=1024,t=3,p=2$c2FsdHNhbHQxMjM0$MJd2GK3lOaAIqrZ2J+DfQBy7bqh1+6cDZDQcazlyMs4'),
 ('Ref d',   'ref-d@example.com',   '$argon2d$v=19$m=1024,t=3,p=2$c2FsdHNhbHQxMjM0$mgOAB2xebw/kCNHnXMaXGHIoe/oLfqUKqVke9ASAvqc'),
 ('Ref v16', 'ref-v16@example.com', '$argon2id$v=16$m=256,t=1,p=1$c2FsdHNhbHQxMjM0$rZf3CBMdhDXCwltx9WhnTp90rK9CQPc0HaAkC6DFkdM'),
 ('Ref l64', 'ref-l64@example.com', '$argon2i$v=19$m=64,t=2,p=1$c2FsdHNhbHQxMjM0$vGeISNyaMIwUf2heyhQEbrNVma1j1DDy+ss/+ES5eX5OX8H4sYlWc79Q9PmShoQKt5WQtUNddtIRh6SMh6Afjg'),
 ('Ref p1',  'ref-p1@example.com',  '$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$fijZDvVurCnsVjv86S9c1Yg9YxN2BhVEkTevKdOdGis');
BEGIN READ ONLY;
SELECT email,
       user_service.verify_password(email, CASE WHEN email = 'ref-i@example.com'
                                                THEN 'password' ELSE 'pass word 1' END) AS right_pw,
       user_service.verify_password(email, 'pass word 2') AS wrong_pw
  FROM user_service.users WHERE name LIKE 'Ref %' ORDER BY id;
COMMIT;
-- verified in a writable transaction, they are upgraded to current argon2id
SELECT user_service.verify_password('ref-d@example.com', 'pass word 1');
SELECT user_service.verify_password('ref-l64@example.com', 'pass word 1');
SELECT email, password_hash ~ '^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$' AS upgraded
  FROM user_service.users WHERE email IN ('ref-d@example.com', 'ref-l64@example.com') ORDER BY email;
SELECT user_service.verify_password('ref-d@example.com', 'pass word 1') AS after_upgrade;

-- a stored string that is no password hash it can verify is never trusted: false,
-- as for a wrong password (the server log names the user: test/t/007)
INSERT INTO user_service.users (name, email, password_hash) VALUES
 ('Bad 1', 'bad1@example.com', 'plain text'),
 ('Bad 2', 'bad2@example.com', '$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQxMjM0$rZf3CBMdhDXCwltx9WhnTp90rK9CQPc0HaAkC6DFkdM'),
 ('Bad 3', 'bad3@example.com', '$argon2id$v=19$m=256,t=1,p=1$c2FsdA$rZf3CBMdhDXCwltx9WhnTp90rK9CQPc0HaAkC6DFkdM'),
 ('Bad 4', 'bad4@example.com', '$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQxMjM0$rZf3CBMdhDXCwltx9Whn=='),
 ('Bad 5', 'bad5@example.com', '$argon2id$v=18$m=256,t=1,p=1$c2FsdHNhbHQxMjM0$rZf3CBMdhDXCwltx9WhnTp90rK9CQPc0HaAkC6DFkdM'),
 ('Bad 6', 'bad6@example.com', '$argon2x$v=19$m=256,t=1,p=1$c2FsdHNhbHQxMjM0$rZf3CBMdhDXCwltx9WhnTp90rK9CQPc0HaAkC6DFkdM');
SELECT email, user_service.verify_password(email, 'pass word 1') AS verified
  FROM user_service.users WHERE name LIKE 'Bad %' ORDER BY id;

-- the parameters are the superuser's to set, within libargon2's limits
SELECT pg_temp.try('SET user_service.argon2_memory_kib = 7');
SELECT pg_temp.try('SET user_service.argon2_iterations = 0');
SELECT pg_temp.try('SET user_service.argon2_parallelism = 16777216');
SET user_service.argon2_parallelism = 4;
SET user_service.argon2_memory_kib = 16;
SELECT pg_temp.try($$SELECT user_service.create_user('P', 'p@example.com', 'password1')$$);
RESET user_service.argon2_parallelism;
RESET user_service.argon2_memory_kib;
CREATE ROLE regress_us_plain;
SET ROLE regress_us_plain;
SELECT pg_temp.try('SET user_service.argon2_memory_kib = 1024');
SELECT pg_temp.try('SET user_service.max_per_page = 1000');
RESET ROLE;
DROP ROLE regress_us_plain;
